//! Authenticated HTTP for EWS and Autodiscover: one POST, with whatever handshake the server
//! asks for.
//!
//! ```text
//!  new endpoint ─POST (no credentials)─▶ 401 + WWW-Authenticate offers ─choose([exchange] auth)─┐
//!  endpoint that challenged and accepted us earlier in this session ─────────────────────────────┤
//!     ┌──────────────────────────────────────────────────────────────────────────────────────────┘
//!     ├─ kerberos: tickets from the KDC ─▶ POST Negotiate AP-REQ ─▶ reply + AP-REP (verified)
//!     ├─ ntlm:  POST NTLM type 1 ─▶ 401 + challenge ─▶ POST NTLM type 3 (same connection) ─▶ reply
//!     ├─ basic: POST Basic user:password (HTTPS only) ─▶ reply
//!     └─ oauth: POST Bearer <the Entra ID token issued for this origin> ─▶ reply
//!  401 after credentials ─▶ ExchangeError::Rejected (never retried: no account lockouts)
//!  no password yet, or a Bearer challenge we hold no token for ─▶ PasswordNeeded / ModernAuth
//! ```
//!
//! The scheme is chosen per endpoint (origin and path), from that endpoint's own challenge:
//! IIS configures authentication per virtual directory, so Autodiscover may offer Basic where
//! EWS on the next host (or the same one) takes only NTLM, and credentials go to an endpoint
//! only once it has asked for them (SPEC §8).
//!
//! Credentials go only to `https://` URLs (reqwest always verifies the certificate; a failed
//! verification ends the request before anything is sent), or NTLM to a loopback `http://` URL
//! for tests: an NTLM or Kerberos exchange never carries the password itself.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use mslink_proto::Sensitive;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use url::Url;

use super::ExchangeError;
use super::kerberos::{self, Credential, KerberosClient, KerberosError};
use super::keytab::ServiceKey;
use super::ntlm::NtlmClient;
use crate::config::ExchangeAuth;
use crate::net;

/// Most bytes read from any response body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A response, read whole (bounded).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// `Retry-After` in seconds, if given in that form.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        let value = self.headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
        value.trim().parse().ok().map(std::time::Duration::from_secs)
    }
}

/// What a session signs in with.
/// `Debug` shows no secret ([`Sensitive`] is redacted).
#[derive(Debug, Clone, Copy)]
pub enum Secret<'a> {
    /// Nothing yet: the first challenge says what the server takes, a password
    /// ([`ExchangeError::PasswordNeeded`]) or Entra ID tokens ([`ExchangeError::ModernAuth`]).
    /// Nothing is sent but the unauthenticated first request.
    Unknown,
    Password(&'a Sensitive),
    /// A service account's long-term key from its keytab: Kerberos only.
    Key(&'a ServiceKey),
    /// Entra ID access tokens by the origin each was issued for (its audience,
    /// [`super::resource_of`]): a token goes to its own origin only.
    Tokens(&'a HashMap<String, Sensitive>),
}

/// Who signs in.
pub struct Credentials<'a> {
    /// For the password schemes, and messages.
    pub username: &'a str,
    pub secret: Secret<'a>,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

/// An HTTP client plus credentials, remembering the scheme each endpoint accepted.
#[derive(Debug)]
pub struct Session<'a> {
    client: reqwest::Client,
    credentials: Credentials<'a>,
    allowed: Vec<ExchangeAuth>,
    /// Endpoint (see [`endpoint_key`]) → the scheme it challenged for and accepted. Never
    /// carried over to another endpoint.
    accepted: HashMap<String, ExchangeAuth>,
    /// Origins with a connection NTLM or Kerberos authenticated in this session, and which.
    /// These sign in a connection, not a request (IIS keeps it signed in), so another endpoint
    /// of that origin may answer our unauthenticated first request on it without a challenge.
    signed_in: HashMap<String, ExchangeAuth>,
    /// Where Kerberos gets its tickets.
    kerberos: kerberos::Setup,
    /// The TLS certificate each origin showed, for Kerberos channel binding on requests that
    /// need no new challenge.
    certs: HashMap<String, Vec<u8>>,
}

/// What a chosen scheme is remembered by: origin and path, without the query. Two virtual
/// directories of one host can demand different schemes.
fn endpoint_key(url: &Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path().to_ascii_lowercase())
}

/// The host of `url`, for messages.
pub fn host_of(url: &Url) -> String {
    match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or("?")),
        None => url.host_str().unwrap_or("?").to_owned(),
    }
}

