//! On-premises Exchange through EWS: Autodiscover, authentication (Kerberos, NTLM, Basic, and
//! Entra ID tokens for hybrid modern authentication) and checks.
//!
//! ```text
//!   link:  --server URL/host ─┐
//!          Autodiscover ──────┴─▶ EWS URL ─▶ GetFolder(inbox, calendar) with auth ─▶ ExchangeEndpoint
//!            (--username not the address: the folders name the address's mailbox, as a delegate)
//!   check: ExchangeEndpoint + stored password (or token) ─▶ GetFolder with the recorded scheme ─▶ CheckReport
//!   hybrid modern auth: a server asking for Entra ID tokens ─▶ ModernAuth { resource } ─▶ the
//!          caller signs in for `oauth_scopes(resource)` and links again with the token
//!   (at every endpoint: no credentials until it challenges; the scheme from its own offers)
//!   (Autodiscover: a host outside the address's domain that only the plain-HTTP redirect or SRV
//!    leads to is not contacted unless --trust-server names it or the user confirms it)
//!   errors: ExchangeError ─failure()─▶ degraded / needs_reauth / blocked (SPEC §4)
//!                         ─wire_error()─▶ what `connect` prints (exit 7 for rejected credentials)
//! ```
//!
//! `autodiscover` and `ews` are pure parsers over the bounded tree builder in `xml`; `client`
//! does authenticated HTTP (NTLM via `ntlm`, Basic); `discover` walks the Autodiscover candidates.

pub mod autodiscover;
pub mod client;
pub mod discover;
pub mod ews;
pub mod kerberos;
pub mod keytab;
pub mod ntlm;
pub mod xml;

use std::time::Duration;

use mslink_proto::Sensitive;
use url::Url;

use crate::config::{Config, ExchangeAuth};
use crate::health::{Actor, CheckReport, Failure};
use crate::interaction::Interaction;
use crate::net::{self, HttpOptions};
pub use client::Secret;
use client::{Credentials, Session, host_of, is_loopback};
use ews::{DistinguishedFolder, EwsXmlError};

/// The schema version asked for first: understood by Exchange 2010 SP2 and every later version.
/// Older servers refuse it (`ErrorInvalidServerVersion`) and are asked again in an older one.
pub const REQUEST_SERVER_VERSION: &str = "Exchange2010_SP2";

fn default_request_server_version() -> String {
    REQUEST_SERVER_VERSION.to_owned()
}

/// Whole-request timeout for EWS and Autodiscover requests.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Non-secret facts stored with an Exchange link (as the link's details JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExchangeEndpoint {
    pub ews_url: String,
    pub auth: ExchangeAuth,
    pub username: String,
    pub server_version: Option<String>,
    /// The mailbox that was linked, when `username` signs in to someone else's (a delegate):
    /// every GetFolder names it, so checks read that mailbox and not the username's own. `None`:
    /// the username's own mailbox, which is also what links stored before this field meant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
    /// The `RequestServerVersion` the server accepted at connect, so checks of an Exchange
    /// 2007/2010 server need no refused first try. Links stored before this field: the default.
    #[serde(default = "default_request_server_version")]
    pub request_server_version: String,
}

/// What the user typed at `connect`.
pub struct Login<'a> {
    pub email: &'a str,
    /// `DOMAIN\user` or a UPN; `None`: the email.
    pub username: Option<&'a str>,
    /// The password, Entra ID tokens, or nothing yet (to find out what the server takes).
    pub secret: Secret<'a>,
    /// `--server`: a host name (`mail.example.com`) or a full EWS URL.
    pub server: Option<&'a str>,
    /// `--trust-server` and whether the user can be asked: for Autodiscover hops out of the
    /// address's domain.
    pub trust: discover::Trust<'a>,
}

impl std::fmt::Debug for Login<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("email", &self.email)
            .field("username", &self.username)
            .field("server", &self.server)
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

