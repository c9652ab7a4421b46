//! The real MIT KDC the Kerberos tests stand on ([`mslink_e2e::kdc`]), checked with MIT's own
//! `kinit` and `klist`; and the EWS fake's Kerberos acceptor (`--auth kerberos`), checked with
//! Debian's curl (GSS-API over MIT) and python-gssapi's initiator as the clients.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mslink_e2e::ews::{Ews, Pki};
use mslink_e2e::kdc::Kdc;
use mslink_e2e::prerequisite;
use serde_json::{Value, json};

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

/// The service principal of the EWS host, as a client asks for it (`HTTP@mail.contoso.test`).
const SPN: &str = "HTTP/mail.contoso.test";
const HOST: &str = "mail.contoso.test";

/// An NTLM NEGOTIATE_MESSAGE (type 1), base64.
const NTLM_NEGOTIATE: &str = "TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAGFKAAAADw==";

/// A GetFolder of alice's inbox.
const GET_INBOX: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
    xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
  <s:Body><m:GetFolder><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape>
    <m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder></s:Body>
</s:Envelope>"#;

/// A KDC with alice and the EWS host's service principal, the EWS fake offering `auth`
/// (`kerberos`: Kerberos only) with that keytab, and alice's ticket cache.
struct Realm {
    kdc: Kdc,
    pki: Pki,
    ews: Ews,
    tmp: tempfile::TempDir,
    alice: PathBuf,
}

impl Realm {
    fn start(test: &str, auth: &str) -> Option<Realm> {
        if !prerequisite::require_program("curl", test)
            || !prerequisite::require_python_module("gssapi", test)
        {
            return None;
        }
        let kdc = Kdc::start(REALM)?;
        kdc.add_user("alice", PASSWORD);
        let keytab = kdc.add_service(SPN);
        let pki = Pki::new(
            &[HOST],
            &json!({"alice@contoso.test": {"username": "CONTOSO\\alice",
                    "upn": "alice@contoso.test", "principal": "alice@CONTOSO.TEST",
                    "password": PASSWORD, "inbox_total": 12, "inbox_unread": 3}}),
        );
        let keytab = keytab.display().to_string();
        let ews = Ews::start(&pki, 0, &["--auth", auth, "--keytab", &keytab]);
        let tmp = tempfile::tempdir().expect("tempdir");
        let alice = tmp.path().join("alice.ccache");
        let out = kdc.kinit("alice", PASSWORD, &alice);
        assert!(out.status.success(), "kinit: {}", stderr(&out));
        Some(Realm { kdc, pki, ews, tmp, alice })
    }

    fn url(&self) -> String {
        format!("https://{HOST}:{}/EWS/Exchange.asmx", self.ews.https_port)
    }

