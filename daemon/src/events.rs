//! What happened, for whoever listens: the state-change hook, metrics, logs.
//!
//! Producers (the link service, handlers) call [`Bus::emit`]; it never blocks and never fails.
//! Each consumer holds its own `broadcast::Receiver` and drains it promptly into whatever queue
//! it keeps; one that still falls behind loses the oldest events (and is told how many), it never
//! slows the daemon down. Consumers report what they lost or merged with [`Bus::note_lost`] and
//! [`Bus::note_coalesced`], and the metrics show it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mslink_proto::{LinkState, Provider};
use tokio::sync::broadcast;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A link entered a new state (including its first state when linked).
    LinkState {
        email: String,
        user: String,
        provider: Provider,
        state: LinkState,
        /// `None` for a new link.
        previous: Option<LinkState>,
        reason: Option<String>,
    },
    /// A link was removed.
    LinkRemoved { email: String, user: String, provider: Provider },
    /// A user asked for the integration (so admins can be paged).
    Requested { user: String, message: Option<String> },
    /// An admin turned the integration on or off.
    Integration { enabled: bool, by: String },
    /// The scheduler ran a round (what the schedule said was due when it woke).
    Round { refresh: bool, check: bool },
    /// A token refresh finished.
    Refreshed { email: String, user: String, provider: Provider, ok: bool },
    /// A connectivity check finished.
    Checked {
        email: String,
        user: String,
        provider: Provider,
        ok: bool,
        latency: Duration,
        /// Unix seconds, when `ok`.
        at: i64,
    },
}

/// The daemon's event bus. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Bus {
    sender: broadcast::Sender<Event>,
    /// Taken only to add to or copy the counts.
    stats: Arc<Mutex<BusStats>>,
}

/// What consumers lost or merged, since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Consumer name → events it could not pass on.
    pub lost: BTreeMap<&'static str, u64>,
    /// State changes merged into a later one of the same link before the hook ran.
    pub coalesced: u64,
}

/// How many events the bus holds for a consumer that is behind.
const CAPACITY: usize = 16_384;

impl Default for Bus {
    fn default() -> Self {
        Bus { sender: broadcast::channel(CAPACITY).0, stats: Arc::default() }
    }
}

impl Bus {
    /// Publishes an event to every current subscriber (none is fine).
    pub fn emit(&self, event: Event) {
        let _ = self.sender.send(event);
    }

    /// A receiver of every event emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    /// `consumer` could not pass `n` events on.
    pub fn note_lost(&self, consumer: &'static str, n: u64) {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()).lost.entry(consumer).or_default() +=
            n;
    }

    /// `n` state changes were merged into later ones.
    pub fn note_coalesced(&self, n: u64) {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).coalesced += n;
    }

    /// A copy of the counts.
    pub fn stats(&self) -> BusStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
