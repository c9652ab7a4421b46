//! `[metrics] listen`: a Prometheus text endpoint (exposition format 0.0.4) at `/metrics`.
//!
//! ```text
//!  daemon.events ──▶ Recorder::record ──▶ Mutex<Counters>   (refreshes, checks, latency, changes)
//!  GET /metrics ──▶ counters + one store read                (links by state, last success per link)
//! ```
//!
//! Gauges that describe links (`mslink_links`, `mslink_link_last_success_timestamp_seconds`) are
//! read from the store at scrape time, so they are right after a restart and a removed link's
//! series disappears. Counters and the latency histogram come from events and start at zero with
//! the process, as Prometheus expects of counters.
//!
//! Ownership: `Counters` sits behind a std `Mutex`, taken only for a few increments or to format
//! the text; never held across an `.await`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use mslink_proto::{LinkInfo, LinkState, Provider};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::config::SharedConfig;
use crate::events::{Bus, BusStats, Event};
use crate::store::Store;

/// Upper bounds (seconds) of the check latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0];
const PROVIDERS: [Provider; 2] = [Provider::Office365, Provider::Exchange];
const RESULTS: [&str; 2] = ["ok", "failed"];

/// What events have counted since the daemon started.
#[derive(Debug, Default)]
pub struct Recorder {
    counters: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    /// (provider, result) → count.
    refreshes: BTreeMap<(&'static str, &'static str), u64>,
    checks: BTreeMap<(&'static str, &'static str), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    /// New state → count of links that entered it.
    state_changes: BTreeMap<&'static str, u64>,
    requests: u64,
    /// Background rounds by what they did.
    rounds: BTreeMap<&'static str, u64>,
}

/// What a background round did, as `mslink_rounds_total{work}` names it.
const ROUND_WORK: [&str; 4] = ["refresh", "check", "refresh_and_check", "idle"];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

fn result(ok: bool) -> &'static str {
    if ok { "ok" } else { "failed" }
}

impl Recorder {
    /// Counts one event.
    pub fn record(&self, event: &Event) {
        let mut c = self.counters.lock().unwrap_or_else(|poison| poison.into_inner());
        match event {
            Event::Refreshed { provider, ok, .. } => {
                *c.refreshes.entry((provider.as_str(), result(*ok))).or_default() += 1;
            }
            Event::Checked { provider, ok, latency, .. } => {
                *c.checks.entry((provider.as_str(), result(*ok))).or_default() += 1;
                c.latency.entry(provider.as_str()).or_default().observe(latency.as_secs_f64());
            }
            Event::LinkState { state, .. } => {
                *c.state_changes.entry(state.as_str()).or_default() += 1;
            }
            Event::Requested { .. } => c.requests += 1,
            Event::Round { refresh, check } => {
                let work = match (refresh, check) {
                    (true, false) => "refresh",
                    (false, true) => "check",
                    (true, true) => "refresh_and_check",
                    (false, false) => "idle",
                };
                *c.rounds.entry(work).or_default() += 1;
            }
            Event::LinkRemoved { .. } | Event::Integration { .. } => {}
        }
    }

    /// Counts events from `events` until `shutdown`.
    pub async fn follow(
        self: Arc<Self>,
        bus: Bus,
        mut events: broadcast::Receiver<Event>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                event = events.recv() => match event {
                    Ok(event) => self.record(&event),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(lost = n, "metrics fell behind the event bus; counters undercount");
                        bus.note_lost("metrics", n);
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }
}

impl From<LinkInfo> for LinkSample {
    fn from(l: LinkInfo) -> Self {
        LinkSample {
            email: l.email,
            user: l.user,
            provider: l.provider,
            state: l.state,
            last_ok: l.last_ok,
        }
    }
}

/// One link as the scrape sees it.
#[derive(Debug, Clone)]
pub struct LinkSample {
    pub email: String,
    pub user: String,
    pub provider: Provider,
    pub state: LinkState,
    pub last_ok: Option<i64>,
}

/// What a scrape read from the store.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub integration_enabled: bool,
    /// Links per state.
    pub counts: Vec<(LinkState, usize)>,
    /// Every link, only with `[metrics] per_link`.
    pub links: Option<Vec<LinkSample>>,
    /// The store writer's commits, and the writes they carried (group commit).
    pub store_commits: u64,
    pub store_writes: u64,
}

