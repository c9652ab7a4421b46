//! A small, bounded, entity-free XML tree, shared by the Autodiscover and EWS parsers, and the
//! [`XmlError`] both report.
//!
//! ```text
//!   bytes ─size cap─▶ UTF-8 (BOM stripped) ─quick-xml events─▶ Builder ─▶ Element (root)
//!                         DOCTYPE ─▶ XmlError::Doctype     depth / element caps ─▶ XmlError::Too*
//!                         &name; ─▶ only the five predefined entities and character references
//! ```
//!
//! Responses come from servers we do not control, often before we know they are really Exchange,
//! so the parser is defensive: documents are capped in size, nesting depth and element count
//! ([`Limits`], chosen by each caller for its documents), must be UTF-8, and any `<!DOCTYPE>` is
//! refused, so no entity is ever declared, let alone expanded (no XXE, no "billion laughs").
//! Elements and attributes are matched by local name only, because Exchange versions differ in
//! prefixes and default namespaces.
//!
//! Why a tree rather than serde: the limits and the refusal of DOCTYPEs and unknown entities have
//! to be enforced on the raw event stream, and the responses are small enough that navigating a
//! tree by local name is simpler and more tolerant of the namespace and prefix variations seen in
//! the wild than a derived schema.

use quick_xml::XmlVersion;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use thiserror::Error;

/// Why an XML document could not be turned into a typed response. One enum for the Autodiscover
/// and EWS parsers, so that limit and well-formedness failures read the same everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum XmlError {
    /// The body is larger than the caller's cap; refused unparsed.
    #[error("XML document is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Size of the refused body.
        size: usize,
        /// The cap that applied.
        limit: usize,
    },
    /// Elements nest deeper than the cap.
    #[error("XML elements nest deeper than the limit of {limit}")]
    TooDeep {
        /// The cap that applied.
        limit: usize,
    },
    /// The document has more elements than the cap.
    #[error("XML document has more than {limit} elements")]
    TooManyElements {
        /// The cap that applied.
        limit: usize,
    },
    /// The body is not UTF-8 (Exchange always answers in UTF-8).
    #[error("XML document is not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The document carries a `<!DOCTYPE>`. Exchange never sends one; refusing it means no
    /// entity can be declared, so none can be expanded (XXE, billion laughs).
    #[error("XML document contains a DOCTYPE; DTDs and entity declarations are refused")]
    Doctype,
    /// A reference to an entity other than the five predefined XML ones (`&lt;` etc.).
    #[error("XML document references the undefined entity &{0};")]
    UnknownEntity(String),
    /// The document is not well-formed XML.
    #[error("malformed XML near byte {offset}: {reason}")]
    Malformed {
        /// Byte offset where the problem was detected.
        offset: u64,
        /// What the parser objected to.
        reason: String,
    },
    /// The body holds no element at all (empty or only whitespace/comments).
    #[error("XML document has no root element")]
    NoRoot,
    /// The body ended while an element was still open, e.g. a cut-off response.
    #[error("XML document ends before element <{0}> is closed")]
    Truncated(String),
    /// Well-formed, but not the kind of document expected here.
    #[error("unexpected root element <{found}>, expected <{expected}>")]
    UnexpectedRoot {
        /// Local name expected.
        expected: &'static str,
        /// Local name found.
        found: String,
    },
    /// A required element is absent.
    #[error("required element {0} is missing")]
    Missing(&'static str),
    /// An element holds a value outside what the schema allows.
    #[error("element {field} has an invalid value {value:?}")]
    InvalidValue {
        /// Element (or attribute) name.
        field: &'static str,
        /// The offending value, shortened for display.
        value: String,
    },
}

impl XmlError {
    /// Builds [`XmlError::InvalidValue`], cutting long values so error messages stay readable.
    pub(crate) fn invalid(field: &'static str, value: &str) -> Self {
        const MAX_CHARS: usize = 80;
        let mut shown: String = value.chars().take(MAX_CHARS).collect();
        if value.chars().nth(MAX_CHARS).is_some() {
            shown.push('…');
        }
        Self::InvalidValue { field, value: shown }
    }
}

