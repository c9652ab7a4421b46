//! Kerberos for EWS through the `sspi` crate's Kerberos client: the user's password gets a
//! ticket-granting ticket from the realm's KDC, that a service ticket for `HTTP/<ews host>`, and
//! the service ticket goes to the server as `Authorization: Negotiate <AP-REQ>`. The server's
//! `WWW-Authenticate: Negotiate <AP-REP>` on the 200 proves it holds the service key (mutual
//! authentication).
//!
//! ```text
//!   KerberosClient::new(principal, password, kdcs)
//!     ──ap_req(spn, cbt)──▶ AS-REQ/AS-REP, TGS-REQ/TGS-REP with a KDC (TCP) ──▶ AP-REQ ─▶ server
//!   server ─▶ 200 WWW-Authenticate: Negotiate <AP-REP> ──verify(ap_rep)──▶ mutual auth done
//! ```
//!
//! `sspi` runs the protocol as a generator that yields each KDC request; this module answers
//! them over its own tokio TCP connections (the crate's blocking network client stays off), so a
//! KDC that hangs holds one round's task, never a thread. Over TLS the authenticator carries the
//! same `tls-server-end-point` channel binding as NTLM's, for Exchange's Extended Protection.

use std::net::SocketAddr;
use std::time::Duration;

use mslink_proto::Sensitive;
use picky_krb::crypto::CipherSuite;
use sspi::generator::{GeneratorState, NetworkRequest};
use sspi::{
    AuthIdentity, BufferType, ClientRequestFlags, CredentialUse, CredentialsBuffers,
    DataRepresentation, KerberosConfig, KeytabIdentity, SecurityBuffer, Sspi, SspiImpl, Username,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{Config, Network};
use crate::dns::Dns;
use crate::exchange::keytab::ServiceKey;

/// The largest KDC reply read; real ones are a few kilobytes (a PAC makes them bigger).
const MAX_KDC_REPLY: usize = 1 << 20;

/// The standard Kerberos port, for `[exchange] kdc` entries without one.
const KERBEROS_PORT: u16 = 88;

/// Why a Kerberos sign-in failed. Never carries a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KerberosError {
    #[error("the KDC of {realm} refused the password of {principal}")]
    WrongPassword { principal: String, realm: String },
    /// A service account's key from its keytab: the account's keys changed since.
    #[error(
        "the KDC of {realm} refused the key of {principal} (kvno {kvno}): the account's keys \
         have changed since its keytab was exported"
    )]
    WrongKey { principal: String, realm: String, kvno: u32 },
    #[error("the KDC of {realm} does not know {principal}")]
    UnknownPrincipal { principal: String, realm: String },
    #[error("the KDC of {realm} has no service principal {spn} for this server")]
    NoServicePrincipal { spn: String, realm: String },
    /// `skew`: the KDC's clock minus ours, in seconds, when its answer said.
    #[error(
        "this machine's clock and the KDC's of {realm} differ by more than Kerberos allows \
         (5 minutes){}",
        skew.map(|s| format!(": the KDC is {} {}", humantime::format_duration(
            std::time::Duration::from_secs(s.unsigned_abs())), if s > 0 { "ahead" } else { "behind" }))
            .unwrap_or_default()
    )]
    ClockSkew { realm: String, skew: Option<i64> },
    #[error("no KDC of {realm} answered: {detail}")]
    KdcUnreachable { realm: String, detail: String },
    #[error(
        "the username `{0}` names no Kerberos principal: use `user@REALM` or `DOMAIN\\user`, or set `[exchange] realm`"
    )]
    Username(String),
    #[error("the server's Kerberos reply does not prove it holds the service key: {0}")]
    MutualAuth(String),
    #[error("Kerberos: {0}")]
    Other(String),
}

impl KerberosError {
    /// True when a later attempt may succeed by itself.
    pub fn is_transient(&self) -> bool {
        matches!(self, KerberosError::KdcUnreachable { .. })
    }
}

/// A client principal: the account name and its realm (upper case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub account: String,
    pub realm: String,
}

