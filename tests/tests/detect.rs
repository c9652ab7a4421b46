//! Provider detection (SPEC §6) through the real binaries: `mslinkctl detect EMAIL --json` and
//! `mslinkctl connect EMAIL` without `--provider`, against a real DNS server (dnsmasq), fakes of
//! Microsoft's user-realm, OpenID-configuration and Autodiscover v2 endpoints (a thread serving
//! HTTP, written from `shared/vectors/detection`), the EWS fake for POX Autodiscover over real
//! TLS, and a listener that accepts and never answers.
//!
//! One "world" serves every test domain:
//!
//! | domain | realm | tenant | Autodiscover v2 | DNS | POX |
//! | --- | --- | --- | --- | --- | --- |
//! | contoso.test | Managed | yes | Exchange Online | MX → *.mail.protection.outlook.com | – |
//! | fabrikam.test | Federated | yes | Exchange Online | MX → own gateway | – |
//! | tailspin.test | Unknown | AADSTS90002 | 302 | SRV → mail.tailspin.test | – |
//! | northwind.test | Unknown | AADSTS90002 | 302 | – | autodiscover.DOMAIN: 401 NTLM |
//! | nowhere.test | Unknown | AADSTS90002 | 302 | – | – |
//! | woodgrove.test | Managed | AADSTS90002 | 302 | – | autodiscover.DOMAIN: 401 NTLM |
//! | litware.test | Managed | yes | hangs | – | https://DOMAIN hangs |
//! | stalled.test | Unknown | AADSTS90002 | hangs | – | autodiscover.DOMAIN hangs |
//!
//! Autodiscover v2's 302 redirects to the fake itself, again on every hop, as the real service
//! does (to its own host) for an address it has no mailbox for.

use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mslink_e2e::dnsmasq::Dnsmasq;
use mslink_e2e::ews::{Ews, Pki};
use mslink_e2e::loopback::fresh_ip;
use mslink_e2e::microsoft::{Domain, Microsoft, Realm, Tenant, V2};
use mslink_e2e::{ADMIN, ALICE, Daemon, ensure_accounts, require_root, require_tool};
use serde_json::{Value, json};

/// `[detection] timeout` of the test daemon.
const DEADLINE: Duration = Duration::from_secs(4);

/// The module table, from Microsoft's side; `woodgrove.test`'s realm answers once the POX
/// request has reached the EWS fake (its log at `ews_log`), so both answers land in one settle
/// window however loaded the machine is.
fn microsoft(ews_log: String) -> Microsoft {
    Microsoft::start(move |domain| {
        let realm = match domain {
            "contoso.test" | "litware.test" | "woodgrove.test" => Realm::Managed,
            "fabrikam.test" => Realm::Federated,
            _ => Realm::Unknown,
        };
        let tenant = match domain {
            "contoso.test" | "fabrikam.test" | "litware.test" => Tenant::Found,
            _ => Tenant::Missing,
        };
        let v2 = match domain {
            "litware.test" | "stalled.test" => V2::Hang,
            "contoso.test" | "fabrikam.test" => V2::ExchangeOnline,
            _ => V2::NotHere,
        };
        let mut answers = Domain::new(realm, tenant, v2);
        if domain == "woodgrove.test" {
            let log = ews_log.clone();
            answers.before_realm = Some(Arc::new(move || {
                let start = Instant::now();
                while !ews_saw(&log, "autodiscover.woodgrove.test")
                    && start.elapsed() < Duration::from_secs(10)
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }));
        }
        answers
    })
}

