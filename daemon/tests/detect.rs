//! Provider detection (SPEC §6) in-process, against real peers: a real DNS server (dnsmasq,
//! Debian `dnsmasq-base`) for MX and SRV, fakes of Microsoft's user-realm, OpenID-configuration
//! and Autodiscover v2 endpoints (written from `shared/vectors/detection`), the EWS fake of
//! `tests/peers/ews` for POX Autodiscover over real TLS, and listeners that accept and never
//! answer.
//!
//! Needs dnsmasq (a failure without it, see `tests/src/prerequisite.rs`), python3 with
//! `pip install -r tests/peers/ews/requirements.txt`, the openssl CLI, and root (the fakes listen
//! on port 443 of their own 127.N.0.M).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use mslink_proto::{DetectReply, Evidence, Provider};
use mslinkd::config::{Config, Env};
use mslinkd::detect::{Detector, detect};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

#[path = "support/dnsmasq.rs"]
mod dnsmasq;
use dnsmasq::Dnsmasq;

/// Aborts a background task (a fake server) when the test drops it.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A distinct loopback address per fake and per "nothing listens here" name, so tests can run in
/// parallel on port 443. Starts at a per-process offset (another range than `exchange.rs`).
fn next_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let host = (std::process::id() % 200 + n) % 60_000;
    Ipv4Addr::new(127, 100 + (host / 250) as u8, 0, 2 + (host % 250) as u8)
}

// ---------------------------------------------------------------------------------------------
// Microsoft's endpoints

/// What `getuserrealm.srf` says about the domain.
#[derive(Debug, Clone, Copy)]
enum Realm {
    Managed,
    Federated,
    Unknown,
}

/// Whether an Entra tenant exists for the domain.
#[derive(Debug, Clone, Copy)]
enum Tenant {
    Found,
    Missing,
}

/// What Autodiscover v2 (`autodiscover.json/v1.0`) answers.
#[derive(Debug, Clone, Copy)]
enum V2 {
    /// `outlook.office365.com`.
    ExchangeOnline,
    /// 302 to the next hop, as Exchange Online does for addresses it does not host.
    NotHere,
    /// Accepts the request and never answers.
    Hang,
}

struct Behaviour {
    realm: Realm,
    tenant: Tenant,
    v2: V2,
    /// The realm answer waits for this (to order it after another peer's answer).
    realm_gate: Option<Arc<Notify>>,
    /// Requests seen: path and whether an `Authorization` header came with it.
    seen: Mutex<Vec<(String, bool)>>,
}

/// Fakes of login.microsoftonline.com's user realm and OpenID configuration, and of
/// outlook.office365.com's Autodiscover v2, on 127.0.0.1:0 (plain HTTP: allowed to loopback).
struct Microsoft {
    base: String,
    behaviour: Arc<Behaviour>,
    _server: Task,
}

impl Microsoft {
    async fn start(realm: Realm, tenant: Tenant, v2: V2, realm_gate: Option<Arc<Notify>>) -> Self {
        let behaviour =
            Arc::new(Behaviour { realm, tenant, v2, realm_gate, seen: Mutex::new(Vec::new()) });
        let app = axum::Router::new().fallback(microsoft).with_state(behaviour.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = Task(tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        }));
        Microsoft { base, behaviour, _server: server }
    }

    /// No request to these endpoints carried credentials.
    fn assert_no_credentials(&self) {
        let seen = self.behaviour.seen.lock().unwrap();
        assert!(!seen.is_empty());
        assert!(seen.iter().all(|(_, authorization)| !authorization), "{seen:?}");
    }
}

