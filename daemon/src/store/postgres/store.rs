//! The store's operations ([`crate::store::Store`]'s list, `store/ops.rs`) on PostgreSQL: the
//! same rows, rules and answers as SQLite's `Db`, as SQL for a server that several daemons share.
//!
//! Each write is one transaction. Where SQLite's one writer made a rule hold by itself,
//! PostgreSQL is told: a round's outcome and `enable`/`disable` lock the rows they read
//! (`FOR UPDATE`), and `connect` counts a user's links under a lock on that user's name
//! (`pg_advisory_xact_lock`), so connects racing on two daemons cannot pass the limit together.
//! Reads that must agree with each other (`status`, a lookup, the overview) run in one
//! `REPEATABLE READ` read-only transaction: one snapshot, like a SQLite reader's.

use deadpool_postgres::{Object, Pool, Transaction};
use mslink_proto::{
    AccessRequest, AuditEntry, Integration, LinkInfo, LinkState, Provider, RequestReply,
    RequestState, StatusReply, ToggleReply, UnixTime,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::DB_NOW;
use crate::config::PgConfig;
use crate::health::Actor;
use crate::links::{LinkDetails, Server, Timers};
use crate::store::links::parse_provider;
use crate::store::ops::{RECENT_ACTIONS, Release, every_state};
use crate::store::{
    Counts, LinkLookup, LinkRecord, NewLink, Outcome, Overview, Owner, ResourceToken, Seal,
    StoreError, Transition,
};

/// A pool on one organisation's PostgreSQL database, migrated.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: Pool,
    config: std::sync::Arc<PgConfig>,
    counts: std::sync::Arc<Counts>,
}

const RECORD_COLUMNS: &str = r#"id, "user", email, provider, state, generation, details, secret,
    token_expiry, next_check, failures, actor, token_issued, uid"#;

const INFO_COLUMNS: &str = r#"email, "user", provider, state, reason, since, last_ok,
    CASE WHEN state IN ('needs_reauth', 'suspended') THEN NULL ELSE next_check END,
    token_expiry, inbox_total, inbox_unread, calendar_ok, server_version, auth_scheme, endpoint,
    evidence, worked_by"#;

const TIMER_COLUMNS: &str = "id, state, actor, next_check, token_expiry, token_issued,
    CASE WHEN provider = 'exchange' THEN endpoint END, uid";

/// `INSERT` of a new, active link; `$1`..`$16` are [`values`]. It is due at once (`next_due`):
/// whichever daemon claims it first works out its real due time (see [`PgStore::release`]).
const INSERT_LINK: &str = r#"INSERT INTO links ("user", email, provider, state, since, last_ok,
        next_check, token_expiry, inbox_total, inbox_unread, calendar_ok, server_version,
        auth_scheme, endpoint, details, created_at, token_issued, evidence, uid, next_due)
     VALUES ($1, $2, $3, 'active', $4, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $4, $14, $15, $16,
             $4)"#;

/// The condition for an [`Owner`] with its name at `$n` and uid at `$n+1`.
fn owned_by(n: usize) -> String {
    format!(r#""user" = ${n} AND (${m}::BIGINT IS NULL OR uid = ${m})"#, m = n + 1)
}

type Params = Vec<Box<dyn ToSql + Sync + Send>>;

fn refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
}

/// [`INSERT_LINK`]'s parameters for `new`, linked at `now`.
fn values(new: &NewLink, now: UnixTime) -> Params {
    let report = &new.report;
    vec![
        Box::new(new.user.clone()),
        Box::new(new.email.clone()),
        Box::new(new.details.provider().as_str()),
        Box::new(now),
        Box::new(new.next_check),
        Box::new(new.token_expiry),
        Box::new(report.inbox_total.map(|n| n as i64)),
        Box::new(report.inbox_unread.map(|n| n as i64)),
        Box::new(report.calendar_ok),
        Box::new(report.server_version.clone()),
        Box::new(new.details.auth_scheme()),
        Box::new(new.details.endpoint()),
        Box::new(new.details.to_json()),
        Box::new(new.token_issued),
        Box::new(serde_json::to_string(&new.evidence).unwrap_or_else(|_| "[]".into())),
        Box::new(new.uid.map(i64::from)),
    ]
}

fn uid(value: Option<i64>) -> Option<u32> {
    value.and_then(|n| u32::try_from(n).ok())
}

fn state(name: &str) -> LinkState {
    // The CHECK constraints and this crate are the only writers; an unknown name would be a
    // bug, shown as the most alarming state rather than hidden.
    LinkState::parse(name).unwrap_or(LinkState::Blocked)
}

