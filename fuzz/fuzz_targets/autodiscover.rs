//! The Autodiscover parsers (POX `autodiscover.xml` and SOAP `GetUserSettings`), fed any body a
//! server found during discovery could send, before we know it is really Exchange.
//!
//! Asserted, beyond "no panic":
//! - a body over `MAX_RESPONSE_BYTES` is refused unparsed by both;
//! - a document is never both a POX answer and a SOAP one (their roots differ);
//! - settings keep their documented rules: POX settings have at least one protocol block and
//!   their EWS URL is the first `EXCH` block's, else the first `EXPR` block's; a decoded server
//!   build fits its bit fields; `GetUserSettings`' EWS URL is `InternalEwsUrl`, else
//!   `ExternalEwsUrl`;
//! - no parsed text is longer than the body, and there are never more settings or protocol
//!   blocks than the element cap allows.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mslinkd::exchange::autodiscover::{
    self, AutodiscoverResponse, MAX_ELEMENTS, MAX_RESPONSE_BYTES, ProtocolKind,
    UserSettingsResponse,
};
use mslinkd::exchange::xml::XmlError;

fn short(text: &str, len: usize) {
    assert!(text.len() <= len, "a parsed text of {} bytes from a {len}-byte body", text.len());
}

fn short_opt(text: &Option<String>, len: usize) {
    if let Some(text) = text {
        short(text, len);
    }
}

fn check_pox(response: &AutodiscoverResponse, len: usize) {
    match response {
        AutodiscoverResponse::Settings(settings) => {
            assert!(!settings.protocols.is_empty(), "settings without a protocol block");
            assert!(settings.protocols.len() <= MAX_ELEMENTS);
            let first = |kind: ProtocolKind| {
                settings.protocols.iter().filter(|p| p.kind == kind).find_map(|p| p.ews_url.clone())
            };
            let expected = first(ProtocolKind::Exch).or_else(|| first(ProtocolKind::Expr));
            assert_eq!(settings.ews_url, expected, "EwsUrl not taken from EXCH, then EXPR");
            short_opt(&settings.display_name, len);
            short_opt(&settings.autodiscover_smtp_address, len);
            for protocol in &settings.protocols {
                for text in [&protocol.server, &protocol.ews_url, &protocol.as_url] {
                    short_opt(text, len);
                }
                if let Some(build) = protocol.server_build() {
                    assert!(build.major < 64 && build.minor < 64 && build.build < 0x8000);
                }
            }
        }
        AutodiscoverResponse::RedirectAddr(text) | AutodiscoverResponse::RedirectUrl(text) => {
            short(text, len);
        }
        AutodiscoverResponse::Error { code, message } => {
            short(code, len);
            short(message, len);
        }
    }
}

fn check_user_settings(response: &UserSettingsResponse, len: usize) {
    match response {
        UserSettingsResponse::Settings(settings) => {
            // Each setting takes three elements: UserSetting, Name, Value.
            assert!(settings.settings.len() * 3 <= MAX_ELEMENTS);
            let expected =
                settings.get("InternalEwsUrl").or_else(|| settings.get("ExternalEwsUrl"));
            assert_eq!(settings.ews_url.as_deref(), expected);
            for (name, value) in &settings.settings {
                short(name, len);
                short(value, len);
            }
        }
        UserSettingsResponse::RedirectAddr(text) | UserSettingsResponse::RedirectUrl(text) => {
            short(text, len);
        }
        UserSettingsResponse::Error { code, message } => {
            short(code, len);
            short(message, len);
        }
    }
}

fn check_error(error: &XmlError, len: usize) {
    match error {
        XmlError::InvalidValue { value, .. } => {
            assert!(value.chars().count() <= 81, "an invalid value shown at full length");
        }
        XmlError::TooLarge { size, limit } => assert!(size > limit && *size == len),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let len = data.len();
    let pox = autodiscover::parse_response(data);
    let soap = autodiscover::parse_user_settings_response(data);
    if len > MAX_RESPONSE_BYTES {
        assert!(matches!(pox, Err(XmlError::TooLarge { .. })));
        assert!(matches!(soap, Err(XmlError::TooLarge { .. })));
    }
    assert!(pox.is_err() || soap.is_err(), "one document read as POX and as SOAP");
    match &pox {
        Ok(response) => check_pox(response, len),
        Err(e) => check_error(e, len),
    }
    match &soap {
        Ok(response) => check_user_settings(response, len),
        Err(e) => check_error(e, len),
    }
});
