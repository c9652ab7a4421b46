//! The bridge between `oauth2` and the project's one reqwest client (STACK.md: oauth2 5 pins
//! reqwest 0.12, so its own client is off and this adapter carries its requests).
//!
//! `oauth2` hands back only the body of an error response, and for the device flow only the
//! RFC 8628 fields of it. Classification also needs the status, `Retry-After` (SPEC §4) and
//! Microsoft's `error_codes` / `suberror`, so the adapter remembers the status, the wait and an
//! error answer's body for the last response it saw.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use oauth2::http;
use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};

/// What classification needs from the last response, beyond its body.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ResponseMeta {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The body of an error answer (status 400 and up), at most [`MAX_ERROR_BODY`] bytes.
    /// Error answers carry no tokens.
    pub error_body: Option<Vec<u8>>,
}

/// More than any OAuth error body Microsoft sends; a longer one is not kept.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// A transport failure (no HTTP response at all).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TransportError(pub String);

/// `oauth2`'s HTTP client: the project's reqwest client plus the last response's meta.
///
/// Ownership: `last` is written after each response and read after the `oauth2` call returns;
/// the lock is never held across `.await`.
#[derive(Debug)]
pub(crate) struct OAuthHttp {
    client: reqwest::Client,
    last: Mutex<Option<ResponseMeta>>,
}

impl OAuthHttp {
    pub fn new(client: reqwest::Client) -> OAuthHttp {
        OAuthHttp { client, last: Mutex::new(None) }
    }

    /// Status and Retry-After of the last response (`None`: no response yet, or a transport
    /// failure).
    pub fn last(&self) -> Option<ResponseMeta> {
        self.last.lock().unwrap_or_else(|poison| poison.into_inner()).clone()
    }

    fn remember(&self, meta: Option<ResponseMeta>) {
        *self.last.lock().unwrap_or_else(|poison| poison.into_inner()) = meta;
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        self.remember(None);
        let request = reqwest::Request::try_from(request)
            .map_err(|e| TransportError(format!("cannot build the request: {e}")))?;
        let url = request.url().clone();
        let response = self.client.execute(request).await.map_err(|e| {
            TransportError(format!("cannot reach {}: {}", origin(&url), error_chain(&e)))
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut meta = ResponseMeta {
            status: status.as_u16(),
            retry_after: retry_after(&headers, SystemTime::now()),
            error_body: None,
        };
        self.remember(Some(meta.clone()));
        let body = crate::net::read_body(response, crate::net::MAX_JSON_BODY)
            .await
            .map_err(|e| TransportError(format!("reading the answer of {}: {e}", origin(&url))))?;
        if status.as_u16() >= 400 && body.len() <= MAX_ERROR_BODY {
            meta.error_body = Some(body.clone());
            self.remember(Some(meta));
        }
        let mut builder = http::Response::builder().status(status);
        if let Some(h) = builder.headers_mut() {
            *h = headers;
        }
        builder
            .body(body)
            .map_err(|e| TransportError(format!("bad response from {}: {e}", origin(&url))))
    }
}

impl<'c> AsyncHttpClient<'c> for OAuthHttp {
    type Error = TransportError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, TransportError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// `scheme://host:port` of a URL: enough to say where, never a query string (codes, tokens).
pub(crate) fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

pub(crate) use crate::net::error_chain;

/// `Retry-After` as a wait: whole or fractional seconds (Graph sends `2.128`), or an HTTP date.
/// Unparseable or negative values are ignored; a date in the past means no wait.
pub(crate) fn retry_after(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    parse_retry_after(value, now)
}

pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(MAX_RETRY_AFTER.as_secs_f64())));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
}

/// The longest wait a server may impose: a day, so a bogus date cannot park a link for years.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_fractions_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("2.128", now), Some(Duration::from_millis(2128)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(MAX_RETRY_AFTER),
            "a date far ahead is capped like a number"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever the header says, the wait is at most a day and parsing never panics.
        #[test]
        fn retry_after_is_bounded(value in "\\PC{0,40}", ahead in proptest::prelude::any::<u32>()) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            let date = httpdate::fmt_http_date(now + Duration::from_secs(u64::from(ahead)));
            for value in [value.as_str(), date.as_str()] {
                if let Some(wait) = parse_retry_after(value, now) {
                    proptest::prop_assert!(wait <= MAX_RETRY_AFTER, "{value:?} gave {wait:?}");
                }
            }
        }
    }
}
