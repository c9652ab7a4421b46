//! Hybrid modern authentication through the real binaries: an on-premises Exchange server (the
//! EWS fake in Bearer mode, validating tokens by introspection at the real OIDC server, which
//! plays Entra ID) that takes only Entra ID tokens. `mslinkctl connect EMAIL` with nothing but
//! the address: detection (Microsoft's endpoints faked, a real DNS server) settles Exchange, the
//! server's challenge names Entra ID, a real Chromium signs in, and the link is refreshed and
//! checked over Bearer until the grant is revoked.
//!
//! The OIDC server runs in its Entra modes: `--entra-offline-access`, and
//! `--entra-resource-scopes` with each on-premises host's `EWS.AccessAsUser.All` accepted
//! (`--extra-scope`); a token's audience is then the host its scope names. With
//! `--entra-resource-uris` the hosts are one resource, as hybrid modern authentication registers
//! them with Entra ID (one sign-in serves each); without it (stock), each host is a resource of
//! its own and the second host's token is refused.

use std::time::Duration;

use mslink_e2e::dnsmasq::Dnsmasq;
use mslink_e2e::ews::{Ews, Pki};
use mslink_e2e::microsoft::{Domain, Microsoft, Realm, Tenant, V2};
use mslink_e2e::peers::{Peer, signin};
use mslink_e2e::{ADMIN, ALICE, CtlOutput, Daemon, ensure_accounts, require_root, require_tool};
use serde_json::{Value, json};

const MINUTE: Duration = Duration::from_secs(60);

/// The hosts of the on-premises organisation: Autodiscover's first candidate (the domain),
/// Autodiscover's own name, and the EWS host Autodiscover names.
const HOSTS: [&str; 3] = ["contoso.test", "autodiscover.contoso.test", "mail.contoso.test"];

struct World {
    oidc: Peer,
    ews: Ews,
    daemon: Daemon,
    _dns: Dnsmasq,
    _microsoft: Microsoft,
    pki: Pki,
}

impl World {
    /// `one_resource`: the hosts are identifier URIs of one resource at Entra ID.
    fn start(one_resource: bool) -> World {
        let pki = Pki::new(
            &HOSTS,
            &json!({"alice@contoso.test": {"username": "CONTOSO\\alice",
                    "upn": "alice@contoso.test", "password": "unused-Pass1",
                    "inbox_total": 7, "inbox_unread": 2}}),
        );
        let scopes: Vec<String> =
            HOSTS.iter().map(|h| format!("https://{h}/EWS.AccessAsUser.All")).collect();
        let mut args = vec![
            "--port",
            "0",
            "--access-ttl",
            "3",
            "--entra-offline-access",
            "--entra-resource-scopes",
        ];
        for scope in &scopes {
            args.extend(["--extra-scope", scope.as_str()]);
        }
        let group: Vec<String> = HOSTS.iter().map(|h| format!("https://{h}")).collect();
        let group = group.join(",");
        if one_resource {
            args.extend(["--entra-resource-uris", group.as_str()]);
        }
        let oidc = Peer::node("oidc.mjs", &args);
        let introspect = format!("{}/token/introspection", oidc.url);
        let audiences: Vec<String> = HOSTS.iter().map(|h| format!("https://{h}")).collect();
        let mut args = vec!["--auth", "bearer", "--introspect", &introspect];
        for audience in &audiences {
            args.extend(["--audience", audience.as_str()]);
        }
        let ews = Ews::start(&pki, 443, &args);
        // A hybrid organisation: Entra ID knows the domain, and Autodiscover v2 at Exchange
        // Online names alice's on-premises EWS.
        let microsoft = Microsoft::for_every_domain(Domain::new(
            Realm::Federated,
            Tenant::Found,
            V2::Hybrid { on_premises: vec!["alice@contoso.test".into()] },
        ));
        let dns = Dnsmasq::start(&[]).expect("dnsmasq, checked first");
        let resolve: String = HOSTS.iter().map(|h| format!("\"{h}\" = \"{}\"\n", ews.ip)).collect();
        let o = &oidc.url;
        let daemon = Daemon::start(&format!(
            "[office365]\nclient_id = \"mslink-test\"\n\
             authority = \"{ms}/organizations/v2.0\"\nauthorize_url = \"{o}/auth\"\n\
             token_url = \"{o}/token\"\ndevice_code_url = \"{o}/device/auth\"\n\
             [detection]\ntimeout = \"4s\"\nuser_realm_url = \"{ms}/getuserrealm.srf\"\n\
             autodiscover_v2_url = \"{ms}/autodiscover/autodiscover.json/v1.0\"\n\
             [schedule]\nrefresh_before_expiry = \"1s\"\nretry_min = \"1s\"\nretry_max = \"2s\"\n\
             [network]\nnameservers = [\"{dns}\"]\nca_file = {ca:?}\n\
             [network.resolve]\n{resolve}",
            ms = microsoft.base,
            dns = dns.addr,
            ca = pki.ca(),
        ));
        daemon.ctl(ADMIN, &["enable"]).expect_code(0);
        World { oidc, ews, daemon, _dns: dns, _microsoft: microsoft, pki }
    }

