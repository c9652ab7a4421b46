//! Fast fakes of the Microsoft token endpoint and Graph on `127.0.0.1:0`, with switchable faults.
//!
//! Tokens carry the mailbox they belong to: refresh tokens are `rt:EMAIL:GEN`, access tokens
//! `at:EMAIL:GEN`. The token endpoint rotates on every refresh and is stricter than Microsoft
//! (which keeps superseded refresh tokens valid until they expire):
//!
//! ```text
//!   present rt:E:g   g == current                       ─▶ rotate: current = g+1, answer rt:E:g+1
//!                    g == current-1, and no access token of
//!                    generation `current` was ever used at Graph ─▶ the answer was lost in flight: issue it again
//!                    anything else (superseded)         ─▶ 400 invalid_grant  (counted in `rejected`)
//! ```
//!
//! The one grace is the only one a client can be held to: a daemon killed after the server
//! rotated but before the answer reached its disk never saw the new token, and may present the
//! old one again. Once the new access token has been used at Graph, the daemon has shown it
//! received the answer, and it must have stored the new refresh token before using it (SPEC:
//! durable before use): the old one is then refused, so a lost rotation shows up as
//! `needs_reauth`.
//!
//! Every request is counted; `in_flight_max` is the most requests served at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

/// How an endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Normal, fast answers.
    #[default]
    Ok,
    /// `500` with an error body.
    ServerError,
    /// `503` with `Retry-After: secs`.
    Unavailable { retry_after: u32 },
    /// `429` with `Retry-After: secs`.
    Throttled { retry_after: u32 },
    /// A normal answer after a delay.
    Slow(Duration),
    /// New connections are reset at once (the listener drops them with linger 0).
    Reset,
    /// The app's credentials are refused, as Entra answers a client whose secret expired:
    /// `401 invalid_client` with AADSTS7000222 (token endpoint only; Graph treats it as `Ok`).
    InvalidClient,
}

/// What the fakes saw. All counters only grow.
#[derive(Debug, Default)]
pub struct Stats {
    /// Token requests of any outcome, and Graph requests of any outcome.
    pub token_requests: AtomicU64,
    pub graph_requests: AtomicU64,
    /// Refreshes answered with new tokens.
    pub refreshed: AtomicU64,
    /// Refreshes refused because the token was superseded or unknown.
    pub rejected: AtomicU64,
    /// Complete checks: `/me/calendar` answered 200 (the last of the three Graph calls).
    pub checks: AtomicU64,
    /// Requests being served now, and the most ever served at once.
    pub in_flight: AtomicU64,
    pub in_flight_max: AtomicU64,
    /// Connections reset in `Mode::Reset`.
    pub resets: AtomicU64,
}

impl Stats {
    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }
}

/// Per mailbox: the current refresh token generation, whether it has been presented, and which
/// client (the tag of its token URL) was given it.
#[derive(Debug, Default, Clone)]
struct Grant {
    current: u64,
    used: bool,
    given_to: String,
}

/// A refresh token presented a second time (its answer was taken as lost and given again): by
/// whom first and by whom again. Between two live daemons of a fleet this must never happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Represented {
    pub email: String,
    pub generation: u64,
    pub first: String,
    pub again: String,
}

#[derive(Debug, Default)]
struct Shared {
    stats: Stats,
    grants: Mutex<HashMap<String, Grant>>,
    represented: Mutex<Vec<Represented>>,
    /// Refreshes answered per token URL tag.
    refreshed_by: Mutex<HashMap<String, u64>>,
    /// Token URL tags whose requests are never answered, and the mailboxes whose refresh hangs
    /// there.
    hung_tags: Mutex<HashMap<String, Vec<String>>>,
    token_mode: Mutex<Mode>,
    graph_mode: Mutex<Mode>,
    reset_all: AtomicBool,
    expires_in: AtomicU64,
}

