//! The daemon's sense of time: wall-clock Unix seconds from an injectable [`Clock`].
//!
//! Everything the link lifecycle stores or compares (due times, token expiry, `since`) is wall
//! time, because it must survive restarts and mean the same after a suspend. Waiting is done on
//! tokio's timer, never for longer than [`MAX_SLEEP`] at a time, after which the wall clock is
//! read again: a suspend or a wall-clock jump is noticed within a minute.
//!
//! Production uses [`SystemClock`]. Tests use [`TokioClock`], whose wall time follows tokio's
//! (pausable) clock from a chosen start and can be made to jump, so hours of schedule run in
//! milliseconds under `tokio::time::pause()`.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The longest single wait before the wall clock is read again.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in Unix seconds.
    fn now(&self) -> i64;

    /// How far into the current second ([`Clock::now`]) it is.
    fn subsec(&self) -> Duration;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }

    fn subsec(&self) -> Duration {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(Duration::ZERO, |d| Duration::from_nanos(u64::from(d.subsec_nanos())))
    }
}

/// Wall time that advances with tokio's clock (so `tokio::time::pause()` and `advance` drive it)
/// and can jump, as a suspended laptop's or an NTP-corrected clock does.
#[derive(Debug)]
pub struct TokioClock {
    start: tokio::time::Instant,
    base: i64,
    jumped: AtomicI64,
}

impl TokioClock {
    /// A clock that reads `base` now.
    pub fn starting_at(base: i64) -> TokioClock {
        TokioClock { start: tokio::time::Instant::now(), base, jumped: AtomicI64::new(0) }
    }

    /// Moves the wall clock by `seconds` (negative: backwards) without any time passing.
    pub fn jump(&self, seconds: i64) {
        self.jumped.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for TokioClock {
    fn now(&self) -> i64 {
        self.base + self.start.elapsed().as_secs() as i64 + self.jumped.load(Ordering::SeqCst)
    }

    fn subsec(&self) -> Duration {
        Duration::from_nanos(u64::from(self.start.elapsed().subsec_nanos()))
    }
}

/// How long until the next whole second on `clock` begins: the store's times are whole
/// seconds, so that is when the next of them falls due.
pub fn to_next_second(clock: &dyn Clock) -> Duration {
    Duration::from_secs(1).saturating_sub(clock.subsec())
}

/// Sleeps until wall time `due` on `clock`, or [`MAX_SLEEP`], whichever comes first; the caller
/// reads the clock again afterwards.
pub async fn sleep_towards(clock: &dyn Clock, due: i64) {
    let wait = (due - clock.now()).max(0) as u64;
    tokio::time::sleep(Duration::from_secs(wait).min(MAX_SLEEP)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_next_second_begins_where_the_clock_turns_over() {
        let clock = TokioClock::starting_at(1_000);
        assert_eq!(to_next_second(&clock), Duration::from_secs(1));
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(to_next_second(&clock), Duration::from_millis(700));
        // A jump moves the seconds, not where they turn over.
        clock.jump(-5);
        assert_eq!(to_next_second(&clock), Duration::from_millis(700));
        tokio::time::sleep(to_next_second(&clock)).await;
        assert_eq!(clock.now(), 996);
        assert_eq!(to_next_second(&clock), Duration::from_secs(1));
    }
}
