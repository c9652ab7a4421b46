//! Fakes of the Microsoft endpoints provider detection asks (SPEC §6): login.microsoftonline.com's
//! user realm (`getuserrealm.srf`) and OpenID configuration, and outlook.office365.com's
//! Autodiscover v2, written from `shared/vectors/detection`. One plain-HTTP server on
//! 127.0.0.1:0 (detection allows plain HTTP to loopback), a thread per connection, answering
//! for each domain as the test says.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// What `getuserrealm.srf` says about a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realm {
    Managed,
    Federated,
    Unknown,
}

/// Whether an Entra tenant exists for a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenant {
    Found,
    /// AADSTS90002.
    Missing,
}

/// What Autodiscover v2 (`autodiscover.json/v1.0`) answers for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V2 {
    /// `outlook.office365.com`.
    ExchangeOnline,
    /// Exchange Online of a national cloud: this EWS host.
    Cloud(String),
    /// 302 to the next hop, as Exchange Online does for addresses it does not host
    /// (`autodiscover_v2_json_exo_nonexistent_user_302.http`): to itself, with `RedirectCount`
    /// one higher, every time.
    NotHere,
    /// A hybrid organisation: Exchange Online answers with the on-premises EWS URL
    /// (`https://mail.DOMAIN/EWS/Exchange.asmx`) for these addresses, its own for the others.
    Hybrid { on_premises: Vec<String> },
    /// Accepts the request and never answers.
    Hang,
}

/// How a test domain looks from Microsoft's side.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // holds a closure
pub struct Domain {
    pub realm: Realm,
    pub tenant: Tenant,
    pub v2: V2,
    /// Runs before the user realm is answered (to order that answer after another peer's).
    pub before_realm: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Domain {
    pub fn new(realm: Realm, tenant: Tenant, v2: V2) -> Domain {
        Domain { realm, tenant, v2, before_realm: None }
    }
}

/// What the fakes say for which domain.
type Answers = Arc<dyn Fn(&str) -> Domain + Send + Sync>;

/// The running fakes; they stop with the test process.
#[derive(Clone)]
pub struct Microsoft {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Requests seen: path and whether an `Authorization` header came with it.
    seen: Arc<Mutex<Vec<(String, bool)>>>,
}

impl std::fmt::Debug for Microsoft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Microsoft").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Microsoft {
    /// Starts the fakes, answering for each domain as `answers` says.
    pub fn start(answers: impl Fn(&str) -> Domain + Send + Sync + 'static) -> Microsoft {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Microsoft fakes");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answers: Answers = Arc::new(answers);
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (log, answers) = (log.clone(), answers.clone());
                std::thread::spawn(move || serve(stream, &log, answers.as_ref()));
            }
        });
        Microsoft { base, seen }
    }

    /// Every domain answered the same way.
    pub fn for_every_domain(domain: Domain) -> Microsoft {
        Microsoft::start(move |_| domain.clone())
    }

    /// The requests seen so far: path, and whether it carried an `Authorization` header.
    pub fn seen(&self) -> Vec<(String, bool)> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Requests reached the fakes, and none carried credentials.
    #[track_caller]
    pub fn assert_no_credentials(&self) {
        let seen = self.seen();
        assert!(!seen.is_empty(), "nothing reached the Microsoft fakes");
        assert!(seen.iter().all(|(_, authorization)| !authorization), "{seen:?}");
    }
}

/// An HTTP answer, or none ever.
enum Reply {
    Answer { status: &'static str, headers: Vec<(&'static str, String)>, body: String },
    Hang,
}

