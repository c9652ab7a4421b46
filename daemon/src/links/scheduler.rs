//! The Scheduler: holds every looked-after link's next due time and runs rounds when they come
//! due, at most [`Rounds::limit`] at once, and at most [`per_server_limit`] of them against any
//! one user-chosen server. When to run a link is not decided here: each round returns its link's
//! next [`Due`] (from [`super::schedule`]), and `schedule` commands bring links in from outside
//! (linked, resumed, re-checked).
//!
//! ```text
//!   schedule(id, due) ─▶ mpsc ─▶ [scheduler task: min-heap of (due, id) + latest due per id]
//!                                     │ sleep towards the earliest due (at most a minute, then
//!                                     │ read the wall clock again: suspend and clock jumps)
//!                                     ▼
//!      a free slot, and its server has a free share ─▶ JoinSet: Rounds::round(id) ─▶ next due
//!      its server's share is taken ─▶ parked behind that server until one of its rounds ends
//! ```
//!
//! Fairness: a server that hangs (one user's own Exchange) holds at most its share of the slots,
//! and so do one owner's rounds against all the servers they chose (twenty links on twenty
//! hanging host names); the other due links of that share wait parked, and everyone else's
//! links keep their times.
//!
//! Ownership: the heap, `latest`, `running`, the parked links and the join set belong to the
//! scheduler task alone; everyone else talks to it through the channel. A link rescheduled or
//! forgotten leaves a stale heap (or parked) entry behind, which is skipped when popped because
//! it no longer matches `latest`. A `schedule` for a link whose round is running waits beside it
//! and is merged (the earlier time wins) with what the round returns.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::schedule::{Server, per_server_limit};
use crate::clock::{Clock, sleep_towards};

/// How long rounds in flight get to finish once the daemon stops; then they are dropped (each
/// commits atomically or not at all, so nothing is left half-written).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The work the scheduler runs. [`super::Links`] implements it; tests implement it with a
/// simulated world.
pub trait Rounds: Send + Sync + 'static {
    /// Every looked-after link and when it is due, read once at start.
    fn load(&self) -> impl Future<Output = Vec<(i64, Due)>> + Send;
    /// Runs one round on link `id`; returns when it is next due (`None`: not until a person
    /// acts).
    fn round(&self, id: i64) -> impl Future<Output = Option<Due>> + Send;
    /// How many rounds may run at once; read before each start, so a reload applies live.
    fn limit(&self) -> usize;
}

/// When a link is next due, and the user-chosen server its round talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Unix time; now or earlier: at once.
    pub at: i64,
    pub server: Option<Server>,
    /// The uid of the link's owner, who chose `server`.
    pub owner: Option<u32>,
}

impl Due {
    /// Due at `at`, against no user-chosen server.
    pub fn at(at: i64) -> Due {
        Due { at, server: None, owner: None }
    }
}

/// A message to the scheduler task.
#[derive(Debug)]
enum Command {
    /// Look at link `id` when due.
    At(i64, Due),
    /// Stop looking after link `id`.
    Forget(i64),
}

/// A handle to the scheduler task. Cheap to clone; sending never blocks.
#[derive(Debug, Clone)]
pub struct Scheduler {
    commands: mpsc::UnboundedSender<Command>,
}

/// The receiving end, handed to [`run`] once.
#[derive(Debug)]
pub struct SchedulerInbox(mpsc::UnboundedReceiver<Command>);

impl Scheduler {
    /// A handle and the inbox its task will read.
    pub fn new() -> (Scheduler, SchedulerInbox) {
        let (commands, inbox) = mpsc::unbounded_channel();
        (Scheduler { commands }, SchedulerInbox(inbox))
    }

    /// Look at link `id` when `due`; `None` means nothing is due: forget it.
    pub fn schedule(&self, id: i64, due: Option<Due>) {
        let command = match due {
            Some(due) => Command::At(id, due),
            None => Command::Forget(id),
        };
        if self.commands.send(command).is_err() {
            tracing::debug!(link_id = id, "the scheduler has stopped; not scheduled");
        }
    }
}

/// A group of links that shares the slots fairly: the rounds against one user-chosen server,
/// or the rounds of one owner against the servers they chose. Each holds at most
/// [`per_server_limit`] slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Share {
    Server(Server),
    Owner(u32),
}

impl Due {
    /// The shares a round of this link takes: none for the operator's configured endpoints;
    /// its server's, and its owner's, for a server its owner chose.
    fn shares(&self) -> impl Iterator<Item = Share> + use<> {
        let owner = self.server.and(self.owner);
        self.server.map(Share::Server).into_iter().chain(owner.map(Share::Owner))
    }
}

