//! Property tests ("fuzzing on stable") of every parser that reads input mslinkd does not
//! control: the EWS SOAP and Autodiscover parsers, Microsoft's OAuth error bodies and the config
//! file, under `cargo test` with a bounded number of cases; the coverage-guided counterparts are
//! the targets in `fuzz/` (`fuzz/run.sh`). Mutations start from Microsoft's
//! own samples in `shared/vectors/` (read in place, never copied into the repo). Any failure
//! found is kept as a seed in `proptest-regressions/` beside this file, and fixed.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use mslinkd::config::{Config, Env};
use mslinkd::exchange::{autodiscover, ews};
use mslinkd::office365::{OAuthErrorBody, Office365Error};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// Every sample document in `shared/vectors/{dirs}`.
fn samples(dirs: &[&str]) -> Vec<Vec<u8>> {
    let base = std::env::var("MSLINK_VECTORS").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors").to_owned()
    });
    let mut out = Vec::new();
    for dir in dirs {
        let mut paths: Vec<_> = std::fs::read_dir(format!("{base}/{dir}"))
            .unwrap_or_else(|e| panic!("reading {base}/{dir}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        out.extend(paths.iter().map(|p| std::fs::read(p).unwrap()));
    }
    assert!(!out.is_empty());
    out
}

/// One edit of a document: flip a byte, cut it short, insert bytes, or duplicate a slice.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Repeat(usize, usize, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    let markup = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..16),
        Just(b"<a>".to_vec()),
        Just(b"</".to_vec()),
        Just(b"&amp;".to_vec()),
        Just(b"&bogus;".to_vec()),
        Just(b"<!DOCTYPE x [<!ENTITY e \"x\">]>".to_vec()),
        Just(b"<![CDATA[".to_vec()),
        Just(b" xmlns:t=\"\"".to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Flip(at, b)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), markup).prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), 1usize..64, 1u8..20).prop_map(|(at, len, n)| Edit::Repeat(at, len, n)),
    ]
}

fn apply(mut doc: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = doc.len().max(1);
        match e {
            Edit::Flip(at, b) if !doc.is_empty() => doc[at % len] ^= b | 1,
            Edit::Flip(..) => {}
            Edit::Truncate(at) => doc.truncate(at % (doc.len() + 1)),
            Edit::Insert(at, bytes) => {
                let at = at % (doc.len() + 1);
                doc.splice(at..at, bytes.iter().copied());
            }
            Edit::Repeat(at, n, times) => {
                let start = at % (doc.len() + 1);
                let end = (start + n).min(doc.len());
                let slice = doc[start..end].to_vec();
                for _ in 0..*times {
                    doc.splice(end..end, slice.iter().copied());
                }
            }
        }
    }
    doc
}

/// Runs every XML entry point on `doc`; none may panic, and each finishes promptly.
fn parse_all(doc: &[u8]) {
    let started = Instant::now();
    let _ = ews::parse_get_folder_response(doc);
    let _ = ews::parse_response_status(doc);
    let _ = autodiscover::parse_response(doc);
    let _ = autodiscover::parse_user_settings_response(doc);
    assert!(started.elapsed() < Duration::from_secs(2), "parsing took {:?}", started.elapsed());
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn xml_parsers_survive_mutated_microsoft_samples(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let docs = samples(&["ews", "ews_autodiscover"]);
        parse_all(&apply(pick.get(&docs).clone(), &edits));
    }

    #[test]
    fn xml_parsers_survive_arbitrary_bytes(doc in proptest::collection::vec(any::<u8>(), 0..4096)) {
        parse_all(&doc);
    }

    #[test]
    fn xml_parsers_survive_arbitrary_text(doc in "\\PC{0,2000}") {
        parse_all(doc.as_bytes());
    }
}

#[test]
fn deep_nesting_and_huge_documents_are_refused_quickly() {
    for doc in [
        "<a>".repeat(100_000).into_bytes(),
        format!("<r>{}</r>", "<a/>".repeat(200_000)).into_bytes(),
        vec![b' '; 3 * 1024 * 1024],
    ] {
        parse_all(&doc);
        assert!(autodiscover::parse_response(&doc).is_err());
    }
}

