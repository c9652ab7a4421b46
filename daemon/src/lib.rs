//! `mslinkd`: the daemon that owns mslink's state and serves `mslinkctl`.
//!
//! The entry point is [`run`] (or [`run_with`], for a clock, limits or an event bus of the
//! caller's): give it a validated [`Config`], a bound control socket and a shutdown token, and it
//! serves until the token is cancelled, then removes the socket it owns. `main.rs` only parses
//! flags, loads the config, sets up logging, binds the socket and wires signals to the token;
//! tests and the benchmark call the same function in-process on a temporary socket.
//!
//! ```text
//!  run ─▶ Daemon::open (state lock, SQLite, key) ─▶ ready ─▶ serve ─┬─ ipc::serve (connections)
//!                                                                   ├─ links::run_scheduler
//!                                                                   ├─ SIGHUP ─▶ Daemon::reload
//!                                                                   └─ ops (hooks, metrics, systemd)
//! ```

pub mod clock;
pub mod config;
pub mod detect;
pub mod dns;
pub mod events;
pub mod exchange;
pub mod files;
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
pub mod text;
pub mod vault;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, DEFAULT_CONFIG_PATH, Env, SharedConfig, StoreBackend};
use crate::events::Bus;
use crate::ipc::Limits;
use crate::links::{Links, SchedulerInbox};
use crate::store::{StateLock, Store, StoreError};
use crate::vault::{Vault, VaultError};

/// The running daemon: the config in force, the store, the link service and the event bus.
///
/// Ownership: `config` is replaced whole on reload (see [`SharedConfig`]); `store` is a handle to
/// the store thread; `links` owns the link lifecycle; the state lock lives as long as this does.
#[derive(Debug)]
pub struct Daemon {
    config: SharedConfig,
    env: Env,
    store: Store,
    links: Arc<Links>,
    clock: Arc<dyn Clock>,
    /// What happened, for hooks, metrics and logs.
    events: Bus,
    /// Who connected lately, so a command need not ask NSS again.
    callers: identity::Callers,
    /// The state directory's lock, for a store of its own (SQLite); a shared store has none.
    _lock: Option<StateLock>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    File(#[from] files::FileError),
    #[error("startup was interrupted")]
    Interrupted,
    #[error(
        "the key file {0} is not the key this fleet's secrets are sealed with: copy the key_file \
         of the fleet's other daemons here (every daemon sharing a store uses the same key)"
    )]
    WrongKey(PathBuf),
}

/// What the fleet's key check seals and opens (with itself as the associated data).
pub(crate) const KEY_CHECK: &[u8] = b"mslink-key-check";

/// The control socket to serve.
#[derive(Debug)]
pub enum Listener {
    /// Bound by us at this path: removed when the daemon stops.
    Owned(UnixListener, PathBuf),
    /// Passed by systemd: systemd's, never removed.
    Passed(UnixListener),
}

/// What [`run_with`] takes beside the config; [`Options::default`] is what production uses.
pub struct Options {
    pub env: Env,
    pub limits: Limits,
    pub clock: Arc<dyn Clock>,
    /// The event bus; pass a clone of one to watch or inject events.
    pub events: Bus,
    /// Called with the status summary once the database is open, just before serving.
    pub ready: Option<Box<dyn FnOnce(String) + Send>>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            env: Env::from_process(),
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
            events: Bus::default(),
            ready: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options").field("limits", &self.limits).field("clock", &self.clock).finish()
    }
}

/// Runs the daemon on `listener` until `shutdown` is cancelled, on production defaults.
pub async fn run(
    config: Config,
    listener: Listener,
    shutdown: CancellationToken,
) -> Result<(), OpenError> {
    run_with(config, listener, shutdown, Options::default()).await
}

/// [`run`], with the caller's [`Options`].
pub async fn run_with(
    config: Config,
    listener: Listener,
    shutdown: CancellationToken,
    options: Options,
) -> Result<(), OpenError> {
    let (listener, owned) = match listener {
        Listener::Owned(listener, path) => (listener, Some(path)),
        Listener::Passed(listener) => (listener, None),
    };
    let Options { env, limits, clock, events, ready } = options;
    let opened = Daemon::open(config, env, clock, events).await;
    let result = match opened {
        Ok((daemon, inbox)) => {
            if let Some(ready) = ready {
                let summary = systemd::Summary::read(&daemon.store).await;
                ready(summary.map(|s| s.line()).unwrap_or_default());
            }
            daemon.serve(inbox, listener, limits, shutdown).await;
            Ok(())
        }
        Err(e) => Err(e),
    };
    if let Some(socket) = owned {
        let _ = std::fs::remove_file(socket);
    }
    result
}