/// The scheduler task's state.
#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<(i64, i64)>>,
    /// The one due time that counts per link.
    latest: HashMap<i64, i64>,
    /// The user-chosen server (and its owner) of each link that has one.
    chosen: HashMap<i64, Due>,
    /// Links whose round is running, with any `schedule` that came for them meanwhile.
    running: HashMap<i64, Option<Due>>,
    /// Rounds running per share.
    busy: HashMap<Share, usize>,
    /// Due links waiting for a share, oldest first, as `(due, id)`.
    parked: HashMap<Share, std::collections::VecDeque<(i64, i64)>>,
}

/// The earlier of two due times; the later one's server is as current as the earlier's.
fn earlier(a: Option<Due>, b: Option<Due>) -> Option<Due> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Due {
            at: a.at.min(b.at),
            server: b.server.or(a.server),
            owner: b.owner.or(a.owner),
        }),
        (a, b) => a.or(b),
    }
}

impl Queue {
    fn set(&mut self, id: i64, due: Option<Due>) {
        if let Some(waiting) = self.running.get_mut(&id) {
            *waiting = earlier(*waiting, due);
            return;
        }
        match due {
            Some(due) => {
                self.latest.insert(id, due.at);
                match due.server {
                    Some(_) => self.chosen.insert(id, due),
                    None => self.chosen.remove(&id),
                };
                self.heap.push(Reverse((due.at, id)));
            }
            None => {
                self.latest.remove(&id);
                self.chosen.remove(&id);
            }
        }
    }

    /// The shares link `id`'s round takes.
    fn shares(&self, id: i64) -> impl Iterator<Item = Share> + use<> {
        self.chosen.get(&id).copied().into_iter().flat_map(|due| due.shares())
    }

    /// Takes the earliest live entry due by `now` whose shares have a free slot out of `limit`,
    /// parking the due ones behind a share that has none.
    fn next_runnable(&mut self, now: i64, limit: usize) -> Option<i64> {
        while let Some((due, id)) = self.earliest() {
            if due > now {
                return None;
            }
            self.heap.pop();
            let full = self.shares(id).find(|share| {
                self.busy.get(share).copied().unwrap_or(0) >= per_server_limit(limit)
            });
            if let Some(share) = full {
                self.parked.entry(share).or_default().push_back((due, id));
                continue;
            }
            self.latest.remove(&id);
            for share in self.shares(id) {
                *self.busy.entry(share).or_default() += 1;
            }
            self.running.insert(id, None);
            return Some(id);
        }
        None
    }

    /// The earliest live entry, dropping stale ones on the way.
    fn earliest(&mut self) -> Option<(i64, i64)> {
        while let Some(&Reverse((due, id))) = self.heap.peek() {
            if self.latest.get(&id) == Some(&due) {
                return Some((due, id));
            }
            self.heap.pop();
        }
        None
    }

    fn finished(&mut self, id: i64, next: Option<Due>) {
        for share in self.shares(id) {
            self.release(share);
        }
        let waiting = self.running.remove(&id).flatten();
        self.set(id, earlier(next, waiting));
    }

    /// One of `share`'s rounds ended: its oldest parked link still due goes back in the heap
    /// (where its other share, if full, parks it again).
    fn release(&mut self, share: Share) {
        if let Some(n) = self.busy.get_mut(&share) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.busy.remove(&share);
            }
        }
        let Some(parked) = self.parked.get_mut(&share) else { return };
        while let Some((due, id)) = parked.pop_front() {
            let live = self.latest.get(&id) == Some(&due) && !self.running.contains_key(&id);
            if live && self.chosen.get(&id).is_some_and(|d| d.shares().any(|s| s == share)) {
                self.heap.push(Reverse((due, id)));
                break;
            }
        }
        if parked.is_empty() {
            self.parked.remove(&share);
        }
    }
}

