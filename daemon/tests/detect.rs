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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mslink_proto::{DetectReply, Evidence, Provider};
use mslinkd::config::{Config, Env};
use mslinkd::detect::{Detector, detect};
use serde_json::{Value, json};

use mslink_e2e::dnsmasq::Dnsmasq;
use mslink_e2e::ews::{self, Pki};
use mslink_e2e::loopback::fresh_ip;
use mslink_e2e::microsoft::{Domain, Microsoft, Realm, Tenant, V2};

/// Aborts a background task (a fake server) when the test drops it.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// A listener that accepts and never answers

/// Accepts TCP connections on `ip:port` and holds them open without a byte (a TLS handshake to
/// it never completes).
async fn black_hole(port: u16) -> (Ipv4Addr, Task) {
    for _ in 0..20 {
        let ip = fresh_ip(443);
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

/// The EWS fake of `tests/peers/ews` on port 443 of a fresh loopback address, with a
/// certificate for `autodiscover.DOMAIN` and `DOMAIN` from a throwaway CA.
struct Ews {
    fake: ews::Ews,
    pki: Pki,
}

impl Ews {
    async fn start(domain: &str, auth: &str) -> Ews {
        Ews::start_on(domain, auth, 443, &[]).await
    }

    /// HTTPS on `port` (0: any), with `args` (`--http-port 80` for the HTTP-redirect method).
    async fn start_on(domain: &str, auth: &str, port: u16, args: &[&str]) -> Ews {
        let host = format!("autodiscover.{domain}");
        let users = json!({ format!("alice@{domain}"): {
            "username": "CORP\\alice", "upn": format!("alice@{domain}"),
            "password": "Alice-Pass1", "inbox_total": 1, "inbox_unread": 0
        }});
        let pki = Pki::new(&[host.as_str(), domain], &users);
        let fake = ews::Ews::start(&pki, port, &[&["--auth", auth], args].concat());
        Ews { fake, pki }
    }

    fn ip(&self) -> Ipv4Addr {
        self.fake.ip
    }

    fn ca(&self) -> PathBuf {
        self.pki.ca()
    }

    /// The fake's request log (its `/test/` controls are never logged).
    fn log(&self) -> Vec<Value> {
        self.fake.log()
    }

    /// Requests reached the fake's `endpoint`, and none carried a credential.
    fn assert_reached_without_credentials(&self, endpoint: &str) {
        let log = self.log();
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
    config_in(ms, dns, timeout, ca, resolve, "")
}

/// [`config`] with more `[office365]` keys (`cloud = "…"`).
fn config_in(
    ms: &Microsoft,
    dns: &Dnsmasq,
    timeout: &str,
    ca: Option<&Path>,
    resolve: &[(String, Ipv4Addr)],
    office365: &str,
) -> Arc<Config> {
    let mut text = format!(
        "[office365]\n{office365}authority = \"{base}/organizations/v2.0\"\n\
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
        .map(|name| (name, fresh_ip(443)))
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

/// Like [`assert_points`] for evidence that cannot change the answer: detection does not wait
/// for it, so it is either there and says `detail`, or named as not waited for.
#[track_caller]
fn assert_points_or_cut_off(reply: &DetectReply, probe: &str, to: Option<Provider>, detail: &str) {
    if reply.evidence.iter().any(|e| e.probe == probe) {
        assert_points(reply, probe, to, detail);
    } else {
        let note = evidence(reply, "unanswered");
        assert!(
            note.detail.contains(probe) && note.detail.contains("could not change"),
            "{reply:#?}"
        );
    }
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
    ]) else {
        return;
    };
    let ms =
        Microsoft::for_every_domain(Domain::new(Realm::Managed, Tenant::Found, V2::ExchangeOnline));
    let config = config(&ms, &dns, "5s", None, &nobody_at("contoso.test", &[]));

    let detector = Detector::default();
    let started = Instant::now();
    let found = detector.detect(config.clone(), "alice@contoso.test").await;
    assert_eq!(found.provider, Some(Provider::Office365), "{found:#?}");
    assert!(!found.conflicting && !found.cached);
    assert!(started.elapsed() < Duration::from_secs(4), "decided before the deadline");
    assert_points_or_cut_off(
        &found,
        "user_realm",
        Some(Provider::Office365),
        "Managed, Contoso Ltd",
    );
    assert_points_or_cut_off(
        &found,
        "mx",
        Some(Provider::Office365),
        "contoso-test.mail.protection.outlook.com",
    );
    assert_points_or_cut_off(
        &found,
        "openid_configuration",
        Some(Provider::Office365),
        "tenant exists",
    );
    assert_points(&found, "autodiscover_v2", Some(Provider::Office365), "outlook.office365.com");
    if found.evidence.iter().any(|e| e.probe == "mx") {
        assert!(dns.was_asked("MX", "contoso.test"), "the MX answer came from dnsmasq");
    }
    ms.assert_no_credentials();

    // Another address of the domain: the domain's evidence from the cache, Autodiscover (which
    // answers per mailbox) asked again. Evidence is cached only when every probe of its kind
    // answered (a probe cut off early might matter for another address).
    let complete = |reply: &DetectReply, probes: &[&str]| {
        reply
            .evidence
            .iter()
            .all(|e| e.probe != "unanswered" || probes.iter().all(|p| !e.detail.contains(p)))
    };
    let domain_probes =
        ["user_realm", "openid_configuration", "mx", "autodiscover_http_redirect", "srv"];
    let asked = ms.seen().len();
    let again = detector.detect(config.clone(), "bob@contoso.test").await;
    assert_eq!(again.cached, complete(&found, &domain_probes), "{found:#?}\n{again:#?}");
    assert_eq!(again.email, "bob@contoso.test");
    assert_eq!(again.provider, found.provider, "{again:#?}");
    if again.cached {
        let seen: Vec<String> = ms.seen()[asked..].iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(seen, ["/autodiscover/autodiscover.json/v1.0/bob@contoso.test"]);
    }
    // The same address again: from the cache, with no request at all, once complete.
    let asked = ms.seen().len();
    let third = detector.detect(config, "bob@contoso.test").await;
    if complete(&again, &domain_probes) && complete(&again, &["autodiscover"]) {
        assert!(third.cached && third.evidence == again.evidence, "{third:#?}");
        assert_eq!(ms.seen().len(), asked, "no probe ran again");
    }
}

#[tokio::test]
async fn a_federated_office365_domain() {
    // MX to the company's own gateway: the realm and the tenant decide.
    let Some(dns) = Dnsmasq::start(&["--mx-host=fabrikam.test,mx1.fabrikam.test,10".into()]) else {
        return;
    };
    let ms = Microsoft::for_every_domain(Domain::new(
        Realm::Federated,
        Tenant::Found,
        V2::ExchangeOnline,
    ));
    let config = config(&ms, &dns, "5s", None, &nobody_at("fabrikam.test", &[]));

    let found = detect(config, "carol@fabrikam.test").await;
    assert_eq!(found.provider, Some(Provider::Office365), "{found:#?}");
    assert!(!found.conflicting);
    assert_points_or_cut_off(
        &found,
        "user_realm",
        Some(Provider::Office365),
        "Federated via https://sts.fabrikam.test/adfs/ls/",
    );
    assert_points_or_cut_off(&found, "mx", None, "mx1.fabrikam.test");
    assert_points_or_cut_off(
        &found,
        "openid_configuration",
        Some(Provider::Office365),
        "tenant exists",
    );
    ms.assert_no_credentials();
}

#[tokio::test]
async fn an_exchange_domain_found_only_through_srv() {
    let Some(dns) = Dnsmasq::start(&[
        "--mx-host=tailspin.test,mail.tailspin.test,10".into(),
        "--srv-host=_autodiscover._tcp.tailspin.test,mail.tailspin.test,443,0,0".into(),
    ]) else {
        return;
    };
    let ms = Microsoft::for_every_domain(Domain::new(Realm::Unknown, Tenant::Missing, V2::NotHere));
    let config = config(&ms, &dns, "5s", None, &nobody_at("tailspin.test", &[]));

    let found = detect(config, "dave@tailspin.test").await;
    assert_eq!(found.provider, Some(Provider::Exchange), "{found:#?}");
    assert!(!found.conflicting);
    assert_points(&found, "srv", Some(Provider::Exchange), "mail.tailspin.test:443");
    assert_points(&found, "user_realm", None, "does not know the domain (Unknown)");
    assert_points_or_cut_off(&found, "openid_configuration", None, "AADSTS90002");
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
    let dns = Dnsmasq::start(&[]).unwrap();
    let ews = Ews::start("northwind.test", "ntlm").await;
    let ms = Microsoft::for_every_domain(Domain::new(Realm::Unknown, Tenant::Missing, V2::NotHere));
    let mut resolve = nobody_at("northwind.test", &["autodiscover.northwind.test"]);
    resolve.push(("autodiscover.northwind.test".into(), ews.ip()));
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
    assert_points_or_cut_off(&found, "mx", None, "no MX records");
    assert_points_or_cut_off(&found, "srv", None, "no SRV record");
    // Detection is anonymous: the fake saw the POX request without any credential.
    ews.assert_reached_without_credentials("autodiscover");
    ms.assert_no_credentials();
}

#[tokio::test]
async fn an_exchange_domain_found_only_through_the_http_redirect() {
    let dns = Dnsmasq::start(&[]).unwrap();
    // HTTPS on a high port, the plain-HTTP redirect on port 80: nothing answers on 443.
    let ews = Ews::start_on("adatum.test", "ntlm", 0, &["--http-port", "80"]).await;
    let ms = Microsoft::for_every_domain(Domain::new(Realm::Unknown, Tenant::Missing, V2::NotHere));
    let mut resolve = nobody_at("adatum.test", &["autodiscover.adatum.test"]);
    resolve.push(("autodiscover.adatum.test".into(), ews.ip()));
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
    ews.assert_reached_without_credentials("autodiscover-redirect");
}

#[tokio::test]
async fn an_unknown_domain_where_nothing_answers() {
    let dns = Dnsmasq::start(&[]).unwrap();
    let ms = Microsoft::for_every_domain(Domain::new(Realm::Unknown, Tenant::Missing, V2::NotHere));
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
    let dns = Dnsmasq::start(&[]).unwrap();
    let ews = Ews::start("woodgrove.test", "negotiate,ntlm").await;
    // The realm answers once the POX request has reached the fake, so both answers land in the
    // same settle window however loaded the machine is.
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let ms = Microsoft::for_every_domain(Domain {
        before_realm: Some(Arc::new(move || {
            let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(10));
        })),
        ..Domain::new(Realm::Managed, Tenant::Missing, V2::NotHere)
    });
    let mut resolve = nobody_at("woodgrove.test", &["autodiscover.woodgrove.test"]);
    resolve.push(("autodiscover.woodgrove.test".into(), ews.ip()));
    let config = config(&ms, &dns, "5s", Some(&ews.ca()), &resolve);

    let detection = tokio::spawn(async move { detect(config, "frank@woodgrove.test").await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ews.log().iter().any(|e| e["endpoint"] == "autodiscover") {
        assert!(Instant::now() < deadline, "the POX request never reached the fake");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    release.send(()).unwrap();
    let found = detection.await.unwrap();
    assert!(found.conflicting, "{found:#?}");
    assert_eq!(found.provider, None, "conflicting evidence settles nothing");
    assert_points(&found, "user_realm", Some(Provider::Office365), "Managed");
    assert_points(&found, "autodiscover_host", Some(Provider::Exchange), "Negotiate, NTLM");
    ews.assert_reached_without_credentials("autodiscover");
    ms.assert_no_credentials();
}

#[tokio::test]
async fn a_hanging_probe_that_cannot_change_the_answer_is_not_waited_for() {
    let dns = Dnsmasq::start(&[]).unwrap();
    // Autodiscover v2 places the mailbox in Exchange Online; the plain-HTTP redirect method
    // (medium evidence at most) accepts and never answers.
    let ms =
        Microsoft::for_every_domain(Domain::new(Realm::Managed, Tenant::Found, V2::ExchangeOnline));
    let (hole, _hole) = black_hole(80).await;
    let mut resolve = nobody_at("litware.test", &["autodiscover.litware.test"]);
    resolve.push(("autodiscover.litware.test".into(), hole));
    let deadline = Duration::from_secs(10);
    let config = config(&ms, &dns, "10s", None, &resolve);

    let started = Instant::now();
    let found = detect(config, "gina@litware.test").await;
    let elapsed = started.elapsed();
    assert_eq!(found.provider, Some(Provider::Office365), "{found:#?}");
    assert!(elapsed < deadline / 4, "took {elapsed:?} of a {deadline:?} deadline");
    let note = &evidence(&found, "unanswered").detail;
    assert!(
        note.contains("autodiscover_http_redirect")
            && note.contains("could not change the decision"),
        "{found:#?}"
    );
}

#[tokio::test]
async fn a_hanging_probe_that_could_outweigh_the_realm_is_waited_for_until_the_deadline() {
    let dns = Dnsmasq::start(&[]).unwrap();
    // Autodiscover v2, which could place the mailbox on-premises, accepts and never answers:
    // the realm decides, but only at the deadline.
    let ms = Microsoft::for_every_domain(Domain::new(Realm::Managed, Tenant::Found, V2::Hang));
    let deadline = Duration::from_secs(2);
    let config = config(&ms, &dns, "2s", None, &nobody_at("litware.test", &[]));

    let started = Instant::now();
    let found = detect(config, "gina@litware.test").await;
    let elapsed = started.elapsed();
    assert_eq!(found.provider, Some(Provider::Office365), "{found:#?}");
    assert!(elapsed >= deadline - Duration::from_millis(50), "ended early: {elapsed:?}");
    assert!(elapsed < deadline + Duration::from_secs(2), "overran the deadline: {elapsed:?}");
    assert!(
        found
            .evidence
            .iter()
            .any(|e| e.probe == "autodiscover_v2" && e.detail.contains("deadline"))
            || evidence(&found, "unanswered").detail.contains("autodiscover_v2"),
        "{found:#?}"
    );
}

#[tokio::test]
async fn a_hanging_probe_without_a_decisive_answer_ends_at_the_deadline() {
    let dns = Dnsmasq::start(&[]).unwrap();
    let ms = Microsoft::for_every_domain(Domain::new(Realm::Unknown, Tenant::Missing, V2::Hang));
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

// ---------------------------------------------------------------------------------------------
// Evidence by strength, per address, Microsoft's redirects, national clouds

/// A TCP relay on port 443 of a fresh loopback address to `to`, holding back every answer for
/// `hold` after the connection opens: a server that is slow to answer.
async fn slow_relay(to: SocketAddr, hold: Duration) -> (Ipv4Addr, Task) {
    for _ in 0..20 {
        let ip = fresh_ip(443);
        let Ok(listener) = tokio::net::TcpListener::bind((ip, 443)).await else { continue };
        let task = Task(tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(to).await else { return };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = tokio::io::copy(&mut client_read, &mut server_write);
                    let down = async {
                        tokio::time::sleep(hold).await;
                        tokio::io::copy(&mut server_read, &mut client_write).await
                    };
                    let _ = tokio::join!(up, down);
                });
            }
        }));
        return (ip, task);
    }
    panic!("no free loopback address for a relay");
}

#[tokio::test]
async fn a_hybrid_domain_reads_the_same_whichever_strong_answer_comes_first() {
    let dns = Dnsmasq::start(&[]).unwrap();
    let ews = Ews::start("woodgrove.test", "negotiate,ntlm").await;
    // The realm answers at once; the on-premises server's NTLM challenge comes a second later,
    // well after the first decisive answer (the order that used to read as office365).
    let (relay, _relay) =
        slow_relay(SocketAddr::new(ews.ip().into(), ews.fake.https_port), Duration::from_secs(1))
            .await;
    let ms = Microsoft::for_every_domain(Domain::new(Realm::Managed, Tenant::Missing, V2::NotHere));
    let mut resolve = nobody_at("woodgrove.test", &["autodiscover.woodgrove.test"]);
    resolve.push(("autodiscover.woodgrove.test".into(), relay));
    let config = config(&ms, &dns, "5s", Some(&ews.ca()), &resolve);

    let found = detect(config, "frank@woodgrove.test").await;
    assert!(found.conflicting, "{found:#?}");
    assert_eq!(found.provider, None, "{found:#?}");
    assert_points(&found, "user_realm", Some(Provider::Office365), "Managed");
    assert_points(&found, "autodiscover_host", Some(Provider::Exchange), "Negotiate, NTLM");
    ews.assert_reached_without_credentials("autodiscover");
}

#[tokio::test]
async fn two_mailboxes_of_one_hybrid_domain_live_in_different_places() {
    let dns = Dnsmasq::start(&[
        "--mx-host=woodgrove.test,woodgrove-test.mail.protection.outlook.com,0".into(),
    ])
    .unwrap();
    let ews = Ews::start("woodgrove.test", "negotiate,ntlm").await;
    let ms = Microsoft::for_every_domain(Domain::new(
        Realm::Federated,
        Tenant::Found,
        V2::Hybrid { on_premises: vec!["bob@woodgrove.test".into()] },
    ));
    let mut resolve = nobody_at("woodgrove.test", &["autodiscover.woodgrove.test"]);
    resolve.push(("autodiscover.woodgrove.test".into(), ews.ip()));
    let config = config(&ms, &dns, "5s", Some(&ews.ca()), &resolve);
    let detector = Detector::default();

    let alice = detector.detect_with_summary(config.clone(), "alice@woodgrove.test").await;
    assert_eq!(alice.reply.provider, Some(Provider::Office365), "{alice:#?}");
    assert_points(
        &alice.reply,
        "autodiscover_v2",
        Some(Provider::Office365),
        "outlook.office365.com",
    );
    assert_eq!(alice.decided.by.len(), 1, "{:#?}", alice.decided);
    assert_eq!(alice.decided.by[0].probe, "autodiscover_v2");

    let bob = detector.detect_with_summary(config, "bob@woodgrove.test").await;
    assert_eq!(bob.reply.provider, Some(Provider::Exchange), "{bob:#?}");
    assert!(
        bob.reply.cached && !bob.reply.conflicting,
        "the domain's evidence came from the cache"
    );
    assert_points(
        &bob.reply,
        "autodiscover_v2",
        Some(Provider::Exchange),
        "on-premises at https://mail.woodgrove.test/EWS/Exchange.asmx",
    );
    // The domain evidence still points to Office365; the mailbox's own answer outweighs it.
    assert_points(&bob.reply, "user_realm", Some(Provider::Office365), "Federated");
    assert_eq!(bob.decided.by[0].probe, "autodiscover_v2");
    let realm_asked = ms.seen().iter().filter(|(p, _)| p == "/getuserrealm.srf").count();
    assert_eq!(realm_asked, 1, "the realm is domain evidence, asked once");
}

#[tokio::test]
async fn autodiscover_v2_redirects_are_followed_and_bounded() {
    let dns = Dnsmasq::start(&[]).unwrap();
    // Exchange Online redirects an address it does not know to itself, again and again.
    let ms = Microsoft::for_every_domain(Domain::new(Realm::Unknown, Tenant::Missing, V2::NotHere));
    let config = config(&ms, &dns, "5s", None, &nobody_at("nowhere.test", &[]));

    let found = detect(config, "erin@nowhere.test").await;
    assert_eq!(found.provider, None, "{found:#?}");
    assert_points(&found, "autodiscover_v2", None, "still redirected after 5 hops");
    let hops =
        ms.seen().iter().filter(|(p, _)| p.starts_with("/autodiscover/autodiscover.json")).count();
    assert_eq!(hops, 6, "the first request and five redirects");
}

#[tokio::test]
async fn microsofts_own_autodiscover_redirects_are_office365_evidence() {
    // SRV and the plain-HTTP redirect method both send Autodiscover to Microsoft's host, as a
    // domain whose `autodiscover` CNAME is `autodiscover.outlook.com` does.
    let dns = Dnsmasq::start(&[
        "--srv-host=_autodiscover._tcp.tailwind.test,autodiscover-s.outlook.com,443,0,0".into(),
    ])
    .unwrap();
    let ews = Ews::start_on(
        "tailwind.test",
        "ntlm",
        0,
        &[
            "--http-port",
            "80",
            "--http-redirect-location",
            "https://autodiscover-s.outlook.com/autodiscover/autodiscover.xml",
        ],
    )
    .await;
    let ms = Microsoft::for_every_domain(Domain::new(Realm::Unknown, Tenant::Missing, V2::NotHere));
    let mut resolve = nobody_at("tailwind.test", &["autodiscover.tailwind.test"]);
    resolve.push(("autodiscover.tailwind.test".into(), ews.ip()));
    let config = config(&ms, &dns, "5s", Some(&ews.ca()), &resolve);

    let found = detect(config, "judy@tailwind.test").await;
    assert_eq!(found.provider, Some(Provider::Office365), "{found:#?}");
    assert!(!found.conflicting);
    assert_points(
        &found,
        "autodiscover_http_redirect",
        Some(Provider::Office365),
        "redirects to Exchange Online https://autodiscover-s.outlook.com/",
    );
    assert_points(
        &found,
        "srv",
        Some(Provider::Office365),
        "Exchange Online autodiscover-s.outlook.com:443",
    );
    ews.assert_reached_without_credentials("autodiscover-redirect");
}

#[tokio::test]
async fn each_clouds_hosts_are_recognised() {
    #[rustfmt::skip]
    let clouds = [
        ("global", "outlook.office365.com", "contoso-test.mail.protection.outlook.com"),
        ("usgov", "outlook.office365.us", "contoso-test.mail.protection.office365.us"),
        ("usgov-dod", "outlook-dod.office365.us", "contoso-test.mail.protection.office365.us"),
        ("china", "partner.outlook.cn", "contoso-test.mail.protection.partner.outlook.cn"),
    ];
    for (cloud, ews, mx) in clouds {
        let dns = Dnsmasq::start(&[format!("--mx-host=contoso.test,{mx},0")]).unwrap();
        // Autodiscover v2 at the cloud's Exchange Online decides; without it, the MX does.
        for v2 in [V2::Cloud(ews.into()), V2::NotHere] {
            let ms = Microsoft::for_every_domain(Domain::new(
                Realm::Unknown,
                Tenant::Missing,
                v2.clone(),
            ));
            let config = config_in(
                &ms,
                &dns,
                "5s",
                None,
                &nobody_at("contoso.test", &[]),
                &format!("cloud = \"{cloud}\"\n"),
            );
            let found = detect(config, "alice@contoso.test").await;
            assert_eq!(found.provider, Some(Provider::Office365), "{cloud}: {found:#?}");
            if let V2::Cloud(_) = v2 {
                assert_points(&found, "autodiscover_v2", Some(Provider::Office365), ews);
            } else {
                assert_points(&found, "mx", Some(Provider::Office365), mx);
            }
            let hint = "set `[office365] cloud";
            assert!(found.evidence.iter().all(|e| !e.detail.contains(hint)), "{found:#?}");
        }
    }
}
