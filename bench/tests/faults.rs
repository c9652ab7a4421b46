//! Faults at the providers and abuse of the socket, against an in-process daemon with seeded
//! links and the fast fakes: links go degraded and recover by themselves, the daemon never has
//! more than `max_concurrent` requests in flight, retries stay bounded during an outage, and
//! floods of silent or oversized connections do not stop other clients' commands.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use mslink_bench::ctl;
use mslink_bench::fake::{FakeMicrosoft, Mode, Stats};
use mslink_bench::seed::{self, Seed};
use mslink_proto::{LinkState, MAX_CLIENT_FRAME};
use mslinkd::config::{Config, Env};
use mslinkd::ipc;
use mslinkd::{Listener, Options, run_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

const LINKS: usize = 24;
const MAX_CONCURRENT: u64 = 4;

struct InProcess {
    socket: PathBuf,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<Result<(), mslinkd::OpenError>>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.served).await.unwrap().unwrap().unwrap();
    }
}

fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid()).unwrap().unwrap().name
}

/// Seeds `links` Office365 links of the current user (tokens expiring in `expires_in`, a
/// check due now) and starts a daemon on them.
async fn start(fake: &FakeMicrosoft, links: usize, expires_in: i64, schedule: &str) -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mslinkd.sock");
    let state = dir.path().join("state");
    let config_file = dir.path().join("mslinkd.toml");
    let (url, office365) = (&fake.url, fake.office365_config());
    std::fs::write(
        &config_file,
        format!(
            "socket = {socket:?}\nstate_dir = {state:?}\n\
             {office365}[schedule]\nmax_concurrent = {MAX_CONCURRENT}\n{schedule}"
        ),
    )
    .unwrap();
    let now = mslinkd::now();
    let seeds: Vec<Seed> = (0..links)
        .map(|i| Seed {
            user: me(),
            uid: None,
            email: format!("f{i}@contoso.test"),
            token_expiry: now + expires_in,
            next_check: now,
        })
        .collect();
    seed::office365_links(&state, &state.join("secret.key"), &format!("{url}/v1.0"), &seeds)
        .await
        .unwrap();
    let config = Config::load(&config_file, true, &Env::default()).unwrap();
    let listener = Listener::Owned(ipc::bind(&socket, None).unwrap(), socket.clone());
    let shutdown = CancellationToken::new();
    let options = Options { env: Env::default(), ..Options::default() };
    let served = tokio::spawn(run_with(config, listener, shutdown.clone(), options));
    InProcess { socket, shutdown, served, _dir: dir }
}

/// How many of my links are in each state.
async fn states(daemon: &InProcess) -> Vec<LinkState> {
    ctl::status(&daemon.socket, false).await.unwrap().links.iter().map(|l| l.state).collect()
}

