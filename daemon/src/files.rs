//! Files an attacker cannot plant (SPEC §8): the one rule for every file and directory mslinkd
//! trusts, in the spirit of sshd's `StrictModes`.
//!
//! The files: the config file, `state_dir` with the database and the lock file in it,
//! `key_file`, the control socket's directory, `[office365] client_secret_file`, `[store]
//! password_file` and `ca_file`, and the program named by `[hooks] on_state_change` ([`What`]
//! lists them). For each:
//!
//! - **the file** is owned by root or by mslinkd's own (effective) user, and is not writable by
//!   its group or by others; it is the kind expected (a regular file, or a directory for
//!   `state_dir` and the socket's directory);
//! - **every directory the path is looked up through**, from `/` down, is owned by root or by
//!   mslinkd's user, and is not writable by its group or by others, unless it is sticky (like
//!   `/tmp`: others may create entries there but not rename or remove ours). The sticky
//!   exception holds only on the way: `state_dir` or the socket's directory may not be `/tmp`;
//! - **symbolic links**: a file mslinkd opens is opened with `O_NOFOLLOW`, so a link in its
//!   place is refused (name the target in the config instead). Links on the way (and a
//!   directory or hook program that is a link, as systemd's `DynamicUser=` makes
//!   `/var/lib/mslink`) are followed the way the kernel does, and the directories holding each
//!   link and its target are checked like any other: a link is only as trustworthy as the
//!   directory it lives in.
//!
//! A path that does not exist yet passes once the part that exists does: mslinkd creates it
//! (0600 / 0700) and checks it again when it opens it. The owner and mode of a file mslinkd
//! opens are read from the open descriptor ([`open`]), so a swap between the check and the open
//! changes nothing; and any mode change goes through that descriptor (`fchmod`), never a path.
//!
//! ```text
//!  check(path) ─▶ walk from "/" ─┬─ directory on the way: owner root/euid, no g/o write (or sticky)
//!                                ├─ link: splice its target in, keep walking (at most 40)
//!                                ├─ missing: fine, mslinkd will create it
//!                                └─ the file: kind, owner root/euid, no g/o write; a link is refused
//!  open(path)  ─▶ check ─▶ open(O_NOFOLLOW) ─▶ the same test on fstat of the descriptor
//! ```
//!
//! [`audit`] runs the rule over every file a config names: `--check-config` prints its findings,
//! the daemon refuses to start (or to reload) on the first.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::unistd::{Uid, User};

use crate::config::{ClientSecret, Config, StoreBackend};

/// How many links one path may pass through (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Which of mslinkd's trusted files a path is: it names the file in messages and decides the
/// kind expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Config,
    StateDir,
    Database,
    LockFile,
    KeyFile,
    SocketDir,
    ClientSecret,
    Hook,
    /// `[network] ca_file`: a CA planted there would let its owner read every TLS exchange.
    CaFile,
    /// `[store] password_file`: the PostgreSQL role's password.
    StorePassword,
    /// `[store] ca_file`: a CA planted there would let its owner pose as the database.
    StoreCaFile,
}

impl What {
    fn name(self) -> &'static str {
        match self {
            What::Config => "config file",
            What::StateDir => "state directory (`state_dir`)",
            What::Database => "database",
            What::LockFile => "lock file",
            What::KeyFile => "key file (`key_file`)",
            What::SocketDir => "socket directory",
            What::ClientSecret => "client secret file (`[office365] client_secret_file`)",
            What::Hook => "hook program (`[hooks] on_state_change`)",
            What::CaFile => "CA file (`[network] ca_file`)",
            What::StorePassword => "store password file (`[store] password_file`)",
            What::StoreCaFile => "store CA file (`[store] ca_file`)",
        }
    }

    fn is_dir(self) -> bool {
        matches!(self, What::StateDir | What::SocketDir)
    }

    /// Whether the path itself may be a link: directories, the hook and the CA file (often a
    /// link into `/etc/ssl/certs`) are not opened by mslinkd with `O_NOFOLLOW`, so their links
    /// are followed and checked.
    fn may_be_link(self) -> bool {
        matches!(
            self,
            What::StateDir | What::SocketDir | What::Hook | What::CaFile | What::StoreCaFile
        )
    }

    /// Whether mslinkd writes it: then, run as a non-root user, it must own it.
    fn written(self) -> bool {
        matches!(self, What::StateDir | What::Database | What::LockFile | What::KeyFile)
    }
}

