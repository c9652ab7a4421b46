//! Linking an on-premises Exchange mailbox at `connect`: with the password, by the first scheme
//! of `[exchange] auth` the server offers, or through Entra ID where the server asks for its
//! tokens (hybrid modern authentication).
//!
//! ```text
//!  exchange::link(password, or nothing yet)
//!     ├─ linked ──────────────────────────────────────────────────────────▶ password link
//!     ├─ PasswordNeeded ─▶ ask the ctl (Password event) ─▶ link with it ──▶ password link
//!     └─ ModernAuth { resource } ─▶ sign in for resource's EWS scope
//!           ─▶ link with the tokens ─┬─ linked ──────────────────────────▶ tokens link (auth oauth)
//!                                    └─ ModernAuth { another host } ─▶ refresh for it, again
//! ```
//!
//! Entra ID tokens are per server (their audience is its origin): the sign-in is for the first
//! server that asks, and the refresh token gets one for each further server (Autodiscover's host,
//! then EWS's), each sent only to its own.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mslink_proto::{ConnectArgs, Sensitive};

use super::{LinkError, LinkSecret};
use crate::config::Config;
use crate::exchange::keytab::{self, KeytabError};
use crate::exchange::{self, ExchangeEndpoint, ExchangeError, Login, Secret};
use crate::health::CheckReport;
use crate::interaction::Interaction;
use crate::office365::{self, Office365Error};

/// How many servers one connect gets Entra ID tokens for, beyond the first.
const MAX_TOKEN_SERVERS: usize = 3;

/// Links the Exchange mailbox `args` names (see the module doc); with no password given, a
/// server that takes Entra ID needs none.
pub(super) async fn link(
    config: &Config,
    args: &ConnectArgs,
    interaction: &mut Interaction,
) -> Result<(ExchangeEndpoint, CheckReport, LinkSecret), LinkError> {
    if let Some(keytab) = &args.keytab {
        return link_with_keytab(config, args, keytab, interaction).await;
    }
    let first = match &args.password {
        Some(password) => Secret::Password(password),
        None => Secret::Unknown,
    };
    let mut password = args.password.clone();
    let resource = match exchange::link(config, login(args, first), interaction).await {
        Ok((endpoint, report)) => return Ok((endpoint, report, linked_with(password)?)),
        Err(ExchangeError::ModernAuth { resource, .. }) => resource,
        // Asked only now, when the server has said it wants a password.
        Err(ExchangeError::PasswordNeeded { server }) if args.interactive => {
            password = interaction.password(server).await;
            let Some(given) = &password else {
                return Err(ExchangeError::Cancelled.into());
            };
            let (endpoint, report) =
                exchange::link(config, login(args, Secret::Password(given)), interaction).await?;
            return Ok((endpoint, report, linked_with(password)?));
        }
        Err(ExchangeError::PasswordNeeded { .. }) => {
            return Err(LinkError::NeedsPassword(args.email.clone()));
        }
        Err(error) => return Err(error.into()),
    };
    link_through_entra(config, args, resource, interaction).await
}

/// Links a service account's mailbox with the key of its keytab (the account `--username`
/// names, or the keytab's one account): Kerberos only, no password asked.
async fn link_with_keytab(
    config: &Config,
    args: &ConnectArgs,
    keytab: &Sensitive,
    interaction: &mut Interaction,
) -> Result<(ExchangeEndpoint, CheckReport, LinkSecret), LinkError> {
    let bytes = BASE64
        .decode(keytab.expose())
        .map_err(|_| KeytabError::Malformed("the ctl sent it garbled".into()))?;
    let key = keytab::key_for(&keytab::parse(&bytes)?, args.username.as_deref())?;
    interaction
        .step(format!(
            "Signing in as {} with its keytab's {} key (kvno {})",
            key.principal,
            keytab::enctype_name(key.enctype),
            key.kvno
        ))
        .await;
    let login = Login { username: Some(&key.principal), ..login(args, Secret::Key(&key)) };
    let (endpoint, report) = exchange::link(config, login, interaction).await?;
    Ok((endpoint, report, LinkSecret::Keytab { key }))
}

