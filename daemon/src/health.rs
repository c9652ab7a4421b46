//! What a failed sign-in, refresh or check means for a link (SPEC §4), decided once per protocol
//! by its error enum, so the scheduler never matches strings.
//!
//! ```text
//!                 transient (network, 5xx, 429, busy)            credentials refused
//!   active ───────────────────────────────▶ degraded   active ─────────────────────▶ needs_reauth
//!     ▲  check ok                              │          policy / consent / config
//!     └────────────────────────────────────────┘   active ─────────────────────▶ blocked
//! ```

use std::time::Duration;

use mslink_proto::LinkState;

/// Who must act to fix a failure, shown in status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// Nobody: it is expected to pass.
    Nobody,
    /// The user: sign in again, fix the password.
    User,
    /// The organisation's Microsoft 365 / Exchange admin (consent, policy, mailbox settings).
    TenantAdmin,
    /// Whoever runs mslinkd (app registration, config, CA file).
    Operator,
}

impl Actor {
    /// How it is stored.
    pub fn key(self) -> &'static str {
        match self {
            Actor::Nobody => "nobody",
            Actor::User => "user",
            Actor::TenantAdmin => "tenant_admin",
            Actor::Operator => "operator",
        }
    }

    /// The inverse of [`Actor::key`].
    pub fn parse(key: &str) -> Option<Actor> {
        [Actor::Nobody, Actor::User, Actor::TenantAdmin, Actor::Operator]
            .into_iter()
            .find(|actor| actor.key() == key)
    }

    /// The words status shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Nobody => "nobody (retrying)",
            Actor::User => "the user",
            Actor::TenantAdmin => "the tenant admin",
            Actor::Operator => "the mslink operator",
        }
    }
}

/// A classified failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// `Degraded`, `NeedsReauth` or `Blocked`.
    pub state: LinkState,
    /// What happened, with the AADSTS or EWS code where there is one. Never a secret.
    pub reason: String,
    pub actor: Actor,
    /// How long the server asked us to wait (Retry-After, BackOffMilliseconds).
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure that should pass by itself: retry with backoff.
    pub fn transient(reason: impl Into<String>) -> Failure {
        Failure {
            state: LinkState::Degraded,
            reason: reason_of(reason),
            actor: Actor::Nobody,
            retry_after: None,
        }
    }

    /// The credentials are no longer accepted: the user must connect again.
    pub fn reauth(reason: impl Into<String>) -> Failure {
        Failure {
            state: LinkState::NeedsReauth,
            reason: reason_of(reason),
            actor: Actor::User,
            retry_after: None,
        }
    }

    /// Policy, consent or configuration: `actor` must act.
    pub fn blocked(reason: impl Into<String>, actor: Actor) -> Failure {
        Failure { state: LinkState::Blocked, reason: reason_of(reason), actor, retry_after: None }
    }

    /// Adds the server's requested wait.
    pub fn retry_after(mut self, wait: Option<Duration>) -> Failure {
        self.retry_after = wait;
        self
    }

    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        self.state == LinkState::Degraded
    }

    /// The reason with who must act, as stored and shown.
    pub fn describe(&self) -> String {
        match self.actor {
            Actor::Nobody => self.reason.clone(),
            actor => format!("{} (to fix: {})", self.reason, actor.as_str()),
        }
    }
}

/// A reason as it is kept: much of it is server text (error descriptions, EWS messages), so it
/// is cleaned and capped here, the one place every failure passes.
fn reason_of(reason: impl Into<String>) -> String {
    crate::text::clean(&reason.into(), crate::text::MAX_REASON)
}

/// What a successful check saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckReport {
    pub inbox_total: Option<u64>,
    pub inbox_unread: Option<u64>,
    pub calendar_ok: bool,
    /// Exchange: the server's version.
    pub server_version: Option<String>,
}
