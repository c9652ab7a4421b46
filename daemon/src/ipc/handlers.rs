//! One arm per command: decide who may do what (SPEC §2), then either read the store (status,
//! requests) or hand the command to the link service, and return a typed reply or a
//! [`WireError`] (mapped once, in `super::errors`).

use mslink_proto::{
    CtlCommand, DaemonReply, ErrorKind, LINKS_PAGE, LinkInfo, LinkState, ReloadReply,
    RequestsReply, WireError,
};

use super::errors::internal;
use crate::Daemon;
use crate::events::Event;
use crate::identity::{Caller, uid_of};
use crate::interaction::Interaction;
use crate::links::schedule;
use crate::store::Owner;

/// The longest message a request may carry.
const MAX_MESSAGE_CHARS: usize = 1000;

/// Runs one command for `caller`, on behalf of `act_as` when an admin says `--user`.
pub async fn handle(
    daemon: &Daemon,
    caller: &Caller,
    act_as: Option<String>,
    command: CtlCommand,
    mut interaction: Interaction,
) -> Result<DaemonReply, WireError> {
    let (subject, account_uid) = subject(caller, act_as).await?;
    let owner = owner(caller, &subject);
    let require_admin = |what: &str| require_admin(daemon, caller, what);
    let store = &daemon.store;
    let links = &daemon.links;
    let actor = caller.name.clone();
    let now = daemon.now();
    match command {
        CtlCommand::Status { all } => {
            if all {
                require_admin("status --all")?;
            }
            let mut reply = store
                .status(subject.clone(), (!all).then(|| owner.clone()), caller.admin)
                .await
                .map_err(internal)?;
            let schedule = &daemon.config().schedule;
            for link in &mut reply.links {
                link.stale = schedule::stale(schedule, link.state, link.next_check, now);
            }
            Ok(DaemonReply::Status(reply))
        }
        CtlCommand::Request { message } => {
            let message = message.map(|m| validate_message(&m)).transpose()?;
            let reply = store.request(subject, message, actor, now).await.map_err(internal)?;
            if let Some(request) = &reply.request {
                tracing::info!(user = %request.user, updated = reply.updated, "integration requested");
                daemon.events.emit(Event::Requested {
                    user: request.user.clone(),
                    message: request.message.clone(),
                });
            }
            Ok(DaemonReply::Request(reply))
        }
        CtlCommand::Requests => {
            require_admin("requests")?;
            let requests = store.pending_requests().await.map_err(internal)?;
            Ok(DaemonReply::Requests(RequestsReply { requests }))
        }
        CtlCommand::Enable | CtlCommand::Disable => {
            let enable = matches!(command, CtlCommand::Enable);
            require_admin(if enable { "enable" } else { "disable" })?;
            Ok(DaemonReply::Toggle(links.set_integration(enable, &caller.name).await?))
        }
        CtlCommand::Reload => {
            require_admin("reload")?;
            let config = daemon.reload().await.map_err(|message| {
                WireError::new(ErrorKind::Failed, message)
                    .with_hint("fix the config file and run `mslinkctl reload` again; the running config is unchanged")
            })?;
            let path = config.source.as_ref().map(|p| p.display().to_string());
            store.audit(actor, "reload", path, now).await.map_err(internal)?;
            Ok(DaemonReply::Reload(ReloadReply {
                config_path: config.source.as_ref().map(|p| p.display().to_string()),
            }))
        }
        CtlCommand::Connect(args) => {
            validate_email(&args.email)?;
            if args.keytab.is_some() {
                // A service account's key opens its mailbox without anyone's password.
                require_admin("connect --keytab")?;
            }
            let email = args.email.clone();
            let link =
                links.connect(&owner, account_uid, args, caller.admin, &mut interaction).await?;
            if subject != actor {
                let detail = format!("{email} for {subject}");
                store.audit(actor, "connect", Some(detail), now).await.map_err(internal)?;
            }
            Ok(DaemonReply::Link(link))
        }
        CtlCommand::Detect { email } => {
            validate_email(&email)?;
            Ok(DaemonReply::Detect(links.detector().detect(daemon.config(), &email).await))
        }
        CtlCommand::Check { email } => Ok(DaemonReply::Link(links.check(&owner, &email).await?)),
        CtlCommand::CheckAll { state } => {
            require_admin("check --all")?;
            Ok(DaemonReply::CheckAll(links.check_all(state, &mut interaction).await?))
        }
        CtlCommand::Token { email, resource } => {
            if subject != caller.name {
                return Err(WireError::new(
                    ErrorKind::PermissionDenied,
                    "tokens are only given to the link's owner",
                )
                .with_hint("run `mslinkctl token` as that user"));
            }
            Ok(DaemonReply::Token(links.token(&owner, &email, resource).await?))
        }
        CtlCommand::Disconnect { email } => {
            Ok(DaemonReply::Disconnect(links.disconnect(&owner, &email, &caller.name).await?))
        }
        // Streamed page by page by the connection, through `LinksQuery`.
        CtlCommand::Links { .. } => {
            Err(WireError::new(ErrorKind::Internal, "`links` reached the single-reply path"))
        }
    }
}

