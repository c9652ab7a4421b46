//! A Kerberos-only Exchange server (NTLM turned off, as Microsoft advises) linked through the
//! real binaries with nothing but the address and the password: detection finds it by its
//! Autodiscover challenge, Autodiscover and EWS take Kerberos tickets from a real MIT KDC (a
//! throwaway realm on 127.0.0.1) and the EWS fake's real acceptor (python-gssapi) checks them.

use mslink_e2e::ews::{Ews, Pki};
use mslink_e2e::kdc::Kdc;
use mslink_e2e::loopback::fresh_ip;
use mslink_e2e::{ADMIN, ALICE, CtlOutput, Daemon, ensure_accounts, require_root};
use serde_json::{Value, json};

const EMAIL: &str = "alice@contoso.test";
const PASSWORD: &str = "Winter-2026!";
/// A service account's mailbox, linked with the account's keytab.
const SERVICE: &str = "svc-mail@contoso.test";

/// A realm with alice and the service principals of both Exchange host names, the EWS fake on
/// port 443 taking Kerberos only, and a daemon allowing Kerberos then NTLM, with no
/// Microsoft endpoint or DNS server answering (detection hears only from Autodiscover).
struct World {
    kdc: Kdc,
    ews: Ews,
    daemon: Daemon,
    /// Keytabs exported for the ctl's users (each file readable by its user only).
    keytabs: tempfile::TempDir,
    _pki: Pki,
}

