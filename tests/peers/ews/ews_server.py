#!/usr/bin/env python3
"""Fake on-premises Exchange EWS + POX Autodiscover server -- TEST ONLY.

Used by mslink's end-to-end tests. It behaves like an Exchange 2019 front end
behind IIS as far as the mslink client can see:

* real TLS (cert/key from --cert/--key), 127.0.0.1 only;
* IIS-style Windows authentication: anonymous requests get 401 with the
  configured WWW-Authenticate challenges; NTLM / Negotiate(NTLM) are verified
  by pyspnego's NTLM acceptor (third-party code), connection-oriented (the
  context lives on the kept-alive HTTP/1.1 connection); Negotiate(Kerberos)
  by MIT Kerberos through python-gssapi with a keytab (--auth kerberos);
  Basic is checked against the users file; Bearer (OAuth, as Exchange Online
  and hybrid modern authentication) by RFC 7662 introspection at the test
  OIDC server (--auth bearer --introspect URL --audience AUD);
* POST /EWS/Exchange.asmx       -> GetFolder (distinguished folder ids)
* POST /autodiscover/autodiscover.xml -> POX Autodiscover (MS-OXDSCLI)
* optional plain-HTTP listener  -> 302 redirect of
  GET /autodiscover/autodiscover.xml (the Autodiscover "HTTP redirect" method)
* /test/* JSON control endpoints (no auth; they do not exist on a real server).
* hostile modes (/test/mode hostile_error, hostile_version): not Exchange
  behaviour, but an attacker's own server, answering with escape sequences,
  forged lines, bidi overrides and hundreds of kilobytes of text.

See README.md next to this file. Never expose this server beyond 127.0.0.1.
"""

import argparse
import ipaddress
import base64
import binascii
import datetime
import hashlib
import html
import json
import os
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import traceback
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import urllib.error
import urllib.parse
import urllib.request
from urllib.parse import urlsplit

import spnego
import spnego.exceptions
from spnego._ntlm import NTLMProxy
from spnego._ntlm_raw.crypto import lmowfv1, ntowfv1
from spnego._ntlm_raw.messages import (
    AvId,
    Authenticate,
    Challenge,
    FileTime,
    NegotiateFlags,
    NTClientChallengeV2,
    TargetInfo,
)
from spnego.channel_bindings import GssChannelBindings

# --------------------------------------------------------------------------
# Namespaces and constants
# --------------------------------------------------------------------------
NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_M = "http://schemas.microsoft.com/exchange/services/2006/messages"
NS_T = "http://schemas.microsoft.com/exchange/services/2006/types"
NS_E = "http://schemas.microsoft.com/exchange/services/2006/errors"
NS_AD_REQ = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
NS_AD_RESP = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
NS_AD_OUTLOOK = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"

SERVER_VERSION = dict(major=15, minor=2, build=1544, revision=4, version="V2017_07_11")

# ExchangeVersionType enumeration (messages.xsd / types.xsd).
EXCHANGE_VERSIONS = {
    "Exchange2007", "Exchange2007_SP1", "Exchange2009", "Exchange2010", "Exchange2010_SP1",
    "Exchange2010_SP2", "Exchange2013", "Exchange2013_SP1", "Exchange2015", "Exchange2016",
    "V2015_10_05", "V2016_01_06", "V2016_04_13", "V2016_07_13", "V2016_10_10", "V2017_01_07",
    "V2017_04_14", "V2017_07_11",
}

# --product: which Exchange this server answers as. Each accepts the RequestServerVersion values
# its schema defines (later versions keep the earlier ones; request versioning began with 2007
# SP1, and a request without the header is read as Exchange2007) and answers any other with the
# ErrorInvalidServerVersion fault. Exchange 2007's ServerVersionInfo has no Version attribute.
PRODUCTS = {
    "exchange2019": (SERVER_VERSION, EXCHANGE_VERSIONS),
    "exchange2010": (dict(major=14, minor=0, build=639, revision=21, version="Exchange2010"),
                     {"Exchange2007", "Exchange2007_SP1", "Exchange2010"}),
    "exchange2007_sp1": (dict(major=8, minor=1, build=240, revision=6, version=None),
                         {"Exchange2007", "Exchange2007_SP1"}),
}
ACCEPTED_VERSIONS = EXCHANGE_VERSIONS  # set from --product in main()

# Distinguished folders the fake mailbox has: id -> (element, display name, folder class)
FOLDERS = {
    "inbox": ("Folder", "Inbox", "IPF.Note"),
    "calendar": ("CalendarFolder", "Calendar", "IPF.Appointment"),
    "contacts": ("ContactsFolder", "Contacts", "IPF.Contact"),
    "tasks": ("TasksFolder", "Tasks", "IPF.Task"),
    "sentitems": ("Folder", "Sent Items", "IPF.Note"),
    "drafts": ("Folder", "Drafts", "IPF.Note"),
    "deleteditems": ("Folder", "Deleted Items", "IPF.Note"),
    "junkemail": ("Folder", "Junk Email", "IPF.Note"),
    "outbox": ("Folder", "Outbox", "IPF.Note"),
    "msgfolderroot": ("Folder", "Top of Information Store", "IPF.Note"),
}
DISTINGUISHED_ENUM = set(FOLDERS) | {
    "root", "notes", "journal", "searchfolders", "voicemail", "publicfoldersroot",
    "recoverableitemsroot", "recoverableitemsdeletions", "recoverableitemsversions",
    "recoverableitemspurges", "archiveroot", "archivemsgfolderroot", "archivedeleteditems",
    "archiveinbox", "syncissues", "conflicts", "localfailures", "serverfailures",
    "recipientcache", "quickcontacts", "conversationhistory", "todosearch", "adminauditlogs",
    "favorites", "clutter", "directory", "peopleconnect", "imcontactlist", "mycontacts",
}

# /test/mode values; those in EWS_MODES apply to EWS only unless a scope is given.
MODES = ("ok", "busy", "error503", "down", "hostile_error", "hostile_version")
EWS_MODES = ("busy", "hostile_error", "hostile_version")

TEST_ONLY_HEADER = ("X-Fake-Ews-Test-Control", "test-only; not part of Exchange")

# The Bearer challenge's fixed parameters, as Exchange Online (and on-premises Exchange with
# hybrid modern authentication) sends them: Exchange Online's well-known app id, the Microsoft
# token issuer's (any tenant) and the token types Exchange accepts. authorization_uri is
# --authorization-uri; error="invalid_token" is on every Bearer challenge, as Exchange sends it
# to anonymous requests too.
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
TRUSTED_ISSUERS = "00000001-0000-0000-c000-000000000000@*"
TOKEN_TYPES = "app_asserted_user_v1 service_asserted_app_v1"
AUTH_SCHEMES = ("negotiate", "kerberos", "ntlm", "basic", "bearer")
# Claims of an introspection answer that may name the user, in the order they are tried.
BEARER_USER_CLAIMS = ("upn", "email", "preferred_username", "sub")


def log(msg):
    sys.stderr.write("[fake-ews %s] %s\n" % (datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3], msg))
    sys.stderr.flush()


def esc(s):
    return html.escape(str(s), quote=True)


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------
# XML templates (written for this project from the documented EWS / POX formats)
# --------------------------------------------------------------------------
SOAP_RESPONSE = """<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
  <s:Header>
    <h:ServerVersionInfo MajorVersion="{major}" MinorVersion="{minor}" MajorBuildNumber="{build}" MinorBuildNumber="{revision}"{version_attr} xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types" xmlns="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>
  </s:Header>
  <s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
    <m:{op}Response xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
      <m:ResponseMessages>
{messages}
      </m:ResponseMessages>
    </m:{op}Response>
  </s:Body>
</s:Envelope>
"""

RESPONSE_MESSAGE_OK = """        <m:{op}ResponseMessage ResponseClass="Success">
          <m:ResponseCode>NoError</m:ResponseCode>
          <m:Folders>
{folder}
          </m:Folders>
        </m:{op}ResponseMessage>"""

RESPONSE_MESSAGE_ERROR = """        <m:{op}ResponseMessage ResponseClass="Error">
          <m:MessageText>{text}</m:MessageText>
          <m:ResponseCode>{code}</m:ResponseCode>
          <m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>
          <m:Folders/>
        </m:{op}ResponseMessage>"""

SOAP_FAULT = """<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
  <s:Body>
    <s:Fault>
      <faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:{code}</faultcode>
      <faultstring xml:lang="en-US">{text}</faultstring>
      <detail>
        <e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">{code}</e:ResponseCode>
        <e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">{text}</e:Message>{messagexml}
      </detail>
    </s:Fault>
  </s:Body>
</s:Envelope>
"""

FAULT_MESSAGEXML = """
        <t:MessageXml xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
{values}
        </t:MessageXml>"""

