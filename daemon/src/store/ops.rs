//! What the daemon asks of its store: every read and write, one method each, so no caller sees
//! SQL or a connection. Each method runs on the store's backend: SQLite through the store
//! threads (`Db`'s queries), or PostgreSQL (`postgres::PgStore`, the same operations).
//!
//! Each write is one transaction (on SQLite, one job of the writer's group commit): all it does
//! commits together or not at all, and it returns only once committed. Each read sees one
//! snapshot that holds every write that has returned.

use mslink_proto::{
    AccessRequest, Integration, LinkInfo, LinkState, Provider, RequestReply, StatusReply,
    ToggleReply, UnixTime,
};

use super::{
    Backend, LinkRecord, NewLink, Outcome, Owner, ResourceToken, Store, StoreError, Transition,
};
use crate::health::Actor;
use crate::links::Timers;

/// How many recent admin actions `status` shows an admin.
pub(crate) const RECENT_ACTIONS: u32 = 10;

/// `stored` counts (states with no link left out) as every state's count.
pub(crate) fn every_state(stored: &[(LinkState, usize)]) -> Vec<(LinkState, usize)> {
    LinkState::ALL
        .into_iter()
        .map(|state| (state, stored.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n)))
        .collect()
}

/// A round's lease to release with its commit: whose it is, and the rule that gives the link's
/// next due time from its timers as committed.
#[derive(Clone, Copy)]
pub struct Release<'a> {
    pub owner: &'a str,
    pub due: &'a (dyn Fn(&Timers) -> Option<UnixTime> + Sync),
}

impl std::fmt::Debug for Release<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Release").field("owner", &self.owner).finish_non_exhaustive()
    }
}

/// A link's sealed secret, made once the link has its id (the id is bound into the sealing).
pub type Seal = Box<dyn FnOnce(i64) -> Result<Vec<u8>, StoreError> + Send>;

/// What `connect` checks before a sign-in.
#[derive(Debug)]
pub struct ConnectCheck {
    pub enabled: bool,
    /// The user's link to the address, which the sign-in would replace.
    pub existing: Option<LinkRecord>,
    /// How many links the user has.
    pub count: usize,
}

/// A user's link for a command that uses it (`check`, `token`, ...), read in one snapshot.
#[derive(Debug)]
pub struct LinkLookup {
    pub enabled: bool,
    /// The link, and the token to the resource asked for that it holds, if any.
    pub found: Option<(LinkRecord, Option<ResourceToken>)>,
}

/// The organisation at a glance: for metrics and systemd's STATUS.
#[derive(Debug)]
pub struct Overview {
    pub enabled: bool,
    /// Links per state, every state listed (zero where none).
    pub counts: Vec<(LinkState, usize)>,
    /// Every link, when asked for.
    pub links: Option<Vec<LinkInfo>>,
}

impl Store {
    // ---- reads ----

