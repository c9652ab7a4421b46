//! The end of the authorization-code flow: the loopback listener that catches the browser's
//! redirect, and the parser for a redirect URL the user pasted back.
//!
//! ```text
//!   browser ──GET /callback?code&state──▶ handler ── state ok, first use ──▶ flow (mpsc)
//!      ▲                                     │                                  │ exchange code
//!      └──────── "You can close this window" ◀───────── page (oneshot) ◀───────┘
//!   wrong or missing state, second use, other paths: an error page; the flow keeps waiting.
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::error::{OAuthErrorBody, Office365Error};

/// The query of a redirect to the redirect URI. `code` is a secret: no `Debug`.
#[derive(Default, Deserialize)]
pub(crate) struct RedirectParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub error_uri: Option<String>,
}

impl RedirectParams {
    /// The authorization code, or what the redirect says went wrong. The state was checked.
    pub fn into_code(self) -> Result<String, Office365Error> {
        if let Some(error) = self.error {
            if error == "access_denied" {
                return Err(Office365Error::Declined { detail: self.error_description });
            }
            return Err(Office365Error::OAuth {
                endpoint: "the authorization endpoint",
                status: 400,
                body: Box::new(OAuthErrorBody {
                    error,
                    error_description: self.error_description,
                    error_uri: self.error_uri,
                    ..OAuthErrorBody::default()
                }),
                retry_after: None,
                admin_consent: None,
            });
        }
        self.code.filter(|c| !c.is_empty()).ok_or_else(|| {
            Office365Error::BadRedirect("the redirect carries neither a code nor an error".into())
        })
    }
}

/// A callback the flow must answer with the page the browser shows.
pub(crate) struct Callback {
    pub params: RedirectParams,
    pub reply: oneshot::Sender<Page>,
}

/// What the browser shows after the redirect.
#[derive(Debug)]
pub(crate) struct Page {
    pub ok: bool,
    pub message: String,
}

/// The running loopback listener.
#[derive(Debug)]
pub(crate) struct Catcher {
    callbacks: mpsc::Receiver<Callback>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    state: String,
    used: AtomicBool,
    callbacks: mpsc::Sender<Callback>,
}

impl Catcher {
    /// Serves `/callback` on `listener`, accepting only `state`, once.
    pub fn start(listener: TcpListener, state: String) -> Catcher {
        let (tx, rx) = mpsc::channel(1);
        let shared = Arc::new(Shared { state, used: AtomicBool::new(false), callbacks: tx });
        let router = axum::Router::new()
            .route("/callback", axum::routing::get(callback))
            .fallback(|| async { (StatusCode::NOT_FOUND, page(false, "Not found.")) })
            .with_state(shared);
        let stop = CancellationToken::new();
        let server = tokio::spawn({
            let stop = stop.clone();
            async move {
                let serve =
                    axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned());
                if let Err(e) = serve.await {
                    tracing::warn!(error = %e, "the sign-in redirect listener failed");
                }
            }
        });
        Catcher { callbacks: rx, stop, server }
    }

    /// The next callback with the right state.
    pub async fn next(&mut self) -> Option<Callback> {
        self.callbacks.recv().await
    }

    /// Stops listening; an answer already on its way still reaches the browser.
    pub async fn stop(self) {
        self.stop.cancel();
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(2), &mut server).await.is_err() {
            server.abort();
        }
    }
}

