//! A real Kerberos KDC for tests: MIT Kerberos (Debian `krb5-kdc`, `krb5-admin-server`,
//! `krb5-user`) with a throwaway realm on 127.0.0.1 at a free port, run as the test's own
//! process, not as a service.
//!
//! ```text
//!   start ──> running ──stop──> down ──start_again──> running      (Drop: killed, files gone)
//! ```
//!
//! Everything lives in one temporary directory: the KDC's `kdc.conf`, a `krb5.conf` naming only
//! this realm, the database and its stash, the KDC's log and the keytabs [`Kdc::add_service`]
//! writes. Every krb5 command runs with `KRB5_CONFIG` and `KRB5_KDC_PROFILE` pointing there, so
//! the machine's own `/etc/krb5.conf` is neither read nor touched.
//!
//! Keys are aes256-cts and aes128-cts only, and every principal requires pre-authentication (as
//! Active Directory does): a wrong password is refused by the KDC ("Preauthentication failed"),
//! not found out later by the client.

use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::prerequisite;

/// How long the KDC may take to bind its sockets.
const STARTUP: Duration = Duration::from_secs(15);

/// The encryption types of every key and ticket: what current Active Directory domains use.
const ENCTYPES: &str = "aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96";

/// A running MIT `krb5kdc` for one throwaway realm on 127.0.0.1 (UDP and TCP on one port),
/// killed when dropped.
#[derive(Debug)]
pub struct Kdc {
    dir: tempfile::TempDir,
    realm: String,
    port: u16,
    /// Seconds the KDC's clock runs ahead of the machine's (`krb5kdc -T`).
    clock_offset: i64,
    child: Option<Child>,
    tools: Tools,
}

/// Where the MIT programs are: Debian puts the administrative ones in /usr/sbin, which is not on
/// every user's `PATH`.
#[derive(Debug)]
struct Tools {
    krb5kdc: PathBuf,
    kdb5_util: PathBuf,
    kadmin_local: PathBuf,
}

impl Tools {
    fn find() -> Option<Tools> {
        let sbin = |name: &str| {
            ["/usr/sbin", "/sbin", "/usr/bin"]
                .iter()
                .map(|dir| Path::new(dir).join(name))
                .find(|path| path.exists())
        };
        Some(Tools {
            krb5kdc: sbin("krb5kdc")?,
            kdb5_util: sbin("kdb5_util")?,
            kadmin_local: sbin("kadmin.local")?,
        })
    }
}

