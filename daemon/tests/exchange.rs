//! `exchange::link` and `exchange::check` against the fake Exchange server in
//! `tests/peers/ews` (real TLS with a throwaway CA, NTLM checked by pyspnego), reached by name
//! through `[network] resolve`.
//!
//! Needs python3 with `pip install -r tests/peers/ews/requirements.txt`, the openssl CLI, root
//! (the fakes listen on ports 443/80 of their own 127.0.0.N) and, for the SRV test, `dnsmasq`
//! (Debian `dnsmasq-base`).

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use mslink_proto::{
    ClientFrame, ConnectArgs, ConnectEvent, CtlCommand, DaemonFrame, DaemonReply, ErrorKind,
    LinkState, MAX_CLIENT_FRAME, MAX_DAEMON_FRAME, PROTOCOL_VERSION, Provider, Sensitive,
    SignInFlow, WireError,
};
use mslinkd::config::{Config, Env, ExchangeAuth};
use mslinkd::exchange::discover::{Hop, Trust};
use mslinkd::exchange::{self, ExchangeError, Login, Secret};
use mslinkd::health::Actor;
use mslinkd::interaction::Interaction;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use mslink_e2e::dnsmasq::Dnsmasq;
use mslink_e2e::ews::{Ews, Pki};
use mslink_e2e::loopback::fresh_ip;

const NAMES: [&str; 6] = [
    "mail.contoso.test",
    "autodiscover.contoso.test",
    "contoso.test",
    "mail.fabrikam.test",
    "autodiscover.fabrikam.test",
    "fabrikam.test",
];

/// The throwaway CA (a certificate for every one of [`NAMES`]) and the fake's users.
fn pki() -> Pki {
    Pki::new(
        &NAMES,
        &json!({
            "alice@contoso.test": {
                "username": "CONTOSO\\alice", "upn": "alice@contoso.test",
                "password": "Alice-Pass1", "inbox_total": 12, "inbox_unread": 3,
                "calendar_total": 5
            },
            "bob@contoso.test": {
                "username": "CONTOSO\\bob", "upn": "bob@corp.contoso.test",
                "password": "Bob:pass2 with colon", "inbox_total": 0, "inbox_unread": 0
            }
        }),
    )
}

/// Config text: `auth`, the CA (or none), name → address overrides, nameservers.
fn config(
    auth: &[&str],
    ca: Option<&Path>,
    resolve: &[(&str, Ipv4Addr)],
    nameservers: &[String],
) -> Config {
    let mut text = format!(
        "[exchange]\nauth = [{}]\n[network]\nnameservers = [{}]\n",
        auth.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", "),
        nameservers.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", "),
    );
    if let Some(ca) = ca {
        text.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
    }
    text.push_str("[network.resolve]\n");
    for (name, ip) in resolve {
        text.push_str(&format!("\"{name}\" = \"{ip}\"\n"));
    }
    Config::parse(&text, None, &Env { is_root: true, ..Env::default() }).unwrap()
}

fn alice_password() -> Sensitive {
    Sensitive::new("Alice-Pass1")
}

async fn link(
    config: &Config,
    email: &str,
    username: Option<&str>,
    password: &Sensitive,
    server: Option<&str>,
) -> Result<(exchange::ExchangeEndpoint, mslinkd::health::CheckReport), ExchangeError> {
    link_with(config, email, username, Secret::Password(password), server).await
}

/// [`link`] with any `secret`: a password, tokens, or nothing yet.
async fn link_with(
    config: &Config,
    email: &str,
    username: Option<&str>,
    secret: Secret<'_>,
    server: Option<&str>,
) -> Result<(exchange::ExchangeEndpoint, mslinkd::health::CheckReport), ExchangeError> {
    let mut interaction = Interaction::detached();
    let trust = Trust::default();
    exchange::link(config, Login { email, username, secret, server, trust }, &mut interaction).await
}

/// Autodiscover for alice with `trust`, answering every confirmation question with `answer`;
/// also returns the questions asked.
async fn link_trusting(
    config: &Config,
    trust: Trust<'_>,
    answer: bool,
) -> (Result<(exchange::ExchangeEndpoint, mslinkd::health::CheckReport), ExchangeError>, Vec<String>)
{
    let (mut interaction, mut peer) = Interaction::pair();
    let user = tokio::spawn(async move {
        let mut questions = Vec::new();
        while let Some(event) = peer.events.recv().await {
            if let ConnectEvent::Confirm { question, host } = event {
                assert!(question.contains(&host), "{question}");
                questions.push(question);
                peer.answers.send(answer).await.unwrap();
            }
        }
        questions
    });
    let password = alice_password();
    let login = Login {
        email: "alice@contoso.test",
        username: None,
        secret: Secret::Password(&password),
        server: None,
        trust,
    };
    let result = exchange::link(config, login, &mut interaction).await;
    drop(interaction);
    (result, user.await.unwrap())
}

/// Without a password, a server that asks for one is named, and nothing is sent: the user is
/// asked for the password only when the server wants it (and not Entra ID's tokens).
#[tokio::test]
async fn a_server_asking_for_a_password_is_named_when_none_was_given() {
    let pki = pki();
    let fake = Ews::start(&pki, 443, &["--auth", "negotiate,ntlm"]);
    let resolve: Vec<(&str, Ipv4Addr)> = NAMES.iter().map(|name| (*name, fake.ip)).collect();
    let config = config(&["ntlm", "basic"], Some(&pki.ca()), &resolve, &[]);
    let error =
        link_with(&config, "alice@contoso.test", None, Secret::Unknown, None).await.unwrap_err();
    assert!(matches!(error, ExchangeError::PasswordNeeded { .. }), "{error}");
    assert_eq!(error.wire_error().kind, ErrorKind::Usage);
    assert_no_authorization(&fake.log());
}

/// No request to the fake carried an `Authorization` header of any kind.
fn assert_no_authorization(log: &[Value]) {
    assert!(log.iter().all(|e| e["auth_scheme"].is_null()), "{log:#?}");
}

