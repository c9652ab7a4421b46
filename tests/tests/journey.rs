//! The request → requests → enable → status story (SPEC §1-§3), through the real binaries, as
//! three real Unix users, with the exit codes of SPEC §3.

use mslink_e2e::{ADMIN, ADMIN_GROUP, ALICE, BOB, Daemon, OUTSIDER, ensure_accounts, require_root};

#[test]
fn users_request_the_integration_and_an_admin_enables_it() {
    if !require_root("users_request_the_integration_and_an_admin_enables_it") {
        return;
    }
    ensure_accounts();
    let daemon = Daemon::start("");

    // Before anything: disabled, and connecting says how to ask for it.
    let status = daemon.ctl(ALICE, &["--json", "status"]).expect_code(0).json();
    assert_eq!(status["format_version"], 1);
    assert_eq!(status["user"], ALICE);
    assert_eq!(status["integration"]["enabled"], false);
    let refused = daemon.ctl(ALICE, &["connect", "alice@contoso.test", "--provider", "office365"]);
    refused.expect_code(6);
    assert!(refused.stderr.contains("mslinkctl request"), "{}", refused.stderr);

    // Users ask; repeating a request updates it.
    let asked = daemon.ctl(ALICE, &["request", "--message", "CRM needs my calendar"]);
    assert!(asked.expect_code(0).stdout.contains("Request recorded"), "{}", asked.stdout);
    let again = daemon.ctl(ALICE, &["request", "--message", "CRM needs my calendar, please"]);
    assert!(again.expect_code(0).stdout.contains("Request updated"), "{}", again.stdout);
    daemon.ctl(BOB, &["request"]).expect_code(0);

    // Users may not do admin things; the message names the admin group.
    for admin_only in
        [&["requests"][..], &["enable"], &["disable"], &["status", "--all"], &["reload"]]
    {
        let denied = daemon.ctl(ALICE, admin_only);
        denied.expect_code(4);
        assert!(denied.stderr.contains(ADMIN_GROUP), "{admin_only:?}: {}", denied.stderr);
    }
    daemon.ctl(ALICE, &["--user", BOB, "status"]).expect_code(4);
    // A user who is not in the socket group cannot even talk to the daemon.
    let outsider = daemon.ctl(OUTSIDER, &["status"]);
    outsider.expect_code(4);
    assert!(outsider.stderr.contains("socket_group"), "{}", outsider.stderr);

    // The admin sees both requests, oldest first, with the updated message.
    let requests = daemon.ctl(ADMIN, &["--json", "requests"]).expect_code(0).json();
    let requests = requests["requests"].as_array().expect("requests array").clone();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["user"], ALICE);
    assert_eq!(requests[0]["message"], "CRM needs my calendar, please");
    assert_eq!(requests[1]["user"], BOB);

    // Enabling grants both.
    let enabled = daemon.ctl(ADMIN, &["enable"]);
    assert!(
        enabled.expect_code(0).stdout.contains("granted 2 pending request(s)"),
        "{}",
        enabled.stdout
    );
    let already = daemon.ctl(ADMIN, &["enable"]);
    assert!(already.expect_code(0).stdout.contains("already enabled"), "{}", already.stdout);

    // Each user sees only their own request, now granted by the admin.
    let alice = daemon.ctl(ALICE, &["--json", "status"]).expect_code(0).json();
    assert_eq!(alice["integration"]["enabled"], true);
    assert_eq!(alice["integration"]["changed_by"], ADMIN);
    assert_eq!(alice["request"]["state"], "granted");
    assert_eq!(alice["request"]["granted_by"], ADMIN);
    assert_eq!(alice["admin"], false);
    assert!(alice["pending_requests"].is_null(), "users do not see others' requests");
    assert_eq!(alice["recent_admin_actions"].as_array().map(Vec::len), Some(0));
    let bob = daemon.ctl(BOB, &["status"]);
    bob.expect_code(0);
    assert!(bob.stdout.contains(&format!("User: {BOB}")), "{}", bob.stdout);
    assert!(!bob.stdout.contains(ALICE), "{}", bob.stdout);

    // A request once enabled just says how to connect.
    let late = daemon.ctl(BOB, &["request"]);
    assert!(late.expect_code(0).stdout.contains("mslinkctl connect"), "{}", late.stdout);

    // The admin's status shows the audit trail, and they can look at a user's view.
    let admin = daemon.ctl(ADMIN, &["--json", "status", "--all"]).expect_code(0).json();
    assert_eq!(admin["admin"], true);
    assert_eq!(admin["pending_requests"], 0);
    let actions = admin["recent_admin_actions"].as_array().expect("actions").clone();
    assert_eq!(actions[0]["actor"], ADMIN);
    assert_eq!(actions[0]["action"], "enable");
    assert!(actions[0]["detail"].as_str().unwrap_or("").contains("granted 2"));
    let as_bob = daemon.ctl(ADMIN, &["--json", "--user", BOB, "status"]).expect_code(0).json();
    assert_eq!(as_bob["user"], BOB);
    daemon.ctl(ADMIN, &["--user", "mslt-nobody-such", "status"]).expect_code(5);

    // Links: none yet, so disconnecting is "not found".
    daemon.ctl(ALICE, &["disconnect", "alice@contoso.test"]).expect_code(5);
    daemon.ctl(ALICE, &["connect", "not-an-address"]).expect_code(2);

    // Disabling closes the door again, and is audited.
    daemon.ctl(ADMIN, &["disable"]).expect_code(0);
    daemon.ctl(ALICE, &["connect", "alice@contoso.test", "--provider", "exchange"]).expect_code(6);
    let admin = daemon.ctl(ADMIN, &["--json", "status"]).expect_code(0).json();
    assert_eq!(admin["recent_admin_actions"][0]["action"], "disable");

    // Monitoring works for anyone who can reach the socket.
    let check = daemon.ctl(ADMIN, &["status", "--check"]);
    assert!(
        check.expect_code(0).stdout.starts_with("MSLINK OK - integration disabled"),
        "{}",
        check.stdout
    );
}

