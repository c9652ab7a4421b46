//! The PostgreSQL store (`[store] url`): the groundwork several daemons will share one
//! organisation's state on (SPEC §9). Today it connects, migrates and reports; the store
//! interface that serves links from it comes with the backend-neutral `Store`.
//!
//! Driver: tokio-postgres with deadpool-postgres, not sqlx. tokio-postgres is async-native (no
//! blocking thread, unlike rusqlite), keeps one typed prepared-statement API, and its TLS is a
//! small trait we fill with the rustls already in the tree (`tls.rs`); sqlx would bring its own
//! runtime glue, macros and a second SQLite driver beside rusqlite. deadpool keeps a bounded
//! pool of connections and recycles a broken one.
//!
//! ```text
//!   connect(PgConfig) ─ password_file, ca_file (crate::files) ─▶ Pool ─ first connection ─▶ Ok
//!                                                                   └─ refused/auth/TLS ─▶ PgError
//!   migrate(Pool) ─▶ schema::migrate (one transaction, advisory lock) ─▶ Migrated | TooNew
//!   check(PgConfig) ─▶ connect ─▶ schema::version (read only) ─▶ Checked | TooNew
//! ```
//!
//! Errors name the server (`host:port`) and what to do: start it or fix `[store] url`, fix the
//! password or `pg_hba.conf`, create the database, fix `[store] ca_file`, or run the newer
//! mslinkd.

pub mod schema;
mod store;
mod tls;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;

use crate::config::{PgConfig, STORE_PASSWORD_CREDENTIAL};
use crate::files::{self, FileError, What};

pub use schema::Migrated;
pub use store::PgStore;

/// The database's clock in whole unix seconds, truncated as `crate::now()` truncates (a bare
/// `::BIGINT` cast rounds, putting "now" up to half a second in the future): every lease is
/// timed by it, so daemons whose clocks disagree still agree on when a lease has run out.
pub(crate) const DB_NOW: &str = "FLOOR(EXTRACT(EPOCH FROM clock_timestamp()))::BIGINT";

/// Connections one daemon keeps open at most.
pub const POOL_SIZE: usize = 16;
/// How long a connection attempt may take, unless the URL says (`connect_timeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A failure of the PostgreSQL store, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// `[store] password_file` is missing, unreadable or fails [`crate::files`]'s rule.
    #[error(transparent)]
    Password(#[from] FileError),
    #[error("store CA file (`[store] ca_file`) {path} {detail}", path = .path.display())]
    CaFile { path: std::path::PathBuf, detail: String },
    #[error(
        "cannot reach PostgreSQL at {server}: {detail}; check that the server is running and \
         accepts TCP connections there, and that `[store] url` names it"
    )]
    Unreachable { server: String, detail: String },
    #[error(
        "PostgreSQL at {server} refused role `{user}`: {detail}; check the password in \
         `[store] password_file` (or the systemd credential {STORE_PASSWORD_CREDENTIAL}) and that \
         the server's pg_hba.conf lets `{user}` in from this machine"
    )]
    Auth { server: String, user: String, detail: String },
    #[error(
        "PostgreSQL at {server} has no database `{database}`; create it for the role (`createdb \
         --owner {user} {database}`) or fix `[store] url`"
    )]
    NoDatabase { server: String, user: String, database: String },
    #[error(
        "TLS to PostgreSQL at {server} failed: {detail}; check that the server has TLS on, that \
         `[store] ca_file` holds the CA that issued its certificate, and that the certificate \
         names the host in `[store] url`"
    )]
    Tls { server: String, detail: String },
    #[error(
        "the PostgreSQL database was migrated by a newer mslinkd (schema {found}, this build \
         knows {known}); run that version or restore a backup"
    )]
    TooNew { found: i64, known: i64 },
    #[error("PostgreSQL at {server}: {detail}")]
    Server { server: String, detail: String },
    #[error("PostgreSQL: {}", chain(.0))]
    Db(#[from] tokio_postgres::Error),
}

