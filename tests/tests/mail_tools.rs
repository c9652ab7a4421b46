//! Tokens for the mail tools people already use, through real servers and real clients: Dovecot
//! (IMAP, POP3, submission) validating tokens by introspection at the real OIDC server and
//! checking their audience, and msmtp, mbsync (isync with the XOAUTH2 SASL plugin), neomutt
//! (sending in batch mode), fetchmail (through a plugin that signs in with `--sasl xoauth2`),
//! curl and a bare IMAP `AUTHENTICATE` authenticating with tokens from `mslinkctl token --for`.
//! The msmtp, mbsync, neomutt and fetchmail configurations are the README's "Mail tools"
//! snippets, read from README.md, with only the host, port, TLS and paths changed for loopback.
//! An EWS token is taken by the EWS fake in its Bearer mode (Exchange Online's OAuth for EWS),
//! which introspects it at the same OIDC server.
//!
//! The OIDC server runs in its Entra modes: `--entra-offline-access` (a refresh token without
//! `prompt=consent`) and `--entra-resource-scopes` (Exchange Online's permissions as scopes,
//! and introspection answering the audience of a token's scopes); the stock behaviour, which
//! knows no such scope, has its own test.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mslink_e2e::ews::{Ews, Pki};
use mslink_e2e::peers::{Peer, signin};
use mslink_e2e::{
    ADMIN, ALICE, CtlOutput, Daemon, bin, ensure_accounts, prerequisite, require_root, require_tool,
};
use serde_json::{Value, json};

const MINUTE: Duration = Duration::from_secs(60);
const EMAIL: &str = "alice@contoso.test";
/// The audience Exchange Online's IMAP, POP and SMTP tokens have.
const OUTLOOK: &str = "https://outlook.office.com";

/// The OIDC server, the Graph fake and a daemon pointed at both, the integration enabled.
struct World {
    oidc: Peer,
    _graph: Peer,
    daemon: Daemon,
}

fn world(oidc_args: &[&str], office365: &str) -> World {
    let mut args = vec!["--port", "0", "--access-ttl", "90", "--entra-offline-access"];
    args.extend_from_slice(oidc_args);
    let oidc = Peer::node("oidc.mjs", &args);
    let graph = mslink_e2e::peers::graph_for(&oidc);
    let daemon = Daemon::start(&mslink_e2e::peers::office365_config(&oidc, &graph, office365));
    daemon.ctl(ADMIN, &["enable"]).expect_code(0);
    World { oidc, _graph: graph, daemon }
}

/// Links Alice's mailbox through the browser flow, Chromium signing in.
fn link_alice(world: &World) {
    let mut ctl = world
        .daemon
        .spawn_ctl(ALICE, &["connect", EMAIL, "--provider", "office365", "--no-browser"]);
    let url = ctl.wait_for_stderr(|l| l.trim_start().starts_with("http"), MINUTE).trim().to_owned();
    let browser = signin(&["--url", &url, "--login", EMAIL]);
    assert!(
        browser.status.success(),
        "signin.mjs failed: {}{}",
        String::from_utf8_lossy(&browser.stdout),
        String::from_utf8_lossy(&browser.stderr)
    );
    ctl.finish().expect_code(0);
}

fn state_of(daemon: &Daemon) -> Value {
    daemon.ctl(ALICE, &["--json", "status"]).expect_code(0).json()["links"][0]["state"].clone()
}

fn token(daemon: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["token", EMAIL];
    all.extend_from_slice(args);
    let out = daemon.ctl(ALICE, &all);
    out.expect_code(0);
    assert_eq!(out.stdout.lines().count(), 1, "the token alone on stdout: {:?}", out.stdout);
    out.stdout.trim().to_owned()
}

/// Asks the OIDC server, as a resource server does, what `token` is.
fn introspect(oidc: &Peer, token: &str) -> Value {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "-u", "graph-fake:graph-fake-secret", "--data-urlencode"])
        .arg(format!("token={token}"))
        .arg(format!("{}/token/introspection", oidc.url))
        .output()
        .expect("curl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("introspection JSON")
}

/// A port that was free a moment ago, for a server that takes its port from its config.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind").port()
}

fn uid_gid(user: &str) -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, user]).output().expect("id");
        String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// Makes `path` (a directory tree or a file) `user`'s.
