//! Messages exchanged on the control socket. One payload struct per command reply; every field
//! that a later version may add is `#[serde(default)]` so additions stay compatible.

use serde::{Deserialize, Serialize};

/// Everything a client may send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum ClientFrame {
    /// First frame of every connection.
    Hello { protocol_version: u32, client: String },
    /// A command, optionally on behalf of another user (admins only).
    Command {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        act_as: Option<String>,
        command: CtlCommand,
    },
    /// During `connect --paste`: the URL the browser was redirected to after signing in.
    Paste { redirect_url: Sensitive },
    /// During `connect`: the user's answer to a [`ConnectEvent::Confirm`] question.
    Answer { yes: bool },
    /// During `connect`: the mailbox password a [`ConnectEvent::Password`] asked for.
    Password { password: Sensitive },
}

/// Everything the daemon may send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum DaemonFrame {
    /// Answer to a compatible `Hello`.
    Welcome { protocol_version: u32, daemon_version: String },
    /// Progress of a long command (`connect`); the final `Reply` or `Failure` follows.
    Progress { event: ConnectEvent },
    /// A command succeeded. Boxed: replies are far larger than the other frames.
    Reply { reply: Box<DaemonReply> },
    /// One page (at most [`LINKS_PAGE`] links) of a `links` answer; more pages or the final
    /// `LinksEnd` reply follow.
    Links { links: Vec<LinkInfo> },
    /// A command (or the connection) failed.
    Failure { error: WireError },
}

/// The commands of SPEC §3, one variant each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum CtlCommand {
    /// Integration state, own request, own links (`all`: every link, admins only).
    Status {
        #[serde(default)]
        all: bool,
    },
    /// Ask the admins to turn the Microsoft integration on.
    Request {
        #[serde(default)]
        message: Option<String>,
    },
    /// Pending requests (admins).
    Requests,
    /// Turn the integration on and grant pending requests (admins).
    Enable,
    /// Turn the integration off and suspend every link (admins).
    Disable,
    /// Re-read the config file (admins).
    Reload,
    /// Link a mailbox (or re-link it after a password change or revoked consent).
    Connect(ConnectArgs),
    /// Run a connectivity check now.
    Check { email: String },
    /// Re-check every link, or every link in `state`, now (admins).
    CheckAll {
        #[serde(default)]
        state: Option<LinkState>,
    },
    /// Provider detection only: the answer and its evidence (no credentials are sent).
    Detect { email: String },
    /// The caller's (or `--user`'s) links, or every link with `all` (admins), only those in
    /// `state` if given, streamed: `Links` frames in (user, email) order, then a `LinksEnd`
    /// reply. The daemon holds one page at a time, whatever the number of links.
    Links {
        #[serde(default)]
        all: bool,
        #[serde(default)]
        state: Option<LinkState>,
    },
    /// Remove a link and its secrets.
    Disconnect { email: String },
    /// A fresh Office365 access token for the caller's own link.
    Token {
        email: String,
        #[serde(default)]
        resource: TokenResource,
    },
}

/// What `connect` needs; which fields apply depends on the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectArgs {
    pub email: String,
    /// `None`: detect it from the address.
    #[serde(default)]
    pub provider: Option<Provider>,
    /// Office365: how the user signs in.
    #[serde(default)]
    pub flow: SignInFlow,
    /// Exchange: the account name if it is not the address (`DOMAIN\user` or a UPN).
    #[serde(default)]
    pub username: Option<String>,
    /// Exchange: a host name (`mail.example.com`) or the full EWS URL; `None`: Autodiscover.
    #[serde(default)]
    pub server: Option<String>,
    /// Exchange: the password, read from a no-echo prompt or stdin, never from a flag.
    #[serde(default)]
    pub password: Option<Sensitive>,
    /// Exchange: a service account's keytab (the file's bytes, base64), read by the ctl as the
    /// admin running it (`--keytab FILE`); Kerberos signs in with its key instead of a password.
    /// Admins only.
    /// At most [`MAX_KEYTAB_BYTES`] before encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keytab: Option<Sensitive>,
    /// Exchange: hosts the user trusts although Autodiscover reached them only through the
    /// plain-HTTP redirect or a DNS SRV record outside the address's domain (`--trust-server`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_servers: Vec<String>,
    /// True when the ctl can put a question to the user ([`ConnectEvent::Confirm`]) and send the
    /// answer back. An older ctl sends nothing here: the daemon then never asks, it refuses.
    #[serde(default)]
    pub interactive: bool,
}