fn answer(status: StatusCode, content_type: &str, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

const JSON: &str = "application/json; charset=utf-8";

async fn microsoft(State(fake): State<Arc<Behaviour>>, request: Request) -> Response {
    let url = url::Url::parse(&format!("http://fake{}", request.uri())).unwrap();
    fake.seen
        .lock()
        .unwrap()
        .push((url.path().to_owned(), request.headers().contains_key(header::AUTHORIZATION)));
    let query = |key: &str| {
        url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned()).unwrap_or_default()
    };
    let path = url.path();
    if path == "/getuserrealm.srf" {
        let login = query("login");
        let domain = login.rsplit_once('@').map_or("", |(_, d)| d).to_owned();
        if let Some(gate) = &fake.realm_gate {
            gate.notified().await;
        }
        let body = match fake.realm {
            Realm::Managed => json!({
                "State": 4, "UserState": 1, "Login": login, "NameSpaceType": "Managed",
                "DomainName": domain, "FederationBrandName": "Contoso Ltd",
                "CloudInstanceName": "microsoftonline.com",
                "CloudInstanceIssuerUri": "urn:federation:MicrosoftOnline"
            }),
            Realm::Federated => json!({
                "State": 3, "UserState": 2, "Login": login, "NameSpaceType": "Federated",
                "DomainName": domain, "FederationGlobalVersion": -1,
                "AuthURL": format!("https://sts.{domain}/adfs/ls/?username={login}&wa=wsignin1.0&wtrealm=urn%3afederation%3aMicrosoftOnline&wctx="),
                "FederationBrandName": "Fabrikam", "AuthNForwardType": 1,
                "CloudInstanceName": "microsoftonline.com",
                "CloudInstanceIssuerUri": "urn:federation:MicrosoftOnline"
            }),
            Realm::Unknown => json!({
                "State": 4, "UserState": 1, "Login": login, "NameSpaceType": "Unknown"
            }),
        };
        return answer(StatusCode::OK, JSON, body.to_string());
    }
    if let Some(rest) = path.strip_suffix("/v2.0/.well-known/openid-configuration") {
        let domain = rest.trim_start_matches('/');
        let tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        return match fake.tenant {
            Tenant::Found => answer(
                StatusCode::OK,
                JSON,
                json!({
                    "token_endpoint": format!("https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token"),
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                    "jwks_uri": format!("https://login.microsoftonline.com/{tenant_id}/discovery/v2.0/keys"),
                    "response_modes_supported": ["query", "fragment", "form_post"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "issuer": format!("https://login.microsoftonline.com/{tenant_id}/v2.0"),
                    "request_uri_parameter_supported": false,
                    "authorization_endpoint": format!("https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/authorize"),
                    "device_authorization_endpoint": format!("https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/devicecode"),
                    "tenant_region_scope": "EU",
                    "cloud_instance_name": "microsoftonline.com"
                })
                .to_string(),
            ),
            Tenant::Missing => answer(
                StatusCode::BAD_REQUEST,
                JSON,
                json!({
                    "error": "invalid_tenant",
                    "error_description": format!("AADSTS90002: Tenant '{domain}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.\r\nTrace ID: 0b5f7c1e-3c1e-4f0e-9a52-5d1f2a3b4c00\r\nCorrelation ID: 3f2d1c0b-aaaa-4bbb-8ccc-1234567890ab\r\nTimestamp: 2026-01-12 09:30:00Z"),
                    "error_codes": [90002],
                    "timestamp": "2026-01-12 09:30:00Z",
                    "trace_id": "0b5f7c1e-3c1e-4f0e-9a52-5d1f2a3b4c00",
                    "correlation_id": "3f2d1c0b-aaaa-4bbb-8ccc-1234567890ab",
                    "error_uri": "https://login.microsoftonline.com/error?code=90002"
                })
                .to_string(),
            ),
        };
    }
    if let Some(email) = path.strip_prefix("/autodiscover/autodiscover.json/v1.0/") {
        let protocol = query("Protocol");
        return match fake.v2 {
            V2::ExchangeOnline => answer(
                StatusCode::OK,
                JSON,
                json!({"Protocol": protocol, "Url": "https://outlook.office365.com/EWS/Exchange.asmx"})
                    .to_string(),
            ),
            V2::NotHere => {
                let next = format!(
                    "https://outlook.office365.com/autodiscover/autodiscover.json?Email={}&Protocol={protocol}&RedirectCount=1",
                    email.replace('@', "%40")
                );
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                    .header(header::LOCATION, &next)
                    .body(Body::from(format!(
                        "<html><head><title>Object moved</title></head><body>\r\n<h2>Object moved to <a href=\"{}\">here</a>.</h2>\r\n</body></html>\r\n",
                        next.replace('&', "&amp;")
                    )))
                    .unwrap()
            }
            V2::Hang => std::future::pending().await,
        };
    }
    answer(StatusCode::NOT_FOUND, "text/html", "<h1>404</h1>".into())
}

// ---------------------------------------------------------------------------------------------
// A listener that accepts and never answers

/// Accepts TCP connections on `ip:port` and holds them open without a byte (a TLS handshake to
/// it never completes).
async fn black_hole(port: u16) -> (Ipv4Addr, Task) {
    for _ in 0..20 {
        let ip = next_ip();
        let Ok(listener) = tokio::net::TcpListener::bind((ip, port)).await else { continue };
        let task = Task(tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        }));
        return (ip, task);
    }
    panic!("no free loopback address for a black hole on port {port}");
}