/// At each endpoint of the fake, the first request carried no `Authorization` header and was
/// challenged (or answered on a connection NTLM had already signed in, which needs no header):
/// nothing was sent before the host asked for it.
fn assert_challenged_before_credentials(log: &[Value]) {
    for endpoint in ["autodiscover", "ews"] {
        let at: Vec<&Value> = log.iter().filter(|e| e["endpoint"] == endpoint).collect();
        let Some(first) = at.first() else { continue };
        let on_signed_in_connection =
            first["auth_via"].as_str().is_some_and(|via| via.ends_with("(connection)"));
        assert!(
            first["auth_scheme"].is_null() && (first["status"] == 401 || on_signed_in_connection),
            "{at:#?}"
        );
    }
}

/// Every request that carried credentials went over HTTPS, and none carried a cleartext
/// password unless Basic was expected.
fn assert_credentials_only_over_https(log: &[Value]) {
    for entry in log {
        if entry["credentials_sent"] == json!(true) {
            assert_eq!(entry["listener"], "https", "{entry}");
        }
    }
}

#[tokio::test]
async fn links_through_autodiscover_with_ntlm_only() {
    let pki = pki();
    let fake = Ews::start(&pki, 443, &["--auth", "ntlm"]);
    // https://contoso.test refuses connections: Autodiscover must fall through to
    // https://autodiscover.contoso.test.
    let nobody = fresh_ip(443);
    let config = config(
        &["ntlm", "basic"],
        Some(&pki.ca()),
        &[
            ("contoso.test", nobody),
            ("autodiscover.contoso.test", fake.ip),
            ("mail.contoso.test", fake.ip),
        ],
        &[],
    );
    let (endpoint, report) =
        link(&config, "alice@contoso.test", None, &alice_password(), None).await.unwrap();
    assert_eq!(endpoint.ews_url, "https://mail.contoso.test/EWS/Exchange.asmx");
    assert_eq!(endpoint.auth, ExchangeAuth::Ntlm);
    assert_eq!(endpoint.username, "alice@contoso.test");
    assert_eq!((report.inbox_total, report.inbox_unread), (Some(12), Some(3)));
    assert!(report.calendar_ok);
    assert!(report.server_version.as_deref().unwrap().starts_with("15.2."), "{report:?}");
    assert_eq!(endpoint.server_version, report.server_version);

    let log = fake.log();
    assert_credentials_only_over_https(&log);
    let ews: Vec<&Value> = log
        .iter()
        .filter(|e| e["endpoint"] == "ews" && e["authenticated_user"] == "alice@contoso.test")
        .collect();
    assert!(!ews.is_empty(), "{log:#?}");
    assert_eq!(ews[0]["folders"], json!(["inbox", "calendar"]), "{:#}", ews[0]);
    assert!(ews[0]["mailboxes"].is_null(), "the own mailbox is not named: {:#}", ews[0]);
    let type3: Vec<&Value> = log.iter().filter(|e| e["ntlm_message"] == 3).collect();
    assert!(type3.iter().all(|e| e["ntlm"]["channel_bindings"] == "present"), "{type3:#?}");
    assert!(log.iter().all(|e| e["password_sent"] != json!(true)));

    // The stored endpoint works for background checks.
    let report = exchange::check(&config, &endpoint, &alice_password()).await.unwrap();
    assert_eq!(report.inbox_total, Some(12));
}

#[tokio::test]
async fn links_through_server_with_basic_only() {
    let pki = pki();
    let fake = Ews::start(&pki, 0, &["--auth", "basic"]);
    let config =
        config(&["ntlm", "basic"], Some(&pki.ca()), &[("mail.contoso.test", fake.ip)], &[]);
    let server = format!("mail.contoso.test:{}", fake.https_port);
    let (endpoint, report) = link(
        &config,
        "bob@contoso.test",
        Some("CONTOSO\\bob"),
        &Sensitive::new("Bob:pass2 with colon"),
        Some(&server),
    )
    .await
    .unwrap();
    assert_eq!(endpoint.auth, ExchangeAuth::Basic);
    assert_eq!(endpoint.username, "CONTOSO\\bob");
    assert_eq!(
        endpoint.ews_url,
        format!("https://mail.contoso.test:{}/EWS/Exchange.asmx", fake.https_port)
    );
    assert_eq!(report.inbox_total, Some(0));
    let log = fake.log();
    assert!(log.iter().all(|e| e["endpoint"] != "autodiscover"), "--server skips Autodiscover");
    assert!(log.iter().any(|e| e["auth_via"] == "Basic" && e["status"] == 200), "{log:#?}");

    // A background check sends the password only once the server has asked for it.
    fake.control("/test/log/clear", &json!({}));
    let report =
        exchange::check(&config, &endpoint, &Sensitive::new("Bob:pass2 with colon")).await.unwrap();
    assert_eq!(report.inbox_total, Some(0));
    let log = fake.log();
    let sent: Vec<(&Value, &Value)> =
        log.iter().map(|e| (&e["credentials_sent"], &e["status"])).collect();
    assert_eq!(sent, [(&json!(false), &json!(401)), (&json!(true), &json!(200))], "{log:#?}");
}

#[tokio::test]
async fn each_host_is_answered_with_a_scheme_from_its_own_challenge() {
    let pki = pki();
    // Autodiscover offers Basic and NTLM; EWS (another host name) takes NTLM only, as IIS
    // allows per virtual directory.
    let fake =
        Ews::start(&pki, 443, &["--auth", "basic,ntlm", "--path-auth", "/EWS/Exchange.asmx=ntlm"]);
    let nobody = fresh_ip(443);
    let config = config(
        &["basic", "ntlm"],
        Some(&pki.ca()),
        &[
            ("contoso.test", nobody),
            ("autodiscover.contoso.test", fake.ip),
            ("mail.contoso.test", fake.ip),
        ],
        &[],
    );
    let result = link(&config, "alice@contoso.test", None, &alice_password(), None).await;
    let log = fake.log();
    let (endpoint, report) = result.unwrap_or_else(|e| panic!("{e}: {log:#?}"));
    assert_eq!(endpoint.ews_url, "https://mail.contoso.test/EWS/Exchange.asmx");
    assert_eq!(endpoint.auth, ExchangeAuth::Ntlm);
    assert_eq!(report.inbox_total, Some(12));

    let at = |endpoint: &str| -> Vec<(Value, Value, Value)> {
        log.iter()
            .filter(|e| e["endpoint"] == endpoint)
            .map(|e| (e["auth_scheme"].clone(), e["credentials_sent"].clone(), e["status"].clone()))
            .collect()
    };
    // Autodiscover: challenged, then Basic (first in `[exchange] auth`, and offered there).
    assert_eq!(
        at("autodiscover"),
        [(Value::Null, json!(false), json!(401)), (json!("Basic"), json!(true), json!(200))],
        "{log:#?}"
    );
    // EWS: challenged on its own, then NTLM; the password never went there.
    assert_eq!(
        at("ews"),
        [
            (Value::Null, json!(false), json!(401)),
            (json!("NTLM"), json!(false), json!(401)),
            (json!("NTLM"), json!(true), json!(200)),
        ],
        "{log:#?}"
    );
    assert_credentials_only_over_https(&log);
}

