//! One round of work on one link: refresh the token if it is due, check the mailbox if a check
//! is due, commit the outcome, and hand back the committed timers. Background rounds, `check`,
//! `check --all` and `token` all go through [`Links::perform`]; what they differ in is only what
//! is due ([`Purpose`]). `token --for RESOURCE` ([`Purpose::Resource`]) takes the same turn but
//! leaves the link's timers alone: the resource's token comes from its cache, or from the link's
//! refresh token with the resource's scope (the rotated refresh token stored first).
//!
//! Network I/O runs with no lock held and nothing borrowed from the store; every commit carries
//! the generation the work started from, so a link re-linked, disabled or removed meanwhile is
//! left alone (STYLE habit 6).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use mslink_proto::{LinkState, Provider, Sensitive, TokenReply, TokenResource};

use super::schedule::{self, Server, Timers, Work};
use super::{LinkDetails, LinkSecret, Links};
use crate::config::{Config, ExchangeAuth};
use crate::events::Event;
use crate::exchange::{self, ExchangeEndpoint};
use crate::health::{Actor, CheckReport, Failure};
use crate::office365::{self, Office365Error};
use crate::store::{LinkRecord, Outcome, ResourceToken, StoreError};

/// How long a round may wait on a user-chosen server: the full request timeout, halved for each
/// round in a row that timed out there (down to [`ServerHangs::FLOOR`]), the full one again after
/// a round that did not. With the scheduler's per-server share of the slots, a server that
/// hangs holds fewer slots for less time.
///
/// Ownership: the map is behind a std mutex held only to read or update one entry.
#[derive(Debug, Default)]
pub struct ServerHangs {
    hangs: std::sync::Mutex<HashMap<Server, u32>>,
}

impl ServerHangs {
    /// The shortest timeout a hanging server is given.
    pub const FLOOR: std::time::Duration = std::time::Duration::from_secs(5);

    /// The timeout for a round on `server`, from the `full` one.
    pub fn timeout(
        &self,
        server: Option<Server>,
        full: std::time::Duration,
    ) -> std::time::Duration {
        let hangs = server.map_or(0, |s| {
            self.hangs.lock().unwrap_or_else(|p| p.into_inner()).get(&s).copied().unwrap_or(0)
        });
        (full / 2u32.pow(hangs.min(3))).max(Self::FLOOR.min(full))
    }

    /// Records whether a round on `server` timed out.
    pub fn record(&self, server: Option<Server>, timed_out: bool) {
        let Some(server) = server else { return };
        let mut hangs = self.hangs.lock().unwrap_or_else(|p| p.into_inner());
        if timed_out {
            *hangs.entry(server).or_default() += 1;
        } else {
            hangs.remove(&server);
        }
    }
}

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

/// Why a round runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// The scheduler woke it: do what the schedule says is due.
    Background,
    /// `check`: check now, refreshing first if due.
    Check,
    /// `token`: a usable access token (at least [`TOKEN_MARGIN`] left), no check.
    Token,
    /// `token --for RESOURCE`: a usable access token for an extra resource, from the cache or
    /// from the link's refresh token; no check, and nothing else about the link changes.
    Resource(TokenResource),
}

/// `token` hands out no access token with less than this left: a mail tool needs time to use it.
const TOKEN_MARGIN: i64 = 60;

/// Whether `token` must refresh the link's Graph token before handing it out: the refresh rule
/// says it is due, or less than [`TOKEN_MARGIN`] is left.
fn token_needs_refresh(config: &Config, record: &LinkRecord, now: i64) -> bool {
    schedule::work(&config.schedule, &record.timers(), now, true).refresh
        || record.token_expiry.is_none_or(|e| e - TOKEN_MARGIN <= now)
}

/// What a round did.
#[derive(Debug, Default)]
pub(super) struct Done {
    /// The failure, already committed.
    pub failure: Option<Failure>,
    /// The link's timers as committed (`None`: the link is gone).
    pub timers: Option<Timers>,
    /// The access token, for [`Purpose::Token`] and [`Purpose::Resource`].
    pub token: Option<TokenReply>,
    /// [`Purpose::Resource`]: the identity platform refused that resource's scope (no
    /// consent). Not a failure of the link, whose refresh token still serves the others.
    pub refused: Option<Office365Error>,
}

