//! EWS SOAP messages for the mailbox link check: the `GetFolder` request for distinguished
//! folders, its response, SOAP faults, and a classification of EWS response codes.
//!
//! This module is pure (no I/O). Responses are parsed with the same bounded, entity-free tree
//! builder as Autodiscover ([`super::xml`]), with this module's own caps: size, depth and element
//! count, DOCTYPE refused, only the predefined XML entities resolved. Elements are matched by
//! local name because Exchange versions differ in prefixes and default namespaces (compare the
//! Exchange 2007 and 2013 samples), while requests are emitted with exact, fixed namespaces.

use std::fmt::Write as _;

use thiserror::Error;

use super::xml::{self, Element, XmlError};
use crate::text::clean;

/// SOAP 1.1 envelope namespace, the only SOAP version EWS speaks.
pub const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// EWS messages namespace (`m:` prefix in Microsoft's samples).
pub const MESSAGES_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
/// EWS types namespace (`t:` prefix in Microsoft's samples).
pub const TYPES_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/types";

/// Largest response body accepted, in bytes. A `GetFolder` answer is about 1–2 KiB per folder.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Deepest element nesting accepted; EWS responses nest about 8 levels.
pub const MAX_DEPTH: usize = 64;
/// Most elements accepted in one response; bounds the parsed tree's memory.
pub const MAX_ELEMENTS: usize = 20_000;

const LIMITS: xml::Limits =
    xml::Limits { max_bytes: MAX_RESPONSE_BYTES, max_depth: MAX_DEPTH, max_elements: MAX_ELEMENTS };

/// Why an EWS response could not be turned into a typed result.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EwsXmlError {
    /// The body is not a usable XML document (limits, well-formedness, DOCTYPE, missing parts).
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// The server answered with a SOAP fault instead of a response (typically with HTTP 500),
    /// e.g. `ErrorServerBusy` with a back-off. Boxed to keep the error small.
    #[error("EWS SOAP fault {}: {}", .0.response_code, .0.fault_string)]
    Fault(Box<SoapFault>),
    /// The SOAP body holds a different operation's response than the one parsed for.
    #[error("expected <{expected}> in the SOAP body, found <{found}>")]
    UnexpectedBody {
        /// Local name expected, e.g. `GetFolderResponse`.
        expected: &'static str,
        /// Local name found.
        found: String,
    },
}

/// A SOAP fault as EWS sends it: whole-request failures such as throttling, schema validation
/// errors or an unknown `RequestServerVersion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapFault {
    /// `faultcode` verbatim, e.g. `a:ErrorServerBusy` or `soap:Client`.
    pub fault_code: String,
    /// `faultstring`: human-readable description.
    pub fault_string: String,
    /// The EWS response code: `detail/ResponseCode` if present, else the local part of
    /// `faultcode` (`ErrorServerBusy` for `a:ErrorServerBusy`). Feed it to [`classify`].
    pub response_code: String,
    /// `detail/Message`, when present.
    pub message: Option<String>,
    /// `BackOffMilliseconds` from `detail/MessageXml`: how long the server asks us to wait.
    pub back_off_ms: Option<u64>,
    /// The envelope's `ServerVersionInfo` header, when the fault carries one: after
    /// `ErrorInvalidServerVersion` it names a schema this server does understand.
    pub server_version: Option<ServerVersionInfo>,
}

/// A well-known folder addressed by name rather than by id, so the first check needs no prior
/// lookup. The list covers what a link check is likely to touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DistinguishedFolder {
    /// `inbox`: its `TotalCount`/`UnreadCount` prove mail access.
    Inbox,
    /// `calendar`: proves calendar access.
    Calendar,
    /// `contacts`.
    Contacts,
    /// `tasks`.
    Tasks,
    /// `sentitems`.
    SentItems,
    /// `deleteditems`.
    DeletedItems,
    /// `drafts`.
    Drafts,
    /// `msgfolderroot`: "Top of Information Store".
    MsgFolderRoot,
}

impl DistinguishedFolder {
    /// The `DistinguishedFolderId/@Id` value, as defined by the EWS schema.
    pub fn id(self) -> &'static str {
        match self {
            Self::Inbox => "inbox",
            Self::Calendar => "calendar",
            Self::Contacts => "contacts",
            Self::Tasks => "tasks",
            Self::SentItems => "sentitems",
            Self::DeletedItems => "deleteditems",
            Self::Drafts => "drafts",
            Self::MsgFolderRoot => "msgfolderroot",
        }
    }
}

/// Builds a `GetFolder` request for `folders` of the authenticated user's own mailbox.
///
/// `server_version` goes into `t:RequestServerVersion` (e.g. `"Exchange2013"`), which fixes the
/// schema the server answers in. `BaseShape` is `Default`, so folders come back with
/// `DisplayName`, `TotalCount`, `UnreadCount` and `ChildFolderCount`. Pass at least one folder:
/// EWS rejects an empty `FolderIds`.
pub fn get_folder_request(folders: &[DistinguishedFolder], server_version: &str) -> String {
    get_folder_request_for_mailbox(folders, server_version, None)
}

/// Like [`get_folder_request`], but when `mailbox` is given every folder id names that mailbox
/// (`t:Mailbox/t:EmailAddress`), for delegate or shared-mailbox access. Values are XML-escaped.
pub fn get_folder_request_for_mailbox(
    folders: &[DistinguishedFolder],
    server_version: &str,
    mailbox: Option<&str>,
) -> String {
    let mut ids = String::new();
    for folder in folders {
        let id = folder.id();
        // Writing to a String cannot fail.
        let _ = match mailbox {
            None => writeln!(ids, "        <t:DistinguishedFolderId Id=\"{id}\" />"),
            Some(address) => writeln!(
                ids,
                "        <t:DistinguishedFolderId Id=\"{id}\">\n\
                 \x20         <t:Mailbox>\n\
                 \x20           <t:EmailAddress>{}</t:EmailAddress>\n\
                 \x20         </t:Mailbox>\n\
                 \x20       </t:DistinguishedFolderId>",
                xml::escape(address)
            ),
        };
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <soap:Envelope xmlns:soap=\"{SOAP_NS}\" xmlns:m=\"{MESSAGES_NS}\" xmlns:t=\"{TYPES_NS}\">\n\
         \x20 <soap:Header>\n\
         \x20   <t:RequestServerVersion Version=\"{}\" />\n\
         \x20 </soap:Header>\n\
         \x20 <soap:Body>\n\
         \x20   <m:GetFolder>\n\
         \x20     <m:FolderShape>\n\
         \x20       <t:BaseShape>Default</t:BaseShape>\n\
         \x20     </m:FolderShape>\n\
         \x20     <m:FolderIds>\n\
         {ids}\
         \x20     </m:FolderIds>\n\
         \x20   </m:GetFolder>\n\
         \x20 </soap:Body>\n\
         </soap:Envelope>\n",
        xml::escape(server_version)
    )
}

