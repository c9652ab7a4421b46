//! One round of background work on one link: refresh the token if it is about to expire, check
//! the mailbox if a check is due, and commit the outcome.
//!
//! Network I/O runs with no lock held and nothing borrowed from the store; every commit carries
//! the generation the work started from, so a link re-linked, disabled or removed meanwhile is
//! left alone (STYLE habit 6).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use mslink_proto::{ErrorKind, LinkState, Provider, TokenReply, WireError};
use rand::Rng;

use super::LinkSecret;
use crate::Daemon;
use crate::config::Config;
use crate::events::Event;
use crate::exchange::{self, ExchangeEndpoint};
use crate::health::{Actor, CheckReport, Failure};
use crate::office365;
use crate::store::{LinkRecord, Outcome, StoreError, Transition};

/// Per-link turns: at most one round (refresh, check, `token`) runs on a link at a time.
///
/// Ownership: the map is behind a std mutex held only to find or insert an entry, never across
/// `.await`; entries are weak, so links nobody is working on cost nothing.
#[derive(Debug, Default)]
pub struct LinkTurns {
    turns: std::sync::Mutex<HashMap<i64, Weak<tokio::sync::Mutex<()>>>>,
}

impl LinkTurns {
    /// Waits for link `id`'s turn; the turn ends when the guard is dropped.
    pub async fn take(&self, id: i64) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = {
            let mut turns = self.turns.lock().unwrap_or_else(|poison| poison.into_inner());
            match turns.get(&id).and_then(Weak::upgrade) {
                Some(turn) => turn,
                None => {
                    if turns.len() >= 1024 {
                        turns.retain(|_, turn| turn.strong_count() > 0);
                    }
                    let turn = Arc::new(tokio::sync::Mutex::new(()));
                    turns.insert(id, Arc::downgrade(&turn));
                    turn
                }
            }
        };
        turn.lock_owned().await
    }
}

/// `base` ± 10 %, in whole seconds, so a thousand links linked together spread out.
pub(super) fn jittered(base: Duration) -> i64 {
    let secs = base.as_secs_f64();
    (secs * rand::rng().random_range(0.9..=1.1)).round().max(1.0) as i64
}

/// The wait before retry number `failures` (1-based): exponential from `retry_min`, capped at
/// `retry_max`, with "equal jitter" (half fixed, half random), and never shorter than what the
/// server asked for. A server's `Retry-After` gets jitter of its own (up to half of it, at least
/// 2 s): every link throttled together would otherwise come back in the same second.
pub(super) fn backoff(config: &Config, failures: u32, server_asked: Option<Duration>) -> Duration {
    let min = config.schedule.retry_min.as_secs_f64();
    let max = config.schedule.retry_max.as_secs_f64();
    let exp = (min * 2f64.powi(failures.saturating_sub(1).min(30) as i32)).min(max);
    let wait = exp / 2.0 + rand::rng().random_range(0.0..=exp / 2.0);
    let server = server_asked.map_or(0.0, |asked| {
        let asked = asked.as_secs_f64();
        asked + rand::rng().random_range(0.0..=(asked / 2.0).max(2.0))
    });
    Duration::from_secs_f64(wait.max(server))
}

/// Emits the events a committed state change means.
pub(crate) fn announce(daemon: &Daemon, transition: &Transition) {
    let link = &transition.link;
    tracing::info!(
        link = %link.email,
        user = %link.user,
        provider = %link.provider,
        state = %link.state,
        previous = transition.previous.map_or("none", LinkState::as_str),
        reason = link.reason.as_deref().unwrap_or(""),
        "link state changed"
    );
    daemon.events.emit(Event::LinkState {
        email: link.email.clone(),
        user: link.user.clone(),
        provider: link.provider,
        state: link.state,
        previous: transition.previous,
        reason: link.reason.clone(),
    });
}

/// What an Office365 round needs from its secret.
struct Tokens {
    access_token: mslink_proto::Sensitive,
    refresh_token: Option<mslink_proto::Sensitive>,
    expires_at: i64,
}

