//! A real PostgreSQL server for tests: Debian's `postgresql` (15) with a throwaway cluster on
//! 127.0.0.1 at a free port, run by the test as the `postgres` user, never the distribution's
//! own cluster or service (port 5432, `/var/run/postgresql`, `/var/lib/postgresql` are left
//! alone).
//!
//! ```text
//!   start ──> running ──stop──> down ──start_again──> running      (Drop: stopped, files gone)
//! ```
//!
//! Everything lives in one temporary directory owned by `postgres`: the data directory
//! (`initdb`), the Unix socket directory, the server's log and, with [`Postgres::start_tls`], its
//! certificate and key. The server is the `postgres` process itself (no `pg_ctl` daemonising),
//! so its pid is the test's child and it is stopped by that pid.
//!
//! Authentication is what a deployment would use: the daemon's role ([`ROLE`], owner of the
//! database [`DATABASE`]) logs in over TCP with a password (`scram-sha-256` in `pg_hba.conf`,
//! TLS-only with [`Postgres::start_tls`]); only the `postgres` superuser, over the cluster's own
//! Unix socket, is trusted, for [`Postgres::superuser_sql`].

use std::fs::File;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::prerequisite;

/// The role the daemon logs in as.
pub const ROLE: &str = "mslink";
/// The database the daemon's role owns.
pub const DATABASE: &str = "mslink";
/// How long the server may take to accept connections (a fresh cluster: well under a second).
const STARTUP: Duration = Duration::from_secs(30);
/// How long a fast shutdown (SIGINT) may take before the server is killed.
const SHUTDOWN: Duration = Duration::from_secs(15);

/// A running throwaway PostgreSQL cluster, stopped and removed when dropped.
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    password: String,
    user: nix::unistd::User,
    child: Option<Child>,
}

impl Postgres {
    /// Creates a cluster with [`ROLE`] and [`DATABASE`] and starts it; returns once it accepts
    /// connections. Fails when PostgreSQL is not installed or the test is not root (it runs the
    /// server as `postgres`), naming the fix; `None` only when the run allows that
    /// ([`prerequisite::ALLOW_SKIP`]).
    #[track_caller]
    pub fn start() -> Option<Postgres> {
        Postgres::create(None)
    }

    /// Like [`Postgres::start`], with TLS: the server presents `pki`'s `server.pem` (issued for
    /// 127.0.0.1 by its CA, [`crate::ews::Pki::ca`]) and the daemon's role may log in only
    /// over TLS.
    #[track_caller]
    pub fn start_tls(pki: &crate::ews::Pki) -> Option<Postgres> {
        Postgres::create(Some(pki))
    }

    #[track_caller]
    fn create(pki: Option<&crate::ews::Pki>) -> Option<Postgres> {
        let Some(bin) = find_bin() else {
            prerequisite::missing(
                "this test",
                "PostgreSQL (Debian `postgresql`: /usr/lib/postgresql/*/bin/initdb) is not installed",
                &format!("run `{}`", prerequisite::SETUP),
            );
            return None;
        };
        if !nix::unistd::geteuid().is_root() {
            prerequisite::missing(
                "this test",
                "it runs a throwaway PostgreSQL cluster as the `postgres` user, which needs root",
                "run the suite as root (`sudo -E cargo nextest run --workspace`)",
            );
            return None;
        }
        let user = nix::unistd::User::from_name("postgres").ok().flatten();
        let Some(user) = user else {
            prerequisite::missing(
                "this test",
                "there is no `postgres` user (Debian's `postgresql` package creates it)",
                &format!("run `{}`", prerequisite::SETUP),
            );
            return None;
        };
        let dir = tempfile::Builder::new().prefix("mslink-pg").tempdir().expect("tempdir");
        nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown the pg dir");
        let mut pg = Postgres { dir, bin, port: 0, password: random_hex(), user, child: None };
        pg.init(pki);
        for _ in 0..10 {
            pg.port = free_port();
            if pg.spawn().is_ok() {
                pg.create_role_and_database();
                return Some(pg);
            }
        }
        panic!("postgres did not start; its log:\n{}", pg.log());
    }

    /// The server's (postmaster's) process id, while it runs: its backends are its children.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The daemon role's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgresql://mslink@127.0.0.1:PORT/mslink`: `[store] url` for the daemon (no password:
    /// that goes in a file).
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    /// The URL of another database of this cluster ([`Postgres::create_database`]).
    pub fn url_for(&self, database: &str) -> String {
        format!("postgresql://{ROLE}@127.0.0.1:{}/{database}", self.port)
    }