AD_SETTINGS = """<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <User>
      <DisplayName>{display_name}</DisplayName>
      <LegacyDN>{legacy_dn}</LegacyDN>
      <AutoDiscoverSMTPAddress>{address}</AutoDiscoverSMTPAddress>
      <DeploymentId>{deployment_id}</DeploymentId>
    </User>
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
      <MicrosoftOnline>False</MicrosoftOnline>
      <Protocol>
        <Type>EXCH</Type>
        <Server>{mailbox_guid}@{dns_domain}</Server>
        <ServerDN>{org_dn}/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Configuration/cn=Servers/cn={mailbox_guid}@{dns_domain}</ServerDN>
        <ServerVersion>{server_version_hex}</ServerVersion>
        <MdbDN>{org_dn}/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Configuration/cn=Servers/cn={mailbox_guid}@{dns_domain}/cn=Microsoft Private MDB</MdbDN>
        <AD>dc01.{dns_domain}</AD>
        <ASUrl>{exch_ews}</ASUrl>
        <EwsUrl>{exch_ews}</EwsUrl>
        <EmwsUrl>{exch_ews}</EmwsUrl>
        <EcpUrl>{exch_base}/ecp/</EcpUrl>
        <OOFUrl>{exch_ews}</OOFUrl>
        <OABUrl>{exch_base}/OAB/{oab_guid}/</OABUrl>
        <ServerExclusiveConnect>off</ServerExclusiveConnect>
      </Protocol>
      <Protocol>
        <Type>EXPR</Type>
        <Server>{expr_host}</Server>
        <SSL>On</SSL>
        <AuthPackage>{auth_package}</AuthPackage>
        <ASUrl>{expr_ews}</ASUrl>
        <EwsUrl>{expr_ews}</EwsUrl>
        <EmwsUrl>{expr_ews}</EmwsUrl>
        <EcpUrl>{expr_base}/ecp/</EcpUrl>
        <OOFUrl>{expr_ews}</OOFUrl>
        <OABUrl>{expr_base}/OAB/{oab_guid}/</OABUrl>
        <ServerExclusiveConnect>on</ServerExclusiveConnect>
        <CertPrincipalName>None</CertPrincipalName>
      </Protocol>
      <Protocol>
        <Type>WEB</Type>
        <Internal>
          <OWAUrl AuthenticationMethod="Basic, Fba">{exch_base}/owa/</OWAUrl>
          <Protocol>
            <Type>EXCH</Type>
            <ASUrl>{exch_ews}</ASUrl>
          </Protocol>
        </Internal>
      </Protocol>
    </Account>
  </Response>
</Autodiscover>
"""

AD_REDIRECT_ADDR = """<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <Account>
      <Action>redirectAddr</Action>
      <RedirectAddr>{target}</RedirectAddr>
    </Account>
  </Response>
</Autodiscover>
"""

AD_REDIRECT_URL = """<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <Account>
      <Action>redirectUrl</Action>
      <RedirectUrl>{target}</RedirectUrl>
    </Account>
  </Response>
</Autodiscover>
"""

AD_ERROR = """<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
    <Error Time="{time}" Id="{id}">
      <ErrorCode>{code}</ErrorCode>
      <Message>{message}</Message>
      <DebugData />
    </Error>
  </Response>
</Autodiscover>
"""

AD_ERROR_MESSAGES = {
    500: "The email address can't be found.",
    501: "Bad Address",
    600: "Invalid Request",
    601: "Provider is not available",
    602: "Bad Address",
    603: "Server Error",
}

HTML_503 = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">\r\n'
    "<HTML><HEAD><TITLE>Service Unavailable</TITLE>\r\n"
    '<META HTTP-EQUIV="Content-Type" Content="text/html; charset=us-ascii"></HEAD>\r\n'
    "<BODY><h2>Service Unavailable</h2>\r\n<hr><p>HTTP Error 503. The service is unavailable.</p>\r\n"
    "</BODY></HTML>\r\n"
)

HTML_404 = (
    "<!DOCTYPE html><html><head><title>404 - File or directory not found.</title></head>"
    "<body><h2>404 - File or directory not found.</h2></body></html>"
)

# Hostile modes: not Exchange behaviour, but what an attacker's own server (a user links a mailbox
# on it) may answer. The text clears the screen, starts new lines that read like mslinkctl's own
# output, reverses what follows (U+202E) and goes on far past any sane length.
HOSTILE_PIECE = ("\x1b[2J\x1b[H\x1b]0;owned\x07\r\nmslinkctl: alice@contoso.test active\n"
                 "MSLINK_STATE=active\n\u202emoc.evil\u202c ")
# The inbox's MessageText in hostile_error (~200 KB: past the 128 KiB one environment variable
# may hold, so a hook given it raw fails with E2BIG).
HOSTILE_ERROR_CHARS = 200_000
HOSTILE_ERROR_CODE = "ErrorMailboxStoreUnavailable"
# ServerVersionInfo's Version attribute in hostile_version (about 900 KB once encoded: under the
# client's 1 MiB response cap, so it is read, not refused).
HOSTILE_VERSION_CHARS = 730_000


def hostile_text(chars):
    """HOSTILE_PIECE repeated to `chars` characters."""
    return (HOSTILE_PIECE * (chars // len(HOSTILE_PIECE) + 1))[:chars]


def hostile_attr(chars):
    """hostile_text for an attribute value: escaped, with its newlines as character references
    (a raw newline in an attribute is read as a space by every XML parser)."""
    return esc(hostile_text(chars)).replace("\r", "&#13;").replace("\n", "&#10;")


# --------------------------------------------------------------------------
# Users / shared state
# --------------------------------------------------------------------------
class User:
    def __init__(self, email, spec):
        self.email = email.lower()
        self.username = spec.get("username") or email  # DOMAIN\user
        self.upn = (spec.get("upn") or email).lower()
        # The Kerberos principal the user signs in as (alice@CONTOSO.TEST); the UPN otherwise,
        # as Active Directory accepts the UPN as an alias of sAMAccountName@REALM.
        self.principal = (spec.get("principal") or self.upn).lower()
        self.password = spec["password"]
        self.inbox_total = int(spec.get("inbox_total", 0))
        self.inbox_unread = int(spec.get("inbox_unread", 0))
        self.calendar_total = int(spec.get("calendar_total", 0))
        self.display_name = spec.get("display_name") or self.email.split("@")[0].capitalize()
        # Delegates of this mailbox: address of the delegate -> distinguished folders it may open
        # (what Outlook's Delegate Access / Add-MailboxFolderPermission grant).
        self.delegates = {d.lower(): set(f) for d, f in (spec.get("delegates") or {}).items()}
        if "\\" in self.username:
            self.nb_domain, self.sam = self.username.split("\\", 1)
        else:
            self.nb_domain, self.sam = "", self.username.split("@")[0]
        self.dns_domain = self.upn.split("@", 1)[1] if "@" in self.upn else ""

    def login_names(self):
        """(domain, user) pairs a client may present (NTLM) -- all case-insensitive."""
        names = {("", self.email), ("", self.upn), ("", self.sam)}
        if self.nb_domain:
            names.add((self.nb_domain, self.sam))
        if self.dns_domain:
            names.add((self.dns_domain, self.sam))
        email_domain = self.email.split("@", 1)[1] if "@" in self.email else ""
        if email_domain:
            names.add((email_domain, self.sam))
        return {(d.lower(), u.lower()) for d, u in names}

    def matches(self, domain, name):
        return ((domain or "").lower(), (name or "").lower()) in self.login_names()

    def may_open(self, user, folder):
        """Whether `user` (signed in) may open `folder` of this mailbox: its owner, or a delegate
        granted that folder."""
        return user is self or folder in self.delegates.get(user.email, ())

    def mailbox_guid(self):
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "fake-ews-mailbox:" + self.email))


class State:
    def __init__(self, args, users):
        self.lock = threading.Lock()
        self.args = args
        self.users = users  # email -> User
        self.mode = "ok"
        self.mode_scope = "all"
        self.back_off_ms = 297749
        self.log = []
        self.connections = []
        self.seq = 0
        self.conn_seq = 0
        self.ntlm_dir = tempfile.mkdtemp(prefix="fake-ews-ntlm-")
        self.ntlm_file = os.path.join(self.ntlm_dir, "ntlm_users")
        self.write_ntlm_file()
        os.environ["NTLM_USER_FILE"] = self.ntlm_file

    def write_ntlm_file(self):
        # smbpasswd format (USER:UID:LM:NT:FLAGS:LCT) so passwords may contain ':'.
        lines = []
        for u in self.users.values():
            lm = lmowfv1(u.password).hex().upper()
            nt = ntowfv1(u.password).hex().upper()
            for domain, name in sorted(u.login_names()):
                principal = ("%s\\%s" % (domain, name)) if domain else name
                lines.append("%s:1000:%s:%s:[U          ]:LCT-00000000" % (principal, lm, nt))
        tmp = self.ntlm_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fd:
            fd.write("\n".join(lines) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.ntlm_file)

    def find_user_by_login(self, domain, name):
        for u in self.users.values():
            if u.matches(domain, name):
                return u
        return None

    def find_user_by_principal(self, principal):
        """The user a Kerberos initiator name maps to; realms compare case-insensitively, as in
        Active Directory."""
        wanted = principal.lower()
        for u in self.users.values():
            if wanted in (u.principal, u.upn):
                return u
        return None

    def find_user_by_claim(self, value):
        """The user an access token's user claim (a UPN or an address) names, case-insensitively."""
        wanted = str(value).lower()
        for u in self.users.values():
            if wanted in (u.email, u.upn):
                return u
        return None

    def find_user_by_basic_name(self, login):
        if "\\" in login:
            domain, name = login.split("\\", 1)
        else:
            domain, name = "", login
        return self.find_user_by_login(domain, name)

    def add_log(self, entry):
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.log.append(entry)

    def new_conn(self, listener, peer):
        with self.lock:
            self.conn_seq += 1
            c = {"conn": self.conn_seq, "listener": listener, "peer_port": peer[1], "time": now_iso(),
                 "sni": None, "tls_version": None, "alpn": None, "handshake_error": None}
            self.connections.append(c)
            return c

    def cleanup(self):
        try:
            for f in os.listdir(self.ntlm_dir):
                os.unlink(os.path.join(self.ntlm_dir, f))
            os.rmdir(self.ntlm_dir)
        except OSError:
            pass


