//! `kill -9` of the real `mslinkd` binary at random points during a refresh and check storm:
//! afterwards every link is present once, and no rotated refresh token was lost. The fake token
//! endpoint refuses a superseded refresh token (see `mslink_bench::fake`), so a rotation the
//! daemon used but did not keep turns its link `needs_reauth`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mslink_bench::fake::{FakeMicrosoft, Stats};
use mslink_bench::seed::{self, Seed};
use mslink_e2e::{ALICE, Daemon, ensure_accounts, require_root};
use rand::Rng;

const LINKS: usize = 120;
const KILLS: usize = 15;

fn emails() -> Vec<String> {
    (0..LINKS).map(|i| format!("storm{i}@contoso.test")).collect()
}

fn status_of(daemon: &Daemon) -> serde_json::Value {
    daemon.ctl(ALICE, &["--json", "status"]).expect_code(0).json()
}

#[test]
fn kill_9_during_a_refresh_storm_loses_no_link_and_no_refresh_token() {
    if !require_root("kill_9_during_a_refresh_storm_loses_no_link_and_no_refresh_token") {
        return;
    }
    ensure_accounts();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Access tokens live 2 s and are refreshed 1-1.5 s ahead: every link refreshes about once
    // a second, and is checked every few seconds.
    let fake = runtime.block_on(FakeMicrosoft::start(Duration::from_secs(2))).unwrap();
    let (url, office365) = (&fake.url, fake.office365_config());
    let mut daemon = Daemon::start(&format!(
        "{office365}[schedule]\nrefresh_before_expiry = \"1s\"\ncheck_interval = \"3s\"\n\
         retry_min = \"1s\"\nretry_max = \"2s\"\nmax_concurrent = 16\n"
    ));
    daemon.stop();
    let state = daemon.dir.path().join("state");
    let now = mslinkd::now();
    let seeds: Vec<Seed> = emails()
        .into_iter()
        .map(|email| Seed {
            user: ALICE.to_owned(),
            uid: None,
            email,
            token_expiry: now + 2,
            next_check: now,
        })
        .collect();
    runtime
        .block_on(seed::office365_links(
            &state,
            &state.join("secret.key"),
            &format!("{url}/v1.0"),
            &seeds,
        ))
        .unwrap();

    // Each kill lands after a random number of refreshes of its daemon's life, not after a
    // random time: the storm is under way whatever the machine's speed, and with 16 rounds at a
    // time the writer is committing groups throughout.
    let started = Instant::now();
    let mut rng = rand::rng();
    for round in 0..KILLS {
        let before = Stats::get(&fake.stats().refreshed);
        let target = rng.random_range(1..=2 * LINKS as u64);
        daemon.restart();
        let stormed = mslink_e2e::wait_until(Duration::from_secs(30), || {
            Stats::get(&fake.stats().refreshed) - before >= target
        });
        daemon.kill9();
        let during = Stats::get(&fake.stats().refreshed) - before;
        assert!(
            stormed,
            "kill {round}: only {during} of {target} refreshes within 30 s of a start"
        );
        eprintln!("kill {round}: {during} refreshes before the kill");
    }
    assert_eq!(Stats::get(&fake.stats().rejected), 0, "a superseded refresh token was presented");

    // After the last restart every link still refreshes: each moves on by two generations.
    daemon.restart();
    let generations: Vec<u64> = emails().iter().map(|e| fake.generation(e)).collect();
    let moved_on = mslink_e2e::wait_until(Duration::from_secs(20), || {
        emails().iter().zip(&generations).all(|(e, g)| fake.generation(e) >= g + 2)
    });
    let status = status_of(&daemon);
    let links = status["links"].as_array().unwrap();
    let listed: BTreeSet<String> =
        links.iter().map(|l| l["email"].as_str().unwrap().to_lowercase()).collect();
    assert_eq!(links.len(), LINKS, "duplicate or missing links: {status}");
    assert_eq!(listed, emails().into_iter().collect::<BTreeSet<_>>());
    let unhealthy: Vec<_> = links.iter().filter(|l| l["state"] != "active").collect();
    assert!(unhealthy.is_empty(), "links not active after the storm: {unhealthy:?}");
    assert!(moved_on, "some links stopped refreshing after the kills");
    assert_eq!(Stats::get(&fake.stats().rejected), 0, "a superseded refresh token was presented");
    eprintln!(
        "{KILLS} kills in {:.1} s, {} refreshes, {} checks, none refused",
        started.elapsed().as_secs_f64(),
        Stats::get(&fake.stats().refreshed),
        Stats::get(&fake.stats().checks)
    );
    daemon.stop();
}