/// Refreshes `record`'s tokens and stores the result durably before returning it. `Ok(None)`:
/// the link changed meanwhile and the result was dropped.
async fn refresh(
    daemon: &Daemon,
    config: &Config,
    record: &LinkRecord,
    refresh_token: Option<&mslink_proto::Sensitive>,
) -> Result<Option<Tokens>, Failure> {
    let Some(refresh_token) = refresh_token else {
        return Err(Failure::reauth("no refresh token was issued (was offline_access granted?)"));
    };
    let result = office365::refresh(config, refresh_token).await;
    tracing::debug!(link = %record.email, ok = result.is_ok(), "token refreshed");
    daemon.events.emit(Event::Refreshed {
        email: record.email.clone(),
        user: record.user.clone(),
        provider: record.provider,
        ok: result.is_ok(),
    });
    let fresh = result.map_err(|e| e.failure())?;
    let tokens = Tokens {
        access_token: fresh.access_token,
        // Microsoft may or may not rotate; keep the old one if it did not.
        refresh_token: fresh.refresh_token.or_else(|| Some(refresh_token.clone())),
        expires_at: fresh.expires_at,
    };
    let secret = LinkSecret::Office365 {
        access_token: tokens.access_token.clone(),
        refresh_token: tokens.refresh_token.clone(),
        expires_at: tokens.expires_at,
    };
    let sealed = secret.seal(&daemon.vault, record.id).map_err(|e| {
        Failure::blocked(format!("cannot seal the new token: {e}"), Actor::Operator)
    })?;
    let (id, generation, expiry) = (record.id, record.generation, tokens.expires_at);
    match daemon
        .store
        .call(move |db| db.store_refreshed_secret(id, generation, &sealed, expiry))
        .await
    {
        Ok(true) => Ok(Some(tokens)),
        Ok(false) => Ok(None),
        Err(e) => {
            // The rotated token could not be stored: do not use it, so nothing depends on a
            // token that a restart would forget. The old one is still stored.
            tracing::error!(link = %record.email, error = %e, "cannot store a refreshed token");
            Err(Failure::transient(format!("cannot store the refreshed token: {e}")))
        }
    }
}

/// One round on `record`. With `force_check`, checks even if no check is due. Returns the
/// failure if the round failed (already committed).
pub(super) async fn perform(
    daemon: &Daemon,
    id: i64,
    force_check: bool,
) -> Result<Option<Failure>, StoreError> {
    // One round at a time per link, on the link as it is once the lock is held: a second
    // refresh with the same refresh token would present a superseded token, which a rotating
    // server treats as replay and answers by revoking the whole grant.
    let _turn = daemon.link_turns.take(id).await;
    let Some(record) = daemon.store.call(move |db| db.link_record_by_id(id)).await? else {
        return Ok(None);
    };
    let looked_after = matches!(record.state, LinkState::Active | LinkState::Degraded);
    if record.state == LinkState::Suspended || !(looked_after || force_check) {
        return Ok(None);
    }
    let config = daemon.config();
    let now = crate::now();
    let check_due = force_check || record.next_check.is_none_or(|due| due <= now);
    let started = std::time::Instant::now();
    let result: Result<Option<CheckReport>, Failure> = match record.provider {
        Provider::Office365 => office365_round(daemon, &config, &record, check_due).await,
        Provider::Exchange if check_due => exchange_round(daemon, &config, &record).await.map(Some),
        Provider::Exchange => Ok(None),
    };
    let outcome = match &result {
        Ok(None) => {
            // Only a refresh (or nothing) was due, or the link changed meanwhile: look at the
            // stored timers again.
            reschedule(daemon, &config, record.id).await?;
            return Ok(None);
        }
        Ok(Some(report)) => Outcome::Healthy {
            report: report.clone(),
            next_check: crate::now() + jittered(config.schedule.check_interval),
        },
        Err(failure) if failure.is_transient() => Outcome::Failed {
            failure: failure.clone(),
            next_attempt: Some(
                crate::now()
                    + backoff(&config, record.failures + 1, failure.retry_after).as_secs().max(1)
                        as i64,
            ),
        },
        Err(failure) => Outcome::Failed { failure: failure.clone(), next_attempt: None },
    };
    daemon.events.emit(Event::Checked {
        email: record.email.clone(),
        user: record.user.clone(),
        provider: record.provider,
        ok: result.is_ok(),
        latency: started.elapsed(),
        at: crate::now(),
    });
    if let Err(failure) = &result {
        tracing::warn!(link = %record.email, user = %record.user, reason = %failure.describe(), "link check failed");
    }
    let (id, generation, at) = (record.id, record.generation, crate::now());
    let committed = outcome.clone();
    if let Some(transition) =
        daemon.store.call(move |db| db.record_outcome(id, generation, &committed, at)).await?
    {
        announce(daemon, &transition);
    }
    daemon.scheduler.schedule(record.id, next_due(&config, &outcome, record.token_expiry));
    Ok(result.err())
}

