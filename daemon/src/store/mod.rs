//! SQLite state: the only code that touches the database.
//!
//! The daemon asks its store for named operations (`ops.rs`: `store.save_link(..)`,
//! `store.status(..)`, ...), each a write or a read; nothing outside this module sees SQL, a
//! connection or a transaction, so a second backend ([`postgres`]) has one list to implement.
//!
//! Ownership: one dedicated thread owns the writing `rusqlite::Connection`. A write sends it a
//! closure (`Store::call`) and awaits the answer, so no SQLite call ever blocks a tokio worker
//! and no lock is held across an `.await`. A read (`Store::read`) goes to [`READERS`] threads,
//! each with its own read-only connection: WAL lets them read the last commit while the writer
//! works, so a `status` never queues behind a storm's commits. A read sees every write that has
//! returned. The threads end when the last [`Store`] handle is dropped.
//!
//! ```text
//!  round   ── store.record_outcome(..) ─ call ─▶ mpsc ─▶ [writer thread: Connection] ─oneshot─▶ round
//!  handler ── store.status(..) ───────── read ─▶ mpsc ─▶ [reader threads: read-only]  ─oneshot─▶ handler
//! ```
//!
//! Group commit: the writer takes every job queued when it wakes (up to [`GROUP_MAX`]), runs each
//! in its own savepoint inside one transaction, commits once, and only then answers them all. A
//! storm's rounds so share one `fsync` instead of paying one each; a job that fails rolls back
//! its savepoint alone; if the commit fails, every job of the group gets the error. A lone job
//! commits at once: nothing waits for company.
//!
//! Durability: WAL with `synchronous = FULL`, so a committed transaction survives `kill -9` and
//! power loss, and no `call` returns before its commit. The database, its WAL and the lock file
//! are created 0600 in a 0700 directory. The directory and the files pass [`crate::files`]'s rule (owned by root or us, not writable
//! by others, no link in a file's place) before anything is opened or tightened.

pub(crate) mod links;
pub(crate) mod ops;
pub mod postgres;
mod queries;
mod schema;
pub mod transfer;

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::config::PgConfig;
use crate::files::{self, FileError, What};

pub use links::{LinkRecord, NewLink, Outcome, Owner, ResourceToken, Transition};
pub use ops::{ConnectCheck, LinkLookup, Overview, Release, Seal};
use queries::Db;

/// The file name of the database inside `state_dir`.
pub const DB_FILE: &str = "mslink.db";
/// The file name of the lock file inside `state_dir`.
pub const LOCK_FILE: &str = "mslinkd.lock";
/// Read-only connections beside the writer: two, so one long `status --all` leaves another
/// user's `status` a connection.
pub const READERS: usize = 2;

/// Prepared statements each connection keeps (rusqlite's default is 16). The statements of the
/// hot paths (a round, `status`, `token`, the group's own) go through `prepare_cached`: parsed
/// once per connection, not on every call, which was a fifth of a refresh round's CPU.
const STATEMENTS: usize = 64;

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
    #[error("the commit failed: {0}")]
    Commit(String),
    #[error("the store thread has stopped")]
    Stopped,
    #[error("cannot seal a secret: {0}")]
    Sealing(String),
    #[error("the owner already has {limit} links")]
    TooManyLinks { limit: usize },
    #[error("another mslinkd of the fleet is working on this link; try again in a moment")]
    Leased,
    #[error(transparent)]
    Postgres(#[from] postgres::PgError),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Postgres(postgres::PgError::Db(e))
    }
}

impl StoreError {
    /// True when the disk is full or the database is read-only: worth an operator's attention.
    pub fn is_storage_fault(&self) -> bool {
        use rusqlite::ErrorCode::{DiskFull, ReadOnly, SystemIoFailure};
        matches!(self, StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if matches!(e.code, DiskFull | ReadOnly | SystemIoFailure))
    }
}

/// The most writes one commit carries: enough to amortise the `fsync` over a storm's rounds,
/// few enough that the first of them is not kept long.
pub const GROUP_MAX: usize = 64;

/// Writes queued for the writer before `call` waits for room.
const QUEUE: usize = 256;

/// A read, run on a reader connection.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;
/// A write: its work, run in the group's transaction, returns its answer, sent once the
/// group's commit is known (`Some`: it failed, and so did every write of the group that had not
/// failed by itself).
type WriteJob = Box<dyn FnOnce(&mut Connection) -> Answer + Send>;
type Answer = Box<dyn FnOnce(Option<&rusqlite::Error>) + Send>;

