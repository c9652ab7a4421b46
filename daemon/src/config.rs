//! The daemon's configuration (SPEC §5): parse, then validate.
//!
//! ```text
//!   TOML text ──serde (deny_unknown_fields, typed values)──▶ RawConfig ──resolve(Env)──▶ Config
//!                 │ unknown key / bad value: toml's error,        │ cross-key rules: the key's
//!                 │ which names the key, line and column          │ line is looked up from its span
//! ```
//!
//! Value types that can be wrong on their own ([`Duration`], [`EndpointUrl`], [`Nameserver`]) check
//! themselves while deserialising, so their errors carry toml's position for free. Defaults that
//! depend on the process (systemd's `$RUNTIME_DIRECTORY`, root or not) come from an [`Env`] so tests
//! can state them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use mslink_proto::TokenResource;
use serde::{Deserialize, Deserializer, de};
use toml::Spanned;

/// Where the config lives unless `--config` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/mslink/mslinkd.toml";

/// A config that could not be loaded, with the file, line and key in the message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, unreadable, or fails the rule of [`crate::files`].
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    #[error("config {origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error(
        "no default for `{key}`: {why}; set `{key}` in the config file or the environment variable"
    )]
    NoDefault { key: &'static str, why: &'static str },
}

/// The systemd credential (`LoadCredential=`) that holds the Entra app's client secret.
pub const CLIENT_SECRET_CREDENTIAL: &str = "mslink.client-secret";

/// The systemd credential (`LoadCredential=`) that holds the PostgreSQL role's password: the
/// default of `[store] password_file` when `[store] url` is set.
pub const STORE_PASSWORD_CREDENTIAL: &str = "mslink.store-password";

/// The parts of the process environment that decide defaults.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub is_root: bool,
    pub runtime_directory: Option<PathBuf>,
    pub state_directory: Option<PathBuf>,
    pub credentials_directory: Option<PathBuf>,
    /// `$CREDENTIALS_DIRECTORY/mslink.client-secret` when systemd passed that credential: the
    /// default for `[office365] client_secret_file`.
    pub client_secret_credential: Option<PathBuf>,
    /// `$CREDENTIALS_DIRECTORY/mslink.store-password` when systemd passed that credential: the
    /// default for `[store] password_file`.
    pub store_password_credential: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    pub xdg_state_home: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl Env {
    /// Reads the environment of this process.
    pub fn from_process() -> Env {
        // systemd may pass several directories separated by ':'; the first is ours.
        let dir = |name: &str| {
            std::env::var_os(name)
                .and_then(|v| v.to_str().and_then(|s| s.split(':').next()).map(PathBuf::from))
                .filter(|p| p.is_absolute())
        };
        Env {
            is_root: nix::unistd::geteuid().is_root(),
            // Like the key, the client secret credential is optional (the units load it when
            // the credential store has it), so only one that is there counts.
            client_secret_credential: dir("CREDENTIALS_DIRECTORY")
                .map(|d| d.join(CLIENT_SECRET_CREDENTIAL))
                .filter(|p| p.exists()),
            store_password_credential: dir("CREDENTIALS_DIRECTORY")
                .map(|d| d.join(STORE_PASSWORD_CREDENTIAL))
                .filter(|p| p.exists()),
            runtime_directory: dir("RUNTIME_DIRECTORY"),
            state_directory: dir("STATE_DIRECTORY"),
            // Only a credentials directory that holds our key decides `key_file`: the units load
            // `mslink.key` from systemd's credential store when it is there and skip it when not,
            // and then the key lives in the state directory.
            credentials_directory: dir("CREDENTIALS_DIRECTORY")
                .filter(|d| d.join("mslink.key").exists()),
            xdg_runtime_dir: dir("XDG_RUNTIME_DIR"),
            xdg_state_home: dir("XDG_STATE_HOME"),
            home: dir("HOME"),
        }
    }
}

/// The validated configuration the daemon runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from (`None`: built-in defaults); `reload` re-reads it.
    pub source: Option<PathBuf>,
    pub socket: PathBuf,
    pub socket_group: Option<String>,
    pub state_dir: PathBuf,
    pub key_file: PathBuf,
    pub admin_group: String,
    pub admin_users: Vec<String>,
    /// How many links one user may have (admins, or an admin acting with `--user`, may exceed
    /// it), so one account cannot fill the daemon.
    pub max_links_per_user: usize,
    pub office365: Office365,
    pub exchange: Exchange,
    pub network: Network,
    pub schedule: Schedule,
    pub detection: Detection,
    pub hooks: Hooks,
    pub metrics: Metrics,
    /// `[store]`: where links and the organisation's state live.
    pub store: StoreBackend,
}

/// `[store]`: SQLite in `state_dir` (the default, one daemon), or a PostgreSQL database that
/// several daemons share (SPEC §9).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum StoreBackend {
    #[default]
    Sqlite,
    /// Boxed: the parsed URL is large, and most configs never hold one.
    Postgres(Box<PgConfig>),
}

/// `[store] url`, `password_file` and `ca_file`, checked: a `postgresql://` URL naming a user, a
/// host and a database, with no password in it.
#[derive(Debug, Clone, PartialEq)]
pub struct PgConfig {
    /// The URL as written (it holds no password), for messages.
    pub url: String,
    /// The parsed URL, without the password (read from `password_file` at connect). Its TLS mode
    /// is `Require` when `ca_file` is set, `Disable` otherwise.
    pub connection: tokio_postgres::Config,
    /// The file holding the role's password (`None`: the server needs none, e.g. `peer` or
    /// `cert` authentication).
    pub password_file: Option<PathBuf>,
    /// The CA the server's certificate must chain to; set means TLS, verified, always.
    pub ca_file: Option<PathBuf>,
    /// `[store] lease`: how long a daemon's claim on a due link lasts unless renewed; a daemon
    /// that dies has its links taken over this long after its last renewal.
    pub lease: StdDuration,
}

impl PgConfig {
    /// The default `[store] lease`: four times a request's timeout, so a round renews it long
    /// before it runs out.
    pub const DEFAULT_LEASE: StdDuration = StdDuration::from_secs(120);
    /// The shortest `[store] lease`: a refresh must fit in what is left of one.
    pub const MIN_LEASE: StdDuration = StdDuration::from_secs(5);
}

/// `[office365]`: the organisation's Entra app registration and endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Office365 {
    pub client_id: Option<String>,
    pub client_secret: Option<ClientSecret>,
    pub tenant: String,
    /// The Microsoft cloud the organisation lives in: the default of every Microsoft endpoint
    /// and the hosts detection recognises as Microsoft's.
    pub cloud: Cloud,
    pub authority: EndpointUrl,
    pub authorize_url: EndpointUrl,
    pub token_url: EndpointUrl,
    pub device_code_url: EndpointUrl,
    pub graph_url: EndpointUrl,
    pub scopes: Vec<String>,
    /// Extra resources a link may get access tokens for (`imap`, `pop`, `smtp`, `ews`), besides
    /// Graph; sign-in asks for their scopes too, so the user's consent covers them.
    pub resources: Vec<TokenResource>,
    pub redirect_listen: SocketAddr,
    /// Sent as `prompt` on the authorization request; `None`: no `prompt` parameter.
    pub prompt: Option<Prompt>,
}

impl Office365 {
    /// The scope a token request names to get an access token for `resource` from the link's
    /// refresh token: the configured `scopes` for Graph, else the Exchange Online permission
    /// (`{outlook}/IMAP.AccessAsUser.All`) and `offline_access`, so a rotated refresh token
    /// comes back. `None`: `resource` is not in `resources`.
    pub fn scopes_for(&self, resource: TokenResource) -> Option<Vec<String>> {
        if resource == TokenResource::Graph {
            return Some(self.scopes.clone());
        }
        if !self.resources.contains(&resource) {
            return None;
        }
        let permission = resource_permission(self.cloud, resource)?;
        Some(vec![permission, "offline_access".to_owned()])
    }

