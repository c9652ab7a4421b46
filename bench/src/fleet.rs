//! `mslink-bench --fleet`: refresh and check storms with 1, 2 and 3 daemons sharing one
//! PostgreSQL (a throwaway cluster on this machine), beside one daemon on SQLite, with each
//! configuration's daemon CPU and the PostgreSQL server's own CPU per operation; then the
//! steady sweep's cost on PostgreSQL. Figures are printed as a table for BENCHMARKS.md.
//!
//! ```text
//!  per configuration: a fresh database ─▶ seed N links (due now) ─▶ D child daemons
//!     ─▶ until the fakes saw N refreshes (or checks) ─▶ rate, CPU of daemons and server
//! ```
//!
//! The server's CPU is the postmaster's and its children's (the daemons' backends, the WAL
//! writer, the checkpointer), read from `/proc` before the daemons stop.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mslink_bench::fake::{FakeMicrosoft, Stats};
use mslink_bench::seed::{self, Seed};
use mslink_e2e::postgres::Postgres;
use mslinkd::config::{Config, Env, StoreBackend};
use mslinkd::store::{Store, postgres};
use mslinkd::vault::Vault;

use super::{Args, Ceiling, ChildDaemon, Error, Kind, STEADY_SETTLE, STEADY_WINDOW, cpu_seconds};

/// What one configuration measured.
struct Run {
    daemons: usize,
    rate: f64,
    daemon_cpu_per_op: f64,
    server_cpu_per_op: f64,
    /// Refreshes per daemon, to show how the work spread.
    spread: Vec<u64>,
}

/// User + system CPU of every process of the cluster, by pid.
fn cluster_cpu(postmaster: u32) -> HashMap<u32, f64> {
    let mut cpu = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return cpu };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1));
        let ours =
            pid == postmaster || ppid.and_then(|p| p.parse::<u32>().ok()) == Some(postmaster);
        if let (true, Ok(seconds)) = (ours, cpu_seconds(pid)) {
            cpu.insert(pid, seconds);
        }
    }
    cpu
}

/// CPU the cluster spent from `before` to now (processes started since count from zero).
fn cluster_cpu_since(postmaster: u32, before: &HashMap<u32, f64>) -> f64 {
    cluster_cpu(postmaster).iter().map(|(pid, s)| s - before.get(pid).copied().unwrap_or(0.0)).sum()
}

/// Runs the fleet benchmark and prints its table.
pub async fn bench(args: &Args, n: usize) -> Result<(), Error> {
    let pg =
        Postgres::start().ok_or("--fleet needs root and Debian's postgresql (bash .ci/setup)")?;
    let postmaster = pg.pid().ok_or("the PostgreSQL cluster is not running")?;
    let fake = FakeMicrosoft::start(Duration::from_secs(3600)).await?;
    let ceiling =
        Ceiling::measure(&fake, args.max_concurrent, Duration::from_secs(3), "ceiling").await?;
    println!(
        "mslink-bench --fleet: {n} links, max_concurrent {} per daemon; ceiling {:.0} refreshes/s, {:.0} checks/s",
        args.max_concurrent, ceiling.refreshes, ceiling.checks
    );
    let dir = tempfile::tempdir()?;
    let password = dir.path().join("store-password");
    pg.write_password_file(&password);
    let mut table = Vec::new();
    for kind in [Kind::Refresh, Kind::Check] {
        for daemons in 1..=3 {
            let run = storm(&fake, &pg, postmaster, dir.path(), args, n, kind, daemons).await?;
            table.push((kind, run));
        }
    }
    let steady = steady(&fake, &pg, postmaster, dir.path(), args).await?;
    // The baseline: one daemon on SQLite, the same storms (with the phases' `status` clients).
    let sqlite = [
        super::Phase::run(&fake, args, n, Kind::Refresh).await?,
        super::Phase::run(&fake, args, n, Kind::Check).await?,
    ];

    println!();
    println!(
        "| store | storm | daemons | rate | of the fakes' ceiling | daemon CPU / op | PostgreSQL CPU / op | refreshes per daemon |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for phase in &sqlite {
        let ceiling = if phase.kind == Kind::Refresh { ceiling.refreshes } else { ceiling.checks };
        println!(
            "| SQLite | {} | 1 | {:.0}/s | {:.0} % | {:.2} ms | - | |",
            phase.kind.name(),
            phase.rate,
            100.0 * phase.rate / ceiling,
            phase.cpu_per_op * 1e3
        );
    }
    for (kind, run) in &table {
        let ceiling = if *kind == Kind::Refresh { ceiling.refreshes } else { ceiling.checks };
        println!(
            "| PostgreSQL | {} | {} | {:.0}/s | {:.0} % | {:.2} ms | {:.2} ms | {:?} |",
            kind.name(),
            run.daemons,
            run.rate,
            100.0 * run.rate / ceiling,
            run.daemon_cpu_per_op * 1e3,
            run.server_cpu_per_op * 1e3,
            run.spread
        );
    }
    println!(
        "| PostgreSQL | steady sweep of {} links at the defaults, 1 daemon | {:.0} checks/s + {:.0} refreshes/s | | daemon {:.3} cores | PostgreSQL {:.3} cores | |",
        super::STEADY_SWEEP,
        steady.0,
        steady.1,
        steady.2,
        steady.3
    );
    Ok(())
}