/// A trusted file that fails the rule, naming the file, what is wrong and the command that fixes
/// it.
#[derive(Debug)]
pub struct FileError {
    pub path: PathBuf,
    pub what: What,
    problem: Box<Problem>,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.what.name(), self.path.display())?;
        let path = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        match self.problem.at() {
            // A directory on the way, or where a link led.
            Some(at) if at != path => write!(f, ": {} {}", at.display(), self.problem),
            _ => write!(f, " {}", self.problem),
        }
    }
}

impl std::error::Error for FileError {}

#[derive(Debug, thiserror::Error)]
enum Problem {
    #[error(
        "is a symbolic link, and mslinkd opens its files only directly (O_NOFOLLOW); \
         name the file it points to in the config, or replace the link with the file"
    )]
    Link,
    #[error("is not a {expected}")]
    WrongKind { at: PathBuf, expected: &'static str },
    #[error(
        "is owned by {owner}, not by {allowed}, so that user could plant what mslinkd trusts; \
         run `chown {fix} {at}`",
        at = .at.display()
    )]
    Owner { at: PathBuf, owner: String, allowed: String, fix: String },
    #[error(
        "is writable by {who} (mode {mode:04o}), so they could plant what mslinkd trusts; \
         run `chmod go-w {at}`",
        at = .at.display()
    )]
    Writable { at: PathBuf, who: &'static str, mode: u32 },
    #[error("passes through more than {MAX_LINKS} symbolic links")]
    Loop,
    #[error("cannot be read: {source}")]
    Io { at: PathBuf, source: std::io::Error },
}

impl Problem {
    fn at(&self) -> Option<&Path> {
        match self {
            Problem::WrongKind { at, .. }
            | Problem::Owner { at, .. }
            | Problem::Writable { at, .. }
            | Problem::Io { at, .. } => Some(at),
            Problem::Link | Problem::Loop => None,
        }
    }
}

impl FileError {
    fn new(path: &Path, what: What, problem: Problem) -> FileError {
        FileError { path: path.to_owned(), what, problem: Box::new(problem) }
    }

    /// True when the file (or a directory on its way) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(&*self.problem, Problem::Io { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Checks `path` under the rule for the user mslinkd runs as.
pub fn check_owned(path: &Path, what: What) -> Result<(), FileError> {
    Rule::for_this_process().check(path, what)
}

/// Opens `path` with `options` and `O_NOFOLLOW`, after [`check_owned`], and checks the opened
/// file again through its descriptor.
pub fn open(path: &Path, what: What, options: &mut OpenOptions) -> Result<File, FileError> {
    Rule::for_this_process().open(path, what, options)
}

/// Reads a trusted file whole, through [`open`].
pub fn read_to_string(path: &Path, what: What) -> Result<String, FileError> {
    use std::io::Read;
    let mut text = String::new();
    open(path, what, OpenOptions::new().read(true))?.read_to_string(&mut text).map_err(
        |source| FileError::new(path, what, Problem::Io { at: path.to_owned(), source }),
    )?;
    Ok(text)
}

/// Every problem with the files `config` names (the config file itself, `state_dir` and what it
/// holds, `key_file`, the socket's directory, the client secret file, the hook program, the
/// store's password and CA files).
pub fn audit(config: &Config) -> Vec<FileError> {
    let mut paths = Vec::new();
    if let Some(source) = &config.source {
        paths.push((source.clone(), What::Config));
    }
    paths.push((config.state_dir.clone(), What::StateDir));
    // SQLite's own O_NOFOLLOW covers the database, not its WAL and shared-memory files.
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("{}{suffix}", crate::store::DB_FILE);
        paths.push((config.state_dir.join(name), What::Database));
    }
    paths.push((config.state_dir.join(crate::store::LOCK_FILE), What::LockFile));
    paths.push((config.key_file.clone(), What::KeyFile));
    if let Some(dir) = config.socket.parent() {
        paths.push((dir.to_owned(), What::SocketDir));
    }
    if let Some(ClientSecret::File(path)) = &config.office365.client_secret {
        paths.push((path.clone(), What::ClientSecret));
    }
    for program in config.hooks.on_state_change.as_deref().map(hook_programs).unwrap_or_default() {
        paths.push((program, What::Hook));
    }
    if let Some(ca) = &config.network.ca_file {
        paths.push((ca.clone(), What::CaFile));
    }
    if let StoreBackend::Postgres(pg) = &config.store {
        if let Some(path) = &pg.password_file {
            paths.push((path.clone(), What::StorePassword));
        }
        if let Some(path) = &pg.ca_file {
            paths.push((path.clone(), What::StoreCaFile));
        }
    }
    let rule = Rule::for_this_process();
    let mut seen = std::collections::HashSet::new();
    paths
        .into_iter()
        .filter_map(|(path, what)| rule.check(&path, what).err())
        // One fault in a shared directory is told once, not for every file under it.
        .filter(|e| e.problem.at().is_none_or(|at| seen.insert(at.to_owned())))
        .collect()
}

