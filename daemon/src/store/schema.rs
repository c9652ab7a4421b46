//! Schema migrations. `PRAGMA user_version` holds how many have been applied; each runs in its own
//! transaction, so a crash mid-migration leaves the previous version intact. Never edit a shipped
//! migration: append a new one.

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: the integration toggle, access requests, the admin audit trail and links.
    r#"
    CREATE TABLE integration (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        enabled     INTEGER NOT NULL,
        changed_at  INTEGER,
        changed_by  TEXT
    );
    INSERT INTO integration (id, enabled) VALUES (1, 0);

    CREATE TABLE requests (
        user          TEXT PRIMARY KEY,
        requested_at  INTEGER NOT NULL,
        message       TEXT,
        state         TEXT NOT NULL CHECK (state IN ('pending', 'granted')),
        granted_at    INTEGER,
        granted_by    TEXT
    );

    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      INTEGER NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        detail  TEXT
    );

    CREATE TABLE links (
        id                      INTEGER PRIMARY KEY,
        user                    TEXT NOT NULL,
        email                   TEXT NOT NULL COLLATE NOCASE,
        provider                TEXT NOT NULL CHECK (provider IN ('office365', 'exchange')),
        state                   TEXT NOT NULL,
        state_before_suspend    TEXT,
        reason                  TEXT,
        since                   INTEGER NOT NULL,
        last_ok                 INTEGER,
        next_check              INTEGER,
        token_expiry            INTEGER,
        inbox_total             INTEGER,
        inbox_unread            INTEGER,
        calendar_ok             INTEGER,
        server_version          TEXT,
        auth_scheme             TEXT,
        endpoint                TEXT,
        failures                INTEGER NOT NULL DEFAULT 0,
        generation              INTEGER NOT NULL DEFAULT 0,
        details                 TEXT NOT NULL DEFAULT '{}',
        secret                  BLOB,
        created_at              INTEGER NOT NULL,
        UNIQUE (user, email)
    );
    CREATE INDEX links_by_user ON links (user);
    "#,
    // 2: who must act on a failed link (blocked links are re-checked by it), what a suspended
    // link was before (so `enable` restores it exactly), and when the access token was issued
    // (a short-lived token is refreshed at half its life at the earliest).
    r#"
    ALTER TABLE links ADD COLUMN actor TEXT;
    ALTER TABLE links ADD COLUMN reason_before_suspend TEXT;
    ALTER TABLE links ADD COLUMN actor_before_suspend TEXT;
    ALTER TABLE links ADD COLUMN since_before_suspend INTEGER;
    ALTER TABLE links ADD COLUMN token_issued INTEGER;
    "#,
    // 3: the evidence that settled the link's provider at connect (SPEC §6), as JSON.
    r#"
    ALTER TABLE links ADD COLUMN evidence TEXT NOT NULL DEFAULT '[]';
    "#,
    // 4: the owner's uid beside their name, so an account deleted and created again under the
    // same name (another uid) does not inherit the old account's links. Links stored before are
    // bound at start to the uid their name has then (`Db::bind_owners`).
    r#"
    ALTER TABLE links ADD COLUMN uid INTEGER;
    "#,
    // 5: access tokens for the link's extra resources (IMAP, POP, SMTP, EWS), from its one refresh
    // token, each sealed with its own expiry; gone with the link.
    r#"
    CREATE TABLE resource_tokens (
        link_id     INTEGER NOT NULL REFERENCES links (id) ON DELETE CASCADE,
        resource    TEXT NOT NULL,
        secret      BLOB NOT NULL,
        expires_at  INTEGER NOT NULL,
        issued_at   INTEGER NOT NULL,
        PRIMARY KEY (link_id, resource)
    );
    "#,
    // 6: the links not yet bound to their owner's uid, which every start looks for: without an
    // index that is a scan of every link (a tenth of a second at a million).
    r#"
    CREATE INDEX links_unbound ON links (user) WHERE uid IS NULL;
    "#,
    // 7: links by state, in status order. Counting links per state (every STATUS= line, each
    // metrics scrape, `status --check`) read every row and sorted them: a reader busy for half a
    // second at a million links, at every start as the schedule loaded on the other, so the
    // first answer waited for both. `status --all --state S` pages come from here too.
    r#"
    CREATE INDEX links_by_state ON links (state, user, email);
    "#,
];

/// Brings the database up to the newest schema this build knows.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::TooNew { found: 999, .. })));
    }
}
