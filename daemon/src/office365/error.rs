//! What can go wrong talking to the Microsoft identity platform and Graph, and what each failure
//! means for a link (SPEC §4) and for `connect` (SPEC §3 exit codes).
//!
//! Microsoft's `error` field is the primary key (STYLE habit 2): it says whether the answer is
//! transient, a refused credential or a refused configuration. Only then does the AADSTS number
//! (from `error_codes`, the description or `error_uri`) refine it, through one table of
//! Microsoft's published codes ([`AADSTS`]) that also says why and who must act:
//!
//! ```text
//!   HTTP 429 / 5xx, temporarily_unavailable, server_error,
//!   network, unknown `error` values                           -> degraded (Retry-After kept)
//!   invalid_grant, interaction_required, login_required,
//!   consent_required, access_denied, expired_token            -> needs_reauth (the user)
//!   invalid_client, unauthorized_client, invalid_scope,
//!   invalid_request, unsupported_*                            -> blocked (the mslink operator)
//!     ... refined by AADSTS:  50076 50079 (MFA now required),
//!                             50173 50133 700082 70043 (grant gone)  -> needs_reauth, saying why
//!                             53000-53003 530033 530034 (Conditional Access) -> blocked (tenant admin)
//!                             65001 65004 90094 (consent)    -> blocked (tenant admin, with the
//!                                                               admin-consent URL)
//!                             7000215 7000222 700016 (app, secret) -> blocked (the mslink operator)
//!   Graph 401 InvalidAuthenticationToken                      -> TokenRejected: refresh, retry once
//!   Graph 403, MailboxNotEnabledForRESTAPI                    -> blocked (the tenant admin)
//! ```
//!
//! The device flow's own answers (RFC 8628 and Entra's names for them) end a sign-in instead:
//! `access_denied` / `authorization_declined` -> Declined, `expired_token` -> TimedOut,
//! `bad_verification_code` -> BadDeviceCode ([`device_poll_outcome`]).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::health::{Actor, Failure};
use crate::net::NetError;
use crate::text::clean;

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

impl std::fmt::Display for OAuthErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&clean(&self.error, 100))?;
        let mut detail = Vec::new();
        if let Some(code) = self.aadsts() {
            detail.push(format!("AADSTS{code}"));
        }
        if let Some(sub) = &self.suberror {
            detail.push(clean(sub, 100));
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
    /// `[office365] client_secret_file` is missing, unreadable or unsafe ([`crate::files`]).
    #[error(transparent)]
    ClientSecretFile(#[from] crate::files::FileError),
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
        /// Where a tenant admin grants consent to the configured app, for the reason of a
        /// consent error (set by [`Office365Error::with_admin_consent`]).
        admin_consent: Option<String>,
    },
    /// The sign-in succeeded but brought no refresh token: the link could not outlive the
    /// access token (an hour), so `connect` refuses it rather than store a link that turns
    /// `needs_reauth` by itself.
    #[error(
        "the sign-in brought no refresh token: the identity provider did not grant \
         `offline_access`{}, so the link would stop working when the access token expires; \
         {}",
        granted.as_ref().map(|g| format!(" (it granted: {})", clean(g, 200))).unwrap_or_default(),
        if *asked_consent {
            "it was not granted even with `prompt=consent`"
        } else {
            "an OpenID provider that follows OIDC Core §11 grants it only when the request asks \
             for consent (`prompt=consent`)"
        }
    )]
    NoRefreshToken {
        /// The scopes the token response says were granted, when it says.
        granted: Option<String>,
        /// Whether the authorization request carried `prompt=consent`.
        asked_consent: bool,
    },
    /// The token endpoint does not know the device code it was polled with
    /// (`bad_verification_code`): not the user's doing, and polling again cannot help.
    #[error(
        "the token endpoint did not recognise the device code{}",
        detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    BadDeviceCode { detail: Option<String> },
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
    /// if it happens again the grant is gone. `claims`: the JSON of a continuous access
    /// evaluation challenge (`error="insufficient_claims"`), which the refresh must carry.
    #[error("Microsoft Graph rejected the access token: {message}")]
    TokenRejected { message: String, claims: Option<String> },
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
    /// The signed-in account has no mailbox address (Graph's `/me` has no `mail`) and is not
    /// the one being linked: the wrong account, or a hybrid organisation's on-premises mailbox
    /// (whose owner signed in with an account that has no Exchange Online mailbox).
    #[error(
        "signed in as {actual}, an account without an Exchange Online mailbox, but the link is \
         for {expected}; sign in as {expected}, or if its mailbox is on an on-premises Exchange \
         server, link it with `--provider exchange`"
    )]
    NoMailboxSignedIn { expected: String, actual: String },
    /// Graph has no Exchange Online mailbox for the account (`MailboxNotEnabledForRESTAPI`):
    /// it is on an on-premises Exchange server (a hybrid organisation), or not licensed. The
    /// wrong provider was guessed or chosen when it is on-premises.
    #[error(
        "{email} has no mailbox in Exchange Online (Microsoft Graph {path}: {code}: {message}); \
         if it is on an on-premises Exchange server, link it with `--provider exchange`, \
         otherwise the tenant admin must give it an Exchange Online licence"
    )]
    MailboxNotInExchangeOnline { email: String, path: String, code: String, message: String },
}

