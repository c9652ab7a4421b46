//! What happened, for whoever listens: the state-change hook, metrics, logs.
//!
//! Producers (handlers, the scheduler) call [`Bus::emit`]; it never blocks and never fails. Each
//! consumer holds its own `broadcast::Receiver`; a consumer that falls behind loses the oldest
//! events (and is told how many), it never slows the daemon down.

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
}

impl Default for Bus {
    fn default() -> Self {
        Bus { sender: broadcast::channel(4096).0 }
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
}