/// Why linking or checking an Exchange mailbox failed. No variant carries a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExchangeError {
    #[error("`{value}` is not a usable Exchange server: {why}")]
    InvalidServer { value: String, why: String },
    #[error("`{email}` is not an e-mail address")]
    InvalidAddress { email: String },
    #[error("refusing to send credentials to {url}: only https:// is allowed")]
    InsecureUrl { url: String },
    #[error("{detail}")]
    Config { detail: String },
    #[error("cannot verify the TLS certificate of {server}")]
    Certificate { server: String },
    #[error("{server} did not answer in time")]
    Timeout { server: String },
    #[error("cannot reach {server}: {detail}")]
    Network { server: String, detail: String },
    #[error("{server} answered HTTP {status}")]
    Http { server: String, status: u16, retry_after: Option<Duration> },
    #[error("{server} rejected the credentials of {username} ({})", scheme.as_str())]
    Rejected { server: String, username: String, scheme: ExchangeAuth },
    #[error(
        "{server} offers {} but `[exchange] auth` allows {}{}",
        if offered.is_empty() { "no authentication scheme".to_owned() } else { offered.join(", ") },
        allowed.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "),
        if *https { "" } else { " (basic only over https)" }
    )]
    NoSuitableAuth { server: String, offered: Vec<String>, allowed: Vec<ExchangeAuth>, https: bool },
    #[error("NTLM sign-in to {server} failed: {detail}")]
    Ntlm { server: String, detail: String },
    /// The server asks for an Entra ID token for `resource` (its origin) that the session does
    /// not hold: hybrid modern authentication. At connect, the link service signs in for it.
    #[error(
        "{server} takes OAuth tokens from Entra ID ({authorization_uri}) for {resource}: hybrid \
         modern authentication"
    )]
    ModernAuth { server: String, resource: String, authorization_uri: String },
    /// A keytab's key signs in by Kerberos only, and the server (or `[exchange] auth`) does not
    /// take it.
    #[error(
        "a keytab signs in by Kerberos only, and {}",
        if *allowed { format!("{server} does not offer it (it offers {})", offered.join(", ")) }
        else { "`[exchange] auth` does not allow \"kerberos\"".to_owned() }
    )]
    KeytabNeedsKerberos { server: String, offered: Vec<String>, allowed: bool },
    /// The server asks for a password, and none was given.
    #[error("{server} asks for the mailbox password")]
    PasswordNeeded { server: String },
    #[error("Kerberos sign-in to {server} failed: {error}")]
    Kerberos { server: String, error: kerberos::KerberosError },
    #[error("unexpected answer from {server}: {detail}")]
    Protocol { server: String, detail: String },
    #[error("EWS error {code}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Ews { server: String, code: String, message: String, back_off: Option<Duration> },
    #[error("Autodiscover found no EWS URL for {domain} (tried: {})", tried.join("; "))]
    NotDiscovered { domain: String, tried: Vec<String> },
    #[error("Autodiscover for {domain} redirected more than {} times", discover::MAX_REDIRECTS)]
    TooManyRedirects { domain: String },
    /// The mailbox was named (delegate access) and the server refused `username` its folders.
    #[error(
        "{username} may not open the mailbox {mailbox} (EWS {code}): its owner has not given \
         {username} delegate access to the inbox"
    )]
    MailboxAccessDenied { server: String, username: String, mailbox: String, code: String },
    /// The mailbox was named (delegate access) and the server knows no mailbox by that address.
    #[error("{server} has no mailbox {mailbox} (EWS {code})")]
    NoSuchMailbox { server: String, mailbox: String, code: String },
    /// The server refused the EWS schema version even after the fallback.
    #[error("{server} refused the EWS schema version {requested} (EWS ErrorInvalidServerVersion)")]
    ServerVersionRefused {
        server: String,
        requested: String,
        /// The version the server named in the fault, if it named one.
        offered: Option<&'static str>,
    },
    /// Autodiscover left the address's domain only through an unauthenticated hop, and neither
    /// `--trust-server` nor the user (`asked`: they said no) vouched for the host. Nothing was
    /// sent to it.
    #[error(
        "{}: Autodiscover for {domain} was sent to {host}, outside {domain}, by {}, which is not \
         authenticated; nothing was sent to {host}",
        if *asked { format!("{host} was not confirmed") } else { format!("{host} needs your confirmation") },
        hop.describe(domain)
    )]
    Unvouched { email: String, domain: String, host: String, hop: discover::Hop, asked: bool },
    #[error("{email} is an Exchange Online (Office365) mailbox")]
    ExchangeOnline { email: String },
    #[error("cancelled")]
    Cancelled,
    #[error("internal error: {detail}")]
    Internal { detail: String },
}

