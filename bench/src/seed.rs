//! Seeding links straight into a daemon's state directory while no daemon runs, through the
//! daemon's own store and vault (so the rows and sealed secrets are exactly what `connect` would
//! have written). This is a library path for tools, not a way into a running daemon: the store
//! is locked while a daemon runs, and opening it here fails then.

use std::path::Path;

use mslink_proto::Sensitive;
use mslinkd::health::CheckReport;
use mslinkd::links::{LinkDetails, Office365Details};
use mslinkd::office365::Tokens;
use mslinkd::store::{NewLink, Store, StoreError};
use mslinkd::vault::Vault;

use crate::fake::first_refresh_token;

/// One Office365 link to seed: its owner, mailbox, and when its token (the fake's generation 0)
/// expires and its next check is due, in Unix seconds.
#[derive(Debug, Clone)]
pub struct Seed {
    pub user: String,
    /// The owner's uid, as `connect` records it; `None`: the uid the name's account has now
    /// (a name with no account leaves the link unbound, for the daemon to bind at start).
    pub uid: Option<u32>,
    pub email: String,
    pub token_expiry: i64,
    pub next_check: i64,
}

type SeedError = Box<dyn std::error::Error + Send + Sync>;

/// Inserts `links` as active Office365 links into the SQLite store in `state_dir`, in batches
/// of 10,000 per transaction.
pub async fn office365_links(
    state_dir: &Path,
    key_file: &Path,
    graph_url: &str,
    links: &[Seed],
) -> Result<Vec<i64>, SeedError> {
    let (store, lock) = Store::open(state_dir)?;
    let vault = std::sync::Arc::new(Vault::open_or_create(key_file)?);
    let ids = office365_links_into(&store, &vault, graph_url, links).await?;
    drop(store);
    drop(lock);
    mslinkd::store::checkpoint(state_dir)?;
    Ok(ids)
}

/// Inserts `links` as active Office365 links into `store` (either backend), their secrets
/// sealed by `vault`, in batches of 10,000 per transaction.
pub async fn office365_links_into(
    store: &Store,
    vault: &std::sync::Arc<Vault>,
    graph_url: &str,
    links: &[Seed],
) -> Result<Vec<i64>, SeedError> {
    let mut ids = Vec::with_capacity(links.len());
    // One NSS lookup per owner without a uid, not per link.
    let mut uids = std::collections::HashMap::new();
    for seed in links.iter().filter(|s| s.uid.is_none()) {
        uids.entry(seed.user.as_str()).or_insert_with(|| mslinkd::identity::uid_of(&seed.user));
    }
    for chunk in links.chunks(10_000) {
        let batch: Vec<NewLink> = chunk
            .iter()
            .map(|seed| NewLink {
                user: seed.user.clone(),
                // As `connect` makes them: bound to the owner's account (a name with none stays
                // unbound, and the daemon binds it at start if one appears).
                uid: seed.uid.or_else(|| uids.get(seed.user.as_str()).copied().flatten()),
                email: seed.email.clone(),
                details: LinkDetails::Office365(Office365Details {
                    graph_url: Some(graph_url.to_owned()),
                    sign_in: Some("oauth2 authorization code".into()),
                }),
                report: CheckReport {
                    inbox_total: Some(42),
                    inbox_unread: Some(3),
                    calendar_ok: true,
                    server_version: None,
                },
                token_expiry: Some(seed.token_expiry),
                // Tokens as Entra issues them: an hour's life, most of it behind them.
                token_issued: Some(seed.token_expiry - 3600),
                next_check: seed.next_check,
                evidence: Vec::new(),
            })
            .collect();
        let vault = vault.clone();
        let now = mslinkd::now();
        let new = store
            .insert_links(batch, now, move |id, link| {
                let tokens = Tokens {
                    access_token: Sensitive::new(format!("at:{}:0", link.email)),
                    refresh_token: Some(Sensitive::new(first_refresh_token(&link.email))),
                    expires_at: link.token_expiry.unwrap_or_default(),
                };
                mslinkd::links::seal_office365_tokens(&vault, id, &tokens)
                    .map_err(|e| StoreError::Sealing(e.to_string()))
            })
            .await?;
        ids.extend(new);
    }
    Ok(ids)
}
