//! Office365 sign-in, refresh and Graph checks against real peers on 127.0.0.1: a real OAuth
//! server (`oidc.mjs`, oidc-provider), a fake Graph that validates tokens at it (`graph.mjs`),
//! and a real headless Chromium signing in on the provider's pages (`signin.mjs`).
//!
//! `oidc.mjs` behaves as stock oidc-provider (a standard OpenID provider) unless a test asks
//! for one of Entra's differences by name ([`ENTRA`]); each such difference is tested both ways.
//!
//! Setup (once): `apt-get install -y chromium` and `cd tests/peers && npm ci`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::PathBuf;
use std::time::Duration;

use mslink_e2e::peers::{self, Peer};

use mslink_proto::{ConnectEvent, ErrorKind, LinkState, Sensitive, SignInFlow};
use mslinkd::config::{Config, Env};
use mslinkd::health::Actor;
use mslinkd::interaction::{Interaction, InteractionPeer};
use mslinkd::office365::{self, Office365Error, Tokens};

/// Entra grants `offline_access` without `prompt=consent`; stock OpenID providers do not.
const ENTRA: &str = "--entra-offline-access";

const ALICE: &str = "alice@contoso.test";
const BOB: &str = "bob@contoso.test";

fn peers_dir() -> PathBuf {
    mslink_e2e::peers::dir()
}

/// Awaits `future`, failing the test with `what` if it takes longer than `limit`: a wait on a
/// peer or on a flow ends in an answer or a message naming it, never in a hang that only the
/// test runner's timeout ends.
async fn within<T>(limit: Duration, what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {}s", limit.as_secs()))
}

/// Runs a sign-in flow next to the code that plays the user; if the flow ends first (an error
/// before the awaited event), the user's side is dropped instead of waiting forever. Once the
/// user's part is done the flow has every answer it needs and must finish promptly.
async fn with_user<T>(
    flow: impl std::future::Future<Output = Result<Tokens, Office365Error>>,
    user: impl std::future::Future<Output = T>,
) -> Result<Tokens, Office365Error> {
    tokio::pin!(flow);
    tokio::pin!(user);
    let result = tokio::select! {
        result = &mut flow => result,
        _ = &mut user => {
            within(Duration::from_secs(90), "the sign-in flow, after the user's part", flow).await
        }
    };
    result
}

/// Chromium is heavy and the machine small: one browser at a time across tests.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs signin.mjs (on a blocking thread: the sign-in flow it drives runs on this one); its
/// exit code and `FINAL_URL`.
async fn browser(args: &[&str]) -> (i32, Option<String>) {
    let _one = BROWSER.lock().await;
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let run = tokio::task::spawn_blocking(move || {
        peers::signin(&args.iter().map(String::as_str).collect::<Vec<_>>())
    });
    // signin.mjs gives up by itself after 30 s, and Playwright kills a browser that does not
    // close within 30 s more.
    let output = within(Duration::from_secs(120), "signin.mjs", run).await.unwrap();
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let final_url = stdout.lines().find_map(|l| l.strip_prefix("FINAL_URL ")).map(str::to_owned);
    let code = output.status.code().unwrap_or(-1);
    // Node exits 0 by itself when nothing is left to wait for; only `finish` prints FINAL_URL.
    assert!(final_url.is_some() || code != 0, "signin.mjs exited 0 without finishing: {stdout}");
    (code, final_url)
}

struct Peers {
    oidc: Peer,
    graph: Peer,
}

/// The OIDC server (with `oidc_args`) and the Graph fake validating tokens at it. Tests with
/// peers once waited forever now and then: the OIDC peer's key generation deadlocked Node
/// (fixed in `oidc.mjs`), not anything in-process, so tests run side by side again.
async fn peers(oidc_args: &[&str]) -> Peers {
    let oidc = Peer::node("oidc.mjs", &[&["--port", "0"], oidc_args].concat());
    let graph = peers::graph_for(&oidc);
    Peers { oidc, graph }
}