/// Runs until `shutdown`: loads every link that needs looking after, then serves the inbox and
/// the due times. Gives rounds in flight [`STOP_GRACE`] to finish before returning.
pub async fn run<R: Rounds>(
    rounds: Arc<R>,
    clock: Arc<dyn Clock>,
    inbox: SchedulerInbox,
    shutdown: CancellationToken,
) {
    let SchedulerInbox(mut inbox) = inbox;
    let mut queue = Queue::default();
    let loaded = tokio::select! {
        () = shutdown.cancelled() => return,
        loaded = rounds.load() => loaded,
    };
    tracing::info!(links = loaded.len(), "scheduler loaded links");
    for (id, due) in loaded {
        queue.set(id, Some(due));
    }
    let mut in_flight: JoinSet<(i64, Option<Due>)> = JoinSet::new();
    // Which link each round task works on, so a round that panics still gives its slot back.
    let mut tasks: HashMap<tokio::task::Id, i64> = HashMap::new();

    loop {
        let now = clock.now();
        let limit = rounds.limit().max(1);
        while in_flight.len() < limit {
            let Some(id) = queue.next_runnable(now, limit) else { break };
            let rounds = rounds.clone();
            let task = in_flight.spawn(async move { (id, rounds.round(id).await) });
            tasks.insert(task.id(), id);
        }
        let full = in_flight.len() >= rounds.limit().max(1);
        let next = if full { None } else { queue.earliest().map(|(due, _)| due) };
        tokio::select! {
            () = shutdown.cancelled() => break,
            command = inbox.recv() => match command {
                Some(Command::At(id, due)) => queue.set(id, Some(due)),
                Some(Command::Forget(id)) => queue.set(id, None),
                None => break,
            },
            Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => match done {
                Ok((task, (id, next))) => {
                    tasks.remove(&task);
                    queue.finished(id, next);
                }
                Err(e) => {
                    let id = tasks.remove(&e.id());
                    tracing::error!(link_id = ?id, error = %e, "a round panicked; its link waits for a change");
                    if let Some(id) = id {
                        queue.finished(id, None);
                    }
                }
            },
            () = sleep_towards(clock.as_ref(), next.unwrap_or(i64::MAX)), if next.is_some() => {}
        }
    }
    let drained =
        tokio::time::timeout(STOP_GRACE, async { while in_flight.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
        tracing::warn!(
            rounds = in_flight.len(),
            "rounds still running at shutdown were stopped; their links are picked up at the next start"
        );
        in_flight.abort_all();
    }
}

#[cfg(test)]
mod tests {
    //! The scheduler and the schedule rule together, under tokio's paused clock, against a
    //! simulated world: each round applies the rule to the link's timers as the real round does
    //! (refresh moves the token, a check moves `next_check`), and counts what it did.

    use std::sync::Mutex;

    use mslink_proto::LinkState;

    use super::*;
    use crate::clock::TokioClock;
    use crate::config::{Config, Env, Schedule};
    use crate::links::schedule::{self, Timers};

    const START: i64 = 1_800_000_000;
    const TOKEN_LIFETIME: i64 = 3600;

    #[derive(Debug, Default, Clone, Copy, PartialEq)]
    struct Counts {
        rounds: u64,
        refreshes: u64,
        checks: u64,
        idle: u64,
    }

    #[derive(Debug)]
    struct World {
        schedule: Schedule,
        clock: Arc<TokioClock>,
        links: Mutex<HashMap<i64, (Timers, Counts)>>,
        running: Mutex<(usize, usize)>,
        limit: std::sync::atomic::AtomicUsize,
        /// How long a round takes, in simulated seconds.
        round_takes: Duration,
        /// A server whose rounds take this long instead (one that hangs until the timeout).
        hanging: Mutex<Option<(Vec<Server>, Duration)>>,
    }

    impl World {
        fn new(links: i64, round_takes: Duration) -> Arc<World> {
            let schedule =
                Config::parse("", None, &Env { is_root: true, ..Env::default() }).unwrap().schedule;
            let clock = Arc::new(TokioClock::starting_at(START));
            let links = (0..links)
                .map(|id| {
                    let timers = Timers {
                        id,
                        state: LinkState::Active,
                        actor: None,
                        // Linked over the last 15 minutes, tokens issued then.
                        next_check: Some(START + 900 - id % 900),
                        token_expiry: Some(START + TOKEN_LIFETIME - id % 900),
                        token_issued: Some(START - id % 900),
                        server: None,
                        owner: None,
                    };
                    (id, (timers, Counts::default()))
                })
                .collect();
            Arc::new(World {
                limit: schedule.max_concurrent.into(),
                schedule,
                clock,
                links: Mutex::new(links),
                running: Mutex::new((0, 0)),
                round_takes,
                hanging: Mutex::new(None),
            })
        }

        fn due(&self, timers: &Timers) -> Option<Due> {
            schedule::due(&self.schedule, timers).map(|at| Due {
                at,
                server: timers.server,
                owner: timers.owner,
            })
        }

        fn totals(&self) -> Counts {
            let links = self.links.lock().unwrap();
            links.values().fold(Counts::default(), |mut sum, (_, c)| {
                sum.rounds += c.rounds;
                sum.refreshes += c.refreshes;
                sum.checks += c.checks;
                sum.idle += c.idle;
                sum
            })
        }
    }

    impl Rounds for World {
        async fn load(&self) -> Vec<(i64, Due)> {
            let links = self.links.lock().unwrap();
            links.values().filter_map(|(t, _)| self.due(t).map(|due| (t.id, due))).collect()
        }

        async fn round(&self, id: i64) -> Option<Due> {
            {
                let mut running = self.running.lock().unwrap();
                running.0 += 1;
                running.1 = running.1.max(running.0);
            }
            let server = self.links.lock().unwrap()[&id].0.server;
            let takes = match &*self.hanging.lock().unwrap() {
                Some((hanging, takes)) if server.is_some_and(|s| hanging.contains(&s)) => *takes,
                _ => self.round_takes,
            };
            tokio::time::sleep(takes).await;
            let now = self.clock.now();
            let mut links = self.links.lock().unwrap();
            let (timers, counts) = links.get_mut(&id).unwrap();
            let work = schedule::work(&self.schedule, timers, now, false);
            counts.rounds += 1;
            if work.is_idle() {
                counts.idle += 1;
            }
            if work.refresh {
                counts.refreshes += 1;
                timers.token_expiry = Some(now + TOKEN_LIFETIME);
                timers.token_issued = Some(now);
            }
            if work.check {
                counts.checks += 1;
                timers.next_check = Some(schedule::next_check(&self.schedule, now));
            }
            self.running.lock().unwrap().0 -= 1;
            self.due(timers)
        }

        fn limit(&self) -> usize {
            self.limit.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    fn start(world: &Arc<World>) -> (Scheduler, CancellationToken, tokio::task::JoinHandle<()>) {
        let (scheduler, inbox) = Scheduler::new();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            world.clone(),
            world.clock.clone() as Arc<dyn Clock>,
            inbox,
            shutdown.clone(),
        ));
        (scheduler, shutdown, task)
    }

    #[tokio::test(start_paused = true)]
    async fn six_hours_at_the_defaults_run_one_round_per_refresh_and_per_check() {
        let world = World::new(200, Duration::from_millis(200));
        let (_scheduler, shutdown, task) = start(&world);
        tokio::time::sleep(Duration::from_secs(6 * 3600)).await;
        shutdown.cancel();
        task.await.unwrap();
        let totals = world.totals();
        assert_eq!(totals.idle, 0, "no round woke to find nothing due: {totals:?}");
        // 6 h of 60-minute tokens refreshed 5-7.5 minutes early: 6 refreshes a link (the first
        // token was issued up to 15 minutes before the start); checks every 15 min ± 10 %.
        let per_link = |n: u64| n as f64 / 200.0;
        assert!((5.5..=6.5).contains(&per_link(totals.refreshes)), "{totals:?}");
        assert!((21.0..=26.0).contains(&per_link(totals.checks)), "{totals:?}");
        assert!(
            totals.rounds <= totals.refreshes + totals.checks,
            "every round did a refresh, a check or both: {totals:?}"
        );
        let max_running = world.running.lock().unwrap().1;
        assert!(max_running <= 16, "at most max_concurrent at once: {max_running}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_server_holds_only_its_share_and_other_links_keep_their_times() {
        // 300 links on one user's Exchange server that hangs every round until a 30 s timeout,
        // and 20 other links checked every 15 s: they must keep their times.
        let world = World::new(320, Duration::from_millis(100));
        let hostile = Server::of_url("https://mail.hostile.test/EWS/Exchange.asmx").unwrap();
        *world.hanging.lock().unwrap() = Some((vec![hostile], Duration::from_secs(30)));
        {
            let mut links = world.links.lock().unwrap();
            for (id, (t, _)) in links.iter_mut() {
                t.next_check = Some(START);
                (t.token_expiry, t.token_issued) = (None, None);
                if *id < 300 {
                    t.server = Some(hostile);
                }
            }
        }
        let (fewest, hostile_checks) = checks_in_two_minutes(world, 0..300, 300..320).await;
        // Every 15 s ± 10 % over 120 s: 8 checks or more each (the first at once).
        assert!(fewest >= 8, "another user's link was checked only {fewest} times in 120 s");
        // A quarter of the 16 slots, 30 s a round: 4 every 30 s.
        assert!(hostile_checks <= 4 * 5, "the hanging server had {hostile_checks} rounds");
    }

    /// Runs `world` for 120 s with 15 s checks; the fewest checks any of `others` had, and how
    /// many the `hostile` links had together.
    async fn checks_in_two_minutes(
        world: Arc<World>,
        hostile: std::ops::Range<i64>,
        others: std::ops::Range<i64>,
    ) -> (u64, u64) {
        let world = Arc::new(World {
            schedule: Schedule {
                check_interval: Duration::from_secs(15),
                ..world.schedule.clone()
            },
            ..Arc::into_inner(world).unwrap()
        });
        let (_scheduler, shutdown, task) = start(&world);
        tokio::time::sleep(Duration::from_secs(120)).await;
        shutdown.cancel();
        task.await.unwrap();
        let links = world.links.lock().unwrap();
        let fewest = others.map(|id| links[&id].1.checks).min().unwrap();
        (fewest, hostile.map(|id| links[&id].1.checks).sum())
    }

    #[tokio::test(start_paused = true)]
    async fn one_owner_s_many_hanging_servers_hold_only_their_share() {
        // One user's 20 links, each on a server of its own name that hangs every round until a
        // 30 s timeout (twenty names for one hostile machine), and another user's 20 links on
        // their own Exchange checked every 15 s: those keep their times.
        let world = World::new(40, Duration::from_millis(100));
        let hostile: Vec<Server> = (0..20)
            .map(|n| Server::of_url(&format!("https://mail{n}.hostile.test/EWS")).unwrap())
            .collect();
        *world.hanging.lock().unwrap() = Some((hostile.clone(), Duration::from_secs(30)));
        let own = Server::of_url("https://mail.contoso.test/EWS/Exchange.asmx").unwrap();
        {
            let mut links = world.links.lock().unwrap();
            for (id, (t, _)) in links.iter_mut() {
                t.next_check = Some(START);
                (t.token_expiry, t.token_issued) = (None, None);
                let mine = *id < 20;
                t.server = Some(if mine { hostile[*id as usize] } else { own });
                t.owner = Some(if mine { 6666 } else { 1001 });
            }
        }
        let (fewest, hostile_checks) = checks_in_two_minutes(world, 0..20, 20..40).await;
        assert!(fewest >= 8, "another user's link was checked only {fewest} times in 120 s");
        // A quarter of the 16 slots for the owner, 30 s a round: 4 every 30 s.
        assert!(hostile_checks <= 4 * 5, "one owner's servers had {hostile_checks} rounds");
    }

    #[tokio::test(start_paused = true)]
    async fn max_concurrent_applies_live() {
        let world = World::new(100, Duration::from_secs(30));
        world.links.lock().unwrap().values_mut().for_each(|(t, _)| t.next_check = Some(START));
        let (_scheduler, shutdown, task) = start(&world);
        tokio::time::sleep(Duration::from_secs(45)).await;
        assert_eq!(world.running.lock().unwrap().1, 16, "the default limit");
        world.limit.store(40, std::sync::atomic::Ordering::SeqCst);
        world.running.lock().unwrap().1 = 0;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(world.running.lock().unwrap().1, 40, "raised by a reload");
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_wall_clock_jump_is_noticed_within_a_minute() {
        let world = World::new(1, Duration::from_millis(10));
        {
            let mut links = world.links.lock().unwrap();
            let (t, _) = links.get_mut(&0).unwrap();
            (t.next_check, t.token_expiry, t.token_issued) = (Some(START + 86_400), None, None);
        }
        let (_scheduler, shutdown, task) = start(&world);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(world.totals().checks, 0);
        // The machine slept for a day: monotonic time barely moved, the wall clock did.
        world.clock.jump(86_400);
        tokio::time::sleep(clock_grace()).await;
        assert_eq!(world.totals().checks, 1, "checked within a minute of waking up");
        shutdown.cancel();
        task.await.unwrap();
    }

    fn clock_grace() -> Duration {
        crate::clock::MAX_SLEEP + Duration::from_secs(1)
    }

    #[tokio::test(start_paused = true)]
    async fn a_schedule_during_a_round_is_kept() {
        let world = World::new(1, Duration::from_secs(10));
        world.links.lock().unwrap().get_mut(&0).unwrap().0.next_check = Some(START);
        let (scheduler, shutdown, task) = start(&world);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(world.running.lock().unwrap().0, 1, "the round is running");
        // Re-linked meanwhile: due again in 100 s, sooner than the round's own answer.
        scheduler.schedule(0, Some(Due::at(START + 100)));
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(world.totals().checks, 1);
        assert_eq!(world.totals().rounds, 2, "the second wake was the one scheduled meanwhile");
        shutdown.cancel();
        task.await.unwrap();
    }
}
