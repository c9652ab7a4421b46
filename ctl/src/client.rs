//! One connection to mslinkd: hello, then commands. Blocking I/O: the ctl does one thing at a
//! time and needs no runtime.
//!
//! Before a byte is sent, the socket's peer (SO_PEERCRED) must be mslinkd's user (SPEC §8):
//! anyone who can put a socket at the path could otherwise collect the passwords `connect`
//! sends. See [`trusted_peer`] for who that is.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mslink_proto::{
    ClientFrame, ConnectEvent, CtlCommand, DaemonFrame, DaemonReply, ErrorKind, FrameError,
    LinkInfo, LinkState, MAX_CLIENT_FRAME, MAX_DAEMON_FRAME, PROTOCOL_VERSION, WireError, decode,
    read_frame, write_frame,
};

/// The system daemon's socket.
const SYSTEM_SOCKET: &str = "/run/mslink/mslinkd.sock";
/// How long to wait for a reply before giving up (exit 8).
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// What can go wrong from the ctl's side.
#[derive(Debug)]
pub enum CtlError {
    /// The daemon cannot be reached (exit 3).
    Unreachable { socket: PathBuf, reason: String },
    /// The socket exists but this user may not use it (exit 4).
    SocketDenied { socket: PathBuf },
    /// Something other than mslinkd's user listens on the socket: nothing was sent (exit 3,
    /// for mslinkd itself cannot be reached there).
    Impostor { socket: PathBuf, uid: u32 },
    /// The daemon answered with an error.
    Daemon(WireError),
    /// The daemon did not answer in time (exit 8).
    TimedOut,
    /// The daemon said something this client does not understand.
    Protocol(String),
}

impl CtlError {
    /// The exit code of SPEC §3.
    pub fn exit_code(&self) -> u8 {
        self.to_wire().kind.exit_code()
    }

    /// The error as the wire shape, for `--json` and for rendering.
    pub fn to_wire(&self) -> WireError {
        match self {
            CtlError::Unreachable { socket, reason } => WireError::new(
                ErrorKind::Unreachable,
                format!("cannot reach mslinkd at {}: {reason}", socket.display()),
            )
            .with_hint(
                "start it with `systemctl start mslinkd` (or run `mslinkd`), or point --socket / $MSLINK_SOCKET at its socket",
            ),
            CtlError::SocketDenied { socket } => WireError::new(
                ErrorKind::PermissionDenied,
                format!("you may not use mslinkd's socket {}", socket.display()),
            )
            .with_hint("ask an admin to add you to the group named by `socket_group` in mslinkd.toml"),
            CtlError::Impostor { socket, uid } => WireError::new(
                ErrorKind::Unreachable,
                format!(
                    "the socket {} is served by {} (uid {uid}), not by mslinkd's user; \
                     mslinkctl sent it nothing",
                    socket.display(),
                    user_name(*uid),
                ),
            )
            .with_hint(
                "someone may be impersonating mslinkd: tell an admin, and check --socket / \
                 $MSLINK_SOCKET and that mslinkd runs (`systemctl status mslinkd`)",
            ),
            CtlError::Daemon(error) => error.clone(),
            CtlError::TimedOut => WireError::new(
                ErrorKind::Timeout,
                "mslinkd did not answer in time",
            )
            .with_hint("check the daemon log (journalctl -u mslinkd)"),
            CtlError::Protocol(message) => WireError::new(ErrorKind::Failed, message.clone())
                .with_hint("use the mslinkctl that was installed with this mslinkd"),
        }
    }
}

/// The socket to use when neither --socket nor $MSLINK_SOCKET is given: the system daemon's,
/// unless there is none and the caller has a per-user one.
pub fn default_socket() -> PathBuf {
    let system = PathBuf::from(SYSTEM_SOCKET);
    if system.exists() || nix::unistd::geteuid().is_root() {
        return system;
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if Path::new(&dir).join("mslink/mslinkd.sock").exists() => {
            Path::new(&dir).join("mslink/mslinkd.sock")
        }
        _ => system,
    }
}

