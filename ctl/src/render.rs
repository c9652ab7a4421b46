//! Turning replies into text or JSON, and `status --check` into a Nagios line.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use mslink_proto::{
    AccessRequest, CtlCommand, DaemonReply, DetectReply, JSON_FORMAT_VERSION, LinkInfo, LinkState,
    RequestState, StatusReply, UnixTime,
};
use serde_json::{Value, json};

use crate::client::{Client, CtlError};

/// Prints a successful reply.
pub fn reply(reply: &DaemonReply, as_json: bool, verbose: bool) {
    if as_json {
        let mut doc = serde_json::to_value(reply).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut doc {
            map.insert("format_version".into(), json!(JSON_FORMAT_VERSION));
        }
        println!("{doc}");
        return;
    }
    match reply {
        DaemonReply::Status(status) => print!("{}", status_text(status, verbose)),
        DaemonReply::Request(r) => match &r.request {
            None => println!(
                "The Microsoft integration is already enabled: link your mailbox with `mslinkctl connect EMAIL`."
            ),
            Some(request) => println!(
                "{} for {} at {}. An admin will see it in `mslinkctl requests`; `mslinkctl status` shows when it is granted.",
                if r.updated { "Request updated" } else { "Request recorded" },
                request.user,
                time(request.requested_at)
            ),
        },
        DaemonReply::Requests(r) if r.requests.is_empty() => println!("No pending requests."),
        DaemonReply::Requests(r) => {
            println!("{:<20} {:<22} MESSAGE", "USER", "REQUESTED");
            for request in &r.requests {
                println!(
                    "{:<20} {:<22} {}",
                    request.user,
                    time(request.requested_at),
                    request.message.as_deref().unwrap_or("-")
                );
            }
            println!("Grant them all with `mslinkctl enable`.");
        }
        DaemonReply::Toggle(t) if !t.changed => println!(
            "The Microsoft integration is already {}.",
            if t.enabled { "enabled" } else { "disabled" }
        ),
        DaemonReply::Toggle(t) if t.enabled => println!(
            "Microsoft integration enabled: granted {} pending request(s), resumed {} link(s).",
            t.granted_requests, t.links_affected
        ),
        DaemonReply::Toggle(t) => println!(
            "Microsoft integration disabled: suspended {} link(s). `mslinkctl enable` resumes them.",
            t.links_affected
        ),
        DaemonReply::Reload(r) => match &r.config_path {
            Some(path) => println!("Config reloaded from {path}."),
            None => println!("Config reloaded: no config file, the built-in defaults apply."),
        },
        DaemonReply::Detect(found) => print!("{}", evidence_text(found)),
        DaemonReply::Link(link) => println!("{}", link_text(link, true, verbose).trim_start()),
        // Printed alone, so mail tools can read it (`passwordeval`, `PassCmd`).
        DaemonReply::Token(t) => println!("{}", t.access_token.expose()),
        DaemonReply::Disconnect(d) => {
            println!("Removed the link to {} (user {}) and its stored secrets.", d.email, d.user)
        }
        DaemonReply::LinksEnd(end) => println!("{} link(s).", end.count),
        DaemonReply::CheckAll(r) => {
            println!("Checked {} link(s): {} ok, {} failed.", r.checked, r.ok, r.failed.len());
            for failed in &r.failed {
                println!("  {:<32} {:<13} {}", failed.email, failed.state, failed.reason);
            }
        }
    }
}

/// Prints an error: one line and a hint on stderr (and the JSON document on stdout with --json).
pub fn error(error: &CtlError, as_json: bool) {
    let wire = error.to_wire();
    if as_json {
        println!("{}", json!({ "format_version": JSON_FORMAT_VERSION, "error": wire }));
    }
    eprintln!("mslinkctl: {}", wire.message);
    if let Some(hint) = &wire.hint {
        eprintln!("hint: {hint}");
    }
}

