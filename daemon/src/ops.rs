//! The operator-facing tasks that ride along with the control socket: the state-change hook,
//! the Prometheus endpoint, and systemd's status line and watchdog.
//!
//! ```text
//!  Daemon::serve ─▶ ops::spawn ─┬─ hooks::follow      (daemon.events)
//!                               ├─ metrics: Recorder::follow (daemon.events) + HTTP server
//!                               ├─ systemd::report_status    (daemon.events ─▶ STATUS=)
//!                               └─ systemd::watchdog         (WATCHDOG=1)
//! ```
//!
//! Each subscribes to the event bus before `spawn` returns, so no event emitted afterwards is
//! missed. Each gets the handles it needs (config, store, bus), not the whole daemon. All tasks
//! stop on `shutdown`; the returned tracker waits for them.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SharedConfig;
use crate::events::Bus;
use crate::store::Store;
use crate::{hooks, metrics, systemd};

/// Starts the ops tasks with what each needs; `wait` on the result after `shutdown`.
pub fn spawn(
    config: &SharedConfig,
    store: &Store,
    events: &Bus,
    shutdown: &CancellationToken,
) -> TaskTracker {
    let tasks = TaskTracker::new();
    tasks.spawn(hooks::follow(
        config.clone(),
        events.clone(),
        events.subscribe(),
        shutdown.clone(),
    ));
    let recorder = Arc::new(metrics::Recorder::default());
    tasks.spawn(recorder.clone().follow(events.clone(), events.subscribe(), shutdown.clone()));
    tasks.spawn(metrics::serve(
        config.clone(),
        store.clone(),
        recorder,
        events.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(systemd::report_status(store.clone(), events.subscribe(), shutdown.clone()));
    tasks.spawn(systemd::watchdog(store.clone(), shutdown.clone()));
    tasks.close();
    tasks
}
