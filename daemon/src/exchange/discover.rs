//! Finding the EWS URL of a mailbox with POX Autodiscover (MS-OXDSCLI), in Outlook's order.
//!
//! ```text
//!   for the address's DOMAIN:
//!     1. POST https://DOMAIN/autodiscover/autodiscover.xml
//!     2. POST https://autodiscover.DOMAIN/autodiscover/autodiscover.xml
//!     3. GET  http://autodiscover.DOMAIN/autodiscover/autodiscover.xml (no credentials)
//!          └─ 301/302/307/308 to an https:// URL ─▶ POST there
//!     4. SRV  _autodiscover._tcp.DOMAIN ─▶ POST https://TARGET[:PORT]/autodiscover/autodiscover.xml
//!   answers:  settings ─▶ EwsUrl (EXCH, else EXPR)       error / unreachable ─▶ next candidate
//!             redirectUrl ─▶ POST there next (https only) redirectAddr ─▶ start over for that address
//!             401 after credentials ─▶ stop (the password is wrong; don't lock the account)
//!   redirects of any kind: at most MAX_REDIRECTS in all
//! ```

use std::collections::VecDeque;

use url::Url;

use super::ExchangeError;
use super::autodiscover::{self, AutodiscoverResponse, ProtocolKind};
use super::client::{Session, host_of, send};
use crate::config::Config;
use crate::dns::Dns;
use crate::interaction::Interaction;
use crate::net::{self, HttpOptions};

/// Most redirects (addresses, URLs, HTTP, SRV) followed in one discovery.
pub const MAX_REDIRECTS: usize = 10;

/// What Autodiscover found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub ews_url: Url,
    /// The address Autodiscover ended on (after redirectAddr answers).
    pub email: String,
}

enum Step {
    Post(Url),
    HttpRedirect(String),
    Srv(String),
}

fn pox_url(host: &str, port: Option<u16>) -> Option<Url> {
    let authority = match port {
        Some(port) if port != 443 => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    Url::parse(&format!("https://{authority}/autodiscover/autodiscover.xml")).ok()
}

fn candidates(domain: &str) -> VecDeque<Step> {
    let mut steps: VecDeque<Step> =
        [pox_url(domain, None), pox_url(&format!("autodiscover.{domain}"), None)]
            .into_iter()
            .flatten()
            .map(Step::Post)
            .collect();
    steps.push_back(Step::HttpRedirect(domain.to_owned()));
    steps.push_back(Step::Srv(domain.to_owned()));
    steps
}

/// The domain part of an address, lower-cased.
pub fn domain_of(email: &str) -> Option<String> {
    let (_, domain) = email.rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty() && !domain.contains(['/', '\\', ':', ' ', '?', '#'])).then_some(domain)
}