/// `status --all` / `--state`: the head from a plain `status`, then the links streamed as the
/// daemon reads them (text line by line; `--json` one document, written as it arrives), then the
/// tail. Memory stays one page, whatever the number of links.
pub fn streamed_status(
    client: &mut Client,
    act_as: Option<String>,
    all: bool,
    state: Option<LinkState>,
    as_json: bool,
    verbose: bool,
) -> Result<(), CtlError> {
    use std::io::Write;
    let head = match client.call(act_as.clone(), CtlCommand::Status { all: false })? {
        DaemonReply::Status(status) => StatusReply { links: Vec::new(), ..status },
        _ => return Err(CtlError::Protocol("mslinkd answered status with another reply".into())),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if as_json {
        let mut doc = serde_json::to_value(DaemonReply::Status(head)).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut doc {
            map.remove("links");
            map.insert("format_version".into(), json!(JSON_FORMAT_VERSION));
        }
        let open = doc.to_string();
        let _ = write!(out, "{},\"links\":[", open.strip_suffix('}').unwrap_or(&open));
        let mut first = true;
        client.stream_links(act_as, all, state, |page| {
            for link in page {
                let comma = if std::mem::take(&mut first) { "" } else { "," };
                let _ = write!(out, "{comma}{}", serde_json::to_string(&link).unwrap_or_default());
            }
        })?;
        let _ = writeln!(out, "]}}");
        return Ok(());
    }
    let _ = write!(out, "{}", head_text(&head));
    let filter = state.map(|s| format!(" in state {s}")).unwrap_or_default();
    let _ = writeln!(out, "Links{filter}:");
    let count = client.stream_links(act_as, all, state, |page| {
        for link in page {
            let _ = writeln!(out, "{}", link_text(&link, all, verbose));
        }
    })?;
    let _ = writeln!(out, "  ({count} link{})", if count == 1 { "" } else { "s" });
    let _ = write!(out, "{}", tail_text(&head));
    Ok(())
}

fn status_text(s: &StatusReply, verbose: bool) -> String {
    let mut out = head_text(s);
    let all = s.links.iter().any(|l| l.user != s.user);
    if s.links.is_empty() {
        if s.integration.enabled {
            out.push_str("Links: none yet. Link a mailbox with `mslinkctl connect EMAIL`.\n");
        } else {
            out.push_str("Links: none.\n");
        }
    } else {
        out.push_str(&format!("Links ({}):\n", s.links.len()));
        for link in &s.links {
            out.push_str(&link_text(link, all, verbose));
            out.push('\n');
        }
    }
    out.push_str(&tail_text(s));
    out
}

/// Who, the integration and the caller's request.
fn head_text(s: &StatusReply) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let integration = &s.integration;
    let changed = match (&integration.changed_by, integration.changed_at) {
        (Some(by), Some(at)) => format!(" (by {by}, {})", time(at)),
        _ => String::new(),
    };
    line(format!("User: {}{}", s.user, if s.admin { " (admin)" } else { "" }));
    line(format!(
        "Microsoft integration: {}{changed}",
        if integration.enabled { "enabled" } else { "disabled" }
    ));
    match (&s.request, integration.enabled) {
        (Some(request), _) => line(format!("Request: {}", request_text(request))),
        (None, false) => {
            line("Request: none. Ask for the integration with `mslinkctl request`.".into())
        }
        (None, true) => {}
    }
    out
}

/// An admin's pending requests and recent actions.
fn tail_text(s: &StatusReply) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    if let Some(pending) = s.pending_requests {
        line(format!(
            "Pending requests: {pending}{}",
            if pending > 0 { " (`mslinkctl requests`; grant with `mslinkctl enable`)" } else { "" }
        ));
    }
    if !s.recent_admin_actions.is_empty() {
        line("Recent admin actions:".into());
        for entry in &s.recent_admin_actions {
            let detail = entry.detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default();
            line(format!("  {} {} {}{detail}", time(entry.at), entry.actor, entry.action));
        }
    }
    out
}