#[tokio::test]
async fn the_auth_order_comes_from_the_config() {
    let pki = pki();
    let fake = Ews::start(&pki, 0, &["--auth", "negotiate,ntlm,basic"]);
    let server = format!("https://mail.contoso.test:{}/EWS/Exchange.asmx", fake.https_port);
    let resolve = [("mail.contoso.test", fake.ip)];

    let basic_first = config(&["basic", "ntlm"], Some(&pki.ca()), &resolve, &[]);
    let (endpoint, _) =
        link(&basic_first, "alice@contoso.test", None, &alice_password(), Some(&server))
            .await
            .unwrap();
    assert_eq!(endpoint.auth, ExchangeAuth::Basic);

    let default = config(&["ntlm", "basic"], Some(&pki.ca()), &resolve, &[]);
    let (endpoint, _) = link(
        &default,
        "alice@contoso.test",
        Some("alice@contoso.test"),
        &alice_password(),
        Some(&server),
    )
    .await
    .unwrap();
    assert_eq!(endpoint.auth, ExchangeAuth::Ntlm);

    // A server offering only what the config forbids is refused before any credential is sent.
    let ntlm_only = Ews::start(&pki, 0, &["--auth", "ntlm"]);
    let basic_only =
        config(&["basic"], Some(&pki.ca()), &[("mail.contoso.test", ntlm_only.ip)], &[]);
    let server = format!("mail.contoso.test:{}", ntlm_only.https_port);
    let error = link(&basic_only, "alice@contoso.test", None, &alice_password(), Some(&server))
        .await
        .unwrap_err();
    assert!(matches!(error, ExchangeError::NoSuitableAuth { .. }), "{error}");
    assert_eq!(error.failure().actor, Actor::Operator);
    assert!(ntlm_only.log().iter().all(|e| e["credentials_sent"] == json!(false)));
}

#[tokio::test]
async fn ntlm_is_wrapped_in_negotiate_when_that_is_all_the_server_offers() {
    let pki = pki();
    let fake = Ews::start(&pki, 0, &["--auth", "negotiate", "--channel-binding", "require"]);
    let config =
        config(&["ntlm", "basic"], Some(&pki.ca()), &[("mail.contoso.test", fake.ip)], &[]);
    let server = format!("mail.contoso.test:{}", fake.https_port);
    let result = link(
        &config,
        "alice@contoso.test",
        Some("CONTOSO\\alice"),
        &alice_password(),
        Some(&server),
    )
    .await;
    let log = fake.log();
    let (endpoint, _) = result.unwrap_or_else(|e| panic!("{e}: {log:#?}"));
    assert_eq!(endpoint.auth, ExchangeAuth::Ntlm);
    let report = exchange::check(&config, &endpoint, &alice_password()).await.unwrap();
    assert_eq!(report.inbox_unread, Some(3));
    let log = fake.log();
    assert!(log.iter().any(|e| e["auth_via"] == "Negotiate" && e["status"] == 200), "{log:#?}");
}

#[tokio::test]
async fn follows_a_redirect_addr_chain_and_stops_a_loop() {
    let pki = pki();
    let fake = Ews::start(
        &pki,
        443,
        &[
            "--redirect-addr",
            "alice@fabrikam.test=alias@contoso.test",
            "--redirect-addr",
            "alias@contoso.test=alice@contoso.test",
            "--redirect-addr",
            "ping@contoso.test=pong@contoso.test",
            "--redirect-addr",
            "pong@contoso.test=ping@contoso.test",
        ],
    );
    let resolve: Vec<(&str, Ipv4Addr)> = NAMES.iter().map(|name| (*name, fake.ip)).collect();
    let config = config(&["ntlm", "basic"], Some(&pki.ca()), &resolve, &[]);
    let (endpoint, report) =
        link(&config, "alice@fabrikam.test", Some("CONTOSO\\alice"), &alice_password(), None)
            .await
            .unwrap();
    assert_eq!(endpoint.ews_url, "https://mail.contoso.test/EWS/Exchange.asmx");
    assert_eq!(report.inbox_total, Some(12));
    let asked: Vec<Value> = fake
        .log()
        .into_iter()
        .filter(|e| e["endpoint"] == "autodiscover" && e["status"] == 200)
        .map(|e| e["autodiscover_email"].clone())
        .collect();
    assert_eq!(
        asked,
        [json!("alice@fabrikam.test"), json!("alias@contoso.test"), json!("alice@contoso.test")]
    );

    let error = link(&config, "ping@contoso.test", Some("CONTOSO\\alice"), &alice_password(), None)
        .await
        .unwrap_err();
    assert!(matches!(error, ExchangeError::TooManyRedirects { .. }), "{error}");
}