fn record(row: &Row) -> LinkRecord {
    let provider = parse_provider(row.get(3));
    let details: &str = row.get(6);
    LinkRecord {
        id: row.get(0),
        user: row.get(1),
        email: row.get(2),
        provider,
        state: state(row.get(4)),
        generation: row.get(5),
        details: LinkDetails::from_json(provider, details).map_err(|e| e.to_string()),
        secret: row.get(7),
        token_expiry: row.get(8),
        next_check: row.get(9),
        failures: row.get::<_, i32>(10).max(0) as u32,
        actor: row.get::<_, Option<&str>>(11).and_then(Actor::parse),
        token_issued: row.get(12),
        uid: uid(row.get(13)),
    }
}

fn info(row: &Row) -> LinkInfo {
    let count = |i: usize| row.get::<_, Option<i64>>(i).map(|n| n.max(0) as u64);
    LinkInfo {
        email: row.get(0),
        user: row.get(1),
        provider: parse_provider(row.get(2)),
        state: state(row.get(3)),
        reason: row.get(4),
        since: row.get(5),
        last_ok: row.get(6),
        next_check: row.get(7),
        token_expiry: row.get(8),
        inbox_total: count(9),
        inbox_unread: count(10),
        calendar_ok: row.get(11),
        server_version: row.get(12),
        auth_scheme: row.get(13),
        endpoint: row.get(14),
        evidence: serde_json::from_str(row.get(15)).unwrap_or_default(),
        // Depends on `[schedule]` and the time: the status handler fills it in.
        stale: false,
        worked_by: row.get(16),
    }
}

fn timers(row: &Row) -> Timers {
    Timers {
        id: row.get(0),
        state: state(row.get(1)),
        actor: row.get::<_, Option<&str>>(2).and_then(Actor::parse),
        next_check: row.get(3),
        token_expiry: row.get(4),
        token_issued: row.get(5),
        server: row.get::<_, Option<&str>>(6).and_then(Server::of_url),
        owner: uid(row.get(7)),
    }
}

fn request(row: &Row) -> AccessRequest {
    let state: &str = row.get(3);
    AccessRequest {
        user: row.get(0),
        requested_at: row.get(1),
        message: row.get(2),
        state: if state == "granted" { RequestState::Granted } else { RequestState::Pending },
        granted_at: row.get(4),
        granted_by: row.get(5),
    }
}

/// Anything that runs queries: a pooled connection or a transaction on one.
trait Queries: deadpool_postgres::GenericClient {}
impl<T: deadpool_postgres::GenericClient> Queries for T {}

async fn integration(c: &impl Queries) -> Result<Integration, tokio_postgres::Error> {
    let row = c
        .query_one("SELECT enabled, changed_at, changed_by FROM integration WHERE id = 1", &[])
        .await?;
    Ok(Integration { enabled: row.get(0), changed_at: row.get(1), changed_by: row.get(2) })
}

async fn link_info(c: &impl Queries, id: i64) -> Result<Option<LinkInfo>, tokio_postgres::Error> {
    let sql = format!("SELECT {INFO_COLUMNS} FROM links WHERE id = $1");
    Ok(c.query_opt(&sql, &[&id]).await?.as_ref().map(info))
}

async fn link_timers(c: &impl Queries, id: i64) -> Result<Option<Timers>, tokio_postgres::Error> {
    let sql = format!("SELECT {TIMER_COLUMNS} FROM links WHERE id = $1");
    Ok(c.query_opt(&sql, &[&id]).await?.as_ref().map(timers))
}

async fn link_record(
    c: &impl Queries,
    owner: &Owner,
    email: &str,
) -> Result<Option<LinkRecord>, tokio_postgres::Error> {
    let sql = format!("SELECT {RECORD_COLUMNS} FROM links WHERE email = $1 AND {}", owned_by(2));
    let uid = owner.uid.map(i64::from);
    Ok(c.query_opt(&sql, &[&email, &owner.name, &uid]).await?.as_ref().map(record))
}

async fn resource_token(
    c: &impl Queries,
    id: i64,
    resource: &str,
) -> Result<Option<ResourceToken>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT secret, expires_at, issued_at FROM resource_tokens
             WHERE link_id = $1 AND resource = $2",
            &[&id, &resource],
        )
        .await?;
    Ok(row.map(|r| ResourceToken { sealed: r.get(0), expires_at: r.get(1), issued_at: r.get(2) }))
}

async fn request_of(
    c: &impl Queries,
    user: &str,
) -> Result<Option<AccessRequest>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            r#"SELECT "user", requested_at, message, state, granted_at, granted_by FROM requests
               WHERE "user" = $1"#,
            &[&user],
        )
        .await?;
    Ok(row.as_ref().map(request))
}