/// Where a tokens round's access token goes: Graph for an Office365 link; the EWS server (its
/// endpoint, and the resource its tokens are for) for an Exchange link through Entra ID.
#[derive(Clone, Copy)]
enum Api<'a> {
    Graph,
    Ews(&'a ExchangeEndpoint, &'a str),
}

/// A check's failure, as a tokens round needs it: whether the token was refused before its
/// time (worth one refresh), with a continuous access evaluation challenge's claims.
struct Refusal {
    failure: Failure,
    token_rejected: bool,
    claims: Option<String>,
}

/// What a tokens round needs from its secret.
struct Tokens {
    access_token: Sensitive,
    refresh_token: Option<Sensitive>,
    expires_at: i64,
}

impl Links {
    /// One round on link `id`, for `purpose`.
    pub(super) async fn perform(&self, id: i64, purpose: Purpose) -> Result<Done, StoreError> {
        // One round at a time per link, on the link as it is once the turn is held: a second
        // refresh with the same refresh token would present a superseded token, which a rotating
        // server treats as replay and answers by revoking the whole grant. In a fleet the same
        // holds across daemons through the link's lease (see `fleet`).
        let _turn = self.turns.take(id).await;
        match purpose {
            // Another daemon's round: nothing to do here.
            Purpose::Background if self.hold(id).await?.is_none() => {
                return Ok(Done::default());
            }
            Purpose::Background => {}
            // A command for this daemon's user waits for the other daemon's round to end.
            _ => {
                self.hold_waiting(id).await?;
            }
        }
        let done = self.perform_held(id, purpose).await;
        self.let_go(id, done.is_err()).await;
        done
    }

    /// [`Links::perform`]'s round, with the link's turn and lease held.
    async fn perform_held(&self, id: i64, purpose: Purpose) -> Result<Done, StoreError> {
        // Read once the turn is held, on a reader: the last round's commits have returned, so it
        // sees them, and a change by anyone else since shows in the generation every commit of
        // this round carries. The writer's queue is kept for writes.
        let record = self.store.link_record(id).await?;
        let Some(record) = record else {
            return Ok(Done::default());
        };
        let config = self.config.get();
        let now = self.clock.now();
        let timers = record.timers();
        let work = match purpose {
            Purpose::Background => schedule::work(&config.schedule, &timers, now, false),
            Purpose::Check => schedule::work(&config.schedule, &timers, now, true),
            Purpose::Token => Work {
                refresh: record.state != LinkState::Suspended
                    && token_needs_refresh(&config, &record, now),
                check: false,
            },
            Purpose::Resource(_) => Work { refresh: false, check: false },
        };
        if purpose == Purpose::Background {
            self.events.emit(Event::Round { refresh: work.refresh, check: work.check });
        }
        let wants_token = matches!(purpose, Purpose::Token | Purpose::Resource(_));
        if work.is_idle() && !wants_token {
            return Ok(Done { timers: Some(timers), ..Done::default() });
        }
        let started = std::time::Instant::now();
        let (mut token, mut refused) = (None, None);
        // A refresh alone commits the link's timers with its token: see `Links::refresh`.
        let mut with_token = None;
        let result: Result<Option<CheckReport>, Failure> = match (record.provider, purpose) {
            (Provider::Office365, Purpose::Resource(resource)) => {
                self.resource_round(&config, &record, resource, &mut token, &mut refused).await
            }
            (Provider::Office365, _) => {
                self.tokens_round(&config, &record, work, Api::Graph, &mut token, &mut with_token)
                    .await
            }
            (Provider::Exchange, _) => {
                self.exchange_round(&config, &record, work, &mut token, &mut with_token).await
            }
        };
        if work.check {
            self.events.emit(Event::Checked {
                email: record.email.clone(),
                user: record.user.clone(),
                provider: record.provider,
                ok: result.is_ok(),
                latency: started.elapsed(),
                at: self.clock.now(),
            });
        }
        // A resource token (cached or new) changes nothing the link's timers say: no commit,
        // no trip through the store's writer, on the path every mail tool connection takes.
        if let (Purpose::Resource(_), Ok(None)) = (purpose, &result) {
            return Ok(Done { timers: Some(timers), token, refused, ..Done::default() });
        }
        let now = self.clock.now();
        let outcome = match &result {
            Ok(None) => None,
            Ok(Some(report)) => Some(Outcome::Healthy {
                report: report.clone(),
                next_check: schedule::next_check(&config.schedule, now),
            }),
            Err(failure) => {
                tracing::warn!(link = %record.email, user = %record.user, reason = %failure.describe(), "link round failed");
                Some(Outcome::Failed {
                    failure: failure.clone(),
                    next_attempt: schedule::retry_at(
                        &config.schedule,
                        failure,
                        record.failures + 1,
                        now,
                    ),
                })
            }
        };
        let (generation, committed) = (record.generation, outcome.clone());
        let (transition, timers) = match committed {
            Some(outcome) => {
                // In a fleet the lease is released with the outcome, in one transaction.
                let due = |t: &Timers| super::next_due(&config, t).map(|d| d.at);
                let release = self.release(id, &due);
                self.store.record_outcome(id, generation, outcome, now, release).await?
            }
            // A refresh alone committed its token, and with it the timers, already.
            None if with_token.is_some() => (None, with_token),
            None => (None, self.store.timers(id).await?),
        };
        if let Some(transition) = transition {
            self.announce(&transition);
        }
        Ok(Done { failure: result.err(), timers, token, refused })
    }

