//! Link rows: create or re-link, load for background work, and commit the outcome of that work
//! only if nobody changed the link meanwhile (the `generation` check, STYLE habit 6).
//!
//! Secrets are sealed by the caller-supplied `seal` closure inside the same transaction as the
//! row they belong to, so a link never exists without its secret, and a rotated refresh token is
//! durable before anyone uses the new access token.

use mslink_proto::{Evidence, LinkInfo, LinkState, Provider, UnixTime};
use rusqlite::{OptionalExtension, Row, params};

use super::{Db, StoreError};
use crate::health::{Actor, CheckReport, Failure};
use crate::links::{LinkDetails, Server, Timers};

/// Everything background work needs to know about a link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRecord {
    pub id: i64,
    pub user: String,
    /// The owner's account (`None` until bound, see [`Db::bind_owners`]).
    pub uid: Option<u32>,
    pub email: String,
    pub provider: Provider,
    pub state: LinkState,
    /// Bumped by every user or admin change; background commits must match it.
    pub generation: i64,
    /// What the link knows about its provider; `Err` says why the stored JSON is unreadable.
    pub details: Result<LinkDetails, String>,
    /// Sealed provider secret (see `crate::vault`).
    pub secret: Option<Vec<u8>>,
    pub token_expiry: Option<UnixTime>,
    pub token_issued: Option<UnixTime>,
    pub next_check: Option<UnixTime>,
    /// Consecutive transient failures, for backoff.
    pub failures: u32,
    /// Who must act on a failed link.
    pub actor: Option<Actor>,
}

impl LinkRecord {
    /// The timers the schedule rule reads.
    pub fn timers(&self) -> Timers {
        Timers {
            id: self.id,
            state: self.state,
            actor: self.actor,
            next_check: self.next_check,
            token_expiry: self.token_expiry,
            token_issued: self.token_issued,
            server: match &self.details {
                Ok(LinkDetails::Exchange(endpoint)) => Server::of_url(&endpoint.ews_url),
                _ => None,
            },
            owner: self.uid,
        }
    }
}

/// Whose links a query means: a user name and, when the caller is that user, their uid, so an
/// account deleted and created again under the same name (another uid) does not see or use the
/// old account's links. `uid: None` matches by name alone: admins, who address every link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub uid: Option<u32>,
}

impl From<&str> for Owner {
    fn from(name: &str) -> Self {
        Owner { name: name.to_owned(), uid: None }
    }
}

impl From<&String> for Owner {
    fn from(name: &String) -> Self {
        Owner::from(name.as_str())
    }
}

/// The SQL condition for an [`Owner`] with its name at `?N` and uid at `?N+1`.
pub(super) fn owned_by(n: usize) -> String {
    format!("user = ?{n} AND (?{m} IS NULL OR uid = ?{m})", m = n + 1)
}

/// An access token a link holds for one extra resource, sealed like the link's own secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceToken {
    pub sealed: Vec<u8>,
    pub expires_at: UnixTime,
    pub issued_at: UnixTime,
}

/// A link that has just passed its first sign-in and first check.
#[derive(Debug, Clone)]
pub struct NewLink {
    pub user: String,
    /// The owner's uid (`None` for tools that seed links by name; bound at the next start).
    pub uid: Option<u32>,
    pub email: String,
    /// The provider and what the link knows about it; the store writes the `provider`,
    /// `endpoint`, `auth_scheme` and `details` columns from it.
    pub details: LinkDetails,
    pub report: CheckReport,
    pub token_expiry: Option<UnixTime>,
    /// When that token was issued (sign-in: now).
    pub token_issued: Option<UnixTime>,
    pub next_check: UnixTime,
    /// How the provider was settled.
    pub evidence: Vec<Evidence>,
}

/// Inserting a new, active link; `?1`..`?16` are [`NewLink::values`].
const INSERT_LINK: &str = "INSERT INTO links (user, email, provider, state, since, last_ok,
        next_check, token_expiry, inbox_total, inbox_unread, calendar_ok, server_version,
        auth_scheme, endpoint, details, created_at, token_issued, evidence, uid)
     VALUES (?1, ?2, ?3, 'active', ?4, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?4, ?14, ?15, ?16)";