/// The running fakes. Dropping it stops them.
#[derive(Debug)]
pub struct FakeMicrosoft {
    /// Base URL, e.g. `http://127.0.0.1:PORT`; token at `/token`, Graph at `/v1.0`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeMicrosoft {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The first refresh token of a mailbox, as seeded.
pub fn first_refresh_token(email: &str) -> String {
    format!("rt:{email}:0")
}

impl FakeMicrosoft {
    /// The `[office365]` config section that points mslinkd at these fakes (ends in a newline;
    /// the fakes accept any client id).
    pub fn office365_config(&self) -> String {
        let url = &self.url;
        format!(
            "[office365]\nclient_id = \"mslink-test\"\nauthority = \"{url}/organizations/v2.0\"\n\
             authorize_url = \"{url}/auth\"\ntoken_url = \"{url}/token\"\n\
             device_code_url = \"{url}/device\"\ngraph_url = \"{url}/v1.0\"\n"
        )
    }

    /// [`FakeMicrosoft::office365_config`], with the token URL tagged `tag`
    /// (`/token/TAG`), so the fake knows which daemon presented each refresh token.
    pub fn office365_config_tagged(&self, tag: &str) -> String {
        let url = &self.url;
        self.office365_config().replace(
            &format!("token_url = \"{url}/token\""),
            &format!("token_url = \"{url}/token/{tag}\""),
        )
    }

    /// Token requests through the URL tagged `tag` hang from now on, unanswered (as a token
    /// endpoint does behind a network that drops one machine's packets).
    pub fn hang_tag(&self, tag: &str) {
        lock(&self.shared.hung_tags).insert(tag.to_owned(), Vec::new());
    }

    /// The mailboxes whose refresh hangs at `tag` (see [`FakeMicrosoft::hang_tag`]).
    pub fn hung(&self, tag: &str) -> Vec<String> {
        lock(&self.shared.hung_tags).get(tag).cloned().unwrap_or_default()
    }

    /// Refreshes answered through the token URL tagged `tag`.
    pub fn refreshed_by(&self, tag: &str) -> u64 {
        lock(&self.shared.refreshed_by).get(tag).copied().unwrap_or(0)
    }

    /// Every refresh token presented a second time so far.
    pub fn represented(&self) -> Vec<Represented> {
        lock(&self.shared.represented).clone()
    }

    /// Starts the fakes on a free loopback port; access tokens it issues live `expires_in`.
    pub async fn start(expires_in: Duration) -> std::io::Result<FakeMicrosoft> {
        let shared = Arc::new(Shared::default());
        shared.expires_in.store(expires_in.as_secs().max(1), Ordering::SeqCst);
        let app = Router::new()
            .route("/token", post(untagged_token))
            .route("/token/{tag}", post(token))
            .route("/v1.0/me", get(me))
            .route("/v1.0/me/mailFolders/inbox", get(inbox))
            .route("/v1.0/me/calendar", get(calendar))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let listener = ResettingListener { inner: listener, shared: shared.clone() };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeMicrosoft { url, shared, task })
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Switches how the token endpoint answers.
    pub fn set_token_mode(&self, mode: Mode) {
        *lock(&self.shared.token_mode) = mode;
        self.update_reset();
    }

    /// Switches how Graph answers.
    pub fn set_graph_mode(&self, mode: Mode) {
        *lock(&self.shared.graph_mode) = mode;
        self.update_reset();
    }

    fn update_reset(&self) {
        let reset = *lock(&self.shared.token_mode) == Mode::Reset
            || *lock(&self.shared.graph_mode) == Mode::Reset;
        self.shared.reset_all.store(reset, Ordering::SeqCst);
    }

    /// The refresh token generation the fake considers current for `email` (0 if never refreshed).
    pub fn generation(&self, email: &str) -> u64 {
        lock(&self.shared.grants).get(email).map_or(0, |g| g.current)
    }

