//! Provider detection (SPEC §6): is an address on Office365 or on an on-premises Exchange?
//!
//! Every probe runs at once under one deadline (`[detection] timeout`). No probe sends a
//! credential. The answer is decided by the first decisive evidence, after a short settle window
//! in which contrary evidence already on its way can still arrive; slow probes are not waited
//! for.
//!
//! ```text
//!   spawn probes ──▶ evidence arrives ──▶ points to P? ──no──▶ keep waiting (until deadline)
//!                                            │yes
//!                                            ▼
//!                                 settle window (SETTLE) ── contrary evidence? ──▶ conflicting
//!                                            │ none
//!                                            ▼
//!                                       answer P; abort the rest
//! ```

mod probes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mslink_proto::{DetectReply, Evidence, Provider};
use tokio::task::JoinSet;

use crate::config::Config;

/// How long to keep listening for contrary evidence after the first decisive answer.
const SETTLE: Duration = Duration::from_millis(250);

/// Detection with a short-lived per-domain cache of decided answers.
///
/// Ownership: the cache is behind a std mutex held only to read or insert, never across
/// `.await`.
#[derive(Debug, Default)]
pub struct Detector {
    cache: Mutex<HashMap<String, (Instant, DetectReply)>>,
}

impl Detector {
    /// Detects the provider serving `email`, from the cache when a recent answer exists.
    pub async fn detect(&self, config: Arc<Config>, email: &str) -> DetectReply {
        let domain = domain_of(email).to_ascii_lowercase();
        let ttl = config.detection.cache_ttl;
        if let Some((at, reply)) = self.cache_lock().get(&domain)
            && at.elapsed() < ttl
        {
            return DetectReply { email: email.to_owned(), cached: true, ..reply.clone() };
        }
        let reply = detect(config, email).await;
        // An unknown answer may be a passing network failure: ask again next time.
        if reply.provider.is_some() {
            self.cache_lock().insert(domain, (Instant::now(), reply.clone()));
        }
        reply
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, DetectReply)>> {
        self.cache.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The part after the `@`.
pub fn domain_of(email: &str) -> &str {
    email.rsplit_once('@').map_or(email, |(_, domain)| domain)
}

/// Runs every probe for `email` and decides.
pub async fn detect(config: Arc<Config>, email: &str) -> DetectReply {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + config.detection.timeout;
    let mut probes = JoinSet::new();
    for probe in probes::all() {
        let (config, email) = (config.clone(), email.to_owned());
        probes.spawn(async move { probe.run(&config, &email).await });
    }
    let mut evidence: Vec<Evidence> = Vec::new();
    let mut decided: Option<(Provider, tokio::time::Instant)> = None;
    loop {
        let until = decided.map_or(deadline, |(_, at)| at.min(deadline));
        match tokio::time::timeout_at(until, probes.join_next()).await {
            Ok(Some(Ok(found))) => {
                if let (None, Some(provider)) = (decided, found.points_to) {
                    decided = Some((provider, tokio::time::Instant::now() + SETTLE));
                }
                evidence.push(found);
            }
            Ok(Some(Err(e))) => tracing::warn!(error = %e, "a detection probe failed"),
            Ok(None) | Err(_) => break,
        }
    }
    let unanswered = probes.len();
    probes.abort_all();
    if unanswered > 0 {
        evidence.push(Evidence {
            probe: "unanswered".into(),
            points_to: None,
            detail: format!("{unanswered} slower probe(s) were not waited for"),
        });
    }
    let says = |p: Provider| evidence.iter().any(|e| e.points_to == Some(p));
    let conflicting = says(Provider::Office365) && says(Provider::Exchange);
    let provider = if conflicting { None } else { decided.map(|(p, _)| p) };
    tracing::info!(
        email,
        provider = provider.map_or("unknown", Provider::as_str),
        conflicting,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "provider detection finished"
    );
    DetectReply {
        email: email.to_owned(),
        provider,
        conflicting,
        evidence,
        elapsed_ms: started.elapsed().as_millis() as u64,
        cached: false,
    }
}
