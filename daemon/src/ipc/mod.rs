//! The control socket: accept loop, one task per connection, one handler per command.
//!
//! ```text
//!  accept ─▶ [limit: max_connections, else Busy] ─▶ connection task
//!    connection: peer uid (SO_PEERCRED) ─▶ Hello within handshake_timeout ─▶ Welcome
//!                ─▶ loop { frame within idle_timeout ─▶ handlers::handle ─▶ reply within write_timeout }
//! ```
//!
//! Every failure is confined to its connection: a bad or oversized frame gets a typed error and
//! closes that connection; a silent or slow client is dropped at its timeout. Nothing a client
//! sends can stall the accept loop or another connection.

mod errors;
mod handlers;
mod slots;
mod socket;

use std::sync::Arc;
use std::time::Duration;

use mslink_proto::{
    ClientFrame, CtlCommand, DaemonFrame, DaemonReply, ErrorKind, FrameError, FrameReader,
    LINKS_PAGE, LinksEndReply, MAX_CLIENT_FRAME, MAX_DAEMON_FRAME, PROTOCOL_VERSION, WireError,
    decode, encode,
};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use socket::{BindError, bind};

use crate::Daemon;
use crate::identity::Caller;
use crate::interaction::{Interaction, InteractionPeer};

/// Per-connection limits. The defaults suit production; tests shorten them.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long a new connection may take to say hello.
    pub handshake_timeout: Duration,
    /// How long a connection may stay silent between commands.
    pub idle_timeout: Duration,
    /// How long a client may take to read a reply.
    pub write_timeout: Duration,
    /// Connections served at once; more are told the daemon is busy.
    pub max_connections: usize,
    /// Of those, kept for root and admins.
    pub reserved_for_admins: usize,
    /// Connections one uid may hold at once.
    pub max_per_uid: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(10),
            max_connections: 1024,
            reserved_for_admins: 64,
            max_per_uid: 64,
        }
    }
}

/// Accepts connections until `shutdown`, then waits for the open ones to finish.
pub async fn serve(
    daemon: Arc<Daemon>,
    listener: UnixListener,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let slots =
        slots::Slots::new(limits.max_connections, limits.reserved_for_admins, limits.max_per_uid);
    let tasks = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        let limits = limits.clone();
        let Ok(uid) = stream.peer_cred().map(|cred| cred.uid()) else {
            tracing::warn!("cannot read a client's credentials; closing");
            continue;
        };
        let (daemon, shutdown) = (daemon.clone(), shutdown.clone());
        match slots.admit(uid) {
            Ok(slot) => {
                tasks.spawn(async move {
                    Connection::new(stream, uid, daemon, limits, shutdown).run().await;
                    drop(slot);
                });
            }
            Err(slots::Refused::PerUid(held)) => {
                let busy = WireError::new(
                    ErrorKind::Busy,
                    format!("you already have {held} connections open to mslinkd"),
                )
                .with_hint("close some (a stuck script?) and try again");
                tasks.spawn(refuse(stream, busy, limits.write_timeout));
            }
            Err(slots::Refused::Full) => {
                // Admins keep a reserved share; finding out who is admin may ask NSS, so not
                // on the accept loop.
                let slots = slots.clone();
                tasks.spawn(async move {
                    let admin = daemon.caller(uid).await.is_some_and(|c| c.admin);
                    match admin.then(|| slots.admit_admin(uid)) {
                        Some(Ok(slot)) => {
                            Connection::new(stream, uid, daemon, limits, shutdown).run().await;
                            drop(slot);
                        }
                        _ => {
                            let busy = WireError::new(
                                ErrorKind::Busy,
                                "mslinkd is serving too many connections",
                            )
                            .with_hint("try again in a moment");
                            refuse(stream, busy, limits.write_timeout).await;
                        }
                    }
                });
            }
        }
    }
    tasks.close();
    tasks.wait().await;
}

/// Tells a connection why it is refused, then closes it.
async fn refuse(mut stream: UnixStream, error: WireError, write_timeout: Duration) {
    if let Ok(bytes) = encode(&DaemonFrame::Failure { error }, MAX_DAEMON_FRAME) {
        let _ = timeout(write_timeout, stream.write_all(&bytes)).await;
    }
    let _ = stream.shutdown().await;
}

struct Connection {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    frames: FrameReader,
    uid: u32,
    daemon: Arc<Daemon>,
    limits: Limits,
    shutdown: CancellationToken,
}

/// Why a connection stops reading.
enum Stop {
    /// The peer hung up or the daemon is shutting down: nothing more to say.
    Quiet,
    /// Tell the peer why, then close.
    Tell(WireError),
}

