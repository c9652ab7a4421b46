//! The one mapping from what went wrong inside the daemon to what `mslinkctl` shows: an
//! [`ErrorKind`] (and so an exit code), a message saying what happened, and a hint saying what to
//! do next. Domain code returns typed errors; only this module writes `mslinkctl` commands into
//! hints.

use mslink_proto::{ErrorKind, LinkState, WireError};

use crate::links::LinkError;
use crate::store::StoreError;

impl From<LinkError> for WireError {
    fn from(error: LinkError) -> WireError {
        let message = error.to_string();
        match error {
            LinkError::NotFound(_) => WireError::new(ErrorKind::NotFound, message)
                .with_hint("`mslinkctl status` lists your links"),
            LinkError::Disabled => WireError::new(ErrorKind::NotAllowed, message)
                .with_hint("ask an admin to turn it on: run `mslinkctl request`"),
            LinkError::LinkedAs { email, wanted, .. } => {
                WireError::new(ErrorKind::NotAllowed, message).with_hint(format!(
                    "run `mslinkctl disconnect {email}` first to link it as {wanted}"
                ))
            }
            LinkError::TooManyLinks { .. } => WireError::new(ErrorKind::NotAllowed, message)
                .with_hint("remove one with `mslinkctl disconnect EMAIL`, or ask an admin (`max_links_per_user` in mslinkd.toml)"),
            LinkError::NeedsPassword(_) => WireError::new(ErrorKind::Usage, message)
                .with_hint("connect again with --provider exchange; mslinkctl prompts for the password (in scripts: --password-stdin)"),
            LinkError::Undetected { email, conflicting } => {
                let why = if conflicting { "the evidence conflicts" } else { "no probe was decisive" };
                WireError::new(
                    ErrorKind::NotAllowed,
                    format!("cannot tell whether {email} is on Office365 or Exchange ({why})"),
                )
                .with_hint("say which with --provider office365 or --provider exchange (`mslinkctl detect` shows the evidence)")
            }
            LinkError::NoTokens(_) => WireError::new(ErrorKind::NotAllowed, message)
                .with_hint("access tokens exist only for Office365 links"),
            LinkError::NoEwsTokens => WireError::new(
                ErrorKind::NotAllowed,
                "EWS tokens are not issued: Exchange Online switches EWS off for third-party apps from October 2026",
            )
            .with_hint("use --resource graph (Microsoft Graph)"),
            LinkError::CheckFailed { email, failure } => {
                WireError::new(failure_kind(failure.state), message).with_hint(match failure.state {
                    LinkState::NeedsReauth => format!("sign in again: `mslinkctl connect {email}`"),
                    LinkState::Blocked => {
                        "see the reason: someone other than mslink must act".to_owned()
                    }
                    _ => "mslinkd retries by itself; `mslinkctl status` shows when".to_owned(),
                })
            }
            LinkError::TokenFailed { email, failure } => {
                WireError::new(failure_kind(failure.state), message)
                    .with_hint(format!("`mslinkctl check {email}` shows the link's state"))
            }
            LinkError::Changed => {
                WireError::new(ErrorKind::Failed, message).with_hint("run the command again")
            }
            LinkError::Office365(e) => e.wire_error(),
            LinkError::Exchange(e) => e.wire_error(),
            LinkError::Sealing(e) => WireError::new(ErrorKind::Internal, format!("{e}"))
                .with_hint("check `key_file` (journalctl -u mslinkd has the details)"),
            LinkError::Store(e) => internal(e),
        }
    }
}

/// A failed check or refresh: credentials refused is exit 7, anything else exit 1.
fn failure_kind(state: LinkState) -> ErrorKind {
    if state == LinkState::NeedsReauth { ErrorKind::AuthRejected } else { ErrorKind::Failed }
}

/// A store failure, logged in full and reported without internals.
pub fn internal(error: StoreError) -> WireError {
    tracing::error!(error = %error, "state store failed");
    if error.is_storage_fault() {
        WireError::new(
            ErrorKind::Internal,
            "mslinkd cannot write its database (disk full or read-only)",
        )
        .with_hint("free space or fix the state directory's permissions; nothing stored was lost")
    } else {
        WireError::new(ErrorKind::Internal, "mslinkd hit an internal error")
            .with_hint("the daemon log has the details (journalctl -u mslinkd)")
    }
}
