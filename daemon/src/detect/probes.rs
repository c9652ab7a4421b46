//! The detection probes, one per kind of evidence. Each returns an [`Evidence`] whatever happens:
//! a network error is evidence of nothing, never a failure of detection. None sends a credential.

use mslink_proto::{Evidence, Provider};
use serde::Deserialize;

use super::domain_of;
use crate::config::Config;
use crate::dns::Dns;
use crate::exchange::autodiscover;
use crate::net::{self, HttpOptions};

/// The probes, in the order their evidence is most telling.
#[derive(Debug, Clone, Copy)]
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

pub(super) fn all() -> [Probe; 8] {
    use Probe::*;
    [
        UserRealm,
        OpenIdConfiguration,
        Mx,
        AutodiscoverV2,
        AutodiscoverDomain,
        AutodiscoverHost,
        AutodiscoverHttpRedirect,
        Srv,
    ]
}

impl Probe {
    fn name(self) -> &'static str {
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

    /// Runs the probe; never fails.
    pub(super) async fn run(self, config: &Config, email: &str) -> Evidence {
        let domain = domain_of(email).to_ascii_lowercase();
        let (points_to, detail) = match self.ask(config, email, &domain).await {
            Ok(answer) => answer,
            Err(why) => (None, why),
        };
        Evidence { probe: self.name().to_owned(), points_to, detail }
    }

    async fn ask(
        self,
        config: &Config,
        email: &str,
        domain: &str,
    ) -> Result<(Option<Provider>, String), String> {
        let http = net::client(
            &config.network,
            HttpOptions { timeout: config.detection.timeout, ..HttpOptions::default() },
        )
        .map_err(|e| e.to_string())?;
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
                Ok(mx(&hosts))
            }
            Probe::AutodiscoverV2 => {
                let url = format!(
                    "{}/{}?Protocol=EWS",
                    config.detection.autodiscover_v2_url.as_str().trim_end_matches('/'),
                    email
                );
                let response = http.get(url).send().await.map_err(no_answer)?;
                if !response.status().is_success() {
                    return Ok((None, format!("answered HTTP {}", response.status().as_u16())));
                }
                Ok(autodiscover_v2(&read_bounded(response).await?))
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
                Ok(pox_answer(&url, &response))
            }
            Probe::AutodiscoverHttpRedirect => {
                let url = format!("http://autodiscover.{domain}/autodiscover/autodiscover.xml");
                let response = http.get(&url).send().await.map_err(|e| describe_error(&url, &e))?;
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .filter(|_| response.status().is_redirection());
                Ok(match location {
                    Some(to) if to.starts_with("https://") => {
                        (Some(Provider::Exchange), format!("{url} redirects to {to}"))
                    }
                    Some(to) => (None, format!("{url} redirects to a non-HTTPS URL {to}; ignored")),
                    None => (None, format!("{url} answered HTTP {}", response.status().as_u16())),
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
                    Some(target) => (
                        Some(Provider::Exchange),
                        format!("SRV {name} points to {}:{}", target.host, target.port),
                    ),
                    None => (None, format!("no SRV record {name}")),
                })
            }
        }
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
fn user_realm(body: &str) -> (Option<Provider>, String) {
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
                format!(
                    "Entra ID knows the domain (Managed{})",
                    realm.federation_brand_name.map(|b| format!(", {b}")).unwrap_or_default()
                ),
            ),
            Some("Federated") => (
                Some(Provider::Office365),
                format!(
                    "Entra ID knows the domain (Federated{})",
                    realm.auth_url.map(|u| format!(" via {u}")).unwrap_or_default()
                ),
            ),
            Some(other) => (None, format!("Entra ID does not know the domain ({other})")),
            None => (None, "the answer has no NameSpaceType".into()),
        },
        Err(e) => (None, format!("unreadable answer ({e})")),
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

fn openid_configuration(status: u16, body: &str) -> (Option<Provider>, String) {
    #[derive(Deserialize)]
    struct Found {
        issuer: String,
    }
    match serde_json::from_str::<Found>(body) {
        Ok(found) if status == 200 => {
            (Some(Provider::Office365), format!("an Entra tenant exists (issuer {})", found.issuer))
        }
        _ if body.contains("AADSTS90002") => {
            (None, "no Entra tenant for the domain (AADSTS90002)".into())
        }
        _ => (None, format!("answered HTTP {status}")),
    }
}