fn config(peers: &Peers, extra: &str) -> Config {
    let (oidc, graph) = (&peers.oidc.url, &peers.graph.url);
    let text = format!(
        "socket = \"/nonexistent/mslinkd.sock\"\nstate_dir = \"/nonexistent/state\"\n\
         [office365]\nclient_id = \"mslink-test\"\nauthority = \"{oidc}\"\n\
         authorize_url = \"{oidc}/auth\"\ntoken_url = \"{oidc}/token\"\n\
         device_code_url = \"{oidc}/device/auth\"\ngraph_url = \"{graph}/v1.0\"\n{extra}"
    );
    Config::parse(&text, None, &Env::default()).unwrap()
}

/// The next event that `pick` accepts.
async fn wait_for<T>(peer: &mut InteractionPeer, pick: impl Fn(ConnectEvent) -> Option<T>) -> T {
    loop {
        let event = peer.events.recv().await.expect("the flow ended without the expected event");
        if let Some(found) = pick(event) {
            return found;
        }
    }
}

async fn browser_sign_in(
    config: &Config,
    login: &str,
    decline: bool,
) -> Result<Tokens, Office365Error> {
    let (mut interaction, mut peer) = Interaction::pair();
    let drive = async {
        let url = wait_for(&mut peer, |e| match e {
            ConnectEvent::OpenBrowser { url } => Some(url),
            _ => None,
        })
        .await;
        let mut args = vec!["--url", url.as_str(), "--login", login];
        if decline {
            args.push("--decline");
        }
        let (code, final_url) = browser(&args).await;
        assert_eq!(code, 0, "signin.mjs failed; final URL {final_url:?}");
        peer
    };
    with_user(office365::sign_in(config, SignInFlow::Browser, login, &mut interaction), drive).await
}

async fn device_sign_in(
    config: &Config,
    login: &str,
    decline: bool,
) -> Result<Tokens, Office365Error> {
    let (mut interaction, mut peer) = Interaction::pair();
    let drive = async {
        let (uri, code, expires_at) = wait_for(&mut peer, |e| match e {
            ConnectEvent::DeviceCode { verification_uri, user_code, expires_at } => {
                Some((verification_uri, user_code, expires_at))
            }
            _ => None,
        })
        .await;
        assert!(expires_at > mslinkd::now(), "the device code must expire in the future");
        let mut args = vec!["--device", uri.as_str(), "--code", code.as_str(), "--login", login];
        if decline {
            args.push("--decline");
        }
        let (status, final_url) = browser(&args).await;
        assert_eq!(status, 0, "signin.mjs failed; final URL {final_url:?}");
        peer
    };
    with_user(office365::sign_in(config, SignInFlow::DeviceCode, login, &mut interaction), drive)
        .await
}

#[tokio::test]
async fn browser_sign_in_links_a_mailbox_that_passes_its_check() {
    let peers = peers(&[ENTRA]).await;
    let config = config(&peers, "");
    let tokens = browser_sign_in(&config, ALICE, false).await.unwrap();
    assert!(tokens.refresh_token.is_some());
    assert!(tokens.expires_at > mslinkd::now());
    let report =
        office365::check(&config, &tokens.access_token, "Alice@Contoso.TEST").await.unwrap();
    assert_eq!((report.inbox_total, report.inbox_unread), (Some(10), Some(3)));
    assert!(report.calendar_ok);
}

#[tokio::test]
async fn declining_in_the_browser_is_declined() {
    let peers = peers(&[ENTRA]).await;
    let config = config(&peers, "");
    let error = browser_sign_in(&config, ALICE, true).await.unwrap_err();
    assert!(matches!(error, Office365Error::Declined { .. }), "{error:?}");
    assert_eq!(error.wire_error().kind, ErrorKind::AuthRejected);
}

#[tokio::test]
async fn a_stock_provider_without_prompt_consent_issues_no_refresh_token_and_is_refused() {
    // Stock oidc-provider (OIDC Core §11) drops offline_access from a request without
    // prompt=consent: the sign-in succeeds, but a link made of it would die within the hour.
    let peers = peers(&[]).await;
    let config = config(&peers, "");
    let error = browser_sign_in(&config, ALICE, false).await.unwrap_err();
    assert!(
        matches!(error, Office365Error::NoRefreshToken { asked_consent: false, .. }),
        "{error:?}"
    );
    let wire = error.wire_error();
    assert_eq!(wire.kind, ErrorKind::AuthRejected);
    assert!(
        wire.message.contains("`offline_access`") && wire.message.contains("consent"),
        "{}",
        wire.message
    );
    assert!(wire.hint.unwrap().contains("prompt = \"consent\""));
}