/// Schedules a link by its stored timers, if background work looks after it.
async fn reschedule(daemon: &Daemon, config: &Config, id: i64) -> Result<(), StoreError> {
    if let Some(record) = daemon.store.call(move |db| db.link_record_by_id(id)).await?
        && matches!(record.state, LinkState::Active | LinkState::Degraded)
    {
        let check = record.next_check.unwrap_or_else(crate::now);
        let due = record.token_expiry.map_or(check, |e| check.min(refresh_at(config, e)));
        daemon.scheduler.schedule(id, Some(due));
    }
    Ok(())
}

/// When the scheduler should look at a link next. A failure waits out its backoff even when the
/// token is due: the refresh may be what failed, and retrying it at once is a tight loop against
/// an endpoint that is down (the next attempt refreshes first anyway).
fn next_due(config: &Config, outcome: &Outcome, token_expiry: Option<i64>) -> Option<i64> {
    match outcome {
        Outcome::Healthy { next_check, .. } => Some(match token_expiry {
            Some(expiry) => (*next_check).min(refresh_at(config, expiry)),
            None => *next_check,
        }),
        Outcome::Failed { next_attempt, .. } => *next_attempt,
    }
}

/// When to refresh a token that expires at `expiry`: `refresh_before_expiry` ahead, spread over
/// a further half of that so links linked together do not refresh together.
pub(super) fn refresh_at(config: &Config, expiry: i64) -> i64 {
    let ahead = config.schedule.refresh_before_expiry.as_secs_f64();
    expiry - (ahead * rand::rng().random_range(1.0..=1.5)) as i64
}

async fn office365_round(
    daemon: &Daemon,
    config: &Config,
    record: &LinkRecord,
    check_due: bool,
) -> Result<Option<CheckReport>, Failure> {
    let mut tokens = match open_secret(daemon, record)? {
        LinkSecret::Office365 { access_token, refresh_token, expires_at } => {
            Tokens { access_token, refresh_token, expires_at }
        }
        LinkSecret::Exchange { .. } => return Err(wrong_secret()),
    };
    let ahead = config.schedule.refresh_before_expiry.as_secs() as i64;
    let mut refreshed = false;
    if tokens.expires_at - ahead <= crate::now() {
        match refresh(daemon, config, record, tokens.refresh_token.as_ref()).await? {
            Some(fresh) => tokens = fresh,
            None => return Ok(None),
        }
        refreshed = true;
    }
    if !check_due {
        return Ok(None);
    }
    match office365::check(config, &tokens.access_token, &record.email).await {
        Ok(report) => Ok(Some(report)),
        // The access token was refused before its time (revoked, CAE): refresh once and retry.
        Err(e) if e.is_token_rejected() && !refreshed => {
            match refresh(daemon, config, record, tokens.refresh_token.as_ref()).await? {
                Some(fresh) => office365::check(config, &fresh.access_token, &record.email)
                    .await
                    .map(Some)
                    .map_err(|e| e.failure()),
                None => Ok(None),
            }
        }
        Err(e) => Err(e.failure()),
    }
}

async fn exchange_round(
    daemon: &Daemon,
    config: &Config,
    record: &LinkRecord,
) -> Result<CheckReport, Failure> {
    let LinkSecret::Exchange { password } = open_secret(daemon, record)? else {
        return Err(wrong_secret());
    };
    let endpoint: ExchangeEndpoint = serde_json::from_str(&record.details).map_err(|e| {
        Failure::blocked(
            format!("the stored EWS endpoint is unreadable ({e}); connect again"),
            Actor::User,
        )
    })?;
    exchange::check(config, &endpoint, &password).await.map_err(|e| e.failure())
}

fn open_secret(daemon: &Daemon, record: &LinkRecord) -> Result<LinkSecret, Failure> {
    let blob = record.secret.as_deref().ok_or_else(|| Failure::reauth("no stored credentials"))?;
    LinkSecret::open(blob, &daemon.vault, record.id)
        .map_err(|e| Failure::blocked(format!("{e}; check `key_file`"), Actor::Operator))
}

fn wrong_secret() -> Failure {
    Failure::blocked("the stored secret does not match the provider; connect again", Actor::User)
}

