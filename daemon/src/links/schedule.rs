//! The one schedule rule: given a link's stored timers, the `[schedule]` config and the time now,
//! when the link is next due and what a round does then. Pure: no clock, no store, no I/O.
//!
//! ```text
//!   state         due                                   a round at `now` does
//!   active        min(next_check, refresh_at(token))    refresh if refresh_at <= now,
//!                                                       check   if next_check <= now
//!   degraded      next_check (the backoff's end)        refresh if due, then check
//!   blocked       next_check (operator / tenant admin   refresh if due, then check
//!                 re-check), none if the user must act
//!   needs_reauth  none: the user must `connect` again
//!   suspended     none: an admin must `enable`
//! ```
//!
//! The wake time and the round's decision come from the same two numbers, so a round woken at
//! its due time always has work to do (the old rule woke early with fresh random jitter and
//! found nothing due: links spun). The refresh jitter is derived from the link and its token,
//! not drawn anew each time, for the same reason. After a round, the committed timers go through
//! [`due`] again; every path in here moves `next_check` or the token into the future, so no
//! sequence of wakes can loop without progress (property-tested below).

use std::time::Duration;

use mslink_proto::{LinkState, UnixTime};
use rand::Rng;

use crate::config::Schedule;
use crate::health::{Actor, Failure};

/// What the schedule needs to know about a link: its stored timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub id: i64,
    pub state: LinkState,
    /// Who must act, for a failed link (a `blocked` link is re-checked only when that is not the
    /// user).
    pub actor: Option<Actor>,
    /// The next check, the end of a backoff, or a blocked link's next re-check.
    pub next_check: Option<UnixTime>,
    /// When the stored access token expires (Office365).
    pub token_expiry: Option<UnixTime>,
    /// When the stored access token was issued (`None` for tokens stored before it was kept).
    pub token_issued: Option<UnixTime>,
    /// The server the link's rounds talk to, when a user chose it (Exchange): the scheduler
    /// gives each such server a share of the slots, so one user's hanging server cannot hold them
    /// all. `None` for the operator's configured endpoints (Office365), which every link shares.
    pub server: Option<Server>,
    /// The owner's uid: with `server`, one owner's rounds against all the servers they chose
    /// share the slots too.
    pub owner: Option<u32>,
}

/// A user-chosen server, as the scheduler groups rounds by it: a hash of its host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Server(u64);

impl Server {
    /// The server of an endpoint URL (its host, case-insensitively); `None` if it has none.
    pub fn of_url(url: &str) -> Option<Server> {
        use std::hash::{Hash, Hasher};
        let host = url::Url::parse(url).ok()?.host_str()?.to_ascii_lowercase();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        host.hash(&mut hasher);
        Some(Server(hasher.finish()))
    }
}

/// The most rounds one user-chosen server may have running at once, out of `limit` slots: a
/// quarter (at least one), so a server that hangs holds a quarter of the slots at most.
pub fn per_server_limit(limit: usize) -> usize {
    (limit / 4).max(1)
}

/// What a round does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Work {
    /// Refresh the access token first.
    pub refresh: bool,
    /// Check the mailbox and calendar.
    pub check: bool,
}

impl Work {
    /// True when the round has nothing to do.
    pub fn is_idle(self) -> bool {
        !self.refresh && !self.check
    }
}

/// When background work next looks at the link; `None`: not until a person acts.
pub fn due(schedule: &Schedule, timers: &Timers) -> Option<UnixTime> {
    match timers.state {
        LinkState::Active => {
            let refresh = timers.token_expiry.map(|expiry| refresh_at(schedule, timers, expiry));
            match (timers.next_check, refresh) {
                (Some(check), Some(refresh)) => Some(check.min(refresh)),
                (check, refresh) => Some(check.or(refresh).unwrap_or(UnixTime::MIN)),
            }
        }
        // A failed link waits out its backoff (or re-check interval) even when its token is
        // due: the refresh may be what failed, and retrying it at once is a tight loop against
        // an endpoint that is down.
        LinkState::Degraded | LinkState::Blocked => timers.next_check,
        LinkState::NeedsReauth | LinkState::Suspended => None,
    }
}