    /// Makes the token endpoint treat `email`'s refresh token as starting at generation 0.
    pub fn forget(&self, email: &str) {
        lock(&self.shared.grants).remove(email);
    }
}

/// A JSON answer (axum's `json` feature stays off: the daemon does not need it).
fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

/// An `application/x-www-form-urlencoded` body as pairs.
fn form_pairs(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts a request in flight for as long as it lives.
struct InFlight<'a>(&'a Stats);

impl<'a> InFlight<'a> {
    fn new(stats: &'a Stats) -> Self {
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.in_flight_max.fetch_max(now, Ordering::SeqCst);
        InFlight(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The fault a mode stands for, as a response; `None`: answer normally (after any delay).
async fn fault(mode: Mode, oauth: bool) -> Option<Response> {
    let body = |code: &str| {
        if oauth {
            json!({"error": if code == "TooManyRequests" { "temporarily_unavailable" } else { "server_error" },
                   "error_description": format!("AADSTS90000: fake {code}")})
        } else {
            json!({"error": {"code": code, "message": "fake fault"}})
        }
    };
    let with_retry = |status: StatusCode, secs: u32, code: &str| {
        let mut response = json_response(status, &body(code));
        if let Ok(value) = secs.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    };
    match mode {
        Mode::Ok | Mode::Reset => None,
        Mode::InvalidClient if !oauth => None,
        Mode::InvalidClient => Some(json_response(
            StatusCode::UNAUTHORIZED,
            &json!({
                "error": "invalid_client",
                "error_description": "AADSTS7000222: The provided client secret keys for app \
                    'mslink-bench' are expired. Visit the Azure portal to create new keys for \
                    your app. Trace ID: 0000 Correlation ID: 0000 Timestamp: 2026-12-01 00:00:00Z",
                "error_codes": [7000222],
                "trace_id": "00000000-0000-0000-0000-000000000000",
                "correlation_id": "00000000-0000-0000-0000-000000000000",
            }),
        )),
        Mode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            None
        }
        Mode::ServerError => {
            Some(json_response(StatusCode::INTERNAL_SERVER_ERROR, &body("InternalServerError")))
        }
        Mode::Unavailable { retry_after } => {
            Some(with_retry(StatusCode::SERVICE_UNAVAILABLE, retry_after, "ServiceUnavailable"))
        }
        Mode::Throttled { retry_after } => {
            Some(with_retry(StatusCode::TOO_MANY_REQUESTS, retry_after, "TooManyRequests"))
        }
    }
}

async fn untagged_token(state: State<Arc<Shared>>, body: String) -> Response {
    token(state, axum::extract::Path(String::new()), body).await
}

async fn token(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(tag): axum::extract::Path<String>,
    body: String,
) -> Response {
    let form = form_pairs(&body);
    let stats = &shared.stats;
    stats.token_requests.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlight::new(stats);
    let mode = *lock(&shared.token_mode);
    if let Some(response) = fault(mode, true).await {
        return response;
    }
    let invalid = |why: &str| {
        stats.rejected.fetch_add(1, Ordering::SeqCst);
        json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_grant",
                    "error_description": format!("AADSTS70000: {why}"),
                    "error_codes": [70000]}),
        )
    };
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return invalid("only refresh_token grants are faked");
    }
    let Some((email, generation)) = form.get("refresh_token").and_then(|t| parse_token(t, "rt"))
    else {
        return invalid("malformed refresh token");
    };
    let hangs = lock(&shared.hung_tags).get_mut(&tag).map(|hung| hung.push(email.to_owned()));
    if hangs.is_some() {
        std::future::pending::<()>().await;
    }
    let next = {
        let mut grants = lock(&shared.grants);
        let grant = grants.entry(email.to_owned()).or_default();
        let lost_answer = grant.current > 0 && generation == grant.current - 1 && !grant.used;
        if lost_answer {
            lock(&shared.represented).push(Represented {
                email: email.to_owned(),
                generation,
                first: grant.given_to.clone(),
                again: tag.clone(),
            });
        }
        if generation == grant.current || lost_answer {
            grant.current = generation + 1;
            grant.used = false;
            *lock(&shared.refreshed_by).entry(tag.clone()).or_default() += 1;
            grant.given_to = tag;
            Some(grant.current)
        } else {
            None
        }
    };
    let Some(next) = next else {
        return invalid("the refresh token was superseded by a newer one");
    };
    stats.refreshed.fetch_add(1, Ordering::SeqCst);
    json_response(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "access_token": format!("at:{email}:{next}"),
            "refresh_token": format!("rt:{email}:{next}"),
            "expires_in": shared.expires_in.load(Ordering::SeqCst),
            "scope": "offline_access User.Read Mail.Read Calendars.Read",
        }),
    )
}

