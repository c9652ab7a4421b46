//! The PostgreSQL store against a real PostgreSQL (a throwaway cluster, `mslink_e2e::postgres`):
//! migrations, their one-at-a-time rule across daemons, a newer schema refused, and the
//! messages an operator gets for a wrong password, a server that is down, a missing database
//! and a certificate from the wrong CA; `mslinkd --check-config` against it; a daemon whose key
//! is not the fleet's refused at start.
//!
//! Needs `bash .ci/setup` (Debian `postgresql`, openssl) and root (the cluster runs as
//! `postgres`).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use mslink_e2e::ews::Pki;
use mslink_e2e::postgres::{DATABASE, Postgres};
use mslinkd::config::{Config, Env, PgConfig, StoreBackend};
use mslinkd::store::postgres::{self, PgError, schema};

/// The `[store]` of a config naming `url`, the password in `dir`, and `extra` keys.
fn store_config(pg: &Postgres, url: &str, dir: &Path, extra: &str) -> PgConfig {
    let password = dir.join("store-password");
    pg.write_password_file(&password);
    let text = format!("[store]\nurl = {url:?}\npassword_file = {password:?}\n{extra}");
    match Config::parse(&text, None, &Env { is_root: true, ..Env::default() }).unwrap().store {
        StoreBackend::Postgres(config) => *config,
        StoreBackend::Sqlite => panic!("a [store] url must select PostgreSQL"),
    }
}

/// SQLite's own tables: `link_counts`, the links per state its triggers keep. PostgreSQL counts
/// its state index instead, because a fleet's daemons all moving the same few count rows would
/// queue behind each other's commits.
const SQLITE_ONLY: &[&str] = &["link_counts"];

/// The column names of every table of the SQLite store, as a fresh `Store::open` creates it,
/// but for [`SQLITE_ONLY`].
fn sqlite_columns() -> Vec<(String, BTreeSet<String>)> {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (store, lock) = mslinkd::store::Store::open(&state).unwrap();
    drop((store, lock));
    let db = rusqlite::Connection::open(state.join(mslinkd::store::DB_FILE)).unwrap();
    let mut tables = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap();
    let names: Vec<String> =
        tables.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
    names
        .into_iter()
        .filter(|table| !SQLITE_ONLY.contains(&table.as_str()))
        .map(|table| {
            let mut info =
                db.prepare(&format!("SELECT name FROM pragma_table_info('{table}')")).unwrap();
            let columns =
                info.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
            (table, columns)
        })
        .collect()
}

async fn pg_columns(client: &tokio_postgres::Client, table: &str) -> BTreeSet<String> {
    let rows = client
        .query(
            "SELECT column_name::TEXT FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1",
            &[&table],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn migrations_create_the_sqlite_schema_plus_due_times_and_leases() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(&pg, &pg.url(), dir.path(), "");
    let pool = postgres::connect(&config).await.unwrap();
    let migrated = postgres::migrate(&pool, &config).await.unwrap();
    assert_eq!((migrated.from, migrated.to), (0, schema::known()));
    let client = postgres::get(&pool, &config).await.unwrap();

    let sqlite = sqlite_columns();
    assert!(sqlite.iter().any(|(t, _)| t == "links"), "the SQLite store has links: {sqlite:?}");
    for (table, mut columns) in sqlite {
        if table == "links" {
            columns
                .extend(["next_due", "lease_owner", "lease_until", "worked_by"].map(String::from));
        }
        assert_eq!(pg_columns(&client, &table).await, columns, "columns of {table}");
    }
    let due_index: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'links' \
             AND indexdef LIKE '%(next_due)%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(due_index, 1, "links.next_due is indexed");

    // UNIQUE (user, email) ignores the address's case, as SQLite's COLLATE NOCASE does.
    let insert = "INSERT INTO links (\"user\", email, provider, state, since, created_at) \
                  VALUES ('alice', $1, 'office365', 'active', 0, 0)";
    client.execute(insert, &[&"Alice@Contoso.test"]).await.unwrap();
    let duplicate = client.execute(insert, &[&"alice@contoso.TEST"]).await.unwrap_err();
    assert_eq!(duplicate.code(), Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION));

    let again = postgres::migrate(&pool, &config).await.unwrap();
    assert_eq!(
        (again.from, again.to),
        (schema::known(), schema::known()),
        "a second run is a no-op"
    );
}

