//! `mslinkd migrate-store`: moves an organisation from its SQLite store (`state_dir`) into the
//! empty PostgreSQL database `[store] url` names, with every row and sealed secret intact.
//!
//! ```text
//!  state_dir lock (no daemon runs) ─▶ SQLite brought to its newest schema ─▶ read-only reads
//!  PostgreSQL: connect, migrate ─▶ BEGIN ─▶ empty? ─▶ every table, column by column name
//!     ─▶ identities past the largest id ─▶ looked-after links due now ─▶ key check ─▶ COMMIT
//! ```
//!
//! Ids are kept (sealed secrets are bound to their link's id) and the secrets are copied byte
//! for byte: they stay sealed by `key_file`, which every daemon of the fleet must then use. The
//! fleet's key check is sealed here with that key, so a daemon given another key refuses to
//! start; which is why `key_file` must already exist and open the first sealed secret before
//! anything is moved (a mistyped path would otherwise make a fresh key the fleet's, one that
//! opens none of the secrets, and the right key would then be refused). Columns are matched by
//! name (PostgreSQL's extra ones, such as leases, keep their defaults); SQLite's 0/1 flags
//! become booleans.

use rusqlite::OptionalExtension;
use rusqlite::types::Value;
use tokio_postgres::types::ToSql;

use super::postgres::DB_NOW;
use super::{DB_FILE, Store, StoreError};
use crate::config::{Config, StoreBackend};
use crate::vault::Vault;

/// The tables moved, in an order their references allow.
const TABLES: &[&str] = &["integration", "requests", "audit", "links", "resource_tokens"];

/// What was moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Rows per table, in [`TABLES`]' order.
    pub rows: Vec<(&'static str, u64)>,
    /// The PostgreSQL server, for the summary.
    pub server: String,
}

/// Why nothing was moved.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(
        "`[store] url` is not set: add the PostgreSQL database to move to under `[store]`, then run \
         migrate-store again"
    )]
    NoTarget,
    #[error("there is no SQLite store to move at {}; check `state_dir`", .0.display())]
    NoSource(std::path::PathBuf),
    #[error(
        "the PostgreSQL database already holds {0}; migrate-store moves into an empty database \
         only (create a new one, or drop what is there)"
    )]
    NotEmpty(String),
    #[error(
        "the key file {} does not exist: point `key_file` at the key the SQLite daemon sealed its \
         secrets with",
        .0.display()
    )]
    NoKey(std::path::PathBuf),
    #[error(
        "the key file {} does not open link {link}'s sealed secret: point `key_file` at the key \
         the SQLite daemon sealed its secrets with",
        .path.display()
    )]
    WrongKey { path: std::path::PathBuf, link: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    #[error("cannot move column {table}.{column}: {detail}")]
    Column { table: String, column: String, detail: String },
}

impl From<tokio_postgres::Error> for TransferError {
    fn from(e: tokio_postgres::Error) -> Self {
        TransferError::Store(e.into())
    }
}

impl From<rusqlite::Error> for TransferError {
    fn from(e: rusqlite::Error) -> Self {
        TransferError::Store(e.into())
    }
}

/// Moves `config`'s SQLite store into its `[store] url` database, in one transaction.
pub async fn migrate_store(config: &Config) -> Result<Moved, TransferError> {
    let StoreBackend::Postgres(pg) = &config.store else {
        return Err(TransferError::NoTarget);
    };
    if !config.state_dir.join(DB_FILE).exists() {
        return Err(TransferError::NoSource(config.state_dir.join(DB_FILE)));
    }
    // The lock (a running daemon holds it: refused, saying to stop it) and the newest SQLite
    // schema, from the store's own open; then the store threads go, the lock stays.
    let state_dir = config.state_dir.clone();
    let (store, lock) = tokio::task::spawn_blocking(move || Store::open(&state_dir))
        .await
        .map_err(|_| StoreError::Stopped)??;
    drop(store);
    let sqlite = rusqlite::Connection::open_with_flags(
        config.state_dir.join(DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )?;
    let vault = the_secrets_key(config, &sqlite)?;

    let pool = super::postgres::connect(pg).await.map_err(StoreError::from)?;
    super::postgres::migrate(&pool, pg).await.map_err(StoreError::from)?;
    let mut client = super::postgres::get(&pool, pg).await.map_err(StoreError::from)?;
    let tx = client.transaction().await?;
    let mut found = Vec::new();
    for (table, what) in [("links", "link"), ("requests", "request"), ("audit", "audit entry")] {
        let n: i64 = tx.query_one(&format!("SELECT COUNT(*) FROM {table}"), &[]).await?.get(0);
        if n > 0 {
            found.push(format!("{n} {what}(s)"));
        }
    }
    if !found.is_empty() {
        return Err(TransferError::NotEmpty(found.join(", ")));
    }

    let mut moved = Moved { server: super::postgres::server(pg), ..Moved::default() };
    for table in TABLES {
        let rows = copy_table(&sqlite, &tx, table).await?;
        moved.rows.push((table, rows));
    }
    for table in ["links", "audit"] {
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                 GREATEST((SELECT MAX(id) FROM {table}), 1))"
            ),
            &[],
        )
        .await?;
    }
    // Due at once: whichever daemon claims a looked-after link works out its real due time.
    tx.execute(
        &format!(
            "UPDATE links SET next_due = {DB_NOW} WHERE state IN ('active', 'degraded', 'blocked')"
        ),
        &[],
    )
    .await?;
    let check = vault.seal(crate::KEY_CHECK, crate::KEY_CHECK)?;
    tx.execute(
        "INSERT INTO key_check (id, sealed) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET sealed = $1",
        &[&check],
    )
    .await?;
    tx.commit().await?;
    drop(lock);
    Ok(moved)
}

