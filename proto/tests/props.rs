//! Property tests of the frame decoder, in `cargo test` with a bounded case count; the
//! coverage-guided counterpart is `fuzz/fuzz_targets/frame.rs` (`fuzz/run.sh`).
//! Any failure found is kept as a seed in `proptest-regressions/` beside this file.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use mslink_proto::{
    ClientFrame, ConnectArgs, ConnectEvent, CtlCommand, DaemonFrame, FrameError, HEADER_LEN,
    MAX_CLIENT_FRAME, MAX_DAEMON_FRAME, Provider, SignInFlow, decode, encode, frame_len,
    read_frame,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 512, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes never panic the reader, and it never returns a body over the cap.
    #[test]
    fn arbitrary_bytes_are_refused_or_framed_within_the_cap(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        cap in 1usize..1024,
    ) {
        let mut input = bytes.as_slice();
        loop {
            match read_frame(&mut input, cap) {
                Ok(body) => {
                    prop_assert!(!body.is_empty() && body.len() <= cap);
                    let _ = decode::<ClientFrame>(&body);
                    let _ = decode::<DaemonFrame>(&body);
                }
                Err(FrameError::TooLarge { len, cap: c }) => { prop_assert!(len > c); break; }
                Err(_) => break,
            }
        }
    }

    /// Every header maps to exactly one of: empty, too large, or its length.
    #[test]
    fn frame_len_agrees_with_the_header(header in any::<[u8; HEADER_LEN]>(), cap in 0usize..100_000) {
        let len = u32::from_be_bytes(header) as usize;
        match frame_len(header, cap) {
            Ok(n) => prop_assert!(n == len && n > 0 && n <= cap),
            Err(FrameError::Empty) => prop_assert_eq!(len, 0),
            Err(FrameError::TooLarge { .. }) => prop_assert!(len > cap),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    /// What the ctl encodes, the daemon decodes back to the same message, whatever the text.
    #[test]
    fn messages_round_trip(client in "\\PC{0,200}", message in proptest::option::of("\\PC{0,500}")) {
        for frame in [
            ClientFrame::Hello { protocol_version: 1, client: client.clone() },
            ClientFrame::Command { act_as: Some(client.clone()), command: CtlCommand::Request { message: message.clone() } },
        ] {
            let bytes = encode(&frame, MAX_CLIENT_FRAME).unwrap();
            let body = read_frame(&mut bytes.as_slice(), MAX_CLIENT_FRAME).unwrap();
            prop_assert_eq!(decode::<ClientFrame>(&body).unwrap(), frame);
        }
    }

    /// A connect with trusted servers, a confirmation question and its answer round-trip too.
    #[test]
    fn confirmations_round_trip(
        host in "\\PC{0,100}",
        question in "\\PC{0,300}",
        trusted in proptest::collection::vec("\\PC{0,60}", 0..4),
        yes in any::<bool>(),
        interactive in any::<bool>(),
    ) {
        let connect = CtlCommand::Connect(ConnectArgs {
            email: "a@b.c".into(),
            provider: Some(Provider::Exchange),
            flow: SignInFlow::Browser,
            username: None,
            server: None,
            password: None,
            keytab: None,
            trusted_servers: trusted,
            interactive,
        });
        for frame in [ClientFrame::Command { act_as: None, command: connect }, ClientFrame::Answer { yes }] {
            let bytes = encode(&frame, MAX_CLIENT_FRAME).unwrap();
            let body = read_frame(&mut bytes.as_slice(), MAX_CLIENT_FRAME).unwrap();
            prop_assert_eq!(decode::<ClientFrame>(&body).unwrap(), frame);
        }
        let frame = DaemonFrame::Progress { event: ConnectEvent::Confirm { question, host } };
        let bytes = encode(&frame, MAX_DAEMON_FRAME).unwrap();
        let body = read_frame(&mut bytes.as_slice(), MAX_DAEMON_FRAME).unwrap();
        prop_assert_eq!(decode::<DaemonFrame>(&body).unwrap(), frame);
    }

    /// Valid frames with bytes flipped, cut or appended never panic the decoder.
    #[test]
    fn mutated_valid_frames_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
    ) {
        let frame = ClientFrame::Command { act_as: None, command: CtlCommand::Status { all: true } };
        let mut bytes = encode(&frame, MAX_CLIENT_FRAME).unwrap();
        for (at, byte) in flips {
            let at = at % bytes.len();
            bytes[at] ^= byte;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        if let Ok(body) = read_frame(&mut bytes.as_slice(), MAX_CLIENT_FRAME) {
            let _ = decode::<ClientFrame>(&body);
        }
    }
}
