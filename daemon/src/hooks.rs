//! `[hooks] on_state_change`: run the operator's command when something happens that a human may
//! need to act on (a link changed state or was removed, a user asked for the integration, an admin
//! turned it on or off).
//!
//! ```text
//!  daemon.events ──▶ Hooks::follow ──[permit: at most MAX_RUNNING at once]──▶ one task per run
//!                       │ bus backlog full: oldest events dropped, logged           │
//!                       │                                       /bin/sh -c COMMAND, own process group
//!                       │                                       env: PATH + MSLINK_* only
//!                       └──────────────────────────────────────  TIMEOUT ─▶ SIGKILL to the group
//! ```
//!
//! The command is run by `/bin/sh -c`, so it may be a pipeline or carry arguments; the event's
//! values are passed only as environment variables, never spliced into the command text, so an
//! odd email address or reason cannot inject shell syntax (quote them: `"$MSLINK_EMAIL"`).
//! The environment is cleared except `PATH`, so no secret or systemd variable reaches the hook.
//! Every variable is always set (empty when it does not apply), so `set -u` scripts work.
//!
//! The daemon never waits for a hook, and no event that calls for one is lost silently: the
//! follower drains the event bus at once into its own queue, and starts runs from the queue, at
//! most [`MAX_RUNNING`] at once and never two for the same link, so each link's runs happen in
//! order. While a link's state change waits, a newer one for the same link replaces it
//! (coalesced: the run sees the latest state and reason, and the `MSLINK_PREVIOUS_STATE` of the
//! first change it stands for), and that is counted (`mslink_hook_events_coalesced_total`).
//! Requests, toggles and removals are never coalesced. Anything that still cannot be passed on
//! (the bus overflowing, the queue over [`MAX_QUEUED`]) is counted in
//! `mslink_events_lost_total{consumer="hooks"}` and logged. `MSLINK_SEQ` numbers the runs.
//! The command is read from the config when a run starts, so `mslinkctl reload` changes it.
//! When the command's first word is a path, that program must pass [`crate::files`]'s rule at
//! every run (owned by root or us, not writable by others, nor its directories), or the run is
//! refused and logged: whoever may change it would run code as mslinkd.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::collections::{HashMap, HashSet, VecDeque};
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use tokio::task::JoinSet;

use crate::config::SharedConfig;
use crate::events::{Bus, Event};

/// How long one run may take before its process group is killed.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Runs at once; later events wait their turn.
pub const MAX_RUNNING: usize = 4;
/// How long running hooks get to finish once the daemon stops.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Events waiting for a run at most; past that they are counted as lost.
pub const MAX_QUEUED: usize = 100_000;
/// How much of a failing hook's stderr goes into the log.
const STDERR_KEPT: usize = 2048;
/// `PATH` when the daemon has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment of one run: `(name, value)` pairs, all `MSLINK_*`.
pub fn environment(event: &Event, seq: u64, now: i64) -> Option<Vec<(&'static str, String)>> {
    let mut vars = Vars::default();
    match event {
        Event::LinkState { email, user, provider, state, previous, reason } => {
            vars.event = "link_state";
            vars.email = email.clone();
            vars.user = user.clone();
            vars.provider = provider.to_string();
            vars.state = state.to_string();
            vars.previous = previous.map(|p| p.to_string()).unwrap_or_default();
            vars.reason = reason.clone().unwrap_or_default();
        }
        Event::LinkRemoved { email, user, provider } => {
            vars.event = "link_removed";
            vars.email = email.clone();
            vars.user = user.clone();
            vars.provider = provider.to_string();
            vars.state = "removed".into();
        }
        Event::Requested { user, message } => {
            vars.event = "requested";
            vars.user = user.clone();
            vars.message = message.clone().unwrap_or_default();
        }
        Event::Integration { enabled, by } => {
            vars.event = "integration";
            vars.user = by.clone();
            vars.state = if *enabled { "enabled" } else { "disabled" }.into();
        }
        // Routine work is for metrics, not for paging anyone.
        Event::Refreshed { .. } | Event::Checked { .. } | Event::Round { .. } => return None,
    }
    Some(vec![
        ("MSLINK_EVENT", vars.event.to_owned()),
        ("MSLINK_EMAIL", vars.email),
        ("MSLINK_USER", vars.user),
        ("MSLINK_PROVIDER", vars.provider),
        ("MSLINK_STATE", vars.state),
        ("MSLINK_PREVIOUS_STATE", vars.previous),
        ("MSLINK_REASON", vars.reason),
        ("MSLINK_MESSAGE", vars.message),
        ("MSLINK_SEQ", seq.to_string()),
        ("MSLINK_TIME", now.to_string()),
    ])
}

