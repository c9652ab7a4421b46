//! On-premises Exchange links through the real binaries, against the EWS fake (real TLS with a
//! throwaway CA, a real NTLM acceptor), reached by name through `[network] resolve`; last, the
//! fake as an attacker's own server, whose texts must not forge what an admin or a hook sees.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mslink_e2e::ews::{Ews, Pki};
use mslink_e2e::loopback::fresh_ip;
use mslink_e2e::{ADMIN, ALICE, Daemon, ensure_accounts, require_root, wait_until};
use serde_json::{Value, json};

const PASSWORD: &str = "Winter-2026!";

/// A CA and a server certificate for the contoso.test names, and alice as the fake's user.
fn pki() -> Pki {
    let names =
        ["mail.contoso.test", "autodiscover.contoso.test", "contoso.test", "mail.fabrikam.test"];
    Pki::new(
        &names,
        &json!({"alice@contoso.test": {"username": "CONTOSO\\alice", "upn": "alice@contoso.test",
                "password": PASSWORD, "inbox_total": 12, "inbox_unread": 3}}),
    )
}

struct Exchange {
    server: Ews,
    daemon: Daemon,
    ews_url: String,
    /// The CA the daemon reads; removed after the daemon stops.
    _pki: Pki,
}

/// The EWS fake offering `auth`, and a daemon trusting its CA (or not).
fn exchange(auth: &str, trust_ca: bool) -> Exchange {
    exchange_with(auth, trust_ca, "")
}

/// [`exchange`], with `top` prepended to the daemon's config (top-level keys).
fn exchange_with(auth: &str, trust_ca: bool, top: &str) -> Exchange {
    let pki = pki();
    let server = Ews::start(&pki, 0, &["--auth", auth]);
    let (ip, port) = (server.ip, server.https_port);
    let ca = if trust_ca { format!("ca_file = {:?}\n", pki.ca()) } else { String::new() };
    let daemon = Daemon::start(&format!(
        "{top}[network]\n{ca}[network.resolve]\n\"mail.contoso.test\" = \"{ip}\"\n\
         [schedule]\nretry_min = \"1s\"\nretry_max = \"2s\"\n"
    ));
    daemon.ctl(ADMIN, &["enable"]).expect_code(0);
    Exchange {
        server,
        daemon,
        ews_url: format!("https://mail.contoso.test:{port}/EWS/Exchange.asmx"),
        _pki: pki,
    }
}

fn connect(world: &Exchange, password: &str) -> mslink_e2e::CtlOutput {
    let mut ctl = world.daemon.spawn_ctl(
        ALICE,
        &[
            "connect",
            "alice@contoso.test",
            "--provider",
            "exchange",
            "--server",
            &world.ews_url,
            "--password-stdin",
        ],
    );
    ctl.type_line(password);
    ctl.finish()
}

fn link(world: &Exchange) -> Value {
    world.daemon.ctl(ALICE, &["--json", "status"]).expect_code(0).json()["links"][0].clone()
}

