//! A minimal control-socket client speaking the wire contract directly, as `mslinkctl` does:
//! connect, `Hello`, one command, the reply. Used to time round trips without process start-up.

use std::path::Path;

use mslink_proto::{
    ClientFrame, CtlCommand, DaemonFrame, FrameReader, MAX_CLIENT_FRAME, MAX_DAEMON_FRAME,
    PROTOCOL_VERSION, decode, encode,
};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

/// Why a round trip failed.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Reads one frame body (with the reader the daemon uses).
pub async fn read_body(stream: &mut UnixStream) -> Result<Vec<u8>, Error> {
    Ok(FrameReader::default().next(stream, MAX_DAEMON_FRAME).await?)
}

/// Connects and says hello.
pub async fn connect(socket: &Path) -> Result<UnixStream, Error> {
    let mut stream = UnixStream::connect(socket).await?;
    let hello = ClientFrame::Hello { protocol_version: PROTOCOL_VERSION, client: "bench".into() };
    stream.write_all(&encode(&hello, MAX_CLIENT_FRAME)?).await?;
    match decode::<DaemonFrame>(&read_body(&mut stream).await?)? {
        DaemonFrame::Welcome { .. } => Ok(stream),
        other => Err(format!("expected Welcome, got {other:?}").into()),
    }
}

/// One command on a new connection, as `mslinkctl` runs it. Returns the reply's raw body.
pub async fn call(socket: &Path, command: CtlCommand) -> Result<Vec<u8>, Error> {
    let mut stream = connect(socket).await?;
    let frame = ClientFrame::Command { act_as: None, command };
    stream.write_all(&encode(&frame, MAX_CLIENT_FRAME)?).await?;
    let body = read_body(&mut stream).await?;
    if body.starts_with(br#"{"frame":"failure""#) {
        return Err(String::from_utf8_lossy(&body).into_owned().into());
    }
    Ok(body)
}

/// `status` (or `status --all`) decoded.
pub async fn status(socket: &Path, all: bool) -> Result<mslink_proto::StatusReply, Error> {
    let body = call(socket, CtlCommand::Status { all }).await?;
    match decode::<DaemonFrame>(&body)? {
        DaemonFrame::Reply { reply } => match *reply {
            mslink_proto::DaemonReply::Status(status) => Ok(status),
            other => Err(format!("expected a status reply, got {other:?}").into()),
        },
        other => Err(format!("expected a status reply, got {other:?}").into()),
    }
}
