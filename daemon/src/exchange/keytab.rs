//! Service accounts' keytabs: the long-term Kerberos key a service account signs in with
//! instead of a password (`mslinkctl connect --keytab FILE`, admins).
//!
//! The ctl reads the file as the admin and sends its bytes; the daemon parses it here, keeps
//! one key (the account's newest, of the strongest type the Kerberos client takes) and seals
//! that like a password. The file is MIT's keytab format, version 2, as `ktutil`, `kadmin
//! ktadd`, Windows' `ktpass` and Samba write it
//! (<https://web.mit.edu/kerberos/krb5-latest/doc/formats/keytab_file_format.html>):
//!
//! ```text
//!   0x05 0x02, then entries: i32 size (negative: a hole of that many bytes), and in size bytes
//!   u16 components, realm, component..., (each u16 length + bytes), u32 name type,
//!   u32 timestamp, u8 kvno, u16 enctype, u16 length + key, [u32 kvno, superseding the u8]
//! ```
//!
//! Every keytab parser on crates.io is AGPL-licensed or part of a whole Kerberos stack, so this
//! bounded reader of a documented format is ours; `fuzz/` runs it on arbitrary bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mslink_proto::Sensitive;
use serde::{Deserialize, Serialize};

pub use mslink_proto::MAX_KEYTAB_BYTES;

/// The key types the Kerberos client takes, strongest first (RFC 3962's AES with HMAC-SHA1).
const USABLE: [(i32, &str); 2] = [(18, "aes256-cts-hmac-sha1-96"), (17, "aes128-cts-hmac-sha1-96")];

/// Why a keytab cannot be used. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeytabError {
    #[error("the keytab is not one: {0}")]
    Malformed(String),
    #[error(
        "the keytab is in the old version-1 format: export it again with `ktutil` or `kadmin ktadd`"
    )]
    Version1,
    #[error("the keytab holds no key for {wanted} (it holds {})", held.join(", "))]
    NoPrincipal { wanted: String, held: Vec<String> },
    #[error(
        "the keytab holds keys for several accounts ({}): name one with --username",
        held.join(", ")
    )]
    Ambiguous { held: Vec<String> },
    #[error(
        "the keytab holds no AES key for {principal} (only enctypes {}): export one with \
         aes256-cts-hmac-sha1-96 (ktpass /crypto AES256-SHA1)",
        enctypes.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
    )]
    NoUsableKey { principal: String, enctypes: Vec<i32> },
}

/// One key of a keytab.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// `svc-mail@CONTOSO.TEST`: the components joined by `/`, then `@` and the realm.
    pub principal: String,
    pub kvno: u32,
    pub enctype: i32,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("principal", &self.principal)
            .field("kvno", &self.kvno)
            .field("enctype", &self.enctype)
            .finish_non_exhaustive()
    }
}

/// The key a service account's link signs in with, as sealed with the link.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceKey {
    pub principal: String,
    pub kvno: u32,
    pub enctype: i32,
    /// The key's bytes, base64.
    pub key: Sensitive,
}

impl ServiceKey {
    /// The key's bytes.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        BASE64.decode(self.key.expose()).ok()
    }
}

/// Reads every entry of a version-2 keytab.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, KeytabError> {
    if bytes.len() > MAX_KEYTAB_BYTES {
        return Err(KeytabError::Malformed(format!(
            "{} bytes is larger than any keytab ({MAX_KEYTAB_BYTES} at most)",
            bytes.len()
        )));
    }
    let mut reader = Reader(bytes);
    match reader.take(2)? {
        [5, 2] => {}
        [5, 1] => return Err(KeytabError::Version1),
        _ => return Err(KeytabError::Malformed("it does not start with 0x0502".into())),
    }
    let mut entries = Vec::new();
    while !reader.0.is_empty() {
        let size = reader.u32()? as i32;
        let record = reader.take(size.unsigned_abs() as usize)?;
        // A deleted entry leaves a hole.
        if size > 0 {
            entries.push(entry(Reader(record))?);
        }
    }
    Ok(entries)
}

fn entry(mut record: Reader<'_>) -> Result<Entry, KeytabError> {
    let components = record.u16()?;
    let realm = record.text()?;
    let name = (0..components).map(|_| record.text()).collect::<Result<Vec<_>, _>>()?;
    let _name_type = record.u32()?;
    let _timestamp = record.u32()?;
    let kvno8 = record.take(1)?[0];
    let enctype = record.u16()? as i16 as i32;
    let length = record.u16()?;
    let key = record.take(length as usize)?.to_vec();
    // The 32-bit kvno, when the record holds one, supersedes the 8-bit one unless zero.
    let kvno = match record.u32() {
        Ok(kvno) if kvno != 0 => kvno,
        _ => u32::from(kvno8),
    };
    if name.is_empty() || realm.is_empty() {
        return Err(KeytabError::Malformed("an entry names no principal".into()));
    }
    Ok(Entry { principal: format!("{}@{realm}", name.join("/")), kvno, enctype, key })
}

