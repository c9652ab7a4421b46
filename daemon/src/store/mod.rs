//! SQLite state: the only code that touches the database.
//!
//! Ownership: one dedicated thread owns the `rusqlite::Connection`. Async code sends it closures
//! through [`Store::call`] and awaits the answer, so no SQLite call ever blocks a tokio worker and
//! no lock is held across an `.await`. The thread ends when the last [`Store`] handle is dropped.
//!
//! ```text
//!  handler ──call(|db| ..)──▶ mpsc ──▶ [store thread: Connection] ──oneshot──▶ handler
//! ```
//!
//! Durability: WAL with `synchronous = FULL`, so a committed transaction survives `kill -9` and
//! power loss. The database, its WAL and the lock file are created 0600 in a 0700 directory.
//! The directory and the files pass [`crate::files`]'s rule (owned by root or us, not writable
//! by others, no link in a file's place) before anything is opened or tightened.

mod links;
mod queries;
mod schema;

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::files::{self, FileError, What};

pub use links::{LinkRecord, NewLink, Outcome, Transition};
pub use queries::Db;

/// The file name of the database inside `state_dir`.
pub const DB_FILE: &str = "mslink.db";
/// The file name of the lock file inside `state_dir`.
pub const LOCK_FILE: &str = "mslinkd.lock";

/// A failure of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create state directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open {path}: {source}")]
    OpenFile { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "another mslinkd already uses the state directory {0}; stop it first (systemctl stop mslinkd)"
    )]
    Locked(PathBuf),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the database was written by a newer mslinkd (schema {found}, this build knows {known}); \
         run that version or restore a backup"
    )]
    TooNew { found: i64, known: i64 },
    #[error("the store thread has stopped")]
    Stopped,
    #[error("cannot seal a secret: {0}")]
    Sealing(String),
}

impl StoreError {
    /// True when the disk is full or the database is read-only: worth an operator's attention.
    pub fn is_storage_fault(&self) -> bool {
        use rusqlite::ErrorCode::{DiskFull, ReadOnly, SystemIoFailure};
        matches!(self, StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if matches!(e.code, DiskFull | ReadOnly | SystemIoFailure))
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A handle to the store thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
}

/// Holds the state directory's lock for as long as the daemon runs.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl Store {
    /// Creates `state_dir` if needed, takes its lock, opens and migrates the database, and starts
    /// the store thread. Fails if another daemon holds the lock.
    pub fn open(state_dir: &Path) -> Result<(Store, StateLock), StoreError> {
        files::check_owned(state_dir, What::StateDir)?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|source| StoreError::CreateDir { path: state_dir.to_owned(), source })?;
        files::check_owned(state_dir, What::StateDir)?;
        let lock = open_private(&state_dir.join(LOCK_FILE), What::LockFile)?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(state_dir.to_owned()));
        }
        let db_path = state_dir.join(DB_FILE);
        // Create the file ourselves so it is 0600 from the first byte; SQLite gives the WAL and
        // shared-memory files the same mode.
        drop(open_private(&db_path, What::Database)?);
        let mut conn = Connection::open_with_flags(
            &db_path,
            rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn)?;

        let (jobs, mut queue) = mpsc::channel::<Job>(256);
        std::thread::Builder::new()
            .name("mslink-store".into())
            .spawn(move || {
                while let Some(job) = queue.blocking_recv() {
                    job(&mut conn);
                }
            })
            .map_err(|source| StoreError::OpenFile { path: db_path, source })?;
        Ok((Store { jobs }, StateLock { _file: lock }))
    }

    /// Runs `f` on the store thread and returns its result.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(&mut Db::new(conn)));
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }
}

/// Opens (creating if needed) a file only its owner may read, and tightens an existing one
/// through its descriptor (`fchmod`), once [`files::open`] has checked it is ours.
fn open_private(path: &Path, what: What) -> Result<File, StoreError> {
    let file = files::open(
        path,
        what,
        OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600),
    )?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|source| StoreError::OpenFile { path: path.to_owned(), source })?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_are_private_and_a_second_daemon_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (_store, _lock) = Store::open(&state).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(DB_FILE)), 0o600);
        assert!(matches!(Store::open(&state), Err(StoreError::Locked(_))));
    }

    #[tokio::test]
    async fn a_linked_database_or_lock_is_refused_and_its_target_left_alone() {
        for name in [DB_FILE, LOCK_FILE] {
            let dir = tempfile::tempdir().unwrap();
            let state = dir.path().join("state");
            std::fs::create_dir(&state).unwrap();
            let target = dir.path().join("precious");
            std::fs::write(&target, "precious").unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::os::unix::fs::symlink(&target, state.join(name)).unwrap();
            let refused = Store::open(&state).unwrap_err().to_string();
            assert!(refused.contains("is a symbolic link"), "{refused}");
            let meta = std::fs::metadata(&target).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o644, "chmodded through the link");
            assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        }
    }

    #[tokio::test]
    async fn a_state_directory_others_may_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = Store::open(dir.path()).unwrap_err().to_string();
        assert!(refused.contains("chmod go-w"), "{refused}");
        assert!(!dir.path().join(DB_FILE).exists());
    }

    #[tokio::test]
    async fn state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _lock) = Store::open(dir.path()).unwrap();
            store.call(|db| db.record_request("alice", Some("please"), 100)).await.unwrap();
        }
        let (store, _lock) = Store::open(dir.path()).unwrap();
        let pending = store.call(|db| db.pending_requests()).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].message.as_deref(), Some("please"));
    }
}
