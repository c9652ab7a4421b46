//! Operations, end to end with real tools: the systemd units (`systemd-analyze verify` and
//! `security`), socket activation (`systemd-socket-activate`), sd_notify on a NOTIFY_SOCKET,
//! reload, the metrics endpoint (parsed by the `prometheus_client` Python parser) and the
//! state-change hook.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mslink_e2e::{
    ADMIN, ADMIN_GROUP, ALICE, Daemon, bin, ctl_at, ensure_accounts, prerequisite, require_root,
    require_tool, wait_for_log, wait_until,
};
use nix::sys::signal::Signal;
use serde_json::Value;

const UNITS: [&str; 4] =
    ["mslinkd.service", "mslinkd.socket", "mslinkd@.service", "mslinkd@.socket"];

/// The units with `/usr/bin/` pointed at the binaries this test run built (verify needs them).
fn installed_units() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let built = bin("mslinkd").parent().expect("target dir").display().to_string();
    for unit in UNITS {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd").join(unit);
        let text = std::fs::read_to_string(&source).expect("read unit");
        std::fs::write(dir.path().join(unit), text.replace("/usr/bin/", &format!("{built}/")))
            .expect("write unit");
    }
    dir
}

#[test]
fn every_unit_passes_systemd_analyze_verify_without_a_warning() {
    if !require_tool("systemd-analyze", "every_unit_passes_systemd_analyze_verify") {
        return;
    }
    let dir = installed_units();
    for unit in ["mslinkd.service", "mslinkd.socket", "mslinkd@acme.service", "mslinkd@acme.socket"]
    {
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.path().join(unit))
            .output()
            .expect("run systemd-analyze");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && said.trim().is_empty(), "{unit}:\n{said}");
    }
}

#[test]
fn the_services_exposure_is_ok_or_better() {
    if !require_tool("systemd-analyze", "the_services_exposure_is_ok_or_better") {
        return;
    }
    let dir = installed_units();
    for unit in ["mslinkd.service", "mslinkd@acme.service"] {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(dir.path().join(unit))
            .output()
            .expect("run systemd-analyze");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("no exposure level for {unit}:\n{text}"));
        println!("{line}");
        let level = line.rsplit(':').next().unwrap_or_default();
        assert!(level.contains(" OK") || level.contains(" SAFE"), "{unit}: {line}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let config = dir.join("mslinkd.toml");
    std::fs::write(
        &config,
        format!(
            "socket = {:?}\nstate_dir = {:?}\nadmin_group = {ADMIN_GROUP:?}\n{extra}",
            dir.join("run/configured.sock"),
            dir.join("state")
        ),
    )
    .expect("write config");
    config
}

fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::create_dir(dir.path().join("run")).expect("mkdir");
    std::fs::set_permissions(dir.path().join("run"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    dir
}

#[test]
fn the_daemon_serves_the_socket_systemd_socket_activate_passes() {
    let test = "the_daemon_serves_the_socket_systemd_socket_activate_passes";
    if !require_root(test) || !require_tool("systemd-socket-activate", test) {
        return;
    }
    ensure_accounts();
    let dir = private_dir();
    let config = write_config(dir.path(), "");
    let socket = dir.path().join("run/activated.sock");
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&socket)
        .args(["-E", "MSLINK_LOG=info", "-E", "PATH"])
        .arg(bin("mslinkd"))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn systemd-socket-activate");
    assert!(wait_until(Duration::from_secs(10), || socket.exists()), "no socket");
    // systemd would apply SocketMode=; this tool leaves it to the umask.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");

    // The first connection starts the daemon, which must serve it on the passed socket.
    let status = ctl_at(&socket, ALICE, &["--json", "status"]);
    status.expect_code(0);
    assert_eq!(status.json()["user"], ALICE);
    let stderr = child.stderr.take().expect("stderr");
    wait_for_log(stderr, "mslinkd ready", Duration::from_secs(10)).expect("ready log");
    assert!(!dir.path().join("run/configured.sock").exists(), "mslinkd bound its own socket");

    // systemd-socket-activate exec()s the daemon: same pid. The socket is systemd's to remove.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM)
        .expect("SIGTERM");
    assert!(child.wait().expect("wait").success());
    assert!(socket.exists(), "mslinkd deleted a socket it did not create");
}

/// Receives notification datagrams until one satisfies `want` (or `limit` passes).
fn receive_until(
    notify: &UnixDatagram,
    limit: Duration,
    seen: &mut Vec<String>,
    want: impl Fn(&str) -> bool,
) -> Option<String> {
    let start = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        if let Ok(n) = notify.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(message.clone());
            if want(&message) {
                return Some(message);
            }
        }
    }
    None
}