/// Signs in through Entra ID for `resource`, the first server that asked for a token, and
/// links with the tokens.
async fn link_through_entra(
    config: &Config,
    args: &ConnectArgs,
    resource: String,
    interaction: &mut Interaction,
) -> Result<(ExchangeEndpoint, CheckReport, LinkSecret), LinkError> {
    interaction
        .step(format!("{resource} takes Entra ID sign-in (hybrid modern authentication)"))
        .await;
    let scopes = exchange::oauth_scopes(&resource);
    let signed_in =
        office365::sign_in_to(config, args.flow, &args.email, Some(&scopes), interaction)
            .await
            .map_err(|error| not_registered(args, &resource, error))?;
    // A sign-in brings a refresh token, or fails (`Office365Error::NoRefreshToken`).
    let mut refresh_token = signed_in
        .refresh_token
        .clone()
        .ok_or(Office365Error::NoRefreshToken { granted: None, asked_consent: false })?;
    let mut tokens = HashMap::from([(resource, signed_in)]);
    // Autodiscover's host and the EWS host, at most; each new one gets its token once.
    for _ in 0..MAX_TOKEN_SERVERS {
        let held: HashMap<String, Sensitive> =
            tokens.iter().map(|(k, t)| (k.clone(), t.access_token.clone())).collect();
        let resource = match exchange::link(config, login(args, Secret::Tokens(&held)), interaction)
            .await
        {
            Ok((endpoint, report)) => {
                let ews = exchange::server_url(&endpoint.ews_url)?;
                let Some(ews_token) = tokens.remove(&exchange::resource_of(&ews)) else {
                    return Err(LinkError::Exchange(ExchangeError::Internal {
                        detail: "EWS answered without its token".into(),
                    }));
                };
                let secret = LinkSecret::Tokens {
                    access_token: ews_token.access_token,
                    refresh_token: Some(refresh_token),
                    expires_at: ews_token.expires_at,
                };
                return Ok((endpoint, report, secret));
            }
            Err(ExchangeError::ModernAuth { resource, .. }) if !tokens.contains_key(&resource) => {
                resource
            }
            Err(error) => return Err(error.into()),
        };
        interaction.step(format!("Getting a token for {resource}")).await;
        let scopes = exchange::oauth_scopes(&resource);
        let fresh = office365::refresh_for(config, &refresh_token, &scopes, None)
            .await
            .map_err(|error| not_registered(args, &resource, error))?;
        // Microsoft may or may not rotate; keep the old one if it did not.
        if let Some(rotated) = fresh.refresh_token.clone() {
            refresh_token = rotated;
        }
        tokens.insert(resource, fresh);
    }
    Err(LinkError::Exchange(ExchangeError::Protocol {
        server: args.email.clone(),
        detail: format!("more than {MAX_TOKEN_SERVERS} servers asked for Entra ID tokens"),
    }))
}

/// A refusal of `resource`'s scope is the tenant's: the host is not registered with Entra ID.
fn not_registered(args: &ConnectArgs, resource: &str, error: Office365Error) -> LinkError {
    if error.is_consent_missing() {
        let (email, resource) = (args.email.clone(), resource.to_owned());
        LinkError::HostNotRegistered { email, resource, error }
    } else {
        error.into()
    }
}

/// What `args` asks to link, signing in with `secret`.
fn login<'a>(args: &'a ConnectArgs, secret: Secret<'a>) -> Login<'a> {
    Login {
        email: &args.email,
        username: args.username.as_deref(),
        secret,
        server: args.server.as_deref(),
        trust: exchange::discover::Trust { servers: &args.trusted_servers, ask: args.interactive },
    }
}

/// The secret of a link made with `password`.
fn linked_with(password: Option<Sensitive>) -> Result<LinkSecret, ExchangeError> {
    let password = password
        .ok_or_else(|| ExchangeError::Internal { detail: "linked without a password".into() })?;
    Ok(LinkSecret::Exchange { password })
}