/// The EWS fake's request log (`/test/log`, read with curl).
fn ews_log(url: &str) -> Vec<Value> {
    let out = Command::new("curl").args(["-sS", "-k", url]).output().expect("curl");
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn ews_saw(url: &str, host: &str) -> bool {
    ews_log(url).iter().any(|e| e["endpoint"] == "autodiscover" && e["host"] == host)
}

/// Accepts connections on `ip:443` and never sends a byte.
fn black_hole(ip: Ipv4Addr) {
    let listener = TcpListener::bind((ip, 443)).expect("bind the black hole");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
}

/// Everything the test domains need, and a daemon configured to use it.
struct World {
    daemon: Daemon,
    dns: Dnsmasq,
    microsoft: Microsoft,
    _ews: Ews,
    ews_log_url: String,
    _pki: Pki,
}

impl World {
    fn start() -> World {
        let hosts = ["autodiscover.northwind.test", "autodiscover.woodgrove.test"];
        let pki = Pki::new(
            &hosts,
            &json!({"alice@northwind.test": {"username": "NORTHWIND\\alice",
                    "upn": "alice@northwind.test", "password": "Alice-Pass1"}}),
        );
        let ews = Ews::start(&pki, 443, &["--auth", "negotiate,ntlm"]);
        let ews_ip = ews.ip;
        let ews_log_url = format!("{}/test/log", ews.peer().url);
        let records = [
            "--mx-host=contoso.test,contoso-test.mail.protection.outlook.com,0",
            "--mx-host=fabrikam.test,mx1.fabrikam.test,10",
            "--mx-host=tailspin.test,mail.tailspin.test,10",
            "--srv-host=_autodiscover._tcp.tailspin.test,mail.tailspin.test,443,0,0",
        ];
        let dns = Dnsmasq::start(&records.map(String::from)).expect("dnsmasq, checked first");
        let microsoft = microsoft(ews_log_url.clone());

        let mut resolve = String::new();
        for domain in [
            "contoso.test",
            "fabrikam.test",
            "tailspin.test",
            "northwind.test",
            "nowhere.test",
            "woodgrove.test",
            "litware.test",
            "stalled.test",
        ] {
            for name in [domain.to_owned(), format!("autodiscover.{domain}")] {
                let ip = if hosts.contains(&name.as_str()) {
                    ews_ip
                } else if name == "litware.test" || name == "autodiscover.stalled.test" {
                    let hole = fresh_ip(443);
                    black_hole(hole);
                    hole
                } else {
                    // Nothing listens there: connections are refused.
                    fresh_ip(443)
                };
                resolve.push_str(&format!("\"{name}\" = \"{ip}\"\n"));
            }
        }
        let daemon = Daemon::start(&format!(
            "[office365]\nauthority = \"{base}/organizations/v2.0\"\n\
             [detection]\ntimeout = \"{deadline}s\"\n\
             user_realm_url = \"{base}/getuserrealm.srf\"\n\
             autodiscover_v2_url = \"{base}/autodiscover/autodiscover.json/v1.0\"\n\
             [network]\nnameservers = [\"{dns}\"]\nca_file = {ca:?}\n\
             [network.resolve]\n{resolve}",
            base = microsoft.base,
            deadline = DEADLINE.as_secs(),
            dns = dns.addr,
            ca = pki.ca(),
        ));
        World { daemon, dns, microsoft, _ews: ews, ews_log_url, _pki: pki }
    }

    /// `mslinkctl detect EMAIL --json`, and how long it took from outside.
    fn detect(&self, email: &str) -> (Value, Duration) {
        let started = Instant::now();
        let out = self.daemon.ctl(ALICE, &["detect", email, "--json"]);
        let took = started.elapsed();
        out.expect_code(0);
        let found = out.json();
        assert_eq!(found["kind"], "detect", "{found:#}");
        assert_eq!(found["email"], email);
        (found, took)
    }

    /// Requests reached the EWS fake and the Microsoft fakes, and none carried a credential.
    fn assert_no_credentials_sent(&self) {
        let log = ews_log(&self.ews_log_url);
        assert!(log.iter().any(|e| e["endpoint"] == "autodiscover"), "{log:#?}");
        for entry in &log {
            assert_eq!(entry["credentials_sent"], json!(false), "{entry:#}");
        }
        self.microsoft.assert_no_credentials();
    }
}

#[track_caller]
fn evidence<'a>(found: &'a Value, probe: &str) -> &'a Value {
    found["evidence"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["probe"] == probe))
        .unwrap_or_else(|| panic!("no `{probe}` evidence: {found:#}"))
}

#[track_caller]
fn assert_points(found: &Value, probe: &str, to: Value, detail: &str) {
    let e = evidence(found, probe);
    assert_eq!(e["points_to"], to, "{probe}: {found:#}");
    assert!(e["detail"].as_str().unwrap_or("").contains(detail), "{probe} ≠ {detail:?}: {found:#}");
}

/// Like [`assert_points`] for evidence that cannot change the answer: detection does not wait
/// for it, so it is either there and says `detail`, or named as not waited for.
#[track_caller]
fn assert_points_or_cut_off(found: &Value, probe: &str, to: Value, detail: &str) {
    let there =
        found["evidence"].as_array().is_some_and(|all| all.iter().any(|e| e["probe"] == probe));
    if there {
        assert_points(found, probe, to, detail);
    } else {
        let note = evidence(found, "unanswered")["detail"].as_str().unwrap_or("");
        assert!(note.contains(probe) && note.contains("could not change"), "{found:#}");
    }
}

/// The paths the Microsoft fake was asked for since the `from`-th request.
fn asked_since(microsoft: &Microsoft, from: usize) -> Vec<String> {
    microsoft.seen()[from..].iter().map(|(path, _)| path.clone()).collect()
}

fn prerequisites(test: &str) -> bool {
    require_root(test)
        && require_tool("dnsmasq", test)
        && require_tool("python3", test)
        && require_tool("openssl", test)
        && require_tool("curl", test)
}