#[tokio::test]
async fn with_prompt_consent_a_stock_provider_issues_a_refresh_token_and_the_link_works() {
    let peers = peers(&[]).await;
    let config = config(&peers, "prompt = \"consent\"\n");
    let tokens = browser_sign_in(&config, ALICE, false).await.unwrap();
    let refresh_token = tokens.refresh_token.expect("prompt=consent keeps offline_access");
    office365::check(&config, &tokens.access_token, ALICE).await.unwrap();
    let refreshed = office365::refresh(&config, &refresh_token).await.unwrap();
    office365::check(&config, &refreshed.access_token, ALICE).await.unwrap();
}

#[tokio::test]
async fn the_configured_prompt_is_sent_on_the_authorization_request() {
    let peers = peers(&[]).await;
    let config = config(&peers, "prompt = \"select_account\"\n");
    let (mut interaction, mut peer) = Interaction::pair();
    let drive = async {
        let url = wait_for(&mut peer, |e| match e {
            ConnectEvent::OpenBrowser { url } => Some(url),
            _ => None,
        })
        .await;
        let url = url::Url::parse(&url).unwrap();
        let prompts: Vec<_> = url.query_pairs().filter(|(k, _)| k == "prompt").collect();
        assert_eq!(prompts.len(), 1, "{url}");
        assert_eq!(prompts[0].1, "select_account");
        peer.cancel.cancel();
        peer
    };
    let result =
        with_user(office365::sign_in(&config, SignInFlow::Browser, ALICE, &mut interaction), drive)
            .await;
    assert!(matches!(result, Err(Office365Error::Cancelled)), "{result:?}");
}

/// The redirect URI README.md tells the admin to register in Entra ("Mobile and desktop
/// applications").
fn readme_redirect_uri() -> String {
    let readme = std::fs::read_to_string(peers_dir().join("../../README.md")).unwrap();
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let start =
        readme.find("redirect URI `").expect("README.md names the redirect URI to register")
            + "redirect URI `".len();
    readme[start..].split('`').next().unwrap().to_owned()
}

#[tokio::test]
async fn the_redirect_uri_the_readme_has_admins_register_is_the_one_sent() {
    // Registered as the README says, and nothing else. Like Entra for a loopback redirect URI of
    // a desktop app (and RFC 8252 §7.3), the provider ignores the port but matches the path.
    let registered = readme_redirect_uri();
    let peers = peers(&["--registered-redirect-uri", &registered, ENTRA]).await;
    let config = config(&peers, "");
    let tokens = browser_sign_in(&config, ALICE, false).await.unwrap();
    office365::check(&config, &tokens.access_token, ALICE).await.unwrap();
}

#[tokio::test]
async fn a_callback_with_the_wrong_state_is_refused_and_ctrl_c_cancels() {
    let peers = peers(&[]).await;
    let config = config(&peers, "");
    let (mut interaction, mut peer) = Interaction::pair();
    let drive = async {
        let url = wait_for(&mut peer, |e| match e {
            ConnectEvent::OpenBrowser { url } => Some(url),
            _ => None,
        })
        .await;
        let url = url::Url::parse(&url).unwrap();
        let redirect = url.query_pairs().find(|(k, _)| k == "redirect_uri").unwrap().1.into_owned();
        assert!(redirect.starts_with("http://localhost:") && redirect.ends_with("/callback"));
        let challenge = url.query_pairs().find(|(k, _)| k == "code_challenge_method").unwrap().1;
        assert_eq!(challenge, "S256");
        assert!(url.query_pairs().any(|(k, v)| k == "login_hint" && v == ALICE));
        assert!(!url.query_pairs().any(|(k, _)| k == "prompt"), "no prompt unless configured");
        // The listener is on 127.0.0.1; a forged or stale redirect gets an error page.
        let port = url::Url::parse(&redirect).unwrap().port().unwrap();
        let forged = format!("http://127.0.0.1:{port}/callback?code=stolen&state=forged");
        let answer = reqwest::get(&forged).await.unwrap();
        assert_eq!(answer.status(), 400);
        let missing = format!("http://127.0.0.1:{port}/callback?code=stolen");
        assert_eq!(reqwest::get(&missing).await.unwrap().status(), 400);
        peer.cancel.cancel(); // the user pressed Ctrl-C
        peer
    };
    let result =
        with_user(office365::sign_in(&config, SignInFlow::Browser, ALICE, &mut interaction), drive)
            .await;
    let error = result.unwrap_err();
    assert!(matches!(error, Office365Error::Cancelled), "{error:?}");
    assert_eq!(error.wire_error().kind, ErrorKind::Timeout);
}

