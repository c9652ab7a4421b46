//! A real DNS server for tests and benches: Debian's dnsmasq on 127.0.0.1 at a free port, not
//! as a service.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::prerequisite;

/// A real DNS server on 127.0.0.1 at a free port, answering only for `*.test` (anything else
/// there is NXDOMAIN or NODATA, as from an authoritative server), logging every query. Killed
/// when dropped.
#[derive(Debug)]
pub struct Dnsmasq {
    child: Child,
    /// `127.0.0.1:PORT`, for `[network] nameservers`.
    pub addr: String,
    queries: Arc<Queries>,
}

/// The queries dnsmasq logged so far, and a signal for each new one.
#[derive(Debug, Default)]
struct Queries {
    lines: Mutex<Vec<String>>,
    logged: Condvar,
}

/// How long [`Dnsmasq::was_asked`] waits for a query's log line.
const LOGGED_WITHIN: Duration = Duration::from_secs(5);

impl Dnsmasq {
    /// `records`: dnsmasq options such as `--mx-host=...` and `--srv-host=...`. Fails when
    /// dnsmasq is not installed, naming the setup command; `None` only when the run allows that
    /// ([`prerequisite::ALLOW_SKIP`]).
    #[track_caller]
    pub fn start(records: &[String]) -> Option<Dnsmasq> {
        // Debian installs it in /usr/sbin, which is not on every user's PATH.
        let Some(binary) = ["/usr/sbin/dnsmasq", "/sbin/dnsmasq", "/usr/bin/dnsmasq"]
            .into_iter()
            .find(|p| Path::new(p).exists())
        else {
            prerequisite::missing(
                "this test",
                "dnsmasq (Debian `dnsmasq-base`) is not installed",
                &format!("run `{}`", prerequisite::SETUP),
            );
            return None;
        };
        for _ in 0..10 {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|socket| socket.local_addr())
                .expect("a free UDP port")
                .port();
            let mut child = Command::new(binary)
                .args([
                    "--keep-in-foreground",
                    "--no-resolv",
                    "--no-hosts",
                    "--conf-file=/dev/null",
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--log-facility=-",
                    "--log-queries",
                    "--user=root",
                    "--pid-file=",
                    "--local=/test/",
                ])
                .arg(format!("--port={port}"))
                .args(records)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"));
            let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
            if lines.by_ref().map_while(Result::ok).any(|l| l.contains("started, version")) {
                let queries = Arc::new(Queries::default());
                let log = queries.clone();
                std::thread::spawn(move || {
                    for line in lines.map_while(Result::ok) {
                        if line.contains("query[") {
                            log.lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                            log.logged.notify_all();
                        }
                    }
                });
                return Some(Dnsmasq { child, addr: format!("127.0.0.1:{port}"), queries });
            }
            // The port was taken meanwhile: try another.
            let _ = child.wait();
        }
        panic!("dnsmasq did not start");
    }

    /// True when dnsmasq was asked for `kind` (`MX`, `SRV`) records of `name`. Its log line
    /// comes through a pipe and a thread and can arrive after the answer it logs, so this waits
    /// for it, up to [`LOGGED_WITHIN`].
    pub fn was_asked(&self, kind: &str, name: &str) -> bool {
        let wanted = format!("query[{kind}] {name} from");
        let asked = |lines: &Vec<String>| lines.iter().any(|l| l.contains(&wanted));
        let lines = self.queries.lines.lock().unwrap_or_else(|e| e.into_inner());
        let (lines, _) = self
            .queries
            .logged
            .wait_timeout_while(lines, LOGGED_WITHIN, |lines| !asked(lines))
            .unwrap_or_else(|e| e.into_inner());
        asked(&lines)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