/// The `ServerVersionInfo` SOAP header: which Exchange build answered, worth logging and
/// showing when a link misbehaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersionInfo {
    /// `MajorVersion`, e.g. 15.
    pub major: u32,
    /// `MinorVersion`, e.g. 0 (2013), 1 (2016), 2 (2019).
    pub minor: u32,
    /// `MajorBuildNumber`.
    pub major_build: u32,
    /// `MinorBuildNumber`.
    pub minor_build: u32,
    /// `Version`: schema name such as `Exchange2010_SP1`, or an internal `V2_6`; absent on
    /// Exchange 2007.
    pub version: Option<String>,
}

/// The documented `RequestServerVersion` values (`ExchangeVersionType`), oldest first.
pub const REQUEST_SERVER_VERSIONS: [&str; 7] = [
    "Exchange2007",
    "Exchange2007_SP1",
    "Exchange2010",
    "Exchange2010_SP1",
    "Exchange2010_SP2",
    "Exchange2013",
    "Exchange2013_SP1",
];

/// The schema to fall back to when a server refuses ours without naming its own: request
/// versioning began with Exchange 2007 SP1, and every later version still accepts it (and
/// GetFolder with `Default` shape and a named mailbox is in it).
pub const OLDEST_REQUEST_SERVER_VERSION: &str = "Exchange2007_SP1";

impl ServerVersionInfo {
    /// The `RequestServerVersion` this server understands: its `Version` when that is a
    /// documented value, else the one its major/minor version shipped with (Exchange 2007
    /// sends no `Version`; 2013 and later send internal names such as `V2_6`). `None` for a
    /// version before EWS.
    pub fn request_server_version(&self) -> Option<&'static str> {
        let named = self.version.as_deref();
        if let Some(known) = REQUEST_SERVER_VERSIONS.iter().find(|v| Some(**v) == named) {
            return Some(known);
        }
        Some(match (self.major, self.minor) {
            (8, 0) => "Exchange2007",
            (8, _) => "Exchange2007_SP1",
            (14, 0) => "Exchange2010",
            (14, 1) => "Exchange2010_SP1",
            (14, _) => "Exchange2010_SP2",
            // Exchange 2013 SP1 is build 15.0.847.
            (15, 0) if self.major_build < 847 => "Exchange2013",
            (major, _) if major >= 15 => "Exchange2013_SP1",
            _ => return None,
        })
    }
}

/// The concrete type of a returned folder: `t:Folder` for mail folders, `t:CalendarFolder`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderKind {
    /// `Folder`: a generic (mail) folder.
    Folder,
    /// `CalendarFolder`.
    CalendarFolder,
    /// `ContactsFolder`.
    ContactsFolder,
    /// `TasksFolder`.
    TasksFolder,
    /// `SearchFolder`.
    SearchFolder,
    /// Any other element name, kept verbatim so newer servers do not break parsing.
    Other(String),
}

impl FolderKind {
    fn from_name(name: &str) -> Self {
        match name {
            "Folder" => Self::Folder,
            "CalendarFolder" => Self::CalendarFolder,
            "ContactsFolder" => Self::ContactsFolder,
            "TasksFolder" => Self::TasksFolder,
            "SearchFolder" => Self::SearchFolder,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// A folder's EWS id. Opaque; `change_key` is a version stamp needed only for updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderId {
    /// `Id` attribute.
    pub id: String,
    /// `ChangeKey` attribute.
    pub change_key: Option<String>,
}

/// A folder from a successful `GetFolder` response message. Counts are `None` when the shape
/// or folder type does not include them (e.g. `IdOnly`, or calendars with `Default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// Element the folder came in.
    pub kind: FolderKind,
    /// `FolderId`.
    pub folder_id: FolderId,
    /// `DisplayName` (localised, e.g. "Inbox" / "Posteingang").
    pub display_name: Option<String>,
    /// `TotalCount`: items in the folder.
    pub total_count: Option<u64>,
    /// `UnreadCount`: unread items.
    pub unread_count: Option<u64>,
    /// `ChildFolderCount`: direct subfolders.
    pub child_folder_count: Option<u64>,
}

/// Severity of a failed response message (`ResponseClass`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseClass {
    /// `Warning`: this part was not processed, typically because an earlier part of a batch
    /// failed (`ErrorBatchProcessingStopped`).
    Warning,
    /// `Error`: this part failed.
    Error,
}

/// A per-message failure inside an otherwise normal EWS response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseError {
    /// `ResponseClass` of the message.
    pub class: ResponseClass,
    /// `ResponseCode`, e.g. `ErrorNonExistentMailbox`. Feed it to [`classify`].
    pub response_code: String,
    /// `MessageText`: human-readable description (may be empty).
    pub message_text: String,
    /// `BackOffMilliseconds` from `MessageXml`, when the server asks us to wait.
    pub back_off_ms: Option<u64>,
    /// All `MessageXml/Value` entries as (`Name`, value), e.g. `MailboxGuid` or
    /// `InnerErrorResponseCode`; useful in logs.
    pub message_xml: Vec<(String, String)>,
}

impl ResponseError {
    /// [`classify`] applied to this error's code.
    pub fn error_class(&self) -> ErrorClass {
        classify(&self.response_code)
    }
}