/// `token`: the stored access token if it has at least a minute left, else a refreshed one.
pub(super) async fn fresh_token(daemon: &Daemon, id: i64) -> Result<TokenReply, WireError> {
    let _turn = daemon.link_turns.take(id).await;
    let record = daemon
        .store
        .call(move |db| db.link_record_by_id(id))
        .await
        .map_err(super::internal)?
        .ok_or_else(|| WireError::new(ErrorKind::NotFound, "the link was removed meanwhile"))?;
    let config = daemon.config();
    let failed = |failure: Failure| {
        WireError::new(
            if failure.state == LinkState::NeedsReauth {
                ErrorKind::AuthRejected
            } else {
                ErrorKind::Failed
            },
            format!("cannot get a token for {}: {}", record.email, failure.describe()),
        )
        .with_hint(format!("`mslinkctl check {}` shows the link's state", record.email))
    };
    let LinkSecret::Office365 { access_token, refresh_token, expires_at } =
        open_secret(daemon, &record).map_err(failed)?
    else {
        return Err(failed(wrong_secret()));
    };
    if expires_at - 60 > crate::now() {
        return Ok(TokenReply { access_token, expires_at });
    }
    match refresh(daemon, &config, &record, refresh_token.as_ref()).await {
        Ok(Some(tokens)) => {
            Ok(TokenReply { access_token: tokens.access_token, expires_at: tokens.expires_at })
        }
        Ok(None) => Err(WireError::new(ErrorKind::Failed, "the link changed while refreshing")
            .with_hint("run the command again")),
        Err(failure) => {
            // Record it like any background failure, so status shows it.
            let outcome = Outcome::Failed { failure: failure.clone(), next_attempt: None };
            let (id, generation, now) = (record.id, record.generation, crate::now());
            if !failure.is_transient()
                && let Ok(Some(t)) = daemon
                    .store
                    .call(move |db| db.record_outcome(id, generation, &outcome, now))
                    .await
            {
                announce(daemon, &t);
            }
            Err(failed(failure))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    fn config() -> Config {
        Config::parse(
            "[schedule]\nretry_min = \"10s\"\nretry_max = \"5m\"\nrefresh_before_expiry = \"5m\"\n",
            None,
            &Env { is_root: true, ..Env::default() },
        )
        .unwrap()
    }

    #[test]
    fn backoff_grows_exponentially_within_its_bounds() {
        let config = config();
        for failures in 1..12 {
            let exp = (10.0 * 2f64.powi(failures as i32 - 1)).min(300.0);
            let wait = backoff(&config, failures, None).as_secs_f64();
            assert!(
                wait >= exp / 2.0 && wait <= exp,
                "failure {failures}: {wait} not in [{}, {exp}]",
                exp / 2.0
            );
        }
    }

    #[test]
    fn backoff_honours_the_server_and_spreads_its_links() {
        let waits: Vec<Duration> =
            (0..200).map(|_| backoff(&config(), 1, Some(Duration::from_secs(600)))).collect();
        assert!(waits.iter().all(|w| (600.0..=900.0).contains(&w.as_secs_f64())), "{waits:?}");
        let seconds: std::collections::BTreeSet<u64> =
            waits.iter().map(Duration::as_secs).collect();
        assert!(seconds.len() > 50, "Retry-After is jittered: {} distinct seconds", seconds.len());
        let short: Vec<u64> = (0..200)
            .map(|_| backoff(&config(), 1, Some(Duration::from_secs(1))).as_secs())
            .collect();
        assert!(short.iter().all(|&s| s >= 1), "never sooner than asked");
    }

    #[test]
    fn refreshes_are_spread_ahead_of_expiry() {
        let config = config();
        let at: Vec<i64> = (0..200).map(|_| refresh_at(&config, 10_000)).collect();
        assert!(at.iter().all(|&t| (10_000 - 450..=10_000 - 300).contains(&t)));
        let distinct: std::collections::BTreeSet<_> = at.iter().collect();
        assert!(
            distinct.len() > 50,
            "jitter spreads refreshes: {} distinct seconds",
            distinct.len()
        );
    }

    #[tokio::test]
    async fn a_link_has_one_turn_at_a_time() {
        let turns = LinkTurns::default();
        let first = turns.take(7).await;
        let other_link = turns.take(8).await;
        let second = tokio::time::timeout(Duration::from_millis(50), turns.take(7)).await;
        assert!(second.is_err(), "link 7 is busy");
        drop(first);
        let _second = turns.take(7).await;
        drop(other_link);
    }

    #[test]
    fn a_failed_refresh_waits_out_its_backoff_even_with_the_token_due() {
        let config = config();
        let at = crate::now() + 40;
        let failed =
            Outcome::Failed { failure: Failure::transient("HTTP 500"), next_attempt: Some(at) };
        // The token expired a minute ago: refresh_at is in the past.
        let expired = Some(crate::now() - 60);
        assert_eq!(next_due(&config, &failed, expired), Some(at));
        let healthy = Outcome::Healthy { report: CheckReport::default(), next_check: i64::MAX };
        assert!(next_due(&config, &healthy, expired).unwrap() < crate::now());
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let secs = jittered(Duration::from_secs(900));
            assert!((810..=990).contains(&secs), "{secs}");
        }
    }
}