#[tokio::test]
async fn a_delegate_links_the_named_mailbox_and_not_its_own() {
    let pki = pki();
    let fake = Ews::start(&pki, 0, &[]);
    let config =
        config(&["ntlm", "basic"], Some(&pki.ca()), &[("mail.contoso.test", fake.ip)], &[]);
    let server = format!("mail.contoso.test:{}", fake.https_port);
    let bob = Sensitive::new("Bob:pass2 with colon");
    let as_bob =
        |email: &'static str| link(&config, email, Some("CONTOSO\\bob"), &bob, Some(&server));

    // bob is nobody's delegate yet: alice's mailbox refuses him, and the reason says who acts.
    let error = as_bob("alice@contoso.test").await.unwrap_err();
    assert!(matches!(error, ExchangeError::MailboxAccessDenied { .. }), "{error}");
    let failure = error.failure();
    assert_eq!((failure.state, failure.actor), (LinkState::Blocked, Actor::User), "{error}");
    assert!(
        failure.reason.contains("ErrorAccessDenied")
            && failure.reason.contains("alice@contoso.test")
            && failure.reason.contains("delegate access"),
        "{}",
        failure.reason
    );
    let hint = error.wire_error().hint.unwrap();
    assert!(
        hint.contains("owner of alice@contoso.test") && hint.contains("Delegate Access"),
        "{hint}"
    );

    // An address with no mailbox behind it.
    let error = as_bob("nobody@contoso.test").await.unwrap_err();
    assert!(matches!(error, ExchangeError::NoSuchMailbox { .. }), "{error}");
    let failure = error.failure();
    assert_eq!((failure.state, failure.actor), (LinkState::Blocked, Actor::User), "{error}");
    assert!(failure.reason.contains("ErrorNonExistentMailbox"), "{}", failure.reason);

    // alice makes bob her delegate: the link reads alice's inbox (12, 3 unread), not bob's (0).
    fake.control(
        "/test/delegates",
        &json!({"mailbox": "alice@contoso.test", "delegate": "bob@contoso.test",
               "folders": ["inbox", "calendar"]}),
    );
    let (endpoint, report) = as_bob("alice@contoso.test").await.unwrap();
    assert_eq!((report.inbox_total, report.inbox_unread), (Some(12), Some(3)));
    assert!(report.calendar_ok);
    assert_eq!(endpoint.username, "CONTOSO\\bob");
    assert_eq!(endpoint.mailbox.as_deref(), Some("alice@contoso.test"));
    let log = fake.log();
    let read = log
        .iter()
        .rfind(|e| e["endpoint"] == "ews" && e["status"] == 200)
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert_eq!(read["authenticated_user"], "bob@contoso.test");
    assert_eq!(read["mailboxes"], json!(["alice@contoso.test", "alice@contoso.test"]));

    // Background checks read the same mailbox, until alice takes the access back.
    let report = exchange::check(&config, &endpoint, &bob).await.unwrap();
    assert_eq!(report.inbox_total, Some(12));
    fake.control(
        "/test/delegates",
        &json!({"mailbox": "alice@contoso.test", "delegate": "bob@contoso.test", "folders": []}),
    );
    let error = exchange::check(&config, &endpoint, &bob).await.unwrap_err();
    assert!(matches!(error, ExchangeError::MailboxAccessDenied { .. }), "{error}");
    assert_eq!(error.failure().state, LinkState::Blocked);
}

#[tokio::test]
async fn an_exchange_2010_server_is_asked_in_a_schema_it_knows_and_checks_remember_it() {
    let pki = pki();
    let fake = Ews::start(&pki, 0, &["--product", "exchange2010"]);
    let config =
        config(&["ntlm", "basic"], Some(&pki.ca()), &[("mail.contoso.test", fake.ip)], &[]);
    let server = format!("mail.contoso.test:{}", fake.https_port);
    let result = link(&config, "alice@contoso.test", None, &alice_password(), Some(&server)).await;
    let log = fake.log();
    let (endpoint, report) = result.unwrap_or_else(|e| panic!("{e}: {log:#?}"));
    assert_eq!(report.inbox_total, Some(12));
    assert!(report.server_version.as_deref().unwrap().starts_with("14.0."), "{report:?}");
    // Exchange 2010 RTM refuses Exchange2010_SP2 and names no version: the oldest versioned
    // schema, once.
    assert_eq!(endpoint.request_server_version, "Exchange2007_SP1");
    let asked: Vec<(&Value, &Value)> = log
        .iter()
        .filter(|e| !e["request_server_version"].is_null())
        .map(|e| (&e["request_server_version"], &e["status"]))
        .collect();
    assert_eq!(
        asked,
        [(&json!("Exchange2010_SP2"), &json!(500)), (&json!("Exchange2007_SP1"), &json!(200))],
        "{log:#?}"
    );

    // The background check asks in the remembered schema straight away.
    fake.control("/test/log/clear", &json!({}));
    exchange::check(&config, &endpoint, &alice_password()).await.unwrap();
    let log = fake.log();
    let asked: Vec<&Value> = log
        .iter()
        .filter(|e| !e["request_server_version"].is_null())
        .map(|e| &e["request_server_version"])
        .collect();
    assert_eq!(asked, [&json!("Exchange2007_SP1")], "{log:#?}");
}

#[tokio::test]
async fn a_wrong_password_is_rejected_once_and_nothing_else_is_tried() {
    let pki = pki();
    let fake = Ews::start(&pki, 443, &["--auth", "negotiate,ntlm,basic"]);
    let resolve: Vec<(&str, Ipv4Addr)> = NAMES.iter().map(|name| (*name, fake.ip)).collect();
    let config = config(&["ntlm", "basic"], Some(&pki.ca()), &resolve, &[]);
    let error = link(&config, "alice@contoso.test", None, &Sensitive::new("wrong"), None)
        .await
        .unwrap_err();
    assert!(matches!(error, ExchangeError::Rejected { .. }), "{error}");
    let wire = error.wire_error();
    assert_eq!(wire.kind, ErrorKind::AuthRejected);
    assert!(!format!("{error:?} {wire:?}").contains("wrong"));
    let log = fake.log();
    let attempts: Vec<&Value> =
        log.iter().filter(|e| e["credentials_sent"] == json!(true)).collect();
    assert_eq!(attempts.len(), 1, "one logon attempt, no fallback to Basic: {log:#?}");
    assert_eq!(attempts[0]["ntlm_message"], 3);
    assert_eq!(attempts[0]["status"], 401);
    assert!(
        log.iter().all(|e| e["authenticated_user"].is_null() && e["password_sent"] != json!(true))
    );
}

#[tokio::test]
async fn a_password_changed_later_needs_reauth() {
    let pki = pki();
    let fake = Ews::start(&pki, 0, &[]);
    let config =
        config(&["ntlm", "basic"], Some(&pki.ca()), &[("mail.contoso.test", fake.ip)], &[]);
    let server = format!("mail.contoso.test:{}", fake.https_port);
    let (endpoint, _) =
        link(&config, "alice@contoso.test", None, &alice_password(), Some(&server)).await.unwrap();
    fake.control("/test/password", &json!({"user": "alice@contoso.test", "password": "New-Pass2"}));
    let error = exchange::check(&config, &endpoint, &alice_password()).await.unwrap_err();
    let failure = error.failure();
    assert_eq!(failure.state, LinkState::NeedsReauth, "{error}");
    assert!(!error.is_transient());
    // connect again with the new password works.
    let report = exchange::check(&config, &endpoint, &Sensitive::new("New-Pass2")).await.unwrap();
    assert_eq!(report.inbox_total, Some(12));
}

