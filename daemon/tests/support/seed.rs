//! Links seeded straight into a state directory, through the daemon's own store and vault (the
//! rows and sealed secrets `connect` would write), before the daemon starts. Included with
//! `#[path]` by the test targets that need many links without signing each one in.

use std::path::Path;

use mslink_proto::Sensitive;
use mslinkd::health::CheckReport;
use mslinkd::links::{LinkDetails, Office365Details};
use mslinkd::office365::Tokens;
use mslinkd::store::{NewLink, Store, StoreError};
use mslinkd::vault::Vault;

/// One Office365 link to seed: its owner and mailbox, its Graph and when its check is due.
pub struct Seed {
    pub user: String,
    pub email: String,
    pub graph_url: String,
    pub next_check: i64,
}

/// Seeds `links` as active Office365 links with hour-long tokens, and turns the integration on.
pub async fn office365_links(state_dir: &Path, key_file: &Path, links: Vec<Seed>) {
    let (store, _lock) = Store::open(state_dir).unwrap();
    let vault = std::sync::Arc::new(Vault::open_or_create(key_file).unwrap());
    let now = mslinkd::now();
    let links: Vec<NewLink> = links
        .into_iter()
        .map(|seed| NewLink {
            user: seed.user,
            // Bound to the name's account when the daemon starts.
            uid: None,
            email: seed.email,
            details: LinkDetails::Office365(Office365Details {
                graph_url: Some(seed.graph_url),
                sign_in: None,
            }),
            report: CheckReport::default(),
            token_expiry: Some(now + 3600),
            token_issued: Some(now),
            next_check: seed.next_check,
            evidence: Vec::new(),
        })
        .collect();
    store
        .call(move |db| {
            db.insert_links(&links, now, |id, _| {
                let tokens = Tokens {
                    access_token: Sensitive::new("at"),
                    refresh_token: Some(Sensitive::new("rt")),
                    expires_at: now + 3600,
                };
                mslinkd::links::seal_office365_tokens(&vault, id, &tokens)
                    .map_err(|e| StoreError::Sealing(e.to_string()))
            })
        })
        .await
        .unwrap();
    store.call(move |db| db.set_integration(true, "root", now)).await.unwrap();
}