fn parse_token<'t>(token: &'t str, kind: &str) -> Option<(&'t str, u64)> {
    let rest = token.strip_prefix(kind)?.strip_prefix(':')?;
    let (email, generation) = rest.rsplit_once(':')?;
    Some((email, generation.parse().ok()?))
}

/// The mailbox a Graph request's bearer token belongs to, or the 401 Graph answers.
async fn graph_caller(shared: &Shared, headers: &HeaderMap) -> Result<String, Response> {
    shared.stats.graph_requests.fetch_add(1, Ordering::SeqCst);
    let mode = *lock(&shared.graph_mode);
    if let Some(response) = fault(mode, false).await {
        return Err(response);
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| parse_token(t, "at"))
        .map(|(email, generation)| {
            // Using the access token proves the answer that carried it arrived.
            if let Some(grant) = lock(&shared.grants).get_mut(email)
                && grant.current == generation
            {
                grant.used = true;
            }
            email.to_owned()
        })
        .ok_or_else(|| {
            json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"error": {"code": "InvalidAuthenticationToken",
                                  "message": "Access token is empty."}}),
            )
        })
}

async fn me(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let _guard = InFlight::new(&shared.stats);
    match graph_caller(&shared, &headers).await {
        Ok(email) => {
            json_response(StatusCode::OK, &json!({"mail": email, "userPrincipalName": email}))
        }
        Err(response) => response,
    }
}

async fn inbox(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let _guard = InFlight::new(&shared.stats);
    match graph_caller(&shared, &headers).await {
        Ok(_) => {
            json_response(StatusCode::OK, &json!({"totalItemCount": 42, "unreadItemCount": 3}))
        }
        Err(response) => response,
    }
}

async fn calendar(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let _guard = InFlight::new(&shared.stats);
    match graph_caller(&shared, &headers).await {
        Ok(_) => {
            shared.stats.checks.fetch_add(1, Ordering::SeqCst);
            json_response(StatusCode::OK, &json!({"id": "calendar"}))
        }
        Err(response) => response,
    }
}

/// A TCP listener that, while a `Reset` mode is on, resets every connection: new ones at once,
/// and kept-alive ones at their next read (linger 0, so the client sees an RST, not a FIN).
struct ResettingListener {
    inner: tokio::net::TcpListener,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for ResettingListener {
    type Io = ResettingStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let stream = ResettingStream { inner: stream, shared: self.shared.clone() };
            if stream.reset_now() {
                continue;
            }
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A served connection that fails its next read while a `Reset` mode is on.
struct ResettingStream {
    inner: tokio::net::TcpStream,
    shared: Arc<Shared>,
}

impl ResettingStream {
    /// True (and the socket set to close with an RST) when a `Reset` mode is on.
    fn reset_now(&self) -> bool {
        if !self.shared.reset_all.load(Ordering::SeqCst) {
            return false;
        }
        self.shared.stats.resets.fetch_add(1, Ordering::SeqCst);
        #[allow(deprecated)] // linger 0 is the point: an RST, not a FIN
        let _ = self.inner.set_linger(Some(Duration::ZERO));
        true
    }
}

impl tokio::io::AsyncRead for ResettingStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.reset_now() {
            return std::task::Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ResettingStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