/// A connection that has said hello.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connects and performs the handshake.
    pub fn connect(socket: &Path) -> Result<Client, CtlError> {
        Client::connect_within(socket, REPLY_TIMEOUT)
    }

    /// [`Client::connect`], waiting at most `timeout` for each answer (monitoring).
    pub fn connect_within(socket: &Path, timeout: Duration) -> Result<Client, CtlError> {
        let unreachable =
            |reason: String| CtlError::Unreachable { socket: socket.to_owned(), reason };
        let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                CtlError::SocketDenied { socket: socket.to_owned() }
            }
            _ => unreachable(e.to_string()),
        })?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| unreachable(e.to_string()))?;
        let peer =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .map_err(|e| unreachable(format!("cannot tell who serves the socket: {e}")))?
                .uid();
        if !trusted_peer(peer, socket, nix::unistd::geteuid().as_raw()) {
            return Err(CtlError::Impostor { socket: socket.to_owned(), uid: peer });
        }
        let mut client = Client { stream };
        let hello = ClientFrame::Hello {
            protocol_version: PROTOCOL_VERSION,
            client: format!("mslinkctl {}", env!("CARGO_PKG_VERSION")),
        };
        match client.exchange(&hello)? {
            DaemonFrame::Welcome { .. } => Ok(client),
            DaemonFrame::Failure { error } => Err(CtlError::Daemon(error)),
            DaemonFrame::Reply { .. }
            | DaemonFrame::Progress { .. }
            | DaemonFrame::Links { .. } => {
                Err(CtlError::Protocol("mslinkd skipped the handshake".into()))
            }
        }
    }

    /// Runs one command that makes no progress reports.
    pub fn call(
        &mut self,
        act_as: Option<String>,
        command: CtlCommand,
    ) -> Result<DaemonReply, CtlError> {
        self.call_with_progress(act_as, command, |_| Ok(None))
    }

    /// Runs one command; `on_progress` sees each progress event and may answer with a frame
    /// (a pasted redirect URL).
    pub fn call_with_progress(
        &mut self,
        act_as: Option<String>,
        command: CtlCommand,
        mut on_progress: impl FnMut(&ConnectEvent) -> Result<Option<ClientFrame>, CtlError>,
    ) -> Result<DaemonReply, CtlError> {
        let mut frame = self.exchange(&ClientFrame::Command { act_as, command })?;
        loop {
            match frame {
                DaemonFrame::Reply { reply } => return Ok(*reply),
                DaemonFrame::Failure { error } => return Err(CtlError::Daemon(error)),
                DaemonFrame::Welcome { .. } | DaemonFrame::Links { .. } => {
                    return Err(CtlError::Protocol("mslinkd answered out of order".into()));
                }
                DaemonFrame::Progress { event } => {
                    if let Some(answer) = on_progress(&event)? {
                        self.send(&answer)?;
                    }
                    frame = self.receive()?;
                }
            }
        }
    }

    /// Runs a `links` command: hands each page to `on_page` as it arrives and returns how many
    /// links came.
    pub fn stream_links(
        &mut self,
        act_as: Option<String>,
        all: bool,
        state: Option<LinkState>,
        mut on_page: impl FnMut(Vec<LinkInfo>),
    ) -> Result<u64, CtlError> {
        self.send(&ClientFrame::Command { act_as, command: CtlCommand::Links { all, state } })?;
        loop {
            match self.receive()? {
                DaemonFrame::Links { links } => on_page(links),
                DaemonFrame::Reply { reply } => match *reply {
                    DaemonReply::LinksEnd(end) => return Ok(end.count),
                    _ => return Err(CtlError::Protocol("mslinkd ended a list oddly".into())),
                },
                DaemonFrame::Failure { error } => return Err(CtlError::Daemon(error)),
                DaemonFrame::Welcome { .. } | DaemonFrame::Progress { .. } => {
                    return Err(CtlError::Protocol("mslinkd sent a list out of order".into()));
                }
            }
        }
    }

    /// Sign-ins take as long as the person takes; the daemon bounds them, not the socket.
    pub fn wait_without_timeout(&mut self) {
        let _ = self.stream.set_read_timeout(None);
    }

    fn exchange(&mut self, frame: &ClientFrame) -> Result<DaemonFrame, CtlError> {
        if let Err(lost) = self.send(frame) {
            // A daemon that refuses the connection (too many open, shutting down) says why and
            // closes at once; the write then fails, but its answer is still there to read.
            return match self.receive() {
                Ok(answer @ DaemonFrame::Failure { .. }) => Ok(answer),
                _ => Err(lost),
            };
        }
        self.receive()
    }

    fn send(&mut self, frame: &ClientFrame) -> Result<(), CtlError> {
        write_frame(&mut self.stream, frame, MAX_CLIENT_FRAME).map_err(lost)
    }

    fn receive(&mut self) -> Result<DaemonFrame, CtlError> {
        let body = read_frame(&mut self.stream, MAX_DAEMON_FRAME).map_err(lost)?;
        decode(&body).map_err(lost)
    }
}

