//! The real and faithful-fake peers of `tests/peers/`, started on loopback for one test each:
//! `oidc.mjs` (a real OAuth2/OIDC server), `graph.mjs` (fake Graph), `signin.mjs` (Chromium),
//! `ews/ews_server.py` (fake EWS with a real NTLM acceptor). `.ci/setup` installs what they need.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// `tests/peers/` in the workspace.
pub fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))
}

/// A peer process, killed when dropped.
#[derive(Debug)]
pub struct Peer {
    child: Child,
    /// The base URL from its `READY` line.
    pub url: String,
    /// The rest of the `READY` line (the EWS fake's plain-HTTP URL).
    pub extra: Vec<String>,
}

impl Peer {
    /// Starts `program ARGS` in `tests/peers` and waits for its `READY` line.
    #[track_caller]
    pub fn start(program: &str, args: &[&str]) -> Peer {
        Peer::try_start(program, args).unwrap_or_else(|e| panic!("{e} (run .ci/setup?)"))
    }

    /// [`Peer::start`], or why the peer did not get to `READY` (it could not bind its address,
    /// say, and exited).
    pub fn try_start(program: &str, args: &[&str]) -> Result<Peer, String> {
        let mut child = Command::new(program)
            .args(args)
            .current_dir(dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {program} {args:?}: {e}"))?;
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = tx.send(first);
            for _ in lines {}
        });
        let Some(line) = rx.recv_timeout(Duration::from_secs(60)).ok().flatten() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{program} {args:?} did not print READY"));
        };
        let mut words = line.split_whitespace();
        if words.next() != Some("READY") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{program} {args:?} said {line:?} instead of READY"));
        }
        let url = words.next().unwrap_or_default().trim_end_matches('/').to_owned();
        Ok(Peer { child, url, extra: words.map(str::to_owned).collect() })
    }

    /// Stops the peer now (a provider going down mid-test).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `node tests/peers/NAME ARGS --exit-with-stdin`.
    #[track_caller]
    pub fn node(script: &str, args: &[&str]) -> Peer {
        assert!(
            dir().join("node_modules").is_dir(),
            "the Node peers are not installed: run `bash .ci/setup` (or `cd tests/peers && npm ci`)"
        );
        let mut all = vec![script];
        all.extend_from_slice(args);
        all.push("--exit-with-stdin");
        Peer::start("node", &all)
    }

    /// POSTs JSON to a `/test/...` control endpoint of this peer.
    pub fn control(&self, path: &str, json: &str) {
        self.curl(path, &["-X", "POST", "-H", "Content-Type: application/json", "--data", json]);
    }

    /// GETs a `/test/...` observation endpoint of this peer as JSON.
    pub fn observe(&self, path: &str) -> serde_json::Value {
        let body = self.curl(path, &[]);
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// `curl ARGS URL/path`, failing the test on an HTTP error; the answer's body.
    fn curl(&self, path: &str, args: &[&str]) -> Vec<u8> {
        let out = Command::new("curl")
            .args(["-sS", "-k", "--fail"])
            .args(args)
            .arg(format!("{}{path}", self.url))
            .output()
            .expect("curl");
        assert!(out.status.success(), "{path}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Signs in through the provider's pages in a real headless Chromium.
pub fn signin(args: &[&str]) -> Output {
    Command::new("node")
        .arg("signin.mjs")
        .args(args)
        .current_dir(dir())
        .output()
        .expect("run signin.mjs (run .ci/setup)")
}

/// The daemon's config for the OIDC peer `oidc` and the Graph fake `graph` (plus `office365`,
/// more `[office365]` keys), with a schedule short enough for tests to see refreshes and retries.
pub fn office365_config(oidc: &Peer, graph: &Peer, office365: &str) -> String {
    let o = &oidc.url;
    format!(
        "[office365]\nclient_id = \"mslink-test\"\n\
         authority = \"{o}/organizations/v2.0\"\nauthorize_url = \"{o}/auth\"\n\
         token_url = \"{o}/token\"\ndevice_code_url = \"{o}/device/auth\"\n\
         graph_url = \"{g}/v1.0\"\n\
         scopes = [\"openid\", \"offline_access\", \"User.Read\", \"Mail.Read\", \"Calendars.Read\"]\n\
         {office365}\n\
         [schedule]\nrefresh_before_expiry = \"1s\"\nretry_min = \"1s\"\nretry_max = \"2s\"\n",
        g = graph.url
    )
}

/// The Graph fake, validating tokens at `oidc`'s introspection endpoint.
pub fn graph_for(oidc: &Peer) -> Peer {
    Peer::node(
        "graph.mjs",
        &["--port", "0", "--introspect", &format!("{}/token/introspection", oidc.url)],
    )
}
