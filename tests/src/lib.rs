//! The workspace's one test-support crate, and the end-to-end harness: run the real `mslinkd`
//! and `mslinkctl` binaries as real Unix users.
//!
//! The peers every suite starts live here once: [`peers`] (the Node peers, Chromium),
//! [`ews`] (the EWS fake and its throwaway CA), [`dnsmasq`], [`kdc`] (a real MIT Kerberos KDC),
//! [`postgres`] (a throwaway PostgreSQL cluster),
//! [`loopback`] addresses and the
//! [`prerequisite`] rule. The daemon's in-process tests and benches and the bench's fault
//! tests use them as a dev-dependency; this crate depends on no workspace crate.
//!
//! The binaries are the ones `cargo test --workspace` builds next to this test (target/*/).
//! Tests that need root (to create users and switch to them with `runuser`) or a real peer fail
//! without it, naming the fix ([`prerequisite`]); CI runs the suite as root after `.ci/setup`.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// Test accounts: two users and an admin (member of [`ADMIN_GROUP`]); all in [`SOCKET_GROUP`].
pub const ALICE: &str = "mslt-alice";
pub const BOB: &str = "mslt-bob";
pub const ADMIN: &str = "mslt-admin";
pub const ADMIN_GROUP: &str = "mslt-admins";
pub const SOCKET_GROUP: &str = "mslt-users";
/// An account that exists but may not use the socket.
pub const OUTSIDER: &str = "mslt-outsider";

/// The path of a workspace binary built alongside this test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace` (it builds it)",
        path.display()
    );
    path
}

/// True when running as root. Otherwise the test fails, saying to run the suite as root, unless
/// `MSLINK_TESTS_ALLOW_SKIP=1` lets it return early ([`prerequisite::missing`]).
#[track_caller]
pub fn require_root(test: &str) -> bool {
    nix::unistd::geteuid().is_root()
        || prerequisite::missing(
            test,
            "it creates Unix users and switches to them, which needs root",
            "run the suite as root (`sudo -E cargo nextest run --workspace`)",
        )
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn group_exists(name: &str) -> bool {
    run(Command::new("getent").args(["group", name])).status.success()
}

fn user_exists(name: &str) -> bool {
    run(Command::new("id").arg("-u").arg(name)).status.success()
}

fn ensure_group(name: &str) {
    if !group_exists(name) {
        let out = run(Command::new("groupadd").args(["--system", name]));
        // Another test process may have created it meanwhile.
        assert!(group_exists(name), "groupadd {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn ensure_user(name: &str, groups: &[&str]) {
    if !user_exists(name) {
        let mut useradd = Command::new("useradd");
        useradd.args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]);
        if !groups.is_empty() {
            useradd.arg("--groups").arg(groups.join(","));
        }
        let out = run(useradd.arg(name));
        assert!(user_exists(name), "useradd {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    for group in groups {
        run(Command::new("usermod").args(["--append", "--groups", group, name]));
    }
}

/// Creates the test accounts (idempotent, safe to call from parallel tests).
pub fn ensure_accounts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(create_accounts);
}

fn create_accounts() {
    ensure_group(ADMIN_GROUP);
    ensure_group(SOCKET_GROUP);
    ensure_user(ALICE, &[SOCKET_GROUP]);
    ensure_user(BOB, &[SOCKET_GROUP]);
    ensure_user(ADMIN, &[SOCKET_GROUP, ADMIN_GROUP]);
    ensure_user(OUTSIDER, &[]);
}

/// A running `mslinkd` process with its own temporary config, state and socket.
#[derive(Debug)]
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
    /// Extra environment for the daemon process (e.g. `NOTIFY_SOCKET`).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    /// Every line the daemon has logged, across restarts.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Daemon {
    /// Writes a config for the test accounts (plus `extra` TOML) and starts the daemon.
    pub fn start(extra: &str) -> Daemon {
        Daemon::start_with_env(extra, &[])
    }

    /// Like [`Daemon::start`], with extra environment variables for the daemon.
    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        // The test users must reach the socket inside.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let socket = dir.path().join("run/mslinkd.sock");
        let config = dir.path().join("mslinkd.toml");
        std::fs::write(
            &config,
            format!(
                "socket = {socket:?}\nsocket_group = {SOCKET_GROUP:?}\nstate_dir = {:?}\n\
                 admin_group = {ADMIN_GROUP:?}\n{extra}",
                dir.path().join("state")
            ),
        )
        .expect("write config");
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut daemon = Daemon { dir, socket, config, env, child: None, log: Default::default() };
        daemon.restart();
        daemon
    }

    /// Starts (again) on the same config and state; returns once the daemon says it is ready.
    pub fn restart(&mut self) {
        self.restart_under(&[]);
    }

    /// Like [`Daemon::restart`], run by `wrapper` (a program and its arguments, such as
    /// `strace ... --`) with mslinkd's command line appended. The daemon and its wrapper share
    /// their own process group, which [`Daemon::kill9`] kills whole; end a wrapped daemon with
    /// that, as a wrapper need not pass SIGTERM on.
    pub fn restart_under(&mut self, wrapper: &[&str]) {
        assert!(self.child.is_none(), "stop the daemon before restarting it");
        let mslinkd = bin("mslinkd");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&mslinkd);
                command
            }
            None => Command::new(&mslinkd),
        };
        let mut child = command
            .process_group(0)
            .arg("--config")
            .arg(&self.config)
            .env("MSLINK_LOG", "info,mslinkd::links=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mslinkd");
        let stderr = child.stderr.take().expect("stderr");
        self.child = Some(child);
        wait_for_log_into(stderr, "mslinkd ready", Duration::from_secs(30), Some(self.log.clone()))
            .unwrap_or_else(|log| panic!("mslinkd did not become ready; its log:\n{log}"));
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
            let status = child.wait().expect("wait");
            assert!(status.success(), "mslinkd exited with {status} after SIGTERM");
        }
    }

    /// Sends `signal` to the running daemon.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("the daemon is not running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("kill");
    }

    /// True while the daemon process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGKILL to the daemon's process group: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&child);
            child.wait().expect("wait");
        }
    }

    /// Waits up to `limit` for the daemon (or its wrapper) to exit by itself; true if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let exited = wait_until(limit, || {
            self.child.as_mut().is_none_or(|c| c.try_wait().ok().flatten().is_some())
        });
        if exited {
            self.child = None;
        }
        exited
    }

    /// The lines the daemon has logged so far that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().filter(|l| l.contains(needle)).cloned().collect()
    }

    /// Runs `mslinkctl ARGS` as `user` (through `runuser`), against this daemon.
    pub fn ctl(&self, user: &str, args: &[&str]) -> CtlOutput {
        ctl_at(&self.socket, user, args)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&child);
            let _ = child.wait();
        }
    }
}