impl Principal {
    /// The principal for `username` (`user@REALM`, `DOMAIN\user` or `user`): its account name,
    /// in `realm` (`[exchange] realm`) when one is configured, else in the realm the username
    /// names (a UPN suffix or a NetBIOS domain; a bare name needs the configured realm).
    pub fn of(username: &str, realm: Option<&str>) -> Result<Principal, KerberosError> {
        let bad = || KerberosError::Username(username.to_owned());
        let (account, named) = split_login(username);
        let realm = realm.or(named).ok_or_else(bad)?;
        if account.is_empty() || realm.is_empty() || account.contains(['/', '@', '\\']) {
            return Err(bad());
        }
        Ok(Principal { account: account.to_owned(), realm: realm.to_ascii_uppercase() })
    }
}

/// A Windows login's account name and the domain it names: `DOMAIN\\user` (the NetBIOS
/// domain), `user@suffix` (a UPN suffix or a realm), or `user` (none).
pub fn split_login(username: &str) -> (&str, Option<&str>) {
    match (username.split_once('\\'), username.rsplit_once('@')) {
        (Some((domain, account)), _) => (account, Some(domain)),
        (None, Some((account, suffix))) => (account, Some(suffix)),
        (None, None) => (username, None),
    }
}

/// What a Kerberos sign-in needs from the config: `[exchange] realm` and `kdc`, `[network]`
/// (names and nameservers), and how long one KDC exchange may take.
#[derive(Debug, Clone)]
pub struct Setup {
    pub realm: Option<String>,
    pub kdc: Vec<String>,
    pub network: Network,
    pub timeout: Duration,
}

impl Setup {
    pub fn of(config: &Config, timeout: Duration) -> Setup {
        Setup {
            realm: config.exchange.realm.clone(),
            kdc: config.exchange.kdc.clone(),
            network: config.network.clone(),
            timeout,
        }
    }
}

/// Where the realm's KDCs are: `[exchange] kdc`, else DNS SRV `_kerberos._tcp.REALM`.
pub async fn kdcs_of(
    realm: &str,
    configured: &[String],
    network: &Network,
    timeout: Duration,
) -> Result<Vec<String>, KerberosError> {
    if !configured.is_empty() {
        return Ok(configured.iter().map(|kdc| with_port(kdc)).collect());
    }
    let unreachable =
        |detail: String| KerberosError::KdcUnreachable { realm: realm.into(), detail };
    let dns = Dns::new(network, timeout).map_err(|e| unreachable(e.to_string()))?;
    let name = format!("_kerberos._tcp.{}", realm.to_ascii_lowercase());
    let found = dns.srv(&name).await.map_err(|e| unreachable(e.to_string()))?;
    if found.is_empty() {
        return Err(unreachable(format!(
            "{name} has no SRV record; set `[exchange] kdc` in mslinkd.toml"
        )));
    }
    Ok(found.into_iter().map(|t| format!("{}:{}", t.host, t.port)).collect())
}

/// `host[:port]` (or `tcp://host[:port]`, as krb5.conf writes it) with the port made explicit.
fn with_port(kdc: &str) -> String {
    let bare = kdc.trim_start_matches("tcp://");
    let has_port = bare.parse::<SocketAddr>().is_ok()
        || bare
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.contains([':', ']']) && port.parse::<u16>().is_ok());
    if has_port { bare.to_owned() } else { format!("{bare}:{KERBEROS_PORT}") }
}

/// One Kerberos sign-in in progress, for one server.
pub struct KerberosClient {
    kerberos: sspi::Kerberos,
    credentials: Option<CredentialsBuffers>,
    principal: Principal,
    /// The key version, when signing in with a keytab's key rather than a password.
    key_version: Option<u32>,
    kdcs: Vec<String>,
    network: Network,
    timeout: Duration,
    spn: String,
}

impl std::fmt::Debug for KerberosClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KerberosClient")
            .field("principal", &self.principal)
            .field("spn", &self.spn)
            .finish_non_exhaustive()
    }
}

/// What a principal signs in with: the user's password, or a service account's long-term key
/// from its keytab.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// `username` as the user gave it (`user@REALM`, `DOMAIN\user`), mapped by [`Principal::of`].
    Password {
        username: &'a str,
        password: &'a Sensitive,
    },
    Key(&'a ServiceKey),
}

