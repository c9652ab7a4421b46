//! Provider detection (SPEC §6): is an address on Office365 or on an on-premises Exchange?
//!
//! Every probe runs at once under one deadline (`[detection] timeout`). No probe sends a
//! credential. The answer is decided from all the evidence gathered, by strength, never by which
//! server answered first: the strongest evidence that points anywhere decides, and when evidence
//! of that strength points both ways the answer is `conflicting`.
//!
//! | strength | Office365 | Exchange |
//! | --- | --- | --- |
//! | mailbox: about this address | Autodiscover v2's EWS URL at Exchange Online (after its redirects); POX Autodiscover XML sending the address to Exchange Online (`redirectAddr` to `*.onmicrosoft.com`, `redirectUrl` or EWS URL at Microsoft's hosts) | Autodiscover v2's EWS URL elsewhere; POX XML with an EWS URL elsewhere |
//! | strong: about the domain | user realm `Managed` or `Federated` | POX Autodiscover asks for NTLM or Negotiate; other POX XML |
//! | medium | MX to Exchange Online Protection; the HTTP redirect method or SRV pointing at Microsoft's Autodiscover hosts | POX asks for Basic only; the HTTP redirect method or SRV pointing elsewhere |
//! | weak | an Entra tenant exists for the domain (many on-premises organisations have one) | – |
//!
//! Microsoft's hosts are those of the configured `[office365] cloud` (and, named as such in the
//! evidence, of the other clouds). A hybrid organisation's domain has both strong kinds; its
//! mailboxes are told apart only by the mailbox-strength evidence, so that is asked per address.
//!
//! ```text
//!   spawn the probes not answered by the cache ──▶ a finding arrives ──▶ decide(all findings)
//!        ▲                                                                   │
//!        └──── no: keep waiting (until the deadline) ◀── can a probe still out ──┘
//!                                                          outweigh the answer?
//!                                                                │ no (or deadline)
//!                                                                ▼
//!                                        answer (office365 / exchange / conflicting / unknown)
//! ```
//!
//! A probe still out can change the answer when its ceiling (the strongest evidence it can give,
//! [`probes::Probe::ceiling`]) is at least the strength that decides now. Evidence about the
//! address is cached per address, evidence about the domain per domain.

mod probes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mslink_proto::{DetectReply, Evidence, Provider};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::config::Config;
use probes::{Finding, Probe, Scope};

/// How much a piece of evidence weighs (the module table). Ordered: weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// Suggestive only.
    Weak,
    /// About the domain, but often left over from a migration.
    Medium,
    /// About the domain, from the service itself.
    Strong,
    /// About this address's mailbox.
    Mailbox,
}

impl Strength {
    /// The name shown in evidence summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Strength::Weak => "weak",
            Strength::Medium => "medium",
            Strength::Strong => "strong",
            Strength::Mailbox => "mailbox",
        }
    }
}

/// The compact summary of what decided a detection: small enough to store on the link and show
/// in `status --verbose` (SPEC §6 "the evidence that decided it").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    /// `None`: unknown or conflicting.
    pub provider: Option<Provider>,
    /// True when evidence of the deciding strength pointed both ways.
    pub conflicting: bool,
    /// The strength of the deciding evidence; `None` when nothing pointed anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<Strength>,
    /// The evidence of that strength (every piece, both ways when conflicting).
    pub by: Vec<Evidence>,
}

impl Decided {
    /// Decides from `findings` (in any order: the answer does not depend on it).
    fn from_findings(findings: &[Finding]) -> Decided {
        let strength = findings.iter().filter_map(|f| f.strength).max();
        let by: Vec<Evidence> = findings
            .iter()
            .filter(|f| f.strength.is_some() && f.strength == strength)
            .map(|f| f.evidence.clone())
            .collect();
        let says = |p: Provider| by.iter().any(|e| e.points_to == Some(p));
        let conflicting = says(Provider::Office365) && says(Provider::Exchange);
        let provider = if conflicting { None } else { by.first().and_then(|e| e.points_to) };
        Decided { provider, conflicting, strength, by }
    }

    /// True when no probe in `pending` can outweigh or contradict this answer.
    fn settled(&self, pending: &[Probe]) -> bool {
        match self.strength {
            None => pending.is_empty(),
            Some(strength) => pending.iter().all(|p| p.ceiling() < strength),
        }
    }
}

/// A detection's full result: the reply for the client, and the summary to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub reply: DetectReply,
    pub decided: Decided,
}

/// Findings remembered for a while, per domain and per address.
#[derive(Debug, Default)]
struct Cache {
    domains: HashMap<String, (Instant, Vec<Finding>)>,
    addresses: HashMap<String, (Instant, Vec<Finding>)>,
}