#[tokio::test]
async fn a_busy_server_degrades_then_recovers() {
    let pki = pki();
    let fake = Ews::start(&pki, 0, &[]);
    let config =
        config(&["ntlm", "basic"], Some(&pki.ca()), &[("mail.contoso.test", fake.ip)], &[]);
    let server = format!("mail.contoso.test:{}", fake.https_port);
    let (endpoint, _) =
        link(&config, "alice@contoso.test", None, &alice_password(), Some(&server)).await.unwrap();

    fake.control("/test/mode", &json!({"mode": "busy", "back_off_ms": 1500}));
    let error = exchange::check(&config, &endpoint, &alice_password()).await.unwrap_err();
    let failure = error.failure();
    assert_eq!(failure.state, LinkState::Degraded, "{error}");
    assert_eq!(failure.retry_after, Some(Duration::from_millis(1500)));
    assert!(failure.reason.contains("ErrorServerBusy"), "{}", failure.reason);
    assert!(error.is_transient());

    fake.control("/test/mode", &json!({"mode": "error503"}));
    let error = exchange::check(&config, &endpoint, &alice_password()).await.unwrap_err();
    assert_eq!(error.failure().state, LinkState::Degraded, "{error}");

    fake.control("/test/mode", &json!({"mode": "down"}));
    let error = exchange::check(&config, &endpoint, &alice_password()).await.unwrap_err();
    assert_eq!(error.failure().state, LinkState::Degraded, "{error}");
    assert!(error.wire_error().hint.unwrap().contains("try again"));

    fake.control("/test/mode", &json!({"mode": "ok"}));
    let report = exchange::check(&config, &endpoint, &alice_password()).await.unwrap();
    assert_eq!(report.inbox_total, Some(12));
}

#[tokio::test]
async fn an_untrusted_certificate_is_named_and_no_password_is_sent() {
    let pki = pki();
    let fake = Ews::start(&pki, 0, &["--auth", "basic"]);
    let config = config(&["basic"], None, &[("mail.contoso.test", fake.ip)], &[]);
    let server = format!("mail.contoso.test:{}", fake.https_port);
    let error = link(&config, "alice@contoso.test", None, &alice_password(), Some(&server))
        .await
        .unwrap_err();
    assert!(matches!(error, ExchangeError::Certificate { .. }), "{error}");
    let wire = error.wire_error();
    assert_eq!(wire.kind, ErrorKind::Failed);
    assert!(wire.message.contains("mail.contoso.test"), "{}", wire.message);
    assert!(wire.hint.as_deref().unwrap().contains("[network] ca_file"), "{wire:?}");
    let failure = error.failure();
    assert_eq!((failure.state, failure.actor), (LinkState::Blocked, Actor::Operator));

    // mslink's connection was refused at the handshake (the fake saw the client's alert);
    // the only connections that got further are this test's own two control requests.
    assert!(fake.log().is_empty(), "no HTTP request got through");
    let connections = fake.peer().observe("/test/connections").as_array().cloned().unwrap();
    let refused = connections.iter().filter(|c| !c["handshake_error"].is_null()).count();
    assert_eq!((refused, connections.len()), (1, 3), "{connections:#?}");
}

#[tokio::test]
async fn finds_the_server_through_the_http_redirect_method() {
    let pki = pki();
    // HTTPS on a high port and the redirect on port 80 of the same address; nothing listens on
    // 443 there, so both https:// candidates fail and the plain-HTTP method is next.
    let fake = Ews::start(&pki, 0, &["--http-port", "80"]);
    let resolve: Vec<(&str, Ipv4Addr)> = NAMES.iter().map(|name| (*name, fake.ip)).collect();
    let config = config(&["ntlm", "basic"], Some(&pki.ca()), &resolve, &[]);
    let (endpoint, _) =
        link(&config, "alice@contoso.test", None, &alice_password(), None).await.unwrap();
    assert_eq!(
        endpoint.ews_url,
        format!("https://mail.contoso.test:{}/EWS/Exchange.asmx", fake.https_port)
    );
    let log = fake.log();
    let redirect: Vec<&Value> = log.iter().filter(|e| e["listener"] == "http").collect();
    assert_eq!(redirect.len(), 1, "{log:#?}");
    assert_eq!(redirect[0]["endpoint"], "autodiscover-redirect");
    assert_eq!(redirect[0]["auth_scheme"], Value::Null, "no credentials over http");
    assert_credentials_only_over_https(&log);
}

#[tokio::test]
async fn finds_the_server_through_an_srv_record() {
    let pki = pki();
    let fake = Ews::start(&pki, 0, &[]);
    let srv = format!("_autodiscover._tcp.contoso.test,mail.contoso.test,{},0,0", fake.https_port);
    let Some(dns) = Dnsmasq::start(&[format!("--srv-host={srv}")]) else { return };
    let nobody = fresh_ip(443);
    let config = config(
        &["ntlm", "basic"],
        Some(&pki.ca()),
        &[
            ("contoso.test", nobody),
            ("autodiscover.contoso.test", nobody),
            ("mail.contoso.test", fake.ip),
        ],
        std::slice::from_ref(&dns.addr),
    );
    let (endpoint, report) =
        link(&config, "alice@contoso.test", None, &alice_password(), None).await.unwrap();
    assert_eq!(
        endpoint.ews_url,
        format!("https://mail.contoso.test:{}/EWS/Exchange.asmx", fake.https_port)
    );
    assert_eq!(report.inbox_total, Some(12));
    let log = fake.log();
    assert!(
        log.iter().any(|e| e["endpoint"] == "autodiscover" && e["status"] == 200),
        "Autodiscover was reached through SRV: {log:#?}"
    );
}

/// The fake a forged discovery answer points to: `mail.fabrikam.test` (a valid certificate, but
/// outside contoso.test), announcing its own EWS URL, with `extra` options.
fn attacker(pki: &Pki, http_port: Option<&str>, extra: &[&str]) -> Ews {
    let mut args = vec!["--ews-url", "https://mail.fabrikam.test:{port}/EWS/Exchange.asmx"];
    args.extend_from_slice(extra);
    if let Some(port) = http_port {
        args.extend(["--http-port", port]);
    }
    Ews::start(pki, 0, &args)
}

