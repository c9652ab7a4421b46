//! What can go wrong talking to the Microsoft identity platform and Graph, and what each failure
//! means for a link (SPEC §4) and for `connect` (SPEC §3 exit codes).
//!
//! Microsoft's `error` field is the primary key (STYLE habit 2); the AADSTS number (from
//! `error_codes` or the description) and `suberror` only refine it and are kept in the reason:
//!
//! ```text
//!   HTTP 429 / 5xx, temporarily_unavailable, server_error,
//!   network, unknown error codes                              -> degraded (Retry-After kept)
//!   invalid_grant, interaction_required, login_required,
//!   consent_required, access_denied                           -> needs_reauth (the user)
//!     ... with AADSTS65001 (no admin consent), 53003 (CA)     -> blocked (the tenant admin)
//!   invalid_client, unauthorized_client, invalid_scope,
//!   invalid_request, unsupported_*                            -> blocked (the mslink operator)
//!     ... unauthorized_client with AADSTS700016 (no app)      -> blocked (the tenant admin)
//!   Graph 401 InvalidAuthenticationToken                      -> TokenRejected: refresh, retry once
//!   Graph 403, MailboxNotEnabledForRESTAPI                    -> blocked (the tenant admin)
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mslink_proto::{ErrorKind, LinkState, WireError};
use serde::{Deserialize, Serialize};

use crate::health::{Actor, Failure};
use crate::net::NetError;

/// An OAuth 2.0 error body as Microsoft sends it (RFC 6749 §5.2 plus `error_codes`,
/// `suberror`, trace ids). Descriptions carry no secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct OAuthErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suberror: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_uri: Option<String>,
}

impl OAuthErrorBody {
    /// The AADSTS number: `error_codes`, else `AADSTSnnnn` in the description, else `?code=` in
    /// `error_uri`.
    pub fn aadsts(&self) -> Option<u64> {
        if let Some(code) = self.error_codes.first() {
            return Some(*code);
        }
        let from_text = |text: &str, marker: &str| {
            let start = text.find(marker)? + marker.len();
            let digits: String = text[start..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        self.error_description
            .as_deref()
            .and_then(|d| from_text(d, "AADSTS"))
            .or_else(|| self.error_uri.as_deref().and_then(|u| from_text(u, "code=")))
    }

    /// The description's first line without Microsoft's `AADSTSnnnn: ` prefix, bounded.
    fn summary(&self) -> Option<String> {
        let text = self.error_description.as_deref()?.lines().next()?.trim();
        let text = match text.strip_prefix("AADSTS") {
            Some(rest) => rest.trim_start_matches(|c: char| c.is_ascii_digit()),
            None => text,
        };
        let text = text.trim_start_matches(':').trim();
        if text.is_empty() {
            return None;
        }
        let mut short: String = text.chars().take(200).collect();
        if short.len() < text.len() {
            short.push('…');
        }
        Some(short)
    }
}

/// At most `max` characters of a server-supplied word, marked when cut: a reason is stored with
/// the link and shown by `status`, whatever length the server sent.
fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => text.into(),
        Some((end, _)) => format!("{}…", &text[..end]).into(),
    }
}

impl std::fmt::Display for OAuthErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&clip(&self.error, 100))?;
        let mut detail = Vec::new();
        if let Some(code) = self.aadsts() {
            detail.push(format!("AADSTS{code}"));
        }
        if let Some(sub) = &self.suberror {
            detail.push(clip(sub, 100).into_owned());
        }
        if !detail.is_empty() {
            write!(f, " ({})", detail.join(", "))?;
        }
        if let Some(summary) = self.summary() {
            write!(f, ": {summary}")?;
        }
        Ok(())
    }
}

impl oauth2::ErrorResponse for OAuthErrorBody {}

