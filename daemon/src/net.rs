//! The one place HTTP clients are built, so every outgoing request obeys `[network]` (SPEC §5):
//! the extra CA in `ca_file`, host overrides in `resolve`, verified TLS always, no automatic
//! redirects (callers that follow redirects check each hop themselves), bounded timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::Network;

/// How a client should behave beyond `[network]`.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions {
    /// Whole-request timeout.
    pub timeout: Duration,
    /// NTLM authenticates a connection, so its legs need HTTP/1.1 and one kept-alive connection.
    pub connection_oriented_auth: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions { timeout: Duration::from_secs(30), connection_oriented_auth: false }
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot read `[network] ca_file` {path}: {source}")]
    CaFile { path: std::path::PathBuf, source: std::io::Error },
    #[error("`[network] ca_file` {path} holds no usable PEM certificate: {source}")]
    CaParse { path: std::path::PathBuf, source: reqwest::Error },
    #[error("cannot build an HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// A client for `network`. Building one loads and parses the system's root certificates
/// (milliseconds of CPU), and background work asks for one per refresh and per check, so clients
/// are shared: the same `[network]`, options and `ca_file` contents get a clone of the same client
/// (and its pool of kept-alive connections). Connection-oriented auth (NTLM) always gets a fresh
/// client: its connections are authenticated as one user and must never serve another.
pub fn client(network: &Network, options: HttpOptions) -> Result<reqwest::Client, NetError> {
    if options.connection_oriented_auth {
        return build(network, options, read_ca(network)?.as_deref());
    }
    let ca = read_ca(network)?;
    let key = ClientKey { network: network.clone(), timeout: options.timeout, ca };
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, client)) = shared.iter().find(|(k, _)| *k == key) {
        return Ok(client.clone());
    }
    let client = build(network, options, key.ca.as_deref())?;
    // A handful of configurations at most (detection, Graph, EWS, before and after a reload).
    if shared.len() >= 8 {
        shared.remove(0);
    }
    shared.push((key, client.clone()));
    Ok(client)
}

/// What makes two shared clients interchangeable.
#[derive(PartialEq)]
struct ClientKey {
    network: Network,
    timeout: Duration,
    /// The CA file's contents when asked, so a replaced file takes effect without a reload.
    ca: Option<Vec<u8>>,
}

/// Ownership: the list is only touched inside [`client`], never across an `.await`.
static SHARED: std::sync::Mutex<Vec<(ClientKey, reqwest::Client)>> =
    std::sync::Mutex::new(Vec::new());

fn read_ca(network: &Network) -> Result<Option<Vec<u8>>, NetError> {
    network
        .ca_file
        .as_ref()
        .map(|path| {
            std::fs::read(path).map_err(|source| NetError::CaFile { path: path.clone(), source })
        })
        .transpose()
}

fn build(
    network: &Network,
    options: HttpOptions,
    ca: Option<&[u8]>,
) -> Result<reqwest::Client, NetError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("mslink/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10).min(options.timeout))
        .timeout(options.timeout)
        .tls_info(true);
    if let (Some(path), Some(pem)) = (&network.ca_file, ca) {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|source| NetError::CaParse { path: path.clone(), source })?;
        builder = builder.tls_certs_merge(certs);
    }
    for (host, ip) in &network.resolve {
        // The port is ignored: it comes from the URL.
        builder = builder.resolve(host, SocketAddr::new(*ip, 0));
    }
    if options.connection_oriented_auth {
        builder = builder.http1_only().pool_max_idle_per_host(1);
    }
    Ok(builder.build()?)
}

/// True when an error (or one of its sources) is a TLS certificate verification failure, so the
/// message can name the server and `[network] ca_file`.
pub fn is_certificate_error(error: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        let text = e.to_string();
        if text.contains("certificate") || text.contains("UnknownIssuer") {
            return true;
        }
        source = e.source();
    }
    false
}