pub(crate) const CA_HINT: &str = "if the server uses an internal CA, add that CA certificate to `[network] ca_file` in mslinkd.toml and run `mslinkctl reload`";

impl ExchangeError {
    /// What a background check records (SPEC §4).
    pub fn failure(&self) -> Failure {
        let reason = self.to_string();
        match self {
            ExchangeError::Rejected { .. } => Failure::reauth(reason),
            ExchangeError::Kerberos { error, .. } => {
                use kerberos::KerberosError as K;
                match error {
                    K::WrongPassword { .. } | K::WrongKey { .. } => Failure::reauth(reason),
                    K::KdcUnreachable { .. } => Failure::transient(reason),
                    K::UnknownPrincipal { .. } | K::Username(_) => {
                        Failure::blocked(reason, Actor::User)
                    }
                    // The mslink host's clock: whoever runs it.
                    K::ClockSkew { .. } => Failure::blocked(reason, Actor::Operator),
                    K::NoServicePrincipal { .. } | K::MutualAuth(_) | K::Other(_) => {
                        Failure::blocked(reason, Actor::TenantAdmin)
                    }
                }
            }
            ExchangeError::Timeout { .. }
            | ExchangeError::Network { .. }
            | ExchangeError::Protocol { .. }
            | ExchangeError::Cancelled => Failure::transient(reason),
            ExchangeError::Http { status, retry_after, .. } => {
                if *status >= 500 || *status == 408 || *status == 429 {
                    Failure::transient(reason).retry_after(*retry_after)
                } else {
                    Failure::blocked(reason, Actor::TenantAdmin)
                }
            }
            ExchangeError::Certificate { .. } => {
                Failure::blocked(format!("{reason}; {CA_HINT}"), Actor::Operator)
            }
            ExchangeError::Ews { code, back_off, .. } => match ews::classify(code) {
                ews::ErrorClass::Transient => Failure::transient(reason).retry_after(*back_off),
                ews::ErrorClass::Reauth => Failure::reauth(reason),
                ews::ErrorClass::Blocked => Failure::blocked(reason, Actor::TenantAdmin),
                ews::ErrorClass::Other => Failure::blocked(reason, Actor::Operator),
            },
            // A password link whose server now takes only Entra ID: signing in again links it so.
            ExchangeError::ModernAuth { .. } | ExchangeError::PasswordNeeded { .. } => {
                Failure::blocked(format!("{reason}; connect again"), Actor::User)
            }
            ExchangeError::NoSuitableAuth { .. }
            | ExchangeError::KeytabNeedsKerberos { .. }
            | ExchangeError::ServerVersionRefused { .. }
            | ExchangeError::Config { .. }
            | ExchangeError::Internal { .. } => Failure::blocked(reason, Actor::Operator),
            ExchangeError::Ntlm { .. } | ExchangeError::TooManyRedirects { .. } => {
                Failure::blocked(reason, Actor::TenantAdmin)
            }
            // Delegate access is granted by the mailbox's owner (Outlook's Delegate Access, or an
            // admin on their behalf): the user has to ask for it.
            ExchangeError::MailboxAccessDenied { .. }
            | ExchangeError::NoSuchMailbox { .. }
            | ExchangeError::InvalidServer { .. }
            | ExchangeError::InvalidAddress { .. }
            | ExchangeError::InsecureUrl { .. }
            | ExchangeError::NotDiscovered { .. }
            | ExchangeError::Unvouched { .. }
            | ExchangeError::ExchangeOnline { .. } => Failure::blocked(reason, Actor::User),
        }
    }