    /// Writes the role's password to `path` (mode 0600), for `[store] password_file`.
    pub fn write_password_file(&self, path: &Path) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .expect("create the password file");
        writeln!(file, "{}", self.password).expect("write the password file");
    }

    /// Creates another empty database owned by [`ROLE`] (a fresh one per case).
    #[track_caller]
    pub fn create_database(&self, name: &str) {
        assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "plain name: {name}");
        self.superuser_sql("postgres", &format!("CREATE DATABASE {name} OWNER {ROLE}"));
    }

    /// Runs `sql` as the superuser in `database` (`psql`, over the cluster's Unix socket) and
    /// returns what it printed, unaligned and without headers; fails on an error.
    #[track_caller]
    pub fn superuser_sql(&self, database: &str, sql: &str) -> String {
        let out = self.run_as_postgres(
            Command::new(self.bin.join("psql"))
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(self.socket_dir())
                .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", database, "-c", sql]),
        );
        assert!(
            out.status.success(),
            "psql -c {sql:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops the server (fast shutdown: clients are disconnected); data is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let deadline = Instant::now() + SHUTDOWN;
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again on the same port and data.
    #[track_caller]
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "stop the server before starting it again");
        if let Err(log) = self.spawn() {
            panic!("postgres did not start again on port {}; its log:\n{log}", self.port);
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.path("postgres.log")) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn data_dir(&self) -> PathBuf {
        self.path("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.path("socket")
    }

    /// Runs `cmd` as `postgres`, in the cluster's directory.
    fn run_as_postgres(&self, cmd: &mut Command) -> Output {
        cmd.uid(self.user.uid.as_raw())
            .gid(self.user.gid.as_raw())
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
    }

    /// `initdb`, then the settings and `pg_hba.conf` of this cluster.
    fn init(&self, pki: Option<&crate::ews::Pki>) {
        let owned = |path: &Path| {
            nix::unistd::chown(path, Some(self.user.uid), Some(self.user.gid)).expect("chown");
        };
        std::fs::create_dir(self.socket_dir()).expect("socket dir");
        owned(&self.socket_dir());
        let out = self.run_as_postgres(
            Command::new(self.bin.join("initdb"))
                .args(["--no-sync", "--encoding=UTF8", "--locale=C.UTF-8", "-U", "postgres"])
                .args(["--auth-local=trust", "--auth-host=scram-sha-256", "-D"])
                .arg(self.data_dir()),
        );
        assert!(
            out.status.success(),
            "initdb: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let host = if pki.is_some() { "hostssl" } else { "host" };
        let hba = format!(
            "local all postgres trust\n{host} all {ROLE} 127.0.0.1/32 scram-sha-256\n\
             host all all 0.0.0.0/0 reject\n"
        );
        let mut conf = String::from(
            "listen_addresses = '127.0.0.1'\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nshared_buffers = 16MB\nmax_connections = 100\n\
             password_encryption = 'scram-sha-256'\nlogging_collector = off\n",
        );
        if let Some(pki) = pki {
            for name in ["server.pem", "server.key"] {
                let to = self.data_dir().join(name);
                std::fs::copy(pki.path(name), &to).expect("copy the server certificate");
                owned(&to);
            }
            conf.push_str("ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n");
        }
        for (name, text) in [("pg_hba.conf", hba), ("mslink.conf", conf)] {
            let path = self.data_dir().join(name);
            std::fs::write(&path, text).expect("write the cluster's config");
            owned(&path);
        }
        let main = self.data_dir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&main).expect("read postgresql.conf");
        text.push_str("include 'mslink.conf'\n");
        std::fs::write(&main, text).expect("write postgresql.conf");
    }

    /// Starts `postgres` in the foreground and waits until it accepts connections: the
    /// postmaster writes `ready` into `postmaster.pid` once it does, and a TCP connection to the
    /// port must then succeed. On failure the server is stopped and its new log lines returned.
    fn spawn(&mut self) -> Result<(), String> {
        let log_before = self.log().len();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("postgres.log"))
            .expect("open the server's log");
        nix::unistd::chown(&self.path("postgres.log"), Some(self.user.uid), None).expect("chown");
        let pid_file = self.data_dir().join("postmaster.pid");
        let _ = std::fs::remove_file(&pid_file);
        let child = Command::new(self.bin.join("postgres"))
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.socket_dir())
            .uid(self.user.uid.as_raw())
            .gid(self.user.gid.as_raw())
            .current_dir(self.dir.path())
            .env_clear()
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.join("postgres").display()));
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP;
        let outcome = loop {
            let exited = self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                break Err(self.log().get(log_before..).unwrap_or_default().to_owned());
            }
            let ready = std::fs::read_to_string(&pid_file)
                .is_ok_and(|text| text.lines().nth(7).is_some_and(|l| l.trim() == "ready"));
            if ready && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break Ok(());
            }
            if Instant::now() > deadline {
                let log = self.log().get(log_before..).unwrap_or_default().to_owned();
                break Err(format!("{log}(not ready within {STARTUP:?})"));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if outcome.is_err() {
            self.stop();
        }
        outcome
    }

    fn create_role_and_database(&self) {
        self.superuser_sql(
            "postgres",
            &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{}'", self.password),
        );
        self.create_database(DATABASE);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The newest `/usr/lib/postgresql/N/bin` holding `initdb` and `postgres`.
fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            let complete = ["initdb", "postgres", "psql"].iter().all(|p| bin.join(p).exists());
            complete.then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A TCP port free on 127.0.0.1 now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free TCP port");
    listener.local_addr().expect("local_addr").port()
}

/// 32 random hex digits (the role's password).
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
