//! The config parser, fed any file text (as root, with no systemd directories).
//!
//! Asserted, beyond "no panic":
//! - a refused file's message points somewhere: a line or a `key` (SPEC §5);
//! - an accepted config keeps every rule it validates: each endpoint URL is `https://` or
//!   `http://` to a loopback address, `max_concurrent` is at least 1, `retry_min` is not above
//!   `retry_max`, the scopes hold `offline_access`, the redirect listener is on loopback,
//!   `[exchange] auth` is not empty and a hook is not blank;
//! - parsing is deterministic, and a config never needs a restart to become itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mslinkd::config::{Config, EndpointUrl, Env};

fn check(config: &Config) {
    let o = &config.office365;
    let d = &config.detection;
    for url in [
        &o.authority,
        &o.authorize_url,
        &o.token_url,
        &o.device_code_url,
        &o.graph_url,
        &d.user_realm_url,
        &d.autodiscover_v2_url,
    ] {
        if let Err(e) = EndpointUrl::parse(url.as_str()) {
            panic!("an accepted endpoint breaks the https-or-loopback rule: {e}");
        }
    }
    let s = &config.schedule;
    assert!(s.max_concurrent >= 1);
    assert!(
        s.retry_min <= s.retry_max,
        "retry_min {:?} > retry_max {:?}",
        s.retry_min,
        s.retry_max
    );
    assert!(o.scopes.iter().any(|s| s == "offline_access"));
    assert!(o.redirect_listen.ip().is_loopback());
    assert!(!config.exchange.auth.is_empty());
    assert!(config.hooks.on_state_change.as_ref().is_none_or(|c| !c.trim().is_empty()));
    assert_eq!(config.needs_restart_for(config), None);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = Env { is_root: true, ..Env::default() };
    match Config::parse(text, None, &env) {
        Ok(config) => {
            check(&config);
            let again = Config::parse(text, None, &env).expect("the same text parses again");
            assert_eq!(again, config, "parsing is not deterministic");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("line ") || message.contains('`'),
                "a refusal that names no line or key: {message}"
            );
        }
    }
});