STATE = None  # type: State


# --------------------------------------------------------------------------
# NTLM helpers
# --------------------------------------------------------------------------
_orig_step_accept_negotiate = NTLMProxy._step_accept_negotiate


def _patched_step_accept_negotiate(self, token):
    """Let pyspnego build the CHALLENGE, then make its names look like an AD member
    server (pyspnego uses the local hostname and the domain "WORKSTATION").
    Only the advertised names change; verification stays pyspnego's."""
    _orig_step_accept_negotiate(self, token)
    ch = self._temp_challenge
    a = STATE.args
    flags = (ch.flags & ~NegotiateFlags.target_type_server) | NegotiateFlags.target_type_domain
    ti = TargetInfo()
    ti[AvId.nb_domain_name] = a.ntlm_domain
    ti[AvId.nb_computer_name] = a.server_name
    ti[AvId.dns_domain_name] = a.ntlm_dns_domain
    ti[AvId.dns_computer_name] = "%s.%s" % (a.server_name.lower(), a.ntlm_dns_domain)
    ti[AvId.dns_tree_name] = a.ntlm_dns_domain
    ti[AvId.timestamp] = FileTime.now()
    kwargs = {}
    if flags & NegotiateFlags.version:
        kwargs["version"] = ch.version
    new = Challenge(flags, ch.server_challenge, target_name=a.ntlm_domain, target_info=ti, **kwargs)
    self._temp_challenge = new
    return new.pack()


NTLMProxy._step_accept_negotiate = _patched_step_accept_negotiate


def ntlm_inner(token):
    """Return the raw NTLMSSP message inside a (possibly SPNEGO-wrapped) token."""
    i = token.find(b"NTLMSSP\x00")
    if i < 0:
        return None
    return token[i:]


def ntlm_msg_type(raw):
    if raw is None or len(raw) < 12:
        return None
    return struct.unpack("<I", raw[8:12])[0]


SPNEGO_OID = bytes.fromhex("06062b0601050502")  # 1.3.6.1.5.5.2
KRB5_OIDS = (
    bytes.fromhex("06092a864886f712010202"),  # 1.2.840.113554.1.2.2 (RFC 4121)
    bytes.fromhex("06092a864882f712010202"),  # 1.2.840.48018.1.2.2 (Microsoft's variant)
)


def negotiate_token_kind(token):
    """What a Negotiate token carries: "ntlm" (raw or inside SPNEGO), "spnego" (SPNEGO without
    NTLM: Kerberos, or a later SPNEGO leg), "kerberos" (a raw RFC 4121 token), or "other"."""
    if ntlm_inner(token) is not None:
        return "ntlm"
    if token[:1] == b"\xa1":  # NegTokenResp: a later leg of a SPNEGO exchange
        return "spnego"
    if token[:1] != b"\x60" or len(token) < 2:
        return "other"
    # [APPLICATION 0] IMPLICIT SEQUENCE { thisMech OID, ... }: skip the DER length.
    n = token[1]
    start = 2 + (n & 0x7F if n & 0x80 else 0)
    if token[start:start + len(SPNEGO_OID)] == SPNEGO_OID:
        return "spnego"
    if any(token[start:start + len(oid)] == oid for oid in KRB5_OIDS):
        return "kerberos"
    return "other"


def ntlm_auth_info(raw):
    """Parse an AUTHENTICATE message: (domain, user, workstation, ntlmv2, cb_state)
    cb_state: None (no MsvAvChannelBindings), 'zero', or 'present'."""
    try:
        auth = Authenticate.unpack(raw)
    except Exception:
        return None
    nt = auth.nt_challenge_response or b""
    v2 = len(nt) > 24
    cb = None
    has_mic = False
    if v2:
        try:
            ti = NTClientChallengeV2.unpack(nt[16:]).av_pairs
            if AvId.channel_bindings in ti:
                cb = "zero" if ti[AvId.channel_bindings] == b"\x00" * 16 else "present"
            has_mic = bool(ti.get(AvId.flags, 0) & 0x2)
        except Exception:
            pass
    return {
        "domain": auth.domain_name or "",
        "user": auth.user_name or "",
        "workstation": auth.workstation or "",
        "ntlmv2": v2,
        "channel_bindings": cb,
        "mic": has_mic,
    }