// ---------------------------------------------------------------------------------------------
// The EWS fake (POX Autodiscover over real TLS)

fn ews_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/ews")
}

/// `ews_server.py` on port 443 of a fresh loopback address, with a certificate for
/// `autodiscover.DOMAIN` and `DOMAIN` from a throwaway CA.
struct Ews {
    _child: Child,
    ip: Ipv4Addr,
    pki: tempfile::TempDir,
    control: reqwest::Client,
    host: String,
    /// The HTTPS port.
    port: u16,
}

impl Ews {
    async fn start(domain: &str, auth: &str) -> Ews {
        Ews::start_on(domain, auth, &["--port", "443"]).await
    }

    /// `listen`: `--port N` and, for the HTTP-redirect method, `--http-port 80`.
    async fn start_on(domain: &str, auth: &str, listen: &[&str]) -> Ews {
        let pki = tempfile::tempdir().unwrap();
        let host = format!("autodiscover.{domain}");
        let status = std::process::Command::new("bash")
            .arg(ews_dir().join("make_ca.sh"))
            .arg(pki.path())
            .args([host.as_str(), domain])
            .stdout(Stdio::null())
            .status()
            .expect("make_ca.sh runs (needs bash and openssl)");
        assert!(status.success(), "make_ca.sh failed");
        let users = pki.path().join("users.json");
        std::fs::write(
            &users,
            json!({ format!("alice@{domain}"): {
                "username": "CORP\\alice", "upn": format!("alice@{domain}"),
                "password": "Alice-Pass1", "inbox_total": 1, "inbox_unread": 0
            }})
            .to_string(),
        )
        .unwrap();
        for _ in 0..20 {
            let ip = next_ip();
            let mut child = Command::new("python3")
                .arg(ews_dir().join("ews_server.py"))
                .args(["--host", &ip.to_string(), "--auth", auth])
                .args(listen)
                .arg("--cert")
                .arg(pki.path().join("server.pem"))
                .arg("--key")
                .arg(pki.path().join("server.key"))
                .arg("--users")
                .arg(&users)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("python3 runs");
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let Some(ready) = lines.next_line().await.unwrap() else {
                // Could not bind (address taken): try the next address.
                let _ = child.wait().await;
                continue;
            };
            let port: u16 = ready
                .split_whitespace()
                .nth(1)
                .and_then(|url| url.rsplit(':').next())
                .and_then(|port| port.parse().ok())
                .expect("READY https://IP:PORT");
            let control = reqwest::Client::builder()
                .tls_certs_merge(
                    reqwest::Certificate::from_pem_bundle(
                        &std::fs::read(pki.path().join("ca.pem")).unwrap(),
                    )
                    .unwrap(),
                )
                .resolve(&host, SocketAddr::new(ip.into(), port))
                .build()
                .unwrap();
            return Ews { _child: child, ip, pki, control, host, port };
        }
        panic!("the EWS fake did not start (pip install -r tests/peers/ews/requirements.txt)");
    }