async fn callback(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<RedirectParams>,
) -> Response {
    if params.state.as_deref() != Some(shared.state.as_str()) {
        tracing::warn!("sign-in redirect with a missing or wrong state refused");
        return (
            StatusCode::BAD_REQUEST,
            page(false, "This sign-in response does not belong to the sign-in mslink is waiting for. Start again with mslinkctl connect."),
        )
            .into_response();
    }
    if shared.used.swap(true, Ordering::SeqCst) {
        return (StatusCode::CONFLICT, page(false, "This sign-in response was already used."))
            .into_response();
    }
    let (reply, answer) = oneshot::channel();
    if shared.callbacks.send(Callback { params, reply }).await.is_err() {
        return (StatusCode::GONE, page(false, "mslink is no longer waiting for this sign-in."))
            .into_response();
    }
    match tokio::time::timeout(Duration::from_secs(60), answer).await {
        Ok(Ok(Page { ok, message })) => {
            let status = if ok { StatusCode::OK } else { StatusCode::BAD_REQUEST };
            (status, page(ok, &message)).into_response()
        }
        _ => (StatusCode::GONE, page(false, "mslink stopped waiting for this sign-in."))
            .into_response(),
    }
}

fn page(ok: bool, message: &str) -> Html<String> {
    let title = if ok { "Signed in" } else { "Sign-in not completed" };
    let escaped = message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mslink: {title}</title></head>\
         <body><h1>{title}</h1><p>{escaped}</p></body></html>"
    ))
}

/// Parses a redirect URL the user pasted back (`--paste`), checking it is a redirect to
/// `redirect_uri` and carries `state`.
pub(crate) fn parse_pasted(
    text: &str,
    redirect_uri: &url::Url,
    state: &str,
) -> Result<RedirectParams, Office365Error> {
    let hint = format!("it should start with {redirect_uri}?");
    let url = url::Url::parse(text.trim()).map_err(|_| {
        Office365Error::BadRedirect(format!("the pasted text is not a URL ({hint})"))
    })?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if url.scheme() != redirect_uri.scheme() || !loopback || url.path() != redirect_uri.path() {
        return Err(Office365Error::BadRedirect(format!(
            "the pasted URL is not the sign-in redirect ({hint})"
        )));
    }
    let params: RedirectParams = serde_urlencoded_query(&url);
    match params.state.as_deref() {
        Some(s) if s == state => Ok(params),
        Some(_) => Err(Office365Error::BadRedirect(
            "the pasted URL belongs to another sign-in attempt (its state does not match); \
             paste the URL from this attempt"
                .into(),
        )),
        None => Err(Office365Error::BadRedirect(format!(
            "the pasted URL has no state: paste the whole URL ({hint})"
        ))),
    }
}

fn serde_urlencoded_query(url: &url::Url) -> RedirectParams {
    let mut params = RedirectParams::default();
    for (key, value) in url.query_pairs() {
        let value = Some(value.into_owned());
        match key.as_ref() {
            "code" => params.code = value,
            "state" => params.state = value,
            "error" => params.error = value,
            "error_description" => params.error_description = value,
            "error_uri" => params.error_uri = value,
            _ => {}
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect() -> url::Url {
        url::Url::parse("http://localhost/callback").unwrap()
    }

    #[test]
    fn a_pasted_redirect_gives_its_code() {
        let p =
            parse_pasted(" http://localhost:4711/callback?code=abc&state=s1 \n", &redirect(), "s1")
                .unwrap();
        assert_eq!(p.into_code().unwrap(), "abc");
    }

    #[test]
    fn a_pasted_decline_is_declined() {
        let p = parse_pasted(
            "http://localhost/callback?error=access_denied&error_description=the+user+canceled&state=s1",
            &redirect(),
            "s1",
        )
        .unwrap();
        assert!(matches!(p.into_code(), Err(Office365Error::Declined { .. })));
    }

    #[test]
    fn pasted_text_that_is_not_the_redirect_is_refused() {
        for text in [
            "hello",
            "https://login.microsoftonline.com/x/oauth2/v2.0/authorize?state=s1",
            "http://localhost/other?code=a&state=s1",
        ] {
            let e = parse_pasted(text, &redirect(), "s1").err().unwrap();
            assert!(e.to_string().contains("http://localhost/callback"), "{e}");
        }
        let e = parse_pasted("http://localhost/callback?code=a&state=old", &redirect(), "s1")
            .err()
            .unwrap();
        assert!(e.to_string().contains("state does not match"), "{e}");
    }
}