#[tokio::test]
async fn a_forged_srv_record_pointing_outside_the_domain_gets_no_password() {
    let pki = pki();
    let evil = attacker(&pki, None, &["--auth", "basic,ntlm"]);
    let srv = format!("_autodiscover._tcp.contoso.test,mail.fabrikam.test,{},0,0", evil.https_port);
    let dns = Dnsmasq::start(&[format!("--srv-host={srv}")]).expect("dnsmasq runs");
    let nobody = fresh_ip(443);
    let config = config(
        &["basic", "ntlm"],
        Some(&pki.ca()),
        &[
            ("contoso.test", nobody),
            ("autodiscover.contoso.test", nobody),
            ("mail.fabrikam.test", evil.ip),
        ],
        std::slice::from_ref(&dns.addr),
    );

    // No tty and no --trust-server: refused, naming the domain, the host and the hop.
    let error =
        link(&config, "alice@contoso.test", None, &alice_password(), None).await.unwrap_err();
    assert!(
        matches!(&error, ExchangeError::Unvouched { hop: Hop::Srv, asked: false, host, .. }
            if host == "mail.fabrikam.test"),
        "{error}"
    );
    let wire = error.wire_error();
    assert_eq!((wire.kind, wire.kind.exit_code()), (ErrorKind::NotAllowed, 6));
    for part in ["contoso.test", "mail.fabrikam.test", "DNS SRV record _autodiscover._tcp"] {
        assert!(wire.message.contains(part), "{part}: {}", wire.message);
    }
    let hint = wire.hint.unwrap();
    assert!(
        hint.contains("`mslinkctl connect alice@contoso.test --trust-server mail.fabrikam.test`")
            && hint.contains("--server"),
        "{hint}"
    );
    let log = evil.log();
    assert_no_authorization(&log);
    assert!(log.is_empty(), "the host outside the domain was not even contacted: {log:#?}");

    // Trusted by name (any case): linked there, each endpoint challenging before credentials.
    let trusted = ["Mail.Fabrikam.Test".to_owned()];
    let (result, questions) =
        link_trusting(&config, Trust { servers: &trusted, ask: true }, false).await;
    let log = evil.log();
    let (endpoint, report) = result.unwrap_or_else(|e| panic!("{e}: {log:#?}"));
    assert!(questions.is_empty(), "--trust-server asks nothing: {questions:?}");
    assert_eq!(
        endpoint.ews_url,
        format!("https://mail.fabrikam.test:{}/EWS/Exchange.asmx", evil.https_port)
    );
    assert_eq!(report.inbox_total, Some(12));
    assert_challenged_before_credentials(&log);
    assert_credentials_only_over_https(&log);
}

#[tokio::test]
async fn a_forged_http_redirect_pointing_outside_the_domain_gets_no_password() {
    let pki = pki();
    let (evil, _dns, config) =
        forged_http_redirect(&pki, &["basic", "ntlm"], &["--auth", "basic"]).await;

    let error =
        link(&config, "alice@contoso.test", None, &alice_password(), None).await.unwrap_err();
    assert!(
        matches!(&error, ExchangeError::Unvouched { hop: Hop::HttpRedirect, asked: false, host, .. }
            if host == "mail.fabrikam.test"),
        "{error}"
    );
    let wire = error.wire_error();
    assert_eq!(wire.kind.exit_code(), 6);
    for part in ["contoso.test", "mail.fabrikam.test", "plain-HTTP redirect"] {
        assert!(wire.message.contains(part), "{part}: {}", wire.message);
    }
    assert!(wire.hint.unwrap().contains("--trust-server mail.fabrikam.test"));
    let log = evil.log();
    assert_no_authorization(&log);
    let https: Vec<&Value> = log.iter().filter(|e| e["listener"] == "https").collect();
    assert!(https.is_empty(), "only the plain-HTTP redirect was fetched: {log:#?}");

    // Trusted: linked, and the password went only to the host once it had asked for it.
    fake_clear(&evil);
    let trusted = ["mail.fabrikam.test".to_owned()];
    let (result, _) = link_trusting(&config, Trust { servers: &trusted, ask: false }, false).await;
    let log = evil.log();
    let (endpoint, _) = result.unwrap_or_else(|e| panic!("{e}: {log:#?}"));
    assert!(endpoint.ews_url.starts_with("https://mail.fabrikam.test:"), "{}", endpoint.ews_url);
    assert_eq!(endpoint.auth, ExchangeAuth::Basic);
    assert_challenged_before_credentials(&log);
    assert_credentials_only_over_https(&log);
}

fn fake_clear(fake: &Ews) {
    fake.control("/test/log/clear", &json!({}));
}

/// A forged plain-HTTP Autodiscover answer for autodiscover.contoso.test pointing at
/// mail.fabrikam.test, both served by one fake (started with `args`); nothing listens on its
/// port 443, so both https:// candidates fail first, and the DNS server has no SRV record, so
/// the last candidate finds nothing. The config tries `auth` in that order.
async fn forged_http_redirect(pki: &Pki, auth: &[&str], args: &[&str]) -> (Ews, Dnsmasq, Config) {
    let mut args = args.to_vec();
    args.extend([
        "--http-redirect-location",
        "https://mail.fabrikam.test:{port}/autodiscover/autodiscover.xml",
    ]);
    let evil = attacker(pki, Some("80"), &args);
    let dns = Dnsmasq::start(&[]).expect("dnsmasq runs");
    let nobody = fresh_ip(443);
    let config = config(
        auth,
        Some(&pki.ca()),
        &[
            ("contoso.test", nobody),
            ("autodiscover.contoso.test", evil.ip),
            ("mail.fabrikam.test", evil.ip),
        ],
        std::slice::from_ref(&dns.addr),
    );
    (evil, dns, config)
}

