//! The real MIT KDC the Kerberos tests stand on ([`mslink_e2e::kdc`]), checked with MIT's own
//! `kinit` and `klist`.

use std::path::Path;
use std::process::{Command, Output};

use mslink_e2e::kdc::Kdc;

const REALM: &str = "CONTOSO.TEST";
const PASSWORD: &str = "Alice-Pass1";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `klist` of the credential cache file `ccache`.
fn klist(kdc: &Kdc, ccache: &Path) -> String {
    let out = Command::new("klist")
        .env("KRB5_CONFIG", kdc.krb5_conf())
        .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
        .output()
        .expect("run klist");
    assert!(out.status.success(), "klist: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_user_gets_a_ticket_with_the_password_and_is_refused_with_a_wrong_one() {
    let Some(kdc) = Kdc::start(REALM) else { return };
    kdc.add_user("alice", PASSWORD);
    let tmp = tempfile::tempdir().expect("tempdir");
    let ccache = tmp.path().join("alice.ccache");

    let out = kdc.kinit("alice", PASSWORD, &ccache);
    assert!(out.status.success(), "kinit: {}", stderr(&out));
    let tickets = klist(&kdc, &ccache);
    assert!(tickets.contains("Default principal: alice@CONTOSO.TEST"), "{tickets}");
    assert!(tickets.contains("krbtgt/CONTOSO.TEST@CONTOSO.TEST"), "{tickets}");

    let wrong = kdc.kinit("alice", "Not-Her-Password", &tmp.path().join("wrong.ccache"));
    assert!(!wrong.status.success());
    let said = stderr(&wrong);
    assert!(
        said.contains("Preauthentication failed") || said.contains("Password incorrect"),
        "{said}"
    );
}

#[test]
fn a_password_change_refuses_the_old_password() {
    let Some(kdc) = Kdc::start(REALM) else { return };
    kdc.add_user("alice", PASSWORD);
    kdc.change_password("alice", "Spring-2027!");
    let tmp = tempfile::tempdir().expect("tempdir");

    let old = kdc.kinit("alice", PASSWORD, &tmp.path().join("old.ccache"));
    assert!(!old.status.success(), "the old password still works");
    let new = kdc.kinit("alice", "Spring-2027!", &tmp.path().join("new.ccache"));
    assert!(new.status.success(), "kinit: {}", stderr(&new));
}

#[test]
fn a_stopped_kdc_is_unreachable_and_answers_again_on_the_same_port() {
    let Some(mut kdc) = Kdc::start(REALM) else { return };
    kdc.add_user("alice", PASSWORD);
    let tmp = tempfile::tempdir().expect("tempdir");
    let addr = kdc.addr();

    kdc.stop();
    let down = kdc.kinit("alice", PASSWORD, &tmp.path().join("down.ccache"));
    assert!(!down.status.success());
    assert!(stderr(&down).contains("Cannot contact any KDC"), "{}", stderr(&down));

    kdc.start_again();
    assert_eq!(kdc.addr(), addr);
    let up = kdc.kinit("alice", PASSWORD, &tmp.path().join("up.ccache"));
    assert!(up.status.success(), "kinit: {}", stderr(&up));
}

#[test]
fn a_kdc_whose_clock_is_off_by_an_hour_refuses_with_clock_skew() {
    let Some(mut kdc) = Kdc::start(REALM) else { return };
    kdc.add_user("alice", PASSWORD);
    kdc.set_clock_offset(3600);
    let tmp = tempfile::tempdir().expect("tempdir");

    let out = kdc.kinit("alice", PASSWORD, &tmp.path().join("skew.ccache"));
    assert!(!out.status.success(), "kinit succeeded against a skewed KDC");
    assert!(stderr(&out).contains("Clock skew too great"), "{}", stderr(&out));
}

#[test]
fn two_realms_started_at_once_get_ports_of_their_own() {
    let (Some(a), Some(b)) = (Kdc::start(REALM), Kdc::start("FABRIKAM.TEST")) else { return };
    assert_ne!(a.port(), b.port());
    b.add_user("bob", PASSWORD);
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = b.kinit("bob@FABRIKAM.TEST", PASSWORD, &tmp.path().join("bob.ccache"));
    assert!(out.status.success(), "kinit: {}", stderr(&out));
}