/// Whether `uid`, serving `socket`, may be mslinkd: root; the caller (a per-user daemon learns
/// nothing its own user could not read anyway); or the owner of the socket's directory, when
/// that directory sits in one only root may change (systemd's `RuntimeDirectory=` gives the
/// service user `/run/mslink`, in root's `/run`). The owner of a directory made in a place
/// anyone may write to, like `/tmp`, is vouched for by no one: anyone could have made it.
fn trusted_peer(uid: u32, socket: &Path, me: u32) -> bool {
    if uid == 0 || uid == me {
        return true;
    }
    let dir = match socket.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Ok(dir) = dir.canonicalize() else { return false };
    let owned_by_peer = std::fs::metadata(&dir).is_ok_and(|meta| meta.uid() == uid);
    let given_by_root = dir
        .parent()
        .and_then(|parent| std::fs::metadata(parent).ok())
        .is_some_and(|meta| meta.uid() == 0 && meta.mode() & 0o022 == 0);
    owned_by_peer && given_by_root
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| format!("#{uid}"), |user| user.name)
}

fn lost(e: FrameError) -> CtlError {
    match e {
        FrameError::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            CtlError::TimedOut
        }
        FrameError::Malformed(e) => {
            CtlError::Protocol(format!("mslinkd sent a reply this mslinkctl cannot read: {e}"))
        }
        e => CtlError::Protocol(format!("the connection to mslinkd failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const STRANGER: u32 = 4242;

    #[test]
    fn root_and_the_caller_are_trusted_anywhere() {
        let socket = Path::new("/nonexistent/mslinkd.sock");
        assert!(trusted_peer(0, socket, 1000));
        assert!(trusted_peer(1000, socket, 1000));
        assert!(!trusted_peer(STRANGER, socket, 1000));
    }

    #[test]
    fn the_owner_of_the_socket_directory_is_trusted_only_if_root_gave_it() {
        // It chowns directories to another user.
        if !mslink_e2e::require_root(
            "the_owner_of_the_socket_directory_is_trusted_only_if_root_gave_it",
        ) {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        // Like /run/mslink: made by root, in a directory only root may change, for the service.
        let run = root.path().join("run");
        std::fs::create_dir(&run).unwrap();
        std::os::unix::fs::chown(&run, Some(STRANGER), None).unwrap();
        assert!(trusted_peer(STRANGER, &run.join("mslinkd.sock"), 1000));
        // A root-owned directory anyone may write to (like /tmp): its owner is root, not them.
        let tmp = root.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(!trusted_peer(STRANGER, &tmp.join("mslinkd.sock"), 1000));
        // Their own directory in that place: anyone could have made it.
        let theirs = tmp.join("mslink");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(STRANGER), None).unwrap();
        assert!(!trusted_peer(STRANGER, &theirs.join("mslinkd.sock"), 1000));
    }
}