#[tokio::test]
async fn two_daemons_migrating_at_once_both_succeed_and_each_migration_runs_once() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(&pg, &pg.url(), dir.path(), "");
    let (a, b) =
        (postgres::connect(&config).await.unwrap(), postgres::connect(&config).await.unwrap());
    // Hold the migration lock, so both migrators are provably inside, waiting, before either
    // can start: then let go and see who did what.
    let holder_pool = postgres::connect(&config).await.unwrap();
    let mut holder = postgres::get(&holder_pool, &config).await.unwrap();
    let held = holder.transaction().await.unwrap();
    held.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::MIGRATION_LOCK]).await.unwrap();
    let racing = tokio::spawn({
        let config = config.clone();
        async move { tokio::join!(postgres::migrate(&a, &config), postgres::migrate(&b, &config)) }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = held
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "both migrators should wait on the lock ({waiting} do)");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    held.commit().await.unwrap();
    let (first, second) = racing.await.unwrap();
    let mut froms = [first.unwrap().from, second.unwrap().from];
    froms.sort();
    assert_eq!(froms, [0, schema::known()], "one applied everything, the other found it done");
    let client = postgres::get(&holder_pool, &config).await.unwrap();
    let recorded: Vec<i64> = client
        .query("SELECT version FROM mslink_schema ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(recorded, (1..=schema::known()).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_schema_newer_than_this_build_is_refused() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(&pg, &pg.url(), dir.path(), "");
    let pool = postgres::connect(&config).await.unwrap();
    postgres::migrate(&pool, &config).await.unwrap();
    let newer = schema::known() + 1;
    pg.superuser_sql(DATABASE, &format!("INSERT INTO mslink_schema VALUES ({newer}, 0)"));

    let refused = postgres::migrate(&pool, &config).await.unwrap_err();
    assert!(matches!(refused, PgError::TooNew { found, .. } if found == newer), "{refused:?}");
    let message = refused.to_string();
    assert!(
        message.contains("newer mslinkd")
            && message.contains("run that version or restore a backup"),
        "{message}"
    );
    let checked = postgres::check(&config).await.unwrap_err();
    assert!(matches!(checked, PgError::TooNew { .. }), "{checked:?}");
    // Refusing changed nothing.
    assert_eq!(
        pg.superuser_sql(DATABASE, "SELECT max(version) FROM mslink_schema"),
        newer.to_string()
    );
}

#[tokio::test]
async fn a_wrong_password_names_the_server_and_the_password_file() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(&pg, &pg.url(), dir.path(), "");
    std::fs::write(dir.path().join("store-password"), "not-the-password\n").unwrap();
    let refused = postgres::connect(&config).await.unwrap_err();
    assert!(matches!(refused, PgError::Auth { .. }), "{refused:?}");
    let message = refused.to_string();
    let server = format!("127.0.0.1:{}", pg.port());
    assert!(message.contains(&server) && message.contains("`[store] password_file`"), "{message}");
    assert!(message.contains("password authentication failed"), "{message}");
    assert!(!message.contains("not-the-password"), "{message}");
}

#[tokio::test]
async fn a_server_that_is_down_is_named_and_reached_again_once_it_is_back() {
    let Some(mut pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(&pg, &pg.url(), dir.path(), "");
    pg.stop();
    let refused = postgres::connect(&config).await.unwrap_err();
    assert!(matches!(refused, PgError::Unreachable { .. }), "{refused:?}");
    let message = refused.to_string();
    let server = format!("127.0.0.1:{}", pg.port());
    assert!(
        message.contains(&server) && message.contains("check that the server is running"),
        "{message}"
    );
    assert!(message.contains("refused"), "the cause is said: {message}");

    pg.start_again();
    let pool = postgres::connect(&config).await.unwrap();
    postgres::migrate(&pool, &config).await.unwrap();
}

#[tokio::test]
async fn a_missing_database_says_to_create_it() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(&pg, &pg.url_for("org_missing"), dir.path(), "");
    let refused = postgres::connect(&config).await.unwrap_err();
    assert!(matches!(refused, PgError::NoDatabase { .. }), "{refused:?}");
    assert!(refused.to_string().contains("createdb --owner mslink org_missing"), "{refused}");
}