/// Detection's answer and every probe's evidence.
pub fn evidence_text(found: &DetectReply) -> String {
    let answer = match (found.provider, found.conflicting) {
        (Some(provider), _) => provider.to_string(),
        (None, true) => "unknown (the evidence conflicts)".into(),
        (None, false) => "unknown".into(),
    };
    let mut out = format!(
        "{}: {answer} ({} ms{})\n",
        found.email,
        found.elapsed_ms,
        if found.cached { ", cached" } else { "" }
    );
    for evidence in &found.evidence {
        let points = evidence.points_to.map_or("-".to_owned(), |p| p.to_string());
        out.push_str(&format!("  {:<28} {:<10} {}\n", evidence.probe, points, evidence.detail));
    }
    out
}

fn request_text(request: &AccessRequest) -> String {
    let message = request.message.as_ref().map(|m| format!(" \"{m}\"")).unwrap_or_default();
    match request.state {
        RequestState::Pending => {
            format!(
                "pending since {}{message}; an admin must run `mslinkctl enable`",
                time(request.requested_at)
            )
        }
        RequestState::Granted => format!(
            "granted {}{}",
            request.granted_at.map(time).unwrap_or_default(),
            request.granted_by.as_ref().map(|by| format!(" by {by}")).unwrap_or_default()
        ),
    }
}

fn link_text(link: &LinkInfo, with_user: bool, verbose: bool) -> String {
    let user = if with_user { format!(" [{}]", link.user) } else { String::new() };
    let mut text = format!(
        "  {}{user}  {}  {}  since {}",
        link.email,
        link.provider,
        link.state,
        time(link.since)
    );
    if let Some(reason) = &link.reason {
        text.push_str(&format!("\n    reason: {reason}"));
    }
    if let (true, Some(due)) = (link.stale, link.next_check) {
        text.push_str(&format!(
            "\n    stale: its check was due at {} and has not run; mslinkd is not keeping up \
             (a server that hangs, or too little `[schedule] max_concurrent`): see its log",
            time(due)
        ));
    }
    if link.endpoint.is_some() || link.auth_scheme.is_some() {
        text.push_str(&format!(
            "\n    server: {}{}  auth: {}",
            link.endpoint.as_deref().unwrap_or("-"),
            link.server_version.as_ref().map(|v| format!(" (version {v})")).unwrap_or_default(),
            link.auth_scheme.as_deref().unwrap_or("-")
        ));
    }
    if let Some(ok) = link.last_ok {
        text.push_str(&format!("\n    last ok: {}", time(ok)));
    }
    if let Some(next) = link.next_check {
        text.push_str(&format!("  next check: {}", time(next)));
    }
    if let Some(expiry) = link.token_expiry {
        text.push_str(&format!("  token expires: {}", time(expiry)));
    }
    if let (Some(total), Some(unread)) = (link.inbox_total, link.inbox_unread) {
        text.push_str(&format!("\n    inbox: {total} items, {unread} unread"));
    }
    if let Some(calendar) = link.calendar_ok {
        text.push_str(if calendar { "  calendar: reachable" } else { "  calendar: unreachable" });
    }
    if let Some(daemon) = &link.worked_by {
        text.push_str(&format!("\n    last worked by: {daemon}"));
    }
    if verbose && !link.evidence.is_empty() {
        text.push_str("\n    provider settled by:");
        for evidence in &link.evidence {
            let points = evidence.points_to.map_or("-".to_owned(), |p| p.to_string());
            text.push_str(&format!(
                "\n      {:<28} {:<10} {}",
                evidence.probe, points, evidence.detail
            ));
        }
    }
    text
}

fn time(at: UnixTime) -> String {
    let when = UNIX_EPOCH + Duration::from_secs(at.max(0) as u64);
    humantime::format_rfc3339_seconds(when).to_string()
}

