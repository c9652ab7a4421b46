//! The detection probes, one per kind of evidence. Each returns a [`Finding`] whatever happens:
//! a network error is evidence of nothing, never a failure of detection. None sends a credential.
//!
//! A probe also says what its answer is about ([`Scope`]: the address or only its domain) and
//! the strongest evidence it could possibly give ([`Probe::ceiling`]), so the decision knows when
//! the probes still out cannot change the answer.

use mslink_proto::{Evidence, Provider};
use serde::Deserialize;

use super::{Strength, domain_of};
use crate::config::{Cloud, Config, EndpointUrl};
use crate::dns::Dns;
use crate::exchange::autodiscover::{self, AutodiscoverResponse};
use crate::net::{self, HttpOptions};
use crate::text;

/// The probes, in the order their evidence is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    UserRealm,
    OpenIdConfiguration,
    Mx,
    AutodiscoverV2,
    AutodiscoverDomain,
    AutodiscoverHost,
    AutodiscoverHttpRedirect,
    Srv,
}

/// What a probe's answer is about: cached per address, or per domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// The answer is for one mailbox (Autodiscover is asked about the address).
    Address,
    /// The answer is the same for every address of the domain.
    Domain,
}

/// One probe's answer: what was seen and how much it weighs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Finding {
    pub(super) probe: Probe,
    pub(super) evidence: Evidence,
    /// How strong the evidence is; `None` when it points nowhere.
    pub(super) strength: Option<Strength>,
}

pub(super) const ALL: [Probe; 8] = [
    Probe::UserRealm,
    Probe::OpenIdConfiguration,
    Probe::Mx,
    Probe::AutodiscoverV2,
    Probe::AutodiscoverDomain,
    Probe::AutodiscoverHost,
    Probe::AutodiscoverHttpRedirect,
    Probe::Srv,
];

/// How many Autodiscover v2 redirects are followed before giving up (Outlook stops at 10;
/// Exchange Online sends one hop, or two in a hybrid).
const MAX_V2_REDIRECTS: usize = 5;

/// The longest evidence detail kept.
const MAX_DETAIL: usize = 500;

/// A probe's answer before its name is attached: points to, strength, detail.
type Answer = (Option<Provider>, Strength, String);

fn nothing(detail: impl Into<String>) -> Answer {
    (None, Strength::Weak, detail.into())
}