/// Arbitrary OAuth error bodies, as JSON with the fields Microsoft sends and random values.
fn oauth_body() -> impl Strategy<Value = String> {
    let text = "\\PC{0,300}";
    (
        text,
        proptest::option::of(text),
        proptest::collection::vec(any::<u64>(), 0..3),
        proptest::option::of(text),
        proptest::option::of("\\PC{0,50}"),
    )
        .prop_map(|(error, description, codes, suberror, uri)| {
            serde_json::json!({
                "error": error, "error_description": description, "error_codes": codes,
                "suberror": suberror, "error_uri": uri, "trace_id": "x",
            })
            .to_string()
        })
}

fn check_oauth(body: &OAuthErrorBody, status: u16) -> Result<(), TestCaseError> {
    let error = Office365Error::OAuth {
        endpoint: "the token endpoint",
        status,
        body: Box::new(body.clone()),
        retry_after: None,
        admin_consent: Some(
            "https://login.microsoftonline.com/organizations/v2.0/adminconsent?client_id=\
             00001111-aaaa-2222-bbbb-3333cccc4444&scope=offline_access+User.Read+Mail.Read"
                .into(),
        ),
    };
    let failure = error.failure();
    let _ = error.wire_error();
    let _ = body.aadsts();
    let reason = failure.describe();
    // A reason is stored with the link and shown by `status`: bounded whatever the server sent.
    prop_assert!(reason.chars().count() <= 1200, "reason of {} chars", reason.chars().count());
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn oauth_error_bodies_classify_without_panicking(json in oauth_body(), status in 100u16..600) {
        let body: OAuthErrorBody = serde_json::from_str(&json).unwrap();
        check_oauth(&body, status)?;
    }

    #[test]
    fn oauth_error_bodies_from_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512), status in 100u16..600) {
        if let Ok(body) = serde_json::from_slice::<OAuthErrorBody>(&bytes) {
            check_oauth(&body, status)?;
        }
    }

    #[test]
    fn long_oauth_fields_are_bounded(error in "[a-z_]{1,5000}", sub in "\\PC{0,5000}", desc in "\\PC{0,5000}") {
        let body = OAuthErrorBody {
            error,
            error_description: Some(desc),
            suberror: Some(sub),
            ..OAuthErrorBody::default()
        };
        check_oauth(&body, 400)?;
    }
}

/// Config text: arbitrary lines drawn from real keys, values and junk.
fn config_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("[schedule]".to_owned()),
        Just("[office365]".to_owned()),
        Just("[exchange]".to_owned()),
        Just("[network]".to_owned()),
        Just("[metrics]".to_owned()),
        Just("[hooks]".to_owned()),
        "(check_interval|retry_min|retry_max|refresh_before_expiry|timeout) = \"[0-9]{0,12}(s|m|h|ms|x|)\"",
        "max_concurrent = -?[0-9]{0,22}",
        "(token_url|graph_url|authority|user_realm_url) = \"[a-z]{0,6}://[a-z0-9.:\\[\\]]{0,20}/?[a-z]{0,5}\"",
        "(socket|state_dir|key_file|ca_file) = \"/?[a-z/.]{0,20}\"",
        "(admin_group|socket_group) = \"[a-z-]{0,10}\"",
        "auth = \\[(\"(ntlm|basic|x)\",? ?){0,3}\\]",
        "listen = \"[0-9.:\\[\\]]{0,24}\"",
        "resolve = \\{ \"[a-z.]{0,10}\" = \"[0-9.]{0,15}\" \\}",
        "\\PC{0,40}",
    ];
    proptest::collection::vec(line, 0..12).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(config(1000))]

    /// The config parser never panics, and a refused file names a line or a key.
    #[test]
    fn config_parser_never_panics_and_errors_point_somewhere(text in config_text()) {
        let env = Env { is_root: true, ..Env::default() };
        if let Err(e) = Config::parse(&text, None, &env) {
            let message = e.to_string();
            prop_assert!(
                message.contains("line ") || message.contains('`'),
                "no line or key in: {message}\n--- config:\n{text}"
            );
        }
    }
}