    /// Refreshes `record`'s tokens for `scopes` (carrying a CAE challenge's `claims`, if any)
    /// and stores the result durably before returning it, with the link's timers as that commit
    /// left them. `Ok(None)`: the link changed meanwhile and the result was dropped. When the
    /// round `ends_round` with this commit, a fleet's lease is released in it.
    async fn refresh(
        &self,
        config: &Config,
        record: &LinkRecord,
        refresh_token: Option<&Sensitive>,
        scopes: &[String],
        claims: Option<&str>,
        ends_round: bool,
    ) -> Result<Option<(Tokens, Timers)>, Failure> {
        let Some(refresh_token) = refresh_token else {
            return Err(Failure::reauth(
                "no refresh token was issued (was offline_access granted?)",
            ));
        };
        let request = office365::refresh_for(config, refresh_token, scopes, claims);
        let Some(result) = self.under_lease(record.id, request).await? else {
            return Ok(None);
        };
        tracing::debug!(link = %record.email, ok = result.is_ok(), "token refreshed");
        self.events.emit(Event::Refreshed {
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
        let secret = LinkSecret::Tokens {
            access_token: tokens.access_token.clone(),
            refresh_token: tokens.refresh_token.clone(),
            expires_at: tokens.expires_at,
        };
        let sealed = secret.seal(&self.vault, record.id).map_err(|e| {
            Failure::blocked(format!("cannot seal the new token: {e}"), Actor::Operator)
        })?;
        let (id, generation, expiry, now) =
            (record.id, record.generation, tokens.expires_at, self.clock.now());
        // Taken only now: a refresh that failed before its commit leaves the lease to the round.
        let due = |t: &Timers| super::next_due(config, t).map(|d| d.at);
        let release = if ends_round { self.release(id, &due) } else { None };
        let stored =
            self.store.store_refreshed_secret(id, generation, sealed, (expiry, now), release);
        match stored.await {
            Ok(Some(timers)) => Ok(Some((tokens, timers))),
            Ok(None) => Ok(None),
            Err(e) => {
                // The rotated token could not be stored: do not use it, so nothing depends on a
                // token that a restart would forget. The old one is still stored.
                tracing::error!(link = %record.email, error = %e, "cannot store a refreshed token");
                Err(Failure::transient(format!("cannot store the refreshed token: {e}")))
            }
        }
    }

    /// A round on a link that holds tokens (Office365, or Exchange through Entra ID): refresh if
    /// `work` says so (or `token` wants one and the stored token is too short-lived), then check
    /// `api` if due. The stored token goes into `token` when asked.
    async fn tokens_round(
        &self,
        config: &Config,
        record: &LinkRecord,
        work: Work,
        api: Api<'_>,
        token: &mut Option<TokenReply>,
        committed: &mut Option<Timers>,
    ) -> Result<Option<CheckReport>, Failure> {
        let mut tokens = match self.open_secret(record)? {
            LinkSecret::Tokens { access_token, refresh_token, expires_at } => {
                Tokens { access_token, refresh_token, expires_at }
            }
            LinkSecret::Exchange { .. } | LinkSecret::Keytab { .. } => return Err(wrong_secret()),
        };
        let scopes = match api {
            Api::Graph => config.office365.scopes.clone(),
            Api::Ews(_, resource) => exchange::oauth_scopes(resource),
        };
        let mut refreshed = false;
        if work.refresh {
            let rt = tokens.refresh_token.as_ref();
            match self.refresh(config, record, rt, &scopes, None, !work.check).await? {
                Some((fresh, timers)) => (tokens, *committed) = (fresh, Some(timers)),
                None => return Ok(None),
            }
            refreshed = true;
        }
        *token = Some(TokenReply {
            access_token: tokens.access_token.clone(),
            expires_at: tokens.expires_at,
        });
        if !work.check {
            return Ok(None);
        }
        match self.check_with_token(config, record, api, &tokens.access_token).await {
            Ok(report) => Ok(Some(report)),
            // The access token was refused before its time (revoked, or a continuous access
            // evaluation event whose claims the next token must carry): refresh once and retry.
            // Only a refusal of that refresh ends the grant.
            Err(e) if e.token_rejected && (!refreshed || e.claims.is_some()) => {
                let rt = tokens.refresh_token.as_ref();
                match self.refresh(config, record, rt, &scopes, e.claims.as_deref(), false).await? {
                    Some((fresh, _)) => self
                        .check_with_token(config, record, api, &fresh.access_token)
                        .await
                        .map(Some)
                        .map_err(|e| e.failure),
                    // Changed since the first refresh's commit: its timers are not the link's.
                    None => {
                        *committed = None;
                        Ok(None)
                    }
                }
            }
            Err(e) => Err(e.failure),
        }
    }

    /// Checks `api` with `access_token`.
    async fn check_with_token(
        &self,
        config: &Config,
        record: &LinkRecord,
        api: Api<'_>,
        access_token: &Sensitive,
    ) -> Result<CheckReport, Refusal> {
        match api {
            Api::Graph => {
                office365::check(config, access_token, &record.email).await.map_err(|e| Refusal {
                    token_rejected: e.is_token_rejected(),
                    claims: e.claims_challenge().map(str::to_owned),
                    failure: e.failure(),
                })
            }
            Api::Ews(endpoint, resource) => {
                let held = HashMap::from([(resource.to_owned(), access_token.clone())]);
                self.ews_check(config, record, endpoint, exchange::Secret::Tokens(&held))
                    .await
                    .map_err(|e| Refusal {
                        token_rejected: matches!(e, exchange::ExchangeError::Rejected { .. }),
                        claims: None,
                        failure: e.failure(),
                    })
            }
        }
    }

    /// The access token `token` would hand out for `resource` now without refreshing, if the
    /// link holds one that is fresh (the refresh rule says not yet, and [`TOKEN_MARGIN`] is
    /// left). Needs no turn: a refresh running meanwhile leaves this token valid until its
    /// expiry, and nothing is committed. `None`: take the turn and let a round decide.
    /// `cached`: the resource's stored token, as read with the link. `resource`: `None` for the
    /// token the link itself holds (Graph's, or an Exchange link's for its EWS server).
    pub(super) fn held_token(
        &self,
        record: &LinkRecord,
        resource: Option<TokenResource>,
        cached: Option<ResourceToken>,
    ) -> Option<TokenReply> {
        let config = self.config.get();
        if let Some(resource) = resource {
            return self.fresh_resource_token(&config, record, resource, cached?);
        }
        if token_needs_refresh(&config, record, self.clock.now()) {
            return None;
        }
        match self.open_secret(record).ok()? {
            LinkSecret::Tokens { access_token, expires_at, .. } => {
                Some(TokenReply { access_token, expires_at })
            }
            LinkSecret::Exchange { .. } | LinkSecret::Keytab { .. } => None,
        }
    }

    /// The cached token of `resource`, while it is fresh (the Graph token's refresh rule,
    /// [`schedule::refresh_at`], applied to it, and at least [`TOKEN_MARGIN`] left).
    async fn cached_resource_token(
        &self,
        config: &Config,
        record: &LinkRecord,
        resource: TokenResource,
    ) -> Result<Option<TokenReply>, Failure> {
        let (id, name) = (record.id, resource.as_str());
        let cached = self
            .store
            .resource_token(id, name)
            .await
            .map_err(|e| Failure::transient(format!("cannot read the stored token: {e}")))?;
        Ok(cached.and_then(|cached| self.fresh_resource_token(config, record, resource, cached)))
    }

    /// `cached` as a token to hand out, if it is fresh.
    fn fresh_resource_token(
        &self,
        config: &Config,
        record: &LinkRecord,
        resource: TokenResource,
        cached: ResourceToken,
    ) -> Option<TokenReply> {
        let now = self.clock.now();
        let timers = Timers {
            token_expiry: Some(cached.expires_at),
            token_issued: Some(cached.issued_at),
            ..record.timers()
        };
        let fresh = schedule::refresh_at(&config.schedule, &timers, cached.expires_at) > now
            && cached.expires_at - TOKEN_MARGIN > now;
        if fresh
            && let Ok(json) =
                self.vault.open(&cached.sealed, &resource_context(record.id, resource))
            && let Ok(access_token) = String::from_utf8(json)
        {
            return Some(TokenReply {
                access_token: Sensitive::new(access_token),
                expires_at: cached.expires_at,
            });
        }
        None
    }

    /// A token for an extra `resource`: the cached one while it is fresh (the Graph token's
    /// refresh rule, [`schedule::refresh_at`], applied to it, and at least [`TOKEN_MARGIN`]
    /// left), else one from the link's refresh token, stored (with the rotated refresh token, in
    /// one transaction) before it is handed out. Refreshed only when asked for: a resource no
    /// tool uses costs nothing.
    async fn resource_round(
        &self,
        config: &Config,
        record: &LinkRecord,
        resource: TokenResource,
        token: &mut Option<TokenReply>,
        refused: &mut Option<Office365Error>,
    ) -> Result<Option<CheckReport>, Failure> {
        let (id, name) = (record.id, resource.as_str());
        if let Some(cached) = self.cached_resource_token(config, record, resource).await? {
            *token = Some(cached);
            return Ok(None);
        }
        let (access_token, refresh_token, expires_at) = match self.open_secret(record)? {
            LinkSecret::Tokens { access_token, refresh_token, expires_at } => {
                (access_token, refresh_token, expires_at)
            }
            LinkSecret::Exchange { .. } | LinkSecret::Keytab { .. } => return Err(wrong_secret()),
        };
        let Some(refresh_token) = refresh_token else {
            return Err(Failure::reauth(
                "no refresh token was issued (was offline_access granted?)",
            ));
        };
        let Some(scopes) = config.office365.scopes_for(resource) else {
            return Err(Failure::blocked(
                format!("`{resource}` is not in `[office365] resources`"),
                Actor::Operator,
            ));
        };
        let request = office365::refresh_for(config, &refresh_token, &scopes, None);
        let Some(result) = self.under_lease(id, request).await? else {
            return Ok(None);
        };
        tracing::debug!(link = %record.email, resource = name, ok = result.is_ok(), "resource token fetched");
        self.events.emit(Event::Refreshed {
            email: record.email.clone(),
            user: record.user.clone(),
            provider: record.provider,
            ok: result.is_ok(),
        });
        let fresh = match result {
            Ok(fresh) => fresh,
            Err(e) if e.is_consent_missing() => {
                tracing::warn!(link = %record.email, resource = name, error = %e, "resource not consented");
                *refused = Some(e);
                return Ok(None);
            }
            Err(e) => return Err(e.failure()),
        };
        let secret = LinkSecret::Tokens {
            access_token,
            // Microsoft may or may not rotate; keep the old one if it did not.
            refresh_token: fresh.refresh_token.clone().or(Some(refresh_token)),
            expires_at,
        };
        let seal_failed =
            |e| Failure::blocked(format!("cannot seal the new token: {e}"), Actor::Operator);
        let sealed_secret = secret.seal(&self.vault, id).map_err(seal_failed)?;
        let sealed_token = self
            .vault
            .seal(fresh.access_token.expose().as_bytes(), &resource_context(id, resource))
            .map_err(seal_failed)?;
        let stored = ResourceToken {
            sealed: sealed_token,
            expires_at: fresh.expires_at,
            issued_at: self.clock.now(),
        };
        let generation = record.generation;
        match self.store.store_resource_token(id, generation, sealed_secret, name, stored).await {
            Ok(true) => {
                *token = Some(TokenReply {
                    access_token: fresh.access_token,
                    expires_at: fresh.expires_at,
                });
                Ok(None)
            }
            Ok(false) => Ok(None),
            Err(e) => {
                // As in `refresh`: a token whose rotated refresh token is not stored is not used.
                tracing::error!(link = %record.email, error = %e, "cannot store a resource token");
                Err(Failure::transient(format!("cannot store the refreshed token: {e}")))
            }
        }
    }

    /// An Exchange round: a link signed in through Entra ID is a tokens round against EWS; a
    /// password or keytab link has nothing to refresh, and is checked when due. A tokens round
    /// puts its EWS token into `token` (for `mslinkctl token --for ews`).
    async fn exchange_round(
        &self,
        config: &Config,
        record: &LinkRecord,
        work: Work,
        token: &mut Option<TokenReply>,
        committed: &mut Option<Timers>,
    ) -> Result<Option<CheckReport>, Failure> {
        let endpoint = match &record.details {
            Ok(LinkDetails::Exchange(endpoint)) => endpoint,
            Ok(LinkDetails::Office365(_)) => return Err(wrong_secret()),
            Err(e) => {
                return Err(Failure::blocked(
                    format!("the stored EWS endpoint is unreadable ({e}); connect again"),
                    Actor::User,
                ));
            }
        };
        if endpoint.auth == ExchangeAuth::OAuth {
            let url = exchange::server_url(&endpoint.ews_url).map_err(|e| e.failure())?;
            let resource = exchange::resource_of(&url);
            let api = Api::Ews(endpoint, &resource);
            return self.tokens_round(config, record, work, api, token, committed).await;
        }
        if !work.check {
            return Ok(None);
        }
        let sealed = self.open_secret(record)?;
        let secret = match &sealed {
            LinkSecret::Exchange { password } => exchange::Secret::Password(password),
            LinkSecret::Keytab { key } => exchange::Secret::Key(key),
            LinkSecret::Tokens { .. } => return Err(wrong_secret()),
        };
        self.ews_check(config, record, endpoint, secret).await.map(Some).map_err(|e| e.failure())
    }

    /// An EWS check of `record`, within the timeout its server's hangs leave.
    async fn ews_check(
        &self,
        config: &Config,
        record: &LinkRecord,
        endpoint: &ExchangeEndpoint,
        secret: exchange::Secret<'_>,
    ) -> Result<CheckReport, exchange::ExchangeError> {
        let server = record.timers().server;
        let timeout = self.hangs.timeout(server, exchange::REQUEST_TIMEOUT);
        let result = exchange::check_within(config, endpoint, secret, timeout).await;
        self.hangs.record(server, matches!(result, Err(exchange::ExchangeError::Timeout { .. })));
        result
    }

    fn open_secret(&self, record: &LinkRecord) -> Result<LinkSecret, Failure> {
        let blob =
            record.secret.as_deref().ok_or_else(|| Failure::reauth("no stored credentials"))?;
        LinkSecret::open(blob, &self.vault, record.id)
            .map_err(|e| Failure::blocked(format!("{e}; check `key_file`"), Actor::Operator))
    }
}

/// Binds a sealed resource token to its link and resource.
fn resource_context(id: i64, resource: TokenResource) -> Vec<u8> {
    format!("mslink-link:{id}:{resource}").into_bytes()
}

fn wrong_secret() -> Failure {
    Failure::blocked("the stored secret does not match the provider; connect again", Actor::User)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
    fn a_server_that_keeps_hanging_gets_shorter_timeouts_until_it_answers() {
        use std::time::Duration;
        let hangs = ServerHangs::default();
        let full = Duration::from_secs(30);
        let server = Server::of_url("https://mail.hanging.test/EWS/Exchange.asmx");
        let other = Server::of_url("https://mail.fine.test/EWS/Exchange.asmx");
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(hangs.timeout(server, full).as_secs_f64());
            hangs.record(server, true);
        }
        assert_eq!(seen, [30.0, 15.0, 7.5, 5.0, 5.0]);
        assert_eq!(hangs.timeout(other, full), full, "other servers keep the full timeout");
        assert_eq!(hangs.timeout(None, full), full, "as do Microsoft's endpoints");
        hangs.record(server, false);
        assert_eq!(hangs.timeout(server, full), full, "one answer restores it");
    }
}
