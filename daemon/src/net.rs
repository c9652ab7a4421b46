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

/// Builds a client for `network`.
pub fn client(network: &Network, options: HttpOptions) -> Result<reqwest::Client, NetError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("mslink/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10).min(options.timeout))
        .timeout(options.timeout)
        .tls_info(true);
    if let Some(path) = &network.ca_file {
        let pem = std::fs::read(path)
            .map_err(|source| NetError::CaFile { path: path.clone(), source })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
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