/// Everything `sign_in`, `refresh` and `check` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Office365Error {
    /// `[office365] client_id` is missing.
    #[error("Office365 sign-in is not configured: `[office365] client_id` is not set")]
    NotConfigured,
    #[error("cannot read `[office365] client_secret_file` {path}: {source}")]
    ClientSecretFile { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Client(#[from] NetError),
    /// The browser flow's loopback listener could not be bound.
    #[error("cannot listen for the sign-in redirect on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    /// The user (or a policy acting for them) declined the sign-in.
    #[error("the sign-in was declined{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Declined { detail: Option<String> },
    /// The user did not finish in time, or the device code expired.
    #[error("{0}")]
    TimedOut(String),
    /// The user hung up (Ctrl-C).
    #[error("the sign-in was cancelled")]
    Cancelled,
    /// A redirect that cannot be used: not a redirect URL, wrong state, no code.
    #[error("{0}")]
    BadRedirect(String),
    /// An OAuth error answer from an identity endpoint.
    #[error("{endpoint} refused: {body}")]
    OAuth {
        endpoint: &'static str,
        status: u16,
        body: Box<OAuthErrorBody>,
        retry_after: Option<Duration>,
    },
    /// No usable answer: network failure, or an HTTP error without an OAuth body (429, 5xx).
    #[error("{endpoint} is unavailable: {detail}")]
    Unavailable {
        endpoint: &'static str,
        status: Option<u16>,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// A 200 answer that does not parse.
    #[error("{endpoint} answered something unexpected: {detail}")]
    Protocol { endpoint: &'static str, detail: String },
    /// Graph answered 401 `InvalidAuthenticationToken`: refresh the access token and retry once;
    /// if it happens again the grant is gone.
    #[error("Microsoft Graph rejected the access token: {message}")]
    TokenRejected { message: String },
    /// Any other Graph error answer.
    #[error("Microsoft Graph {path}: HTTP {status} {code}: {message}")]
    Graph {
        path: String,
        status: u16,
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The signed-in mailbox is not the one being linked.
    #[error("signed in as {actual}, but the link is for {expected}")]
    WrongMailbox { expected: String, actual: String },
}

impl Office365Error {
    /// What this failure means for a link (SPEC §4).
    pub fn failure(&self) -> Failure {
        let reason = self.to_string();
        match self {
            Office365Error::NotConfigured
            | Office365Error::ClientSecretFile { .. }
            | Office365Error::Client(_)
            | Office365Error::Listen { .. } => Failure::blocked(reason, Actor::Operator),
            Office365Error::Declined { .. }
            | Office365Error::TimedOut(_)
            | Office365Error::Cancelled
            | Office365Error::BadRedirect(_)
            | Office365Error::TokenRejected { .. }
            | Office365Error::WrongMailbox { .. } => Failure::reauth(reason),
            Office365Error::OAuth { status, body, retry_after, .. } => {
                classify_oauth(*status, body, reason).retry_after(*retry_after)
            }
            Office365Error::Unavailable { retry_after, .. } => {
                Failure::transient(reason).retry_after(*retry_after)
            }
            Office365Error::Protocol { .. } => Failure::transient(reason),
            Office365Error::Graph { status, code, retry_after, .. } => {
                classify_graph(*status, code, reason).retry_after(*retry_after)
            }
        }
    }

    /// True when retrying later may succeed (the link is `degraded`, not `needs_reauth`).
    pub fn is_transient(&self) -> bool {
        self.failure().is_transient()
    }

    /// True for Graph's 401: the caller should refresh the access token and retry once.
    pub fn is_token_rejected(&self) -> bool {
        matches!(self, Office365Error::TokenRejected { .. })
    }

    /// How `connect` reports this failure (SPEC §3: 7 rejected/declined, 8 timeout/cancel).
    pub fn wire_error(&self) -> WireError {
        let message = self.to_string();
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
            Office365Error::TimedOut(_) => WireError::new(ErrorKind::Timeout, message)
                .with_hint("run `mslinkctl connect` again and finish signing in sooner"),
            Office365Error::Cancelled => WireError::new(ErrorKind::Timeout, message),
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

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// SPEC §4 for an OAuth error answer. `reason` is the error's own text.
fn classify_oauth(status: u16, body: &OAuthErrorBody, reason: String) -> Failure {
    if status == 429 || status >= 500 {
        return Failure::transient(reason);
    }
    let code = body.aadsts();
    match body.error.as_str() {
        "temporarily_unavailable" | "server_error" | "slow_down" | "authorization_pending" => {
            Failure::transient(reason)
        }
        "invalid_grant"
        | "interaction_required"
        | "login_required"
        | "consent_required"
        | "access_denied"
        | "expired_token" => match code {
            // The app lacks admin consent in this tenant: signing in again does not help.
            Some(65001) => Failure::blocked(reason, Actor::TenantAdmin),
            // Conditional access blocks this sign-in.
            Some(53003) => Failure::blocked(reason, Actor::TenantAdmin),
            _ => Failure::reauth(reason),
        },
        "unauthorized_client" => match code {
            // The application is not present in the user's tenant.
            Some(700016) => Failure::blocked(reason, Actor::TenantAdmin),
            _ => Failure::blocked(reason, Actor::Operator),
        },
        "invalid_client"
        | "invalid_scope"
        | "invalid_request"
        | "unsupported_grant_type"
        | "unsupported_response_type" => Failure::blocked(reason, Actor::Operator),
        // Unknown codes: retrying is safe; a transient failure never costs the user a sign-in.
        _ => Failure::transient(reason),
    }
}

/// SPEC §4 for a Graph error answer other than 401.
fn classify_graph(status: u16, code: &str, reason: String) -> Failure {
    match (status, code) {
        (429, _) | (500..=599, _) => Failure::transient(reason),
        (_, "MailboxNotEnabledForRESTAPI") | (403, _) => {
            Failure::blocked(reason, Actor::TenantAdmin)
        }
        (401, _) => Failure::reauth(reason),
        _ => Failure::blocked(reason, Actor::Operator),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> OAuthErrorBody {
        serde_json::from_str(json).unwrap()
    }

    fn oauth(status: u16, json: &str) -> Office365Error {
        Office365Error::OAuth {
            endpoint: "the token endpoint",
            status,
            body: Box::new(body(json)),
            retry_after: None,
        }
    }

    #[test]
    fn aadsts_comes_from_codes_description_or_uri() {
        let b = body(r#"{"error":"x","error_codes":[50173]}"#);
        assert_eq!(b.aadsts(), Some(50173));
        let b = body(
            r#"{"error":"x","error_description":"AADSTS65001: The user or administrator has not consented"}"#,
        );
        assert_eq!(b.aadsts(), Some(65001));
        let b = body(r#"{"error":"x","error_uri":"https://login.contoso.com/error?code=7000215"}"#);
        assert_eq!(b.aadsts(), Some(7_000_215));
    }

    #[test]
    fn the_display_keeps_code_and_suberror_but_not_trace_ids() {
        let b = body(
            r#"{"error":"invalid_grant","error_description":"AADSTS50173: The grant was revoked.\r\nTrace ID: 47a2","error_codes":[50173],"suberror":"bad_token"}"#,
        );
        assert_eq!(b.to_string(), "invalid_grant (AADSTS50173, bad_token): The grant was revoked.");
    }

    #[test]
    fn the_error_field_decides_and_codes_refine() {
        let state = |status, json: &str| oauth(status, json).failure();
        assert_eq!(state(400, r#"{"error":"invalid_grant"}"#).state, LinkState::NeedsReauth);
        assert_eq!(
            state(400, r#"{"error":"interaction_required","error_codes":[50076]}"#).state,
            LinkState::NeedsReauth
        );
        assert_eq!(state(400, r#"{"error":"consent_required"}"#).state, LinkState::NeedsReauth);
        let consent = state(
            400,
            r#"{"error":"invalid_grant","error_codes":[65001],"suberror":"consent_required"}"#,
        );
        assert_eq!((consent.state, consent.actor), (LinkState::Blocked, Actor::TenantAdmin));
        let ca = state(400, r#"{"error":"access_denied","error_codes":[53003]}"#);
        assert_eq!((ca.state, ca.actor), (LinkState::Blocked, Actor::TenantAdmin));
        let client = state(401, r#"{"error":"invalid_client","error_codes":[7000215]}"#);
        assert_eq!((client.state, client.actor), (LinkState::Blocked, Actor::Operator));
        let app = state(400, r#"{"error":"unauthorized_client","error_codes":[700016]}"#);
        assert_eq!((app.state, app.actor), (LinkState::Blocked, Actor::TenantAdmin));
        assert_eq!(state(400, r#"{"error":"temporarily_unavailable"}"#).state, LinkState::Degraded);
        // The status wins over the body for overload.
        assert_eq!(state(503, r#"{"error":"invalid_grant"}"#).state, LinkState::Degraded);
        assert_eq!(state(429, r#"{"error":"invalid_request"}"#).state, LinkState::Degraded);
        assert_eq!(state(400, r#"{"error":"something_new"}"#).state, LinkState::Degraded);
    }

    fn vector(name: &str) -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors/identity/");
        std::fs::read_to_string(format!("{path}{name}")).unwrap()
    }

    /// The JSON body of a recording: the last line that is an object.
    fn recorded_body(text: &str) -> &str {
        text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap()
    }

    #[test]
    fn microsofts_recorded_revocation_needs_reauth_and_keeps_its_code() {
        let text = vector("azure_sdk_js_recording_refresh_invalid_grant_AADSTS50173.txt");
        let e = oauth(400, recorded_body(&text));
        let f = e.failure();
        assert_eq!(f.state, LinkState::NeedsReauth);
        assert!(f.reason.contains("AADSTS50173") && f.reason.contains("bad_token"), "{}", f.reason);
        assert!(!f.reason.contains("Trace ID"), "{}", f.reason);
        assert_eq!(e.wire_error().kind, ErrorKind::AuthRejected);
    }

    #[test]
    fn microsofts_invalid_scope_samples_block_for_the_operator() {
        for name in
            ["entra_token_error_invalid_scope.json", "entra_error_codes_sample_with_error_uri.json"]
        {
            let f = oauth(400, &vector(name)).failure();
            assert_eq!((f.state, f.actor), (LinkState::Blocked, Actor::Operator), "{name}");
            assert!(f.reason.contains("AADSTS70011"), "{}", f.reason);
        }
    }

    #[test]
    fn microsofts_tenant_not_found_blocks_for_the_operator() {
        let text =
            vector("azure_sdk_js_recording_openid_configuration_tenant_not_found_AADSTS90002.txt");
        let json = text.lines().find(|l| l.starts_with("{\"error\"")).unwrap();
        let mut b = body(json);
        b.error = "invalid_request".into(); // the unsanitised value, per the recording's note
        let e = Office365Error::OAuth {
            endpoint: "the token endpoint",
            status: 400,
            body: Box::new(b),
            retry_after: None,
        };
        let f = e.failure();
        assert_eq!((f.state, f.actor), (LinkState::Blocked, Actor::Operator));
        assert!(f.reason.contains("AADSTS90002"));
        let wire = e.wire_error();
        assert_eq!(wire.kind, ErrorKind::Failed);
        assert!(wire.hint.unwrap().contains("operator"));
    }

    #[test]
    fn microsofts_device_code_answers_parse() {
        let pending = body(&vector("azure_sdk_go_devicecode_authorization_pending.json"));
        assert_eq!(pending.error, "authorization_pending");
        assert_eq!(pending.aadsts(), Some(7_000_215));
        assert!(
            oauth(400, &vector("azure_sdk_go_devicecode_authorization_pending.json"))
                .is_transient()
        );
        let expired = body(&vector("azure_sdk_go_devicecode_expired_token.json"));
        assert_eq!(expired.error, "expired_token");
    }

    #[test]
    fn graph_answers_are_classified() {
        let graph = |status, code: &str, retry_after| Office365Error::Graph {
            path: "/me/mailFolders/inbox".into(),
            status,
            code: code.into(),
            message: "m".into(),
            retry_after,
        };
        let throttled = graph(429, "TooManyRequests", Some(Duration::from_millis(2128))).failure();
        assert_eq!(throttled.state, LinkState::Degraded);
        assert_eq!(throttled.retry_after, Some(Duration::from_millis(2128)));
        assert_eq!(graph(503, "serviceNotAvailable", None).failure().state, LinkState::Degraded);
        let mailbox = graph(404, "MailboxNotEnabledForRESTAPI", None).failure();
        assert_eq!((mailbox.state, mailbox.actor), (LinkState::Blocked, Actor::TenantAdmin));
        assert_eq!(graph(403, "ErrorAccessDenied", None).failure().state, LinkState::Blocked);
        let rejected = Office365Error::TokenRejected { message: "expired".into() };
        assert!(rejected.is_token_rejected() && !rejected.is_transient());
    }

    #[test]
    fn connect_errors_map_to_exit_codes_and_hints() {
        let wrong = Office365Error::WrongMailbox {
            expected: "alice@contoso.test".into(),
            actual: "bob@contoso.test".into(),
        }
        .wire_error();
        assert_eq!(wrong.kind, ErrorKind::AuthRejected);
        assert!(
            wrong.message.contains("alice@contoso.test")
                && wrong.message.contains("bob@contoso.test")
        );
        assert_eq!(
            Office365Error::Declined { detail: None }.wire_error().kind,
            ErrorKind::AuthRejected
        );
        assert_eq!(Office365Error::Cancelled.wire_error().kind, ErrorKind::Timeout);
        assert_eq!(Office365Error::TimedOut("t".into()).wire_error().kind, ErrorKind::Timeout);
        let missing = Office365Error::NotConfigured.wire_error();
        assert_eq!(missing.kind, ErrorKind::Failed);
        assert!(missing.hint.unwrap().contains("[office365] client_id"));
        let down = Office365Error::Unavailable {
            endpoint: "the token endpoint",
            status: None,
            detail: "connection refused".into(),
            retry_after: None,
        };
        assert!(down.is_transient());
        assert!(down.wire_error().hint.unwrap().contains("try again"));
    }
}