    /// The organisation-wide toggle.
    pub async fn integration(&self) -> Result<Integration, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.read(|db| db.integration()).await,
            Backend::Postgres(pg) => pg.integration().await,
        }
    }

    /// The link with id `id`, as a round works on it.
    pub async fn link_record(&self, id: i64) -> Result<Option<LinkRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.read(move |db| db.link_record_by_id(id)).await,
            Backend::Postgres(pg) => pg.link_record(id).await,
        }
    }

    /// The link with id `id`, as `status` shows it.
    pub async fn link_info(&self, id: i64) -> Result<Option<LinkInfo>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.read(move |db| db.link_info(id)).await,
            Backend::Postgres(pg) => pg.link_info(id).await,
        }
    }

    /// Link `id`'s timers, for the scheduler.
    pub async fn timers(&self, id: i64) -> Result<Option<Timers>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.read(move |db| db.timers(id)).await,
            Backend::Postgres(pg) => pg.timers(id).await,
        }
    }

    /// The token to `resource` that link `id` holds, if any.
    pub async fn resource_token(
        &self,
        id: i64,
        resource: &'static str,
    ) -> Result<Option<ResourceToken>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.read(move |db| db.resource_token(id, resource)).await,
            Backend::Postgres(pg) => pg.resource_token(id, resource).await,
        }
    }

    /// Ids and addresses of every link (or those in `state`).
    pub async fn link_ids(
        &self,
        state: Option<LinkState>,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.read(move |db| db.link_ids(state)).await,
            Backend::Postgres(pg) => pg.link_ids(state).await,
        }
    }

    /// The requests for the integration not yet granted.
    pub async fn pending_requests(&self) -> Result<Vec<AccessRequest>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.read(|db| db.pending_requests()).await,
            Backend::Postgres(pg) => pg.pending_requests().await,
        }
    }

    /// `owner`'s link to `email` with the token to `resource` it holds, and the toggle.
    pub async fn lookup(
        &self,
        owner: Owner,
        email: String,
        resource: Option<&'static str>,
    ) -> Result<LinkLookup, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.read(move |db| {
                    let found = match db.link_record(owner, &email)? {
                        Some(record) => {
                            let token = match resource {
                                Some(resource) => db.resource_token(record.id, resource)?,
                                None => None,
                            };
                            Some((record, token))
                        }
                        None => None,
                    };
                    Ok(LinkLookup { enabled: db.integration()?.enabled, found })
                })
                .await
            }
            Backend::Postgres(pg) => pg.lookup(owner, email, resource).await,
        }
    }

    /// `status` for `user`: their request and links (every link with `owner` None), and for an
    /// admin the pending requests and recent admin actions. `stale` is left for the caller.
    pub async fn status(
        &self,
        user: String,
        owner: Option<Owner>,
        admin: bool,
    ) -> Result<StatusReply, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.read(move |db| {
                    Ok(StatusReply {
                        integration: db.integration()?,
                        request: db.request_of(&user)?,
                        links: db.links(owner)?,
                        pending_requests: if admin {
                            Some(db.pending_requests()?.len() as u64)
                        } else {
                            None
                        },
                        recent_admin_actions: if admin {
                            db.recent_audit(RECENT_ACTIONS)?
                        } else {
                            Vec::new()
                        },
                        user,
                        admin,
                    })
                })
                .await
            }
            Backend::Postgres(pg) => pg.status(user, owner, admin).await,
        }
    }

    /// Up to `limit` links of `owner` (or everyone's) in `state` (or any), in (user, email)
    /// order after `after`.
    pub async fn links_page(
        &self,
        owner: Option<Owner>,
        state: Option<LinkState>,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<LinkInfo>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.read(move |db| {
                    let after = after.as_ref().map(|(u, e)| (u.as_str(), e.as_str()));
                    db.links_page(owner.as_ref(), state, after, limit)
                })
                .await
            }
            Backend::Postgres(pg) => pg.links_page(owner, state, after, limit).await,
        }
    }

    /// The toggle and links per state, with every link if `with_links`.
    pub async fn overview(&self, with_links: bool) -> Result<Overview, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.read(move |db| {
                    let counts = every_state(&db.state_counts()?);
                    let links = with_links.then(|| db.links(None)).transpose()?;
                    Ok(Overview { enabled: db.integration()?.enabled, counts, links })
                })
                .await
            }
            Backend::Postgres(pg) => pg.overview(with_links).await,
        }
    }

    // ---- writes ----

    /// True once the writer has committed an empty job: the watchdog's proof of life.
    pub async fn ping_writer(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.call(|_| Ok(())).await,
            Backend::Postgres(pg) => pg.ping().await,
        }
    }

    /// Binds links stored without their owner's uid to the account their name has now.
    pub async fn bind_owners(
        &self,
        uid_of: impl Fn(&str) -> Option<u32> + Send + 'static,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.call(move |db| db.bind_owners(uid_of)).await,
            Backend::Postgres(pg) => pg.bind_owners(uid_of).await,
        }
    }

    /// Every link's timers, for the scheduler's start.
    pub async fn due_links(&self) -> Result<Vec<Timers>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.read(|db| db.due_links()).await,
            Backend::Postgres(pg) => pg.due_links().await,
        }
    }

    /// What `connect` must know before a sign-in, read on the writer so it is as fresh as it
    /// can be (the count is checked again where the link is saved).
    pub async fn connect_check(
        &self,
        owner: Owner,
        email: String,
    ) -> Result<ConnectCheck, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.call(move |db| {
                    let count = db.link_count(&owner)?;
                    let existing = db.link_record(owner, &email)?;
                    Ok(ConnectCheck { enabled: db.integration()?.enabled, existing, count })
                })
                .await
            }
            Backend::Postgres(pg) => pg.connect_check(owner, email).await,
        }
    }

    /// Saves a new or replacing link (refused past `limit` links of its owner) with the secret
    /// `seal` makes for its id; returns the change and the link's timers.
    pub async fn save_link(
        &self,
        new: NewLink,
        now: UnixTime,
        limit: Option<usize>,
        seal: Seal,
    ) -> Result<(Transition, Option<Timers>), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.call(move |db| {
                    let transition = db.save_link(&new, now, limit, seal)?;
                    let timers = db.timers(transition.id)?;
                    Ok((transition, timers))
                })
                .await
            }
            Backend::Postgres(pg) => pg.save_link(new, now, limit, seal).await,
        }
    }

    /// Inserts many links at once (seeding tools, while no daemon runs); their ids.
    pub async fn insert_links(
        &self,
        links: Vec<NewLink>,
        now: UnixTime,
        seal: impl FnMut(i64, &NewLink) -> Result<Vec<u8>, StoreError> + Send + 'static,
    ) -> Result<Vec<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.call(move |db| db.insert_links(&links, now, seal)).await,
            Backend::Postgres(pg) => pg.insert_links(links, now, seal).await,
        }
    }

    /// A refreshed secret for link `id`, if it is still at `generation`: the link's timers as
    /// committed with it (a round that only refreshed needs no other trip to the store), or
    /// `None` if the link changed meanwhile and nothing was stored. In a fleet, a round that
    /// ends with this commit passes its `release`: the lease is let go in the same transaction
    /// (also when nothing was stored).
    pub async fn store_refreshed_secret(
        &self,
        id: i64,
        generation: i64,
        sealed: Vec<u8>,
        (token_expiry, now): (UnixTime, UnixTime),
        release: Option<Release<'_>>,
    ) -> Result<Option<Timers>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.call(move |db| {
                    if !db.store_refreshed_secret(id, generation, &sealed, token_expiry, now)? {
                        return Ok(None);
                    }
                    db.timers(id)
                })
                .await
            }
            Backend::Postgres(pg) => {
                pg.store_refreshed_secret(id, generation, sealed, (token_expiry, now), release)
                    .await
            }
        }
    }

    /// A token to `resource` for link `id` with the link's secret as it now is (the refresh
    /// token may have rotated), if the link is still at `generation`; false if not.
    pub async fn store_resource_token(
        &self,
        id: i64,
        generation: i64,
        link_secret: Vec<u8>,
        resource: &'static str,
        token: ResourceToken,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.call(move |db| {
                    db.store_resource_token(id, generation, &link_secret, resource, &token)
                })
                .await
            }
            Backend::Postgres(pg) => {
                pg.store_resource_token(id, generation, link_secret, resource, token).await
            }
        }
    }

    /// A round's outcome for link `id` if it is still at `generation` (the change it made, if
    /// any), and the link's timers; with `release`, the round's lease is released in the same
    /// transaction (a fleet's; see [`Store::release`]).
    pub async fn record_outcome(
        &self,
        id: i64,
        generation: i64,
        outcome: Outcome,
        now: UnixTime,
        release: Option<Release<'_>>,
    ) -> Result<(Option<Transition>, Option<Timers>), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.call(move |db| {
                    let transition = db.record_outcome(id, generation, &outcome, now)?;
                    Ok((transition, db.timers(id)?))
                })
                .await
            }
            Backend::Postgres(pg) => pg.record_outcome(id, generation, outcome, now, release).await,
        }
    }

    /// Removes `owner`'s link to `email`, audited when `actor` is someone else; what was
    /// removed (id, address, provider), or None if there was no such link.
    pub async fn delete_link(
        &self,
        owner: Owner,
        email: String,
        actor: String,
        now: UnixTime,
    ) -> Result<Option<(i64, String, Provider)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.call(move |db| {
                    let name = owner.name.clone();
                    let removed = db.delete_link(owner, &email)?;
                    if let Some((_, email, _)) = &removed
                        && name != actor
                    {
                        db.audit(&actor, "disconnect", Some(&format!("{email} of {name}")), now)?;
                    }
                    Ok(removed)
                })
                .await
            }
            Backend::Postgres(pg) => pg.delete_link(owner, email, actor, now).await,
        }
    }

    /// `enable` / `disable` with its consequences (see `Db::set_integration`): the
    /// reply, and each link it changed with its timers.
    pub async fn set_integration(
        &self,
        enable: bool,
        actor: String,
        now: UnixTime,
    ) -> Result<(ToggleReply, Vec<(Transition, Option<Timers>)>), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.call(move |db| {
                    let (reply, transitions) = db.set_integration(enable, &actor, now)?;
                    let timers = transitions
                        .iter()
                        .map(|t| db.timers(t.id))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((reply, transitions.into_iter().zip(timers).collect()))
                })
                .await
            }
            Backend::Postgres(pg) => pg.set_integration(enable, actor, now).await,
        }
    }

    /// Makes the links that were blocked on the operator due now; their timers.
    pub async fn recheck_blocked(
        &self,
        actor: Actor,
        now: UnixTime,
    ) -> Result<Vec<Timers>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.call(move |db| db.recheck_blocked(actor, now)).await,
            Backend::Postgres(pg) => pg.recheck_blocked(actor, now).await,
        }
    }

    // ---- leases: a fleet's daemons sharing the work (PostgreSQL; SQLite has one daemon, its
    // state directory's lock holder, which owns every link without asking) ----

    /// Whether other daemons share this store, so due work is claimed through it
    /// ([`Store::claim_due`]) rather than known from start.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// The fleet's key check: `candidate` (a value sealed by this daemon's key) is stored if
    /// no daemon stored one before; the one stored. `None` on SQLite, whose key lives beside it.
    pub async fn key_check(&self, candidate: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(pg) => pg.key_check(candidate).await.map(Some),
        }
    }

    /// Claims up to `limit` links due by `now` that no daemon holds, for `owner` for `lease`
    /// seconds; their timers. Nothing on SQLite, where the scheduler knows every link already.
    pub async fn claim_due(
        &self,
        owner: &str,
        limit: usize,
        lease: i64,
        now: UnixTime,
    ) -> Result<Vec<Timers>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(pg) => pg.claim_due(owner, limit, lease, now).await,
        }
    }

    /// Takes or renews `owner`'s lease on link `id` for `lease` seconds: `None` once it is
    /// `owner`'s, else the daemon holding it. Always `owner`'s on SQLite.
    pub async fn lease(
        &self,
        id: i64,
        owner: &str,
        lease: i64,
    ) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(pg) => pg.lease(id, owner, lease).await,
        }
    }

    /// Ends `owner`'s lease on link `id`, its next due time set by `due` from the link as
    /// committed, in one transaction. Nothing to do on SQLite.
    pub async fn release(&self, id: i64, release: Release<'_>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(pg) => pg.release(id, release).await,
        }
    }

    /// `request` by `actor` for `subject`: recorded (and audited when for someone else) while
    /// the integration is off; nothing to do once it is on.
    pub async fn request(
        &self,
        subject: String,
        message: Option<String>,
        actor: String,
        now: UnixTime,
    ) -> Result<RequestReply, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.call(move |db| {
                    if db.integration()?.enabled {
                        return Ok(RequestReply {
                            request: None,
                            updated: false,
                            integration_enabled: true,
                        });
                    }
                    let (request, updated) =
                        db.record_request(&subject, message.as_deref(), now)?;
                    if subject != actor {
                        db.audit(&actor, "request", Some(&format!("for {subject}")), now)?;
                    }
                    Ok(RequestReply { request: Some(request), updated, integration_enabled: false })
                })
                .await
            }
            Backend::Postgres(pg) => pg.request(subject, message, actor, now).await,
        }
    }

    /// An admin action for the audit log.
    pub async fn audit(
        &self,
        actor: String,
        action: &'static str,
        detail: Option<String>,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.call(move |db| db.audit(&actor, action, detail.as_deref(), now)).await
            }
            Backend::Postgres(pg) => pg.audit(actor, action, detail, now).await,
        }
    }
}