#[test]
fn office365_domains_are_detected_and_cached() {
    if !prerequisites("office365_domains_are_detected_and_cached") {
        return;
    }
    ensure_accounts();
    let world = World::start();

    // Autodiscover v2 places the mailbox in Exchange Online: the domain's evidence (weaker) may
    // be cut off once the POX probes, which could contradict it, have answered.
    let (found, _) = world.detect("alice@contoso.test");
    assert_eq!(found["provider"], "office365", "{found:#}");
    assert_eq!((&found["conflicting"], &found["cached"]), (&json!(false), &json!(false)));
    assert_points(&found, "autodiscover_v2", json!("office365"), "outlook.office365.com");
    for probe in ["autodiscover_domain", "autodiscover_host"] {
        assert_points(&found, probe, Value::Null, "no answer");
    }
    assert_points_or_cut_off(&found, "user_realm", json!("office365"), "Managed");
    assert_points_or_cut_off(
        &found,
        "mx",
        json!("office365"),
        "contoso-test.mail.protection.outlook.com",
    );
    assert_points_or_cut_off(&found, "openid_configuration", json!("office365"), "tenant exists");
    if found["evidence"].as_array().is_some_and(|all| all.iter().any(|e| e["probe"] == "mx")) {
        assert!(world.dns.was_asked("MX", "contoso.test"), "MX came from dnsmasq");
    }

    // Another address of the domain: Autodiscover answers per mailbox, so it is asked again
    // (the domain's evidence comes from the cache only when every domain probe answered).
    let asked = world.microsoft.seen().len();
    let (again, _) = world.detect("bob@contoso.test");
    assert_eq!(again["provider"], "office365", "{again:#}");
    assert_points(&again, "autodiscover_v2", json!("office365"), "outlook.office365.com");
    let v2_for_bob = "/autodiscover/autodiscover.json/v1.0/bob@contoso.test";
    let seen = asked_since(&world.microsoft, asked);
    assert!(seen.iter().any(|p| p == v2_for_bob), "bob's mailbox was not asked: {seen:?}");

    // The same address again: its mailbox evidence from the cache, Autodiscover not asked.
    let asked = world.microsoft.seen().len();
    let (third, _) = world.detect("bob@contoso.test");
    assert_eq!(third["provider"], "office365", "{third:#}");
    assert_eq!(evidence(&third, "autodiscover_v2"), evidence(&again, "autodiscover_v2"));
    let seen = asked_since(&world.microsoft, asked);
    assert!(seen.iter().all(|p| !p.starts_with("/autodiscover/")), "asked again: {seen:?}");

    let (federated, _) = world.detect("carol@fabrikam.test");
    assert_eq!(federated["provider"], "office365", "{federated:#}");
    assert_points(&federated, "autodiscover_v2", json!("office365"), "outlook.office365.com");
    assert_points_or_cut_off(
        &federated,
        "user_realm",
        json!("office365"),
        "Federated via https://sts.",
    );
    assert_points_or_cut_off(&federated, "mx", Value::Null, "mx1.fabrikam.test");

    // The text form shows the same answer and evidence.
    let text = world.daemon.ctl(ALICE, &["detect", "carol@fabrikam.test"]);
    text.expect_code(0);
    assert!(text.stdout.starts_with("carol@fabrikam.test: office365"), "{}", text.stdout);
    assert!(
        text.stdout.contains("autodiscover_v2") && text.stdout.contains("outlook.office365.com"),
        "{}",
        text.stdout
    );
}