impl Probe {
    pub(super) fn name(self) -> &'static str {
        match self {
            Probe::UserRealm => "user_realm",
            Probe::OpenIdConfiguration => "openid_configuration",
            Probe::Mx => "mx",
            Probe::AutodiscoverV2 => "autodiscover_v2",
            Probe::AutodiscoverDomain => "autodiscover_domain",
            Probe::AutodiscoverHost => "autodiscover_host",
            Probe::AutodiscoverHttpRedirect => "autodiscover_http_redirect",
            Probe::Srv => "srv",
        }
    }

    /// Whether the answer is about the address or only its domain.
    pub(super) fn scope(self) -> Scope {
        match self {
            Probe::AutodiscoverV2 | Probe::AutodiscoverDomain | Probe::AutodiscoverHost => {
                Scope::Address
            }
            _ => Scope::Domain,
        }
    }

    /// The strongest evidence this probe can give (the module table in `mod.rs`).
    pub(super) fn ceiling(self) -> Strength {
        match self {
            Probe::AutodiscoverV2 | Probe::AutodiscoverDomain | Probe::AutodiscoverHost => {
                Strength::Mailbox
            }
            Probe::UserRealm => Strength::Strong,
            Probe::Mx | Probe::AutodiscoverHttpRedirect | Probe::Srv => Strength::Medium,
            Probe::OpenIdConfiguration => Strength::Weak,
        }
    }

    /// Runs the probe; never fails.
    pub(super) async fn run(self, config: &Config, email: &str) -> Finding {
        let domain = domain_of(email).to_ascii_lowercase();
        let answer = match self.ask(config, email, &domain).await {
            Ok(answer) => answer,
            Err(why) => nothing(why),
        };
        self.finding(answer)
    }

    /// The answer as evidence. Its detail quotes what servers said (URLs, names, error texts)
    /// and is stored on the link and shown by `detect` and `status --verbose`: cleaned here.
    fn finding(self, (points_to, strength, detail): Answer) -> Finding {
        let detail = text::clean(&detail, MAX_DETAIL);
        Finding {
            probe: self,
            evidence: Evidence { probe: self.name().to_owned(), points_to, detail },
            strength: points_to.map(|_| strength),
        }
    }

    async fn ask(self, config: &Config, email: &str, domain: &str) -> Result<Answer, String> {
        let http = net::client(
            &config.network,
            HttpOptions { timeout: config.detection.timeout, ..HttpOptions::default() },
        )
        .map_err(|e| e.to_string())?;
        let cloud = config.office365.cloud;
        match self {
            Probe::UserRealm => {
                let mut url = config.detection.user_realm_url.url().clone();
                url.query_pairs_mut().append_pair("login", email).append_pair("json", "1");
                let body = get_text(&http, url.as_str()).await?;
                Ok(user_realm(&body))
            }
            Probe::OpenIdConfiguration => {
                let url = openid_configuration_url(config, domain)?;
                let response = http.get(url).send().await.map_err(no_answer)?;
                let status = response.status();
                let body = read_bounded(response).await?;
                Ok(openid_configuration(status.as_u16(), &body))
            }
            Probe::Mx => {
                let hosts = Dns::new(&config.network, config.detection.timeout)
                    .map_err(|e| e.to_string())?
                    .mx(domain)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(mx(cloud, &hosts))
            }
            Probe::AutodiscoverV2 => {
                let mut url = format!(
                    "{}/{}?Protocol=EWS",
                    config.detection.autodiscover_v2_url.as_str().trim_end_matches('/'),
                    email
                );
                for hop in 0..=MAX_V2_REDIRECTS {
                    let response = http.get(&url).send().await.map_err(no_answer)?;
                    let status = response.status();
                    if status.is_redirection() {
                        let Some(next) = location(&response, &url) else {
                            return Ok(nothing(format!(
                                "answered HTTP {} without a usable Location",
                                status.as_u16()
                            )));
                        };
                        if let Err(why) = EndpointUrl::parse(&next) {
                            return Ok(nothing(format!("redirected to an unusable URL: {why}")));
                        }
                        if hop == MAX_V2_REDIRECTS {
                            break;
                        }
                        url = next;
                        continue;
                    }
                    if !status.is_success() {
                        return Ok(nothing(format!("answered HTTP {}", status.as_u16())));
                    }
                    let (points, strength, detail) =
                        autodiscover_v2(cloud, &read_bounded(response).await?);
                    let detail = match hop {
                        0 => detail,
                        n => format!("{detail} (after {n} redirect(s))"),
                    };
                    return Ok((points, strength, detail));
                }
                Ok(nothing(format!(
                    "still redirected after {MAX_V2_REDIRECTS} hops (HTTP 302): no mailbox found \
                     for the address"
                )))
            }
            Probe::AutodiscoverDomain | Probe::AutodiscoverHost => {
                let host = match self {
                    Probe::AutodiscoverDomain => domain.to_owned(),
                    _ => format!("autodiscover.{domain}"),
                };
                let url = format!("https://{host}/autodiscover/autodiscover.xml");
                let response = http
                    .post(&url)
                    .header("Content-Type", "text/xml; charset=utf-8")
                    .body(autodiscover::request_body(email))
                    .send()
                    .await
                    .map_err(|e| describe_error(&url, &e))?;
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body =
                    if status == 200 { read_bounded(response).await? } else { String::new() };
                Ok(pox_answer(cloud, &url, status, &headers, &body))
            }
            Probe::AutodiscoverHttpRedirect => {
                let url = format!("http://autodiscover.{domain}/autodiscover/autodiscover.xml");
                let response = http.get(&url).send().await.map_err(|e| describe_error(&url, &e))?;
                let to = location(&response, &url).filter(|_| response.status().is_redirection());
                Ok(match to {
                    Some(to) => http_redirect(cloud, &url, &to),
                    None => nothing(format!("{url} answered HTTP {}", response.status().as_u16())),
                })
            }
            Probe::Srv => {
                let name = format!("_autodiscover._tcp.{domain}");
                let targets = Dns::new(&config.network, config.detection.timeout)
                    .map_err(|e| e.to_string())?
                    .srv(&name)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(match targets.first() {
                    Some(target) => srv(cloud, &name, &target.host, target.port),
                    None => nothing(format!("no SRV record {name}")),
                })
            }
        }
    }
}

