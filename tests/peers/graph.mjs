#!/usr/bin/env node
// TEST PEER — a fake of Microsoft Graph v1.0 for mslink's end-to-end tests.
// Serves GET /v1.0/me, /v1.0/me/mailFolders/inbox and /v1.0/me/calendar in the
// shapes the real service uses, and validates bearer tokens against the test
// OP (oidc.mjs) through its RFC 7662 introspection endpoint.
// NEVER deploy this: /test/* are unauthenticated test controls.
//
// Prints exactly one line on stdout, `READY http://127.0.0.1:PORT`, once it
// accepts connections; everything else goes to stderr. See README.md.

import http from 'node:http';
import { createHash, randomUUID } from 'node:crypto';

import {
  stdoutOnlyForReady, announceReady, parseFlags, assertLoopbackHost, baseUrlOf,
  readBody, log, onTerminate, fail,
} from './lib/cli.mjs';

stdoutOnlyForReady();

const USAGE = `usage: node graph.mjs --introspect URL [flags]
  --port N                        listen port, 0 = any free port (default 0)
  --host ADDR                     loopback address to bind (default 127.0.0.1)
  --introspect URL                the OP's introspection endpoint (required)  [env GRAPH_INTROSPECT_URL]
  --introspect-client-id ID       client used to call it (default graph-fake)
  --introspect-client-secret S    (default graph-fake-secret)
  --authorization-uri URI         authorization_uri in WWW-Authenticate (default: <introspect origin>/auth)
  --no-check-scopes               do not require User.Read / Mail.Read / Calendars.Read
  --inbox-total N                 default inbox totalItemCount (default 10)
  --inbox-unread N                default inbox unreadItemCount (default 3)
  --exit-with-stdin               exit when stdin reaches EOF (parent died)`;

const flags = parseFlags(process.argv.slice(2), {
  port: { type: 'int', default: 0 },
  host: { type: 'string', default: '127.0.0.1' },
  introspect: { type: 'string', env: 'GRAPH_INTROSPECT_URL' },
  'introspect-client-id': { type: 'string', default: 'graph-fake', env: 'GRAPH_INTROSPECT_CLIENT_ID' },
  'introspect-client-secret': { type: 'string', default: 'graph-fake-secret', env: 'GRAPH_INTROSPECT_CLIENT_SECRET' },
  'authorization-uri': { type: 'string' },
  'check-scopes': { type: 'bool', default: true },
  'inbox-total': { type: 'int', default: 10 },
  'inbox-unread': { type: 'int', default: 3 },
  'exit-with-stdin': { type: 'bool', default: false },
}, USAGE);

assertLoopbackHost(flags.host, '--host');
if (!flags.introspect) fail(`--introspect URL is required\n${USAGE}`);
const introspectUrl = new URL(flags.introspect);
assertLoopbackHost(introspectUrl.hostname, '--introspect');
const authorizationUri = flags['authorization-uri'] ?? `${introspectUrl.origin}/auth`;
const GRAPH_APP_ID = '00000003-0000-0000-c000-000000000000'; // Microsoft Graph's well-known app id
const TENANT = guidFrom('tenant:contoso.test'); // fixed fake tenant id

// ---- test-controlled state -----------------------------------------------------

// cae_event: a continuous access evaluation event (Entra re-evaluated a policy, e.g. the
// network location) at the moment the mode is set: access tokens issued before it are refused
// with a claims challenge whose nbf is the event's time; tokens issued since pass. The grant
// itself stays valid, so a refresh carrying the claims gets a token that works.
// mailbox_not_enabled: the account has no Exchange Online mailbox (on-premises in a hybrid
// organisation, whose `mail` attribute is synced from the on-premises directory): /me answers,
// the mailbox paths answer MailboxNotEnabledForRESTAPI.
// no_mailbox: the same, for an account with no `mail` attribute at all (a cloud-only or
// unlicensed account): Graph's /me then has `"mail": null`.
const MODES = ['ok', 'throttle', 'error500', 'error503', 'down', 'mailbox_not_enabled', 'no_mailbox', 'cae_event'];
let mode = { mode: 'ok', retryAfter: '2', remaining: null };
const mailboxes = new Map(); // lower-cased user -> { total, unread }
const requestLog = []; // last 200 Graph requests
let requestCount = 0;
const seen = new Map(); // access token -> { sub, exp } (remember exp to tell "expired" from "revoked")