/// Waits until every link is in `state`; panics with the states seen after `limit`.
async fn wait_all(daemon: &InProcess, state: LinkState, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let seen = states(daemon).await;
        if seen.len() == LINKS && seen.iter().all(|s| *s == state) {
            return;
        }
        assert!(Instant::now() < deadline, "not all {state}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Counts `counter`'s growth over `secs` one-second buckets.
async fn per_second(counter: &AtomicU64, secs: usize) -> Vec<u64> {
    let mut buckets = Vec::with_capacity(secs);
    let mut last = Stats::get(counter);
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = Stats::get(counter);
        buckets.push(now - last);
        last = now;
    }
    buckets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_outages_degrade_links_which_recover_with_bounded_retries() {
    let fake = FakeMicrosoft::start(Duration::from_secs(3600)).await.unwrap();
    let daemon = start(
        &fake,
        LINKS,
        3600,
        "check_interval = \"2s\"\nretry_min = \"1s\"\nretry_max = \"4s\"\n",
    )
    .await;
    wait_all(&daemon, LinkState::Active, Duration::from_secs(20)).await;
    let stats = fake.stats();

    for (mode, retry_after) in [
        (Mode::ServerError, None),
        (Mode::Unavailable { retry_after: 3 }, Some(3)),
        (Mode::Throttled { retry_after: 3 }, Some(3)),
        (Mode::Reset, None),
    ] {
        fake.set_graph_mode(mode);
        wait_all(&daemon, LinkState::Degraded, Duration::from_secs(20)).await;
        // During the outage each link retries on its own backoff: at least retry_min / 2 apart,
        // and never sooner than Retry-After.
        let counter = if mode == Mode::Reset { &stats.resets } else { &stats.graph_requests };
        let buckets = per_second(counter, 6).await;
        let total: u64 = buckets.iter().sum();
        let bound = match retry_after {
            Some(secs) => LINKS as u64 * (6 / secs + 1),
            None => LINKS as u64 * (6 * 2 + 1),
        };
        eprintln!("{mode:?}: attempts per second {buckets:?} (bound {bound} in 6 s)");
        assert!(total <= bound, "{mode:?}: {total} attempts in 6 s, bound {bound}: {buckets:?}");
        assert!(
            buckets.iter().all(|&b| b <= 2 * LINKS as u64),
            "{mode:?}: a burst above two attempts per link per second: {buckets:?}"
        );
        if retry_after.is_some() {
            // Links throttled together do not all come back in the same second.
            assert!(
                buckets.iter().all(|&b| b < LINKS as u64),
                "{mode:?}: every link retried in the same second: {buckets:?}"
            );
        }
        fake.set_graph_mode(Mode::Ok);
        // retry_max is 4 s (or Retry-After 3 s): every link is back within a few seconds.
        wait_all(&daemon, LinkState::Active, Duration::from_secs(20)).await;
    }

    // Slow answers pile requests up, but never beyond max_concurrent.
    fake.set_graph_mode(Mode::Slow(Duration::from_millis(700)));
    tokio::time::sleep(Duration::from_secs(5)).await;
    fake.set_graph_mode(Mode::Ok);
    assert_eq!(Stats::get(&stats.in_flight_max), MAX_CONCURRENT, "the slow phase saturated");
    wait_all(&daemon, LinkState::Active, Duration::from_secs(20)).await;
    assert!(Stats::get(&stats.in_flight_max) <= MAX_CONCURRENT);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_outages_degrade_links_and_lose_no_refresh_token() {
    // Tokens live 3 s and are refreshed 1-1.5 s ahead: every link refreshes every 1.5-2 s.
    let fake = FakeMicrosoft::start(Duration::from_secs(3)).await.unwrap();
    let daemon = start(
        &fake,
        LINKS,
        3,
        "check_interval = \"30s\"\nrefresh_before_expiry = \"1s\"\nretry_min = \"1s\"\nretry_max = \"2s\"\n",
    )
    .await;
    wait_all(&daemon, LinkState::Active, Duration::from_secs(20)).await;
    let stats = fake.stats();
    for mode in [
        Mode::ServerError,
        Mode::Unavailable { retry_after: 1 },
        Mode::Throttled { retry_after: 2 },
        Mode::Reset,
    ] {
        fake.set_token_mode(mode);
        wait_all(&daemon, LinkState::Degraded, Duration::from_secs(20)).await;
        let counter = if mode == Mode::Reset { &stats.resets } else { &stats.token_requests };
        let buckets = per_second(counter, 4).await;
        eprintln!("token {mode:?}: attempts per second {buckets:?}");
        assert!(
            buckets.iter().all(|&b| b <= 2 * LINKS as u64),
            "token {mode:?}: a burst above two attempts per link per second: {buckets:?}"
        );
        fake.set_token_mode(Mode::Ok);
        wait_all(&daemon, LinkState::Active, Duration::from_secs(20)).await;
    }
    // Recovery went through refreshes with the stored (never superseded) refresh tokens.
    assert_eq!(Stats::get(&stats.rejected), 0, "a refresh token was lost");
    let before = Stats::get(&stats.refreshed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(Stats::get(&stats.refreshed) >= before + LINKS as u64, "links stopped refreshing");
    assert!(Stats::get(&stats.in_flight_max) <= MAX_CONCURRENT);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_and_oversized_floods_do_not_stop_other_commands() {
    let fake = FakeMicrosoft::start(Duration::from_secs(3600)).await.unwrap();
    let daemon = start(&fake, 3, 3600, "").await;
    let socket = daemon.socket.clone();

    // 1,000 connections that never speak (each end of each is an fd in this process).
    let mut silent = Vec::with_capacity(1000);
    for _ in 0..1000 {
        silent.push(UnixStream::connect(&socket).await.unwrap());
    }
    // Floods of oversized frames and garbage, from 16 clients, until told to stop.
    let stop = CancellationToken::new();
    let floods: Vec<_> = (0..16)
        .map(|i| {
            let (socket, stop) = (socket.clone(), stop.clone());
            tokio::spawn(async move {
                let mut sent = 0u64;
                while !stop.is_cancelled() {
                    let Ok(mut stream) = UnixStream::connect(&socket).await else { continue };
                    let junk: Vec<u8> = if i % 2 == 0 {
                        ((MAX_CLIENT_FRAME as u32 + 1 + i).to_be_bytes()).to_vec()
                    } else {
                        let mut big = (MAX_CLIENT_FRAME as u32).to_be_bytes().to_vec();
                        big.extend(std::iter::repeat_n(b'{', 4096));
                        big
                    };
                    let _ = stream.write_all(&junk).await;
                    let mut answer = Vec::new();
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        stream.read_to_end(&mut answer),
                    )
                    .await;
                    sent += 1;
                }
                sent
            })
        })
        .collect();

    // Meanwhile every `status` is answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    for _ in 0..20 {
        let status = tokio::time::timeout(Duration::from_secs(5), ctl::status(&socket, false))
            .await
            .expect("status did not answer within 5 s")
            .expect("status failed");
        assert_eq!(status.links.len(), 3);
    }
    let answered_in = started.elapsed();
    stop.cancel();
    let mut flooded = 0;
    for flood in floods {
        flooded += flood.await.unwrap();
    }
    eprintln!(
        "20 status answered in {answered_in:?} beside 1000 silent connections and {flooded} floods"
    );
    assert!(flooded > 16, "the floods did not run");
    drop(silent);
    daemon.stop().await;
}

/// An expired client secret blocks every link on the operator; once the operator has fixed it,
/// a successful reload re-checks them at once (without it they would wait `recheck_blocked`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_blocked_on_the_operator_recover_after_a_reload() {
    let fake = FakeMicrosoft::start(Duration::from_secs(3600)).await.unwrap();
    fake.set_token_mode(Mode::InvalidClient);
    // Tokens expire in 10 s: every link refreshes at once, and is refused.
    let daemon = start(&fake, LINKS, 10, "").await;
    wait_all(&daemon, LinkState::Blocked, Duration::from_secs(20)).await;
    let blocked = ctl::status(&daemon.socket, false).await.unwrap();
    let reason = blocked.links[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("AADSTS7000222") && reason.contains("operator"), "{reason}");

    // The operator renews the secret (the fake accepts the app again) and reloads.
    fake.set_token_mode(Mode::Ok);
    let before = Stats::get(&fake.stats().refreshed);
    let reply = ctl::call(&daemon.socket, mslink_proto::CtlCommand::Reload).await.unwrap();
    let reply: mslink_proto::DaemonFrame = mslink_proto::decode(&reply).unwrap();
    assert!(matches!(reply, mslink_proto::DaemonFrame::Reply { .. }), "{reply:?}");
    wait_all(&daemon, LinkState::Active, Duration::from_secs(20)).await;
    assert!(Stats::get(&fake.stats().refreshed) >= before + LINKS as u64);
    daemon.stop().await;
}
