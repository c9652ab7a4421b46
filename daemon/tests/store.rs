//! The store's operations, the same suite on both backends: SQLite (a fresh state directory)
//! and PostgreSQL (a throwaway cluster, `mslink_e2e::postgres`, migrated by `postgres::migrate`).
//! Every answer is compared with what the operation's contract says, so a backend that differs
//! from the other fails here.
//!
//! The PostgreSQL half needs `bash .ci/setup` (Debian `postgresql`) and root (the cluster runs as
//! `postgres`).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use mslink_e2e::postgres::Postgres;
use mslink_proto::{LinkState, Provider};
use mslinkd::config::{Config, Env, StoreBackend};
use mslinkd::health::{Actor, CheckReport, Failure};
use mslinkd::links::{LinkDetails, Office365Details};
use mslinkd::store::{
    NewLink, Outcome, Owner, Release, ResourceToken, Seal, Store, StoreError, postgres,
};

fn new_link(user: &str, uid: u32, email: &str) -> NewLink {
    NewLink {
        user: user.into(),
        uid: Some(uid),
        email: email.into(),
        details: LinkDetails::Office365(Office365Details {
            graph_url: Some("https://graph.contoso.test/v1.0".into()),
            sign_in: Some("oauth2 authorization code".into()),
        }),
        report: CheckReport {
            inbox_total: Some(12),
            inbox_unread: Some(3),
            calendar_ok: true,
            server_version: None,
        },
        token_expiry: Some(5000),
        token_issued: Some(1400),
        next_check: 2000,
        evidence: Vec::new(),
    }
}

fn seal(tag: &'static str) -> Seal {
    Box::new(move |id| Ok(format!("{tag}:{id}").into_bytes()))
}

fn owner(name: &str, uid: u32) -> Owner {
    Owner { name: name.into(), uid: Some(uid) }
}