    /// What sign-in asks for: the configured `scopes`, then each configured resource's
    /// permission, so one consent covers every token the link will be asked for.
    pub fn sign_in_scopes(&self) -> Vec<String> {
        let mut scopes = self.scopes.clone();
        for resource in &self.resources {
            if let Some(permission) = resource_permission(self.cloud, *resource)
                && !scopes.contains(&permission)
            {
                scopes.push(permission);
            }
        }
        scopes
    }
}

/// The Exchange Online delegated permission of `resource` in `cloud`, as a fully qualified scope
/// (Microsoft: "Authenticate an IMAP, POP or SMTP connection using OAuth"; for EWS,
/// "Authenticate an EWS application by using OAuth", whose resource is the EWS host's).
fn resource_permission(cloud: Cloud, resource: TokenResource) -> Option<String> {
    let hosts = cloud.hosts();
    let (audience, leaf) = match resource {
        TokenResource::Graph => return None,
        TokenResource::Imap => (hosts.outlook, "IMAP.AccessAsUser.All"),
        TokenResource::Pop => (hosts.outlook, "POP.AccessAsUser.All"),
        TokenResource::Smtp => (hosts.outlook, "SMTP.Send"),
        TokenResource::Ews => (hosts.ews, "EWS.AccessAsUser.All"),
    };
    Some(format!("{audience}/{leaf}"))
}

/// A Microsoft cloud instance (`[office365] cloud`): the global service or a national cloud.
///
/// Each is a separate Entra ID, Graph and Exchange Online with its own host names, from
/// Microsoft's national-cloud documentation (learn.microsoft.com: "Microsoft Graph national cloud
/// deployments", "Microsoft Entra authentication & national clouds", and the Office 365 GCC High,
/// DoD and 21Vianet endpoint and DNS-record pages). An app registered in one cloud cannot sign
/// in to another, so the cloud is chosen once for the whole daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Cloud {
    /// The global service (and GCC, which uses the global endpoints).
    #[serde(rename = "global")]
    Global,
    /// Microsoft 365 GCC High (Azure Government).
    #[serde(rename = "usgov")]
    UsGov,
    /// Microsoft 365 DoD (Azure Government, DoD endpoints).
    #[serde(rename = "usgov-dod")]
    UsGovDod,
    /// Microsoft 365 operated by 21Vianet in China.
    #[serde(rename = "china")]
    China,
}

/// The host names of one Microsoft cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloudHosts {
    /// The Entra ID (login) origin.
    pub login: &'static str,
    /// The Microsoft Graph service root (with `/v1.0`).
    pub graph: &'static str,
    /// Exchange Online's Autodiscover v2 endpoint.
    pub autodiscover_v2: &'static str,
    /// Hosts that are Exchange Online: EWS, Autodiscover and the HTTP-redirect targets.
    pub exchange_online: &'static [&'static str],
    /// MX targets of Exchange Online Protection end with this.
    pub mx_suffix: &'static str,
    /// Tenants' initial domains (`tenant.onmicrosoft.com`) end with this; an Autodiscover
    /// redirect to an address there points at Exchange Online.
    pub initial_domain_suffix: &'static str,
    /// The audience of Exchange Online's IMAP, POP and SMTP permissions.
    pub outlook: &'static str,
    /// The audience of Exchange Online's EWS permission, as Microsoft documents it for EWS
    /// ("Authenticate an EWS application by using OAuth":
    /// `https://outlook.office365.com/EWS.AccessAsUser.All`): the EWS host, in the global cloud
    /// not `outlook`.
    pub ews: &'static str,
}

impl Cloud {
    /// Every cloud, for matching hosts of a cloud other than the configured one.
    pub const ALL: [Cloud; 4] = [Cloud::Global, Cloud::UsGov, Cloud::UsGovDod, Cloud::China];

    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Global => "global",
            Cloud::UsGov => "usgov",
            Cloud::UsGovDod => "usgov-dod",
            Cloud::China => "china",
        }
    }

    /// This cloud's host names.
    #[rustfmt::skip]
    pub fn hosts(self) -> CloudHosts {
        match self {
            Cloud::Global => CloudHosts {
                login: "https://login.microsoftonline.com",
                graph: "https://graph.microsoft.com/v1.0",
                autodiscover_v2: "https://outlook.office365.com/autodiscover/autodiscover.json/v1.0",
                exchange_online: &["outlook.office365.com", "outlook.office.com",
                                   "autodiscover-s.outlook.com", "autodiscover.outlook.com"],
                mx_suffix: ".mail.protection.outlook.com",
                initial_domain_suffix: ".onmicrosoft.com",
                outlook: "https://outlook.office.com",
                ews: "https://outlook.office365.com",
            },
            Cloud::UsGov => CloudHosts {
                login: "https://login.microsoftonline.us",
                graph: "https://graph.microsoft.us/v1.0",
                autodiscover_v2: "https://outlook.office365.us/autodiscover/autodiscover.json/v1.0",
                exchange_online: &["outlook.office365.us", "autodiscover-s.office365.us"],
                mx_suffix: ".mail.protection.office365.us",
                initial_domain_suffix: ".onmicrosoft.us",
                outlook: "https://outlook.office365.us",
                ews: "https://outlook.office365.us",
            },
            Cloud::UsGovDod => CloudHosts {
                login: "https://login.microsoftonline.us",
                graph: "https://dod-graph.microsoft.us/v1.0",
                autodiscover_v2: "https://outlook-dod.office365.us/autodiscover/autodiscover.json/v1.0",
                exchange_online: &["outlook-dod.office365.us", "webmail.apps.mil",
                                   "autodiscover-dod.office365.us", "autodiscover-s-dod.office365.us"],
                mx_suffix: ".mail.protection.office365.us",
                initial_domain_suffix: ".onmicrosoft.us",
                outlook: "https://outlook-dod.office365.us",
                ews: "https://outlook-dod.office365.us",
            },
            Cloud::China => CloudHosts {
                login: "https://login.chinacloudapi.cn",
                graph: "https://microsoftgraph.chinacloudapi.cn/v1.0",
                autodiscover_v2: "https://partner.outlook.cn/autodiscover/autodiscover.json/v1.0",
                exchange_online: &["partner.outlook.cn", "autodiscover.partner.outlook.cn"],
                mx_suffix: ".mail.protection.partner.outlook.cn",
                initial_domain_suffix: ".partner.onmschina.cn",
                outlook: "https://partner.outlook.cn",
                ews: "https://partner.outlook.cn",
            },
        }
    }
}

/// An OpenID Connect `prompt` value (OIDC Core §3.1.2.1) for the authorization request.
///
/// Not sent by default. An OpenID provider that follows OIDC Core §11 grants `offline_access`
/// (and so a refresh token) only with `prompt=consent`; Entra ID grants it without.
/// `none` is not offered: it forbids the interactive sign-in `connect` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// Ask for consent even when it was given before.
    Consent,
    /// Let the user pick among signed-in accounts (Entra: "Pick an account").
    SelectAccount,
    /// Ask for credentials again, ignoring a browser session.
    Login,
}

impl Prompt {
    /// The parameter's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Prompt::Consent => "consent",
            Prompt::SelectAccount => "select_account",
            Prompt::Login => "login",
        }
    }
}

/// Where the client secret comes from. The value itself is read when it is used, never logged.
#[derive(Clone, PartialEq)]
pub enum ClientSecret {
    Inline(String),
    File(PathBuf),
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientSecret::Inline(_) => f.write_str("Inline(<redacted>)"),
            ClientSecret::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// `[exchange]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// Allowed schemes in order of preference.
    pub auth: Vec<ExchangeAuth>,
    /// The Kerberos realm of every Exchange login (`None`: the realm the login names).
    pub realm: Option<String>,
    /// The realm's KDCs, `host[:port]` (empty: DNS SRV `_kerberos._tcp.REALM`).
    pub kdc: Vec<String>,
}