def tls_server_end_point(cert_path):
    """RFC 5929 tls-server-end-point binding of our certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    with open(cert_path, "rb") as fd:
        cert = x509.load_pem_x509_certificate(fd.read())
    algo = cert.signature_hash_algorithm
    if algo is None or algo.name in ("md5", "sha1"):
        algo = hashes.SHA256()
    digest = cert.fingerprint(algo)
    return GssChannelBindings(application_data=b"tls-server-end-point:" + digest)


# --------------------------------------------------------------------------
# HTTPS handler
# --------------------------------------------------------------------------
class BodyError(Exception):
    pass


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    listener = "https"

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        log("conn=%s %s" % (getattr(self, "conn_info", {}).get("conn"), fmt % args))

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise BodyError("eof in chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else b""
        if len(data) != n:
            raise BodyError("short body")
        return data

    def send(self, status, body=b"", ctype=None, headers=()):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.last_status = status


class EwsHandler(BaseHandler):
    def setup(self):
        super().setup()
        self.timeout = STATE.args.idle_timeout
        self.connection.settimeout(STATE.args.idle_timeout)
        self.ntlm_ctx = None
        self.ntlm_scheme = None
        self.conn_user = None  # user authenticated by NTLM/Negotiate/Kerberos on this connection
        self.krb_ctx = None  # a Kerberos (GSS) acceptor context waiting for the next leg

    # every method goes through dispatch
    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = do_GET

    def exch_headers(self):
        return [
            ("request-id", str(uuid.uuid4())),
            ("X-CalculatedBETarget", "%s.%s" % (STATE.args.server_name.lower(), STATE.args.ntlm_dns_domain)),
            ("X-FEServer", STATE.args.server_name),
            ("X-BEServer", STATE.args.server_name),
            ("X-AspNet-Version", "4.0.30319"),
            ("X-Powered-By", "ASP.NET"),
        ]

    def dispatch(self):
        self.last_status = None
        try:
            body = self.read_body()
        except (BodyError, ValueError) as e:
            log("bad request body: %s" % e)
            self.close_connection = True
            self.send(400, "Bad Request", "text/html")
            return
        url = urlsplit(self.path)
        lpath = url.path.lower()
        if lpath.startswith("/test/"):
            return self.test_control(lpath, url.query, body)

        entry = {
            "time": now_iso(),
            "listener": "https",
            "conn": self.conn_info["conn"],
            "sni": self.conn_info.get("sni"),
            "method": self.command,
            "path": self.path,
            "host": self.headers.get("Host"),
            "user_agent": self.headers.get("User-Agent"),
            "content_type": self.headers.get("Content-Type"),
            "soap_action": self.headers.get("SOAPAction"),
            "anchor_mailbox": self.headers.get("X-AnchorMailbox"),
            "auth_scheme": None,
            "credentials_sent": False,
            "password_sent": False,
            "ntlm_message": None,
            "negotiate_token": None,
            "principal": None,
            "claimed_user": None,
            "authenticated_user": None,
            "auth_via": None,
            "auth_error": None,
            "bearer_error": None,
            "token_audience": None,
            "status": None,
            "body_bytes": len(body),
        }
        try:
            self.route(lpath, body, entry)
        finally:
            entry["status"] = self.last_status
            STATE.add_log(entry)

    def route(self, lpath, body, entry):
        is_ews = lpath == "/ews/exchange.asmx"
        is_ad = lpath == "/autodiscover/autodiscover.xml"
        kind = "ews" if is_ews else "autodiscover" if is_ad else None
        entry["endpoint"] = kind
        mode, scope = STATE.mode, STATE.mode_scope
        in_scope = kind is not None and scope in ("all", kind)
        if mode == "down" and in_scope:
            self.auth_header_to_entry(entry)
            entry["dropped"] = True
            self.abort_connection()
            return
        if kind is None:
            self.auth_header_to_entry(entry)
            self.send(404, HTML_404, "text/html", self.exch_headers())
            return
        if mode == "error503" and in_scope:
            self.auth_header_to_entry(entry)
            self.send(503, HTML_503, "text/html; charset=us-ascii")
            return
        user, extra = self.authenticate(entry)
        if user is None:
            return
        if is_ews:
            self.ews(user, body, entry, extra)
        else:
            self.autodiscover(user, body, entry, extra)

    def abort_connection(self):
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.last_status = "dropped"

    # ---------------------------------------------------------------- auth
    def challenges(self):
        out = []
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0] if self.headers.get("Host") else ""
        if host.startswith("["):
            host = self.headers.get("Host").split("]")[0] + "]"
        realm = STATE.args.realm or host or "mail.contoso.test"
        for a in self.enabled_auth():
            if a == "ntlm":
                out.append(("WWW-Authenticate", "NTLM"))
            elif a in ("negotiate", "kerberos"):
                if ("WWW-Authenticate", "Negotiate") not in out:
                    out.append(("WWW-Authenticate", "Negotiate"))
            elif a == "basic":
                out.append(("WWW-Authenticate", 'Basic realm="%s"' % realm))
            elif a == "bearer":
                out.append(("WWW-Authenticate", bearer_challenge()))
        return out

    def enabled_auth(self):
        """Schemes offered and accepted for this request's path: IIS configures authentication
        per virtual directory (--path-auth), else the server-wide --auth."""
        return STATE.args.path_auth.get(urlsplit(self.path).path.lower(), STATE.args.auth)

    def unauthorized(self, entry, reason=None, headers=None):
        if reason:
            entry["auth_error"] = reason
            log("401: %s" % reason)
        hdrs = list(headers if headers is not None else self.challenges())
        hdrs += self.exch_headers()
        self.send(401, b"", None, hdrs)
        return None, None

    def auth_header_to_entry(self, entry):
        """Record what credentials (if any) the client sent, without checking them."""
        hdr = self.headers.get("Authorization")
        if not hdr:
            return None, None, None
        scheme, _, param = hdr.strip().partition(" ")
        entry["auth_scheme"] = scheme
        sl = scheme.lower()
        if sl == "basic":
            entry["credentials_sent"] = True
            entry["password_sent"] = True
            try:
                raw = base64.b64decode(param.strip(), validate=True)
                try:
                    dec = raw.decode("utf-8")
                except UnicodeDecodeError:
                    dec = raw.decode("latin-1")
                login, _, pw = dec.partition(":")
                entry["claimed_user"] = login
                return sl, (login, pw), None
            except (binascii.Error, ValueError):
                return sl, None, None
        if sl in ("ntlm", "negotiate"):
            try:
                token = base64.b64decode(param.strip(), validate=True)
            except (binascii.Error, ValueError):
                return sl, None, None
            raw = ntlm_inner(token)
            mt = ntlm_msg_type(raw)
            entry["ntlm_message"] = mt
            if sl == "negotiate":
                kind = negotiate_token_kind(token)
                entry["negotiate_token"] = kind
                # A Kerberos AP-REQ proves who the client is: a credential, like an NTLM type 3.
                entry["credentials_sent"] = kind in ("spnego", "kerberos") and bool(token)
            if mt == 3:
                entry["credentials_sent"] = True
                info = ntlm_auth_info(raw)
                if info:
                    entry["claimed_user"] = ("%s\\%s" % (info["domain"], info["user"])) if info["domain"] else info["user"]
                    entry["ntlm"] = info
            return sl, token, (raw, mt)
        # Bearer or anything else: a credential of some kind was sent
        entry["credentials_sent"] = bool(param.strip())
        return sl, None, None

    def authenticate(self, entry):
        scheme, data, extra = self.auth_header_to_entry(entry)
        enabled = self.enabled_auth()
        if scheme is None:
            if self.conn_user is not None and STATE.args.ntlm_persist:
                entry["auth_via"] = "%s (connection)" % self.ntlm_scheme_name()
                entry["authenticated_user"] = self.conn_user.email
                return self.conn_user, []
            return self.unauthorized(entry)
        kerberos = "kerberos" in enabled
        if scheme not in enabled and not (scheme == "negotiate" and kerberos):
            return self.unauthorized(entry, "scheme %s not enabled" % scheme)

        if scheme == "bearer":
            return self.bearer(entry)

        if scheme == "basic":
            if data is None:
                return self.unauthorized(entry, "malformed Basic credentials")
            login, pw = data
            with STATE.lock:
                u = STATE.find_user_by_basic_name(login)
                ok = u is not None and u.password == pw
            if not ok:
                return self.unauthorized(entry, "Basic: bad user name or password for %r" % login)
            entry["auth_via"] = "Basic"
            entry["authenticated_user"] = u.email
            return u, []

        # NTLM / Negotiate / Kerberos
        if data is None:
            return self.unauthorized(entry, "malformed %s token" % scheme)
        token = data
        raw, mt = extra
        if scheme == "negotiate" and kerberos and raw is None:
            return self.kerberos_step(entry, token)
        if scheme == "negotiate" and "negotiate" not in enabled:
            # Kerberos only: IIS with NTLM removed from the Negotiate providers.
            self.ntlm_ctx = None
            return self.unauthorized(entry, "Negotiate token with NTLM refused (Kerberos only)")
        self.conn_user = None
        if mt == 1 or (scheme == "negotiate" and raw is None and self.ntlm_ctx is None):
            if raw is None:
                # SPNEGO init without NTLM (e.g. Kerberos only): no KDC here.
                self.ntlm_ctx = None
                return self.unauthorized(entry, "Negotiate token without NTLM (Kerberos is not available)")
            ctx = spnego.server(
                protocol="negotiate" if scheme == "negotiate" else "ntlm",
                options=spnego.NegotiateOptions.use_negotiate if scheme == "negotiate" else spnego.NegotiateOptions.use_ntlm,
            )
            try:
                out = ctx.step(token)
            except spnego.exceptions.SpnegoError as e:
                self.ntlm_ctx = None
                return self.unauthorized(entry, "%s negotiate step failed: %s" % (scheme, e))
            self.ntlm_ctx, self.ntlm_scheme = ctx, scheme
            hdr = "%s %s" % ("Negotiate" if scheme == "negotiate" else "NTLM", base64.b64encode(out or b"").decode())
            return self.unauthorized(entry, None, [("WWW-Authenticate", hdr)])

        ctx = self.ntlm_ctx if self.ntlm_scheme == scheme else None
        self.ntlm_ctx = None
        if ctx is None:
            return self.unauthorized(entry, "%s message type %s without a handshake on this connection" % (scheme, mt))
        cb = None
        info = entry.get("ntlm") or {}
        policy = STATE.args.channel_binding
        if policy == "require" and info.get("channel_bindings") != "present":
            return self.unauthorized(entry, "channel binding required but client sent %s" % info.get("channel_bindings"))
        if policy in ("allow", "require") and info.get("channel_bindings") is not None:
            cb = STATE.channel_bindings
        if STATE.args.ntlmv2_only and mt == 3 and not info.get("ntlmv2"):
            return self.unauthorized(entry, "NTLMv1 response rejected (--ntlmv2-only)")
        try:
            with STATE.lock:  # pyspnego reads NTLM_USER_FILE; /test/password rewrites it
                out = ctx.step(token, channel_bindings=cb) if cb is not None else ctx.step(token)
        except spnego.exceptions.SpnegoError as e:
            return self.unauthorized(entry, "%s authenticate failed: %s" % (scheme, e))
        if not ctx.complete:
            return self.unauthorized(entry, "%s context not complete" % scheme)
        with STATE.lock:
            u = STATE.find_user_by_login(info.get("domain"), info.get("user"))
        if u is None:
            return self.unauthorized(entry, "authenticated principal %r maps to no mailbox" % ctx.client_principal)
        self.conn_user = u
        self.ntlm_scheme = scheme
        entry["auth_via"] = "Negotiate" if scheme == "negotiate" else "NTLM"
        entry["authenticated_user"] = u.email
        extra_hdrs = []
        if out:
            extra_hdrs.append(("WWW-Authenticate", "Negotiate " + base64.b64encode(out).decode()))
        return u, extra_hdrs

    def bearer(self, entry):
        """An OAuth access token (`Authorization: Bearer <token>`), as Exchange Online checks
        them: introspected at the OIDC server (RFC 7662); it must be active and have one of the
        --audience values, and its user claim must name a mailbox. Refusals are 401 with every
        challenge, the Bearer one saying error="invalid_token"; no state on the connection."""
        token = self.headers.get("Authorization", "").strip().partition(" ")[2].strip()
        if not token or " " in token:
            return self.bearer_refused(entry, "malformed Bearer credentials")
        try:
            info = introspect(token)
        except (OSError, ValueError) as e:
            # The token cannot be checked: a server-side failure, not the client's.
            entry["bearer_error"] = "introspection failed: %s" % e
            log("503: %s" % entry["bearer_error"])
            self.send(503, HTML_503, "text/html; charset=us-ascii", self.exch_headers())
            return None, None
        if info.get("active") is not True:
            return self.bearer_refused(entry, "token not active (expired, revoked or unknown)")
        aud = info.get("aud")
        auds = [aud] if isinstance(aud, str) else list(aud or [])
        entry["token_audience"] = auds
        wanted = STATE.args.audience
        if not any(normal_audience(a) in wanted for a in auds if isinstance(a, str)):
            return self.bearer_refused(
                entry, "audience %s is not %s" % (auds or "missing", " or ".join(STATE.args.audience_given)))
        names = [(c, info[c]) for c in BEARER_USER_CLAIMS if isinstance(info.get(c), str)]
        entry["claimed_user"] = names[0][1] if names else None
        with STATE.lock:
            u = next((u for u in (STATE.find_user_by_claim(v) for _, v in names) if u), None)
        if u is None:
            return self.bearer_refused(entry, "token user %s maps to no mailbox" % dict(names))
        entry["auth_via"] = "Bearer"
        entry["authenticated_user"] = u.email
        return u, []

    def bearer_refused(self, entry, reason):
        entry["bearer_error"] = reason
        return self.unauthorized(entry, "Bearer: %s" % reason)

    def kerberos_step(self, entry, token):
        """One leg of a Kerberos logon inside Negotiate (SPNEGO or a raw RFC 4121 token), checked
        by MIT Kerberos with the service's keytab. A complete context answers 200 with the
        acceptor's mutual-authentication token; an incomplete one 401 with its next token."""
        import gssapi  # only in --auth kerberos, so the other modes need no python-gssapi

        self.conn_user = None
        ctx = self.krb_ctx
        self.krb_ctx = None
        if ctx is None or token[:1] != b"\xa1":  # not a later SPNEGO leg: a new logon
            bindings = None
            if STATE.args.channel_binding != "none":
                bindings = gssapi.raw.ChannelBindings(
                    application_data=STATE.channel_bindings.application_data)
            ctx = gssapi.SecurityContext(usage="accept", creds=STATE.krb_creds,
                                         channel_bindings=bindings)
        try:
            out = ctx.step(token)
            # SPNEGO returns its reject token and keeps the error for the next use of the context.
            complete = ctx.complete
        except gssapi.exceptions.GSSError as e:
            return self.unauthorized(entry, "Kerberos: %s" % " ".join(str(e).split()))
        if not complete:
            self.krb_ctx = ctx
            hdr = "Negotiate " + base64.b64encode(out or b"").decode()
            return self.unauthorized(entry, None, [("WWW-Authenticate", hdr)])
        principal = str(ctx.initiator_name)
        entry["principal"] = principal
        with STATE.lock:
            u = STATE.find_user_by_principal(principal)
        if u is None:
            return self.unauthorized(entry, "Kerberos principal %r maps to no mailbox" % principal)
        self.conn_user = u
        self.ntlm_scheme = "kerberos"
        entry["auth_via"] = "Kerberos"
        entry["authenticated_user"] = u.email
        extra_hdrs = []
        if out:
            extra_hdrs.append(("WWW-Authenticate", "Negotiate " + base64.b64encode(out).decode()))
        return u, extra_hdrs

    def ntlm_scheme_name(self):
        if self.ntlm_scheme == "kerberos":
            return "Kerberos"
        return "Negotiate" if self.ntlm_scheme == "negotiate" else "NTLM"

    # ---------------------------------------------------------------- EWS
    def soap_fault(self, code, text, values=(), status=500, headers=()):
        mx = ""
        if values:
            mx = FAULT_MESSAGEXML.format(values="\n".join(
                '          <t:Value Name="%s">%s</t:Value>' % (esc(k), esc(v)) for k, v in values))
        body = SOAP_FAULT.format(code=esc(code), text=esc(text), messagexml=mx)
        self.send(status, body, "text/xml; charset=utf-8", list(headers) + self.exch_headers())

    def schema_error(self, violation, headers):
        body = SOAP_FAULT.format(
            code="ErrorSchemaValidation",
            text=esc("The request failed schema validation: " + violation),
            messagexml="""
        <t:MessageXml xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
          <t:LineNumber>1</t:LineNumber>
          <t:LinePosition>1</t:LinePosition>
          <t:Violation>%s</t:Violation>
        </t:MessageXml>""" % esc(violation))
        self.send(500, body, "text/xml; charset=utf-8", list(headers) + self.exch_headers())

    def ews(self, user, body, entry, extra):
        hdrs = list(extra)
        if self.command == "GET":
            self.send(200, "<html><head><title>Service</title></head><body><h1>Service</h1>"
                      "<p>You have created a service.</p></body></html>", "text/html; charset=UTF-8",
                      hdrs + self.exch_headers())
            return
        if self.command != "POST":
            self.send(405, "", "text/html", hdrs + [("Allow", "GET, POST")] + self.exch_headers())
            return
        ctype = (self.headers.get("Content-Type") or "").strip().lower()
        if not ctype.startswith("text/xml"):
            self.send(415, "", None, hdrs + self.exch_headers())
            entry["ews_error"] = "unsupported content type %r" % ctype
            return
        try:
            root = ET.fromstring(body)
        except ET.ParseError as e:
            entry["ews_error"] = "xml: %s" % e
            return self.schema_error("The request is not well-formed XML: %s" % e, hdrs)
        if root.tag != "{%s}Envelope" % NS_SOAP:
            entry["ews_error"] = "root %s" % root.tag
            return self.schema_error("Root element %s is not a SOAP 1.1 Envelope." % root.tag, hdrs)
        header = root.find("{%s}Header" % NS_SOAP)
        sbody = root.find("{%s}Body" % NS_SOAP)
        rsv = None
        if header is not None:
            v = header.find("{%s}RequestServerVersion" % NS_T)
            if v is not None:
                rsv = v.get("Version")
                entry["request_server_version"] = rsv
                if rsv not in ACCEPTED_VERSIONS:
                    return self.soap_fault("ErrorInvalidServerVersion", "The specified server version is invalid.",
                                           headers=hdrs)
            if header.find("{%s}ExchangeImpersonation" % NS_T) is not None:
                entry["impersonation"] = True
                return self.soap_fault("ErrorImpersonateUserDenied",
                                       "The account does not have permission to impersonate the requested user.",
                                       headers=hdrs)
        if sbody is None or len(sbody) == 0:
            return self.schema_error("The SOAP Body is missing or empty.", hdrs)
        op_el = sbody[0]
        ns, _, op = op_el.tag[1:].partition("}") if op_el.tag.startswith("{") else ("", "", op_el.tag)
        entry["operation"] = op
        if ns != NS_M:
            return self.schema_error("The element '%s' in namespace '%s' is not expected." % (op, ns), hdrs)
        if STATE.mode == "busy" and STATE.mode_scope in ("all", "ews"):
            return self.soap_fault("ErrorServerBusy", "The server cannot service this request right now. Try again later.",
                                   values=[("BackOffMilliseconds", str(STATE.back_off_ms))], headers=hdrs)
        if op == "GetFolder":
            return self.get_folder(user, op_el, entry, hdrs)
        return self.soap_fault("ErrorInvalidRequest",
                               "The request is invalid. (This fake EWS server implements GetFolder only.)",
                               headers=hdrs)

    def get_folder(self, user, op_el, entry, hdrs):
        shape_el = op_el.find("{%s}FolderShape" % NS_M)
        ids_el = op_el.find("{%s}FolderIds" % NS_M)
        if shape_el is None:
            return self.schema_error("The element 'GetFolder' has incomplete content. List of possible elements "
                                     "expected: 'FolderShape' in namespace '%s'." % NS_M, hdrs)
        if ids_el is None or len(ids_el) == 0:
            return self.schema_error("The element 'GetFolder' has incomplete content. List of possible elements "
                                     "expected: 'FolderIds' in namespace '%s'." % NS_M, hdrs)
        base = shape_el.find("{%s}BaseShape" % NS_T)
        if base is None or (base.text or "").strip() not in ("IdOnly", "Default", "AllProperties"):
            return self.schema_error("FolderShape/BaseShape must be IdOnly, Default or AllProperties.", hdrs)
        base = base.text.strip()
        additional = set()
        ap = shape_el.find("{%s}AdditionalProperties" % NS_T)
        if ap is not None:
            for f in ap.findall("{%s}FieldURI" % NS_T):
                additional.add(f.get("FieldURI"))
        entry["folder_shape"] = base
        folders_req = []
        messages = []
        for fid in ids_el:
            if fid.tag == "{%s}DistinguishedFolderId" % NS_T:
                name = fid.get("Id")
                folders_req.append(name)
                if name not in DISTINGUISHED_ENUM:
                    return self.schema_error("The 'Id' attribute is invalid - The value '%s' is invalid according to "
                                             "its datatype DistinguishedFolderIdNameType." % name, hdrs)
                target = user
                mb = fid.find("{%s}Mailbox" % NS_T)
                if mb is not None:
                    # Another mailbox, named by its SMTP address: Exchange resolves the address,
                    # then checks the signed-in user's rights on that mailbox's folder.
                    addr = (mb.findtext("{%s}EmailAddress" % NS_T) or "").strip().lower()
                    entry.setdefault("mailboxes", []).append(addr)
                    with STATE.lock:
                        target = STATE.users.get(addr)
                        allowed = target is not None and target.may_open(user, name)
                    if target is None:
                        messages.append(RESPONSE_MESSAGE_ERROR.format(
                            op="GetFolder", code="ErrorNonExistentMailbox",
                            text="The SMTP address has no mailbox associated with it."))
                        continue
                    if not allowed:
                        messages.append(RESPONSE_MESSAGE_ERROR.format(
                            op="GetFolder", code="ErrorAccessDenied", text="Access is denied. Check credentials and try again."))
                        continue
                if name not in FOLDERS:
                    messages.append(RESPONSE_MESSAGE_ERROR.format(
                        op="GetFolder", code="ErrorFolderNotFound",
                        text="The specified folder could not be found in the store."))
                    continue
                messages.append(RESPONSE_MESSAGE_OK.format(op="GetFolder", folder=self.folder_xml(target, name, base, additional)))
            elif fid.tag == "{%s}FolderId" % NS_T:
                raw_id = fid.get("Id") or ""
                folders_req.append("id:" + raw_id)
                owner, name = decode_folder_id(raw_id)
                with STATE.lock:
                    owner_user = STATE.users.get(owner) if owner is not None else None
                    allowed = owner_user is not None and owner_user.may_open(user, name)
                if owner is None:
                    messages.append(RESPONSE_MESSAGE_ERROR.format(op="GetFolder", code="ErrorInvalidIdMalformed",
                                                                  text="Id is malformed."))
                elif not allowed:
                    messages.append(RESPONSE_MESSAGE_ERROR.format(op="GetFolder", code="ErrorAccessDenied",
                                                                  text="Access is denied. Check credentials and try again."))
                else:
                    messages.append(RESPONSE_MESSAGE_OK.format(op="GetFolder", folder=self.folder_xml(owner_user, name, base, additional)))
            else:
                return self.schema_error("The element 'FolderIds' has invalid child element '%s'." % fid.tag, hdrs)
        entry["folders"] = folders_req
        mode = STATE.mode if STATE.mode_scope in ("all", "ews") else "ok"
        if mode == "hostile_error":
            text = esc(hostile_text(HOSTILE_ERROR_CHARS))
            messages = [RESPONSE_MESSAGE_ERROR.format(op="GetFolder", code=HOSTILE_ERROR_CODE, text=text)
                        for _ in folders_req]
        v = SERVER_VERSION
        version_attr = ' Version="%s"' % v["version"] if v["version"] else ""
        if mode == "hostile_version":
            version_attr = ' Version="%s"' % hostile_attr(HOSTILE_VERSION_CHARS)
        body = SOAP_RESPONSE.format(op="GetFolder", messages="\n".join(messages), version_attr=version_attr,
                                    major=v["major"], minor=v["minor"], build=v["build"], revision=v["revision"])
        self.send(200, body, "text/xml; charset=utf-8", hdrs + self.exch_headers())

    def folder_xml(self, user, name, base, additional):
        elem, display, fclass = FOLDERS[name]
        with STATE.lock:
            total = {"inbox": user.inbox_total, "calendar": user.calendar_total}.get(name, 0)
            unread = user.inbox_unread if name == "inbox" else 0
        props = set()
        if base == "Default":
            props = {"DisplayName", "TotalCount", "ChildFolderCount", "UnreadCount"}
        elif base == "AllProperties":
            props = {"ParentFolderId", "FolderClass", "DisplayName", "TotalCount", "ChildFolderCount",
                     "EffectiveRights", "UnreadCount"}
        for uri in additional:
            if uri and uri.startswith("folder:"):
                props.add(uri.split(":", 1)[1])
        if elem != "Folder":
            props.discard("UnreadCount")  # not part of Calendar/Contacts/TasksFolderType
        ind = " " * 14
        lines = ['%s<t:FolderId Id="%s" ChangeKey="%s"/>' % (ind, encode_folder_id(user.email, name), change_key(user.email, name))]
        if "ParentFolderId" in props:
            lines.append('%s<t:ParentFolderId Id="%s" ChangeKey="AQAAAA=="/>' % (ind, encode_folder_id(user.email, "msgfolderroot")))
        if "FolderClass" in props:
            lines.append("%s<t:FolderClass>%s</t:FolderClass>" % (ind, fclass))
        if "DisplayName" in props:
            lines.append("%s<t:DisplayName>%s</t:DisplayName>" % (ind, esc(display)))
        if "TotalCount" in props:
            lines.append("%s<t:TotalCount>%d</t:TotalCount>" % (ind, total))
        if "ChildFolderCount" in props:
            lines.append("%s<t:ChildFolderCount>0</t:ChildFolderCount>" % ind)
        if "EffectiveRights" in props:
            lines.append(ind + "<t:EffectiveRights><t:CreateAssociated>true</t:CreateAssociated>"
                         "<t:CreateContents>true</t:CreateContents><t:CreateHierarchy>true</t:CreateHierarchy>"
                         "<t:Delete>true</t:Delete><t:Modify>true</t:Modify><t:Read>true</t:Read>"
                         "<t:ViewPrivateItems>true</t:ViewPrivateItems></t:EffectiveRights>")
        if "UnreadCount" in props:
            lines.append("%s<t:UnreadCount>%d</t:UnreadCount>" % (ind, unread))
        return "            <t:%s>\n%s\n            </t:%s>" % (elem, "\n".join(lines), elem)

    # ---------------------------------------------------------------- Autodiscover
    def ad_error(self, code, hdrs, entry):
        entry["autodiscover_result"] = "error %d" % code
        t = datetime.datetime.now()
        body = AD_ERROR.format(time=t.strftime("%H:%M:%S.") + "%07d" % (t.microsecond * 10),
                               id=str(zlib_crc(STATE.args.server_name)), code=code,
                               message=esc(AD_ERROR_MESSAGES.get(code, "Invalid Request")))
        self.send(200, body, "text/xml; charset=utf-8", hdrs + self.exch_headers())

    def autodiscover(self, user, body, entry, extra):
        hdrs = list(extra)
        if self.command != "POST":
            return self.ad_error(600, hdrs, entry)
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return self.ad_error(600, hdrs, entry)
        req = root.find("{%s}Request" % NS_AD_REQ)
        if root.tag != "{%s}Autodiscover" % NS_AD_REQ or req is None:
            return self.ad_error(600, hdrs, entry)
        email = (req.findtext("{%s}EMailAddress" % NS_AD_REQ) or "").strip()
        schema = (req.findtext("{%s}AcceptableResponseSchema" % NS_AD_REQ) or "").strip()
        entry["autodiscover_email"] = email
        if schema != NS_AD_OUTLOOK:
            return self.ad_error(601, hdrs, entry)
        if not email:
            return self.ad_error(600, hdrs, entry)
        key = email.lower()
        a = STATE.args
        if key in a.redirect_addr:
            entry["autodiscover_result"] = "redirectAddr"
            return self.send(200, AD_REDIRECT_ADDR.format(target=esc(a.redirect_addr[key])),
                             "text/xml; charset=utf-8", hdrs + self.exch_headers())
        if key in a.redirect_url:
            entry["autodiscover_result"] = "redirectUrl"
            return self.send(200, AD_REDIRECT_URL.format(target=esc(a.redirect_url[key])),
                             "text/xml; charset=utf-8", hdrs + self.exch_headers())
        with STATE.lock:
            target = STATE.users.get(key)
            if target is None:
                target = next((u for u in STATE.users.values() if u.upn == key), None)
        if target is None:
            return self.ad_error(a.unknown_address_code, hdrs, entry)
        entry["autodiscover_result"] = "settings"
        exch, expr = a.exch_ews_url, a.expr_ews_url
        dep = uuid.uuid5(uuid.NAMESPACE_DNS, a.ntlm_dns_domain)
        org_dn = "/o=%s" % a.ntlm_domain.capitalize()
        legacy_dn = "%s/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=%s-%s" % (
            org_dn, hashlib.md5(target.email.encode()).hexdigest(), target.sam)
        auth_package = ("Ntlm" if ("ntlm" in a.auth or "negotiate" in a.auth)
                        else "Negotiate" if "kerberos" in a.auth else "Basic")
        body = AD_SETTINGS.format(
            display_name=esc(target.display_name), legacy_dn=esc(legacy_dn), address=esc(target.email),
            deployment_id=dep, mailbox_guid=target.mailbox_guid(), dns_domain=esc(a.ntlm_dns_domain),
            org_dn=esc(org_dn), server_version_hex=server_version_hex(),
            exch_ews=esc(exch), exch_base=esc(url_base(exch)), expr_ews=esc(expr), expr_base=esc(url_base(expr)),
            expr_host=esc(urlsplit(expr).hostname or ""), auth_package=auth_package,
            oab_guid=uuid.uuid5(uuid.NAMESPACE_DNS, "oab." + a.ntlm_dns_domain))
        self.send(200, body, "text/xml; charset=utf-8", hdrs + self.exch_headers())

    # ---------------------------------------------------------------- test controls
    def test_json(self, status, obj):
        self.send(status, json.dumps(obj, indent=1), "application/json", [TEST_ONLY_HEADER])

    def test_control(self, lpath, query, body):
        """TEST-ONLY control plane. Not part of Exchange; no auth; 127.0.0.1 only."""
        try:
            data = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (ValueError, UnicodeDecodeError) as e:
            return self.test_json(400, {"error": "bad json: %s" % e})
        m = self.command
        if lpath == "/test/mode":
            if m == "GET":
                return self.test_json(200, {"mode": STATE.mode, "scope": STATE.mode_scope, "back_off_ms": STATE.back_off_ms})
            if m != "POST":
                return self.test_json(405, {"error": "use GET or POST"})
            mode = data.get("mode")
            if mode not in MODES:
                return self.test_json(400, {"error": "mode must be " + "|".join(MODES)})
            scope = data.get("scope", "ews" if mode in EWS_MODES else "all")
            if scope not in ("all", "ews", "autodiscover"):
                return self.test_json(400, {"error": "scope must be all|ews|autodiscover"})
            with STATE.lock:
                STATE.mode, STATE.mode_scope = mode, scope
                if "back_off_ms" in data:
                    STATE.back_off_ms = int(data["back_off_ms"])
            log("TEST mode -> %s (scope %s)" % (mode, scope))
            return self.test_json(200, {"ok": True, "mode": mode, "scope": scope, "back_off_ms": STATE.back_off_ms})
        if lpath == "/test/password" and m == "POST":
            who, pw = (data.get("user") or "").lower(), data.get("password")
            if not isinstance(pw, str):
                return self.test_json(400, {"error": "password (string) required"})
            with STATE.lock:
                u = STATE.users.get(who)
                if u is None:
                    return self.test_json(404, {"error": "no such user %s" % who})
                u.password = pw
                STATE.write_ntlm_file()
            log("TEST password changed for %s" % who)
            return self.test_json(200, {"ok": True, "user": who})
        if lpath == "/test/mailbox" and m == "POST":
            who = (data.get("user") or "").lower()
            with STATE.lock:
                u = STATE.users.get(who)
                if u is None:
                    return self.test_json(404, {"error": "no such user %s" % who})
                for k in ("inbox_total", "inbox_unread", "calendar_total"):
                    if k in data:
                        setattr(u, k, int(data[k]))
                res = {"ok": True, "user": who, "inbox_total": u.inbox_total, "inbox_unread": u.inbox_unread,
                       "calendar_total": u.calendar_total}
            return self.test_json(200, res)
        if lpath == "/test/delegates" and m == "POST":
            owner = (data.get("mailbox") or "").lower()
            delegate = (data.get("delegate") or "").lower()
            folders = data.get("folders")
            if not isinstance(folders, list) or not all(f in FOLDERS for f in folders):
                return self.test_json(400, {"error": "folders: a list of %s" % ",".join(sorted(FOLDERS))})
            with STATE.lock:
                u = STATE.users.get(owner)
                if u is None or delegate not in STATE.users:
                    return self.test_json(404, {"error": "no such user %s or %s" % (owner, delegate)})
                if folders:
                    u.delegates[delegate] = set(folders)
                else:
                    u.delegates.pop(delegate, None)
            log("TEST delegates of %s: %s -> %s" % (owner, delegate, folders))
            return self.test_json(200, {"ok": True, "mailbox": owner, "delegate": delegate, "folders": folders})
        if lpath == "/test/log":
            if m == "GET":
                with STATE.lock:
                    return self.test_json(200, list(STATE.log))
            if m in ("DELETE", "POST"):
                with STATE.lock:
                    STATE.log.clear()
                return self.test_json(200, {"ok": True})
        if lpath == "/test/log/clear" and m == "POST":
            with STATE.lock:
                STATE.log.clear()
            return self.test_json(200, {"ok": True})
        if lpath == "/test/connections" and m == "GET":
            with STATE.lock:
                return self.test_json(200, list(STATE.connections))
        return self.test_json(404, {"error": "unknown test endpoint %s %s" % (m, lpath)})