/// A parsed `GetFolderResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetFolderResponse {
    /// The `ServerVersionInfo` header; `None` if absent or incomplete (it is informational, so
    /// a malformed header does not fail an otherwise good response).
    pub server_version: Option<ServerVersionInfo>,
    /// One entry per `GetFolderResponseMessage`, in request order.
    pub messages: Vec<Result<Folder, ResponseError>>,
}

/// Parses a `GetFolder` response body.
///
/// A SOAP fault becomes [`EwsXmlError::Fault`]; per-folder failures (`ResponseClass` `Error` or
/// `Warning`) are `Err` entries in [`GetFolderResponse::messages`].
pub fn parse_get_folder_response(xml: &[u8]) -> Result<GetFolderResponse, EwsXmlError> {
    let envelope = parse_envelope(xml)?;
    let operation = body_response(&envelope, Some("GetFolderResponse"))?;
    let messages = response_messages(operation)?
        .map(|message| {
            let outcome = message_outcome(message)?;
            Ok(match outcome {
                Ok(()) => Ok(folder(message)?),
                Err(error) => Err(error),
            })
        })
        .collect::<Result<Vec<_>, EwsXmlError>>()?;
    Ok(GetFolderResponse { server_version: server_version(&envelope), messages })
}

/// Outcome of any EWS operation, without its payload: for callers that only need to know
/// whether (and why) each part failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseStatus {
    /// The `ServerVersionInfo` header, as in [`GetFolderResponse::server_version`].
    pub server_version: Option<ServerVersionInfo>,
    /// Local name of the body element, e.g. `FindFolderResponse`.
    pub operation: String,
    /// One entry per `*ResponseMessage`, in order.
    pub messages: Vec<Result<(), ResponseError>>,
}

/// Parses the status part of any EWS response (`FindFolder`, `ExportItems`, ...), so error
/// handling does not need a parser per operation. SOAP faults become [`EwsXmlError::Fault`].
pub fn parse_response_status(xml: &[u8]) -> Result<ResponseStatus, EwsXmlError> {
    let envelope = parse_envelope(xml)?;
    let operation = body_response(&envelope, None)?;
    let messages = response_messages(operation)?
        .map(message_outcome)
        .collect::<Result<Vec<_>, EwsXmlError>>()?;
    Ok(ResponseStatus {
        server_version: server_version(&envelope),
        operation: operation.name.clone(),
        messages,
    })
}

fn parse_envelope(xml: &[u8]) -> Result<Element, EwsXmlError> {
    let envelope = xml::parse(xml, LIMITS)?;
    envelope.expect_name("Envelope")?;
    Ok(envelope)
}

/// The operation element inside `Body`, after turning a `Fault` into an error.
fn body_response<'a>(
    envelope: &'a Element,
    expected: Option<&'static str>,
) -> Result<&'a Element, EwsXmlError> {
    let body = envelope.child("Body").ok_or(XmlError::Missing("Envelope/Body"))?;
    let first = body.children.first().ok_or(XmlError::Missing("Envelope/Body/*"))?;
    if first.name == "Fault" {
        let mut fault = soap_fault(first);
        fault.server_version = server_version(envelope);
        return Err(EwsXmlError::Fault(Box::new(fault)));
    }
    match expected {
        Some(name) if first.name != name => {
            Err(EwsXmlError::UnexpectedBody { expected: name, found: first.name.clone() })
        }
        _ => Ok(first),
    }
}

/// The longest response code kept: Microsoft's are identifiers of a few dozen characters, and
/// whatever a server sends there is logged and classified.
const MAX_CODE: usize = 100;

fn soap_fault(fault: &Element) -> SoapFault {
    let fault_code = clean(fault.child_text("faultcode").unwrap_or_default(), MAX_CODE);
    let detail = fault.child("detail");
    let detail_text = |name: &str| detail.and_then(|d| d.child_text(name)).map(str::to_owned);
    let response_code =
        detail_text("ResponseCode").map(|code| clean(&code, MAX_CODE)).unwrap_or_else(|| {
            fault_code.rsplit_once(':').map_or(fault_code.as_str(), |(_, local)| local).to_owned()
        });
    let message_xml = detail.map(message_xml_values).unwrap_or_default();
    SoapFault {
        fault_string: fault.child_text("faultstring").unwrap_or_default().to_owned(),
        response_code,
        message: detail_text("Message"),
        back_off_ms: back_off(&message_xml),
        fault_code,
        server_version: None,
    }
}

fn response_messages(operation: &Element) -> Result<impl Iterator<Item = &Element>, EwsXmlError> {
    let messages =
        operation.child("ResponseMessages").ok_or(XmlError::Missing("ResponseMessages"))?;
    Ok(messages.children.iter().filter(|m| m.name.ends_with("ResponseMessage")))
}

/// `Ok(Ok(()))` for `ResponseClass="Success"`, `Ok(Err(_))` for `Error`/`Warning`.
fn message_outcome(message: &Element) -> Result<Result<(), ResponseError>, EwsXmlError> {
    let class = match message.attr("ResponseClass") {
        Some("Success") => return Ok(Ok(())),
        Some("Warning") => ResponseClass::Warning,
        Some("Error") => ResponseClass::Error,
        Some(other) => return Err(XmlError::invalid("ResponseClass", other).into()),
        None => return Err(XmlError::Missing("ResponseMessage/@ResponseClass").into()),
    };
    let message_xml = message.child("MessageXml").map(message_xml_values).unwrap_or_default();
    Ok(Err(ResponseError {
        class,
        response_code: clean(
            message
                .child_text("ResponseCode")
                .ok_or(XmlError::Missing("ResponseMessage/ResponseCode"))?,
            MAX_CODE,
        ),
        message_text: message.child_text("MessageText").unwrap_or_default().to_owned(),
        back_off_ms: back_off(&message_xml),
        message_xml,
    }))
}