#[tokio::test]
async fn an_interactive_user_is_asked_about_a_host_outside_the_domain() {
    let pki = pki();
    let (evil, _dns, config) = forged_http_redirect(&pki, &["ntlm", "basic"], &[]).await;
    let ask = Trust { servers: &[], ask: true };

    // The user says no: refused, nothing sent.
    let (result, questions) = link_trusting(&config, ask, false).await;
    let error = result.unwrap_err();
    assert!(matches!(error, ExchangeError::Unvouched { asked: true, .. }), "{error}");
    assert_eq!(error.wire_error().kind, ErrorKind::NotAllowed);
    assert_eq!(questions.len(), 1, "{questions:?}");
    assert!(
        questions[0].contains("mail.fabrikam.test")
            && questions[0].contains("contoso.test")
            && questions[0].contains("plain-HTTP redirect"),
        "{}",
        questions[0]
    );
    let log = evil.log();
    assert_no_authorization(&log);
    assert!(log.iter().all(|e| e["listener"] == "http"), "{log:#?}");

    // The user says yes: linked, once asked.
    let (result, questions) = link_trusting(&config, ask, true).await;
    let log = evil.log();
    let (endpoint, report) = result.unwrap_or_else(|e| panic!("{e}: {log:#?}"));
    assert_eq!(questions.len(), 1, "{questions:?}");
    assert!(endpoint.ews_url.starts_with("https://mail.fabrikam.test:"), "{}", endpoint.ews_url);
    assert_eq!(report.inbox_total, Some(12));
    assert_challenged_before_credentials(&log);
}

#[tokio::test]
async fn a_verified_redirect_url_is_followed_and_the_new_host_is_challenged_first() {
    let pki = pki();
    // mail.fabrikam.test hosts alice's mailbox; contoso.test's own (TLS-verified) Autodiscover
    // sends her there with a redirectUrl: vouched, so nobody is asked.
    let hosted = attacker(&pki, None, &["--auth", "basic"]);
    let redirect = format!(
        "alice@contoso.test=https://mail.fabrikam.test:{}/autodiscover/autodiscover.xml",
        hosted.https_port
    );
    let own = Ews::start(&pki, 443, &["--auth", "basic", "--redirect-url", &redirect]);
    let nobody = fresh_ip(443);
    let config = config(
        &["basic", "ntlm"],
        Some(&pki.ca()),
        &[
            ("contoso.test", nobody),
            ("autodiscover.contoso.test", own.ip),
            ("mail.fabrikam.test", hosted.ip),
        ],
        &[],
    );
    let result = link(&config, "alice@contoso.test", None, &alice_password(), None).await;
    let log = hosted.log();
    let (endpoint, _) = result.unwrap_or_else(|e| panic!("{e}: {log:#?}"));
    assert!(endpoint.ews_url.starts_with("https://mail.fabrikam.test:"), "{}", endpoint.ews_url);
    assert_eq!(endpoint.auth, ExchangeAuth::Basic);

    let sent = |log: &[Value], endpoint: &str| -> Vec<(Value, Value)> {
        log.iter()
            .filter(|e| e["endpoint"] == endpoint)
            .map(|e| (e["auth_scheme"].clone(), e["status"].clone()))
            .collect()
    };
    let challenged_then_basic = [(Value::Null, json!(401)), (json!("Basic"), json!(200))];
    // The domain's own Autodiscover had Basic after its challenge; the new host got no
    // Authorization header at either endpoint until it had challenged for it.
    assert_eq!(sent(&own.log(), "autodiscover"), challenged_then_basic);
    assert_eq!(sent(&log, "autodiscover"), challenged_then_basic, "{log:#?}");
    assert_eq!(sent(&log, "ews"), challenged_then_basic, "{log:#?}");
}

/// A client on the daemon's socket, speaking the frames mslinkctl speaks.
struct Ctl(UnixStream);

impl Ctl {
    async fn open(socket: &Path) -> Ctl {
        let mut ctl = Ctl(UnixStream::connect(socket).await.unwrap());
        ctl.send(&ClientFrame::Hello { protocol_version: PROTOCOL_VERSION, client: "test".into() })
            .await;
        assert!(matches!(ctl.receive().await, DaemonFrame::Welcome { .. }));
        ctl
    }

    async fn send(&mut self, frame: &ClientFrame) {
        self.0.write_all(&mslink_proto::encode(frame, MAX_CLIENT_FRAME).unwrap()).await.unwrap();
    }

    async fn receive(&mut self) -> DaemonFrame {
        let mut header = [0u8; 4];
        self.0.read_exact(&mut header).await.unwrap();
        let mut body = vec![0u8; mslink_proto::frame_len(header, MAX_DAEMON_FRAME).unwrap()];
        self.0.read_exact(&mut body).await.unwrap();
        mslink_proto::decode(&body).unwrap()
    }

    /// Runs `command`, answering every confirmation with `answer` and a password question with
    /// alice's; the outcome and what was asked (the hosts, and `password:SERVER`).
    async fn run(
        &mut self,
        command: CtlCommand,
        answer: bool,
    ) -> (Result<DaemonReply, WireError>, Vec<String>) {
        self.send(&ClientFrame::Command { act_as: None, command }).await;
        let mut asked = Vec::new();
        loop {
            match self.receive().await {
                DaemonFrame::Progress { event: ConnectEvent::Confirm { host, .. } } => {
                    asked.push(host);
                    self.send(&ClientFrame::Answer { yes: answer }).await;
                }
                DaemonFrame::Progress { event: ConnectEvent::Password { server } } => {
                    asked.push(format!("password:{server}"));
                    self.send(&ClientFrame::Password { password: alice_password() }).await;
                }
                DaemonFrame::Progress { .. } => {}
                DaemonFrame::Reply { reply } => return (Ok(*reply), asked),
                DaemonFrame::Failure { error } => return (Err(error), asked),
                other @ (DaemonFrame::Welcome { .. } | DaemonFrame::Links { .. }) => {
                    panic!("out of order: {other:?}")
                }
            }
        }
    }
}

fn connect_alice(interactive: bool) -> CtlCommand {
    CtlCommand::Connect(ConnectArgs {
        email: "alice@contoso.test".into(),
        provider: Some(Provider::Exchange),
        flow: SignInFlow::Browser,
        username: None,
        server: None,
        password: Some(alice_password()),
        keytab: None,
        trusted_servers: Vec::new(),
        interactive,
    })
}