/// Renders the whole exposition: counters from `recorder`, gauges from `snapshot`.
pub fn render(recorder: &Recorder, bus: &BusStats, snapshot: &Snapshot) -> String {
    let c = recorder.counters.lock().unwrap_or_else(|poison| poison.into_inner());
    let mut out = String::with_capacity(4096);
    header(&mut out, "mslink_build_info", "gauge", "The running mslinkd's version (always 1).");
    let _ = writeln!(out, "mslink_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));

    header(
        &mut out,
        "mslink_integration_enabled",
        "gauge",
        "1 when an admin has turned the Microsoft integration on.",
    );
    let _ = writeln!(out, "mslink_integration_enabled {}", u8::from(snapshot.integration_enabled));

    header(&mut out, "mslink_links", "gauge", "Links by state.");
    for state in LinkState::ALL {
        let n = snapshot.counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "mslink_links{{state=\"{state}\"}} {n}");
    }

    if let Some(links) = &snapshot.links {
        per_link(&mut out, links);
    }

    for (name, help, map) in [
        ("mslink_refreshes_total", "Token refreshes by provider and result.", &c.refreshes),
        ("mslink_checks_total", "Connectivity checks by provider and result.", &c.checks),
    ] {
        header(&mut out, name, "counter", help);
        for provider in PROVIDERS {
            for result in RESULTS {
                let n = map.get(&(provider.as_str(), result)).copied().unwrap_or(0);
                let _ = writeln!(out, "{name}{{provider=\"{provider}\",result=\"{result}\"}} {n}");
            }
        }
    }

    let name = "mslink_check_duration_seconds";
    header(&mut out, name, "histogram", "How long connectivity checks took, by provider.");
    for provider in PROVIDERS {
        let h = c.latency.get(provider.as_str()).cloned().unwrap_or_default();
        for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
            let _ = writeln!(out, "{name}_bucket{{provider=\"{provider}\",le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{provider=\"{provider}\",le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum{{provider=\"{provider}\"}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{provider=\"{provider}\"}} {}", h.count);
    }

    let name = "mslink_link_state_changes_total";
    header(&mut out, name, "counter", "Links entering each state (new links included).");
    for state in LinkState::ALL {
        let n = c.state_changes.get(state.as_str()).copied().unwrap_or(0);
        let _ = writeln!(out, "{name}{{state=\"{state}\"}} {n}");
    }

    let name = "mslink_requests_total";
    header(&mut out, name, "counter", "Requests for the integration made by users.");
    let _ = writeln!(out, "{name} {}", c.requests);

    let name = "mslink_rounds_total";
    header(
        &mut out,
        name,
        "counter",
        "Background rounds by what they did; `idle` (woken with nothing due) should stay 0.",
    );
    for work in ROUND_WORK {
        let n = c.rounds.get(work).copied().unwrap_or(0);
        let _ = writeln!(out, "{name}{{work=\"{work}\"}} {n}");
    }

    for (name, help, n) in [
        (
            "mslink_store_commits_total",
            "Commits of the state store's writer; each carries one or more writes (group commit).",
            snapshot.store_commits,
        ),
        ("mslink_store_writes_total", "Writes the store's commits carried.", snapshot.store_writes),
    ] {
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {n}");
    }

    let name = "mslink_events_lost_total";
    header(&mut out, name, "counter", "Events a consumer (hooks, metrics) could not pass on.");
    for consumer in ["hooks", "metrics"] {
        let n = bus.lost.get(consumer).copied().unwrap_or(0);
        let _ = writeln!(out, "{name}{{consumer=\"{consumer}\"}} {n}");
    }

    let name = "mslink_hook_events_coalesced_total";
    header(
        &mut out,
        name,
        "counter",
        "Link state changes merged into a later change of the same link before the hook ran.",
    );
    let _ = writeln!(out, "{name} {}", bus.coalesced);
    out
}

