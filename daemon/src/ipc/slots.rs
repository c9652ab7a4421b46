//! Connection slots, shared fairly (SPEC §8): each uid but root may hold at most `max_per_uid`
//! connections (root can stop the daemon anyway, and its own tools may need many), and the last `reserved_for_admins` of `max_connections` are kept for root and
//! admins, so one user's idle connections can neither lock the others out nor lock an admin out
//! of fixing it.
//!
//! ```text
//!   accept ─▶ uid (SO_PEERCRED) ─▶ under its per-uid cap? ─no─▶ Busy ("you have N open")
//!                                        │ yes
//!                                        ▼
//!                            a general slot free? ─yes─▶ serve
//!                                        │ no
//!                                        ▼
//!                        root or an admin, reserved slot free? ─yes─▶ serve ─no─▶ Busy
//! ```
//!
//! Ownership: the counts sit behind a std mutex held only to add or subtract; a [`Slot`] gives
//! its place back when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This uid already holds its share.
    PerUid(usize),
    /// Every slot open to this caller is taken.
    Full,
}

#[derive(Debug, Default)]
struct Counts {
    general: usize,
    reserved: usize,
    per_uid: HashMap<u32, usize>,
}

/// The daemon's connection slots.
#[derive(Debug, Clone)]
pub struct Slots {
    counts: Arc<Mutex<Counts>>,
    general: usize,
    reserved: usize,
    per_uid: usize,
}

/// One admitted connection's place; given back on drop.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    uid: u32,
    reserved: bool,
}

impl Slots {
    /// `max_connections` slots in all, the last `reserved_for_admins` of them for admins, at
    /// most `max_per_uid` per uid.
    pub fn new(max_connections: usize, reserved_for_admins: usize, max_per_uid: usize) -> Slots {
        let reserved = reserved_for_admins.min(max_connections);
        Slots {
            counts: Arc::default(),
            general: max_connections - reserved,
            reserved,
            per_uid: max_per_uid.max(1),
        }
    }

    /// Admits a connection from `uid` to a general slot, if its share and a slot allow.
    pub fn admit(&self, uid: u32) -> Result<Slot, Refused> {
        self.take(uid, false)
    }

    /// Admits an admin's connection to a reserved slot (when no general one was free).
    pub fn admit_admin(&self, uid: u32) -> Result<Slot, Refused> {
        self.take(uid, true)
    }

    fn take(&self, uid: u32, reserved: bool) -> Result<Slot, Refused> {
        let mut counts = self.counts.lock().unwrap_or_else(|poison| poison.into_inner());
        let held = counts.per_uid.get(&uid).copied().unwrap_or(0);
        if held >= self.per_uid && uid != 0 {
            return Err(Refused::PerUid(held));
        }
        let (used, cap) = if reserved {
            (counts.reserved, self.reserved)
        } else {
            (counts.general, self.general)
        };
        if used >= cap {
            return Err(Refused::Full);
        }
        if reserved {
            counts.reserved += 1;
        } else {
            counts.general += 1;
        }
        *counts.per_uid.entry(uid).or_default() += 1;
        Ok(Slot { counts: self.counts.clone(), uid, reserved })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|poison| poison.into_inner());
        if self.reserved {
            counts.reserved -= 1;
        } else {
            counts.general -= 1;
        }
        if let Some(held) = counts.per_uid.get_mut(&self.uid) {
            *held -= 1;
            if *held == 0 {
                counts.per_uid.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_uid_cannot_take_everyone_s_slots_and_admins_keep_a_share() {
        let slots = Slots::new(10, 2, 4);
        let alice: Vec<Slot> = (0..4).map(|_| slots.admit(1000).unwrap()).collect();
        assert_eq!(slots.admit(1000).unwrap_err(), Refused::PerUid(4), "alice has her share");
        let bob: Vec<Slot> = (0..4).map(|_| slots.admit(1001).unwrap()).collect();
        // 8 general slots are taken: carol finds none, an admin still gets a reserved one.
        assert_eq!(slots.admit(1002).unwrap_err(), Refused::Full);
        let admin = slots.admit_admin(0).unwrap();
        let _second = slots.admit_admin(0).unwrap();
        assert_eq!(slots.admit_admin(0).unwrap_err(), Refused::Full);
        drop(admin);
        drop(alice);
        assert!(slots.admit(1000).is_ok(), "places are given back");
        assert!(slots.admit(1002).is_ok());
        drop(bob);
        let root: Vec<Slot> = (0..6).map(|_| slots.admit(0).unwrap()).collect();
        assert_eq!(root.len(), 6, "root has no per-uid cap");
    }
}
