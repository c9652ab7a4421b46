//! Talking to systemd: socket activation, readiness, status, watchdog and stopping.
//!
//! ```text
//!  main: take_activated_socket() (before any thread: it edits the environment)
//!        Daemon::open ─▶ socket (activated, else bound) ─▶ notify_ready()      READY=1
//!  Daemon::serve ─▶ Status task:   start, on link/integration events, every 30 s ─▶ STATUS=…
//!                ─▶ Watchdog task: every WATCHDOG_USEC/2, if the store thread answers ─▶ WATCHDOG=1
//!  SIGTERM ─▶ notify_stopping()                                                 STOPPING=1
//! ```
//!
//! Every message is a no-op when `NOTIFY_SOCKET` is unset (not under systemd, in tests), and a
//! failed send is logged, never fatal: systemd's own timeouts then tell the operator.

use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;
use std::time::Duration;

use mslink_proto::LinkState;
use sd_notify::NotifyState;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::events::Event;
use crate::store::Store;

/// How often STATUS= is read again with no event to prompt it.
const STATUS_EVERY: Duration = Duration::from_secs(30);

/// A listening socket handed over by systemd (`mslinkd.socket`) or `systemd-socket-activate`.
#[derive(Debug)]
pub struct Activated {
    pub listener: StdUnixListener,
    /// Where it listens, for the log (`None` for an unnamed socket).
    pub path: Option<PathBuf>,
}

/// Takes the first socket passed with `LISTEN_FDS` (checking `LISTEN_PID`), if any.
///
/// Call it before the tokio runtime starts: it unsets `LISTEN_FDS`/`LISTEN_PID` so hooks and other
/// children do not think the socket is theirs, and changing the environment is only sound while
/// the process has one thread.
pub fn take_activated_socket() -> std::io::Result<Option<Activated>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    if fds.len() > 1 {
        // The units pass one socket; a second is a configuration mistake worth a line.
        eprintln!("mslinkd: {} sockets were passed; serving the first one only", fds.len());
    }
    let Some(listener) = fds.take_unix_listener(0)? else {
        return Ok(None);
    };
    let path = listener.local_addr().ok().and_then(|a| a.as_pathname().map(PathBuf::from));
    Ok(Some(Activated { listener, path }))
}

fn notify(what: &str, states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, message = what, "cannot notify systemd");
    }
}

/// READY=1: the socket listens and the database is open.
pub fn notify_ready(status: &str) {
    notify("READY", &[NotifyState::Ready, NotifyState::Status(status)]);
}

/// STOPPING=1: shutdown has begun.
pub fn notify_stopping() {
    notify("STOPPING", &[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// STATUS=…: the one-line summary `systemctl status` shows.
pub fn notify_status(status: &str) {
    notify("STATUS", &[NotifyState::Status(status)]);
}

/// Counts of links per state, as `systemctl status` and `status --check` show them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub enabled: bool,
    pub counts: Vec<(LinkState, usize)>,
}

impl Summary {
    /// Reads the integration toggle and counts links per state.
    pub async fn read(store: &Store) -> Result<Summary, crate::store::StoreError> {
        let overview = store.overview(false).await?;
        Ok(Summary { enabled: overview.enabled, counts: overview.counts })
    }

    /// "42 links: 40 active, 1 degraded, 1 needs_reauth" (states with no link are left out).
    pub fn line(&self) -> String {
        let total: usize = self.counts.iter().map(|(_, n)| n).sum();
        let mut line = format!("{total} link{}", if total == 1 { "" } else { "s" });
        let parts: Vec<String> = self
            .counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        if !parts.is_empty() {
            line.push_str(": ");
            line.push_str(&parts.join(", "));
        }
        if !self.enabled {
            line.push_str(" (Microsoft integration disabled)");
        }
        line
    }
}

/// Keeps STATUS= current: once at start, then after each event that can change the counts
/// (coalesced, so a burst of state changes costs one store query).
pub async fn report_status(
    store: Store,
    mut events: tokio::sync::broadcast::Receiver<Event>,
    shutdown: CancellationToken,
) {
    loop {
        match Summary::read(&store).await {
            Ok(summary) => notify_status(&summary.line()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot count links for the systemd status");
                notify_status(&format!("the store does not answer: {e}"));
            }
        }
        // Wait for a relevant event, then let a burst settle; read again every so often as well,
        // so a store that stops (or starts again) answering shows without any event.
        let again = tokio::time::sleep(STATUS_EVERY);
        tokio::pin!(again);
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                () = &mut again => break,
                event = events.recv() => event,
            };
            match event {
                Ok(
                    Event::LinkState { .. } | Event::LinkRemoved { .. } | Event::Integration { .. },
                )
                | Err(RecvError::Lagged(_)) => break,
                Ok(_) => {}
                Err(RecvError::Closed) => return,
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        // Drop what queued up during the pause: the next read sees its effect.
        while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) =
            events.try_recv()
        {}
    }
}

/// Pings the watchdog at half of `WATCHDOG_USEC`, but only while the store thread answers: a
/// wedged database makes systemd restart the daemon, a merely busy runtime does not.
pub async fn watchdog(store: Store, shutdown: CancellationToken) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = period / 2;
    tracing::info!(every = ?every, "systemd watchdog enabled");
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match tokio::time::timeout(every, store.ping_writer()).await {
            Ok(Ok(_)) => notify("WATCHDOG", &[NotifyState::Watchdog]),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "store failing; withholding the watchdog ping")
            }
            Err(_) => tracing::error!("store not answering; withholding the watchdog ping"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_only_states_that_have_links() {
        let summary = Summary {
            enabled: true,
            counts: vec![
                (LinkState::Active, 40),
                (LinkState::Degraded, 1),
                (LinkState::NeedsReauth, 1),
                (LinkState::Blocked, 0),
                (LinkState::Suspended, 0),
            ],
        };
        assert_eq!(summary.line(), "42 links: 40 active, 1 degraded, 1 needs_reauth");
        let empty = Summary { enabled: false, counts: vec![(LinkState::Active, 0)] };
        assert_eq!(empty.line(), "0 links (Microsoft integration disabled)");
    }
}