fn server_log(world: &Exchange) -> Vec<Value> {
    let out = Command::new("curl")
        .args(["-sS", "-k"])
        .arg(format!("{}/test/log", world.server.peer().url))
        .output()
        .expect("curl");
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("log JSON")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_user_links_an_exchange_mailbox_with_ntlm_and_keeps_it_through_a_password_change() {
    if !require_root(
        "a_user_links_an_exchange_mailbox_with_ntlm_and_keeps_it_through_a_password_change",
    ) {
        return;
    }
    ensure_accounts();
    let world = exchange("ntlm", true);

    // A wrong password: exit 7, nothing stored.
    let wrong = connect(&world, "not-the-password");
    wrong.expect_code(7);
    assert!(link(&world).is_null(), "a failed connect stores nothing");

    let linked = connect(&world, PASSWORD);
    linked.expect_code(0);
    let now = link(&world);
    assert_eq!(now["state"], "active", "{now}");
    assert_eq!(now["provider"], "exchange");
    assert_eq!(now["auth_scheme"], "ntlm");
    assert_eq!(now["inbox_total"], 12);
    assert_eq!(now["inbox_unread"], 3);
    assert_eq!(now["calendar_ok"], true);
    assert!(now["server_version"].as_str().unwrap_or("").starts_with("15."), "{now}");
    let text = world.daemon.ctl(ALICE, &["status"]).expect_code(0).stdout.clone();
    assert!(text.contains("inbox: 12 items, 3 unread") && text.contains("auth: ntlm"), "{text}");

    // The password changes on the server: the next check says needs_reauth.
    world.server.control(
        "/test/password",
        &json!({"user": "alice@contoso.test", "password": "Spring-2027!"}),
    );
    world.daemon.ctl(ALICE, &["check", "alice@contoso.test"]).expect_code(7);
    assert_eq!(link(&world)["state"], "needs_reauth");
    // Connecting again with the new password updates the stored one.
    connect(&world, "Spring-2027!").expect_code(0);
    assert_eq!(link(&world)["state"], "active");
    world.daemon.ctl(ALICE, &["check", "alice@contoso.test"]).expect_code(0);

    // A busy server: degraded, then active again by itself once it recovers.
    world.server.control("/test/mode", &json!({"mode": "busy", "back_off_ms": 1000}));
    world.daemon.ctl(ALICE, &["check", "alice@contoso.test"]).expect_code(1);
    let busy = link(&world);
    assert_eq!(busy["state"], "degraded");
    assert!(busy["reason"].as_str().unwrap_or("").contains("ErrorServerBusy"), "{busy}");
    world.server.control("/test/mode", &json!({"mode": "ok"}));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while link(&world)["state"] != "active" {
        assert!(std::time::Instant::now() < deadline, "the link did not recover by itself");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn basic_only_servers_work_over_https() {
    if !require_root("basic_only_servers_work_over_https") {
        return;
    }
    ensure_accounts();
    let world = exchange("basic", true);
    connect(&world, PASSWORD).expect_code(0);
    assert_eq!(link(&world)["auth_scheme"], "basic");
}

#[test]
fn an_untrusted_certificate_is_refused_before_any_password_is_sent() {
    if !require_root("an_untrusted_certificate_is_refused_before_any_password_is_sent") {
        return;
    }
    ensure_accounts();
    let world = exchange("ntlm,basic", false);
    let refused = connect(&world, PASSWORD);
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("mail.contoso.test") && refused.stderr.contains("ca_file"),
        "{}",
        refused.stderr
    );
    let log = server_log(&world);
    assert!(
        log.iter().all(|entry| entry["credentials_sent"] != true),
        "no credentials may reach an untrusted server: {log:?}"
    );
}

/// `disable` suspends links and `enable` brings each back exactly as it was (a link that needed
/// its user still says so, with the same reason); while disabled, nothing can be checked or
/// linked. `check --all` re-checks many links with progress and a summary.
#[test]
fn disable_and_enable_keep_each_links_truth_and_check_all_rechecks() {
    if !require_root("disable_and_enable_keep_each_links_truth_and_check_all_rechecks") {
        return;
    }
    ensure_accounts();
    let world = exchange("ntlm", true);
    connect(&world, PASSWORD).expect_code(0);
    world.server.control(
        "/test/password",
        &json!({"user": "alice@contoso.test", "password": "Spring-2027!"}),
    );
    world.daemon.ctl(ALICE, &["check", "alice@contoso.test"]).expect_code(7);
    let before = link(&world);
    assert_eq!(before["state"], "needs_reauth", "{before}");
    // How the provider was settled is kept with the link and shown on request.
    assert_eq!(before["evidence"][0]["probe"], "provider_flag", "{before}");
    let verbose = world.daemon.ctl(ALICE, &["status", "--verbose"]);
    assert!(verbose.expect_code(0).stdout.contains("provider settled by:"), "{}", verbose.stdout);
    assert!(verbose.stdout.contains("--provider exchange given at connect"), "{}", verbose.stdout);

    world.daemon.ctl(ADMIN, &["disable"]).expect_code(0);
    assert_eq!(link(&world)["state"], "suspended");
    for refused in [
        world.daemon.ctl(ALICE, &["check", "alice@contoso.test"]),
        world.daemon.ctl(ADMIN, &["check", "--all"]),
    ] {
        refused.expect_code(6);
        assert!(refused.stderr.contains("mslinkctl request"), "{}", refused.stderr);
    }

    world.daemon.ctl(ADMIN, &["enable"]).expect_code(0);
    let after = link(&world);
    assert_eq!(after["state"], "needs_reauth", "enable restores the state: {after}");
    assert_eq!(after["reason"], before["reason"], "and the reason that says who must act");
    assert_eq!(after["since"], before["since"]);

    world.daemon.ctl(ALICE, &["check", "--all"]).expect_code(4);
    let all = world.daemon.ctl(ADMIN, &["check", "--all"]);
    all.expect_code(1);
    assert!(all.stdout.contains("Checked 1 link(s): 0 ok, 1 failed."), "{}", all.stdout);
    assert!(all.stdout.contains("alice@contoso.test"), "{}", all.stdout);
    assert!(all.stderr.contains("checked 1/1"), "progress: {}", all.stderr);

    // The password is back: re-checking the links that needed their user heals them.
    world
        .server
        .control("/test/password", &json!({"user": "alice@contoso.test", "password": PASSWORD}));
    let healed = world.daemon.ctl(ADMIN, &["--json", "check", "--all", "--state", "needs_reauth"]);
    let summary = healed.expect_code(0).json();
    assert_eq!(
        (summary["checked"].as_u64(), summary["ok"].as_u64()),
        (Some(1), Some(1)),
        "{summary}"
    );
    assert_eq!(link(&world)["state"], "active");
    let none = world.daemon.ctl(ADMIN, &["check", "--all", "--state", "blocked"]);
    assert!(none.expect_code(0).stdout.contains("Checked 0 link(s)"), "{}", none.stdout);
}

/// One user cannot link more than `max_links_per_user` mailboxes; re-linking one they have, and
/// an admin acting for them, is not held back.
#[test]
fn a_user_cannot_link_more_than_the_per_user_cap() {
    if !require_root("a_user_cannot_link_more_than_the_per_user_cap") {
        return;
    }
    ensure_accounts();
    let world = exchange_with("ntlm", true, "max_links_per_user = 1\n");
    connect(&world, PASSWORD).expect_code(0);
    let connect_other = |user: &str, extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend([
            "connect",
            "carol@contoso.test",
            "--provider",
            "exchange",
            "--server",
            &world.ews_url,
            "--password-stdin",
        ]);
        let mut ctl = world.daemon.spawn_ctl(user, &args);
        ctl.type_line(PASSWORD);
        ctl.finish()
    };
    let refused = connect_other(ALICE, &[]);
    refused.expect_code(6);
    assert!(refused.stderr.contains("already has 1 links"), "{}", refused.stderr);
    assert!(refused.stderr.contains("max_links_per_user"), "{}", refused.stderr);
    assert!(
        server_log(&world).iter().all(|entry| !entry.to_string().contains("carol")),
        "refused before anything was sent to the server"
    );
    // Re-linking the one she has is fine.
    connect(&world, PASSWORD).expect_code(0);
    // An admin acting for her passes the cap (and the server then refuses carol's login).
    connect_other(ADMIN, &["--user", ALICE]).expect_code(7);
}

/// A forged plain-HTTP Autodiscover answer for contoso.test sends the connect to
/// mail.fabrikam.test (a valid certificate, outside the domain): mslinkctl without a terminal
/// stops with exit 6 and the command to run, nothing reaches that host; with `--trust-server`
/// it links there.
#[test]
fn a_host_outside_the_domain_reached_by_the_http_redirect_needs_trust_server() {
    if !require_root("a_host_outside_the_domain_reached_by_the_http_redirect_needs_trust_server") {
        return;
    }
    ensure_accounts();
    let pki = pki();
    let server = Ews::start(
        &pki,
        0,
        &[
            "--http-port",
            "80",
            "--auth",
            "basic",
            "--ews-url",
            "https://mail.fabrikam.test:{port}/EWS/Exchange.asmx",
            "--http-redirect-location",
            "https://mail.fabrikam.test:{port}/autodiscover/autodiscover.xml",
        ],
    );
    // Its own loopback address, for port 80; contoso.test has nothing listening.
    let (evil_ip, nobody) = (server.ip, fresh_ip(443));
    // No SRV record anywhere: nothing answers DNS on the discard port.
    let daemon = Daemon::start(&format!(
        "[network]\nca_file = {:?}\nnameservers = [\"127.0.0.1:9\"]\n[network.resolve]\n\
         \"contoso.test\" = \"{nobody}\"\n\"autodiscover.contoso.test\" = \"{evil_ip}\"\n\
         \"mail.fabrikam.test\" = \"{evil_ip}\"\n",
        pki.ca()
    ));
    daemon.ctl(ADMIN, &["enable"]).expect_code(0);
    let connect = |extra: &[&str]| {
        let mut args =
            vec!["connect", "alice@contoso.test", "--provider", "exchange", "--password-stdin"];
        args.extend_from_slice(extra);
        let mut ctl = daemon.spawn_ctl(ALICE, &args);
        ctl.type_line(PASSWORD);
        ctl.finish()
    };
    let log = || {
        let out = Command::new("curl")
            .args(["-sS", "-k"])
            .arg(format!("{}/test/log", server.peer().url))
            .output()
            .expect("curl");
        serde_json::from_slice::<Value>(&out.stdout).expect("log JSON")
    };

    let refused = connect(&[]);
    refused.expect_code(6);
    for part in [
        "mail.fabrikam.test",
        "contoso.test",
        "plain-HTTP redirect",
        "mslinkctl connect alice@contoso.test --trust-server mail.fabrikam.test",
        "--server",
    ] {
        assert!(refused.stderr.contains(part), "{part}: {}", refused.stderr);
    }
    let seen = log();
    let entries = seen.as_array().expect("log array");
    assert!(
        entries.iter().all(|e| e["listener"] == "http" && e["auth_scheme"].is_null()),
        "only the unauthenticated redirect was fetched: {seen:#}"
    );
    let status = daemon.ctl(ALICE, &["--json", "status"]).expect_code(0).json();
    assert_eq!(status["links"], Value::Array(Vec::new()), "nothing stored: {status}");

    connect(&["--trust-server", "mail.fabrikam.test"]).expect_code(0);
    let linked = daemon.ctl(ALICE, &["--json", "status"]).expect_code(0).json()["links"][0].clone();
    assert!(
        linked["endpoint"].as_str().unwrap_or("").starts_with("https://mail.fabrikam.test:"),
        "{linked}"
    );
}

/// The uid of a Unix account, from `id -u`.
fn uid_of(name: &str) -> u32 {
    let out = Command::new("id").args(["-u", name]).output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a uid")
}

/// (Re)creates the system account `name` in the socket group, with `uid` if given.
fn create_account(name: &str, uid: Option<u32>) {
    let _ = Command::new("userdel").arg(name).output();
    let mut useradd = Command::new("useradd");
    useradd.args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]);
    useradd.args(["--groups", mslink_e2e::SOCKET_GROUP]);
    if let Some(uid) = uid {
        useradd.args(["--uid", &uid.to_string()]);
    }
    let out = useradd.arg(name).output().expect("useradd");
    assert!(out.status.success(), "useradd {name}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_account_created_again_under_the_same_name_does_not_inherit_the_old_ones_links() {
    const REBORN: &str = "mslt-reborn";
    if !require_root(
        "an_account_created_again_under_the_same_name_does_not_inherit_the_old_ones_links",
    ) {
        return;
    }
    ensure_accounts();
    create_account(REBORN, None);
    let world = exchange("ntlm", true);
    let connect_as = |user: &str| {
        let mut ctl = world.daemon.spawn_ctl(
            user,
            &["connect", "alice@contoso.test", "--provider", "exchange"]
                .into_iter()
                .chain(["--server", &world.ews_url, "--password-stdin"])
                .collect::<Vec<_>>(),
        );
        ctl.type_line(PASSWORD);
        ctl.finish()
    };
    connect_as(REBORN).expect_code(0);
    let links = |user: &str| {
        world.daemon.ctl(user, &["--json", "status"]).expect_code(0).json()["links"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(links(REBORN), 1);

    // The account is deleted and another created under its name, with another uid.
    let old = uid_of(REBORN);
    let new = (61_000..62_000)
        .find(|uid| {
            *uid != old
                && Command::new("getent")
                    .args(["passwd", &uid.to_string()])
                    .output()
                    .is_ok_and(|o| !o.status.success())
        })
        .expect("a free uid");
    create_account(REBORN, Some(new));
    assert_eq!(uid_of(REBORN), new);
    assert_eq!(links(REBORN), 0, "the new account sees none of the old one's links");
    world.daemon.ctl(REBORN, &["check", "alice@contoso.test"]).expect_code(5);
    world.daemon.ctl(REBORN, &["token", "alice@contoso.test"]).expect_code(5);
    world.daemon.ctl(REBORN, &["disconnect", "alice@contoso.test"]).expect_code(5);
    // Admins still see it, by name.
    let all = world.daemon.ctl(ADMIN, &["--json", "status", "--all"]).expect_code(0).json();
    assert!(all["links"].as_array().unwrap().iter().any(|l| l["user"] == REBORN), "{all}");
    // Signing the mailbox in again takes it over.
    connect_as(REBORN).expect_code(0);
    assert_eq!(links(REBORN), 1);
    let _ = Command::new("userdel").arg(REBORN).output();
}

// A hostile server: the user's own Exchange, run by an attacker, answers with text made to forge
// what an admin reads (escape sequences, new lines that look like mslinkctl's, U+202E) and far
// longer than anything stored, shown or passed to a hook may be (the fake's `hostile_*` modes).

/// A line the fake's hostile text tries to forge.
const FORGED_LINE: &str = "mslinkctl: alice@contoso.test active";
/// The code the fake's `hostile_error` answers with: transient, so the link goes degraded.
const HOSTILE_CODE: &str = "ErrorMailboxStoreUnavailable";
/// The longest outside text may be once it is in: a reason is cut at 1000 characters, then says
/// who must act.
const LONGEST_KEPT: usize = 1100;

/// Why `text` is not safe to show as (part of) one terminal line at most `longest` characters
/// long, if it is not.
fn unclean(text: &str, longest: usize) -> Option<String> {
    let bad: Vec<char> = text.chars().filter(|&c| c.is_control() || is_bidi(c)).take(3).collect();
    let chars = text.chars().count();
    if !bad.is_empty() {
        Some(format!("it holds {bad:?}: {text:.200}"))
    } else if chars > longest {
        Some(format!("it is {chars} characters long: {text:.200}"))
    } else {
        None
    }
}

/// Bidi embeddings, overrides, isolates and marks, and zero-width characters: invisible on a
/// terminal, able to reorder what is shown.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Asserts that every string in `value`, at any depth, is clean.
#[track_caller]
fn assert_clean_json(value: &Value, at: &str) {
    match value {
        Value::String(text) => {
            if let Some(why) = unclean(text, LONGEST_KEPT) {
                panic!("{at} is not clean: {why}");
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                assert_clean_json(item, &format!("{at}[{i}]"));
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                assert_clean_json(item, &format!("{at}.{key}"));
            }
        }
        _ => {}
    }
}

/// Asserts that each line mslinkctl printed is clean (room left for a label before the outside
/// text) and none is the forged one.
#[track_caller]
fn assert_clean_output(text: &str, what: &str) {
    for line in text.lines() {
        if let Some(why) = unclean(line, LONGEST_KEPT + 100) {
            panic!("{what}: a line is not clean: {why}");
        }
        assert_ne!(line.trim(), FORGED_LINE, "{what}: the server forged a line:\n{text:.2000}");
    }
}

/// A hook writing each run's environment to `dir/run-SEQ`, NUL-separated so a newline inside a
/// value shows, renamed into place so a half-written file is never read.
fn recording_hook(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "[hooks]\non_state_change = 'env -0 > {d}/tmp-$MSLINK_SEQ \
         && mv {d}/tmp-$MSLINK_SEQ {d}/run-$MSLINK_SEQ'\n"
    )
}

/// The environment of each hook run recorded in `dir` so far.
fn hook_runs(dir: &Path) -> Vec<BTreeMap<String, String>> {
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the hook's directory") {
        let path = entry.expect("directory entry").path();
        if !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("run-")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a hook run");
        let vars = text.split('\0').filter_map(|var| var.split_once('='));
        runs.push(vars.map(|(k, v)| (k.to_owned(), v.to_owned())).collect());
    }
    runs
}