    /// For a Kerberos failure: whether it is about this host (its service principal, its
    /// answer) rather than the login or the realm, so another host may still succeed.
    pub fn is_about_the_host(&self) -> bool {
        use kerberos::KerberosError as K;
        match self {
            ExchangeError::Kerberos { error, .. } => {
                matches!(error, K::NoServicePrincipal { .. } | K::MutualAuth(_) | K::Other(_))
            }
            _ => true,
        }
    }

    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        self.failure().is_transient()
    }
}

/// The resource (audience) an Entra ID token for `url`'s server has: its origin,
/// `https://mail.contoso.com`. Hybrid modern authentication registers each on-premises host so.
pub fn resource_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// What a token for on-premises EWS at `resource` is asked for: its EWS permission (Microsoft:
/// "Authenticate an EWS application by using OAuth"), and a refresh token.
pub fn oauth_scopes(resource: &str) -> Vec<String> {
    vec![format!("{resource}/EWS.AccessAsUser.All"), "offline_access".to_owned()]
}

/// The EWS URL named by `--server`: a host (`mail.example.com`, maybe with `:port`) or a full URL.
/// Only https, or http to a loopback address.
pub fn server_url(server: &str) -> Result<Url, ExchangeError> {
    let invalid =
        |why: &str| ExchangeError::InvalidServer { value: server.to_owned(), why: why.to_owned() };
    let text = server.trim();
    let url = if text.contains("://") {
        Url::parse(text).map_err(|e| invalid(&e.to_string()))?
    } else {
        if text.is_empty() || text.contains(['/', '?', '#', '@', ' ']) {
            return Err(invalid("give a host name like mail.example.com or a full https:// URL"));
        }
        Url::parse(&format!("https://{text}/EWS/Exchange.asmx"))
            .map_err(|e| invalid(&e.to_string()))?
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(invalid("EWS needs https:// (the password must not travel in clear text)")),
        _ => Err(invalid("use an https:// URL")),
    }
}

fn client(config: &Config) -> Result<reqwest::Client, ExchangeError> {
    client_within(config, REQUEST_TIMEOUT)
}

fn client_within(config: &Config, timeout: Duration) -> Result<reqwest::Client, ExchangeError> {
    net::client(&config.network, HttpOptions { timeout, connection_oriented_auth: true })
        .map_err(|e| ExchangeError::Config { detail: e.to_string() })
}

/// connect: find the EWS URL (--server or Autodiscover), authenticate, first check.
#[tracing::instrument(skip_all, fields(email = %login.email))]
pub async fn link(
    config: &Config,
    login: Login<'_>,
    interaction: &mut Interaction,
) -> Result<(ExchangeEndpoint, CheckReport), ExchangeError> {
    let cancel = interaction.cancel_token();
    tokio::select! {
        () = cancel.cancelled() => Err(ExchangeError::Cancelled),
        result = link_inner(config, login, interaction) => result,
    }
}

async fn link_inner(
    config: &Config,
    login: Login<'_>,
    interaction: &mut Interaction,
) -> Result<(ExchangeEndpoint, CheckReport), ExchangeError> {
    let username = login.username.map(str::trim).filter(|u| !u.is_empty()).unwrap_or(login.email);
    let explicit = login.server.map(server_url).transpose()?;
    let credentials = Credentials { username, secret: login.secret };
    let kerberos = kerberos::Setup::of(config, REQUEST_TIMEOUT);
    let mut session =
        Session::new(client(config)?, credentials, config.exchange.auth.clone(), kerberos);
    // The address whose mailbox is linked: Autodiscover's answer may name it differently
    // (redirectAddr), and that is the name the server knows it by.
    let (ews_url, address) = match explicit {
        Some(url) => (url, login.email.to_owned()),
        None => {
            let domain = discover::domain_of(login.email)
                .ok_or_else(|| ExchangeError::InvalidAddress { email: login.email.to_owned() })?;
            interaction.step(format!("Looking up the Exchange server for {domain}")).await;
            let found =
                discover::discover(config, &mut session, login.email, login.trust, interaction)
                    .await?;
            (found.ews_url, found.email)
        }
    };
    // A login other than the address may be a delegate of that mailbox: name it, or the server
    // answers with the login's own mailbox.
    let mailbox = (!username.eq_ignore_ascii_case(login.email)).then_some(address);
    interaction.step(format!("Checking the mailbox through EWS at {}", host_of(&ews_url))).await;
    let target = FolderTarget { username, mailbox: mailbox.as_deref() };
    let (report, request_server_version) =
        get_folders(&mut session, &ews_url, &target, REQUEST_SERVER_VERSION).await?;
    let auth = session.scheme_at(&ews_url).ok_or_else(|| ExchangeError::Internal {
        detail: "EWS answered without authentication".into(),
    })?;
    tracing::info!(ews_url = %ews_url, auth = auth.as_str(), "Exchange mailbox linked");
    let endpoint = ExchangeEndpoint {
        ews_url: ews_url.to_string(),
        auth,
        username: username.to_owned(),
        server_version: report.server_version.clone(),
        mailbox,
        request_server_version,
    };
    Ok((endpoint, report))
}