# --------------------------------------------------------------------------
# plain HTTP listener: Autodiscover HTTP redirect method
# --------------------------------------------------------------------------
class RedirectHandler(BaseHandler):
    listener = "http"

    def setup(self):
        super().setup()
        self.connection.settimeout(STATE.args.idle_timeout)

    def do_GET(self):
        self.last_status = None
        try:
            body = self.read_body()
        except (BodyError, ValueError):
            self.close_connection = True
            return self.send(400, "Bad Request", "text/html")
        url = urlsplit(self.path)
        entry = {
            "time": now_iso(), "listener": "http", "conn": self.conn_info["conn"], "sni": None,
            "method": self.command, "path": self.path, "host": self.headers.get("Host"),
            "user_agent": self.headers.get("User-Agent"), "content_type": self.headers.get("Content-Type"),
            "auth_scheme": None, "credentials_sent": False, "password_sent": False, "ntlm_message": None,
            "claimed_user": None, "authenticated_user": None, "auth_via": None, "status": None,
            "body_bytes": len(body), "endpoint": None,
        }
        hdr = self.headers.get("Authorization")
        if hdr:
            scheme, _, param = hdr.strip().partition(" ")
            entry["auth_scheme"] = scheme
            entry["credentials_sent"] = scheme.lower() == "basic" or bool(param.strip())
            entry["password_sent"] = scheme.lower() == "basic"
        try:
            if url.path.lower() == "/autodiscover/autodiscover.xml":
                entry["endpoint"] = "autodiscover-redirect"
                loc = STATE.args.http_redirect_location
                self.send(302, '<head><title>Document Moved</title></head>\n<body><h1>Object Moved</h1>'
                          'This document may be found <a HREF="%s">here</a></body>' % esc(loc),
                          "text/html; charset=UTF-8", [("Location", loc)])
            else:
                self.send(404, HTML_404, "text/html")
        finally:
            entry["status"] = self.last_status
            STATE.add_log(entry)

    do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = do_GET


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------
class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, handler, ssl_ctx=None):
        self.ssl_ctx = ssl_ctx
        super().__init__(addr, handler)

    def handle_error(self, request, client_address):
        log("connection error: %s" % traceback.format_exc().strip().splitlines()[-1])

    def finish_request(self, request, client_address):
        info = STATE.new_conn("https" if self.ssl_ctx else "http", client_address)
        sock = request
        if self.ssl_ctx is not None:
            request.settimeout(STATE.args.idle_timeout)
            try:
                sock = self.ssl_ctx.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
                sock.do_handshake()
            except (ssl.SSLError, OSError) as e:
                info["handshake_error"] = str(e)
                log("conn=%s TLS handshake failed: %s" % (info["conn"], e))
                try:
                    sock.close()
                except Exception:
                    pass
                return
            info["sni"] = getattr(sock, "fake_sni", None)
            info["tls_version"] = sock.version()
            info["alpn"] = sock.selected_alpn_protocol()
        handler_cls = self.RequestHandlerClass

        class H(handler_cls):
            conn_info = info

        try:
            H(sock, client_address, self)
        finally:
            if sock is not request:
                try:
                    sock.close()
                except Exception:
                    pass