/// A redirect's `Location`, resolved against the URL that answered.
fn location(response: &reqwest::Response, from: &str) -> Option<String> {
    let value = response.headers().get(reqwest::header::LOCATION)?.to_str().ok()?;
    url::Url::parse(from).ok()?.join(value).ok().map(String::from)
}

/// The Microsoft cloud whose Exchange Online `host` is, if it is one: the configured cloud
/// first (GCC High and DoD share some names).
fn exchange_online_cloud(configured: Cloud, host: &str) -> Option<Cloud> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    std::iter::once(configured)
        .chain(Cloud::ALL)
        .find(|cloud| cloud.hosts().exchange_online.contains(&host.as_str()))
}

/// `" (the usgov cloud; …)"` when `found` is not the configured cloud, else nothing.
fn other_cloud(configured: Cloud, found: Cloud) -> String {
    if found == configured {
        String::new()
    } else {
        format!(
            " (the {found} cloud, but mslinkd is set up for {configured}: set `[office365] cloud \
             = \"{found}\"`)",
            found = found.as_str(),
            configured = configured.as_str()
        )
    }
}

/// The host of `url`, lower-cased, or "" when it has none.
fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default()
}

/// The plain-HTTP redirect method: Microsoft's own redirect (`autodiscover.DOMAIN` as a CNAME of
/// `autodiscover.outlook.com`, which redirects to `autodiscover-s.outlook.com`) is Exchange
/// Online; a redirect elsewhere over HTTPS is an on-premises server.
fn http_redirect(cloud: Cloud, url: &str, to: &str) -> Answer {
    if let Some(found) = exchange_online_cloud(cloud, &host_of(to)) {
        return (
            Some(Provider::Office365),
            Strength::Medium,
            format!("{url} redirects to Exchange Online {to}{}", other_cloud(cloud, found)),
        );
    }
    if to.starts_with("https://") {
        (Some(Provider::Exchange), Strength::Medium, format!("{url} redirects to {to}"))
    } else {
        nothing(format!("{url} redirects to a non-HTTPS URL {to}; ignored"))
    }
}

fn srv(cloud: Cloud, name: &str, host: &str, port: u16) -> Answer {
    let host = host.trim_end_matches('.');
    match exchange_online_cloud(cloud, host) {
        Some(found) => (
            Some(Provider::Office365),
            Strength::Medium,
            format!(
                "SRV {name} points to Exchange Online {host}:{port}{}",
                other_cloud(cloud, found)
            ),
        ),
        None => (
            Some(Provider::Exchange),
            Strength::Medium,
            format!("SRV {name} points to {host}:{port}"),
        ),
    }
}

const MAX_BODY: usize = 64 * 1024;

async fn get_text(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = http.get(url).send().await.map_err(no_answer)?;
    if !response.status().is_success() {
        return Err(format!("answered HTTP {}", response.status().as_u16()));
    }
    read_bounded(response).await
}

/// Reads at most [`MAX_BODY`] bytes: probes only need small documents.
async fn read_bounded(mut response: reqwest::Response) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(no_answer)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(format!("the answer is larger than {MAX_BODY} bytes"));
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn no_answer(e: reqwest::Error) -> String {
    describe(&e)
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() { "no answer before the deadline".into() } else { format!("no answer ({e})") }
}