#[tokio::test]
async fn the_question_and_its_answer_go_through_the_socket_and_a_refusal_stores_nothing() {
    let pki = pki();
    let evil = attacker(
        &pki,
        Some("80"),
        &[
            "--http-redirect-location",
            "https://mail.fabrikam.test:{port}/autodiscover/autodiscover.xml",
        ],
    );
    let dns = Dnsmasq::start(&[]).expect("dnsmasq runs");
    let nobody = fresh_ip(443);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mslinkd.sock");
    let config_file = dir.path().join("mslinkd.toml");
    std::fs::write(
        &config_file,
        format!(
            "socket = {socket:?}\nstate_dir = {:?}\n[network]\nca_file = {:?}\n\
             nameservers = [{:?}]\n[network.resolve]\n\"contoso.test\" = \"{nobody}\"\n\
             \"autodiscover.contoso.test\" = \"{ip}\"\n\"mail.fabrikam.test\" = \"{ip}\"\n",
            dir.path().join("state"),
            pki.ca(),
            dns.addr,
            ip = evil.ip,
        ),
    )
    .unwrap();
    let config = Config::load(&config_file, true, &Env::default()).unwrap();
    let listener =
        mslinkd::Listener::Owned(mslinkd::ipc::bind(&socket, None).unwrap(), socket.clone());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let options = mslinkd::Options { env: Env::default(), ..mslinkd::Options::default() };
    let served = tokio::spawn(mslinkd::run_with(config, listener, shutdown.clone(), options));
    let mut ctl = Ctl::open(&socket).await;
    assert!(ctl.run(CtlCommand::Enable, false).await.0.is_ok());
    let links = |reply: DaemonReply| match reply {
        DaemonReply::Status(status) => status.links,
        other => panic!("not a status: {other:?}"),
    };

    // A ctl that cannot ask (an older one, or no terminal) is refused with the command to run.
    let (result, asked) = ctl.run(connect_alice(false), false).await;
    let error = result.unwrap_err();
    assert!(asked.is_empty());
    assert_eq!(error.kind, ErrorKind::NotAllowed, "{error:?}");
    assert!(error.hint.as_deref().unwrap().contains("--trust-server mail.fabrikam.test"));

    // The user says no: refused, nothing stored, nothing sent to the host.
    let (result, asked) = ctl.run(connect_alice(true), false).await;
    assert_eq!(asked, ["mail.fabrikam.test"]);
    assert_eq!(result.unwrap_err().kind, ErrorKind::NotAllowed);
    let status = ctl.run(CtlCommand::Status { all: false }, false).await.0.unwrap();
    assert!(links(status).is_empty());
    let log = evil.log();
    assert_no_authorization(&log);
    assert!(log.iter().all(|e| e["listener"] == "http"), "{log:#?}");

    // The user says yes: linked against that host.
    let (result, asked) = ctl.run(connect_alice(true), true).await;
    assert_eq!(asked, ["mail.fabrikam.test"]);
    let log = evil.log();
    result.unwrap_or_else(|e| panic!("{e:?}: {log:#?}"));
    let status = ctl.run(CtlCommand::Status { all: false }, false).await.0.unwrap();
    let links = links(status);
    assert_eq!(links.len(), 1, "{links:#?}");
    assert!(
        links[0].endpoint.as_deref().unwrap().starts_with("https://mail.fabrikam.test:"),
        "{links:#?}"
    );
    assert_challenged_before_credentials(&log);

    // Without a password: the host is asked about once, though Autodiscover runs again with the
    // password, and the password only once that host has asked for it.
    let mut without_password = connect_alice(true);
    if let CtlCommand::Connect(args) = &mut without_password {
        args.password = None;
    }
    let (result, asked) = ctl.run(without_password, true).await;
    result.unwrap();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0], "mail.fabrikam.test");
    assert!(asked[1].starts_with("password:mail.fabrikam.test"), "{asked:?}");
    assert_challenged_before_credentials(&evil.log());

    shutdown.cancel();
    served.await.unwrap().unwrap();
}

/// A server that takes OAuth tokens from Entra ID (hybrid modern authentication): with a
/// password or without one, linking stops before anything is sent and names the resource to
/// sign in to (the first host that challenged: Autodiscover at the domain itself). That the link
/// service then signs in through Entra ID is the end-to-end tests' job; that detection shows
/// the challenge as Exchange evidence is `probes::tests`'.
#[tokio::test]
async fn a_server_taking_hybrid_modern_auth_names_its_resource_and_gets_no_password() {
    let pki = pki();
    // Nothing is ever introspected: no token is sent.
    let fake = Ews::start(
        &pki,
        443,
        &[
            "--auth",
            "bearer",
            "--introspect",
            "http://127.0.0.1:9/token/introspection",
            "--audience",
            "https://mail.contoso.test",
        ],
    );
    let resolve: Vec<(&str, Ipv4Addr)> = NAMES.iter().map(|name| (*name, fake.ip)).collect();
    let config = config(&["kerberos", "ntlm", "basic"], Some(&pki.ca()), &resolve, &[]);
    let password = alice_password();
    for secret in [Secret::Password(&password), Secret::Unknown] {
        let error = link_with(&config, "alice@contoso.test", None, secret, None).await.unwrap_err();
        let ExchangeError::ModernAuth { resource, authorization_uri, .. } = &error else {
            panic!("{secret:?}: {error}");
        };
        assert_eq!(resource, "https://contoso.test");
        assert!(authorization_uri.contains("login.microsoftonline.com"), "{error}");
        // A password link whose server went this way: the user signs in again.
        let failure = error.failure();
        assert_eq!((failure.state, failure.actor), (LinkState::Blocked, Actor::User));
    }
    // Tokens for another server are not sent to this one.
    let elsewhere = std::collections::HashMap::from([(
        "https://mail.contoso.test".to_owned(),
        Sensitive::new("a-token-for-mail.contoso.test"),
    )]);
    let server = Some("mail.contoso.test");
    let error = link_with(
        &config,
        "alice@contoso.test",
        None,
        Secret::Tokens(&elsewhere),
        Some("contoso.test"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, ExchangeError::ModernAuth { resource, .. } if resource == "https://contoso.test"),
        "{error}"
    );
    // With --server, EWS itself is the first to ask.
    let error =
        link_with(&config, "alice@contoso.test", None, Secret::Unknown, server).await.unwrap_err();
    assert!(
        matches!(&error, ExchangeError::ModernAuth { resource, .. } if resource == "https://mail.contoso.test"),
        "{error}"
    );
    let log = fake.log();
    assert!(
        !log.is_empty() && log.iter().all(|e| e["credentials_sent"] == json!(false)),
        "{log:#?}"
    );
}