/// What a round on `timers` does at `now`. A forced round (`mslinkctl check`) always checks.
pub fn work(schedule: &Schedule, timers: &Timers, now: UnixTime, forced: bool) -> Work {
    let looked_after = due(schedule, timers).is_some();
    if !(looked_after || forced) || timers.state == LinkState::Suspended {
        return Work::default();
    }
    let refresh =
        timers.token_expiry.is_some_and(|expiry| refresh_at(schedule, timers, expiry) <= now);
    let check = forced || timers.next_check.is_none_or(|next| next <= now);
    Work { refresh, check }
}

/// When to refresh a token that expires at `expiry`: `refresh_before_expiry` ahead, spread over a
/// further half of that (by a fraction fixed per link and token, so links linked together do not
/// refresh together and the same link always gets the same answer), but never before half the
/// token's life has passed, so a short-lived token cannot be refreshed in a loop.
pub fn refresh_at(schedule: &Schedule, timers: &Timers, expiry: UnixTime) -> UnixTime {
    let ahead = schedule.refresh_before_expiry.as_secs_f64();
    let spread = ahead * 0.5 * unit_fraction(timers.id, expiry);
    let at = expiry - (ahead + spread) as i64;
    match timers.token_issued {
        Some(issued) if issued < expiry => at.max(issued + ((expiry - issued) / 2).max(1)),
        _ => at,
    }
}

/// The next check after a successful one: `check_interval` ± 10 %, so links linked together
/// spread out.
pub fn next_check(schedule: &Schedule, now: UnixTime) -> UnixTime {
    now + jittered(schedule.check_interval)
}

/// How many check intervals a check may be overdue before the link shows as stale.
pub const STALE_AFTER_INTERVALS: u32 = 3;

/// True when background work should have looked at a link (`active` or `degraded`, due at
/// `next_check`) more than [`STALE_AFTER_INTERVALS`] check intervals ago and has not: what
/// status shows as stale and `status --check` as WARNING.
pub fn stale(
    schedule: &Schedule,
    state: LinkState,
    next_check: Option<UnixTime>,
    now: UnixTime,
) -> bool {
    let grace = schedule.check_interval.as_secs().saturating_mul(STALE_AFTER_INTERVALS.into());
    matches!(state, LinkState::Active | LinkState::Degraded)
        && next_check.is_some_and(|due| now.saturating_sub(due) > grace as i64)
}

/// When to try again after `failure`, the link's `failures`-th in a row (1-based); `None` when
/// only a person can fix it.
pub fn retry_at(
    schedule: &Schedule,
    failure: &Failure,
    failures: u32,
    now: UnixTime,
) -> Option<UnixTime> {
    match failure.state {
        LinkState::Degraded => {
            let wait = backoff(schedule, failures, failure.retry_after);
            Some(now + wait.as_secs().max(1) as i64)
        }
        LinkState::Blocked => {
            recheck_interval(schedule, failure.actor).map(|every| now + jittered(every))
        }
        LinkState::Active | LinkState::NeedsReauth | LinkState::Suspended => None,
    }
}

/// How often a link blocked on `actor` is looked at again by itself: operator causes (an
/// expired client secret, a wrong `key_file`, an unreadable `ca_file`) are fixed by whoever runs
/// mslinkd and also re-checked after every successful reload; tenant policy and consent change
/// more slowly. A block only the user can lift waits for the user.
pub fn recheck_interval(schedule: &Schedule, actor: Actor) -> Option<Duration> {
    match actor {
        Actor::Operator => Some(schedule.recheck_blocked),
        Actor::TenantAdmin => Some(schedule.recheck_tenant_blocked),
        Actor::User | Actor::Nobody => None,
    }
}

/// The wait before retry number `failures` (1-based): exponential from `retry_min`, capped at
/// `retry_max`, with "equal jitter" (half fixed, half random), and never shorter than what the
/// server asked for. A server's `Retry-After` gets jitter of its own (up to half of it, at least
/// 2 s): every link throttled together would otherwise come back in the same second.
pub fn backoff(schedule: &Schedule, failures: u32, server_asked: Option<Duration>) -> Duration {
    let min = schedule.retry_min.as_secs_f64();
    let max = schedule.retry_max.as_secs_f64();
    let exp = (min * 2f64.powi(failures.saturating_sub(1).min(30) as i32)).min(max);
    let wait = exp / 2.0 + rand::rng().random_range(0.0..=exp / 2.0);
    let server = server_asked.map_or(0.0, |asked| {
        let asked = asked.as_secs_f64();
        asked + rand::rng().random_range(0.0..=(asked / 2.0).max(2.0))
    });
    Duration::from_secs_f64(wait.max(server))
}