#[tokio::test]
async fn paste_sign_in_takes_the_url_from_the_address_bar() {
    // A stock provider, asked for consent so that it grants offline_access.
    let peers = peers(&[]).await;
    // A fixed port where nothing listens, as on a remote machine.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config =
        config(&peers, &format!("redirect_listen = \"127.0.0.1:{port}\"\nprompt = \"consent\"\n"));
    let (mut interaction, mut peer) = Interaction::pair();
    let drive = async {
        let url = wait_for(&mut peer, |e| match e {
            ConnectEvent::PasteRedirect { url } => Some(url),
            _ => None,
        })
        .await;
        let (code, final_url) = browser(&["--url", &url, "--login", ALICE]).await;
        assert_eq!(code, 3, "nothing listens on the redirect URI");
        let final_url = final_url.unwrap();
        assert!(
            final_url.starts_with(&format!("http://localhost:{port}/callback?code=")),
            "{final_url}"
        );
        peer.pasted.send(Sensitive::new(final_url)).await.unwrap();
        peer
    };
    let result =
        with_user(office365::sign_in(&config, SignInFlow::Paste, ALICE, &mut interaction), drive)
            .await;
    let tokens = result.unwrap();
    office365::check(&config, &tokens.access_token, ALICE).await.unwrap();
}

#[tokio::test]
async fn a_pasted_url_from_another_attempt_is_refused() {
    let peers = peers(&[]).await;
    let config = config(&peers, "");
    let (mut interaction, mut peer) = Interaction::pair();
    let drive = async {
        wait_for(&mut peer, |e| matches!(e, ConnectEvent::PasteRedirect { .. }).then_some(()))
            .await;
        let stale = "http://localhost/callback?code=abc&state=from-yesterday";
        peer.pasted.send(Sensitive::new(stale)).await.unwrap();
        peer
    };
    let result =
        with_user(office365::sign_in(&config, SignInFlow::Paste, ALICE, &mut interaction), drive)
            .await;
    let error = result.unwrap_err();
    assert!(matches!(error, Office365Error::BadRedirect(_)), "{error:?}");
    assert!(error.wire_error().hint.unwrap().contains("address bar"));
}

#[tokio::test]
async fn device_code_sign_in_and_a_check_for_someone_else() {
    // --device-interval 1: polls every second (faster gets slow_down, which the flow honours).
    let peers = peers(&["--device-interval", "1"]).await;
    let config = config(&peers, "");
    let tokens = device_sign_in(&config, BOB, false).await.unwrap();
    office365::check(&config, &tokens.access_token, BOB).await.unwrap();
    let error = office365::check(&config, &tokens.access_token, ALICE).await.unwrap_err();
    let wire = error.wire_error();
    assert_eq!(wire.kind, ErrorKind::AuthRejected);
    assert!(wire.message.contains(ALICE) && wire.message.contains(BOB), "{}", wire.message);
}

async fn declining_a_device_code(mode: &[&str]) {
    let mut args = vec!["--device-interval", "1"];
    args.extend_from_slice(mode);
    let peers = peers(&args).await;
    let config = config(&peers, "");
    let error = device_sign_in(&config, ALICE, true).await.unwrap_err();
    assert!(matches!(error, Office365Error::Declined { .. }), "{error:?}");
    assert_eq!(error.wire_error().kind, ErrorKind::AuthRejected);
}

#[tokio::test]
async fn declining_a_device_code_is_declined() {
    // RFC 8628 (and stock oidc-provider): access_denied.
    declining_a_device_code(&[]).await;
}

#[tokio::test]
async fn declining_a_device_code_at_entra_is_declined() {
    // Entra names it authorization_declined.
    declining_a_device_code(&["--entra-device-errors"]).await;
}

