//! Files and sockets another local user could plant (SPEC §8): the daemon refuses state, key and
//! config files someone else could change, and `--check-config` names them; `mslinkctl` sends
//! nothing, and so no password, to a socket served by someone other than mslinkd's user.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mslink_e2e::{ALICE, OUTSIDER, bin, ensure_accounts, require_root, require_tool};

/// A config in its own 0755 directory, with the state and key inside.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    state: PathBuf,
    key: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (config, state, key) =
        (dir.path().join("mslinkd.toml"), dir.path().join("state"), dir.path().join("secret.key"));
    let socket = dir.path().join("run/mslinkd.sock");
    std::fs::write(
        &config,
        format!("socket = {socket:?}\nstate_dir = {state:?}\nkey_file = {key:?}\n"),
    )
    .expect("write config");
    Setup { dir, config, state, key }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn uid_of(user: &str) -> u32 {
    nix::unistd::User::from_name(user).expect("getpwnam").expect("the user exists").uid.as_raw()
}

/// Runs `mslinkd ARGS`; a daemon that starts instead of refusing is killed after 20 s and fails
/// the test.
fn mslinkd(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let mut child = Command::new(bin("mslinkd"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mslinkd");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mslinkd {args:?} kept running instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    (status.code().unwrap_or(-1), stderr)
}

/// Both starting and `--check-config` refuse, with `wanted` in the message.
#[track_caller]
fn refused(setup: &Setup, wanted: &[&str]) {
    let config = setup.config.as_os_str();
    for args in [&[config][..], &[config, "--check-config".as_ref()]] {
        let mut full = vec!["--config".as_ref()];
        full.extend_from_slice(args);
        let (code, stderr) = mslinkd(&full);
        assert_eq!(code, 1, "mslinkd {full:?} did not refuse: {stderr}");
        for wanted in wanted {
            assert!(stderr.contains(wanted), "mslinkd {full:?}: no {wanted:?} in: {stderr}");
        }
    }
}

#[test]
fn a_file_another_user_could_change_stops_the_daemon_and_check_config_names_it() {
    if !require_root("a_file_another_user_could_change_stops_the_daemon_and_check_config_names_it")
    {
        return;
    }
    ensure_accounts();

    // A config its group may write: they could point state_dir or the hook anywhere.
    let s = setup();
    chmod(&s.config, 0o664);
    let config = s.config.display().to_string();
    refused(
        &s,
        &[
            &format!("config file {config} is writable by its group (mode 0664)"),
            &format!("chmod go-w {config}"),
        ],
    );
    assert!(!s.state.exists(), "the daemon created its state before refusing");

    // A group-writable key: someone could swap the key secrets are sealed with.
    let s = setup();
    std::fs::write(&s.key, [7u8; 32]).expect("write key");
    chmod(&s.key, 0o620);
    let key = s.key.display().to_string();
    refused(&s, &[&format!("{key} is writable by its group (mode 0620)"), "chmod go-w"]);

    // A state directory another (non-root) user owns: they could plant a database or a key.
    let s = setup();
    std::fs::create_dir(&s.state).expect("mkdir state");
    chmod(&s.state, 0o700);
    let outsider = uid_of(OUTSIDER);
    std::os::unix::fs::chown(&s.state, Some(outsider), None).expect("chown");
    let state = s.state.display().to_string();
    refused(
        &s,
        &[
            &format!("{state} is owned by {OUTSIDER} (uid {outsider})"),
            &format!("chown root {state}"),
        ],
    );
    assert!(!s.state.join("mslink.db").exists(), "a database was created in their directory");

    // A key file that is a link to some other file: refused, and the target left as it was.
    let s = setup();
    let target = s.dir.path().join("elsewhere");
    std::fs::write(&target, [9u8; 32]).expect("write target");
    chmod(&target, 0o644);
    std::os::unix::fs::symlink(&target, &s.key).expect("symlink");
    refused(&s, &["is a symbolic link"]);
    let mode = std::fs::metadata(&target).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644, "the link's target was chmodded");
    assert_eq!(std::fs::read(&target).expect("read"), [9u8; 32]);

    // The same setup, with nothing wrong, passes and starts.
    let s = setup();
    let (code, stderr) =
        mslinkd(&["--config".as_ref(), s.config.as_os_str(), "--check-config".as_ref()]);
    assert_eq!((code, stderr.as_str()), (0, ""));
}

/// A fake mslinkd: speaks just enough of the protocol to be sent a password (welcome, an enabled
/// integration, then any command), and prints every frame it receives and, per connection, how
/// many bytes came.
const FAKE_DAEMON: &str = r#"
import json, os, socket, struct, sys
path = sys.argv[1]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
os.chmod(path, 0o777)
server.listen(4)
print("READY", flush=True)

def send(conn, message):
    body = json.dumps(message).encode()
    conn.sendall(struct.pack(">I", len(body)) + body)

while True:
    conn, _ = server.accept()
    received, total = b"", 0
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        received, total = received + chunk, total + len(chunk)
        while len(received) >= 4 and len(received) >= 4 + struct.unpack(">I", received[:4])[0]:
            n = struct.unpack(">I", received[:4])[0]
            body, received = received[4:4 + n], received[4 + n:]
            print("FRAME " + body.decode("utf-8", "replace"), flush=True)
            message = json.loads(body)
            if message.get("frame") == "hello":
                send(conn, {"frame": "welcome", "protocol_version": 1, "daemon_version": "0.1.0"})
            elif message.get("command", {}).get("name") == "status":
                send(conn, {"frame": "reply", "reply": {"kind": "status", "user": "x",
                            "admin": False, "integration": {"enabled": True}}})
            else:
                send(conn, {"frame": "failure", "error": {"kind": "failed", "message": "fake"}})
    print("BYTES %d" % total, flush=True)
    conn.close()
    print("CLOSED", flush=True)
"#;

/// The fake, run as `uid`, listening at `socket`; its output arrives line by line.
struct Fake {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Fake {
    fn start(socket: &Path, uid: u32) -> Fake {
        let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .expect("getpwuid")
            .expect("the user exists")
            .gid
            .as_raw();
        let mut child = Command::new("python3")
            .args(["-c", FAKE_DAEMON])
            .arg(socket)
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the fake daemon");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let fake = Fake { child, lines };
        let ready = fake.lines.recv_timeout(Duration::from_secs(20));
        assert_eq!(ready.as_deref(), Ok("READY"), "the fake daemon did not start");
        fake
    }

    /// What it printed about one finished connection, up to `CLOSED`.
    fn connection(&self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(20)) {
            if line == "CLOSED" {
                return seen;
            }
            seen.push(line);
        }
        panic!("the fake daemon never saw the connection close; it printed {seen:?}");
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PASSWORD: &str = "correct-horse-battery-staple";

/// `mslinkctl connect` for an Exchange mailbox as ALICE, the password on stdin.
fn connect_as_alice(socket: &Path) -> (i32, String) {
    let mut child = Command::new("runuser")
        .args(["-u", ALICE, "--"])
        .arg(bin("mslinkctl"))
        .arg("--socket")
        .arg(socket)
        .args(["connect", "alice@contoso.test", "--provider", "exchange", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mslinkctl");
    let mut stdin = child.stdin.take().expect("stdin");
    // It may refuse before reading the password, closing stdin.
    let _ = writeln!(stdin, "{PASSWORD}");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for mslinkctl");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn mslinkctl_sends_no_password_to_a_socket_another_user_planted() {
    if !require_root("mslinkctl_sends_no_password_to_a_socket_another_user_planted")
        || !require_tool("python3", "mslinkctl_sends_no_password_to_a_socket_another_user_planted")
    {
        return;
    }
    ensure_accounts();
    let outsider = uid_of(OUTSIDER);
    let dir = tempfile::tempdir().expect("tempdir");
    chmod(dir.path(), 0o755);

    // The attack: the socket path is in a directory anyone may create files in (like /tmp, or
    // /run/mslink's parent while mslinkd is down, were it writable), and a hostile local user
    // gets there first with a socket of their own.
    let shared = dir.path().join("tmp");
    std::fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o1777);
    let planted = shared.join("mslinkd.sock");
    let fake = Fake::start(&planted, outsider);
    let (code, stderr) = connect_as_alice(&planted);
    let seen = fake.connection();
    assert_eq!(code, 3, "mslinkctl did not refuse the impostor: {stderr}");
    assert!(
        stderr
            .contains(&format!("is served by {OUTSIDER} (uid {outsider}), not by mslinkd's user"))
            && stderr.contains("sent it nothing"),
        "{stderr}"
    );
    assert_eq!(seen, ["BYTES 0"], "mslinkctl sent the impostor something");
    drop(fake);

    // Their own directory in that shared place is vouched for by no one either.
    let theirs = shared.join("mslink");
    std::fs::create_dir(&theirs).expect("mkdir");
    std::os::unix::fs::chown(&theirs, Some(outsider), None).expect("chown");
    let planted = theirs.join("mslinkd.sock");
    let fake = Fake::start(&planted, outsider);
    let (code, stderr) = connect_as_alice(&planted);
    assert_eq!((code, fake.connection()), (3, vec!["BYTES 0".to_owned()]), "{stderr}");
    drop(fake);

    // The control: the same user as the service user root gave the socket's directory to
    // (systemd's RuntimeDirectory= under /run) is mslinkd's user, and the fake does get the
    // password, so the assertions above would have seen it.
    let run = dir.path().join("run");
    std::fs::create_dir(&run).expect("mkdir");
    chmod(&run, 0o755);
    std::os::unix::fs::chown(&run, Some(outsider), None).expect("chown");
    let socket = run.join("mslinkd.sock");
    let fake = Fake::start(&socket, outsider);
    let (code, stderr) = connect_as_alice(&socket);
    let seen = fake.connection();
    assert_eq!(code, 1, "the fake answers the connect with a failure: {stderr}");
    assert!(
        seen.iter().any(|line| line.contains(PASSWORD)),
        "the control saw no password: {seen:?}"
    );
}