/// `config`'s key file, if it exists and opens the first sealed secret in `sqlite`.
fn the_secrets_key(config: &Config, sqlite: &rusqlite::Connection) -> Result<Vault, TransferError> {
    if !config.key_file.exists() {
        return Err(TransferError::NoKey(config.key_file.clone()));
    }
    let vault = Vault::open_or_create(&config.key_file)?;
    let first: Option<(i64, Vec<u8>)> = sqlite
        .query_row(
            "SELECT id, secret FROM links WHERE secret IS NOT NULL ORDER BY id LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if let Some((id, sealed)) = first
        && !crate::links::opens_secret(&vault, id, &sealed)
    {
        return Err(TransferError::WrongKey { path: config.key_file.clone(), link: id });
    }
    Ok(vault)
}

/// Copies `table`'s rows from SQLite into `tx`, column by column name; how many.
async fn copy_table(
    sqlite: &rusqlite::Connection,
    tx: &deadpool_postgres::Transaction<'_>,
    table: &str,
) -> Result<u64, TransferError> {
    let ours: Vec<String> = {
        let mut stmt = sqlite.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
        stmt.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?
    };
    let theirs = tx
        .query(
            "SELECT column_name, data_type FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1",
            &[&table],
        )
        .await?;
    let columns: Vec<(String, String)> = theirs
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
        .filter(|(name, _)| ours.contains(name))
        .collect();
    if table == "integration" {
        // Migration 1 created the one row; the moved one replaces it.
        tx.execute("DELETE FROM integration", &[]).await?;
    }
    let names: Vec<String> = columns.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    let select = format!("SELECT {} FROM {table}", names.join(", "));
    let insert = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.join(", "),
        (1..=names.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
    );
    let rows: Vec<Vec<Value>> = {
        let mut stmt = sqlite.prepare(&select)?;
        stmt.query_map([], |row| (0..columns.len()).map(|i| row.get::<_, Value>(i)).collect())?
            .collect::<Result<_, _>>()?
    };
    let insert = tx.prepare(&insert).await?;
    for row in &rows {
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::with_capacity(row.len());
        for ((column, kind), value) in columns.iter().zip(row) {
            params.push(converted(value, kind).map_err(|detail| TransferError::Column {
                table: table.to_owned(),
                column: column.clone(),
                detail,
            })?);
        }
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        tx.execute(&insert, &refs).await?;
    }
    Ok(rows.len() as u64)
}

/// A SQLite value as the PostgreSQL column of type `kind` takes it.
fn converted(value: &Value, kind: &str) -> Result<Box<dyn ToSql + Sync + Send>, String> {
    Ok(match (value, kind) {
        (Value::Null, "bigint") => Box::new(None::<i64>),
        (Value::Null, "integer") => Box::new(None::<i32>),
        (Value::Null, "boolean") => Box::new(None::<bool>),
        (Value::Null, "bytea") => Box::new(None::<Vec<u8>>),
        (Value::Null, _) => Box::new(None::<String>),
        (Value::Integer(n), "bigint") => Box::new(*n),
        (Value::Integer(n), "integer") => {
            Box::new(i32::try_from(*n).map_err(|_| format!("{n} is out of range"))?)
        }
        (Value::Integer(n), "boolean") => Box::new(*n != 0),
        (Value::Text(text), "text") => Box::new(text.clone()),
        (Value::Blob(bytes), "bytea") => Box::new(bytes.clone()),
        (value, kind) => return Err(format!("a SQLite {value:?} does not fit PostgreSQL {kind}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_values_become_the_postgres_columns_types() {
        assert!(converted(&Value::Integer(1), "boolean").is_ok());
        assert!(converted(&Value::Integer(1 << 40), "integer").is_err());
        assert!(converted(&Value::Text("x".into()), "bigint").is_err());
        assert!(converted(&Value::Null, "bytea").is_ok());
    }
}
