//! Text from outside (server strings, error texts, request messages) is hostile: it may carry
//! terminal escape sequences, newlines that forge extra lines in `status` or a log, bidi
//! overrides that make `evil.com` read as `moc.live`, or megabytes that fill the database and
//! the hook's argument space. [`clean`] is the one rule, applied where such text enters (a
//! failure's reason, a server's version, a request's message) before it is stored, logged,
//! passed to a hook or printed.

/// The longest reason a failure keeps.
pub const MAX_REASON: usize = 1000;

/// `text` with every control character (newlines, tabs, ESC, C1 controls) turned into a space,
/// bidi and other invisible formatting characters removed, runs of white space folded to one,
/// and at most `max_chars` characters kept (a cut is marked with `…`).
pub fn clean(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut kept = 0;
    let mut space = false;
    for c in text.chars() {
        if is_invisible(c) {
            continue;
        }
        let c = if c.is_control() || c.is_whitespace() { ' ' } else { c };
        if c == ' ' {
            if space || out.is_empty() {
                continue;
            }
            space = true;
        } else {
            space = false;
        }
        if kept == max_chars {
            out.truncate(out.trim_end().len());
            out.push('…');
            return out;
        }
        out.push(c);
        kept += 1;
    }
    out.truncate(out.trim_end().len());
    out
}

/// True when `text` holds anything [`clean`] would change apart from length: for input that is
/// refused rather than cleaned (addresses, request messages).
pub fn is_unclean(text: &str) -> bool {
    text.chars().any(|c| is_invisible(c) || (c.is_control() && c != ' '))
}

/// Bidi embeddings, overrides and isolates, zero-width and other format characters: invisible
/// on a terminal, able to reorder or hide what is shown.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{061C}' | '\u{00AD}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_newlines_and_bidi_tricks_are_defused() {
        assert_eq!(
            clean("ok\n[fake] all links active\x1b[2J", 100),
            "ok [fake] all links active [2J"
        );
        assert_eq!(clean("user@\u{202E}moc.live", 100), "user@moc.live");
        assert_eq!(clean("  a\t\tb\r\n ", 100), "a b");
        assert!(is_unclean("line\nbreak") && is_unclean("\u{2066}x") && !is_unclean("plain text"));
    }

    #[test]
    fn long_text_is_cut_and_marked() {
        let cut = clean(&"x".repeat(200_000), MAX_REASON);
        assert_eq!(cut.chars().count(), MAX_REASON + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(clean("short", 5), "short");
    }
}
