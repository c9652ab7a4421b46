//! POX Autodiscover (MS-OXDSCLI) request building and response parsing for on-premises
//! Exchange, plus the SOAP `GetUserSettings` response (MS-OXWSADISC).
//!
//! This module is pure: it turns an e-mail address into a request body and a response body into
//! a typed [`AutodiscoverResponse`]. The HTTP side (which URLs to try, following redirects, loop
//! and hop limits, requiring HTTPS) belongs to the caller.
//!
//! Responses come from servers we do not control, often before we know they are really Exchange,
//! so they are read with the bounded, entity-free tree builder in [`super::xml`] (size, depth and
//! element caps below; DOCTYPE refused). Elements are matched by local name only, because servers
//! use both the `.../responseschema/2006` and `.../responseschema/2006a` namespaces (and some
//! documentation samples use an undeclared `i:` prefix).

use super::xml::{self, Element, XmlError};

/// Namespace of the POX request: every Outlook-style Autodiscover endpoint expects it.
pub const REQUEST_SCHEMA: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006";

/// Response schema we ask for: `2006a` is the one that carries `EwsUrl`, which is what we need.
pub const RESPONSE_SCHEMA: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";

/// Largest response body accepted, in bytes. Real responses are a few KiB; anything near this is
/// not an Autodiscover answer and is refused before any parsing work is spent on it.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Deepest element nesting accepted. Real responses nest about 6 levels; the cap keeps a hostile
/// document from building a pathological tree.
pub const MAX_DEPTH: usize = 64;

/// Most elements accepted in one response; bounds the memory of the parsed tree well below what
/// [`MAX_RESPONSE_BYTES`] of `<a/>` would otherwise allow.
pub const MAX_ELEMENTS: usize = 10_000;

const LIMITS: xml::Limits =
    xml::Limits { max_bytes: MAX_RESPONSE_BYTES, max_depth: MAX_DEPTH, max_elements: MAX_ELEMENTS };

/// Builds the POX request body for `email`, ready to POST (Content-Type `text/xml`) to
/// `https://<host>/autodiscover/autodiscover.xml`.
///
/// The address is XML-escaped; characters XML 1.0 cannot carry at all (control characters) are
/// replaced by U+FFFD so the output is always well-formed.
pub fn request_body(email: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <Autodiscover xmlns=\"{REQUEST_SCHEMA}\">\n\
         \x20 <Request>\n\
         \x20   <EMailAddress>{}</EMailAddress>\n\
         \x20   <AcceptableResponseSchema>{RESPONSE_SCHEMA}</AcceptableResponseSchema>\n\
         \x20 </Request>\n\
         </Autodiscover>\n",
        xml::escape(email)
    )
}

/// What a POX Autodiscover endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutodiscoverResponse {
    /// `Action=settings`: the account's protocol settings, including the EWS URL.
    Settings(AccountSettings),
    /// `Action=redirectAddr`: repeat discovery with this e-mail address. The caller must bound
    /// the number of hops and detect loops.
    RedirectAddr(String),
    /// `Action=redirectUrl`: repeat the same request against this Autodiscover URL. The caller
    /// must only follow `https://` URLs and bound the number of hops.
    RedirectUrl(String),
    /// An `<Error>` element, e.g. code `600` (Invalid Request) or `603` (account not found).
    Error {
        /// `ErrorCode` text, e.g. `"600"`.
        code: String,
        /// `Message` text, e.g. `"Invalid Request"`.
        message: String,
    },
}

/// Settings from an `Action=settings` response: what the daemon needs to talk to EWS, plus a few
/// fields worth showing to the user or logging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountSettings {
    /// The EWS endpoint to use: `EwsUrl` of the `EXCH` protocol block, else of `EXPR`. `None`
    /// when neither carries one (Exchange 2007-era responses only have `ASUrl`, which the caller
    /// may fall back to via [`ProtocolInfo::as_url`]).
    pub ews_url: Option<String>,
    /// `User/DisplayName`, for showing which mailbox was found.
    pub display_name: Option<String>,
    /// `User/AutoDiscoverSMTPAddress`: the primary address the server resolved to.
    pub autodiscover_smtp_address: Option<String>,
    /// `Account/MicrosoftOnline`: `Some(true)` means the mailbox lives in Exchange Online, which
    /// is not what this code path is for.
    pub microsoft_online: Option<bool>,
    /// Every top-level `Account/Protocol` block, in document order, unknown types included.
    pub protocols: Vec<ProtocolInfo>,
}

/// The `Type` of a `Protocol` block. Unknown types are kept rather than rejected: servers add
/// new ones over time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolKind {
    /// `EXCH`: settings for clients inside the organisation's network.
    Exch,
    /// `EXPR`: settings for clients outside the network (Outlook Anywhere).
    Expr,
    /// `WEB`: Outlook Web App URLs.
    Web,
    /// Any other `Type` value, kept verbatim.
    Other(String),
}