/// The largest keytab `connect --keytab` sends: a service account's holds a handful of keys in a
/// few hundred bytes, and this, base64-encoded, fits a client frame with room to spare.
pub const MAX_KEYTAB_BYTES: usize = 32 * 1024;

/// The Office365 sign-in flows (SPEC §1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInFlow {
    /// Authorization code + PKCE through a browser and a loopback redirect.
    #[default]
    Browser,
    /// RFC 8628 device code: sign in on another device.
    DeviceCode,
    /// Like `Browser`, but the user pastes the final redirect URL back (remote machines).
    Paste,
}

/// Which API an access token from `token` is for. Microsoft refresh tokens are multi-resource:
/// one link gets a separate access token for each (an IMAP server refuses a Graph token).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenResource {
    /// Microsoft Graph (the link's own token, which its checks use).
    #[default]
    Graph,
    /// Exchange Web Services.
    Ews,
    /// Exchange Online IMAP.
    Imap,
    /// Exchange Online POP.
    Pop,
    /// Exchange Online SMTP submission (SMTP AUTH).
    Smtp,
}

impl TokenResource {
    /// Every resource, in the order help texts list them.
    pub const ALL: [TokenResource; 5] = [
        TokenResource::Graph,
        TokenResource::Imap,
        TokenResource::Pop,
        TokenResource::Smtp,
        TokenResource::Ews,
    ];

    /// The name used on the command line, in the config and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenResource::Graph => "graph",
            TokenResource::Ews => "ews",
            TokenResource::Imap => "imap",
            TokenResource::Pop => "pop",
            TokenResource::Smtp => "smtp",
        }
    }

    /// The resource named `name` ([`TokenResource::as_str`]).
    pub fn parse(name: &str) -> Option<TokenResource> {
        TokenResource::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl std::fmt::Display for TokenResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that must never be printed: passwords, pasted redirect URLs (they carry a code),
/// access tokens. `Debug` shows `<redacted>`; there is no `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sensitive(String);

impl Sensitive {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Sensitive(secret.into())
    }

    /// The secret itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What `connect` tells the user while it works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ConnectEvent {
    /// A step is starting ("Looking up the Exchange server", "Checking the mailbox").
    Step { message: String },
    /// Open this URL in a browser to sign in; the daemon waits for the redirect.
    OpenBrowser { url: String },
    /// Open this URL in a browser, sign in, then paste the final URL back (`ClientFrame::Paste`).
    PasteRedirect { url: String },
    /// Device code sign-in: visit the URL on any device and enter the code before it expires.
    DeviceCode { verification_uri: String, user_code: String, expires_at: UnixTime },
    /// A yes/no question for the user (only sent when `ConnectArgs::interactive`); the flow
    /// waits for `ClientFrame::Answer`. `host` is what the question is about, for scripts.
    Confirm { question: String, host: String },
    /// The Exchange server `server` asks for the mailbox password, which the ctl did not send
    /// (only sent when `ConnectArgs::interactive`); the flow waits for `ClientFrame::Password`.
    /// A server that takes Entra ID sign-in instead never asks.
    Password { server: String },
}

/// The two kinds of Microsoft mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Office365 / Exchange Online, through OAuth2 and Microsoft Graph.
    Office365,
    /// On-premises Exchange Server, through EWS with a password.
    Exchange,
}