async fn pending_requests(c: &impl Queries) -> Result<Vec<AccessRequest>, tokio_postgres::Error> {
    let rows = c
        .query(
            r#"SELECT "user", requested_at, message, state, granted_at, granted_by FROM requests
               WHERE state = 'pending' ORDER BY requested_at, "user""#,
            &[],
        )
        .await?;
    Ok(rows.iter().map(request).collect())
}

async fn links(
    c: &impl Queries,
    owner: Option<&Owner>,
) -> Result<Vec<LinkInfo>, tokio_postgres::Error> {
    let rows = match owner {
        Some(owner) => {
            let sql = format!(
                r#"SELECT {INFO_COLUMNS} FROM links WHERE {} ORDER BY "user", email"#,
                owned_by(1)
            );
            c.query(&sql, &[&owner.name, &owner.uid.map(i64::from)]).await?
        }
        None => {
            let sql = format!(r#"SELECT {INFO_COLUMNS} FROM links ORDER BY "user", email"#);
            c.query(&sql, &[]).await?
        }
    };
    Ok(rows.iter().map(info).collect())
}

/// Links per state, from the state index. SQLite keeps these counts in a table its triggers
/// update (schema migration 8); here every daemon of a fleet would update the same few rows and
/// queue behind each other's commits, so PostgreSQL counts instead.
async fn state_counts(c: &impl Queries) -> Result<Vec<(LinkState, usize)>, tokio_postgres::Error> {
    let rows = c.query("SELECT state, COUNT(*) FROM links GROUP BY state", &[]).await?;
    Ok(rows.iter().map(|r| (state(r.get(0)), r.get::<_, i64>(1).max(0) as usize)).collect())
}

async fn insert_audit(
    c: &impl Queries,
    at: UnixTime,
    actor: &str,
    action: &str,
    detail: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "INSERT INTO audit (at, actor, action, detail) VALUES ($1, $2, $3, $4)",
        &[&at, &actor, &action, &detail],
    )
    .await?;
    Ok(())
}

impl PgStore {
    /// A store on `pool`, which [`super::migrate`] has brought to this build's schema.
    pub(crate) fn new(pool: Pool, config: PgConfig, counts: std::sync::Arc<Counts>) -> PgStore {
        PgStore { pool, config: std::sync::Arc::new(config), counts }
    }

    async fn client(&self) -> Result<Object, StoreError> {
        Ok(super::get(&self.pool, &self.config).await?)
    }

    /// `error`, with the server named when it is a connection the server closed (it stopped,
    /// or the network went): a pooled connection fails that way before a new one is tried.
    fn explained(&self, error: StoreError) -> StoreError {
        match error {
            StoreError::Postgres(super::PgError::Db(e)) if e.is_closed() => {
                StoreError::Postgres(super::PgError::Unreachable {
                    server: super::server(&self.config),
                    detail: "the connection was closed".into(),
                })
            }
            other => other,
        }
    }

    /// Runs `reads` in one read-only snapshot.
    async fn snapshot<T>(
        &self,
        reads: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        let read = async {
            let mut client = self.client().await?;
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let result = reads(&tx).await?;
            tx.commit().await?;
            Ok(result)
        };
        read.await.map_err(|e| self.explained(e))
    }

