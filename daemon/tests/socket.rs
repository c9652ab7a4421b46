//! The control socket under bad input and abuse: each problem stays inside its own connection and
//! the daemon keeps serving everyone else. The daemon runs in-process on a temporary socket.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::PathBuf;
use std::time::Duration;

use mslink_bench::seed;
use mslink_proto::{
    ClientFrame, CtlCommand, DaemonFrame, DaemonReply, ErrorKind, MAX_CLIENT_FRAME,
    MAX_DAEMON_FRAME, PROTOCOL_VERSION, decode, encode,
};
use mslinkd::config::{Config, Env};
use mslinkd::ipc::{self, Limits};
use mslinkd::{Listener, Options, run_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

struct TestDaemon {
    socket: PathBuf,
    config_file: PathBuf,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<Result<(), mslinkd::OpenError>>,
    _dir: tempfile::TempDir,
}

async fn start(limits: Limits) -> TestDaemon {
    start_in(tempfile::tempdir().unwrap(), "", limits).await
}

/// A daemon in `dir` (whose `state` may be seeded already), with `extra` config.
async fn start_in(dir: tempfile::TempDir, extra: &str, limits: Limits) -> TestDaemon {
    let socket = dir.path().join("mslinkd.sock");
    let config_file = dir.path().join("mslinkd.toml");
    std::fs::write(
        &config_file,
        format!("socket = {:?}\nstate_dir = {:?}\n{extra}", socket, dir.path().join("state")),
    )
    .unwrap();
    let config = Config::load(&config_file, true, &Env::default()).unwrap();
    let listener = Listener::Owned(ipc::bind(&socket, None).unwrap(), socket.clone());
    let shutdown = CancellationToken::new();
    let options = Options { env: Env::default(), limits, ..Options::default() };
    let served = tokio::spawn(run_with(config, listener, shutdown.clone(), options));
    TestDaemon { socket, config_file, shutdown, served, _dir: dir }
}

async fn send(stream: &mut UnixStream, frame: &ClientFrame) {
    stream.write_all(&encode(frame, MAX_CLIENT_FRAME).unwrap()).await.unwrap();
}

/// The next frame, or `None` when the daemon closed the connection.
async fn receive(stream: &mut UnixStream) -> Option<DaemonFrame> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await.ok()?;
    let mut body = vec![0u8; mslink_proto::frame_len(header, MAX_DAEMON_FRAME).unwrap()];
    stream.read_exact(&mut body).await.unwrap();
    Some(decode(&body).unwrap())
}

fn hello(version: u32) -> ClientFrame {
    ClientFrame::Hello { protocol_version: version, client: "socket-test".into() }
}

fn status() -> ClientFrame {
    ClientFrame::Command { act_as: None, command: CtlCommand::Status { all: false } }
}

async fn connected(daemon: &TestDaemon) -> UnixStream {
    let mut stream = UnixStream::connect(&daemon.socket).await.unwrap();
    send(&mut stream, &hello(PROTOCOL_VERSION)).await;
    assert!(matches!(receive(&mut stream).await, Some(DaemonFrame::Welcome { .. })));
    stream
}

/// A fresh client can still get its status: the daemon is healthy.
async fn assert_serving(daemon: &TestDaemon) {
    let mut stream = connected(daemon).await;
    send(&mut stream, &status()).await;
    match receive(&mut stream).await {
        Some(DaemonFrame::Reply { reply }) if matches!(*reply, DaemonReply::Status(ref s) if !s.user.is_empty()) =>
            {}
        other => panic!("expected a status reply, got {other:?}"),
    }
}

