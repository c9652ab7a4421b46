#!/usr/bin/env python3
"""Self-test of the fake EWS server (TEST ONLY). Starts it on 127.0.0.1 with a
throwaway CA, checks it with curl (an independent NTLM/Basic client, when
installed) and with pyspnego's initiator (NTLM, SPNEGO, channel bindings), then
stops it. Prints one line per check and a closing 'N passed, N failed'.

    python3 selftest.py
"""
import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import spnego
from spnego.channel_bindings import GssChannelBindings

HERE = os.path.dirname(os.path.abspath(__file__))
PASSED, FAILED = [], []


def check(name, cond, detail=""):
    (PASSED if cond else FAILED).append(name)
    print("%s %s%s" % ("ok  " if cond else "FAIL", name, ("  -- " + str(detail)) if (detail and not cond) else ""))


GETFOLDER = b"""<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
  <soap:Header><t:RequestServerVersion Version="Exchange2013_SP1"/></soap:Header>
  <soap:Body><m:GetFolder><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape>
  <m:FolderIds><t:DistinguishedFolderId Id="inbox"/><t:DistinguishedFolderId Id="calendar"/></m:FolderIds>
  </m:GetFolder></soap:Body></soap:Envelope>"""


def getfolder_of(mailbox, folders=("inbox", "calendar")):
    """GetFolder naming another mailbox (delegate access)."""
    ids = "".join('<t:DistinguishedFolderId Id="%s"><t:Mailbox><t:EmailAddress>%s</t:EmailAddress>'
                  '</t:Mailbox></t:DistinguishedFolderId>' % (f, mailbox) for f in folders)
    return GETFOLDER.replace(
        b'<t:DistinguishedFolderId Id="inbox"/><t:DistinguishedFolderId Id="calendar"/>', ids.encode())


def basic_auth(user, pw):
    return "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()


def ad_request(addr):
    return ("""<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request><EMailAddress>%s</EMailAddress>
  <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request></Autodiscover>""" % addr).encode()


# What a stand-in RFC 7662 introspection endpoint answers per token (the end-to-end tests use
# the real OIDC server, tests/tests/mail_tools.rs).
INTROSPECTION = {
    "ews-alice": {"active": True, "sub": "ALICE@contoso.test", "aud": "https://outlook.office365.com",
                  "scope": "https://outlook.office365.com/EWS.AccessAsUser.All", "client_id": "mslink-test"},
    "ews-bob-list": {"active": True, "sub": "bob@contoso.test", "aud": ["https://outlook.office365.com/"]},
    "graph-alice": {"active": True, "sub": "alice@contoso.test", "aud": "https://graph.microsoft.com"},
    "ews-nobody": {"active": True, "sub": "nobody@contoso.test", "aud": "https://outlook.office365.com"},
}