/// The config of fleet daemon `i` in `dir` on database `url`.
fn config_of(fake: &FakeMicrosoft, url: &str, dir: &Path, args: &Args, i: usize) -> String {
    format!(
        "socket = {:?}\nstate_dir = {:?}\nkey_file = {:?}\n{}[schedule]\nmax_concurrent = {}\n\
         [store]\nurl = {url:?}\npassword_file = {:?}\n",
        dir.join(format!("d{i}.sock")),
        dir.join(format!("state{i}")),
        dir.join("fleet.key"),
        fake.office365_config_tagged(&format!("d{i}")),
        args.max_concurrent,
        dir.join("store-password"),
    )
}

/// A fresh database `name` seeded with `seeds`, the integration on.
async fn seeded(
    fake: &FakeMicrosoft,
    pg: &Postgres,
    dir: &Path,
    args: &Args,
    name: &str,
    seeds: &[Seed],
) -> Result<String, Error> {
    pg.create_database(name);
    let url = pg.url_for(name);
    let text = config_of(fake, &url, dir, args, 0);
    let config = Config::parse(&text, None, &Env { is_root: true, ..Env::default() })?;
    let StoreBackend::Postgres(pg_config) = config.store else { return Err("no store".into()) };
    let pool = postgres::connect(&pg_config).await?;
    postgres::migrate(&pool, &pg_config).await?;
    let store = Store::postgres(pool, *pg_config);
    store.set_integration(true, "root".into(), mslinkd::now()).await?;
    let vault = Arc::new(Vault::open_or_create(&dir.join("fleet.key"))?);
    seed::office365_links_into(&store, &vault, &format!("{}/v1.0", fake.url), seeds).await?;
    Ok(url)
}