/// Caps applied while building the tree. Each caller sets its own, sized to its documents.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest body accepted; checked before any parsing work is spent.
    pub(crate) max_bytes: usize,
    /// Deepest element nesting accepted.
    pub(crate) max_depth: usize,
    /// Most elements accepted in one document; bounds the tree's memory.
    pub(crate) max_elements: usize,
}

/// One element: local name, non-`xmlns` attributes by local name, direct text (including
/// CDATA and resolved references) and child elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

impl Element {
    /// `Ok` when this element's local name is `expected`; for checking a document's root.
    pub(crate) fn expect_name(&self, expected: &'static str) -> Result<(), XmlError> {
        if self.name == expected {
            Ok(())
        } else {
            Err(XmlError::UnexpectedRoot { expected, found: self.name.clone() })
        }
    }

    /// The first child element named `local`.
    pub(crate) fn child(&self, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == local)
    }

    /// Every child element named `local`, in document order.
    pub(crate) fn children_named<'a>(
        &'a self,
        local: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == local)
    }

    /// The value of the attribute named `local`.
    pub(crate) fn attr(&self, local: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == local).map(|(_, v)| v.as_str())
    }

    /// Direct text with surrounding whitespace removed.
    pub(crate) fn text(&self) -> &str {
        self.text.trim()
    }

    /// Trimmed text of the first child named `local`; `None` if absent or empty, since
    /// `<EwsUrl/>` carries no more information than no `EwsUrl`.
    pub(crate) fn child_text(&self, local: &str) -> Option<&str> {
        self.child(local).map(Element::text).filter(|t| !t.is_empty())
    }
}