/// A handle to the store: its operations are in `ops.rs`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// What the store has committed, for metrics (`mslink_store_*_total`) and tests.
    counts: std::sync::Arc<Counts>,
}

/// Where the state lives.
#[derive(Debug, Clone)]
enum Backend {
    /// This machine's SQLite database, through the store threads.
    Sqlite(Sqlite),
    /// An organisation's PostgreSQL database (`[store] url`).
    Postgres(postgres::PgStore),
}

/// The SQLite store threads' queues.
#[derive(Debug, Clone)]
struct Sqlite {
    jobs: mpsc::Sender<WriteJob>,
    reads: mpsc::Sender<Job>,
}

/// How many commits the store has made (or tried to) and how many writes they carried: on
/// SQLite a group commit carries many, on PostgreSQL each write is its own transaction.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    commits: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
}

impl Counts {
    pub(crate) fn committed(&self, writes: u64) {
        self.writes.fetch_add(writes, std::sync::atomic::Ordering::Relaxed);
        self.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
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
        tune(&conn)?;
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
        let (jobs, mut queue) = mpsc::channel::<WriteJob>(QUEUE);
        let counts = std::sync::Arc::new(Counts::default());
        let counted = counts.clone();
        spawn(
            "mslink-store".into(),
            Box::new(move || {
                let mut group = Vec::with_capacity(GROUP_MAX);
                while let Some(job) = queue.blocking_recv() {
                    group.push(job);
                    while group.len() < GROUP_MAX {
                        let Ok(job) = queue.try_recv() else { break };
                        group.push(job);
                    }
                    // Counted before the group's writes are answered, so whoever got an answer
                    // sees its commit counted.
                    counted.committed(group.len() as u64);
                    commit_group(&mut conn, group.drain(..));
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
            tune(&conn)?;
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
        let backend = Backend::Sqlite(Sqlite { jobs, reads });
        Ok((Store { backend, counts }, StateLock { _file: lock }))
    }

    /// A store on an organisation's PostgreSQL database: `pool` on `config`, which
    /// [`postgres::migrate`] has brought to this build's schema.
    pub fn postgres(pool: deadpool_postgres::Pool, config: PgConfig) -> Store {
        let counts = std::sync::Arc::new(Counts::default());
        let backend = Backend::Postgres(postgres::PgStore::new(pool, config, counts.clone()));
        Store { backend, counts }
    }

    /// How many group commits the writer has made.
    pub fn commits(&self) -> u64 {
        self.counts.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many writes those commits carried.
    pub fn writes(&self) -> u64 {
        self.counts.writes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Sqlite {
    /// Runs `f` on the store thread, in a group commit with whatever else is queued, and
    /// returns its result once that is committed.
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let result = in_savepoint(conn, f);
            Box::new(move |commit_failed| {
                // A write that failed says why, whatever became of the group's commit.
                let answer = match (result, commit_failed) {
                    (Ok(_), Some(error)) => Err(copy_error(error)),
                    (result, _) => result,
                };
                let _ = tx.send(answer);
            })
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Runs `f` on a reader thread, on a read-only connection: it sees every write whose
    /// `Store::call` has returned, and never waits for the writer. `f` gets `&Db`, so only the
    /// reading queries compile; SQLite refuses a write on the connection as well. Everything `f`
    /// reads is one snapshot (one read transaction): a `status` never shows a request count from
    /// before a commit beside links from after it, and takes the WAL's read lock once, not once
    /// a statement.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Db<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            // Should an earlier read's COMMIT have failed, its snapshot is let go here: a read
            // never answers from an old one.
            if !conn.is_autocommit() {
                let _ = run(conn, "ROLLBACK");
            }
            let answer = run(conn, "BEGIN").map_err(StoreError::from).and_then(|()| {
                let answer = f(&Db::new(conn));
                let _ = run(conn, "COMMIT");
                answer
            });
            let _ = tx.send(answer);
        });
        self.reads.send(job).await.map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }
}

/// What every connection of the store is set to: wait up to 5 s for a lock, keep the hot paths'
/// statements prepared ([`STATEMENTS`]), and plan each statement once, whatever values it is
/// given (SQLite's query planner stability guarantee). Without that, SQLite (built with STAT4, as
/// rusqlite's bundled build is) plans some statements for the values bound to them and parses
/// and plans them again each time values are bound: a user's links (`user = ?1 AND (?2 IS NULL
/// OR uid = ?2)`) on every `status`, half the reader's time.
fn tune(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(STATEMENTS);
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Writes the WAL of the database in `state_dir` back into the database file and empties it,
/// as a tool that wrote many rows ([`Store::insert_links`]) does once its [`Store`] is dropped and
/// before a daemon opens the database: otherwise the daemon's first connection reads the whole
/// WAL back before it can answer. Waits (up to a minute) for the store's own connections to close.
pub fn checkpoint(state_dir: &Path) -> Result<(), StoreError> {
    let conn = Connection::open_with_flags(
        state_dir.join(DB_FILE),
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(60))?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Runs `group` in one transaction and answers each job once it is committed (or not).
fn commit_group(conn: &mut Connection, group: impl Iterator<Item = WriteJob>) {
    let mut answers: Vec<Answer> = Vec::with_capacity(GROUP_MAX);
    // Without the group's transaction (it could not begin) each savepoint commits by itself.
    let mut grouped = run(conn, "BEGIN IMMEDIATE").is_ok();
    for job in group {
        answers.push(job(conn));
        // SQLite rolls a whole transaction back on some errors (a full disk, an I/O error):
        // then what the group's earlier jobs did is gone, and they must not hear otherwise;
        // the job that met the error reports its own.
        if grouped && conn.is_autocommit() {
            let lost = rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("the group's transaction was rolled back".into()),
            );
            answers.drain(..).for_each(|answer| answer(Some(&lost)));
            grouped = run(conn, "BEGIN IMMEDIATE").is_ok();
        }
    }
    let committed = if grouped { run(conn, "COMMIT") } else { Ok(()) };
    if committed.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let failed = committed.err();
    answers.into_iter().for_each(|answer| answer(failed.as_ref()));
}

/// Runs one statement of the group's own (no parameters, no rows) from the connection's cache.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Runs `f` in a savepoint: on an error, what it wrote is rolled back and the group goes on.
fn in_savepoint<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Db<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    run(conn, "SAVEPOINT job")?;
    let result = f(&mut Db::new(conn));
    match &result {
        Ok(_) => run(conn, "RELEASE job")?,
        // Where SQLite already rolled the transaction back there is no savepoint left.
        Err(_) if conn.is_autocommit() => {}
        Err(_) => conn.execute_batch("ROLLBACK TO job; RELEASE job")?,
    }
    result
}

/// The commit's error, for each job of the group.
fn copy_error(error: &rusqlite::Error) -> StoreError {
    match error {
        rusqlite::Error::SqliteFailure(code, message) => {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(*code, message.clone()))
        }
        other => StoreError::Commit(other.to_string()),
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

    /// The SQLite store's own queues, for tests of the writer and the readers.
    impl Store {
        async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
        where
            T: Send + 'static,
            F: FnOnce(&mut Db<'_>) -> Result<T, StoreError> + Send + 'static,
        {
            let Backend::Sqlite(sqlite) = &self.backend else { panic!("a SQLite store") };
            sqlite.call(f).await
        }

        async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
        where
            T: Send + 'static,
            F: FnOnce(&Db<'_>) -> Result<T, StoreError> + Send + 'static,
        {
            let Backend::Sqlite(sqlite) = &self.backend else { panic!("a SQLite store") };
            sqlite.read(f).await
        }

        /// Room left in the writer's queue.
        fn queue_room(&self) -> usize {
            let Backend::Sqlite(sqlite) = &self.backend else { panic!("a SQLite store") };
            sqlite.jobs.capacity()
        }
    }

    #[test]
    fn a_statement_is_planned_once_whatever_values_it_is_given() {
        let mut conn = Connection::open_in_memory().unwrap();
        tune(&conn).unwrap();
        schema::migrate(&mut conn).unwrap();
        let db = Db::new(&mut conn);
        // Users' `status`, one after another: each binds its own name and uid.
        for (name, uid) in [("ann", Some(1000)), ("bob", None), ("ann", Some(1000))] {
            db.links(Some(Owner { name: name.into(), uid })).unwrap();
        }
        let stmt = db.conn.prepare_cached(&queries::links_sql(&queries::links_of_owner())).unwrap();
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0, "parsed again");
    }

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
                    let tx = db.conn.savepoint()?;
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
    async fn everything_one_read_reads_is_one_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _lock) = Store::open(dir.path()).unwrap();
        // A read that reads twice, with a write committed between its two queries.
        let (between, read_once) = oneshot::channel::<()>();
        let (committed, write_done) = std::sync::mpsc::channel::<()>();
        let reader = store.clone();
        let read = tokio::spawn(async move {
            reader
                .read(move |db| {
                    let before = db.pending_requests()?.len();
                    let _ = between.send(());
                    let _ = write_done.recv();
                    Ok((before, db.pending_requests()?.len()))
                })
                .await
        });
        read_once.await.unwrap();
        store.call(|db| db.record_request("alice", Some("please"), 100)).await.unwrap();
        committed.send(()).unwrap();
        assert_eq!(read.await.unwrap().unwrap(), (0, 0), "the second query saw a later commit");
        assert_eq!(store.read(|db| db.pending_requests()).await.unwrap().len(), 1);
    }

    /// Holds the writer in a job until the returned sender is dropped or sent to.
    async fn hold_writer(
        store: &Store,
    ) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (started, busy) = oneshot::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let writer = store.clone();
        let held = tokio::spawn(async move {
            writer
                .call(move |_| {
                    let _ = started.send(());
                    let _ = released.recv();
                    Ok(())
                })
                .await
                .unwrap();
        });
        busy.await.unwrap();
        (release, held)
    }

    #[tokio::test]
    async fn queued_writes_share_one_commit_and_a_failing_one_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _lock) = Store::open(dir.path()).unwrap();
        let (release, held) = hold_writer(&store).await;
        // The held job's group was counted as it began.
        let before = store.commits();
        let writes_before = store.writes();
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..20 {
            let store = store.clone();
            calls.spawn(async move {
                store
                    .call(move |db| {
                        db.record_request(&format!("user{n}"), None, 100)?;
                        if n == 7 {
                            // Written, then failed: rolled back with its savepoint alone.
                            return Err(StoreError::Commit("job 7 fails".into()));
                        }
                        Ok(n)
                    })
                    .await
            });
        }
        while store.queue_room() > QUEUE - 20 {
            tokio::task::yield_now().await;
        }
        // Nothing queued behind the held job is answered before its commit.
        assert!(calls.try_join_next().is_none());
        release.send(()).unwrap();
        held.await.unwrap();
        let mut answered = Vec::new();
        while let Some(result) = calls.join_next().await {
            answered.push(result.unwrap().ok());
        }
        assert_eq!(answered.iter().filter(|a| a.is_none()).count(), 1, "{answered:?}");
        let pending = store.read(|db| db.pending_requests()).await.unwrap();
        let users: Vec<&str> = pending.iter().map(|r| r.user.as_str()).collect();
        assert_eq!(users.len(), 19, "{users:?}");
        assert!(!users.contains(&"user7"), "{users:?}");
        // One commit for the twenty (GROUP_MAX allows them all).
        assert_eq!(store.commits() - before, 1);
        assert_eq!(store.writes() - writes_before, 20);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_write_of_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _lock) = Store::open(dir.path()).unwrap();
        let (release, held) = hold_writer(&store).await;
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..3 {
            let store = store.clone();
            calls.spawn(async move {
                store
                    .call(move |db| db.record_request(&format!("user{n}"), None, 100).map(drop))
                    .await
            });
        }
        // Deferred foreign keys are checked at the commit: this job's row breaks it for all.
        let breaker = store.clone();
        calls.spawn(async move {
            breaker
                .call(|db| {
                    db.conn.execute_batch(
                        "PRAGMA defer_foreign_keys = ON; \
                         INSERT INTO resource_tokens (link_id, resource, secret, expires_at, issued_at) \
                         VALUES (424242, 'imap', x'00', 0, 0)",
                    )?;
                    Ok(())
                })
                .await
        });
        while store.queue_room() > QUEUE - 4 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        held.await.unwrap();
        while let Some(result) = calls.join_next().await {
            let error = result.unwrap().unwrap_err();
            assert!(error.to_string().contains("FOREIGN KEY"), "{error}");
        }
        assert!(store.read(|db| db.pending_requests()).await.unwrap().is_empty());
        // The writer goes on with the next group.
        store.call(|db| db.record_request("after", None, 100)).await.unwrap();
        assert_eq!(store.read(|db| db.pending_requests()).await.unwrap().len(), 1);
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