// ---- helpers -------------------------------------------------------------------

const nowSec = () => Math.floor(Date.now() / 1000);
const graphDate = () => new Date().toISOString().replace(/\.\d{3}Z$/, '');

function guidFrom(text) {
  const h = createHash('sha256').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function exchangeIdFrom(text) {
  // Shaped like Exchange ids ("AAMkA..."), deterministic per input.
  return `AAMkA${createHash('sha256').update(text).digest('base64url').slice(0, 43)}AAA=`;
}

function displayNameOf(login) {
  const local = String(login).split('@')[0];
  return local.split(/[._-]+/).filter(Boolean).map((p) => p[0].toUpperCase() + p.slice(1)).join(' ') || login;
}

function send(res, status, body, { requestId, clientRequestId, headers = {} } = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8',
    'odata-version': '4.0',
    'cache-control': 'no-cache',
    'request-id': requestId,
    'client-request-id': clientRequestId,
    'x-ms-ags-diagnostic': JSON.stringify({ ServerInfo: { DataCenter: 'Loopback', Slice: 'E', Ring: '0', ScaleUnit: '000', RoleInstance: 'TESTPEER' } }),
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function graphError(code, message, ids) {
  return {
    error: {
      code,
      message,
      innerError: { date: graphDate(), 'request-id': ids.requestId, 'client-request-id': ids.clientRequestId },
    },
  };
}

function wwwAuthenticate(extra = '') {
  return `Bearer realm="", authorization_uri="${authorizationUri}", client_id="${GRAPH_APP_ID}"${extra}`;
}

function unauthorized(res, ids, message, extra = '') {
  return send(res, 401, graphError('InvalidAuthenticationToken', message, ids), {
    ...ids, headers: { 'www-authenticate': wwwAuthenticate(extra) },
  });
}

function applySelect(obj, url) {
  const select = url.searchParams.get('$select');
  if (!select) return obj;
  const want = new Set(select.split(',').map((s) => s.trim().toLowerCase()));
  return Object.fromEntries(Object.entries(obj).filter(([k]) => k.startsWith('@odata.') || want.has(k.toLowerCase())));
}

// ---- token validation ------------------------------------------------------------

async function introspect(token) {
  const basic = Buffer.from(`${encodeURIComponent(flags['introspect-client-id'])}:${encodeURIComponent(flags['introspect-client-secret'])}`).toString('base64');
  const r = await fetch(introspectUrl, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
    signal: AbortSignal.timeout(5000),
  });
  if (!r.ok) throw new Error(`introspection answered HTTP ${r.status}: ${await r.text()}`);
  return r.json();
}

// Returns { sub, scopes } or writes the 401 itself and returns null.
async function authenticate(req, res, ids) {
  const header = req.headers.authorization ?? '';
  const m = header.match(/^Bearer\s+(\S+)\s*$/i);
  if (!m) return unauthorized(res, ids, 'Access token is empty.'), null;
  const token = m[1];
  const known = seen.get(token);
  if (known && known.exp <= nowSec()) {
    return unauthorized(res, ids, 'Lifetime validation failed, the token is expired.'), null;
  }
  const info = await introspect(token);
  if (!info.active) {
    if (known && known.exp <= nowSec() + 1) {
      return unauthorized(res, ids, 'Lifetime validation failed, the token is expired.'), null;
    }
    if (known) {
      // Still within its lifetime but no longer active: the grant was revoked.
      // Answer as Graph does for a revoked session (continuous access
      // evaluation): a claims challenge (vectors/graph/...cae...txt).
      const claims = Buffer.from(JSON.stringify({ access_token: { nbf: { essential: true, value: String(nowSec()) } } })).toString('base64');
      return unauthorized(res, ids,
        'Continuous access evaluation resulted in claims challenge with result: InteractionRequired and code: TokenIssuedBeforeRevocationTimestamp',
        `, error="insufficient_claims", claims="${claims}"`), null;
    }
    return unauthorized(res, ids, 'Access token validation failure.'), null;
  }
  if (mode.mode === 'cae_event' && (info.iat ?? 0) < mode.at) {
    const claims = Buffer.from(JSON.stringify({ access_token: { nbf: { essential: true, value: String(mode.at) } } })).toString('base64');
    return unauthorized(res, ids,
      'Continuous access evaluation resulted in claims challenge with result: InteractionRequired and code: TokenIssuedBeforeRevocationTimestamp',
      `, error="insufficient_claims", claims="${claims}"`), null;
  }
  seen.set(token, { sub: info.sub, exp: info.exp });
  if (seen.size > 10000) seen.delete(seen.keys().next().value);
  return { sub: info.sub, scopes: new Set(String(info.scope ?? '').split(' ').filter(Boolean)) };
}

function hasScope(scopes, names) {
  if (!flags['check-scopes']) return true;
  if (scopes.has('https://graph.microsoft.com/.default')) return true;
  return names.some((n) => scopes.has(n) || scopes.has(`https://graph.microsoft.com/${n}`));
}

// ---- Graph resources ---------------------------------------------------------------

function userOf(sub, base) {
  const id = guidFrom(`user:${sub}`);
  const name = displayNameOf(sub);
  const [given, ...rest] = name.split(' ');
  return {
    '@odata.context': `${base}/v1.0/$metadata#users/$entity`,
    businessPhones: [],
    displayName: name,
    givenName: given,
    jobTitle: null,
    mail: mode.mode === 'no_mailbox' ? null : sub,
    mobilePhone: null,
    officeLocation: null,
    preferredLanguage: 'en-US',
    surname: rest.join(' ') || null,
    userPrincipalName: sub,
    id,
  };
}

function inboxOf(sub, base) {
  const userId = guidFrom(`user:${sub}`);
  const counts = mailboxes.get(sub.toLowerCase()) ?? { total: flags['inbox-total'], unread: flags['inbox-unread'] };
  return {
    '@odata.context': `${base}/v1.0/$metadata#users('${userId}')/mailFolders/$entity`,
    id: exchangeIdFrom(`inbox:${sub}`),
    displayName: 'Inbox',
    parentFolderId: exchangeIdFrom(`root:${sub}`),
    childFolderCount: 0,
    unreadItemCount: counts.unread,
    totalItemCount: counts.total,
    sizeInBytes: counts.total * 24576,
    isHidden: false,
  };
}

function calendarOf(sub, base) {
  const userId = guidFrom(`user:${sub}`);
  const calId = exchangeIdFrom(`calendar:${sub}`);
  return {
    '@odata.context': `${base}/v1.0/$metadata#me/calendars/$entity`,
    '@odata.id': `${base}/v1.0/users('${userId}@${TENANT}')/calendars('${calId}')`,
    id: calId,
    name: 'Calendar',
    color: 'auto',
    hexColor: '',
    isDefaultCalendar: true,
    changeKey: createHash('sha256').update(`ck:${sub}`).digest('base64').slice(0, 28),
    canShare: true,
    canViewPrivateItems: true,
    canEdit: true,
    allowedOnlineMeetingProviders: ['teamsForBusiness'],
    defaultOnlineMeetingProvider: 'teamsForBusiness',
    isTallyingResponses: true,
    isRemovable: false,
    owner: { name: displayNameOf(sub), address: sub },
  };
}

const ROUTES = new Map([
  ['/v1.0/me', { scopes: ['User.Read', 'User.ReadWrite', 'User.ReadBasic.All', 'User.Read.All'], mailbox: false, build: userOf,
    denied: ['Authorization_RequestDenied', 'Insufficient privileges to complete the operation.'] }],
  ['/v1.0/me/mailfolders/inbox', { scopes: ['Mail.Read', 'Mail.ReadWrite', 'Mail.ReadBasic'], mailbox: true, build: inboxOf,
    denied: ['ErrorAccessDenied', 'Access is denied. Check credentials and try again.'] }],
  ['/v1.0/me/calendar', { scopes: ['Calendars.Read', 'Calendars.ReadWrite', 'Calendars.ReadBasic'], mailbox: true, build: calendarOf,
    denied: ['ErrorAccessDenied', 'Access is denied. Check credentials and try again.'] }],
]);

// ---- request handling ----------------------------------------------------------------

// Returns true if the current test mode answered (or dropped) the request.
function applyMode(req, res, ids, route) {
  if (mode.mode === 'ok') return false;
  if (['mailbox_not_enabled', 'no_mailbox'].includes(mode.mode) && !route?.mailbox) return false;
  const { mode: m, retryAfter } = mode;
  if (mode.remaining !== null) {
    mode.remaining -= 1;
    if (mode.remaining <= 0) {
      log('graph', `mode ${m} used up, back to ok`);
      mode = { mode: 'ok', retryAfter: '2', remaining: null };
    }
  }
  return applyOnce(m, retryAfter, req, res, ids);
}

function applyOnce(m, retryAfter, req, res, ids) {
  switch (m) {
    case 'throttle':
      // Shape of vectors/graph/graph_429_throttled.http
      return send(res, 429, {
        error: {
          code: 'TooManyRequests',
          innerError: {
            code: '429', date: graphDate(), message: 'Please retry after',
            'request-id': ids.requestId, status: '429',
          },
          message: 'Please retry again later.',
        },
      }, { ...ids, headers: { 'retry-after': retryAfter } }), true;
    case 'error500':
      return send(res, 500, graphError('generalException', 'General exception while processing.', ids), ids), true;
    case 'error503':
      return send(res, 503, graphError('serviceNotAvailable', 'Service unavailable. Please try again later.', ids),
        { ...ids, headers: { 'retry-after': retryAfter } }), true;
    case 'mailbox_not_enabled':
    case 'no_mailbox':
      return send(res, 404, { error: { code: 'MailboxNotEnabledForRESTAPI', message: 'The mailbox is either inactive, soft-deleted, or is hosted on-premise.' } }, ids), true;
    case 'down':
      // The service is unreachable: drop the connection without an answer.
      req.socket.destroy();
      return true;
    default:
      return false;
  }
}

async function handleGraph(req, res, url, base) {
  requestCount += 1;
  const ids = {
    requestId: randomUUID(),
    clientRequestId: /^[\w-]{1,64}$/.test(req.headers['client-request-id'] ?? '') ? req.headers['client-request-id'] : randomUUID(),
  };
  const path = url.pathname.replace(/\/+$/, '').toLowerCase();
  const route = ROUTES.get(path);
  const entry = { at: new Date().toISOString(), method: req.method, path: url.pathname, status: 0, user: null, mode: mode.mode };
  requestLog.push(entry);
  if (requestLog.length > 200) requestLog.shift();
  res.on('finish', () => { entry.status = res.statusCode; });
  res.on('close', () => { if (!entry.status) entry.status = res.writableFinished ? res.statusCode : 'dropped'; });

  if (applyMode(req, res, ids, route)) return;

  if (!route) {
    const seg = url.pathname.split('/').filter(Boolean).pop() ?? '';
    return send(res, 400, graphError('BadRequest', `Resource not found for the segment '${seg}'.`, ids), ids);
  }
  if (req.method !== 'GET') {
    return send(res, 405, graphError('Request_BadRequest', 'Specified HTTP method is not allowed for the request target.', ids), ids);
  }
  const who = await authenticate(req, res, ids);
  if (!who) return;
  entry.user = who.sub;
  if (!hasScope(who.scopes, route.scopes)) {
    return send(res, 403, graphError(route.denied[0], route.denied[1], ids), ids);
  }
  return send(res, 200, applySelect(route.build(who.sub, base), url), ids);
}

async function handleTest(req, res, url) {
  const json = (status, body) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const body = async () => {
    const raw = await readBody(req);
    if (!raw) return {};
    return JSON.parse(raw);
  };
  try {
    if (url.pathname === '/test/health') return json(200, { ok: true });
    if (url.pathname === '/test/state' && req.method === 'GET') {
      return json(200, {
        mode: mode.mode, retryAfter: mode.retryAfter, remaining: mode.remaining,
        mailboxes: Object.fromEntries(mailboxes), requestCount, requests: requestLog,
      });
    }
    if (req.method !== 'POST') return json(405, { error: 'POST expected' });
    if (url.pathname === '/test/mode') {
      const b = await body();
      if (!MODES.includes(b.mode)) return json(400, { error: `mode must be one of ${MODES.join(', ')}` });
      mode = {
        mode: b.mode,
        retryAfter: b.retryAfter !== undefined ? String(b.retryAfter) : '2',
        remaining: Number.isInteger(b.count) && b.count > 0 ? b.count : null,
        at: nowSec(),
      };
      log('graph', 'TEST mode', mode);
      return json(200, mode);
    }
    if (url.pathname === '/test/mailbox') {
      const b = await body();
      if (typeof b.user !== 'string' || !Number.isInteger(b.total) || !Number.isInteger(b.unread)
          || b.total < 0 || b.unread < 0 || b.unread > b.total) {
        return json(400, { error: 'expected {"user": string, "total": int >= 0, "unread": int 0..total}' });
      }
      mailboxes.set(b.user.toLowerCase(), { total: b.total, unread: b.unread });
      log('graph', 'TEST mailbox', b);
      return json(200, { user: b.user, total: b.total, unread: b.unread });
    }
    if (url.pathname === '/test/reset') {
      mode = { mode: 'ok', retryAfter: '2', remaining: null };
      mailboxes.clear();
      requestLog.length = 0;
      requestCount = 0;
      return json(200, { ok: true });
    }
    return json(404, { error: 'not_found' });
  } catch (err) {
    return json(400, { error: String(err.message) });
  }
}

let base;
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://placeholder');
  try {
    if (url.pathname.startsWith('/test/')) return await handleTest(req, res, url);
    if (url.pathname.toLowerCase().startsWith('/v1.0/')) return await handleGraph(req, res, url, base);
    res.writeHead(404, { 'content-type': 'text/plain' });
    return res.end('not found\n');
  } catch (err) {
    log('graph', `error handling ${req.method} ${url.pathname}: ${err.stack || err}`);
    if (res.headersSent) return res.destroy();
    const ids = { requestId: randomUUID(), clientRequestId: randomUUID() };
    // The token could not be checked (OP unreachable?): a server-side failure.
    return send(res, 503, graphError('serviceNotAvailable', 'Service unavailable. Please try again later.', ids), ids);
  }
});

server.listen(flags.port, flags.host, () => {
  base = baseUrlOf(server);
  log('graph', `serving ${base}/v1.0; introspecting at ${introspectUrl.href} as ${flags['introspect-client-id']}`);
  announceReady(base);
});
server.on('error', (err) => fail(`listen failed: ${err.message}`, 1));
onTerminate(server, 'graph', { exitWithStdin: flags['exit-with-stdin'] });