impl Daemon {
    /// Checks the files the config names ([`files`]), opens the store (SQLite: takes the state
    /// directory's lock first; PostgreSQL: connects and migrates) and loads (or creates) the
    /// key; on a shared store, refuses a key that is not the fleet's.
    async fn open(
        config: Config,
        env: Env,
        clock: Arc<dyn Clock>,
        events: Bus,
    ) -> Result<(Daemon, SchedulerInbox), OpenError> {
        // Files, SQLite and the key block: off the async workers.
        let local = config.clone();
        let (store, lock, vault) = tokio::task::spawn_blocking(move || {
            if let Some(problem) = files::audit(&local).into_iter().next() {
                return Err(OpenError::from(problem));
            }
            let (store, lock) = match &local.store {
                StoreBackend::Sqlite => {
                    let (store, lock) = Store::open(&local.state_dir)?;
                    (Some(store), Some(lock))
                }
                StoreBackend::Postgres(_) => (None, None),
            };
            Ok((store, lock, Vault::open_or_create(&local.key_file)?))
        })
        .await
        .map_err(|_| OpenError::Interrupted)??;
        let store = match (store, &config.store) {
            (Some(store), _) => store,
            (None, StoreBackend::Postgres(pg)) => {
                let pool = store::postgres::connect(pg).await.map_err(StoreError::from)?;
                let migrated =
                    store::postgres::migrate(&pool, pg).await.map_err(StoreError::from)?;
                tracing::info!(
                    server = %store::postgres::server(pg),
                    schema = migrated.to,
                    "sharing the PostgreSQL store"
                );
                Store::postgres(pool, pg.as_ref().clone())
            }
            (None, StoreBackend::Sqlite) => unreachable!("a SQLite store is opened above"),
        };
        let candidate = vault.seal(KEY_CHECK, KEY_CHECK)?;
        if let Some(stored) = store.key_check(candidate).await?
            && vault.open(&stored, KEY_CHECK).is_err()
        {
            return Err(OpenError::WrongKey(config.key_file.clone()));
        }
        let vault = Arc::new(vault);
        let config = SharedConfig::new(config);
        let (links, inbox) =
            Links::new(config.clone(), store.clone(), vault, clock.clone(), events.clone());
        let daemon = Daemon {
            config,
            env,
            store,
            links: Arc::new(links),
            clock,
            events,
            callers: identity::Callers::default(),
            _lock: lock,
        };
        Ok((daemon, inbox))
    }

    /// The config in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config.get()
    }

    /// Who `uid` is, from the callers resolved lately or, on the blocking pool, from NSS.
    pub async fn caller(self: &Arc<Self>, uid: u32) -> Option<identity::Caller> {
        let config = self.config();
        if let Some(caller) = self.callers.cached(uid, &config) {
            return Some(caller);
        }
        let daemon = self.clone();
        match tokio::task::spawn_blocking(move || daemon.callers.identify(uid, &config)).await {
            Ok(caller) => Some(caller),
            Err(e) => {
                tracing::error!(error = %e, uid, "identifying the caller failed");
                None
            }
        }
    }

    /// Now, by the daemon's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Re-reads the config file. An invalid file, or one that changes what only a restart can
    /// change, is refused and the running config stays in force; anything else applies live,
    /// and links blocked on the operator are re-checked.
    pub async fn reload(&self) -> Result<Arc<Config>, String> {
        let current = self.config();
        let (path, explicit) = match &current.source {
            Some(path) => (path.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let env = self.env.clone();
        let load = path.clone();
        // Reading the file and checking the files it names both block: off the async workers.
        let next = tokio::task::spawn_blocking(move || {
            let next = Config::load(&load, explicit, &env).map_err(|e| e.to_string())?;
            match files::audit(&next).into_iter().next() {
                Some(problem) => Err(problem.to_string()),
                None => Ok(next),
            }
        })
        .await
        .map_err(|_| "the reload was interrupted".to_owned())??;
        if let Some(key) = current.needs_restart_for(&next) {
            return Err(format!(
                "config {}: `{key}` cannot change while mslinkd runs; restart mslinkd to apply it",
                path.display()
            ));
        }
        let next = Arc::new(next);
        self.config.replace(next.clone());
        tracing::info!(config = %path.display(), "config reloaded");
        self.links.config_reloaded().await;
        Ok(next)
    }

    /// Serves the control socket until `shutdown` is cancelled; SIGHUP reloads the config.
    async fn serve(
        self,
        inbox: SchedulerInbox,
        listener: UnixListener,
        limits: Limits,
        shutdown: CancellationToken,
    ) {
        // Links stored before uids were kept (or seeded by name) belong to the account their
        // name has now; before anyone can ask for them.
        match self.store.bind_owners(identity::uid_of).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(links = n, "bound links to their owners' uids"),
            Err(e) => tracing::error!(error = %e, "cannot bind links to their owners' uids"),
        }
        let daemon = Arc::new(self);
        let reloader = tokio::spawn(reload_on_sighup(daemon.clone(), shutdown.clone()));
        let ops = ops::spawn(&daemon.config, &daemon.store, &daemon.events, &shutdown);
        let claimer = tokio::spawn(daemon.links.clone().claim_due_links(shutdown.clone()));
        let scheduler = tokio::spawn(links::run_scheduler(
            daemon.links.clone(),
            daemon.clock.clone(),
            inbox,
            shutdown.clone(),
        ));
        ipc::serve(daemon, listener, limits, shutdown).await;
        let _ = reloader.await;
        let _ = scheduler.await;
        let _ = claimer.await;
        ops.wait().await;
    }
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
                if let Err(e) = daemon.reload().await {
                    tracing::error!(error = %e, "reload refused; the running config is unchanged");
                }
            }
        }
    }
}

/// The system's wall clock in Unix seconds, for code outside the link lifecycle (logs, hooks).
pub fn now() -> i64 {
    SystemClock.now()
}