/// Interpreters whose first operand is the program they run (`/bin/sh /srv/notify.sh`).
const INTERPRETERS: &[&str] =
    &["sh", "bash", "dash", "zsh", "python3", "python", "perl", "ruby", "node"];

/// The files a hook command runs: its first word when that is a plain path
/// (`/usr/local/bin/notify --to ops`), and when that word is an interpreter, the script it is
/// given (`/bin/sh /srv/notify.sh`: both). A bare name is found on `PATH`, whose directories are
/// the system's; a word with shell syntax in it (an assignment, quotes, `$`) names no one file.
/// Hooks run in `/`, so a relative path is taken from there.
pub fn hook_programs(command: &str) -> Vec<PathBuf> {
    let as_path = |word: &str| {
        let plain = !word.contains(['=', '"', '\'', '$', '`', ';', '&', '|', '<', '>']);
        (plain && word.contains('/')).then(|| Path::new("/").join(word))
    };
    let mut words = command.split_whitespace();
    let Some(first) = words.next() else { return Vec::new() };
    let mut programs: Vec<PathBuf> = as_path(first).into_iter().collect();
    let name = Path::new(first).file_name().and_then(|n| n.to_str()).unwrap_or(first);
    if INTERPRETERS.contains(&name)
        && let Some(script) = words.find(|w| !w.starts_with('-')).and_then(as_path)
    {
        programs.push(script);
    }
    programs
}

/// The rule, for one effective uid (tests state it).
#[derive(Debug, Clone, Copy)]
struct Rule {
    euid: u32,
}

impl Rule {
    fn for_this_process() -> Rule {
        Rule { euid: nix::unistd::geteuid().as_raw() }
    }

    fn open(self, path: &Path, what: What, options: &mut OpenOptions) -> Result<File, FileError> {
        self.check(path, what)?;
        self.open_descriptor(path, what, options)
    }

    /// Opens without following a link in the last place, and checks what was opened.
    fn open_descriptor(
        self,
        path: &Path,
        what: What,
        options: &mut OpenOptions,
    ) -> Result<File, FileError> {
        let error = |problem| FileError::new(path, what, problem);
        let file = options.custom_flags(nix::libc::O_NOFOLLOW).open(path).map_err(|source| {
            error(if source.raw_os_error() == Some(nix::libc::ELOOP) {
                Problem::Link
            } else {
                Problem::Io { at: path.to_owned(), source }
            })
        })?;
        let meta =
            file.metadata().map_err(|source| error(Problem::Io { at: path.to_owned(), source }))?;
        self.target(path, &meta, what).map_err(error)?;
        Ok(file)
    }