/// `base` ± 10 %, in whole seconds (at least one).
fn jittered(base: Duration) -> i64 {
    let secs = base.as_secs_f64();
    (secs * rand::rng().random_range(0.9..=1.1)).round().max(1.0) as i64
}

/// A fraction in [0, 1) fixed by `(id, expiry)` (SplitMix64's finaliser).
fn unit_fraction(id: i64, expiry: i64) -> f64 {
    let mut z = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (expiry as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::config::{Config, Env};

    fn schedule() -> Schedule {
        Config::parse("", None, &Env { is_root: true, ..Env::default() }).unwrap().schedule
    }

    fn active(id: i64, next_check: i64, expiry: Option<i64>) -> Timers {
        Timers {
            id,
            state: LinkState::Active,
            actor: None,
            next_check: Some(next_check),
            token_expiry: expiry,
            token_issued: expiry.map(|e| e - 3600),
            server: None,
            owner: None,
        }
    }

    #[test]
    fn a_round_woken_at_its_due_time_refreshes_exactly_then() {
        let s = schedule();
        for id in 0..500 {
            let t = active(id, 1_000_000, Some(10_000));
            let due = due(&s, &t).unwrap();
            // Five minutes ahead, spread over a further two and a half.
            assert!((10_000 - 450..=10_000 - 300).contains(&due), "{due}");
            assert_eq!(work(&s, &t, due, false), Work { refresh: true, check: false });
            assert!(work(&s, &t, due - 1, false).is_idle(), "nothing is due a second early");
        }
    }

    #[test]
    fn refresh_jitter_spreads_links_but_is_stable_per_link() {
        let s = schedule();
        let at = |id| refresh_at(&s, &active(id, 0, Some(10_000)), 10_000);
        assert_eq!(at(7), at(7));
        let distinct: std::collections::BTreeSet<i64> = (0..1000).map(at).collect();
        assert!(distinct.len() > 100, "{} distinct refresh seconds", distinct.len());
    }

    #[test]
    fn a_short_lived_token_is_refreshed_at_half_its_life_not_in_a_loop() {
        let s = schedule();
        let t = Timers { token_issued: Some(1000), ..active(1, 9_999_999, Some(1060)) };
        assert_eq!(refresh_at(&s, &t, 1060), 1030);
    }

    #[test]
    fn failed_links_wait_for_their_retry_or_for_a_person() {
        let s = schedule();
        let degraded = Timers { state: LinkState::Degraded, ..active(1, 500, Some(100)) };
        assert_eq!(due(&s, &degraded), Some(500), "the backoff holds even with the token due");
        assert_eq!(work(&s, &degraded, 500, false), Work { refresh: true, check: true });
        let reauth = Timers { state: LinkState::NeedsReauth, ..degraded };
        assert_eq!(due(&s, &reauth), None);
        assert!(work(&s, &reauth, 10_000, false).is_idle());
        assert!(work(&s, &reauth, 10_000, true).check, "`mslinkctl check` still checks");
        let suspended = Timers { state: LinkState::Suspended, ..degraded };
        assert!(work(&s, &suspended, 10_000, true).is_idle(), "never while suspended");
    }

    #[test]
    fn a_check_overdue_by_more_than_three_intervals_is_stale() {
        let s = schedule();
        let interval = s.check_interval.as_secs() as i64;
        let due_at = 1_000_000;
        let at = |state, now| stale(&s, state, Some(due_at), now);
        assert!(!at(LinkState::Active, due_at + 3 * interval));
        assert!(at(LinkState::Active, due_at + 3 * interval + 1));
        assert!(at(LinkState::Degraded, due_at + 4 * interval));
        // Links nobody checks by themselves are never stale.
        for state in [LinkState::Blocked, LinkState::NeedsReauth, LinkState::Suspended] {
            assert!(!at(state, due_at + 100 * interval), "{state}");
        }
        assert!(!stale(&s, LinkState::Active, None, due_at));
    }

    #[test]
    fn blocks_are_rechecked_by_who_must_act() {
        let s = schedule();
        let block = |actor| Failure::blocked("x", actor);
        let six_hours = 6 * 3600;
        let operator = retry_at(&s, &block(Actor::Operator), 1, 0).unwrap();
        assert!((six_hours * 9 / 10..=six_hours * 11 / 10).contains(&operator), "{operator}");
        let tenant = retry_at(&s, &block(Actor::TenantAdmin), 1, 0).unwrap();
        assert!(tenant > operator, "tenant policy is re-checked more slowly");
        assert_eq!(retry_at(&s, &block(Actor::User), 1, 0), None);
        assert_eq!(retry_at(&s, &Failure::reauth("x"), 1, 0), None);
    }

    #[test]
    fn backoff_grows_exponentially_within_its_bounds() {
        let mut s = schedule();
        (s.retry_min, s.retry_max) = (Duration::from_secs(10), Duration::from_secs(300));
        for failures in 1..12 {
            let exp = (10.0 * 2f64.powi(failures as i32 - 1)).min(300.0);
            let wait = backoff(&s, failures, None).as_secs_f64();
            assert!(wait >= exp / 2.0 && wait <= exp, "failure {failures}: {wait}");
        }
    }

    #[test]
    fn backoff_honours_the_server_and_spreads_its_links() {
        let s = schedule();
        let waits: Vec<Duration> =
            (0..200).map(|_| backoff(&s, 1, Some(Duration::from_secs(600)))).collect();
        assert!(waits.iter().all(|w| (600.0..=900.0).contains(&w.as_secs_f64())), "{waits:?}");
        let seconds: std::collections::BTreeSet<u64> =
            waits.iter().map(Duration::as_secs).collect();
        assert!(seconds.len() > 50, "Retry-After is jittered: {} distinct seconds", seconds.len());
        assert!((0..200).all(|_| backoff(&s, 1, Some(Duration::from_secs(1))).as_secs() >= 1));
    }

    fn any_state() -> impl Strategy<Value = LinkState> {
        prop::sample::select(LinkState::ALL.to_vec())
    }

    fn any_actor() -> impl Strategy<Value = Option<Actor>> {
        prop::sample::select(vec![
            None,
            Some(Actor::Nobody),
            Some(Actor::User),
            Some(Actor::TenantAdmin),
            Some(Actor::Operator),
        ])
    }

    proptest! {
        /// Whatever the timers, a round woken at the link's due time has work to do, and after
        /// it commits (healthy, or failed in any way) the link is next due strictly later or
        /// never: no sequence of wakes is a no-op loop.
        #[test]
        fn every_wake_does_work_and_moves_the_link_on(
            id in 0i64..1_000_000,
            state in any_state(),
            actor in any_actor(),
            now in 1_000_000i64..2_000_000,
            check_offset in prop::option::of(-100_000i64..100_000),
            expiry_offset in prop::option::of(-100_000i64..100_000),
            lifetime in 1i64..100_000,
            outcomes in prop::collection::vec(0u8..4, 1..20),
        ) {
            let s = schedule();
            let expiry = expiry_offset.map(|o| now + o);
            let mut t = Timers {
                id,
                state,
                actor,
                next_check: check_offset.map(|o| now + o),
                token_expiry: expiry,
                token_issued: expiry.map(|e| e - lifetime),
                server: None,
            owner: None,
            };
            let mut clock = now;
            for outcome in outcomes {
                let Some(wake) = due(&s, &t) else { break };
                clock = clock.max(wake);
                let w = work(&s, &t, clock, false);
                prop_assert!(!w.is_idle(), "woken at {} with nothing to do: {:?}", clock, t);
                if w.refresh {
                    t.token_expiry = Some(clock + lifetime);
                    t.token_issued = Some(clock);
                }
                let failure = match outcome {
                    0 => None,
                    1 => Some(Failure::transient("down")),
                    2 => Some(Failure::blocked("policy", Actor::Operator)),
                    _ => Some(Failure::reauth("revoked")),
                };
                match failure {
                    None => {
                        if w.check || t.next_check.is_none() {
                            t.next_check = Some(next_check(&s, clock));
                        }
                        (t.state, t.actor) = (LinkState::Active, None);
                    }
                    Some(f) => {
                        t.next_check = retry_at(&s, &f, 1, clock);
                        (t.state, t.actor) = (f.state, Some(f.actor));
                    }
                }
                if let Some(next) = due(&s, &t) {
                    prop_assert!(next > clock, "due again at {} after a round at {}: {:?}", next, clock, t);
                }
            }
        }
    }
}
