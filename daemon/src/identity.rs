//! Who is calling (SPEC §2): the peer's uid from SO_PEERCRED, its user name, and whether it is an
//! admin. There are no passwords on the socket.
//!
//! These lookups go through NSS (`getpwuid`, `getgrouplist`), which may block on LDAP or SSSD, so
//! callers run them with `spawn_blocking`.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use nix::unistd::{Gid, Group, Uid, User, getgrouplist};

use crate::config::Config;

/// The authenticated peer of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    /// The uid's user name, or `#UID` for a uid with no passwd entry.
    pub name: String,
    pub admin: bool,
}

/// Resolves `uid` to a [`Caller`] under the admin rules of `config`.
pub fn identify(uid: u32, config: &Config) -> Caller {
    let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
    let name = user.as_ref().map_or_else(|| format!("#{uid}"), |u| u.name.clone());
    let admin = uid == 0
        || config.admin_users.contains(&name)
        || user.is_some_and(|user| in_group(&user, &config.admin_group));
    Caller { uid, name, admin }
}

/// How long a resolved caller serves at most when nothing says it changed.
const MAX_AGE: Duration = Duration::from_secs(10);

/// The files NSS reads on a system without a directory service.
const ACCOUNT_FILES: [&str; 2] = ["/etc/passwd", "/etc/group"];

/// Recently resolved callers. Resolving one costs ~50 µs of NSS work (more where NSS asks LDAP
/// or SSSD), and mail tools run `token` on every connection. An entry serves only while the
/// account files are as they were, the config's admin rules are the ones it was resolved
/// under, and for [`MAX_AGE`] at most: a user taken out of the admin group loses the role on the
/// next command where `/etc/group` says so, and within [`MAX_AGE`] where a directory service
/// does.
#[derive(Debug, Default)]
pub struct Callers {
    entries: Mutex<HashMap<u32, Entry>>,
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    files: Vec<Option<SystemTime>>,
    admin_group: String,
    admin_users: Vec<String>,
    caller: Caller,
}

/// At most this many callers are remembered (one per uid that connected lately).
const MAX_ENTRIES: usize = 4096;

impl Callers {
    /// `uid`'s caller under `config`, if one resolved lately still holds. Cheap (two `stat`s):
    /// fine on the async path.
    pub fn cached(&self, uid: u32, config: &Config) -> Option<Caller> {
        let files = account_files();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(&uid)?;
        let holds = entry.at.elapsed() < MAX_AGE
            && entry.files == files
            && entry.admin_group == config.admin_group
            && entry.admin_users == config.admin_users;
        holds.then(|| entry.caller.clone())
    }

    /// [`identify`], remembered for [`Callers::cached`]. Blocks on NSS.
    pub fn identify(&self, uid: u32, config: &Config) -> Caller {
        let files = account_files();
        let caller = identify(uid, config);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        let entry = Entry {
            at: Instant::now(),
            files,
            admin_group: config.admin_group.clone(),
            admin_users: config.admin_users.clone(),
            caller: caller.clone(),
        };
        entries.insert(uid, entry);
        caller
    }
}

fn account_files() -> Vec<Option<SystemTime>> {
    ACCOUNT_FILES
        .iter()
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .collect()
}

/// The uid of the account called `name`, if there is one (for `--user NAME`, and to bind links
/// stored before uids were kept).
pub fn uid_of(name: &str) -> Option<u32> {
    User::from_name(name).ok().flatten().map(|user| user.uid.as_raw())
}

/// Whether `user` belongs to `group`, as primary or supplementary group.
fn in_group(user: &User, group: &str) -> bool {
    let Some(group) = Group::from_name(group).ok().flatten() else {
        return false;
    };
    if user.gid == group.gid {
        return true;
    }
    let Ok(name) = CString::new(user.name.as_str()) else {
        return false;
    };
    getgrouplist(&name, user.gid)
        .map(|groups| groups.contains(&group.gid))
        .unwrap_or_else(|_| group.mem.contains(&user.name))
}

/// The gid of a group, for `socket_group`.
pub fn group_id(name: &str) -> Option<Gid> {
    Group::from_name(name).ok().flatten().map(|g| g.gid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Env};

    fn config(extra: &str) -> Config {
        Config::parse(extra, None, &Env { is_root: true, ..Env::default() }).unwrap()
    }

    #[test]
    fn a_cached_caller_holds_only_under_the_same_admin_rules() {
        let callers = Callers::default();
        let plain = config("");
        assert_eq!(callers.cached(0, &plain), None, "nothing resolved yet");
        let root = callers.identify(0, &plain);
        assert_eq!(callers.cached(0, &plain), Some(root));
        // A reload that changes who is admin resolves again.
        let other = config("admin_users = [\"alice\"]\n");
        assert_eq!(callers.cached(0, &other), None);
        assert_eq!(callers.cached(1, &plain), None, "per uid");
    }

    #[test]
    fn root_is_always_an_admin() {
        let caller = identify(0, &config(""));
        assert_eq!((caller.name.as_str(), caller.admin), ("root", true));
    }

    #[test]
    fn admin_users_are_admins_and_others_are_not() {
        // uid 1 is `daemon` on Debian; it is in no admin group.
        let daemon = identify(1, &config(""));
        assert!(!daemon.admin);
        assert!(identify(1, &config(&format!("admin_users = [\"{}\"]", daemon.name))).admin);
    }

    #[test]
    fn the_admin_group_makes_admins() {
        // uid 1 (`daemon`) has primary group `daemon`.
        assert!(identify(1, &config("admin_group = \"daemon\"")).admin);
    }

    #[test]
    fn an_unknown_uid_is_named_by_number() {
        let caller = identify(4_000_000_123, &config(""));
        assert_eq!(caller.name, "#4000000123");
        assert!(!caller.admin);
    }
}