impl NewLink {
    /// The values of [`INSERT_LINK`]'s parameters, in order; `now` is when it was linked.
    fn values(&self, now: UnixTime) -> [rusqlite::types::Value; 16] {
        let report = &self.report;
        [
            self.user.clone().into(),
            self.email.clone().into(),
            self.details.provider().as_str().to_owned().into(),
            now.into(),
            self.next_check.into(),
            self.token_expiry.into(),
            report.inbox_total.map(|n| n as i64).into(),
            report.inbox_unread.map(|n| n as i64).into(),
            report.calendar_ok.into(),
            report.server_version.clone().into(),
            self.details.auth_scheme().into(),
            self.details.endpoint().into(),
            self.details.to_json().into(),
            self.token_issued.into(),
            serde_json::to_string(&self.evidence).unwrap_or_else(|_| "[]".into()).into(),
            self.uid.map(i64::from).into(),
        ]
    }
}

/// What a background refresh or check concluded.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The check passed.
    Healthy { report: CheckReport, next_check: UnixTime },
    /// It failed; `next_attempt` is `None` when nothing should retry (needs_reauth, blocked).
    Failed { failure: Failure, next_attempt: Option<UnixTime> },
}

/// A state change caused by a commit, for events.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub id: i64,
    pub link: LinkInfo,
    /// `None` for a new link.
    pub previous: Option<LinkState>,
}

const RECORD_COLUMNS: &str = "id, user, email, provider, state, generation, details, secret, \
                              token_expiry, next_check, failures, actor, token_issued, uid";

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<LinkRecord> {
    let provider = parse_provider(&row.get::<_, String>(3)?);
    let state: String = row.get(4)?;
    let details: String = row.get(6)?;
    Ok(LinkRecord {
        id: row.get(0)?,
        user: row.get(1)?,
        email: row.get(2)?,
        provider,
        state: LinkState::parse(&state).unwrap_or(LinkState::Blocked),
        generation: row.get(5)?,
        details: LinkDetails::from_json(provider, &details).map_err(|e| e.to_string()),
        secret: row.get(7)?,
        token_expiry: row.get(8)?,
        next_check: row.get(9)?,
        failures: row.get(10)?,
        actor: row.get::<_, Option<String>>(11)?.as_deref().and_then(Actor::parse),
        token_issued: row.get(12)?,
        uid: row.get(13)?,
    })
}

pub(super) fn parse_provider(name: &str) -> Provider {
    if name == "exchange" { Provider::Exchange } else { Provider::Office365 }
}