#[tokio::test]
async fn tls_is_verified_against_the_store_ca_file() {
    let pki = Pki::new(&["localhost"], &serde_json::json!({}));
    let Some(pg) = Postgres::start_tls(&pki) else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = format!("ca_file = {:?}\n", pki.ca());
    let config = store_config(&pg, &pg.url(), dir.path(), &ca);
    let pool = postgres::connect(&config).await.unwrap();
    let client = postgres::get(&pool, &config).await.unwrap();
    let ssl: bool = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the connection uses TLS");

    let other = Pki::new(&["localhost"], &serde_json::json!({}));
    let wrong_ca = format!("ca_file = {:?}\n", other.ca());
    let config = store_config(&pg, &pg.url(), dir.path(), &wrong_ca);
    let refused = postgres::connect(&config).await.unwrap_err();
    assert!(matches!(refused, PgError::Tls { .. }), "{refused:?}");
    let message = refused.to_string();
    assert!(
        message.contains("`[store] ca_file`") && message.contains("UnknownIssuer"),
        "{message}"
    );
}

#[test]
fn check_config_connects_and_reports_the_schema_version() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("store-password");
    pg.write_password_file(&password);
    let config_file = dir.path().join("mslinkd.toml");
    std::fs::write(
        &config_file,
        format!(
            "state_dir = {:?}\nsocket = {:?}\n[store]\nurl = {:?}\npassword_file = {password:?}\n",
            dir.path().join("state"),
            dir.path().join("run/mslinkd.sock"),
            pg.url(),
        ),
    )
    .unwrap();
    let check = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mslinkd"))
            .arg("--config")
            .arg(&config_file)
            .arg("--check-config")
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), said)
    };
    let server = format!("127.0.0.1:{}", pg.port());

    let (code, said) = check();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains(&server) && said.contains("holds no mslink schema yet"), "{said}");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = store_config(&pg, &pg.url(), dir.path(), "");
    runtime.block_on(async {
        let pool = postgres::connect(&store).await.unwrap();
        postgres::migrate(&pool, &store).await.unwrap();
    });
    let (code, said) = check();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains(&format!("schema {}", schema::known())), "{said}");

    pg.superuser_sql(
        DATABASE,
        &format!("INSERT INTO mslink_schema VALUES ({}, 0)", schema::known() + 1),
    );
    let (code, said) = check();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("run that version or restore a backup"), "{said}");

    std::fs::write(&password, "wrong\n").unwrap();
    let (code, said) = check();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains(&server) && said.contains("password_file"), "{said}");
}

#[test]
fn a_daemon_whose_postgres_store_does_not_answer_refuses_to_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("mslinkd.toml");
    let state = dir.path().join("state");
    // Port 1 on loopback: nothing listens there.
    std::fs::write(
        &config_file,
        format!(
            "state_dir = {state:?}\nkey_file = {:?}\nsocket = {:?}\n\
             [store]\nurl = \"postgresql://u@127.0.0.1:1/org\"\n",
            dir.path().join("secret.key"),
            dir.path().join("mslinkd.sock"),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mslinkd"))
        .arg("--config")
        .arg(&config_file)
        .env("MSLINK_LOG", "error")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("127.0.0.1:1"), "the server is named: {said}");
    assert!(!state.join("mslink.db").exists(), "no SQLite store was created instead");
}

#[tokio::test]
async fn a_daemon_whose_key_is_not_the_fleets_refuses_to_start() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("store-password");
    pg.write_password_file(&password);
    // Two daemons of one fleet, each with its own state directory and socket; the second was
    // given a key of its own instead of the fleet's.
    let run = |name: &str, key: &str| {
        let text = format!(
            "state_dir = {:?}\nsocket = {:?}\nkey_file = {:?}\n[store]\nurl = {:?}\n\
             password_file = {password:?}\n",
            dir.path().join(name),
            dir.path().join(format!("{name}.sock")),
            dir.path().join(key),
            pg.url(),
        );
        let config = Config::parse(&text, None, &Env { is_root: true, ..Env::default() }).unwrap();
        let listener = mslinkd::Listener::Owned(
            mslinkd::ipc::bind(&config.socket, None).unwrap(),
            config.socket.clone(),
        );
        let shutdown = tokio_util::sync::CancellationToken::new();
        shutdown.cancel();
        mslinkd::run(config, listener, shutdown)
    };
    run("first", "fleet.key").await.unwrap();
    run("again", "fleet.key").await.expect("the fleet's key opens its check");
    let refused = run("second", "own.key").await.unwrap_err();
    let said = refused.to_string();
    assert!(matches!(refused, mslinkd::OpenError::WrongKey(_)), "{said}");
    assert!(said.contains("own.key") && said.contains("copy the key_file"), "{said}");
}