impl Provider {
    /// The name used in commands, config, the database and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Office365 => "office365",
            Provider::Exchange => "exchange",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A successful reply, one variant per command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DaemonReply {
    Status(StatusReply),
    Request(RequestReply),
    Requests(RequestsReply),
    Toggle(ToggleReply),
    Reload(ReloadReply),
    Disconnect(DisconnectReply),
    /// `connect` and `check`: the link as it now stands.
    Link(LinkInfo),
    Token(TokenReply),
    Detect(DetectReply),
    CheckAll(CheckAllReply),
    /// The end of a `links` stream.
    LinksEnd(LinksEndReply),
}

/// The most links one `Links` frame carries.
pub const LINKS_PAGE: usize = 1000;

/// The end of a `links` stream: how many links its pages carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinksEndReply {
    pub count: u64,
}

/// `check --all`: how many links were checked and which failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckAllReply {
    pub checked: u64,
    pub ok: u64,
    /// The links whose check failed, by address.
    pub failed: Vec<CheckedLink>,
}

/// One failed check of `check --all`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedLink {
    pub email: String,
    pub state: LinkState,
    pub reason: String,
}

/// `detect`: which provider serves an address, and why mslink thinks so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectReply {
    pub email: String,
    /// `None`: unknown or conflicting; `connect` then asks, or needs `--provider`.
    #[serde(default)]
    pub provider: Option<Provider>,
    /// True when probes pointed at both providers.
    #[serde(default)]
    pub conflicting: bool,
    /// Every probe's answer, in the order they came.
    pub evidence: Vec<Evidence>,
    /// How long detection took.
    pub elapsed_ms: u64,
    /// True when the answer came from the short-lived per-domain cache.
    #[serde(default)]
    pub cached: bool,
}

/// One probe's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The probe: `user_realm`, `openid_configuration`, `mx`, `autodiscover_v2`,
    /// `autodiscover_domain`, `autodiscover_host`, `autodiscover_http_redirect`, `srv`.
    pub probe: String,
    /// The provider this points to, if any.
    #[serde(default)]
    pub points_to: Option<Provider>,
    /// What was seen.
    pub detail: String,
}

/// `token`: a fresh access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenReply {
    pub access_token: Sensitive,
    pub expires_at: UnixTime,
}

/// Seconds since the Unix epoch, UTC.
pub type UnixTime = i64;

/// `status`: where the caller stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReply {
    /// The user the reply is about (the caller, or `--user`).
    pub user: String,
    /// Whether the caller is an admin.
    pub admin: bool,
    pub integration: Integration,
    /// The user's own request, if they made one.
    #[serde(default)]
    pub request: Option<AccessRequest>,
    /// The user's links (or every link, with `--all`).
    #[serde(default)]
    pub links: Vec<LinkInfo>,
    /// Admins only: how many requests wait for `enable`.
    #[serde(default)]
    pub pending_requests: Option<u64>,
    /// Admins only: the most recent admin actions, newest first.
    #[serde(default)]
    pub recent_admin_actions: Vec<AuditEntry>,
}

/// The organisation-wide Microsoft toggle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integration {
    pub enabled: bool,
    /// When it last changed, and by whom (absent until an admin first acts).
    #[serde(default)]
    pub changed_at: Option<UnixTime>,
    #[serde(default)]
    pub changed_by: Option<String>,
}

/// A user's request for the integration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    pub user: String,
    pub requested_at: UnixTime,
    #[serde(default)]
    pub message: Option<String>,
    pub state: RequestState,
    /// Set once granted.
    #[serde(default)]
    pub granted_at: Option<UnixTime>,
    #[serde(default)]
    pub granted_by: Option<String>,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Granted,
}

/// The health of a link (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Active,
    Degraded,
    NeedsReauth,
    Blocked,
    Suspended,
}

impl LinkState {
    /// Every state, in the order status summaries print them.
    pub const ALL: [LinkState; 5] = [
        LinkState::Active,
        LinkState::Degraded,
        LinkState::NeedsReauth,
        LinkState::Blocked,
        LinkState::Suspended,
    ];