    /// `curl ARGS` POSTing [`GET_INBOX`] to the EWS URL, with `ccache` as the ticket cache:
    /// the final status, every response's headers, and the body.
    fn curl(&self, ccache: &Path, args: &[&str]) -> (u16, String, String) {
        let (headers, body) = (self.tmp.path().join("headers"), self.tmp.path().join("body"));
        let out = Command::new("curl")
            .args(["-sS", "--resolve"])
            .arg(format!("{HOST}:{}:{}", self.ews.https_port, self.ews.ip))
            .arg("--cacert")
            .arg(self.pki.ca())
            .args(["-H", "Content-Type: text/xml; charset=utf-8", "--data", GET_INBOX])
            .arg("-D")
            .arg(&headers)
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_code}"])
            .args(args)
            .arg(self.url())
            .env("KRB5_CONFIG", self.kdc.krb5_conf())
            .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
            .output()
            .expect("run curl");
        assert!(out.status.success(), "curl: {}", stderr(&out));
        let code = String::from_utf8_lossy(&out.stdout).trim().parse().expect("an HTTP status");
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        (code, read(&headers), read(&body))
    }

    /// A first Negotiate token from python-gssapi's initiator as alice: `mech` `kerberos` (a raw
    /// RFC 4121 token) or `spnego`; `bindings` `none`, `match` (the server certificate's
    /// tls-server-end-point) or `wrong`.
    fn gss_token(&self, mech: &str, bindings: &str) -> String {
        const SCRIPT: &str = r#"
import base64, hashlib, ssl, sys, gssapi
mech, bindings, cert = sys.argv[1:]
oid = {"kerberos": "1.2.840.113554.1.2.2", "spnego": "1.3.6.1.5.5.2"}[mech]
der = ssl.PEM_cert_to_DER_cert(open(cert).read())
digest = {"none": None, "match": hashlib.sha256(der).digest(), "wrong": bytes(32)}[bindings]
cb = None if digest is None else gssapi.raw.ChannelBindings(
    application_data=b"tls-server-end-point:" + digest)
name = gssapi.Name("HTTP@mail.contoso.test", gssapi.NameType.hostbased_service)
ctx = gssapi.SecurityContext(name=name, mech=gssapi.OID.from_int_seq(oid), usage="initiate",
                             channel_bindings=cb)
print(base64.b64encode(ctx.step()).decode())
"#;
        let out = Command::new("python3")
            .args(["-c", SCRIPT, mech, bindings])
            .arg(self.pki.path("server.pem"))
            .env("KRB5_CONFIG", self.kdc.krb5_conf())
            .env("KRB5CCNAME", format!("FILE:{}", self.alice.display()))
            .output()
            .expect("run python3");
        assert!(out.status.success(), "gssapi initiator: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `curl` with `Authorization: Negotiate <token>`, as alice.
    fn curl_token(&self, token: &str) -> (u16, String, String) {
        self.curl(&self.alice, &["-H", &format!("Authorization: Negotiate {token}")])
    }

    /// The fake's log entry of its last EWS request.
    fn last_ews_entry(&self) -> Value {
        let log = self.ews.log();
        log.iter().rev().find(|e| e["endpoint"] == "ews").cloned().expect("an EWS request")
    }
}

/// The token of the last `WWW-Authenticate: Negotiate <token>` header in `headers`.
fn negotiate_token(headers: &str) -> Option<&str> {
    headers
        .lines()
        .filter_map(|l| l.strip_prefix("WWW-Authenticate: Negotiate "))
        .map(str::trim)
        .rfind(|t| !t.is_empty())
}

#[test]
fn curl_with_alices_ticket_reads_her_inbox_from_a_kerberos_only_server() {
    let test = "curl_with_alices_ticket_reads_her_inbox_from_a_kerberos_only_server";
    let Some(realm) = Realm::start(test, "kerberos") else { return };

    let (code, headers, body) = realm.curl(&realm.alice, &["--negotiate", "-u", ":"]);
    assert_eq!(code, 200, "{headers}{body}");
    assert!(body.contains("<t:TotalCount>12</t:TotalCount>"), "{body}");
    assert!(negotiate_token(&headers).is_some(), "no mutual-auth token on the 200: {headers}");
    let entry = realm.last_ews_entry();
    assert_eq!(entry["auth_via"], "Kerberos", "{entry:#}");
    assert_eq!(entry["authenticated_user"], "alice@contoso.test", "{entry:#}");
    assert_eq!(entry["principal"], "alice@CONTOSO.TEST", "{entry:#}");
    assert_eq!(entry["negotiate_token"], "spnego", "{entry:#}");
}

#[test]
fn without_a_ticket_curl_gets_401_and_only_negotiate_is_offered() {
    let test = "without_a_ticket_curl_gets_401_and_only_negotiate_is_offered";
    let Some(realm) = Realm::start(test, "kerberos") else { return };

    let nobody = realm.tmp.path().join("no-such.ccache");
    let (code, headers, _) = realm.curl(&nobody, &["--negotiate", "-u", ":"]);
    assert_eq!(code, 401, "{headers}");
    let offered: Vec<&str> =
        headers.lines().filter(|l| l.starts_with("WWW-Authenticate:")).map(str::trim).collect();
    assert_eq!(offered, ["WWW-Authenticate: Negotiate"], "{headers}");
}

#[test]
fn a_raw_kerberos_token_is_accepted_and_ntlm_inside_negotiate_is_refused() {
    let test = "a_raw_kerberos_token_is_accepted_and_ntlm_inside_negotiate_is_refused";
    let Some(realm) = Realm::start(test, "kerberos") else { return };

    let (code, headers, body) = realm.curl_token(&realm.gss_token("kerberos", "none"));
    assert_eq!(code, 200, "{headers}{body}");
    // The AP-REP, raw as the request was (an RFC 4121 token: [APPLICATION 0], 0x60).
    assert!(negotiate_token(&headers).is_some_and(|t| t.starts_with("YI")), "{headers}");
    let entry = realm.last_ews_entry();
    assert_eq!(
        (&entry["auth_via"], &entry["negotiate_token"]),
        (&json!("Kerberos"), &json!("kerberos"))
    );

    // An NTLM NEGOTIATE_MESSAGE (type 1) where a Kerberos token belongs.
    let (code, headers, _) = realm.curl_token(NTLM_NEGOTIATE);
    assert_eq!(code, 401, "{headers}");
    let entry = realm.last_ews_entry();
    assert_eq!(entry["auth_via"], Value::Null, "{entry:#}");
    assert!(entry["auth_error"].as_str().is_some_and(|e| e.contains("Kerberos only")), "{entry:#}");
}

#[test]
fn channel_bindings_of_the_servers_certificate_pass_and_others_are_refused() {
    let test = "channel_bindings_of_the_servers_certificate_pass_and_others_are_refused";
    let Some(realm) = Realm::start(test, "kerberos") else { return };

    for (bindings, wanted) in [("match", 200), ("wrong", 401)] {
        let (code, headers, _) = realm.curl_token(&realm.gss_token("spnego", bindings));
        assert_eq!(code, wanted, "bindings {bindings}: {headers}");
    }
    let entry = realm.last_ews_entry();
    assert!(entry["auth_error"].as_str().is_some_and(|e| e.starts_with("Kerberos:")), "{entry:#}");
}

#[test]
fn a_server_offering_negotiate_with_both_takes_kerberos_and_still_answers_ntlm() {
    let test = "a_server_offering_negotiate_with_both_takes_kerberos_and_still_answers_ntlm";
    let Some(realm) = Realm::start(test, "negotiate,kerberos,ntlm") else { return };

    let (code, headers, _) = realm.curl(&realm.tmp.path().join("none.ccache"), &[]);
    assert_eq!(code, 401);
    let offered: Vec<&str> =
        headers.lines().filter(|l| l.starts_with("WWW-Authenticate:")).map(str::trim).collect();
    assert_eq!(offered, ["WWW-Authenticate: Negotiate", "WWW-Authenticate: NTLM"], "{headers}");

    let (code, headers, _) = realm.curl(&realm.alice, &["--negotiate", "-u", ":"]);
    assert_eq!(code, 200, "{headers}");
    assert_eq!(realm.last_ews_entry()["auth_via"], "Kerberos");

    // NTLM inside Negotiate is still answered with a CHALLENGE, as before.
    let (code, headers, _) = realm.curl_token(NTLM_NEGOTIATE);
    assert_eq!(code, 401);
    assert!(negotiate_token(&headers).is_some_and(|t| t.starts_with("TlRMTVNTUAAC")), "{headers}");
}

#[test]
fn the_mutual_auth_token_completes_the_clients_context_and_the_connection_stays_signed_in() {
    let test =
        "the_mutual_auth_token_completes_the_clients_context_and_the_connection_stays_signed_in";
    let Some(realm) = Realm::start(test, "kerberos") else { return };
    // python-gssapi's initiator over one kept-alive TLS connection: a request with its SPNEGO
    // token, the 200's token back into the context, then a request with no Authorization.
    const SCRIPT: &str = r#"
import base64, http.client, socket, ssl, sys, gssapi
ip, port, ca, body = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].encode()
tls = ssl.create_default_context(cafile=ca)
conn = http.client.HTTPSConnection("mail.contoso.test", port)
conn.sock = tls.wrap_socket(socket.create_connection((ip, port)), server_hostname="mail.contoso.test")
name = gssapi.Name("HTTP@mail.contoso.test", gssapi.NameType.hostbased_service)
ctx = gssapi.SecurityContext(name=name, usage="initiate", mech=gssapi.OID.from_int_seq("1.3.6.1.5.5.2"),
                             flags=gssapi.RequirementFlag.mutual_authentication)
token = base64.b64encode(ctx.step()).decode()
conn.request("POST", "/EWS/Exchange.asmx", body, {"Content-Type": "text/xml", "Authorization": "Negotiate " + token})
first = conn.getresponse()
first.read()
ctx.step(base64.b64decode(first.getheader("WWW-Authenticate").split()[1]))
conn.request("POST", "/EWS/Exchange.asmx", body, {"Content-Type": "text/xml"})
second = conn.getresponse()
second.read()
print(first.status, ctx.complete, second.status)
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT, &realm.ews.ip.to_string(), &realm.ews.https_port.to_string()])
        .arg(realm.pki.ca())
        .arg(GET_INBOX)
        .env("KRB5_CONFIG", realm.kdc.krb5_conf())
        .env("KRB5CCNAME", format!("FILE:{}", realm.alice.display()))
        .output()
        .expect("run python3");
    assert!(out.status.success(), "gssapi client: {}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200 True 200");
    let log = realm.ews.log();
    let via: Vec<&Value> = log.iter().map(|e| &e["auth_via"]).collect();
    assert_eq!(via, [&json!("Kerberos"), &json!("Kerberos (connection)")], "{log:#?}");
    assert_eq!(log[0]["conn"], log[1]["conn"]);
}
