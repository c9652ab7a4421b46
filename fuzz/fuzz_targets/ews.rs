//! The EWS SOAP parsers, fed any response body an Exchange server (or anything pretending to
//! be one) could send.
//!
//! Asserted, beyond "no panic":
//! - a body over `MAX_RESPONSE_BYTES` is refused unparsed;
//! - the two entry points agree: a `GetFolder` answer parses the same through the generic
//!   `parse_response_status` (same server version, same per-message outcomes), a SOAP fault is
//!   the same fault through both, and the generic parser failing means `GetFolder` fails too;
//! - nothing parsed is longer than the body it came from, a shown invalid value is shortened,
//!   there are never more messages than the element cap, and a server version maps only to a
//!   documented `RequestServerVersion`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mslinkd::exchange::ews::{
    self, EwsXmlError, GetFolderResponse, MAX_ELEMENTS, MAX_RESPONSE_BYTES,
    REQUEST_SERVER_VERSIONS, ResponseError, ServerVersionInfo,
};
use mslinkd::exchange::xml::XmlError;

fn check_error(error: &EwsXmlError, len: usize) {
    match error {
        EwsXmlError::Xml(XmlError::InvalidValue { value, .. }) => {
            assert!(value.chars().count() <= 81, "an invalid value shown at full length");
        }
        EwsXmlError::Fault(fault) => {
            for text in [&fault.fault_string, &fault.fault_code, &fault.response_code] {
                assert!(text.len() <= len);
            }
            if let Some(version) = &fault.server_version {
                check_version(version, len);
            }
        }
        _ => {}
    }
}

fn check_version(version: &ServerVersionInfo, len: usize) {
    if let Some(v) = version.request_server_version() {
        assert!(REQUEST_SERVER_VERSIONS.contains(&v), "undocumented RequestServerVersion {v}");
    }
    assert!(version.version.as_ref().is_none_or(|v| v.len() <= len));
}

fn check_response_error(error: &ResponseError, len: usize) {
    assert!(error.response_code.len() <= len && error.message_text.len() <= len);
    assert!(error.message_xml.len() <= MAX_ELEMENTS);
    let _ = error.error_class();
}

fn check_get_folder(response: &GetFolderResponse, len: usize) {
    assert!(response.messages.len() <= MAX_ELEMENTS);
    if let Some(version) = &response.server_version {
        check_version(version, len);
    }
    for message in &response.messages {
        match message {
            Ok(folder) => {
                assert!(folder.folder_id.id.len() <= len);
                assert!(folder.display_name.as_ref().is_none_or(|n| n.len() <= len));
            }
            Err(error) => check_response_error(error, len),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let len = data.len();
    let folders = ews::parse_get_folder_response(data);
    let status = ews::parse_response_status(data);
    if len > MAX_RESPONSE_BYTES {
        assert!(matches!(folders, Err(EwsXmlError::Xml(XmlError::TooLarge { .. }))));
    }
    match (&folders, &status) {
        (Ok(folders), Ok(status)) => {
            check_get_folder(folders, len);
            assert_eq!(status.operation, "GetFolderResponse");
            assert_eq!(status.server_version, folders.server_version);
            let outcomes: Vec<Result<(), ResponseError>> = folders
                .messages
                .iter()
                .map(|m| m.as_ref().map(|_| ()).map_err(Clone::clone))
                .collect();
            assert_eq!(status.messages, outcomes, "the two parsers disagree on the outcomes");
        }
        (Ok(_), Err(e)) => panic!("GetFolder parsed but the generic parser failed: {e:?}"),
        (Err(EwsXmlError::Fault(a)), Err(EwsXmlError::Fault(b))) => {
            assert_eq!(a, b);
            check_error(&folders.as_ref().unwrap_err(), len);
        }
        (Err(EwsXmlError::Fault(_)), _) | (_, Err(EwsXmlError::Fault(_))) => {
            panic!("a SOAP fault through one parser only: {folders:?} / {status:?}")
        }
        (Err(e), Ok(status)) => {
            check_error(e, len);
            if status.operation == "GetFolderResponse" {
                // Same envelope and outcomes: only a folder's own shape can have failed.
                assert!(
                    matches!(
                        e,
                        EwsXmlError::Xml(XmlError::Missing(_) | XmlError::InvalidValue { .. })
                    ),
                    "GetFolder failed with {e:?} where the generic parser succeeded"
                );
            }
            for m in status.messages.iter().filter_map(|m| m.as_ref().err()) {
                check_response_error(m, len);
            }
        }
        (Err(a), Err(b)) => {
            check_error(a, len);
            check_error(b, len);
        }
    }
});