class Introspection(BaseHTTPRequestHandler):
    seen = []

    def do_POST(self):
        body = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
        Introspection.seen.append((self.headers.get("Authorization"), body))
        ok = self.headers.get("Authorization") == "Basic " + base64.b64encode(b"graph-fake:graph-fake-secret").decode()
        answer = INTROSPECTION.get(body.get("token", [""])[0], {"active": False}) if ok else {"error": "invalid_client"}
        data = json.dumps(answer).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def bearer_checks(tmp, ca):
    op = ThreadingHTTPServer(("127.0.0.1", 0), Introspection)
    threading.Thread(target=op.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d/token/introspection" % op.server_address[1]
    fake = Fake(tmp, "--auth", "bearer,ntlm", "--introspect", url, "--audience", "https://outlook.office365.com")
    try:
        c = Client(fake.port, ca)
        st, h, _ = c.req("POST", "/EWS/Exchange.asmx", GETFOLDER)
        chall = h.get_all("WWW-Authenticate") or []
        check("bearer: anonymous -> 401 with Exchange's Bearer challenge, then NTLM",
              st == 401 and len(chall) == 2 and chall[1] == "NTLM"
              and chall[0] == 'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
              'trusted_issuers="00000001-0000-0000-c000-000000000000@*", '
              'token_types="app_asserted_user_v1 service_asserted_app_v1", '
              'authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="invalid_token"',
              (st, chall))
        st, _, data = c.req("POST", "/EWS/Exchange.asmx", GETFOLDER, "Bearer ews-alice")
        check("bearer: active token, right audience -> 200 as alice",
              st == 200 and b"<t:TotalCount>12</t:TotalCount>" in data, (st, data[:200]))
        check("bearer: introspected as graph-fake with token_type_hint",
              Introspection.seen and Introspection.seen[-1][1].get("token_type_hint") == ["access_token"],
              Introspection.seen[-1:])
        st, _, _ = c.req("POST", "/EWS/Exchange.asmx", GETFOLDER)
        check("bearer: no state on the connection (next request without a token -> 401)", st == 401, st)
        st, _, _ = c.req("POST", "/EWS/Exchange.asmx", GETFOLDER, "Bearer ews-bob-list")
        check("bearer: aud as a list, trailing slash -> 200", st == 200, st)
        for token, why in (("graph-alice", "wrong audience"), ("expired", "inactive"), ("ews-nobody", "no mailbox")):
            st, h, _ = c.req("POST", "/EWS/Exchange.asmx", GETFOLDER, "Bearer " + token)
            check("bearer: %s -> 401 invalid_token" % why,
                  st == 401 and 'error="invalid_token"' in (h.get_all("WWW-Authenticate") or [""])[0], st)
        c.close()
        st, log = test_json(fake, ca, "GET", "/test/log")
        bearer = [e for e in log if e["auth_scheme"] == "Bearer"]
        ok = [e for e in bearer if e["status"] == 200]
        check("bearer: log has auth_via Bearer and the user",
              [(e["auth_via"], e["authenticated_user"]) for e in ok]
              == [("Bearer", "alice@contoso.test"), ("Bearer", "bob@contoso.test")], ok)
        errors = [e["bearer_error"] for e in bearer if e["status"] == 401]
        check("bearer: log says why a token was refused",
              len(errors) == 3 and "audience" in errors[0] and "not active" in errors[1]
              and "no mailbox" in errors[2], errors)
    finally:
        check("bearer: SIGTERM -> exit 0", fake.stop() == 0)
    # The OIDC server down: the token cannot be checked, a server-side failure.
    op.shutdown()
    op.server_close()
    fake = Fake(tmp, "--auth", "bearer", "--introspect", url, "--audience", "https://outlook.office365.com")
    try:
        c = Client(fake.port, ca)
        st, _, _ = c.req("POST", "/EWS/Exchange.asmx", GETFOLDER, "Bearer ews-alice")
        check("bearer: introspection unreachable -> 503", st == 503, st)
        c.close()
    finally:
        fake.stop()


class Fake:
    def __init__(self, tmp, *extra):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "ews_server.py"), "--port", "0", "--http-port", "0",
             "--cert", os.path.join(tmp, "server.pem"), "--key", os.path.join(tmp, "server.key"),
             "--users", os.path.join(tmp, "users.json"), *extra],
            stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "server.log"), "ab"), text=True)
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "READY", line
        self.port = int(line[1].rsplit(":", 1)[1])
        self.http_port = int(line[2].rsplit(":", 1)[1])

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)


class Client:
    def __init__(self, port, ca):
        self.port = port
        self.ctx = ssl.create_default_context(cafile=ca)
        self.c = http.client.HTTPSConnection("127.0.0.1", port, context=self.ctx)

    def req(self, method, path, body=b"", auth=None, ctype="text/xml; charset=utf-8"):
        h = {"Host": "mail.contoso.test:%d" % self.port, "Content-Type": ctype}
        if auth:
            h["Authorization"] = auth
        self.c.request(method, path, body=body, headers=h)
        r = self.c.getresponse()
        return r.status, r.headers, r.read()

    def close(self):
        self.c.close()