def bearer_challenge():
    return ('Bearer client_id="%s", trusted_issuers="%s", token_types="%s", authorization_uri="%s", '
            'error="invalid_token"' % (EXCHANGE_APP_ID, TRUSTED_ISSUERS, TOKEN_TYPES,
                                       STATE.args.authorization_uri))


def loopback_url(url):
    """Whether `url` is http(s) on a loopback address (this server talks to nothing else)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        return False


def normal_audience(aud):
    """An audience as compared: v1 tokens may carry the resource URI with a trailing slash."""
    return aud.rstrip("/").lower()


def introspect(token):
    """RFC 7662 introspection of `token` at --introspect, authenticated as the resource-server
    client (HTTP Basic with the form-encoded id and secret, RFC 6749 section 2.3.1, as graph.mjs
    does). Raises OSError (unreachable, HTTP error) or ValueError (not JSON)."""
    a = STATE.args
    cred = "%s:%s" % (urllib.parse.quote(a.introspect_client_id, safe=""),
                      urllib.parse.quote(a.introspect_client_secret, safe=""))
    req = urllib.request.Request(
        a.introspect, method="POST",
        data=urllib.parse.urlencode({"token": token, "token_type_hint": "access_token"}).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(cred.encode()).decode(),
                 "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
    # No proxy: the OIDC server is on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=5) as r:
        info = json.loads(r.read().decode("utf-8"))
    if not isinstance(info, dict):
        raise ValueError("introspection answered %r" % type(info).__name__)
    return info


def zlib_crc(s):
    import zlib
    return zlib.crc32(s.encode()) & 0x7FFFFFFF


def server_version_hex():
    v = SERVER_VERSION
    n = (0x7 << 28) | (v["major"] << 22) | (v["minor"] << 16) | 0x8000 | v["build"]
    return "%08X" % n


def url_base(u):
    p = urlsplit(u)
    return "%s://%s" % (p.scheme, p.netloc)


def encode_folder_id(email, name):
    raw = b"\x00FAKEEWS\x00" + email.encode() + b"\x00" + name.encode()
    return base64.b64encode(raw).decode()


def decode_folder_id(fid):
    try:
        raw = base64.b64decode(fid, validate=True)
    except (binascii.Error, ValueError):
        return None, None
    if not raw.startswith(b"\x00FAKEEWS\x00"):
        return None, None
    parts = raw[9:].split(b"\x00")
    if len(parts) != 2 or parts[1].decode() not in FOLDERS:
        return None, None
    return parts[0].decode(), parts[1].decode()


def change_key(email, name):
    return base64.b64encode(b"\x0f\x00\x00\x00" + hashlib.sha1((email + name).encode()).digest()[:12]).decode()


def parse_args(argv):
    p = argparse.ArgumentParser(description="Fake Exchange EWS + Autodiscover server (TEST ONLY, 127.0.0.1).")
    p.add_argument("--host", default="127.0.0.1",
                   help="loopback address to listen on (127.0.0.0/8 only), e.g. 127.0.0.7 to use port 443 per test")
    p.add_argument("--port", type=int, default=0, help="HTTPS port (0 = pick a free port)")
    p.add_argument("--http-port", type=int, default=None,
                   help="also listen on plain HTTP (0 = free port) for the Autodiscover HTTP redirect method")
    p.add_argument("--cert", required=True, help="server certificate (PEM; may include the chain)")
    p.add_argument("--key", required=True, help="server private key (PEM)")
    p.add_argument("--users", required=True, help="users JSON file")
    p.add_argument("--auth", default="negotiate,ntlm,basic",
                   help="comma list of negotiate,kerberos,ntlm,basic,bearer: challenges offered, in this order "
                        "(negotiate and kerberos share one Negotiate challenge) (default: %(default)s)")
    p.add_argument("--introspect", default=None, metavar="URL",
                   help="the OIDC server's RFC 7662 introspection endpoint, for --auth bearer "
                        "(e.g. http://127.0.0.1:PORT/token/introspection)")
    p.add_argument("--introspect-client-id", default="graph-fake",
                   help="resource-server client that calls --introspect (default: %(default)s)")
    p.add_argument("--introspect-client-secret", default="graph-fake-secret",
                   help="its secret (default: %(default)s)")
    p.add_argument("--audience", action="append", default=[], metavar="AUD",
                   help="audience (aud) a Bearer token must have, e.g. https://outlook.office365.com or "
                        "an on-premises https://mail.contoso.test; repeatable: any of them (required for bearer)")
    p.add_argument("--authorization-uri", default="https://login.microsoftonline.com/common/oauth2/authorize",
                   help="authorization_uri of the Bearer challenge (default: %(default)s)")
    p.add_argument("--keytab", default=None, metavar="PATH",
                   help="keytab of the HTTP/host service principal, for --auth kerberos "
                        "(default: $KRB5_KTNAME)")
    p.add_argument("--path-auth", action="append", default=[], metavar="PATH=LIST",
                   help="schemes offered and accepted at PATH instead of --auth, like IIS authentication "
                        "per virtual directory, e.g. /EWS/Exchange.asmx=ntlm (repeatable)")
    p.add_argument("--product", choices=sorted(PRODUCTS), default="exchange2019",
                   help="Exchange version answered as: its ServerVersionInfo and the RequestServerVersion values "
                        "it accepts (default: %(default)s)")
    p.add_argument("--realm", default=None, help="Basic realm (default: host name of the Host header)")
    p.add_argument("--ews-url", default="https://mail.contoso.test:{port}/EWS/Exchange.asmx",
                   help="EwsUrl announced by Autodiscover ({port} = HTTPS port) (default: %(default)s)")
    p.add_argument("--exch-ews-url", default=None, help="EwsUrl in the EXCH (internal) section (default: --ews-url)")
    p.add_argument("--expr-ews-url", default=None, help="EwsUrl in the EXPR (external) section (default: --ews-url)")
    p.add_argument("--redirect-addr", action="append", default=[], metavar="FROM=TO",
                   help="Autodiscover answers redirectAddr TO for address FROM (repeatable)")
    p.add_argument("--redirect-url", action="append", default=[], metavar="ADDR=URL",
                   help="Autodiscover answers redirectUrl URL for address ADDR (repeatable)")
    p.add_argument("--unknown-address-code", type=int, default=600,
                   help="Autodiscover ErrorCode for unknown addresses (default 600; MS-OXDSCLI documents 500)")
    p.add_argument("--http-redirect-location",
                   default="https://autodiscover.contoso.test:{port}/autodiscover/autodiscover.xml",
                   help="Location of the plain-HTTP 302 ({port} = HTTPS port) (default: %(default)s)")
    p.add_argument("--channel-binding", choices=("none", "allow", "require"), default="allow",
                   help="NTLM Extended Protection (tls-server-end-point CBT): none = ignore, allow = check if the "
                        "client sent one (IIS 'Allow'), require = reject clients without it (default: %(default)s)")
    p.add_argument("--ntlmv2-only", action="store_true", help="reject NTLMv1/NTLM2-session responses")
    p.add_argument("--no-ntlm-persist", dest="ntlm_persist", action="store_false",
                   help="do not treat later requests on an NTLM-authenticated connection as authenticated (IIS does)")
    p.add_argument("--ntlm-domain", default=None, help="NetBIOS domain announced in the NTLM challenge (default: from users)")
    p.add_argument("--ntlm-dns-domain", default=None, help="DNS domain announced in the NTLM challenge (default: from users)")
    p.add_argument("--server-name", default="MAIL01", help="NetBIOS name of the fake server (default: %(default)s)")
    p.add_argument("--tls-max", choices=("1.2", "1.3"), default="1.3")
    p.add_argument("--idle-timeout", type=float, default=120.0, help="keep-alive idle timeout, seconds (IIS: 120)")
    return p.parse_args(argv)


def load_users(path):
    with open(path, encoding="utf-8") as fd:
        raw = json.load(fd)
    users = {}
    for email, spec in raw.items():
        if "password" not in spec:
            raise SystemExit("user %s has no password" % email)
        users[email.lower()] = User(email, spec)
    return users


def kerberos_credentials(keytab):
    """The acceptor's credentials: every key in the keytab, so the ticket's service principal
    (HTTP/mail.contoso.test@REALM) picks the key, as IIS does with the machine or service
    account's keys."""
    try:
        import gssapi
    except ImportError:
        raise SystemExit("--auth kerberos needs python-gssapi: pip install -r requirements.txt")
    if keytab is None and not os.environ.get("KRB5_KTNAME"):
        raise SystemExit("--auth kerberos needs --keytab PATH (or KRB5_KTNAME)")
    # The replay cache lives with this server's other files, not in the machine's /var/tmp.
    os.environ["KRB5RCACHEDIR"] = STATE.ntlm_dir
    store = {"keytab": keytab} if keytab else None
    try:
        return gssapi.Credentials(usage="accept", store=store)
    except gssapi.exceptions.GSSError as e:
        raise SystemExit("cannot read the keytab %s: %s" % (keytab or os.environ["KRB5_KTNAME"], e))


