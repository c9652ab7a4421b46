//! Logging: readable text on a terminal, the journal (with structured fields) under systemd,
//! JSON lines anywhere else. `MSLINK_LOG` (or `RUST_LOG`) sets the filter; the default is `info`.
//!
//! In the journal every tracing field becomes a journal field named `MSLINK_` + the field name in
//! capitals (`link = %email` → `MSLINK_LINK`, likewise `MSLINK_USER`, `MSLINK_PROVIDER`,
//! `MSLINK_STATE`, `MSLINK_REASON`), so `journalctl -u mslinkd MSLINK_LINK=alice@example.com`
//! finds one link's history. The prefix keeps our fields apart from journald's own (`PRIORITY`,
//! `CODE_FILE`, ...); tracing-journald's default prefix would be a bare `F_`.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// Installs the global subscriber. Call once, from `main`.
pub fn init() {
    let filter = || {
        EnvFilter::try_from_env("MSLINK_LOG")
            .or_else(|_| EnvFilter::try_from_default_env())
            .unwrap_or_else(|_| EnvFilter::new("info"))
    };
    let registry = tracing_subscriber::registry();
    if std::io::stderr().is_terminal() {
        let text =
            tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter());
        registry.with(text).init();
        return;
    }
    // systemd sets JOURNAL_STREAM when stderr goes to the journal.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        match tracing_journald::layer() {
            Ok(journald) => {
                registry
                    .with(
                        journald
                            .with_syslog_identifier("mslinkd".into())
                            .with_field_prefix(Some("MSLINK".into()))
                            .with_filter(filter()),
                    )
                    .init();
                return;
            }
            Err(e) => eprintln!("mslinkd: journald unavailable ({e}); logging JSON to stderr"),
        }
    }
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .with_filter(filter());
    registry.with(json).init();
}