impl Connection {
    fn new(
        stream: UnixStream,
        uid: u32,
        daemon: Arc<Daemon>,
        limits: Limits,
        shutdown: CancellationToken,
    ) -> Self {
        let (reader, writer) = stream.into_split();
        Connection { reader, writer, frames: FrameReader::default(), uid, daemon, limits, shutdown }
    }

    async fn run(mut self) {
        let uid = self.uid;
        let daemon = self.daemon.clone();
        if let Err(stop) = self.handshake().await {
            return self.stop(stop).await;
        }
        let Some(caller) = daemon.caller(uid).await else { return };
        tracing::debug!(user = %caller.name, uid, admin = caller.admin, "client connected");
        let stop = self.serve_commands(&daemon, &caller).await;
        self.stop(stop).await;
    }

    async fn handshake(&mut self) -> Result<(), Stop> {
        let body = match timeout(self.limits.handshake_timeout, self.read_frame()).await {
            Ok(body) => body?,
            Err(_) => {
                return Err(Stop::Tell(
                    WireError::new(ErrorKind::Timeout, "no hello within the handshake timeout")
                        .with_hint("clients must send Hello first; use mslinkctl"),
                ));
            }
        };
        match decode::<ClientFrame>(&body) {
            Ok(ClientFrame::Hello { protocol_version, .. }) if protocol_version == PROTOCOL_VERSION => {
                let welcome = DaemonFrame::Welcome {
                    protocol_version: PROTOCOL_VERSION,
                    daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
                };
                self.send(&welcome).await.map_err(|()| Stop::Quiet)
            }
            Ok(ClientFrame::Hello { protocol_version, .. }) => Err(Stop::Tell(
                WireError::new(
                    ErrorKind::ProtocolMismatch,
                    format!(
                        "this client speaks protocol version {protocol_version}, mslinkd {} speaks {PROTOCOL_VERSION}",
                        env!("CARGO_PKG_VERSION")
                    ),
                )
                .with_hint("use the mslinkctl that was installed with this mslinkd"),
            )),
            Ok(
                ClientFrame::Command { .. }
                | ClientFrame::Paste { .. }
                | ClientFrame::Answer { .. }
                | ClientFrame::Password { .. },
            )
            | Err(_) => Err(Stop::Tell(
                WireError::new(ErrorKind::Usage, "the first message must be Hello")
                    .with_hint("this socket speaks the mslink protocol; use mslinkctl"),
            )),
        }
    }

    async fn serve_commands(&mut self, daemon: &Daemon, caller: &Caller) -> Stop {
        let shutdown = self.shutdown.clone();
        loop {
            let body = tokio::select! {
                () = shutdown.cancelled() => return Stop::Quiet,
                read = timeout(self.limits.idle_timeout, self.read_frame()) => match read {
                    Err(_) => return Stop::Quiet,
                    Ok(Err(stop)) => return stop,
                    Ok(Ok(body)) => body,
                },
            };
            let frame = match decode::<ClientFrame>(&body) {
                Ok(ClientFrame::Command { act_as, command: CtlCommand::Links { all, state } }) => {
                    match handlers::LinksQuery::new(daemon, caller, act_as, all, state).await {
                        Ok(query) => match self.stream_links(daemon, &query).await {
                            Ok(frame) => frame,
                            Err(stop) => return stop,
                        },
                        Err(error) => DaemonFrame::Failure { error },
                    }
                }
                Ok(ClientFrame::Command { act_as, command }) => {
                    let (interaction, peer) = Interaction::pair();
                    let work = handlers::handle(daemon, caller, act_as, command, interaction);
                    match self.drive(work, peer).await {
                        Ok(Ok(reply)) => DaemonFrame::Reply { reply: Box::new(reply) },
                        Ok(Err(error)) => DaemonFrame::Failure { error },
                        Err(stop) => return stop,
                    }
                }
                Ok(ClientFrame::Hello { .. }) => {
                    failure(ErrorKind::Usage, "hello was already said on this connection")
                }
                Ok(ClientFrame::Paste { .. }) => {
                    failure(ErrorKind::Usage, "nothing is waiting for a pasted URL")
                }
                Ok(ClientFrame::Answer { .. }) => {
                    failure(ErrorKind::Usage, "nothing is waiting for an answer")
                }
                Ok(ClientFrame::Password { .. }) => {
                    failure(ErrorKind::Usage, "nothing is waiting for a password")
                }
                // The frame boundary is intact, so the connection can go on: a newer client's
                // unknown command gets an answer it can act on.
                Err(e) => DaemonFrame::Failure {
                    error: WireError::new(
                        ErrorKind::Usage,
                        format!("unknown or malformed command: {e}"),
                    )
                    .with_hint("this mslinkd may be older than mslinkctl; upgrade mslinkd"),
                },
            };
            if self.send(&frame).await.is_err() {
                return Stop::Quiet;
            }
        }
    }