impl Kdc {
    /// Creates `realm` (e.g. `CONTOSO.TEST`) with an empty database and starts its KDC; returns
    /// once the KDC answers on its port. Fails when MIT Kerberos is not installed, naming the
    /// setup command; `None` only when the run allows that ([`prerequisite::ALLOW_SKIP`]).
    #[track_caller]
    pub fn start(realm: &str) -> Option<Kdc> {
        let tools = Tools::find().filter(|_| which("kinit") && which("klist"));
        let Some(tools) = tools else {
            prerequisite::missing(
                "this test",
                "MIT Kerberos (Debian `krb5-kdc`, `krb5-admin-server`, `krb5-user`) is not \
                 installed",
                &format!("run `{}`", prerequisite::SETUP),
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut kdc =
            Kdc { dir, realm: realm.to_owned(), port: 0, clock_offset: 0, child: None, tools };
        kdc.write_configs();
        kdc.create_database();
        for _ in 0..10 {
            kdc.port = free_port();
            kdc.write_configs();
            if kdc.spawn().is_ok() {
                return Some(kdc);
            }
        }
        panic!("krb5kdc did not start; its log:\n{}", kdc.log());
    }

    /// The realm's name.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The KDC's port (UDP and TCP).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, for a client's KDC setting.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client `krb5.conf` for this realm alone: its default realm, its KDC at [`Kdc::addr`]
    /// over TCP (as Windows clients prefer for today's large tickets), no DNS lookups of KDCs,
    /// realms or host names, and no silent correction of a skewed clock. Use it as a client's
    /// `KRB5_CONFIG`.
    pub fn krb5_conf(&self) -> PathBuf {
        self.path("krb5.conf")
    }

    /// Creates the user principal `name` (`alice`, in this realm) with `password`. Neither may
    /// hold white space or quotes (`kadmin.local -q` splits on them).
    #[track_caller]
    pub fn add_user(&self, name: &str, password: &str) {
        let said = self.kadmin(&format!("addprinc -pw {} {}", plain(password), plain(name)));
        assert!(said.contains("created"), "addprinc {name}: {said}");
    }

    /// Sets the password of `name`: tickets already issued stay valid until they expire, as in
    /// Active Directory.
    #[track_caller]
    pub fn change_password(&self, name: &str, password: &str) {
        let said = self.kadmin(&format!("cpw -pw {} {}", plain(password), plain(name)));
        assert!(said.contains("changed"), "cpw {name}: {said}");
    }

    /// Creates the service principal `spn` (`HTTP/mail.contoso.test`) with a random key and
    /// returns a keytab holding it, for the acceptor (the EWS fake's `--keytab`).
    #[track_caller]
    pub fn add_service(&self, spn: &str) -> PathBuf {
        let said = self.kadmin(&format!("addprinc -randkey {}", plain(spn)));
        assert!(said.contains("created"), "addprinc {spn}: {said}");
        let file: String = spn
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' })
            .collect();
        let keytab = self.path(&format!("{file}.keytab"));
        let said =
            self.kadmin(&format!("ktadd -k {} {}", plain(&keytab.display().to_string()), spn));
        assert!(said.contains("added to keytab"), "ktadd {spn}: {said}");
        keytab
    }

    /// Runs one `kadmin.local` query against this realm's database (`getprinc alice`,
    /// `modprinc -expire yesterday alice`) and returns what it printed; fails on an error exit.
    #[track_caller]
    pub fn kadmin(&self, query: &str) -> String {
        let out =
            self.run(Command::new(&self.tools.kadmin_local).args(["-r", &self.realm, "-q", query]));
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kadmin.local -q {query:?}: {said}");
        said
    }

    /// `kinit principal` with `password` on stdin, into the credential cache file `ccache`,
    /// against this realm only: what a user's `kinit` prints and its exit status.
    pub fn kinit(&self, principal: &str, password: &str, ccache: &Path) -> Output {
        use std::io::Write;
        let mut child = Command::new("kinit")
            .arg(principal)
            .env("KRB5_CONFIG", self.krb5_conf())
            .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kinit");
        let mut stdin = child.stdin.take().expect("stdin");
        // kinit asks for the password only once the KDC has answered: with the KDC down it may
        // have exited already, and the pipe is closed.
        let _ = writeln!(stdin, "{password}");
        drop(stdin);
        child.wait_with_output().expect("wait for kinit")
    }

    /// Kills the KDC (SIGKILL): the realm's KDC is down, its database kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped KDC again on the same port and database.
    #[track_caller]
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "stop the KDC before starting it again");
        if let Err(log) = self.spawn() {
            panic!("krb5kdc did not start again on port {}; its log:\n{log}", self.port);
        }
    }

    /// Restarts the KDC with its clock `seconds` ahead of the machine's (behind when negative),
    /// as a domain controller whose clock drifted: beyond five minutes, clients are refused with
    /// "Clock skew too great".
    #[track_caller]
    pub fn set_clock_offset(&mut self, seconds: i64) {
        self.stop();
        self.clock_offset = seconds;
        self.start_again();
    }

    /// A file in the KDC's directory.
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a krb5 program against this realm's files only.
    fn run(&self, cmd: &mut Command) -> Output {
        cmd.env("KRB5_CONFIG", self.krb5_conf())
            .env("KRB5_KDC_PROFILE", self.path("kdc.conf"))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
    }

