//! Continuous access evaluation (CAE): the client capability mslink declares, and the claims
//! challenges Graph sends when it revokes a token early.
//!
//! ```text
//!   every sign-in and token request:  claims={"access_token":{"xms_cc":{"values":["cp1"]}}}
//!   Graph 401  WWW-Authenticate: Bearer …, error="insufficient_claims", claims="<base64 JSON>"
//!     └─▶ refresh with claims = cp1 merged with the challenge's JSON, retry the check once
//! ```
//!
//! Declaring `cp1` tells Entra mslink can handle claims challenges, so it issues long-lived
//! (CAE) tokens and revokes them by event instead of by expiry
//! (learn.microsoft.com/entra/identity-platform/app-resilience-continuous-access-evaluation).

use base64::Engine as _;
use serde_json::{Map, Value};

/// The client capability mslink declares: it answers claims challenges.
fn capability() -> Value {
    serde_json::json!({ "access_token": { "xms_cc": { "values": ["cp1"] } } })
}

/// The `claims` parameter for a token or authorization request: the capability, with the
/// challenge's claims (JSON) merged in when there is one.
pub fn parameter(challenge: Option<&str>) -> String {
    let mut claims = capability();
    if let Some(Value::Object(extra)) = challenge.and_then(|c| serde_json::from_str(c).ok()) {
        merge(&mut claims, extra);
    }
    claims.to_string()
}

/// Merges `extra` into `into`, object by object; `extra` wins where both have a plain value.
fn merge(into: &mut Value, extra: Map<String, Value>) {
    let Value::Object(into) = into else { return };
    for (key, value) in extra {
        match (into.get_mut(&key), value) {
            (Some(existing @ Value::Object(_)), Value::Object(more)) => merge(existing, more),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// The claims (JSON) of an `insufficient_claims` challenge among `WWW-Authenticate` values, if
/// there is one whose `claims` decodes to a JSON object.
pub fn challenge<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    crate::net::challenges(values.into_iter()).into_iter().find_map(|challenge| {
        if !challenge.scheme.eq_ignore_ascii_case("bearer")
            || challenge.param("error")? != "insufficient_claims"
        {
            return None;
        }
        let encoded = challenge.param("claims")?;
        let decoded = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ]
        .iter()
        .find_map(|engine| engine.decode(encoded.trim()).ok())?;
        let json: Value = serde_json::from_slice(&decoded).ok()?;
        json.is_object().then(|| json.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The challenge of Microsoft's CAE documentation, as Graph sends it.
    const CHALLENGE: &str = "Bearer realm=\"\", \
        authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", \
        client_id=\"00000003-0000-0000-c000-000000000000\", error=\"insufficient_claims\", \
        claims=\"eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwgInZhbHVlIjoiMTYwNDEwNjY1MSJ9fX0=\"";

    #[test]
    fn a_claims_challenge_is_read_from_www_authenticate() {
        let claims = challenge([CHALLENGE]).unwrap();
        let json: Value = serde_json::from_str(&claims).unwrap();
        assert_eq!(json["access_token"]["nbf"]["value"], "1604106651");
        assert_eq!(json["access_token"]["nbf"]["essential"], true);
        // Among other challenges, and without padding.
        let unpadded = CHALLENGE.replace("fX0=", "fX0");
        assert!(challenge(["Basic realm=\"x\"", unpadded.as_str()]).is_some());
    }

    #[test]
    fn the_challenge_of_a_recorded_graph_answer_is_read() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/vectors/graph/azure_sdk_js_recording_graph_401_cae_insufficient_claims.txt"
        );
        let recording = std::fs::read_to_string(path).unwrap();
        let header = recording
            .lines()
            .find_map(|line| line.strip_prefix("WWW-Authenticate:"))
            .expect("the recording has the challenge");
        let claims: Value = serde_json::from_str(&challenge([header]).unwrap()).unwrap();
        assert_eq!(claims["access_token"]["nbf"]["value"], "1635527790");
    }

    #[test]
    fn other_401s_are_not_claims_challenges() {
        for value in [
            "Bearer realm=\"\", error=\"invalid_token\"",
            "Bearer realm=\"\", error=\"insufficient_claims\"",
            "Bearer error=\"insufficient_claims\", claims=\"bm90IGpzb24=\"",
            "Basic realm=\"insufficient_claims\"",
            "",
        ] {
            assert_eq!(challenge([value]), None, "{value}");
        }
    }

    #[test]
    fn the_capability_is_always_declared_and_a_challenge_is_merged_into_it() {
        let plain: Value = serde_json::from_str(&parameter(None)).unwrap();
        assert_eq!(plain, capability());
        let merged: Value =
            serde_json::from_str(&parameter(Some(&challenge([CHALLENGE]).unwrap()))).unwrap();
        assert_eq!(merged["access_token"]["xms_cc"]["values"][0], "cp1");
        assert_eq!(merged["access_token"]["nbf"]["value"], "1604106651");
    }
}
