//! Length-prefixed JSON frames with a hard size cap.
//!
//! The cap is checked on the 4-byte header, before any body byte is read or buffered, so an
//! oversized or garbage frame costs the reader nothing but those four bytes.

use std::io::{self, Read, Write};

use serde::{Serialize, de::DeserializeOwned};

/// Bytes in a frame header: a big-endian `u32` body length.
pub const HEADER_LEN: usize = 4;

/// Largest frame a client may send. Commands are small; this leaves room for a long message.
pub const MAX_CLIENT_FRAME: usize = 64 * 1024;

/// Largest frame the daemon sends (`status --all` with every link in a large organisation).
pub const MAX_DAEMON_FRAME: usize = 256 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The header announces more bytes than the cap allows; often a sign of a non-mslink peer.
    #[error("frame of {len} bytes exceeds the limit of {cap} bytes")]
    TooLarge { len: usize, cap: usize },
    /// A zero-length frame carries no message.
    #[error("empty frame")]
    Empty,
    /// The peer closed the connection cleanly between frames.
    #[error("connection closed")]
    Closed,
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// The body is not valid JSON for the expected message type.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Any other I/O failure.
    #[error(transparent)]
    Io(io::Error),
}

/// Serialises `msg` into one frame (header and body), refusing bodies over `cap`.
pub fn encode<T: Serialize>(msg: &T, cap: usize) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; HEADER_LEN];
    serde_json::to_writer(&mut buf, msg)?;
    let len = buf.len() - HEADER_LEN;
    if len > cap {
        return Err(FrameError::TooLarge { len, cap });
    }
    let len32 = u32::try_from(len).map_err(|_| FrameError::TooLarge { len, cap })?;
    buf[..HEADER_LEN].copy_from_slice(&len32.to_be_bytes());
    Ok(buf)
}

/// Reads the body length from a header, refusing empty frames and frames over `cap`.
pub fn frame_len(header: [u8; HEADER_LEN], cap: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    match len {
        0 => Err(FrameError::Empty),
        len if len > cap => Err(FrameError::TooLarge { len, cap }),
        len => Ok(len),
    }
}

/// Parses a frame body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(serde_json::from_slice(body)?)
}

/// Reads one whole frame body from a blocking reader.
pub fn read_frame(reader: &mut impl Read, cap: usize) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    read_exact_or(reader, &mut header, FrameError::Closed)?;
    let len = frame_len(header, cap)?;
    let mut body = vec![0u8; len];
    read_exact_or(reader, &mut body, FrameError::Truncated)?;
    Ok(body)
}

/// Writes one message as a frame to a blocking writer.
pub fn write_frame<T: Serialize>(
    writer: &mut impl Write,
    msg: &T,
    cap: usize,
) -> Result<(), FrameError> {
    let frame = encode(msg, cap)?;
    writer.write_all(&frame).map_err(FrameError::Io)?;
    writer.flush().map_err(FrameError::Io)
}

/// `read_exact` that reports a clean end of stream as `at_eof` instead of an I/O error. A stream
/// that ends after some bytes of `buf` is always [`FrameError::Truncated`].
fn read_exact_or(
    reader: &mut impl Read,
    buf: &mut [u8],
    at_eof: FrameError,
) -> Result<(), FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Err(at_eof),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientFrame, PROTOCOL_VERSION};

    fn hello() -> ClientFrame {
        ClientFrame::Hello { protocol_version: PROTOCOL_VERSION, client: "test".into() }
    }

    #[test]
    fn round_trips_a_message() {
        let bytes = encode(&hello(), MAX_CLIENT_FRAME).unwrap();
        let body = read_frame(&mut bytes.as_slice(), MAX_CLIENT_FRAME).unwrap();
        assert_eq!(decode::<ClientFrame>(&body).unwrap(), hello());
    }

    #[test]
    fn refuses_an_oversized_header_before_reading_the_body() {
        // "GET " read as a length: what an HTTP client sends to the socket.
        let err = read_frame(&mut &b"GET / HTTP/1.1\r\n"[..], MAX_CLIENT_FRAME).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: 0x4745_5420, .. }), "{err}");
    }

    #[test]
    fn refuses_to_encode_past_the_cap() {
        let msg = "x".repeat(100);
        assert!(matches!(encode(&msg, 10), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn tells_a_clean_close_from_a_truncated_frame() {
        assert!(matches!(read_frame(&mut &b""[..], 10), Err(FrameError::Closed)));
        assert!(matches!(read_frame(&mut &b"\0\0"[..], 10), Err(FrameError::Truncated)));
        assert!(matches!(read_frame(&mut &b"\0\0\0\x05ab"[..], 10), Err(FrameError::Truncated)));
    }

    #[test]
    fn refuses_an_empty_frame() {
        assert!(matches!(read_frame(&mut &b"\0\0\0\0"[..], 10), Err(FrameError::Empty)));
    }

    #[test]
    fn reports_malformed_json() {
        assert!(matches!(decode::<ClientFrame>(b"{not json"), Err(FrameError::Malformed(_))));
    }
}