/// Refuses a non-admin `mslinkctl what`, saying who may.
fn require_admin(daemon: &Daemon, caller: &Caller, what: &str) -> Result<(), WireError> {
    if caller.admin {
        return Ok(());
    }
    let admin_group = daemon.config().admin_group.clone();
    Err(WireError::new(ErrorKind::PermissionDenied, format!("`mslinkctl {what}` is for admins"))
        .with_hint(format!(
            "ask root or a member of the `{admin_group}` group (see `admin_group` and `admin_users` in mslinkd.toml)"
        )))
}

/// A `links` stream the caller may read: whose links, which state.
#[derive(Debug)]
pub struct LinksQuery {
    user: Option<Owner>,
    state: Option<LinkState>,
}

impl LinksQuery {
    /// Decides who may list what (SPEC §2): every link with `all` (admins), else the caller's
    /// own or, for an admin, `--user`'s.
    pub async fn new(
        daemon: &Daemon,
        caller: &Caller,
        act_as: Option<String>,
        all: bool,
        state: Option<LinkState>,
    ) -> Result<LinksQuery, WireError> {
        if all {
            require_admin(daemon, caller, "status --all")?;
        }
        let user = match all {
            true => None,
            false => Some(owner(caller, &subject(caller, act_as).await?.0)),
        };
        Ok(LinksQuery { user, state })
    }

    /// The page after the (user, email) `after`, read on a reader connection; empty at the end.
    pub async fn page(
        &self,
        daemon: &Daemon,
        after: Option<(String, String)>,
    ) -> Result<Vec<LinkInfo>, WireError> {
        let (user, state) = (self.user.clone(), self.state);
        let mut page =
            daemon.store.links_page(user, state, after, LINKS_PAGE).await.map_err(internal)?;
        let (config, now) = (daemon.config(), daemon.now());
        for link in &mut page {
            link.stale = schedule::stale(&config.schedule, link.state, link.next_check, now);
        }
        Ok(page)
    }
}

/// Whose links a command about `subject` means: the caller's own are matched by their uid too
/// (an earlier account of the same name does not hand its links on); an admin acting for
/// another user addresses that user's links by name, an earlier account's included.
fn owner(caller: &Caller, subject: &str) -> Owner {
    Owner { name: subject.to_owned(), uid: (subject == caller.name).then_some(caller.uid) }
}

/// The user a command is about, and that account's uid: the caller, or the `--user` an admin
/// named.
async fn subject(caller: &Caller, act_as: Option<String>) -> Result<(String, u32), WireError> {
    let Some(name) = act_as.filter(|name| *name != caller.name) else {
        return Ok((caller.name.clone(), caller.uid));
    };
    if !caller.admin {
        return Err(WireError::new(
            ErrorKind::PermissionDenied,
            "only admins may act for another user",
        )
        .with_hint("drop `--user`, or ask an admin"));
    }
    let lookup = name.clone();
    let uid = tokio::task::spawn_blocking(move || uid_of(&lookup)).await.ok().flatten();
    if let Some(uid) = uid {
        Ok((name, uid))
    } else {
        Err(WireError::new(
            ErrorKind::NotFound,
            format!("there is no user `{name}` on this system"),
        )
        .with_hint("check the name given to --user (see `getent passwd`)"))
    }
}

fn validate_email(email: &str) -> Result<(), WireError> {
    let valid = email.len() <= 320
        && !email.chars().any(char::is_whitespace)
        && !crate::text::is_unclean(email)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        });
    if valid {
        Ok(())
    } else {
        Err(WireError::new(ErrorKind::Usage, format!("`{email}` is not an email address"))
            .with_hint("give the mailbox address, e.g. alice@example.com"))
    }
}

fn validate_message(message: &str) -> Result<String, WireError> {
    let chars = message.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(WireError::new(
            ErrorKind::Usage,
            format!("the message is {chars} characters long; the limit is {MAX_MESSAGE_CHARS}"),
        )
        .with_hint("shorten it"));
    }
    if crate::text::is_unclean(message) {
        return Err(WireError::new(
            ErrorKind::Usage,
            "the message contains line breaks, control or invisible characters",
        )
        .with_hint("write it as one line of plain text"));
    }
    Ok(message.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses_are_checked() {
        assert!(validate_email("alice@contoso.com").is_ok());
        for bad in ["alice", "@contoso.com", "alice@localhost", "a b@c.com", "a@b@c.com"] {
            assert_eq!(validate_email(bad).unwrap_err().kind, ErrorKind::Usage, "{bad}");
        }
    }

    #[test]
    fn request_messages_are_bounded_plain_text() {
        assert_eq!(validate_message("  for the CRM  ").unwrap(), "for the CRM");
        assert!(validate_message(&"x".repeat(1001)).is_err());
        assert!(validate_message("ring\x07bell").is_err());
        assert!(validate_message("line one\n[admin] approved").is_err(), "no forged lines");
        assert!(validate_email("alice@\u{202E}moc.live").is_err(), "no bidi tricks");
    }
}