#[derive(Default)]
struct Vars {
    event: &'static str,
    email: String,
    user: String,
    provider: String,
    state: String,
    previous: String,
    reason: String,
    message: String,
}

/// The link an event is about, for ordering and coalescing; `None` for organisation events.
fn link_key(event: &Event) -> Option<LinkKey> {
    match event {
        Event::LinkState { email, user, .. } | Event::LinkRemoved { email, user, .. } => {
            Some((user.clone(), email.to_ascii_lowercase()))
        }
        _ => None,
    }
}

/// Which link an event is about.
type LinkKey = (String, String);

/// Events waiting for a run. Each link's events wait in order in a line of their own; `order`
/// holds organisation events and the links with a non-empty line (each once) in arrival order.
/// Coalescing looks only at that link's line and picking the next event skips at most the
/// [`MAX_RUNNING`] busy links, so a storm over many links costs a constant per event, not a scan
/// of everything waiting.
#[derive(Debug, Default)]
struct Queue {
    order: VecDeque<Waiting>,
    lines: HashMap<LinkKey, VecDeque<Event>>,
    len: usize,
}

#[derive(Debug)]
enum Waiting {
    /// A request or a toggle.
    Organisation(Event),
    /// The next event in this link's line.
    Link(LinkKey),
}

impl Queue {
    /// How many events wait.
    fn len(&self) -> usize {
        self.len
    }

    /// Queues `event`; returns false when it replaced (coalesced into) a waiting state change of
    /// the same link.
    fn push(&mut self, event: Event) -> bool {
        let Some(key) = link_key(&event) else {
            self.order.push_back(Waiting::Organisation(event));
            self.len += 1;
            return true;
        };
        match self.lines.get_mut(&key) {
            Some(line) => {
                if let (
                    Event::LinkState { state, reason, .. },
                    Some(Event::LinkState { state: s, reason: r, .. }),
                ) = (&event, line.back_mut())
                {
                    (*s, *r) = (*state, reason.clone());
                    return false;
                }
                line.push_back(event);
            }
            None => {
                self.lines.insert(key.clone(), VecDeque::from([event]));
                self.order.push_back(Waiting::Link(key));
            }
        }
        self.len += 1;
        true
    }

    /// The oldest event whose link has no run in progress.
    fn next(&mut self, busy: &HashSet<LinkKey>) -> Option<Event> {
        let at = self.order.iter().position(|waiting| match waiting {
            Waiting::Organisation(_) => true,
            Waiting::Link(key) => !busy.contains(key),
        })?;
        let event = match self.order.remove(at)? {
            Waiting::Organisation(event) => event,
            Waiting::Link(key) => {
                let line = self.lines.get_mut(&key)?;
                let event = line.pop_front()?;
                if line.is_empty() {
                    self.lines.remove(&key);
                } else {
                    self.order.push_back(Waiting::Link(key));
                }
                event
            }
        };
        self.len -= 1;
        Some(event)
    }
}

/// Follows the event bus and runs the hook for each event that calls for it, until `shutdown`;
/// then gives running hooks [`STOP_GRACE`] to finish.
pub async fn follow(
    config: SharedConfig,
    bus: Bus,
    mut events: broadcast::Receiver<Event>,
    shutdown: CancellationToken,
) {
    let mut queue = Queue::default();
    let mut busy: HashSet<LinkKey> = HashSet::new();
    let mut runs: JoinSet<Option<LinkKey>> = JoinSet::new();
    let seq = AtomicU64::new(0);
    loop {
        while runs.len() < MAX_RUNNING {
            let Some(event) = queue.next(&busy) else { break };
            let Some(command) = config.get().hooks.on_state_change.clone() else { continue };
            let Some(env) =
                environment(&event, seq.fetch_add(1, Ordering::Relaxed) + 1, crate::now())
            else {
                continue;
            };
            let key = link_key(&event);
            if let Some(key) = &key {
                busy.insert(key.clone());
            }
            let stop = shutdown.clone();
            runs.spawn(async move {
                run(&command, &env, TIMEOUT, stop).await;
                key
            });
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(done) = runs.join_next(), if !runs.is_empty() => {
                if let Ok(Some(key)) = done {
                    busy.remove(&key);
                }
            }
            event = events.recv() => match event {
                // Routine work never pages anyone: keep it out of the queue.
                Ok(Event::Refreshed { .. } | Event::Checked { .. } | Event::Round { .. }) => {}
                Ok(event) if queue.len() >= MAX_QUEUED => {
                    tracing::error!(event = ?event, "on_state_change queue full; event not passed on");
                    bus.note_lost("hooks", 1);
                }
                Ok(event) => {
                    if !queue.push(event) {
                        bus.note_coalesced(1);
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::error!(lost = n, "hooks fell behind the event bus; {n} events were not passed to on_state_change");
                    bus.note_lost("hooks", n);
                }
                Err(RecvError::Closed) => break,
            },
        }
    }
    if queue.len() > 0 {
        tracing::warn!(
            events = queue.len(),
            "mslinkd stopped before these events reached on_state_change"
        );
    }
    let _ = tokio::time::timeout(STOP_GRACE + Duration::from_secs(1), async {
        while runs.join_next().await.is_some() {}
    })
    .await;
}

/// How one run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Exit code, or `None` when killed by a signal.
    Failed(Option<i32>),
    TimedOut,
    NotStarted,
}

