//! The ops tasks in-process: events emitted straight onto `daemon.events` (as the link scheduler
//! does) reach the on_state_change hook and the Prometheus endpoint.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use mslink_bench::seed;
use mslink_e2e::prerequisite;
use mslink_proto::{CtlCommand, DaemonFrame, DaemonReply, LinkState, Provider, decode};
use mslinkd::config::{Config, Env};
use mslinkd::events::{Bus, Event};
use mslinkd::ipc;
use mslinkd::{Listener, Options, run_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

async fn scrape(port: u16) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

async fn wait_for(path: &Path) {
    for _ in 0..500 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} was not written: the hook did not run", path.display());
}

type Served = tokio::task::JoinHandle<Result<(), mslinkd::OpenError>>;

/// An in-process daemon in `dir` with `extra` config, on an event bus the test can emit on.
fn start(dir: &Path, extra: &str) -> (Bus, CancellationToken, Served) {
    let config_file = dir.join("mslinkd.toml");
    let (socket, state) = (dir.join("mslinkd.sock"), dir.join("state"));
    std::fs::write(&config_file, format!("socket = {socket:?}\nstate_dir = {state:?}\n{extra}"))
        .unwrap();
    let config = Config::load(&config_file, true, &Env::default()).unwrap();
    let listener = Listener::Owned(ipc::bind(&config.socket, None).unwrap(), config.socket.clone());
    let bus = Bus::default();
    let shutdown = CancellationToken::new();
    let options = Options { env: Env::default(), events: bus.clone(), ..Options::default() };
    let served = tokio::spawn(run_with(config, listener, shutdown.clone(), options));
    (bus, shutdown, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_events_reach_the_hook_and_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hook.env");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (bus, shutdown, served) = start(
        dir.path(),
        &format!(
            "[hooks]\non_state_change = 'env > {o}.tmp && mv {o}.tmp {o}'\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            o = out.display(),
        ),
    );
    // The endpoint answering means the ops tasks have subscribed.
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    bus.emit(Event::LinkState {
        email: "alice@example.com".into(),
        user: "alice".into(),
        provider: Provider::Office365,
        state: LinkState::NeedsReauth,
        previous: Some(LinkState::Active),
        reason: Some("invalid_grant (AADSTS70008)".into()),
    });
    for (ok, millis) in [(true, 120), (false, 12_000)] {
        bus.emit(Event::Checked {
            email: "alice@example.com".into(),
            user: "alice".into(),
            provider: Provider::Office365,
            ok,
            latency: Duration::from_millis(millis),
            at: 1_700_000_000,
        });
    }
    bus.emit(Event::Refreshed {
        email: "alice@example.com".into(),
        user: "alice".into(),
        provider: Provider::Office365,
        ok: true,
    });

    wait_for(&out).await;
    let env: BTreeMap<String, String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(env["MSLINK_EVENT"], "link_state");
    assert_eq!(env["MSLINK_EMAIL"], "alice@example.com");
    assert_eq!(env["MSLINK_USER"], "alice");
    assert_eq!(env["MSLINK_PROVIDER"], "office365");
    assert_eq!(env["MSLINK_STATE"], "needs_reauth");
    assert_eq!(env["MSLINK_PREVIOUS_STATE"], "active");
    assert_eq!(env["MSLINK_REASON"], "invalid_grant (AADSTS70008)");

    // Counters are fed asynchronously: poll until the last event shows.
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape(port).await;
        if text.contains("mslink_refreshes_total{provider=\"office365\",result=\"ok\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for line in [
        "mslink_refreshes_total{provider=\"office365\",result=\"ok\"} 1",
        "mslink_checks_total{provider=\"office365\",result=\"ok\"} 1",
        "mslink_checks_total{provider=\"office365\",result=\"failed\"} 1",
        "mslink_check_duration_seconds_bucket{provider=\"office365\",le=\"0.25\"} 1",
        "mslink_check_duration_seconds_bucket{provider=\"office365\",le=\"20\"} 2",
        "mslink_check_duration_seconds_count{provider=\"office365\"} 2",
        "mslink_link_state_changes_total{state=\"needs_reauth\"} 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    parse_with_prometheus_client(&text);

    shutdown.cancel();
    served.await.unwrap().unwrap();
}

/// Feeds the exposition to the reference Python parser (`.ci/setup` installs it; a missing one
/// fails the test unless `MSLINK_TESTS_ALLOW_SKIP=1`).
fn parse_with_prometheus_client(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if !prerequisite::require_python_module("prometheus_client", "the prometheus_client parse") {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scripts/parse_metrics.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let histogram = &parsed["families"]["mslink_check_duration_seconds"];
    assert_eq!(histogram["type"], "histogram");
    let count = histogram["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s[0] == "mslink_check_duration_seconds_count" && s[1]["provider"] == "office365")
        .unwrap();
    assert_eq!(count[2], 2.0);
}

/// A storm of state changes against a slow hook: every link's last state reaches the hook, runs
/// for one link never overlap or reorder, and nothing is lost (what was merged is counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_state_changes_reach_a_slow_hook() {
    const LINKS: usize = 100;
    const CHANGES: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("runs");
    // Each run takes 20 ms; a run for a link that overlapped another of the same link would
    // leave a `.lock` behind and be recorded as such.
    let hook = format!(
        r#"l="{dir}/$MSLINK_EMAIL.lock"; [ -e "$l" ] && echo OVERLAP >> {out}; touch "$l"; sleep 0.02; echo "$MSLINK_SEQ $MSLINK_EMAIL $MSLINK_STATE $MSLINK_REASON" >> {out}; rm "$l""#,
        dir = dir.path().display(),
        out = out.display(),
    );
    let (bus, shutdown, served) =
        start(dir.path(), &format!("[hooks]\non_state_change = {hook:?}\n"));
    // The daemon is serving (and its ops tasks subscribed) once it answers on its socket.
    for _ in 0..500 {
        if tokio::net::UnixStream::connect(dir.path().join("mslinkd.sock")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let states =
        [LinkState::Active, LinkState::Degraded, LinkState::NeedsReauth, LinkState::Blocked];
    for n in 0..CHANGES {
        bus.emit(Event::LinkState {
            email: format!("user{}@example.com", n % LINKS),
            user: "alice".into(),
            provider: Provider::Office365,
            state: states[(n / LINKS) % states.len()],
            previous: None,
            reason: Some(format!("change {n}")),
        });
        if n % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // The last change of link i is number CHANGES - LINKS + i.
    let last_state = states[((CHANGES - 1) / LINKS) % states.len()];
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let lines = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let done = (0..LINKS)
            .all(|i| lines.iter().any(|l| l.ends_with(&format!("change {}", CHANGES - LINKS + i))));
        if done {
            break lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every final state arrived: {} runs",
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    shutdown.cancel();
    served.await.unwrap().unwrap();

    assert!(!lines.iter().any(|l| l == "OVERLAP"), "two runs for one link overlapped");
    let stats = bus.stats();
    assert_eq!(stats.lost.values().sum::<u64>(), 0, "{stats:?}");
    assert_eq!(lines.len() as u64 + stats.coalesced, CHANGES as u64, "{stats:?}");
    for i in 0..LINKS {
        let email = format!(" user{i}@example.com ");
        let mine: Vec<(u64, &str)> = lines
            .iter()
            .filter(|l| l.contains(&email))
            .map(|l| (l.split(' ').next().unwrap().parse().unwrap(), l.as_str()))
            .collect();
        let seqs: Vec<u64> = mine.iter().map(|(s, _)| *s).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "runs of one link in order: {seqs:?}");
        let (_, last) = mine.last().unwrap();
        assert!(last.contains(&format!(" {last_state} ")), "{last}");
    }
}

/// A server that accepts connections and never answers, counting them on `accepted`.
async fn hanging_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (accepted, count) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            let _ = accepted.send(());
        }
    });
    (url, count)
}

/// The config of a daemon with `key_file` whose Microsoft endpoints are all at `url`.
fn office365_at(url: &str, key_file: &Path) -> String {
    format!(
        "key_file = {key_file:?}\n[office365]\nclient_id = \"mslink-test\"\n\
         authority = \"{url}/organizations/v2.0\"\nauthorize_url = \"{url}/auth\"\n\
         token_url = \"{url}/token\"\ndevice_code_url = \"{url}/device\"\n\
         graph_url = \"{url}/v1.0\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_every_check_hung_finishes_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut accepted) = hanging_server().await;
    // Twenty links due for a check now, against a Graph that never answers.
    let state = dir.path().join("state");
    let key_file = state.join("mslinkd.key");
    let links: Vec<seed::Seed> = (0..20)
        .map(|n| seed::Seed {
            user: "alice".into(),
            uid: None,
            email: format!("user{n}@contoso.test"),
            token_expiry: mslinkd::now() + 3600,
            next_check: mslinkd::now() - 1,
        })
        .collect();
    seed::office365_links(&state, &key_file, &format!("{url}/v1.0"), &links).await.unwrap();
    let (_bus, shutdown, served) = start(dir.path(), &office365_at(&url, &key_file));
    // Every slot (16 by default) hangs on a check.
    for _ in 0..16 {
        tokio::time::timeout(Duration::from_secs(30), accepted.recv())
            .await
            .expect("the checks did not start")
            .unwrap();
    }
    shutdown.cancel();
    // Each hung request would take its 30 s timeout; the stop gives rounds 5 s, then drops them.
    tokio::time::timeout(Duration::from_secs(15), served)
        .await
        .expect("the daemon did not stop within 15 s with its checks hung")
        .unwrap()
        .unwrap();
}

/// `token` with a fresh token held answers at once, even while the link's own round hangs on
/// a server (it holds the link's turn for up to the 30 s request timeout): mail tools ask on
/// every connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_token_is_handed_out_while_the_links_check_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut accepted) = hanging_server().await;
    let (state, key_file) = (dir.path().join("state"), dir.path().join("state/mslinkd.key"));
    let now = mslinkd::now();
    // root's link (the test runs as root), its check due now against a Graph that hangs.
    let link = seed::Seed {
        user: "root".into(),
        uid: None,
        email: "root@contoso.test".into(),
        token_expiry: now + 3600,
        next_check: now - 1,
    };
    seed::office365_links(&state, &key_file, &format!("{url}/v1.0"), &[link]).await.unwrap();
    let (_bus, shutdown, _served) = start(dir.path(), &office365_at(&url, &key_file));
    let socket = dir.path().join("mslinkd.sock");
    tokio::time::timeout(Duration::from_secs(30), accepted.recv())
        .await
        .expect("the check did not start")
        .unwrap();
    mslink_bench::ctl::call(&socket, CtlCommand::Enable).await.unwrap();

    let command = CtlCommand::Token {
        email: "root@contoso.test".into(),
        resource: mslink_proto::TokenResource::Graph,
    };
    let answer =
        tokio::time::timeout(Duration::from_secs(10), mslink_bench::ctl::call(&socket, command))
            .await
            .expect("token waited for the hung round")
            .unwrap();
    match decode::<DaemonFrame>(&answer).unwrap() {
        DaemonFrame::Reply { reply } => match *reply {
            DaemonReply::Token(token) => {
                assert_eq!(token.access_token.expose(), "at:root@contoso.test:0");
            }
            other => panic!("expected a token, got {other:?}"),
        },
        other => panic!("expected a token, got {other:?}"),
    }
    shutdown.cancel();
}
