//! A fleet's share of the work: on a store that several daemons share (PostgreSQL), each link's
//! next due time lives in the store, and a daemon works a link only while it holds the link's
//! lease there. This module is that daemon's side: its name, the links it has claimed, and the
//! claimer task that feeds them to the [`super::Scheduler`].
//!
//! ```text
//!  claimer: at the start of every second (or at once when a round ends or a link is made
//!           due here)
//!     claim_due(me, room, lease) ─▶ FOR UPDATE SKIP LOCKED ─▶ scheduler.schedule(id, now)
//!  round:   hold(id): the claim's lease while more than half of it is left, else lease(id)
//!           (take or renew; another daemon's? leave the link) ─▶ work
//!           ─▶ before each refresh: hold(id) again; the refresh must end before it runs out
//!           ─▶ the outcome's commit releases it: next_due from the link as committed, lease
//!              cleared, worked_by = me (a round with no outcome releases it by itself)
//! ```
//!
//! Why no refresh token is presented by two daemons: a daemon presents one only within a lease
//! with more than half of it left, and gives up on the request before that lease can run out;
//! leases are timed by the database's clock, so daemons whose clocks differ agree on them, and
//! this daemon counts its own from before it asked, by its monotonic clock. A daemon that dies
//! leaves its leases to run out, and the others claim those links once they do.
//!
//! Why at the start of every second: due times are whole seconds, so work falls due then.
//! Every daemon of the fleet looks at that moment and they share it (`SKIP LOCKED` hands each
//! its own rows); a daemon that looked on its own phase would find the link taken by the daemons
//! whose rounds were ending then, and an idle daemon would be left idle.
//!
//! Ownership: `claimed` is behind a std mutex held only to insert or remove one id; the
//! claimer is the only task that adds to it, a round's end the only one that removes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Links;
use super::scheduler::Due;
use crate::health::Failure;
use crate::store::{Release, StoreError};

/// How long a daemon with no room waits before it looks for due links again, unless a round
/// ends first (one with room looks at the start of every second).
const CLAIM_EVERY: Duration = Duration::from_secs(1);

/// How far past the start of a second the claimer looks, so its clock reads the new second.
const PAST_THE_SECOND: Duration = Duration::from_millis(1);

/// How long the claimer waits after the store did not answer, doubling up to the longest.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_LONGEST: Duration = Duration::from_secs(5);

/// How many due links a daemon claims ahead of its free slots: enough that a slot freed is
/// filled without waiting for the next claim, few enough that claimed links wait little.
const CLAIM_AHEAD: usize = 2;

/// This daemon's place in a fleet.
#[derive(Debug)]
pub(super) struct Fleet {
    /// This daemon's name in leases and in `worked_by`: host, pid and a random tag, so two
    /// daemons never share one, even on hosts cloned with the same name.
    pub me: String,
    /// How long a lease lasts (`[store] lease`).
    pub lease: Duration,
    /// Links claimed and handed to the scheduler whose round has not ended.
    claimed: Mutex<HashSet<i64>>,
    /// The leases this daemon holds, each with the instant until which it is safe to use.
    held: Mutex<HashMap<i64, Instant>>,
    /// Wakes the claimer before its next turn: a round ended, or a link was made due here.
    wake: Notify,
    /// Whether the store answered the last claim, so its going and coming back are logged once.
    answering: AtomicBool,
}

/// A held lease: good until `until` (by this host's monotonic clock, with room for the commit
/// that follows the request).
#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    pub until: Instant,
}

impl Fleet {
    pub fn new(lease: Duration) -> Fleet {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "mslinkd".to_owned());
        let tag: u32 = rand::random();
        Fleet {
            me: format!("{host}:{}:{:06x}", std::process::id(), tag & 0xff_ffff),
            lease,
            claimed: Mutex::new(HashSet::new()),
            held: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            answering: AtomicBool::new(true),
        }
    }

    /// Records a lease taken (or renewed) at `asked`: it runs from when the database took it,
    /// which is later, and its last quarter is kept for the commit after a request.
    fn took(&self, id: i64, asked: Instant) -> Held {
        let until = asked + self.lease * 3 / 4;
        self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(id, until);
        Held { until }
    }

    /// The lease held on link `id` while more than half of it is left: used without asking the
    /// store again (a claim serves its round, and a round's refresh, this way).
    fn fresh(&self, id: i64) -> Option<Held> {
        let until = *self.held.lock().unwrap_or_else(|p| p.into_inner()).get(&id)?;
        (until.saturating_duration_since(Instant::now()) > self.lease / 2).then_some(Held { until })
    }

    /// Forgets link `id`'s lease (released, or about to be); whether this daemon held it.
    pub fn forget(&self, id: i64) -> bool {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&id).is_some()
    }

    /// Lease length in whole seconds, as the store takes it.
    fn lease_secs(&self) -> i64 {
        self.lease.as_secs().max(1) as i64
    }

    /// Wakes the claimer: there may be due work (or room for it) now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A claimed link's round ended.
    pub fn finished(&self, id: i64) {
        self.claimed.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        self.wake();
    }

    /// Records whether the store answered a claim (`Err`: why not), logging each change.
    fn answered(&self, answer: Result<(), &StoreError>) {
        let was = self.answering.swap(answer.is_ok(), Ordering::Relaxed);
        match (was, answer) {
            (true, Err(e)) => tracing::error!(
                error = %e,
                "the shared store does not answer; claiming no work until it does"
            ),
            (false, Ok(())) => tracing::info!("the shared store answers again; claiming work"),
            _ => {}
        }
    }
}