/// One series per link (`[metrics] per_link`), labelled with its address and user.
fn per_link(out: &mut String, links: &[LinkSample]) {
    header(
        out,
        "mslink_link_last_success_timestamp_seconds",
        "gauge",
        "When each link last passed a check (Unix seconds); absent until its first success.",
    );
    for link in links {
        if let Some(at) = link.last_ok {
            let _ = writeln!(
                out,
                "mslink_link_last_success_timestamp_seconds{{email=\"{}\",user=\"{}\",provider=\"{}\"}} {at}",
                escape(&link.email),
                escape(&link.user),
                link.provider,
            );
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

#[derive(Debug, Clone)]
struct Endpoint {
    config: SharedConfig,
    store: Store,
    recorder: Arc<Recorder>,
    bus: Bus,
}

async fn scrape(State(endpoint): State<Endpoint>) -> axum::response::Response {
    let per_link = endpoint.config.get().metrics.per_link;
    let (store_commits, store_writes) = (endpoint.store.commits(), endpoint.store.writes());
    let read = async {
        let overview = endpoint.store.overview(per_link).await?;
        Ok::<_, crate::store::StoreError>(Snapshot {
            integration_enabled: overview.enabled,
            counts: overview.counts,
            links: overview.links.map(|links| links.into_iter().map(LinkSample::from).collect()),
            store_commits,
            store_writes,
        })
    };
    match tokio::time::timeout(SCRAPE_BUDGET, read).await {
        Ok(Ok(snapshot)) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            render(&endpoint.recorder, &endpoint.bus.stats(), &snapshot),
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "metrics scrape cannot read the store");
            (StatusCode::SERVICE_UNAVAILABLE, format!("mslinkd cannot read its store: {e}\n"))
                .into_response()
        }
        Err(_) => {
            tracing::error!("metrics scrape: the store did not answer in time");
            (StatusCode::SERVICE_UNAVAILABLE, "mslinkd's store did not answer in time\n")
                .into_response()
        }
    }
}

/// Serves `[metrics] listen` until `shutdown`, following reloads: a changed address is bound
/// anew (and the old one released), a removed one stops the endpoint. An address that cannot be
/// bound is logged and the daemon carries on: keeping links alive matters more than exporting
/// numbers, and Prometheus reports the target down.
pub async fn serve(
    config: SharedConfig,
    store: Store,
    recorder: Arc<Recorder>,
    bus: Bus,
    shutdown: CancellationToken,
) {
    let mut changes = config.changed();
    let mut listen = changes.borrow_and_update().metrics.listen;
    loop {
        let stop = shutdown.child_token();
        let endpoint = Endpoint {
            config: config.clone(),
            store: store.clone(),
            recorder: recorder.clone(),
            bus: bus.clone(),
        };
        let server = listen.and_then(|addr| match bind(addr, endpoint, stop.clone()) {
            Ok(server) => Some(tokio::spawn(server)),
            Err(e) => {
                tracing::error!(listen = %addr, error = %e, "cannot serve metrics on `[metrics] listen`; fix it and reload");
                None
            }
        });
        let next = loop {
            tokio::select! {
                () = shutdown.cancelled() => break None,
                changed = changes.changed() => {
                    if changed.is_err() {
                        break None;
                    }
                    let next = changes.borrow_and_update().metrics.listen;
                    if next != listen {
                        break Some(next);
                    }
                }
            }
        };
        stop.cancel();
        if let Some(server) = server {
            let _ = server.await;
        }
        match next {
            Some(next) => listen = next,
            None => return,
        }
    }
}

/// Binds `addr` now (so a clash is reported at once) and returns the server to spawn.
fn bind(
    addr: SocketAddr,
    endpoint: Endpoint,
    shutdown: CancellationToken,
) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/", get(|| async { "mslinkd: Prometheus metrics are at /metrics\n" }))
        .with_state(endpoint);
    Ok(async move {
        tracing::info!(listen = %bound, "serving Prometheus metrics at /metrics");
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    })
}

/// How long a scrape may wait for the store before answering 503 (kept under Prometheus's
/// default 10 s scrape timeout).
pub const SCRAPE_BUDGET: Duration = Duration::from_secs(8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_and_rendered() {
        let recorder = Recorder::default();
        recorder.record(&Event::Checked {
            email: "a@example.com".into(),
            user: "alice".into(),
            provider: Provider::Exchange,
            ok: true,
            latency: Duration::from_millis(300),
            at: 1_700_000_000,
        });
        recorder.record(&Event::Refreshed {
            email: "a@example.com".into(),
            user: "alice".into(),
            provider: Provider::Office365,
            ok: false,
        });
        let links = vec![LinkSample {
            email: "a\"b@example.com".into(),
            user: "alice".into(),
            provider: Provider::Exchange,
            state: LinkState::Active,
            last_ok: Some(1_700_000_000),
        }];
        let mut snapshot = Snapshot {
            integration_enabled: true,
            counts: vec![(LinkState::Active, 1)],
            links: None,
            store_commits: 3,
            store_writes: 40,
        };
        let text = render(&recorder, &BusStats::default(), &snapshot);
        assert!(!text.contains("example.com"), "no address without [metrics] per_link: {text}");
        snapshot.links = Some(links);
        let text = render(&recorder, &BusStats::default(), &snapshot);
        assert!(text.contains("mslink_links{state=\"active\"} 1\n"), "{text}");
        assert!(text.contains("mslink_checks_total{provider=\"exchange\",result=\"ok\"} 1\n"));
        assert!(
            text.contains("mslink_refreshes_total{provider=\"office365\",result=\"failed\"} 1")
        );
        assert!(
            text.contains(
                "mslink_check_duration_seconds_bucket{provider=\"exchange\",le=\"0.5\"} 1"
            )
        );
        assert!(
            text.contains(
                "mslink_check_duration_seconds_bucket{provider=\"exchange\",le=\"0.25\"} 0"
            )
        );
        assert!(text.contains("email=\"a\\\"b@example.com\""), "{text}");
        assert!(text.contains("\nmslink_store_commits_total 3\n"), "{text}");
        assert!(text.contains("\nmslink_store_writes_total 40\n"), "{text}");
    }
}