/// SIGKILL to the process group `child` leads (see [`Daemon::restart_under`]).
fn kill_group(child: &Child) {
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    // ESRCH: the group is gone already; `wait` reaps what is left.
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
}

/// True when `program` can be run. Otherwise the test fails, naming `.ci/setup`, unless
/// `MSLINK_TESTS_ALLOW_SKIP=1` lets it return early ([`prerequisite::missing`]).
#[track_caller]
pub fn require_tool(program: &str, test: &str) -> bool {
    prerequisite::require_program(program, test)
}

/// Waits until `check` is true, polling every 20 ms, for at most `limit`.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// Reads the daemon's log until a line contains `needle`; keeps draining it afterwards so the
/// daemon never blocks on a full pipe. On failure returns what was logged.
pub fn wait_for_log(stderr: ChildStderr, needle: &str, limit: Duration) -> Result<(), String> {
    wait_for_log_into(stderr, needle, limit, None)
}

/// Like [`wait_for_log`], also keeping every line in `keep`.
fn wait_for_log_into(
    stderr: ChildStderr,
    needle: &str,
    limit: Duration,
    keep: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    let needle = needle.to_owned();
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut told = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Captured with the test's output, so a failing test shows the daemon's log.
            eprintln!("mslinkd: {line}");
            if let Some(keep) = &keep {
                keep.lock().unwrap_or_else(|p| p.into_inner()).push(line.clone());
            }
            if !told {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(&needle) {
                    told = true;
                    let _ = tx.send(Ok(()));
                }
            }
        }
        if !told {
            let _ = tx.send(Err(seen));
        }
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| Err("(timed out)".into()))
}

/// What one `mslinkctl` run printed, and its exit code.
#[derive(Debug)]
pub struct CtlOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    /// The stdout parsed as the `--json` document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `mslinkctl ARGS` as `user` against `socket`.
pub fn ctl_at(socket: &Path, user: &str, args: &[&str]) -> CtlOutput {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", user, "--"]).arg(bin("mslinkctl")).arg("--socket").arg(socket).args(args);
    let out = run(cmd.stdin(Stdio::null()));
    CtlOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub mod dnsmasq;
pub mod ews;
pub mod kdc;
pub mod loopback;
pub mod microsoft;
pub mod peers;
pub mod postgres;
pub mod prerequisite;

impl Daemon {
    /// Starts `mslinkctl ARGS` as `user` without waiting, with piped stdio, for conversations
    /// (sign-ins, password prompts).
    pub fn spawn_ctl(&self, user: &str, args: &[&str]) -> CtlChild {
        let mut child = Command::new("runuser")
            .args(["-u", user, "--"])
            .arg(bin("mslinkctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            // Its own process group, so Ctrl-C can reach mslinkctl through runuser.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mslinkctl");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        CtlChild { child, stderr: rx, seen: Vec::new() }
    }
}

/// A running `mslinkctl`, read line by line.
#[derive(Debug)]
pub struct CtlChild {
    child: Child,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl CtlChild {
    /// Waits for a stderr line matching `wanted` and returns it.
    pub fn wait_for_stderr(&mut self, wanted: impl Fn(&str) -> bool, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "mslinkctl never printed the line wanted; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Writes a line to its stdin.
    pub fn type_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to mslinkctl");
    }

    /// Sends SIGINT to its process group, as Ctrl-C at a terminal does.
    pub fn interrupt(&self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    }

    /// Waits for it to exit.
    pub fn finish(mut self) -> CtlOutput {
        drop(self.child.stdin.take());
        let out = self.child.wait_with_output().expect("wait for mslinkctl");
        // The reader thread may still be forwarding the last lines (the error itself): wait for
        // it to reach the end of the pipe, not just for what has arrived so far.
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        CtlOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: self.seen.join("\n"),
        }
    }
}