    fn ca(&self) -> PathBuf {
        self.pki.path().join("ca.pem")
    }

    /// The fake's request log (its `/test/` controls are never logged).
    async fn log(&self) -> Vec<Value> {
        let url = format!("https://{}:{}/test/log", self.host, self.port);
        self.control.get(url).send().await.unwrap().json().await.unwrap()
    }

    /// Requests reached the fake's `endpoint`, and none carried a credential.
    async fn assert_reached_without_credentials(&self, endpoint: &str) {
        let log = self.log().await;
        assert!(log.iter().any(|e| e["endpoint"] == endpoint), "{log:#?}");
        for entry in &log {
            assert_eq!(entry["credentials_sent"], json!(false), "{entry:#}");
            assert_eq!(entry["auth_scheme"], Value::Null, "{entry:#}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Config and assertions

/// The config for one test: Microsoft's endpoints at `ms`, DNS at `dns`, `resolve` overrides.
fn config(
    ms: &Microsoft,
    dns: &Dnsmasq,
    timeout: &str,
    ca: Option<&Path>,
    resolve: &[(String, Ipv4Addr)],
) -> Arc<Config> {
    let mut text = format!(
        "[office365]\nauthority = \"{base}/organizations/v2.0\"\n\
         [detection]\ntimeout = \"{timeout}\"\n\
         user_realm_url = \"{base}/getuserrealm.srf\"\n\
         autodiscover_v2_url = \"{base}/autodiscover/autodiscover.json/v1.0\"\n\
         [network]\nnameservers = [\"{dns}\"]\n",
        base = ms.base,
        dns = dns.addr,
    );
    if let Some(ca) = ca {
        text.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
    }
    text.push_str("[network.resolve]\n");
    for (name, ip) in resolve {
        text.push_str(&format!("\"{name}\" = \"{ip}\"\n"));
    }
    Arc::new(Config::parse(&text, None, &Env { is_root: true, ..Env::default() }).unwrap())
}

/// `DOMAIN` and `autodiscover.DOMAIN` on addresses where nothing listens (connections are
/// refused), unless `except` names one of them.
fn nobody_at(domain: &str, except: &[&str]) -> Vec<(String, Ipv4Addr)> {
    [domain.to_owned(), format!("autodiscover.{domain}")]
        .into_iter()
        .filter(|name| !except.contains(&name.as_str()))
        .map(|name| (name, next_ip()))
        .collect()
}

#[track_caller]
fn evidence<'a>(reply: &'a DetectReply, probe: &str) -> &'a Evidence {
    reply
        .evidence
        .iter()
        .find(|e| e.probe == probe)
        .unwrap_or_else(|| panic!("no `{probe}` evidence: {reply:#?}"))
}

#[track_caller]
fn assert_points(reply: &DetectReply, probe: &str, to: Option<Provider>, detail: &str) {
    let found = evidence(reply, probe);
    assert_eq!(found.points_to, to, "{probe}: {reply:#?}");
    assert!(found.detail.contains(detail), "{probe} should mention {detail:?}: {reply:#?}");
}

// ---------------------------------------------------------------------------------------------
// The cases

#[tokio::test]
async fn an_office365_domain_with_a_managed_realm_and_mx_to_exchange_online() {
    let Some(dns) = Dnsmasq::start(&[
        "--mx-host=contoso.test,contoso-test.mail.protection.outlook.com,0".into(),
    ])
    .await
    else {
        return;
    };
    let ms = Microsoft::start(Realm::Managed, Tenant::Found, V2::ExchangeOnline, None).await;
    let config = config(&ms, &dns, "5s", None, &nobody_at("contoso.test", &[]));

    let detector = Detector::default();
    let started = Instant::now();
    let found = detector.detect(config.clone(), "alice@contoso.test").await;
    assert_eq!(found.provider, Some(Provider::Office365), "{found:#?}");
    assert!(!found.conflicting && !found.cached);
    assert!(started.elapsed() < Duration::from_secs(4), "decided before the deadline");
    assert_points(&found, "user_realm", Some(Provider::Office365), "Managed, Contoso Ltd");
    assert_points(
        &found,
        "mx",
        Some(Provider::Office365),
        "contoso-test.mail.protection.outlook.com",
    );
    assert_points(&found, "openid_configuration", Some(Provider::Office365), "tenant exists");
    assert_points(&found, "autodiscover_v2", Some(Provider::Office365), "outlook.office365.com");
    assert!(dns.was_asked("MX", "contoso.test"), "the MX answer came from dnsmasq");
    ms.assert_no_credentials();

    // The same domain again (another address): from the cache, with no new request.
    let asked = ms.behaviour.seen.lock().unwrap().len();
    let again = detector.detect(config, "bob@contoso.test").await;
    assert!(again.cached, "{again:#?}");
    assert_eq!(again.email, "bob@contoso.test");
    assert_eq!((again.provider, again.evidence), (found.provider, found.evidence));
    assert_eq!(ms.behaviour.seen.lock().unwrap().len(), asked, "no probe ran again");
}

#[tokio::test]
async fn a_federated_office365_domain() {
    // MX to the company's own gateway: the realm and the tenant decide.
    let Some(dns) = Dnsmasq::start(&["--mx-host=fabrikam.test,mx1.fabrikam.test,10".into()]).await
    else {
        return;
    };
    let ms = Microsoft::start(Realm::Federated, Tenant::Found, V2::ExchangeOnline, None).await;
    let config = config(&ms, &dns, "5s", None, &nobody_at("fabrikam.test", &[]));

    let found = detect(config, "carol@fabrikam.test").await;
    assert_eq!(found.provider, Some(Provider::Office365), "{found:#?}");
    assert!(!found.conflicting);
    assert_points(
        &found,
        "user_realm",
        Some(Provider::Office365),
        "Federated via https://sts.fabrikam.test/adfs/ls/",
    );
    assert_points(&found, "mx", None, "mx1.fabrikam.test");
    assert_points(&found, "openid_configuration", Some(Provider::Office365), "tenant exists");
    ms.assert_no_credentials();
}

#[tokio::test]
async fn an_exchange_domain_found_only_through_srv() {
    let Some(dns) = Dnsmasq::start(&[
        "--mx-host=tailspin.test,mail.tailspin.test,10".into(),
        "--srv-host=_autodiscover._tcp.tailspin.test,mail.tailspin.test,443,0,0".into(),
    ])
    .await
    else {
        return;
    };
    let ms = Microsoft::start(Realm::Unknown, Tenant::Missing, V2::NotHere, None).await;
    let config = config(&ms, &dns, "5s", None, &nobody_at("tailspin.test", &[]));

    let found = detect(config, "dave@tailspin.test").await;
    assert_eq!(found.provider, Some(Provider::Exchange), "{found:#?}");
    assert!(!found.conflicting);
    assert_points(&found, "srv", Some(Provider::Exchange), "mail.tailspin.test:443");
    assert_points(&found, "user_realm", None, "does not know the domain (Unknown)");
    assert_points(&found, "openid_configuration", None, "AADSTS90002");
    assert_points(&found, "autodiscover_v2", None, "HTTP 302");
    assert_points(&found, "mx", None, "mail.tailspin.test");
    for probe in ["autodiscover_domain", "autodiscover_host", "autodiscover_http_redirect"] {
        assert_eq!(evidence(&found, probe).points_to, None, "{found:#?}");
    }
    assert!(dns.was_asked("SRV", "_autodiscover._tcp.tailspin.test"));
    ms.assert_no_credentials();
}

#[tokio::test]
async fn an_exchange_domain_found_only_at_autodiscover_host() {
    let Some(dns) = Dnsmasq::start(&[]).await else { return };
    let ews = Ews::start("northwind.test", "ntlm").await;
    let ms = Microsoft::start(Realm::Unknown, Tenant::Missing, V2::NotHere, None).await;
    let mut resolve = nobody_at("northwind.test", &["autodiscover.northwind.test"]);
    resolve.push(("autodiscover.northwind.test".into(), ews.ip));
    let config = config(&ms, &dns, "5s", Some(&ews.ca()), &resolve);

    let found = detect(config, "alice@northwind.test").await;
    assert_eq!(found.provider, Some(Provider::Exchange), "{found:#?}");
    assert!(!found.conflicting);
    assert_points(
        &found,
        "autodiscover_host",
        Some(Provider::Exchange),
        "https://autodiscover.northwind.test/autodiscover/autodiscover.xml asks for NTLM",
    );
    assert_points(&found, "autodiscover_domain", None, "https://northwind.test/");
    assert_points(&found, "mx", None, "no MX records");
    assert_points(&found, "srv", None, "no SRV record");
    // Detection is anonymous: the fake saw the POX request without any credential.
    ews.assert_reached_without_credentials("autodiscover").await;
    ms.assert_no_credentials();
}

#[tokio::test]
async fn an_exchange_domain_found_only_through_the_http_redirect() {
    let Some(dns) = Dnsmasq::start(&[]).await else { return };
    // HTTPS on a high port, the plain-HTTP redirect on port 80: nothing answers on 443.
    let ews = Ews::start_on("adatum.test", "ntlm", &["--port", "0", "--http-port", "80"]).await;
    let ms = Microsoft::start(Realm::Unknown, Tenant::Missing, V2::NotHere, None).await;
    let mut resolve = nobody_at("adatum.test", &["autodiscover.adatum.test"]);
    resolve.push(("autodiscover.adatum.test".into(), ews.ip));
    let config = config(&ms, &dns, "5s", Some(&ews.ca()), &resolve);

    let found = detect(config, "ivan@adatum.test").await;
    assert_eq!(found.provider, Some(Provider::Exchange), "{found:#?}");
    assert_points(
        &found,
        "autodiscover_http_redirect",
        Some(Provider::Exchange),
        "http://autodiscover.adatum.test/autodiscover/autodiscover.xml redirects to https://",
    );
    assert_points(&found, "autodiscover_host", None, "https://autodiscover.adatum.test/");
    ews.assert_reached_without_credentials("autodiscover-redirect").await;
}

#[tokio::test]
async fn an_unknown_domain_where_nothing_answers() {
    let Some(dns) = Dnsmasq::start(&[]).await else { return };
    let ms = Microsoft::start(Realm::Unknown, Tenant::Missing, V2::NotHere, None).await;
    let config = config(&ms, &dns, "5s", None, &nobody_at("nowhere.test", &[]));

    let started = Instant::now();
    let found = detect(config, "erin@nowhere.test").await;
    assert_eq!(found.provider, None, "{found:#?}");
    assert!(!found.conflicting);
    // Every probe answered (with nothing), so the deadline was not waited for.
    assert_eq!(found.evidence.len(), 8, "{found:#?}");
    assert!(found.evidence.iter().all(|e| e.points_to.is_none()), "{found:#?}");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    assert!(dns.was_asked("MX", "nowhere.test"));
    assert!(dns.was_asked("SRV", "_autodiscover._tcp.nowhere.test"));
}

#[tokio::test]
async fn a_managed_realm_and_an_ntlm_autodiscover_conflict() {
    let Some(dns) = Dnsmasq::start(&[]).await else { return };
    let ews = Ews::start("woodgrove.test", "negotiate,ntlm").await;
    // The realm answers once the POX request has reached the fake, so both answers land in the
    // same settle window however loaded the machine is.
    let gate = Arc::new(Notify::new());
    let ms =
        Microsoft::start(Realm::Managed, Tenant::Missing, V2::NotHere, Some(gate.clone())).await;
    let mut resolve = nobody_at("woodgrove.test", &["autodiscover.woodgrove.test"]);
    resolve.push(("autodiscover.woodgrove.test".into(), ews.ip));
    let config = config(&ms, &dns, "5s", Some(&ews.ca()), &resolve);

    let detection = tokio::spawn(async move { detect(config, "frank@woodgrove.test").await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ews.log().await.iter().any(|e| e["endpoint"] == "autodiscover") {
        assert!(Instant::now() < deadline, "the POX request never reached the fake");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gate.notify_one();
    let found = detection.await.unwrap();
    assert!(found.conflicting, "{found:#?}");
    assert_eq!(found.provider, None, "conflicting evidence settles nothing");
    assert_points(&found, "user_realm", Some(Provider::Office365), "Managed");
    assert_points(&found, "autodiscover_host", Some(Provider::Exchange), "Negotiate, NTLM");
    ews.assert_reached_without_credentials("autodiscover").await;
    ms.assert_no_credentials();
}

#[tokio::test]
async fn a_hanging_probe_does_not_delay_a_decisive_answer() {
    let Some(dns) = Dnsmasq::start(&[]).await else { return };
    // Autodiscover v2 and https://DOMAIN accept and never answer.
    let ms = Microsoft::start(Realm::Managed, Tenant::Found, V2::Hang, None).await;
    let (hole, _hole) = black_hole(443).await;
    let mut resolve = nobody_at("litware.test", &["litware.test"]);
    resolve.push(("litware.test".into(), hole));
    let deadline = Duration::from_secs(10);
    let config = config(&ms, &dns, "10s", None, &resolve);

    let started = Instant::now();
    let found = detect(config, "gina@litware.test").await;
    let elapsed = started.elapsed();
    assert_eq!(found.provider, Some(Provider::Office365), "{found:#?}");
    // First decisive answer + the 250 ms settle window, not the deadline.
    assert!(elapsed < deadline / 4, "took {elapsed:?} of a {deadline:?} deadline");
    assert_points(&found, "unanswered", None, "2 slower probe(s)");
    assert!(found.evidence.iter().all(|e| e.probe != "autodiscover_v2"), "{found:#?}");
}

#[tokio::test]
async fn a_hanging_probe_without_a_decisive_answer_ends_at_the_deadline() {
    let Some(dns) = Dnsmasq::start(&[]).await else { return };
    let ms = Microsoft::start(Realm::Unknown, Tenant::Missing, V2::Hang, None).await;
    let (hole, _hole) = black_hole(443).await;
    let mut resolve = nobody_at("litware.test", &["autodiscover.litware.test"]);
    resolve.push(("autodiscover.litware.test".into(), hole));
    let deadline = Duration::from_secs(2);
    let config = config(&ms, &dns, "2s", None, &resolve);

    let started = Instant::now();
    let found = detect(config, "hank@litware.test").await;
    let elapsed = started.elapsed();
    assert_eq!(found.provider, None, "{found:#?}");
    assert!(!found.conflicting);
    assert!(elapsed >= deadline - Duration::from_millis(50), "ended early: {elapsed:?}");
    assert!(elapsed < deadline + Duration::from_secs(2), "overran the deadline: {elapsed:?}");
    // The two hanging probes either timed out themselves or were cut off at the deadline.
    for probe in ["autodiscover_v2", "autodiscover_host"] {
        assert!(
            found.evidence.iter().all(|e| e.probe != probe || e.detail.contains("deadline")),
            "{found:#?}"
        );
    }
}