/// background check with the stored password.
#[tracing::instrument(skip_all, fields(ews_url = %endpoint.ews_url))]
pub async fn check(
    config: &Config,
    endpoint: &ExchangeEndpoint,
    password: &Sensitive,
) -> Result<CheckReport, ExchangeError> {
    check_within(config, endpoint, Secret::Password(password), REQUEST_TIMEOUT).await
}

/// [`check`] with the link's `secret` (its password, or its token for the EWS origin), each
/// request bounded by `timeout` (shorter for a server that has been hanging).
pub async fn check_within(
    config: &Config,
    endpoint: &ExchangeEndpoint,
    secret: Secret<'_>,
    timeout: Duration,
) -> Result<CheckReport, ExchangeError> {
    let url = server_url(&endpoint.ews_url)?;
    let credentials = Credentials { username: &endpoint.username, secret };
    // Only the recorded scheme, and only once the server has challenged for it: the first request
    // goes without credentials, as at connect.
    let mut session = Session::new(
        client_within(config, timeout)?,
        credentials,
        vec![endpoint.auth],
        kerberos::Setup::of(config, timeout),
    );
    let target =
        FolderTarget { username: &endpoint.username, mailbox: endpoint.mailbox.as_deref() };
    let (report, _) =
        get_folders(&mut session, &url, &target, &endpoint.request_server_version).await?;
    Ok(report)
}

/// Whose folders a check reads.
struct FolderTarget<'a> {
    /// Who signs in, for messages.
    username: &'a str,
    /// The mailbox named in the request (delegate access); `None`: the signed-in user's own.
    mailbox: Option<&'a str>,
}

impl FolderTarget<'_> {
    /// The error for a failed inbox message: a refused or unknown named mailbox gets a reason of
    /// its own. A delegate without rights sees `ErrorAccessDenied`, or `ErrorFolderNotFound`
    /// ("Handling delegation-related errors in EWS", Microsoft Learn).
    fn inbox_error(&self, server: String, error: ews::ResponseError) -> ExchangeError {
        match (self.mailbox, error.response_code.as_str()) {
            (Some(mailbox), "ErrorAccessDenied" | "ErrorFolderNotFound") => {
                ExchangeError::MailboxAccessDenied {
                    server,
                    username: self.username.to_owned(),
                    mailbox: mailbox.to_owned(),
                    code: error.response_code,
                }
            }
            (Some(mailbox), "ErrorNonExistentMailbox") => ExchangeError::NoSuchMailbox {
                server,
                mailbox: mailbox.to_owned(),
                code: error.response_code,
            },
            _ => response_error(server, error),
        }
    }
}

fn response_error(server: String, error: ews::ResponseError) -> ExchangeError {
    ExchangeError::Ews {
        server,
        code: error.response_code,
        message: error.message_text,
        back_off: error.back_off_ms.map(Duration::from_millis),
    }
}

