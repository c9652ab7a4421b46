//! The queries, as methods on [`Db`], a borrowed connection on the store thread. Every method that
//! changes more than one row runs in one transaction.

use mslink_proto::{
    AccessRequest, AuditEntry, Integration, LinkInfo, LinkState, Provider, RequestState,
    ToggleReply, UnixTime,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::links::owned_by;
use super::{Owner, StoreError, Transition};

/// A connection borrowed by one store job (a write on the writer, a read on a reader).
#[derive(Debug)]
pub struct Db<'c> {
    pub(super) conn: &'c mut Connection,
}

impl<'c> Db<'c> {
    pub(super) fn new(conn: &'c mut Connection) -> Self {
        Db { conn }
    }

    /// The organisation-wide toggle.
    pub fn integration(&self) -> Result<Integration, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT enabled, changed_at, changed_by FROM integration WHERE id = 1")?
            .query_row([], |row| {
                Ok(Integration {
                    enabled: row.get(0)?,
                    changed_at: row.get(1)?,
                    changed_by: row.get(2)?,
                })
            })?)
    }

    /// Turns the integration on or off, as one transaction with its consequences: enabling grants
    /// every pending request and resumes suspended links (due for a check now); disabling
    /// suspends every link, remembering its state. Recorded in the audit trail when it changes.
    /// Returns the links whose state changed.
    pub fn set_integration(
        &mut self,
        enabled: bool,
        actor: &str,
        now: UnixTime,
    ) -> Result<(ToggleReply, Vec<Transition>), StoreError> {
        let tx = self.conn.savepoint()?;
        let was: bool =
            tx.query_row("SELECT enabled FROM integration WHERE id = 1", [], |r| r.get(0))?;
        if was == enabled {
            let reply =
                ToggleReply { enabled, changed: false, granted_requests: 0, links_affected: 0 };
            return Ok((reply, Vec::new()));
        }
        tx.execute(
            "UPDATE integration SET enabled = ?1, changed_at = ?2, changed_by = ?3 WHERE id = 1",
            params![enabled, now, actor],
        )?;
        let (granted, affected, action, detail): (u64, Vec<(i64, String)>, &str, String);
        if enabled {
            granted = tx.execute(
                "UPDATE requests SET state = 'granted', granted_at = ?1, granted_by = ?2
                 WHERE state = 'pending'",
                params![now, actor],
            )? as u64;
            // Each link comes back exactly as it was (state, reason, who must act, since when);
            // the ones that were being looked after are re-checked at once.
            affected = collect(
                &tx,
                "UPDATE links SET state = COALESCE(state_before_suspend, 'active'),
                        reason = reason_before_suspend, actor = actor_before_suspend,
                        since = COALESCE(since_before_suspend, ?1),
                        next_check = CASE WHEN COALESCE(state_before_suspend, 'active')
                                               IN ('active', 'degraded')
                                          THEN ?1 ELSE next_check END,
                        state_before_suspend = NULL, reason_before_suspend = NULL,
                        actor_before_suspend = NULL, since_before_suspend = NULL,
                        generation = generation + 1
                 WHERE state = 'suspended' RETURNING id, 'suspended'",
                params![now],
            )?;
            action = "enable";
            detail = format!("granted {granted} request(s), resumed {} link(s)", affected.len());
        } else {
            granted = 0;
            affected = collect(
                &tx,
                "UPDATE links SET state_before_suspend = state, reason_before_suspend = reason,
                        actor_before_suspend = actor, since_before_suspend = since,
                        state = 'suspended', reason = ?2, actor = NULL, since = ?1,
                        generation = generation + 1
                 WHERE state != 'suspended' RETURNING id, state_before_suspend",
                params![now, format!("the Microsoft integration was disabled by {actor}")],
            )?;
            action = "disable";
            detail = format!("suspended {} link(s)", affected.len());
        }
        insert_audit(&tx, now, actor, action, Some(&detail))?;
        tx.commit()?;
        let mut transitions = Vec::with_capacity(affected.len());
        for (id, previous) in affected {
            if let Some(link) = self.link_info(id)? {
                transitions.push(Transition { id, link, previous: LinkState::parse(&previous) });
            }
        }
        let reply = ToggleReply {
            enabled,
            changed: true,
            granted_requests: granted,
            links_affected: transitions.len() as u64,
        };
        Ok((reply, transitions))
    }

    /// Records `user`'s request, or updates their earlier one (a granted request becomes pending
    /// again: the integration was disabled since). Returns the request and whether one existed.
    pub fn record_request(
        &mut self,
        user: &str,
        message: Option<&str>,
        now: UnixTime,
    ) -> Result<(AccessRequest, bool), StoreError> {
        let tx = self.conn.savepoint()?;
        let existed = request_of(&tx, user)?.is_some();
        tx.execute(
            "INSERT INTO requests (user, requested_at, message, state) VALUES (?1, ?2, ?3, 'pending')
             ON CONFLICT (user) DO UPDATE SET requested_at = ?2,
                 message = COALESCE(?3, message), state = 'pending',
                 granted_at = NULL, granted_by = NULL",
            params![user, now, message],
        )?;
        let request = request_of(&tx, user)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        tx.commit()?;
        Ok((request, existed))
    }

    /// `user`'s request, pending or granted.
    pub fn request_of(&self, user: &str) -> Result<Option<AccessRequest>, StoreError> {
        request_of(self.conn, user)
    }

    /// Every pending request, oldest first.
    pub fn pending_requests(&self) -> Result<Vec<AccessRequest>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT user, requested_at, message, state, granted_at, granted_by FROM requests
             WHERE state = 'pending' ORDER BY requested_at, user",
        )?;
        let rows = stmt.query_map([], request_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Links of one owner, or of everyone (`None`), ordered by user then email.
    pub fn links(&self, owner: Option<Owner>) -> Result<Vec<LinkInfo>, StoreError> {
        // Two statements, not `?1 IS NULL OR user = ?1`: SQLite cannot use `links_by_user` for
        // that condition, and one user's `status` would scan every link in the organisation.
        match owner {
            Some(owner) => self.links_where(&links_of_owner(), params![owner.name, owner.uid]),
            None => self.links_where("1 ORDER BY user, email", []),
        }
    }

    /// One page of links in (user, email) order: at most `limit` of `user`'s (or everyone's),
    /// only those in `state` if given, after the (user, email) `after`. The key is the
    /// `UNIQUE (user, email)` index, so every page costs the same however deep it is.
    pub fn links_page(
        &self,
        owner: Option<&Owner>,
        state: Option<LinkState>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<LinkInfo>, StoreError> {
        use rusqlite::types::Value;
        let mut conditions = vec!["1".to_owned()];
        let mut params: Vec<Value> = Vec::new();
        // Each `?` in `condition` becomes the number of the value bound for it.
        let mut bind = |condition: &str, values: Vec<Value>| {
            let mut numbered = String::new();
            let mut values = values.into_iter();
            for c in condition.chars() {
                if c == '?' {
                    params.push(values.next().unwrap_or(Value::Null));
                    numbered.push_str(&format!("?{}", params.len()));
                } else {
                    numbered.push(c);
                }
            }
            conditions.push(numbered);
        };
        let text = |s: &str| Value::Text(s.to_owned());
        if let Some(owner) = owner {
            bind("user = ?", vec![text(&owner.name)]);
            if let Some(uid) = owner.uid {
                bind("uid = ?", vec![Value::Integer(uid.into())]);
            }
        }
        if let Some(state) = state {
            bind("state = ?", vec![text(state.as_str())]);
        }
        if let Some((user, email)) = after {
            bind("(user, email) > (?, ?)", vec![text(user), text(email)]);
        }
        let condition = format!("{} ORDER BY user, email LIMIT {limit}", conditions.join(" AND "));
        self.links_where(&condition, rusqlite::params_from_iter(params))
    }

    /// Links matching an SQL condition, as status shows them.
    pub(super) fn links_where(
        &self,
        condition: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<LinkInfo>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&links_sql(condition))?;
        let rows = stmt.query_map(params, |row| {
            let provider: String = row.get(2)?;
            let state: String = row.get(3)?;
            Ok(LinkInfo {
                email: row.get(0)?,
                user: row.get(1)?,
                provider: super::links::parse_provider(&provider),
                // The CHECK constraints and this crate are the only writers; an unknown name would
                // be a bug, shown as the most alarming state rather than hidden.
                state: LinkState::parse(&state).unwrap_or(LinkState::Blocked),
                reason: row.get(4)?,
                since: row.get(5)?,
                last_ok: row.get(6)?,
                next_check: row.get(7)?,
                token_expiry: row.get(8)?,
                inbox_total: count(row.get(9)?),
                inbox_unread: count(row.get(10)?),
                calendar_ok: row.get(11)?,
                server_version: row.get(12)?,
                auth_scheme: row.get(13)?,
                endpoint: row.get(14)?,
                evidence: serde_json::from_str(&row.get::<_, String>(15)?).unwrap_or_default(),
                // Depends on `[schedule]` and the time: the status handler fills it in.
                stale: false,
                // One daemon works every link of its own store.
                worked_by: None,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many links are in each state (states with none left out), as the database keeps
    /// them (schema migration 8's triggers): a read of a handful of rows however many links.
    pub fn state_counts(&self) -> Result<Vec<(LinkState, usize)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(STATE_COUNTS)?;
        let rows = stmt.query_map([], |row| {
            let state: String = row.get(0)?;
            let n: i64 = row.get(1)?;
            Ok((LinkState::parse(&state).unwrap_or(LinkState::Blocked), n as usize))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many links `owner` has (an earlier account of the same name keeps its own).
    pub fn link_count(&self, owner: &Owner) -> Result<usize, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM links WHERE {}", owned_by(1));
        let n: i64 = self.conn.query_row(&sql, params![owner.name, owner.uid], |r| r.get(0))?;
        Ok(n as usize)
    }

    /// Removes a link and its secrets. Returns its id, stored email and provider, or `None` if
    /// there was none.
    pub fn delete_link(
        &mut self,
        owner: impl Into<Owner>,
        email: &str,
    ) -> Result<Option<(i64, String, Provider)>, StoreError> {
        let owner = owner.into();
        Ok(self
            .conn
            .query_row(
                &format!(
                    "DELETE FROM links WHERE email = ?1 AND {} RETURNING id, email, provider",
                    owned_by(2)
                ),
                params![email, owner.name, owner.uid],
                |row| {
                    let provider: String = row.get(2)?;
                    Ok((row.get(0)?, row.get(1)?, super::links::parse_provider(&provider)))
                },
            )
            .optional()?)
    }

    /// Appends to the admin audit trail.
    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        detail: Option<&str>,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        insert_audit(self.conn, now, actor, action, detail)
    }

    /// The newest `limit` audit entries, newest first.
    pub fn recent_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |row| {
            Ok(AuditEntry {
                at: row.get(0)?,
                actor: row.get(1)?,
                action: row.get(2)?,
                detail: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Runs an `UPDATE ... RETURNING id, text` and collects the rows.
fn collect(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<(i64, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// SQLite integers are signed; counts are never negative.
fn count(value: Option<i64>) -> Option<u64> {
    value.map(|n| n.max(0) as u64)
}

fn insert_audit(
    conn: &Connection,
    at: UnixTime,
    actor: &str,
    action: &str,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO audit (at, actor, action, detail) VALUES (?1, ?2, ?3, ?4)",
        params![at, actor, action, detail],
    )?;
    Ok(())
}

fn request_of(conn: &Connection, user: &str) -> Result<Option<AccessRequest>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT user, requested_at, message, state, granted_at, granted_by FROM requests
             WHERE user = ?1",
        )?
        .query_row([user], request_from_row)
        .optional()?)
}

fn request_from_row(row: &Row<'_>) -> rusqlite::Result<AccessRequest> {
    let state: String = row.get(3)?;
    Ok(AccessRequest {
        user: row.get(0)?,
        requested_at: row.get(1)?,
        message: row.get(2)?,
        state: if state == "granted" { RequestState::Granted } else { RequestState::Pending },
        granted_at: row.get(4)?,
        granted_by: row.get(5)?,
    })
}

/// The condition of one user's links, in the order status shows them.
pub(super) fn links_of_owner() -> String {
    format!("{} ORDER BY user, email", owned_by(1))
}

/// The statement that reads links matching `condition` as status shows them.
pub(super) fn links_sql(condition: &str) -> String {
    format!(
        "SELECT email, user, provider, state, reason, since, last_ok,
                CASE WHEN state IN ('needs_reauth', 'suspended') THEN NULL ELSE next_check END,
                token_expiry,
                inbox_total, inbox_unread, calendar_ok, server_version, auth_scheme, endpoint,
                evidence
         FROM links WHERE {condition}"
    )
}

/// [`Db::state_counts`]' statement.
const STATE_COUNTS: &str = "SELECT state, n FROM link_counts WHERE n > 0";

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::health::Actor;

    /// A fresh database in memory, at the newest schema.
    pub(in crate::store) fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        conn
    }

    /// Stores a bare Office365 link of `user` in `state`.
    pub(in crate::store) fn insert_link(conn: &Connection, user: &str, email: &str, state: &str) {
        conn.execute(
            "INSERT INTO links (user, email, provider, state, since, created_at)
             VALUES (?1, ?2, 'office365', ?3, 0, 0)",
            params![user, email, state],
        )
        .unwrap();
    }

    /// SQLite's plan for `sql`, one line a step.
    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map([], |row| row.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn counting_states_reads_the_kept_counts_and_a_state_s_pages_read_the_state_index() {
        let mut conn = db();
        for (n, state) in ["active", "active", "degraded"].iter().enumerate() {
            insert_link(&conn, "alice", &format!("{n}@example.com"), state);
        }
        let counts = Db::new(&mut conn).state_counts().unwrap();
        assert!(counts.contains(&(LinkState::Active, 2)), "{counts:?}");
        assert!(counts.contains(&(LinkState::Degraded, 1)), "{counts:?}");
        let counting = plan(&conn, STATE_COUNTS);
        assert!(!counting.contains("links"), "the links themselves are not read: {counting}");
        let page = plan(
            &conn,
            &links_sql(
                "state = 'needs_reauth' AND (user, email) > ('a', 'b') ORDER BY user, email LIMIT 10",
            ),
        );
        assert!(page.contains("INDEX links_by_state (state=? AND"), "{page}");
        assert!(!page.contains("TEMP B-TREE"), "{page}");
    }

    #[test]
    fn repeating_a_request_updates_it() {
        let mut conn = db();
        let mut db = Db::new(&mut conn);
        let (first, existed) = db.record_request("alice", Some("for CRM"), 10).unwrap();
        assert!(!existed);
        assert_eq!(first.state, RequestState::Pending);
        let (second, existed) = db.record_request("alice", None, 20).unwrap();
        assert!(existed);
        assert_eq!(second.requested_at, 20);
        assert_eq!(second.message.as_deref(), Some("for CRM"), "no new message keeps the old one");
        assert_eq!(db.pending_requests().unwrap().len(), 1);
    }

    #[test]
    fn enabling_grants_pending_requests_and_is_audited_once() {
        let mut conn = db();
        let mut db = Db::new(&mut conn);
        db.record_request("alice", None, 1).unwrap();
        db.record_request("bob", None, 2).unwrap();
        let (reply, _) = db.set_integration(true, "root", 3).unwrap();
        assert_eq!((reply.changed, reply.granted_requests), (true, 2));
        assert!(db.pending_requests().unwrap().is_empty());
        let alice = db.request_of("alice").unwrap().unwrap();
        assert_eq!(
            (alice.state, alice.granted_by.as_deref()),
            (RequestState::Granted, Some("root"))
        );
        assert!(!db.set_integration(true, "root", 4).unwrap().0.changed);
        let audit = db.recent_audit(10).unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!((audit[0].actor.as_str(), audit[0].action.as_str()), ("root", "enable"));
    }

    #[test]
    fn disabling_suspends_links_and_enabling_restores_their_state() {
        let mut conn = db();
        insert_link(&conn, "alice", "alice@contoso.test", "active");
        insert_link(&conn, "bob", "bob@contoso.test", "needs_reauth");
        conn.execute(
            "UPDATE links SET reason = 'AADSTS50173: grant expired', actor = 'user', since = 1,
                    next_check = 77
             WHERE user = 'bob'",
            [],
        )
        .unwrap();
        let mut db = Db::new(&mut conn);
        db.set_integration(true, "root", 1).unwrap();
        let (reply, suspended) = db.set_integration(false, "root", 2).unwrap();
        assert_eq!(reply.links_affected, 2);
        assert_eq!(suspended[1].previous, Some(LinkState::NeedsReauth));
        let links = db.links(None).unwrap();
        assert!(links.iter().all(|l| l.state == LinkState::Suspended));
        assert!(links[0].reason.as_deref().unwrap().contains("disabled by root"));
        let (reply, resumed) = db.set_integration(true, "root", 3).unwrap();
        assert_eq!(reply.links_affected, 2);
        assert!(resumed.iter().all(|t| t.previous == Some(LinkState::Suspended)));
        let links = db.links(None).unwrap();
        assert_eq!(links[0].state, LinkState::Active);
        assert_eq!(links[1].state, LinkState::NeedsReauth);
        assert_eq!(links[0].next_check, Some(3), "resumed links are re-checked promptly");
        let bob = db.link_record("bob", "bob@contoso.test").unwrap().unwrap();
        assert_eq!(
            (links[1].reason.as_deref(), links[1].since, bob.actor, bob.next_check),
            (Some("AADSTS50173: grant expired"), 1, Some(Actor::User), Some(77)),
            "enable restores exactly what disable found"
        );
    }

    #[test]
    fn links_are_scoped_to_their_user_and_matched_case_insensitively() {
        let mut conn = db();
        insert_link(&conn, "alice", "Alice@Contoso.test", "active");
        insert_link(&conn, "bob", "bob@contoso.test", "active");
        let mut db = Db::new(&mut conn);
        assert_eq!(db.links(Some("alice".into())).unwrap().len(), 1);
        assert_eq!(db.links(None).unwrap().len(), 2);
        assert!(db.link_record("alice", "alice@contoso.TEST").unwrap().is_some());
        assert!(db.link_record("bob", "alice@contoso.test").unwrap().is_none());
        assert_eq!(db.delete_link("bob", "alice@contoso.test").unwrap(), None);
        let (_, email, provider) = db.delete_link("alice", "ALICE@contoso.test").unwrap().unwrap();
        assert_eq!((email.as_str(), provider), ("Alice@Contoso.test", Provider::Office365));
    }
}