impl Credential<'_> {
    fn principal(&self, realm: Option<&str>) -> Result<Principal, KerberosError> {
        match self {
            Credential::Password { username, .. } => Principal::of(username, realm),
            // The keytab names the realm itself.
            Credential::Key(key) => Principal::of(&key.principal, None),
        }
    }

    /// The credentials `sspi` acquires a handle for.
    fn identity(&self, username: Username) -> Result<sspi::Credentials, KerberosError> {
        Ok(match self {
            Credential::Password { password, .. } => {
                sspi::Credentials::AuthIdentity(AuthIdentity {
                    username,
                    password: password.expose().to_owned().into(),
                })
            }
            Credential::Key(key) => {
                let unusable = || {
                    KerberosError::Other(format!(
                        "the sealed key of {} cannot be read; connect again with the keytab",
                        key.principal
                    ))
                };
                let bytes = key.bytes().ok_or_else(unusable)?;
                let key_enctype =
                    CipherSuite::try_from(key.enctype as usize).map_err(|_| unusable())?;
                sspi::Credentials::Keytab(KeytabIdentity {
                    principal: username,
                    key: bytes.into(),
                    key_enctype,
                })
            }
        })
    }
}

impl KerberosClient {
    /// Signs in with `credential` for `HTTP/<host>`: finds the principal and the realm's KDCs
    /// from `setup`, gets the tickets, and returns the AP-REQ to send with the client that
    /// verifies the server's answer.
    pub async fn sign_in(
        setup: &Setup,
        credential: Credential<'_>,
        host: &str,
        server_cert: Option<&[u8]>,
    ) -> Result<(KerberosClient, Vec<u8>), KerberosError> {
        let principal = credential.principal(setup.realm.as_deref())?;
        let kdcs = kdcs_of(&principal.realm, &setup.kdc, &setup.network, setup.timeout).await?;
        let mut client =
            KerberosClient::new(principal, credential, host, kdcs, &setup.network, setup.timeout)?;
        let ap_req = client.ap_req(server_cert).await?;
        Ok((client, ap_req))
    }