/// EWS GetFolder for inbox and calendar of `target`'s mailbox in schema `version`. A server
/// that refuses the schema (Exchange 2007, 2010 RTM and SP1 know no newer names than their own)
/// is asked once more: in the version its fault names, else in the oldest versioned schema.
/// Returns the report and the version that was accepted.
async fn get_folders(
    session: &mut Session<'_>,
    url: &Url,
    target: &FolderTarget<'_>,
    version: &str,
) -> Result<(CheckReport, String), ExchangeError> {
    match get_folders_in(session, url, target, version).await {
        Err(ExchangeError::ServerVersionRefused { offered, .. })
            if offered.unwrap_or(ews::OLDEST_REQUEST_SERVER_VERSION) != version =>
        {
            let fallback = offered.unwrap_or(ews::OLDEST_REQUEST_SERVER_VERSION);
            tracing::info!(server = %host_of(url), refused = version, fallback, "EWS schema fallback");
            let report = get_folders_in(session, url, target, fallback).await?;
            Ok((report, fallback.to_owned()))
        }
        result => result.map(|report| (report, version.to_owned())),
    }
}

/// One GetFolder for inbox and calendar in schema `version`.
async fn get_folders_in(
    session: &mut Session<'_>,
    url: &Url,
    target: &FolderTarget<'_>,
    version: &str,
) -> Result<CheckReport, ExchangeError> {
    let server = host_of(url);
    let body = ews::get_folder_request_for_mailbox(
        &[DistinguishedFolder::Inbox, DistinguishedFolder::Calendar],
        version,
        target.mailbox,
    );
    let reply = session.post_xml(url, &body).await?;
    let is_xml = reply
        .headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("xml"));
    let soap_fault = reply.status.as_u16() == 500 && is_xml;
    if !(reply.status.is_success() || soap_fault) {
        return Err(ExchangeError::Http {
            server,
            status: reply.status.as_u16(),
            retry_after: reply.retry_after(),
        });
    }
    let response = match ews::parse_get_folder_response(&reply.body) {
        Ok(response) => response,
        Err(EwsXmlError::Fault(fault)) if fault.response_code == "ErrorInvalidServerVersion" => {
            return Err(ExchangeError::ServerVersionRefused {
                server,
                requested: version.to_owned(),
                offered: fault.server_version.as_ref().and_then(|v| v.request_server_version()),
            });
        }
        Err(EwsXmlError::Fault(fault)) => {
            return Err(ExchangeError::Ews {
                server,
                code: fault.response_code,
                message: fault.message.unwrap_or(fault.fault_string),
                back_off: fault.back_off_ms.map(Duration::from_millis),
            });
        }
        Err(e) => return Err(ExchangeError::Protocol { server, detail: e.to_string() }),
    };
    let mut messages = response.messages.into_iter();
    let inbox = match messages.next() {
        Some(Ok(folder)) => folder,
        Some(Err(error)) => return Err(target.inbox_error(server, error)),
        None => {
            return Err(ExchangeError::Protocol {
                server,
                detail: "GetFolder returned no folders".into(),
            });
        }
    };
    let calendar_ok = match messages.next() {
        Some(Ok(_)) => true,
        Some(Err(error)) if error.error_class() == ews::ErrorClass::Transient => {
            return Err(response_error(server, error));
        }
        Some(Err(error)) => {
            tracing::warn!(server = %server, code = %error.response_code, "calendar not reachable");
            false
        }
        None => false,
    };
    Ok(CheckReport {
        inbox_total: inbox.total_count,
        inbox_unread: inbox.unread_count,
        calendar_ok,
        server_version: response.server_version.map(|v| match v.version {
            Some(schema) => format!(
                "{}.{}.{}.{} ({})",
                v.major,
                v.minor,
                v.major_build,
                v.minor_build,
                crate::text::clean(&schema, 64)
            ),
            None => format!("{}.{}.{}.{}", v.major, v.minor, v.major_build, v.minor_build),
        }),
    })
}

#[cfg(test)]
mod tests {
    use mslink_proto::ErrorKind;

    use super::*;

    #[test]
    fn a_host_means_the_standard_ews_path() {
        assert_eq!(
            server_url("mail.example.com").unwrap().as_str(),
            "https://mail.example.com/EWS/Exchange.asmx"
        );
        assert_eq!(
            server_url("mail.example.com:8443").unwrap().as_str(),
            "https://mail.example.com:8443/EWS/Exchange.asmx"
        );
        assert_eq!(
            server_url("https://ews.example.com/custom/ews.asmx").unwrap().as_str(),
            "https://ews.example.com/custom/ews.asmx"
        );
    }

