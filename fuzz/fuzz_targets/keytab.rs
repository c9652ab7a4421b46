//! The keytab reader, fed any file an admin could hand `mslinkctl connect --keytab`.
//!
//! Asserted, beyond "no panic":
//! - a file over `MAX_KEYTAB_BYTES` is refused unread;
//! - every entry names a principal `name@REALM`, with no key longer than the file;
//! - the key chosen for any account (or for the file's one account) is one of its entries:
//!   an AES key (enctype 17 or 18) of that account's newest key version, its bytes intact.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mslinkd::exchange::keytab::{self, KeytabError, MAX_KEYTAB_BYTES};

fuzz_target!(|data: &[u8]| {
    let parsed = keytab::parse(data);
    if data.len() > MAX_KEYTAB_BYTES {
        assert!(matches!(parsed, Err(KeytabError::Malformed(_))));
        return;
    }
    let Ok(entries) = parsed else { return };
    for entry in &entries {
        assert!(entry.principal.contains('@'), "{:?}", entry.principal);
        assert!(entry.key.len() <= data.len());
    }
    let mut wanted: Vec<Option<&str>> = vec![None];
    wanted.extend(entries.iter().map(|e| Some(e.principal.as_str())));
    for wanted in wanted {
        let Ok(key) = keytab::key_for(&entries, wanted) else { continue };
        let newest = entries
            .iter()
            .filter(|e| e.principal == key.principal)
            .map(|e| e.kvno)
            .max()
            .unwrap();
        assert_eq!(key.kvno, newest);
        assert!(matches!(key.enctype, 17 | 18));
        let bytes = key.bytes().unwrap();
        assert!(
            entries.iter().any(|e| e.principal == key.principal
                && e.kvno == key.kvno
                && e.enctype == key.enctype
                && e.key == bytes),
            "a key that is in no entry"
        );
    }
});