/// True for `http://` URLs to a loopback address (tests).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(host)) => host.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Maps a transport failure to an error naming `server`.
pub fn transport_error(server: &str, error: &reqwest::Error) -> ExchangeError {
    if net::is_certificate_error(error) {
        ExchangeError::Certificate { server: server.to_owned() }
    } else if error.is_timeout() {
        ExchangeError::Timeout { server: server.to_owned() }
    } else {
        let mut detail = String::new();
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
        while let Some(e) = source {
            detail = e.to_string();
            source = e.source();
        }
        if detail.is_empty() {
            detail = error.to_string();
        }
        ExchangeError::Network { server: server.to_owned(), detail }
    }
}

/// Sends one request and reads the reply (bounded); also returns the TLS peer certificate.
pub async fn send(
    request: reqwest::RequestBuilder,
    server: &str,
) -> Result<(Reply, Option<Vec<u8>>), ExchangeError> {
    let mut response = request.send().await.map_err(|e| transport_error(server, &e))?;
    let cert = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec);
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(server, &e))? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ExchangeError::Protocol {
                server: server.to_owned(),
                detail: format!("the response is larger than {MAX_BODY_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok((Reply { status, headers, body }, cert))
}

/// What a server offers in `WWW-Authenticate`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Offers {
    pub ntlm: bool,
    pub negotiate: bool,
    pub basic: bool,
    /// A Bearer challenge (OAuth), with or without `authorization_uri`.
    pub bearer: bool,
    /// Where a Bearer challenge says to get tokens (`authorization_uri`): hybrid modern
    /// authentication, when an on-premises server names Entra ID.
    pub modern_auth: Option<String>,
    /// Every scheme name seen, for messages.
    pub names: Vec<String>,
}

impl Offers {
    /// Reads every challenge of every `WWW-Authenticate` header ([`net::challenges`]).
    pub fn from_headers(headers: &HeaderMap) -> Offers {
        let values = headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok());
        let mut offers = Offers::default();
        for challenge in net::challenges(values) {
            match challenge.scheme.to_ascii_lowercase().as_str() {
                "ntlm" => offers.ntlm = true,
                "negotiate" => offers.negotiate = true,
                "basic" => offers.basic = true,
                "bearer" => {
                    offers.bearer = true;
                    offers.modern_auth =
                        offers.modern_auth.take().or_else(|| challenge.param("authorization_uri"));
                }
                _ => {}
            }
            if !offers.names.iter().any(|n| n.eq_ignore_ascii_case(&challenge.scheme)) {
                offers.names.push(challenge.scheme);
            }
        }
        offers
    }
}

/// The token of the first `WWW-Authenticate: NTLM <token>` / `Negotiate <token>` header: an
/// NTLM challenge, or a Kerberos AP-REP.
fn auth_token(headers: &HeaderMap) -> Option<Vec<u8>> {
    headers.get_all(WWW_AUTHENTICATE).iter().find_map(|value| {
        let text = value.to_str().ok()?;
        let (scheme, token) = text.trim().split_once(' ')?;
        if !(scheme.eq_ignore_ascii_case("ntlm") || scheme.eq_ignore_ascii_case("negotiate")) {
            return None;
        }
        BASE64.decode(token.trim()).ok()
    })
}

