//! `mslinkd migrate-store` (the real binary) moving a SQLite store into a real PostgreSQL
//! (a throwaway cluster): every link with its id and sealed secret byte for byte, the request
//! and the audit; a second move into the now full database refused with nothing changed; a move
//! while a daemon holds the state directory, or with a key file that is missing or not the
//! secrets' key, refused; the moved fleet's key check holds.
//!
//! Needs `bash .ci/setup` (Debian `postgresql`) and root (the cluster runs as `postgres`).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use mslink_bench::seed::{self, Seed};
use mslink_e2e::postgres::Postgres;
use mslinkd::config::{Config, Env, StoreBackend};
use mslinkd::store::{Store, postgres};

fn migrate(config: &std::path::Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mslinkd"))
        .arg("--config")
        .arg(config)
        .arg("migrate-store")
        .env("MSLINK_LOG", "error")
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), said)
}

#[tokio::test]
async fn migrate_store_moves_every_link_and_secret_into_an_empty_postgres_once() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (state, key) = (dir.path().join("state"), dir.path().join("secret.key"));
    let password = dir.path().join("store-password");
    pg.write_password_file(&password);
    let text = format!(
        "state_dir = {state:?}\nkey_file = {key:?}\nsocket = {:?}\n[store]\nurl = {:?}\n\
         password_file = {password:?}\n",
        dir.path().join("mslinkd.sock"),
        pg.url()
    );
    let config_file = dir.path().join("mslinkd.toml");
    std::fs::write(&config_file, &text).unwrap();

    // An organisation on SQLite: a request, the integration turned on (granting it, audited),
    // and links with sealed secrets.
    {
        let (store, lock) = Store::open(&state).unwrap();
        store.request("bob".into(), Some("for the CRM".into()), "bob".into(), 100).await.unwrap();
        store.set_integration(true, "root".into(), 200).await.unwrap();
        drop((store, lock));
    }
    let seeds: Vec<Seed> = (0..5)
        .map(|i| Seed {
            user: "alice".into(),
            uid: Some(1001),
            email: format!("m{i}@contoso.test"),
            token_expiry: 5000,
            next_check: 4000,
        })
        .collect();
    seed::office365_links(&state, &key, "https://graph.contoso.test/v1.0", &seeds).await.unwrap();
    let before: Vec<(i64, Option<Vec<u8>>)> = {
        let (store, lock) = Store::open(&state).unwrap();
        let mut rows = Vec::new();
        for (id, _) in store.link_ids(None).await.unwrap() {
            rows.push((id, store.link_record(id).await.unwrap().unwrap().secret));
        }
        drop((store, lock));
        rows
    };
    assert_eq!(before.len(), 5);

    // Refused with a key file that is missing (a mistyped path would make a fresh key the
    // fleet's) or is not the one that sealed the secrets; nothing is moved, no key is made.
    let other_key = dir.path().join("other.key");
    let mistyped = dir.path().join("other.toml");
    std::fs::write(&mistyped, text.replace("secret.key", "other.key")).unwrap();
    let (code, said) = migrate(&mistyped);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("does not exist") && said.contains("other.key"), "{said}");
    assert!(!other_key.exists(), "no key file was made");
    mslinkd::vault::Vault::open_or_create(&other_key).unwrap();
    let (code, said) = migrate(&mistyped);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("does not open link"), "{said}");

    // Refused while a daemon holds the state directory.
    let held = Store::open(&state).unwrap();
    let (code, said) = migrate(&config_file);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("stop it first") && said.contains("nothing was moved"), "{said}");
    drop(held);

    let (code, said) = migrate(&config_file);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("5 links") && said.contains("1 requests"), "{said}");
    assert!(said.contains("key file"), "{said}");

    let config = Config::parse(&text, None, &Env { is_root: true, ..Env::default() }).unwrap();
    let StoreBackend::Postgres(pg_config) = config.store.clone() else { panic!("PostgreSQL") };
    let pool = postgres::connect(&pg_config).await.unwrap();
    let moved = Store::postgres(pool, *pg_config);
    for (id, secret) in &before {
        let record = moved.link_record(*id).await.unwrap().expect("the link kept its id");
        assert_eq!(&record.secret, secret, "link {id}'s sealed secret is byte for byte");
    }
    assert!(moved.integration().await.unwrap().enabled);
    let status = moved.status("root".into(), None, true).await.unwrap();
    assert_eq!(status.links.len(), 5);
    assert!(status.recent_admin_actions.iter().any(|a| a.action == "enable"), "{status:?}");
    let due = moved.claim_due("d", 100, 60, mslinkd::now()).await.unwrap();
    assert_eq!(due.len(), 5, "every moved link is due for the fleet to pick up");

    // A new link gets an id past the moved ones.
    let new = mslinkd::store::NewLink {
        user: "carol".into(),
        uid: Some(1003),
        email: "carol@contoso.test".into(),
        details: mslinkd::links::LinkDetails::Office365(Default::default()),
        report: Default::default(),
        token_expiry: None,
        token_issued: None,
        next_check: 0,
        evidence: Vec::new(),
    };
    let (linked, _) =
        moved.save_link(new, 300, None, Box::new(|_| Ok(b"x".to_vec()))).await.unwrap();
    assert!(linked.id > before.iter().map(|(id, _)| *id).max().unwrap());

    // Once is all: a second move finds the database full and changes nothing.
    let (code, said) = migrate(&config_file);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("already holds 6 link(s)"), "{said}");
    assert_eq!(moved.link_ids(None).await.unwrap().len(), 6);

    // The moved fleet's key check is the state's key: a daemon with another key refuses.
    let other = text.replace("secret.key", "other.key").replace("mslinkd.sock", "other.sock");
    let other = Config::parse(&other, None, &Env { is_root: true, ..Env::default() }).unwrap();
    let listener = mslinkd::Listener::Owned(
        mslinkd::ipc::bind(&other.socket, None).unwrap(),
        other.socket.clone(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    stop.cancel();
    let refused = mslinkd::run(other, listener, stop).await.unwrap_err();
    assert!(matches!(refused, mslinkd::OpenError::WrongKey(_)), "{refused}");
}
