//! The link lifecycle, as one service: [`Links`]. Everything that creates, changes, checks or
//! removes a link goes through it, whether a person asked (`connect`, `check`, `check --all`,
//! `token`, `disconnect`, `enable`/`disable`) or background work did (the [`Scheduler`] runs
//! [`Links`] as its [`Rounds`]).
//!
//! ```text
//!  connect ─▶ provider sign-in ─▶ first check ─▶ save_link (row + sealed secret, one tx)
//!  check / token / scheduler ─▶ perform: take the link's turn ─▶ schedule::work
//!       ─▶ refresh? ─▶ store_refreshed_secret (durable first) ─▶ check? ─▶ record_outcome
//!       ─▶ events ─▶ the committed timers ─▶ schedule::due ─▶ the scheduler's heap
//!  disable ─▶ every link suspended, remembering state, reason, actor, since
//!  enable  ─▶ every link restored exactly; active/degraded ones re-checked at once
//! ```
//!
//! A link exists only once its first sign-in and first check succeeded (SPEC §1); a failed
//! `connect` stores nothing and leaves an existing link as it was. What errors mean for the user
//! (exit code, hint) is decided at the IPC edge, from [`LinkError`].

mod details;
mod fleet;
mod on_premises;
pub(crate) mod schedule;
mod scheduler;
mod work;

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use mslink_proto::{
    CheckAllReply, CheckedLink, ConnectArgs, DisconnectReply, Evidence, LinkInfo, LinkState,
    Provider, Sensitive, SignInFlow, ToggleReply, TokenReply, TokenResource,
};
use serde::{Deserialize, Serialize};

pub use details::{LinkDetails, Office365Details};
pub use schedule::{Server, Timers, Work};
pub use scheduler::{Due, Rounds, Scheduler, SchedulerInbox, run as run_scheduler};
pub use work::LinkTurns;

use crate::clock::Clock;
use crate::config::{Config, SharedConfig};
use crate::detect::Detector;
use crate::events::{Bus, Event};
use crate::exchange::ExchangeError;
use crate::health::{Actor, Failure};
use crate::interaction::Interaction;
use crate::office365::{self, Office365Error};
use crate::store::{
    ConnectCheck, LinkLookup, NewLink, Owner, ResourceToken, Seal, Store, StoreError, Transition,
};
use crate::vault::{Vault, VaultError};