/// Runs `command` once with `env`, killing its process group after `timeout` (or shortly after
/// `stop`). Logs the outcome; returns it for tests.
pub async fn run(
    command: &str,
    env: &[(&'static str, String)],
    timeout: Duration,
    stop: CancellationToken,
) -> Outcome {
    let event = env.iter().find(|(k, _)| *k == "MSLINK_EVENT").map_or("", |(_, v)| v.as_str());
    let programs = crate::files::hook_programs(command);
    if !programs.is_empty() {
        let checked = tokio::task::spawn_blocking(move || {
            programs.iter().try_for_each(|p| crate::files::check_owned(p, crate::files::What::Hook))
        })
        .await;
        match checked {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(hook = command, event, error = %e, "refusing to run the on_state_change hook");
                return Outcome::NotStarted;
            }
            Err(_) => return Outcome::NotStarted,
        }
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned());
    let mut child = match Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env_clear()
        .env("PATH", path)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills whatever the shell started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(hook = command, event, error = %e, "cannot start the on_state_change hook");
            return Outcome::NotStarted;
        }
    };
    let stderr = child.stderr.take();
    let collect = tokio::spawn(async move {
        let mut kept = Vec::new();
        if let Some(mut stderr) = stderr {
            let mut chunk = [0u8; 1024];
            // Keep the start, drain the rest so the hook never blocks on a full pipe.
            while let Ok(n @ 1..) = stderr.read(&mut chunk).await {
                let room = STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
        String::from_utf8_lossy(&kept).trim().to_owned()
    });
    let deadline = async {
        tokio::select! {
            () = tokio::time::sleep(timeout) => {}
            () = async { stop.cancelled().await; tokio::time::sleep(STOP_GRACE).await } => {}
        }
    };
    let status = tokio::select! {
        status = child.wait() => Some(status),
        () = deadline => None,
    };
    let outcome = match status {
        Some(Ok(status)) if status.success() => Outcome::Succeeded,
        Some(Ok(status)) => Outcome::Failed(status.code()),
        Some(Err(e)) => {
            tracing::error!(hook = command, event, error = %e, "lost track of the on_state_change hook");
            Outcome::Failed(None)
        }
        None => {
            if let Some(pid) = child.id() {
                let group = nix::unistd::Pid::from_raw(pid as i32);
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.wait().await;
            Outcome::TimedOut
        }
    };
    // The group is gone or finished; a grandchild holding stderr open must not hold us up.
    let stderr = tokio::time::timeout(Duration::from_secs(1), collect)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    match &outcome {
        Outcome::Succeeded => tracing::debug!(hook = command, event, "on_state_change hook ran"),
        Outcome::Failed(code) => tracing::warn!(
            hook = command,
            event,
            exit_code = ?code,
            stderr = %stderr,
            "the on_state_change hook failed"
        ),
        Outcome::TimedOut => tracing::warn!(
            hook = command,
            event,
            timeout = ?timeout,
            stderr = %stderr,
            "the on_state_change hook timed out and was killed"
        ),
        Outcome::NotStarted => {}
    }
    outcome
}

#[cfg(test)]
mod tests {
    use mslink_proto::{LinkState, Provider};

    use super::*;

    fn var<'a>(env: &'a [(&'static str, String)], name: &str) -> &'a str {
        env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()).unwrap()
    }

    fn state(email: &str, state: LinkState) -> Event {
        Event::LinkState {
            email: email.into(),
            user: "alice".into(),
            provider: Provider::Office365,
            state,
            previous: None,
            reason: None,
        }
    }

    #[test]
    fn the_queue_coalesces_per_link_keeps_each_links_order_and_skips_busy_links() {
        let mut queue = Queue::default();
        assert!(queue.push(state("a@x.test", LinkState::Degraded)));
        assert!(queue.push(state("b@x.test", LinkState::Degraded)));
        assert!(!queue.push(state("A@x.test", LinkState::Blocked)), "coalesced into a's change");
        let removed = Event::LinkRemoved {
            email: "a@x.test".into(),
            user: "alice".into(),
            provider: Provider::Office365,
        };
        assert!(queue.push(removed.clone()), "a removal is never coalesced");
        assert!(!queue.push(state("b@x.test", LinkState::Active)));
        assert!(queue.push(Event::Integration { enabled: false, by: "root".into() }));
        assert_eq!(queue.len(), 4);

        let busy_a: HashSet<LinkKey> = [("alice".into(), "a@x.test".into())].into();
        assert_eq!(queue.next(&busy_a), Some(state("b@x.test", LinkState::Active)), "a is busy");
        assert!(matches!(queue.next(&busy_a), Some(Event::Integration { .. })));
        assert_eq!(queue.next(&busy_a), None, "only a's events wait, and a is busy");
        let idle = HashSet::new();
        assert_eq!(queue.next(&idle), Some(state("a@x.test", LinkState::Blocked)));
        assert_eq!(queue.next(&idle), Some(removed), "a's events in order");
        assert_eq!((queue.next(&idle), queue.len()), (None, 0));
    }

    #[test]
    fn a_state_change_sets_every_variable() {
        let event = Event::LinkState {
            email: "a@example.com".into(),
            user: "alice".into(),
            provider: Provider::Office365,
            state: LinkState::NeedsReauth,
            previous: Some(LinkState::Active),
            reason: Some("invalid_grant".into()),
        };
        let env = environment(&event, 7, 1_700_000_000).unwrap();
        assert_eq!(var(&env, "MSLINK_EVENT"), "link_state");
        assert_eq!(var(&env, "MSLINK_STATE"), "needs_reauth");
        assert_eq!(var(&env, "MSLINK_PREVIOUS_STATE"), "active");
        assert_eq!(var(&env, "MSLINK_PROVIDER"), "office365");
        assert_eq!(var(&env, "MSLINK_MESSAGE"), "");
        assert_eq!(var(&env, "MSLINK_SEQ"), "7");
        let checked = Event::Checked {
            email: "a@example.com".into(),
            user: "alice".into(),
            provider: Provider::Office365,
            ok: true,
            latency: Duration::from_millis(1),
            at: 0,
        };
        assert!(environment(&checked, 1, 0).is_none());
    }

    #[tokio::test]
    async fn the_environment_is_clean_and_a_slow_hook_is_killed() {
        let env = vec![("MSLINK_EVENT", "requested".to_owned())];
        let never = CancellationToken::new();
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("env");
        let command = format!("env > '{}'", file.display());
        assert_eq!(run(&command, &env, TIMEOUT, never.clone()).await, Outcome::Succeeded);
        let seen = std::fs::read_to_string(&file).unwrap();
        let names: Vec<&str> = seen.lines().filter_map(|l| l.split('=').next()).collect();
        assert!(names.contains(&"MSLINK_EVENT") && names.contains(&"PATH"), "{seen}");
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("MSLINK_") || ["PATH", "PWD", "SHLVL", "_"].contains(n)),
            "unexpected variables: {seen}"
        );

        // The shell's child holds the pipe: killing the group must still end the run promptly.
        let started = std::time::Instant::now();
        let slow = run("sleep 30 & sleep 30", &env, Duration::from_millis(300), never).await;
        assert_eq!(slow, Outcome::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            run("echo oops >&2; exit 3", &env, TIMEOUT, CancellationToken::new()).await,
            Outcome::Failed(Some(3))
        );
    }

    #[tokio::test]
    async fn a_hook_program_others_may_change_is_not_run() {
        use std::os::unix::fs::PermissionsExt;
        let env = vec![("MSLINK_EVENT", "requested".to_owned())];
        let dir = tempfile::tempdir().unwrap();
        let (hook, ran) = (dir.path().join("hook.sh"), dir.path().join("ran"));
        std::fs::write(&hook, format!("#!/bin/sh\ntouch '{}'\n", ran.display())).unwrap();
        let chmod = |mode| {
            std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        chmod(0o777);
        let command = format!("{} --quiet", hook.display());
        let refused = run(&command, &env, TIMEOUT, CancellationToken::new()).await;
        assert_eq!(refused, Outcome::NotStarted);
        assert!(!ran.exists(), "a world-writable hook ran");
        // Run by an interpreter, the script is what others must not change.
        let interpreted = format!("/bin/sh {}", hook.display());
        let refused = run(&interpreted, &env, TIMEOUT, CancellationToken::new()).await;
        assert_eq!(refused, Outcome::NotStarted);
        assert!(!ran.exists(), "a world-writable hook script ran");
        chmod(0o755);
        let ran_ok = run(&command, &env, TIMEOUT, CancellationToken::new()).await;
        assert_eq!(ran_ok, Outcome::Succeeded);
        assert!(ran.exists());
    }
}