impl ProtocolKind {
    fn from_type(value: &str) -> Self {
        match value {
            "EXCH" => Self::Exch,
            "EXPR" => Self::Expr,
            "WEB" => Self::Web,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// One `Account/Protocol` block, reduced to the fields that matter for reaching EWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolInfo {
    /// `Type` of the block.
    pub kind: ProtocolKind,
    /// `Server`: mailbox server (EXCH) or RPC proxy host (EXPR).
    pub server: Option<String>,
    /// `ServerVersion`: hex-encoded Exchange build, see [`ProtocolInfo::server_build`].
    pub server_version: Option<String>,
    /// `EwsUrl`: the EWS endpoint.
    pub ews_url: Option<String>,
    /// `ASUrl`: the Availability service URL, which is the EWS endpoint on Exchange 2007+.
    pub as_url: Option<String>,
    /// `AuthPackage` (EXPR): e.g. `Ntlm`, `Basic`, `Negotiate`.
    pub auth_package: Option<String>,
    /// `SSL` (EXPR): whether the proxy requires TLS.
    pub ssl: Option<bool>,
}

/// An Exchange build number decoded from a POX `ServerVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExchangeBuild {
    /// Major version: 8 = Exchange 2007, 14 = 2010, 15 = 2013 and later.
    pub major: u32,
    /// Minor version: for major 15, 0 = 2013, 1 = 2016, 2 = 2019/SE.
    pub minor: u32,
    /// Build number.
    pub build: u32,
}

impl ProtocolInfo {
    /// Decodes [`ProtocolInfo::server_version`], so the caller can tell Exchange 2007 (no
    /// `EwsUrl`, older EWS schema) from 2013+ without another round trip.
    ///
    /// The value is 8 hex digits: 4 bits (always `0111`), 6 bits major, 6 bits minor, 1 flag bit,
    /// 15 bits build. `None` if the field is absent or not in that form.
    pub fn server_build(&self) -> Option<ExchangeBuild> {
        let hex = self.server_version.as_deref()?;
        if hex.len() != 8 {
            return None;
        }
        let raw = u32::from_str_radix(hex, 16).ok()?;
        Some(ExchangeBuild {
            major: (raw >> 22) & 0x3f,
            minor: (raw >> 16) & 0x3f,
            build: raw & 0x7fff,
        })
    }
}

/// Parses a POX Autodiscover response body.
///
/// Errors are for documents that are not a usable Autodiscover answer (too big, malformed,
/// DOCTYPE, wrong root, missing `Account`); an `<Error>` element the server sent on purpose is
/// a successful parse into [`AutodiscoverResponse::Error`].
pub fn parse_response(xml: &[u8]) -> Result<AutodiscoverResponse, XmlError> {
    let root = xml::parse(xml, LIMITS)?;
    root.expect_name("Autodiscover")?;
    let response = root.child("Response").ok_or(XmlError::Missing("Autodiscover/Response"))?;
    if let Some(error) = response.child("Error") {
        return Ok(pox_error(error));
    }
    let account =
        response.child("Account").ok_or(XmlError::Missing("Autodiscover/Response/Account"))?;
    if let Some(error) = account.child("Error") {
        return Ok(pox_error(error));
    }
    let action = account.child_text("Action");
    match action {
        Some(a) if a.eq_ignore_ascii_case("redirectAddr") => account
            .child_text("RedirectAddr")
            .map(|addr| AutodiscoverResponse::RedirectAddr(addr.to_owned()))
            .ok_or(XmlError::Missing("Account/RedirectAddr")),
        Some(a) if a.eq_ignore_ascii_case("redirectUrl") => account
            .child_text("RedirectURL")
            .or_else(|| account.child_text("RedirectUrl"))
            .map(|url| AutodiscoverResponse::RedirectUrl(url.to_owned()))
            .ok_or(XmlError::Missing("Account/RedirectURL")),
        // A missing Action with protocol blocks present is read as settings (lenient, as
        // Outlook is).
        Some(a) if a.eq_ignore_ascii_case("settings") => {
            Ok(AutodiscoverResponse::Settings(settings(response, account)?))
        }
        None => Ok(AutodiscoverResponse::Settings(settings(response, account)?)),
        Some(other) => Err(XmlError::invalid("Account/Action", other)),
    }
}

fn pox_error(error: &Element) -> AutodiscoverResponse {
    AutodiscoverResponse::Error {
        code: error.child_text("ErrorCode").unwrap_or_default().to_owned(),
        message: error.child_text("Message").unwrap_or_default().to_owned(),
    }
}

fn settings(response: &Element, account: &Element) -> Result<AccountSettings, XmlError> {
    let protocols: Vec<ProtocolInfo> = account.children_named("Protocol").map(protocol).collect();
    if protocols.is_empty() {
        return Err(XmlError::Missing("Account/Protocol"));
    }
    let ews_url_of = |kind: ProtocolKind| {
        protocols.iter().filter(|p| p.kind == kind).find_map(|p| p.ews_url.clone())
    };
    let ews_url = ews_url_of(ProtocolKind::Exch).or_else(|| ews_url_of(ProtocolKind::Expr));
    let user = response.child("User");
    let user_text = |name: &str| user.and_then(|u| u.child_text(name)).map(str::to_owned);
    Ok(AccountSettings {
        ews_url,
        display_name: user_text("DisplayName"),
        autodiscover_smtp_address: user_text("AutoDiscoverSMTPAddress"),
        microsoft_online: account.child_text("MicrosoftOnline").and_then(parse_bool),
        protocols,
    })
}

fn protocol(block: &Element) -> ProtocolInfo {
    let text = |name: &str| block.child_text(name).map(str::to_owned);
    ProtocolInfo {
        kind: ProtocolKind::from_type(block.child_text("Type").unwrap_or_default()),
        server: text("Server"),
        server_version: text("ServerVersion"),
        ews_url: text("EwsUrl"),
        as_url: text("ASUrl"),
        auth_package: text("AuthPackage"),
        ssl: block.child_text("SSL").and_then(parse_bool),
    }
}

/// POX booleans appear as `True`/`False` and `On`/`Off` in any case.
fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => Some(true),
        "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// What a SOAP Autodiscover `GetUserSettings` call answered (Exchange 2010+ `autodiscover.svc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSettingsResponse {
    /// `ErrorCode=NoError`: the requested settings.
    Settings(UserSettings),
    /// `RedirectAddress`: repeat with this e-mail address (bounded hops, as for POX).
    RedirectAddr(String),
    /// `RedirectUrl`: repeat against this Autodiscover URL (HTTPS only, bounded hops).
    RedirectUrl(String),
    /// A request-level or user-level error, e.g. `InvalidSetting`, `InternalServerError`,
    /// `InvalidUser`; or a SOAP fault (its `faultcode`/`faultstring`).
    Error {
        /// `ErrorCode` text.
        code: String,
        /// `ErrorMessage` text.
        message: String,
    },
}