/// Why a lifecycle operation did not happen. Mapped to what the user sees in `ipc::errors`.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("no link for {0}")]
    NotFound(String),
    #[error("the Microsoft integration is not enabled for this organisation")]
    Disabled,
    #[error("{email} is already linked as an {existing} mailbox")]
    LinkedAs { email: String, existing: Provider, wanted: Provider },
    #[error("{user} already has {limit} links, the most one user may have")]
    TooManyLinks { user: String, limit: usize },
    #[error("{0} is on an Exchange server, which needs its password")]
    NeedsPassword(String),
    #[error("{0} is on Office365, which takes no keytab")]
    KeytabForOffice365(String),
    #[error("the keytab cannot be used: {0}")]
    Keytab(#[from] crate::exchange::keytab::KeytabError),
    #[error("cannot tell whether {email} is on Office365 or Exchange")]
    Undetected { email: String, conflicting: bool },
    #[error("{0} is an Exchange link")]
    NoTokens(String),
    #[error(
        "{email} signs in to its Exchange server through Entra ID: its token is for that server's \
         EWS, not {resource}"
    )]
    HybridEwsOnly { email: String, resource: TokenResource },
    #[error("tokens for {0} are not enabled on this daemon")]
    ResourceNotConfigured(TokenResource),
    #[error("no {resource} token for {email}: {error}")]
    ResourceRefused { email: String, resource: TokenResource, error: Office365Error },
    /// Hybrid modern authentication: Entra ID refused a token for an on-premises host's
    /// resource, which the tenant has not registered (or consented to) for the app.
    #[error("Entra ID gives no token for {resource}: {error}")]
    HostNotRegistered { email: String, resource: String, error: Office365Error },
    #[error("the check of {email} failed: {}", failure.describe())]
    CheckFailed { email: String, failure: Failure },
    #[error("cannot get a token for {email}: {}", failure.describe())]
    TokenFailed { email: String, failure: Failure },
    #[error("the link changed while this ran")]
    Changed,
    #[error(transparent)]
    Office365(#[from] Office365Error),
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error("cannot seal the secret: {0}")]
    Sealing(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The secret sealed with a link. Serialised to JSON only to be sealed at once.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum LinkSecret {
    /// An Office365 link's, or an Exchange link's that signs in through Entra ID (hybrid modern
    /// authentication): its access token is for the EWS server's origin.
    #[serde(rename = "office365")]
    Tokens {
        access_token: Sensitive,
        refresh_token: Option<Sensitive>,
        expires_at: i64,
    },
    Exchange {
        password: Sensitive,
    },
    /// A service account's: the key from its keytab that Kerberos signs in with.
    Keytab {
        key: crate::exchange::keytab::ServiceKey,
    },
}

impl LinkSecret {
    fn seal(&self, vault: &Vault, id: i64) -> Result<Vec<u8>, VaultError> {
        let json = serde_json::to_vec(self).map_err(|_| VaultError::Seal)?;
        vault.seal(&json, &context(id))
    }

    fn open(blob: &[u8], vault: &Vault, id: i64) -> Result<LinkSecret, VaultError> {
        let json = vault.open(blob, &context(id))?;
        serde_json::from_slice(&json).map_err(|_| VaultError::Unseal)
    }
}

/// Seals Office365 tokens for link `id` exactly as background work stores them, for tools that
/// write links straight into the store with [`crate::store::Store::insert_links`] while no daemon
/// runs (the benchmark, fault tests seeding a storm). The daemon itself never takes links this way.
pub fn seal_office365_tokens(
    vault: &Vault,
    id: i64,
    tokens: &office365::Tokens,
) -> Result<Vec<u8>, VaultError> {
    LinkSecret::Tokens {
        access_token: tokens.access_token.clone(),
        refresh_token: tokens.refresh_token.clone(),
        expires_at: tokens.expires_at,
    }
    .seal(vault, id)
}

/// Whether `vault` opens link `id`'s sealed secret `blob` (`migrate-store` checks the key
/// before it moves anything).
pub(crate) fn opens_secret(vault: &Vault, id: i64, blob: &[u8]) -> bool {
    LinkSecret::open(blob, vault, id).is_ok()
}

/// Binds a sealed secret to its row.
fn context(id: i64) -> Vec<u8> {
    format!("mslink-link:{id}").into_bytes()
}

/// The link service. Shared (`Arc`) by the IPC handlers and the scheduler task.
///
/// Ownership: the store, vault, clock and bus are handles; `turns` is the only in-memory state
/// (see [`LinkTurns`]); the scheduler's queue lives in its own task.
#[derive(Debug)]
pub struct Links {
    config: SharedConfig,
    store: Store,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    events: Bus,
    detector: Detector,
    turns: LinkTurns,
    /// Per-server timeouts after hangs (see [`work::ServerHangs`]).
    hangs: work::ServerHangs,
    scheduler: Scheduler,
    /// This daemon's place in a fleet, when the store is shared (see [`fleet`]).
    fleet: Option<fleet::Fleet>,
}

impl Links {
    /// The service, and the inbox its scheduler task will read (see [`run_scheduler`]).
    pub fn new(
        config: SharedConfig,
        store: Store,
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        events: Bus,
    ) -> (Links, SchedulerInbox) {
        let (scheduler, inbox) = Scheduler::new();
        let fleet = match (&config.get().store, store.is_shared()) {
            (crate::config::StoreBackend::Postgres(pg), true) => Some(fleet::Fleet::new(pg.lease)),
            (_, true) => Some(fleet::Fleet::new(crate::config::PgConfig::DEFAULT_LEASE)),
            (_, false) => None,
        };
        let links = Links {
            config,
            store,
            vault,
            clock,
            events,
            detector: Detector::default(),
            turns: LinkTurns::default(),
            hangs: work::ServerHangs::default(),
            scheduler,
            fleet,
        };
        (links, inbox)
    }

    /// Provider detection, with its per-domain cache.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// `connect` for `owner` (the account `uid`): detect the provider if not given, sign in,
    /// first check, store, bound to `uid`. A new link beyond `max_links_per_user` is refused
    /// unless `by_admin`. A link an earlier account of the same name left to this address is
    /// replaced: the sign-in just proved the mailbox is this user's.
    pub async fn connect(
        &self,
        owner: &Owner,
        uid: u32,
        args: ConnectArgs,
        by_admin: bool,
        interaction: &mut Interaction,
    ) -> Result<LinkInfo, LinkError> {
        let config = self.config.get();
        let user = owner.name.as_str();
        let ConnectCheck { enabled, existing, count } =
            self.store.connect_check(owner.clone(), args.email.clone()).await?;
        if !enabled {
            return Err(LinkError::Disabled);
        }
        if existing.is_none() && !by_admin && count >= config.max_links_per_user {
            return Err(LinkError::TooManyLinks {
                user: user.to_owned(),
                limit: config.max_links_per_user,
            });
        }
        let (provider, evidence) = match args.provider {
            Some(provider) => {
                let given = Evidence {
                    probe: "provider_flag".into(),
                    points_to: Some(provider),
                    detail: format!("--provider {provider} given at connect"),
                };
                (provider, vec![given])
            }
            None => {
                interaction.step(format!("Finding out where {} is hosted", args.email)).await;
                let found = self.detector.detect(config.clone(), &args.email).await;
                // A password is never sent before the provider is settled: an Exchange connect
                // without one finds out whether the server wants one (or Entra ID's tokens).
                match found.provider {
                    Some(provider) => {
                        let decided =
                            found.evidence.into_iter().filter(|e| e.points_to.is_some()).collect();
                        (provider, decided)
                    }
                    None => {
                        return Err(LinkError::Undetected {
                            email: args.email,
                            conflicting: found.conflicting,
                        });
                    }
                }
            }
        };
        if let Some(existing) = &existing
            && existing.provider != provider
        {
            return Err(LinkError::LinkedAs {
                email: args.email,
                existing: existing.provider,
                wanted: provider,
            });
        }
        let now = self.clock.now();
        let next_check = schedule::next_check(&config.schedule, now);
        let (new, secret) = match provider {
            Provider::Office365 if args.keytab.is_some() => {
                return Err(LinkError::KeytabForOffice365(args.email));
            }
            Provider::Office365 => {
                let tokens =
                    office365::sign_in(&config, args.flow, &args.email, interaction).await?;
                interaction.step("Checking the mailbox and calendar through Microsoft Graph").await;
                let report = office365::check(&config, &tokens.access_token, &args.email).await?;
                let new = NewLink {
                    user: user.to_owned(),
                    uid: Some(uid),
                    email: args.email.clone(),
                    details: LinkDetails::Office365(Office365Details {
                        graph_url: Some(config.office365.graph_url.as_str().to_owned()),
                        sign_in: Some(
                            match args.flow {
                                SignInFlow::DeviceCode => "oauth2 device code",
                                SignInFlow::Browser | SignInFlow::Paste => {
                                    "oauth2 authorization code"
                                }
                            }
                            .to_owned(),
                        ),
                    }),
                    report,
                    token_expiry: Some(tokens.expires_at),
                    token_issued: Some(now),
                    next_check,
                    evidence,
                };
                let secret = LinkSecret::Tokens {
                    access_token: tokens.access_token,
                    refresh_token: tokens.refresh_token,
                    expires_at: tokens.expires_at,
                };
                (new, secret)
            }
            Provider::Exchange => {
                let (endpoint, report, secret) =
                    on_premises::link(&config, &args, interaction).await?;
                let token_expiry = match &secret {
                    LinkSecret::Tokens { expires_at, .. } => Some(*expires_at),
                    LinkSecret::Exchange { .. } | LinkSecret::Keytab { .. } => None,
                };
                let new = NewLink {
                    user: user.to_owned(),
                    uid: Some(uid),
                    email: args.email.clone(),
                    details: LinkDetails::Exchange(endpoint),
                    report,
                    token_expiry,
                    token_issued: token_expiry.map(|_| now),
                    next_check,
                    evidence,
                };
                (new, secret)
            }
        };
        let vault = self.vault.clone();
        // Counted again where the link is stored: the count above was taken before sign-in.
        let limit = (!by_admin).then_some(config.max_links_per_user);
        let seal: Seal = Box::new(move |id| {
            secret.seal(&vault, id).map_err(|e| StoreError::Sealing(e.to_string()))
        });
        let (transition, timers) =
            self.store.save_link(new, now, limit, seal).await.map_err(|error| match error {
                StoreError::TooManyLinks { limit } => {
                    LinkError::TooManyLinks { user: user.to_owned(), limit }
                }
                error => LinkError::Store(error),
            })?;
        tracing::info!(link = %transition.link.email, user, provider = %provider, "mailbox linked");
        self.announce(&transition);
        self.schedule(transition.id, timers);
        Ok(transition.link)
    }

    /// `check`: a round on `user`'s link now, whatever its schedule says; the link as it then
    /// stands.
    pub async fn check(&self, owner: &Owner, email: &str) -> Result<LinkInfo, LinkError> {
        let record = self.looked_up(owner, email).await?;
        let id = record.id;
        let done = self.perform(id, work::Purpose::Check).await?;
        self.schedule(id, done.timers);
        if let Some(failure) = done.failure {
            return Err(LinkError::CheckFailed { email: email.to_owned(), failure });
        }
        self.store.link_info(id).await?.ok_or_else(|| LinkError::NotFound(email.to_owned()))
    }

    /// `check --all [--state]` (admins): re-checks every link (or those in `state`), at most
    /// `max_concurrent` at once, telling `interaction` how far it has got.
    pub async fn check_all(
        &self,
        state: Option<LinkState>,
        interaction: &mut Interaction,
    ) -> Result<CheckAllReply, LinkError> {
        if !self.store.integration().await?.enabled {
            return Err(LinkError::Disabled);
        }
        let targets = self.store.link_ids(state).await?;
        let total = targets.len() as u64;
        let limit = self.config.get().schedule.max_concurrent;
        let mut reply = CheckAllReply { checked: 0, ok: 0, failed: Vec::new() };
        let mut pending = targets.into_iter();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < limit
                && let Some((id, email)) = pending.next()
            {
                running.push(async move {
                    let done = self.perform(id, work::Purpose::Check).await;
                    (id, email, done)
                });
            }
            let Some((id, email, done)) = running.next().await else { break };
            reply.checked += 1;
            match done {
                Ok(done) => {
                    self.schedule(id, done.timers);
                    match done.failure {
                        None => reply.ok += 1,
                        Some(failure) => reply.failed.push(CheckedLink {
                            email,
                            state: failure.state,
                            reason: failure.describe(),
                        }),
                    }
                }
                Err(e) => reply.failed.push(CheckedLink {
                    email,
                    state: LinkState::Degraded,
                    reason: format!("not checked: {e}"),
                }),
            }
            if reply.checked == total || reply.checked.is_multiple_of(progress_every(total)) {
                interaction
                    .step(format!(
                        "checked {}/{total}: {} ok, {} failed",
                        reply.checked,
                        reply.ok,
                        reply.failed.len()
                    ))
                    .await;
            }
        }
        reply.failed.sort_by(|a, b| a.email.cmp(&b.email));
        Ok(reply)
    }

    /// `token`: a fresh access token to `resource` for `user`'s own Office365 link. Graph's is
    /// the link's own, refreshed first (and committed the way background work commits) when it
    /// has under a minute left; the others come from the link's refresh token (see
    /// `work::Links::resource_round`). A resource not in `[office365] resources` is refused.
    pub async fn token(
        &self,
        owner: &Owner,
        email: &str,
        resource: TokenResource,
    ) -> Result<TokenReply, LinkError> {
        // The resource's cached token comes in the same read: one trip to a reader in all.
        let name = resource.as_str();
        let (record, cached) = self
            .looked_up_with(owner, email, (resource != TokenResource::Graph).then_some(name))
            .await?;
        // The token the link itself holds, or another resource's from its refresh token. An
        // Exchange link through Entra ID (hybrid modern authentication) holds one, for its
        // server's EWS, and serves no other resource.
        let own_token = match (record.provider, record.details.as_ref()) {
            (Provider::Office365, _) => resource == TokenResource::Graph,
            (Provider::Exchange, Ok(LinkDetails::Exchange(e)))
                if e.auth == crate::config::ExchangeAuth::OAuth =>
            {
                if resource != TokenResource::Ews {
                    return Err(LinkError::HybridEwsOnly { email: email.to_owned(), resource });
                }
                true
            }
            (Provider::Exchange, _) => return Err(LinkError::NoTokens(email.to_owned())),
        };
        if !own_token && self.config.get().office365.scopes_for(resource).is_none() {
            return Err(LinkError::ResourceNotConfigured(resource));
        }
        // Its grant is gone: a token still held would only be refused by the server, with a
        // vaguer reason than this one.
        if record.state == LinkState::NeedsReauth {
            return Err(LinkError::TokenFailed {
                email: email.to_owned(),
                failure: Failure::reauth("the link needs a new sign-in"),
            });
        }
        // The common case, on every mail tool connection: a fresh token already held, handed
        // out without the link's turn or a trip through the store's writer.
        if let Some(token) = self.held_token(&record, (!own_token).then_some(resource), cached) {
            return Ok(token);
        }
        let purpose =
            if own_token { work::Purpose::Token } else { work::Purpose::Resource(resource) };
        let done = self.perform(record.id, purpose).await?;
        self.schedule(record.id, done.timers);
        match (done.token, done.failure, done.refused) {
            (Some(token), _, _) => Ok(token),
            (None, Some(failure), _) => {
                Err(LinkError::TokenFailed { email: email.to_owned(), failure })
            }
            (None, None, Some(error)) => {
                Err(LinkError::ResourceRefused { email: email.to_owned(), resource, error })
            }
            (None, None, None) => Err(LinkError::Changed),
        }
    }

    /// `disconnect`: removes the link and its secrets; audited when `actor` is not the owner.
    pub async fn disconnect(
        &self,
        owner: &Owner,
        email: &str,
        actor: &str,
    ) -> Result<DisconnectReply, LinkError> {
        let user = owner.name.as_str();
        let (owner, email, actor) = (owner.clone(), email.to_owned(), actor.to_owned());
        let now = self.clock.now();
        let by = actor.clone();
        let removed = self.store.delete_link(owner, email.clone(), actor, now).await?;
        let (id, email, provider) = removed.ok_or(LinkError::NotFound(email))?;
        tracing::info!(link = %email, user, by = %by, "link removed");
        self.scheduler.schedule(id, None);
        self.events.emit(Event::LinkRemoved {
            email: email.clone(),
            user: user.to_owned(),
            provider,
        });
        Ok(DisconnectReply { email, user: user.to_owned() })
    }

    /// `enable` / `disable`: the organisation-wide toggle with its consequences (see
    /// [`crate::store::Store::set_integration`]); the resumed links are scheduled.
    pub async fn set_integration(
        &self,
        enable: bool,
        actor: &str,
    ) -> Result<ToggleReply, LinkError> {
        let now = self.clock.now();
        let by = actor.to_owned();
        let (reply, transitions) = self.store.set_integration(enable, by, now).await?;
        if reply.changed {
            tracing::info!(
                by = actor,
                enabled = enable,
                granted_requests = reply.granted_requests,
                links = reply.links_affected,
                "Microsoft integration toggled"
            );
            self.events.emit(Event::Integration { enabled: enable, by: actor.to_owned() });
        }
        for (transition, timers) in transitions {
            self.announce(&transition);
            self.schedule(transition.id, timers);
        }
        Ok(reply)
    }

    /// After a successful reload: the operator may have fixed what blocked links on them
    /// (client secret, `key_file`, `ca_file`), so they are re-checked now.
    pub async fn config_reloaded(&self) {
        let now = self.clock.now();
        match self.store.recheck_blocked(Actor::Operator, now).await {
            Ok(blocked) => {
                if !blocked.is_empty() {
                    tracing::info!(
                        links = blocked.len(),
                        "re-checking links blocked on the operator"
                    );
                }
                for timers in blocked {
                    self.schedule(timers.id, Some(timers));
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot re-check blocked links after the reload"),
        }
    }

    /// `owner`'s link to `email`, if the integration is on.
    async fn looked_up(
        &self,
        owner: &Owner,
        email: &str,
    ) -> Result<crate::store::LinkRecord, LinkError> {
        Ok(self.looked_up_with(owner, email, None).await?.0)
    }

    /// [`Links::looked_up`], with the token to `resource` the link holds, in the same read. A
    /// reader sees every committed write, and never queues behind the writer's commits (`token`
    /// runs this on every mail tool connection).
    async fn looked_up_with(
        &self,
        owner: &Owner,
        email: &str,
        resource: Option<&'static str>,
    ) -> Result<(crate::store::LinkRecord, Option<ResourceToken>), LinkError> {
        let LinkLookup { enabled, found } =
            self.store.lookup(owner.clone(), email.to_owned(), resource).await?;
        let (record, token) = found.ok_or_else(|| LinkError::NotFound(email.to_owned()))?;
        if !enabled || record.state == LinkState::Suspended {
            return Err(LinkError::Disabled);
        }
        Ok((record, token))
    }

    /// Hands the scheduler a link's committed timers. In a fleet the store holds the link's due
    /// time already; the claimer is woken to look.
    fn schedule(&self, id: i64, timers: Option<Timers>) {
        if let Some(fleet) = &self.fleet {
            fleet.wake();
            return;
        }
        let config = self.config.get();
        self.scheduler.schedule(id, timers.and_then(|t| next_due(&config, &t)));
    }

    /// Emits the events a committed state change means.
    fn announce(&self, transition: &Transition) {
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
        self.events.emit(Event::LinkState {
            email: link.email.clone(),
            user: link.user.clone(),
            provider: link.provider,
            state: link.state,
            previous: transition.previous,
            reason: link.reason.clone(),
        });
    }
}

impl Rounds for Links {
    async fn load(&self) -> Vec<(i64, Due)> {
        if self.fleet.is_some() {
            // Due links come from claims, as they fall due (see `fleet`).
            return Vec::new();
        }
        let config = self.config.get();
        match self.store.due_links().await {
            Ok(links) => {
                links.iter().filter_map(|t| next_due(&config, t).map(|due| (t.id, due))).collect()
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot load links; background work waits for changes");
                Vec::new()
            }
        }
    }

    async fn round(&self, id: i64) -> Option<Due> {
        let config = self.config.get();
        if let Some(fleet) = &self.fleet {
            // The round's release set the link's next due time in the store.
            if let Err(e) = self.perform(id, work::Purpose::Background).await {
                tracing::error!(link_id = id, error = %e, "cannot load or record a round");
            }
            fleet.finished(id);
            return None;
        }
        match self.perform(id, work::Purpose::Background).await {
            Ok(done) => done.timers.and_then(|t| next_due(&config, &t)),
            Err(e) => {
                // A store failure (disk full, read-only) is retried like a transient provider
                // failure, after `retry_min`, so links resume soon after the disk does.
                let retry = config.schedule.retry_min.as_secs().max(1) as i64;
                tracing::error!(link_id = id, error = %e, retry_in_secs = retry, "cannot load or record a round");
                Some(Due::at(self.clock.now() + retry))
            }
        }
    }

    fn limit(&self) -> usize {
        self.config.get().schedule.max_concurrent
    }
}

/// What the scheduler needs from a link's timers: when it is due (the schedule rule) and the
/// user-chosen server its rounds talk to.
fn next_due(config: &Config, timers: &Timers) -> Option<Due> {
    schedule::due(&config.schedule, timers).map(|at| Due {
        at,
        server: timers.server,
        owner: timers.owner,
    })
}

/// How often `check --all` reports progress: about every 5 %, at least every link for small runs.
fn progress_every(total: u64) -> u64 {
    (total / 20).max(1)
}
