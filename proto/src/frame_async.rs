//! The async side of framing (the `tokio` feature): one cancel-safe frame reader for everyone
//! who reads frames from a tokio stream, the daemon's connections and the benchmark's client
//! alike. The blocking side (`read_frame`) is what `mslinkctl` uses; a property test keeps the
//! two in agreement.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::{FrameError, HEADER_LEN, frame_len};

/// Reads frames from a stream, keeping partial input between calls, so a pending `next` can be
/// dropped by `select!` without losing bytes (it is cancel-safe). The size cap is checked as soon
/// as the header is in, before the body is buffered.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// The next frame's body, at most `cap` bytes.
    pub async fn next(
        &mut self,
        reader: &mut (impl AsyncRead + Unpin),
        cap: usize,
    ) -> Result<Vec<u8>, FrameError> {
        loop {
            if let Some(header) = self.buf.first_chunk::<HEADER_LEN>() {
                let len = frame_len(*header, cap)?;
                if self.buf.len() >= HEADER_LEN + len {
                    let body = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
                    self.buf.drain(..HEADER_LEN + len);
                    return Ok(body);
                }
            }
            // `read` is cancel-safe: if this future is dropped, no bytes were consumed.
            let mut chunk = [0u8; 8192];
            match reader.read(&mut chunk).await.map_err(FrameError::Io)? {
                0 if self.buf.is_empty() => return Err(FrameError::Closed),
                0 => return Err(FrameError::Truncated),
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::{ClientFrame, MAX_CLIENT_FRAME, decode, encode};

    #[tokio::test]
    async fn the_frame_reader_reassembles_frames_split_anywhere() {
        let hello = ClientFrame::Hello { protocol_version: 1, client: "t".into() };
        let mut bytes = encode(&hello, MAX_CLIENT_FRAME).unwrap();
        bytes.extend(encode(&hello, MAX_CLIENT_FRAME).unwrap());
        let (mut client, mut server) = tokio::io::duplex(3);
        tokio::spawn(async move { client.write_all(&bytes).await });
        let mut frames = FrameReader::default();
        for _ in 0..2 {
            let body = frames.next(&mut server, MAX_CLIENT_FRAME).await.unwrap();
            assert_eq!(decode::<ClientFrame>(&body).unwrap(), hello);
        }
        assert!(matches!(
            frames.next(&mut server, MAX_CLIENT_FRAME).await,
            Err(FrameError::Closed)
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// The daemon's async reader agrees with the ctl's blocking one on any byte stream,
        /// however the stream is split, and never buffers more than one frame and one read.
        #[test]
        fn the_frame_reader_agrees_with_read_frame_on_any_input(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500),
            split in 1usize..64,
            cap in 1usize..512,
        ) {
            let mut expected = Vec::new();
            let mut input = bytes.as_slice();
            loop {
                match crate::read_frame(&mut input, cap) {
                    Ok(body) => expected.push(Ok(body)),
                    Err(e) => { expected.push(Err(e.to_string())); break; }
                }
            }
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = runtime.block_on(async move {
                let (mut client, mut server) = tokio::io::duplex(split);
                tokio::spawn(async move {
                    let _ = client.write_all(&bytes).await;
                });
                let mut frames = FrameReader::default();
                let mut got = Vec::new();
                loop {
                    let next = frames.next(&mut server, cap).await;
                    assert!(frames.buf.len() <= HEADER_LEN + cap + 8192);
                    match next {
                        Ok(body) => got.push(Ok(body)),
                        Err(e) => { got.push(Err(e.to_string())); break; }
                    }
                }
                got
            });
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