fn mx(hosts: &[String]) -> (Option<Provider>, String) {
    let to_microsoft = hosts.iter().find(|h| {
        h.trim_end_matches('.').to_ascii_lowercase().ends_with(".mail.protection.outlook.com")
    });
    match to_microsoft {
        Some(host) => (Some(Provider::Office365), format!("MX points to {host}")),
        None if hosts.is_empty() => (None, "no MX records".into()),
        None => (None, format!("MX points to {}", hosts.join(", "))),
    }
}

fn autodiscover_v2(body: &str) -> (Option<Provider>, String) {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        url: String,
    }
    match serde_json::from_str::<Answer>(body) {
        Ok(answer) => {
            let host = url::Url::parse(&answer.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .unwrap_or_default();
            if host == "outlook.office365.com" {
                (Some(Provider::Office365), format!("EWS is at Exchange Online ({})", answer.url))
            } else if host.is_empty() {
                (None, format!("unusable EWS URL {}", answer.url))
            } else {
                (Some(Provider::Exchange), format!("EWS is on-premises at {}", answer.url))
            }
        }
        Err(e) => (None, format!("unreadable answer ({e})")),
    }
}

/// The authentication schemes offered by `WWW-Authenticate` header values. One value may hold
/// several comma-separated challenges (IIS sends `Bearer client_id="…", …,Basic realm="…"` as
/// one header), and quoted parameters may hold commas; a scheme is a piece that starts a
/// challenge, i.e. whose first word is not an `name=value` parameter.
fn offered_schemes<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut schemes = Vec::new();
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
        for piece in pieces {
            let word = piece.trim_start().split(' ').next().unwrap_or("");
            if !word.is_empty() && !word.contains('=') && !word.contains('"') {
                schemes.push(word.to_owned());
            }
        }
    }
    schemes
}

/// What a POX Autodiscover endpoint's answer to an anonymous request says.
fn pox_answer(url: &str, response: &reqwest::Response) -> (Option<Provider>, String) {
    let status = response.status().as_u16();
    let offers = offered_schemes(
        response
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let on_premises = offers
        .iter()
        .any(|o| o.eq_ignore_ascii_case("NTLM") || o.eq_ignore_ascii_case("Negotiate"));
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match status {
        401 if on_premises => {
            (Some(Provider::Exchange), format!("{url} asks for {}", offers.join(", ")))
        }
        401 if offers.iter().any(|o| o.eq_ignore_ascii_case("Basic")) => {
            (Some(Provider::Exchange), format!("{url} asks for {}", offers.join(", ")))
        }
        401 => (None, format!("{url} asks for {} only", offers.join(", "))),
        200 if content_type.contains("xml") => {
            (Some(Provider::Exchange), format!("{url} answers Autodiscover XML"))
        }
        _ => (None, format!("{url} answered HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(name: &str) -> String {
        let dir = std::env::var("MSLINK_VECTORS").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors").to_owned()
        });
        std::fs::read_to_string(format!("{dir}/detection/{name}")).unwrap()
    }

    #[test]
    fn a_managed_realm_points_to_office365() {
        let (points, detail) = user_realm(&vector("getuserrealm_managed.json"));
        assert_eq!(points, Some(Provider::Office365));
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
        let answers: Vec<_> =
            samples.lines().filter(|l| l.starts_with('{')).map(autodiscover_v2).collect();
        assert_eq!(answers.len(), 3);
        // (1) a hybrid answer naming an on-premises host, (2) Exchange Online, (3) on-premises.
        assert_eq!(answers[0].0, Some(Provider::Exchange));
        assert_eq!(answers[1].0, Some(Provider::Office365));
        assert_eq!(answers[2].0, Some(Provider::Exchange));
        assert!(answers[2].1.contains("mail.domain.de"));
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
        assert_eq!(mx(&hosts).0, Some(Provider::Office365));
        assert_eq!(mx(&["mx1.contoso.test.".to_owned()]).0, None);
        assert_eq!(mx(&[]).0, None);
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
        let (points, detail) = openid_configuration(400, missing);
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
}
