//! Three real `mslinkd`s sharing one real PostgreSQL (a throwaway cluster,
//! `mslink_e2e::postgres`) through a refresh and check storm: the work is shared, a daemon
//! killed with `kill -9` has its links taken over once its leases run out, PostgreSQL stopped
//! for a while leaves the daemons running and they resume by themselves, no link is lost or
//! duplicated, monitoring on any daemon sees the whole organisation, and a change fires its hook
//! once, on the daemon that made it.
//!
//! Each daemon reaches the fake token endpoint through its own tagged URL (`/token/dN`), so the
//! fake knows who presented each refresh token: one presented twice by two live daemons (or
//! superseded) is what a fleet must never do, and what Entra ID's replay detection punishes.
//!
//! Needs root (the cluster runs as `postgres`) and Debian's `postgresql` (`bash .ci/setup`).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mslink_bench::fake::{FakeMicrosoft, Stats};
use mslink_bench::seed::{self, Seed};
use mslink_e2e::postgres::Postgres;
use mslink_e2e::{ADMIN, ALICE, Daemon, ensure_accounts, require_root, wait_until};
use mslinkd::config::{Config, Env, StoreBackend};
use mslinkd::store::{Store, postgres};
use mslinkd::vault::Vault;

const LINKS: usize = 90;
const DAEMONS: usize = 3;
/// `[store] lease`: short, so a takeover is quick to see.
const LEASE_SECS: u64 = 5;

fn emails() -> Vec<String> {
    (0..LINKS).map(|i| format!("fleet{i}@contoso.test")).collect()
}

/// A storm's fleet: the fakes, the cluster, the shared key and password, and the daemons.
/// Dropped in order: the daemons before their store and fakes.
struct Fleet {
    daemons: Vec<Daemon>,
    fake: FakeMicrosoft,
    /// Serves the fake; dropped after it.
    _runtime: tokio::runtime::Runtime,
    pg: Postgres,
    _shared: tempfile::TempDir,
}

fn tag(i: usize) -> String {
    format!("d{i}")
}

/// The config of daemon `i` beside the test's own keys: the fleet's key file, the fake's
/// endpoints through its tagged token URL, a storm's schedule, and the shared store.
fn config_of(fake: &FakeMicrosoft, pg: &Postgres, key: &Path, password: &Path, i: usize) -> String {
    format!(
        "key_file = {key:?}\n{}[schedule]\nrefresh_before_expiry = \"1s\"\n\
         check_interval = \"3s\"\nretry_min = \"1s\"\nretry_max = \"2s\"\nmax_concurrent = 8\n\
         [store]\nurl = {:?}\npassword_file = {password:?}\nlease = \"{LEASE_SECS}s\"\n",
        fake.office365_config_tagged(&tag(i)),
        pg.url(),
    )
}

/// Seeds `LINKS` Office365 links whose tokens (2 s of life) expire at once into the cluster,
/// sealed with a new fleet key, then starts the daemons on it.
fn storm() -> Option<Fleet> {
    storm_with(|_| String::new())
}

/// [`storm`], with `extra(i)` added to daemon `i`'s config.
fn storm_with(extra: impl Fn(usize) -> String) -> Option<Fleet> {
    let pg = Postgres::start()?;
    ensure_accounts();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeMicrosoft::start(Duration::from_secs(2))).unwrap();
    let shared = tempfile::tempdir().unwrap();
    let (key, password) = (shared.path().join("fleet.key"), shared.path().join("store-password"));
    pg.write_password_file(&password);
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
    let text = config_of(&fake, &pg, &key, &password, 0);
    let graph = format!("{}/v1.0", fake.url);
    runtime.block_on(async {
        let config = Config::parse(&text, None, &Env { is_root: true, ..Env::default() }).unwrap();
        let StoreBackend::Postgres(pg_config) = config.store else { panic!("a PostgreSQL store") };
        let pool = postgres::connect(&pg_config).await.unwrap();
        postgres::migrate(&pool, &pg_config).await.unwrap();
        let store = Store::postgres(pool, *pg_config);
        // An organisation whose admin turned the integration on.
        store.set_integration(true, "root".into(), now).await.unwrap();
        let vault = Arc::new(Vault::open_or_create(&key).unwrap());
        seed::office365_links_into(&store, &vault, &graph, &seeds).await.unwrap();
    });
    let daemons = (0..DAEMONS)
        .map(|i| Daemon::start(&(config_of(&fake, &pg, &key, &password, i) + &extra(i))))
        .collect();
    Some(Fleet { fake, _runtime: runtime, pg, _shared: shared, daemons })
}

fn status(daemon: &Daemon) -> serde_json::Value {
    daemon.ctl(ALICE, &["--json", "status"]).expect_code(0).json()
}

impl Fleet {
    fn generations(&self) -> Vec<u64> {
        emails().iter().map(|e| self.fake.generation(e)).collect()
    }