/// Everything the daemon asks of a store, in the order a day of its life would.
async fn suite(store: &Store) {
    let commits = store.commits();

    // Requests while the integration is off; one for someone else is audited.
    assert!(!store.integration().await.unwrap().enabled);
    let first = store.request("alice".into(), Some("please".into()), "alice".into(), 100).await;
    let first = first.unwrap();
    assert!(!first.updated && !first.integration_enabled);
    assert_eq!(first.request.unwrap().message.as_deref(), Some("please"));
    let again = store.request("alice".into(), None, "alice".into(), 110).await.unwrap();
    assert!(again.updated, "a second request updates the first");
    assert_eq!(again.request.unwrap().message.as_deref(), Some("please"), "message kept");
    store.request("bob".into(), None, "root".into(), 120).await.unwrap();
    let pending = store.pending_requests().await.unwrap();
    assert_eq!(pending.iter().map(|r| r.user.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);

    // Enable grants them; a second enable changes nothing.
    let (reply, changed) = store.set_integration(true, "root".into(), 200).await.unwrap();
    assert!(reply.changed && changed.is_empty());
    assert_eq!(reply.granted_requests, 2);
    assert!(store.pending_requests().await.unwrap().is_empty());
    let (reply, _) = store.set_integration(true, "root".into(), 201).await.unwrap();
    assert!(!reply.changed);
    let on = store.request("carol".into(), None, "carol".into(), 202).await.unwrap();
    assert!(on.integration_enabled && on.request.is_none());

    // Linking: new, case-insensitive lookups, the per-user limit, a re-link.
    let (linked, timers) = store
        .save_link(new_link("alice", 1001, "Alice@Contoso.test"), 300, Some(2), seal("a"))
        .await
        .unwrap();
    assert_eq!(linked.previous, None);
    assert_eq!(linked.link.state, LinkState::Active);
    assert_eq!(linked.link.inbox_unread, Some(3));
    let timers = timers.unwrap();
    assert_eq!(
        (timers.next_check, timers.token_expiry, timers.owner),
        (Some(2000), Some(5000), Some(1001))
    );
    let id = linked.id;
    let check = store.connect_check(owner("alice", 1001), "alice@CONTOSO.test".into()).await;
    let check = check.unwrap();
    assert!(check.enabled);
    assert_eq!(check.count, 1);
    assert_eq!(check.existing.as_ref().map(|r| r.id), Some(id));
    let other_account = store.connect_check(owner("alice", 4242), "alice@contoso.test".into());
    assert_eq!(other_account.await.unwrap().count, 0, "an earlier account's links are its own");
    store
        .save_link(new_link("alice", 1001, "second@contoso.test"), 301, Some(2), seal("b"))
        .await
        .unwrap();
    let refused = store
        .save_link(new_link("alice", 1001, "third@contoso.test"), 302, Some(2), seal("c"))
        .await;
    assert!(matches!(refused, Err(StoreError::TooManyLinks { limit: 2 })), "{refused:?}");
    let (relinked, _) = store
        .save_link(new_link("alice", 1001, "alice@contoso.test"), 303, Some(2), seal("d"))
        .await
        .unwrap();
    assert_eq!((relinked.id, relinked.previous), (id, Some(LinkState::Active)), "a re-link");
    let record = store.link_record(id).await.unwrap().unwrap();
    assert_eq!(record.secret.as_deref(), Some(format!("d:{id}").as_bytes()));
    assert_eq!(record.provider, Provider::Office365);
    let generation = record.generation;

    // Tokens: committed only at the generation the work started from.
    let timers =
        store.store_refreshed_secret(id, generation, b"rotated".to_vec(), (9000, 400), None).await;
    let timers = timers.unwrap();
    let timers = timers.expect("stored at the link's generation");
    assert_eq!((timers.token_expiry, timers.token_issued), (Some(9000), Some(400)));
    assert_eq!(Some(timers), store.timers(id).await.unwrap(), "the timers as committed");
    assert!(
        store
            .store_refreshed_secret(id, generation - 1, b"stale".to_vec(), (9100, 401), None)
            .await
            .unwrap()
            .is_none()
    );
    let record = store.link_record(id).await.unwrap().unwrap();
    assert_eq!(
        (record.secret.as_deref(), record.token_expiry),
        (Some(&b"rotated"[..]), Some(9000))
    );
    let token = ResourceToken { sealed: b"imap-token".to_vec(), expires_at: 9500, issued_at: 402 };
    assert!(
        store
            .store_resource_token(id, generation, b"rotated2".to_vec(), "imap", token.clone())
            .await
            .unwrap()
    );
    assert!(
        !store
            .store_resource_token(id, generation + 5, b"x".to_vec(), "imap", token.clone())
            .await
            .unwrap()
    );
    assert_eq!(store.resource_token(id, "imap").await.unwrap(), Some(token.clone()));
    assert_eq!(store.resource_token(id, "smtp").await.unwrap(), None);
    let lookup =
        store.lookup(owner("alice", 1001), "ALICE@contoso.test".into(), Some("imap")).await;
    let (found, held) = lookup.unwrap().found.unwrap();
    assert_eq!((found.id, held), (id, Some(token)));
    assert!(
        store
            .lookup(owner("alice", 4242), "alice@contoso.test".into(), None)
            .await
            .unwrap()
            .found
            .is_none()
    );

    // Outcomes: a failure degrades, a pass restores, a stale generation is ignored.
    let failed =
        Outcome::Failed { failure: Failure::transient("503 from Graph"), next_attempt: Some(460) };
    let (transition, timers) =
        store.record_outcome(id, generation, failed.clone(), 450, None).await.unwrap();
    let transition = transition.unwrap();
    assert_eq!(
        (transition.previous, transition.link.state),
        (Some(LinkState::Active), LinkState::Degraded)
    );
    assert_eq!(timers.unwrap().next_check, Some(460));
    let (same, _) = store.record_outcome(id, generation, failed, 455, None).await.unwrap();
    assert!(same.is_none(), "degraded again is no transition");
    assert_eq!(store.link_record(id).await.unwrap().unwrap().failures, 2);
    let healthy = Outcome::Healthy {
        report: CheckReport {
            inbox_total: Some(20),
            inbox_unread: Some(0),
            calendar_ok: true,
            server_version: None,
        },
        next_check: 1400,
    };
    let (stale, timers) =
        store.record_outcome(id, generation - 1, healthy.clone(), 470, None).await.unwrap();
    assert!(stale.is_none());
    assert_eq!(timers.unwrap().state, LinkState::Degraded, "the stale outcome changed nothing");
    let (back, _) = store.record_outcome(id, generation, healthy, 480, None).await.unwrap();
    let back = back.unwrap();
    assert_eq!(
        (back.link.state, back.link.inbox_total, back.link.since),
        (LinkState::Active, Some(20), 480)
    );
    let blocked = Outcome::Failed {
        failure: Failure::blocked("client secret expired", Actor::Operator),
        next_attempt: None,
    };
    let (_, _) = store.record_outcome(id, generation, blocked, 490, None).await.unwrap();
    let due = store.recheck_blocked(Actor::Operator, 500).await.unwrap();
    assert_eq!(due.iter().map(|t| (t.id, t.next_check)).collect::<Vec<_>>(), [(id, Some(500))]);

    // Reads that answer people.
    let bulk: Vec<NewLink> =
        (0..5).map(|i| new_link("dave", 1004, &format!("d{i}@contoso.test"))).collect();
    let ids = store
        .insert_links(bulk, 510, |id, link| Ok(format!("{}:{id}", link.email).into_bytes()))
        .await
        .unwrap();
    assert_eq!(ids.len(), 5);
    assert_eq!(
        store.link_record(ids[4]).await.unwrap().unwrap().secret.unwrap(),
        format!("d4@contoso.test:{}", ids[4]).into_bytes()
    );
    let overview = store.overview(true).await.unwrap();
    assert!(overview.enabled);
    let count = |s| overview.counts.iter().find(|(state, _)| *state == s).unwrap().1;
    assert_eq!(
        (count(LinkState::Active), count(LinkState::Blocked), count(LinkState::Suspended)),
        (6, 1, 0)
    );
    assert_eq!(overview.counts.len(), LinkState::ALL.len(), "every state listed");
    assert_eq!(overview.links.unwrap().len(), 7);
    assert!(store.overview(false).await.unwrap().links.is_none());
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.links_page(None, None, after.clone(), 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().map(|l| (l.user.clone(), l.email.clone()));
        seen.extend(page.into_iter().map(|l| l.email));
    }
    assert_eq!(seen.len(), 7, "pages cover every link once: {seen:?}");
    assert_eq!(seen[0..2], ["Alice@Contoso.test", "second@contoso.test"]);
    let blocked_only = store.links_page(None, Some(LinkState::Blocked), None, 10).await.unwrap();
    assert_eq!(blocked_only.len(), 1);
    let daves = store.links_page(Some(owner("dave", 1004)), None, None, 10).await.unwrap();
    assert_eq!(daves.len(), 5);
    assert!(store.links_page(Some(owner("dave", 7)), None, None, 10).await.unwrap().is_empty());
    assert_eq!(store.link_ids(Some(LinkState::Active)).await.unwrap().len(), 6);
    let status = store.status("alice".into(), Some(owner("alice", 1001)), false).await.unwrap();
    assert_eq!(status.links.len(), 2);
    assert!(status.pending_requests.is_none() && status.recent_admin_actions.is_empty());
    assert_eq!(status.request.unwrap().user, "alice");

    // Disable suspends every link, enable brings each back as it was.
    let (reply, suspended) = store.set_integration(false, "root".into(), 600).await.unwrap();
    assert_eq!((reply.links_affected, suspended.len()), (7, 7));
    assert!(suspended.iter().all(|(t, _)| t.link.state == LinkState::Suspended));
    let was_blocked = suspended.iter().find(|(t, _)| t.id == id).unwrap();
    assert_eq!(was_blocked.0.previous, Some(LinkState::Blocked));
    let (suspended_outcome, _) = store
        .record_outcome(
            ids[0],
            0,
            Outcome::Healthy { report: CheckReport::default(), next_check: 1 },
            601,
            None,
        )
        .await
        .unwrap();
    assert!(suspended_outcome.is_none(), "work that started before the disable commits nothing");
    let (_, resumed) = store.set_integration(true, "root".into(), 700).await.unwrap();
    let restored = resumed.iter().find(|(t, _)| t.id == id).unwrap();
    assert_eq!(
        (restored.0.link.state, restored.0.link.reason.as_deref()),
        (LinkState::Blocked, Some("client secret expired (to fix: the mslink operator)"))
    );
    assert_eq!(resumed.iter().filter(|(t, _)| t.link.state == LinkState::Active).count(), 6);
    assert!(
        resumed.iter().filter(|(t, _)| t.link.state == LinkState::Active).all(|(_, timers)| timers
            .as_ref()
            .unwrap()
            .next_check
            == Some(700))
    );

    // Removal, audited when an admin removes someone's link.
    assert_eq!(
        store
            .delete_link(owner("alice", 1001), "nobody@contoso.test".into(), "alice".into(), 800)
            .await
            .unwrap(),
        None
    );
    let removed = store
        .delete_link(Owner::from("alice"), "SECOND@contoso.test".into(), "root".into(), 801)
        .await
        .unwrap();
    let (_, email, provider) = removed.unwrap();
    assert_eq!((email.as_str(), provider), ("second@contoso.test", Provider::Office365));
    store
        .audit("root".into(), "reload", Some("/etc/mslink/mslinkd.toml".into()), 802)
        .await
        .unwrap();
    let admin = store.status("root".into(), None, true).await.unwrap();
    assert_eq!(admin.links.len(), 6);
    assert_eq!(admin.pending_requests, Some(0));
    let actions: Vec<_> = admin.recent_admin_actions.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions[..4], ["reload", "disconnect", "enable", "disable"], "newest first");
    assert_eq!(
        admin.recent_admin_actions[1].detail.as_deref(),
        Some("second@contoso.test of alice")
    );

    // Owners bound at start, and the watchdog's ping.
    let unbound = NewLink { uid: None, ..new_link("erin", 0, "erin@contoso.test") };
    store.insert_links(vec![unbound], 900, |id, _| Ok(vec![id as u8])).await.unwrap();
    let bound = store.bind_owners(|name| (name == "erin").then_some(1005)).await.unwrap();
    assert_eq!(bound, 1);
    assert_eq!(store.bind_owners(|_| Some(1)).await.unwrap(), 0, "nothing left unbound");
    assert!(
        store
            .lookup(owner("erin", 1005), "erin@contoso.test".into(), None)
            .await
            .unwrap()
            .found
            .is_some()
    );
    store.ping_writer().await.unwrap();
    let due = store.due_links().await.unwrap();
    assert_eq!(due.len(), 7, "active and blocked links are the scheduler's");
    assert!(store.commits() > commits, "writes are counted");
}