fn failure(frame: Option<DaemonFrame>) -> (ErrorKind, String) {
    match frame {
        Some(DaemonFrame::Failure { error }) => (error.kind, error.message),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn garbage_bytes_get_an_error_and_only_that_connection_closes() {
    let daemon = start(Limits::default()).await;
    let mut stream = UnixStream::connect(&daemon.socket).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (kind, message) = failure(receive(&mut stream).await);
    assert_eq!(kind, ErrorKind::Usage);
    assert!(message.contains("exceeds the limit"), "{message}");
    assert!(receive(&mut stream).await.is_none(), "the connection is closed");
    assert_serving(&daemon).await;
}

#[tokio::test]
async fn an_oversized_frame_is_refused_without_reading_it() {
    let daemon = start(Limits::default()).await;
    let mut stream = connected(&daemon).await;
    let len = (MAX_CLIENT_FRAME as u32 + 1).to_be_bytes();
    stream.write_all(&len).await.unwrap();
    let (kind, message) = failure(receive(&mut stream).await);
    assert_eq!(kind, ErrorKind::Usage);
    assert!(message.contains(&format!("limit of {MAX_CLIENT_FRAME} bytes")), "{message}");
    assert!(receive(&mut stream).await.is_none());
    assert_serving(&daemon).await;
}

#[tokio::test]
async fn a_truncated_frame_only_ends_its_connection() {
    let daemon = start(Limits::default()).await;
    let mut stream = connected(&daemon).await;
    stream.write_all(&100u32.to_be_bytes()).await.unwrap();
    stream.write_all(b"{\"frame\":").await.unwrap();
    stream.shutdown().await.unwrap();
    assert!(receive(&mut stream).await.is_none());
    assert_serving(&daemon).await;
}

#[tokio::test]
async fn an_unknown_command_gets_an_error_and_the_connection_goes_on() {
    let daemon = start(Limits::default()).await;
    let mut stream = connected(&daemon).await;
    let unknown = br#"{"frame":"command","command":{"name":"teleport"}}"#;
    stream.write_all(&(unknown.len() as u32).to_be_bytes()).await.unwrap();
    stream.write_all(unknown).await.unwrap();
    let (kind, message) = failure(receive(&mut stream).await);
    assert_eq!(kind, ErrorKind::Usage);
    assert!(message.contains("unknown or malformed command"), "{message}");
    send(&mut stream, &status()).await;
    assert!(matches!(receive(&mut stream).await, Some(DaemonFrame::Reply { .. })));
}

#[tokio::test]
async fn an_old_protocol_version_is_refused_naming_both_versions() {
    let daemon = start(Limits::default()).await;
    let mut stream = UnixStream::connect(&daemon.socket).await.unwrap();
    send(&mut stream, &hello(0)).await;
    let (kind, message) = failure(receive(&mut stream).await);
    assert_eq!(kind, ErrorKind::ProtocolMismatch);
    assert!(
        message.contains("version 0") && message.contains(&format!("speaks {PROTOCOL_VERSION}")),
        "{message}"
    );
    assert!(receive(&mut stream).await.is_none());
    assert_serving(&daemon).await;
}

#[tokio::test]
async fn a_command_before_hello_is_refused() {
    let daemon = start(Limits::default()).await;
    let mut stream = UnixStream::connect(&daemon.socket).await.unwrap();
    send(&mut stream, &status()).await;
    let (kind, message) = failure(receive(&mut stream).await);
    assert_eq!(kind, ErrorKind::Usage);
    assert!(message.contains("must be Hello"), "{message}");
}

#[tokio::test]
async fn a_silent_client_does_not_block_others_and_is_dropped_at_its_timeout() {
    let limits = Limits { handshake_timeout: Duration::from_millis(300), ..Limits::default() };
    let daemon = start(limits).await;
    let mut silent = UnixStream::connect(&daemon.socket).await.unwrap();
    assert_serving(&daemon).await;
    let (kind, _) = failure(receive(&mut silent).await);
    assert_eq!(kind, ErrorKind::Timeout);
    assert!(receive(&mut silent).await.is_none());
}

#[tokio::test]
async fn hundreds_of_concurrent_clients_are_all_served() {
    let daemon = std::sync::Arc::new(start(Limits::default()).await);
    let clients: Vec<_> = (0..300)
        .map(|_| {
            let daemon = daemon.clone();
            tokio::spawn(async move { assert_serving(&daemon).await })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
}

#[tokio::test]
async fn clients_over_the_connection_limit_are_told_the_daemon_is_busy() {
    let limits = Limits { max_connections: 2, reserved_for_admins: 0, ..Limits::default() };
    let daemon = start(limits).await;
    let _held = [connected(&daemon).await, connected(&daemon).await];
    let mut third = UnixStream::connect(&daemon.socket).await.unwrap();
    let (kind, _) = failure(receive(&mut third).await);
    assert_eq!(kind, ErrorKind::Busy);
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns() {
    let daemon = start(Limits::default()).await;
    let mut idle = connected(&daemon).await;
    daemon.shutdown.cancel();
    assert!(receive(&mut idle).await.is_none());
    tokio::time::timeout(Duration::from_secs(10), daemon.served).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_bad_or_unsafe_reload_keeps_the_running_config() {
    let daemon = start(Limits::default()).await;
    let mut stream = connected(&daemon).await;
    let reload = ClientFrame::Command { act_as: None, command: CtlCommand::Reload };

    let good = std::fs::read_to_string(&daemon.config_file).unwrap();
    std::fs::write(&daemon.config_file, format!("{good}[schedule]\ncheck_interval = \"often\"\n"))
        .unwrap();
    send(&mut stream, &reload).await;
    let (kind, message) = failure(receive(&mut stream).await);
    assert_eq!(kind, ErrorKind::Failed);
    assert!(message.contains("line 4") && message.contains("often"), "{message}");

    std::fs::write(&daemon.config_file, format!("{good}admin_group = \"wheel\"\n")).unwrap();
    send(&mut stream, &reload).await;
    assert!(matches!(
        receive(&mut stream).await,
        Some(DaemonFrame::Reply { reply }) if matches!(*reply, DaemonReply::Reload(_))
    ));

    // A config its group may write, or a hook program anyone may change, is refused too.
    use std::os::unix::fs::PermissionsExt;
    let chmod = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    chmod(&daemon.config_file, 0o664);
    send(&mut stream, &reload).await;
    let (_, message) = failure(receive(&mut stream).await);
    assert!(message.contains("is writable by its group (mode 0664)"), "{message}");
    chmod(&daemon.config_file, 0o644);
    let hook = daemon.config_file.with_file_name("hook.sh");
    std::fs::write(&hook, "#!/bin/sh\n").unwrap();
    chmod(&hook, 0o757);
    std::fs::write(
        &daemon.config_file,
        format!("{good}[hooks]\non_state_change = \"{} --to ops\"\n", hook.display()),
    )
    .unwrap();
    send(&mut stream, &reload).await;
    let (_, message) = failure(receive(&mut stream).await);
    assert!(message.contains("hook program") && message.contains("chmod go-w"), "{message}");

    let moved: String =
        good.lines().filter(|l| !l.starts_with("socket")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&daemon.config_file, format!("socket = \"/elsewhere.sock\"\n{moved}")).unwrap();
    send(&mut stream, &reload).await;
    let (_, message) = failure(receive(&mut stream).await);
    assert!(message.contains("`socket` cannot change"), "{message}");
    assert_serving(&daemon).await;
}

/// Reload applies what it accepts: a new `[metrics] listen` is bound (and the old one released)
/// without a restart.
#[tokio::test]
async fn a_reload_moves_the_metrics_listener() {
    let daemon = start(Limits::default()).await;
    let mut stream = connected(&daemon).await;
    let reload = ClientFrame::Command { act_as: None, command: CtlCommand::Reload };
    let good = std::fs::read_to_string(&daemon.config_file).unwrap();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let answers = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{what} did not happen within 5 s");
    }

    let first = free();
    assert!(!answers(first));
    std::fs::write(
        &daemon.config_file,
        format!("{good}[metrics]\nlisten = \"127.0.0.1:{first}\"\n"),
    )
    .unwrap();
    send(&mut stream, &reload).await;
    assert!(matches!(receive(&mut stream).await, Some(DaemonFrame::Reply { .. })));
    eventually("serving metrics on the reloaded address", || answers(first)).await;

    let second = free();
    std::fs::write(
        &daemon.config_file,
        format!("{good}[metrics]\nlisten = \"127.0.0.1:{second}\"\n"),
    )
    .unwrap();
    send(&mut stream, &reload).await;
    assert!(matches!(receive(&mut stream).await, Some(DaemonFrame::Reply { .. })));
    eventually("moving to the new address", || answers(second) && !answers(first)).await;
    daemon.shutdown.cancel();
}

/// Sends `links` and collects the page sizes, the links and the closing count.
async fn links(
    daemon: &TestDaemon,
    act_as: Option<&str>,
    all: bool,
    state: Option<mslink_proto::LinkState>,
) -> (Vec<usize>, Vec<mslink_proto::LinkInfo>, u64) {
    let mut stream = connected(daemon).await;
    let command = CtlCommand::Links { all, state };
    send(&mut stream, &ClientFrame::Command { act_as: act_as.map(str::to_owned), command }).await;
    let (mut pages, mut all_links) = (Vec::new(), Vec::new());
    loop {
        match receive(&mut stream).await {
            Some(DaemonFrame::Links { links }) => {
                pages.push(links.len());
                all_links.extend(links);
            }
            Some(DaemonFrame::Reply { reply }) => match *reply {
                DaemonReply::LinksEnd(end) => return (pages, all_links, end.count),
                other => panic!("expected the end of the list, got {other:?}"),
            },
            other => panic!("expected a page, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_stream_in_pages_filtered_in_the_store_and_the_ctl_prints_them_as_one_document() {
    // 1,500 links of root's and 1,000 of daemon's (an account every Debian system has).
    let dir = tempfile::tempdir().unwrap();
    let (state, key_file) = (dir.path().join("state"), dir.path().join("state/mslinkd.key"));
    let later = mslinkd::now() + 86_400;
    let seeds: Vec<seed::Seed> = (0..2500)
        .map(|n| seed::Seed {
            user: if n < 1500 { "root" } else { "daemon" }.into(),
            uid: None,
            email: format!("user{n:04}@contoso.test"),
            token_expiry: later,
            next_check: later,
        })
        .collect();
    seed::office365_links(&state, &key_file, "http://127.0.0.1:9/v1.0", &seeds).await.unwrap();
    let daemon = start_in(dir, &format!("key_file = {key_file:?}\n"), Limits::default()).await;

    let (pages, every, count) = links(&daemon, None, true, None).await;
    assert_eq!((pages, count), (vec![1000, 1000, 500], 2500));
    let order: Vec<(String, String)> =
        every.iter().map(|l| (l.user.clone(), l.email.to_lowercase())).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "in (user, email) order, no page repeated or skipped");
    sorted.dedup();
    assert_eq!(sorted.len(), 2500);

    // Own links; another user's (exactly one full page, then the end); a state none is in.
    assert_eq!(links(&daemon, None, false, None).await.2, 1500);
    let (pages, _, count) = links(&daemon, Some("daemon"), false, None).await;
    assert_eq!((pages, count), (vec![1000], 1000));
    let (pages, _, count) =
        links(&daemon, None, true, Some(mslink_proto::LinkState::NeedsReauth)).await;
    assert_eq!((pages.len(), count), (0, 0));

    // The real ctl: one valid JSON document with every link, and text that counts them.
    let ctl = ctl_binary();
    let out = std::process::Command::new(&ctl)
        .args(["--socket", daemon.socket.to_str().unwrap(), "--json", "status", "--all"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["admin"], true);
    assert_eq!(doc["links"].as_array().unwrap().len(), 2500);
    let out = std::process::Command::new(&ctl)
        .args(["--socket", daemon.socket.to_str().unwrap(), "--user", "daemon"])
        .args(["status", "--state", "active"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("Links in state active:"), "{text}");
    assert!(text.contains("user2499@contoso.test") && text.contains("(1000 links)"), "{text}");
    assert!(!text.contains("user0000@contoso.test"), "root's links are not daemon's: {text}");
    daemon.shutdown.cancel();
    daemon.served.await.unwrap().unwrap();
}

/// The workspace's `mslinkctl`, built beside this test.
fn ctl_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(std::path::Path::parent).unwrap().join("mslinkctl");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}