#[test]
fn systemd_hears_ready_status_watchdog_and_stopping() {
    if !require_root("systemd_hears_ready_status_watchdog_and_stopping") {
        return;
    }
    ensure_accounts();
    let dir = private_dir();
    let config = write_config(dir.path(), "socket_group = \"mslt-users\"\n");
    let socket = dir.path().join("run/configured.sock");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind NOTIFY_SOCKET");
    notify.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let mut child = Command::new(bin("mslinkd"))
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mslinkd");
    let mut seen = Vec::new();

    let ready = receive_until(&notify, Duration::from_secs(30), &mut seen, |m| {
        m.lines().any(|l| l == "READY=1")
    })
    .unwrap_or_else(|| panic!("no READY=1; got {seen:?}"));
    // READY=1 promises a usable socket: use it at once.
    ctl_at(&socket, ALICE, &["status"]).expect_code(0);
    assert!(ready.contains("STATUS=0 links (Microsoft integration disabled)"), "{ready}");

    receive_until(&notify, Duration::from_secs(5), &mut seen, |m| m == "WATCHDOG=1\n")
        .unwrap_or_else(|| panic!("no WATCHDOG=1 with WATCHDOG_USEC set; got {seen:?}"));

    ctl_at(&socket, ADMIN, &["enable"]).expect_code(0);
    receive_until(&notify, Duration::from_secs(5), &mut seen, |m| m == "STATUS=0 links\n")
        .unwrap_or_else(|| panic!("STATUS= did not follow the toggle; got {seen:?}"));

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM)
        .expect("SIGTERM");
    receive_until(&notify, Duration::from_secs(10), &mut seen, |m| {
        m.lines().any(|l| l == "STOPPING=1")
    })
    .unwrap_or_else(|| panic!("no STOPPING=1; got {seen:?}"));
    assert!(child.wait().expect("wait").success());
    assert!(!socket.exists(), "mslinkd left the socket it bound");
}

/// The `MSLINK_*` (and other) variables a hook run saw, from `env` output.
fn hook_env(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).expect("read hook output");
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn wait_for_file(path: &Path) {
    assert!(
        wait_until(Duration::from_secs(10), || path.exists()),
        "{} was not written (the hook did not run)",
        path.display()
    );
}