/// Escapes text for element content or a double- or single-quoted attribute value. Characters
/// XML 1.0 cannot represent even escaped become U+FFFD, so the output is always well-formed.
pub(crate) fn escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Parses `xml` into its root element, enforcing `limits`, refusing DOCTYPEs and resolving
/// only the predefined XML entities and character references.
pub(crate) fn parse(xml: &[u8], limits: Limits) -> Result<Element, XmlError> {
    if xml.len() > limits.max_bytes {
        return Err(XmlError::TooLarge { size: xml.len(), limit: limits.max_bytes });
    }
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let text =
        std::str::from_utf8(xml).map_err(|e| XmlError::NotUtf8 { offset: e.valid_up_to() })?;
    let mut builder = Builder { limits, stack: Vec::new(), root: None, elements: 0 };
    let mut reader = Reader::from_str(text);
    loop {
        let event = reader.read_event().map_err(|e| XmlError::Malformed {
            offset: reader.error_position(),
            reason: e.to_string(),
        })?;
        let offset = reader.buffer_position();
        match event {
            Event::Start(start) => {
                let element = builder.open(&start, offset)?;
                builder.stack.push(element);
            }
            Event::Empty(start) => {
                let element = builder.open(&start, offset)?;
                builder.close(element);
            }
            Event::End(_) => {
                // quick-xml checks that end tags match start tags.
                let element = builder.stack.pop().ok_or_else(|| XmlError::Malformed {
                    offset,
                    reason: "end tag without start tag".to_owned(),
                })?;
                builder.close(element);
            }
            Event::Text(t) => builder.text(&t.xml10_content(), offset)?,
            Event::CData(c) => builder.text(&c.xml10_content(), offset)?,
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => resolve_xml_entity(&r)
                        .ok_or_else(|| XmlError::UnknownEntity(r.to_string()))?
                        .to_owned(),
                    Err(e) => {
                        return Err(XmlError::Malformed { offset, reason: e.to_string() });
                    }
                };
                builder.text(&resolved, offset)?;
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = builder.stack.last() {
        return Err(XmlError::Truncated(open.name.clone()));
    }
    builder.root.ok_or(XmlError::NoRoot)
}

#[derive(Debug)]
struct Builder {
    limits: Limits,
    stack: Vec<Element>,
    root: Option<Element>,
    elements: usize,
}

impl Builder {
    fn open(&mut self, start: &BytesStart<'_>, offset: u64) -> Result<Element, XmlError> {
        if self.root.is_some() {
            return Err(XmlError::Malformed { offset, reason: "second root element".to_owned() });
        }
        if self.stack.len() >= self.limits.max_depth {
            return Err(XmlError::TooDeep { limit: self.limits.max_depth });
        }
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(XmlError::TooManyElements { limit: self.limits.max_elements });
        }
        let malformed =
            |e: &dyn std::fmt::Display| XmlError::Malformed { offset, reason: e.to_string() };
        let mut attrs = Vec::new();
        for attr in start.attributes() {
            let attr = attr.map_err(|e| malformed(&e))?;
            if attr.key.as_namespace_binding().is_some() {
                continue;
            }
            let value = attr
                .normalized_value_with(XmlVersion::Implicit1_0, 1, resolve_xml_entity)
                .map_err(|e| match e {
                    quick_xml::Error::Escape(
                        quick_xml::escape::EscapeError::UnrecognizedEntity(_, name),
                    ) => XmlError::UnknownEntity(name),
                    other => malformed(&other),
                })?;
            attrs.push((attr.key.local_name().as_ref().to_owned(), value.into_owned()));
        }
        Ok(Element {
            name: start.local_name().as_ref().to_owned(),
            attrs,
            text: String::new(),
            children: Vec::new(),
        })
    }

    fn close(&mut self, element: Element) {
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(element),
            None => self.root = Some(element),
        }
    }

    fn text(&mut self, text: &str, offset: u64) -> Result<(), XmlError> {
        match self.stack.last_mut() {
            Some(parent) => {
                parent.text.push_str(text);
                Ok(())
            }
            None if text.trim().is_empty() => Ok(()),
            None => Err(XmlError::Malformed {
                offset,
                reason: "text outside the root element".to_owned(),
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const WIDE: Limits = Limits { max_bytes: 1024, max_depth: 4, max_elements: 8 };

    #[test]
    fn invalid_value_is_shortened() {
        let long = "x".repeat(500);
        let XmlError::InvalidValue { value, .. } = XmlError::invalid("f", &long) else {
            panic!("wrong variant");
        };
        assert_eq!(value.chars().count(), 81);
    }

    #[test]
    fn the_callers_limits_apply() {
        let doc = "<a><b><c><d/></c></b></a>";
        assert!(parse(doc.as_bytes(), WIDE).is_ok());
        let shallow = Limits { max_depth: 3, ..WIDE };
        assert_eq!(parse(doc.as_bytes(), shallow).unwrap_err(), XmlError::TooDeep { limit: 3 });
        let few = Limits { max_elements: 3, ..WIDE };
        assert_eq!(parse(doc.as_bytes(), few).unwrap_err(), XmlError::TooManyElements { limit: 3 });
        let small = Limits { max_bytes: 10, ..WIDE };
        assert_eq!(
            parse(doc.as_bytes(), small).unwrap_err(),
            XmlError::TooLarge { size: doc.len(), limit: 10 }
        );
    }

    #[test]
    fn elements_are_found_by_local_name() {
        let doc =
            r#"<p:a xmlns:p="urn:x" xmlns="urn:y" p:k="v"><b>one</b><p:b> two </p:b><c/></p:a>"#;
        let root = parse(doc.as_bytes(), WIDE).unwrap();
        root.expect_name("a").unwrap();
        assert_eq!(root.attr("k"), Some("v"));
        assert_eq!(root.attrs.len(), 1, "xmlns declarations are not attributes");
        let texts: Vec<&str> = root.children_named("b").map(Element::text).collect();
        assert_eq!(texts, ["one", "two"]);
        assert_eq!(root.child_text("c"), None, "an empty element carries no text");
    }
}