/// `Value` entries of a `MessageXml` element (or of a fault `detail`, where they sit one level
/// deeper inside `MessageXml`).
fn message_xml_values(element: &Element) -> Vec<(String, String)> {
    let holder =
        if element.name == "MessageXml" { Some(element) } else { element.child("MessageXml") };
    holder
        .into_iter()
        .flat_map(|h| h.children_named("Value"))
        .map(|v| (v.attr("Name").unwrap_or_default().to_owned(), v.text().to_owned()))
        .collect()
}

fn back_off(values: &[(String, String)]) -> Option<u64> {
    values.iter().find(|(name, _)| name == "BackOffMilliseconds").and_then(|(_, v)| v.parse().ok())
}

fn folder(message: &Element) -> Result<Folder, EwsXmlError> {
    let element = message
        .child("Folders")
        .and_then(|f| f.children.first())
        .ok_or(XmlError::Missing("GetFolderResponseMessage/Folders/*"))?;
    let id = element.child("FolderId").ok_or(XmlError::Missing("Folder/FolderId"))?;
    Ok(Folder {
        kind: FolderKind::from_name(&element.name),
        folder_id: FolderId {
            id: id.attr("Id").ok_or(XmlError::Missing("FolderId/@Id"))?.to_owned(),
            change_key: id.attr("ChangeKey").map(str::to_owned),
        },
        display_name: element.child_text("DisplayName").map(str::to_owned),
        total_count: count(element, "TotalCount")?,
        unread_count: count(element, "UnreadCount")?,
        child_folder_count: count(element, "ChildFolderCount")?,
    })
}

fn count(element: &Element, name: &'static str) -> Result<Option<u64>, XmlError> {
    element
        .child_text(name)
        .map(|text| text.parse().map_err(|_| XmlError::invalid(name, text)))
        .transpose()
}

fn server_version(envelope: &Element) -> Option<ServerVersionInfo> {
    let info = envelope.child("Header")?.child("ServerVersionInfo")?;
    let number = |name: &str| info.attr(name)?.trim().parse().ok();
    Some(ServerVersionInfo {
        major: number("MajorVersion")?,
        minor: number("MinorVersion")?,
        major_build: number("MajorBuildNumber")?,
        minor_build: number("MinorBuildNumber")?,
        version: info.attr("Version").map(str::to_owned),
    })
}

/// What the daemon should do about an EWS response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The server or mailbox is temporarily unable to serve: retry later, honouring
    /// `BackOffMilliseconds` when given.
    Transient,
    /// The stored credentials can no longer be used; the user must sign in again. Plain bad
    /// credentials arrive as HTTP 401, not as a response code, so this is rare.
    Reauth,
    /// The account or mailbox cannot be used as configured (missing, disabled, no permission,
    /// EWS disabled by policy): retrying will not help until an admin or the user acts.
    Blocked,
    /// Anything else, including request bugs (schema, ids) and unknown codes.
    Other,
}

