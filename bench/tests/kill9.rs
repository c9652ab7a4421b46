//! `kill -9` of the real `mslinkd` binary during a refresh and check storm, at random points and
//! exactly inside the store's group commits: afterwards every link is present once, and no
//! rotated refresh token was lost. The fake token endpoint refuses a superseded refresh token once
//! its successor was used (see `mslink_bench::fake`), so a rotation the daemon used but did not
//! keep turns its link `needs_reauth` and counts in `rejected`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mslink_bench::fake::{FakeMicrosoft, Stats};
use mslink_bench::seed::{self, Seed};
use mslink_e2e::{ALICE, Daemon, ensure_accounts, require_root, require_tool};
use rand::Rng;

const LINKS: usize = 120;
const KILLS: usize = 15;

fn emails() -> Vec<String> {
    (0..LINKS).map(|i| format!("storm{i}@contoso.test")).collect()
}

fn status_of(daemon: &Daemon) -> serde_json::Value {
    daemon.ctl(ALICE, &["--json", "status"]).expect_code(0).json()
}

/// A daemon stopped after seeding `LINKS` Office365 links whose tokens expire at once. Access
/// tokens live 2 s and are refreshed 1 s ahead: every link refreshes about once a second, and is
/// checked every 3 s, 16 rounds at a time, so the writer commits groups throughout.
fn seeded_storm() -> (tokio::runtime::Runtime, FakeMicrosoft, Daemon) {
    ensure_accounts();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeMicrosoft::start(Duration::from_secs(2))).unwrap();
    let mut daemon = Daemon::start(&format!(
        "{}[schedule]\nrefresh_before_expiry = \"1s\"\ncheck_interval = \"3s\"\n\
         retry_min = \"1s\"\nretry_max = \"2s\"\nmax_concurrent = 16\n",
        fake.office365_config()
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
            &format!("{}/v1.0", fake.url),
            &seeds,
        ))
        .unwrap();
    (runtime, fake, daemon)
}

/// After the last kill: a fresh start moves every link on by two generations, every link is
/// listed once and active, and no superseded refresh token was ever presented.
fn assert_nothing_lost(fake: &FakeMicrosoft, daemon: &mut Daemon) {
    assert_eq!(Stats::get(&fake.stats().rejected), 0, "a superseded refresh token was presented");
    daemon.restart();
    let generations: Vec<u64> = emails().iter().map(|e| fake.generation(e)).collect();
    let moved_on = mslink_e2e::wait_until(Duration::from_secs(20), || {
        emails().iter().zip(&generations).all(|(e, g)| fake.generation(e) >= g + 2)
    });
    let status = status_of(daemon);
    let links = status["links"].as_array().unwrap();
    let listed: BTreeSet<String> =
        links.iter().map(|l| l["email"].as_str().unwrap().to_lowercase()).collect();
    assert_eq!(links.len(), LINKS, "duplicate or missing links: {status}");
    assert_eq!(listed, emails().into_iter().collect::<BTreeSet<_>>());
    let unhealthy: Vec<_> = links.iter().filter(|l| l["state"] != "active").collect();
    assert!(unhealthy.is_empty(), "links not active after the storm: {unhealthy:?}");
    assert!(moved_on, "some links stopped refreshing after the kills");
    assert_eq!(Stats::get(&fake.stats().rejected), 0, "a superseded refresh token was presented");
    daemon.stop();
}

#[test]
fn kill_9_during_a_refresh_storm_loses_no_link_and_no_refresh_token() {
    if !require_root("kill_9_during_a_refresh_storm_loses_no_link_and_no_refresh_token") {
        return;
    }
    let (_runtime, fake, mut daemon) = seeded_storm();
    // Each kill lands after a random number of refreshes of its daemon's life, not after a
    // random time: the storm is under way whatever the machine's speed.
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
    eprintln!(
        "{KILLS} kills in {:.1} s, {} refreshes, {} checks",
        started.elapsed().as_secs_f64(),
        Stats::get(&fake.stats().refreshed),
        Stats::get(&fake.stats().checks)
    );
    assert_nothing_lost(&fake, &mut daemon);
}

/// The kill lands on the store writer's `n`th `pwrite64`: SQLite writes a transaction's pages
/// to the WAL only at its COMMIT (two writes a frame, its commit frame last, then `fsync`), and
/// the writer commits groups of queued writes, so the daemon dies with a group's commit half
/// written, which SQLite's recovery discards whole. None of that group's writes was answered, so
/// none of its rotated tokens can have been used: the fake's grace for an unused rotation takes
/// the old token back. A writer that answered before its commit, or a round that used a token
/// before its write was answered, shows up as a refused refresh token.
#[test]
fn kill_9_inside_a_group_commit_loses_nothing_acknowledged() {
    let test = "kill_9_inside_a_group_commit_loses_nothing_acknowledged";
    if !require_root(test) || !require_tool("strace", test) {
        return;
    }
    let (_runtime, fake, mut daemon) = seeded_storm();
    let trace = daemon.dir.path().join("writes.trace");
    let mut rng = rand::rng();
    let mut inside = 0;
    for round in 0..KILLS {
        let before = Stats::get(&fake.stats().refreshed);
        // A start writes a few dozen pages; a second of storm a few hundred.
        let n: u32 = rng.random_range(100..800);
        let (trace_arg, inject) =
            (trace.display().to_string(), format!("pwrite64:signal=KILL:when={n}"));
        daemon.restart_under(&[
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=pwrite64,fsync",
            "-e",
            &format!("inject={inject}"),
            "-o",
            &trace_arg,
            "--",
        ]);
        let died = daemon.wait_exit(Duration::from_secs(60));
        daemon.kill9();
        assert!(died, "kill {round}: the writer made fewer than {n} page writes in 60 s");
        let log = std::fs::read_to_string(&trace).unwrap();
        let unsynced = writes_after_last_sync(&log);
        inside += usize::from(unsynced > 0);
        let during = Stats::get(&fake.stats().refreshed) - before;
        eprintln!(
            "kill {round}: at page write {n}, {unsynced} writes into its commit, \
             {during} refreshes before"
        );
    }
    // A kill on the first write of a commit leaves none of it on disk; most land further in.
    assert!(inside > 0, "no kill landed after a commit's first write");
    assert_nothing_lost(&fake, &mut daemon);
}

/// How many `pwrite64`s the killed thread completed since its last `fsync`, from `strace -f`'s
/// log: lines are `TID call(args) = result`, a call other threads interrupted is split into
/// `TID call(args <unfinished ...>` and `TID <... call resumed>) = result`, and the call the
/// kill landed on ends in `= ?`.
fn writes_after_last_sync(trace: &str) -> usize {
    let killed = trace
        .lines()
        .find(|l| l.contains("pwrite64") && l.ends_with("= ?"))
        .and_then(|l| l.split_whitespace().next())
        .expect("strace logged no write cut short by the kill");
    trace
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(killed))
        .filter(|l| !l.ends_with("= ?") && !l.ends_with("<unfinished ...>"))
        .rev()
        .take_while(|l| !l.contains("fsync"))
        .filter(|l| l.contains("pwrite64"))
        .count()
}