impl World {
    fn start() -> Option<World> {
        let kdc = Kdc::start("CONTOSO.TEST")?;
        kdc.add_user("alice", PASSWORD);
        kdc.add_service("HTTP/autodiscover.contoso.test");
        let keytab = kdc.add_service("HTTP/mail.contoso.test");
        // Both services' keys, in one keytab, as the server's account holds them.
        kdc.kadmin(&format!("ktadd -k {} HTTP/autodiscover.contoso.test", keytab.display()));
        let pki = Pki::new(
            &["mail.contoso.test", "autodiscover.contoso.test"],
            &json!({EMAIL: {"username": "CONTOSO\\alice", "upn": EMAIL,
                    "principal": "alice@CONTOSO.TEST", "password": PASSWORD,
                    "inbox_total": 7, "inbox_unread": 2},
                    // Its password is random and known to no one: the keytab holds its key.
                    SERVICE: {"username": "CONTOSO\\svc-mail", "upn": SERVICE,
                    "principal": "svc-mail@CONTOSO.TEST", "password": "never-used"}}),
        );
        let keytab = keytab.display().to_string();
        let ews = Ews::start(&pki, 443, &["--auth", "kerberos", "--keytab", &keytab]);
        let (ip, nobody) = (ews.ip, fresh_ip(443));
        let daemon = Daemon::start(&format!(
            "[office365]\nauthority = \"http://127.0.0.1:9/organizations/v2.0\"\n\
             [detection]\nuser_realm_url = \"http://127.0.0.1:9/getuserrealm.srf\"\n\
             autodiscover_v2_url = \"http://127.0.0.1:9/autodiscover/autodiscover.json/v1.0\"\n\
             [exchange]\nauth = [\"kerberos\", \"ntlm\"]\nkdc = [\"{kdc}\"]\n\
             [network]\nca_file = {ca:?}\nnameservers = [\"127.0.0.1:9\"]\n\
             [network.resolve]\n\"contoso.test\" = \"{nobody}\"\n\
             \"autodiscover.contoso.test\" = \"{ip}\"\n\"mail.contoso.test\" = \"{ip}\"\n\
             [schedule]\nretry_min = \"1s\"\nretry_max = \"2s\"\n",
            kdc = kdc.addr(),
            ca = pki.ca(),
        ));
        daemon.ctl(ADMIN, &["enable"]).expect_code(0);
        let keytabs = tempfile::tempdir().expect("a temporary directory");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(keytabs.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod the keytabs' directory");
        Some(World { kdc, ews, daemon, keytabs, _pki: pki })
    }

    fn connect(&self, password: &str) -> CtlOutput {
        let mut ctl = self.daemon.spawn_ctl(ALICE, &["connect", EMAIL, "--password-stdin"]);
        ctl.type_line(password);
        ctl.finish()
    }

    fn link(&self) -> Value {
        self.link_of(ALICE)
    }

    fn link_of(&self, user: &str) -> Value {
        let status = self.daemon.ctl(user, &["--json", "status"]).expect_code(0).json();
        status["links"][0].clone()
    }

    /// A keytab holding the service account's current keys (`kadmin ktadd -norandkey`, as an
    /// admin exports it), readable by `user` alone.
    fn keytab_for(&self, user: &str) -> std::path::PathBuf {
        let path = self.keytabs.path().join(format!("svc-mail.{user}.keytab"));
        let _ = std::fs::remove_file(&path);
        let said = self.kdc.kadmin(&format!("ktadd -norandkey -k {} svc-mail", path.display()));
        assert!(said.contains("added to keytab"), "{said}");
        give(&path, user);
        path
    }
}

#[test]
fn a_kerberos_only_server_is_linked_with_the_address_and_password_and_kept_alive() {
    if !require_root(
        "a_kerberos_only_server_is_linked_with_the_address_and_password_and_kept_alive",
    ) {
        return;
    }
    ensure_accounts();
    let Some(mut world) = World::start() else { return };

    // Detection sees the Negotiate challenge of the domain's Autodiscover: on-premises Exchange.
    let found = world.daemon.ctl(ALICE, &["detect", EMAIL, "--json"]).expect_code(0).json();
    assert_eq!(found["provider"], "exchange", "{found:#}");
    let evidence = found["evidence"].as_array().unwrap();
    let autodiscover = evidence
        .iter()
        .find(|e| e["probe"] == "autodiscover_host" && e["points_to"] == "exchange")
        .unwrap_or_else(|| panic!("no Autodiscover evidence: {found:#}"));
    assert!(autodiscover["detail"].as_str().unwrap().contains("Negotiate"), "{autodiscover:#}");

    world.connect(PASSWORD).expect_code(0);
    let link = world.link();
    assert_eq!(
        (link["provider"].as_str(), link["state"].as_str()),
        (Some("exchange"), Some("active"))
    );
    let log = world.ews.log();
    assert!(
        log.iter().any(|e| e["endpoint"] == "autodiscover" && e["auth_via"] == "Kerberos"),
        "Autodiscover took a Kerberos ticket: {log:#?}"
    );
    assert!(
        log.iter().any(|e| e["endpoint"] == "ews" && e["principal"] == "alice@CONTOSO.TEST"),
        "EWS took alice's ticket: {log:#?}"
    );
    assert!(log.iter().all(|e| e["password_sent"] == json!(false)), "{log:#?}");

    // Checked again later with the sealed password.
    world.daemon.ctl(ALICE, &["check", EMAIL]).expect_code(0);

    // The password changes in the domain: the next check needs alice, who links again.
    world.kdc.change_password("alice", "Spring-2027!");
    world.daemon.ctl(ALICE, &["check", EMAIL]).expect_code(7);
    let link = world.link();
    assert_eq!(link["state"], "needs_reauth", "{link:#}");
    assert!(link["reason"].as_str().unwrap().contains("refused the password"), "{link:#}");
    world.connect("Spring-2027!").expect_code(0);
    assert_eq!(world.link()["state"], "active");

    // The domain controller's clock drifts an hour ahead: blocked on the operator, saying so;
    // once the clocks agree the check passes again.
    world.kdc.set_clock_offset(3600);
    let skewed = world.daemon.ctl(ALICE, &["check", EMAIL]);
    assert_ne!(skewed.code, 0, "{}", skewed.stderr);
    let link = world.link();
    assert_eq!(link["state"], "blocked", "{link:#}");
    assert!(link["reason"].as_str().unwrap().contains("the KDC is 1h ahead"), "{link:#}");
    world.kdc.set_clock_offset(0);
    world.daemon.ctl(ALICE, &["check", EMAIL]).expect_code(0);
}

#[test]
fn a_service_account_is_linked_by_an_admin_with_its_keytab_and_kept_alive() {
    if !require_root("a_service_account_is_linked_by_an_admin_with_its_keytab_and_kept_alive") {
        return;
    }
    ensure_accounts();
    let Some(world) = World::start() else { return };
    world.kdc.kadmin("addprinc -randkey svc-mail");

    // A keytab opens the account's mailbox without anyone's password: admins only, even for a
    // user who can read one.
    let alices = world.keytab_for(ALICE);
    let refused = world.daemon.ctl(ALICE, &["connect", SERVICE, "--keytab", path(&alices)]);
    refused.expect_code(4);
    assert!(refused.stderr.contains("connect --keytab"), "{}", refused.stderr);

    // No password is asked for or sent: Autodiscover and EWS take tickets got with the key.
    let keytab = world.keytab_for(ADMIN);
    let linked = world.daemon.ctl(ADMIN, &["connect", SERVICE, "--keytab", path(&keytab)]);
    linked.expect_code(0);
    assert!(linked.stderr.contains("aes256-cts-hmac-sha1-96 key"), "{}", linked.stderr);
    let link = world.link_of(ADMIN);
    assert_eq!(
        (link["email"].as_str(), link["state"].as_str(), link["auth_scheme"].as_str()),
        (Some(SERVICE), Some("active"), Some("kerberos")),
        "{link:#}"
    );
    let log = world.ews.log();
    assert!(
        log.iter().any(|e| e["endpoint"] == "ews" && e["principal"] == "svc-mail@CONTOSO.TEST"),
        "EWS took the service account's ticket: {log:#?}"
    );
    assert!(log.iter().all(|e| e["password_sent"] == json!(false)), "{log:#?}");
    // Checked again later with the sealed key.
    world.daemon.ctl(ADMIN, &["check", SERVICE]).expect_code(0);

    // The account's keys are changed in the domain: the sealed one no longer signs in, and
    // the link says to export the keytab again; with the new one it is linked again.
    world.kdc.kadmin("cpw -randkey svc-mail");
    world.daemon.ctl(ADMIN, &["check", SERVICE]).expect_code(7);
    let link = world.link_of(ADMIN);
    assert_eq!(link["state"], "needs_reauth", "{link:#}");
    assert!(link["reason"].as_str().unwrap().contains("refused the key of svc-mail"), "{link:#}");
    let keytab = world.keytab_for(ADMIN);
    world.daemon.ctl(ADMIN, &["connect", SERVICE, "--keytab", path(&keytab)]).expect_code(0);
    assert_eq!(world.link_of(ADMIN)["state"], "active");

    // A file that is no keytab is refused as such.
    let garbage = world.keytabs.path().join("not-a.keytab");
    std::fs::write(&garbage, b"not a keytab").unwrap();
    give(&garbage, ADMIN);
    let bad = world.daemon.ctl(ADMIN, &["connect", SERVICE, "--keytab", path(&garbage)]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("the keytab cannot be used"), "{}", bad.stderr);
}

fn path(path: &std::path::Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// Makes `user` the owner of `path`.
fn give(path: &std::path::Path, user: &str) {
    let owner = nix::unistd::User::from_name(user).ok().flatten().expect("the test user exists");
    std::os::unix::fs::chown(path, Some(owner.uid.as_raw()), None).expect("chown");
}

#[test]
fn a_wrong_password_is_refused_at_connect_and_nothing_is_stored() {
    if !require_root("a_wrong_password_is_refused_at_connect_and_nothing_is_stored") {
        return;
    }
    ensure_accounts();
    let Some(world) = World::start() else { return };
    let refused = world.connect("not-her-password");
    refused.expect_code(7);
    assert!(refused.stderr.contains("refused the password"), "{}", refused.stderr);
    assert!(refused.stderr.contains("hint:"), "says what to do: {}", refused.stderr);
    let status = world.daemon.ctl(ALICE, &["--json", "status"]).expect_code(0).json();
    assert_eq!(status["links"], json!([]), "{status:#}");
}