/// The key to sign `wanted` in with (its account name or whole principal, any case; `None`:
/// the keytab's one account): that account's newest key of the strongest usable type.
pub fn key_for(entries: &[Entry], wanted: Option<&str>) -> Result<ServiceKey, KeytabError> {
    let mut held: Vec<String> = Vec::new();
    for entry in entries {
        if !held.contains(&entry.principal) {
            held.push(entry.principal.clone());
        }
    }
    let principal = match wanted {
        Some(wanted) => held.iter().find(|p| names(p, wanted)).cloned().ok_or_else(|| {
            KeytabError::NoPrincipal { wanted: wanted.to_owned(), held: held.clone() }
        })?,
        None => match held.as_slice() {
            [one] => one.clone(),
            [] => return Err(KeytabError::Malformed("it holds no key".into())),
            _ => return Err(KeytabError::Ambiguous { held }),
        },
    };
    let own: Vec<&Entry> = entries.iter().filter(|e| e.principal == principal).collect();
    let newest = own.iter().map(|e| e.kvno).max().unwrap_or_default();
    let usable = USABLE.iter().find_map(|(enctype, _)| {
        own.iter().find(|e| e.kvno == newest && e.enctype == *enctype && !e.key.is_empty())
    });
    let Some(chosen) = usable else {
        let mut enctypes: Vec<i32> =
            own.iter().filter(|e| e.kvno == newest).map(|e| e.enctype).collect();
        enctypes.dedup();
        return Err(KeytabError::NoUsableKey { principal, enctypes });
    };
    Ok(ServiceKey {
        principal,
        kvno: chosen.kvno,
        enctype: chosen.enctype,
        key: Sensitive::new(BASE64.encode(&chosen.key)),
    })
}

/// True when `wanted` (`svc`, `svc@REALM`, `REALM\svc`, `svc@upn.suffix`) names `principal`.
fn names(principal: &str, wanted: &str) -> bool {
    let (account, realm) = principal.rsplit_once('@').unwrap_or((principal, ""));
    let (wanted_account, wanted_realm) = super::kerberos::split_login(wanted);
    account.eq_ignore_ascii_case(wanted_account)
        // A NetBIOS domain (no dot) is not spelled like the realm; anything else must be it.
        && wanted_realm.is_none_or(|r| r.eq_ignore_ascii_case(realm) || !r.contains('.'))
}

/// The name of a key type, for messages.
pub fn enctype_name(enctype: i32) -> String {
    USABLE
        .iter()
        .find(|(e, _)| *e == enctype)
        .map(|(_, name)| (*name).to_owned())
        .unwrap_or_else(|| format!("enctype {enctype}"))
}