def handshake(port, ca, scheme, user, pw, cb=None, path="/EWS/Exchange.asmx", body=GETFOLDER, new_conn=False):
    proto = "negotiate" if scheme == "Negotiate" else "ntlm"
    opts = spnego.NegotiateOptions.use_negotiate if proto == "negotiate" else spnego.NegotiateOptions.use_ntlm
    cli = spnego.client(user, pw, hostname="mail.contoso.test", service="HTTP", protocol=proto,
                        channel_bindings=cb, options=opts)
    c = Client(port, ca)
    st, h, _ = c.req("POST", path, body, "%s %s" % (scheme, base64.b64encode(cli.step()).decode()))
    if st != 401 or not h.get("WWW-Authenticate", "").startswith(scheme + " "):
        return c, st, b""
    t3 = cli.step(base64.b64decode(h["WWW-Authenticate"].split(" ", 1)[1]))
    if new_conn:
        c.close()
        c = Client(port, ca)
    st, h, data = c.req("POST", path, body, "%s %s" % (scheme, base64.b64encode(t3).decode()))
    return c, st, data


def curl(fake, tmp, *args):
    cmd = ["curl", "-sS", "--cacert", os.path.join(tmp, "ca.pem"),
           "--resolve", "mail.contoso.test:%d:127.0.0.1" % fake.port,
           "--resolve", "autodiscover.contoso.test:%d:127.0.0.1" % fake.port,
           "-w", "\n%{http_code}", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    body, _, code = out.rpartition("\n")
    return code, body


def test_json(fake, ca, method, path, obj=None):
    c = Client(fake.port, ca)
    st, _, data = c.req(method, path, json.dumps(obj).encode() if obj is not None else b"", ctype="application/json")
    c.close()
    return st, json.loads(data)


def main():
    tmp = tempfile.mkdtemp(prefix="fake-ews-selftest-")
    try:
        subprocess.run(["bash", os.path.join(HERE, "make_ca.sh"), tmp, "mail.contoso.test", "autodiscover.contoso.test"],
                       check=True, capture_output=True)
        ca = os.path.join(tmp, "ca.pem")
        with open(os.path.join(tmp, "users.json"), "w") as fd:
            json.dump({"alice@contoso.test": {"username": "CONTOSO\\alice", "upn": "alice@contoso.test",
                                              "password": "Alice:Pass1", "inbox_total": 12, "inbox_unread": 3,
                                              "delegates": {"carol@contoso.test": ["inbox"]}},
                       "bob@contoso.test": {"username": "CONTOSO\\bob", "password": "Bob-Pass1"},
                       "carol@contoso.test": {"username": "CONTOSO\\carol", "password": "Carol-Pass1"}}, fd)
        fake = Fake(tmp, "--redirect-addr", "old@contoso.test=alice@contoso.test")
        ews = "https://mail.contoso.test:%d/EWS/Exchange.asmx" % fake.port
        ad = "https://autodiscover.contoso.test:%d/autodiscover/autodiscover.xml" % fake.port
        try:
            c = Client(fake.port, ca)
            st, h, _ = c.req("POST", "/EWS/Exchange.asmx", GETFOLDER)
            ch = h.get_all("WWW-Authenticate")
            check("anonymous -> 401 with Negotiate, NTLM, Basic challenges",
                  st == 401 and ch == ["Negotiate", "NTLM", 'Basic realm="mail.contoso.test"'], (st, ch))
            c.close()

            for scheme, user in (("NTLM", "CONTOSO\\alice"), ("NTLM", "alice@contoso.test"),
                                 ("Negotiate", "CONTOSO\\alice"), ("Negotiate", "contoso.test\\alice")):
                c, st, data = handshake(fake.port, ca, scheme, user, "Alice:Pass1")
                check("pyspnego %s %s -> 200 GetFolder" % (scheme, user),
                      st == 200 and b"<t:UnreadCount>3</t:UnreadCount>" in data and b"<t:CalendarFolder>" in data, st)
                st2, _, _ = c.req("POST", "/EWS/Exchange.asmx", GETFOLDER)
                check("  same connection stays authenticated (IIS NTLM behaviour)", st2 == 200, st2)
                c.close()
            c, st, _ = handshake(fake.port, ca, "NTLM", "CONTOSO\\alice", "wrong")
            check("pyspnego NTLM wrong password -> 401", st == 401, st)
            c, st, _ = handshake(fake.port, ca, "NTLM", "CONTOSO\\alice", "Alice:Pass1", new_conn=True)
            check("NTLM type 3 on another connection -> 401", st == 401, st)
            c0 = Client(fake.port, ca)
            c0.c.connect()
            der = c0.c.sock.getpeercert(binary_form=True)
            c0.close()
            good = GssChannelBindings(application_data=b"tls-server-end-point:" + hashlib.sha256(der).digest())
            bad = GssChannelBindings(application_data=b"tls-server-end-point:" + b"\x01" * 32)
            c, st, _ = handshake(fake.port, ca, "NTLM", "CONTOSO\\alice", "Alice:Pass1", cb=good)
            check("NTLM with correct channel binding -> 200", st == 200, st)
            c, st, _ = handshake(fake.port, ca, "NTLM", "CONTOSO\\alice", "Alice:Pass1", cb=bad)
            check("NTLM with wrong channel binding -> 401", st == 401, st)

            if shutil.which("curl"):
                code, body = curl(fake, tmp, "--ntlm", "-u", "CONTOSO\\alice:Alice:Pass1", "-H", "Content-Type: text/xml",
                                  "--data-binary", GETFOLDER.decode(), ews)
                check("curl --ntlm DOMAIN\\user -> 200", code == "200" and "<t:TotalCount>12</t:TotalCount>" in body, code)
                code, body = curl(fake, tmp, "--ntlm", "-u", "alice@contoso.test:Alice:Pass1", "-H", "Content-Type: text/xml",
                                  "--data-binary", ad_request("alice@contoso.test").decode(), ad)
                check("curl --ntlm UPN autodiscover -> settings",
                      code == "200" and "<EwsUrl>https://mail.contoso.test:%d/EWS/Exchange.asmx</EwsUrl>" % fake.port in body, code)
                code, _ = curl(fake, tmp, "--ntlm", "-u", "CONTOSO\\alice:nope", "-H", "Content-Type: text/xml",
                               "--data-binary", GETFOLDER.decode(), ews)
                check("curl --ntlm wrong password -> 401", code == "401", code)
                code, body = curl(fake, tmp, "--basic", "-u", "alice@contoso.test:Alice:Pass1", "-H", "Content-Type: text/xml",
                                  "--data-binary", ad_request("old@contoso.test").decode(), ad)
                check("curl --basic autodiscover redirectAddr", code == "200" and "<RedirectAddr>alice@contoso.test<" in body, code)
                code, body = curl(fake, tmp, "--basic", "-u", "CONTOSO\\alice:Alice:Pass1", "-H", "Content-Type: text/xml",
                                  "--data-binary", ad_request("nobody@contoso.test").decode(), ad)
                check("curl --basic autodiscover unknown -> ErrorCode 600", "<ErrorCode>600</ErrorCode>" in body, code)
                code, _ = curl(fake, tmp, "--basic", "-u", "alice@contoso.test:bad", "-H", "Content-Type: text/xml",
                               "--data-binary", GETFOLDER.decode(), ews)
                check("curl --basic wrong password -> 401", code == "401", code)
            else:
                print("skip curl checks: curl not installed")

            c = Client(fake.port, ca)
            st, _, data = c.req("POST", "/EWS/Exchange.asmx", getfolder_of("alice@contoso.test"),
                                basic_auth("CONTOSO\\alice", "Alice:Pass1"))
            check("owner naming her own mailbox -> both folders",
                  st == 200 and data.count(b'ResponseClass="Success"') == 2, (st, data[:300]))
            st, _, data = c.req("POST", "/EWS/Exchange.asmx", getfolder_of("alice@contoso.test"),
                                basic_auth("CONTOSO\\bob", "Bob-Pass1"))
            check("no delegate rights -> ErrorAccessDenied per folder",
                  st == 200 and data.count(b"<m:ResponseCode>ErrorAccessDenied<") == 2, (st, data[:300]))
            st, _, data = c.req("POST", "/EWS/Exchange.asmx", getfolder_of("alice@contoso.test"),
                                basic_auth("CONTOSO\\carol", "Carol-Pass1"))
            check("delegate with inbox only -> inbox of the owner, calendar ErrorAccessDenied",
                  st == 200 and b"<t:TotalCount>12</t:TotalCount>" in data
                  and data.count(b"<m:ResponseCode>ErrorAccessDenied<") == 1, (st, data[:300]))
            st, _, data = c.req("POST", "/EWS/Exchange.asmx", getfolder_of("nobody@contoso.test", ["inbox"]),
                                basic_auth("CONTOSO\\carol", "Carol-Pass1"))
            check("unknown mailbox -> ErrorNonExistentMailbox",
                  st == 200 and b"<m:ResponseCode>ErrorNonExistentMailbox<" in data, (st, data[:300]))
            c.close()
            test_json(fake, ca, "POST", "/test/delegates",
                      {"mailbox": "alice@contoso.test", "delegate": "carol@contoso.test", "folders": []})
            c = Client(fake.port, ca)
            st, _, data = c.req("POST", "/EWS/Exchange.asmx", getfolder_of("alice@contoso.test", ["inbox"]),
                                basic_auth("CONTOSO\\carol", "Carol-Pass1"))
            check("/test/delegates [] revokes access", b"<m:ResponseCode>ErrorAccessDenied<" in data, (st, data[:300]))
            c.close()

            st, _ = test_json(fake, ca, "POST", "/test/mode", {"mode": "busy", "back_off_ms": 1234})
            c, st, data = handshake(fake.port, ca, "NTLM", "CONTOSO\\alice", "Alice:Pass1")
            check("busy -> 500 ErrorServerBusy fault with BackOffMilliseconds",
                  st == 500 and b"a:ErrorServerBusy</faultcode>" in data
                  and b'<t:Value Name="BackOffMilliseconds">1234</t:Value>' in data, st)
            test_json(fake, ca, "POST", "/test/mode", {"mode": "error503"})
            c = Client(fake.port, ca)
            st, _, _ = c.req("POST", "/EWS/Exchange.asmx", GETFOLDER)
            check("error503 -> 503", st == 503, st)
            c.close()
            test_json(fake, ca, "POST", "/test/mode", {"mode": "down"})
            c = Client(fake.port, ca)
            try:
                st, _, _ = c.req("POST", "/EWS/Exchange.asmx", GETFOLDER)
            except (ConnectionError, http.client.HTTPException, ssl.SSLError, OSError) as e:
                st = type(e).__name__
            check("down -> connection dropped", not isinstance(st, int), st)
            c.close()
            test_json(fake, ca, "POST", "/test/mode", {"mode": "hostile_error"})
            c, st, data = handshake(fake.port, ca, "NTLM", "CONTOSO\\alice", "Alice:Pass1")
            text = data.split(b"<m:MessageText>", 1)[-1].split(b"</m:MessageText>", 1)[0]
            check("hostile_error -> 200, ErrorMailboxStoreUnavailable, 200 KB text with ESC, newline, U+202E",
                  st == 200 and data.count(b"<m:ResponseCode>ErrorMailboxStoreUnavailable<") == 2
                  and len(text) > 200_000 and b"\x1b[2J" in text and b"\nmslinkctl: " in text
                  and "\u202e".encode() in text, (st, len(text)))
            c.close()
            test_json(fake, ca, "POST", "/test/mode", {"mode": "hostile_version"})
            c, st, data = handshake(fake.port, ca, "NTLM", "CONTOSO\\alice", "Alice:Pass1")
            version = data.split(b' Version="', 1)[-1].split(b'"', 1)[0]
            check("hostile_version -> 200 with folders, Version ~900 KB with ESC, &#10;, U+202E, under 1 MiB",
                  st == 200 and b"<t:TotalCount>12</t:TotalCount>" in data and 800_000 < len(version)
                  and len(data) < 1024 * 1024 and b"\x1b[2J" in version and b"&#10;mslinkctl: " in version
                  and "\u202e".encode() in version, (st, len(version), len(data)))
            c.close()
            test_json(fake, ca, "POST", "/test/mode", {"mode": "ok"})
            test_json(fake, ca, "POST", "/test/password", {"user": "alice@contoso.test", "password": "New-Pass2"})
            c, st, _ = handshake(fake.port, ca, "NTLM", "CONTOSO\\alice", "Alice:Pass1")
            check("after /test/password old password -> 401", st == 401, st)
            c, st, _ = handshake(fake.port, ca, "NTLM", "CONTOSO\\alice", "New-Pass2")
            check("after /test/password new password -> 200", st == 200, st)

            hc = http.client.HTTPConnection("127.0.0.1", fake.http_port)
            hc.request("GET", "/autodiscover/autodiscover.xml", headers={"Host": "autodiscover.contoso.test"})
            r = hc.getresponse()
            r.read()
            check("plain HTTP GET autodiscover -> 302 to https",
                  r.status == 302 and r.getheader("Location", "").startswith("https://"), r.status)
            hc.close()

            st, log = test_json(fake, ca, "GET", "/test/log")
            check("/test/log lists requests", st == 200 and isinstance(log, list) and len(log) > 10, st)
            basic = [e for e in log if e["auth_scheme"] == "Basic"]
            check("/test/log marks Basic as password_sent", basic and all(e["password_sent"] for e in basic))
            t1 = [e for e in log if e["ntlm_message"] == 1]
            check("/test/log marks NTLM type 1 as no credentials", t1 and not any(e["credentials_sent"] for e in t1))
            check("/test/log has authenticated_user", any(e["authenticated_user"] == "alice@contoso.test" for e in log))
        finally:
            rc = fake.stop()
            check("SIGTERM -> exit 0", rc == 0, rc)

        bearer_checks(tmp, ca)

        old = Fake(tmp, "--product", "exchange2010", "--auth", "basic")
        try:
            c = Client(old.port, ca)
            st, _, data = c.req("POST", "/EWS/Exchange.asmx", GETFOLDER, basic_auth("CONTOSO\\alice", "Alice:Pass1"))
            check("exchange2010: Exchange2013_SP1 -> 500 ErrorInvalidServerVersion",
                  st == 500 and b"a:ErrorInvalidServerVersion</faultcode>" in data, (st, data[:300]))
            older = GETFOLDER.replace(b"Exchange2013_SP1", b"Exchange2007_SP1")
            st, _, data = c.req("POST", "/EWS/Exchange.asmx", older, basic_auth("CONTOSO\\alice", "Alice:Pass1"))
            check("exchange2010: Exchange2007_SP1 -> 200 from 14.0 Exchange2010",
                  st == 200 and b'MajorVersion="14" MinorVersion="0"' in data and b'Version="Exchange2010"' in data,
                  (st, data[:300]))
            c.close()
        finally:
            check("exchange2010: SIGTERM -> exit 0", old.stop() == 0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (len(PASSED), len(FAILED)))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
