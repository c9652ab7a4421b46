//! The one mapping from what went wrong inside the daemon to what `mslinkctl` shows: an
//! [`ErrorKind`] (and so an exit code), a message saying what happened, and a hint saying what to
//! do next. Domain code returns typed errors; only this module writes `mslinkctl` commands into
//! hints.

use mslink_proto::{ErrorKind, LinkState, WireError};

use crate::exchange::ExchangeError;
use crate::links::LinkError;
use crate::office365::Office365Error;
use crate::store::StoreError;

/// The longest error message sent to `mslinkctl`.
const MAX_MESSAGE: usize = 2000;

/// An error's text as `mslinkctl` shows it. Error texts carry what servers sent (EWS and
/// Autodiscover messages, Graph's addresses, OAuth descriptions), so they are cleaned here, at
/// the one place they become a wire message: no escape sequence or newline can forge a line on
/// the user's terminal.
fn shown(error: &dyn std::fmt::Display) -> String {
    crate::text::clean(&error.to_string(), MAX_MESSAGE)
}

impl From<LinkError> for WireError {
    fn from(error: LinkError) -> WireError {
        let message = shown(&error);
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
                .with_hint("run `mslinkctl connect` on a terminal to be asked for the password, or pipe it in with --password-stdin"),
            LinkError::KeytabForOffice365(email) => WireError::new(ErrorKind::Usage, message)
                .with_hint(format!("run `mslinkctl connect {email}` without --keytab to sign in through Microsoft")),
            LinkError::Keytab(_) => WireError::new(ErrorKind::Usage, message)
                .with_hint("export the service account's keytab with `ktpass` (Windows) or `kadmin ktadd`, and name its account with --username if it holds several"),
            LinkError::Undetected { email, conflicting } => {
                let why = if conflicting { "the evidence conflicts" } else { "no probe was decisive" };
                WireError::new(
                    ErrorKind::NotAllowed,
                    format!("cannot tell whether {email} is on Office365 or Exchange ({why})"),
                )
                .with_hint("say which with --provider office365 or --provider exchange (`mslinkctl detect` shows the evidence)")
            }
            LinkError::NoTokens(_) => WireError::new(ErrorKind::NotAllowed, message)
                .with_hint("access tokens exist only for Office365 links and Exchange links signed in through Entra ID"),
            LinkError::HybridEwsOnly { email, .. } => WireError::new(ErrorKind::NotAllowed, message)
                .with_hint(format!("run `mslinkctl token {email} --for ews`")),
            LinkError::ResourceNotConfigured(resource) => {
                let hint = format!(
                    "an admin adds \"{resource}\" to `[office365] resources` in mslinkd.toml and \
                     reloads; then sign in again (`mslinkctl connect EMAIL`) so your consent covers it"
                );
                let hint = if resource == mslink_proto::TokenResource::Ews {
                    format!("{hint} (Exchange Online switches EWS off for third-party apps from October 2026)")
                } else {
                    hint
                };
                WireError::new(ErrorKind::Usage, message).with_hint(hint)
            }
            LinkError::HostNotRegistered { email, resource, error } => {
                let consent = match error.admin_consent() {
                    Some(url) => format!(" (admin consent: {url})"),
                    None => String::new(),
                };
                WireError::new(ErrorKind::Failed, message).with_hint(format!(
                    "a tenant admin must register {resource} with Entra ID for hybrid modern \
                     authentication (add it to the servicePrincipalNames of Office 365 Exchange \
                     Online) and consent to {resource}/EWS.AccessAsUser.All for this app{consent}; \
                     then run `mslinkctl connect {email}` again"
                ))
            }
            LinkError::ResourceRefused { email, error, .. } => {
                let admin = match error.admin_consent() {
                    Some(url) => format!(", or a tenant admin grants consent at {url}"),
                    None => String::new(),
                };
                WireError::new(ErrorKind::AuthRejected, message).with_hint(format!(
                    "the sign-in did not consent to it: sign in again with `mslinkctl connect {email}`{admin}"
                ))
            }
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
                WireError::new(failure_kind(failure.state), message).with_hint(
                    if failure.state == LinkState::NeedsReauth {
                        format!("sign in again: `mslinkctl connect {email}`")
                    } else {
                        format!("`mslinkctl check {email}` shows the link's state")
                    },
                )
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

// The provider errors' mappings live here too, beside the service's: inherent impls of the
// provider modules' types, so the provider modules say what happened and this module alone says
// what to run next.

impl Office365Error {
    /// How `connect` reports this failure (SPEC §3: 7 rejected/declined, 8 timeout/cancel).
    pub fn wire_error(&self) -> WireError {
        let message = shown(self);
        match self {
            Office365Error::NotConfigured => WireError::new(ErrorKind::Failed, message).with_hint(
                "set `[office365] client_id` in the mslinkd config to the organisation's Entra \
                 app registration, then run `mslinkctl reload`",
            ),
            Office365Error::Declined { .. } => WireError::new(ErrorKind::AuthRejected, message)
                .with_hint("run `mslinkctl connect` again and accept the requested permissions"),
            Office365Error::WrongMailbox { expected, .. } => {
                WireError::new(ErrorKind::AuthRejected, message).with_hint(format!(
                    "run `mslinkctl connect {expected}` again and sign in as {expected} \
                     (choose \"Use another account\")"
                ))
            }
            Office365Error::NoMailboxSignedIn { expected, .. } => {
                WireError::new(ErrorKind::AuthRejected, message).with_hint(format!(
                    "nothing was stored; run `mslinkctl connect {expected}` again and sign in as \
                     {expected}, or for a mailbox on an on-premises Exchange server run \
                     `mslinkctl connect {expected} --provider exchange`"
                ))
            }
            Office365Error::MailboxNotInExchangeOnline { email, .. } => {
                WireError::new(ErrorKind::Failed, message).with_hint(format!(
                    "nothing was stored; for a mailbox on an on-premises Exchange server run \
                     `mslinkctl connect {email} --provider exchange`"
                ))
            }
            Office365Error::TimedOut(_) => WireError::new(ErrorKind::Timeout, message)
                .with_hint("run `mslinkctl connect` again and finish signing in sooner"),
            Office365Error::Cancelled => WireError::new(ErrorKind::Timeout, message),
            Office365Error::NoRefreshToken { asked_consent: false, .. } => {
                WireError::new(ErrorKind::AuthRejected, message).with_hint(
                    "nothing was stored; set `[office365] prompt = \"consent\"` in the mslinkd \
                     config, run `mslinkctl reload`, and connect again",
                )
            }
            Office365Error::NoRefreshToken { asked_consent: true, .. } => {
                WireError::new(ErrorKind::AuthRejected, message).with_hint(
                    "nothing was stored; the tenant admin must allow the app the \
                     `offline_access` permission (maintain access to data), then connect again",
                )
            }
            Office365Error::BadDeviceCode { .. } => WireError::new(ErrorKind::Failed, message)
                .with_hint(
                    "run `mslinkctl connect --device-code` again; if it repeats, \
                     `[office365] device_code_url` and `token_url` belong to different servers",
                ),
            Office365Error::BadRedirect(_) => WireError::new(ErrorKind::Failed, message).with_hint(
                "after signing in, copy the whole address from the browser's address bar \
                 (it starts with http://localhost) and paste it",
            ),
            Office365Error::Listen { .. } => WireError::new(ErrorKind::Failed, message).with_hint(
                "set `[office365] redirect_listen` to a free loopback port, or use \
                 `--device-code` or `--paste`",
            ),
            _ => {
                let failure = self.failure();
                match failure.state {
                    LinkState::NeedsReauth => {
                        WireError::new(ErrorKind::AuthRejected, failure.reason)
                            .with_hint("run `mslinkctl connect` again to sign in")
                    }
                    LinkState::Degraded => {
                        let wait = failure
                            .retry_after
                            .map(|d| format!(" (the server asked to wait {}s)", d.as_secs().max(1)))
                            .unwrap_or_default();
                        WireError::new(ErrorKind::Failed, failure.reason).with_hint(format!(
                            "this looks temporary: try again in a few minutes{wait}"
                        ))
                    }
                    _ => WireError::new(ErrorKind::Failed, failure.reason.clone()).with_hint(
                        format!(
                            "{} must act on this; mslink cannot fix it by retrying",
                            capitalise(failure.actor.as_str())
                        ),
                    ),
                }
            }
        }
    }
}

impl ExchangeError {
    /// What `connect` reports.
    pub fn wire_error(&self) -> WireError {
        let message = shown(self);
        match self {
            ExchangeError::Rejected { .. } => WireError::new(ErrorKind::AuthRejected, message)
                .with_hint("check the password (and `--username DOMAIN\\user` if the Exchange login is not the e-mail address), then run `mslinkctl connect` again"),
            ExchangeError::Timeout { .. } => WireError::new(ErrorKind::Timeout, message)
                .with_hint("check that the server is reachable from the mslink host, then try again"),
            ExchangeError::Kerberos { error, .. } => kerberos_wire_error(error, message),
            // Met at connect only when Entra ID could not be signed in to: the link service
            // answers it by signing in.
            ExchangeError::ModernAuth { .. } => WireError::new(ErrorKind::Failed, message)
                .with_hint("run `mslinkctl connect EMAIL` without `--provider` to sign in through Entra ID"),
            ExchangeError::PasswordNeeded { .. } => WireError::new(ErrorKind::Usage, message)
                .with_hint("run `mslinkctl connect` on a terminal to be asked for the password, or pipe it in with --password-stdin"),
            ExchangeError::KeytabNeedsKerberos { allowed: false, .. } => {
                WireError::new(ErrorKind::Failed, message)
                    .with_hint("add \"kerberos\" to `[exchange] auth` in mslinkd.toml and run `mslinkctl reload`")
            }
            ExchangeError::KeytabNeedsKerberos { allowed: true, .. } => {
                WireError::new(ErrorKind::Failed, message)
                    .with_hint("ask the Exchange admin to turn on Negotiate (Kerberos) for EWS and Autodiscover, or connect with the account's password")
            }
            ExchangeError::Cancelled => WireError::new(ErrorKind::Timeout, message),
            ExchangeError::Certificate { .. } => {
                WireError::new(ErrorKind::Failed, message).with_hint(crate::exchange::CA_HINT)
            }
            ExchangeError::InvalidServer { .. } | ExchangeError::InvalidAddress { .. } => {
                WireError::new(ErrorKind::Usage, message)
                    .with_hint("pass `--server mail.example.com` or `--server https://mail.example.com/EWS/Exchange.asmx`")
            }
            ExchangeError::NotDiscovered { .. } | ExchangeError::TooManyRedirects { .. } => {
                WireError::new(ErrorKind::Failed, message)
                    .with_hint("name the server with `--server mail.example.com` (ask your Exchange admin for its name)")
            }
            // Like an undecided provider (SPEC §6): the user must say, so exit 6.
            ExchangeError::Unvouched { email, host, .. } => {
                WireError::new(ErrorKind::NotAllowed, message).with_hint(format!(
                    "if {host} is your organisation's Exchange server, run `mslinkctl connect \
                     {email} --trust-server {host}`; otherwise name the server with `mslinkctl \
                     connect {email} --server HOST` (ask your Exchange admin for its name)"
                ))
            }
            ExchangeError::ExchangeOnline { .. } => WireError::new(ErrorKind::Failed, message)
                .with_hint("connect it with `--provider office365`"),
            ExchangeError::MailboxAccessDenied { mailbox, username, .. } => {
                WireError::new(ErrorKind::Failed, message).with_hint(format!(
                    "ask the owner of {mailbox} to add {username} as a delegate with access to the \
                     inbox and calendar (Outlook: File > Account Settings > Delegate Access), or \
                     connect with the mailbox's own login"
                ))
            }
            ExchangeError::NoSuchMailbox { .. } => WireError::new(ErrorKind::Failed, message)
                .with_hint("check the address: with `--username`, EMAIL is the mailbox that login may open"),
            _ => {
                let failure = self.failure();
                let hint = if failure.is_transient() {
                    "this looks temporary: try again in a few minutes".to_owned()
                } else {
                    format!("to fix: {}", failure.actor.as_str())
                };
                WireError::new(ErrorKind::Failed, message).with_hint(hint)
            }
        }
    }
}

/// What `connect` reports for a failed Kerberos sign-in.
fn kerberos_wire_error(
    error: &crate::exchange::kerberos::KerberosError,
    message: String,
) -> WireError {
    use crate::exchange::kerberos::KerberosError as K;
    let (kind, hint) = match error {
        K::WrongPassword { .. } => (
            ErrorKind::AuthRejected,
            "check the password (and `--username user@REALM` if the Windows login differs from \
             the address), then run `mslinkctl connect` again"
                .to_owned(),
        ),
        K::WrongKey { .. } => (
            ErrorKind::AuthRejected,
            "export the account's keytab again (`ktpass`, or `kadmin ktadd`), then run \
             `mslinkctl connect --keytab FILE` again"
                .to_owned(),
        ),
        K::UnknownPrincipal { .. } | K::Username(_) => (
            ErrorKind::AuthRejected,
            "give the Windows login with `--username user@REALM` or `--username DOMAIN\\user` \
             (and `[exchange] realm` in mslinkd.toml if the realm is not the domain)"
                .to_owned(),
        ),
        K::NoServicePrincipal { spn, .. } => (
            ErrorKind::Failed,
            format!(
                "ask the Exchange admin to register {spn} for the server (setspn), or allow \
                 \"ntlm\" in `[exchange] auth`"
            ),
        ),
        K::ClockSkew { .. } => (
            ErrorKind::Failed,
            "set this machine's clock right (Kerberos allows 5 minutes; `timedatectl` shows \
             whether NTP is on), then try again"
                .to_owned(),
        ),
        K::KdcUnreachable { .. } => (
            ErrorKind::Failed,
            "check `[exchange] kdc` (or the realm's _kerberos._tcp SRV record) and that the KDC \
             is reachable from the mslink host; this looks temporary: try again in a few minutes"
                .to_owned(),
        ),
        K::MutualAuth(_) | K::Other(_) => (
            ErrorKind::Failed,
            "ask the Exchange admin to check the server's Kerberos setup".to_owned(),
        ),
    };
    WireError::new(kind, message).with_hint(hint)
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A failed check or refresh: credentials refused is exit 7, anything else exit 1.
fn failure_kind(state: LinkState) -> ErrorKind {
    if state == LinkState::NeedsReauth { ErrorKind::AuthRejected } else { ErrorKind::Failed }
}

/// A store failure, logged in full and reported without internals.
pub fn internal(error: StoreError) -> WireError {
    tracing::error!(error = %error, "state store failed");
    if let StoreError::Leased = error {
        return WireError::new(ErrorKind::Busy, error.to_string());
    }
    if let StoreError::Postgres(e) = &error {
        return WireError::new(
            ErrorKind::Unreachable,
            format!("mslinkd cannot use its store: {e}"),
        )
        .with_hint(
            "mslinkd keeps running and resumes by itself once PostgreSQL answers; nothing \
                 stored is lost (journalctl -u mslinkd has the details)",
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_a_server_sent_cannot_forge_lines_on_the_terminal() {
        let error = ExchangeError::NotDiscovered {
            domain: "contoso.test".into(),
            tried: vec![
                "https://autodiscover.contoso.test: \u{1b}[2J\nmslinkctl: linked\u{202e}".into(),
            ],
        };
        let wire = error.wire_error();
        assert!(!wire.message.contains(['\n', '\u{1b}', '\u{202e}']), "{:?}", wire.message);
        assert!(wire.message.contains("mslinkctl: linked"), "the text stays readable");
    }
}