    /// `mslinkctl connect alice@contoso.test` (no provider, no password), Chromium signing in.
    fn connect(&self) -> CtlOutput {
        let mut ctl =
            self.daemon.spawn_ctl(ALICE, &["connect", "alice@contoso.test", "--no-browser"]);
        let url =
            ctl.wait_for_stderr(|l| l.trim_start().starts_with("http"), MINUTE).trim().to_owned();
        let browser = signin(&["--url", url.as_str(), "--login", "alice@contoso.test"]);
        assert!(
            browser.status.success(),
            "signin.mjs failed: {}{}",
            String::from_utf8_lossy(&browser.stdout),
            String::from_utf8_lossy(&browser.stderr)
        );
        ctl.finish()
    }

    /// `mslinkctl connect alice@contoso.test --device-code`, Chromium entering the code.
    fn connect_with_device_code(&self) -> CtlOutput {
        let mut ctl =
            self.daemon.spawn_ctl(ALICE, &["connect", "alice@contoso.test", "--device-code"]);
        let visit = ctl.wait_for_stderr(|l| l.contains("open http"), MINUTE);
        let verification =
            visit.split_whitespace().find(|w| w.starts_with("http")).expect("URL").to_owned();
        let code = ctl
            .wait_for_stderr(|l| !l.trim().is_empty() && !l.trim().contains(' '), MINUTE)
            .trim()
            .to_owned();
        let browser =
            signin(&["--device", &verification, "--code", &code, "--login", "alice@contoso.test"]);
        assert!(browser.status.success(), "{}", String::from_utf8_lossy(&browser.stderr));
        ctl.finish()
    }

    fn link(&self) -> Value {
        self.daemon.ctl(ALICE, &["--json", "status"]).expect_code(0).json()["links"][0].clone()
    }
}

fn prerequisites(test: &str) -> bool {
    require_root(test)
        && require_tool("dnsmasq", test)
        && require_tool("python3", test)
        && require_tool("openssl", test)
        && require_tool("curl", test)
}