    /// Prepares a sign-in of `principal` with `credential` to `HTTP/<host>`, asking `kdcs` (each
    /// exchange bounded by `timeout`); `network` resolves their names (`[network] resolve`).
    pub fn new(
        principal: Principal,
        credential: Credential<'_>,
        host: &str,
        kdcs: Vec<String>,
        network: &Network,
        timeout: Duration,
    ) -> Result<KerberosClient, KerberosError> {
        let first = kdcs.first().cloned().unwrap_or_default();
        let config = KerberosConfig::new_with_kdc_url(&format!("tcp://{first}"), "mslinkd".into());
        let mut kerberos = sspi::Kerberos::new_client_from_config(config).map_err(other)?;
        let username = Username::new_down_level_logon_name(&principal.account, &principal.realm)
            .map_err(|_| KerberosError::Username(principal.account.clone()))?;
        let identity = credential.identity(username)?;
        let acquired = kerberos
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Outbound)
            .with_auth_data(&identity)
            .execute(&mut kerberos)
            .map_err(other)?;
        Ok(KerberosClient {
            kerberos,
            credentials: acquired.credentials_handle,
            principal,
            key_version: match credential {
                Credential::Key(key) => Some(key.kvno),
                Credential::Password { .. } => None,
            },
            kdcs,
            network: network.clone(),
            timeout,
            spn: format!("HTTP/{}", host.to_ascii_lowercase()),
        })
    }

    /// The AP-REQ for the server, getting the tickets it needs from the KDC first.
    /// `server_cert` is the DER certificate of the TLS connection, for channel binding.
    pub async fn ap_req(&mut self, server_cert: Option<&[u8]>) -> Result<Vec<u8>, KerberosError> {
        let mut input = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        if let Some(cert) = server_cert {
            let bindings = sec_channel_bindings(&super::ntlm::tls_server_end_point(cert));
            input.push(SecurityBuffer::new(bindings, BufferType::ChannelBindings));
        }
        self.step(input).await?.ok_or_else(|| KerberosError::Other("no AP-REQ produced".into()))
    }

    /// Checks the server's AP-REP (the token of its `WWW-Authenticate: Negotiate` answer).
    pub async fn verify(&mut self, ap_rep: &[u8]) -> Result<(), KerberosError> {
        let input = vec![SecurityBuffer::new(ap_rep.to_vec(), BufferType::Token)];
        match self.step(input).await {
            Ok(_) => Ok(()),
            Err(KerberosError::Other(detail)) => Err(KerberosError::MutualAuth(detail)),
            Err(e) => Err(e),
        }
    }

    /// One call into the context, answering every KDC request it yields.
    async fn step(
        &mut self,
        mut input: Vec<SecurityBuffer>,
    ) -> Result<Option<Vec<u8>>, KerberosError> {
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let mut builder = self
            .kerberos
            .initialize_security_context()
            .with_credentials_handle(&mut self.credentials)
            .with_context_requirements(ClientRequestFlags::MUTUAL_AUTH)
            .with_target_data_representation(DataRepresentation::Native)
            .with_target_name(&self.spn)
            .with_input(&mut input)
            .with_output(&mut output);
        // What went wrong talking to the KDCs, which `sspi` only sees as a failed exchange.
        let mut unreachable = None;
        // How far the KDC's clock is from ours, as its KRB-ERRORs say (every AS exchange starts
        // with one asking for pre-authentication). `sspi` does not check it: it takes tickets a
        // KDC an hour off issues, which the server then refuses as not yet (or no longer) valid,
        // a refusal that reads like a wrong password. MIT's kinit refuses them too.
        let mut skew = None;
        let result = {
            let mut generator =
                self.kerberos.initialize_security_context_impl(&mut builder).map_err(other)?;
            let mut state = generator.start();
            loop {
                match state {
                    GeneratorState::Completed(result) => break result,
                    GeneratorState::Suspended(request) => {
                        let reply =
                            exchange(&request, &self.kdcs, &self.network, self.timeout).await;
                        if let Some(kdc) = reply.as_deref().ok().and_then(kdc_clock) {
                            skew = Some(kdc - crate::now());
                        }
                        let reply = reply.map_err(|detail| {
                            let error = sspi::Error::new(
                                sspi::ErrorKind::NoAuthenticatingAuthority,
                                detail.clone(),
                            );
                            unreachable = Some(detail);
                            error
                        });
                        state = generator.resume(reply);
                    }
                }
            }
        };
        let realm = self.principal.realm.clone();
        if let Some(skew) = skew.filter(|s| s.unsigned_abs() > MAX_SKEW) {
            return Err(KerberosError::ClockSkew { realm, skew: Some(skew) });
        }
        if let Some(detail) = unreachable.filter(|_| result.is_err()) {
            return Err(KerberosError::KdcUnreachable { realm, detail });
        }
        result.map_err(|e| self.classify(e))?;
        Ok(output.pop().map(|buffer| buffer.buffer).filter(|token| !token.is_empty()))
    }

    /// What an `sspi` error means for the user, from the KDC's error code as `sspi` reports it.
    fn classify(&self, error: sspi::Error) -> KerberosError {
        let (principal, realm) = (self.principal.account.clone(), self.principal.realm.clone());
        let text = error.description.to_ascii_lowercase();
        match error.error_type {
            sspi::ErrorKind::TimeSkew => KerberosError::ClockSkew { realm, skew: None },
            _ if text.contains("pre-authentication information was invalid")
                || text.contains("integrity check on decrypted field failed") =>
            {
                match self.key_version {
                    Some(kvno) => KerberosError::WrongKey { principal, realm, kvno },
                    None => KerberosError::WrongPassword { principal, realm },
                }
            }
            _ if text.contains("client not found") => {
                KerberosError::UnknownPrincipal { principal, realm }
            }
            _ if text.contains("server not found") => {
                KerberosError::NoServicePrincipal { spn: self.spn.clone(), realm }
            }
            _ => other(error),
        }
    }
}

fn other(error: sspi::Error) -> KerberosError {
    KerberosError::Other(format!("{:?}: {}", error.error_type, error.description))
}

/// Sends one KDC request (already framed with its 4-byte length, as on TCP) to the first KDC
/// that answers, and returns the reply with its length prefix, as `sspi` expects.
/// The clock skew Kerberos allows (RFC 4120 §1.6, MIT's and Windows' default): 5 minutes.
const MAX_SKEW: u64 = 300;

/// The KDC's clock (Unix seconds), when `reply` (as framed over TCP) is a KRB-ERROR: its `stime`.
fn kdc_clock(reply: &[u8]) -> Option<i64> {
    let error: picky_krb::messages::KrbError = picky_asn1_der::from_bytes(reply.get(4..)?).ok()?;
    let stime = error.0.stime.0.0.clone();
    let stime = time::PrimitiveDateTime::try_from(stime).ok()?;
    Some(stime.assume_utc().unix_timestamp())
}

