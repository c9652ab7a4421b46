//! `mslink-bench`: mslinkd with N links against fast local fakes of the Microsoft endpoints,
//! printing figures each beside the baseline measured in the same run (see BENCHMARKS.md).
//!
//! ```text
//!  fakes (token + Graph, in this process) ── ceiling: their capacity driven alone
//!  echo server on a Unix socket ──────────── floor: a round trip of the ctl's payload sizes
//!  phase "refresh": seed N links whose tokens expire now ─▶ child mslinkd ─▶ until N refreshed
//!  phase "check":   seed N links due for a check now    ─▶ child mslinkd ─▶ until N checked
//!     each phase: startup to first answer, rate, CPU and RSS of the child alone, ctl p50/p99
//!     with 64 concurrent clients during the storm, `status --all --json` afterwards
//! ```
//!
//! The daemon runs as a child process (this binary re-executed with `--daemon CONFIG`), so its
//! RSS and CPU time are its own, read from `/proc/PID/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

mod fleet;

use clap::Parser;
use mslink_bench::ctl;
use mslink_bench::fake::{FakeMicrosoft, Stats};
use mslink_bench::seed::{self, Seed};
use mslink_proto::CtlCommand;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Benchmarks mslinkd with many links against local fakes of the Microsoft endpoints.
#[derive(Debug, Parser)]
#[command(about, max_term_width = 100)]
struct Args {
    /// Links to seed.
    #[arg(long, default_value_t = 10_000)]
    links: usize,
    /// Shorthand for --links 100000.
    #[arg(long)]
    large: bool,
    /// `[schedule] max_concurrent` for the daemon (and the concurrency driving the ceiling).
    #[arg(long, default_value_t = 16)]
    max_concurrent: usize,
    /// Concurrent `status` clients during each storm.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Storms with 1, 2 and 3 daemons sharing one PostgreSQL (a throwaway cluster; needs root
    /// and Debian's postgresql), instead of the single-daemon SQLite phases.
    #[arg(long)]
    fleet: bool,
    /// Internal: run the daemon on this config (the bench re-executes itself with it).
    #[arg(long, hide = true, value_name = "CONFIG")]
    daemon: Option<PathBuf>,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The steady phase sweeps this many links at least (all of them when there are more), so its
/// figures compare across `--links`: each link is checked every 15 minutes, and its 60-minute
/// token refreshed 5-7.5 minutes before it expires.
const STEADY_SWEEP: usize = 100_000;

/// Checks and refreshes per second that keep `links` links fresh at the defaults.
fn sweep_rates(links: usize) -> (f64, f64) {
    let links = links as f64;
    (links / 900.0, links / (3600.0 - 300.0 * 1.25))
}
/// The production default `refresh_before_expiry`, which the steady phase runs at.
const DEFAULT_AHEAD: i64 = 300;
/// How long the steady phase is measured, after [`STEADY_SETTLE`] and once the daemon has
/// caught up ([`caught_up`]): the links that fell due while the phase was seeded (20 s at a
/// million links), or whose refresh the daemon's spread put before it, are worked then, outside
/// the window.
const STEADY_WINDOW: Duration = Duration::from_secs(20);
const STEADY_SETTLE: Duration = Duration::from_secs(5);
/// The longest the steady phase waits for the daemon to catch up.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(120);

/// Waits until one second's checks and refreshes at the fake are both within a quarter above
/// the sweep's own rates (the backlog is worked off); how long that took.
async fn caught_up(
    fake: &FakeMicrosoft,
    checks_per_s: f64,
    refreshes_per_s: f64,
) -> Result<Duration, Error> {
    let started = Instant::now();
    let done = || (Stats::get(&fake.stats().checks), Stats::get(&fake.stats().refreshed));
    loop {
        let (checks, refreshes) = done();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (checks_after, refreshes_after) = done();
        let (c, r) = ((checks_after - checks) as f64, (refreshes_after - refreshes) as f64);
        if c <= checks_per_s * 1.25 && r <= refreshes_per_s * 1.25 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > CATCH_UP_LIMIT {
            return Err(format!(
                "steady phase: still {c:.0} checks/s and {r:.0} refreshes/s after {} s, \
                 against the sweep's {checks_per_s:.0} and {refreshes_per_s:.0}: the daemon \
                 does not catch up",
                CATCH_UP_LIMIT.as_secs()
            )
            .into());
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mslink-bench: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match &args.daemon {
        Some(config) => runtime.block_on(run_daemon(config)),
        None if args.fleet => {
            let n = if args.large { 100_000 } else { args.links };
            runtime.block_on(fleet::bench(&args, n))
        }
        None => runtime.block_on(bench(&args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mslink-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The child: what `mslinkd --config CONFIG` does, minus logging and systemd.
async fn run_daemon(path: &Path) -> Result<(), Error> {
    use mslinkd::config::{Config, Env};
    let env = Env::from_process();
    let config = Config::load(path, true, &env)?;
    let socket = config.socket.clone();
    let listener = mslinkd::Listener::Owned(mslinkd::ipc::bind(&socket, None)?, socket);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        term.recv().await;
        stop.cancel();
    });
    let options = mslinkd::Options { env, ..mslinkd::Options::default() };
    mslinkd::run_with(config, listener, shutdown, options).await?;
    Ok(())
}

/// The first of the made-up uids of the bench's made-up link owners: above any real account's.
const BENCH_UIDS: u32 = 2_000_000_000;

async fn bench(args: &Args) -> Result<(), Error> {
    let n = if args.large { 100_000 } else { args.links };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "mslink-bench: {n} links, max_concurrent {}, {} ctl clients, {cores} cores",
        args.max_concurrent, args.clients
    );
    let fake = FakeMicrosoft::start(Duration::from_secs(3600)).await?;

    let span = Duration::from_secs(3);
    let before = Ceiling::measure(&fake, args.max_concurrent, span, "ceiling").await?;
    println!(
        "ceiling (fakes driven alone, {} concurrent, kept-alive connections): {:.0} refreshes/s, {:.0} checks/s (3 Graph GETs each)",
        args.max_concurrent, before.refreshes, before.checks
    );

    let refresh = Phase::run(&fake, args, n, Kind::Refresh).await?;
    let check = Phase::run(&fake, args, n, Kind::Check).await?;
    // Taken again once the storms are over: the machine's speed drifts between runs and within
    // one, and the storms' figures are shown against both.
    let after = Ceiling::measure(&fake, args.max_concurrent, span, "ceiling-after").await?;
    println!(
        "ceiling after the storms: {:.0} refreshes/s, {:.0} checks/s",
        after.refreshes, after.checks
    );
    let steady = Phase::run(&fake, args, n, Kind::Steady).await?;
    let floor = echo_floor(args.clients, check.request_bytes, check.reply_bytes).await?;
    let paced_floor = echo_paced(args.clients, check.request_bytes, check.reply_bytes).await?;
    let tokens = token_phase(&fake, args).await?;

    println!();
    println!("| figure | value | baseline |");
    println!("|---|---|---|");
    println!(
        "| refreshes/s sustained (storm, {n} links due at once) | {:.0} | {} |",
        refresh.rate,
        Ceiling::against(refresh.rate, before.refreshes, after.refreshes)
    );
    println!(
        "| checks/s sustained (storm; 3 Graph GETs each) | {:.0} | {} |",
        check.rate,
        Ceiling::against(check.rate, before.checks, after.checks)
    );
    println!(
        "| daemon CPU per refresh / per check | {:.2} / {:.2} ms | |",
        refresh.cpu_per_op * 1e3,
        check.cpu_per_op * 1e3
    );
    println!(
        "| steady sweep of {} links at the defaults ({:.0} checks/s + {:.0} refreshes/s measured over {} s) | {:.2} cores | goal < 0.15 at 100,000, < 0.6 at 1,000,000 |",
        n.max(STEADY_SWEEP),
        steady.rate,
        steady.refresh_rate,
        STEADY_WINDOW.as_secs(),
        steady.cores
    );
    let (per_refresh, per_check, idle) = steady.window.rounds_per_work();
    println!(
        "| background rounds per refresh / per check in the steady sweep (idle rounds) | {per_refresh:.2} / {per_check:.2} ({idle} idle) | goal 1.00 / 1.00 (0 idle) |"
    );
    for phase in [&refresh, &check, &steady] {
        println!(
            "| daemon peak RSS, {} phase | {:.1} MB ({:.2} KB/link); {:.1} MB once `status --all` ran | just after start-up: {:.1} MB |",
            phase.kind.name(),
            mb(phase.work_rss),
            phase.work_rss as f64 / 1024.0 / n as f64,
            mb(phase.peak_rss),
            mb(phase.rss_at_ready)
        );
    }
    println!(
        "| start-up to first answer with {n} links | {:.0} ms | |",
        refresh.startup.as_secs_f64() * 1e3
    );
    println!(
        "| ctl `status` p50 / p99, {} clients once a second each, during the steady sweep | {:.2} / {:.2} ms | echo floor {:.2} / {:.2} ms; goal p99 < 5 ms |",
        args.clients, steady.ctl.p50, steady.ctl.p99, paced_floor.p50, paced_floor.p99
    );
    for phase in [&refresh, &check] {
        println!(
            "| ctl `status` p50 / p99, {} clients back to back, during the {} storm | {:.2} / {:.2} ms | echo floor {:.2} / {:.2} ms |",
            args.clients,
            phase.kind.name(),
            phase.ctl.p50,
            phase.ctl.p99,
            floor.p50,
            floor.p99
        );
    }
    for (what, latency) in
        [("`token` (Graph)", &tokens.graph), ("`token --for imap`", &tokens.imap)]
    {
        println!(
            "| ctl {what} p50 / p99, fresh cached token, {} clients back to back | {:.2} / {:.2} ms | echo floor {:.2} / {:.2} ms; goal p99 < 5 ms |",
            args.clients, latency.p50, latency.p99, tokens.floor.p50, tokens.floor.p99
        );
    }
    println!(
        "| `status --all --json` with {n} links, streamed (first page / all, + JSON) | {:.0} / {:.0} ms ({:.1} MB) | goal first page < 100 ms |",
        check.status_all.first_page.as_secs_f64() * 1e3,
        check.status_all.total.as_secs_f64() * 1e3,
        mb(check.status_all.json_bytes as u64)
    );
    Ok(())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

/// The fakes' own capacity, driven by a client with kept-alive connections.
struct Ceiling {
    refreshes: f64,
    checks: f64,
}

impl Ceiling {
    /// `rate` beside the ceiling measured before and after the storms, as a share of each.
    fn against(rate: f64, before: f64, after: f64) -> String {
        let (low, high) = (before.min(after), before.max(after));
        format!(
            "{low:.0}-{high:.0}/s fake ceiling, before and after the storms ({:.0}-{:.0} %)",
            100.0 * rate / high,
            100.0 * rate / low
        )
    }

    /// The fakes' capacity, driven by `concurrency` loops for `span` each. `name` names the
    /// made-up accounts it refreshes: the token fake refuses a refresh token already rotated, so
    /// each measurement needs its own.
    async fn measure(
        fake: &FakeMicrosoft,
        concurrency: usize,
        span: Duration,
        name: &str,
    ) -> Result<Ceiling, Error> {
        let client = reqwest::Client::new();
        let (c, url) = (client.clone(), format!("{}/token", fake.url));
        let name = name.to_owned();
        let refreshes = drive(concurrency, span, move |task, round| {
            let (client, url) = (c.clone(), url.clone());
            let email = format!("{name}{task}@bench.test");
            async move {
                let form = [
                    ("grant_type", "refresh_token".to_owned()),
                    ("refresh_token", format!("rt:{email}:{round}")),
                    ("client_id", "bench".to_owned()),
                ];
                let response = client.post(&url).form(&form).send().await?;
                if !response.status().is_success() {
                    return Err(format!("ceiling refresh: HTTP {}", response.status()).into());
                }
                response.bytes().await?;
                Ok(())
            }
        })
        .await?;
        let (c, base) = (client.clone(), format!("{}/v1.0", fake.url));
        let checks = drive(concurrency, span, move |task, _| {
            let (client, base) = (c.clone(), base.clone());
            async move {
                let bearer = format!("at:ceiling{task}@bench.test:0");
                for path in ["/me", "/me/mailFolders/inbox", "/me/calendar"] {
                    let response =
                        client.get(format!("{base}{path}")).bearer_auth(&bearer).send().await?;
                    if !response.status().is_success() {
                        return Err(format!("ceiling check: HTTP {}", response.status()).into());
                    }
                    response.bytes().await?;
                }
                Ok(())
            }
        })
        .await?;
        Ok(Ceiling { refreshes, checks })
    }
}

/// Runs `op(task, round)` in `concurrency` loops for `span`; returns operations per second.
async fn drive<F, Fut>(concurrency: usize, span: Duration, op: F) -> Result<f64, Error>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), Error>> + Send + 'static,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + span;
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut rounds = 0;
                while Instant::now() < deadline {
                    op(task, rounds).await?;
                    rounds += 1;
                }
                Ok::<u64, Error>(rounds)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Which storm a phase provokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Every token expires now; no check is due.
    Refresh,
    /// Every check is due now; tokens are fresh.
    Check,
    /// Checks and refreshes come due at the rate that keeps 100,000 links fresh (60-minute
    /// tokens, a check every 15 minutes): 111 checks/s and 31 refreshes/s.
    Steady,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Refresh => "refresh",
            Kind::Check => "check",
            Kind::Steady => "steady",
        }
    }

    fn counter(self, stats: &Stats) -> &AtomicU64 {
        match self {
            Kind::Refresh => &stats.refreshed,
            Kind::Check | Kind::Steady => &stats.checks,
        }
    }
}

/// What one phase measured.
struct Phase {
    kind: Kind,
    startup: Duration,
    /// Checks (or refreshes, in the refresh storm) per second.
    rate: f64,
    /// Refreshes per second.
    refresh_rate: f64,
    /// Daemon CPU over the phase, in cores.
    cores: f64,
    cpu_per_op: f64,
    rss_at_ready: u64,
    /// Peak RSS before `status --all` (which builds every link's JSON at once).
    work_rss: u64,
    /// Peak RSS including `status --all`.
    peak_rss: u64,
    ctl: Latency,
    request_bytes: (usize, usize),
    reply_bytes: (usize, usize),
    status_all: ctl::Listing,
    /// The steady phase's window (zero for the storms).
    window: Window,
}

/// A child daemon, stopped (SIGTERM) when dropped.
struct ChildDaemon(Child);

impl ChildDaemon {
    /// This binary re-executed as `--daemon CONFIG`.
    fn start(config: &std::path::Path) -> std::io::Result<ChildDaemon> {
        let child = Command::new(std::env::current_exe()?)
            .arg("--daemon")
            .arg(config)
            .stdin(Stdio::null())
            .spawn()?;
        Ok(ChildDaemon(child))
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

impl Phase {
    async fn run(fake: &FakeMicrosoft, args: &Args, n: usize, kind: Kind) -> Result<Phase, Error> {
        let dir = tempfile::tempdir()?;
        let state = dir.path().join("state");
        let socket = dir.path().join("mslinkd.sock");
        let config = dir.path().join("mslinkd.toml");
        let (url, office365) = (&fake.url, fake.office365_config());
        // The production defaults: `refresh_before_expiry` 5m, `check_interval` 15m.
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        std::fs::write(
            &config,
            format!(
                "socket = {socket:?}\nstate_dir = {state:?}\n\
                 {office365}[schedule]\nmax_concurrent = {}\n\
                 [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
                args.max_concurrent
            ),
        )?;
        // Ten links belong to the user running the bench (whose `status` is timed); the rest
        // to 10 links per made-up user.
        let me = nix::unistd::User::from_uid(nix::unistd::geteuid())?
            .map_or_else(|| "root".to_owned(), |u| u.name);
        let now = mslinkd::now();
        let (checks_per_s, refreshes_per_s) = sweep_rates(n.max(STEADY_SWEEP));
        let seeds: Vec<Seed> = (0..n)
            .map(|i| {
                let (token_expiry, next_check) = match kind {
                    Kind::Refresh => (now + 60, now + 7200),
                    Kind::Check => (now + 7200, now - 1),
                    // Link i is checked and refreshed at the sweep's rates from now on (111/s
                    // and 31/s for 100,000 links): the first seconds of the steady sweep. Its refresh falls due 5 to
                    // 7.5 minutes before expiry (the daemon's own spread), so expiries start
                    // 5 minutes out: the rate is flat from the start, and the links whose
                    // spread put them before it are refreshed as the daemon starts.
                    Kind::Steady => (
                        now + DEFAULT_AHEAD + 2 + (i as f64 / refreshes_per_s) as i64,
                        now + 2 + (i as f64 / checks_per_s) as i64,
                    ),
                };
                // The other owners have no accounts here; they get uids of their own, as
                // `connect` gives every link its owner's (else each start would look up each
                // name in NSS to bind its links: 2 s at a million links).
                Seed {
                    user: if i < 10 { me.clone() } else { format!("bench{}", i / 10) },
                    uid: (i >= 10).then(|| BENCH_UIDS + (i / 10) as u32),
                    email: format!("{}{i}@bench.test", kind.name()),
                    token_expiry,
                    next_check,
                }
            })
            .collect();
        let seeded = Instant::now();
        seed::office365_links(&state, &state.join("secret.key"), &format!("{url}/v1.0"), &seeds)
            .await?;
        println!(
            "{} phase: seeded {n} links in {:.1} s",
            kind.name(),
            seeded.elapsed().as_secs_f64()
        );

        let counter = kind.counter(fake.stats());
        let before = Stats::get(counter);
        let refreshed_before = Stats::get(&fake.stats().refreshed);
        let started = Instant::now();
        let child = ChildDaemon::start(&config)?;
        let pid = child.0.id();
        let startup = loop {
            if ctl::status(&socket, false).await.is_ok() {
                break started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(120) {
                return Err("the daemon did not answer within 2 minutes".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let cpu_at_ready = cpu_seconds(pid)?;
        let rss_at_ready = proc_status(pid, "VmRSS:")?;

        let mut window = Window::default();
        let (storm, cpu, ctl) = if kind == Kind::Steady {
            tokio::time::sleep(STEADY_SETTLE).await;
            let settled = caught_up(fake, checks_per_s, refreshes_per_s).await?;
            println!(
                "steady phase: caught up on the links due before it started {:.1} s after ready",
                (STEADY_SETTLE + settled).as_secs_f64()
            );
            let start = Window::sample(fake, pid, metrics_port).await?;
            // 64 users each asking for their status about once a second, through the window.
            let ctl_task = tokio::spawn(ctl_paced(socket.clone(), args.clients, STEADY_WINDOW));
            tokio::time::sleep(STEADY_WINDOW).await;
            window = Window::sample(fake, pid, metrics_port).await?.since(&start);
            (STEADY_WINDOW, window.cpu, ctl_task.await??)
        } else {
            // ctl clients hammer `status` while the storm runs.
            let ctl_task = tokio::spawn(ctl_latency(socket.clone(), args.clients, 40));
            let storm_start = Instant::now();
            let target = before + n as u64;
            while Stats::get(counter) < target {
                if storm_start.elapsed() > Duration::from_secs(1800) {
                    let done = Stats::get(counter) - before;
                    return Err(
                        format!("{} storm: only {done} of {n} in 30 minutes", kind.name()).into()
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let storm = storm_start.elapsed();
            // The last commits land just after the fake answered.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let cpu = cpu_seconds(pid)? - cpu_at_ready;
            (storm, cpu, ctl_task.await??)
        };
        let (done, refreshed) = if kind == Kind::Steady {
            (window.checks, window.refreshes)
        } else {
            (Stats::get(counter) - before, Stats::get(&fake.stats().refreshed) - refreshed_before)
        };
        let rejected = Stats::get(&fake.stats().rejected);
        if rejected > 0 {
            return Err(format!("{rejected} refreshes were rejected as superseded").into());
        }

        // How many writes each of the store's group commits carried, over the whole phase.
        let text = scrape(metrics_port).await?;
        let counter = |name: &str| -> Result<u64, Error> {
            let prefix = format!("{name} ");
            let found = text.lines().find_map(|l| l.strip_prefix(&prefix));
            Ok(found.ok_or(format!("the daemon's metrics have no {name}"))?.parse()?)
        };
        let (writes, commits) =
            (counter("mslink_store_writes_total")?, counter("mslink_store_commits_total")?);

        let work_rss = proc_status(pid, "VmHWM:")?;
        let status_all = ctl::list_all(&socket).await?;
        if status_all.links != n as u64 {
            return Err(format!("status --all shows {} links, not {n}", status_all.links).into());
        }
        let peak_rss = proc_status(pid, "VmHWM:")?;
        let (request_bytes, reply_bytes) =
            frame_sizes(&socket, CtlCommand::Status { all: false }).await?;
        drop(child);
        println!(
            "{} phase: ready in {:.0} ms, {done} {} ({refreshed} refreshes) in {:.1} s, \
             daemon CPU {cpu:.1} s, peak RSS {:.1} MB, {writes} store writes in {commits} \
             commits ({:.1} a commit)",
            kind.name(),
            startup.as_secs_f64() * 1e3,
            if kind == Kind::Refresh { "refreshes" } else { "checks" },
            storm.as_secs_f64(),
            mb(peak_rss),
            writes as f64 / commits.max(1) as f64
        );
        Ok(Phase {
            kind,
            startup,
            rate: done as f64 / storm.as_secs_f64(),
            refresh_rate: refreshed as f64 / storm.as_secs_f64(),
            cores: cpu / storm.as_secs_f64(),
            cpu_per_op: cpu / done.max(1) as f64,
            rss_at_ready,
            work_rss,
            peak_rss,
            ctl,
            request_bytes,
            reply_bytes,
            status_all,
            window,
        })
    }
}

/// `token` round trips with fresh cached tokens, and the echo floor of their frame sizes.
struct TokenLatency {
    graph: Latency,
    imap: Latency,
    floor: Latency,
}

/// Mail tools call `token` on every connection: `clients` callers back to back on the ten
/// links of the user running the bench, each token fresh (Graph's from the seed, IMAP's fetched
/// once before timing), no background work due.
async fn token_phase(fake: &FakeMicrosoft, args: &Args) -> Result<TokenLatency, Error> {
    use mslink_proto::TokenResource;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    let socket = dir.path().join("mslinkd.sock");
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())?
        .map_or_else(|| "root".to_owned(), |u| u.name);
    let config = dir.path().join("mslinkd.toml");
    std::fs::write(
        &config,
        format!(
            "socket = {socket:?}\nstate_dir = {state:?}\nadmin_users = [{me:?}]\n\
             {}resources = [\"imap\"]\n",
            fake.office365_config()
        ),
    )?;
    let now = mslinkd::now();
    let seeds: Vec<Seed> = (0..10)
        .map(|i| Seed {
            user: me.clone(),
            uid: None,
            email: format!("token{i}@bench.test"),
            token_expiry: now + 3600,
            next_check: now + 7200,
        })
        .collect();
    let url = format!("{}/v1.0", fake.url);
    seed::office365_links(&state, &state.join("secret.key"), &url, &seeds).await?;
    let child = ChildDaemon::start(&config)?;
    let started = Instant::now();
    while ctl::status(&socket, false).await.is_err() {
        if started.elapsed() > Duration::from_secs(120) {
            return Err("the daemon did not answer within 2 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // `token` needs the integration on (the storms' background work does not); the bench's
    // user is an admin by `admin_users`.
    ctl::call(&socket, CtlCommand::Enable).await?;
    let emails: Arc<Vec<String>> = Arc::new(seeds.into_iter().map(|s| s.email).collect());
    let command = |i: usize, resource| CtlCommand::Token {
        email: emails[i % emails.len()].clone(),
        resource,
    };
    for i in 0..emails.len() {
        ctl::call(&socket, command(i, TokenResource::Imap)).await?;
    }
    let mut timed = Vec::new();
    for resource in [TokenResource::Graph, TokenResource::Imap] {
        let (socket, emails) = (socket.clone(), emails.clone());
        let latency = pooled(args.clients, move |i| {
            let (socket, emails) = (socket.clone(), emails.clone());
            async move {
                let mut samples = Vec::with_capacity(40);
                for _ in 0..40 {
                    let email = emails[i % emails.len()].clone();
                    let t = Instant::now();
                    ctl::call(&socket, CtlCommand::Token { email, resource }).await?;
                    samples.push(t.elapsed());
                }
                Ok(samples)
            }
        })
        .await?;
        timed.push(latency);
    }
    let (requests, replies) = frame_sizes(&socket, command(0, TokenResource::Imap)).await?;
    drop(child);
    let rejected = Stats::get(&fake.stats().rejected);
    if rejected > 0 {
        return Err(format!("{rejected} refreshes were rejected as superseded").into());
    }
    let floor = echo_floor(args.clients, requests, replies).await?;
    let imap = timed.pop().ok_or("no IMAP figures")?;
    let graph = timed.pop().ok_or("no Graph figures")?;
    println!(
        "token phase: {} clients x 40 calls each: Graph p99 {:.2} ms, IMAP p99 {:.2} ms",
        args.clients, graph.p99, imap.p99
    );
    Ok(TokenLatency { graph, imap, floor })
}

/// Counters at one moment of the steady phase, or their difference over its window.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    cpu: f64,
    checks: u64,
    refreshes: u64,
    /// `mslink_rounds_total` by work: refresh, check, refresh_and_check, idle.
    rounds: [u64; 4],
}

impl Window {
    async fn sample(fake: &FakeMicrosoft, pid: u32, metrics_port: u16) -> Result<Window, Error> {
        let text = scrape(metrics_port).await?;
        let mut rounds = [0; 4];
        for (slot, work) in ["refresh", "check", "refresh_and_check", "idle"].iter().enumerate() {
            let series = format!("mslink_rounds_total{{work=\"{work}\"}} ");
            rounds[slot] = text
                .lines()
                .find_map(|l| l.strip_prefix(&series))
                .ok_or("the daemon's metrics have no mslink_rounds_total")?
                .parse()?;
        }
        Ok(Window {
            cpu: cpu_seconds(pid)?,
            checks: Stats::get(&fake.stats().checks),
            refreshes: Stats::get(&fake.stats().refreshed),
            rounds,
        })
    }

    fn since(&self, start: &Window) -> Window {
        let mut rounds = [0; 4];
        for (slot, n) in rounds.iter_mut().enumerate() {
            *n = self.rounds[slot] - start.rounds[slot];
        }
        Window {
            cpu: self.cpu - start.cpu,
            checks: self.checks - start.checks,
            refreshes: self.refreshes - start.refreshes,
            rounds,
        }
    }

    /// Rounds that refreshed per refresh, rounds that checked per check, and idle rounds.
    fn rounds_per_work(&self) -> (f64, f64, u64) {
        let [refresh, check, both, idle] = self.rounds;
        (
            (refresh + both) as f64 / self.refreshes.max(1) as f64,
            (check + both) as f64 / self.checks.max(1) as f64,
            idle,
        )
    }
}

/// The Prometheus text of the daemon's `/metrics`.
async fn scrape(port: u16) -> Result<String, Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}

/// `clients` clients, each running one `status` a second (at a random phase) for `span`.
async fn ctl_paced(socket: PathBuf, clients: usize, span: Duration) -> Result<Latency, Error> {
    let deadline = Instant::now() + span;
    pooled(clients, move |i| {
        let socket = socket.clone();
        async move {
            let mut samples = Vec::new();
            let mut tick = once_a_second(i);
            while Instant::now() < deadline {
                tick.tick().await;
                samples.push(timed_status(&socket).await?);
            }
            Ok(samples)
        }
    })
    .await
}

/// Client `i`'s tick: once a second, each client at its own phase.
fn once_a_second(i: usize) -> tokio::time::Interval {
    let phase = Duration::from_millis((i as u64 * 997) % 1000);
    tokio::time::interval_at(tokio::time::Instant::now() + phase, Duration::from_secs(1))
}

/// Runs `client(i)` for `clients` concurrent clients and pools their round-trip samples.
///
/// The clients run on a runtime of their own (two threads, as the ctl processes they stand for
/// would have the machine's two cores), not on the one that serves the fakes: a sample is the
/// server's time and the kernel's, never time a client's task waited behind the fakes' answers.
async fn pooled<F, Fut>(clients: usize, client: F) -> Result<Latency, Error>
where
    F: Fn(usize) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Vec<Duration>, Error>> + Send + 'static,
{
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("bench-clients".into()).spawn(move || {
        let run = || -> Result<Vec<Duration>, Error> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let tasks: Vec<_> = (0..clients).map(|i| tokio::spawn(client(i))).collect();
                let mut all = Vec::new();
                for task in tasks {
                    all.extend(task.await??);
                }
                Ok(all)
            })
        };
        let _ = done.send(run());
    })?;
    Ok(Latency::of(result.await.map_err(|_| "the clients' thread panicked")??))
}

/// One `status` round trip (connect, hello, command, reply: what `mslinkctl status` does).
async fn timed_status(socket: &std::path::Path) -> Result<Duration, Error> {
    let t = Instant::now();
    ctl::status(socket, false).await?;
    Ok(t.elapsed())
}

/// A `VmRSS:`/`VmHWM:` line of `/proc/PID/status`, in bytes.
fn proc_status(pid: u32, field: &str) -> Result<u64, Error> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(kb * 1024)
}

/// User + system CPU time of a process, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64, Error> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = text.rsplit_once(')').map(|(_, r)| r).ok_or("bad /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    Ok(ticks / hz)
}

/// Round-trip percentiles, in milliseconds.
struct Latency {
    p50: f64,
    p99: f64,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1));
            samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        Latency { p50: at(0.50), p99: at(0.99) }
    }
}

/// `clients` concurrent clients, each running `rounds` `status` commands back to back.
async fn ctl_latency(socket: PathBuf, clients: usize, rounds: usize) -> Result<Latency, Error> {
    pooled(clients, move |_| {
        let socket = socket.clone();
        async move {
            let mut samples = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                samples.push(timed_status(&socket).await?);
            }
            Ok(samples)
        }
    })
    .await
}

/// The sizes of (hello, `command`) frames and (welcome, reply) frames.
async fn frame_sizes(
    socket: &Path,
    command: CtlCommand,
) -> Result<((usize, usize), (usize, usize)), Error> {
    use mslink_proto::{ClientFrame, MAX_CLIENT_FRAME, PROTOCOL_VERSION, encode};
    let hello = ClientFrame::Hello { protocol_version: PROTOCOL_VERSION, client: "bench".into() };
    let command = ClientFrame::Command { act_as: None, command };
    let requests =
        (encode(&hello, MAX_CLIENT_FRAME)?.len(), encode(&command, MAX_CLIENT_FRAME)?.len());
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    stream.write_all(&encode(&hello, MAX_CLIENT_FRAME)?).await?;
    let welcome = ctl::read_body(&mut stream).await?.len() + 4;
    stream.write_all(&encode(&command, MAX_CLIENT_FRAME)?).await?;
    let reply = ctl::read_body(&mut stream).await?.len() + 4;
    Ok((requests, (welcome, reply)))
}

/// A server that answers the ctl's exchange (two requests, two replies, of the ctl's sizes) by
/// echoing bytes of those sizes back: the floor under any round trip over a Unix socket.
async fn echo_server(
    (hello, command): (usize, usize),
    (welcome, reply): (usize, usize),
) -> Result<(tempfile::TempDir, PathBuf, tokio::task::JoinHandle<()>), Error> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("echo.sock");
    let listener = tokio::net::UnixListener::bind(&path)?;
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; hello.max(command)];
                let answers = [(hello, vec![b'w'; welcome]), (command, vec![b'r'; reply])];
                for (len, answer) in answers {
                    stream.read_exact(&mut buf[..len]).await?;
                    stream.write_all(&answer).await?;
                }
                Ok::<(), std::io::Error>(())
            });
        }
    });
    Ok((dir, path, server))
}

