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

/// `status --all` as `mslinkctl` runs it: every link streamed in pages, each page turned into
/// JSON as it arrives (what the ctl prints).
#[derive(Debug, Clone, Copy)]
pub struct Listing {
    pub links: u64,
    /// Until the first page had arrived and was rendered.
    pub first_page: std::time::Duration,
    pub total: std::time::Duration,
    /// The JSON the ctl would print.
    pub json_bytes: usize,
}

/// Streams every link (`links --all`).
pub async fn list_all(socket: &Path) -> Result<Listing, Error> {
    let start = std::time::Instant::now();
    let mut stream = connect(socket).await?;
    let command = CtlCommand::Links { all: true, state: None };
    let frame = ClientFrame::Command { act_as: None, command };
    stream.write_all(&encode(&frame, MAX_CLIENT_FRAME)?).await?;
    let mut reader = FrameReader::default();
    let (mut first_page, mut json_bytes, mut links) = (None, 0, 0u64);
    loop {
        let body = reader.next(&mut stream, MAX_DAEMON_FRAME).await?;
        match decode::<DaemonFrame>(&body)? {
            DaemonFrame::Links { links: page } => {
                for link in &page {
                    json_bytes += serde_json::to_string(link)?.len() + 1;
                }
                links += page.len() as u64;
                first_page.get_or_insert(start.elapsed());
            }
            DaemonFrame::Reply { reply } => match *reply {
                mslink_proto::DaemonReply::LinksEnd(end) if end.count == links => break,
                other => return Err(format!("the list ended with {other:?} after {links}").into()),
            },
            other => return Err(format!("expected a page, got {other:?}").into()),
        }
    }
    let total = start.elapsed();
    Ok(Listing { links, first_page: first_page.unwrap_or(total), total, json_bytes })
}
