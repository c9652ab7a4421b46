//! Finding the EWS URL of a mailbox with POX Autodiscover (MS-OXDSCLI), in Outlook's order.
//!
//! ```text
//!   for the address's DOMAIN:
//!     1. POST https://DOMAIN/autodiscover/autodiscover.xml                        (vouched)
//!     2. POST https://autodiscover.DOMAIN/autodiscover/autodiscover.xml           (vouched)
//!     3. GET  http://autodiscover.DOMAIN/autodiscover/autodiscover.xml (no credentials)
//!          └─ 301/302/307/308 to an https:// URL ─▶ vouch(host) ─▶ POST there
//!     4. SRV  _autodiscover._tcp.DOMAIN ─▶ vouch(TARGET) ─▶ POST https://TARGET[:PORT]/autodiscover/…
//!   vouch(host): DOMAIN or a subdomain of it ─▶ go on
//!                else (unauthenticated hop out of the domain): --trust-server HOST ─▶ go on
//!                     interactive ctl ─Confirm─▶ yes ─▶ go on | no ─▶ skip it
//!                     otherwise ─▶ skip it; nothing is sent to the host, not even a request
//!   answers:  settings ─▶ EwsUrl (EXCH, else EXPR)       error / unreachable ─▶ next candidate
//!             redirectUrl ─▶ POST there next (https only; vouched: a verified answer gave it)
//!             redirectAddr ─▶ start over for that address (its own DOMAIN)
//!             401 after credentials ─▶ stop (the password is wrong; don't lock the account)
//!   redirects of any kind: at most MAX_REDIRECTS in all
//!   nothing found: a skipped host ─▶ ExchangeError::Unvouched (names the host and the hop)
//! ```
//!
//! Credentials go only to hosts the domain vouches for over verified TLS (SPEC §8): its own
//! https:// candidates and whatever their answers redirect to. The plain-HTTP redirect and SRV
//! records can be forged by anyone on the path, so a host outside the domain reached through
//! them is confirmed by the user first, as Outlook does. Every new host still gets its first
//! request without credentials, and credentials only once it has challenged (`client`).

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

/// An unauthenticated way Autodiscover can lead to a host: anyone who can answer for the
/// address's domain on the network path can forge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// The plain-HTTP redirect method (step 3).
    HttpRedirect,
    /// A DNS SRV record `_autodiscover._tcp.DOMAIN` (step 4).
    Srv,
}

impl Hop {
    /// How the hop reads in a message about `domain`.
    pub fn describe(self, domain: &str) -> String {
        match self {
            Hop::HttpRedirect => format!(
                "the plain-HTTP redirect at http://autodiscover.{domain}/autodiscover/autodiscover.xml"
            ),
            Hop::Srv => format!("the DNS SRV record _autodiscover._tcp.{domain}"),
        }
    }
}

/// What the user said about hosts outside the address's domain.
#[derive(Debug, Clone, Copy, Default)]
pub struct Trust<'a> {
    /// `--trust-server`: hosts to go on to without asking (host names, or `host:port`).
    pub servers: &'a [String],
    /// True when the ctl can ask the user (it answers [`ConnectEvent::Confirm`]).
    ///
    /// [`ConnectEvent::Confirm`]: mslink_proto::ConnectEvent::Confirm
    pub ask: bool,
}

impl Trust<'_> {
    /// True when `--trust-server` names `url`'s host (case-insensitive, exactly that host).
    fn names(&self, url: &Url) -> bool {
        let host = url.host_str().unwrap_or_default();
        let authority = host_of(url);
        self.servers.iter().any(|server| {
            let server = server.trim().trim_end_matches('.');
            server.eq_ignore_ascii_case(host) || server.eq_ignore_ascii_case(&authority)
        })
    }
}

enum Step {
    /// POST there; `Some(hop)` when an unauthenticated hop led there (vouch for it first).
    Post(Url, Option<Hop>),
    HttpRedirect(String),
    Srv(String),
}

