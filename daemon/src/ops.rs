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
//! missed. A metrics port that cannot be bound is logged as an error and the daemon carries on:
//! keeping links alive matters more than exporting numbers, and Prometheus reports the target
//! down. All tasks stop on `shutdown`; the returned tracker waits for them.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Daemon, hooks, metrics, systemd};

/// Starts the ops tasks; `wait` on the result after `shutdown` to let them finish.
pub fn spawn(daemon: &Arc<Daemon>, shutdown: &CancellationToken) -> TaskTracker {
    let tasks = TaskTracker::new();
    tasks.spawn(hooks::follow(daemon.clone(), daemon.events.subscribe(), shutdown.clone()));

    let recorder = Arc::new(metrics::Recorder::default());
    tasks.spawn(recorder.clone().follow(daemon.events.subscribe(), shutdown.clone()));
    if let Some(addr) = daemon.config().metrics.listen {
        match metrics::bind(addr, daemon.clone(), recorder, shutdown.clone()) {
            Ok(server) => {
                tasks.spawn(server);
            }
            Err(e) => tracing::error!(
                listen = %addr,
                error = %e,
                "cannot serve metrics on `[metrics] listen`; fix it and restart mslinkd"
            ),
        }
    }

    tasks.spawn(systemd::report_status(daemon.clone(), shutdown.clone()));
    tasks.spawn(systemd::watchdog(daemon.clone(), shutdown.clone()));
    tasks.close();
    tasks
}