fn give(path: &Path, user: &str) {
    let out = Command::new("chown").arg("-R").arg(user).arg(path).output().expect("chown");
    assert!(out.status.success(), "chown: {}", String::from_utf8_lossy(&out.stderr));
}

/// A throwaway SMTP server that accepts every message: the relay behind Dovecot's submission
/// service. Each message's text arrives on the channel.
fn smtp_sink() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || serve_smtp(stream, &tx));
        }
    });
    (port, rx)
}

fn serve_smtp(stream: TcpStream, messages: &mpsc::Sender<String>) {
    let mut out = stream.try_clone().expect("clone");
    let mut lines = BufReader::new(stream).lines();
    let mut reply = |text: &str| out.write_all(format!("{text}\r\n").as_bytes()).is_ok();
    if !reply("220 sink.contoso.test ESMTP") {
        return;
    }
    while let Some(Ok(line)) = lines.next() {
        let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        let ok = match verb.as_str() {
            "EHLO" => reply("250-sink.contoso.test\r\n250 8BITMIME"),
            "DATA" => {
                if !reply("354 go ahead") {
                    return;
                }
                let mut text = String::new();
                for line in lines.by_ref() {
                    let Ok(line) = line else { return };
                    if line == "." {
                        break;
                    }
                    text.push_str(&line);
                    text.push('\n');
                }
                let _ = messages.send(text);
                reply("250 queued")
            }
            "QUIT" => {
                reply("221 bye");
                return;
            }
            _ => reply("250 ok"),
        };
        if !ok {
            return;
        }
    }
}