/// An authentication scheme for on-premises EWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeAuth {
    Ntlm,
    Basic,
    /// Negotiate with a Kerberos ticket for `HTTP/<ews host>`.
    Kerberos,
    /// OAuth access tokens from Entra ID (hybrid modern authentication): used whenever a server
    /// asks for them, so not a choice in `[exchange] auth`, which lists the password schemes.
    #[serde(rename = "oauth")]
    OAuth,
}

impl ExchangeAuth {
    /// The name used in the config and shown in status.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeAuth::Ntlm => "ntlm",
            ExchangeAuth::Basic => "basic",
            ExchangeAuth::Kerberos => "kerberos",
            ExchangeAuth::OAuth => "oauth",
        }
    }
}

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Network {
    pub ca_file: Option<PathBuf>,
    /// Empty: the system's resolvers.
    pub nameservers: Vec<SocketAddr>,
    pub resolve: BTreeMap<String, IpAddr>,
}

/// `[schedule]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub check_interval: StdDuration,
    pub refresh_before_expiry: StdDuration,
    pub max_concurrent: usize,
    pub retry_min: StdDuration,
    pub retry_max: StdDuration,
    /// How often a link blocked on the operator (app registration, `key_file`, `ca_file`) is
    /// re-checked by itself; also after every successful reload.
    pub recheck_blocked: StdDuration,
    /// How often a link blocked on the tenant admin (policy, consent) is re-checked.
    pub recheck_tenant_blocked: StdDuration,
}

/// `[detection]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub timeout: StdDuration,
    /// How long a domain's answer is reused.
    pub cache_ttl: StdDuration,
    pub user_realm_url: EndpointUrl,
    pub autodiscover_v2_url: EndpointUrl,
}

/// `[hooks]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hooks {
    pub on_state_change: Option<String>,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metrics {
    pub listen: Option<SocketAddr>,
    /// Also export one series per link, labelled with its mailbox address and user. Off by
    /// default: whoever can reach the listener would read every user's address.
    pub per_link: bool,
}

/// Whether two configs agree on one key.
type SameValue = fn(&Config, &Config) -> bool;

/// The keys a running daemon cannot change: they name what it has already opened (its socket,
/// its state, its key). Reload refuses a change to any of them, naming it; every other key applies
/// live. The one declared list: add a key here, and reload's rule follows.
const RESTART_KEYS: &[(&str, SameValue)] = &[
    ("socket", |a, b| a.socket == b.socket),
    ("socket_group", |a, b| a.socket_group == b.socket_group),
    ("state_dir", |a, b| a.state_dir == b.state_dir),
    ("key_file", |a, b| a.key_file == b.key_file),
    ("store", |a, b| a.store == b.store),
];

impl Config {
    /// The first key whose change from `self` to `next` needs a restart, if any.
    pub fn needs_restart_for(&self, next: &Config) -> Option<&'static str> {
        RESTART_KEYS.iter().find(|(_, same)| !same(self, next)).map(|(key, _)| *key)
    }

    /// Loads `path`. A missing file at the default path means built-in defaults; a missing file
    /// that was named explicitly is an error. The file must pass [`crate::files`]'s rule.
    pub fn load(path: &Path, explicit: bool, env: &Env) -> Result<Config, ConfigError> {
        match crate::files::read_to_string(path, crate::files::What::Config) {
            Ok(text) => Config::parse(&text, Some(path), env),
            Err(e) if e.is_not_found() && !explicit => Config::parse("", None, env),
            Err(e) => Err(e.into()),
        }
    }

    /// Parses and validates config text. `source` names the file in errors and on reload.
    pub fn parse(text: &str, source: Option<&Path>, env: &Env) -> Result<Config, ConfigError> {
        let origin =
            source.map_or_else(|| "(built-in defaults)".to_owned(), |p| p.display().to_string());
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Invalid { origin: origin.clone(), message: e.to_string() })?;
        raw.resolve(source, env).map_err(|problem| match problem {
            Problem::At { key, span, message } => ConfigError::Invalid {
                message: format!("line {}: `{key}`: {message}", line_of(text, span.start)),
                origin,
            },
            Problem::NoDefault { key, why } => ConfigError::NoDefault { key, why },
        })
    }
}

impl Config {
    /// Problems that do not stop the daemon but that an operator should fix; `--check-config`
    /// prints them and the daemon logs them at start.
    ///
    /// Today one: a config file that holds `[office365] client_secret` inline while other local
    /// users can read it (the README installs the config 0640 for this reason; the secret
    /// belongs in `client_secret_file` or the systemd credential).
    pub fn warnings(&self) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let mut warnings = Vec::new();
        if let (Some(ClientSecret::Inline(_)), Some(source)) =
            (&self.office365.client_secret, &self.source)
            && let Ok(meta) = std::fs::metadata(source)
        {
            let mode = meta.permissions().mode() & 0o777;
            let who = match (mode & 0o040 != 0, mode & 0o004 != 0) {
                (true, true) => Some("its group and every local user"),
                (true, false) => Some("its group"),
                (false, true) => Some("every local user"),
                (false, false) => None,
            };
            if let Some(who) = who {
                warnings.push(format!(
                    "config {path} holds `[office365] client_secret` and is readable by {who} \
                     (mode {mode:04o}): move the secret to a file named by `client_secret_file` \
                     (mode 0600) or to the systemd credential {CLIENT_SECRET_CREDENTIAL}, or run \
                     `chmod 600 {path}`",
                    path = source.display(),
                ));
            }
        }
        warnings
    }
}

