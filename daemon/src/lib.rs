//! `mslinkd`: the daemon that owns mslink's state and serves `mslinkctl`.
//!
//! The entry point is [`run`]: give it a validated [`Config`], a bound control socket and a
//! shutdown token, and it serves until the token is cancelled. `main.rs` only parses flags, loads
//! the config, sets up logging, binds the socket and wires signals to the token; tests call
//! [`run`] in-process on a temporary socket.
//!
//! ```text
//!  main ─▶ Config::load ─▶ Daemon::open (state lock, SQLite) ─▶ ipc::bind ─▶ Daemon::serve
//!                                                                       ├─ ipc::serve (connections)
//!                                                                       ├─ SIGHUP ─▶ Daemon::reload
//!                                                                       └─ ops (hooks, metrics, systemd)
//! ```

pub mod config;
pub mod detect;
pub mod dns;
pub mod events;
pub mod exchange;
pub mod health;
pub mod hooks;
pub mod identity;
pub mod interaction;
pub mod ipc;
pub mod links;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod office365;
pub mod ops;
pub mod store;
pub mod systemd;
pub mod vault;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DEFAULT_CONFIG_PATH, Env};
use crate::detect::Detector;
use crate::events::Bus;
use crate::ipc::Limits;
use crate::links::{LinkTurns, Scheduler, SchedulerInbox};
use crate::store::{StateLock, Store, StoreError};
use crate::vault::{Vault, VaultError};

/// The running daemon's shared state.
///
/// Ownership: `config` is swapped whole on reload; readers clone the `Arc` and drop the lock at
/// once (never held across `.await`). `store` is a handle to the store thread.
#[derive(Debug)]
pub struct Daemon {
    config: RwLock<Arc<Config>>,
    env: Env,
    store: Store,
    vault: Arc<Vault>,
    /// Hands links to the background worker.
    scheduler: Scheduler,
    /// Provider detection, with its per-domain cache.
    detector: Detector,
    /// One round at a time per link.
    link_turns: LinkTurns,
    /// The scheduler task's inbox, taken when serving starts.
    scheduler_inbox: std::sync::Mutex<Option<SchedulerInbox>>,
    /// What happened, for hooks, metrics and logs.
    pub events: Bus,
    _lock: StateLock,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("startup was interrupted")]
    Interrupted,
}

impl Daemon {
    /// Takes the state directory's lock, opens the database and loads (or creates) the key.
    pub fn open(config: Config, env: Env) -> Result<Daemon, OpenError> {
        let (store, lock) = Store::open(&config.state_dir)?;
        let vault = Arc::new(Vault::open_or_create(&config.key_file)?);
        let (scheduler, inbox) = Scheduler::new();
        Ok(Daemon {
            config: RwLock::new(Arc::new(config)),
            env,
            store,
            vault,
            scheduler,
            detector: Detector::default(),
            link_turns: LinkTurns::default(),
            scheduler_inbox: std::sync::Mutex::new(Some(inbox)),
            events: Bus::default(),
            _lock: lock,
        })
    }

    /// The config in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|poison| poison.into_inner()).clone()
    }

    /// Re-reads the config file. An invalid file, or one that changes what only a restart can
    /// change, is refused and the running config stays in force.
    pub fn reload(&self) -> Result<Arc<Config>, String> {
        let current = self.config();
        let (path, explicit) = match &current.source {
            Some(path) => (path.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let next = Config::load(&path, explicit, &self.env).map_err(|e| e.to_string())?;
        let fixed: [(&str, bool); 4] = [
            ("socket", next.socket != current.socket),
            ("socket_group", next.socket_group != current.socket_group),
            ("state_dir", next.state_dir != current.state_dir),
            ("key_file", next.key_file != current.key_file),
        ];
        if let Some((key, _)) = fixed.iter().find(|(_, changed)| *changed) {
            return Err(format!(
                "config {}: `{key}` cannot change while mslinkd runs; restart mslinkd to apply it",
                path.display()
            ));
        }
        let next = Arc::new(next);
        *self.config.write().unwrap_or_else(|poison| poison.into_inner()) = next.clone();
        tracing::info!(config = %path.display(), "config reloaded");
        Ok(next)
    }

    /// Serves the control socket until `shutdown` is cancelled; SIGHUP reloads the config.
    pub async fn serve(self, listener: UnixListener, limits: Limits, shutdown: CancellationToken) {
        let inbox = self.scheduler_inbox.lock().unwrap_or_else(|p| p.into_inner()).take();
        let daemon = Arc::new(self);
        let reloader = tokio::spawn(reload_on_sighup(daemon.clone(), shutdown.clone()));
        let ops = ops::spawn(&daemon, &shutdown);
        let scheduler = inbox
            .map(|inbox| tokio::spawn(Scheduler::run(daemon.clone(), inbox, shutdown.clone())));
        ipc::serve(daemon, listener, limits, shutdown).await;
        let _ = reloader.await;
        if let Some(scheduler) = scheduler {
            let _ = scheduler.await;
        }
        ops.wait().await;
    }
}

/// Runs the daemon on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: UnixListener,
    shutdown: CancellationToken,
) -> Result<(), OpenError> {
    let env = Env::from_process();
    let daemon = tokio::task::spawn_blocking(move || Daemon::open(config, env))
        .await
        .map_err(|_| OpenError::Interrupted)??;
    daemon.serve(listener, Limits::default(), shutdown).await;
    Ok(())
}

async fn reload_on_sighup(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; use `mslinkctl reload` instead");
        return;
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = hangups.recv() => {
                let daemon = daemon.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || daemon.reload()).await {
                    tracing::error!(error = %e, "reload refused; the running config is unchanged");
                }
            }
        }
    }
}

/// The wall clock in Unix seconds, as stored and shown.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
