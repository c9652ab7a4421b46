//! Microsoft's error bodies: OAuth 2.0 errors from the token and device-code endpoints, and
//! Graph's `{"error": {"code", "message"}}`. The first two input bytes are the HTTP status, the
//! rest is the body.
//!
//! Asserted, beyond "no panic":
//! - an OAuth error body that parses serialises back to the same body;
//! - the reason stored with a link and shown by `status`, the message `connect` prints and the
//!   body's own `Display` stay bounded, whatever the server sent;
//! - SPEC §4: HTTP 429 and 5xx, and `error` values not in the classification table, are
//!   transient (`degraded`), never `needs_reauth`;
//! - Graph's error fields are clipped to 100 and 300 characters.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mslink_proto::LinkState;
use mslinkd::office365::{OAuthErrorBody, Office365Error, graph_error_fields};

/// The `error` values the classification table gives a state other than `degraded`
/// (office365/error.rs's module doc).
const CLASSIFIED: &[&str] = &[
    "invalid_grant",
    "interaction_required",
    "login_required",
    "consent_required",
    "access_denied",
    "expired_token",
    "invalid_client",
    "unauthorized_client",
    "invalid_scope",
    "invalid_request",
    "unsupported_grant_type",
    "unsupported_response_type",
];

fn check_oauth(body: OAuthErrorBody, status: u16) {
    let json = serde_json::to_vec(&body).expect("an error body serialises");
    let back: OAuthErrorBody = serde_json::from_slice(&json).expect("and parses back");
    assert_eq!(back, body, "serialise ∘ parse changed the body");

    let shown = body.to_string().chars().count();
    assert!(shown <= 500, "the body displays as {shown} chars");
    let unclassified = !CLASSIFIED.contains(&body.error.as_str());
    let error = Office365Error::OAuth {
        endpoint: "the token endpoint",
        status,
        body: Box::new(body),
        retry_after: None,
        admin_consent: Some(
            "https://login.microsoftonline.com/organizations/v2.0/adminconsent?client_id=x".into(),
        ),
    };
    let failure = error.failure();
    let reason = failure.describe().chars().count();
    assert!(reason <= 1200, "a stored reason of {reason} chars");
    let wire = error.wire_error();
    assert!(wire.message.chars().count() <= 1200, "a wire message of {} chars", wire.message.len());
    if status == 429 || status >= 500 || unclassified {
        assert_eq!(failure.state, LinkState::Degraded, "HTTP {status}: {}", failure.reason);
        assert!(error.is_transient());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((status, body)) = data.split_first_chunk::<2>() else { return };
    let status = 100 + u16::from_be_bytes(*status) % 500;
    if let Ok(parsed) = serde_json::from_slice::<OAuthErrorBody>(body) {
        check_oauth(parsed, status);
    }
    let (code, message) = graph_error_fields(body, status);
    assert!(code.chars().count() <= 101, "a Graph code of {} chars", code.chars().count());
    assert!(message.chars().count() <= 301, "a Graph message of {} chars", message.chars().count());
});
