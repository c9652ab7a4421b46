//! `mslinkctl` on its own: usage errors, an unreachable daemon, monitoring output. (Having an
//! integration test also makes `cargo test` build the binary the end-to-end tests run.)

use std::process::Command;

fn ctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mslinkctl")).args(args).output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unreachable_daemon_is_exit_3_naming_the_socket_and_the_fix() {
    let (code, _, stderr) = ctl(&["--socket", "/nonexistent/mslinkd.sock", "status"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("/nonexistent/mslinkd.sock"), "{stderr}");
    assert!(stderr.contains("systemctl start mslinkd"), "{stderr}");
}

#[test]
fn monitoring_sees_an_unreachable_daemon_as_critical() {
    let (code, stdout, _) = ctl(&["--socket", "/nonexistent/mslinkd.sock", "status", "--check"]);
    assert_eq!(code, 2);
    assert!(stdout.starts_with("MSLINK CRITICAL - mslinkd not answering"), "{stdout}");
}

#[test]
fn json_errors_are_one_versioned_document() {
    let (code, stdout, _) = ctl(&["--socket", "/nonexistent/mslinkd.sock", "--json", "requests"]);
    assert_eq!(code, 3);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(doc["format_version"], 1);
    assert!(doc["error"]["message"].as_str().unwrap_or("").contains("cannot reach mslinkd"));
    assert_eq!(doc["error"]["kind"], "unreachable", "the kind matches exit 3: {stdout}");
}

/// A daemon that accepts but never answers (wedged, or a socket nobody serves) is CRITICAL
/// within `--timeout`, not UNKNOWN after minutes.
#[test]
fn monitoring_sees_a_silent_daemon_as_critical_within_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let started = std::time::Instant::now();
    let path = socket.to_str().unwrap();
    let (code, stdout, _) = ctl(&["--socket", path, "status", "--check", "--timeout", "0.5"]);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.starts_with("MSLINK CRITICAL - mslinkd did not answer"), "{stdout}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn usage_errors_are_exit_2() {
    assert_eq!(ctl(&["connect"]).0, 2);
    assert_eq!(ctl(&["frobnicate"]).0, 2);
    assert_eq!(ctl(&["connect", "a@b.c", "--device-code", "--paste"]).0, 2);
}

/// A daemon on `socket` that plays `serve` on each connection, on its own thread.
fn fake_daemon(socket: &std::path::Path, serve: fn(std::os::unix::net::UnixStream)) {
    let listener = std::os::unix::net::UnixListener::bind(socket).expect("bind the socket");
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || serve(stream));
        }
    });
}

/// A daemon that answers, but a byte at a time, never letting one read time out, is CRITICAL
/// within `--timeout` all the same.
#[test]
fn monitoring_sees_a_trickling_daemon_as_critical_within_its_timeout() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("trickle.sock");
    fake_daemon(&socket, |mut stream| {
        let welcome = mslink_proto::DaemonFrame::Welcome {
            protocol_version: mslink_proto::PROTOCOL_VERSION,
            daemon_version: "mslinkd 0.1.0".into(),
        };
        let bytes = mslink_proto::encode(&welcome, mslink_proto::MAX_DAEMON_FRAME).unwrap();
        for byte in bytes.iter().cycle() {
            if stream.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    let started = std::time::Instant::now();
    let path = socket.to_str().unwrap();
    let (code, stdout, _) = ctl(&["--socket", path, "status", "--check", "--timeout", "1"]);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.starts_with("MSLINK CRITICAL - mslinkd did not answer"), "{stdout}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}

/// A daemon too busy to take the connection says so, and monitoring calls that CRITICAL.
#[test]
fn monitoring_sees_a_busy_daemon_as_critical() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("busy.sock");
    fake_daemon(&socket, |mut stream| {
        let busy = mslink_proto::DaemonFrame::Failure {
            error: mslink_proto::WireError::new(
                mslink_proto::ErrorKind::Busy,
                "too many connections; try again shortly",
            ),
        };
        let bytes = mslink_proto::encode(&busy, mslink_proto::MAX_DAEMON_FRAME).unwrap();
        let _ = stream.write_all(&bytes);
        let _ = std::io::Read::read(&mut stream, &mut [0; 1]);
    });
    let path = socket.to_str().unwrap();
    let (code, stdout, _) = ctl(&["--socket", path, "status", "--check", "--timeout", "5"]);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.starts_with("MSLINK CRITICAL - mslinkd is too busy"), "{stdout}");
}