/// A cross-key rule that failed, before the line number is looked up.
enum Problem {
    At { key: &'static str, span: std::ops::Range<usize>, message: String },
    NoDefault { key: &'static str, why: &'static str },
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    socket: Option<PathBuf>,
    socket_group: Option<String>,
    state_dir: Option<PathBuf>,
    key_file: Option<PathBuf>,
    admin_group: Option<String>,
    admin_users: Vec<String>,
    max_links_per_user: Option<usize>,
    office365: RawOffice365,
    exchange: RawExchange,
    network: RawNetwork,
    schedule: RawSchedule,
    detection: RawDetection,
    hooks: RawHooks,
    metrics: RawMetrics,
    store: RawStore,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOffice365 {
    client_id: Option<String>,
    client_secret: Option<Spanned<String>>,
    client_secret_file: Option<PathBuf>,
    tenant: Option<String>,
    cloud: Option<Cloud>,
    authority: Option<EndpointUrl>,
    authorize_url: Option<EndpointUrl>,
    token_url: Option<EndpointUrl>,
    device_code_url: Option<EndpointUrl>,
    graph_url: Option<EndpointUrl>,
    scopes: Option<Spanned<Vec<String>>>,
    resources: Option<Spanned<Vec<String>>>,
    redirect_listen: Option<Spanned<SocketAddr>>,
    prompt: Option<Prompt>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawExchange {
    auth: Option<Spanned<Vec<ExchangeAuth>>>,
    realm: Option<String>,
    kdc: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNetwork {
    ca_file: Option<PathBuf>,
    nameservers: Vec<Nameserver>,
    resolve: BTreeMap<String, IpAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSchedule {
    check_interval: Option<Duration>,
    refresh_before_expiry: Option<Duration>,
    max_concurrent: Option<Spanned<usize>>,
    retry_min: Option<Duration>,
    retry_max: Option<Spanned<Duration>>,
    recheck_blocked: Option<Duration>,
    recheck_tenant_blocked: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDetection {
    timeout: Option<Duration>,
    cache_ttl: Option<Duration>,
    user_realm_url: Option<EndpointUrl>,
    autodiscover_v2_url: Option<EndpointUrl>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHooks {
    on_state_change: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    url: Option<Spanned<String>>,
    password_file: Option<Spanned<PathBuf>>,
    ca_file: Option<Spanned<PathBuf>>,
    lease: Option<Spanned<Duration>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMetrics {
    listen: Option<SocketAddr>,
    per_link: bool,
}

impl RawConfig {
    fn resolve(self, source: Option<&Path>, env: &Env) -> Result<Config, Problem> {
        let socket = match self.socket {
            Some(path) => path,
            None => default_socket(env)?,
        };
        let state_dir = match self.state_dir {
            Some(path) => path,
            None => default_state_dir(env)?,
        };
        let key_file = self.key_file.unwrap_or_else(|| match &env.credentials_directory {
            Some(dir) => dir.join("mslink.key"),
            None => state_dir.join("secret.key"),
        });
        let office365 = self.office365.resolve(env)?;
        let cloud = office365.cloud.hosts();
        Ok(Config {
            source: source.map(Path::to_owned),
            socket,
            socket_group: self.socket_group,
            state_dir,
            key_file,
            admin_group: self.admin_group.unwrap_or_else(|| "mslink-admin".to_owned()),
            admin_users: self.admin_users,
            max_links_per_user: self.max_links_per_user.unwrap_or(20),
            office365,
            exchange: self.exchange.resolve()?,
            network: Network {
                ca_file: self.network.ca_file,
                nameservers: self.network.nameservers.into_iter().map(|n| n.0).collect(),
                resolve: self.network.resolve,
            },
            schedule: self.schedule.resolve()?,
            detection: Detection {
                timeout: self.detection.timeout.map_or(StdDuration::from_secs(8), |d| d.0),
                cache_ttl: self.detection.cache_ttl.map_or(StdDuration::from_secs(600), |d| d.0),
                user_realm_url: self.detection.user_realm_url.unwrap_or_else(|| {
                    EndpointUrl::builtin(&format!("{}/getuserrealm.srf", cloud.login))
                }),
                autodiscover_v2_url: self
                    .detection
                    .autodiscover_v2_url
                    .unwrap_or_else(|| EndpointUrl::builtin(cloud.autodiscover_v2)),
            },
            hooks: Hooks {
                on_state_change: match self.hooks.on_state_change {
                    Some(cmd) if cmd.get_ref().trim().is_empty() => {
                        return Err(Problem::At {
                            key: "hooks.on_state_change",
                            span: cmd.span(),
                            message: "is empty; remove the key or name a command".into(),
                        });
                    }
                    cmd => cmd.map(Spanned::into_inner),
                },
            },
            metrics: Metrics { listen: self.metrics.listen, per_link: self.metrics.per_link },
            store: self.store.resolve(env)?,
        })
    }
}

impl RawStore {
    fn resolve(self, env: &Env) -> Result<StoreBackend, Problem> {
        let Some(url) = self.url else {
            // A file named for a store that is not configured is a mistake, not a default.
            for (key, path) in
                [("store.password_file", self.password_file), ("store.ca_file", self.ca_file)]
            {
                if let Some(path) = path {
                    return Err(Problem::At {
                        key,
                        span: path.span(),
                        message: "has no effect without `[store] url` (the SQLite store in \
                                  `state_dir` needs no password or CA); set `url` or remove it"
                            .into(),
                    });
                }
            }
            if let Some(lease) = self.lease {
                return Err(Problem::At {
                    key: "store.lease",
                    span: lease.span(),
                    message: "has no effect without `[store] url` (one daemon on SQLite claims \
                              nothing); set `url` or remove it"
                        .into(),
                });
            }
            return Ok(StoreBackend::Sqlite);
        };
        let span = url.span();
        let at = |message: String| Problem::At { key: "store.url", span: span.clone(), message };
        let text = url.into_inner();
        let form = "write it as `postgresql://USER@HOST[:PORT]/DATABASE`";
        if !(text.starts_with("postgresql://") || text.starts_with("postgres://")) {
            return Err(at(format!("is not a `postgresql://` URL; {form}")));
        }
        let password_refused = || {
            at(format!(
                "holds a password: remove it from the URL and put it in a file (mode 0600) named \
                 by `[store] password_file`, or in the systemd credential \
                 {STORE_PASSWORD_CREDENTIAL}"
            ))
        };
        // Looked for before tokio-postgres parses the rest, so no error about another part of
        // the URL comes first (nor repeats it).
        if url::Url::parse(&text).is_ok_and(|u| u.password().is_some()) {
            return Err(password_refused());
        }
        let mut connection: tokio_postgres::Config = text.parse().map_err(|e| {
            // tokio-postgres's message never repeats the URL, so no password can leak here.
            at(format!("is not a valid PostgreSQL URL ({e}); {form}"))
        })?;
        if connection.get_password().is_some() {
            return Err(password_refused());
        }
        if connection.get_user().is_none_or(str::is_empty) {
            return Err(at(format!("names no user; {form}")));
        }
        if connection.get_hosts().is_empty() {
            return Err(at(format!("names no host; {form}")));
        }
        if connection.get_dbname().is_none_or(str::is_empty) {
            return Err(at(format!("names no database; {form}")));
        }
        use tokio_postgres::config::SslMode;
        let ca_file = self.ca_file.map(Spanned::into_inner);
        let mode = match (connection.get_ssl_mode(), &ca_file) {
            (SslMode::Disable, Some(_)) => {
                return Err(at("says `sslmode=disable`, but `[store] ca_file` asks for TLS; \
                               remove one of them"
                    .into()));
            }
            (_, Some(_)) => SslMode::Require,
            (SslMode::Require, None) => {
                return Err(at("asks for TLS (`sslmode=require`): set `[store] ca_file` to the \
                               CA that issued the server's certificate, so it can be verified"
                    .into()));
            }
            // `prefer` (the default) without a CA: plain, as no certificate could be verified.
            (_, None) => SslMode::Disable,
        };
        connection.ssl_mode(mode);
        let password_file = self
            .password_file
            .map(Spanned::into_inner)
            .or_else(|| env.store_password_credential.clone());
        let lease = match self.lease {
            None => PgConfig::DEFAULT_LEASE,
            Some(lease) if lease.get_ref().0 < PgConfig::MIN_LEASE => {
                return Err(Problem::At {
                    key: "store.lease",
                    span: lease.span(),
                    message: "is shorter than 5s: a refresh must fit in what is left of a lease"
                        .into(),
                });
            }
            Some(lease) => lease.into_inner().0,
        };
        Ok(StoreBackend::Postgres(Box::new(PgConfig {
            url: text,
            connection,
            password_file,
            ca_file,
            lease,
        })))
    }
}

impl RawOffice365 {
    fn resolve(self, env: &Env) -> Result<Office365, Problem> {
        let tenant = self.tenant.unwrap_or_else(|| "organizations".to_owned());
        let cloud = self.cloud.unwrap_or(Cloud::Global);
        let login = cloud.hosts().login;
        let authority = self
            .authority
            .unwrap_or_else(|| EndpointUrl::builtin(&format!("{login}/{tenant}/v2.0")));
        // The OAuth endpoints sit under the authority (Entra's v2.0 layout:
        // `{host}/{tenant}/v2.0` -> `{host}/{tenant}/oauth2/v2.0/{leaf}`), so setting
        // `authority` alone moves them all; an explicit per-URL key still wins.
        let oauth = |url: Option<EndpointUrl>, leaf: &str| {
            url.unwrap_or_else(|| under_authority(&authority, leaf))
        };
        let client_secret = match (self.client_secret, self.client_secret_file) {
            (Some(inline), Some(_)) => {
                return Err(Problem::At {
                    key: "office365.client_secret",
                    span: inline.span(),
                    message: "set either `client_secret` or `client_secret_file`, not both".into(),
                });
            }
            (Some(inline), None) => Some(ClientSecret::Inline(inline.into_inner())),
            (None, Some(path)) => Some(ClientSecret::File(path)),
            (None, None) => env.client_secret_credential.clone().map(ClientSecret::File),
        };
        let scopes = match self.scopes {
            // Without `offline_access` no refresh token is issued and every link would need
            // a new sign-in within the hour.
            Some(scopes) if !scopes.get_ref().iter().any(|s| s == "offline_access") => {
                return Err(Problem::At {
                    key: "office365.scopes",
                    span: scopes.span(),
                    message: "lacks `offline_access`: without it Microsoft issues no refresh \
                              token and links stop working within the hour; list at least \
                              `offline_access` and `User.Read`"
                        .into(),
                });
            }
            Some(scopes) => scopes.into_inner(),
            None => ["offline_access", "User.Read", "Mail.Read", "Calendars.Read"]
                .map(str::to_owned)
                .to_vec(),
        };
        let mut resources = Vec::new();
        if let Some(listed) = self.resources {
            let span = listed.span();
            for name in listed.into_inner() {
                let resource = match TokenResource::parse(&name) {
                    Some(TokenResource::Graph) => {
                        return Err(Problem::At {
                            key: "office365.resources",
                            span,
                            message: "`graph` is always available (through `scopes`); list \
                                      only `imap`, `pop`, `smtp` or `ews`"
                                .into(),
                        });
                    }
                    Some(resource) => resource,
                    None => {
                        return Err(Problem::At {
                            key: "office365.resources",
                            span,
                            message: format!(
                                "unknown resource `{name}`: expected `imap`, `pop`, `smtp` or `ews`"
                            ),
                        });
                    }
                };
                if !resources.contains(&resource) {
                    resources.push(resource);
                }
            }
        }
        let redirect_listen = match self.redirect_listen {
            Some(addr) if !addr.get_ref().ip().is_loopback() => {
                return Err(Problem::At {
                    key: "office365.redirect_listen",
                    span: addr.span(),
                    message: "must be a loopback address such as 127.0.0.1:0".into(),
                });
            }
            Some(addr) => addr.into_inner(),
            None => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        Ok(Office365 {
            client_id: self.client_id,
            client_secret,
            authorize_url: oauth(self.authorize_url, "authorize"),
            token_url: oauth(self.token_url, "token"),
            device_code_url: oauth(self.device_code_url, "devicecode"),
            graph_url: self.graph_url.unwrap_or_else(|| EndpointUrl::builtin(cloud.hosts().graph)),
            authority,
            tenant,
            cloud,
            scopes,
            resources,
            redirect_listen,
            prompt: self.prompt,
        })
    }
}

/// `{authority without its trailing /v2.0}/oauth2/v2.0/{leaf}`: where Entra serves the OAuth
/// endpoints of an authority. Same scheme and host as the authority, so the https-or-loopback
/// rule still holds.
fn under_authority(authority: &EndpointUrl, leaf: &str) -> EndpointUrl {
    let mut url = authority.url().clone();
    let path = url.path().trim_end_matches('/');
    let base = path.strip_suffix("/v2.0").unwrap_or(path).to_owned();
    url.set_path(&format!("{base}/oauth2/v2.0/{leaf}"));
    url.set_query(None);
    url.set_fragment(None);
    EndpointUrl(url)
}

impl RawExchange {
    fn resolve(self) -> Result<Exchange, Problem> {
        let auth = match self.auth {
            Some(auth) if auth.get_ref().is_empty() => {
                return Err(Problem::At {
                    key: "exchange.auth",
                    span: auth.span(),
                    message: "is empty; allow at least one of \"kerberos\", \"ntlm\", \"basic\""
                        .into(),
                });
            }
            Some(auth) if auth.get_ref().contains(&ExchangeAuth::OAuth) => {
                return Err(Problem::At {
                    key: "exchange.auth",
                    span: auth.span(),
                    message: "lists the password schemes; leave out \"oauth\": a server that \
                              asks for Entra ID tokens (hybrid modern authentication) gets them \
                              without it"
                        .into(),
                });
            }
            Some(auth) => auth.into_inner(),
            None => vec![ExchangeAuth::Ntlm, ExchangeAuth::Basic],
        };
        let realm = self.realm.map(|r| r.trim().to_ascii_uppercase()).filter(|r| !r.is_empty());
        Ok(Exchange { auth, realm, kdc: self.kdc })
    }
}

impl RawSchedule {
    fn resolve(self) -> Result<Schedule, Problem> {
        let or =
            |d: Option<Duration>, default: u64| d.map_or(StdDuration::from_secs(default), |d| d.0);
        let max_concurrent = match self.max_concurrent {
            Some(n) if *n.get_ref() == 0 => {
                return Err(Problem::At {
                    key: "schedule.max_concurrent",
                    span: n.span(),
                    message: "must be at least 1".into(),
                });
            }
            Some(n) => n.into_inner(),
            None => 16,
        };
        let retry_min = or(self.retry_min, 30);
        let retry_max = match self.retry_max {
            Some(max) if max.get_ref().0 < retry_min => {
                return Err(Problem::At {
                    key: "schedule.retry_max",
                    span: max.span(),
                    message: format!(
                        "({}) is shorter than `retry_min` ({})",
                        humantime::format_duration(max.get_ref().0),
                        humantime::format_duration(retry_min)
                    ),
                });
            }
            Some(max) => max.into_inner().0,
            None => StdDuration::from_secs(30 * 60).max(retry_min),
        };
        Ok(Schedule {
            check_interval: or(self.check_interval, 15 * 60),
            refresh_before_expiry: or(self.refresh_before_expiry, 5 * 60),
            max_concurrent,
            retry_min,
            retry_max,
            recheck_blocked: or(self.recheck_blocked, 6 * 3600),
            recheck_tenant_blocked: or(self.recheck_tenant_blocked, 24 * 3600),
        })
    }
}

fn default_socket(env: &Env) -> Result<PathBuf, Problem> {
    if let Some(dir) = &env.runtime_directory {
        Ok(dir.join("mslinkd.sock"))
    } else if env.is_root {
        Ok(PathBuf::from("/run/mslink/mslinkd.sock"))
    } else if let Some(dir) = &env.xdg_runtime_dir {
        Ok(dir.join("mslink/mslinkd.sock"))
    } else {
        Err(Problem::NoDefault {
            key: "socket",
            why: "neither $RUNTIME_DIRECTORY nor $XDG_RUNTIME_DIR is set",
        })
    }
}

fn default_state_dir(env: &Env) -> Result<PathBuf, Problem> {
    if let Some(dir) = &env.state_directory {
        Ok(dir.clone())
    } else if env.is_root {
        Ok(PathBuf::from("/var/lib/mslink"))
    } else if let Some(dir) = &env.xdg_state_home {
        Ok(dir.join("mslink"))
    } else if let Some(home) = &env.home {
        Ok(home.join(".local/state/mslink"))
    } else {
        Err(Problem::NoDefault {
            key: "state_dir",
            why: "neither $STATE_DIRECTORY nor $HOME is set",
        })
    }
}

/// A duration written like `90s`, `15m`, `1h`; zero is refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Duration(pub StdDuration);

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match humantime::parse_duration(&text) {
            Ok(d) if d.is_zero() => Err(de::Error::custom("a duration must be longer than zero")),
            Ok(d) => Ok(Duration(d)),
            Err(e) => Err(de::Error::custom(format!(
                "`{text}` is not a duration ({e}); write it like \"90s\", \"15m\" or \"1h\""
            ))),
        }
    }
}

/// An endpoint URL: `https://`, or `http://` to a loopback address (SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(url::Url);

impl EndpointUrl {
    /// Checks the https-or-loopback rule.
    pub fn parse(text: &str) -> Result<EndpointUrl, String> {
        let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
        let loopback = match url.host() {
            Some(url::Host::Domain(host)) => host.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        match url.scheme() {
            "https" if url.host().is_some() => Ok(EndpointUrl(url)),
            "http" if loopback => Ok(EndpointUrl(url)),
            "http" => Err(format!(
                "`{text}` must use https:// (http:// is allowed only to a loopback address)"
            )),
            _ => Err(format!("`{text}` must be an https:// URL")),
        }
    }

    fn builtin(text: &str) -> EndpointUrl {
        // Built-in URLs are constants checked by a test; a failure here is a bug in this file.
        EndpointUrl::parse(text).unwrap_or_else(|e| panic!("built-in URL is invalid: {e}"))
    }

    /// The URL.
    pub fn url(&self) -> &url::Url {
        &self.0
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl<'de> Deserialize<'de> for EndpointUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        EndpointUrl::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// A DNS server: `IP` (port 53) or `IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Nameserver(SocketAddr);

impl<'de> Deserialize<'de> for Nameserver {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<SocketAddr>()
            .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map(Nameserver)
            .map_err(|_| de::Error::custom(format!("`{text}` is not an IP address or IP:PORT")))
    }
}

/// The config in force, shared by everyone who reads it. A reload replaces it whole; readers take
/// the `Arc` and let go at once (never held across `.await`), and tasks that must act on a change
/// (the metrics listener) wait for one with [`SharedConfig::changed`].
#[derive(Debug, Clone)]
pub struct SharedConfig {
    current: Arc<tokio::sync::watch::Sender<Arc<Config>>>,
}

impl SharedConfig {
    /// Shares `config`.
    pub fn new(config: Config) -> SharedConfig {
        SharedConfig { current: Arc::new(tokio::sync::watch::Sender::new(Arc::new(config))) }
    }

    /// The config in force now.
    pub fn get(&self) -> Arc<Config> {
        self.current.borrow().clone()
    }

    /// Puts `next` in force.
    pub fn replace(&self, next: Arc<Config>) {
        self.current.send_replace(next);
    }

    /// A receiver that is told of every replacement.
    pub fn changed(&self) -> tokio::sync::watch::Receiver<Arc<Config>> {
        self.current.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_env() -> Env {
        Env { is_root: true, ..Env::default() }
    }

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Some(Path::new("/etc/mslink/mslinkd.toml")), &root_env())
            .map_err(|e| e.to_string())
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("config should be rejected")
    }

    #[test]
    fn resources_add_their_exchange_online_scopes_to_sign_in() {
        let config = parse("[office365]\nresources = [\"imap\", \"smtp\", \"imap\"]\n").unwrap();
        let o = &config.office365;
        assert_eq!(o.resources, [TokenResource::Imap, TokenResource::Smtp]);
        assert_eq!(
            o.scopes_for(TokenResource::Imap).unwrap(),
            ["https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"]
        );
        assert_eq!(o.scopes_for(TokenResource::Graph).unwrap(), o.scopes);
        assert_eq!(o.scopes_for(TokenResource::Pop), None, "pop is not configured");
        assert_eq!(
            o.sign_in_scopes(),
            [
                "offline_access",
                "User.Read",
                "Mail.Read",
                "Calendars.Read",
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "https://outlook.office.com/SMTP.Send",
            ]
        );
        let china = parse("[office365]\ncloud = \"china\"\nresources = [\"pop\"]\n").unwrap();
        assert_eq!(
            china.office365.scopes_for(TokenResource::Pop).unwrap()[0],
            "https://partner.outlook.cn/POP.AccessAsUser.All"
        );
        assert!(parse("").unwrap().office365.resources.is_empty());
    }

    #[test]
    fn the_ews_permission_has_the_ews_hosts_audience() {
        let scopes = |cloud: &str| {
            let text =
                format!("[office365]\ncloud = \"{cloud}\"\nresources = [\"ews\", \"imap\"]\n");
            parse(&text).unwrap().office365.sign_in_scopes()[4..].to_vec()
        };
        assert_eq!(
            scopes("global"),
            [
                "https://outlook.office365.com/EWS.AccessAsUser.All",
                "https://outlook.office.com/IMAP.AccessAsUser.All",
            ]
        );
        let config = parse("[office365]\nresources = [\"ews\"]\n").unwrap();
        assert_eq!(
            config.office365.scopes_for(TokenResource::Ews).unwrap(),
            ["https://outlook.office365.com/EWS.AccessAsUser.All", "offline_access"]
        );
        assert_eq!(scopes("usgov")[0], "https://outlook.office365.us/EWS.AccessAsUser.All");
        assert_eq!(scopes("china")[0], "https://partner.outlook.cn/EWS.AccessAsUser.All");
    }

    #[test]
    fn an_unknown_or_graph_resource_is_rejected() {
        let err = error("[office365]\nresources = [\"imap\", \"jmap\"]\n");
        assert!(
            err.contains("office365.resources") && err.contains("unknown resource `jmap`"),
            "{err}"
        );
        let err = error("[office365]\nresources = [\"graph\"]\n");
        assert!(err.contains("`graph` is always available"), "{err}");
    }

    #[test]
    fn an_empty_file_gives_the_spec_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.socket, Path::new("/run/mslink/mslinkd.sock"));
        assert_eq!(config.state_dir, Path::new("/var/lib/mslink"));
        assert_eq!(config.key_file, Path::new("/var/lib/mslink/secret.key"));
        assert_eq!(config.admin_group, "mslink-admin");
        assert_eq!(config.schedule.check_interval, StdDuration::from_secs(900));
        assert_eq!(config.schedule.max_concurrent, 16);
        assert_eq!(config.office365.tenant, "organizations");
        assert_eq!(
            config.office365.token_url.as_str(),
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"
        );
        assert_eq!(config.exchange.auth, [ExchangeAuth::Ntlm, ExchangeAuth::Basic]);
        assert_eq!(config.detection.timeout, StdDuration::from_secs(8));
    }

    /// Each cloud's endpoints as Microsoft's national-cloud pages list them.
    #[test]
    fn each_cloud_derives_its_documented_endpoints() {
        #[rustfmt::skip]
        let documented = [
            ("global", "https://login.microsoftonline.com", "https://graph.microsoft.com/v1.0",
             "https://outlook.office365.com/autodiscover/autodiscover.json/v1.0"),
            ("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us/v1.0",
             "https://outlook.office365.us/autodiscover/autodiscover.json/v1.0"),
            ("usgov-dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us/v1.0",
             "https://outlook-dod.office365.us/autodiscover/autodiscover.json/v1.0"),
            ("china", "https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn/v1.0",
             "https://partner.outlook.cn/autodiscover/autodiscover.json/v1.0"),
        ];
        for (cloud, login, graph, v2) in documented {
            let config = parse(&format!("[office365]\ncloud = \"{cloud}\"\n")).unwrap();
            let o = &config.office365;
            assert_eq!(o.cloud.as_str(), cloud);
            assert_eq!(o.authority.as_str(), format!("{login}/organizations/v2.0"), "{cloud}");
            for (url, leaf) in [
                (&o.authorize_url, "authorize"),
                (&o.token_url, "token"),
                (&o.device_code_url, "devicecode"),
            ] {
                assert_eq!(url.as_str(), format!("{login}/organizations/oauth2/v2.0/{leaf}"));
            }
            assert_eq!(o.graph_url.as_str(), graph, "{cloud}");
            assert_eq!(
                config.detection.user_realm_url.as_str(),
                format!("{login}/getuserrealm.srf"),
                "{cloud}"
            );
            assert_eq!(config.detection.autodiscover_v2_url.as_str(), v2, "{cloud}");
        }
        assert_eq!(parse("").unwrap().office365.cloud, Cloud::Global);
        let err = error("[office365]\ncloud = \"germany\"\n");
        assert!(err.contains("line 2") && err.contains("usgov-dod"), "{err}");
    }

    #[test]
    fn the_authority_alone_moves_the_oauth_endpoints_and_explicit_keys_win() {
        let config = parse(
            "[office365]\ncloud = \"usgov\"\ntenant = \"contoso.us\"\n\
             authority = \"https://login.example.test/contoso/v2.0/\"\n\
             token_url = \"http://127.0.0.1:9000/token\"\n\
             graph_url = \"http://127.0.0.1:9001/v1.0\"\n",
        )
        .unwrap();
        let o = &config.office365;
        assert_eq!(
            o.authorize_url.as_str(),
            "https://login.example.test/contoso/oauth2/v2.0/authorize"
        );
        assert_eq!(
            o.device_code_url.as_str(),
            "https://login.example.test/contoso/oauth2/v2.0/devicecode"
        );
        assert_eq!(o.token_url.as_str(), "http://127.0.0.1:9000/token");
        assert_eq!(o.graph_url.as_str(), "http://127.0.0.1:9001/v1.0");
        // An authority without Entra's /v2.0 suffix: the endpoints go under it as it is.
        let plain = parse("[office365]\nauthority = \"http://127.0.0.1:9000/tenant\"\n").unwrap();
        assert_eq!(
            plain.office365.token_url.as_str(),
            "http://127.0.0.1:9000/tenant/oauth2/v2.0/token"
        );
    }

    #[test]
    fn systemd_directories_win_over_root_defaults() {
        let env = Env {
            is_root: true,
            runtime_directory: Some("/run/mslink-acme".into()),
            state_directory: Some("/var/lib/mslink-acme".into()),
            credentials_directory: Some("/run/credentials/mslinkd.service".into()),
            ..Env::default()
        };
        let config = Config::parse("", None, &env).unwrap();
        assert_eq!(config.socket, Path::new("/run/mslink-acme/mslinkd.sock"));
        assert_eq!(config.state_dir, Path::new("/var/lib/mslink-acme"));
        assert_eq!(config.key_file, Path::new("/run/credentials/mslinkd.service/mslink.key"));
    }

    #[test]
    fn a_plain_user_gets_xdg_directories() {
        let env = Env {
            xdg_runtime_dir: Some("/run/user/1000".into()),
            home: Some("/home/alice".into()),
            ..Env::default()
        };
        let config = Config::parse("", None, &env).unwrap();
        assert_eq!(config.socket, Path::new("/run/user/1000/mslink/mslinkd.sock"));
        assert_eq!(config.state_dir, Path::new("/home/alice/.local/state/mslink"));
    }

    #[test]
    fn a_missing_runtime_dir_names_the_key_to_set() {
        let err = Config::parse("", None, &Env::default()).unwrap_err().to_string();
        assert!(err.contains("`socket`"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let err = error("admin_group = \"ops\"\n\n[schedule]\ncheck_intervall = \"5m\"\n");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("check_intervall"), "{err}");
    }

    #[test]
    fn a_bad_duration_is_named_with_its_line() {
        let err = error("[schedule]\ncheck_interval = \"fortnightly\"\n");
        assert!(err.contains("line 2") && err.contains("fortnightly"), "{err}");
    }

    #[test]
    fn a_zero_duration_is_refused() {
        assert!(error("[detection]\ntimeout = \"0s\"\n").contains("longer than zero"));
    }

    #[test]
    fn plain_http_is_refused_except_to_loopback() {
        let err = error("[office365]\ntoken_url = \"http://login.example.com/token\"\n");
        assert!(err.contains("line 2") && err.contains("https://"), "{err}");
        let config = parse("[office365]\ntoken_url = \"http://127.0.0.1:9000/token\"\n").unwrap();
        assert_eq!(config.office365.token_url.as_str(), "http://127.0.0.1:9000/token");
        parse("[office365]\ngraph_url = \"http://localhost:9001/v1.0\"\n").unwrap();
    }

    #[test]
    fn retry_max_below_retry_min_names_retry_max() {
        let err = error("[schedule]\nretry_min = \"5m\"\nretry_max = \"1m\"\n");
        assert!(err.contains("line 3") && err.contains("schedule.retry_max"), "{err}");
    }

    #[test]
    fn max_concurrent_zero_is_refused() {
        assert!(error("[schedule]\nmax_concurrent = 0\n").contains("at least 1"));
    }

    #[test]
    fn both_client_secret_forms_are_refused() {
        let err = error(
            "[office365]\nclient_secret = \"s3cret\"\nclient_secret_file = \"/run/secret\"\n",
        );
        assert!(err.contains("not both") && !err.contains("s3cret"), "{err}");
    }

    #[test]
    fn the_client_secret_comes_from_the_systemd_credential_unless_the_config_names_one() {
        let env = Env {
            client_secret_credential: Some(
                "/run/credentials/mslinkd.service/mslink.client-secret".into(),
            ),
            ..root_env()
        };
        let config = Config::parse("", None, &env).unwrap();
        assert_eq!(
            config.office365.client_secret,
            Some(ClientSecret::File(
                "/run/credentials/mslinkd.service/mslink.client-secret".into()
            ))
        );
        let named =
            Config::parse("[office365]\nclient_secret_file = \"/etc/mslink/s\"\n", None, &env);
        assert_eq!(
            named.unwrap().office365.client_secret,
            Some(ClientSecret::File("/etc/mslink/s".into()))
        );
        assert_eq!(parse("").unwrap().office365.client_secret, None);
    }

    #[test]
    fn without_store_url_the_store_is_sqlite() {
        assert_eq!(parse("").unwrap().store, StoreBackend::Sqlite);
    }

    fn pg(text: &str, env: &Env) -> PgConfig {
        match Config::parse(text, None, env).unwrap().store {
            StoreBackend::Postgres(pg) => *pg,
            StoreBackend::Sqlite => panic!("expected PostgreSQL"),
        }
    }

    #[test]
    fn a_store_url_names_user_host_and_database() {
        let pg = pg(
            "[store]\nurl = \"postgresql://mslink@db.example.com:6432/org1\"\n\
             password_file = \"/etc/mslink/store-password\"\n",
            &root_env(),
        );
        assert_eq!(pg.connection.get_user(), Some("mslink"));
        assert_eq!(pg.connection.get_dbname(), Some("org1"));
        assert_eq!(pg.connection.get_ports(), [6432]);
        assert_eq!(pg.password_file, Some(PathBuf::from("/etc/mslink/store-password")));
        assert_eq!(pg.connection.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
    }

    #[test]
    fn a_store_url_may_name_a_primary_and_its_replica_and_want_the_writable_one() {
        let pg = pg(
            "[store]\nurl = \"postgresql://mslink@db1,db2/org1?target_session_attrs=read-write\"\n",
            &root_env(),
        );
        assert_eq!(pg.connection.get_hosts().len(), 2);
        assert_eq!(
            pg.connection.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        assert_eq!(pg.lease, PgConfig::DEFAULT_LEASE);
    }

    #[test]
    fn a_store_lease_is_at_least_five_seconds_and_only_for_a_store_url() {
        let at = "[store]\nurl = \"postgresql://u@db/org1\"\n";
        assert_eq!(pg(&format!("{at}lease = \"30s\"\n"), &root_env()).lease.as_secs(), 30);
        let err = error(&format!("{at}lease = \"2s\"\n"));
        assert!(err.contains("store.lease") && err.contains("shorter than 5s"), "{err}");
        let err = error("[store]\nlease = \"30s\"\n");
        assert!(err.contains("store.lease") && err.contains("without `[store] url`"), "{err}");
    }

    #[test]
    fn a_password_in_the_store_url_is_refused_without_echoing_it() {
        let err = error("[store]\nurl = \"postgresql://mslink:hunter2@db/org1\"\n");
        assert!(err.contains("line 2") && err.contains("store.url"), "{err}");
        assert!(err.contains("password_file") && !err.contains("hunter2"), "{err}");
        let err = error("[store]\nurl = \"postgresql://db/org1?user=mslink&password=hunter2\"\n");
        assert!(err.contains("password_file") && !err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_store_url_must_be_a_postgresql_url_naming_user_and_database() {
        let err = error("[store]\nurl = \"host=db user=mslink dbname=org1\"\n");
        assert!(err.contains("store.url") && err.contains("postgresql://USER@HOST"), "{err}");
        assert!(error("[store]\nurl = \"postgresql://db/org1\"\n").contains("names no user"));
        assert!(error("[store]\nurl = \"postgresql://u@db\"\n").contains("names no database"));
        let err = error("[store]\nurl = \"postgresql://u@db/org1?sslmode=sometimes\"\n");
        assert!(err.contains("not a valid PostgreSQL URL"), "{err}");
    }

    #[test]
    fn a_store_ca_file_means_verified_tls() {
        let pg = pg(
            "[store]\nurl = \"postgresql://u@db/org1\"\nca_file = \"/etc/mslink/pg-ca.pem\"\n",
            &root_env(),
        );
        assert_eq!(pg.connection.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(pg.ca_file, Some(PathBuf::from("/etc/mslink/pg-ca.pem")));
        let err = error(
            "[store]\nurl = \"postgresql://u@db/org1?sslmode=disable\"\nca_file = \"/ca.pem\"\n",
        );
        assert!(err.contains("sslmode=disable") && err.contains("ca_file"), "{err}");
        let err = error("[store]\nurl = \"postgresql://u@db/org1?sslmode=require\"\n");
        assert!(err.contains("set `[store] ca_file`"), "{err}");
    }

    #[test]
    fn store_files_without_a_store_url_are_refused() {
        let err = error("[store]\npassword_file = \"/etc/mslink/store-password\"\n");
        assert!(err.contains("line 2") && err.contains("store.password_file"), "{err}");
        assert!(err.contains("without `[store] url`"), "{err}");
        assert!(error("[store]\nca_file = \"/ca.pem\"\n").contains("store.ca_file"));
    }

    #[test]
    fn the_store_password_comes_from_the_systemd_credential_unless_the_config_names_one() {
        let credential = PathBuf::from("/run/credentials/mslinkd.service/mslink.store-password");
        let env = Env { store_password_credential: Some(credential.clone()), ..root_env() };
        let url = "[store]\nurl = \"postgresql://u@db/org1\"\n";
        assert_eq!(pg(url, &env).password_file, Some(credential));
        let named = format!("{url}password_file = \"/etc/mslink/pw\"\n");
        assert_eq!(pg(&named, &env).password_file, Some(PathBuf::from("/etc/mslink/pw")));
        assert_eq!(pg(url, &root_env()).password_file, None);
    }

    #[test]
    fn changing_the_store_needs_a_restart() {
        let before = parse("").unwrap();
        let after = parse("[store]\nurl = \"postgresql://u@db/org1\"\n").unwrap();
        assert_eq!(before.needs_restart_for(&after), Some("store"));
    }

    #[test]
    fn check_config_warns_when_others_can_read_an_inline_client_secret() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mslinkd.toml");
        std::fs::write(&path, "[office365]\nclient_secret = \"s3cret\"\n").unwrap();
        let warnings = |mode| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            Config::load(&path, true, &root_env()).unwrap().warnings()
        };
        let open = warnings(0o644);
        assert_eq!(open.len(), 1, "{open:?}");
        assert!(
            open[0].contains("client_secret_file")
                && open[0].contains("0644")
                && open[0].contains(CLIENT_SECRET_CREDENTIAL)
                && !open[0].contains("s3cret"),
            "{}",
            open[0]
        );
        assert!(warnings(0o640)[0].contains("readable by its group"));
        assert_eq!(warnings(0o600), Vec::<String>::new());
        // A config that only names the secret's file holds nothing secret.
        std::fs::write(&path, "[office365]\nclient_secret_file = \"/etc/mslink/s\"\n").unwrap();
        assert_eq!(warnings(0o644), Vec::<String>::new());
    }

    #[test]
    fn scopes_without_offline_access_are_refused() {
        let err = error("[office365]\nscopes = [\"User.Read\", \"Mail.Read\"]\n");
        assert!(err.contains("line 2") && err.contains("offline_access"), "{err}");
        assert!(error("[office365]\nscopes = []\n").contains("offline_access"));
    }

    #[test]
    fn the_prompt_is_none_by_default_and_checked() {
        assert_eq!(parse("").unwrap().office365.prompt, None);
        let config = parse("[office365]\nprompt = \"consent\"\n").unwrap();
        assert_eq!(config.office365.prompt, Some(Prompt::Consent));
        assert_eq!(
            parse("[office365]\nprompt = \"select_account\"\n").unwrap().office365.prompt,
            Some(Prompt::SelectAccount)
        );
        // `none` forbids the interactive sign-in that `connect` is.
        let err = error("[office365]\nprompt = \"none\"\n");
        assert!(err.contains("line 2") && err.contains("consent"), "{err}");
    }

    #[test]
    fn the_client_secret_never_reaches_debug_output() {
        let config = parse("[office365]\nclient_secret = \"s3cret\"\n").unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn an_unknown_exchange_auth_scheme_is_refused() {
        let err = error("[exchange]\nauth = [\"digest\"]\n");
        assert!(err.contains("line 2") && err.contains("digest"), "{err}");
        assert!(error("[exchange]\nauth = []\n").contains("at least one"));
        let oauth = error("[exchange]\nauth = [\"oauth\", \"ntlm\"]\n");
        assert!(oauth.contains("line 2") && oauth.contains("leave out \"oauth\""), "{oauth}");
    }

    #[test]
    fn kerberos_takes_a_realm_and_its_kdcs() {
        let config = parse(
            "[exchange]\nauth = [\"kerberos\", \"ntlm\"]\nrealm = \"ad.contoso.test\"\n\
             kdc = [\"dc1.ad.contoso.test\", \"127.0.0.1:8888\"]\n",
        )
        .unwrap();
        assert_eq!(config.exchange.auth, [ExchangeAuth::Kerberos, ExchangeAuth::Ntlm]);
        assert_eq!(config.exchange.realm.as_deref(), Some("AD.CONTOSO.TEST"));
        assert_eq!(config.exchange.kdc, ["dc1.ad.contoso.test", "127.0.0.1:8888"]);
    }

    #[test]
    fn nameservers_take_an_optional_port() {
        let config = parse("[network]\nnameservers = [\"127.0.0.1:5353\", \"::1\"]\n").unwrap();
        assert_eq!(config.network.nameservers[0], "127.0.0.1:5353".parse().unwrap());
        assert_eq!(config.network.nameservers[1], "[::1]:53".parse().unwrap());
        assert!(error("[network]\nnameservers = [\"dns.example\"]\n").contains("dns.example"));
    }

    #[test]
    fn resolve_overrides_map_hosts_to_addresses() {
        let config = parse("[network.resolve]\n\"mail.example.test\" = \"127.0.0.1\"\n").unwrap();
        assert_eq!(config.network.resolve["mail.example.test"], IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn the_redirect_listener_must_be_loopback() {
        assert!(error("[office365]\nredirect_listen = \"0.0.0.0:8080\"\n").contains("loopback"));
    }

    #[test]
    fn an_empty_hook_is_refused() {
        assert!(error("[hooks]\non_state_change = \"  \"\n").contains("hooks.on_state_change"));
    }

    #[test]
    fn a_named_config_file_must_exist_but_the_default_may_not() {
        let missing = Path::new("/nonexistent/mslinkd.toml");
        assert!(Config::load(missing, true, &root_env()).is_err());
        let config = Config::load(missing, false, &root_env()).unwrap();
        assert_eq!(config.source, None);
    }
}