/// Dovecot with IMAP, POP3 and submission on loopback, in its own directory, authenticating
/// XOAUTH2 and OAUTHBEARER by introspection at the OIDC server and accepting only tokens whose
/// audience is Exchange Online's. Alice's mailbox is a Maildir owned by her Unix account.
/// STARTTLS is offered with a throwaway certificate, for neomutt, which reads over IMAP with
/// OAuth only over TLS; the other tools stay on plain TCP.
struct Dovecot {
    dir: tempfile::TempDir,
    child: Child,
    imap: u16,
    pop3: u16,
    submission: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Dovecot {
    fn start(oidc: &Peer, relay_port: u16) -> Dovecot {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let (imap, pop3, submission) = (free_port(), free_port(), free_port());
        let (uid, gid) = uid_gid(ALICE);
        let home = root.join("home").join(EMAIL);
        let new = home.join("Maildir/new");
        std::fs::create_dir_all(&new).expect("maildir");
        for sub in ["cur", "tmp"] {
            std::fs::create_dir_all(home.join("Maildir").join(sub)).expect("maildir");
        }
        std::fs::write(
            new.join("1700000000.M1P1.contoso"),
            "From: bob@contoso.test\nTo: alice@contoso.test\nSubject: synced by mbsync\n\nhello\n",
        )
        .expect("message");
        give(&root.join("home"), ALICE);
        let cert = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(root.join("key.pem"))
            .arg("-out")
            .arg(root.join("cert.pem"))
            .output()
            .expect("openssl");
        assert!(cert.status.success(), "openssl: {}", String::from_utf8_lossy(&cert.stderr));
        let introspection = oidc.url.replacen("http://", "http://graph-fake:graph-fake-secret@", 1);
        std::fs::write(
            root.join("oauth2.conf"),
            format!(
                "introspection_mode = post\n\
                 introspection_url = {introspection}/token/introspection\n\
                 force_introspection = yes\n\
                 username_attribute = sub\n\
                 # The audience: a Graph token (aud https://graph.microsoft.com) is refused.\n\
                 active_attribute = aud\n\
                 active_value = {OUTLOOK}\n\
                 # An idle introspection connection closed after 1 s, before the OIDC server's\n\
                 # keep-alive (Node: 5 s) ends it: a request sent as the server closes one is\n\
                 # lost (EOF) and the login fails, as after a refused login's 2-4 s penalty.\n\
                 max_idle_time_msecs = 1000\n"
            ),
        )
        .expect("oauth2.conf");
        let r = root.display();
        std::fs::create_dir_all(root.join("run")).expect("run");
        std::fs::create_dir_all(root.join("state")).expect("state");
        std::fs::write(
            root.join("dovecot.conf"),
            format!(
                "base_dir = {r}/run\nstate_dir = {r}/state\ninstance_name = mslink-test-{imap}\n\
                 log_path = /dev/stderr\nprotocols = imap pop3 submission\nlisten = 127.0.0.1\n\
                 ssl = yes\nssl_cert = <{r}/cert.pem\nssl_key = <{r}/key.pem\n\
                 disable_plaintext_auth = no\nauth_mechanisms = xoauth2 oauthbearer\n\
                 auth_debug = yes\nmail_location = maildir:~/Maildir\n\
                 hostname = mail.contoso.test\n\
                 submission_relay_host = 127.0.0.1\nsubmission_relay_port = {relay_port}\n\
                 service imap-login {{\n  inet_listener imap {{\n    port = {imap}\n  }}\n  \
                 inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
                 service pop3-login {{\n  inet_listener pop3 {{\n    port = {pop3}\n  }}\n  \
                 inet_listener pop3s {{\n    port = 0\n  }}\n}}\n\
                 service submission-login {{\n  inet_listener submission {{\n    \
                 port = {submission}\n  }}\n}}\n\
                 passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  \
                 args = {r}/oauth2.conf\n}}\n\
                 userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={r}/home/%u\n}}\n"
            ),
        )
        .expect("dovecot.conf");
        let mut child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(root.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dovecot (run `bash .ci/setup`)");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ready_tx, ready) = mpsc::channel();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("starting up for") {
                    let _ = ready_tx.send(());
                }
                kept.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let mut dovecot = Dovecot { dir, child, imap, pop3, submission, log };
        if ready.recv_timeout(MINUTE).is_err() {
            panic!("dovecot did not start:\n{}", dovecot.log_text());
        }
        // The master binds its listeners before it says it is starting up; the login
        // processes it forks accept from those sockets, so a connection is queued, not refused.
        assert!(dovecot.child.try_wait().expect("wait").is_none(), "{}", dovecot.log_text());
        dovecot
    }

    /// Alice's home directory for the mail tools (created, hers).
    fn home(&self) -> PathBuf {
        let home = self.dir.path().join("alice");
        if !home.exists() {
            std::fs::create_dir_all(&home).expect("home");
            give(&home, ALICE);
        }
        home
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master then stops its auth and login children too.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// The README's "Mail tools" snippet for `tool`, exactly as printed there.
fn readme_snippet(tool: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let marker = format!("<!-- mail-tools-test: {tool} -->");
    let after = readme.split_once(&marker).unwrap_or_else(|| panic!("README lacks {marker}")).1;
    let fence = after.trim_start().strip_prefix("```").expect("a code block after the marker");
    let body = fence.split_once('\n').expect("the code block's first line").1;
    body.split_once("```").expect("the code block ends").0.to_owned()
}

/// The README snippet for loopback: `edits` are (README text, test text) pairs that must all
/// occur; `mslinkctl` becomes this build's binary on this daemon's socket.
fn adapted(snippet: &str, daemon: &Daemon, edits: &[(&str, String)]) -> String {
    let text = edited(snippet, edits);
    let ctl = format!("{} --socket {} token", bin("mslinkctl").display(), daemon.socket.display());
    assert!(text.contains("mslinkctl token"), "{text}");
    text.replace("mslinkctl token", &ctl)
}

/// The README snippet with the test's address and `edits`, (README text, test text) pairs that
/// must all occur: a snippet that drifted from the test fails it.
fn edited(snippet: &str, edits: &[(&str, String)]) -> String {
    let mut text = snippet.replace("alice@example.com", EMAIL);
    for (from, to) in edits {
        assert!(text.contains(from), "the README snippet lost {from:?}:\n{text}");
        text = text.replace(from, to);
    }
    text
}

/// Writes `text` to a file of Alice's own, mode 0600 (msmtp insists).
fn alices_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    give(&path, ALICE);
    path
}

