//! A real DNS server for tests and benches: Debian's dnsmasq on 127.0.0.1 at a free port, not
//! as a service. Included with `#[path]` by the test and bench targets that need it.

#[path = "../../../tests/src/prerequisite.rs"]
mod prerequisite;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A real DNS server on 127.0.0.1 at a free port, answering only for `*.test` (anything else
/// there is NXDOMAIN or NODATA, as from an authoritative server), logging every query.
pub struct Dnsmasq {
    _child: Child,
    /// `127.0.0.1:PORT`, for `[network] nameservers`.
    pub addr: String,
    queries: Arc<Mutex<Vec<String>>>,
}

impl Dnsmasq {
    /// `records`: dnsmasq options such as `--mx-host=...` and `--srv-host=...`. Fails when
    /// dnsmasq is not installed, naming `.ci/setup`; `None` only when the run allows that
    /// (`MSLINK_TESTS_ALLOW_SKIP=1`, see `tests/src/prerequisite.rs`).
    pub async fn start(records: &[String]) -> Option<Dnsmasq> {
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
            let port =
                std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
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
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("started, version") {
                    let queries = Arc::new(Mutex::new(Vec::new()));
                    let log = queries.clone();
                    tokio::spawn(async move {
                        while let Ok(Some(line)) = lines.next_line().await {
                            if line.contains("query[") {
                                log.lock().unwrap().push(line);
                            }
                        }
                    });
                    return Some(Dnsmasq {
                        _child: child,
                        addr: format!("127.0.0.1:{port}"),
                        queries,
                    });
                }
            }
            // The port was taken meanwhile: try another.
            let _ = child.wait().await;
        }
        panic!("dnsmasq did not start");
    }

    /// True when dnsmasq was asked for `kind` (`MX`, `SRV`) records of `name`.
    #[allow(dead_code)] // not every target that includes this module asks
    pub fn was_asked(&self, kind: &str, name: &str) -> bool {
        let wanted = format!("query[{kind}] {name} from");
        self.queries.lock().unwrap().iter().any(|line| line.contains(&wanted))
    }
}
