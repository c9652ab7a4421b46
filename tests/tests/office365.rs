//! Office365 links through the real binaries: a real OAuth2/OIDC server (oidc-provider), a real
//! headless Chromium signing in on its pages, and a fake Microsoft Graph that validates tokens
//! against that server (SPEC §1, §4, §7).
//!
//! Most tests run the server in its Entra mode (`--entra-offline-access`: Entra grants a
//! refresh token without `prompt=consent`); the stock behaviour has its own tests.

use std::time::Duration;

use mslink_e2e::peers::{Peer, signin};
use mslink_e2e::{ADMIN, ALICE, BOB, CtlOutput, Daemon, ensure_accounts, require_root};
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);

/// A real OIDC server with short-lived access tokens, the Graph fake in front of it, and a
/// daemon pointed at both, with the integration enabled.
struct World {
    oidc: Peer,
    graph: Peer,
    daemon: Daemon,
}

fn world(access_ttl: u32) -> World {
    world_with(access_ttl, &["--entra-offline-access"], "")
}

/// A world whose OIDC server gets `oidc_args` and whose `[office365]` section gets `office365`.
fn world_with(access_ttl: u32, oidc_args: &[&str], office365: &str) -> World {
    let ttl = access_ttl.to_string();
    let mut args = vec!["--port", "0", "--access-ttl", &ttl, "--device-interval", "1"];
    args.extend_from_slice(oidc_args);
    let oidc = Peer::node("oidc.mjs", &args);
    let graph = mslink_e2e::peers::graph_for(&oidc);
    let daemon = Daemon::start(&mslink_e2e::peers::office365_config(&oidc, &graph, office365));
    daemon.ctl(ADMIN, &["enable"]).expect_code(0);
    World { oidc, graph, daemon }
}

/// `connect --provider office365` in the browser flow, with Chromium signing in as `login`.
fn connect_with_browser(
    world: &World,
    user: &str,
    email: &str,
    login: &str,
    decline: bool,
) -> CtlOutput {
    let mut ctl = world
        .daemon
        .spawn_ctl(user, &["connect", email, "--provider", "office365", "--no-browser"]);
    let url = ctl.wait_for_stderr(|l| l.trim_start().starts_with("http"), MINUTE).trim().to_owned();
    let mut args = vec!["--url", url.as_str(), "--login", login];
    if decline {
        args.push("--decline");
    }
    let browser = signin(&args);
    assert!(
        browser.status.success(),
        "signin.mjs failed: {}{}",
        String::from_utf8_lossy(&browser.stdout),
        String::from_utf8_lossy(&browser.stderr)
    );
    ctl.finish()
}

fn link_of(daemon: &Daemon, user: &str) -> Value {
    let status = daemon.ctl(user, &["--json", "status"]).expect_code(0).json();
    status["links"][0].clone()
}

#[test]
fn a_user_links_a_mailbox_through_the_browser_and_it_stays_healthy() {
    if !require_root("a_user_links_a_mailbox_through_the_browser_and_it_stays_healthy") {
        return;
    }
    ensure_accounts();
    let world = world(3);

    let linked =
        connect_with_browser(&world, ALICE, "alice@contoso.test", "alice@contoso.test", false);
    linked.expect_code(0);
    assert!(
        linked.stdout.contains("alice@contoso.test") && linked.stdout.contains("active"),
        "{}",
        linked.stdout
    );
    let link = link_of(&world.daemon, ALICE);
    assert_eq!(link["state"], "active");
    assert_eq!(link["provider"], "office365");
    assert_eq!(link["calendar_ok"], true);
    assert!(link["inbox_total"].is_u64(), "{link}");

    // The token lives 3 s and is refreshed (with rotation) ahead of expiry in the background;
    // after several lifetimes a check still passes and `token` hands out a working token.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(3));
        world.daemon.ctl(ALICE, &["check", "alice@contoso.test"]).expect_code(0);
    }
    let token = world.daemon.ctl(ALICE, &["token", "alice@contoso.test"]);
    assert!(token.expect_code(0).stdout.trim().len() > 20, "{}", token.stdout);
    // Only the owner gets tokens, and Bob cannot see Alice's link at all.
    world.daemon.ctl(ADMIN, &["--user", ALICE, "token", "alice@contoso.test"]).expect_code(4);
    world.daemon.ctl(BOB, &["check", "alice@contoso.test"]).expect_code(5);

    // Revoking the grant at the provider: the next refresh fails with invalid_grant.
    world.oidc.control("/test/revoke?sub=alice@contoso.test", "{}");
    std::thread::sleep(Duration::from_secs(3));
    let refused = world.daemon.ctl(ALICE, &["check", "alice@contoso.test"]);
    refused.expect_code(7);
    assert_eq!(link_of(&world.daemon, ALICE)["state"], "needs_reauth");
    let check = world.daemon.ctl(ADMIN, &["status", "--check"]);
    assert!(check.expect_code(2).stdout.contains("1 needs_reauth"), "{}", check.stdout);

    // Signing in again restores it.
    connect_with_browser(&world, ALICE, "alice@contoso.test", "alice@contoso.test", false)
        .expect_code(0);
    assert_eq!(link_of(&world.daemon, ALICE)["state"], "active");
}