#[test]
fn the_hook_pages_on_requests_and_toggles_and_follows_reloads() {
    if !require_root("the_hook_pages_on_requests_and_toggles_and_follows_reloads") {
        return;
    }
    ensure_accounts();
    let out = tempfile::tempdir().expect("tempdir");
    let o = out.path().display().to_string();
    // Atomic rename, so the test never reads a half-written file.
    let hook = |prefix: &str| {
        format!(
            "[hooks]\non_state_change = 'env > {o}/tmp-$MSLINK_SEQ && mv {o}/tmp-$MSLINK_SEQ {o}/{prefix}-$MSLINK_SEQ'\n"
        )
    };
    let mut daemon = Daemon::start(&hook("first"));
    let base = std::fs::read_to_string(&daemon.config).expect("config");
    let base = base.split("[hooks]").next().expect("base").to_owned();

    daemon.ctl(ALICE, &["request", "--message", "for the CRM; `false` $(false)"]).expect_code(0);
    let request = out.path().join("first-1");
    wait_for_file(&request);
    let env = hook_env(&request);
    assert_eq!(env["MSLINK_EVENT"], "requested");
    assert_eq!(env["MSLINK_USER"], ALICE);
    assert_eq!(env["MSLINK_MESSAGE"], "for the CRM; `false` $(false)");
    assert_eq!(env["MSLINK_EMAIL"], "");
    let unexpected: Vec<&String> = env
        .keys()
        .filter(|k| {
            !k.starts_with("MSLINK_") && !["PATH", "PWD", "SHLVL", "_"].contains(&k.as_str())
        })
        .collect();
    assert!(unexpected.is_empty(), "the hook saw more than PATH and MSLINK_*: {unexpected:?}");

    daemon.ctl(ADMIN, &["enable"]).expect_code(0);
    let enabled = out.path().join("first-2");
    wait_for_file(&enabled);
    let env = hook_env(&enabled);
    assert_eq!(env["MSLINK_EVENT"], "integration");
    assert_eq!(env["MSLINK_STATE"], "enabled");
    assert_eq!(env["MSLINK_USER"], ADMIN);

    // A good reload through the ctl changes the command.
    std::fs::write(&daemon.config, format!("{base}{}", hook("second"))).expect("write");
    daemon.ctl(ADMIN, &["reload"]).expect_code(0);
    daemon.ctl(ADMIN, &["disable"]).expect_code(0);
    wait_for_file(&out.path().join("second-3"));

    // A bad one is refused, through the ctl and through SIGHUP, and the running config stays.
    std::fs::write(&daemon.config, format!("{base}{}bogus_key = 1\n", hook("third")))
        .expect("write");
    let refused = daemon.ctl(ADMIN, &["reload"]);
    refused.expect_code(1);
    assert!(refused.stderr.contains("bogus_key"), "{}", refused.stderr);
    daemon.signal(Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert!(daemon.is_running(), "a bad config on SIGHUP stopped the daemon");
    daemon.ctl(ADMIN, &["enable"]).expect_code(0);
    wait_for_file(&out.path().join("second-4"));

    // A good SIGHUP applies.
    std::fs::write(&daemon.config, format!("{base}{}", hook("fourth"))).expect("write");
    daemon.signal(Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    daemon.ctl(ADMIN, &["disable"]).expect_code(0);
    wait_for_file(&out.path().join("fourth-5"));
    assert!(!out.path().join("third-4").exists() && !out.path().join("third-5").exists());
    daemon.stop();
}

fn python_with_prometheus_client(test: &str) -> bool {
    require_tool("python3", test) && prerequisite::require_python_module("prometheus_client", test)
}

fn sample(families: &Value, family: &str, labels: &[(&str, &str)]) -> f64 {
    let samples = families[family]["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("no family {family} in {families}"));
    samples
        .iter()
        .find(|s| labels.iter().all(|(k, v)| s[1][k] == *v))
        .and_then(|s| s[2].as_f64())
        .unwrap_or_else(|| panic!("no {family} sample with {labels:?}: {samples:?}"))
}

#[test]
fn prometheus_client_parses_the_metrics_endpoint() {
    let test = "prometheus_client_parses_the_metrics_endpoint";
    if !require_root(test) || !python_with_prometheus_client(test) {
        return;
    }
    ensure_accounts();
    let port = free_port();
    // With the per-link series, which are off by default (they carry addresses).
    let daemon =
        Daemon::start(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\nper_link = true\n"));
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    daemon.ctl(ALICE, &["request"]).expect_code(0);
    daemon.ctl(ADMIN, &["enable"]).expect_code(0);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/parse_metrics.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .expect("run python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let parsed: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        parsed["content_type"]
            .as_str()
            .unwrap_or_default()
            .starts_with("text/plain; version=0.0.4"),
        "{parsed}"
    );
    let families = &parsed["families"];
    assert_eq!(families["mslink_links"]["type"], "gauge");
    for state in ["active", "degraded", "needs_reauth", "blocked", "suspended"] {
        assert_eq!(sample(families, "mslink_links", &[("state", state)]), 0.0);
    }
    assert_eq!(sample(families, "mslink_integration_enabled", &[]), 1.0);
    assert_eq!(families["mslink_requests"]["type"], "counter");
    assert_eq!(sample(families, "mslink_requests", &[]), 1.0);
    assert_eq!(families["mslink_checks"]["type"], "counter");
    assert_eq!(
        sample(families, "mslink_checks", &[("provider", "office365"), ("result", "ok")]),
        0.0
    );
    assert_eq!(families["mslink_refreshes"]["type"], "counter");
    assert_eq!(families["mslink_check_duration_seconds"]["type"], "histogram");
    assert_eq!(families["mslink_link_last_success_timestamp_seconds"]["type"], "gauge");
}