    fn check(self, path: &Path, what: What) -> Result<(), FileError> {
        self.walk(path, what).map_err(|problem| FileError::new(path, what, problem))
    }

    /// Looks `path` up one name at a time from `/`, as the kernel does, checking each directory
    /// a name is looked up in and, at the end, the file.
    fn walk(self, path: &Path, what: What) -> Result<(), Problem> {
        // The parent of a bare file name is "": the working directory.
        let path = if path.as_os_str().is_empty() { Path::new(".") } else { path };
        let path = std::path::absolute(path)
            .map_err(|source| Problem::Io { at: path.to_owned(), source })?;
        let mut dir = PathBuf::from("/");
        self.on_the_way(&dir, &lstat(&dir)?)?;
        let mut todo = names(&path);
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            if name == ".." {
                dir.pop();
                continue;
            }
            let last = todo.is_empty();
            let next = dir.join(&name);
            let meta = match lstat(&next) {
                Ok(meta) => meta,
                // Not there yet: mslinkd creates it, in a directory that passed.
                Err(Problem::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    return Ok(());
                }
                Err(problem) => return Err(problem),
            };
            if meta.file_type().is_symlink() {
                if last && !what.may_be_link() {
                    return Err(Problem::Link);
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(Problem::Loop);
                }
                let target = std::fs::read_link(&next)
                    .map_err(|source| Problem::Io { at: next.clone(), source })?;
                if target.is_absolute() {
                    dir = PathBuf::from("/");
                }
                let mut spliced = names(&target);
                spliced.extend(todo);
                todo = spliced;
                continue;
            }
            if last {
                self.target(&next, &meta, what)?;
            } else {
                self.on_the_way(&next, &meta)?;
            }
            dir = next;
        }
        Ok(())
    }

    /// A directory a name is looked up in.
    fn on_the_way(self, at: &Path, meta: &Metadata) -> Result<(), Problem> {
        if !meta.is_dir() {
            return Err(Problem::WrongKind { at: at.to_owned(), expected: "directory" });
        }
        self.owner(at, meta.uid(), false)?;
        let sticky = meta.mode() & 0o1000 != 0;
        if sticky { Ok(()) } else { writable(at, meta.mode()) }
    }

    /// The file (or directory) itself.
    fn target(self, at: &Path, meta: &Metadata, what: What) -> Result<(), Problem> {
        let (right_kind, expected) = if what.is_dir() {
            (meta.is_dir(), "directory")
        } else {
            (meta.is_file(), "regular file")
        };
        if !right_kind {
            return Err(Problem::WrongKind { at: at.to_owned(), expected });
        }
        self.owner(at, meta.uid(), what.written())?;
        writable(at, meta.mode())
    }

    fn owner(self, at: &Path, uid: u32, written: bool) -> Result<(), Problem> {
        if uid == 0 || uid == self.euid {
            return Ok(());
        }
        let (allowed, fix) = if self.euid == 0 {
            ("root".to_owned(), "root".to_owned())
        } else {
            let me = user_name(self.euid);
            // A file mslinkd writes must be its user's; anything it only reads is root's.
            let fix = if written { me.clone() } else { "root".to_owned() };
            (format!("root or mslinkd's user {me} (uid {})", self.euid), fix)
        };
        Err(Problem::Owner {
            at: at.to_owned(),
            owner: format!("{} (uid {uid})", user_name(uid)),
            allowed,
            fix,
        })
    }
}

fn writable(at: &Path, mode: u32) -> Result<(), Problem> {
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => return Ok(()),
        (true, false) => "its group",
        (false, true) => "every local user",
        (true, true) => "its group and every local user",
    };
    Err(Problem::Writable { at: at.to_owned(), who, mode: mode & 0o7777 })
}

fn lstat(at: &Path) -> Result<Metadata, Problem> {
    std::fs::symlink_metadata(at).map_err(|source| Problem::Io { at: at.to_owned(), source })
}