/// Opens a pool on `config` and one connection through it, so a server that is down, a wrong
/// password, a missing database or a bad certificate is told now, naming the server.
pub async fn connect(config: &PgConfig) -> Result<Pool, PgError> {
    let mut pg = config.connection.clone();
    if let Some(path) = &config.password_file {
        let file = path.clone();
        let text =
            tokio::task::spawn_blocking(move || files::read_to_string(&file, What::StorePassword))
                .await
                .map_err(|e| PgError::Server { server: server(config), detail: e.to_string() })??;
        pg.password(text.trim_end_matches(['\n', '\r']));
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(CONNECT_TIMEOUT);
    }
    if pg.get_application_name().is_none() {
        pg.application_name("mslinkd");
    }
    let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
    let manager = match &config.ca_file {
        Some(path) => {
            let file = path.clone();
            let pem = tokio::task::spawn_blocking(move || {
                files::check_owned(&file, What::StoreCaFile)?;
                std::fs::read(&file).map_err(|e| PgError::CaFile {
                    path: file.clone(),
                    detail: format!("cannot be read: {e}"),
                })
            })
            .await
            .map_err(|e| PgError::Server { server: server(config), detail: e.to_string() })??;
            Manager::from_config(pg, tls::MakeRustls::new(path, &pem)?, manager_config)
        }
        None => Manager::from_config(pg, tokio_postgres::NoTls, manager_config),
    };
    let pool = Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| PgError::Server { server: server(config), detail: e.to_string() })?;
    drop(get(&pool, config).await?);
    Ok(pool)
}

/// A connection from `pool`, with a failure to open one explained ([`PgError`]).
pub async fn get(pool: &Pool, config: &PgConfig) -> Result<deadpool_postgres::Object, PgError> {
    use deadpool_postgres::PoolError;
    pool.get().await.map_err(|e| match e {
        PoolError::Backend(e) => classify(e, config),
        other => PgError::Unreachable { server: server(config), detail: other.to_string() },
    })
}

/// Applies the missing migrations (once across a fleet, [`schema::migrate`]).
pub async fn migrate(pool: &Pool, config: &PgConfig) -> Result<Migrated, PgError> {
    let mut client = get(pool, config).await?;
    schema::migrate(&mut client).await
}

/// What `mslinkd --check-config` found in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The schema version found (0: empty; the daemon creates the schema at start).
    pub found: i64,
    /// The version this build knows.
    pub known: i64,
}

/// Connects and reads the schema version without changing anything; a newer schema is
/// [`PgError::TooNew`].
pub async fn check(config: &PgConfig) -> Result<Checked, PgError> {
    let pool = connect(config).await?;
    let client = get(&pool, config).await?;
    let found = schema::version(&client).await?;
    let known = schema::known();
    if found > known {
        return Err(PgError::TooNew { found, known });
    }
    Ok(Checked { found, known })
}

/// `host:port` of every server `[store] url` names, for messages.
pub fn server(config: &PgConfig) -> String {
    let pg = &config.connection;
    let ports = pg.get_ports();
    pg.get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What a failure to connect means, for the operator.
fn classify(e: tokio_postgres::Error, config: &PgConfig) -> PgError {
    let server = server(config);
    let user = config.connection.get_user().unwrap_or_default().to_owned();
    if let Some(db) = e.as_db_error() {
        let detail = db.message().to_owned();
        let code = db.code();
        return if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            PgError::Auth { server, user, detail }
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            let database = config.connection.get_dbname().unwrap_or_default().to_owned();
            PgError::NoDatabase { server, user, database }
        } else {
            PgError::Server { server, detail }
        };
    }
    let detail = chain(&e);
    let rustls = sources(&e).any(|s| {
        s.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<rustls::Error>())
    });
    if rustls || detail.contains("TLS") {
        PgError::Tls { server, detail }
    } else if detail.contains("password missing") {
        PgError::Auth {
            server,
            user,
            detail: "the server asks for a password and none is configured".into(),
        }
    } else {
        PgError::Unreachable { server, detail }
    }
}

/// `e` and each of its sources.
fn sources<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

/// `e` and its sources as one line, each said once.
fn chain(e: &tokio_postgres::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for part in sources(e).map(ToString::to_string) {
        if !parts.last().is_some_and(|last| last.contains(&part)) {
            parts.push(part);
        }
    }
    parts.join(": ")
}
