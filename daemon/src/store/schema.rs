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
    // 8: links per state, kept by the database itself. Counting the state index was still a
    // reader busy for a tenth of a second at a million links on every STATUS= line, metrics
    // scrape and `status --check`; now each write that adds, removes or moves a link between
    // states moves its count in the same transaction, whichever statement did it. (A migration
    // that rebuilds `links` drops these triggers with it and must create them again.)
    r#"
    CREATE TABLE link_counts (
        state  TEXT PRIMARY KEY,
        n      INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO link_counts (state, n) SELECT state, COUNT(*) FROM links GROUP BY state;
    CREATE TRIGGER link_counted AFTER INSERT ON links BEGIN
        INSERT INTO link_counts (state, n) VALUES (new.state, 1)
            ON CONFLICT (state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER link_uncounted AFTER DELETE ON links BEGIN
        UPDATE link_counts SET n = n - 1 WHERE state = old.state;
    END;
    CREATE TRIGGER link_recounted AFTER UPDATE OF state ON links
        WHEN old.state IS NOT new.state BEGIN
        UPDATE link_counts SET n = n - 1 WHERE state = old.state;
        INSERT INTO link_counts (state, n) VALUES (new.state, 1)
            ON CONFLICT (state) DO UPDATE SET n = n + 1;
    END;
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
    use crate::store::queries::tests::{db, insert_link};

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    /// Links per state: `(state, n)` in state order.
    type Counts = Vec<(String, i64)>;

    /// The links per state as a scan of `links` counts them, beside what `link_counts` says.
    fn counts(conn: &Connection) -> (Counts, Counts) {
        let query = |sql: &str| -> Counts {
            let mut stmt = conn.prepare(sql).unwrap();
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
            rows.map(Result::unwrap).collect()
        };
        (
            query("SELECT state, COUNT(*) FROM links GROUP BY state ORDER BY state"),
            query("SELECT state, n FROM link_counts WHERE n > 0 ORDER BY state"),
        )
    }

    /// Stores link number `n` (its own user and address) in `state`.
    fn insert(conn: &Connection, n: i64, state: &str) {
        insert_link(conn, &format!("u{n}"), &format!("{n}@example.com"), state);
    }

    #[test]
    fn links_stored_before_the_counts_existed_are_counted() {
        let mut conn = Connection::open_in_memory().unwrap();
        let before = MIGRATIONS.len() - 1;
        for sql in &MIGRATIONS[..before] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", before as i64).unwrap();
        for (n, state) in ["active", "active", "degraded", "needs_reauth"].iter().enumerate() {
            insert(&conn, n as i64, state);
        }
        migrate(&mut conn).unwrap();
        let (scanned, kept) = counts(&conn);
        assert_eq!(kept, scanned);
        assert_eq!(kept.len(), 3, "{kept:?}");
    }

    #[test]
    fn every_insert_state_change_and_delete_moves_the_counts() {
        let conn = db();
        let states = ["active", "degraded", "needs_reauth", "blocked", "suspended"];
        // A fixed pseudo-random walk: inserts, moves (one link, or many in one statement),
        // updates that leave the state alone, and deletes.
        let mut seed: u64 = 0x6d73_6c69_6e6b;
        let mut next = |below: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % below
        };
        for step in 0..2000i64 {
            let state = states[next(states.len() as u64) as usize];
            let other = states[next(states.len() as u64) as usize];
            match next(6) {
                0 | 1 => insert(&conn, step, state),
                2 => {
                    let sql = "UPDATE links SET state = ?1 WHERE id = (SELECT id FROM links
                               ORDER BY (id * 7919) % 1009 LIMIT 1 OFFSET ?2)";
                    conn.execute(sql, rusqlite::params![state, next(50) as i64]).unwrap();
                }
                3 => {
                    let sql = "UPDATE links SET state = ?1 WHERE state = ?2";
                    conn.execute(sql, rusqlite::params![state, other]).unwrap();
                }
                4 => {
                    let sql = "UPDATE links SET state = state, reason = 'x' WHERE state = ?1";
                    conn.execute(sql, [state]).unwrap();
                }
                _ => {
                    let sql = "DELETE FROM links WHERE id % 5 = ?1 AND state = ?2";
                    conn.execute(sql, rusqlite::params![next(5) as i64, state]).unwrap();
                }
            }
            let (scanned, kept) = counts(&conn);
            assert_eq!(kept, scanned, "after step {step}");
        }
        let (scanned, _) = counts(&conn);
        assert!(scanned.len() >= 3, "the walk kept several states in use: {scanned:?}");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::TooNew { found: 999, .. })));
    }
}
