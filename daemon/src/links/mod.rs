//! Links: linking a mailbox (`connect`), checking it now (`check`), handing out a fresh token
//! (`token`), and the background [`Scheduler`] that keeps every link alive.
//!
//! ```text
//!  connect ─▶ provider sign-in ─▶ first check ─▶ save_link (row + sealed secret, one tx)
//!                                                   └─▶ Event::LinkState, Scheduler::schedule
//!  Scheduler ─(due)─▶ work::perform ─▶ refresh? ─▶ store_refreshed_secret (durable first)
//!                                   └▶ check   ─▶ record_outcome (only if generation matches)
//! ```
//!
//! A link exists only once its first sign-in and first check succeeded (SPEC §1); a failed
//! `connect` stores nothing and leaves an existing link as it was.

mod scheduler;
mod work;

use mslink_proto::{
    ConnectArgs, ErrorKind, LinkInfo, Provider, Sensitive, SignInFlow, TokenReply, TokenResource,
    WireError,
};
use serde::{Deserialize, Serialize};

pub use scheduler::{Scheduler, SchedulerInbox};
pub use work::LinkTurns;
pub(crate) use work::announce;

use crate::Daemon;
use crate::exchange::{self, Login};
use crate::office365;
use crate::store::{NewLink, StoreError};
use crate::vault::{Vault, VaultError};

/// The secret sealed with a link. Serialised to JSON only to be sealed at once.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum LinkSecret {
    Office365 { access_token: Sensitive, refresh_token: Option<Sensitive>, expires_at: i64 },
    Exchange { password: Sensitive },
}

impl LinkSecret {
    fn seal(&self, vault: &Vault, id: i64) -> Result<Vec<u8>, VaultError> {
        let json = serde_json::to_vec(self).map_err(|_| VaultError::Seal)?;
        vault.seal(&json, &context(id))
    }

    fn open(blob: &[u8], vault: &Vault, id: i64) -> Result<LinkSecret, VaultError> {
        let json = vault.open(blob, &context(id))?;
        serde_json::from_slice(&json).map_err(|_| VaultError::Unseal)
    }
}

/// Seals Office365 tokens for link `id` exactly as background work stores them, for tools that
/// write links straight into the store with [`crate::store::Db::insert_links`] while no daemon
/// runs (the benchmark, fault tests seeding a storm). The daemon itself never takes links this way.
pub fn seal_office365_tokens(
    vault: &Vault,
    id: i64,
    tokens: &office365::Tokens,
) -> Result<Vec<u8>, VaultError> {
    LinkSecret::Office365 {
        access_token: tokens.access_token.clone(),
        refresh_token: tokens.refresh_token.clone(),
        expires_at: tokens.expires_at,
    }
    .seal(vault, id)
}

/// Binds a sealed secret to its row.
fn context(id: i64) -> Vec<u8> {
    format!("mslink-link:{id}").into_bytes()
}

/// Runs `connect` for `user` (on behalf of `actor`): sign in, first check, store the link.
pub async fn connect(
    daemon: &Daemon,
    user: &str,
    args: ConnectArgs,
    interaction: &mut crate::interaction::Interaction,
) -> Result<LinkInfo, WireError> {
    let config = daemon.config();
    let provider = match args.provider {
        Some(provider) => provider,
        None => {
            interaction.step(format!("Finding out where {} is hosted", args.email)).await;
            let found = daemon.detector.detect(config.clone(), &args.email).await;
            match found.provider {
                // A password is never sent before the provider is settled: an Exchange connect
                // must come back with one.
                Some(Provider::Exchange) if args.password.is_none() => {
                    return Err(WireError::new(
                        ErrorKind::Usage,
                        format!(
                            "{} is on an Exchange server, which needs its password",
                            args.email
                        ),
                    )
                    .with_hint("connect again with --provider exchange"));
                }
                Some(provider) => provider,
                None => {
                    let why = if found.conflicting {
                        "the evidence conflicts"
                    } else {
                        "no probe was decisive"
                    };
                    return Err(WireError::new(
                        ErrorKind::NotAllowed,
                        format!("cannot tell whether {} is on Office365 or Exchange ({why})", args.email),
                    )
                    .with_hint("say which with --provider office365 or --provider exchange (`mslinkctl detect` shows the evidence)"));
                }
            }
        }
    };
    let existing = {
        let (user, email) = (user.to_owned(), args.email.clone());
        daemon.store.call(move |db| db.link_record(&user, &email)).await.map_err(internal)?
    };
    if let Some(existing) = &existing
        && existing.provider != provider
    {
        return Err(WireError::new(
            ErrorKind::NotAllowed,
            format!("{} is already linked as an {} mailbox", args.email, existing.provider),
        )
        .with_hint(format!(
            "run `mslinkctl disconnect {}` first to link it as {provider}",
            args.email
        )));
    }
    let now = crate::now();
    let (new, secret) = match provider {
        Provider::Office365 => {
            let tokens = office365::sign_in(&config, args.flow, &args.email, interaction)
                .await
                .map_err(|e| e.wire_error())?;
            interaction.step("Checking the mailbox and calendar through Microsoft Graph").await;
            let report = office365::check(&config, &tokens.access_token, &args.email)
                .await
                .map_err(|e| e.wire_error())?;
            let new = NewLink {
                user: user.to_owned(),
                email: args.email.clone(),
                provider,
                details: "{}".into(),
                endpoint: Some(config.office365.graph_url.as_str().to_owned()),
                auth_scheme: Some(
                    match args.flow {
                        SignInFlow::DeviceCode => "oauth2 device code",
                        SignInFlow::Browser | SignInFlow::Paste => "oauth2 authorization code",
                    }
                    .to_owned(),
                ),
                report,
                token_expiry: Some(tokens.expires_at),
                next_check: now + work::jittered(config.schedule.check_interval),
            };
            let secret = LinkSecret::Office365 {
                access_token: tokens.access_token,
                refresh_token: tokens.refresh_token,
                expires_at: tokens.expires_at,
            };
            (new, secret)
        }
        Provider::Exchange => {
            let Some(password) = args.password else {
                return Err(WireError::new(
                    ErrorKind::Usage,
                    "an Exchange mailbox needs its password",
                )
                .with_hint("mslinkctl prompts for it; in scripts use --password-stdin"));
            };
            let login = Login {
                email: &args.email,
                username: args.username.as_deref(),
                password: &password,
                server: args.server.as_deref(),
            };
            let (endpoint, report) =
                exchange::link(&config, login, interaction).await.map_err(|e| e.wire_error())?;
            let new = NewLink {
                user: user.to_owned(),
                email: args.email.clone(),
                provider,
                details: serde_json::to_string(&endpoint).map_err(|e| {
                    WireError::new(ErrorKind::Internal, format!("cannot store the endpoint: {e}"))
                })?,
                endpoint: Some(endpoint.ews_url.clone()),
                auth_scheme: Some(endpoint.auth.as_str().to_owned()),
                report,
                token_expiry: None,
                next_check: now + work::jittered(config.schedule.check_interval),
            };
            (new, LinkSecret::Exchange { password })
        }
    };
    let vault = daemon.vault.clone();
    let transition = daemon
        .store
        .call(move |db| {
            db.save_link(&new, now, |id| {
                secret.seal(&vault, id).map_err(|e| StoreError::Sealing(e.to_string()))
            })
        })
        .await
        .map_err(internal)?;
    tracing::info!(link = %transition.link.email, user, provider = %provider, "mailbox linked");
    work::announce(daemon, &transition);
    daemon.scheduler.schedule_link(transition.id, &transition.link, &config);
    Ok(transition.link)
}

