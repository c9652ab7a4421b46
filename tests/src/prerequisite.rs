//! What a test does when something it needs is missing: root (to create Unix users), a real peer
//! (Chromium, Node and its packages, dnsmasq, MIT Kerberos, PostgreSQL, pyspnego, python-gssapi,
//! openssl, curl, systemd's tools) or a reference parser (prometheus_client).
//!
//! It fails, naming the step that installs it, so a machine without the peers can never report
//! a green suite that did not run. `MSLINK_TESTS_ALLOW_SKIP=1` is the one explicit way to run
//! the suite without them: each such test then prints a `SKIPPED` line and returns early (it
//! still counts as passed, which is why it takes an explicit opt-in).
//!
//! One rule for the whole workspace: every suite reaches it as `mslink_e2e::prerequisite`.

/// The environment variable that lets tests whose prerequisites are missing pass without
/// running. Only the value `1` counts.
pub const ALLOW_SKIP: &str = "MSLINK_TESTS_ALLOW_SKIP";

/// The command that installs every peer the suite needs on a fresh Debian machine.
pub const SETUP: &str = "bash .ci/setup";

/// Reports that `test` cannot run because `missing`; `fix` says what to do, as an imperative
/// ("run `bash .ci/setup`").
///
/// Panics, failing the test, unless [`ALLOW_SKIP`] is `1`; then prints `SKIPPED` and returns
/// `false`, so callers write `if !prerequisite::missing(..) { return; }` only inside a branch
/// that found the prerequisite absent.
#[track_caller]
pub fn missing(test: &str, missing: &str, fix: &str) -> bool {
    if std::env::var_os(ALLOW_SKIP).is_some_and(|v| v == "1") {
        eprintln!(
            "SKIPPED {test}: {missing}; {fix} to run it. It passes only because {ALLOW_SKIP}=1."
        );
        false
    } else {
        panic!(
            "{test} cannot run: {missing}; {fix}. (To skip such tests knowingly, set \
             {ALLOW_SKIP}=1.)"
        )
    }
}

/// True when `program` is on `PATH`; otherwise [`missing`] (fails, or `false` when skips are
/// allowed).
#[track_caller]
pub fn require_program(program: &str, test: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    found || missing(test, &format!("`{program}` is not installed"), &format!("run `{SETUP}`"))
}

/// True when `python3` can import `module`; otherwise [`missing`].
#[track_caller]
pub fn require_python_module(module: &str, test: &str) -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    found
        || missing(
            test,
            &format!("python3 cannot import `{module}`"),
            &format!("run `{SETUP}` (it pip-installs tests/requirements.txt)"),
        )
}