/// Runs Autodiscover for `email` with `session`'s credentials.
#[tracing::instrument(level = "debug", skip_all, fields(email = %email))]
pub async fn discover(
    config: &Config,
    session: &mut Session<'_>,
    email: &str,
    interaction: &Interaction,
) -> Result<Discovered, ExchangeError> {
    let mut email = email.to_owned();
    let mut domain =
        domain_of(&email).ok_or_else(|| ExchangeError::InvalidAddress { email: email.clone() })?;
    let mut steps = candidates(&domain);
    let mut redirects = 0usize;
    let mut tried: Vec<String> = Vec::new();
    let mut certificate_error: Option<ExchangeError> = None;
    let mut count_redirect = |domain: &str| {
        redirects += 1;
        if redirects > MAX_REDIRECTS {
            Err(ExchangeError::TooManyRedirects { domain: domain.to_owned() })
        } else {
            Ok(())
        }
    };
    let plain = net::client(&config.network, HttpOptions::default())
        .map_err(|e| ExchangeError::Config { detail: e.to_string() })?;

    while let Some(step) = steps.pop_front() {
        match step {
            Step::Post(url) => {
                interaction.step(format!("Trying Autodiscover at {}", host_of(&url))).await;
                let outcome = match session
                    .post_xml(&url, &autodiscover::request_body(&email))
                    .await
                {
                    Ok(reply) if reply.status.is_success() => {
                        autodiscover::parse_response(&reply.body).map_err(|e| {
                            ExchangeError::Protocol { server: host_of(&url), detail: e.to_string() }
                        })
                    }
                    Ok(reply) => Err(ExchangeError::Http {
                        server: host_of(&url),
                        status: reply.status.as_u16(),
                        retry_after: reply.retry_after(),
                    }),
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(AutodiscoverResponse::Settings(settings)) => {
                        if settings.microsoft_online == Some(true) {
                            return Err(ExchangeError::ExchangeOnline { email });
                        }
                        let ews = settings.ews_url.clone().or_else(|| {
                            [ProtocolKind::Exch, ProtocolKind::Expr].iter().find_map(|kind| {
                                settings
                                    .protocols
                                    .iter()
                                    .find(|p| &p.kind == kind)
                                    .and_then(|p| p.as_url.clone())
                            })
                        });
                        match ews.as_deref().map(Url::parse) {
                            Some(Ok(ews_url)) => {
                                tracing::info!(ews_url = %ews_url, "Autodiscover found EWS");
                                return Ok(Discovered { ews_url, email });
                            }
                            _ => tried.push(format!("{}: no EwsUrl in the answer", host_of(&url))),
                        }
                    }
                    Ok(AutodiscoverResponse::RedirectAddr(address)) => {
                        count_redirect(&domain)?;
                        let next = domain_of(&address).ok_or_else(|| ExchangeError::Protocol {
                            server: host_of(&url),
                            detail: format!("redirectAddr to an invalid address `{address}`"),
                        })?;
                        tracing::info!(to = %address, "Autodiscover redirectAddr");
                        email = address;
                        domain = next;
                        steps = candidates(&domain);
                    }
                    Ok(AutodiscoverResponse::RedirectUrl(target)) => {
                        count_redirect(&domain)?;
                        match Url::parse(&target) {
                            Ok(next) if next.scheme() == "https" => {
                                steps.push_front(Step::Post(next))
                            }
                            _ => tried.push(format!(
                                "{}: refused redirectUrl to a non-https URL",
                                host_of(&url)
                            )),
                        }
                    }
                    Ok(AutodiscoverResponse::Error { code, message }) => {
                        tried.push(format!(
                            "{}: Autodiscover error {code} {message}",
                            host_of(&url)
                        ));
                    }
                    Err(e @ (ExchangeError::Rejected { .. } | ExchangeError::Config { .. })) => {
                        return Err(e);
                    }
                    Err(e @ ExchangeError::Certificate { .. }) => {
                        tried.push(e.to_string());
                        certificate_error.get_or_insert(e);
                    }
                    Err(e) => tried.push(e.to_string()),
                }
            }
            Step::HttpRedirect(domain) => {
                let Ok(url) = Url::parse(&format!(
                    "http://autodiscover.{domain}/autodiscover/autodiscover.xml"
                )) else {
                    continue;
                };
                interaction
                    .step(format!("Trying the Autodiscover redirect at {}", host_of(&url)))
                    .await;
                // No credentials: this request is plain HTTP.
                match send(plain.get(url.clone()), &host_of(&url)).await {
                    Ok((reply, _)) if reply.status.is_redirection() => {
                        let location = reply
                            .headers
                            .get(reqwest::header::LOCATION)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| url.join(v).ok());
                        match location {
                            Some(next) if next.scheme() == "https" => {
                                count_redirect(&domain)?;
                                tracing::info!(to = %next, "Autodiscover HTTP redirect");
                                steps.push_front(Step::Post(next));
                            }
                            _ => tried.push(format!(
                                "{}: HTTP redirect not to an https:// URL (ignored)",
                                host_of(&url)
                            )),
                        }
                    }
                    Ok((reply, _)) => {
                        tried.push(format!("{}: HTTP {}", host_of(&url), reply.status))
                    }
                    Err(e) => tried.push(e.to_string()),
                }
            }
            Step::Srv(domain) => {
                let name = format!("_autodiscover._tcp.{domain}");
                interaction.step(format!("Looking up DNS SRV {name}")).await;
                let dns = Dns::new(&config.network, std::time::Duration::from_secs(5))
                    .map_err(|e| ExchangeError::Config { detail: e.to_string() })?;
                match dns.srv(&name).await {
                    Ok(targets) if targets.is_empty() => {
                        tried.push(format!("{name}: no SRV record"))
                    }
                    Ok(targets) => {
                        count_redirect(&domain)?;
                        for target in targets.iter().rev() {
                            if let Some(url) = pox_url(&target.host, Some(target.port)) {
                                steps.push_front(Step::Post(url));
                            }
                        }
                    }
                    Err(e) => tried.push(e.to_string()),
                }
            }
        }
    }
    if let Some(e) = certificate_error {
        return Err(e);
    }
    Err(ExchangeError::NotDiscovered { domain, tried })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_comes_from_the_address() {
        assert_eq!(domain_of("Alice@Contoso.Test").as_deref(), Some("contoso.test"));
        assert_eq!(domain_of("alice"), None);
        assert_eq!(domain_of("alice@evil.test/x"), None);
    }

    #[test]
    fn candidates_follow_outlooks_order() {
        let steps = candidates("contoso.test");
        let names: Vec<String> = steps
            .iter()
            .map(|s| match s {
                Step::Post(url) => url.to_string(),
                Step::HttpRedirect(d) => format!("http-redirect {d}"),
                Step::Srv(d) => format!("srv {d}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "https://contoso.test/autodiscover/autodiscover.xml",
                "https://autodiscover.contoso.test/autodiscover/autodiscover.xml",
                "http-redirect contoso.test",
                "srv contoso.test",
            ]
        );
    }
}