    /// The name used in output, the database, hooks and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Active => "active",
            LinkState::Degraded => "degraded",
            LinkState::NeedsReauth => "needs_reauth",
            LinkState::Blocked => "blocked",
            LinkState::Suspended => "suspended",
        }
    }

    /// Parses the name written by [`LinkState::as_str`].
    pub fn parse(s: &str) -> Option<LinkState> {
        LinkState::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl std::fmt::Display for LinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One linked mailbox, as status shows it (SPEC §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkInfo {
    pub email: String,
    pub user: String,
    pub provider: Provider,
    pub state: LinkState,
    /// Why the link is not `active`, with the AADSTS or EWS code where there is one.
    #[serde(default)]
    pub reason: Option<String>,
    /// When the link entered its current state.
    pub since: UnixTime,
    #[serde(default)]
    pub last_ok: Option<UnixTime>,
    #[serde(default)]
    pub next_check: Option<UnixTime>,
    #[serde(default)]
    pub token_expiry: Option<UnixTime>,
    #[serde(default)]
    pub inbox_total: Option<u64>,
    #[serde(default)]
    pub inbox_unread: Option<u64>,
    #[serde(default)]
    pub calendar_ok: Option<bool>,
    /// Exchange: the server's version (from `ServerVersionInfo`).
    #[serde(default)]
    pub server_version: Option<String>,
    /// Exchange: the authentication scheme that worked (`ntlm`, `basic`).
    #[serde(default)]
    pub auth_scheme: Option<String>,
    /// Where checks go: the EWS URL or the Graph base URL.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// How the provider was settled at `connect`: the detection evidence that pointed to a
    /// provider, or one `provider_flag` entry when `--provider` was given.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// True when background checks of this link are overdue by more than a few check intervals:
    /// the daemon is not keeping up with it (a hanging server holding the check slots, an
    /// overloaded machine), so `state` and the figures above may be out of date.
    #[serde(default)]
    pub stale: bool,
    /// On a store several daemons share: the daemon that last worked this link (`host:pid:tag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worked_by: Option<String>,
}

/// One admin action, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: UnixTime,
    pub actor: String,
    pub action: String,
    #[serde(default)]
    pub detail: Option<String>,
}

/// `request`: what was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestReply {
    /// `None` when the integration is already enabled: nothing to request.
    #[serde(default)]
    pub request: Option<AccessRequest>,
    /// True when an earlier pending request was updated rather than a new one made.
    #[serde(default)]
    pub updated: bool,
    pub integration_enabled: bool,
}

/// `requests`: the pending requests, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestsReply {
    pub requests: Vec<AccessRequest>,
}

/// `enable` / `disable`: the new state and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToggleReply {
    pub enabled: bool,
    /// False when the integration was already in the requested state.
    pub changed: bool,
    /// `enable`: requests granted.
    #[serde(default)]
    pub granted_requests: u64,
    /// `enable`: links resumed; `disable`: links suspended.
    #[serde(default)]
    pub links_affected: u64,
}

/// `reload`: the config now in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReply {
    pub config_path: Option<String>,
}

/// `disconnect`: the link that was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisconnectReply {
    pub email: String,
    pub user: String,
}

/// A typed error: `kind` decides the exit code, `message` says what happened, `hint` what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    pub kind: ErrorKind,
    pub message: String,
    #[serde(default)]
    pub hint: Option<String>,
}

impl WireError {
    /// An error without a hint.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        WireError { kind, message: message.into(), hint: None }
    }

    /// Adds what the user should do next.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The classes of failure a client must tell apart (SPEC §3 exit codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Failed for another reason; the message says which.
    Failed,
    /// The request was malformed or unknown to this daemon.
    Usage,
    /// The caller may not do this.
    PermissionDenied,
    /// No such link or user (also for another user's link: never leaked).
    NotFound,
    /// Not allowed in the current state (integration disabled, link exists, ...).
    NotAllowed,
    /// The mailbox rejected the credentials or the sign-in was declined.
    AuthRejected,
    /// Timed out or cancelled.
    Timeout,
    /// Client and daemon speak different protocol versions.
    ProtocolMismatch,
    /// The daemon is at its connection limit.
    Busy,
    /// A fault inside the daemon (database, bug); the daemon log has the details.
    Internal,
    /// The daemon cannot be reached (said by the client about itself; the daemon never sends it).
    Unreachable,
    /// A kind this client does not know (sent by a newer daemon).
    #[serde(other)]
    Unknown,
}

