//! `mslinkd`: parse flags, load the config, log, bind, serve until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mslinkd::config::{Config, DEFAULT_CONFIG_PATH, Env};
use mslinkd::ipc::{self, Limits};
use mslinkd::{Daemon, logging};
use tokio_util::sync::CancellationToken;

/// The mslink daemon: keeps Microsoft mailbox and calendar links alive and serves mslinkctl.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Config file (TOML). Optional: without it mslinkd runs on built-in defaults.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Validate the config and exit: 0 if valid, 1 with the key and line of the first problem.
    #[arg(long)]
    check_config: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
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
        match &config.source {
            Some(path) => println!("mslinkd: config {} is valid", path.display()),
            None => println!(
                "mslinkd: no config file at {}; the built-in defaults apply",
                path.display()
            ),
        }
        return ExitCode::SUCCESS;
    }
    logging::init();
    match serve(config, env).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("mslinkd: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, env: Env) -> Result<(), String> {
    let socket = config.socket.clone();
    let group = config.socket_group.clone();
    // Lock the state directory before touching the socket, so a second daemon on the same state
    // never disturbs the first one's socket.
    let daemon = tokio::task::spawn_blocking(move || Daemon::open(config, env))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let listener = ipc::bind(&socket, group.as_deref()).map_err(|e| e.to_string())?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    tracing::info!(socket = %socket.display(), version = env!("CARGO_PKG_VERSION"), "mslinkd ready");
    daemon.serve(listener, Limits::default(), shutdown).await;
    let _ = std::fs::remove_file(&socket);
    tracing::info!("mslinkd stopped");
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop mslinkd with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
    }
    shutdown.cancel();
}