/// `hostile_error`: GetFolder answers a real transient code with a 200 KB MessageText of escape
/// sequences, forged lines and U+202E. The link goes degraded as for any such code, the hook is
/// told (raw, the text would not fit in its environment: "Argument list too long"), and what the
/// hook, `check` and `status` show is one clean line of at most about 1000 characters.
#[test]
fn a_hostile_servers_error_text_reaches_the_hook_and_status_cleaned_and_cut() {
    if !require_root("a_hostile_servers_error_text_reaches_the_hook_and_status_cleaned_and_cut") {
        return;
    }
    ensure_accounts();
    let hooks = tempfile::tempdir().expect("tempdir");
    let world = exchange_with("ntlm", true, &recording_hook(hooks.path()));
    connect(&world, PASSWORD).expect_code(0);
    let check = || world.daemon.ctl(ALICE, &["check", "alice@contoso.test"]);
    let verbose =
        || world.daemon.ctl(ALICE, &["status", "--verbose"]).expect_code(0).stdout.clone();

    // One degraded link, as an honest server's error shows it.
    world.server.control("/test/mode", &json!({"mode": "busy", "back_off_ms": 1000}));
    check().expect_code(1);
    let honest = verbose();
    world.server.control("/test/mode", &json!({"mode": "ok"}));
    check().expect_code(0);

    world.server.control("/test/mode", &json!({"mode": "hostile_error"}));
    let failed = check();
    failed.expect_code(1);
    assert_clean_output(&failed.stderr, "check's error");
    let now = link(&world);
    assert_eq!(now["state"], "degraded", "a transient code, classified as ever");
    let reason = now["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(HOSTILE_CODE) && reason.contains(FORGED_LINE),
        "the reason is the server's text, defused: {reason:.300}"
    );
    assert_clean_json(&now, "status --json's link");
    let shown = verbose();
    assert_clean_output(&shown, "status --verbose");
    assert_eq!(
        shown.lines().count(),
        honest.lines().count(),
        "one link takes as many lines as with an honest error:\n{shown}\nhonest:\n{honest}"
    );

    // The hook ran for this change, every value clean.
    let hostile = |run: &BTreeMap<String, String>| {
        run.get("MSLINK_STATE").is_some_and(|s| s == "degraded")
            && run.get("MSLINK_REASON").is_some_and(|r| r.contains(HOSTILE_CODE))
    };
    assert!(
        wait_until(Duration::from_secs(10), || hook_runs(hooks.path()).iter().any(hostile)),
        "the hook did not run for the change to degraded; its runs: {:?}\ndaemon: {:?}",
        hook_runs(hooks.path()),
        world.daemon.log_lines("hook")
    );
    let run = hook_runs(hooks.path()).into_iter().find(hostile).expect("the run");
    for (name, value) in run.iter().filter(|(name, _)| name.starts_with("MSLINK_")) {
        if let Some(why) = unclean(value, LONGEST_KEPT) {
            panic!("the hook's {name} is not clean: {why}");
        }
    }
    assert_eq!(run["MSLINK_EMAIL"], "alice@contoso.test");
    assert_eq!(run["MSLINK_EVENT"], "link_state");

    // Nor did the raw text reach the daemon's log.
    let raw = |line: &&String| {
        line.len() > 4 * LONGEST_KEPT || line.contains('\u{1b}') || line.contains("\\u001b")
    };
    if let Some(line) = world.daemon.log_lines("").iter().find(raw) {
        panic!("the daemon logged the raw text: {line:.300}");
    }
}