/// Maps an EWS `ResponseCode` (or a SOAP `faultcode`, prefix allowed) to an [`ErrorClass`].
///
/// Choices, by group:
/// - Transient: throttling and load (`ErrorServerBusy`, `ErrorTooManyObjectsOpened`,
///   `ErrorExceededConnectionCount`, `ErrorInsufficientResources`, `ErrorNotEnoughMemory`,
///   `ErrorTimeoutExpired`), server-side hiccups the server itself calls transient
///   (`ErrorInternalServerTransientError`, `ErrorServerTemporaryUnavailable`), mailbox
///   availability events that end on their own (`ErrorMailboxMoveInProgress`,
///   `ErrorMailboxStoreUnavailable`, `ErrorMailboxFailover`), and back-end connectivity between
///   Exchange servers (`ErrorConnectionFailed`, `ErrorADUnavailable`,
///   `ErrorProxyRequestProcessingFailed`, `ErrorNoRespondingCASInDestinationSite`).
///   `ErrorBatchProcessingStopped` is here too: that part was never attempted.
/// - Reauth: `ErrorPasswordExpired` and `ErrorPasswordChangeRequired` — the password works no
///   more, so the user must change it and enter the new one.
/// - Blocked: `ErrorNonExistentMailbox`, `ErrorAccountDisabled`, `ErrorMailboxConfiguration`;
///   `ErrorAccessDenied` (with valid credentials this is a permission problem, which new
///   credentials rarely fix), `ErrorMailboxLogonFailed` (no right to open the mailbox),
///   impersonation denials, and EWS being switched off for the user or organisation
///   (`ErrorExchangeApplicationNotEnabled`, `ErrorUserNotAllowedByPolicy`,
///   `ErrorOrganizationAccessBlocked`, `ErrorInvalidLicense`).
/// - Other: everything else. `ErrorInternalServerError` is deliberately not transient: it wraps
///   permanent causes too (see its `InnerErrorResponseCode`).
pub fn classify(code: &str) -> ErrorClass {
    let code = code.trim();
    let code = code.rsplit_once(':').map_or(code, |(_, local)| local);
    match code {
        "ErrorServerBusy"
        | "ErrorTooManyObjectsOpened"
        | "ErrorExceededConnectionCount"
        | "ErrorInsufficientResources"
        | "ErrorNotEnoughMemory"
        | "ErrorTimeoutExpired"
        | "ErrorInternalServerTransientError"
        | "ErrorServerTemporaryUnavailable"
        | "ErrorMailboxMoveInProgress"
        | "ErrorMailboxStoreUnavailable"
        | "ErrorMailboxFailover"
        | "ErrorConnectionFailed"
        | "ErrorADUnavailable"
        | "ErrorProxyRequestProcessingFailed"
        | "ErrorNoRespondingCASInDestinationSite"
        | "ErrorBatchProcessingStopped" => ErrorClass::Transient,
        "ErrorPasswordExpired" | "ErrorPasswordChangeRequired" => ErrorClass::Reauth,
        "ErrorNonExistentMailbox"
        | "ErrorAccountDisabled"
        | "ErrorMailboxConfiguration"
        | "ErrorAccessDenied"
        | "ErrorMailboxLogonFailed"
        | "ErrorImpersonationDenied"
        | "ErrorImpersonateUserDenied"
        | "ErrorExchangeApplicationNotEnabled"
        | "ErrorUserNotAllowedByPolicy"
        | "ErrorOrganizationAccessBlocked"
        | "ErrorInvalidLicense" => ErrorClass::Blocked,
        _ => ErrorClass::Other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Reads a shared Microsoft sample from `shared/vectors/` (never copied into the repo).
    /// `MSLINK_VECTORS` overrides the location.
    fn vector(rel: &str) -> String {
        let base = std::env::var("MSLINK_VECTORS").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors").to_owned()
        });
        let path = format!("{base}/{rel}");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading vector {path}: {e}"))
    }

    fn ews(rel: &str) -> String {
        vector(&format!("ews/{rel}"))
    }

    fn get_folder(rel: &str) -> GetFolderResponse {
        parse_get_folder_response(ews(rel).as_bytes()).unwrap()
    }

    fn fault(xml: &str) -> SoapFault {
        match parse_response_status(xml.as_bytes()) {
            Err(EwsXmlError::Fault(f)) => *f,
            other => panic!("expected a fault, got {other:?}"),
        }
    }

    type Fingerprint = Vec<(String, String, Vec<(String, String)>, String)>;

    /// (namespace, local name, attributes without xmlns, trimmed text) for every element inside
    /// the first element named `from` (inclusive), in document order.
    fn fingerprint(xml: &str, from: &str) -> Fingerprint {
        use quick_xml::events::Event;
        use quick_xml::name::ResolveResult;
        let mut reader = quick_xml::NsReader::from_str(xml);
        let mut out: Fingerprint = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        let mut inside = 0usize;
        loop {
            let (ns, event) = reader.read_resolved_event().unwrap();
            let ns = match ns {
                ResolveResult::Bound(ns) => ns.0.to_owned(),
                ResolveResult::Unbound => String::new(),
                ResolveResult::Unknown(p) => panic!("undeclared prefix {p}"),
            };
            match event {
                Event::Start(ref s) | Event::Empty(ref s) => {
                    let name = s.local_name().as_ref().to_owned();
                    let is_start = matches!(event, Event::Start(_));
                    if inside == 0 && name != from {
                        continue;
                    }
                    let attrs = s
                        .attributes()
                        .map(|a| a.unwrap())
                        .filter(|a| a.key.as_namespace_binding().is_none())
                        .map(|a| {
                            (
                                a.key.local_name().as_ref().to_owned(),
                                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                    .unwrap()
                                    .into_owned(),
                            )
                        })
                        .collect();
                    out.push((ns, name, attrs, String::new()));
                    if is_start {
                        inside += 1;
                        open.push(out.len() - 1);
                    }
                }
                Event::End(_) if inside > 0 => {
                    inside -= 1;
                    let i = open.pop().unwrap();
                    out[i].3 = out[i].3.trim().to_owned();
                }
                Event::Text(t) if inside > 0 => {
                    let i = *open.last().unwrap();
                    out[i].3.push_str(&t.xml10_content());
                }
                Event::GeneralRef(r) if inside > 0 => {
                    let i = *open.last().unwrap();
                    out[i].3.push_str(quick_xml::escape::resolve_xml_entity(&r).unwrap());
                }
                Event::Eof => break,
                _ => {}
            }
        }
        out
    }

    // ---- requests ------------------------------------------------------------------------

    #[test]
    fn inbox_request_body_matches_the_default_shape_sample() {
        let ours = get_folder_request(&[DistinguishedFolder::Inbox], "Exchange2013");
        let sample = ews("getfolder_inbox_default_request.xml");
        assert_eq!(fingerprint(&ours, "Body"), fingerprint(&sample, "Body"));
    }

    #[test]
    fn request_header_and_body_match_the_idonly_samples_except_shape() {
        for (file, folder) in [
            ("getfolder_inbox_idonly_request.xml", DistinguishedFolder::Inbox),
            ("getfolder_calendar_idonly_request.xml", DistinguishedFolder::Calendar),
        ] {
            let ours = get_folder_request(&[folder], "Exchange2007_SP1");
            let sample = ews(file).replace(">IdOnly<", ">Default<");
            assert_eq!(fingerprint(&ours, "Envelope"), fingerprint(&sample, "Envelope"), "{file}");
        }
    }

    #[test]
    fn request_carries_version_folders_and_mailbox() {
        let ours = get_folder_request_for_mailbox(
            &[DistinguishedFolder::Inbox, DistinguishedFolder::Calendar],
            "Exchange2013",
            Some("shared&co@example.com"),
        );
        let print = fingerprint(&ours, "Envelope");
        let t = TYPES_NS.to_owned();
        let version = print.iter().find(|e| e.1 == "RequestServerVersion").unwrap();
        assert_eq!(version.0, t);
        assert_eq!(version.2, [("Version".to_owned(), "Exchange2013".to_owned())]);
        let ids: Vec<_> = print.iter().filter(|e| e.1 == "DistinguishedFolderId").collect();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0].2[0].1, "inbox");
        assert_eq!(ids[1].2[0].1, "calendar");
        let addresses: Vec<_> = print
            .iter()
            .filter(|e| e.1 == "EmailAddress")
            .map(|e| (e.0.as_str(), e.3.as_str()))
            .collect();
        assert_eq!(addresses, [(TYPES_NS, "shared&co@example.com"); 2]);
        let shape = print.iter().find(|e| e.1 == "BaseShape").unwrap();
        assert_eq!((shape.0.as_str(), shape.3.as_str()), (TYPES_NS, "Default"));
        let get_folder = print.iter().find(|e| e.1 == "GetFolder").unwrap();
        assert_eq!(get_folder.0, MESSAGES_NS);
        assert_eq!(print[0].0, SOAP_NS);
    }

    #[test]
    fn request_escapes_server_version() {
        let ours = get_folder_request(&[DistinguishedFolder::Inbox], "x\"/><evil/>");
        let print = fingerprint(&ours, "Envelope");
        assert!(print.iter().all(|e| e.1 != "evil"));
        let version = print.iter().find(|e| e.1 == "RequestServerVersion").unwrap();
        assert_eq!(version.2[0].1, "x\"/><evil/>");
    }

    // ---- GetFolder responses: Microsoft samples ------------------------------------------

    #[test]
    fn inbox_default_response_has_counts() {
        let r = get_folder("getfolder_inbox_default_response.xml");
        assert_eq!(
            r.server_version,
            Some(ServerVersionInfo {
                major: 8,
                minor: 0,
                major_build: 628,
                minor_build: 0,
                version: None
            })
        );
        assert_eq!(
            r.messages,
            [Ok(Folder {
                kind: FolderKind::Folder,
                folder_id: FolderId { id: "AQApA=".into(), change_key: Some("AQAAAB".into()) },
                display_name: Some("Inbox".into()),
                total_count: Some(2),
                unread_count: Some(2),
                child_folder_count: Some(0),
            })]
        );
    }

    #[test]
    fn inbox_idonly_response() {
        let r = get_folder("getfolder_inbox_idonly_response.xml");
        let v = r.server_version.unwrap();
        assert_eq!((v.major, v.minor, v.major_build, v.minor_build), (15, 0, 800, 16));
        assert_eq!(v.version.as_deref(), Some("V2_6"));
        let folder = r.messages[0].as_ref().unwrap();
        assert_eq!(folder.kind, FolderKind::Folder);
        assert_eq!(folder.folder_id.id, "AAAENAAA=");
        assert_eq!(
            folder.folder_id.change_key.as_deref(),
            Some("AQAAABYAAAAPxolXAHv3TaHUnjW8wWqXAAAEkbCr")
        );
        assert_eq!(
            (folder.total_count, folder.unread_count, &folder.display_name),
            (None, None, &None)
        );
    }

    #[test]
    fn calendar_idonly_response() {
        let r = get_folder("getfolder_calendar_idonly_response.xml");
        let v = r.server_version.unwrap();
        assert_eq!((v.major, v.minor, v.major_build, v.minor_build), (15, 0, 731, 10));
        assert_eq!(v.version.as_deref(), Some("V2_3"));
        let folder = r.messages[0].as_ref().unwrap();
        assert_eq!(folder.kind, FolderKind::CalendarFolder);
        assert_eq!(
            folder.folder_id,
            FolderId { id: "AAMk".into(), change_key: Some("AgAA".into()) }
        );
    }

    #[test]
    fn invalid_id_error_response() {
        let r = get_folder("getfolder_error_invalid_id_response.xml");
        assert_eq!(r.server_version.as_ref().map(|v| v.major_build), Some(628));
        let error = r.messages[0].as_ref().unwrap_err();
        assert_eq!(error.class, ResponseClass::Error);
        assert_eq!(error.response_code, "ErrorInvalidIdMalformed");
        assert_eq!(error.message_text, "Id is malformed.");
        assert_eq!(error.back_off_ms, None);
        assert_eq!(error.error_class(), ErrorClass::Other);
    }

    #[test]
    fn export_items_mixed_results_with_non_existent_mailbox() {
        let r = parse_response_status(
            ews("exportitems_response_with_ErrorNonExistentMailbox.xml").as_bytes(),
        )
        .unwrap();
        assert_eq!(r.operation, "ExportItemsResponse");
        assert_eq!(
            r.server_version,
            Some(ServerVersionInfo {
                major: 14,
                minor: 1,
                major_build: 164,
                minor_build: 0,
                version: Some("Exchange2010_SP1".into())
            })
        );
        assert_eq!(r.messages.len(), 3);
        assert_eq!(r.messages[0], Ok(()));
        assert_eq!(r.messages[1].as_ref().unwrap_err().response_code, "ErrorInvalidChangeKey");
        let missing = r.messages[2].as_ref().unwrap_err();
        assert_eq!(missing.response_code, "ErrorNonExistentMailbox");
        assert_eq!(missing.message_text, "No mailbox with such guid.");
        assert_eq!(
            missing.message_xml,
            [("MailboxGuid".to_owned(), "f3f6f699-2254-40ce-9994-388d9d98419e".to_owned())]
        );
        assert_eq!(missing.error_class(), ErrorClass::Blocked);
        // Not a GetFolder response.
        assert_eq!(
            parse_get_folder_response(
                ews("exportitems_response_with_ErrorNonExistentMailbox.xml").as_bytes()
            )
            .unwrap_err(),
            EwsXmlError::UnexpectedBody {
                expected: "GetFolderResponse",
                found: "ExportItemsResponse".into()
            }
        );
    }

    // ---- exchangelib fixtures ------------------------------------------------------------

    #[test]
    fn soap_fault_server_busy_with_back_off() {
        let f = fault(&ews("exchangelib_soapfault_ErrorServerBusy_BackOffMilliseconds.xml"));
        assert_eq!(f.fault_code, "a:ErrorServerBusy");
        assert_eq!(f.response_code, "ErrorServerBusy");
        assert_eq!(
            f.fault_string,
            "The server cannot service this request right now. Try again later."
        );
        assert_eq!(
            f.message.as_deref(),
            Some("The server cannot service this request right now. Try again later.")
        );
        assert_eq!(f.back_off_ms, Some(297_749));
        assert_eq!(classify(&f.response_code), ErrorClass::Transient);
        // The same fault ends a GetFolder parse too.
        let err = parse_get_folder_response(
            ews("exchangelib_soapfault_ErrorServerBusy_BackOffMilliseconds.xml").as_bytes(),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("EWS SOAP fault ErrorServerBusy:"), "{err}");
    }

    #[test]
    fn an_invalid_server_version_fault_may_name_the_servers_schema() {
        let fault_xml = |header: &str| {
            format!(
                r#"<s:Envelope xmlns:s="{SOAP_NS}">{header}<s:Body><s:Fault>
                  <faultcode xmlns:a="{TYPES_NS}">a:ErrorInvalidServerVersion</faultcode>
                  <faultstring>The specified server version is invalid.</faultstring>
                  <detail><e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">ErrorInvalidServerVersion</e:ResponseCode></detail>
                </s:Fault></s:Body></s:Envelope>"#
            )
        };
        let bare = fault(&fault_xml(""));
        assert_eq!(bare.response_code, "ErrorInvalidServerVersion");
        assert_eq!(bare.server_version, None);
        let named = fault(&fault_xml(&format!(
            r#"<s:Header><h:ServerVersionInfo xmlns:h="{TYPES_NS}" MajorVersion="14"
                 MinorVersion="1" MajorBuildNumber="218" MinorBuildNumber="15"
                 Version="Exchange2010_SP1"/></s:Header>"#
        )));
        let version = named.server_version.unwrap();
        assert_eq!(version.request_server_version(), Some("Exchange2010_SP1"));
    }

    #[test]
    fn the_request_version_follows_the_server_version() {
        let info = |major, minor, major_build, version: Option<&str>| ServerVersionInfo {
            major,
            minor,
            major_build,
            minor_build: 0,
            version: version.map(str::to_owned),
        };
        for (server, expected) in [
            (info(8, 0, 685, None), Some("Exchange2007")),
            (info(8, 3, 83, None), Some("Exchange2007_SP1")),
            (info(14, 0, 639, Some("Exchange2010")), Some("Exchange2010")),
            (info(14, 3, 123, Some("Exchange2010_SP2")), Some("Exchange2010_SP2")),
            (info(14, 2, 247, None), Some("Exchange2010_SP2")),
            (info(15, 0, 516, Some("V2_6")), Some("Exchange2013")),
            (info(15, 0, 847, Some("V2_9")), Some("Exchange2013_SP1")),
            (info(15, 2, 1544, Some("V2017_07_11")), Some("Exchange2013_SP1")),
            (info(6, 5, 0, None), None),
        ] {
            assert_eq!(server.request_server_version(), expected, "{server:?}");
        }
        assert!(REQUEST_SERVER_VERSIONS.contains(&OLDEST_REQUEST_SERVER_VERSION));
        assert!(REQUEST_SERVER_VERSIONS.contains(&super::super::REQUEST_SERVER_VERSION));
    }

    #[test]
    fn soap_fault_template() {
        let xml = ews("exchangelib_soapfault_template_faultcode_responsecode.xml")
            .replace("{faultcode}", "soap:Client")
            .replace("{faultstring}", "The request failed schema validation.")
            .replace("{responsecode}", "ErrorSchemaValidation")
            .replace("{message}", "The element 'x' is invalid.");
        let f = fault(&xml);
        assert_eq!(f.fault_code, "soap:Client");
        assert_eq!(f.response_code, "ErrorSchemaValidation");
        assert_eq!(f.fault_string, "The request failed schema validation.");
        assert_eq!(f.message.as_deref(), Some("The element 'x' is invalid."));
        assert_eq!(f.back_off_ms, None);
        assert_eq!(classify(&f.response_code), ErrorClass::Other);
    }

    #[test]
    fn response_message_too_many_objects_opened() {
        let r = parse_response_status(
            ews("exchangelib_responsemessage_error_ErrorTooManyObjectsOpened.xml").as_bytes(),
        )
        .unwrap();
        assert_eq!(r.operation, "FindFolderResponse");
        assert_eq!(r.server_version, None);
        let e = r.messages[0].as_ref().unwrap_err();
        assert_eq!(e.response_code, "ErrorTooManyObjectsOpened");
        assert_eq!(e.message_text, "Too many concurrent connections opened.");
        assert_eq!(e.error_class(), ErrorClass::Transient);
    }

    #[test]
    fn response_message_with_inner_error() {
        let r = parse_response_status(
            ews("exchangelib_responsemessage_error_internal_with_inner_error.xml").as_bytes(),
        )
        .unwrap();
        assert_eq!(r.operation, "DeleteItemResponse");
        let e = r.messages[0].as_ref().unwrap_err();
        assert_eq!(e.response_code, "ErrorInternalServerError");
        assert_eq!(e.message_text, "An internal server error occurred. The operation failed.");
        let inner: Vec<(&str, &str)> =
            e.message_xml.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            inner,
            [
                (
                    "InnerErrorMessageText",
                    "Cannot delete message because the folder is out of quota."
                ),
                ("InnerErrorResponseCode", "ErrorQuotaExceededOnDelete"),
                ("InnerErrorDescriptiveLinkKey", "0"),
            ]
        );
        assert_eq!(e.error_class(), ErrorClass::Other);
    }

    // ---- own fixtures --------------------------------------------------------------------

    const TWO_FOLDERS: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
  <s:Header>
    <h:ServerVersionInfo MajorVersion="15" MinorVersion="2" MajorBuildNumber="1544" MinorBuildNumber="4"
      Version="V2017_07_11" xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types"/>
  </s:Header>
  <s:Body>
    <m:GetFolderResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
                         xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
      <m:ResponseMessages>
        <m:GetFolderResponseMessage ResponseClass="Success">
          <m:ResponseCode>NoError</m:ResponseCode>
          <m:Folders><t:Folder>
            <t:FolderId Id="INBOX-ID" ChangeKey="CK1"/>
            <t:DisplayName>Posteingang &amp; mehr</t:DisplayName>
            <t:TotalCount>12345</t:TotalCount><t:ChildFolderCount>3</t:ChildFolderCount>
            <t:UnreadCount>17</t:UnreadCount>
          </t:Folder></m:Folders>
        </m:GetFolderResponseMessage>
        <m:GetFolderResponseMessage ResponseClass="Error">
          <m:MessageText>The server cannot service this request right now. Try again later.</m:MessageText>
          <m:ResponseCode>ErrorServerBusy</m:ResponseCode>
          <m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>
          <m:MessageXml><t:Value Name="BackOffMilliseconds">5000</t:Value></m:MessageXml>
          <m:Folders/>
        </m:GetFolderResponseMessage>
      </m:ResponseMessages>
    </m:GetFolderResponse>
  </s:Body>