#[tokio::test]
async fn an_unused_device_code_times_out() {
    let peers = peers(&["--device-interval", "1", "--device-ttl", "2"]).await;
    let config = config(&peers, "");
    let mut interaction = Interaction::detached();
    let error = office365::sign_in(&config, SignInFlow::DeviceCode, ALICE, &mut interaction)
        .await
        .unwrap_err();
    assert!(matches!(error, Office365Error::TimedOut(_)), "{error:?}");
    assert_eq!(error.wire_error().kind, ErrorKind::Timeout);
}

#[tokio::test]
async fn rotated_refresh_tokens_keep_a_link_alive_and_a_replayed_one_ends_the_grant() {
    // Five-second access tokens: each is used once right after it is issued and once after it
    // expired. With two seconds a loaded machine took longer than the token's life between
    // issuing and the first use, and the test failed on its first check (seen under a full
    // suite plus a parallel build).
    let peers = peers(&["--access-ttl", "5", ENTRA]).await;
    let config = config(&peers, "");
    let first = browser_sign_in(&config, ALICE, false).await.unwrap();
    let original = first.refresh_token.clone().unwrap();
    let mut current = first;
    let mut refresh_token = original.clone();
    for _ in 0..3 {
        office365::check(&config, &current.access_token, ALICE).await.unwrap();
        // Wait out the access token's real lifetime at the server.
        let left = current.expires_at - mslinkd::now() + 1;
        tokio::time::sleep(Duration::from_secs(u64::try_from(left.max(1)).unwrap())).await;
        let expired = office365::check(&config, &current.access_token, ALICE).await.unwrap_err();
        assert!(expired.is_token_rejected(), "{expired:?}");
        let next = office365::refresh(&config, &refresh_token).await.unwrap();
        let rotated = next.refresh_token.clone().expect("the server rotates refresh tokens");
        assert_ne!(rotated, refresh_token);
        refresh_token = rotated;
        current = next;
    }
    office365::check(&config, &current.access_token, ALICE).await.unwrap();

    // Presenting a consumed refresh token: invalid_grant, and the provider revokes the grant.
    let replay = office365::refresh(&config, &original).await.unwrap_err();
    let failure = replay.failure();
    assert_eq!(failure.state, LinkState::NeedsReauth, "{replay}");
    assert!(failure.reason.contains("invalid_grant"), "{}", failure.reason);
    let after = office365::refresh(&config, &refresh_token).await.unwrap_err();
    assert_eq!(after.failure().state, LinkState::NeedsReauth);
}

/// Revokes every grant of `sub` at the OIDC peer.
async fn revoke(peers: &Peers, sub: &str) {
    let url = format!("{}/test/revoke?sub={sub}", peers.oidc.url);
    let revoked = reqwest::Client::new().post(url).send().await.unwrap();
    assert!(revoked.status().is_success());
}

#[tokio::test]
async fn revoking_the_grant_needs_reauth() {
    let peers = peers(&[ENTRA]).await;
    let config = config(&peers, "");
    let tokens = browser_sign_in(&config, ALICE, false).await.unwrap();
    revoke(&peers, ALICE).await;
    let error =
        office365::refresh(&config, tokens.refresh_token.as_ref().unwrap()).await.unwrap_err();
    assert_eq!(error.failure().state, LinkState::NeedsReauth, "{error}");
    assert!(!error.is_transient());
    let check = office365::check(&config, &tokens.access_token, ALICE).await.unwrap_err();
    assert!(check.is_token_rejected(), "{check:?}");
}

/// The token requests the OP saw: `(grant_type, claims)`.
async fn token_requests(peers: &Peers) -> Vec<(String, Option<serde_json::Value>)> {
    let url = format!("{}/test/token-requests", peers.oidc.url);
    let log: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let claims = r["claims"].as_str().map(|c| serde_json::from_str(c).unwrap());
            (r["grant_type"].as_str().unwrap_or_default().to_owned(), claims)
        })
        .collect()
}