/// True when `url`'s host is `domain` or a subdomain of it (`domain` lower-case). An IP
/// address is in no domain.
pub fn within_domain(url: &Url, domain: &str) -> bool {
    let Some(url::Host::Domain(host)) = url.host() else { return false };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == domain || host.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.'))
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
            .map(|url| Step::Post(url, None))
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

/// What became of a host an unauthenticated hop led to.
enum Vouched {
    Yes,
    /// Skipped; the error says why, for when nothing else is found.
    No(ExchangeError),
}

/// Decides whether Autodiscover may go on to `url`, which `hop` led to from outside `domain`:
/// `--trust-server`, else the user's answer, else no. `Err` only when the user hangs up.
async fn vouch(
    url: &Url,
    hop: Hop,
    domain: &str,
    address: &str,
    trust: Trust<'_>,
    interaction: &mut Interaction,
) -> Result<Vouched, ExchangeError> {
    let host = url.host_str().unwrap_or("?").to_owned();
    if trust.names(url) {
        tracing::info!(host = %host, domain, "going on to a host named by --trust-server");
        return Ok(Vouched::Yes);
    }
    let refused = |asked: bool| {
        Vouched::No(ExchangeError::Unvouched {
            email: address.to_owned(),
            domain: domain.to_owned(),
            host: host.clone(),
            hop,
            asked,
        })
    };
    if !trust.ask {
        tracing::warn!(host = %host, domain, ?hop, "not going on to a host outside the domain");
        return Ok(refused(false));
    }
    let question = format!(
        "Autodiscover for {domain} was sent to {host}, outside {domain}, by {}, which is not \
         authenticated. Let {host} configure {address} and receive its password if it asks? \
         Say yes only if {host} is your organisation's Exchange server.",
        hop.describe(domain)
    );
    match interaction.confirm(question, host.clone()).await {
        Some(true) => {
            tracing::info!(host = %host, domain, "the user confirmed a host outside the domain");
            Ok(Vouched::Yes)
        }
        Some(false) => Ok(refused(true)),
        None => Err(ExchangeError::Cancelled),
    }
}

/// Runs Autodiscover for `email` with `session`'s credentials; hosts outside the domain that
/// only an unauthenticated hop leads to are vouched for by `trust` (see the module doc).
#[tracing::instrument(level = "debug", skip_all, fields(email = %email))]
pub async fn discover(
    config: &Config,
    session: &mut Session<'_>,
    email: &str,
    trust: Trust<'_>,
    interaction: &mut Interaction,
) -> Result<Discovered, ExchangeError> {
    let address = email.to_owned();
    let mut email = email.to_owned();
    let mut domain =
        domain_of(&email).ok_or_else(|| ExchangeError::InvalidAddress { email: email.clone() })?;
    let mut steps = candidates(&domain);
    let mut redirects = 0usize;
    let mut tried: Vec<String> = Vec::new();
    let mut certificate_error: Option<ExchangeError> = None;
    // Hosts outside the domain, by the user's (or --trust-server's) word: asked once each.
    let mut confirmed: Vec<String> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut refusal: Option<ExchangeError> = None;
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
            Step::Post(url, hop) => {
                let host = url.host_str().unwrap_or("?").to_ascii_lowercase();
                if let Some(hop) = hop
                    && !within_domain(&url, &domain)
                    && !confirmed.contains(&host)
                {
                    if skipped.contains(&host) {
                        continue;
                    }
                    match vouch(&url, hop, &domain, &address, trust, interaction).await? {
                        Vouched::Yes => confirmed.push(host),
                        Vouched::No(error) => {
                            refusal.get_or_insert(error);
                            skipped.push(host);
                            continue;
                        }
                    }
                }
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
                            // Vouched: this answer came over verified TLS from a vouched host.
                            Ok(next) if next.scheme() == "https" => {
                                steps.push_front(Step::Post(next, None))
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
                    Err(
                        e @ (ExchangeError::Rejected { .. }
                        | ExchangeError::Config { .. }
                        | ExchangeError::ModernAuth { .. }
                        | ExchangeError::PasswordNeeded { .. }),
                    ) => {
                        return Err(e);
                    }
                    // The login or its realm is wrong: every other candidate would say the same
                    // (and a wrong password tried again counts towards a lockout).
                    Err(e @ ExchangeError::Kerberos { .. }) if !e.is_about_the_host() => {
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
                                steps.push_front(Step::Post(next, Some(Hop::HttpRedirect)));
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
                                steps.push_front(Step::Post(url, Some(Hop::Srv)));
                            }
                        }
                    }
                    Err(e) => tried.push(e.to_string()),
                }
            }
        }
    }
    if let Some(e) = refusal.or(certificate_error) {
        return Err(e);
    }
    Err(ExchangeError::NotDiscovered { domain, tried })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_comes_from_the_address() {
        assert_eq!(domain_of("Alice@Contoso.Test").as_deref(), Some("contoso.test"));
        assert_eq!(domain_of("alice"), None);
        assert_eq!(domain_of("alice@evil.test/x"), None);
    }

    #[test]
    fn only_the_domain_and_its_subdomains_are_within_it() {
        let within = |url: &str| within_domain(&Url::parse(url).unwrap(), "contoso.test");
        assert!(within("https://contoso.test/x"));
        assert!(within("https://Mail.Contoso.Test:8443/x"));
        assert!(within("https://a.b.contoso.test./x"));
        assert!(!within("https://evilcontoso.test/x"));
        assert!(!within("https://contoso.test.evil.test/x"));
        assert!(!within("https://mail.fabrikam.test/x"));
        assert!(!within("https://127.0.0.1/x"));
    }

    #[test]
    fn trust_server_names_exactly_one_host() {
        let servers = ["Mail.Fabrikam.Test".to_owned(), "ews.example.test:8443".to_owned()];
        let trust = Trust { servers: &servers, ask: false };
        let names = |url: &str| trust.names(&Url::parse(url).unwrap());
        assert!(names("https://mail.fabrikam.test/autodiscover/autodiscover.xml"));
        assert!(names("https://mail.fabrikam.test:444/autodiscover/autodiscover.xml"));
        assert!(names("https://ews.example.test:8443/autodiscover/autodiscover.xml"));
        assert!(!names("https://ews.example.test/autodiscover/autodiscover.xml"));
        assert!(!names("https://x.mail.fabrikam.test/autodiscover/autodiscover.xml"));
        assert!(!names("https://fabrikam.test/autodiscover/autodiscover.xml"));
    }

    #[test]
    fn candidates_follow_outlooks_order() {
        let steps = candidates("contoso.test");
        let names: Vec<String> = steps
            .iter()
            .map(|s| match s {
                Step::Post(url, _) => url.to_string(),
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
