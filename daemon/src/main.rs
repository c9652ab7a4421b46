//! `mslinkd`: parse flags, load the config, log, take or bind the socket, serve until
//! SIGTERM/SIGINT, telling systemd each step (see [`mslinkd::systemd`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use mslinkd::config::{Config, DEFAULT_CONFIG_PATH, Env, PgConfig, StoreBackend};
use mslinkd::ipc;
use mslinkd::systemd::{self, Activated};
use mslinkd::{Listener, Options, logging};
use tokio_util::sync::CancellationToken;

/// The mslink daemon: keeps Microsoft mailbox and calendar links alive and serves mslinkctl.
///
/// Run it as the systemd service mslinkd.service (or mslinkd@ORG.service for one daemon per
/// organisation). It listens on its control socket, or on the one systemd passes it (socket
/// activation); SIGHUP or `mslinkctl reload` re-reads the config, SIGTERM stops it.
#[derive(Debug, Parser)]
#[command(version, about, max_term_width = 100)]
struct Args {
    /// Config file (TOML) [default: /etc/mslink/mslinkd.toml; without it mslinkd runs on
    /// built-in defaults]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Validate the config and exit: 0 if valid, 1 with the key and line of the first problem,
    /// or with every file it names (itself, state_dir, key_file, the socket's directory,
    /// client_secret_file, the hook, the store's password and CA files) that another user could
    /// plant; warns (still 0) when the file holds a client secret that other users can read. With
    /// `[store] url` it also connects to PostgreSQL and checks the schema version (read only)
    #[arg(long)]
    check_config: bool,
    /// Print a shell completion script for mslinkd and exit (for packagers)
    #[arg(long, value_name = "SHELL", hide = true)]
    completions: Option<clap_complete::Shell>,
    /// Print the mslinkd(8) man page (roff) and exit (for packagers)
    #[arg(long, hide = true)]
    man: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Move the organisation from its SQLite store (state_dir) into the empty PostgreSQL
    /// database `[store] url` names, with every link and sealed secret, in one transaction.
    /// Stop mslinkd first; afterwards every daemon of the fleet uses the same key_file
    MigrateStore,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(shell) = args.completions {
        clap_complete::generate(shell, &mut Args::command(), "mslinkd", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if args.man {
        let page = clap_mangen::Man::new(Args::command()).section("8");
        return match page.render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mslinkd: cannot write the man page: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Before any thread starts: this reads and unsets LISTEN_FDS.
    let activated = match systemd::take_activated_socket() {
        Ok(activated) => activated,
        Err(e) => {
            eprintln!("mslinkd: the socket systemd passed is unusable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let env = Env::from_process();
    let path = args.config.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let config = match Config::load(&path, args.config.is_some(), &env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mslinkd: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.check_config {
        // Files the daemon would refuse to use make the config unusable: exit 1, naming each.
        let unsafe_files = mslinkd::files::audit(&config);
        for problem in &unsafe_files {
            eprintln!("mslinkd: {problem}");
        }
        if !unsafe_files.is_empty() {
            return ExitCode::FAILURE;
        }
        // Valid but unsafe is still valid: the exit code stays 0, the warning goes to stderr.
        for warning in config.warnings() {
            eprintln!("mslinkd: warning: {warning}");
        }
        if let StoreBackend::Postgres(pg) = &config.store
            && let Err(message) = check_store(pg)
        {
            eprintln!("mslinkd: {message}");
            return ExitCode::FAILURE;
        }
        match &config.source {
            Some(path) => println!("mslinkd: config {} is valid", path.display()),
            None => println!(
                "mslinkd: no config file at {}; the built-in defaults apply",
                path.display()
            ),
        }
        return ExitCode::SUCCESS;
    }
    if let Some(Cmd::MigrateStore) = args.command {
        return migrate_store(&config);
    }
    logging::init();
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mslinkd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, env, activated)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("mslinkd: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `mslinkd migrate-store`: the move, and a summary of it.
fn migrate_store(config: &Config) -> ExitCode {
    let moved = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|runtime| {
            runtime
                .block_on(mslinkd::store::transfer::migrate_store(config))
                .map_err(|e| e.to_string())
        });
    match moved {
        Ok(moved) => {
            let rows: Vec<String> = moved.rows.iter().map(|(t, n)| format!("{n} {t}")).collect();
            println!("mslinkd: moved into PostgreSQL at {}: {}", moved.server, rows.join(", "));
            println!(
                "mslinkd: the secrets stay sealed by {}: give every daemon of the fleet this key \
                 file, then start them",
                config.key_file.display()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("mslinkd: migrate-store: {message}; nothing was moved");
            ExitCode::FAILURE
        }
    }
}

/// Connects to the PostgreSQL store and reads its schema version, for `--check-config`.
fn check_store(pg: &PgConfig) -> Result<(), String> {
    use mslinkd::store::postgres;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let checked = runtime.block_on(postgres::check(pg)).map_err(|e| e.to_string())?;
    let server = postgres::server(pg);
    if checked.found == 0 {
        println!(
            "mslinkd: store: PostgreSQL at {server} is reachable; its database holds no mslink \
             schema yet (mslinkd creates schema {} at start)",
            checked.known
        );
    } else {
        println!(
            "mslinkd: store: PostgreSQL at {server} is reachable, schema {} (this build knows {})",
            checked.found, checked.known
        );
    }
    Ok(())
}

async fn serve(config: Config, env: Env, activated: Option<Activated>) -> Result<(), String> {
    let socket = config.socket.clone();
    // A socket systemd passed is systemd's: serve it, never delete it.
    let listener = match activated {
        Some(Activated { listener, path }) => {
            if path.as_deref().is_some_and(|p| p != socket) {
                tracing::warn!(
                    passed = %path.as_deref().unwrap_or(socket.as_path()).display(),
                    configured = %socket.display(),
                    "serving the socket systemd passed; `socket` in the config is ignored"
                );
            }
            let listener = listener
                .set_nonblocking(true)
                .and_then(|()| tokio::net::UnixListener::from_std(listener))
                .map_err(|e| format!("cannot use the socket systemd passed: {e}"))?;
            Listener::Passed(listener)
        }
        None => Listener::Owned(
            ipc::bind(&socket, config.socket_group.as_deref()).map_err(|e| e.to_string())?,
            socket.clone(),
        ),
    };
    let activated = matches!(listener, Listener::Passed(_));
    let shutdown = CancellationToken::new();
    // Catch the signals before telling anyone we are ready: a SIGTERM (or SIGHUP) arriving
    // between READY and a spawned task's first poll would otherwise kill the daemon uncleanly.
    // tokio keeps a handler installed once registered, so SIGHUP stays caught for the daemon's
    // reloader.
    use tokio::signal::unix::{SignalKind, signal};
    let stops = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    drop(signal(SignalKind::hangup()));
    tokio::spawn(stop_on_signal(stops, shutdown.clone()));
    let ready = move |summary: String| {
        tracing::info!(
            socket = %socket.display(),
            activated,
            version = env!("CARGO_PKG_VERSION"),
            "mslinkd ready"
        );
        systemd::notify_ready(&summary);
    };
    let options = Options { env, ready: Some(Box::new(ready)), ..Options::default() };
    mslinkd::run_with(config, listener, shutdown, options).await.map_err(|e| e.to_string())?;
    tracing::info!("mslinkd stopped");
    Ok(())
}

type SignalStream = std::io::Result<tokio::signal::unix::Signal>;

async fn stop_on_signal(stops: (SignalStream, SignalStream), shutdown: CancellationToken) {
    let (Ok(mut term), Ok(mut int)) = stops else {
        tracing::error!("cannot install signal handlers; stop mslinkd with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
    }
    systemd::notify_stopping();
    shutdown.cancel();
}