    /// Sends `query`'s links page by page (each read and sent before the next is read, so the
    /// daemon holds one page whatever the number of links) and returns the closing frame.
    async fn stream_links(
        &mut self,
        daemon: &Daemon,
        query: &handlers::LinksQuery,
    ) -> Result<DaemonFrame, Stop> {
        let mut after = None;
        let mut count = 0u64;
        loop {
            let page = match query.page(daemon, after.take()).await {
                Ok(page) => page,
                Err(error) => return Ok(DaemonFrame::Failure { error }),
            };
            let Some(last) = page.last() else { break };
            after = Some((last.user.clone(), last.email.clone()));
            count += page.len() as u64;
            let full = page.len() == LINKS_PAGE;
            if self.send(&DaemonFrame::Links { links: page }).await.is_err() {
                return Err(Stop::Quiet);
            }
            if !full {
                break;
            }
            if self.shutdown.is_cancelled() {
                return Ok(failure(ErrorKind::Busy, "mslinkd is stopping: the list is incomplete"));
            }
        }
        Ok(DaemonFrame::Reply { reply: Box::new(DaemonReply::LinksEnd(LinksEndReply { count })) })
    }

    /// Runs one command to completion while relaying its progress to the client, pasted URLs
    /// and answers from the client, and cancellation when the client hangs up or the daemon stops. The
    /// command always runs to its end (cancelled flows end promptly), so nothing is left half
    /// done; `Err` means the client is gone and the result has nobody to go to.
    async fn drive(
        &mut self,
        work: impl Future<Output = Result<DaemonReply, WireError>>,
        mut peer: InteractionPeer,
    ) -> Result<Result<DaemonReply, WireError>, Stop> {
        let mut work = std::pin::pin!(work);
        let mut client_gone = false;
        loop {
            tokio::select! {
                result = &mut work => {
                    // Progress told just before the end still goes out, before the reply.
                    while let Ok(event) = peer.events.try_recv() {
                        if !client_gone && self.send(&DaemonFrame::Progress { event }).await.is_err() {
                            client_gone = true;
                        }
                    }
                    return if client_gone { Err(Stop::Quiet) } else { Ok(result) };
                }
                () = self.shutdown.cancelled(), if !peer.cancel.is_cancelled() => peer.cancel.cancel(),
                Some(event) = peer.events.recv() => {
                    if !client_gone && self.send(&DaemonFrame::Progress { event }).await.is_err() {
                        client_gone = true;
                        peer.cancel.cancel();
                    }
                }
                read = self.frames.next(&mut self.reader, MAX_CLIENT_FRAME), if !client_gone => {
                    match read.map(|body| decode::<ClientFrame>(&body)) {
                        Ok(Ok(ClientFrame::Paste { redirect_url })) => {
                            let _ = peer.pasted.try_send(redirect_url);
                        }
                        Ok(Ok(ClientFrame::Answer { yes })) => {
                            let _ = peer.answers.try_send(yes);
                        }
                        Ok(Ok(ClientFrame::Password { password })) => {
                            let _ = peer.passwords.try_send(password);
                        }
                        Ok(_) => tracing::debug!("ignoring a frame sent while a command runs"),
                        Err(_) => {
                            // Ctrl-C at the ctl, or a broken client: stop the flow.
                            client_gone = true;
                            peer.cancel.cancel();
                        }
                    }
                }
            }
        }
    }

    async fn read_frame(&mut self) -> Result<Vec<u8>, Stop> {
        self.frames.next(&mut self.reader, MAX_CLIENT_FRAME).await.map_err(|e| match e {
            FrameError::TooLarge { .. } | FrameError::Empty => Stop::Tell(
                WireError::new(ErrorKind::Usage, format!("bad frame: {e}"))
                    .with_hint("this socket speaks the mslink protocol; use mslinkctl"),
            ),
            _ => Stop::Quiet,
        })
    }

    async fn send(&mut self, frame: &DaemonFrame) -> Result<(), ()> {
        let bytes = match encode(frame, MAX_DAEMON_FRAME) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a reply");
                let fallback = failure(ErrorKind::Internal, "the reply was too large to send");
                encode(&fallback, MAX_DAEMON_FRAME).map_err(|_| ())?
            }
        };
        match timeout(self.limits.write_timeout, self.writer.write_all(&bytes)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    async fn stop(&mut self, stop: Stop) {
        if let Stop::Tell(error) = stop {
            tracing::debug!(error = %error.message, "closing a connection");
            let _ = self.send(&DaemonFrame::Failure { error }).await;
        }
        let _ = self.writer.shutdown().await;
    }
}

fn failure(kind: ErrorKind, message: &str) -> DaemonFrame {
    DaemonFrame::Failure { error: WireError::new(kind, message) }
}
