//! The fake Exchange server of `tests/peers/ews` (`ews_server.py`: EWS, POX Autodiscover and a
//! real NTLM acceptor), with certificates from a throwaway CA, on a loopback address of its own.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::loopback::fresh_ip;
use crate::peers::{self, Peer};

/// A throwaway CA, one server certificate for every name given, and the fake's users.
#[derive(Debug)]
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// Runs `make_ca.sh` for `names` (the certificate's subject alternative names) and writes
    /// `users` (email → username, upn, password, mailbox counts) as the fake's `users.json`.
    pub fn new(names: &[&str], users: &Value) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let made = Command::new("bash")
            .arg(peers::dir().join("ews/make_ca.sh"))
            .arg(dir.path())
            .args(names)
            .output()
            .expect("make_ca.sh runs (needs bash and openssl; run .ci/setup)");
        assert!(made.status.success(), "make_ca.sh: {}", String::from_utf8_lossy(&made.stderr));
        std::fs::write(dir.path().join("users.json"), users.to_string()).expect("users.json");
        Pki { dir }
    }

    /// A file in the PKI directory (`server.pem`, `server.key`, `users.json`, ...).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate a client must trust.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A running `ews_server.py`, killed when dropped.
#[derive(Debug)]
pub struct Ews {
    peer: Peer,
    /// The loopback address it listens on.
    pub ip: Ipv4Addr,
    /// Its HTTPS port.
    pub https_port: u16,
}

impl Ews {
    /// Starts the fake with `pki`'s certificate and users on a fresh loopback address, HTTPS on
    /// `https_port` (0: any), with `args` (`--auth`, `--http-port 80`, modes). A fixed port can
    /// be taken by another test between the check and the bind: then the next address is tried.
    pub fn start(pki: &Pki, https_port: u16, args: &[&str]) -> Ews {
        let mut last = String::new();
        for _ in 0..20 {
            let ip = fresh_ip(if https_port == 0 { 443 } else { https_port });
            match Ews::start_at(pki, ip, https_port, args) {
                Ok(ews) => return ews,
                Err(error) => last = error,
            }
        }
        panic!("the EWS fake did not start ({last}); run .ci/setup");
    }

    /// Starts the fake on `ip` itself; an error when it could not bind there.
    pub fn start_at(
        pki: &Pki,
        ip: Ipv4Addr,
        https_port: u16,
        args: &[&str],
    ) -> Result<Ews, String> {
        let (cert, key, users) =
            (pki.path("server.pem"), pki.path("server.key"), pki.path("users.json"));
        let mut all = vec![
            "ews/ews_server.py".to_owned(),
            "--host".to_owned(),
            ip.to_string(),
            "--port".to_owned(),
            https_port.to_string(),
        ];
        for (flag, path) in [("--cert", cert), ("--key", key), ("--users", users)] {
            all.extend([flag.to_owned(), path.display().to_string()]);
        }
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let peer = Peer::try_start("python3", &all)?;
        let https_port = peer
            .url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| format!("READY {} names no port", peer.url))?;
        Ok(Ews { peer, ip, https_port })
    }

    /// The running peer (its `url` is `https://IP:PORT`; `extra` holds the plain-HTTP URL when
    /// `--http-port` was given).
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// POSTs JSON to one of the fake's `/test/...` controls.
    pub fn control(&self, path: &str, json: &Value) {
        self.peer.control(path, &json.to_string());
    }

    /// The fake's request log (its `/test/` controls are never logged).
    pub fn log(&self) -> Vec<Value> {
        self.peer.observe("/test/log").as_array().cloned().unwrap_or_default()
    }

    /// What a mail tool does with a token from `mslinkctl token --for ews`: curl POSTs an EWS
    /// GetFolder of the inbox to `https://HOST/EWS/Exchange.asmx` (`host` resolved to this fake,
    /// its certificate checked against `pki`'s CA) with `Authorization: Bearer <token>`.
    /// Returns the HTTP status, the response headers and the body.
    pub fn get_inbox(&self, pki: &Pki, host: &str, token: &str) -> (u16, String, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (headers, body) = (dir.path().join("headers"), dir.path().join("body"));
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "--resolve"])
            .arg(format!("{host}:{}:{}", self.https_port, self.ip))
            .arg("--cacert")
            .arg(pki.ca())
            .args(["-H", "Content-Type: text/xml; charset=utf-8", "--data", GET_INBOX])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .arg("-D")
            .arg(&headers)
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_code}"])
            .arg(format!("https://{host}:{}/EWS/Exchange.asmx", self.https_port))
            .output()
            .expect("curl");
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
        let code = String::from_utf8_lossy(&out.stdout).trim().parse().expect("an HTTP status");
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        (code, read(&headers), read(&body))
    }
}

/// A GetFolder of the signed-in user's inbox.
const GET_INBOX: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
    xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
  <s:Header><t:RequestServerVersion Version="Exchange2013_SP1"/></s:Header>
  <s:Body><m:GetFolder><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape>
    <m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder></s:Body>
</s:Envelope>"#;