    /// Waits up to `limit` for every link to refresh at least `times` more times.
    fn every_link_moves_on(&self, times: u64, limit: Duration) -> bool {
        let before = self.generations();
        wait_until(limit, || self.generations().iter().zip(&before).all(|(g, b)| *g >= b + times))
    }

    /// Every link is listed once and active, as `daemon` sees the organisation.
    fn assert_every_link_once_and_active(&self, daemon: &Daemon) {
        let status = status(daemon);
        let links = status["links"].as_array().unwrap();
        let listed: BTreeSet<String> =
            links.iter().map(|l| l["email"].as_str().unwrap().to_lowercase()).collect();
        assert_eq!(links.len(), LINKS, "duplicate or missing links: {status}");
        assert_eq!(listed, emails().into_iter().collect::<BTreeSet<_>>());
        let unhealthy: Vec<_> = links.iter().filter(|l| l["state"] != "active").collect();
        assert!(unhealthy.is_empty(), "links not active: {unhealthy:#?}");
    }

    fn rejected(&self) -> u64 {
        Stats::get(&self.fake.stats().rejected)
    }
}

#[test]
fn three_daemons_share_a_storm_and_a_killed_ones_links_are_taken_over() {
    if !require_root("three_daemons_share_a_storm_and_a_killed_ones_links_are_taken_over") {
        return;
    }
    let Some(mut fleet) = storm() else { return };
    // The storm is shared: every daemon refreshes a fair part of it (they all look for due
    // work as it falls due, at the start of each second), and each link keeps refreshing.
    assert!(
        fleet.every_link_moves_on(3, Duration::from_secs(60)),
        "the links did not refresh three times in 60 s"
    );
    let shares: Vec<u64> = (0..DAEMONS).map(|i| fleet.fake.refreshed_by(&tag(i))).collect();
    eprintln!("refreshes by daemon: {shares:?}");
    let total: u64 = shares.iter().sum();
    assert!(shares.iter().all(|&n| n * 10 >= total), "the storm was not shared: {shares:?}");
    // `status` on any daemon names who last worked each link.
    let workers: BTreeSet<String> = status(&fleet.daemons[2])["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["worked_by"].as_str().map(|w| w.rsplit_once(':').unwrap().0.to_owned()))
        .collect();
    assert!(workers.len() >= 2, "the links were worked by {workers:?}");

    // Daemon 1's token requests hang, so it is in the middle of refreshes holding their links'
    // leases when it is killed; those links wait for the leases to run out, then the others
    // take them over. The rest never stop.
    fleet.fake.hang_tag(&tag(1));
    assert!(
        wait_until(Duration::from_secs(20), || fleet.fake.hung(&tag(1)).len() >= 3),
        "daemon 1 did not start refreshes that hang"
    );
    let held = fleet.fake.hung(&tag(1));
    let generations: Vec<u64> = held.iter().map(|e| fleet.fake.generation(e)).collect();
    // While daemon 1 lives and its requests are open, its leases keep every other daemon off
    // those links (a request starts with more than half of its lease left, 2.5 s, and is given
    // up only with a quarter left).
    std::thread::sleep(Duration::from_secs(1));
    let touched: Vec<&String> = held
        .iter()
        .zip(&generations)
        .filter(|(e, g)| fleet.fake.generation(e) != **g)
        .map(|(e, _)| e)
        .collect();
    assert!(touched.is_empty(), "links leased by daemon 1 were refreshed by others: {touched:?}");
    fleet.daemons[1].kill9();
    let killed = std::time::Instant::now();
    let refreshed_by_killed = fleet.fake.refreshed_by(&tag(1));
    let taken_over = wait_until(Duration::from_secs(LEASE_SECS + 15), || {
        held.iter().zip(&generations).all(|(e, g)| fleet.fake.generation(e) > *g)
    });
    assert!(taken_over, "links held by the killed daemon were not taken over: {held:?}");
    eprintln!(
        "{} links held by the killed daemon taken over in {:?}",
        held.len(),
        killed.elapsed()
    );
    assert!(
        fleet.every_link_moves_on(3, Duration::from_secs(30)),
        "links stopped refreshing after a daemon was killed"
    );
    assert_eq!(
        fleet.fake.refreshed_by(&tag(1)),
        refreshed_by_killed,
        "the killed daemon refreshed"
    );

    // No refresh token was presented by two live daemons: a token given again was given first
    // to the killed daemon, whose answer died with it.
    let twice: Vec<_> =
        fleet.fake.represented().into_iter().filter(|r| r.first != tag(1)).collect();
    assert!(twice.is_empty(), "refresh tokens presented twice: {twice:#?}");
    assert_eq!(fleet.rejected(), 0, "a superseded refresh token was presented");
    fleet.assert_every_link_once_and_active(&fleet.daemons[0]);
    fleet.assert_every_link_once_and_active(&fleet.daemons[2]);
    // Monitoring on any daemon sees the whole organisation.
    for daemon in [&fleet.daemons[0], &fleet.daemons[2]] {
        let check = daemon.ctl(ADMIN, &["status", "--check"]);
        assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
        assert!(check.stdout.contains(&format!("{LINKS} active")), "{}", check.stdout);
    }
}

#[test]
fn postgres_stopped_for_a_while_leaves_the_daemons_running_and_they_resume() {
    if !require_root("postgres_stopped_for_a_while_leaves_the_daemons_running_and_they_resume") {
        return;
    }
    let Some(mut fleet) = storm() else { return };
    assert!(fleet.every_link_moves_on(2, Duration::from_secs(60)), "the storm did not start");

    fleet.pg.stop();
    // While it is down: the daemons run on, and say what is wrong where users look.
    let server = format!("127.0.0.1:{}", fleet.pg.port());
    let said = fleet.daemons[0].ctl(ALICE, &["status"]);
    assert_ne!(said.code, 0, "status answered without its store: {}", said.stdout);
    assert!(said.stderr.contains(&server), "status names the store's server: {}", said.stderr);
    let before = fleet.generations();
    std::thread::sleep(Duration::from_secs(2 * LEASE_SECS));
    for (i, daemon) in fleet.daemons.iter_mut().enumerate() {
        assert!(daemon.is_running(), "daemon {i} exited while its store was down");
        assert!(
            !daemon.log_lines("the shared store does not answer").is_empty(),
            "daemon {i} did not log that its store is down"
        );
    }
    // Nothing refreshes without the store: no token is presented that could not be kept.
    let during = fleet.generations();
    let moved = before.iter().zip(&during).filter(|(b, d)| d > b).count();
    assert!(moved <= DAEMONS * 8, "{moved} links refreshed with the store down");

    fleet.pg.start_again();
    assert!(
        fleet.every_link_moves_on(3, Duration::from_secs(60)),
        "the links did not resume once PostgreSQL was back"
    );
    for (i, daemon) in fleet.daemons.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(15), || {
                !daemon.log_lines("the shared store answers again").is_empty()
            }),
            "daemon {i} did not resume claiming"
        );
    }
    assert_eq!(fleet.rejected(), 0, "a superseded refresh token was presented");
    // Links that failed while the store was down are checked again and recover.
    assert!(
        wait_until(Duration::from_secs(30), || {
            status(&fleet.daemons[1])["links"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["state"] == "active")
        }),
        "links did not all become active again"
    );
    fleet.assert_every_link_once_and_active(&fleet.daemons[1]);
}

