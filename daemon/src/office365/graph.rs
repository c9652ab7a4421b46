//! The connectivity check through Microsoft Graph v1.0 (SPEC §7): `/me` (whose mailbox is it?),
//! the inbox (total and unread counts) and the calendar.
//!
//! ```text
//!   GET /me ── mail/UPN != email ──▶ WrongMailbox (NoMailboxSignedIn when /me has no mail)
//!      │ ok
//!   GET /me/mailFolders/inbox ──▶ counts;  MailboxNotEnabledForRESTAPI ──▶ MailboxNotInExchangeOnline
//!                                           (on-premises or unlicensed: names `--provider exchange`)
//!   GET /me/calendar ── 403/404 ──▶ calendar_ok = false (the check still passes)
//!   any 401 ──▶ TokenRejected (refresh, retry once; a CAE claims challenge rides along)
//!   429/5xx ──▶ Graph (transient, Retry-After)
//! ```

use std::time::SystemTime;

use mslink_proto::Sensitive;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tracing::instrument;

use super::error::Office365Error;
use super::http::{error_chain, retry_after};
use crate::config::Config;
use crate::health::CheckReport;
use crate::net::{self, HttpOptions};

const GRAPH: &str = "Microsoft Graph";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Me {
    mail: Option<String>,
    user_principal_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Folder {
    total_item_count: Option<u64>,
    unread_item_count: Option<u64>,
}

#[derive(Deserialize)]
struct GraphErrorBody {
    error: GraphErrorInner,
}

#[derive(Deserialize)]
struct GraphErrorInner {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Checks the mailbox behind `access_token` is `email` and that mail and calendar answer.
#[instrument(skip(config, access_token))]
pub async fn check(
    config: &Config,
    access_token: &Sensitive,
    email: &str,
) -> Result<CheckReport, Office365Error> {
    let client = net::client(&config.network, HttpOptions::default())?;
    let graph = Graph {
        client,
        base: config.office365.graph_url.as_str().trim_end_matches('/'),
        token: access_token,
    };

    let me: Me = graph.get("/me", "$select=mail,userPrincipalName").await?;
    let matches = |address: &Option<String>| {
        address.as_deref().is_some_and(|a| a.trim().eq_ignore_ascii_case(email.trim()))
    };
    if !matches(&me.mail) && !matches(&me.user_principal_name) {
        let expected = email.to_owned();
        return Err(match (me.mail, me.user_principal_name) {
            (Some(actual), _) => Office365Error::WrongMailbox { expected, actual },
            (None, upn) => Office365Error::NoMailboxSignedIn {
                expected,
                actual: upn.unwrap_or_else(|| "an unnamed account".into()),
            },
        });
    }

    // A user whose mailbox is on-premises (hybrid) or unlicensed has a `/me` but no Exchange
    // Online mailbox: Graph answers the mailbox paths with `MailboxNotEnabledForRESTAPI`. That
    // is a wrong provider guess, and the reason says so.
    let not_in_exchange_online = |e: Office365Error| match e {
        Office365Error::Graph { path, code, message, .. }
            if code == "MailboxNotEnabledForRESTAPI" =>
        {
            Office365Error::MailboxNotInExchangeOnline {
                email: email.to_owned(),
                path,
                code,
                message,
            }
        }
        e => e,
    };
    let inbox: Folder = graph
        .get("/me/mailFolders/inbox", "$select=totalItemCount,unreadItemCount")
        .await
        .map_err(not_in_exchange_online)?;

    let calendar_ok = match graph.get::<serde_json::Value>("/me/calendar", "$select=id").await {
        Ok(_) => true,
        Err(Office365Error::Graph { status: 403 | 404, ref code, .. }) => {
            tracing::warn!(link = %email, code = %code, "the calendar is not reachable");
            false
        }
        Err(e) => return Err(e),
    };

    Ok(CheckReport {
        inbox_total: inbox.total_item_count,
        inbox_unread: inbox.unread_item_count,
        calendar_ok,
        server_version: None,
    })
}

struct Graph<'a> {
    client: reqwest::Client,
    base: &'a str,
    token: &'a Sensitive,
}

impl Graph<'_> {
    async fn get<T: DeserializeOwned>(&self, path: &str, query: &str) -> Result<T, Office365Error> {
        let url = format!("{}{path}?{query}", self.base);
        let response = self
            .client
            .get(&url)
            .bearer_auth(self.token.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| Office365Error::Unavailable {
                endpoint: GRAPH,
                status: None,
                detail: error_chain(&e),
                retry_after: None,
            })?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers(), SystemTime::now());
        let claims = super::claims::challenge(
            response
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let body =
            crate::net::read_body(response, crate::net::MAX_JSON_BODY).await.map_err(|detail| {
                Office365Error::Unavailable {
                    endpoint: GRAPH,
                    status: Some(status),
                    detail,
                    retry_after: wait,
                }
            })?;
        if status == 200 {
            return serde_json::from_slice(&body).map_err(|e| Office365Error::Protocol {
                endpoint: GRAPH,
                detail: format!("{path}: {e}"),
            });
        }
        let (code, message) = error_fields(&body, status);
        if status == 401 {
            return Err(Office365Error::TokenRejected {
                message: if code.is_empty() { message } else { format!("{code}: {message}") },
                claims,
            });
        }
        Err(Office365Error::Graph {
            path: path.to_owned(),
            status,
            code,
            message,
            retry_after: wait,
        })
    }
}