/// `hostile_version`: ServerVersionInfo's Version attribute is about 900 KB of escape sequences,
/// forged lines and U+202E. The check succeeds, and the version stored and shown is the numbers
/// and a short, clean name.
#[test]
fn a_hostile_servers_version_string_is_stored_and_shown_short_and_clean() {
    if !require_root("a_hostile_servers_version_string_is_stored_and_shown_short_and_clean") {
        return;
    }
    ensure_accounts();
    let world = exchange("ntlm", true);
    connect(&world, PASSWORD).expect_code(0);
    let verbose =
        || world.daemon.ctl(ALICE, &["status", "--verbose"]).expect_code(0).stdout.clone();
    let honest = verbose();

    world.server.control("/test/mode", &json!({"mode": "hostile_version"}));
    world.daemon.ctl(ALICE, &["check", "alice@contoso.test"]).expect_code(0);
    let now = link(&world);
    assert_eq!(now["state"], "active", "a version is no reason to fail");
    let version = now["server_version"].as_str().unwrap_or_default();
    assert!(
        version.starts_with("15.2.1544.4 (") && version.contains("mslinkctl:"),
        "the numbers, then the server's name for its schema, defused: {version:.300}"
    );
    if let Some(why) = unclean(version, 100) {
        panic!("the stored version is not clean: {why}");
    }
    assert_clean_json(&now, "status --json's link");
    let shown = verbose();
    assert_clean_output(&shown, "status --verbose");
    assert_eq!(shown.lines().count(), honest.lines().count(), "{shown}\nhonest:\n{honest}");
    let server =
        shown.lines().find(|l| l.trim_start().starts_with("server:")).expect("server line");
    assert!(server.chars().count() < 300, "{server:.400}");

    // Linking anew against it: what connect says is clean too, and so is what it stored.
    let linked = connect(&world, PASSWORD);
    linked.expect_code(0);
    assert_clean_output(&linked.stdout, "connect's output");
    assert_clean_output(&linked.stderr, "connect's messages");
    assert_clean_json(&link(&world), "status --json's link after connect");
}