/// Starts `daemons` fleet daemons on `url` and waits until each answers.
async fn start(
    fake: &FakeMicrosoft,
    url: &str,
    dir: &Path,
    args: &Args,
    daemons: usize,
) -> Result<Vec<ChildDaemon>, Error> {
    let mut children = Vec::new();
    for i in 0..daemons {
        let config = dir.join(format!("d{i}.toml"));
        std::fs::write(&config, config_of(fake, url, dir, args, i))?;
        children.push(ChildDaemon::start(&config)?);
    }
    for i in 0..daemons {
        let socket = dir.join(format!("d{i}.sock"));
        let started = Instant::now();
        while mslink_bench::ctl::status(&socket, false).await.is_err() {
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!("fleet daemon {i} did not answer within a minute").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(children)
}

#[allow(clippy::too_many_arguments)]
async fn storm(
    fake: &FakeMicrosoft,
    pg: &Postgres,
    postmaster: u32,
    dir: &Path,
    args: &Args,
    n: usize,
    kind: Kind,
    daemons: usize,
) -> Result<Run, Error> {
    let now = mslinkd::now();
    let name = format!("fleet_{}_{}", kind.name(), ["one", "two", "three"][daemons - 1]);
    let seeds: Vec<Seed> = (0..n)
        .map(|i| {
            let (token_expiry, next_check) = match kind {
                Kind::Refresh => (now + 60, now + 7200),
                _ => (now + 7200, now - 1),
            };
            Seed {
                user: format!("bench{}", i / 10),
                uid: Some(super::BENCH_UIDS + (i / 10) as u32),
                email: format!("{name}{i}@bench.test"),
                token_expiry,
                next_check,
            }
        })
        .collect();
    let url = seeded(fake, pg, dir, args, &name, &seeds).await?;
    let counter = kind.counter(fake.stats());
    let before = Stats::get(counter);
    let tags: Vec<String> = (0..daemons).map(|i| format!("d{i}")).collect();
    let spread_before: Vec<u64> = tags.iter().map(|t| fake.refreshed_by(t)).collect();
    let server_before = cluster_cpu(postmaster);
    let children = start(fake, &url, dir, args, daemons).await?;
    let pids: Vec<u32> = children.iter().map(|c| c.0.id()).collect();
    let daemon_before: f64 = pids.iter().map(|p| cpu_seconds(*p).unwrap_or(0.0)).sum();
    let started = Instant::now();
    while Stats::get(counter) < before + n as u64 {
        if started.elapsed() > Duration::from_secs(900) {
            return Err(format!("{name}: the storm did not finish in 15 minutes").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let daemon_cpu =
        pids.iter().map(|p| cpu_seconds(*p).unwrap_or(0.0)).sum::<f64>() - daemon_before;
    let server_cpu = cluster_cpu_since(postmaster, &server_before);
    drop(children);
    let (rejected, twice) = (Stats::get(&fake.stats().rejected), fake.represented());
    if rejected > 0 || !twice.is_empty() {
        return Err(format!(
            "{name}: {rejected} refresh tokens refused, presented twice: {twice:?}"
        )
        .into());
    }
    let spread = tags.iter().zip(&spread_before).map(|(t, b)| fake.refreshed_by(t) - b).collect();
    let ops = n as f64;
    println!("{name}: {n} in {elapsed:.1} s");
    Ok(Run {
        daemons,
        rate: ops / elapsed,
        daemon_cpu_per_op: daemon_cpu / ops,
        server_cpu_per_op: server_cpu / ops,
        spread,
    })
}

/// The steady sweep of [`super::STEADY_SWEEP`] links at the defaults on one fleet daemon:
/// checks/s, refreshes/s, daemon cores, server cores.
async fn steady(
    fake: &FakeMicrosoft,
    pg: &Postgres,
    postmaster: u32,
    dir: &Path,
    args: &Args,
) -> Result<(f64, f64, f64, f64), Error> {
    let links = super::STEADY_SWEEP;
    let now = mslinkd::now();
    let (checks_per_s, refreshes_per_s) = super::sweep_rates(links);
    let seeds: Vec<Seed> = (0..links)
        .map(|i| Seed {
            user: format!("bench{}", i / 10),
            uid: Some(super::BENCH_UIDS + (i / 10) as u32),
            email: format!("steady{i}@bench.test"),
            token_expiry: now + super::DEFAULT_AHEAD + 2 + (i as f64 / refreshes_per_s) as i64,
            next_check: now + 2 + (i as f64 / checks_per_s) as i64,
        })
        .collect();
    let url = seeded(fake, pg, dir, args, "fleet_steady", &seeds).await?;
    // In a fleet in its steady state every link's due time is in the store already (each
    // round's release wrote it); seeded links are all due at once instead, so they are given
    // the time the schedule rule would (a check, or the refresh 5-7.5 minutes before expiry).
    pg.superuser_sql(
        "fleet_steady",
        &format!(
            "UPDATE links SET next_due = LEAST(next_check, token_expiry - {})",
            super::DEFAULT_AHEAD * 5 / 4
        ),
    );
    let children = start(fake, &url, dir, args, 1).await?;
    let pid = children[0].0.id();
    tokio::time::sleep(STEADY_SETTLE).await;
    let (checks, refreshes) =
        (Stats::get(&fake.stats().checks), Stats::get(&fake.stats().refreshed));
    let (daemon, server) = (cpu_seconds(pid)?, cluster_cpu(postmaster));
    tokio::time::sleep(STEADY_WINDOW).await;
    let span = STEADY_WINDOW.as_secs_f64();
    let result = (
        (Stats::get(&fake.stats().checks) - checks) as f64 / span,
        (Stats::get(&fake.stats().refreshed) - refreshes) as f64 / span,
        (cpu_seconds(pid)? - daemon) / span,
        cluster_cpu_since(postmaster, &server) / span,
    );
    drop(children);
    Ok(result)
}
