//! The Scheduler: decides when each link is next refreshed or checked, and runs that work with
//! at most `max_concurrent` links in flight.
//!
//! ```text
//!   schedule(id, due) ─▶ mpsc ─▶ [scheduler task: min-heap of (due, id) + latest due per id]
//!                                     │ sleep_until(earliest due)   (no polling)
//!                                     ▼
//!                          permit (semaphore) ─▶ spawn work::perform ─▶ schedule(id, next)
//! ```
//!
//! Ownership: the heap and the `latest` map belong to the scheduler task alone; everyone else
//! talks to it through the channel. A link rescheduled or forgotten leaves a stale heap entry
//! behind, which is skipped when popped because it no longer matches `latest`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use mslink_proto::{LinkInfo, LinkState};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Daemon;
use crate::config::Config;

/// A message to the scheduler task.
#[derive(Debug)]
enum Command {
    /// Look at link `id` at unix time `due` (now or earlier: at once).
    At(i64, i64),
    /// Stop looking after link `id`.
    Forget(i64),
}

/// A handle to the scheduler task. Cheap to clone; sending never blocks.
#[derive(Debug, Clone)]
pub struct Scheduler {
    commands: mpsc::UnboundedSender<Command>,
}

/// The receiving end, handed to [`Scheduler::run`] once.
#[derive(Debug)]
pub struct SchedulerInbox(mpsc::UnboundedReceiver<Command>);

impl Scheduler {
    /// A handle and the inbox its task will read.
    pub fn new() -> (Scheduler, SchedulerInbox) {
        let (commands, inbox) = mpsc::unbounded_channel();
        (Scheduler { commands }, SchedulerInbox(inbox))
    }

    /// Look at link `id` at unix time `due`; `None` means nothing is due (needs_reauth,
    /// blocked): forget it.
    pub fn schedule(&self, id: i64, due: Option<i64>) {
        let command = match due {
            Some(due) => Command::At(id, due),
            None => Command::Forget(id),
        };
        if self.commands.send(command).is_err() {
            tracing::error!(
                link_id = id,
                "the scheduler has stopped; background work is not running"
            );
        }
    }

    /// Schedules a freshly linked or resumed link by its stored times.
    pub fn schedule_link(&self, link_id: i64, link: &LinkInfo, config: &Config) {
        let due = match link.state {
            LinkState::Active | LinkState::Degraded => {
                let check = link.next_check.unwrap_or_else(crate::now);
                Some(match link.token_expiry {
                    Some(expiry) => check.min(super::work::refresh_at(config, expiry)),
                    None => check,
                })
            }
            LinkState::NeedsReauth | LinkState::Blocked | LinkState::Suspended => None,
        };
        self.schedule(link_id, due);
    }

    /// Forget link `id` (disconnected, suspended).
    pub fn forget(&self, id: i64) {
        let _ = self.commands.send(Command::Forget(id));
    }

    /// Runs until `shutdown`: loads every link that needs looking after, then serves the inbox
    /// and the due times. Waits for work in flight before returning.
    pub async fn run(daemon: Arc<Daemon>, inbox: SchedulerInbox, shutdown: CancellationToken) {
        let SchedulerInbox(mut inbox) = inbox;
        let config = daemon.config();
        let permits = Arc::new(Semaphore::new(config.schedule.max_concurrent));
        let tasks = TaskTracker::new();
        let mut heap: BinaryHeap<Reverse<(i64, i64)>> = BinaryHeap::new();
        let mut latest: HashMap<i64, i64> = HashMap::new();

        match daemon.store.call(|db| db.due_links()).await {
            Ok(links) => {
                let now = crate::now();
                for link in links {
                    let check = link.next_check.unwrap_or(now);
                    let due = link
                        .token_expiry
                        .map_or(check, |e| check.min(super::work::refresh_at(&config, e)));
                    latest.insert(link.id, due);
                    heap.push(Reverse((due, link.id)));
                }
                tracing::info!(links = latest.len(), "scheduler loaded links");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot load links; background work waits for changes")
            }
        }

        loop {
            let next = heap.peek().map(|Reverse((due, _))| *due);
            tokio::select! {
                () = shutdown.cancelled() => break,
                command = inbox.recv() => match command {
                    Some(Command::At(id, due)) => {
                        tracing::debug!(link_id = id, in_secs = due - crate::now(), "scheduled");
                        latest.insert(id, due);
                        heap.push(Reverse((due, id)));
                    }
                    Some(Command::Forget(id)) => { latest.remove(&id); }
                    None => break,
                },
                () = sleep_until_unix(next.unwrap_or(i64::MAX)), if next.is_some() => {
                    let now = crate::now();
                    while let Some(&Reverse((due, id))) = heap.peek() {
                        if due > now {
                            break;
                        }
                        heap.pop();
                        if latest.get(&id) != Some(&due) {
                            continue; // rescheduled or forgotten since
                        }
                        latest.remove(&id);
                        let permit = tokio::select! {
                            () = shutdown.cancelled() => break,
                            permit = permits.clone().acquire_owned() => match permit {
                                Ok(permit) => permit,
                                Err(_) => break,
                            },
                        };
                        let daemon = daemon.clone();
                        tasks.spawn(async move {
                            run_one(&daemon, id).await;
                            drop(permit);
                        });
                    }
                }
            }
        }
        tasks.close();
        tasks.wait().await;
    }
}

async fn run_one(daemon: &Daemon, id: i64) {
    if let Err(e) = super::work::perform(daemon, id, false).await {
        let retry = store_retry(daemon);
        tracing::error!(link_id = id, error = %e, retry_in_secs = retry, "cannot load or record a round");
        daemon.scheduler.schedule(id, Some(crate::now() + retry));
    }
}

/// A store failure (disk full, read-only) is retried like a transient provider failure, after
/// `retry_min`, so links resume soon after the disk does.
fn store_retry(daemon: &Daemon) -> i64 {
    daemon.config().schedule.retry_min.as_secs().max(1) as i64
}

/// Sleeps until a wall-clock unix time.
async fn sleep_until_unix(due: i64) {
    let wait = (due - crate::now()).clamp(0, 86_400) as u64;
    tokio::time::sleep_until(Instant::now() + Duration::from_secs(wait)).await;
}