/// The names to look up along `path`, in order (`.` dropped, `..` kept).
fn names(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn user_name(uid: u32) -> String {
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| format!("#{uid}"), |user| user.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;

    /// A local account that is neither root nor us: the attacker.
    const MALLORY: &str = "mslt-mallory";

    fn mallory() -> Option<u32> {
        // It chowns files to another user.
        if !mslink_e2e::require_root("a files test") {
            return None;
        }
        if User::from_name(MALLORY).ok().flatten().is_none() {
            let _ = std::process::Command::new("useradd")
                .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", MALLORY])
                .output();
        }
        let user = User::from_name(MALLORY).ok().flatten().expect("useradd mslt-mallory");
        Some(user.uid.as_raw())
    }

    fn chown(path: &Path, uid: u32) {
        std::os::unix::fs::lchown(path, Some(uid), None).unwrap();
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// A private temporary directory with one file in it, like a fresh state directory.
    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret.key");
        std::fs::write(&file, [7u8; 32]).unwrap();
        chmod(&file, 0o600);
        (dir, file)
    }

    fn message(result: Result<(), FileError>) -> String {
        result.expect_err("refused").to_string()
    }

    #[test]
    fn root_or_own_files_in_private_directories_pass() {
        let (dir, file) = setup();
        check_owned(&file, What::KeyFile).unwrap();
        check_owned(dir.path(), What::StateDir).unwrap();
        // Read-only for others is fine; only writing matters here.
        chmod(&file, 0o644);
        check_owned(&file, What::Config).unwrap();
        // Not there yet: mslinkd creates it.
        check_owned(&dir.path().join("state/new/mslink.db"), What::Database).unwrap();
    }

    #[test]
    fn a_file_owned_by_another_user_is_refused_naming_the_fix() {
        let Some(uid) = mallory() else { return };
        let (_dir, file) = setup();
        chown(&file, uid);
        let refused = message(check_owned(&file, What::KeyFile));
        assert!(refused.contains(&file.display().to_string()), "{refused}");
        assert!(refused.contains(&format!("{MALLORY} (uid {uid})")), "{refused}");
        assert!(refused.contains(&format!("chown root {}", file.display())), "{refused}");
        // The daemon run as that user owns it, and may use it.
        Rule { euid: uid }.check(&file, What::KeyFile).unwrap();
        // Run as yet another user, the fix for a file it writes is to give it that user.
        let other = Rule { euid: 0xdead }.check(&file, What::KeyFile).unwrap_err().to_string();
        assert!(other.contains("chown #57005 "), "{other}");
    }

    #[test]
    fn a_directory_on_the_way_owned_by_another_user_is_refused() {
        let Some(uid) = mallory() else { return };
        let (dir, _file) = setup();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::write(theirs.join("mslinkd.toml"), "").unwrap();
        chown(&theirs, uid);
        let refused = message(check_owned(&theirs.join("mslinkd.toml"), What::Config));
        assert!(refused.contains(&format!("{} is owned by {MALLORY}", theirs.display())));
        // Even a file that does not exist yet: they could create it first.
        let refused = message(check_owned(&theirs.join("state"), What::StateDir));
        assert!(refused.contains(&format!("chown root {}", theirs.display())), "{refused}");
    }

    #[test]
    fn group_or_other_writable_files_and_directories_are_refused() {
        let (dir, file) = setup();
        for (bits, who) in [
            (0o620, "its group"),
            (0o602, "every local user"),
            (0o666, "its group and every local user"),
        ] {
            chmod(&file, bits);
            let refused = message(check_owned(&file, What::KeyFile));
            assert!(refused.contains(&format!("writable by {who} (mode {bits:04o})")));
            assert!(refused.contains(&format!("chmod go-w {}", file.display())), "{refused}");
        }
        chmod(&file, 0o600);
        chmod(dir.path(), 0o770);
        let refused = message(check_owned(&file, What::KeyFile));
        assert!(refused.contains(&format!("{} is writable by its group", dir.path().display())));
        assert!(message(check_owned(dir.path(), What::StateDir)).contains("chmod go-w"));
    }

    #[test]
    fn a_sticky_directory_passes_on_the_way_only() {
        let (dir, _file) = setup();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        chmod(&tmp, 0o1777);
        let state = tmp.join("state");
        std::fs::create_dir(&state).unwrap();
        check_owned(&state, What::StateDir).unwrap();
        check_owned(&tmp.join("run"), What::SocketDir).unwrap();
        // As the directory itself, anyone could put things in it.
        let refused = message(check_owned(&tmp, What::SocketDir));
        assert!(refused.contains("writable by its group and every local user (mode 1777)"));
        // And an entry someone else made in it is theirs.
        let Some(uid) = mallory() else { return };
        chown(&state, uid);
        assert!(message(check_owned(&state, What::StateDir)).contains(MALLORY));
    }

    #[test]
    fn a_symlinked_file_is_refused_and_nothing_is_changed_through_it() {
        let (dir, file) = setup();
        // The target someone wants mslinkd to open, tighten or overwrite.
        let target = dir.path().join("target");
        std::fs::write(&target, [9u8; 32]).unwrap();
        chmod(&target, 0o644);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for what in [What::KeyFile, What::Database, What::LockFile, What::Config] {
            assert!(message(check_owned(&link, what)).contains("is a symbolic link"));
            let opened = open(
                &link,
                what,
                OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600),
            );
            assert!(opened.unwrap_err().to_string().contains("is a symbolic link"));
        }
        // Even without the check first (the link swapped in after it), the open itself refuses.
        let raw = Rule::for_this_process().open_descriptor(
            &link,
            What::KeyFile,
            OpenOptions::new().write(true).truncate(true),
        );
        assert!(matches!(*raw.unwrap_err().problem, Problem::Link));
        assert_eq!(mode(&target), 0o644, "the link's target was chmodded");
        assert_eq!(std::fs::read(&target).unwrap(), [9u8; 32]);
        // Opened directly, the file is fine.
        let mut opened = open(&file, What::KeyFile, OpenOptions::new().read(true)).unwrap();
        let mut key = Vec::new();
        opened.read_to_end(&mut key).unwrap();
        assert_eq!(key, [7u8; 32]);
    }

    #[test]
    fn links_on_the_way_are_followed_and_checked_where_they_lead() {
        let Some(uid) = mallory() else { return };
        let (dir, _file) = setup();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("hook.sh"), "#!/bin/sh\n").unwrap();
        chmod(&real.join("hook.sh"), 0o755);
        std::os::unix::fs::symlink("real", dir.path().join("via")).unwrap();
        // A linked directory (systemd's DynamicUser=) and a linked hook are fine...
        check_owned(&dir.path().join("via"), What::StateDir).unwrap();
        check_owned(&dir.path().join("via/hook.sh"), What::Hook).unwrap();
        // ...as long as what they lead to is: here the real directory is someone else's.
        chown(&real, uid);
        let refused = message(check_owned(&dir.path().join("via/hook.sh"), What::Hook));
        assert!(refused.contains(&format!("{} is owned by {MALLORY}", real.display())));
        // A link to itself ends.
        let looped = dir.path().join("loop");
        std::os::unix::fs::symlink("loop", &looped).unwrap();
        assert!(message(check_owned(&looped.join("x"), What::Hook)).contains("symbolic links"));
    }

    #[test]
    fn the_kind_must_match() {
        let (dir, file) = setup();
        assert!(message(check_owned(&file, What::StateDir)).contains("is not a directory"));
        assert!(message(check_owned(dir.path(), What::KeyFile)).contains("not a regular file"));
    }

    #[test]
    fn open_checks_the_descriptor_and_creates_private_files() {
        let (dir, _file) = setup();
        let db = dir.path().join("mslink.db");
        let mut created =
            open(&db, What::Database, OpenOptions::new().write(true).create_new(true).mode(0o600))
                .unwrap();
        created.write_all(b"x").unwrap();
        assert_eq!(mode(&db), 0o600);
        chmod(&db, 0o660);
        let refused = open(&db, What::Database, OpenOptions::new().read(true)).unwrap_err();
        assert!(refused.to_string().contains("writable by its group"), "{refused}");
        let missing = open(&dir.path().join("nope"), What::Config, OpenOptions::new().read(true));
        assert!(missing.unwrap_err().is_not_found());
    }

    #[test]
    fn audit_covers_every_file_the_config_names_and_tells_a_shared_fault_once() {
        let (dir, _file) = setup();
        let (secret, hook) = (dir.path().join("client-secret"), dir.path().join("hook.sh"));
        std::fs::write(&secret, "s3cret").unwrap();
        chmod(&secret, 0o666);
        std::fs::write(&hook, "#!/bin/sh\n").unwrap();
        chmod(&hook, 0o775);
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        chmod(&state, 0o770);
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        chmod(&ca, 0o646);
        let text = format!(
            "state_dir = {state:?}\nsocket = {:?}\n[office365]\nclient_secret_file = {secret:?}\n\
             [hooks]\non_state_change = \"{} --to ops\"\n[network]\nca_file = {ca:?}\n",
            dir.path().join("run/mslinkd.sock"),
            hook.display()
        );
        let env = crate::config::Env { is_root: true, ..Default::default() };
        let config = Config::parse(&text, None, &env).unwrap();
        let found = audit(&config);
        // The state directory's fault is told once, not again for the database, lock and key.
        let whats: Vec<What> = found.iter().map(|e| e.what).collect();
        assert_eq!(
            whats,
            [What::StateDir, What::ClientSecret, What::Hook, What::CaFile],
            "{found:?}"
        );
        assert!(found[2].to_string().contains(&format!("chmod go-w {}", hook.display())));
    }

    #[test]
    fn audit_covers_the_store_password_and_ca_files() {
        let (dir, _file) = setup();
        let (password, ca) = (dir.path().join("store-password"), dir.path().join("pg-ca.pem"));
        std::fs::write(&password, "pw\n").unwrap();
        chmod(&password, 0o622);
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        chmod(&ca, 0o664);
        let text = format!(
            "state_dir = {:?}\nsocket = {:?}\n[store]\nurl = \"postgresql://u@db/org\"\n\
             password_file = {password:?}\nca_file = {ca:?}\n",
            dir.path().join("state"),
            dir.path().join("run/mslinkd.sock"),
        );
        let env = crate::config::Env { is_root: true, ..Default::default() };
        let found = audit(&Config::parse(&text, None, &env).unwrap());
        let whats: Vec<What> = found.iter().map(|e| e.what).collect();
        assert_eq!(whats, [What::StorePassword, What::StoreCaFile], "{found:?}");
        assert!(found[0].to_string().contains("`[store] password_file`"), "{}", found[0]);
    }

    #[test]
    fn the_hook_programs_are_its_first_word_and_an_interpreters_script() {
        let programs = |command| hook_programs(command);
        let paths = |all: &[&str]| all.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(programs("/usr/local/bin/notify --to ops"), paths(&["/usr/local/bin/notify"]));
        assert_eq!(programs("./notify.sh"), paths(&["/notify.sh"]));
        assert_eq!(programs("logger -t mslink \"$MSLINK_EMAIL\""), paths(&[]));
        assert_eq!(programs("   "), paths(&[]));
        assert_eq!(programs(r#"l="/run/x/$MSLINK_EMAIL"; touch "$l""#), paths(&[]));
        // The script an interpreter runs is checked too, however the interpreter is named.
        assert_eq!(programs("/bin/sh /srv/hook.sh --to ops"), paths(&["/bin/sh", "/srv/hook.sh"]));
        assert_eq!(programs("python3 -u /srv/hook.py"), paths(&["/srv/hook.py"]));
        // `sh -c '...'` runs no file of its own; a program's other arguments are not programs.
        assert_eq!(programs("sh -c 'notify \"$MSLINK_EMAIL\"'"), paths(&[]));
        assert_eq!(programs("/usr/bin/logger -f /tmp/x"), paths(&["/usr/bin/logger"]));
    }
}