#[test]
fn a_sign_in_without_a_refresh_token_is_refused_and_prompt_consent_fixes_it() {
    if !require_root("a_sign_in_without_a_refresh_token_is_refused_and_prompt_consent_fixes_it") {
        return;
    }
    ensure_accounts();
    // Stock oidc-provider follows OIDC Core §11: no prompt=consent, no offline_access, no
    // refresh token. The link would turn needs_reauth within the hour: connect refuses it.
    let stock = world_with(60, &[], "");
    let refused =
        connect_with_browser(&stock, ALICE, "alice@contoso.test", "alice@contoso.test", false);
    refused.expect_code(7);
    assert!(
        refused.stderr.contains("offline_access") && refused.stderr.contains("consent"),
        "{}",
        refused.stderr
    );
    assert_eq!(link_of(&stock.daemon, ALICE), Value::Null, "nothing was stored");
    drop(stock);

    // The same provider asked for consent issues one, and the link can be refreshed: `token`
    // refreshes an access token with under a minute left, which every 20 s token has.
    let world = world_with(20, &[], "prompt = \"consent\"");
    connect_with_browser(&world, ALICE, "alice@contoso.test", "alice@contoso.test", false)
        .expect_code(0);
    assert_eq!(link_of(&world.daemon, ALICE)["state"], "active");
    let token = world.daemon.ctl(ALICE, &["token", "alice@contoso.test"]);
    assert!(!token.expect_code(0).stdout.trim().is_empty(), "a refreshed token is printed");
    world.daemon.ctl(ALICE, &["check", "alice@contoso.test"]).expect_code(0);
    assert_eq!(link_of(&world.daemon, ALICE)["state"], "active");
}

#[test]
fn declined_and_mismatched_sign_ins_link_nothing() {
    if !require_root("declined_and_mismatched_sign_ins_link_nothing") {
        return;
    }
    ensure_accounts();
    let world = world(60);
    let declined =
        connect_with_browser(&world, ALICE, "alice@contoso.test", "alice@contoso.test", true);
    declined.expect_code(7);
    let wrong =
        connect_with_browser(&world, ALICE, "alice@contoso.test", "bob@contoso.test", false);
    wrong.expect_code(7);
    assert!(
        wrong.stderr.contains("bob@contoso.test") && wrong.stderr.contains("alice@contoso.test"),
        "{}",
        wrong.stderr
    );
    let status = world.daemon.ctl(ALICE, &["--json", "status"]).expect_code(0).json();
    assert_eq!(status["links"].as_array().map(Vec::len), Some(0));
}

#[test]
fn device_code_and_paste_flows_link_mailboxes() {
    if !require_root("device_code_and_paste_flows_link_mailboxes") {
        return;
    }
    ensure_accounts();
    let world = world(60);

    let mut ctl = world.daemon.spawn_ctl(
        BOB,
        &["connect", "bob@contoso.test", "--provider", "office365", "--device-code"],
    );
    let visit = ctl.wait_for_stderr(|l| l.contains("open http"), MINUTE);
    let verification =
        visit.split_whitespace().find(|w| w.starts_with("http")).expect("URL").to_owned();
    let code = ctl
        .wait_for_stderr(|l| !l.trim().is_empty() && !l.trim().contains(' '), MINUTE)
        .trim()
        .to_owned();
    let browser =
        signin(&["--device", &verification, "--code", &code, "--login", "bob@contoso.test"]);
    assert!(browser.status.success(), "{}", String::from_utf8_lossy(&browser.stderr));
    ctl.finish().expect_code(0);
    assert_eq!(link_of(&world.daemon, BOB)["state"], "active");

    let mut ctl = world
        .daemon
        .spawn_ctl(ALICE, &["connect", "alice@contoso.test", "--provider", "office365", "--paste"]);
    let url = ctl.wait_for_stderr(|l| l.trim_start().starts_with("http"), MINUTE).trim().to_owned();
    // Nothing listens on the redirect URI: the browser ends on an error page whose address the
    // user copies.
    let browser = signin(&["--url", &url, "--login", "alice@contoso.test"]);
    let printed = String::from_utf8_lossy(&browser.stdout);
    let final_url = printed
        .lines()
        .find_map(|l| l.strip_prefix("FINAL_URL "))
        .unwrap_or_else(|| panic!("signin.mjs printed no FINAL_URL: {printed}"));
    ctl.type_line(final_url);
    ctl.finish().expect_code(0);
    assert_eq!(link_of(&world.daemon, ALICE)["state"], "active");
}

