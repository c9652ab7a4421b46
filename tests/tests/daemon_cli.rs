//! `mslinkd` itself: config errors at start, `--check-config`, and refusing a second daemon.

use std::process::Command;

use mslink_e2e::{Daemon, bin, ensure_accounts, require_root};

fn mslinkd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("mslinkd")).args(args).output().expect("run mslinkd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_config_error_at_start_names_the_key_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "admin_group = \"ops\"\n[schedule]\nretry_mni = \"1m\"\n")
        .expect("write");
    let path = config.to_str().expect("utf-8 path");
    for args in [&["--config", path][..], &["--config", path, "--check-config"]] {
        let (code, _, stderr) = mslinkd(args);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("retry_mni") && stderr.contains("line 3"), "{stderr}");
    }
}

#[test]
fn check_config_accepts_a_good_file_and_the_commented_example() {
    // Checked as installed (a root-owned copy), not where it lies in the checkout: a checkout
    // owned by a build user is rightly refused when the tests run as root.
    let dir = tempfile::tempdir().expect("tempdir");
    let example = dir.path().join("mslinkd.toml");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/mslinkd.toml"), &example)
        .expect("copy the example");
    let example = example.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = mslinkd(&["--config", example, "--check-config"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("is valid"), "{stdout}");
}

#[test]
fn check_config_warns_about_a_client_secret_other_users_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("mslinkd.toml");
    std::fs::write(&config, "[office365]\nclient_id = \"app\"\nclient_secret = \"s3cret\"\n")
        .expect("write");
    let path = config.to_str().expect("utf-8 path");
    let check = |mode| {
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode)).expect("chmod");
        mslinkd(&["--config", path, "--check-config"])
    };
    let (code, stdout, stderr) = check(0o644);
    assert_eq!(code, 0, "a readable secret is unsafe, not invalid: {stderr}");
    assert!(stdout.contains("is valid"), "{stdout}");
    assert!(
        stderr.contains("warning")
            && stderr.contains("client_secret_file")
            && !stderr.contains("s3cret"),
        "{stderr}"
    );
    let (code, _, stderr) = check(0o600);
    assert_eq!((code, stderr.as_str()), (0, ""));
}

#[test]
fn a_missing_named_config_is_an_error() {
    let (code, _, stderr) = mslinkd(&["--config", "/nonexistent/mslinkd.toml"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/mslinkd.toml"), "{stderr}");
}

#[test]
fn a_second_daemon_on_the_same_state_or_socket_is_refused() {
    if !require_root("a_second_daemon_on_the_same_state_or_socket_is_refused") {
        return;
    }
    ensure_accounts();
    let daemon = Daemon::start("");
    let config = daemon.config.to_str().expect("utf-8 path");
    let (code, _, stderr) = mslinkd(&["--config", config]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("another mslinkd"), "{stderr}");

    // Same socket, other state directory: the live socket is detected, not replaced.
    let other = daemon.dir.path().join("other.toml");
    std::fs::write(
        &other,
        format!(
            "socket = {:?}\nstate_dir = {:?}\n",
            daemon.socket,
            daemon.dir.path().join("state2")
        ),
    )
    .expect("write");
    let (code, _, stderr) = mslinkd(&["--config", other.to_str().expect("utf-8")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("already listening"), "{stderr}");
    daemon.ctl(mslink_e2e::ALICE, &["status"]).expect_code(0);
}