def main(argv=None):
    global STATE, SERVER_VERSION, ACCEPTED_VERSIONS
    args = parse_args(argv if argv is not None else sys.argv[1:])
    SERVER_VERSION, ACCEPTED_VERSIONS = PRODUCTS[args.product]
    def schemes(text, flag):
        out = [a.strip().lower() for a in text.split(",") if a.strip()]
        for a in out:
            if a not in AUTH_SCHEMES:
                raise SystemExit("%s: unknown scheme %r" % (flag, a))
        return out

    args.auth = schemes(args.auth, "--auth")
    path_auth = {}
    for item in args.path_auth:
        path, sep, text = item.partition("=")
        if not sep or not path.startswith("/"):
            raise SystemExit("--path-auth expects /PATH=LIST, got %r" % item)
        path_auth[path.lower()] = schemes(text, "--path-auth")
    args.path_auth = path_auth
    if "bearer" in args.auth or any("bearer" in v for v in args.path_auth.values()):
        if not args.introspect:
            raise SystemExit("--auth bearer needs --introspect URL (the OIDC server's introspection endpoint)")
        if not args.audience:
            raise SystemExit("--auth bearer needs --audience AUD (e.g. https://outlook.office365.com)")
        if not loopback_url(args.introspect):
            raise SystemExit("--introspect must be an http(s) URL on a loopback address, got %r" % args.introspect)
    args.audience_given = list(args.audience)
    args.audience = {normal_audience(a) for a in args.audience}
    users = load_users(args.users)
    if not args.ntlm_domain:
        args.ntlm_domain = next((u.nb_domain for u in users.values() if u.nb_domain), "CONTOSO").upper()
    if not args.ntlm_dns_domain:
        args.ntlm_dns_domain = next((u.dns_domain for u in users.values() if u.dns_domain), "contoso.test")

    if not ipaddress.ip_address(args.host).is_loopback or ipaddress.ip_address(args.host).version != 4:
        raise SystemExit("--host must be an IPv4 loopback address (127.0.0.0/8)")
    STATE = State(args, users)
    STATE.krb_creds = None
    if "kerberos" in args.auth or any("kerberos" in v for v in args.path_auth.values()):
        STATE.krb_creds = kerberos_credentials(args.keytab)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3 if args.tls_max == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["http/1.1"])

    def sni_cb(sslsock, name, _ctx):
        try:
            sslsock.fake_sni = name
        except Exception:
            pass
        return None

    ctx.sni_callback = sni_cb
    STATE.channel_bindings = tls_server_end_point(args.cert)

    https = Server((args.host, args.port), EwsHandler, ctx)
    port = https.server_address[1]
    args.https_port = port
    fmt = lambda s: s.replace("{port}", str(port))
    args.ews_url = fmt(args.ews_url)
    args.exch_ews_url = fmt(args.exch_ews_url) if args.exch_ews_url else args.ews_url
    args.expr_ews_url = fmt(args.expr_ews_url) if args.expr_ews_url else args.ews_url
    args.http_redirect_location = fmt(args.http_redirect_location)

    def pairs(items, flag):
        out = {}
        for it in items:
            if "=" not in it:
                raise SystemExit("%s expects FROM=TO, got %r" % (flag, it))
            k, v = it.split("=", 1)
            out[k.strip().lower()] = fmt(v.strip())
        return out

    args.redirect_addr = pairs(args.redirect_addr, "--redirect-addr")
    args.redirect_url = pairs(args.redirect_url, "--redirect-url")

    servers = [https]
    ready = "READY https://%s:%d" % (args.host, port)
    if args.http_port is not None:
        http = Server((args.host, args.http_port), RedirectHandler, None)
        servers.append(http)
        ready += " http://%s:%d" % (args.host, http.server_address[1])

    stop = threading.Event()

    def on_signal(signum, _frame):
        log("signal %d: shutting down" % signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True) for s in servers]
    for t in threads:
        t.start()
    sys.stdout.write(ready + "\n")
    sys.stdout.flush()
    log("%s auth=%s cb=%s ews_url=%s users=%s ntlm_domain=%s/%s%s" % (
        ready, ",".join(args.auth), args.channel_binding, args.ews_url, ",".join(users), args.ntlm_domain,
        args.ntlm_dns_domain,
        " introspect=%s audience=%s" % (args.introspect, ",".join(args.audience_given)) if args.introspect else ""))
    try:
        stop.wait()
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()
        STATE.cleanup()
        log("stopped")
    sys.stdout.flush()
    sys.stderr.flush()
    # Do not wait for keep-alive connection threads blocked in reads.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