fn describe_error(url: &str, e: &reqwest::Error) -> String {
    if net::is_certificate_error(e) {
        format!("{url}: TLS certificate not trusted (add the CA to `[network] ca_file`)")
    } else {
        format!("{url}: {}", describe(e))
    }
}

/// Microsoft's `getuserrealm.srf?json=1`.
fn user_realm(body: &str) -> Answer {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Realm {
        name_space_type: Option<String>,
        #[serde(rename = "AuthURL")]
        auth_url: Option<String>,
        federation_brand_name: Option<String>,
    }
    match serde_json::from_str::<Realm>(body) {
        Ok(realm) => match realm.name_space_type.as_deref() {
            Some("Managed") => (
                Some(Provider::Office365),
                Strength::Strong,
                format!(
                    "Entra ID knows the domain (Managed{})",
                    realm.federation_brand_name.map(|b| format!(", {b}")).unwrap_or_default()
                ),
            ),
            Some("Federated") => (
                Some(Provider::Office365),
                Strength::Strong,
                format!(
                    "Entra ID knows the domain (Federated{})",
                    realm.auth_url.map(|u| format!(" via {u}")).unwrap_or_default()
                ),
            ),
            Some(other) => nothing(format!("Entra ID does not know the domain ({other})")),
            None => nothing("the answer has no NameSpaceType"),
        },
        Err(e) => nothing(format!("unreadable answer ({e})")),
    }
}

/// `{authority host}/{domain}/v2.0/.well-known/openid-configuration`: the authority's tenant
/// segment replaced by the domain.
fn openid_configuration_url(config: &Config, domain: &str) -> Result<String, String> {
    let mut url = config.office365.authority.url().clone();
    let rest: Vec<String> = url.path_segments().map_or(Vec::new(), |segments| {
        segments.skip(1).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    });
    let mut path = format!("/{domain}");
    for segment in rest {
        path.push('/');
        path.push_str(&segment);
    }
    path.push_str("/.well-known/openid-configuration");
    url.set_path(&path);
    Ok(url.to_string())
}

fn openid_configuration(status: u16, body: &str) -> Answer {
    #[derive(Deserialize)]
    struct Found {
        issuer: String,
    }
    match serde_json::from_str::<Found>(body) {
        // Weak: many organisations with on-premises mailboxes have a tenant (for Teams, say).
        Ok(found) if status == 200 => (
            Some(Provider::Office365),
            Strength::Weak,
            format!("an Entra tenant exists (issuer {})", found.issuer),
        ),
        _ if body.contains("AADSTS90002") => {
            nothing("no Entra tenant for the domain (AADSTS90002)")
        }
        _ => nothing(format!("answered HTTP {status}")),
    }
}

fn mx(cloud: Cloud, hosts: &[String]) -> Answer {
    let protection = |h: &String| {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        std::iter::once(cloud).chain(Cloud::ALL).find(|c| h.ends_with(c.hosts().mx_suffix))
    };
    match hosts.iter().find_map(|h| protection(h).map(|c| (h, c))) {
        Some((host, found)) => (
            Some(Provider::Office365),
            Strength::Medium,
            format!("MX points to {host}{}", other_cloud(cloud, found)),
        ),
        None if hosts.is_empty() => nothing("no MX records"),
        None => nothing(format!("MX points to {}", hosts.join(", "))),
    }
}

/// Autodiscover v2's answer for the address: its EWS URL says where the mailbox lives.
fn autodiscover_v2(cloud: Cloud, body: &str) -> Answer {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        url: String,
    }
    match serde_json::from_str::<Answer>(body) {
        Ok(answer) => ews_url(cloud, "EWS", &answer.url),
        Err(e) => nothing(format!("unreadable answer ({e})")),
    }
}