#[tokio::test]
async fn a_continuous_access_evaluation_challenge_is_answered_by_a_refresh_with_its_claims() {
    let peers = peers(&[ENTRA]).await;
    let config = config(&peers, "");
    let tokens = browser_sign_in(&config, ALICE, false).await.unwrap();
    // Every token request declares the cp1 capability.
    let (grant, claims) = token_requests(&peers).await.pop().unwrap();
    assert_eq!(grant, "authorization_code");
    assert_eq!(claims.unwrap()["access_token"]["xms_cc"]["values"][0], "cp1");

    // A CAE event: the token issued before it is refused with a claims challenge.
    tokio::time::sleep(Duration::from_secs(1)).await; // tokens issued in the event's second pass
    graph_mode(&peers, serde_json::json!({"mode": "cae_event"})).await;
    let challenged = office365::check(&config, &tokens.access_token, ALICE).await.unwrap_err();
    assert!(challenged.is_token_rejected(), "{challenged:?}");
    let claims = challenged.claims_challenge().expect("a claims challenge").to_owned();
    let asked: serde_json::Value = serde_json::from_str(&claims).unwrap();
    assert_eq!(asked["access_token"]["nbf"]["essential"], true);

    // The refresh carries those claims (with the capability), and its token passes.
    let refresh_token = tokens.refresh_token.unwrap();
    let scopes = &config.office365.scopes;
    let fresh =
        office365::refresh_for(&config, &refresh_token, scopes, Some(&claims)).await.unwrap();
    let (grant, sent) = token_requests(&peers).await.pop().unwrap();
    let sent = sent.unwrap();
    assert_eq!(grant, "refresh_token");
    assert_eq!(sent["access_token"]["nbf"], asked["access_token"]["nbf"]);
    assert_eq!(sent["access_token"]["xms_cc"]["values"][0], "cp1");
    office365::check(&config, &fresh.access_token, ALICE).await.unwrap();

    // A revoked grant answers with a challenge too; refusing the refresh is what ends it.
    revoke(&peers, ALICE).await;
    let challenged = office365::check(&config, &fresh.access_token, ALICE).await.unwrap_err();
    let claims = challenged.claims_challenge().expect("a claims challenge").to_owned();
    let refused = office365::refresh_for(
        &config,
        fresh.refresh_token.as_ref().unwrap_or(&refresh_token),
        scopes,
        Some(&claims),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.failure().state, LinkState::NeedsReauth, "{refused}");
}

#[tokio::test]
async fn the_provider_going_down_is_transient() {
    let mut peers = peers(&[]).await;
    let config = config(&peers, "");
    peers.oidc.kill();
    let error = office365::refresh(&config, &Sensitive::new("any")).await.unwrap_err();
    let failure = error.failure();
    assert_eq!(failure.state, LinkState::Degraded, "{error}");
    assert!(error.is_transient());
    assert!(error.wire_error().hint.unwrap().contains("try again"));
    // The error names the server, never the request body.
    assert!(!failure.reason.contains("any"), "{}", failure.reason);
}

async fn graph_mode(peers: &Peers, mode: serde_json::Value) {
    let answer = reqwest::Client::new()
        .post(format!("{}/test/mode", peers.graph.url))
        .json(&mode)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
}

#[tokio::test]
async fn graph_failures_land_in_the_right_state() {
    let peers = peers(&[]).await;
    let config = config(&peers, "");
    let token = Sensitive::new("not-checked-in-these-modes");

    graph_mode(&peers, serde_json::json!({"mode": "throttle", "retryAfter": "2.5", "count": 1}))
        .await;
    let throttled = office365::check(&config, &token, ALICE).await.unwrap_err().failure();
    assert_eq!(throttled.state, LinkState::Degraded);
    assert_eq!(throttled.retry_after, Some(Duration::from_millis(2500)));

    graph_mode(&peers, serde_json::json!({"mode": "error503", "retryAfter": "7", "count": 1}))
        .await;
    let unavailable = office365::check(&config, &token, ALICE).await.unwrap_err().failure();
    assert_eq!(
        (unavailable.state, unavailable.retry_after),
        (LinkState::Degraded, Some(Duration::from_secs(7)))
    );

    graph_mode(&peers, serde_json::json!({"mode": "down", "count": 1})).await;
    let down = office365::check(&config, &token, ALICE).await.unwrap_err();
    assert!(down.is_transient(), "{down:?}");

    graph_mode(&peers, serde_json::json!({"mode": "ok"})).await;
    let unauthenticated = office365::check(&config, &token, ALICE).await.unwrap_err();
    assert!(unauthenticated.is_token_rejected(), "{unauthenticated:?}");
}