#[tokio::test]
async fn the_store_suite_passes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _lock) = Store::open(&dir.path().join("state")).unwrap();
    suite(&store).await;
}

/// A store on `pg`, as one daemon of a fleet opens it (its own pool); migrated.
async fn on_postgres(pg: &Postgres, dir: &std::path::Path) -> Store {
    let password = dir.join("store-password");
    pg.write_password_file(&password);
    let text = format!("[store]\nurl = {:?}\npassword_file = {password:?}\n", pg.url());
    let StoreBackend::Postgres(config) =
        Config::parse(&text, None, &Env { is_root: true, ..Env::default() }).unwrap().store
    else {
        panic!("a [store] url selects PostgreSQL")
    };
    let pool = postgres::connect(&config).await.unwrap();
    postgres::migrate(&pool, &config).await.unwrap();
    Store::postgres(pool, *config)
}

#[tokio::test]
async fn the_store_suite_passes_on_postgresql() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    suite(&on_postgres(&pg, dir.path()).await).await;
}

#[tokio::test]
async fn two_daemons_share_a_link_by_its_lease_and_racing_connects_make_one_link() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (on_postgres(&pg, dir.path()).await, on_postgres(&pg, dir.path()).await);
    assert!(a.is_shared() && b.is_shared());

    // A link saved at 1000 is due then, and claimed by one daemon only.
    let (linked, _) = a
        .save_link(new_link("alice", 1001, "alice@contoso.test"), 1000, None, seal("a"))
        .await
        .unwrap();
    let id = linked.id;
    assert!(b.claim_due("b", 10, 60, 999).await.unwrap().is_empty(), "not due before 1000");
    let claimed = b.claim_due("b", 10, 60, 1000).await.unwrap();
    assert_eq!(claimed.iter().map(|t| t.id).collect::<Vec<_>>(), [id]);
    assert!(a.claim_due("a", 10, 60, 1000).await.unwrap().is_empty(), "b holds it");
    assert_eq!(a.lease(id, "a", 60).await.unwrap().as_deref(), Some("b"), "b holds it");
    assert_eq!(b.lease(id, "b", 60).await.unwrap(), None, "b renews its own lease");

    // The release sets the next due time from the link as committed, and who worked it.
    let after_check = |t: &mslinkd::links::Timers| t.next_check.map(|c| c + 1);
    b.release(id, Release { owner: "b", due: &after_check }).await.unwrap();
    assert!(a.claim_due("a", 10, 60, 2000).await.unwrap().is_empty(), "due at 2001 now");
    let status = a.status("alice".into(), Some(owner("alice", 1001)), false).await.unwrap();
    assert_eq!(status.links[0].worked_by.as_deref(), Some("b"));
    assert_eq!(a.claim_due("a", 10, 60, 2001).await.unwrap().len(), 1);
    // A release by a daemon that lost the lease changes nothing.
    b.release(id, Release { owner: "b", due: &|_| None }).await.unwrap();
    assert_eq!(b.lease(id, "b", 60).await.unwrap().as_deref(), Some("a"));

    // A lease that runs out (by the database's clock) is anyone's.
    assert_eq!(a.lease(id, "a", 0).await.unwrap(), None);
    let mut taken = false;
    for _ in 0..40 {
        if b.lease(id, "b", 60).await.unwrap().is_none() {
            taken = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(taken, "a lease that ran out was not taken over");

    // A round's outcome releases its lease in the same commit, with the next due time.
    let generation = b.link_record(id).await.unwrap().unwrap().generation;
    let healthy = Outcome::Healthy { report: CheckReport::default(), next_check: 9000 };
    let release = Release { owner: "b", due: &|t| t.next_check };
    b.record_outcome(id, generation, healthy, 4000, Some(release)).await.unwrap();
    assert!(a.claim_due("a", 10, 60, 8999).await.unwrap().is_empty(), "due at 9000");
    assert_eq!(a.claim_due("a", 10, 60, 9000).await.unwrap().len(), 1, "released");

    // A round that only refreshes lets its lease go in the rotated token's commit; one whose
    // link changed meanwhile stores nothing and lets it go all the same.
    let generation = a.link_record(id).await.unwrap().unwrap().generation;
    let release = Release { owner: "a", due: &|t| t.token_expiry };
    let rotated = b"rotated".to_vec();
    let stored = a.store_refreshed_secret(id, generation, rotated, (9500, 9000), Some(release));
    assert_eq!(stored.await.unwrap().and_then(|t| t.token_expiry), Some(9500));
    assert!(b.claim_due("b", 10, 60, 9499).await.unwrap().is_empty(), "due at 9500");
    assert_eq!(b.claim_due("b", 10, 60, 9500).await.unwrap().len(), 1, "released with the token");
    let release = Release { owner: "b", due: &|_| Some(9600) };
    let stale = b"stale".to_vec();
    let stored = b.store_refreshed_secret(id, generation - 1, stale, (9700, 9500), Some(release));
    assert!(stored.await.unwrap().is_none(), "not at the link's generation");
    assert_eq!(a.claim_due("a", 10, 60, 9600).await.unwrap().len(), 1, "released all the same");
    let record = a.link_record(id).await.unwrap().unwrap();
    assert_eq!(
        (record.secret.as_deref(), record.token_expiry),
        (Some(&b"rotated"[..]), Some(9500))
    );

    // Connects racing on both daemons: one link per address, and never past the limit.
    let mut racing = tokio::task::JoinSet::new();
    for n in 0..12 {
        let store = if n % 2 == 0 { a.clone() } else { b.clone() };
        racing.spawn(async move {
            store
                .save_link(new_link("bob", 1002, "bob@contoso.test"), 3000, Some(3), seal("r"))
                .await
        });
        let store = if n % 2 == 0 { b.clone() } else { a.clone() };
        let email = format!("bob{n}@contoso.test");
        racing.spawn(async move {
            store.save_link(new_link("bob", 1002, &email), 3000, Some(3), seal("r")).await
        });
    }
    let mut refused = 0;
    while let Some(result) = racing.join_next().await {
        match result.unwrap() {
            Ok(_) => {}
            Err(StoreError::TooManyLinks { limit: 3 }) => refused += 1,
            Err(e) => panic!("a racing connect failed: {e}"),
        }
    }
    let links = b.status("bob".into(), Some(owner("bob", 1002)), false).await.unwrap().links;
    assert_eq!(links.len(), 3, "the limit held across daemons: {links:?}");
    let same = links.iter().filter(|l| l.email == "bob@contoso.test").count();
    assert!(same <= 1, "one link per address: {links:?}");
    assert!(refused >= 24 - 3 - 12, "connects past the limit were refused: {refused}");

    // The fleet's key check: the first daemon's value is the one every daemon reads.
    assert_eq!(a.key_check(b"first".to_vec()).await.unwrap().as_deref(), Some(&b"first"[..]));
    assert_eq!(b.key_check(b"second".to_vec()).await.unwrap().as_deref(), Some(&b"first"[..]));
}