/// Runs `program ARGS` as Alice with `stdin`, her home directory `home`.
fn as_alice(home: &Path, program: &str, args: &[&str], stdin: &str) -> CtlOutput {
    let mut child = Command::new("runuser")
        .args(["-u", ALICE, "--", "env"])
        .arg(format!("HOME={}", home.display()))
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("stdin");
    let out = child.wait_with_output().expect("wait");
    CtlOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// curl with a bearer token against `url` (`imap://` or `pop3://`), with `mechanism`.
fn curl_bearer(url: &str, token: &str, mechanism: &str) -> CtlOutput {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--oauth2-bearer", token, "-u", &format!("{EMAIL}:")])
        .args(["--login-options", &format!("AUTH={mechanism}")])
        .arg(url)
        .output()
        .expect("curl");
    CtlOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Sends `AUTHENTICATE MECHANISM RESPONSE` to the IMAP server at `port` and returns its tagged
/// reply; a challenge (XOAUTH2's reason for a refusal) gets the empty answer it wants.
fn imap_authenticate(port: u16, mechanism: &str, response: &str) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to IMAP");
    stream.set_read_timeout(Some(MINUTE)).expect("timeout");
    let mut out = stream.try_clone().expect("clone");
    let mut lines = BufReader::new(stream).lines();
    let mut next = || lines.next().expect("the server closed").expect("read");
    assert!(next().starts_with("* OK"), "the IMAP greeting");
    let mechanism = mechanism.to_ascii_uppercase();
    write!(out, "a AUTHENTICATE {mechanism} {response}\r\n").expect("write");
    loop {
        let line = next();
        if line.starts_with("a ") {
            return line;
        }
        if line.starts_with('+') {
            out.write_all(b"\r\n").expect("write");
        }
    }
}

fn msmtp_config(daemon: &Daemon, dovecot: &Dovecot) -> PathBuf {
    let config = adapted(
        &readme_snippet("msmtp"),
        daemon,
        &[
            ("host smtp.office365.com", "host 127.0.0.1".to_owned()),
            ("port 587", format!("port {}", dovecot.submission)),
            ("tls on", "tls off".to_owned()),
        ],
    );
    alices_file(dovecot.dir.path(), "msmtprc", &config)
}

fn send_with_msmtp(dovecot: &Dovecot, config: &Path, subject: &str) -> CtlOutput {
    let message = format!("From: {EMAIL}\nTo: bob@contoso.test\nSubject: {subject}\n\nhello\n");
    as_alice(&dovecot.home(), "msmtp", &["-C", &config.display().to_string(), "-t"], &message)
}

fn requirements(test: &str) -> bool {
    if !(require_root(test)
        && require_tool("dovecot", test)
        && require_tool("msmtp", test)
        && require_tool("mbsync", test)
        && require_tool("neomutt", test)
        && require_tool("script", test)
        && require_tool("openssl", test)
        && require_tool("curl", test))
    {
        return false;
    }
    // Debian installs SASL plugins under /usr/lib/<multiarch triplet>/sasl2/.
    let plugin = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| entry.path().join("sasl2/libkdexoauth2.so").exists());
    plugin
        || prerequisite::missing(
            test,
            "the XOAUTH2 SASL plugin for mbsync (libsasl2-modules-kdexoauth2) is not installed",
            &format!("run `{}`", prerequisite::SETUP),
        )
}

