//! The disk filling up under the real `mslinkd` (its state directory on a 4 MB tmpfs, filled
//! mid-storm): the daemon says so loudly (an error in its log, a clear error from `mslinkctl`),
//! loses nothing already stored, and recovers by itself once space returns. Needs root (mount),
//! and fails without it (`tests/src/prerequisite.rs`). (A read-only remount is refused by the
//! kernel while the daemon has the database open for writing, so "disk full" stands for both:
//! SQLite reports either as a storage fault through the same path.)

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mslink_bench::fake::{FakeMicrosoft, Stats};
use mslink_bench::seed::{self, Seed};
use mslink_e2e::{ALICE, Daemon, ensure_accounts, require_root, wait_until};

const LINKS: usize = 20;

fn mount(args: &[&str], target: &Path) {
    let out = Command::new("mount").args(args).arg(target).output().unwrap();
    assert!(out.status.success(), "mount {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Writes `path` until the file system is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    while file.write_all(&chunk[..512]).is_ok() {}
    let _ = file.sync_all();
}

/// Unmounts the tmpfs even when the test fails.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

fn states(daemon: &Daemon) -> Vec<String> {
    let status = daemon.ctl(ALICE, &["--json", "status"]).expect_code(0).json();
    status["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["state"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_full_disk_is_reported_loudly_and_recovered_from() {
    if !require_root("a_full_disk_is_reported_loudly_and_recovered_from") {
        return;
    }
    ensure_accounts();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeMicrosoft::start(Duration::from_secs(3))).unwrap();
    let (url, office365) = (&fake.url, fake.office365_config());
    let mut daemon = Daemon::start(&format!(
        "{office365}[schedule]\nrefresh_before_expiry = \"1s\"\ncheck_interval = \"2s\"\n\
         retry_min = \"1s\"\nretry_max = \"2s\"\n"
    ));
    daemon.stop();

    // Move the state onto a 4 MB tmpfs of its own.
    let state = daemon.dir.path().join("state");
    let saved = daemon.dir.path().join("state.saved");
    std::fs::rename(&state, &saved).unwrap();
    std::fs::create_dir(&state).unwrap();
    mount(&["-t", "tmpfs", "-o", "size=4M,mode=0700", "tmpfs"], &state);
    let _mounted = Mounted(&state);
    for entry in std::fs::read_dir(&saved).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), state.join(entry.file_name())).unwrap();
    }
    let now = mslinkd::now();
    let seeds: Vec<Seed> = (0..LINKS)
        .map(|i| Seed {
            user: ALICE.to_owned(),
            uid: None,
            email: format!("ro{i}@contoso.test"),
            token_expiry: now + 3,
            next_check: now,
        })
        .collect();
    runtime
        .block_on(seed::office365_links(
            &state,
            &state.join("secret.key"),
            &format!("{url}/v1.0"),
            &seeds,
        ))
        .unwrap();
    daemon.restart();
    assert!(wait_until(Duration::from_secs(20), || states(&daemon).iter().all(|s| s == "active")));

    // The disk fills up in the middle of the refresh storm.
    let filler = state.join("filler");
    fill(&filler);
    let refused = daemon.ctl(ALICE, &["request", "--message", "please"]);
    assert_ne!(refused.code, 0, "a write succeeded on a full disk");
    assert!(
        refused.stderr.contains("cannot write its database"),
        "the ctl error does not say what is wrong: {}",
        refused.stderr
    );
    assert!(
        wait_until(Duration::from_secs(10), || !daemon
            .log_lines("cannot store a refreshed token")
            .is_empty()),
        "no error in the log about the refresh that could not be stored"
    );
    // Reading still works, and shows every link.
    assert_eq!(states(&daemon).len(), LINKS);

    // Space again: everything recovers by itself, with the stored refresh tokens.
    std::fs::remove_file(&filler).unwrap();
    let before = Stats::get(&fake.stats().refreshed);
    assert!(
        wait_until(Duration::from_secs(30), || {
            Stats::get(&fake.stats().refreshed) >= before + 2 * LINKS as u64
                && states(&daemon).iter().all(|s| s == "active")
        }),
        "links did not recover after the disk became writable: {:?}",
        states(&daemon)
    );
    daemon.ctl(ALICE, &["request", "--message", "please"]).expect_code(0);
    assert_eq!(Stats::get(&fake.stats().rejected), 0, "a refresh token was lost");
    assert_eq!(states(&daemon).len(), LINKS);
    daemon.stop();
}
