//! `exchange::link` and `exchange::check` with `[exchange] auth = ["kerberos"]` against a real
//! MIT KDC on 127.0.0.1 (a throwaway realm, `mslink_e2e::kdc`) and the EWS fake's real Kerberos
//! acceptor (python-gssapi with the service's keytab), over real TLS with channel binding.
//!
//! Needs `bash .ci/setup` (MIT Kerberos, python-gssapi, the EWS fake's packages, openssl).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::net::Ipv4Addr;

use mslink_e2e::ews::{Ews, Pki};
use mslink_e2e::kdc::Kdc;
use mslink_proto::{ErrorKind, LinkState, Sensitive};
use mslinkd::config::{Config, Env, ExchangeAuth};
use mslinkd::exchange::discover::Trust;
use mslinkd::exchange::kerberos::KerberosError;
use mslinkd::exchange::{self, ExchangeEndpoint, ExchangeError, Login, Secret};
use mslinkd::health::{Actor, CheckReport};
use mslinkd::interaction::Interaction;
use serde_json::json;

const REALM: &str = "CONTOSO.TEST";
const HOST: &str = "mail.contoso.test";
const PASSWORD: &str = "Alice-Pass1";
/// Another name of the server, in its certificate but without a service principal.
const OTHER_NAME: &str = "exchange.contoso.test";

/// A realm with alice and the EWS host's service principal, and the EWS fake taking Kerberos
/// only, with that service's keytab.
struct World {
    kdc: Kdc,
    pki: Pki,
    ews: Ews,
}

impl World {
    fn start() -> Option<World> {
        let kdc = Kdc::start(REALM)?;
        kdc.add_user("alice", PASSWORD);
        let keytab = kdc.add_service(&format!("HTTP/{HOST}"));
        let pki = Pki::new(
            &[HOST, OTHER_NAME],
            &json!({"alice@contoso.test": {"username": "CONTOSO\\alice",
                    "upn": "alice@contoso.test", "principal": "alice@CONTOSO.TEST",
                    "password": PASSWORD, "inbox_total": 12, "inbox_unread": 3}}),
        );
        let keytab = keytab.display().to_string();
        let ews = Ews::start(&pki, 0, &["--auth", "kerberos", "--keytab", &keytab]);
        Some(World { kdc, pki, ews })
    }

    /// The config: the schemes `auth`, this realm's KDC, the CA, the EWS host's address.
    fn config(&self, auth: &str) -> Config {
        self.config_with_kdc(auth, &self.kdc.addr(), "")
    }

    /// [`World::config`] with another KDC address and more `[exchange]` keys.
    fn config_with_kdc(&self, auth: &str, kdc: &str, exchange: &str) -> Config {
        let text = format!(
            "[exchange]\nauth = [{auth}]\nkdc = [\"{kdc}\"]\n{exchange}\
             [network]\nca_file = {ca:?}\n[network.resolve]\n\"{HOST}\" = \"{ip}\"\n",
            ca = self.pki.ca(),
            ip = self.ews.ip,
        );
        Config::parse(&text, None, &Env { is_root: true, ..Env::default() }).unwrap()
    }

    fn server(&self) -> String {
        format!("{HOST}:{}", self.ews.https_port)
    }
}

async fn link(
    config: &Config,
    username: &str,
    password: &str,
    server: &str,
) -> Result<(ExchangeEndpoint, CheckReport), ExchangeError> {
    let password = Sensitive::new(password);
    let login = Login {
        email: "alice@contoso.test",
        username: Some(username),
        secret: Secret::Password(&password),
        server: Some(server),
        trust: Trust::default(),
    };
    exchange::link(config, login, &mut Interaction::detached()).await
}

fn kerberos_error(error: &ExchangeError) -> &KerberosError {
    match error {
        ExchangeError::Kerberos { error, .. } => error,
        other => panic!("not a Kerberos failure: {other:?}"),
    }
}

#[tokio::test]
async fn a_kerberos_only_server_is_linked_checked_and_a_password_change_needs_reauth() {
    let Some(world) = World::start() else { return };
    let config = world.config("\"kerberos\", \"ntlm\"");
    let linked = link(&config, "alice@CONTOSO.TEST", PASSWORD, &world.server()).await;
    let (endpoint, report) = linked.unwrap_or_else(|e| panic!("{e}: {:#?}", world.ews.log()));
    // Over TLS the ticket is bound to the channel; the acceptor checked the binding.
    let log = world.ews.log();
    assert!(log.iter().any(|e| e["auth_via"] == "Kerberos"), "{log:#?}");
    assert_eq!(endpoint.auth, ExchangeAuth::Kerberos, "recorded on the link");
    assert_eq!((report.inbox_total, report.inbox_unread), (Some(12), Some(3)));

    let log = world.ews.log();
    let signed_in: Vec<_> = log.iter().filter(|e| e["principal"] == "alice@CONTOSO.TEST").collect();
    assert!(!signed_in.is_empty(), "the acceptor saw alice's ticket: {log:#?}");
    assert!(log.iter().all(|e| e["negotiate_token"] != "ntlm"), "no NTLM was tried: {log:#?}");
    // Credentials only after the challenge: the first request carried none.
    assert_eq!(log[0]["credentials_sent"], json!(false), "{:#}", log[0]);

    // A background check signs in again with the stored password.
    let password = Sensitive::new(PASSWORD);
    let checked = exchange::check(&config, &endpoint, &password).await.unwrap();
    assert_eq!(checked.inbox_total, Some(12));

    // The password changes at the KDC: the check needs the user.
    world.kdc.change_password("alice", "Spring-2027!");
    let error = exchange::check(&config, &endpoint, &password).await.unwrap_err();
    assert!(matches!(kerberos_error(&error), KerberosError::WrongPassword { .. }), "{error}");
    assert_eq!(error.failure().state, LinkState::NeedsReauth, "{error}");
    let wire = error.wire_error();
    assert_eq!(wire.kind, ErrorKind::AuthRejected, "{wire:?}");
    assert!(!error.to_string().contains("Spring"), "no password in {error}");
}