    /// Runs `writes` in one transaction, committed only if it returns `Ok`.
    async fn write<T>(
        &self,
        writes: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let write = async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let result = writes(&tx).await?;
            let committed = tx.commit().await.map_err(StoreError::from);
            self.counts.committed(1);
            committed.map(|()| result)
        };
        write.await.map_err(|e| self.explained(e))
    }

    // ---- reads ----

    pub async fn integration(&self) -> Result<Integration, StoreError> {
        let client = self.client().await?;
        integration(&client).await.map_err(StoreError::from)
    }

    pub async fn link_record(&self, id: i64) -> Result<Option<LinkRecord>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {RECORD_COLUMNS} FROM links WHERE id = $1");
        let row = client.query_opt(&sql, &[&id]).await?;
        Ok(row.as_ref().map(record))
    }

    pub async fn link_info(&self, id: i64) -> Result<Option<LinkInfo>, StoreError> {
        let client = self.client().await?;
        link_info(&client, id).await.map_err(StoreError::from)
    }

    pub async fn timers(&self, id: i64) -> Result<Option<Timers>, StoreError> {
        let client = self.client().await?;
        link_timers(&client, id).await.map_err(StoreError::from)
    }

    pub async fn resource_token(
        &self,
        id: i64,
        resource: &str,
    ) -> Result<Option<ResourceToken>, StoreError> {
        let client = self.client().await?;
        resource_token(&client, id, resource).await.map_err(StoreError::from)
    }

    pub async fn link_ids(
        &self,
        state: Option<LinkState>,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                r#"SELECT id, email FROM links WHERE $1::TEXT IS NULL OR state = $1
                   ORDER BY "user", email"#,
                &[&state.map(LinkState::as_str)],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn pending_requests(&self) -> Result<Vec<AccessRequest>, StoreError> {
        let client = self.client().await?;
        pending_requests(&client).await.map_err(StoreError::from)
    }

    pub async fn lookup(
        &self,
        owner: Owner,
        email: String,
        resource: Option<&'static str>,
    ) -> Result<LinkLookup, StoreError> {
        self.snapshot(async |tx| {
            let found = match link_record(tx, &owner, &email).await? {
                Some(record) => {
                    let token = match resource {
                        Some(resource) => resource_token(tx, record.id, resource).await?,
                        None => None,
                    };
                    Some((record, token))
                }
                None => None,
            };
            Ok(LinkLookup { enabled: integration(tx).await?.enabled, found })
        })
        .await
    }

    pub async fn status(
        &self,
        user: String,
        owner: Option<Owner>,
        admin: bool,
    ) -> Result<StatusReply, StoreError> {
        self.snapshot(async |tx| {
            let (pending_requests, recent_admin_actions) = if admin {
                let rows = tx
                    .query(
                        "SELECT at, actor, action, detail FROM audit ORDER BY id DESC LIMIT $1",
                        &[&i64::from(RECENT_ACTIONS)],
                    )
                    .await?;
                let recent = rows
                    .iter()
                    .map(|r| AuditEntry {
                        at: r.get(0),
                        actor: r.get(1),
                        action: r.get(2),
                        detail: r.get(3),
                    })
                    .collect();
                (Some(pending_requests(tx).await?.len() as u64), recent)
            } else {
                (None, Vec::new())
            };
            Ok(StatusReply {
                integration: integration(tx).await?,
                request: request_of(tx, &user).await?,
                links: links(tx, owner.as_ref()).await?,
                pending_requests,
                recent_admin_actions,
                user,
                admin,
            })
        })
        .await
    }

    pub async fn links_page(
        &self,
        owner: Option<Owner>,
        state: Option<LinkState>,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<LinkInfo>, StoreError> {
        let mut conditions = vec!["TRUE".to_owned()];
        let mut params: Params = Vec::new();
        if let Some(owner) = owner {
            params.push(Box::new(owner.name));
            conditions.push(format!(r#""user" = ${}"#, params.len()));
            if let Some(uid) = owner.uid {
                params.push(Box::new(i64::from(uid)));
                conditions.push(format!("uid = ${}", params.len()));
            }
        }
        if let Some(state) = state {
            params.push(Box::new(state.as_str()));
            conditions.push(format!("state = ${}", params.len()));
        }
        if let Some((user, email)) = after {
            params.push(Box::new(user));
            params.push(Box::new(email));
            let n = params.len();
            conditions.push(format!(r#"("user", email) > (${}, ${n})"#, n - 1));
        }
        let sql = format!(
            r#"SELECT {INFO_COLUMNS} FROM links WHERE {} ORDER BY "user", email LIMIT {limit}"#,
            conditions.join(" AND ")
        );
        let client = self.client().await?;
        let rows = client.query(&sql, &refs(&params)).await?;
        Ok(rows.iter().map(info).collect())
    }

    pub async fn overview(&self, with_links: bool) -> Result<Overview, StoreError> {
        self.snapshot(async |tx| {
            let counts = every_state(&state_counts(tx).await?);
            let links = if with_links { Some(links(tx, None).await?) } else { None };
            Ok(Overview { enabled: integration(tx).await?.enabled, counts, links })
        })
        .await
    }

    pub async fn due_links(&self) -> Result<Vec<Timers>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {TIMER_COLUMNS} FROM links WHERE state IN ('active', 'degraded', 'blocked')"
        );
        let rows = client.query(&sql, &[]).await?;
        Ok(rows.iter().map(timers).collect())
    }

    // ---- writes ----

    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.execute("SELECT 1", &[]).await?;
        Ok(())
    }

    pub async fn bind_owners(
        &self,
        uid_of: impl Fn(&str) -> Option<u32> + Send + 'static,
    ) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let names: Vec<String> = client
            .query(r#"SELECT DISTINCT "user" FROM links WHERE uid IS NULL"#, &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // NSS lookups block: off the runtime.
        let uids = tokio::task::spawn_blocking(move || {
            names.into_iter().filter_map(|n| uid_of(&n).map(|uid| (n, uid))).collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::Commit(e.to_string()))?;
        let mut bound = 0;
        for (name, uid) in uids {
            bound += client
                .execute(
                    r#"UPDATE links SET uid = $2 WHERE "user" = $1 AND uid IS NULL"#,
                    &[&name, &i64::from(uid)],
                )
                .await?;
        }
        Ok(bound as usize)
    }

    pub async fn connect_check(
        &self,
        owner: Owner,
        email: String,
    ) -> Result<crate::store::ConnectCheck, StoreError> {
        self.snapshot(async |tx| {
            let sql = format!("SELECT COUNT(*) FROM links WHERE {}", owned_by(1));
            let count: i64 =
                tx.query_one(&sql, &[&owner.name, &owner.uid.map(i64::from)]).await?.get(0);
            let existing = link_record(tx, &owner, &email).await?;
            Ok(crate::store::ConnectCheck {
                enabled: integration(tx).await?.enabled,
                existing,
                count: count.max(0) as usize,
            })
        })
        .await
    }

    pub async fn save_link(
        &self,
        new: NewLink,
        now: UnixTime,
        limit: Option<usize>,
        seal: Seal,
    ) -> Result<(Transition, Option<Timers>), StoreError> {
        self.write(async |tx| {
            // One user's connects queue here, on every daemon of a fleet.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&new.user]).await?;
            let previous: Option<String> = tx
                .query_opt(
                    r#"SELECT state FROM links WHERE "user" = $1 AND email = $2"#,
                    &[&new.user, &new.email],
                )
                .await?
                .map(|r| r.get(0));
            if let Some(limit) = limit
                && previous.is_none()
            {
                let sql = format!("SELECT COUNT(*) FROM links WHERE {}", owned_by(1));
                let count: i64 =
                    tx.query_one(&sql, &[&new.user, &new.uid.map(i64::from)]).await?.get(0);
                if count.max(0) as usize >= limit {
                    return Err(StoreError::TooManyLinks { limit });
                }
            }
            let sql = format!(
                r#"{INSERT_LINK}
                 ON CONFLICT ("user", email) DO UPDATE SET
                     provider = $3, state = 'active', reason = NULL, actor = NULL,
                     state_before_suspend = NULL, reason_before_suspend = NULL,
                     actor_before_suspend = NULL, since_before_suspend = NULL,
                     since = $4, last_ok = $4, next_check = $5, token_expiry = $6,
                     token_issued = $14, evidence = $15,
                     inbox_total = $7, inbox_unread = $8, calendar_ok = $9, server_version = $10,
                     auth_scheme = $11, endpoint = $12, details = $13, failures = 0,
                     uid = $16, generation = links.generation + 1, next_due = $4
                 RETURNING id"#
            );
            let params = values(&new, now);
            let id: i64 = tx.query_one(&sql, &refs(&params)).await?.get(0);
            let sealed = seal(id)?;
            tx.execute("UPDATE links SET secret = $2 WHERE id = $1", &[&id, &sealed]).await?;
            // A re-link is a new grant: tokens from the old one are not handed out again.
            tx.execute("DELETE FROM resource_tokens WHERE link_id = $1", &[&id]).await?;
            let link = link_info(tx, id).await?.ok_or(StoreError::Stopped)?;
            let timers = link_timers(tx, id).await?;
            let previous = previous.as_deref().and_then(LinkState::parse);
            Ok((Transition { id, link, previous }, timers))
        })
        .await
    }

    pub async fn insert_links(
        &self,
        links: Vec<NewLink>,
        now: UnixTime,
        mut seal: impl FnMut(i64, &NewLink) -> Result<Vec<u8>, StoreError> + Send + 'static,
    ) -> Result<Vec<i64>, StoreError> {
        self.write(async |tx| {
            let insert = tx.prepare(&format!("{INSERT_LINK} RETURNING id")).await?;
            let set_secret = tx.prepare("UPDATE links SET secret = $2 WHERE id = $1").await?;
            let mut ids = Vec::with_capacity(links.len());
            for new in &links {
                let params = values(new, now);
                let id: i64 = tx.query_one(&insert, &refs(&params)).await?.get(0);
                let sealed = seal(id, new)?;
                tx.execute(&set_secret, &[&id, &sealed]).await?;
                ids.push(id);
            }
            Ok(ids)
        })
        .await
    }

    pub async fn store_refreshed_secret(
        &self,
        id: i64,
        generation: i64,
        sealed: Vec<u8>,
        (token_expiry, now): (UnixTime, UnixTime),
        release: Option<Release<'_>>,
    ) -> Result<Option<Timers>, StoreError> {
        let sql = format!(
            "UPDATE links SET secret = $3, token_expiry = $4, token_issued = $5
             WHERE id = $1 AND generation = $2 RETURNING {TIMER_COLUMNS}"
        );
        self.write(async |tx| {
            let row = tx.query_opt(&sql, &[&id, &generation, &sealed, &token_expiry, &now]).await?;
            let stored = row.as_ref().map(timers);
            if let Some(release) = release {
                // Changed meanwhile: the lease is let go all the same, on the link as it is.
                let current = match stored {
                    Some(timers) => Some(timers),
                    None => link_timers(tx, id).await?,
                };
                if let Some(timers) = current {
                    released(tx, id, release, &timers).await?;
                }
            }
            Ok(stored)
        })
        .await
    }

    pub async fn store_resource_token(
        &self,
        id: i64,
        generation: i64,
        link_secret: Vec<u8>,
        resource: &'static str,
        token: ResourceToken,
    ) -> Result<bool, StoreError> {
        self.write(async |tx| {
            let changed = tx
                .execute(
                    "UPDATE links SET secret = $3 WHERE id = $1 AND generation = $2",
                    &[&id, &generation, &link_secret],
                )
                .await?;
            if changed != 1 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO resource_tokens (link_id, resource, secret, expires_at, issued_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (link_id, resource) DO UPDATE SET
                     secret = $3, expires_at = $4, issued_at = $5",
                &[&id, &resource, &token.sealed, &token.expires_at, &token.issued_at],
            )
            .await?;
            Ok(true)
        })
        .await
    }

    pub async fn record_outcome(
        &self,
        id: i64,
        generation: i64,
        outcome: Outcome,
        now: UnixTime,
        release: Option<Release<'_>>,
    ) -> Result<(Option<Transition>, Option<Timers>), StoreError> {
        self.write(async |tx| {
            let (transition, timers) = outcome_in(tx, id, generation, outcome, now).await?;
            if let (Some(release), Some(timers)) = (release, &timers) {
                released(tx, id, release, timers).await?;
            }
            Ok((transition, timers))
        })
        .await
    }
}

/// `record_outcome`'s writes, in `tx`.
async fn outcome_in(
    tx: &Transaction<'_>,
    id: i64,
    generation: i64,
    outcome: Outcome,
    now: UnixTime,
) -> Result<(Option<Transition>, Option<Timers>), StoreError> {
    {
        let previous: Option<String> = tx
            .query_opt(
                "SELECT state FROM links WHERE id = $1 AND generation = $2 FOR UPDATE",
                &[&id, &generation],
            )
            .await?
            .map(|r| r.get(0));
        let previous = previous.as_deref().and_then(LinkState::parse);
        // Gone, changed meanwhile, or disabled while the work ran.
        let Some(previous) = previous.filter(|s| *s != LinkState::Suspended) else {
            return Ok((None, link_timers(tx, id).await?));
        };
        let new_state = match &outcome {
            Outcome::Healthy { report, next_check } => {
                tx.execute(
                    "UPDATE links SET state = 'active', reason = NULL, last_ok = $2,
                                next_check = $3, inbox_total = $4, inbox_unread = $5,
                                calendar_ok = $6, server_version = COALESCE($7, server_version),
                                failures = 0, actor = NULL,
                                since = CASE WHEN state = 'active' THEN since ELSE $2 END
                         WHERE id = $1",
                    &[
                        &id,
                        &now,
                        next_check,
                        &report.inbox_total.map(|n| n as i64),
                        &report.inbox_unread.map(|n| n as i64),
                        &report.calendar_ok,
                        &report.server_version,
                    ],
                )
                .await?;
                LinkState::Active
            }
            Outcome::Failed { failure, next_attempt } => {
                tx.execute(
                    "UPDATE links SET state = $2, reason = $3, next_check = $4,
                                failures = failures + 1, actor = $6,
                                since = CASE WHEN state = $2 THEN since ELSE $5 END
                         WHERE id = $1",
                    &[
                        &id,
                        &failure.state.as_str(),
                        &failure.describe(),
                        next_attempt,
                        &now,
                        &failure.actor.key(),
                    ],
                )
                .await?;
                failure.state
            }
        };
        let timers = link_timers(tx, id).await?;
        if new_state == previous {
            return Ok((None, timers));
        }
        let link = link_info(tx, id).await?.ok_or(StoreError::Stopped)?;
        Ok((Some(Transition { id, link, previous: Some(previous) }), timers))
    }
}

/// Ends `release.owner`'s lease on link `id` (if it is still theirs), its next due time from
/// `timers`, the link as committed in `tx`.
async fn released(
    tx: &Transaction<'_>,
    id: i64,
    release: Release<'_>,
    timers: &Timers,
) -> Result<(), tokio_postgres::Error> {
    let next_due = (release.due)(timers);
    tx.execute(
        "UPDATE links SET lease_owner = NULL, lease_until = NULL, next_due = $3, worked_by = $2
         WHERE id = $1 AND lease_owner = $2",
        &[&id, &release.owner, &next_due],
    )
    .await?;
    Ok(())
}

impl PgStore {
    pub async fn delete_link(
        &self,
        owner: Owner,
        email: String,
        actor: String,
        now: UnixTime,
    ) -> Result<Option<(i64, String, Provider)>, StoreError> {
        self.write(async |tx| {
            let sql = format!(
                "DELETE FROM links WHERE email = $1 AND {} RETURNING id, email, provider",
                owned_by(2)
            );
            let removed = tx
                .query_opt(&sql, &[&email, &owner.name, &owner.uid.map(i64::from)])
                .await?
                .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1), parse_provider(r.get(2))));
            if let Some((_, email, _)) = &removed
                && owner.name != actor
            {
                let detail = format!("{email} of {}", owner.name);
                insert_audit(tx, now, &actor, "disconnect", Some(&detail)).await?;
            }
            Ok(removed)
        })
        .await
    }

    pub async fn set_integration(
        &self,
        enabled: bool,
        actor: String,
        now: UnixTime,
    ) -> Result<(ToggleReply, Vec<(Transition, Option<Timers>)>), StoreError> {
        self.write(async |tx| {
            let was: bool = tx
                .query_one("SELECT enabled FROM integration WHERE id = 1 FOR UPDATE", &[])
                .await
                ?
                .get(0);
            if was == enabled {
                let reply =
                    ToggleReply { enabled, changed: false, granted_requests: 0, links_affected: 0 };
                return Ok((reply, Vec::new()));
            }
            tx.execute(
                "UPDATE integration SET enabled = $1, changed_at = $2, changed_by = $3 WHERE id = 1",
                &[&enabled, &now, &actor],
            )
            .await
            ?;
            let (granted, affected, action, detail): (u64, Vec<Row>, &str, String);
            if enabled {
                granted = tx
                    .execute(
                        "UPDATE requests SET state = 'granted', granted_at = $1, granted_by = $2
                         WHERE state = 'pending'",
                        &[&now, &actor],
                    )
                    .await
                    ?;
                // Each link comes back exactly as it was; the ones that were being looked
                // after are re-checked at once.
                affected = tx
                    .query(
                        "UPDATE links SET state = COALESCE(state_before_suspend, 'active'),
                                reason = reason_before_suspend, actor = actor_before_suspend,
                                since = COALESCE(since_before_suspend, $1),
                                next_check = CASE WHEN COALESCE(state_before_suspend, 'active')
                                                       IN ('active', 'degraded')
                                                  THEN $1 ELSE next_check END,
                                state_before_suspend = NULL, reason_before_suspend = NULL,
                                actor_before_suspend = NULL, since_before_suspend = NULL,
                                generation = generation + 1, next_due = $1
                         WHERE state = 'suspended' RETURNING id, 'suspended'::TEXT",
                        &[&now],
                    )
                    .await
                    ?;
                action = "enable";
                detail = format!("granted {granted} request(s), resumed {} link(s)", affected.len());
            } else {
                granted = 0;
                affected = tx
                    .query(
                        "UPDATE links SET state_before_suspend = state,
                                reason_before_suspend = reason,
                                actor_before_suspend = actor, since_before_suspend = since,
                                state = 'suspended', reason = $2, actor = NULL, since = $1,
                                generation = generation + 1
                         WHERE state != 'suspended' RETURNING id, state_before_suspend",
                        &[&now, &format!("the Microsoft integration was disabled by {actor}")],
                    )
                    .await
                    ?;
                action = "disable";
                detail = format!("suspended {} link(s)", affected.len());
            }
            insert_audit(tx, now, &actor, action, Some(&detail)).await?;
            let mut transitions = Vec::with_capacity(affected.len());
            for row in affected {
                let (id, previous): (i64, Option<String>) = (row.get(0), row.get(1));
                if let Some(link) = link_info(tx, id).await? {
                    let previous = previous.as_deref().and_then(LinkState::parse);
                    let timers = link_timers(tx, id).await?;
                    transitions.push((Transition { id, link, previous }, timers));
                }
            }
            let reply = ToggleReply {
                enabled,
                changed: true,
                granted_requests: granted,
                links_affected: transitions.len() as u64,
            };
            Ok((reply, transitions))
        })
        .await
    }

    /// Stores `candidate` as the fleet's key check unless one is there; the one stored.
    pub async fn key_check(&self, candidate: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        self.write(async |tx| {
            tx.execute(
                "INSERT INTO key_check (id, sealed) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
                &[&candidate],
            )
            .await?;
            Ok(tx.query_one("SELECT sealed FROM key_check WHERE id = 1", &[]).await?.get(0))
        })
        .await
    }

    // ---- leases: which daemon of a fleet works which link ----

    /// Claims up to `limit` links due by `now` whose lease is free or has run out, for `owner`
    /// for `lease` seconds, skipping rows another daemon is claiming at this moment.
    pub async fn claim_due(
        &self,
        owner: &str,
        limit: usize,
        lease: i64,
        now: UnixTime,
    ) -> Result<Vec<Timers>, StoreError> {
        let sql = format!(
            "WITH due AS (
                 SELECT id FROM links
                 WHERE next_due <= $3 AND state IN ('active', 'degraded', 'blocked')
                   AND (lease_until IS NULL OR lease_until < {DB_NOW})
                 ORDER BY next_due LIMIT $4 FOR UPDATE SKIP LOCKED)
             UPDATE links SET lease_owner = $1, lease_until = {DB_NOW} + $2
             WHERE id IN (SELECT id FROM due)
             RETURNING {TIMER_COLUMNS}"
        );
        let limit = limit as i64;
        self.write(async |tx| {
            let rows = tx.query(&sql, &[&owner, &lease, &now, &limit]).await?;
            Ok(rows.iter().map(timers).collect())
        })
        .await
    }

    /// Takes or renews `owner`'s lease on link `id` for `lease` seconds: `None` when it is
    /// `owner`'s now (or the link is gone), else the daemon that holds it.
    pub async fn lease(
        &self,
        id: i64,
        owner: &str,
        lease: i64,
    ) -> Result<Option<String>, StoreError> {
        let sql = format!(
            "UPDATE links SET lease_owner = $2, lease_until = {DB_NOW} + $3
             WHERE id = $1
               AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < {DB_NOW})"
        );
        self.write(async |tx| {
            if tx.execute(&sql, &[&id, &owner, &lease]).await? == 1 {
                return Ok(None);
            }
            let holder =
                tx.query_opt("SELECT lease_owner FROM links WHERE id = $1", &[&id]).await?;
            Ok(holder.and_then(|row| row.get::<_, Option<String>>(0)))
        })
        .await
    }

    /// Ends `owner`'s lease on link `id`, recording that `owner` worked it, and sets its next
    /// due time by `due` from the link as it is now, in the same transaction: a change another
    /// daemon committed while the round ran (a re-link, `enable`) is what the time is read from.
    pub async fn release(&self, id: i64, release: Release<'_>) -> Result<(), StoreError> {
        let sql = format!("SELECT {TIMER_COLUMNS} FROM links WHERE id = $1 FOR UPDATE");
        self.write(async |tx| {
            let Some(row) = tx.query_opt(&sql, &[&id]).await? else { return Ok(()) };
            released(tx, id, release, &timers(&row)).await?;
            Ok(())
        })
        .await
    }

    pub async fn recheck_blocked(
        &self,
        actor: Actor,
        now: UnixTime,
    ) -> Result<Vec<Timers>, StoreError> {
        let sql = format!(
            "UPDATE links SET next_check = $2, next_due = $2 WHERE state = 'blocked' AND actor = $1
             RETURNING {TIMER_COLUMNS}"
        );
        self.write(async |tx| {
            let rows = tx.query(&sql, &[&actor.key(), &now]).await?;
            Ok(rows.iter().map(timers).collect())
        })
        .await
    }

    pub async fn request(
        &self,
        subject: String,
        message: Option<String>,
        actor: String,
        now: UnixTime,
    ) -> Result<RequestReply, StoreError> {
        self.write(async |tx| {
            if integration(tx).await?.enabled {
                return Ok(RequestReply {
                    request: None,
                    updated: false,
                    integration_enabled: true,
                });
            }
            let existed = request_of(tx, &subject).await?.is_some();
            tx.execute(
                r#"INSERT INTO requests ("user", requested_at, message, state)
                   VALUES ($1, $2, $3, 'pending')
                   ON CONFLICT ("user") DO UPDATE SET requested_at = $2,
                       message = COALESCE($3, requests.message), state = 'pending',
                       granted_at = NULL, granted_by = NULL"#,
                &[&subject, &now, &message],
            )
            .await?;
            let request = request_of(tx, &subject).await?;
            if subject != actor {
                let detail = format!("for {subject}");
                insert_audit(tx, now, &actor, "request", Some(&detail)).await?;
            }
            Ok(RequestReply { request, updated: existed, integration_enabled: false })
        })
        .await
    }

    pub async fn audit(
        &self,
        actor: String,
        action: &'static str,
        detail: Option<String>,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.write(async |tx| {
            insert_audit(tx, now, &actor, action, detail.as_deref()).await.map_err(StoreError::from)
        })
        .await
    }
}
