//! SQLite state: the only code that touches the database.
//!
//! Ownership: one dedicated thread owns the writing `rusqlite::Connection`. Async code sends it
//! closures through [`Store::call`] and awaits the answer, so no SQLite call ever blocks a tokio
//! worker and no lock is held across an `.await`. Reads that answer users (`status`, `requests`,
//! metrics) go through [`Store::read`] to [`READERS`] threads, each with its own read-only
//! connection: WAL lets them read the last commit while the writer works, so a `status` never
//! queues behind a storm's commits (each its own `fsync`). A read sees every write whose `call`
//! has returned. The threads end when the last [`Store`] handle is dropped.
//!
//! ```text
//!  round   ──call(|db| ..)──▶ mpsc ──▶ [writer thread: Connection]      ──oneshot──▶ round
//!  handler ──read(|db| ..)──▶ mpsc ──▶ [reader threads: read-only conns] ──oneshot──▶ handler
//! ```
//!
//! Durability: WAL with `synchronous = FULL`, so a committed transaction survives `kill -9` and
//! power loss. The database, its WAL and the lock file are created 0600 in a 0700 directory.
//! The directory and the files pass [`crate::files`]'s rule (owned by root or us, not writable
//! by others, no link in a file's place) before anything is opened or tightened.

mod links;
pub mod postgres;
mod queries;
mod schema;

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::files::{self, FileError, What};

pub use links::{LinkRecord, NewLink, Outcome, Owner, ResourceToken, Transition};
pub use queries::Db;

/// The file name of the database inside `state_dir`.
pub const DB_FILE: &str = "mslink.db";
/// The file name of the lock file inside `state_dir`.
pub const LOCK_FILE: &str = "mslinkd.lock";
/// Read-only connections beside the writer: two, so one long `status --all` leaves another
/// user's `status` a connection.
pub const READERS: usize = 2;

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
    #[error("the owner already has {limit} links")]
    TooManyLinks { limit: usize },
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

/// A handle to the store threads. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    reads: mpsc::Sender<Job>,
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

        let spawn = |name: String, work: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(work)
                .map(drop)
                .map_err(|source| StoreError::OpenFile { path: db_path.clone(), source })
        };
        let (jobs, mut queue) = mpsc::channel::<Job>(256);
        spawn(
            "mslink-store".into(),
            Box::new(move || {
                while let Some(job) = queue.blocking_recv() {
                    job(&mut conn);
                }
            }),
        )?;
        let (reads, read_queue) = mpsc::channel::<Job>(256);
        let read_queue = std::sync::Arc::new(std::sync::Mutex::new(read_queue));
        for n in 0..READERS {
            let mut conn = Connection::open_with_flags(
                &db_path,
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_NOFOLLOW,
            )?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            let queue = read_queue.clone();
            spawn(
                format!("mslink-read-{n}"),
                Box::new(move || {
                    loop {
                        // One reader waits on the queue at a time; the lock is let go before
                        // the job runs, so the next job goes to another reader.
                        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).blocking_recv();
                        let Some(job) = job else { break };
                        job(&mut conn);
                    }
                }),
            )?;
        }
        Ok((Store { jobs, reads }, StateLock { _file: lock }))
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

    /// Runs `f` on a reader thread, on a read-only connection: it sees every write whose
    /// [`Store::call`] has returned, and never waits for the writer. `f` gets `&Db`, so only the
    /// reading queries compile; SQLite refuses a write on the connection as well.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Db<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(&Db::new(conn)));
        });
        self.reads.send(job).await.map_err(|_| StoreError::Stopped)?;
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
    async fn reads_see_every_returned_write_and_never_wait_for_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _lock) = Store::open(dir.path()).unwrap();
        store.call(|db| db.record_request("alice", Some("please"), 100)).await.unwrap();
        let pending = store.read(|db| db.pending_requests()).await.unwrap();
        assert_eq!(pending.len(), 1, "a read after a returned write sees it");

        // Hold the writer inside a transaction until the reads are done.
        let (started, writer_busy) = oneshot::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let writer = store.clone();
        let held = tokio::spawn(async move {
            writer
                .call(move |db| {
                    let tx = db.conn.transaction()?;
                    tx.execute("DELETE FROM requests", [])?;
                    let _ = started.send(());
                    let _ = released.recv();
                    tx.commit()?;
                    Ok(())
                })
                .await
        });
        writer_busy.await.unwrap();
        for _ in 0..READERS * 2 {
            let read = store.read(|db| db.pending_requests());
            let pending = tokio::time::timeout(std::time::Duration::from_secs(10), read)
                .await
                .expect("a read waited for the writer")
                .unwrap();
            assert_eq!(pending.len(), 1, "reads see the last commit, not the open transaction");
        }
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        assert!(store.read(|db| db.pending_requests()).await.unwrap().is_empty());
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