#[tokio::test]
async fn an_unreachable_kdc_is_transient_and_the_check_recovers() {
    let Some(mut world) = World::start() else { return };
    // A NetBIOS-style login, its realm from the config.
    let realm = format!("realm = \"{}\"\n", REALM.to_lowercase());
    let config = world.config_with_kdc("\"kerberos\"", &world.kdc.addr(), &realm);
    let (endpoint, _) = link(&config, "CONTOSO\\alice", PASSWORD, &world.server()).await.unwrap();
    let password = Sensitive::new(PASSWORD);

    world.kdc.stop();
    let error = exchange::check(&config, &endpoint, &password).await.unwrap_err();
    assert!(matches!(kerberos_error(&error), KerberosError::KdcUnreachable { .. }), "{error}");
    assert!(error.is_transient(), "{error}");
    assert_eq!(error.failure().state, LinkState::Degraded);

    world.kdc.start_again();
    let report = exchange::check(&config, &endpoint, &password).await.unwrap();
    assert_eq!(report.inbox_total, Some(12));
}

#[tokio::test]
async fn each_kerberos_failure_says_who_must_act() {
    let Some(world) = World::start() else { return };
    let config = world.config("\"kerberos\"");
    let server = world.server();

    let wrong = link(&config, "alice@CONTOSO.TEST", "not-it", &server).await.unwrap_err();
    assert!(matches!(kerberos_error(&wrong), KerberosError::WrongPassword { .. }), "{wrong}");
    assert_eq!(wrong.wire_error().kind, ErrorKind::AuthRejected);

    let nobody = link(&config, "mallory@CONTOSO.TEST", PASSWORD, &server).await.unwrap_err();
    assert!(matches!(kerberos_error(&nobody), KerberosError::UnknownPrincipal { .. }), "{nobody}");
    assert_eq!(nobody.failure().actor, Actor::User);

    // The server is reached by another name, which has no service principal in the realm.
    let text = format!(
        "[exchange]\nauth = [\"kerberos\"]\nkdc = [\"{kdc}\"]\n[network]\nca_file = {ca:?}\n\
         [network.resolve]\n\"{OTHER_NAME}\" = \"{ip}\"\n",
        kdc = world.kdc.addr(),
        ca = world.pki.ca(),
        ip = world.ews.ip,
    );
    let renamed = Config::parse(&text, None, &Env { is_root: true, ..Env::default() }).unwrap();
    let server = format!("{OTHER_NAME}:{}", world.ews.https_port);
    let no_spn = link(&renamed, "alice@CONTOSO.TEST", PASSWORD, &server).await.unwrap_err();
    assert!(
        matches!(kerberos_error(&no_spn), KerberosError::NoServicePrincipal { .. }),
        "{no_spn}"
    );
    assert_eq!(no_spn.failure().actor, Actor::TenantAdmin);
    assert!(no_spn.wire_error().hint.unwrap().contains("HTTP/exchange.contoso.test"));

    // No KDC listens there.
    let free = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let dead = free.local_addr().unwrap().to_string();
    drop(free);
    let config = world.config_with_kdc("\"kerberos\"", &dead, "");
    let down = link(&config, "alice@CONTOSO.TEST", PASSWORD, &world.server()).await.unwrap_err();
    assert!(matches!(kerberos_error(&down), KerberosError::KdcUnreachable { .. }), "{down}");
    assert!(down.to_string().contains(&dead), "names the KDC: {down}");
}

#[tokio::test]
async fn a_kdc_whose_clock_is_an_hour_off_is_named_as_clock_skew_for_the_operator() {
    let Some(mut world) = World::start() else { return };
    let config = world.config("\"kerberos\"");
    let (endpoint, _) =
        link(&config, "alice@CONTOSO.TEST", PASSWORD, &world.server()).await.unwrap();
    let password = Sensitive::new(PASSWORD);

    // The domain controller's clock drifts an hour ahead: it refuses the ticket request
    // (KRB_AP_ERR_SKEW), at connect and at the background check alike.
    world.kdc.set_clock_offset(3600);
    let refused = link(&config, "alice@CONTOSO.TEST", PASSWORD, &world.server()).await.unwrap_err();
    assert!(matches!(kerberos_error(&refused), KerberosError::ClockSkew { .. }), "{refused:?}");
    assert!(refused.to_string().contains("the KDC is 1h ahead"), "{refused}");
    assert!(refused.wire_error().hint.unwrap().contains("clock"), "says what to fix");
    let error = exchange::check(&config, &endpoint, &password).await.unwrap_err();
    assert!(matches!(kerberos_error(&error), KerberosError::ClockSkew { .. }), "{error:?}");
    let failure = error.failure();
    assert_eq!((failure.state, failure.actor), (LinkState::Blocked, Actor::Operator));

    // The clocks agree again: the check passes.
    world.kdc.set_clock_offset(0);
    let report = exchange::check(&config, &endpoint, &password).await.unwrap();
    assert_eq!(report.inbox_total, Some(12));
}