impl ErrorKind {
    /// The `mslinkctl` exit code for this kind (SPEC §3).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Usage => 2,
            ErrorKind::PermissionDenied => 4,
            ErrorKind::NotFound => 5,
            ErrorKind::NotAllowed => 6,
            ErrorKind::AuthRejected => 7,
            ErrorKind::Timeout => 8,
            ErrorKind::Unreachable => 3,
            ErrorKind::Failed
            | ErrorKind::ProtocolMismatch
            | ErrorKind::Busy
            | ErrorKind::Internal
            | ErrorKind::Unknown => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_keytab_fits_a_connect_frame() {
        let keytab = "A".repeat(MAX_KEYTAB_BYTES.div_ceil(3) * 4);
        let args = ConnectArgs {
            email: "svc-mail@contoso.test".into(),
            provider: Some(Provider::Exchange),
            flow: SignInFlow::Browser,
            username: Some("CONTOSO\\svc-mail".into()),
            server: Some("https://mail.contoso.test/EWS/Exchange.asmx".into()),
            password: None,
            keytab: Some(Sensitive::new(keytab)),
            trusted_servers: vec!["mail.contoso.test".into()],
            interactive: false,
        };
        let frame = ClientFrame::Command { act_as: None, command: CtlCommand::Connect(args) };
        let bytes = crate::encode(&frame, crate::MAX_CLIENT_FRAME).unwrap();
        assert!(bytes.len() < crate::MAX_CLIENT_FRAME - 4096, "{} bytes", bytes.len());
    }

    #[test]
    fn commands_have_a_stable_json_shape() {
        let frame = ClientFrame::Command {
            act_as: Some("alice".into()),
            command: CtlCommand::Request { message: Some("please".into()) },
        };
        let json = serde_json::to_value(&frame).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "frame": "command",
                "act_as": "alice",
                "command": { "name": "request", "message": "please" }
            })
        );
    }

    #[test]
    fn a_connect_from_an_older_ctl_trusts_nothing_and_is_not_asked() {
        let json = r#"{"name":"connect","email":"a@b.c","provider":"exchange","password":"p"}"#;
        let CtlCommand::Connect(args) = serde_json::from_str(json).unwrap() else {
            panic!("not a connect");
        };
        assert!(args.trusted_servers.is_empty());
        assert!(!args.interactive);
        // Nothing trusted: nothing new on the wire for an older daemon either.
        let again = serde_json::to_value(CtlCommand::Connect(args)).unwrap();
        assert!(again.get("trusted_servers").is_none(), "{again}");
    }

    #[test]
    fn confirmations_have_a_stable_json_shape() {
        let event = ConnectEvent::Confirm { question: "Trust x?".into(), host: "x".into() };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({ "event": "confirm", "question": "Trust x?", "host": "x" })
        );
        assert_eq!(
            serde_json::to_value(ClientFrame::Answer { yes: true }).unwrap(),
            serde_json::json!({ "frame": "answer", "yes": true })
        );
    }

    #[test]
    fn an_unknown_error_kind_from_a_newer_daemon_still_parses() {
        let err: WireError =
            serde_json::from_str(r#"{"kind":"quantum","message":"m","hint":null}"#).unwrap();
        assert_eq!(err.kind, ErrorKind::Unknown);
        assert_eq!(err.kind.exit_code(), 1);
    }

    #[test]
    fn link_states_round_trip_through_their_names() {
        for state in LinkState::ALL {
            assert_eq!(LinkState::parse(state.as_str()), Some(state));
        }
    }
}