    fn write_configs(&self) {
        let (realm, port) = (&self.realm, self.port);
        let file = |name: &str| self.path(name).display().to_string();
        let kdc_conf = format!(
            "[kdcdefaults]\n kdc_ports = {port}\n kdc_tcp_ports = {port}\n\
             [realms]\n {realm} = {{\n  database_name = {db}\n  key_stash_file = {stash}\n  \
             acl_file = {acl}\n  admin_keytab = FILE:{admin}\n  \
             kdc_listen = 127.0.0.1:{port}\n  kdc_tcp_listen = 127.0.0.1:{port}\n  \
             master_key_type = aes256-cts-hmac-sha1-96\n  \
             supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n  \
             default_principal_flags = +preauth\n }}\n\
             [logging]\n kdc = FILE:{log}\n",
            db = file("principal"),
            stash = file("stash"),
            acl = file("kadm5.acl"),
            admin = file("kadm5.keytab"),
            log = file("kdc.log"),
        );
        let domain = realm.to_ascii_lowercase();
        let krb5_conf = format!(
            "[libdefaults]\n default_realm = {realm}\n dns_lookup_kdc = false\n \
             dns_lookup_realm = false\n dns_canonicalize_hostname = false\n rdns = false\n \
             udp_preference_limit = 1\n kdc_timesync = 0\n \
             default_tkt_enctypes = {ENCTYPES}\n default_tgs_enctypes = {ENCTYPES}\n \
             permitted_enctypes = {ENCTYPES}\n\
             [realms]\n {realm} = {{\n  kdc = 127.0.0.1:{port}\n }}\n\
             [domain_realm]\n .{domain} = {realm}\n {domain} = {realm}\n"
        );
        std::fs::write(self.path("kdc.conf"), kdc_conf).expect("write kdc.conf");
        std::fs::write(self.krb5_conf(), krb5_conf).expect("write krb5.conf");
        std::fs::write(self.path("kadm5.acl"), "").expect("write kadm5.acl");
    }

    fn create_database(&self) {
        let master = random_hex();
        let out = self.run(Command::new(&self.tools.kdb5_util).args([
            "create",
            "-s",
            "-r",
            &self.realm,
            "-P",
            &master,
        ]));
        assert!(
            out.status.success(),
            "kdb5_util create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `krb5kdc` in the foreground and waits until it has bound UDP and TCP on the port
    /// and alone: MIT's KDC binds with `SO_REUSEPORT`, so a second KDC on a taken port would
    /// share it rather than fail. On failure the KDC is killed and its new log lines returned.
    fn spawn(&mut self) -> Result<(), String> {
        let log_before = self.log().len();
        let mut kdc = Command::new(&self.tools.krb5kdc);
        kdc.args(["-n", "-r", &self.realm]);
        if self.clock_offset != 0 {
            kdc.args(["-T", &self.clock_offset.to_string()]);
        }
        let child = kdc
            .env("KRB5_CONFIG", self.krb5_conf())
            .env("KRB5_KDC_PROFILE", self.path("kdc.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.tools.krb5kdc.display()));
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP;
        let outcome = loop {
            let log = self.log().get(log_before..).unwrap_or_default().to_owned();
            let exited = self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited || log.contains("Cannot") {
                break Err(log);
            }
            if log.contains("set up 2 sockets")
                && log.contains("commencing operation")
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                break if tcp_listeners(self.port) == 1 { Ok(()) } else { Err(log) };
            }
            if Instant::now() > deadline {
                break Err(format!("{log}(no answer within {STARTUP:?})"));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if outcome.is_err() {
            self.stop();
        }
        outcome
    }

    /// The KDC's log so far.
    fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.path("kdc.log")) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 now.
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("a free TCP port");
        let port = tcp.local_addr().expect("local_addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// How many sockets listen on 127.0.0.1:`port` (TCP), across every process.
fn tcp_listeners(port: u16) -> usize {
    let wanted = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&wanted.as_str()) && fields.get(3) == Some(&"0A")
        })
        .count()
}

/// 32 random hex digits (the database's master password).
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `word`, checked to survive `kadmin.local -q`'s splitting unchanged.
#[track_caller]
fn plain(word: &str) -> &str {
    assert!(
        !word.is_empty() && !word.contains(|c: char| c.is_whitespace() || c == '"' || c == '\''),
        "{word:?}: kadmin.local -q cannot pass empty words, white space or quotes"
    );
    word
}

/// True when `program` is on `PATH`.
fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}