#[test]
fn mail_tools_authenticate_with_their_own_tokens_and_a_revoked_grant_stops_them() {
    let test = "mail_tools_authenticate_with_their_own_tokens_and_a_revoked_grant_stops_them";
    if !requirements(test) {
        return;
    }
    ensure_accounts();
    let world = world(&["--entra-resource-scopes"], "resources = [\"imap\", \"pop\", \"smtp\"]");
    link_alice(&world);
    let (relay, delivered) = smtp_sink();
    let dovecot = Dovecot::start(&world.oidc, relay);
    let imap_url = format!("imap://127.0.0.1:{}/", dovecot.imap);
    let pop_url = format!("pop3://127.0.0.1:{}/", dovecot.pop3);

    // Each service has its own token, with its own audience.
    let graph = token(&world.daemon, &[]);
    let imap = token(&world.daemon, &["--for", "imap"]);
    assert_ne!(graph, imap);
    assert_eq!(introspect(&world.oidc, &graph)["aud"], "https://graph.microsoft.com");
    let about = introspect(&world.oidc, &imap);
    assert_eq!((&about["aud"], &about["sub"]), (&Value::from(OUTLOOK), &Value::from(EMAIL)));
    assert!(about["scope"].as_str().unwrap_or("").contains("IMAP.AccessAsUser.All"), "{about}");
    // A fresh one comes from the cache: the same token, no new refresh.
    assert_eq!(token(&world.daemon, &["--for", "imap"]), imap);

    // IMAP refuses the Graph token and takes the IMAP one (XOAUTH2).
    let refused = curl_bearer(&imap_url, &graph, "XOAUTH2");
    assert_ne!(refused.code, 0, "IMAP took a Graph token: {}", refused.stdout);
    let listed = curl_bearer(&imap_url, &imap, "XOAUTH2");
    assert_eq!(listed.code, 0, "{}\n{}", listed.stderr, dovecot.log_text());
    assert!(listed.stdout.contains("INBOX"), "{}", listed.stdout);

    // POP with OAUTHBEARER: the message in the mailbox is listed. Every new token so far came
    // with a rotated refresh token, stored before use: a replayed one would end the grant.
    let pop = token(&world.daemon, &["--for", "pop"]);
    let stat = curl_bearer(&pop_url, &pop, "OAUTHBEARER");
    assert_eq!(stat.code, 0, "{}\n{}", stat.stderr, dovecot.log_text());
    assert!(stat.stdout.starts_with("1 "), "one message: {:?}", stat.stdout);

    // --sasl: the ready initial response, which IMAP takes verbatim (RFC 4959 SASL-IR) with
    // either mechanism; a Graph token's is refused.
    for mechanism in ["xoauth2", "oauthbearer"] {
        let response = token(&world.daemon, &["--for", "imap", "--sasl", mechanism]);
        let reply = imap_authenticate(dovecot.imap, mechanism, &response);
        assert!(reply.starts_with("a OK"), "{mechanism}: {reply}\n{}", dovecot.log_text());
    }
    let graph_response = token(&world.daemon, &["--sasl", "xoauth2"]);
    let reply = imap_authenticate(dovecot.imap, "xoauth2", &graph_response);
    assert!(reply.starts_with("a NO"), "IMAP took a Graph token: {reply}");

    // msmtp, with the README's configuration: passwordeval fetches an SMTP token.
    let msmtprc = msmtp_config(&world.daemon, &dovecot);
    let sent = send_with_msmtp(&dovecot, &msmtprc, "sent by msmtp");
    assert_eq!(sent.code, 0, "{}\n{}", sent.stderr, dovecot.log_text());
    let message = delivered.recv_timeout(MINUTE).expect("the relay got the message");
    assert!(message.contains("Subject: sent by msmtp"), "{message}");

    // mbsync, with the README's configuration: PassCmd and AuthMechs XOAUTH2 sync the inbox.
    let local = dovecot.dir.path().join("local");
    // mbsync creates the folders, not the store's own directory.
    std::fs::create_dir_all(local.join("office365")).expect("local");
    give(&local, ALICE);
    let mut mbsyncrc = adapted(
        &readme_snippet("mbsync"),
        &world.daemon,
        &[
            ("Host outlook.office365.com", "Host 127.0.0.1".to_owned()),
            ("Port 993", format!("Port {}", dovecot.imap)),
            ("SSLType IMAPS", "SSLType None".to_owned()),
            ("~/Mail/office365", local.join("office365").display().to_string()),
        ],
    );
    // State beside the mail: the test account has no home directory.
    mbsyncrc.push_str("SyncState *\n");
    let mbsyncrc = alices_file(dovecot.dir.path(), "mbsyncrc", &mbsyncrc);
    let synced =
        as_alice(&dovecot.home(), "mbsync", &["-c", &mbsyncrc.display().to_string(), "-a"], "");
    assert_eq!(synced.code, 0, "{}\n{}", synced.stderr, dovecot.log_text());
    let inbox = local.join("office365/INBOX/new");
    let copied = std::fs::read_dir(&inbox).map(|d| d.count()).unwrap_or(0)
        + std::fs::read_dir(local.join("office365/INBOX/cur")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(copied, 1, "mbsync copied the message into {}", inbox.display());

    // neomutt, with the README's configuration, sending in batch mode (no terminal):
    // smtp_oauth_refresh_command fetches the token.
    let mut neomuttrc = adapted(
        &readme_snippet("neomutt"),
        &world.daemon,
        &[("smtp.office365.com:587", format!("127.0.0.1:{}", dovecot.submission))],
    );
    neomuttrc.push_str("set ssl_starttls = no\nset ssl_force_tls = no\n");
    let neomuttrc = alices_file(dovecot.dir.path(), "neomuttrc", &neomuttrc);
    let args = ["-n", "-F", &neomuttrc.display().to_string(), "-s", "sent by neomutt"];
    let sent =
        as_alice(&dovecot.home(), "neomutt", &[&args[..], &["bob@contoso.test"]].concat(), "hi\n");
    assert_eq!(sent.code, 0, "{}{}\n{}", sent.stdout, sent.stderr, dovecot.log_text());
    let message = delivered.recv_timeout(MINUTE).expect("the relay got neomutt's message");
    assert!(message.contains("Subject: sent by neomutt"), "{message}");

    // neomutt reading over IMAP with the same configuration (STARTTLS: it offers OAuth only
    // over TLS), in a terminal of its own: imap_oauth_refresh_command fetches the token, the
    // inbox opens and the message piped out is the one in the mailbox.
    let piped = dovecot.home().join("read-by-neomutt");
    let mut neomuttrc = adapted(
        &readme_snippet("neomutt"),
        &world.daemon,
        &[("imaps://outlook.office365.com/", format!("imap://127.0.0.1:{}/", dovecot.imap))],
    );
    let cert = dovecot.dir.path().join("cert.pem");
    neomuttrc.push_str(&format!(
        "set ssl_starttls = yes\nset ssl_force_tls = yes\nset certificate_file = \"{}\"\n\
         set wait_key = no\n",
        cert.display()
    ));
    let neomuttrc = alices_file(dovecot.dir.path(), "neomuttrc-imap", &neomuttrc);
    let keys = format!("<pipe-message>cat > {}<enter><quit>", piped.display());
    let neomutt = format!(
        "timeout --foreground 60 neomutt -n -F {} -e 'push \"{keys}\"'",
        neomuttrc.display()
    );
    // The test account's shell is nologin; script runs the command with $SHELL.
    let read = as_alice(
        &dovecot.home(),
        "env",
        &["SHELL=/bin/sh", "TERM=xterm", "script", "-qec", &neomutt, "/dev/null"],
        "",
    );
    assert_eq!(read.code, 0, "{}{}\n{}", read.stdout, read.stderr, dovecot.log_text());
    let mail = std::fs::read_to_string(&piped).expect("neomutt piped the message");
    assert!(mail.contains("Subject: synced by mbsync"), "{mail}");

    // The link is still healthy after all those refreshes.
    world.daemon.ctl(ALICE, &["check", EMAIL]).expect_code(0);

    // The grant revoked: a tool that still holds a token is refused by the server; the link's
    // next refresh (here the check's) finds the grant gone and the link needs a new sign-in;
    // from then on a tool asking for a token fails with a one-line reason.
    world.oidc.control(&format!("/test/revoke?sub={EMAIL}"), "{}");
    let stale = curl_bearer(&pop_url, &pop, "OAUTHBEARER");
    assert_ne!(stale.code, 0, "a revoked token was accepted");
    world.daemon.ctl(ALICE, &["check", EMAIL]).expect_code(7);
    let out = world.daemon.ctl(ALICE, &["token", EMAIL, "--for", "smtp"]);
    out.expect_code(7);
    assert!(out.stdout.is_empty(), "nothing on stdout: {:?}", out.stdout);
    assert!(out.stderr.lines().next().is_some_and(|l| l.contains(EMAIL)), "{}", out.stderr);
    assert_eq!(state_of(&world.daemon), "needs_reauth");
    let failed = send_with_msmtp(&dovecot, &msmtprc, "after the revocation");
    assert_ne!(failed.code, 0, "msmtp sent with a revoked grant");
    assert!(
        failed.stderr.contains("sign"),
        "the reason reaches the tool's user: {}",
        failed.stderr
    );
}

#[test]
fn a_resource_without_consent_or_config_is_refused_and_the_link_stays_healthy() {
    let test = "a_resource_without_consent_or_config_is_refused_and_the_link_stays_healthy";
    if !require_root(test) {
        return;
    }
    ensure_accounts();
    // Stock oidc-provider knows no Exchange Online scope, as a tenant whose app lacks the
    // permission: the sign-in (without resources) works, the IMAP token request is refused.
    let mut world = world(&[], "");
    link_alice(&world);
    let unset = world.daemon.ctl(ALICE, &["token", EMAIL, "--for", "pop"]);
    unset.expect_code(2);
    assert!(unset.stderr.contains("[office365] resources"), "{}", unset.stderr);

    let config = std::fs::read_to_string(&world.daemon.config).expect("config");
    let config = config.replace("[office365]\n", "[office365]\nresources = [\"imap\"]\n");
    std::fs::write(&world.daemon.config, config).expect("config");
    world.daemon.ctl(ADMIN, &["reload"]).expect_code(0);
    let refused = world.daemon.ctl(ALICE, &["token", EMAIL, "--for", "imap"]);
    refused.expect_code(7);
    assert!(refused.stderr.contains("invalid_scope"), "{}", refused.stderr);
    assert!(refused.stderr.contains(&format!("mslinkctl connect {EMAIL}")), "{}", refused.stderr);
    // Not a failure of the link: Graph still works.
    assert_eq!(state_of(&world.daemon), "active");
    assert!(!token(&world.daemon, &[]).is_empty());
    world.daemon.ctl(ALICE, &["check", EMAIL]).expect_code(0);
    world.daemon.stop();
    world.daemon.restart();
    assert_eq!(state_of(&world.daemon), "active");
}

/// fetchmail run as Alice with the README's run-control file and plugin, the plugin's TLS
/// connection swapped for plain TCP on loopback and asking for a token `--for service`; what it
/// fetches is appended to `mbox`.
fn fetch_with_fetchmail(
    daemon: &Daemon,
    dovecot: &Dovecot,
    service: &str,
    mbox: &Path,
) -> CtlOutput {
    let dir = dovecot.dir.path();
    let tls = "coproc SERVER { openssl s_client -quiet -verify_return_error -verify_hostname \"$2\" \
               -connect \"$2:$3\" 2>/dev/null; }";
    let plugin = adapted(
        &readme_snippet("fetchmail-plugin"),
        daemon,
        &[
            (tls, "exec 3<>\"/dev/tcp/$2/$3\"".to_owned()),
            ("exec 3<&\"${SERVER[0]}\" 4>&\"${SERVER[1]}\"", "exec 4>&3".to_owned()),
            ("--for pop", format!("--for {service}")),
        ],
    );
    let plugin = alices_file(dir, "fetchmail-office365", &plugin);
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let rc = edited(
        &readme_snippet("fetchmail"),
        &[
            ("poll outlook.office365.com", "poll 127.0.0.1".to_owned()),
            ("port 995", format!("port {}", dovecot.pop3)),
            ("/home/alice/bin/fetchmail-office365", plugin.display().to_string()),
        ],
    );
    let rc = alices_file(dir, "fetchmailrc", &rc);
    let mda = format!("cat >> {}", mbox.display());
    as_alice(
        &dovecot.home(),
        "fetchmail",
        &["-v", "-f", &rc.display().to_string(), "--mda", &mda],
        "",
    )
}

#[test]
fn fetchmail_fetches_with_a_pop_token_through_the_readme_plugin_and_a_graph_token_is_refused() {
    let test =
        "fetchmail_fetches_with_a_pop_token_through_the_readme_plugin_and_a_graph_token_is_refused";
    if !(require_root(test)
        && require_tool("dovecot", test)
        && require_tool("fetchmail", test)
        && require_tool("bash", test))
    {
        return;
    }
    ensure_accounts();
    let world = world(&["--entra-resource-scopes"], "resources = [\"pop\"]");
    link_alice(&world);
    let (relay, _delivered) = smtp_sink();
    let dovecot = Dovecot::start(&world.oidc, relay);
    let mbox = dovecot.home().join("fetched");
    let maildir = dovecot.dir.path().join("home").join(EMAIL).join("Maildir");
    let on_server = || {
        ["new", "cur"].iter().map(|d| std::fs::read_dir(maildir.join(d)).expect("maildir").count())
    };

    // A Graph token: Dovecot refuses it, the plugin says so, fetchmail fails, the mail stays.
    let refused = fetch_with_fetchmail(&world.daemon, &dovecot, "graph", &mbox);
    assert_ne!(refused.code, 0, "POP took a Graph token: {}", refused.stdout);
    assert!(refused.stderr.contains("refused the token"), "{}", refused.stderr);
    assert!(!mbox.exists(), "nothing fetched");
    assert_eq!(on_server().sum::<usize>(), 1);

    // The POP token: fetchmail fetches the message, hands it to the MDA and deletes it.
    let fetched = fetch_with_fetchmail(&world.daemon, &dovecot, "pop", &mbox);
    assert_eq!(fetched.code, 0, "{}{}\n{}", fetched.stdout, fetched.stderr, dovecot.log_text());
    let mail = std::fs::read_to_string(&mbox).expect("fetchmail delivered the message");
    assert!(mail.contains("Subject: synced by mbsync"), "{mail}");
    assert_eq!(on_server().sum::<usize>(), 0, "fetchmail deleted the fetched message");
}

/// Exchange Online's EWS host, resolved to the EWS fake.
const EWS_HOST: &str = "outlook.office365.com";

/// The fake's log entry of its last EWS request.
fn last_ews_entry(ews: &Ews) -> Value {
    ews.log().into_iter().rev().find(|e| e["endpoint"] == "ews").expect("an EWS request")
}

#[test]
fn an_ews_token_reads_the_inbox_from_exchange_online_ews_and_a_graph_token_is_refused() {
    let test = "an_ews_token_reads_the_inbox_from_exchange_online_ews_and_a_graph_token_is_refused";
    if !(require_root(test)
        && require_tool("curl", test)
        && require_tool("openssl", test)
        && prerequisite::require_python_module("spnego", test))
    {
        return;
    }
    ensure_accounts();
    let world = world(&["--entra-resource-scopes"], "resources = [\"ews\"]");
    link_alice(&world);
    let pki = Pki::new(
        &[EWS_HOST],
        &json!({EMAIL: {"upn": EMAIL, "password": "unused-with-oauth",
                        "inbox_total": 12, "inbox_unread": 3}}),
    );
    let introspection = format!("{}/token/introspection", world.oidc.url);
    let ews = Ews::start(
        &pki,
        0,
        &[
            "--auth",
            "bearer,negotiate",
            "--introspect",
            &introspection,
            "--audience",
            "https://outlook.office365.com",
        ],
    );

    // The EWS token: GetFolder answers alice's inbox, the fake took it as Bearer for alice.
    let token_for_ews = token(&world.daemon, &["--for", "ews"]);
    let about = introspect(&world.oidc, &token_for_ews);
    assert_eq!(about["aud"], "https://outlook.office365.com", "{about}");
    let (code, headers, body) = ews.get_inbox(&pki, EWS_HOST, &token_for_ews);
    let entry = last_ews_entry(&ews);
    assert_eq!(code, 200, "{headers}{body}\n{entry}\n{about}");
    assert!(body.contains("<t:TotalCount>12</t:TotalCount>"), "{body}");
    assert_eq!(
        (&entry["auth_via"], &entry["auth_scheme"], &entry["authenticated_user"]),
        (&json!("Bearer"), &json!("Bearer"), &json!(EMAIL)),
        "{entry}"
    );

    // A Graph token is refused: 401 with Exchange's Bearer challenge and Negotiate's.
    let token_for_graph = token(&world.daemon, &["--for", "graph"]);
    let (code, headers, _) = ews.get_inbox(&pki, EWS_HOST, &token_for_graph);
    assert_eq!(code, 401, "{headers}");
    let challenges: Vec<&str> =
        headers.lines().filter_map(|l| l.strip_prefix("WWW-Authenticate: ")).collect();
    assert!(
        challenges.first().is_some_and(|c| c.starts_with("Bearer ")
            && c.contains(r#"client_id="00000002-0000-0ff1-ce00-000000000000""#)
            && c.contains(r#"error="invalid_token""#)),
        "{headers}"
    );
    assert!(challenges.iter().any(|c| c.trim() == "Negotiate"), "{headers}");
    let entry = last_ews_entry(&ews);
    assert_eq!(entry["authenticated_user"], Value::Null, "{entry}");
    assert!(entry["bearer_error"].as_str().is_some_and(|e| e.contains("audience")), "{entry}");
}