#[test]
fn state_survives_a_restart_and_a_kill_9() {
    if !require_root("state_survives_a_restart_and_a_kill_9") {
        return;
    }
    ensure_accounts();
    let mut daemon = Daemon::start("");
    daemon.ctl(ALICE, &["request", "-m", "before the restart"]).expect_code(0);
    daemon.stop();
    assert!(!daemon.socket.exists(), "a clean stop removes the socket");

    // Unreachable: exit 3 naming the socket, and CRITICAL for monitoring.
    let down = daemon.ctl(ALICE, &["status"]);
    down.expect_code(3);
    assert!(down.stderr.contains(&daemon.socket.display().to_string()), "{}", down.stderr);
    assert!(down.stderr.contains("systemctl start mslinkd"), "{}", down.stderr);
    let check = daemon.ctl(ALICE, &["status", "--check"]);
    check.expect_code(2);
    assert!(check.stdout.starts_with("MSLINK CRITICAL"), "{}", check.stdout);

    daemon.restart();
    daemon.ctl(BOB, &["request"]).expect_code(0);
    daemon.ctl(ADMIN, &["enable"]).expect_code(0);
    daemon.kill9();
    assert!(daemon.socket.exists(), "kill -9 leaves a stale socket behind");

    // The stale socket is replaced and nothing committed was lost.
    daemon.restart();
    let alice = daemon.ctl(ALICE, &["--json", "status"]).expect_code(0).json();
    assert_eq!(alice["integration"]["enabled"], true);
    assert_eq!(alice["request"]["message"], "before the restart");
    assert_eq!(alice["request"]["state"], "granted");
    let bob = daemon.ctl(BOB, &["--json", "status"]).expect_code(0).json();
    assert_eq!(bob["request"]["state"], "granted");
}

/// Opens `count` connections to `socket` as `user`, says hello on each and holds those the
/// daemon welcomed; prints `held N refused M` once done, then holds them until stdin closes.
const HOG: &str = r#"
import json, socket, struct, sys
path, count = sys.argv[1], int(sys.argv[2])
hello = json.dumps({"frame": "hello", "protocol_version": 1, "client": "hog"}).encode()
held, refused = [], 0
def frame(s):
    head = b""
    while len(head) < 4:
        more = s.recv(4 - len(head))
        if not more:
            return b""
        head += more
    body, want = b"", struct.unpack(">I", head)[0]
    while len(body) < want:
        body += s.recv(want - len(body))
    return body
for _ in range(count):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    try:
        # A refused connection is told so and closed at once: the hello may not get through.
        s.sendall(struct.pack(">I", len(hello)) + hello)
    except OSError:
        pass
    try:
        answer = frame(s)
    except OSError:
        answer = b""
    if b'"welcome"' in answer:
        held.append(s)
    else:
        refused += 1
        s.close()
print(f"held {len(held)} refused {refused}", flush=True)
sys.stdin.read()
"#;

#[test]
fn one_users_idle_connections_cannot_lock_the_others_out() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    if !require_root("one_users_idle_connections_cannot_lock_the_others_out") {
        return;
    }
    ensure_accounts();
    let daemon = Daemon::start("");
    let mut hog = Command::new("runuser")
        .args(["-u", ALICE, "--", "python3", "-c", HOG])
        .arg(&daemon.socket)
        .arg("300")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(hog.stdout.take().unwrap()).read_line(&mut line).expect("the hog's count");
    // Her share is 64 connections: the rest were refused, and everyone else is still served.
    assert_eq!(line.trim(), "held 64 refused 236");
    daemon.ctl(BOB, &["status"]).expect_code(0);
    daemon.ctl(ADMIN, &["requests"]).expect_code(0);
    let alice = daemon.ctl(ALICE, &["status"]);
    assert_ne!(alice.code, 0, "her own 65th connection is refused: {}", alice.stdout);
    assert!(alice.stderr.contains("64"), "the refusal says how many she holds: {}", alice.stderr);
    drop(hog.stdin.take());
    let _ = hog.wait();
    // Her connections closed: she is served again once the daemon has seen them go.
    assert!(
        mslink_e2e::wait_until(std::time::Duration::from_secs(10), || {
            daemon.ctl(ALICE, &["status"]).code == 0
        }),
        "her slots were not given back"
    );
}