fn secret_header(text: String) -> Result<HeaderValue, ExchangeError> {
    let mut value = HeaderValue::from_str(&text).map_err(|_| ExchangeError::Internal {
        detail: "credentials cannot be put in an HTTP header".into(),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

impl<'a> Session<'a> {
    /// A session that will pick a scheme from the server's offers and `allowed` (in order).
    pub fn new(
        client: reqwest::Client,
        credentials: Credentials<'a>,
        allowed: Vec<ExchangeAuth>,
        kerberos: kerberos::Setup,
    ) -> Session<'a> {
        Session {
            client,
            credentials,
            allowed,
            accepted: HashMap::new(),
            signed_in: HashMap::new(),
            kerberos,
            certs: HashMap::new(),
        }
    }

    /// The scheme `url`'s endpoint challenged for and accepted in this session, if any.
    pub fn scheme_at(&self, url: &Url) -> Option<ExchangeAuth> {
        self.accepted.get(&endpoint_key(url)).copied()
    }

    /// The scheme to answer `offers` from `url` with, given what this session holds: a
    /// password goes by the first scheme of `[exchange] auth` offered, a token only to the
    /// origin it was issued for. An endpoint that wants what the session lacks says so
    /// ([`ExchangeError::ModernAuth`], [`ExchangeError::PasswordNeeded`]); with nothing yet,
    /// Entra ID is preferred, since it needs no password from the user.
    fn choose(&self, offers: &Offers, url: &Url) -> Result<ExchangeAuth, ExchangeError> {
        let server = host_of(url);
        let https = url.scheme() == "https";
        let modern_auth = || {
            offers.modern_auth.clone().map(|authorization_uri| ExchangeError::ModernAuth {
                server: server.clone(),
                resource: super::resource_of(url),
                authorization_uri,
            })
        };
        let password_scheme = self.allowed.iter().copied().find(|scheme| match scheme {
            ExchangeAuth::Kerberos => offers.negotiate,
            ExchangeAuth::Ntlm => offers.ntlm || offers.negotiate,
            ExchangeAuth::Basic => offers.basic && https,
            ExchangeAuth::OAuth => false,
        });
        let chosen = match self.credentials.secret {
            Secret::Password(_) => password_scheme.ok_or_else(|| {
                // Only OAuth through Entra ID is left: say so rather than list schemes.
                modern_auth()
                    .filter(|_| !(offers.ntlm || offers.negotiate || (offers.basic && https)))
            }),
            Secret::Tokens(tokens) if offers.bearer => {
                if tokens.contains_key(&super::resource_of(url)) {
                    Ok(ExchangeAuth::OAuth)
                } else {
                    Err(modern_auth())
                }
            }
            Secret::Tokens(_) => Err(None),
            // A key is no password: of the password schemes only Kerberos takes it.
            Secret::Key(_)
                if offers.negotiate && self.allowed.contains(&ExchangeAuth::Kerberos) =>
            {
                Ok(ExchangeAuth::Kerberos)
            }
            Secret::Key(_) => Err(Some(ExchangeError::KeytabNeedsKerberos {
                server: server.clone(),
                offered: offers.names.clone(),
                allowed: self.allowed.contains(&ExchangeAuth::Kerberos),
            })),
            Secret::Unknown => match (modern_auth(), password_scheme) {
                (Some(error), _) => Err(Some(error)),
                (None, Some(_)) => {
                    Err(Some(ExchangeError::PasswordNeeded { server: server.clone() }))
                }
                (None, None) => Err(None),
            },
        };
        chosen.map_err(|error| {
            error.unwrap_or_else(|| ExchangeError::NoSuitableAuth {
                server,
                offered: offers.names.clone(),
                allowed: self.allowed.clone(),
                https,
            })
        })
    }

    /// The password, for the schemes that need one ([`Session::choose`] picks them only then).
    fn password(&self) -> Result<&'a Sensitive, ExchangeError> {
        match self.credentials.secret {
            Secret::Password(password) => Ok(password),
            _ => Err(ExchangeError::Internal {
                detail: "a password scheme without a password".into(),
            }),
        }
    }

    /// POSTs `body` as `text/xml` to `url` with authentication.
    #[tracing::instrument(level = "debug", skip(self, body), fields(url = %url))]
    pub async fn post_xml(&mut self, url: &Url, body: &str) -> Result<Reply, ExchangeError> {
        let server = host_of(url);
        let origin = url.origin().ascii_serialization();
        let https = url.scheme() == "https";
        let loopback_http = url.scheme() == "http" && is_loopback(url);
        if !(https || loopback_http) {
            return Err(ExchangeError::InsecureUrl { url: url.to_string() });
        }
        let request = |auth: Option<HeaderValue>| {
            let mut builder = self
                .client
                .request(Method::POST, url.clone())
                .header(CONTENT_TYPE, "text/xml; charset=utf-8")
                .body(body.to_owned());
            if let Some(value) = auth {
                builder = builder.header(AUTHORIZATION, value);
            }
            builder
        };
        let (scheme, negotiate_header) = match self.scheme_at(url) {
            Some(scheme) => (scheme, false),
            None => {
                let (reply, cert) = send(request(None), &server).await?;
                if let Some(cert) = cert.filter(|_| https) {
                    self.certs.insert(origin.clone(), cert);
                }
                if reply.status != StatusCode::UNAUTHORIZED {
                    if let Some(&scheme) = self.signed_in.get(&origin) {
                        // Answered on the connection signed in earlier.
                        self.accepted.insert(endpoint_key(url), scheme);
                    }
                    return Ok(reply);
                }
                let offers = Offers::from_headers(&reply.headers);
                let scheme = self.choose(&offers, url)?;
                (scheme, scheme == ExchangeAuth::Ntlm && !offers.ntlm)
            }
        };
        tracing::debug!(server = %server, scheme = scheme.as_str(), "authenticating");
        let reply = match scheme {
            ExchangeAuth::Kerberos => {
                let kerberos_error = |error: KerberosError| ExchangeError::Kerberos {
                    server: server.clone(),
                    error,
                };
                let host = url.host_str().unwrap_or_default();
                let cert = self.certs.get(&origin).filter(|_| https);
                let credential = match self.credentials.secret {
                    Secret::Key(key) => Credential::Key(key),
                    _ => Credential::Password {
                        username: self.credentials.username,
                        password: self.password()?,
                    },
                };
                let (mut client, ap_req) = KerberosClient::sign_in(
                    &self.kerberos,
                    credential,
                    host,
                    cert.map(Vec::as_slice),
                )
                .await
                .map_err(kerberos_error)?;
                let header = secret_header(format!("Negotiate {}", BASE64.encode(ap_req)))?;
                let (reply, _) = send(request(Some(header)), &server).await?;
                if reply.status != StatusCode::UNAUTHORIZED {
                    // Mutual authentication: the answer must prove the server holds the key
                    // of the ticket, or it may be anyone who relayed our request.
                    match auth_token(&reply.headers) {
                        Some(ap_rep) => client.verify(&ap_rep).await.map_err(kerberos_error)?,
                        None if reply.status.is_success() => {
                            return Err(kerberos_error(KerberosError::MutualAuth(
                                "the server's answer carries no Kerberos reply".into(),
                            )));
                        }
                        None => {}
                    }
                }
                reply
            }
            ExchangeAuth::Basic => {
                if !https {
                    return Err(ExchangeError::InsecureUrl { url: url.to_string() });
                }
                let pair = format!("{}:{}", self.credentials.username, self.password()?.expose());
                let header = secret_header(format!("Basic {}", BASE64.encode(pair)))?;
                send(request(Some(header)), &server).await?.0
            }
            ExchangeAuth::Ntlm => {
                let ntlm_error = |e: super::ntlm::NtlmError| ExchangeError::Ntlm {
                    server: server.clone(),
                    detail: e.to_string(),
                };
                // A stored scheme starts with `NTLM`; a server that offers only `Negotiate`
                // refuses that label with its bare offers, and gets raw NTLM inside `Negotiate`.
                let mut label = if negotiate_header { "Negotiate" } else { "NTLM" };
                let password = self.password()?;
                let (mut ntlm, challenge, cert) = loop {
                    let mut ntlm =
                        NtlmClient::new(self.credentials.username, password).map_err(ntlm_error)?;
                    let type1 = ntlm.negotiate().map_err(ntlm_error)?;
                    let header =
                        HeaderValue::from_str(&format!("{label} {}", BASE64.encode(type1)))
                            .map_err(|_| ExchangeError::Internal {
                                detail: "bad NTLM header".into(),
                            })?;
                    let (reply, cert) = send(request(Some(header)), &server).await?;
                    if reply.status != StatusCode::UNAUTHORIZED {
                        // An already-authenticated connection, or a server error: the caller
                        // decides.
                        return Ok(reply);
                    }
                    if let Some(challenge) = auth_token(&reply.headers) {
                        break (ntlm, challenge, cert);
                    }
                    let offers = Offers::from_headers(&reply.headers);
                    if label == "NTLM" && offers.negotiate && !offers.ntlm {
                        label = "Negotiate";
                        continue;
                    }
                    if !(offers.ntlm || offers.negotiate) {
                        return Err(ExchangeError::NoSuitableAuth {
                            server,
                            offered: offers.names,
                            allowed: self.allowed.clone(),
                            https,
                        });
                    }
                    return Err(ExchangeError::Ntlm {
                        server,
                        detail: "the server answered the NTLM negotiation without a challenge"
                            .into(),
                    });
                };
                let cert = if https { cert } else { None };
                let type3 = ntlm.authenticate(&challenge, cert.as_deref()).map_err(ntlm_error)?;
                let header = secret_header(format!("{label} {}", BASE64.encode(type3)))?;
                send(request(Some(header)), &server).await?.0
            }
            ExchangeAuth::OAuth => {
                let token = match self.credentials.secret {
                    Secret::Tokens(tokens) => tokens.get(&super::resource_of(url)),
                    _ => None,
                }
                .ok_or_else(|| ExchangeError::Internal {
                    detail: format!("no token for {server}"),
                })?;
                let header = secret_header(format!("Bearer {}", token.expose()))?;
                send(request(Some(header)), &server).await?.0
            }
        };
        if reply.status == StatusCode::UNAUTHORIZED {
            return Err(ExchangeError::Rejected {
                server,
                username: self.credentials.username.to_owned(),
                scheme,
            });
        }
        // Basic and Bearer go with every request; NTLM and Kerberos sign the connection in.
        if matches!(scheme, ExchangeAuth::Ntlm | ExchangeAuth::Kerberos) {
            self.signed_in.insert(origin, scheme);
        }
        self.accepted.insert(endpoint_key(url), scheme);
        Ok(reply)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_read_from_every_header() {
        let mut headers = HeaderMap::new();
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate"));
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("NTLM"));
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"mail.x\""));
        let offers = Offers::from_headers(&headers);
        assert!(offers.ntlm && offers.negotiate && offers.basic);
        assert_eq!(offers.names, ["Negotiate", "NTLM", "Basic"]);
    }

    #[test]
    fn schemes_are_remembered_per_endpoint() {
        let key = |u: &str| endpoint_key(&Url::parse(u).unwrap());
        let ews = key("https://mail.contoso.test/EWS/Exchange.asmx");
        assert_eq!(ews, key("https://MAIL.contoso.test:443/ews/exchange.asmx?x=1"));
        assert_ne!(ews, key("https://mail.contoso.test/autodiscover/autodiscover.xml"));
        assert_ne!(ews, key("https://autodiscover.contoso.test/EWS/Exchange.asmx"));
        assert_ne!(ews, key("https://mail.contoso.test:8443/EWS/Exchange.asmx"));
    }

    #[test]
    fn a_bearer_challenge_naming_entra_is_hybrid_modern_auth() {
        let mut headers = HeaderMap::new();
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", trusted_issuers=\"00000001-0000-0000-c000-000000000000@5de110f8,00000004-0000-0ff1-ce00-000000000000@contoso.com\", token_types=\"app_asserted_user_v1 service_asserted_app_v1\", authorization_uri=\"https://login.windows.net/common/oauth2/authorize\"",
            ),
        );
        headers
            .append(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"mail.contoso.com\""));
        let offers = Offers::from_headers(&headers);
        assert_eq!(
            offers.modern_auth.as_deref(),
            Some("https://login.windows.net/common/oauth2/authorize")
        );
        assert!(offers.basic && !offers.ntlm && !offers.negotiate);
        assert_eq!(offers.names, ["Bearer", "Basic"]);
    }

    #[test]
    fn comma_joined_offers_are_split() {
        let mut headers = HeaderMap::new();
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Negotiate, Basic realm=\"x\", charset=\"UTF-8\""),
        );
        let offers = Offers::from_headers(&headers);
        assert!(offers.negotiate && offers.basic && !offers.ntlm);
    }

    #[test]
    fn a_keytab_key_goes_by_kerberos_only() {
        let key = ServiceKey {
            principal: "svc@CONTOSO.TEST".into(),
            kvno: 2,
            enctype: 18,
            key: Sensitive::new("AAAA"),
        };
        let offers = |names: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for name in names {
                headers.append(WWW_AUTHENTICATE, HeaderValue::from_static(name));
            }
            Offers::from_headers(&headers)
        };
        let setup = kerberos::Setup {
            realm: None,
            kdc: Vec::new(),
            network: crate::config::Network::default(),
            timeout: std::time::Duration::from_secs(1),
        };
        let url = Url::parse("https://mail.contoso.test/EWS/Exchange.asmx").unwrap();
        let session = |allowed: Vec<ExchangeAuth>| {
            let credentials = Credentials { username: "svc", secret: Secret::Key(&key) };
            Session::new(reqwest::Client::new(), credentials, allowed, setup.clone())
        };
        let all = vec![ExchangeAuth::Ntlm, ExchangeAuth::Kerberos, ExchangeAuth::Basic];
        let chosen = session(all.clone()).choose(&offers(&["NTLM", "Negotiate", "Basic"]), &url);
        assert_eq!(chosen.unwrap(), ExchangeAuth::Kerberos, "NTLM is first, but takes no key");
        let refused = session(all).choose(&offers(&["NTLM", "Basic"]), &url).unwrap_err();
        assert!(
            matches!(&refused, ExchangeError::KeytabNeedsKerberos { allowed: true, .. }),
            "{refused}"
        );
        assert!(refused.to_string().contains("offers NTLM, Basic"), "{refused}");
        let refused =
            session(vec![ExchangeAuth::Ntlm]).choose(&offers(&["Negotiate"]), &url).unwrap_err();
        assert!(refused.to_string().contains("does not allow \"kerberos\""), "{refused}");
    }
}