#[test]
fn a_change_fires_its_hook_once_on_the_daemon_that_made_it() {
    if !require_root("a_change_fires_its_hook_once_on_the_daemon_that_made_it") {
        return;
    }
    let hooks = tempfile::tempdir().unwrap();
    let log_of = |i: usize| hooks.path().join(format!("d{i}.log"));
    let Some(fleet) = storm_with(|i| {
        format!(
            "[hooks]\non_state_change = 'echo \"$MSLINK_EVENT $MSLINK_STATE\" >> {}'\n",
            log_of(i).display()
        )
    }) else {
        return;
    };
    assert!(fleet.every_link_moves_on(1, Duration::from_secs(60)), "the storm did not start");
    let lines = |i: usize| -> Vec<String> {
        std::fs::read_to_string(log_of(i)).unwrap_or_default().lines().map(String::from).collect()
    };
    let count = |i: usize, line: &str| lines(i).iter().filter(|l| *l == line).count();
    // Disabled on daemon 0, enabled again on daemon 2: each change fires once, there.
    fleet.daemons[0].ctl(ADMIN, &["disable"]).expect_code(0);
    assert!(
        wait_until(Duration::from_secs(60), || count(0, "link_state suspended") == LINKS),
        "daemon 0's hook did not run once per suspended link: {:?}",
        lines(0)
    );
    fleet.daemons[2].ctl(ADMIN, &["enable"]).expect_code(0);
    assert!(
        wait_until(Duration::from_secs(60), || count(2, "link_state active") == LINKS),
        "daemon 2's hook did not run once per resumed link: {:?}",
        lines(2)
    );
    // Each daemon fired only what it committed.
    assert!(fleet.every_link_moves_on(1, Duration::from_secs(30)), "the links did not resume");
    assert_eq!(count(0, "link_state suspended"), LINKS, "{:?}", lines(0));
    assert_eq!(count(0, "link_state active"), 0, "{:?}", lines(0));
    assert_eq!(count(2, "link_state active"), LINKS, "{:?}", lines(2));
    assert_eq!(count(2, "link_state suspended"), 0, "{:?}", lines(2));
    assert!(lines(1).iter().all(|l| !l.starts_with("link_state")), "{:?}", lines(1));
}