/// Detection with a short-lived cache of findings: evidence about the domain per domain,
/// evidence about one mailbox per address.
///
/// Ownership: the cache is behind a std mutex held only to read or insert, never across
/// `.await`.
#[derive(Debug, Default)]
pub struct Detector {
    cache: Mutex<Cache>,
}

impl Detector {
    /// Detects the provider serving `email`, reusing recent findings.
    pub async fn detect(&self, config: Arc<Config>, email: &str) -> DetectReply {
        self.detect_with_summary(config, email).await.reply
    }

    /// Like [`Detector::detect`], with the summary of the deciding evidence.
    pub async fn detect_with_summary(&self, config: Arc<Config>, email: &str) -> Detection {
        let domain = domain_of(email).to_ascii_lowercase();
        let address = email.trim().to_ascii_lowercase();
        let ttl = config.detection.cache_ttl;
        let fresh = |entry: Option<&(Instant, Vec<Finding>)>| {
            entry.filter(|(at, _)| at.elapsed() < ttl).map(|(_, f)| f.clone())
        };
        let (known_domain, known_address) = {
            let cache = self.cache_lock();
            (fresh(cache.domains.get(&domain)), fresh(cache.addresses.get(&address)))
        };
        let probes: Vec<Probe> = probes::ALL
            .into_iter()
            .filter(|p| match p.scope() {
                Scope::Domain => known_domain.is_none(),
                Scope::Address => known_address.is_none(),
            })
            .collect();
        let cached = known_domain.is_some();
        let known: Vec<Finding> = known_domain.into_iter().chain(known_address).flatten().collect();
        let started = Instant::now();
        let gathered = gather(&config, email, &known, &probes).await;

        // An unknown answer may be a passing network failure: ask again next time. A scope with
        // a probe that never answered is not complete enough to reuse either.
        let all: Vec<Finding> =
            known.into_iter().chain(gathered.findings.iter().cloned()).collect();
        let decided = Decided::from_findings(&all);
        if decided.provider.is_some() {
            let now = Instant::now();
            let mut cache = self.cache_lock();
            for scope in [Scope::Domain, Scope::Address] {
                let asked = probes.iter().any(|p| p.scope() == scope);
                if !asked || gathered.unanswered.iter().any(|p| p.scope() == scope) {
                    continue;
                }
                let mine: Vec<Finding> = gathered
                    .findings
                    .iter()
                    .filter(|f| f.probe.scope() == scope)
                    .cloned()
                    .collect();
                match scope {
                    Scope::Domain => cache.domains.insert(domain.clone(), (now, mine)),
                    Scope::Address => cache.addresses.insert(address.clone(), (now, mine)),
                };
            }
        }
        finish(email, all, &gathered.unanswered, gathered.why_unanswered, started, cached)
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The part after the `@`.
pub fn domain_of(email: &str) -> &str {
    email.rsplit_once('@').map_or(email, |(_, domain)| domain)
}

/// Runs every probe for `email` and decides, without a cache.
pub async fn detect(config: Arc<Config>, email: &str) -> DetectReply {
    let started = Instant::now();
    let gathered = gather(&config, email, &[], &probes::ALL).await;
    finish(email, gathered.findings, &gathered.unanswered, gathered.why_unanswered, started, false)
        .reply
}

/// The `probe` name of the note about probes that were not waited for.
const UNANSWERED: &str = "unanswered";

/// What [`gather`] found.
struct Gathered {
    findings: Vec<Finding>,
    /// The probes still out when gathering stopped.
    unanswered: Vec<Probe>,
    why_unanswered: &'static str,
}

/// Runs `probes` until their answers, with the `known` findings, settle the question, or the
/// deadline passes.
async fn gather(
    config: &Arc<Config>,
    email: &str,
    known: &[Finding],
    probes: &[Probe],
) -> Gathered {
    let deadline = tokio::time::Instant::now() + config.detection.timeout;
    let mut running = JoinSet::new();
    let mut ids = HashMap::new();
    for &probe in probes {
        let (config, email) = (config.clone(), email.to_owned());
        let handle = running.spawn(async move { probe.run(&config, &email).await });
        ids.insert(handle.id(), probe);
    }
    let mut findings: Vec<Finding> = Vec::new();
    let mut pending: Vec<Probe> = probes.to_vec();
    let mut why = "they did not answer before the deadline";
    while !pending.is_empty() {
        let so_far: Vec<Finding> = known.iter().chain(&findings).cloned().collect();
        if Decided::from_findings(&so_far).settled(&pending) {
            why = "their answers could not change the decision";
            break;
        }
        match tokio::time::timeout_at(deadline, running.join_next_with_id()).await {
            Ok(Some(Ok((id, found)))) => {
                pending.retain(|p| Some(p) != ids.get(&id));
                findings.push(found);
            }
            Ok(Some(Err(e))) => {
                pending.retain(|p| Some(p) != ids.get(&e.id()));
                tracing::warn!(error = %e, "a detection probe failed");
            }
            Ok(None) | Err(_) => break,
        }
    }
    running.abort_all();
    Gathered { findings, unanswered: pending, why_unanswered: why }
}

/// The reply and summary for `findings`, shown in the probes' own order (not arrival order, so
/// the same evidence always reads the same).
fn finish(
    email: &str,
    mut findings: Vec<Finding>,
    unanswered: &[Probe],
    why_unanswered: &str,
    started: Instant,
    cached: bool,
) -> Detection {
    findings.sort_by_key(|f| probes::ALL.iter().position(|p| *p == f.probe));
    let decided = Decided::from_findings(&findings);
    let mut evidence: Vec<Evidence> = findings.into_iter().map(|f| f.evidence).collect();
    if !unanswered.is_empty() {
        let names: Vec<&str> = unanswered.iter().map(|p| p.name()).collect();
        evidence.push(Evidence {
            probe: UNANSWERED.into(),
            points_to: None,
            detail: format!(
                "{} slower probe(s) were not waited for ({}): {why_unanswered}",
                unanswered.len(),
                names.join(", ")
            ),
        });
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        email,
        provider = decided.provider.map_or("unknown", Provider::as_str),
        conflicting = decided.conflicting,
        strength = decided.strength.map_or("none", Strength::as_str),
        elapsed_ms,
        cached,
        "provider detection finished"
    );
    Detection {
        reply: DetectReply {
            email: email.to_owned(),
            provider: decided.provider,
            conflicting: decided.conflicting,
            evidence,
            elapsed_ms,
            cached,
        },
        decided,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(probe: Probe, to: Option<Provider>, strength: Strength) -> Finding {
        Finding {
            probe,
            evidence: Evidence { probe: probe.name().into(), points_to: to, detail: String::new() },
            strength: to.map(|_| strength),
        }
    }

    const O365: Option<Provider> = Some(Provider::Office365);
    const EXCHANGE: Option<Provider> = Some(Provider::Exchange);

    #[test]
    fn the_strongest_evidence_decides_in_any_order() {
        let realm = finding(Probe::UserRealm, O365, Strength::Strong);
        let pox = finding(Probe::AutodiscoverHost, EXCHANGE, Strength::Strong);
        let v2 = finding(Probe::AutodiscoverV2, EXCHANGE, Strength::Mailbox);
        let mx = finding(Probe::Mx, O365, Strength::Medium);
        let srv = finding(Probe::Srv, EXCHANGE, Strength::Medium);
        for order in [[&realm, &pox], [&pox, &realm]] {
            let decided = Decided::from_findings(&order.map(Clone::clone));
            assert!(decided.conflicting && decided.provider.is_none(), "{decided:?}");
            assert_eq!((decided.strength, decided.by.len()), (Some(Strength::Strong), 2));
        }
        let hybrid = Decided::from_findings(&[mx.clone(), realm.clone(), pox, v2]);
        assert_eq!((hybrid.provider, hybrid.conflicting), (EXCHANGE, false));
        assert_eq!(hybrid.by.len(), 1);
        // A weaker disagreement does not make a conflict.
        let decided = Decided::from_findings(&[srv, realm, mx]);
        assert_eq!((decided.provider, decided.conflicting), (O365, false));
        // The summary is compact and serialisable.
        let json = serde_json::to_value(&decided).unwrap();
        assert_eq!(json["strength"], "strong");
        assert_eq!(json["by"][0]["probe"], "user_realm");
    }

    #[test]
    fn a_probe_that_could_outweigh_the_answer_is_waited_for() {
        let realm = Decided::from_findings(&[finding(Probe::UserRealm, O365, Strength::Strong)]);
        assert!(!realm.settled(&[Probe::AutodiscoverV2]));
        assert!(realm.settled(&[Probe::Mx, Probe::Srv, Probe::OpenIdConfiguration]));
        let v2 = Decided::from_findings(&[finding(Probe::AutodiscoverV2, O365, Strength::Mailbox)]);
        assert!(!v2.settled(&[Probe::AutodiscoverHost]), "another mailbox answer may conflict");
        assert!(v2.settled(&[Probe::UserRealm, Probe::AutodiscoverHttpRedirect]));
        let nothing = Decided::from_findings(&[finding(Probe::Mx, None, Strength::Weak)]);
        assert!(!nothing.settled(&[Probe::OpenIdConfiguration]) && nothing.settled(&[]));
    }
}