/// `status --check`: one Nagios line and exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN),
/// within `timeout`: a daemon that does not answer in time, or is too busy to, is CRITICAL.
pub fn check(socket: &Path, act_as: Option<String>, all: bool, timeout: Duration) -> ExitCode {
    // The timeout bounds every read, and the whole exchange too: a daemon that answers a byte
    // at a time, or a connect that waits on a full listen queue, must not hold a monitoring
    // probe past it. The exchange runs on its own thread, left behind if it overruns.
    let (done, outcome) = std::sync::mpsc::channel();
    let path = socket.to_owned();
    std::thread::spawn(move || {
        let _ = done.send(gather(&path, act_as, all, timeout));
    });
    let outcome = outcome.recv_timeout(timeout).unwrap_or(Err(CtlError::TimedOut));
    check_report(socket, timeout, outcome)
}

/// What `status --check` learns from the daemon: whether the integration is on, and the tally.
fn gather(
    socket: &Path,
    act_as: Option<String>,
    all: bool,
    timeout: Duration,
) -> Result<(bool, Tally), CtlError> {
    Client::connect_within(socket, timeout).and_then(|mut client| {
        let own = match client.call(act_as.clone(), CtlCommand::Status { all: false })? {
            DaemonReply::Status(status) => status,
            _ => {
                return Err(CtlError::Protocol(
                    "mslinkd answered status with another reply".into(),
                ));
            }
        };
        let mut tally = Tally::default();
        // Admins watch every link without having to say --all: streamed, counted page by
        // page, so neither side holds them all.
        if own.admin || all {
            client
                .stream_links(act_as, true, None, |page| page.iter().for_each(|l| tally.add(l)))?;
        } else {
            own.links.iter().for_each(|l| tally.add(l));
        }
        Ok((own.integration.enabled, tally))
    })
}

/// The Nagios line and exit code for what [`gather`] found.
fn check_report(
    socket: &Path,
    timeout: Duration,
    outcome: Result<(bool, Tally), CtlError>,
) -> ExitCode {
    let (code, line) = match outcome {
        Ok((enabled, tally)) => check_line(enabled, &tally),
        Err(CtlError::Unreachable { socket, reason }) => (
            2,
            format!("MSLINK CRITICAL - mslinkd not answering on {}: {reason}", socket.display()),
        ),
        Err(CtlError::TimedOut) => (
            2,
            format!(
                "MSLINK CRITICAL - mslinkd did not answer on {} within {} s",
                socket.display(),
                timeout.as_secs_f64()
            ),
        ),
        // What answers is not mslinkd: as good as no daemon, and worth an alarm.
        Err(error @ CtlError::Impostor { .. }) => {
            (2, format!("MSLINK CRITICAL - {}", error.to_wire().message))
        }
        Err(CtlError::Daemon(e)) if e.kind == mslink_proto::ErrorKind::Busy => {
            (2, format!("MSLINK CRITICAL - mslinkd is too busy to answer: {}", e.message))
        }
        Err(error) => (3, format!("MSLINK UNKNOWN - {}", error.to_wire().message)),
    };
    println!("{line}");
    ExitCode::from(code)
}

/// What `status --check` counts over the links, one at a time.
#[derive(Debug, Default)]
struct Tally {
    total: usize,
    /// Per state, in [`LinkState::ALL`]'s order.
    states: [usize; LinkState::ALL.len()],
    /// Active links whose mailbox answers but whose calendar does not: half broken.
    calendar_down: usize,
    /// Links whose checks are overdue: maybe broken without anyone knowing.
    stale: usize,
}

impl Tally {
    fn add(&mut self, link: &LinkInfo) {
        self.total += 1;
        if let Some(i) = LinkState::ALL.iter().position(|s| *s == link.state) {
            self.states[i] += 1;
        }
        if link.state == LinkState::Active && link.calendar_ok == Some(false) {
            self.calendar_down += 1;
        }
        if link.stale {
            self.stale += 1;
        }
    }

    fn count(&self, state: LinkState) -> usize {
        LinkState::ALL.iter().position(|s| *s == state).map_or(0, |i| self.states[i])
    }
}