#[tokio::test]
async fn a_mailbox_without_exchange_online_is_blocked_for_the_tenant_admin() {
    let peers = peers(&[ENTRA]).await;
    let config = config(&peers, "");
    let tokens = browser_sign_in(&config, ALICE, false).await.unwrap();
    graph_mode(&peers, serde_json::json!({"mode": "mailbox_not_enabled"})).await;
    let error = office365::check(&config, &tokens.access_token, ALICE).await.unwrap_err();
    let failure = error.failure();
    assert_eq!((failure.state, failure.actor), (LinkState::Blocked, Actor::TenantAdmin), "{error}");
    assert!(failure.reason.contains("MailboxNotEnabledForRESTAPI"));
    // A wrong guess (the mailbox is on-premises) says what to do instead.
    assert!(failure.reason.contains("--provider exchange"), "{}", failure.reason);
    let wire = error.wire_error();
    let hint = wire.hint.unwrap_or_default();
    assert!(hint.contains(&format!("mslinkctl connect {ALICE} --provider exchange")), "{hint}");
}

#[tokio::test]
async fn signing_in_with_an_account_without_a_mailbox_names_the_exchange_provider() {
    // A hybrid organisation: alice's mailbox at contoso.test is on-premises, and she signed in
    // with her cloud account, which has no mail attribute and no Exchange Online mailbox.
    let peers = peers(&[ENTRA]).await;
    let config = config(&peers, "");
    let tokens = browser_sign_in(&config, ALICE, false).await.unwrap();
    graph_mode(&peers, serde_json::json!({"mode": "no_mailbox"})).await;
    let onprem = "alice@onprem.contoso.test";
    let error = office365::check(&config, &tokens.access_token, onprem).await.unwrap_err();
    assert!(matches!(error, Office365Error::NoMailboxSignedIn { .. }), "{error:?}");
    let failure = error.failure();
    assert_eq!(failure.state, LinkState::NeedsReauth, "{error}");
    assert!(
        failure.reason.contains(ALICE)
            && failure.reason.contains(onprem)
            && failure.reason.contains("--provider exchange"),
        "{}",
        failure.reason
    );
    let wire = error.wire_error();
    assert_eq!(wire.kind, ErrorKind::AuthRejected);
    let hint = wire.hint.unwrap_or_default();
    assert!(hint.contains(&format!("mslinkctl connect {onprem} --provider exchange")), "{hint}");

    // The same account linked under its own name reaches the mailbox paths, which say it has
    // no Exchange Online mailbox.
    let own = office365::check(&config, &tokens.access_token, ALICE).await.unwrap_err();
    assert!(matches!(own, Office365Error::MailboxNotInExchangeOnline { .. }), "{own:?}");
}

#[tokio::test]
async fn a_confidential_client_sends_its_secret_from_a_file() {
    let peers = peers(&["--confidential-client-secret", "s3cret-value", ENTRA]).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client_secret");
    std::fs::write(&secret, "s3cret-value\n").unwrap();
    let mut config = config(&peers, &format!("client_secret_file = {:?}\n", secret));
    config.office365.client_id = Some("mslink-test-confidential".into());
    let tokens = browser_sign_in(&config, ALICE, false).await.unwrap();
    office365::refresh(&config, tokens.refresh_token.as_ref().unwrap()).await.unwrap();
    // A wrong secret is the operator's problem, not the user's.
    std::fs::write(&secret, "wrong").unwrap();
    let error =
        office365::refresh(&config, tokens.refresh_token.as_ref().unwrap()).await.unwrap_err();
    let failure = error.failure();
    assert_eq!((failure.state, failure.actor), (LinkState::Blocked, Actor::Operator), "{error}");
    assert!(!format!("{error} {error:?}").contains("wrong"));
}

#[tokio::test]
async fn a_missing_client_id_names_the_config_key() {
    let config = Config::parse(
        "socket = \"/nonexistent/s\"\nstate_dir = \"/nonexistent/d\"\n",
        None,
        &Env::default(),
    )
    .unwrap();
    let error = office365::refresh(&config, &Sensitive::new("x")).await.unwrap_err();
    assert!(matches!(error, Office365Error::NotConfigured));
    assert!(error.wire_error().hint.unwrap().contains("[office365] client_id"));
}