#[test]
fn a_bearer_only_exchange_server_is_linked_with_the_address_and_the_browser_and_kept_alive() {
    if !prerequisites(
        "a_bearer_only_exchange_server_is_linked_with_the_address_and_the_browser_and_kept_alive",
    ) {
        return;
    }
    ensure_accounts();
    let world = World::start(true);

    // Detection names the server's scheme as evidence.
    let found = world.daemon.ctl(ALICE, &["detect", "alice@contoso.test", "--json"]);
    let found = found.expect_code(0).json();
    assert_eq!(found["provider"], "exchange", "{found:#}");
    let evidence = found["evidence"].as_array().cloned().unwrap_or_default();
    assert!(
        evidence.iter().any(|e| e["points_to"] == "exchange"
            && e["detail"].as_str().is_some_and(|d| d.contains("hybrid modern authentication"))),
        "{found:#}"
    );

    let linked = world.connect();
    linked.expect_code(0);
    let link = world.link();
    assert_eq!(link["provider"], "exchange", "{link:#}");
    assert_eq!(link["state"], "active", "{link:#}");
    assert_eq!(link["auth_scheme"], "oauth", "{link:#}");
    assert_eq!(link["endpoint"], "https://mail.contoso.test/EWS/Exchange.asmx", "{link:#}");
    assert_eq!(link["inbox_total"], 7, "{link:#}");

    // Every token went to the host it was issued for, and no password to anyone.
    let log = world.ews.log();
    let bearer: Vec<&Value> = log.iter().filter(|e| e["auth_via"] == "Bearer").collect();
    assert!(bearer.iter().any(|e| e["host"] == "mail.contoso.test"), "{log:#?}");
    for entry in &bearer {
        let host = entry["host"].as_str().unwrap_or_default();
        assert_eq!(entry["token_audience"], json!([format!("https://{host}")]), "{entry:#}");
    }
    assert!(log.iter().all(|e| e["password_sent"] == json!(false)), "{log:#?}");
    assert!(log.iter().all(|e| e["bearer_error"].is_null()), "{log:#?}");

    // Tokens live 3 s and are refreshed ahead of expiry (rotating the refresh token, which the
    // server revokes the grant over if a superseded one is presented): checks keep passing.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(3));
        world.daemon.ctl(ALICE, &["check", "alice@contoso.test"]).expect_code(0);
    }
    assert_eq!(world.link()["state"], "active");
    let refreshed = world.ews.log().iter().filter(|e| e["auth_via"] == "Bearer").count();
    assert!(refreshed > bearer.len() + 2, "checks went over Bearer");

    // A mail tool asks for the link's token (DavMail's EWS mode) and EWS takes it; the link
    // holds no Graph token.
    let token = world.daemon.ctl(ALICE, &["token", "alice@contoso.test", "--for", "ews"]);
    let token = token.expect_code(0).stdout.trim().to_owned();
    let (code, _, answer) = world.ews.get_inbox(&world.pki, "mail.contoso.test", &token);
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("GetFolderResponseMessage ResponseClass=\"Success\""), "{answer}");
    let graph = world.daemon.ctl(ALICE, &["token", "alice@contoso.test"]);
    graph.expect_code(6);
    assert!(graph.stderr.contains("--for ews"), "{}", graph.stderr);

    // Revoking the grant at Entra ID: the next refresh is refused, and the user must sign in.
    world.oidc.control("/test/revoke?sub=alice@contoso.test", "{}");
    std::thread::sleep(Duration::from_secs(3));
    world.daemon.ctl(ALICE, &["check", "alice@contoso.test"]).expect_code(7);
    assert_eq!(world.link()["state"], "needs_reauth");

    // Signing in again (with the device code this time) restores it.
    world.connect_with_device_code().expect_code(0);
    assert_eq!(world.link()["state"], "active");
    world.daemon.ctl(ALICE, &["check", "alice@contoso.test"]).expect_code(0);
}

#[test]
fn where_each_host_is_its_own_resource_the_second_hosts_refused_token_links_nothing() {
    if !prerequisites(
        "where_each_host_is_its_own_resource_the_second_hosts_refused_token_links_nothing",
    ) {
        return;
    }
    ensure_accounts();
    let world = World::start(false);
    // Signed in for the domain's Autodiscover; EWS at mail.contoso.test is another resource,
    // which the grant does not cover.
    let refused = world.connect();
    refused.expect_code(1);
    assert!(refused.stderr.contains("invalid_scope"), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("a tenant admin must register https://mail.contoso.test with Entra ID")
            && refused.stderr.contains("servicePrincipalNames"),
        "the hint names the host and who registers it: {}",
        refused.stderr
    );
    assert_eq!(world.link(), Value::Null, "nothing was stored");
    let log = world.ews.log();
    assert!(
        log.iter().all(|e| e["host"] != "mail.contoso.test" || e["auth_via"].is_null()),
        "no token reached EWS: {log:#?}"
    );
}