#[test]
fn ctrl_c_during_sign_in_cancels_cleanly() {
    if !require_root("ctrl_c_during_sign_in_cancels_cleanly") {
        return;
    }
    ensure_accounts();
    let world = world(60);
    let mut ctl = world.daemon.spawn_ctl(
        ALICE,
        &["connect", "alice@contoso.test", "--provider", "office365", "--no-browser"],
    );
    ctl.wait_for_stderr(|l| l.trim_start().starts_with("http"), MINUTE);
    ctl.interrupt();
    let cancelled = ctl.finish();
    cancelled.expect_code(8);
    assert!(cancelled.stderr.contains("cancelled"), "{}", cancelled.stderr);
    assert_eq!(link_of(&world.daemon, ALICE), Value::Null, "nothing was linked");
    // The daemon dropped that sign-in and serves the next one.
    connect_with_browser(&world, ALICE, "alice@contoso.test", "alice@contoso.test", false)
        .expect_code(0);
}

#[test]
fn a_continuous_access_evaluation_event_is_survived_by_a_background_round() {
    let test = "a_continuous_access_evaluation_event_is_survived_by_a_background_round";
    if !require_root(test) {
        return;
    }
    ensure_accounts();
    // Tokens live an hour: the round after the event has no refresh due, only a check.
    let world = world(3600);
    connect_with_browser(&world, ALICE, "alice@contoso.test", "alice@contoso.test", false)
        .expect_code(0);
    let requests = |world: &World| world.oidc.observe("/test/token-requests")["requests"].clone();
    let before = requests(&world).as_array().unwrap().len();

    // Entra re-evaluates a policy: Graph refuses the link's access token with a claims
    // challenge. The round refreshes with those claims and checks again, and the link stays
    // active; nobody has to sign in again.
    std::thread::sleep(Duration::from_secs(1)); // the event's second must follow the token's
    world.graph.control("/test/mode", r#"{"mode":"cae_event"}"#);
    let check = world.daemon.ctl(ALICE, &["check", "alice@contoso.test"]);
    check.expect_code(0);
    let link = link_of(&world.daemon, ALICE);
    assert_eq!(link["state"], "active", "{link}");
    let requests = requests(&world);
    let after = &requests.as_array().unwrap()[before..];
    let refresh = after
        .iter()
        .find(|r| r["grant_type"] == "refresh_token")
        .unwrap_or_else(|| panic!("no refresh after the challenge: {requests}"));
    let claims: Value = serde_json::from_str(refresh["claims"].as_str().unwrap()).unwrap();
    assert_eq!(claims["access_token"]["nbf"]["essential"], true, "{claims}");
    assert_eq!(claims["access_token"]["xms_cc"]["values"][0], "cp1", "{claims}");
}

#[test]
fn outages_degrade_links_which_recover_by_themselves() {
    if !require_root("outages_degrade_links_which_recover_by_themselves") {
        return;
    }
    ensure_accounts();
    let world = world(2);
    connect_with_browser(&world, ALICE, "alice@contoso.test", "alice@contoso.test", false)
        .expect_code(0);

    // Graph answers 503: transient, so degraded (never needs_reauth), and the daemon retries
    // by itself (retry_min 1 s) until Graph is back.
    world.graph.control("/test/mode", r#"{"mode":"error503"}"#);
    world.daemon.ctl(ALICE, &["check", "alice@contoso.test"]).expect_code(1);
    assert_eq!(link_of(&world.daemon, ALICE)["state"], "degraded");
    let check = world.daemon.ctl(ADMIN, &["status", "--check"]);
    assert!(check.expect_code(1).stdout.starts_with("MSLINK WARNING"), "{}", check.stdout);
    world.graph.control("/test/mode", r#"{"mode":"ok"}"#);
    let deadline = std::time::Instant::now() + MINUTE;
    while link_of(&world.daemon, ALICE)["state"] != "active" {
        assert!(
            std::time::Instant::now() < deadline,
            "the link did not recover by itself: {}",
            link_of(&world.daemon, ALICE)
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // The token endpoint gone: once the 2 s token expires, refreshing fails with a network
    // error. That is transient too: degraded, never needs_reauth.
    let World { oidc, graph: _graph, daemon } = world;
    drop(oidc);
    std::thread::sleep(Duration::from_secs(3));
    daemon.ctl(ALICE, &["check", "alice@contoso.test"]).expect_code(1);
    let link = link_of(&daemon, ALICE);
    assert_eq!(link["state"], "degraded", "{link}");
}