async fn exchange(
    request: &NetworkRequest,
    kdcs: &[String],
    network: &Network,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut last = String::from("no KDC configured");
    for kdc in kdcs {
        match tokio::time::timeout(timeout, exchange_with(kdc, &request.data, network)).await {
            Ok(Ok(reply)) => return Ok(reply),
            Ok(Err(e)) => last = format!("{kdc}: {e}"),
            Err(_) => last = format!("{kdc} did not answer within {} s", timeout.as_secs()),
        }
    }
    Err(last)
}

async fn exchange_with(kdc: &str, data: &[u8], network: &Network) -> std::io::Result<Vec<u8>> {
    let mut stream = match kdc.rsplit_once(':').and_then(|(host, port)| {
        let ip = network.resolve.get(&host.to_ascii_lowercase())?;
        Some(SocketAddr::new(*ip, port.parse().ok()?))
    }) {
        Some(addr) => tokio::net::TcpStream::connect(addr).await?,
        None => tokio::net::TcpStream::connect(kdc).await?,
    };
    stream.write_all(data).await?;
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await?;
    let n = u32::from_be_bytes(length) as usize;
    if n > MAX_KDC_REPLY {
        return Err(std::io::Error::other(format!("a reply of {n} bytes is too large")));
    }
    let mut reply = vec![0; 4 + n];
    reply[..4].copy_from_slice(&length);
    stream.read_exact(&mut reply[4..]).await?;
    Ok(reply)
}

/// A `SEC_CHANNEL_BINDINGS` structure holding only application data, as `sspi` reads it:
/// eight little-endian `u32`s (initiator and acceptor types, lengths and offsets, all zero;
/// then the application data's length and offset), followed by the data.
fn sec_channel_bindings(application_data: &[u8]) -> Vec<u8> {
    const HEADER: u32 = 32;
    let mut out = vec![0u8; 24];
    out.extend_from_slice(&(application_data.len() as u32).to_le_bytes());
    out.extend_from_slice(&HEADER.to_le_bytes());
    out.extend_from_slice(application_data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_comes_from_the_username_the_configured_realm_or_the_address() {
        let of = |user: &str, realm: Option<&str>| {
            Principal::of(user, realm).ok().map(|p| (p.account, p.realm))
        };
        let p = |a: &str, r: &str| Some((a.to_owned(), r.to_owned()));
        assert_eq!(of("alice@corp.contoso.test", None), p("alice", "CORP.CONTOSO.TEST"));
        assert_eq!(
            of("alice@contoso.test", Some("ad.contoso.test")),
            p("alice", "AD.CONTOSO.TEST")
        );
        assert_eq!(of("CONTOSO\\alice", None), p("alice", "CONTOSO"));
        assert_eq!(
            of("CONTOSO\\alice", Some("corp.contoso.test")),
            p("alice", "CORP.CONTOSO.TEST")
        );
        assert!(of("alice", None).is_none(), "a bare name needs [exchange] realm");
        assert_eq!(of("alice", Some("AD.CONTOSO.TEST")), p("alice", "AD.CONTOSO.TEST"));
        assert!(of("\\alice", None).is_none());
        assert!(of("HTTP/host", None).is_none());
    }

    #[test]
    fn kdc_addresses_get_the_kerberos_port_when_they_name_none() {
        assert_eq!(with_port("kdc.contoso.test"), "kdc.contoso.test:88");
        assert_eq!(with_port("127.0.0.1:8888"), "127.0.0.1:8888");
        assert_eq!(with_port("tcp://kdc.contoso.test:750"), "kdc.contoso.test:750");
    }

    #[test]
    fn channel_bindings_are_laid_out_as_sspi_reads_them() {
        let bytes = sec_channel_bindings(b"tls-server-end-point:abc");
        let read = sspi::channel_bindings::ChannelBindings::from_bytes(&bytes).unwrap();
        assert_eq!(read.application_data, b"tls-server-end-point:abc");
        assert!(read.initiator.is_empty() && read.acceptor.is_empty());
    }

    #[test]
    fn the_client_can_move_between_tasks() {
        fn send<T: Send>() {}
        send::<KerberosClient>();
    }
}