impl Office365Error {
    /// What this failure means for a link (SPEC §4).
    pub fn failure(&self) -> Failure {
        let reason = self.to_string();
        match self {
            Office365Error::NotConfigured
            | Office365Error::ClientSecretFile(_)
            | Office365Error::Client(_)
            | Office365Error::Listen { .. }
            | Office365Error::NoRefreshToken { .. }
            | Office365Error::BadDeviceCode { .. } => Failure::blocked(reason, Actor::Operator),
            Office365Error::Declined { .. }
            | Office365Error::TimedOut(_)
            | Office365Error::Cancelled
            | Office365Error::BadRedirect(_)
            | Office365Error::TokenRejected { .. }
            | Office365Error::WrongMailbox { .. }
            | Office365Error::NoMailboxSignedIn { .. } => Failure::reauth(reason),
            Office365Error::OAuth { status, body, retry_after, admin_consent, .. } => {
                classify_oauth(*status, body, reason, admin_consent.as_deref())
                    .retry_after(*retry_after)
            }
            Office365Error::Unavailable { retry_after, .. } => {
                Failure::transient(reason).retry_after(*retry_after)
            }
            Office365Error::Protocol { .. } => Failure::transient(reason),
            Office365Error::Graph { status, code, retry_after, .. } => {
                classify_graph(*status, code, reason).retry_after(*retry_after)
            }
            Office365Error::MailboxNotInExchangeOnline { .. } => {
                Failure::blocked(reason, Actor::TenantAdmin)
            }
        }
    }

    /// Adds where a tenant admin grants consent to the configured app, so a consent error's
    /// reason can say it (the error itself is made where the config is not known).
    pub fn with_admin_consent(mut self, url: &str) -> Office365Error {
        if let Office365Error::OAuth { admin_consent, .. } = &mut self {
            *admin_consent = Some(url.to_owned());
        }
        self
    }

    /// True when retrying later may succeed (the link is `degraded`, not `needs_reauth`).
    pub fn is_transient(&self) -> bool {
        self.failure().is_transient()
    }

    /// True when the identity platform refused the scope itself: the user or tenant did not
    /// consent to it (`consent_required`, AADSTS 65001/65004/90094) or it is not the app's
    /// (`invalid_scope`). For a token to one extra resource this says nothing about the link:
    /// its refresh token still serves the others.
    pub fn is_consent_missing(&self) -> bool {
        let Office365Error::OAuth { status, body, .. } = self else { return false };
        if *status == 429 || *status >= 500 {
            return false;
        }
        matches!(body.error.as_str(), "invalid_scope" | "consent_required")
            || body.suberror.as_deref() == Some("consent_required")
            || body.aadsts().is_some_and(|code| matches!(code, 65001 | 65004 | 90094))
    }

    /// Where a tenant admin grants consent, when this error carries it.
    pub fn admin_consent(&self) -> Option<&str> {
        match self {
            Office365Error::OAuth { admin_consent, .. } => admin_consent.as_deref(),
            _ => None,
        }
    }

    /// True for Graph's 401: the caller should refresh the access token and retry once.
    pub fn is_token_rejected(&self) -> bool {
        matches!(self, Office365Error::TokenRejected { .. })
    }

    /// The claims a continuous access evaluation challenge asks the next token for.
    pub fn claims_challenge(&self) -> Option<&str> {
        match self {
            Office365Error::TokenRejected { claims, .. } => claims.as_deref(),
            _ => None,
        }
    }
}