</s:Envelope>"#;

    #[test]
    fn success_and_throttled_message_side_by_side() {
        let r = parse_get_folder_response(TWO_FOLDERS.as_bytes()).unwrap();
        let v = r.server_version.unwrap();
        assert_eq!((v.major, v.minor, v.major_build, v.minor_build), (15, 2, 1544, 4));
        let inbox = r.messages[0].as_ref().unwrap();
        assert_eq!(inbox.display_name.as_deref(), Some("Posteingang & mehr"));
        assert_eq!(
            (inbox.total_count, inbox.unread_count, inbox.child_folder_count),
            (Some(12345), Some(17), Some(3))
        );
        let busy = r.messages[1].as_ref().unwrap_err();
        assert_eq!(busy.response_code, "ErrorServerBusy");
        assert_eq!(busy.back_off_ms, Some(5000));
        assert_eq!(busy.error_class(), ErrorClass::Transient);
    }

    #[test]
    fn warning_class_and_malformed_messages() {
        let warning = TWO_FOLDERS
            .replace("ResponseClass=\"Error\"", "ResponseClass=\"Warning\"")
            .replace(">ErrorServerBusy<", ">ErrorBatchProcessingStopped<");
        let r = parse_get_folder_response(warning.as_bytes()).unwrap();
        let e = r.messages[1].as_ref().unwrap_err();
        assert_eq!((e.class, e.error_class()), (ResponseClass::Warning, ErrorClass::Transient));

        let bad_count = TWO_FOLDERS.replace(">17<", ">-1<");
        assert_eq!(
            parse_get_folder_response(bad_count.as_bytes()).unwrap_err(),
            EwsXmlError::Xml(XmlError::InvalidValue { field: "UnreadCount", value: "-1".into() })
        );
        let bad_class = TWO_FOLDERS.replace("ResponseClass=\"Success\"", "ResponseClass=\"Maybe\"");
        assert!(matches!(
            parse_get_folder_response(bad_class.as_bytes()).unwrap_err(),
            EwsXmlError::Xml(XmlError::InvalidValue { field: "ResponseClass", .. })
        ));
        let no_id = TWO_FOLDERS.replace("<t:FolderId Id=\"INBOX-ID\" ChangeKey=\"CK1\"/>", "");
        assert_eq!(
            parse_get_folder_response(no_id.as_bytes()).unwrap_err(),
            EwsXmlError::Xml(XmlError::Missing("Folder/FolderId"))
        );
        // An incomplete ServerVersionInfo header is dropped, not fatal.
        let partial = TWO_FOLDERS.replace("MajorBuildNumber=\"1544\"", "");
        assert_eq!(parse_get_folder_response(partial.as_bytes()).unwrap().server_version, None);
    }

    #[test]
    fn non_soap_and_empty_bodies() {
        assert_eq!(
            parse_get_folder_response(b"<html><body>Bad gateway</body></html>").unwrap_err(),
            EwsXmlError::Xml(XmlError::UnexpectedRoot {
                expected: "Envelope",
                found: "html".into()
            })
        );
        let empty = format!("<s:Envelope xmlns:s=\"{SOAP_NS}\"><s:Body/></s:Envelope>");
        assert_eq!(
            parse_get_folder_response(empty.as_bytes()).unwrap_err(),
            EwsXmlError::Xml(XmlError::Missing("Envelope/Body/*"))
        );
    }

    #[test]
    fn hostile_documents_are_refused() {
        let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>
<faultcode>&lol2;</faultcode></s:Fault></s:Body></s:Envelope>"#;
        assert_eq!(
            parse_response_status(laughs.as_bytes()).unwrap_err(),
            EwsXmlError::Xml(XmlError::Doctype)
        );
        let xxe = r#"<!DOCTYPE s [<!ENTITY xxe SYSTEM "http://169.254.169.254/">]><s>&xxe;</s>"#;
        assert_eq!(
            parse_get_folder_response(xxe.as_bytes()).unwrap_err(),
            EwsXmlError::Xml(XmlError::Doctype)
        );
        let undeclared = TWO_FOLDERS.replace("Posteingang &amp; mehr", "&xxe;");
        assert_eq!(
            parse_get_folder_response(undeclared.as_bytes()).unwrap_err(),
            EwsXmlError::Xml(XmlError::UnknownEntity("xxe".into()))
        );
        let big = vec![b' '; MAX_RESPONSE_BYTES + 1];
        assert!(matches!(
            parse_get_folder_response(&big).unwrap_err(),
            EwsXmlError::Xml(XmlError::TooLarge { .. })
        ));
        let deep = format!("{}{}", "<a>".repeat(MAX_DEPTH + 1), "</a>".repeat(MAX_DEPTH + 1));
        assert_eq!(
            parse_get_folder_response(deep.as_bytes()).unwrap_err(),
            EwsXmlError::Xml(XmlError::TooDeep { limit: MAX_DEPTH })
        );
        let cut = &TWO_FOLDERS[..TWO_FOLDERS.len() / 2];
        assert!(matches!(
            parse_get_folder_response(cut.as_bytes()).unwrap_err(),
            EwsXmlError::Xml(XmlError::Truncated(_) | XmlError::Malformed { .. })
        ));
    }

    #[test]
    fn classify_groups() {
        for code in [
            "ErrorServerBusy",
            "ErrorTimeoutExpired",
            "ErrorInternalServerTransientError",
            "ErrorMailboxMoveInProgress",
            "ErrorMailboxStoreUnavailable",
            "ErrorConnectionFailed",
            "ErrorTooManyObjectsOpened",
            "a:ErrorServerBusy",
            " ErrorServerBusy\n",
        ] {
            assert_eq!(classify(code), ErrorClass::Transient, "{code}");
        }
        for code in ["ErrorPasswordExpired", "ErrorPasswordChangeRequired"] {
            assert_eq!(classify(code), ErrorClass::Reauth, "{code}");
        }
        for code in [
            "ErrorNonExistentMailbox",
            "ErrorAccessDenied",
            "ErrorMailboxConfiguration",
            "ErrorExchangeApplicationNotEnabled",
            "ErrorAccountDisabled",
        ] {
            assert_eq!(classify(code), ErrorClass::Blocked, "{code}");
        }
        for code in ["NoError", "ErrorInternalServerError", "ErrorInvalidIdMalformed", "", "Client"]
        {
            assert_eq!(classify(code), ErrorClass::Other, "{code}");
        }
    }
}