impl Db<'_> {
    /// The link `owner` has to `email` (case-insensitive), with its secret.
    pub fn link_record(
        &self,
        owner: impl Into<Owner>,
        email: &str,
    ) -> Result<Option<LinkRecord>, StoreError> {
        let owner = owner.into();
        let sql =
            format!("SELECT {RECORD_COLUMNS} FROM links WHERE email = ?1 AND {}", owned_by(2));
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![email, owner.name, owner.uid], record_from_row)
            .optional()?)
    }

    /// Binds the links stored without a uid (before migration 4, or seeded by name) to the uid
    /// `uid_of` gives their owner's name now; a name with no account stays unbound, seen only by
    /// admins. Returns how many links were bound.
    pub fn bind_owners(
        &mut self,
        uid_of: impl Fn(&str) -> Option<u32>,
    ) -> Result<usize, StoreError> {
        let tx = self.conn.savepoint()?;
        let names: Vec<String> = tx
            .prepare("SELECT DISTINCT user FROM links WHERE uid IS NULL")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let mut bound = 0;
        for name in names {
            if let Some(uid) = uid_of(&name) {
                bound += tx.execute(
                    "UPDATE links SET uid = ?2 WHERE user = ?1 AND uid IS NULL",
                    params![name, uid],
                )?;
            }
        }
        tx.commit()?;
        Ok(bound)
    }

    /// A link by id, with its secret.
    pub fn link_record_by_id(&self, id: i64) -> Result<Option<LinkRecord>, StoreError> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM links WHERE id = ?1");
        Ok(self.conn.prepare_cached(&sql)?.query_row([id], record_from_row).optional()?)
    }

    /// One link as status shows it.
    pub fn link_info(&self, id: i64) -> Result<Option<LinkInfo>, StoreError> {
        Ok(self.links_where("id = ?1", [id])?.pop())
    }

    /// Creates the link, or replaces the credentials and state of an existing one (a re-link
    /// after a password change or revoked consent). `seal(id)` seals the secret for that row.
    /// A new link that would give its owner (name and uid) more than `limit` links is refused
    /// with [`StoreError::TooManyLinks`], counted in the same transaction so that connects
    /// racing each other cannot pass the limit together.
    pub fn save_link(
        &mut self,
        new: &NewLink,
        now: UnixTime,
        limit: Option<usize>,
        seal: impl FnOnce(i64) -> Result<Vec<u8>, StoreError>,
    ) -> Result<Transition, StoreError> {
        let tx = self.conn.savepoint()?;
        let previous: Option<String> = tx
            .query_row(
                "SELECT state FROM links WHERE user = ?1 AND email = ?2",
                params![new.user, new.email],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(limit) = limit
            && previous.is_none()
        {
            let sql = format!("SELECT COUNT(*) FROM links WHERE {}", owned_by(1));
            let count: i64 = tx.query_row(&sql, params![new.user, new.uid], |row| row.get(0))?;
            if count as usize >= limit {
                return Err(StoreError::TooManyLinks { limit });
            }
        }
        let id: i64 = tx.query_row(
            &format!(
                "{INSERT_LINK}
                 ON CONFLICT (user, email) DO UPDATE SET
                     provider = ?3, state = 'active', reason = NULL, actor = NULL,
                     state_before_suspend = NULL, reason_before_suspend = NULL,
                     actor_before_suspend = NULL, since_before_suspend = NULL,
                     since = ?4, last_ok = ?4, next_check = ?5, token_expiry = ?6,
                     token_issued = ?14, evidence = ?15,
                     inbox_total = ?7, inbox_unread = ?8, calendar_ok = ?9, server_version = ?10,
                     auth_scheme = ?11, endpoint = ?12, details = ?13, failures = 0,
                     uid = ?16, generation = generation + 1
                 RETURNING id"
            ),
            rusqlite::params_from_iter(new.values(now)),
            |row| row.get(0),
        )?;
        tx.execute("UPDATE links SET secret = ?2 WHERE id = ?1", params![id, seal(id)?])?;
        // A re-link is a new grant: tokens from the old one are not handed out again.
        tx.execute("DELETE FROM resource_tokens WHERE link_id = ?1", [id])?;
        tx.commit()?;
        let link = self.link_info(id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        Ok(Transition { id, link, previous: previous.as_deref().and_then(LinkState::parse) })
    }

    /// Creates many new links in one transaction (an import, or seeding a benchmark): far
    /// faster than one [`Db::save_link`] each, since the database syncs once. `seal(id, link)`
    /// seals each link's secret for its row. All or nothing: a link that already exists, or a
    /// seal that fails, rolls the whole batch back. Returns the new ids in order.
    pub fn insert_links(
        &mut self,
        links: &[NewLink],
        now: UnixTime,
        mut seal: impl FnMut(i64, &NewLink) -> Result<Vec<u8>, StoreError>,
    ) -> Result<Vec<i64>, StoreError> {
        let tx = self.conn.savepoint()?;
        let mut ids = Vec::with_capacity(links.len());
        {
            let mut insert = tx.prepare(&format!("{INSERT_LINK} RETURNING id"))?;
            let mut set_secret = tx.prepare("UPDATE links SET secret = ?2 WHERE id = ?1")?;
            for new in links {
                let id: i64 = insert
                    .query_row(rusqlite::params_from_iter(new.values(now)), |row| row.get(0))?;
                set_secret.execute(params![id, seal(id, new)?])?;
                ids.push(id);
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Stores a refreshed secret (a rotated refresh token) if the link is still the one the
    /// refresh started from. Returns false, storing nothing, if it changed meanwhile.
    pub fn store_refreshed_secret(
        &mut self,
        id: i64,
        generation: i64,
        sealed: &[u8],
        token_expiry: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE links SET secret = ?3, token_expiry = ?4, token_issued = ?5
                 WHERE id = ?1 AND generation = ?2",
            )?
            .execute(params![id, generation, sealed, token_expiry, now])?;
        Ok(changed == 1)
    }

    /// The sealed access token link `id` holds for `resource` (`imap`, `smtp`, ...), if any.
    pub fn resource_token(
        &self,
        id: i64,
        resource: &str,
    ) -> Result<Option<ResourceToken>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT secret, expires_at, issued_at FROM resource_tokens
                 WHERE link_id = ?1 AND resource = ?2",
            )?
            .query_row(params![id, resource], |row| {
                Ok(ResourceToken {
                    sealed: row.get(0)?,
                    expires_at: row.get(1)?,
                    issued_at: row.get(2)?,
                })
            })
            .optional()?)
    }

    /// Stores a new access token for `resource` and, in the same transaction, the link's
    /// refreshed secret (`link_secret`: the rotated refresh token), if the link is still at
    /// `generation`. Returns false, storing nothing, if it changed meanwhile. The Graph token's
    /// timers (`token_expiry`, `token_issued`) are the link's and stay as they are.
    pub fn store_resource_token(
        &mut self,
        id: i64,
        generation: i64,
        link_secret: &[u8],
        resource: &str,
        token: &ResourceToken,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.savepoint()?;
        let changed = tx.execute(
            "UPDATE links SET secret = ?3 WHERE id = ?1 AND generation = ?2",
            params![id, generation, link_secret],
        )?;
        if changed != 1 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO resource_tokens (link_id, resource, secret, expires_at, issued_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (link_id, resource) DO UPDATE SET
                 secret = ?3, expires_at = ?4, issued_at = ?5",
            params![id, resource, token.sealed, token.expires_at, token.issued_at],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Commits a background outcome if the link is still at `generation`. Returns the state
    /// change it caused (`None` when the link changed meanwhile or its state stayed the same).
    pub fn record_outcome(
        &mut self,
        id: i64,
        generation: i64,
        outcome: &Outcome,
        now: UnixTime,
    ) -> Result<Option<Transition>, StoreError> {
        let tx = self.conn.savepoint()?;
        let previous: Option<String> = tx
            .prepare_cached("SELECT state FROM links WHERE id = ?1 AND generation = ?2")?
            .query_row(params![id, generation], |r| r.get(0))
            .optional()?;
        let Some(previous) = previous.as_deref().and_then(LinkState::parse) else {
            return Ok(None);
        };
        if previous == LinkState::Suspended {
            // Disabled while the work ran (the generation bump should have caught it).
            return Ok(None);
        }
        let new_state = match outcome {
            Outcome::Healthy { report, next_check } => {
                tx.prepare_cached(
                    "UPDATE links SET state = 'active', reason = NULL, last_ok = ?2,
                            next_check = ?3, inbox_total = ?4, inbox_unread = ?5,
                            calendar_ok = ?6, server_version = COALESCE(?7, server_version),
                            failures = 0, actor = NULL,
                            since = CASE WHEN state = 'active' THEN since ELSE ?2 END
                     WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    now,
                    next_check,
                    report.inbox_total.map(|n| n as i64),
                    report.inbox_unread.map(|n| n as i64),
                    report.calendar_ok,
                    report.server_version,
                ])?;
                LinkState::Active
            }
            Outcome::Failed { failure, next_attempt } => {
                tx.prepare_cached(
                    "UPDATE links SET state = ?2, reason = ?3, next_check = ?4,
                            failures = failures + 1, actor = ?6,
                            since = CASE WHEN state = ?2 THEN since ELSE ?5 END
                     WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    failure.state.as_str(),
                    failure.describe(),
                    next_attempt,
                    now,
                    failure.actor.key()
                ])?;
                failure.state
            }
        };
        tx.commit()?;
        if new_state == previous {
            return Ok(None);
        }
        let link = self.link_info(id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        Ok(Some(Transition { id, link, previous: Some(previous) }))
    }

    /// The timers of every link background work may look after (`active`, `degraded`,
    /// `blocked`), for the scheduler to load at start.
    pub fn due_links(&self) -> Result<Vec<Timers>, StoreError> {
        self.timers_where("state IN ('active', 'degraded', 'blocked')", [])
    }

    /// One link's timers.
    pub fn timers(&self, id: i64) -> Result<Option<Timers>, StoreError> {
        Ok(self.timers_where("id = ?1", [id])?.pop())
    }

    /// Makes every link blocked on `actor` due for a re-check at `now` (after a reload, the
    /// operator may have fixed the cause). Returns their timers.
    pub fn recheck_blocked(&self, actor: Actor, now: UnixTime) -> Result<Vec<Timers>, StoreError> {
        self.conn.execute(
            "UPDATE links SET next_check = ?2 WHERE state = 'blocked' AND actor = ?1",
            params![actor.key(), now],
        )?;
        self.timers_where("state = 'blocked' AND actor = ?1", [actor.key()])
    }

    /// The links `check --all` looks at: every link, or those in `state`; `(id, email)`.
    pub fn link_ids(&self, state: Option<LinkState>) -> Result<Vec<(i64, String)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, email FROM links WHERE ?1 IS NULL OR state = ?1 ORDER BY user, email",
        )?;
        let rows =
            stmt.query_map([state.map(LinkState::as_str)], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn timers_where(
        &self,
        condition: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<Timers>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id, state, actor, next_check, token_expiry, token_issued,
                    CASE WHEN provider = 'exchange' THEN endpoint END, uid
             FROM links WHERE {condition}"
        ))?;
        let rows = stmt.query_map(params, |row| {
            let state: String = row.get(1)?;
            Ok(Timers {
                id: row.get(0)?,
                state: LinkState::parse(&state).unwrap_or(LinkState::Blocked),
                actor: row.get::<_, Option<String>>(2)?.as_deref().and_then(Actor::parse),
                next_check: row.get(3)?,
                token_expiry: row.get(4)?,
                token_issued: row.get(5)?,
                server: row.get::<_, Option<String>>(6)?.as_deref().and_then(Server::of_url),
                owner: row.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Failure;

    fn db() -> rusqlite::Connection {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        conn
    }

    fn new_link(email: &str) -> NewLink {
        NewLink {
            user: "alice".into(),
            uid: Some(1001),
            email: email.into(),
            details: LinkDetails::Exchange(
                serde_json::from_value(serde_json::json!({
                    "ews_url": "https://mail.contoso.test/EWS/Exchange.asmx",
                    "auth": "ntlm",
                    "username": "CONTOSO\\alice",
                    "server_version": null,
                }))
                .unwrap(),
            ),
            report: CheckReport {
                inbox_total: Some(12),
                inbox_unread: Some(3),
                calendar_ok: true,
                server_version: Some("15.2.1544.4".into()),
            },
            token_expiry: None,
            token_issued: None,
            next_check: 1000,
            evidence: vec![Evidence {
                probe: "provider_flag".into(),
                points_to: Some(Provider::Exchange),
                detail: "--provider exchange".into(),
            }],
        }
    }

    #[test]
    fn saving_twice_relinks_and_bumps_the_generation() {
        let mut conn = db();
        let mut db = Db::new(&mut conn);
        let first = db
            .save_link(&new_link("alice@contoso.test"), 10, None, |id| Ok(vec![id as u8]))
            .unwrap();
        assert_eq!(first.previous, None);
        assert_eq!(first.link.state, LinkState::Active);
        assert_eq!(first.link.auth_scheme.as_deref(), Some("ntlm"));
        assert_eq!(first.link.evidence[0].detail, "--provider exchange", "evidence is kept");
        let record = db.link_record("alice", "ALICE@contoso.test").unwrap().unwrap();
        assert_eq!(record.secret, Some(vec![record.id as u8]));
        let again =
            db.save_link(&new_link("alice@contoso.test"), 20, None, |_| Ok(vec![9])).unwrap();
        assert_eq!(again.previous, Some(LinkState::Active));
        let relinked = db.link_record_by_id(record.id).unwrap().unwrap();
        assert_eq!((relinked.generation, relinked.secret), (record.generation + 1, Some(vec![9])));
    }

    #[test]
    fn an_account_created_again_under_the_same_name_does_not_inherit_the_old_ones_links() {
        let mut conn = db();
        let mut db = Db::new(&mut conn);
        db.save_link(&new_link("alice@contoso.test"), 10, None, |_| Ok(vec![1])).unwrap();
        let old = Owner { name: "alice".into(), uid: Some(1001) };
        let reborn = Owner { name: "alice".into(), uid: Some(1002) };
        assert!(db.link_record(old.clone(), "alice@contoso.test").unwrap().is_some());
        assert!(db.link_record(reborn.clone(), "alice@contoso.test").unwrap().is_none());
        assert!(db.links(Some(reborn.clone())).unwrap().is_empty());
        assert!(db.links_page(Some(&reborn), None, None, 10).unwrap().is_empty());
        assert_eq!(db.delete_link(reborn.clone(), "alice@contoso.test").unwrap(), None);
        // Admins address links by name: they see it, and may remove it.
        assert!(db.link_record("alice", "alice@contoso.test").unwrap().is_some());
        assert_eq!(db.links_page(Some(&"alice".into()), None, None, 10).unwrap().len(), 1);
        // The new account signing the mailbox in again takes the link over, with new secrets.
        let relink = NewLink { uid: Some(1002), ..new_link("alice@contoso.test") };
        db.save_link(&relink, 20, None, |_| Ok(vec![2])).unwrap();
        assert!(db.link_record(old, "alice@contoso.test").unwrap().is_none());
        let record = db.link_record(reborn, "alice@contoso.test").unwrap().unwrap();
        assert_eq!(record.secret, Some(vec![2]));
    }

    #[test]
    fn links_stored_without_a_uid_are_bound_to_their_name_s_account_once() {
        let mut conn = db();
        let mut db = Db::new(&mut conn);
        for (user, email) in [("alice", "a@contoso.test"), ("gone", "g@contoso.test")] {
            let seeded = NewLink { user: user.into(), uid: None, ..new_link(email) };
            db.save_link(&seeded, 10, None, |_| Ok(vec![1])).unwrap();
        }
        let uid_of = |name: &str| (name == "alice").then_some(1001);
        assert_eq!(db.bind_owners(uid_of).unwrap(), 1);
        assert_eq!(db.bind_owners(uid_of).unwrap(), 0, "bound once");
        let alice = Owner { name: "alice".into(), uid: Some(1001) };
        assert!(db.link_record(alice, "a@contoso.test").unwrap().is_some());
        // A name with no account keeps its link unbound: no uid matches it, admins still see it.
        let gone = Owner { name: "gone".into(), uid: Some(1001) };
        assert!(db.link_record(gone, "g@contoso.test").unwrap().is_none());
        assert!(db.link_record("gone", "g@contoso.test").unwrap().is_some());
    }

    #[test]
    fn resource_tokens_are_stored_with_the_rotated_secret_and_go_with_the_grant() {
        let mut conn = db();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        let mut db = Db::new(&mut conn);
        let id =
            db.save_link(&new_link("alice@contoso.test"), 10, None, |_| Ok(vec![1])).unwrap().id;
        let generation = db.link_record_by_id(id).unwrap().unwrap().generation;
        let token = ResourceToken { sealed: vec![7], expires_at: 100, issued_at: 40 };
        assert!(db.store_resource_token(id, generation, &[2], "imap", &token).unwrap());
        assert_eq!(db.resource_token(id, "imap").unwrap(), Some(token.clone()));
        assert_eq!(db.resource_token(id, "smtp").unwrap(), None);
        let record = db.link_record_by_id(id).unwrap().unwrap();
        assert_eq!(record.secret, Some(vec![2]), "the rotated refresh token is stored with it");
        assert_eq!(record.token_expiry, None, "the Graph token's timers stay");
        // A stale generation stores nothing, neither the token nor the secret.
        let newer = ResourceToken { sealed: vec![8], expires_at: 200, issued_at: 50 };
        assert!(!db.store_resource_token(id, generation + 1, &[3], "imap", &newer).unwrap());
        assert_eq!(db.resource_token(id, "imap").unwrap(), Some(token));
        assert_eq!(db.link_record_by_id(id).unwrap().unwrap().secret, Some(vec![2]));
        // A re-link is a new grant: the old grant's tokens are gone.
        db.save_link(&new_link("alice@contoso.test"), 20, None, |_| Ok(vec![4])).unwrap();
        assert_eq!(db.resource_token(id, "imap").unwrap(), None);
        let generation = db.link_record_by_id(id).unwrap().unwrap().generation;
        assert!(db.store_resource_token(id, generation, &[5], "smtp", &newer).unwrap());
        // And so does a removed link.
        db.delete_link("alice", "alice@contoso.test").unwrap();
        assert_eq!(db.resource_token(id, "smtp").unwrap(), None);
    }

    #[test]
    fn bulk_inserts_seal_each_row_and_are_all_or_nothing() {
        let mut conn = db();
        let mut db = Db::new(&mut conn);
        let batch: Vec<NewLink> =
            (0..500).map(|i| new_link(&format!("user{i}@contoso.test"))).collect();
        let ids = db.insert_links(&batch, 5, |id, _| Ok(id.to_be_bytes().to_vec())).unwrap();
        assert_eq!(ids.len(), 500);
        let record = db.link_record("alice", "user7@contoso.test").unwrap().unwrap();
        assert_eq!((record.id, record.state), (ids[7], LinkState::Active));
        assert_eq!(record.secret, Some(ids[7].to_be_bytes().to_vec()));
        assert_eq!(db.due_links().unwrap().len(), 500);

        // One existing link in a batch rolls the whole batch back.
        let clash = vec![new_link("new@contoso.test"), new_link("USER3@contoso.test")];
        assert!(db.insert_links(&clash, 6, |_, _| Ok(vec![])).is_err());
        assert!(db.link_record("alice", "new@contoso.test").unwrap().is_none());
        // So does a seal that fails.
        let fresh = vec![new_link("a@x.test"), new_link("b@x.test")];
        let mut n = 0;
        let failing = |_: i64, _: &NewLink| {
            n += 1;
            if n == 2 { Err(StoreError::Stopped) } else { Ok(vec![]) }
        };
        assert!(db.insert_links(&fresh, 6, failing).is_err());
        assert_eq!(db.links(None).unwrap().len(), 500);
    }

    #[test]
    fn a_failed_seal_leaves_no_link() {
        let mut conn = db();
        let mut db = Db::new(&mut conn);
        let err = db.save_link(&new_link("a@contoso.test"), 1, None, |_| Err(StoreError::Stopped));
        assert!(err.is_err());
        assert!(db.links(None).unwrap().is_empty());
    }

    #[test]
    fn the_link_limit_counts_the_owners_links_where_the_link_is_stored() {
        let mut conn = db();
        let mut db = Db::new(&mut conn);
        let save = |db: &mut Db, email: &str, uid: u32| {
            let link = NewLink { uid: Some(uid), ..new_link(email) };
            db.save_link(&link, 1, Some(2), |_| Ok(vec![]))
        };
        save(&mut db, "a@contoso.test", 1001).unwrap();
        save(&mut db, "b@contoso.test", 1001).unwrap();
        let refused = save(&mut db, "c@contoso.test", 1001).unwrap_err();
        assert!(matches!(refused, StoreError::TooManyLinks { limit: 2 }), "{refused}");
        assert_eq!(db.links(None).unwrap().len(), 2, "nothing was stored");
        // A re-link is not a new link.
        save(&mut db, "b@contoso.test", 1001).unwrap();
        // An account created again under the name (another uid) has its own count.
        let owner = Owner { name: "alice".into(), uid: Some(1002) };
        assert_eq!(db.link_count(&owner).unwrap(), 0);
        save(&mut db, "c@contoso.test", 1002).unwrap();
    }

    #[test]
    fn stale_outcomes_are_ignored() {
        let mut conn = db();
        let mut db = Db::new(&mut conn);
        db.save_link(&new_link("a@contoso.test"), 1, None, |_| Ok(vec![])).unwrap();
        let record = db.link_record("alice", "a@contoso.test").unwrap().unwrap();
        db.save_link(&new_link("a@contoso.test"), 2, None, |_| Ok(vec![])).unwrap();
        let failed = Outcome::Failed { failure: Failure::reauth("HTTP 401"), next_attempt: None };
        assert_eq!(db.record_outcome(record.id, record.generation, &failed, 3).unwrap(), None);
        assert!(!db.store_refreshed_secret(record.id, record.generation, b"x", 9, 3).unwrap());
        assert_eq!(db.link_info(record.id).unwrap().unwrap().state, LinkState::Active);
    }

    #[test]
    fn outcomes_move_states_and_report_transitions() {
        let mut conn = db();
        let mut db = Db::new(&mut conn);
        db.save_link(&new_link("a@contoso.test"), 1, None, |_| Ok(vec![])).unwrap();
        let r = db.link_record("alice", "a@contoso.test").unwrap().unwrap();
        let busy = Outcome::Failed {
            failure: Failure::transient("ErrorServerBusy"),
            next_attempt: Some(50),
        };
        let t = db.record_outcome(r.id, r.generation, &busy, 5).unwrap().unwrap();
        assert_eq!((t.previous, t.link.state), (Some(LinkState::Active), LinkState::Degraded));
        assert_eq!(t.link.reason.as_deref(), Some("ErrorServerBusy"));
        assert_eq!(db.record_outcome(r.id, r.generation, &busy, 6).unwrap(), None, "same state");
        assert_eq!(db.link_record_by_id(r.id).unwrap().unwrap().failures, 2);
        let healthy = Outcome::Healthy { report: CheckReport::default(), next_check: 99 };
        let t = db.record_outcome(r.id, r.generation, &healthy, 7).unwrap().unwrap();
        assert_eq!((t.link.state, t.link.reason, t.link.since), (LinkState::Active, None, 7));
        assert_eq!(
            db.due_links().unwrap(),
            vec![Timers {
                id: r.id,
                state: LinkState::Active,
                actor: None,
                next_check: Some(99),
                token_expiry: None,
                token_issued: None,
                server: Server::of_url("https://MAIL.contoso.test/EWS/Exchange.asmx"),
                owner: Some(1001),
            }]
        );
        assert!(Server::of_url("https://MAIL.contoso.test/").is_some());
        assert_ne!(Server::of_url("https://mail.contoso.test/"), Server::of_url("https://x.test/"));
        assert_eq!(
            db.link_record_by_id(r.id).unwrap().unwrap().timers(),
            db.due_links().unwrap()[0]
        );
    }

    #[test]
    fn blocks_remember_who_must_act_and_operator_blocks_are_rechecked_on_demand() {
        let mut conn = db();
        let mut db = Db::new(&mut conn);
        db.save_link(&new_link("a@contoso.test"), 1, None, |_| Ok(vec![])).unwrap();
        db.save_link(&new_link("b@contoso.test"), 1, None, |_| Ok(vec![])).unwrap();
        let a = db.link_record("alice", "a@contoso.test").unwrap().unwrap();
        let b = db.link_record("alice", "b@contoso.test").unwrap().unwrap();
        let operator = Outcome::Failed {
            failure: Failure::blocked("invalid_client (AADSTS7000222)", Actor::Operator),
            next_attempt: Some(21_600),
        };
        let tenant = Outcome::Failed {
            failure: Failure::blocked("AADSTS53003", Actor::TenantAdmin),
            next_attempt: Some(86_400),
        };
        db.record_outcome(a.id, a.generation, &operator, 10).unwrap();
        db.record_outcome(b.id, b.generation, &tenant, 10).unwrap();
        let timers = db.timers(a.id).unwrap().unwrap();
        assert_eq!((timers.state, timers.actor), (LinkState::Blocked, Some(Actor::Operator)));
        assert_eq!(db.due_links().unwrap().len(), 2, "blocked links are loaded at start");

        let rechecked = db.recheck_blocked(Actor::Operator, 500).unwrap();
        assert_eq!(rechecked.len(), 1);
        assert_eq!((rechecked[0].id, rechecked[0].next_check), (a.id, Some(500)));
        assert_eq!(db.timers(b.id).unwrap().unwrap().next_check, Some(86_400), "tenant waits");

        let healthy = Outcome::Healthy { report: CheckReport::default(), next_check: 900 };
        db.record_outcome(a.id, a.generation, &healthy, 501).unwrap();
        assert_eq!(db.timers(a.id).unwrap().unwrap().actor, None, "healthy: nobody must act");
    }
}