fn json_reply(status: &'static str, body: &Value) -> Reply {
    Reply::Answer {
        status,
        headers: vec![("Content-Type", "application/json; charset=utf-8".into())],
        body: body.to_string(),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(
    mut stream: TcpStream,
    seen: &Mutex<Vec<(String, bool)>>,
    answers: &(dyn Fn(&str) -> Domain + Send + Sync),
) {
    let Ok(clone) = stream.try_clone() else { return };
    let mut reader = BufReader::new(clone);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let (mut authorization, mut host) = (false, String::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        authorization |= lower.starts_with("authorization:");
        if lower.starts_with("host:") {
            host = line["host:".len()..].trim().to_owned();
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    seen.lock().unwrap_or_else(|e| e.into_inner()).push((path.to_owned(), authorization));
    let query: HashMap<String, String> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    match reply(&host, path, &query, answers) {
        Reply::Answer { status, headers, body } => {
            let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("Cache-Control: private\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
        // Hold the connection, saying nothing, until the client gives up.
        Reply::Hang => {
            let _ = reader.read(&mut [0; 1]);
        }
    }
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

/// What Microsoft says about `path` on `host` (this fake).
fn reply(
    host: &str,
    path: &str,
    query: &HashMap<String, String>,
    answers: &(dyn Fn(&str) -> Domain + Send + Sync),
) -> Reply {
    if path == "/getuserrealm.srf" {
        let login = query.get("login").cloned().unwrap_or_default();
        let domain = domain_of(&login).to_owned();
        let answer = answers(&domain);
        if let Some(wait) = &answer.before_realm {
            wait();
        }
        let body = match answer.realm {
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
            Realm::Unknown => {
                json!({"State": 4, "UserState": 1, "Login": login, "NameSpaceType": "Unknown"})
            }
        };
        return json_reply("200 OK", &body);
    }
    if let Some(rest) = path.strip_suffix("/v2.0/.well-known/openid-configuration") {
        let domain = rest.trim_start_matches('/');
        let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        return match answers(domain).tenant {
            Tenant::Found => json_reply(
                "200 OK",
                &json!({
                    "token_endpoint": format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                    "jwks_uri": format!("https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"),
                    "response_modes_supported": ["query", "fragment", "form_post"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "issuer": format!("https://login.microsoftonline.com/{tenant}/v2.0"),
                    "request_uri_parameter_supported": false,
                    "authorization_endpoint": format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize"),
                    "device_authorization_endpoint": format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode"),
                    "tenant_region_scope": "EU",
                    "cloud_instance_name": "microsoftonline.com"
                }),
            ),
            Tenant::Missing => json_reply(
                "400 Bad Request",
                &json!({
                    "error": "invalid_tenant",
                    "error_description": format!("AADSTS90002: Tenant '{domain}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.\r\nTrace ID: 0b5f7c1e-3c1e-4f0e-9a52-5d1f2a3b4c00\r\nCorrelation ID: 3f2d1c0b-aaaa-4bbb-8ccc-1234567890ab\r\nTimestamp: 2026-01-12 09:30:00Z"),
                    "error_codes": [90002],
                    "timestamp": "2026-01-12 09:30:00Z",
                    "trace_id": "0b5f7c1e-3c1e-4f0e-9a52-5d1f2a3b4c00",
                    "correlation_id": "3f2d1c0b-aaaa-4bbb-8ccc-1234567890ab",
                    "error_uri": "https://login.microsoftonline.com/error?code=90002"
                }),
            ),
        };
    }
    // The first request names the address in the path; the redirects name it in `Email`.
    let redirected = path == "/autodiscover/autodiscover.json";
    if let Some(email) = path
        .strip_prefix("/autodiscover/autodiscover.json/v1.0/")
        .map(percent_decode)
        .or_else(|| redirected.then(|| query.get("Email").cloned().unwrap_or_default()))
    {
        let protocol = query.get("Protocol").cloned().unwrap_or_default();
        let count: u32 = query.get("RedirectCount").and_then(|n| n.parse().ok()).unwrap_or(0);
        let url = |ews: &str| json!({"Protocol": protocol, "Url": format!("https://{ews}/EWS/Exchange.asmx")});
        return match answers(domain_of(&email)).v2 {
            V2::ExchangeOnline => json_reply("200 OK", &url("outlook.office365.com")),
            V2::Cloud(ews) => json_reply("200 OK", &url(&ews)),
            V2::Hybrid { on_premises } => {
                let here = on_premises.iter().any(|a| a.eq_ignore_ascii_case(&email));
                let ews = if here {
                    format!("mail.{}", domain_of(&email))
                } else {
                    "outlook.office365.com".into()
                };
                json_reply("200 OK", &url(&ews))
            }
            V2::Hang => Reply::Hang,
            V2::NotHere => {
                // The real service redirects to its own host; this fake is that host.
                let next = format!(
                    "http://{host}/autodiscover/autodiscover.json?Email={}&Protocol={protocol}&RedirectCount={}",
                    email.replace('@', "%40"),
                    count + 1
                );
                Reply::Answer {
                    status: "302 Found",
                    headers: vec![
                        ("Content-Type", "text/html; charset=utf-8".into()),
                        ("Location", next.clone()),
                    ],
                    body: format!(
                        "<html><head><title>Object moved</title></head><body>\r\n<h2>Object moved to <a href=\"{}\">here</a>.</h2>\r\n</body></html>\r\n",
                        next.replace('&', "&amp;")
                    ),
                }
            }
        };
    }
    Reply::Answer { status: "404 Not Found", headers: Vec::new(), body: "<h1>404</h1>".into() }
}