/// Runs a check of `user`'s link now and returns it as it then stands.
pub async fn check_now(daemon: &Daemon, user: &str, email: &str) -> Result<LinkInfo, WireError> {
    let record = {
        let (user, email) = (user.to_owned(), email.to_owned());
        daemon.store.call(move |db| db.link_record(&user, &email)).await.map_err(internal)?
    }
    .ok_or_else(|| not_found(email))?;
    if record.state == mslink_proto::LinkState::Suspended {
        return Err(WireError::new(ErrorKind::NotAllowed, "the Microsoft integration is disabled")
            .with_hint("an admin can turn it on with `mslinkctl enable`"));
    }
    let id = record.id;
    let failure = work::perform(daemon, id, true).await.map_err(internal)?;
    let link = daemon
        .store
        .call(move |db| db.link_info(id))
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found(email))?;
    match failure {
        None => Ok(link),
        Some(failure) => Err(WireError::new(
            if failure.state == mslink_proto::LinkState::NeedsReauth {
                ErrorKind::AuthRejected
            } else {
                ErrorKind::Failed
            },
            format!("the check of {email} failed: {}", failure.describe()),
        )
        .with_hint(match failure.state {
            mslink_proto::LinkState::NeedsReauth => {
                format!("sign in again: `mslinkctl connect {email}`")
            }
            mslink_proto::LinkState::Blocked => {
                "see the reason: someone other than mslink must act".to_owned()
            }
            _ => "mslinkd retries by itself; `mslinkctl status` shows when".to_owned(),
        })),
    }
}

/// A fresh access token for `user`'s own Office365 link, refreshing first if it is about to
/// expire.
pub async fn token(
    daemon: &Daemon,
    user: &str,
    email: &str,
    resource: TokenResource,
) -> Result<TokenReply, WireError> {
    if resource == TokenResource::Ews {
        return Err(WireError::new(
            ErrorKind::NotAllowed,
            "EWS tokens are not issued: Exchange Online switches EWS off for third-party apps from October 2026",
        )
        .with_hint("use --resource graph (Microsoft Graph)"));
    }
    let record = {
        let (user, email) = (user.to_owned(), email.to_owned());
        daemon.store.call(move |db| db.link_record(&user, &email)).await.map_err(internal)?
    }
    .ok_or_else(|| not_found(email))?;
    if record.provider != Provider::Office365 {
        return Err(WireError::new(ErrorKind::NotAllowed, format!("{email} is an Exchange link"))
            .with_hint("access tokens exist only for Office365 links"));
    }
    work::fresh_token(daemon, record.id).await
}

/// No such link for this user (another user's link is reported the same way: never leaked).
pub(crate) fn not_found(email: &str) -> WireError {
    WireError::new(ErrorKind::NotFound, format!("no link for {email}"))
        .with_hint("`mslinkctl status` lists your links")
}

/// A store failure, logged in full and reported without internals.
pub(crate) fn internal(error: StoreError) -> WireError {
    tracing::error!(error = %error, "state store failed");
    if error.is_storage_fault() {
        WireError::new(
            ErrorKind::Internal,
            "mslinkd cannot write its database (disk full or read-only)",
        )
        .with_hint("free space or fix the state directory's permissions; nothing stored was lost")
    } else {
        WireError::new(ErrorKind::Internal, "mslinkd hit an internal error")
            .with_hint("the daemon log has the details (journalctl -u mslinkd)")
    }
}