/// A bounds-checked big-endian reader.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], KeytabError> {
        if self.0.len() < n {
            return Err(KeytabError::Malformed("it ends inside an entry".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, KeytabError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, KeytabError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn text(&mut self) -> Result<String, KeytabError> {
        let length = self.u16()?;
        let bytes = self.take(length as usize)?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| KeytabError::Malformed("a principal name is not UTF-8".into()))?;
        if text.is_empty() || text.chars().any(|c| c.is_control() || matches!(c, '/' | '@')) {
            return Err(KeytabError::Malformed(format!("a principal name {text:?} is not one")));
        }
        Ok(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One version-2 entry as MIT's `ktutil` writes it, with the 32-bit kvno.
    fn entry_bytes(principal: &str, kvno: u32, enctype: u16, key: &[u8]) -> Vec<u8> {
        let (name, realm) = principal.rsplit_once('@').unwrap();
        let counted = |text: &[u8]| {
            let mut out = (text.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(text);
            out
        };
        let components: Vec<&str> = name.split('/').collect();
        let mut record = (components.len() as u16).to_be_bytes().to_vec();
        record.extend(counted(realm.as_bytes()));
        for component in components {
            record.extend(counted(component.as_bytes()));
        }
        record.extend(1u32.to_be_bytes()); // KRB5_NT_PRINCIPAL
        record.extend(1_764_547_200u32.to_be_bytes());
        record.push(kvno as u8);
        record.extend(enctype.to_be_bytes());
        record.extend(counted(key));
        record.extend(kvno.to_be_bytes());
        let mut out = (record.len() as i32).to_be_bytes().to_vec();
        out.extend(record);
        out
    }

    fn keytab(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![5, 2];
        for entry in entries {
            out.extend_from_slice(entry);
        }
        out
    }

    #[test]
    fn the_newest_strongest_key_of_the_named_account_is_chosen() {
        let bytes = keytab(&[
            entry_bytes("svc-mail@CONTOSO.TEST", 2, 18, &[2; 32]),
            entry_bytes("svc-mail@CONTOSO.TEST", 3, 17, &[3; 16]),
            entry_bytes("svc-mail@CONTOSO.TEST", 3, 18, &[4; 32]),
            entry_bytes("svc-mail@CONTOSO.TEST", 3, 23, &[5; 16]),
            entry_bytes("HTTP/mail.contoso.test@CONTOSO.TEST", 7, 18, &[6; 32]),
        ]);
        let entries = parse(&bytes).unwrap();
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[4].principal, "HTTP/mail.contoso.test@CONTOSO.TEST");
        for wanted in ["svc-mail", "SVC-MAIL@contoso.test", "CONTOSO\\svc-mail"] {
            let key = key_for(&entries, Some(wanted)).unwrap();
            assert_eq!(
                (key.principal.as_str(), key.kvno, key.enctype),
                ("svc-mail@CONTOSO.TEST", 3, 18)
            );
            assert_eq!(key.bytes().unwrap(), vec![4; 32]);
        }
        let Err(KeytabError::Ambiguous { held }) = key_for(&entries, None) else {
            panic!("two accounts need a name");
        };
        assert_eq!(held, ["svc-mail@CONTOSO.TEST", "HTTP/mail.contoso.test@CONTOSO.TEST"]);
        assert!(matches!(
            key_for(&entries, Some("bob@contoso.test")),
            Err(KeytabError::NoPrincipal { .. })
        ));
        assert!(matches!(
            key_for(&entries, Some("svc-mail@fabrikam.test")),
            Err(KeytabError::NoPrincipal { .. })
        ));
    }

    #[test]
    fn holes_are_skipped_and_one_account_needs_no_name() {
        let mut bytes = keytab(&[entry_bytes("svc@CONTOSO.TEST", 1, 17, &[1; 16])]);
        // A deleted entry: a negative size and that many bytes of anything.
        bytes.extend((-6i32).to_be_bytes());
        bytes.extend([0xff; 6]);
        let key = key_for(&parse(&bytes).unwrap(), None).unwrap();
        assert_eq!((key.principal.as_str(), key.enctype), ("svc@CONTOSO.TEST", 17));
    }

    #[test]
    fn an_account_without_an_aes_key_is_refused_naming_its_key_types() {
        let bytes = keytab(&[entry_bytes("svc@CONTOSO.TEST", 4, 23, &[1; 16])]);
        let error = key_for(&parse(&bytes).unwrap(), None).unwrap_err();
        assert_eq!(
            error,
            KeytabError::NoUsableKey { principal: "svc@CONTOSO.TEST".into(), enctypes: vec![23] }
        );
        assert!(error.to_string().contains("aes256-cts-hmac-sha1-96"), "{error}");
    }

    #[test]
    fn what_is_not_a_keytab_is_refused_without_reading_past_it() {
        assert_eq!(parse(&[5, 1, 0, 0]), Err(KeytabError::Version1));
        assert!(matches!(parse(b"not a keytab"), Err(KeytabError::Malformed(_))));
        assert!(matches!(parse(&[5]), Err(KeytabError::Malformed(_))));
        let whole = keytab(&[entry_bytes("svc@CONTOSO.TEST", 1, 18, &[1; 32])]);
        for cut in 3..whole.len() {
            assert!(parse(&whole[..cut]).is_err(), "cut at {cut}");
        }
        // A size beyond the file.
        let mut lying = vec![5, 2];
        lying.extend(i32::MAX.to_be_bytes());
        assert!(matches!(parse(&lying), Err(KeytabError::Malformed(_))));
        assert!(matches!(parse(&vec![5; MAX_KEYTAB_BYTES + 1]), Err(KeytabError::Malformed(_))));
        let bad_name = keytab(&[entry_bytes("sv\u{7}c@CONTOSO.TEST", 1, 18, &[1; 32])]);
        assert!(matches!(parse(&bad_name), Err(KeytabError::Malformed(_))));
    }

    #[test]
    fn a_key_never_shows_in_debug_output() {
        let bytes = keytab(&[entry_bytes("svc@CONTOSO.TEST", 1, 18, &[0xab; 32])]);
        let entries = parse(&bytes).unwrap();
        let key = key_for(&entries, None).unwrap();
        let shown = format!("{entries:?} {key:?}");
        assert!(!shown.contains("171") && !shown.contains(key.key.expose()), "{shown}");
    }
}
