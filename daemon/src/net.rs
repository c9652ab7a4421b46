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

/// How long a kept-alive connection may sit idle before it is dropped instead of reused. Below
/// the shortest keep-alive timeout servers commonly use (5 s in Node.js and Apache): a connection
/// reused just as the server closes it fails with "connection closed before message completed",
/// and a request already sent (a token refresh) cannot safely be sent again. Background work is
/// minutes apart, so longer idle connections would rarely be reused anyway; a storm keeps its
/// connections busy and keeps them.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

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
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
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
/// The most any Microsoft JSON answer (token, device code, Graph) may be: real ones are a few
/// KiB; a server sending more is not answering, and reading on would let it grow the daemon.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// Reads `response`'s body, refusing it once it passes `cap` bytes (as it streams in: a 300 MB
/// answer costs the daemon no more than `cap`).
pub async fn read_body(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(format!("the answer is larger than the {cap}-byte limit"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len() + chunk.len() > cap {
            return Err(format!("the answer is larger than the {cap}-byte limit"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its sources in one line, without the URL reqwest puts in its own message.
/// One challenge of a `WWW-Authenticate` header: its scheme and the text of its parameters (or
/// its token, as in `NTLM <challenge>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: String,
}

impl Challenge {
    /// The value of parameter `name` (`name="value"` or `name=token`), case-insensitively.
    pub fn param(&self, name: &str) -> Option<String> {
        auth_params(&self.params)
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// RFC 9110 §11.2 auth-params: `name=token` or `name="quoted string"`, comma separated.
fn auth_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let name: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if name.is_empty() || chars.next_if_eq(&'=').is_none() {
            if chars.peek().is_none() {
                return params;
            }
            continue;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| *c != ',')));
        }
        params.push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

/// The challenges of `WWW-Authenticate` header values. One value may hold several
/// comma-separated challenges (IIS sends `Bearer client_id="…", …,Basic realm="…"` as one
/// header), and quoted parameters may hold commas; a challenge starts with a piece whose first
/// word is not a `name=value` parameter, and the pieces after it are its parameters.
pub fn challenges<'a>(values: impl Iterator<Item = &'a str>) -> Vec<Challenge> {
    let mut found: Vec<Challenge> = Vec::new();
    for value in values {
        let (mut piece, mut quoted, mut escaped) = (String::new(), false, false);
        let mut pieces = Vec::new();
        for c in value.chars() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    pieces.push(std::mem::take(&mut piece));
                    continue;
                }
                _ => {}
            }
            piece.push(c);
        }
        pieces.push(piece);
        let mut current: Option<Challenge> = None;
        for piece in pieces {
            let trimmed = piece.trim_start();
            let word = trimmed.split(' ').next().unwrap_or("");
            if !word.is_empty() && !word.contains('=') && !word.contains('"') {
                found.extend(current.take());
                let params = trimmed[word.len()..].trim().to_owned();
                current = Some(Challenge { scheme: word.to_owned(), params });
            } else if let Some(challenge) = current.as_mut() {
                challenge.params.push_str(", ");
                challenge.params.push_str(trimmed);
            }
        }
        found.extend(current);
    }
    found
}

pub fn error_chain(error: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    if error.is_timeout() {
        parts.push("timed out".to_owned());
    } else if error.is_connect() {
        parts.push("connection failed".to_owned());
    }
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    if parts.is_empty() {
        // reqwest's own message names the URL, query string and all (codes, tokens): keep only
        // its origin.
        let mut message = error.to_string();
        if let Some(url) = error.url() {
            message = message.replace(url.as_str(), &url.origin().ascii_serialization());
        }
        parts.push(message);
    }
    parts.join(": ")
}

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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server that answers every request with an endless chunked body, or with a
    /// `Content-Length` far past any cap.
    async fn endless(announce_length: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let head = if announce_length {
                "HTTP/1.1 200 OK\r\nContent-Length: 300000000\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            };
            stream.write_all(head.as_bytes()).await.unwrap();
            let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
            let piece = if announce_length { "x".repeat(0x10000) } else { chunk };
            // Until the client hangs up.
            while stream.write_all(piece.as_bytes()).await.is_ok() {}
        });
        url
    }

    #[tokio::test]
    async fn a_body_past_the_cap_is_refused_as_it_streams() {
        for announce_length in [false, true] {
            let url = endless(announce_length).await;
            let response = reqwest::get(&url).await.unwrap();
            let refused = read_body(response, MAX_JSON_BODY).await.unwrap_err();
            assert!(refused.contains("larger than the 1048576-byte limit"), "{refused}");
        }
    }

    /// A server that answers the first request on each connection and closes the connection
    /// unanswered when a second one arrives on it: what a server does whose keep-alive timeout
    /// fires just as a reused connection's request reaches it.
    async fn closes_on_reuse() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    if stream.read(&mut request).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    stream.write_all(answer.as_bytes()).await.unwrap();
                    let _ = stream.read(&mut request).await;
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn a_connection_idle_past_the_pool_timeout_is_not_reused() {
        let url = closes_on_reuse().await;
        let client = client(&Network::default(), HttpOptions::default()).unwrap();
        assert_eq!(client.get(&url).send().await.unwrap().text().await.unwrap(), "ok");
        // The pool reads tokio's clock: jump it past the idle timeout.
        tokio::time::pause();
        tokio::time::advance(POOL_IDLE_TIMEOUT + Duration::from_millis(100)).await;
        tokio::time::resume();
        let second = client.get(&url).send().await;
        assert_eq!(second.unwrap().text().await.unwrap(), "ok", "the idle connection was reused");
    }
}