    #[test]
    fn plain_http_is_refused_except_to_loopback() {
        assert!(matches!(
            server_url("http://mail.example.com/EWS/Exchange.asmx"),
            Err(ExchangeError::InvalidServer { .. })
        ));
        assert!(server_url("http://127.0.0.1:8080/EWS/Exchange.asmx").is_ok());
        assert!(server_url("ftp://mail.example.com").is_err());
        assert!(server_url("mail.example.com/ews").is_err());
    }

    #[test]
    fn failures_map_to_link_states() {
        use mslink_proto::LinkState;
        let rejected = ExchangeError::Rejected {
            server: "m".into(),
            username: "u".into(),
            scheme: ExchangeAuth::Ntlm,
        };
        assert_eq!(rejected.failure().state, LinkState::NeedsReauth);
        assert_eq!(rejected.wire_error().kind, ErrorKind::AuthRejected);
        let busy = ExchangeError::Ews {
            server: "m".into(),
            code: "ErrorServerBusy".into(),
            message: String::new(),
            back_off: Some(Duration::from_millis(1500)),
        };
        assert_eq!(busy.failure().state, LinkState::Degraded);
        assert_eq!(busy.failure().retry_after, Some(Duration::from_millis(1500)));
        let gone = ExchangeError::Ews {
            server: "m".into(),
            code: "ErrorNonExistentMailbox".into(),
            message: String::new(),
            back_off: None,
        };
        assert_eq!(gone.failure().state, LinkState::Blocked);
        assert!(gone.failure().reason.contains("ErrorNonExistentMailbox"));
        let cert = ExchangeError::Certificate { server: "mail.x".into() };
        assert_eq!(cert.failure().actor, Actor::Operator);
        assert!(cert.wire_error().hint.unwrap().contains("[network] ca_file"));
        let unavailable = ExchangeError::Http {
            server: "m".into(),
            status: 503,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert!(unavailable.is_transient());
        assert_eq!(unavailable.failure().retry_after, Some(Duration::from_secs(7)));
    }

    #[test]
    fn a_refused_delegate_is_blocked_until_the_owner_acts() {
        use mslink_proto::LinkState;
        let denied = ExchangeError::MailboxAccessDenied {
            server: "m".into(),
            username: "EXAMPLE\\bob".into(),
            mailbox: "alice@example.com".into(),
            code: "ErrorAccessDenied".into(),
        };
        let failure = denied.failure();
        assert_eq!((failure.state, failure.actor), (LinkState::Blocked, Actor::User));
        assert_eq!(
            failure.reason,
            "EXAMPLE\\bob may not open the mailbox alice@example.com (EWS ErrorAccessDenied): its \
             owner has not given EXAMPLE\\bob delegate access to the inbox"
        );
        assert!(!denied.is_transient());
        let missing = ExchangeError::NoSuchMailbox {
            server: "m".into(),
            mailbox: "alice@example.com".into(),
            code: "ErrorNonExistentMailbox".into(),
        };
        assert_eq!(missing.failure().state, LinkState::Blocked);
        assert!(missing.wire_error().hint.unwrap().contains("--username"));
    }

    #[test]
    fn endpoints_stored_before_mailbox_and_schema_read_as_before() {
        let stored = r#"{"ews_url":"https://m/EWS/Exchange.asmx","auth":"ntlm","username":"u","server_version":null}"#;
        let endpoint: ExchangeEndpoint = serde_json::from_str(stored).unwrap();
        assert_eq!(endpoint.mailbox, None);
        assert_eq!(endpoint.request_server_version, REQUEST_SERVER_VERSION);
        let again: ExchangeEndpoint =
            serde_json::from_str(&serde_json::to_string(&endpoint).unwrap()).unwrap();
        assert_eq!(again, endpoint);
    }

    #[test]
    fn the_password_never_reaches_debug_output() {
        let password = Sensitive::new("hunter2");
        let login = Login {
            email: "a@b.c",
            username: None,
            secret: Secret::Password(&password),
            server: None,
            trust: discover::Trust::default(),
        };
        assert!(!format!("{login:?}").contains("hunter2"));
    }
}
