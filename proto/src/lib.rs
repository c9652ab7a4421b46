//! The wire contract between `mslinkctl` and `mslinkd`, and nothing else.
//!
//! A connection is a sequence of frames. Each frame is a 4-byte big-endian length followed by that
//! many bytes of JSON. The client speaks first:
//!
//! ```text
//! client                                   daemon
//!   ClientFrame::Hello { protocol_version } ->
//!                                          <- DaemonFrame::Welcome   (or Failure + close on mismatch)
//!   ClientFrame::Command { .. }            ->
//!                                          <- DaemonFrame::Reply | DaemonFrame::Failure
//!   ... more commands on the same connection ...
//! ```
//!
//! Errors travel as a typed [`WireError`] so the client maps [`ErrorKind`] to an exit code without
//! reading prose. This crate does no I/O beyond `std::io::{Read, Write}` helpers, so the daemon's
//! async reader and the ctl's blocking one share one definition of a frame.

mod frame;
mod messages;

#[cfg(feature = "tokio")]
mod frame_async;
pub use frame::{
    FrameError, HEADER_LEN, MAX_CLIENT_FRAME, MAX_DAEMON_FRAME, decode, encode, frame_len,
    read_frame, write_frame,
};
#[cfg(feature = "tokio")]
pub use frame_async::FrameReader;
pub use messages::*;

/// Bumped on any incompatible change to the messages. The daemon refuses a client that speaks
/// another version with [`ErrorKind::ProtocolMismatch`], naming both versions.
pub const PROTOCOL_VERSION: u32 = 1;

/// The version of the `--json` documents the ctl prints (`"format_version": 1`).
pub const JSON_FORMAT_VERSION: u32 = 1;