fn check_line(integration_enabled: bool, tally: &Tally) -> (u8, String) {
    let count = |state: LinkState| tally.count(state);
    let critical = count(LinkState::NeedsReauth) + count(LinkState::Blocked);
    let (calendar_down, stale) = (tally.calendar_down, tally.stale);
    let (code, word) = if critical > 0 {
        (2, "CRITICAL")
    } else if count(LinkState::Degraded) > 0 || calendar_down > 0 || stale > 0 {
        (1, "WARNING")
    } else {
        (0, "OK")
    };
    let summary: Vec<String> = LinkState::ALL
        .into_iter()
        .filter(|&state| count(state) > 0)
        .map(|state| format!("{} {state}", count(state)))
        .collect();
    let perfdata: Vec<String> =
        LinkState::ALL.into_iter().map(|state| format!("{state}={}", count(state))).collect();
    let integration = if integration_enabled { "enabled" } else { "disabled" };
    let mut links = if summary.is_empty() {
        "0 links".to_owned()
    } else {
        format!("{} links: {}", tally.total, summary.join(", "))
    };
    if calendar_down > 0 {
        links.push_str(&format!(" ({calendar_down} with the calendar unreachable)"));
    }
    if stale > 0 {
        links.push_str(&format!(" ({stale} with checks overdue)"));
    }
    (code, format!("MSLINK {word} - integration {integration}, {links} | {}", perfdata.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mslink_proto::{Integration, Provider};

    fn check_line_of(status: &StatusReply) -> (u8, String) {
        let mut tally = Tally::default();
        status.links.iter().for_each(|l| tally.add(l));
        check_line(status.integration.enabled, &tally)
    }

    fn status(states: &[LinkState]) -> StatusReply {
        StatusReply {
            user: "root".into(),
            admin: true,
            integration: Integration { enabled: true, changed_at: None, changed_by: None },
            request: None,
            links: states
                .iter()
                .enumerate()
                .map(|(i, &state)| LinkInfo {
                    email: format!("u{i}@contoso.test"),
                    user: format!("u{i}"),
                    provider: Provider::Office365,
                    state,
                    reason: None,
                    since: 0,
                    last_ok: None,
                    next_check: None,
                    token_expiry: None,
                    inbox_total: None,
                    inbox_unread: None,
                    calendar_ok: None,
                    server_version: None,
                    auth_scheme: None,
                    endpoint: None,
                    evidence: Vec::new(),
                    stale: false,
                    worked_by: None,
                })
                .collect(),
            pending_requests: Some(0),
            recent_admin_actions: vec![],
        }
    }

    #[test]
    fn check_is_ok_warning_or_critical_by_the_worst_link() {
        use LinkState::*;
        assert_eq!(check_line_of(&status(&[])).0, 0);
        assert_eq!(check_line_of(&status(&[Active, Suspended])).0, 0);
        assert_eq!(check_line_of(&status(&[Active, Degraded])).0, 1);
        assert_eq!(check_line_of(&status(&[Degraded, NeedsReauth])).0, 2);
        assert_eq!(check_line_of(&status(&[Blocked])).0, 2);
        let mut calendar_down = status(&[Active]);
        calendar_down.links[0].calendar_ok = Some(false);
        let (code, line) = check_line_of(&calendar_down);
        assert_eq!(code, 1, "a link whose calendar is unreachable is a WARNING: {line}");
        assert!(line.contains("1 with the calendar unreachable"), "{line}");
        let mut overdue = status(&[Active, Active]);
        overdue.links[1].stale = true;
        overdue.links[1].next_check = Some(1_000);
        let (code, line) = check_line_of(&overdue);
        assert_eq!(code, 1, "a link whose checks are overdue is a WARNING: {line}");
        assert!(line.contains("1 with checks overdue"), "{line}");
        let text = link_text(&overdue.links[1], false, false);
        assert!(text.contains("stale: its check was due at 1970-01-01T00:16:40Z"), "{text}");
    }

    #[test]
    fn the_check_line_counts_states_and_carries_perfdata() {
        use LinkState::*;
        let (_, line) = check_line_of(&status(&[Active, Active, Degraded]));
        assert_eq!(
            line,
            "MSLINK WARNING - integration enabled, 3 links: 2 active, 1 degraded \
             | active=2 degraded=1 needs_reauth=0 blocked=0 suspended=0"
        );
    }
}