/// What a failure means, before the reason is written: the `error` field's default, or an
/// AADSTS code's refinement of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The user must sign in again; `why` says what happened, when known.
    Reauth(Option<&'static str>),
    /// `Actor` must act; mslink cannot fix it by retrying.
    Blocked(Actor, Option<&'static str>),
    /// The app lacks consent: the tenant admin must grant it (the reason carries the
    /// admin-consent URL).
    AdminConsent(&'static str),
}

const fn reauth(why: &'static str) -> Verdict {
    Verdict::Reauth(Some(why))
}

const fn blocked(actor: Actor, why: &'static str) -> Verdict {
    Verdict::Blocked(actor, Some(why))
}

/// Microsoft's published AADSTS codes that change what a refusal means or who must act
/// (learn.microsoft.com/entra/identity-platform/reference-error-codes). Consulted only once the
/// `error` field has said the answer is a refusal, never to turn a transient answer into one.
#[rustfmt::skip]
const AADSTS: &[(&[u64], Verdict)] = &[
    // Multi-factor authentication became required: a new interactive sign-in satisfies it.
    (&[50076], reauth("the tenant now requires multi-factor authentication for this account; \
                       the user must sign in again")),
    (&[50079], reauth("the tenant now requires this account to register for multi-factor \
                       authentication; the user must register, then sign in again")),
    // The grant itself is gone.
    (&[50173], reauth("the grant was revoked (for example after a password reset, or an admin \
                       revoked the user's sessions); the user must sign in again")),
    (&[50133], reauth("the session ended because the password expired or was changed; the \
                       user must sign in again")),
    (&[700082], reauth("the refresh token expired after going unused for too long; the user \
                        must sign in again")),
    (&[70043], reauth("a Conditional Access sign-in frequency policy ended the session; the \
                       user must sign in again")),
    // Conditional Access: signing in again meets the same policy.
    (&[53000], blocked(Actor::TenantAdmin, "Conditional Access requires a compliant device; \
                       the tenant admin must exempt mslink from that policy")),
    (&[53001], blocked(Actor::TenantAdmin, "Conditional Access requires a domain-joined \
                       device; the tenant admin must exempt mslink from that policy")),
    (&[53002], blocked(Actor::TenantAdmin, "Conditional Access allows only approved client \
                       apps; the tenant admin must approve mslink or exempt it")),
    (&[53003, 530033, 530034], blocked(Actor::TenantAdmin, "a Conditional Access policy \
                       blocks this sign-in; the tenant admin must change it or exempt mslink")),
    // Consent: only an admin can grant it for the organisation.
    (&[65001], Verdict::AdminConsent("the app has no consent for these permissions in this \
                       tenant")),
    (&[65004], Verdict::AdminConsent("consent to the app was declined, or users may not \
                       consent to apps in this tenant")),
    (&[90094], Verdict::AdminConsent("these permissions need an administrator's consent")),
    // The app registration or its secret: whoever runs mslinkd.
    (&[7000215], blocked(Actor::Operator, "the client secret is not the app registration's; \
                         the mslink operator must install the current one")),
    (&[7000222], blocked(Actor::Operator, "the client secret has expired; the mslink operator \
                         must create a new one in the app registration and install it")),
    (&[700016], blocked(Actor::Operator, "the app `[office365] client_id` does not exist in \
                        this tenant; the mslink operator must check `client_id` and `tenant`")),
];

/// The table's verdict for an AADSTS code.
fn aadsts_verdict(code: u64) -> Option<Verdict> {
    AADSTS.iter().find(|(codes, _)| codes.contains(&code)).map(|&(_, verdict)| verdict)
}

/// SPEC §4 for an OAuth error answer. `reason` is the error's own text; `admin_consent` the
/// URL a tenant admin grants consent at.
fn classify_oauth(
    status: u16,
    body: &OAuthErrorBody,
    reason: String,
    admin_consent: Option<&str>,
) -> Failure {
    if status == 429 || status >= 500 {
        return Failure::transient(reason);
    }
    let default = match body.error.as_str() {
        "invalid_grant"
        | "interaction_required"
        | "login_required"
        | "consent_required"
        | "access_denied"
        | "expired_token" => Verdict::Reauth(None),
        "invalid_client" => blocked(
            Actor::Operator,
            "the identity platform refused the app's credentials; the mslink operator must \
             check `[office365] client_id` and the client secret",
        ),
        "unauthorized_client"
        | "invalid_scope"
        | "invalid_request"
        | "unsupported_grant_type"
        | "unsupported_response_type" => Verdict::Blocked(Actor::Operator, None),
        // temporarily_unavailable, server_error, slow_down, authorization_pending, and codes
        // not known here: retrying is safe; a transient failure never costs the user a sign-in.
        _ => return Failure::transient(reason),
    };
    let verdict = body.aadsts().and_then(aadsts_verdict).unwrap_or(default);
    let explained = |why: Option<&str>| match why {
        Some(why) => format!("{why}: {reason}"),
        None => reason.clone(),
    };
    match verdict {
        Verdict::Reauth(why) => Failure::reauth(explained(why)),
        Verdict::Blocked(actor, why) => Failure::blocked(explained(why), actor),
        Verdict::AdminConsent(why) => {
            let grant = match admin_consent {
                Some(url) => format!("the tenant admin must grant admin consent at {url}"),
                None => "the tenant admin must grant admin consent to the app".to_owned(),
            };
            Failure::blocked(format!("{why}; {grant}: {reason}"), Actor::TenantAdmin)
        }
    }
}

/// How a device-code poll's error answer ends the sign-in, when it is one of the device flow's
/// own answers: RFC 8628's names, and Entra's (`authorization_declined`,
/// `bad_verification_code`). `None`: an ordinary OAuth error, classified like any other.
pub(crate) fn device_poll_outcome(body: &OAuthErrorBody) -> Option<Office365Error> {
    let detail = || body.summary();
    match body.error.as_str() {
        "access_denied" | "authorization_declined" => {
            Some(Office365Error::Declined { detail: detail() })
        }
        "expired_token" => Some(Office365Error::TimedOut(
            "the device code expired before the sign-in was finished".into(),
        )),
        "bad_verification_code" => Some(Office365Error::BadDeviceCode { detail: detail() }),
        _ => None,
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
    use mslink_proto::{ErrorKind, LinkState};

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
            admin_consent: None,
        }
    }

    #[test]
    fn a_missing_consent_is_told_apart_from_a_gone_grant() {
        for missing in [
            r#"{"error":"invalid_scope","error_description":"refresh token missing requested scope"}"#,
            r#"{"error":"consent_required"}"#,
            r#"{"error":"invalid_grant","error_codes":[65001],"suberror":"consent_required"}"#,
            r#"{"error":"invalid_grant","error_description":"AADSTS65004: User declined to consent"}"#,
            r#"{"error":"invalid_grant","error_codes":[90094]}"#,
        ] {
            assert!(oauth(400, missing).is_consent_missing(), "{missing}");
        }
        for other in [
            r#"{"error":"invalid_grant"}"#,
            r#"{"error":"invalid_grant","error_codes":[50173],"suberror":"bad_token"}"#,
            r#"{"error":"invalid_client"}"#,
        ] {
            assert!(!oauth(400, other).is_consent_missing(), "{other}");
        }
        assert!(!oauth(503, r#"{"error":"invalid_scope"}"#).is_consent_missing(), "transient");
        let with_url = oauth(400, r#"{"error":"invalid_scope"}"#).with_admin_consent("https://x/a");
        assert_eq!(with_url.admin_consent(), Some("https://x/a"));
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
        assert_eq!((app.state, app.actor), (LinkState::Blocked, Actor::Operator));
        assert_eq!(state(400, r#"{"error":"temporarily_unavailable"}"#).state, LinkState::Degraded);
        // The status wins over the body for overload.
        assert_eq!(state(503, r#"{"error":"invalid_grant"}"#).state, LinkState::Degraded);
        assert_eq!(state(429, r#"{"error":"invalid_request"}"#).state, LinkState::Degraded);
        assert_eq!(state(400, r#"{"error":"something_new"}"#).state, LinkState::Degraded);
    }

    /// An error body shaped like the identity platform's: RFC 6749 §5.2 plus `error_codes`,
    /// `suberror`, `timestamp`, `trace_id`, `correlation_id` and `error_uri`, with the
    /// description starting `AADSTSnnnn:` and ending in the trace lines.
    fn entra(error: &str, code: u64, text: &str, suberror: Option<&str>) -> String {
        let mut body = serde_json::json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {text}\r\nTrace ID: 2d091b0f-0a1b-4c2d-8e3f-40a5b6c7d800\r\n\
                 Correlation ID: a9990000-bb11-2222-33cc-444444dddddd\r\n\
                 Timestamp: 2026-11-02 10:00:00Z"
            ),
            "error_codes": [code],
            "timestamp": "2026-11-02 10:00:00Z",
            "trace_id": "2d091b0f-0a1b-4c2d-8e3f-40a5b6c7d800",
            "correlation_id": "a9990000-bb11-2222-33cc-444444dddddd",
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        });
        if let Some(sub) = suberror {
            body["suberror"] = sub.into();
        }
        body.to_string()
    }

    const CONSENT_URL: &str = "https://login.microsoftonline.com/organizations/v2.0/adminconsent\
                               ?client_id=mslink-app&scope=offline_access+User.Read";

    #[test]
    fn microsofts_aadsts_codes_say_what_happened_and_who_must_act() {
        use Actor::{Operator, TenantAdmin, User};
        use LinkState::{Blocked, NeedsReauth};
        /// `error`, AADSTS code, `suberror`, description; then the state, who must act, and
        /// words the reason must hold.
        type Row =
            (&'static str, u64, Option<&'static str>, &'static str, LinkState, Actor, &'static str);
        #[rustfmt::skip]
        let table: &[Row] = &[
            ("invalid_grant", 50076, None, "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.",
                NeedsReauth, User, "multi-factor authentication"),
            ("interaction_required", 50079, None, "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication.",
                NeedsReauth, User, "register for multi-factor"),
            ("invalid_grant", 50173, Some("bad_token"), "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
                NeedsReauth, User, "revoked"),
            ("invalid_grant", 50133, None, "Session is invalid due to expiration or recent password change.",
                NeedsReauth, User, "password expired or was changed"),
            ("invalid_grant", 700082, None, "The refresh token has expired due to inactivity.",
                NeedsReauth, User, "unused for too long"),
            ("invalid_grant", 70043, None, "The refresh token has expired or is invalid due to sign-in frequency checks by conditional access.",
                NeedsReauth, User, "sign-in frequency"),
            ("invalid_grant", 53000, None, "Device is not in required device state: compliant.",
                Blocked, TenantAdmin, "compliant device"),
            ("invalid_grant", 53001, None, "Device is not in required device state: domain_joined.",
                Blocked, TenantAdmin, "domain-joined device"),
            ("invalid_grant", 53002, None, "Application used is not an approved application.",
                Blocked, TenantAdmin, "approved client apps"),
            ("invalid_grant", 53003, Some("message_only"), "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
                Blocked, TenantAdmin, "Conditional Access policy"),
            ("invalid_grant", 530033, None, "Access has been blocked by security policies.",
                Blocked, TenantAdmin, "Conditional Access policy"),
            ("invalid_grant", 530034, None, "Access has been blocked by security policies.",
                Blocked, TenantAdmin, "Conditional Access policy"),
            ("invalid_grant", 65001, Some("consent_required"), "The user or administrator has not consented to use the application with ID 'mslink-app' named 'mslink'. Send an interactive authorization request for this user and resource.",
                Blocked, TenantAdmin, CONSENT_URL),
            ("access_denied", 65004, None, "User declined to consent to access the app.",
                Blocked, TenantAdmin, CONSENT_URL),
            ("invalid_grant", 90094, None, "The grant requires admin permission.",
                Blocked, TenantAdmin, CONSENT_URL),
            ("invalid_client", 7000215, None, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
                Blocked, Operator, "client secret is not the app registration's"),
            ("invalid_client", 7000222, None, "The provided client secret keys for app 'mslink-app' are expired.",
                Blocked, Operator, "client secret has expired"),
            ("unauthorized_client", 700016, None, "Application with identifier 'mslink-app' was not found in the directory 'contoso'.",
                Blocked, Operator, "`client_id`"),
        ];
        for &(error, code, suberror, text, state, actor, says) in table {
            let e = oauth(400, &entra(error, code, text, suberror)).with_admin_consent(CONSENT_URL);
            let f = e.failure();
            assert_eq!((f.state, f.actor), (state, actor), "AADSTS{code}: {}", f.reason);
            assert!(f.reason.contains(says), "AADSTS{code}: {}", f.reason);
            // The reason keeps Microsoft's code and drops the trace lines.
            assert!(f.reason.contains(&format!("AADSTS{code}")), "{}", f.reason);
            assert!(
                !f.reason.contains("Trace ID") && !f.reason.contains("2d091b0f"),
                "{}",
                f.reason
            );
            // Who must act is spelled out where the reason is shown.
            assert!(f.describe().contains(actor.as_str()), "{}", f.describe());
            let expected =
                if state == NeedsReauth { ErrorKind::AuthRejected } else { ErrorKind::Failed };
            assert_eq!(e.wire_error().kind, expected, "AADSTS{code}");
        }
    }

    #[test]
    fn the_error_field_stays_the_primary_key() {
        // A transient `error` stays transient whatever code it carries, and so does one not
        // known here: retrying is safe, a sign-in lost to a guess is not.
        for (error, code) in [
            ("temporarily_unavailable", 50076),
            ("server_error", 65001),
            ("brand_new_error", 53003),
        ] {
            let f = oauth(400, &entra(error, code, "Something happened.", None)).failure();
            assert_eq!(f.state, LinkState::Degraded, "{error} with AADSTS{code}");
        }
        // A refusal with a code the table does not list keeps the `error` field's meaning.
        let f = oauth(400, &entra("invalid_grant", 9_999_999, "Something new.", None)).failure();
        assert_eq!((f.state, f.actor), (LinkState::NeedsReauth, Actor::User));
        let f = oauth(401, r#"{"error":"invalid_client"}"#).failure();
        assert_eq!((f.state, f.actor), (LinkState::Blocked, Actor::Operator));
        assert!(f.reason.contains("client secret"), "{}", f.reason);
        // Without the config's URL a consent error still says who grants it.
        let f = oauth(400, &entra("invalid_grant", 65001, "Not consented.", None)).failure();
        assert!(f.reason.contains("the tenant admin must grant admin consent"), "{}", f.reason);
    }

    #[test]
    fn microsofts_device_code_errors_end_the_sign_in() {
        let outcome = |error: &str, code: u64, text: &str| {
            device_poll_outcome(&body(&entra(error, code, text, None)))
        };
        let declined =
            outcome("authorization_declined", 70000, "The user denied the authorization request.")
                .unwrap();
        assert!(matches!(declined, Office365Error::Declined { .. }), "{declined:?}");
        assert_eq!(declined.wire_error().kind, ErrorKind::AuthRejected);
        assert!(!declined.to_string().contains("Trace ID"), "{declined}");
        let expired = outcome("expired_token", 70019, "Verification code expired.").unwrap();
        assert!(matches!(expired, Office365Error::TimedOut(_)), "{expired:?}");
        assert_eq!(expired.wire_error().kind, ErrorKind::Timeout);
        let unknown =
            outcome("bad_verification_code", 70000, "The device code was not recognised.").unwrap();
        let wire = unknown.wire_error();
        assert_eq!(wire.kind, ErrorKind::Failed);
        assert!(wire.message.contains("did not recognise the device code"), "{}", wire.message);
        assert!(wire.hint.unwrap().contains("--device-code"));
        // RFC 8628's own name for a decline, as a stock server sends it.
        let rfc = device_poll_outcome(&body(r#"{"error":"access_denied"}"#)).unwrap();
        assert!(matches!(rfc, Office365Error::Declined { .. }));
        // Still waiting is not an outcome: the poll goes on.
        assert!(
            outcome("authorization_pending", 70016, "The user must input their code.").is_none()
        );
    }

    #[test]
    fn a_sign_in_without_a_refresh_token_is_refused_with_the_fix() {
        let e = Office365Error::NoRefreshToken {
            granted: Some("User.Read Mail.Read".into()),
            asked_consent: false,
        };
        let wire = e.wire_error();
        assert_eq!(wire.kind, ErrorKind::AuthRejected);
        assert!(
            wire.message.contains("`offline_access`") && wire.message.contains("consent"),
            "{}",
            wire.message
        );
        assert!(wire.message.contains("User.Read Mail.Read"), "{}", wire.message);
        assert!(wire.hint.unwrap().contains("prompt = \"consent\""));
        let asked =
            Office365Error::NoRefreshToken { granted: None, asked_consent: true }.wire_error();
        assert!(asked.hint.unwrap().contains("tenant admin"));
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
            admin_consent: None,
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
        let rejected = Office365Error::TokenRejected { message: "expired".into(), claims: None };
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