/// Graph's error `code` and `message` from an error answer's body, bounded (they end up in the
/// link's stored reason), or a note that the body was not Graph's. Public only for the fuzz
/// targets.
#[doc(hidden)]
pub fn error_fields(body: &[u8], status: u16) -> (String, String) {
    use crate::text::clean;
    match serde_json::from_slice::<GraphErrorBody>(body) {
        Ok(GraphErrorBody { error }) => (clean(&error.code, 100), clean(&error.message, 300)),
        Err(_) => (String::new(), format!("HTTP {status} without a Graph error body")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any error body, Graph's or not, gives bounded fields without panicking.
        #[test]
        fn error_bodies_give_bounded_fields(
            code in "\\PC{0,400}",
            message in "\\PC{0,2000}",
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            status in 100u16..600,
        ) {
            let graph = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
            for body in [graph.as_bytes(), junk.as_slice()] {
                let (code, message) = error_fields(body, status);
                proptest::prop_assert!(code.chars().count() <= 101 && message.chars().count() <= 301);
            }
        }
    }

    fn vector(name: &str) -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors/graph/");
        std::fs::read_to_string(format!("{path}{name}")).unwrap()
    }

    /// The body of a documented `.http` sample: everything after the first `{`.
    fn body_of(text: &str) -> &str {
        &text[text.find('{').unwrap()..]
    }

    #[test]
    fn microsofts_samples_parse() {
        let me: Me = serde_json::from_str(body_of(&vector("graph_get_me_response.http"))).unwrap();
        assert_eq!(me.mail.as_deref(), Some("AdeleV@contoso.com"));
        let inbox: Folder =
            serde_json::from_str(body_of(&vector("graph_get_mailfolder_inbox_response.http")))
                .unwrap();
        assert_eq!((inbox.total_item_count, inbox.unread_item_count), (Some(60), Some(59)));
        let error: GraphErrorBody =
            serde_json::from_str(&vector("graph_404_MailboxNotEnabledForRESTAPI.json")).unwrap();
        assert_eq!(error.error.code, "MailboxNotEnabledForRESTAPI");
        let throttled: GraphErrorBody =
            serde_json::from_str(body_of(&vector("graph_429_throttled.http"))).unwrap();
        assert_eq!(throttled.error.code, "TooManyRequests");
    }
}