/// String-valued settings from a `GetUserSettings` response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserSettings {
    /// `InternalEwsUrl`, else `ExternalEwsUrl` (same internal-first preference as POX).
    pub ews_url: Option<String>,
    /// Every `UserSetting` with a `Value`, as (`Name`, `Value`), in document order.
    pub settings: Vec<(String, String)>,
}

impl UserSettings {
    /// Looks a setting up by name, e.g. `"UserDisplayName"` or `"CasVersion"`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.settings.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Parses a SOAP `GetUserSettings` response body. Only the first `UserResponse` is read: the
/// daemon asks about one mailbox at a time.
pub fn parse_user_settings_response(xml: &[u8]) -> Result<UserSettingsResponse, XmlError> {
    let root = xml::parse(xml, LIMITS)?;
    root.expect_name("Envelope")?;
    let body = root.child("Body").ok_or(XmlError::Missing("Envelope/Body"))?;
    if let Some(fault) = body.child("Fault") {
        return Ok(UserSettingsResponse::Error {
            code: fault.child_text("faultcode").unwrap_or_default().to_owned(),
            message: fault.child_text("faultstring").unwrap_or_default().to_owned(),
        });
    }
    let response = body
        .child("GetUserSettingsResponseMessage")
        .and_then(|m| m.child("Response"))
        .ok_or(XmlError::Missing("Body/GetUserSettingsResponseMessage/Response"))?;
    if let Some(error) = ads_error(response) {
        return Ok(error);
    }
    let user = response
        .child("UserResponses")
        .and_then(|u| u.child("UserResponse"))
        .ok_or(XmlError::Missing("Response/UserResponses/UserResponse"))?;
    match user.child_text("ErrorCode").unwrap_or("NoError") {
        "RedirectAddress" => user
            .child_text("RedirectTarget")
            .map(|t| UserSettingsResponse::RedirectAddr(t.to_owned()))
            .ok_or(XmlError::Missing("UserResponse/RedirectTarget")),
        "RedirectUrl" => user
            .child_text("RedirectTarget")
            .map(|t| UserSettingsResponse::RedirectUrl(t.to_owned()))
            .ok_or(XmlError::Missing("UserResponse/RedirectTarget")),
        _ => Ok(ads_error(user).unwrap_or_else(|| user_settings(user))),
    }
}

/// `Some(Error)` when `element`'s `ErrorCode` is present and not `NoError`.
fn ads_error(element: &Element) -> Option<UserSettingsResponse> {
    let code = element.child_text("ErrorCode")?;
    (code != "NoError").then(|| UserSettingsResponse::Error {
        code: code.to_owned(),
        message: element.child_text("ErrorMessage").unwrap_or_default().to_owned(),
    })
}

fn user_settings(user: &Element) -> UserSettingsResponse {
    let settings: Vec<(String, String)> = user
        .child("UserSettings")
        .into_iter()
        .flat_map(|s| s.children_named("UserSetting"))
        .filter_map(|s| {
            let name = s.child_text("Name")?;
            let value = s.child_text("Value")?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    let mut result = UserSettings { ews_url: None, settings };
    result.ews_url =
        result.get("InternalEwsUrl").or_else(|| result.get("ExternalEwsUrl")).map(str::to_owned);
    UserSettingsResponse::Settings(result)
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

    fn pox(rel: &str) -> AutodiscoverResponse {
        parse_response(vector(&format!("ews_autodiscover/{rel}")).as_bytes()).unwrap()
    }

    fn pox_settings(xml: &str) -> AccountSettings {
        match parse_response(xml.as_bytes()).unwrap() {
            AutodiscoverResponse::Settings(s) => s,
            other => panic!("expected settings, got {other:?}"),
        }
    }

    fn soap(rel: &str) -> UserSettingsResponse {
        parse_user_settings_response(vector(&format!("ews_autodiscover/{rel}")).as_bytes()).unwrap()
    }

    /// (namespace, local name, attributes without xmlns, trimmed text) for every element, in
    /// document order: a namespace-aware structural fingerprint of a document.
    type Fingerprint = Vec<(String, String, Vec<(String, String)>, String)>;

    fn fingerprint(xml: &str) -> Fingerprint {
        use quick_xml::events::Event;
        use quick_xml::name::ResolveResult;
        let mut reader = quick_xml::NsReader::from_str(xml);
        let mut out: Fingerprint = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        loop {
            let (ns, event) = reader.read_resolved_event().unwrap();
            let ns = match ns {
                ResolveResult::Bound(ns) => ns.0.to_owned(),
                ResolveResult::Unbound => String::new(),
                ResolveResult::Unknown(p) => panic!("undeclared prefix {p}"),
            };
            match event {
                Event::Start(ref s) | Event::Empty(ref s) => {
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
                    out.push((ns, s.local_name().as_ref().to_owned(), attrs, String::new()));
                    if matches!(event, Event::Start(_)) {
                        open.push(out.len() - 1);
                    }
                }
                Event::End(_) => {
                    let i = open.pop().unwrap();
                    out[i].3 = out[i].3.trim().to_owned();
                }
                Event::Text(t) => {
                    if let Some(&i) = open.last() {
                        out[i].3.push_str(&t.xml10_content());
                    }
                }
                Event::GeneralRef(r) => {
                    let i = *open.last().unwrap();
                    out[i].3.push_str(quick_xml::escape::resolve_xml_entity(&r).unwrap());
                }
                Event::Eof => break,
                _ => {}
            }
        }
        out
    }

    // ---- request -------------------------------------------------------------------------

    #[test]
    fn request_matches_microsoft_sample_byte_for_byte() {
        let sample = vector("ews_autodiscover/pox_request_mara.xml");
        assert_eq!(request_body("mara@contoso.com").trim_end(), sample.trim_end());
    }

    #[test]
    fn request_is_structurally_equal_to_both_samples() {
        for (file, email) in [
            ("pox_request_mara.xml", "mara@contoso.com"),
            ("pox_request_reference.xml", "user@contoso.com"),
        ] {
            let sample = vector(&format!("ews_autodiscover/{file}"));
            assert_eq!(fingerprint(&request_body(email)), fingerprint(&sample), "{file}");
        }
    }

    #[test]
    fn request_escapes_the_address() {
        let email = "a<b>&\"c'@example.com";
        let body = request_body(email);
        assert!(body.contains("a&lt;b&gt;&amp;&quot;c&apos;@example.com"));
        let tree = xml::parse(body.as_bytes(), LIMITS).unwrap();
        let addr = tree.child("Request").and_then(|r| r.child_text("EMailAddress"));
        assert_eq!(addr, Some(email));
        // Injection attempt stays text.
        let body = request_body("x</EMailAddress><Evil/>@example.com");
        let tree = xml::parse(body.as_bytes(), LIMITS).unwrap();
        let request = tree.child("Request").unwrap();
        assert!(request.child("Evil").is_none());
        assert_eq!(request.children.len(), 2);
    }

    #[test]
    fn request_replaces_characters_xml_cannot_carry() {
        let body = request_body("a\u{0}b\u{1b}@example.com");
        let tree = xml::parse(body.as_bytes(), LIMITS).unwrap();
        let addr = tree.child("Request").and_then(|r| r.child_text("EMailAddress"));
        assert_eq!(addr, Some("a\u{FFFD}b\u{FFFD}@example.com"));
    }

    // ---- POX responses: Microsoft samples ------------------------------------------------

    #[test]
    fn full_onprem_settings() {
        let AutodiscoverResponse::Settings(s) = pox("pox_response_settings_full_onprem.xml") else {
            panic!("expected settings");
        };
        assert_eq!(s.ews_url.as_deref(), Some("https://mail.contoso.com/EWS/Exchange.asmx"));
        assert_eq!(s.display_name.as_deref(), Some("Mara Whitley"));
        assert_eq!(s.autodiscover_smtp_address.as_deref(), Some("mara@contoso.com"));
        assert_eq!(s.microsoft_online, Some(false));
        // Only the three top-level blocks; the EXCH block nested in WEB/Internal is not one.
        let kinds: Vec<_> = s.protocols.iter().map(|p| p.kind.clone()).collect();
        assert_eq!(kinds, [ProtocolKind::Exch, ProtocolKind::Expr, ProtocolKind::Web]);
        let exch = &s.protocols[0];
        assert_eq!(
            exch.server.as_deref(),
            Some("5f76be3c-9138-4f66-85e0-21bc23ca35f0@contoso.com")
        );
        assert_eq!(exch.server_version.as_deref(), Some("73C08204"));
        assert_eq!(exch.server_build(), Some(ExchangeBuild { major: 15, minor: 0, build: 516 }));
        assert_eq!(exch.as_url.as_deref(), Some("https://mail.contoso.com/EWS/Exchange.asmx"));
        let expr = &s.protocols[1];
        assert_eq!(expr.server.as_deref(), Some("mail.contoso.com"));
        assert_eq!(expr.ews_url, None);
        assert_eq!(expr.auth_package.as_deref(), Some("Ntlm"));
        assert_eq!(expr.ssl, Some(false));
    }

    #[test]
    fn reference_response_without_ews_url() {
        // Exchange 2007-era sample: ASUrl only, no EwsUrl in any block.
        let AutodiscoverResponse::Settings(s) = pox("pox_response_reference_exch_expr_web.xml")
        else {
            panic!("expected settings");
        };
        assert_eq!(s.ews_url, None);
        assert_eq!(s.display_name.as_deref(), Some("First Last"));
        assert_eq!(s.microsoft_online, None);
        assert_eq!(s.protocols.len(), 3);
        let exch = &s.protocols[0];
        assert_eq!(exch.kind, ProtocolKind::Exch);
        assert_eq!(exch.server.as_deref(), Some("MBX-SERVER.mail.internal.contoso.com"));
        assert_eq!(exch.server_build(), Some(ExchangeBuild { major: 8, minor: 0, build: 647 }));
        assert_eq!(exch.as_url.as_deref(), Some("https://mail.contoso.com/ews/exchange.asmx"));
        assert_eq!(s.protocols[1].server.as_deref(), Some("Exchange.contoso.com"));
        assert_eq!(s.protocols[2].kind, ProtocolKind::Web);
    }

    #[test]
    fn error_600() {
        assert_eq!(
            pox("pox_response_error_600.xml"),
            AutodiscoverResponse::Error { code: "600".into(), message: "Invalid Request".into() }
        );
    }

    #[test]
    fn redirect_addr_sample() {
        assert_eq!(
            pox("pox_response_redirectAddr.xml"),
            AutodiscoverResponse::RedirectAddr("elvin@mail.contoso.com".into())
        );
    }

    // ---- POX responses: exchangelib fixtures ---------------------------------------------

    #[test]
    fn exchangelib_redirects() {
        assert_eq!(
            pox("exchangelib_pox_redirectAddr_with_user.xml"),
            AutodiscoverResponse::RedirectAddr("foo@example.com".into())
        );
        assert_eq!(
            pox("exchangelib_pox_redirectUrl_with_user.xml"),
            AutodiscoverResponse::RedirectUrl("https://example.com/foo.asmx".into())
        );
        let addr = vector("ews_autodiscover/exchangelib_pox_redirectAddr_template.xml")
            .replace("{address}", "bob@example.org");
        assert_eq!(
            parse_response(addr.as_bytes()).unwrap(),
            AutodiscoverResponse::RedirectAddr("bob@example.org".into())
        );
        let url = vector("ews_autodiscover/exchangelib_pox_redirectUrl_template.xml")
            .replace("{ews_url}", "https://ad.example.org/autodiscover/autodiscover.xml");
        assert_eq!(
            parse_response(url.as_bytes()).unwrap(),
            AutodiscoverResponse::RedirectUrl(
                "https://ad.example.org/autodiscover/autodiscover.xml".into()
            )
        );
    }

    #[test]
    fn exchangelib_settings_prefer_exch_then_expr() {
        let both =
            pox_settings(&vector("ews_autodiscover/exchangelib_pox_settings_exch_and_expr.xml"));
        // Our preference is EXCH first (exchangelib prefers EXPR; both URLs stay available).
        assert_eq!(both.ews_url.as_deref(), Some("https://exch.example.com/EWS/Exchange.asmx"));
        assert_eq!(
            both.protocols[1].ews_url.as_deref(),
            Some("https://expr.example.com/EWS/Exchange.asmx")
        );
        assert_eq!(both.autodiscover_smtp_address.as_deref(), Some("john@demo.affect-it.dk"));

        let exch = pox_settings(&vector("ews_autodiscover/exchangelib_pox_settings_exch_only.xml"));
        assert_eq!(exch.ews_url.as_deref(), Some("https://exch.example.com/EWS/Exchange.asmx"));

        let expr = vector("ews_autodiscover/exchangelib_pox_settings_template_expr_ewsurl.xml")
            .replace("{address}", "carol@example.org")
            .replace("{ews_url}", "https://expr.example.org/EWS/Exchange.asmx");
        let expr = pox_settings(&expr);
        assert_eq!(expr.ews_url.as_deref(), Some("https://expr.example.org/EWS/Exchange.asmx"));
        assert_eq!(expr.autodiscover_smtp_address.as_deref(), Some("carol@example.org"));
        assert_eq!(expr.protocols[0].kind, ProtocolKind::Expr);
    }

    #[test]
    fn exchangelib_unknown_protocol_type_is_tolerated() {
        let s =
            pox_settings(&vector("ews_autodiscover/exchangelib_pox_settings_unknown_type_XXX.xml"));
        assert_eq!(s.protocols.len(), 1);
        assert_eq!(s.protocols[0].kind, ProtocolKind::Other("XXX".into()));
        assert_eq!(
            s.protocols[0].ews_url.as_deref(),
            Some("https://xxx.example.com/EWS/Exchange.asmx")
        );
        // Unknown types are never used as the EWS endpoint.
        assert_eq!(s.ews_url, None);
    }

    // ---- POX responses: own fixtures -----------------------------------------------------

    #[test]
    fn expr_url_used_when_exch_block_has_none() {
        let xml = r#"<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
          <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
            <Account><Action>settings</Action>
              <Protocol><Type>EXCH</Type><EwsUrl/></Protocol>
              <Protocol><Type>EXPR</Type><EwsUrl> https://ext.example.com/EWS/Exchange.asmx </EwsUrl></Protocol>
            </Account></Response></Autodiscover>"#;
        assert_eq!(
            pox_settings(xml).ews_url.as_deref(),
            Some("https://ext.example.com/EWS/Exchange.asmx")
        );
    }

    #[test]
    fn prefixed_elements_and_entities_in_urls() {
        let xml = r#"<?xml version="1.0"?>
          <a:Autodiscover xmlns:a="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
            <b:Response xmlns:b="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
              <b:Account><b:Action>settings</b:Action>
                <b:Protocol><b:Type>EXCH</b:Type>
                  <b:EwsUrl>https://m.example.com/EWS/Exchange.asmx?a=1&amp;b=&#x32;</b:EwsUrl>
                </b:Protocol>
              </b:Account></b:Response></a:Autodiscover>"#;
        assert_eq!(
            pox_settings(xml).ews_url.as_deref(),
            Some("https://m.example.com/EWS/Exchange.asmx?a=1&b=2")
        );
    }

    #[test]
    fn error_inside_account_and_cdata() {
        let xml = r#"<Autodiscover><Response><Account>
            <Error><ErrorCode>603</ErrorCode><Message><![CDATA[Account <x> not found]]></Message></Error>
            </Account></Response></Autodiscover>"#;
        assert_eq!(
            parse_response(xml.as_bytes()).unwrap(),
            AutodiscoverResponse::Error {
                code: "603".into(),
                message: "Account <x> not found".into()
            }
        );
    }

    #[test]
    fn structural_errors() {
        let cases: [(&str, XmlError); 5] = [
            (
                "<html><body>Login</body></html>",
                XmlError::UnexpectedRoot { expected: "Autodiscover", found: "html".into() },
            ),
            ("<Autodiscover/>", XmlError::Missing("Autodiscover/Response")),
            (
                "<Autodiscover><Response/></Autodiscover>",
                XmlError::Missing("Autodiscover/Response/Account"),
            ),
            (
                "<Autodiscover><Response><Account><Action>redirectAddr</Action></Account></Response></Autodiscover>",
                XmlError::Missing("Account/RedirectAddr"),
            ),
            (
                "<Autodiscover><Response><Account><Action>dance</Action></Account></Response></Autodiscover>",
                XmlError::InvalidValue { field: "Account/Action", value: "dance".into() },
            ),
        ];
        for (xml, expected) in cases {
            assert_eq!(parse_response(xml.as_bytes()).unwrap_err(), expected, "{xml}");
        }
        let no_protocol = "<Autodiscover><Response><Account><Action>settings</Action></Account></Response></Autodiscover>";
        assert_eq!(
            parse_response(no_protocol.as_bytes()).unwrap_err(),
            XmlError::Missing("Account/Protocol")
        );
    }

    // ---- hostile and broken documents ----------------------------------------------------

    const BILLION_LAUGHS: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Autodiscover><Response><Account><Action>redirectAddr</Action><RedirectAddr>&lol9;</RedirectAddr></Account></Response></Autodiscover>"#;

    const XXE: &str = r#"<?xml version="1.0"?>
<!DOCTYPE Autodiscover [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<Autodiscover><Response><Account><Action>redirectAddr</Action><RedirectAddr>&xxe;</RedirectAddr></Account></Response></Autodiscover>"#;

    #[test]
    fn billion_laughs_is_refused_quickly() {
        let started = std::time::Instant::now();
        assert_eq!(parse_response(BILLION_LAUGHS.as_bytes()).unwrap_err(), XmlError::Doctype);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn external_entity_is_refused() {
        assert_eq!(parse_response(XXE.as_bytes()).unwrap_err(), XmlError::Doctype);
    }

    #[test]
    fn undeclared_entities_are_never_expanded() {
        // Same payloads with the DOCTYPE stripped: the references stay unresolvable.
        let xml = "<Autodiscover><Response><Account><Action>redirectAddr</Action>\
                   <RedirectAddr>&xxe;</RedirectAddr></Account></Response></Autodiscover>";
        assert_eq!(
            parse_response(xml.as_bytes()).unwrap_err(),
            XmlError::UnknownEntity("xxe".into())
        );
        let xml = r#"<Autodiscover x="&lol9;"/>"#;
        assert_eq!(
            parse_response(xml.as_bytes()).unwrap_err(),
            XmlError::UnknownEntity("lol9".into())
        );
    }

    #[test]
    fn size_cap() {
        let mut xml = b"<Autodiscover>".to_vec();
        xml.resize(MAX_RESPONSE_BYTES + 1, b' ');
        assert_eq!(
            parse_response(&xml).unwrap_err(),
            XmlError::TooLarge { size: MAX_RESPONSE_BYTES + 1, limit: MAX_RESPONSE_BYTES }
        );
    }

    #[test]
    fn depth_cap() {
        let deep = format!("{}{}", "<a>".repeat(MAX_DEPTH + 1), "</a>".repeat(MAX_DEPTH + 1));
        assert_eq!(
            parse_response(deep.as_bytes()).unwrap_err(),
            XmlError::TooDeep { limit: MAX_DEPTH }
        );
        // Exactly at the cap is fine (then rejected for its content, not its depth).
        let ok = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(matches!(
            parse_response(ok.as_bytes()).unwrap_err(),
            XmlError::UnexpectedRoot { .. }
        ));
    }

    #[test]
    fn element_count_cap() {
        let wide = format!("<Autodiscover>{}</Autodiscover>", "<a/>".repeat(MAX_ELEMENTS));
        assert_eq!(
            parse_response(wide.as_bytes()).unwrap_err(),
            XmlError::TooManyElements { limit: MAX_ELEMENTS }
        );
    }

    #[test]
    fn malformed_documents_give_clear_errors() {
        let mismatched = parse_response(b"<Autodiscover><Response></Autodiscover>").unwrap_err();
        assert!(matches!(mismatched, XmlError::Malformed { .. }), "{mismatched:?}");
        assert!(mismatched.to_string().starts_with("malformed XML near byte"));

        let truncated = parse_response(b"<Autodiscover><Response>").unwrap_err();
        assert!(
            matches!(truncated, XmlError::Truncated(_) | XmlError::Malformed { .. }),
            "{truncated:?}"
        );

        assert_eq!(parse_response(b"").unwrap_err(), XmlError::NoRoot);
        assert_eq!(parse_response(b"  <!-- nothing -->  ").unwrap_err(), XmlError::NoRoot);
        assert!(matches!(
            parse_response(b"<Autodiscover/><Autodiscover/>").unwrap_err(),
            XmlError::Malformed { .. }
        ));
        assert!(matches!(
            parse_response(b"junk<Autodiscover/>").unwrap_err(),
            XmlError::Malformed { .. }
        ));
        assert!(matches!(
            parse_response(b"<Autodiscover>a & b</Autodiscover>").unwrap_err(),
            XmlError::Malformed { .. }
        ));
        assert_eq!(
            parse_response(b"<Autodiscover>\xff</Autodiscover>").unwrap_err(),
            XmlError::NotUtf8 { offset: 14 }
        );
    }

    #[test]
    fn bom_is_accepted() {
        let xml = "\u{feff}<Autodiscover><Response><Account><Action>redirectAddr</Action>\
                   <RedirectAddr>x@example.com</RedirectAddr></Account></Response></Autodiscover>";
        assert_eq!(
            parse_response(xml.as_bytes()).unwrap(),
            AutodiscoverResponse::RedirectAddr("x@example.com".into())
        );
    }

    // ---- SOAP GetUserSettings ------------------------------------------------------------

    #[test]
    fn soap_settings_sample_is_truncated_but_parses_once_patched() {
        // Doc bug (vectors README caveat 2): the sample ends with `</s:Envelope` (no `>`).
        let raw = vector("ews_autodiscover/soap_getusersettings_response.xml");
        let err = parse_user_settings_response(raw.as_bytes()).unwrap_err();
        assert!(matches!(err, XmlError::Malformed { .. } | XmlError::Truncated(_)), "{err:?}");

        let patched = format!("{}>", raw.trim_end());
        let UserSettingsResponse::Settings(s) =
            parse_user_settings_response(patched.as_bytes()).unwrap()
        else {
            panic!("expected settings");
        };
        assert_eq!(s.ews_url.as_deref(), Some("https://mail.contoso.com/EWS/Exchange.asmx"));
        assert_eq!(s.get("UserDisplayName"), Some("Mara Whitley"));
        assert_eq!(s.get("CasVersion"), Some("15.01.0160.004"));
        assert_eq!(s.get("InternalMailboxServer"), Some("mail.contoso.com"));
        assert_eq!(s.get("GroupingInformation"), Some("CONTOSO-1"));
        // Entities are decoded exactly once: `&amp;amp;` in the source is the text `&amp;`.
        assert_eq!(
            s.get("EcpTextMessagingUrlFragment"),
            Some("?p=sms/textmessaging.slab&amp;exsvurl=1")
        );
        // Doc bug kept: spaces inside the deployment id.
        assert_eq!(s.get("UserDeploymentId"), Some("649d50b8-a1ce-4bac-8ace-2321   e463f701"));
        assert_eq!(s.settings.len(), 15);
    }

    #[test]
    fn soap_redirect_address_sample() {
        assert_eq!(
            soap("soap_getusersettings_response_redirectaddress.xml"),
            UserSettingsResponse::RedirectAddr("elvin@mail.contoso.com".into())
        );
    }

    #[test]
    fn soap_exchangelib_fixtures() {
        assert_eq!(
            soap("exchangelib_soap_getusersettings_error_internalservererror.xml"),
            UserSettingsResponse::Error {
                code: "InternalServerError".into(),
                message: "An internal error".into()
            }
        );
        assert_eq!(
            soap("exchangelib_soap_getusersettings_error_invalidsetting.xml"),
            UserSettingsResponse::Error {
                code: "InvalidSetting".into(),
                message: "An error message".into()
            }
        );
        let redirect = vector(
            "ews_autodiscover/exchangelib_soap_getusersettings_redirectaddress_template.xml",
        )
        .replace("{address}", "dave@example.org");
        assert_eq!(
            parse_user_settings_response(redirect.as_bytes()).unwrap(),
            UserSettingsResponse::RedirectAddr("dave@example.org".into())
        );
        let redirect =
            vector("ews_autodiscover/exchangelib_soap_getusersettings_redirecturl_template.xml")
                .replace(
                    "{autodiscover_url}",
                    "https://ad.example.org/autodiscover/autodiscover.svc",
                );
        assert_eq!(
            parse_user_settings_response(redirect.as_bytes()).unwrap(),
            UserSettingsResponse::RedirectUrl(
                "https://ad.example.org/autodiscover/autodiscover.svc".into()
            )
        );
        // Caveat 7: `i:nil` with `xmlns:i` declared on a sibling only. Local-name matching does
        // not resolve prefixes, so it parses.
        let settings =
            vector("ews_autodiscover/exchangelib_soap_getusersettings_settings_template.xml")
                .replace("{address}", "erin@example.org")
                .replace("{ews_url}", "https://ews.example.org/EWS/Exchange.asmx");
        let UserSettingsResponse::Settings(s) =
            parse_user_settings_response(settings.as_bytes()).unwrap()
        else {
            panic!("expected settings");
        };
        assert_eq!(s.ews_url.as_deref(), Some("https://ews.example.org/EWS/Exchange.asmx"));
        assert_eq!(s.get("AutoDiscoverSMTPAddress"), Some("erin@example.org"));
    }

    #[test]
    fn soap_internal_url_preferred_and_user_error() {
        let xml = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
          <GetUserSettingsResponseMessage xmlns="http://schemas.microsoft.com/exchange/2010/Autodiscover">
          <Response><ErrorCode>NoError</ErrorCode><UserResponses><UserResponse>
            <ErrorCode>NoError</ErrorCode><UserSettings>
              <UserSetting><Name>ExternalEwsUrl</Name><Value>https://ext/EWS/Exchange.asmx</Value></UserSetting>
              <UserSetting><Name>InternalEwsUrl</Name><Value>https://int/EWS/Exchange.asmx</Value></UserSetting>
              <UserSetting><Name>AlternateMailboxes</Name></UserSetting>
            </UserSettings></UserResponse></UserResponses></Response>
          </GetUserSettingsResponseMessage></s:Body></s:Envelope>"#;
        let UserSettingsResponse::Settings(s) =
            parse_user_settings_response(xml.as_bytes()).unwrap()
        else {
            panic!("expected settings");
        };
        assert_eq!(s.ews_url.as_deref(), Some("https://int/EWS/Exchange.asmx"));
        assert_eq!(s.settings.len(), 2);

        let xml = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
          <GetUserSettingsResponseMessage><Response><ErrorCode>NoError</ErrorCode>
          <UserResponses><UserResponse><ErrorCode>InvalidUser</ErrorCode>
          <ErrorMessage>Invalid user: 'x@example.com'</ErrorMessage></UserResponse></UserResponses>
          </Response></GetUserSettingsResponseMessage></s:Body></s:Envelope>"#;
        assert_eq!(
            parse_user_settings_response(xml.as_bytes()).unwrap(),
            UserSettingsResponse::Error {
                code: "InvalidUser".into(),
                message: "Invalid user: 'x@example.com'".into()
            }
        );
    }

    #[test]
    fn soap_hostile_documents_are_refused() {
        let xxe = XXE.replace("Autodiscover", "Envelope");
        assert_eq!(parse_user_settings_response(xxe.as_bytes()).unwrap_err(), XmlError::Doctype);
        assert_eq!(
            parse_user_settings_response(BILLION_LAUGHS.as_bytes()).unwrap_err(),
            XmlError::Doctype
        );
    }
}