/// An EWS URL for the mailbox (from Autodiscover v2 or POX): Exchange Online's host, or not.
fn ews_url(cloud: Cloud, what: &str, url: &str) -> Answer {
    let host = host_of(url);
    if let Some(found) = exchange_online_cloud(cloud, &host) {
        (
            Some(Provider::Office365),
            Strength::Mailbox,
            format!("{what} is at Exchange Online ({url}){}", other_cloud(cloud, found)),
        )
    } else if host.is_empty() {
        nothing(format!("unusable {what} URL {url}"))
    } else {
        (Some(Provider::Exchange), Strength::Mailbox, format!("{what} is on-premises at {url}"))
    }
}

/// What a POX Autodiscover endpoint's answer to an anonymous request says. A challenge says an
/// Exchange server answers for the domain; an XML answer is about the address itself, and may
/// send it to Exchange Online (a `redirectAddr` to the tenant's `onmicrosoft.com` address, a
/// `redirectUrl` or EWS URL at Microsoft's hosts).
fn pox_answer(
    cloud: Cloud,
    url: &str,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> Answer {
    let challenges = net::challenges(
        headers.get_all(reqwest::header::WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()),
    );
    let offers: Vec<String> = challenges.iter().map(|c| c.scheme.clone()).collect();
    let on_premises = offers
        .iter()
        .any(|o| o.eq_ignore_ascii_case("NTLM") || o.eq_ignore_ascii_case("Negotiate"));
    // Exchange's Bearer challenge names Entra's sign-in only with hybrid modern authentication
    // (or in Exchange Online, whose certificate does not cover the domain's own hosts).
    let modern_auth = challenges
        .iter()
        .find(|c| c.scheme.eq_ignore_ascii_case("Bearer"))
        .and_then(|c| c.param("authorization_uri"))
        .map(|uri| format!(" (hybrid modern authentication: Bearer tokens from {uri})"))
        .unwrap_or_default();
    let content_type =
        headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    match status {
        401 if on_premises || !modern_auth.is_empty() => (
            Some(Provider::Exchange),
            Strength::Strong,
            format!("{url} asks for {}{modern_auth}", offers.join(", ")),
        ),
        401 if offers.iter().any(|o| o.eq_ignore_ascii_case("Basic")) => (
            Some(Provider::Exchange),
            Strength::Medium,
            format!("{url} asks for {}", offers.join(", ")),
        ),
        401 => nothing(format!("{url} asks for {} only", offers.join(", "))),
        200 if content_type.contains("xml") => pox_xml(cloud, url, body),
        _ => nothing(format!("{url} answered HTTP {status}")),
    }
}

fn pox_xml(cloud: Cloud, url: &str, body: &str) -> Answer {
    let exchange_online_address = |address: &str| {
        let domain = domain_of(address).to_ascii_lowercase();
        std::iter::once(cloud)
            .chain(Cloud::ALL)
            .find(|c| domain.ends_with(c.hosts().initial_domain_suffix))
    };
    match autodiscover::parse_response(body.as_bytes()) {
        Ok(AutodiscoverResponse::Settings(settings)) => match settings.ews_url {
            Some(ews) => ews_url(cloud, &format!("{url}: EWS"), &ews),
            None => (
                Some(Provider::Exchange),
                Strength::Strong,
                format!("{url} answers Autodiscover XML"),
            ),
        },
        Ok(AutodiscoverResponse::RedirectAddr(to)) => match exchange_online_address(&to) {
            Some(found) => (
                Some(Provider::Office365),
                Strength::Mailbox,
                format!(
                    "{url} redirects the address to Exchange Online ({to}){}",
                    other_cloud(cloud, found)
                ),
            ),
            None => (
                Some(Provider::Exchange),
                Strength::Strong,
                format!("{url} redirects the address to {to}"),
            ),
        },
        Ok(AutodiscoverResponse::RedirectUrl(to)) => {
            match exchange_online_cloud(cloud, &host_of(&to)) {
                Some(found) => (
                    Some(Provider::Office365),
                    Strength::Mailbox,
                    format!("{url} redirects to Exchange Online {to}{}", other_cloud(cloud, found)),
                ),
                None => {
                    (Some(Provider::Exchange), Strength::Strong, format!("{url} redirects to {to}"))
                }
            }
        }
        Ok(AutodiscoverResponse::Error { code, message }) => (
            Some(Provider::Exchange),
            Strength::Strong,
            format!("{url} answers Autodiscover XML (error {code}: {message})"),
        ),
        Err(_) => (
            Some(Provider::Exchange),
            Strength::Medium,
            format!("{url} answers unreadable Autodiscover XML"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_detail_is_cleaned_and_capped() {
        let forged = format!(
            "EWS at https://evil.test\n\u{1b}[1mmx: Office365 \u{202e}{}",
            "x".repeat(9000)
        );
        let finding =
            Probe::AutodiscoverHost.finding((Some(Provider::Exchange), Strength::Mailbox, forged));
        let detail = &finding.evidence.detail;
        assert!(!detail.contains(['\n', '\u{1b}', '\u{202e}']), "{detail:?}");
        assert!(detail.chars().count() <= MAX_DETAIL + 1, "{}", detail.len());
        assert!(detail.starts_with("EWS at https://evil.test [1mmx: Office365"), "{detail:?}");
    }

    fn vector(name: &str) -> String {
        let dir = std::env::var("MSLINK_VECTORS").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors").to_owned()
        });
        std::fs::read_to_string(format!("{dir}/detection/{name}")).unwrap()
    }

    #[test]
    fn a_managed_realm_points_to_office365() {
        let (points, strength, detail) = user_realm(&vector("getuserrealm_managed.json"));
        assert_eq!((points, strength), (Some(Provider::Office365), Strength::Strong));
        assert!(detail.contains("Managed") && detail.contains("Example Corp"), "{detail}");
    }

    #[test]
    fn federated_and_unknown_realms() {
        let federated =
            r#"{"NameSpaceType":"Federated","AuthURL":"https://sts.fabrikam.test/adfs/ls/"}"#;
        assert_eq!(user_realm(federated).0, Some(Provider::Office365));
        assert_eq!(user_realm(r#"{"NameSpaceType":"Unknown","Login":"x"}"#).0, None);
        assert_eq!(user_realm("<html>").0, None);
    }

    #[test]
    fn autodiscover_v2_answers_from_the_vectors() {
        let samples = vector("autodiscover_v2_json_ews_samples.txt");
        let answers: Vec<_> = samples
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| autodiscover_v2(Cloud::Global, l))
            .collect();
        assert_eq!(answers.len(), 3);
        // (1) a hybrid answer naming an on-premises host, (2) Exchange Online, (3) on-premises.
        assert_eq!(answers[0].0, Some(Provider::Exchange));
        assert_eq!(answers[1].0, Some(Provider::Office365));
        assert_eq!(answers[2].0, Some(Provider::Exchange));
        assert!(answers[2].2.contains("mail.domain.de"));
        assert!(answers.iter().all(|a| a.1 == Strength::Mailbox));
    }

    fn offered_schemes<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
        net::challenges(values).into_iter().map(|c| c.scheme).collect()
    }

    #[test]
    fn hybrid_modern_auth_is_exchange_evidence_naming_the_sign_in() {
        // Vector 2: on-premises Exchange with HMA answers with Entra's authorization_uri.
        let vectors = vector("exo_ews_401_bearer_challenge.txt");
        let mut headers = reqwest::header::HeaderMap::new();
        for line in vectors.lines().filter_map(|l| l.split_once(" \u{2192}")) {
            if line.0.eq_ignore_ascii_case("WWW-Authenticate") {
                headers.append(reqwest::header::WWW_AUTHENTICATE, line.1.parse().unwrap());
            }
        }
        let url = "https://autodiscover.contoso.com/autodiscover/autodiscover.xml";
        let (points_to, strength, detail) = pox_answer(Cloud::Global, url, 401, &headers, "");
        assert_eq!((points_to, strength), (Some(Provider::Exchange), Strength::Strong), "{detail}");
        assert!(detail.contains("hybrid modern authentication"), "{detail}");
        assert!(detail.contains("https://login.windows.net/common/oauth2/authorize"), "{detail}");
        // Vector 3: Exchange 2019 without HMA sends Bearer too, without authorization_uri.
        let without = vectors.lines().find_map(|l| l.strip_prefix("WWW-Authenticate=")).unwrap();
        let challenges = net::challenges([without].into_iter());
        assert_eq!(challenges[0].param("authorization_uri"), None);
        assert_eq!(challenges[0].param("error").as_deref(), Some("invalid_token"));
        assert_eq!(challenges[1].param("realm").as_deref(), Some("mail.dummy.uk"));
    }

    #[test]
    fn every_challenge_of_a_combined_www_authenticate_header_counts() {
        // On-premises Exchange 2019 without HMA (vector 3): Bearer and Basic in one header.
        let vectors = vector("exo_ews_401_bearer_challenge.txt");
        let combined = vectors
            .lines()
            .find_map(|l| l.strip_prefix("WWW-Authenticate=Bearer"))
            .map(|rest| format!("Bearer{rest}"))
            .unwrap();
        assert_eq!(offered_schemes([combined.as_str()].into_iter()), ["Bearer", "Basic"]);
        // With HMA (vector 2): one challenge per header, a comma inside a quoted parameter.
        let separate: Vec<&str> = vectors
            .lines()
            .filter_map(|l| l.split_once(" \u{2192}"))
            .filter(|(name, _)| name.eq_ignore_ascii_case("WWW-Authenticate"))
            .map(|(_, value)| value)
            .collect();
        assert_eq!(separate.len(), 2);
        assert_eq!(offered_schemes(separate.into_iter()), ["Bearer", "Basic"]);
        assert_eq!(
            offered_schemes(["Negotiate, NTLM", "Basic realm=\"a, b\""].into_iter()),
            ["Negotiate", "NTLM", "Basic"]
        );
        assert_eq!(offered_schemes(["NTLM TlRMTVNTUAACAAAA=="].into_iter()), ["NTLM"]);
    }

    #[test]
    fn mx_to_exchange_online_points_to_office365() {
        let hosts = vec!["contoso-com.mail.protection.outlook.com.".to_owned()];
        assert_eq!(mx(Cloud::Global, &hosts).0, Some(Provider::Office365));
        assert_eq!(mx(Cloud::Global, &["mx1.contoso.test.".to_owned()]).0, None);
        assert_eq!(mx(Cloud::Global, &[]).0, None);
    }

    #[test]
    fn openid_configuration_found_and_not_found() {
        let found = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/vectors/identity/azure_sdk_js_recording_openid_configuration_tenant_found.json"
        ))
        .unwrap();
        assert_eq!(openid_configuration(200, &found).0, Some(Provider::Office365));
        let missing = r#"{"error":"invalid_tenant","error_description":"AADSTS90002: Tenant 'x' not found."}"#;
        let (points, _, detail) = openid_configuration(400, missing);
        assert_eq!(points, None);
        assert!(detail.contains("AADSTS90002"));
    }

    #[test]
    fn the_openid_url_replaces_the_tenant_segment() {
        let config = Config::parse(
            "[office365]\nauthority = \"http://127.0.0.1:9000/organizations/v2.0\"\n",
            None,
            &crate::config::Env { is_root: true, ..Default::default() },
        )
        .unwrap();
        assert_eq!(
            openid_configuration_url(&config, "contoso.test").unwrap(),
            "http://127.0.0.1:9000/contoso.test/v2.0/.well-known/openid-configuration"
        );
    }

    /// Each cloud's Exchange Online hosts, MX suffix and initial domains, as Microsoft's
    /// national-cloud endpoint and DNS pages give them, are Office365 evidence; with the
    /// configured cloud they say nothing more, with another they name the cloud to set.
    #[test]
    fn every_clouds_hosts_are_office365_evidence() {
        #[rustfmt::skip]
        let clouds = [
            (Cloud::Global, "outlook.office365.com", "autodiscover-s.outlook.com",
             "contoso-com.mail.protection.outlook.com", "contoso.mail.onmicrosoft.com"),
            (Cloud::UsGov, "outlook.office365.us", "autodiscover-s.office365.us",
             "contoso-us.mail.protection.office365.us", "contoso.mail.onmicrosoft.us"),
            (Cloud::UsGovDod, "outlook-dod.office365.us", "autodiscover-s-dod.office365.us",
             "contoso-mil.mail.protection.office365.us", "contoso.mail.onmicrosoft.us"),
            (Cloud::China, "partner.outlook.cn", "autodiscover.partner.outlook.cn",
             "contoso-cn.mail.protection.partner.outlook.cn", "contoso.partner.onmschina.cn"),
        ];
        for (cloud, ews, autodiscover, mx_host, initial) in clouds {
            let v2 = format!(r#"{{"Protocol":"EWS","Url":"https://{ews}/EWS/Exchange.asmx"}}"#);
            let (points, strength, detail) = autodiscover_v2(cloud, &v2);
            assert_eq!(
                (points, strength),
                (Some(Provider::Office365), Strength::Mailbox),
                "{detail}"
            );
            assert!(!detail.contains("cloud"), "{detail}");
            let redirect = http_redirect(
                cloud,
                "http://autodiscover.contoso.test/autodiscover/autodiscover.xml",
                &format!("https://{autodiscover}/autodiscover/autodiscover.xml"),
            );
            assert_eq!(redirect.0, Some(Provider::Office365), "{}", redirect.2);
            let srv =
                srv(cloud, "_autodiscover._tcp.contoso.test", &format!("{autodiscover}."), 443);
            assert_eq!(srv.0, Some(Provider::Office365), "{}", srv.2);
            assert_eq!(mx(cloud, &[format!("{mx_host}.")]).0, Some(Provider::Office365));
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\"><Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\"><Account><Action>redirectAddr</Action><RedirectAddr>alice@{initial}</RedirectAddr></Account></Response></Autodiscover>"
            );
            let pox = pox_xml(
                cloud,
                "https://autodiscover.contoso.test/autodiscover/autodiscover.xml",
                &xml,
            );
            assert_eq!((pox.0, pox.1), (Some(Provider::Office365), Strength::Mailbox), "{}", pox.2);
        }
        // A national cloud's host seen by a daemon set up for the global cloud: still Office365,
        // and the evidence says which `cloud` to set.
        let v2 = r#"{"Protocol":"EWS","Url":"https://outlook.office365.us/EWS/Exchange.asmx"}"#;
        let (points, _, detail) = autodiscover_v2(Cloud::Global, v2);
        assert_eq!(points, Some(Provider::Office365));
        assert!(detail.contains(r#"cloud = "usgov""#), "{detail}");
    }

    #[test]
    fn redirects_to_other_hosts_are_exchange_evidence() {
        let (points, strength, _) = http_redirect(
            Cloud::Global,
            "http://autodiscover.contoso.test/autodiscover/autodiscover.xml",
            "https://mail.contoso.test/autodiscover/autodiscover.xml",
        );
        assert_eq!((points, strength), (Some(Provider::Exchange), Strength::Medium));
        assert_eq!(
            srv(Cloud::Global, "_autodiscover._tcp.x", "mail.x.", 443).0,
            Some(Provider::Exchange)
        );
        // Microsoft's documented POX sample: a redirect to another on-premises address.
        let xml = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/vectors/ews_autodiscover/pox_response_redirectAddr.xml"
        ))
        .unwrap();
        let (points, strength, detail) =
            pox_xml(Cloud::Global, "https://x/autodiscover/autodiscover.xml", &xml);
        assert_eq!((points, strength), (Some(Provider::Exchange), Strength::Strong), "{detail}");
        assert!(detail.contains("elvin@mail.contoso.com"), "{detail}");
    }
}
