//! One handler per command. Each decides who may do what (SPEC §2), asks the store, and returns a
//! typed reply or a [`WireError`] whose message says what happened and whose hint says what to do.

use mslink_proto::{
    CtlCommand, DaemonReply, DisconnectReply, ErrorKind, ReloadReply, RequestReply, RequestsReply,
    StatusReply, WireError,
};

use crate::Daemon;
use crate::events::Event;
use crate::identity::{Caller, user_exists};
use crate::interaction::Interaction;
use crate::links::{self, internal};

/// How many audit entries `status` shows an admin.
const RECENT_ACTIONS: u32 = 10;
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
    let subject = subject(caller, act_as).await?;
    let admin_group = daemon.config().admin_group.clone();
    let require_admin = |what: &str| {
        if caller.admin {
            Ok(())
        } else {
            Err(WireError::new(ErrorKind::PermissionDenied, format!("`mslinkctl {what}` is for admins"))
                .with_hint(format!(
                    "ask root or a member of the `{admin_group}` group (see `admin_group` and `admin_users` in mslinkd.toml)"
                )))
        }
    };
    let store = &daemon.store;
    let actor = caller.name.clone();
    let now = crate::now();
    match command {
        CtlCommand::Status { all } => {
            if all {
                require_admin("status --all")?;
            }
            let admin = caller.admin;
            let user = subject.clone();
            let reply = store
                .call(move |db| {
                    Ok(StatusReply {
                        integration: db.integration()?,
                        request: db.request_of(&user)?,
                        links: db.links(if all { None } else { Some(&user) })?,
                        pending_requests: if admin {
                            Some(db.pending_requests()?.len() as u64)
                        } else {
                            None
                        },
                        recent_admin_actions: if admin {
                            db.recent_audit(RECENT_ACTIONS)?
                        } else {
                            Vec::new()
                        },
                        user,
                        admin,
                    })
                })
                .await
                .map_err(internal)?;
            Ok(DaemonReply::Status(reply))
        }
        CtlCommand::Request { message } => {
            let message = message.map(|m| validate_message(&m)).transpose()?;
            let reply = store
                .call(move |db| {
                    if db.integration()?.enabled {
                        return Ok(RequestReply {
                            request: None,
                            updated: false,
                            integration_enabled: true,
                        });
                    }
                    let (request, updated) =
                        db.record_request(&subject, message.as_deref(), now)?;
                    if subject != actor {
                        db.audit(&actor, "request", Some(&format!("for {subject}")), now)?;
                    }
                    Ok(RequestReply { request: Some(request), updated, integration_enabled: false })
                })
                .await
                .map_err(internal)?;
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
            let requests = store.call(|db| db.pending_requests()).await.map_err(internal)?;
            Ok(DaemonReply::Requests(RequestsReply { requests }))
        }
        CtlCommand::Enable | CtlCommand::Disable => {
            let enable = matches!(command, CtlCommand::Enable);
            require_admin(if enable { "enable" } else { "disable" })?;
            let (reply, transitions) = store
                .call(move |db| db.set_integration(enable, &actor, now))
                .await
                .map_err(internal)?;
            if reply.changed {
                tracing::info!(
                    by = %caller.name,
                    enabled = enable,
                    granted_requests = reply.granted_requests,
                    links = reply.links_affected,
                    "Microsoft integration toggled"
                );
                daemon.events.emit(Event::Integration { enabled: enable, by: caller.name.clone() });
            }
            let config = daemon.config();
            for transition in &transitions {
                links::announce(daemon, transition);
                daemon.scheduler.schedule_link(transition.id, &transition.link, &config);
            }
            Ok(DaemonReply::Toggle(reply))
        }
        CtlCommand::Reload => {
            require_admin("reload")?;
            let config = daemon.reload().map_err(|message| {
                WireError::new(ErrorKind::Failed, message)
                    .with_hint("fix the config file and run `mslinkctl reload` again; the running config is unchanged")
            })?;
            let path = config.source.as_ref().map(|p| p.display().to_string());
            store
                .call(move |db| db.audit(&actor, "reload", path.as_deref(), now))
                .await
                .map_err(internal)?;
            Ok(DaemonReply::Reload(ReloadReply {
                config_path: config.source.as_ref().map(|p| p.display().to_string()),
            }))
        }
        CtlCommand::Connect(args) => {
            validate_email(&args.email)?;
            let enabled = store.call(|db| db.integration()).await.map_err(internal)?.enabled;
            if !enabled {
                return Err(WireError::new(
                    ErrorKind::NotAllowed,
                    "the Microsoft integration is not enabled for this organisation",
                )
                .with_hint("ask an admin to turn it on: run `mslinkctl request`"));
            }
            let email = args.email.clone();
            let link = links::connect(daemon, &subject, args, &mut interaction).await?;
            if subject != actor {
                let detail = format!("{email} for {subject}");
                store
                    .call(move |db| db.audit(&actor, "connect", Some(&detail), now))
                    .await
                    .map_err(internal)?;
            }
            Ok(DaemonReply::Link(link))
        }
        CtlCommand::Detect { email } => {
            validate_email(&email)?;
            Ok(DaemonReply::Detect(daemon.detector.detect(daemon.config(), &email).await))
        }
        CtlCommand::Check { email } => {
            Ok(DaemonReply::Link(links::check_now(daemon, &subject, &email).await?))
        }
        CtlCommand::Token { email, resource } => {
            if subject != caller.name {
                return Err(WireError::new(
                    ErrorKind::PermissionDenied,
                    "tokens are only given to the link's owner",
                )
                .with_hint("run `mslinkctl token` as that user"));
            }
            Ok(DaemonReply::Token(links::token(daemon, &subject, &email, resource).await?))
        }
        CtlCommand::Disconnect { email } => {
            let user = subject.clone();
            let removed = store
                .call(move |db| {
                    let removed = db.delete_link(&user, &email)?.ok_or(email);
                    if let Ok((_, email, _)) = &removed
                        && user != actor
                    {
                        db.audit(&actor, "disconnect", Some(&format!("{email} of {user}")), now)?;
                    }
                    Ok(removed)
                })
                .await
                .map_err(internal)?;
            match removed {
                Ok((id, email, provider)) => {
                    tracing::info!(link = %email, user = %subject, by = %caller.name, "link removed");
                    daemon.scheduler.forget(id);
                    daemon.events.emit(Event::LinkRemoved {
                        email: email.clone(),
                        user: subject.clone(),
                        provider,
                    });
                    Ok(DaemonReply::Disconnect(DisconnectReply { email, user: subject }))
                }
                Err(email) => Err(links::not_found(&email)),
            }
        }
    }
}

/// The user a command is about: the caller, or the `--user` an admin named.
async fn subject(caller: &Caller, act_as: Option<String>) -> Result<String, WireError> {
    let Some(name) = act_as.filter(|name| *name != caller.name) else {
        return Ok(caller.name.clone());
    };
    if !caller.admin {
        return Err(WireError::new(
            ErrorKind::PermissionDenied,
            "only admins may act for another user",
        )
        .with_hint("drop `--user`, or ask an admin"));
    }
    let lookup = name.clone();
    let exists = tokio::task::spawn_blocking(move || user_exists(&lookup)).await.unwrap_or(false);
    if exists {
        Ok(name)
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
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
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
    if message.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(WireError::new(ErrorKind::Usage, "the message contains control characters")
            .with_hint("write plain text"));
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
    }
}
