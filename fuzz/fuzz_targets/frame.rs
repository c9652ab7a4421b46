//! The frame decoder, fed any byte stream as if from a socket.
//!
//! The first input byte picks the size cap, the rest is the stream. Asserted, beyond "no panic":
//! - the blocking reader (`read_frame`, mslinkctl's) never returns an empty body or one over the
//!   cap, and refuses with `TooLarge` only a header over the cap;
//! - the daemon's async `FrameReader` returns exactly the same frames and the same final error;
//! - any body that decodes as a `ClientFrame` or `DaemonFrame` encodes back into a frame that
//!   decodes to the same message (encode ∘ decode round trip).

#![no_main]

use std::fmt::Debug;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use mslink_proto::{
    ClientFrame, DaemonFrame, FrameError, FrameReader, MAX_CLIENT_FRAME, MAX_DAEMON_FRAME, decode,
    encode, read_frame,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a read gave, comparable across the two readers.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    Frame(Vec<u8>),
    TooLarge(usize),
    Empty,
    Closed,
    Truncated,
    Other(String),
}

impl From<Result<Vec<u8>, FrameError>> for Read {
    fn from(result: Result<Vec<u8>, FrameError>) -> Read {
        match result {
            Ok(body) => Read::Frame(body),
            Err(FrameError::TooLarge { len, .. }) => Read::TooLarge(len),
            Err(FrameError::Empty) => Read::Empty,
            Err(FrameError::Closed) => Read::Closed,
            Err(FrameError::Truncated) => Read::Truncated,
            Err(other) => Read::Other(other.to_string()),
        }
    }
}

/// Polls a future that cannot wait (its input is a byte slice, always ready) to completion.
fn ready<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("FrameReader waited on a byte slice"),
    }
}

/// decode → encode → read → decode gives the message back.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(body: &[u8], cap: usize) {
    let Ok(message) = decode::<T>(body) else { return };
    let bytes = encode(&message, cap).unwrap_or_else(|e| {
        panic!("a decoded {body_len}-byte body does not re-encode: {e}", body_len = body.len())
    });
    let again = read_frame(&mut bytes.as_slice(), cap).expect("an encoded frame reads back");
    let decoded = decode::<T>(&again).expect("an encoded frame decodes");
    assert_eq!(decoded, message, "round trip changed the message");
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, stream)) = data.split_first() else { return };
    let cap = 1 + usize::from(knob) * 64;

    let mut blocking = Vec::new();
    let mut input = stream;
    loop {
        let read = Read::from(read_frame(&mut input, cap));
        match &read {
            Read::Frame(body) => {
                assert!(!body.is_empty() && body.len() <= cap, "body of {}", body.len())
            }
            Read::TooLarge(len) => assert!(*len > cap, "TooLarge({len}) under the cap {cap}"),
            _ => {}
        }
        let last = !matches!(read, Read::Frame(_));
        blocking.push(read);
        if last {
            break;
        }
    }

    let mut reader = FrameReader::default();
    let mut source = stream;
    for expected in &blocking {
        let got = Read::from(ready(reader.next(&mut source, cap)));
        assert_eq!(&got, expected, "the async reader disagrees with read_frame");
    }

    for read in &blocking {
        if let Read::Frame(body) = read {
            // The ctl's frames must survive the daemon's cap, and the daemon's the ctl's.
            round_trip::<ClientFrame>(body, MAX_CLIENT_FRAME);
            round_trip::<DaemonFrame>(body, MAX_DAEMON_FRAME);
        }
    }
});