impl Links {
    /// Takes link `id`'s lease for this daemon (renewing it if held already). `None`: another
    /// daemon holds it. On a store of its own, the daemon always holds every link.
    pub(super) async fn hold(&self, id: i64) -> Result<Option<Held>, StoreError> {
        let Some(fleet) = &self.fleet else {
            return Ok(Some(Held { until: Instant::now() + Duration::from_secs(86_400) }));
        };
        if let Some(held) = fleet.fresh(id) {
            return Ok(Some(held));
        }
        let asked = Instant::now();
        match self.store.lease(id, &fleet.me, fleet.lease_secs()).await? {
            None => Ok(Some(fleet.took(id, asked))),
            Some(holder) => {
                fleet.forget(id);
                tracing::debug!(link_id = id, holder = %holder, "another daemon holds the link");
                Ok(None)
            }
        }
    }

    /// Presents link `id`'s refresh token through `request` under this daemon's lease, renewed
    /// first: `Ok(None)` when another daemon holds the link now (its round refreshes), and a
    /// request still running when the lease is about to run out is given up on, so another
    /// daemon can never present the same refresh token meanwhile.
    pub(super) async fn under_lease<T>(
        &self,
        id: i64,
        request: impl std::future::Future<Output = T>,
    ) -> Result<Option<T>, Failure> {
        let held = match self.hold(id).await {
            Ok(Some(held)) => held,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(Failure::transient(format!("cannot renew the link's lease: {e}")));
            }
        };
        let left = held.until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, request).await {
            Ok(answer) => Ok(Some(answer)),
            Err(_) => Err(Failure::transient("the token request outlasted the link's lease")),
        }
    }

    /// [`Links::hold`], waiting while another daemon holds the link (its round ends, or its
    /// lease runs out), for a command that must work the link here.
    pub(super) async fn hold_waiting(&self, id: i64) -> Result<Held, StoreError> {
        let started = Instant::now();
        loop {
            if let Some(held) = self.hold(id).await? {
                return Ok(held);
            }
            let lease = self.fleet.as_ref().map_or(Duration::ZERO, |f| f.lease);
            if started.elapsed() > lease + CLAIM_EVERY {
                return Err(StoreError::Leased);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends this daemon's lease on link `id`, its next due time from the schedule rule over the
    /// link as committed. Nothing on a store of its own.
    ///
    /// After a round that could not load or record its work (`failed`), the link is due again
    /// after `retry_min`, as the scheduler of a single daemon retries it.
    /// Nothing either when the round's outcome released it already ([`Links::release`]).
    pub(super) async fn let_go(&self, id: i64, failed: bool) {
        let Some(fleet) = &self.fleet else { return };
        if !fleet.forget(id) {
            return;
        }
        let config = self.config.get();
        let retry = self.clock.now() + config.schedule.retry_min.as_secs().max(1) as i64;
        let due = |t: &super::Timers| match failed {
            true => Some(retry),
            false => super::next_due(&config, t).map(|d| d.at),
        };
        let released = self.store.release(id, Release { owner: &fleet.me, due: &due }).await;
        if let Err(e) = released {
            // The lease runs out by itself; the link is claimed again then.
            tracing::warn!(link_id = id, error = %e, "cannot release a lease; it runs out by itself");
        }
    }

    /// The release to commit with a round's outcome on link `id` (a fleet's; `None` on a store
    /// of its own), its next due time by `due`. The lease is forgotten here: the outcome's
    /// commit ends it, or, if that fails, it runs out by itself.
    pub(super) fn release<'a>(
        &'a self,
        id: i64,
        due: &'a (dyn Fn(&super::Timers) -> Option<mslink_proto::UnixTime> + Sync),
    ) -> Option<Release<'a>> {
        let fleet = self.fleet.as_ref()?;
        fleet.forget(id).then_some(Release { owner: &fleet.me, due })
    }

    /// The claimer (fleet only): claims due links while there is room and hands them to the
    /// scheduler, until `shutdown`.
    pub async fn claim_due_links(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(fleet) = &self.fleet else { return };
        let mut retry = RETRY_FIRST;
        loop {
            let asked = Instant::now();
            let room = (self.config.get().schedule.max_concurrent * CLAIM_AHEAD)
                .saturating_sub(fleet.claimed.lock().unwrap_or_else(|p| p.into_inner()).len());
            let mut wait = CLAIM_EVERY;
            if room > 0 {
                let now = self.clock.now();
                match self.store.claim_due(&fleet.me, room, fleet.lease_secs(), now).await {
                    Ok(claimed) => {
                        fleet.answered(Ok(()));
                        retry = RETRY_FIRST;
                        let full = claimed.len() == room;
                        for timers in claimed {
                            let fresh = fleet
                                .claimed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(timers.id);
                            if fresh {
                                fleet.took(timers.id, asked);
                                let due =
                                    Due { at: now, server: timers.server, owner: timers.owner };
                                self.scheduler.schedule(timers.id, Some(due));
                            }
                        }
                        if full {
                            // More may be due: claim again as soon as there is room.
                            continue;
                        }
                        wait = crate::clock::to_next_second(&*self.clock) + PAST_THE_SECOND;
                    }
                    Err(e) => {
                        fleet.answered(Err(&e));
                        wait = retry;
                        retry = (retry * 2).min(RETRY_LONGEST);
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = fleet.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