/// One exchange with the echo server.
async fn echo_once(
    path: &Path,
    (hello, command): (usize, usize),
    (welcome, reply): (usize, usize),
) -> Result<Duration, Error> {
    let mut buf = vec![0u8; welcome.max(reply)];
    let t = Instant::now();
    let mut stream = tokio::net::UnixStream::connect(path).await?;
    stream.write_all(&vec![b'h'; hello]).await?;
    stream.read_exact(&mut buf[..welcome]).await?;
    stream.write_all(&vec![b'c'; command]).await?;
    stream.read_exact(&mut buf[..reply]).await?;
    Ok(t.elapsed())
}

/// The floor for back-to-back clients: `clients` loops of 40 exchanges each.
async fn echo_floor(
    clients: usize,
    requests: (usize, usize),
    replies: (usize, usize),
) -> Result<Latency, Error> {
    let (_dir, path, server) = echo_server(requests, replies).await?;
    let latency = pooled(clients, move |_| {
        let path = path.clone();
        async move {
            let mut samples = Vec::new();
            for _ in 0..40 {
                samples.push(echo_once(&path, requests, replies).await?);
            }
            Ok(samples)
        }
    })
    .await;
    server.abort();
    latency
}

/// The floor for paced clients: `clients` clients once a second each, for 5 s.
async fn echo_paced(
    clients: usize,
    requests: (usize, usize),
    replies: (usize, usize),
) -> Result<Latency, Error> {
    let (_dir, path, server) = echo_server(requests, replies).await?;
    let latency = pooled(clients, move |i| {
        let path = path.clone();
        async move {
            let mut samples = Vec::new();
            let mut tick = once_a_second(i);
            for _ in 0..5 {
                tick.tick().await;
                samples.push(echo_once(&path, requests, replies).await?);
            }
            Ok(samples)
        }
    })
    .await;
    server.abort();
    latency
}