#[test]
fn exchange_and_unknown_domains() {
    if !prerequisites("exchange_and_unknown_domains") {
        return;
    }
    ensure_accounts();
    let world = World::start();

    let (srv, _) = world.detect("dave@tailspin.test");
    assert_eq!(srv["provider"], "exchange", "{srv:#}");
    assert_points(&srv, "srv", json!("exchange"), "mail.tailspin.test:443");
    assert_points(&srv, "user_realm", Value::Null, "Unknown");
    assert_points(&srv, "openid_configuration", Value::Null, "AADSTS90002");
    assert!(world.dns.was_asked("SRV", "_autodiscover._tcp.tailspin.test"));
    // Autodiscover v2's redirects are followed (to the fake's own host, as the real service
    // redirects to its own) until the hop limit: no mailbox there.
    assert_points(&srv, "autodiscover_v2", Value::Null, "HTTP 302");
    let seen = asked_since(&world.microsoft, 0);
    assert!(seen.iter().any(|p| p == "/autodiscover/autodiscover.json"), "{seen:?}");

    let (host, _) = world.detect("alice@northwind.test");
    assert_eq!(host["provider"], "exchange", "{host:#}");
    assert_points(&host, "autodiscover_host", json!("exchange"), "autodiscover.northwind.test");
    assert_points(&host, "autodiscover_host", json!("exchange"), "NTLM");
    assert_points(&host, "srv", Value::Null, "no SRV record");
    world.assert_no_credentials_sent();

    let (unknown, took) = world.detect("erin@nowhere.test");
    assert_eq!(unknown["provider"], Value::Null, "{unknown:#}");
    assert_eq!(unknown["conflicting"], false);
    assert!(
        unknown["evidence"]
            .as_array()
            .is_some_and(|all| all.iter().all(|e| e["points_to"].is_null())),
        "{unknown:#}"
    );
    assert!(took < DEADLINE, "every probe answered, so no deadline was waited for: {took:?}");

    // `connect` without --provider and without a terminal: exit 6, naming --provider.
    world.daemon.ctl(ADMIN, &["enable"]).expect_code(0);
    let connect = world.daemon.ctl(ALICE, &["connect", "erin@nowhere.test"]);
    connect.expect_code(6);
    assert!(connect.stderr.contains("--provider"), "{}", connect.stderr);
    assert!(connect.stderr.contains("no probe was decisive"), "{}", connect.stderr);
}

#[test]
fn conflicting_evidence_and_hanging_probes() {
    if !prerequisites("conflicting_evidence_and_hanging_probes") {
        return;
    }
    ensure_accounts();
    let world = World::start();

    let (conflict, _) = world.detect("frank@woodgrove.test");
    assert_eq!(conflict["provider"], Value::Null, "{conflict:#}");
    assert_eq!(conflict["conflicting"], true, "{conflict:#}");
    assert_points(&conflict, "user_realm", json!("office365"), "Managed");
    assert_points(&conflict, "autodiscover_host", json!("exchange"), "Negotiate, NTLM");
    world.assert_no_credentials_sent();
    world.daemon.ctl(ADMIN, &["enable"]).expect_code(0);
    let connect = world.daemon.ctl(ALICE, &["connect", "frank@woodgrove.test"]);
    connect.expect_code(6);
    assert!(connect.stderr.contains("conflicts") && connect.stderr.contains("--provider"));

    // Autodiscover v2 and https://litware.test accept and never answer; the realm decides. Both
    // answer about the mailbox, which outweighs the realm, so they are waited for until the
    // deadline (and no longer): the answer comes at the deadline, plus a small margin.
    let (decisive, took) = world.detect("gina@litware.test");
    assert_eq!(decisive["provider"], "office365", "{decisive:#}");
    assert_points(&decisive, "user_realm", json!("office365"), "Managed");
    let elapsed = Duration::from_millis(decisive["elapsed_ms"].as_u64().unwrap_or(0));
    assert!(elapsed >= DEADLINE - Duration::from_millis(50), "ended early: {elapsed:?}");
    assert!(took < DEADLINE + Duration::from_secs(2), "overran the deadline: {took:?}");
    // Each is named as unanswered at the deadline, or gave up at it by itself.
    let all = decisive["evidence"].as_array().cloned().unwrap_or_default();
    for probe in ["autodiscover_v2", "autodiscover_domain"] {
        let waited = all.iter().any(|e| {
            let detail = e["detail"].as_str().unwrap_or("");
            (e["probe"] == "unanswered" && detail.contains(probe) && detail.contains("deadline"))
                || (e["probe"] == probe && e["points_to"].is_null() && detail.contains("deadline"))
        });
        assert!(waited, "{probe} was not waited for until the deadline: {decisive:#}");
    }

    // Every domain probe answered while those were waited for, so the domain's evidence is
    // cached: another address asks Microsoft only about its mailbox.
    let asked = world.microsoft.seen().len();
    let (other, _) = world.detect("ivan@litware.test");
    assert_eq!((&other["provider"], &other["cached"]), (&json!("office365"), &json!(true)));
    assert_eq!(evidence(&other, "user_realm"), evidence(&decisive, "user_realm"));
    let seen = asked_since(&world.microsoft, asked);
    assert_eq!(seen, ["/autodiscover/autodiscover.json/v1.0/ivan@litware.test"]);

    // Nothing decisive, two probes hanging: the answer comes at the deadline.
    let (stalled, took) = world.detect("hank@stalled.test");
    assert_eq!(stalled["provider"], Value::Null, "{stalled:#}");
    let elapsed = Duration::from_millis(stalled["elapsed_ms"].as_u64().unwrap_or(0));
    assert!(elapsed >= DEADLINE - Duration::from_millis(50), "ended early: {elapsed:?}");
    assert!(took < DEADLINE + Duration::from_secs(2), "overran the deadline: {took:?}");
}
