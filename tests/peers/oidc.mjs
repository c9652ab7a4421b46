#!/usr/bin/env node
// TEST PEER — a real OAuth 2.0 / OpenID Connect authorization server
// (oidc-provider) standing in for the Microsoft identity platform in mslink's
// end-to-end tests. Loopback only, in-memory, any login name accepted.
// NEVER deploy this: it has a test-only admin endpoint (/test/*) with no auth.
//
// Prints exactly one line on stdout, `READY http://127.0.0.1:PORT`, once it
// accepts connections; everything else goes to stderr. See README.md.

import http from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import querystring from 'node:querystring';

import Provider from 'oidc-provider';

import {
  stdoutOnlyForReady, announceReady, parseFlags, assertLoopbackHost, baseUrlOf,
  readBody, sendJson, log, onTerminate, fail,
} from './lib/cli.mjs';
import MemoryAdapter, { entriesOf, keysOfGrant, deleteKey } from './lib/memory_adapter.mjs';
import * as pages from './lib/pages.mjs';

stdoutOnlyForReady();
// Start-up phases, timed on stderr: a start that now and then takes over a minute under load
// (seen in CI before `READY`, after oidc-provider's import) should say where it stood.
log('oidc', `start-up: imports done after ${Math.round(performance.now())} ms`);

const USAGE = `usage: node oidc.mjs [flags]
  --port N                          listen port, 0 = any free port (default 0)
  --host ADDR                       loopback address to bind (default 127.0.0.1)
  --client-id ID                    public client id (default mslink-test)     [env OIDC_CLIENT_ID]
  --redirect-uri URI                extra redirect URI for the clients, repeatable
                                    (always allowed: http://localhost/callback, http://127.0.0.1/callback,
                                     http://[::1]/callback, any port)
  --registered-redirect-uri URI     the clients' only redirect URIs, as an admin registered them
                                    (replaces the built-in list above), repeatable
  --confidential-client-id ID       (default mslink-test-confidential)        [env OIDC_CONFIDENTIAL_CLIENT_ID]
  --confidential-client-secret S    enables the confidential client           [env OIDC_CONFIDENTIAL_CLIENT_SECRET]
  --introspect-client-id ID         resource-server client for graph.mjs (default graph-fake)
  --introspect-client-secret S      (default graph-fake-secret)
  --access-ttl SECONDS              access token lifetime (default 60)
  --refresh-ttl SECONDS             refresh token lifetime (default 2592000 = 30 days)
  --code-ttl SECONDS                authorization code lifetime (default 300)
  --device-ttl SECONDS              device code lifetime (default 600)
  --device-interval SECONDS         device polling interval; faster polls get slow_down (default 5, 0 = no check)
  --extra-scope SCOPE               extra accepted scope, repeatable
  --no-rotate-refresh-token         disable refresh token rotation (default: rotate on every use)
  --exit-with-stdin                 exit when stdin reaches EOF (parent died)
Microsoft Entra ID's differences from stock oidc-provider (off by default):
  --entra-offline-access            grant offline_access (a refresh token) without prompt=consent
  --entra-select-account            accept prompt=select_account (as prompt=login)
  --entra-device-errors             device-code polls answer Entra's error names
                                    (authorization_declined, bad_verification_code)
  --entra-resource-scopes           accept Exchange Online's permissions as scopes
                                    (https://outlook.office.com/IMAP.AccessAsUser.All, POP.AccessAsUser.All,
                                     SMTP.Send, EWS.AccessAsUser.All, and
                                     https://outlook.office365.com/EWS.AccessAsUser.All) and give introspected
                                    tokens the audience (aud) of their scopes' resource, as Entra does
  --entra-resource-uris URI,URI...  these identifier URIs name one resource (its service principal's
                                    servicePrincipalNames, as hybrid modern authentication adds the
                                    on-premises Exchange hosts to Exchange Online's): consent to a
                                    permission under one is consent under each, and a token asked for
                                    under one has that URI as its audience; repeatable, one group each`;

const flags = parseFlags(process.argv.slice(2), {
  port: { type: 'int', default: 0 },
  host: { type: 'string', default: '127.0.0.1' },
  'client-id': { type: 'string', default: 'mslink-test', env: 'OIDC_CLIENT_ID' },
  'redirect-uri': { type: 'list', default: [] },
  'registered-redirect-uri': { type: 'list', default: [] },
  'confidential-client-id': { type: 'string', default: 'mslink-test-confidential', env: 'OIDC_CONFIDENTIAL_CLIENT_ID' },
  'confidential-client-secret': { type: 'string', default: undefined, env: 'OIDC_CONFIDENTIAL_CLIENT_SECRET' },
  'introspect-client-id': { type: 'string', default: 'graph-fake', env: 'OIDC_INTROSPECT_CLIENT_ID' },
  'introspect-client-secret': { type: 'string', default: 'graph-fake-secret', env: 'OIDC_INTROSPECT_CLIENT_SECRET' },
  'access-ttl': { type: 'int', default: 60 },
  'refresh-ttl': { type: 'int', default: 30 * 24 * 3600 },
  'code-ttl': { type: 'int', default: 300 },
  'device-ttl': { type: 'int', default: 600 },
  'device-interval': { type: 'int', default: 5 },
  'extra-scope': { type: 'list', default: [] },
  'rotate-refresh-token': { type: 'bool', default: true },
  'exit-with-stdin': { type: 'bool', default: false },
  'entra-offline-access': { type: 'bool', default: false },
  'entra-select-account': { type: 'bool', default: false },
  'entra-device-errors': { type: 'bool', default: false },
  'entra-resource-scopes': { type: 'bool', default: false },
  'entra-resource-uris': { type: 'list', default: [] },
}, USAGE);

assertLoopbackHost(flags.host, '--host');
if (flags['access-ttl'] < 1) fail('--access-ttl must be >= 1');

const GRAPH = 'https://graph.microsoft.com/';
const GRAPH_SCOPES = ['User.Read', 'Mail.Read', 'Calendars.Read'];
// Exchange Online's delegated permissions for IMAP, POP, SMTP AUTH and EWS
// (--entra-resource-scopes only): tokens for them have the audience OUTLOOK.
const OUTLOOK = 'https://outlook.office.com/';
// EWS's permission also under the EWS host's identifier URI, the form Microsoft's EWS article
// uses ("Authenticate an EWS application by using OAuth"); its tokens' aud is that host.
const OUTLOOK_SCOPES = ['IMAP.AccessAsUser.All', 'POP.AccessAsUser.All', 'SMTP.Send', 'EWS.AccessAsUser.All']
  .map((s) => OUTLOOK + s)
  .concat(['https://outlook.office365.com/EWS.AccessAsUser.All']);
const OIDC_SCOPES = new Set(['openid', 'offline_access', 'profile', 'email']);
const SCOPES = [
  ...OIDC_SCOPES,
  ...GRAPH_SCOPES,
  // Microsoft also accepts the fully qualified forms.
  ...GRAPH_SCOPES.map((s) => GRAPH + s),
  `${GRAPH}.default`,
  ...(flags['entra-resource-scopes'] ? OUTLOOK_SCOPES : []),
  ...flags['extra-scope'],
];

// --entra-resource-scopes: the audience Entra gives a v2 token, derived from
// its scopes: the resource (URI prefix) of the first one that is not an OpenID
// scope; a short name (User.Read) is Graph's.
// The resources a scope list names (a short name is Graph's; OpenID scopes name none).
function resourcesOf(scope) {
  const out = new Set();
  for (const s of String(scope ?? '').split(' ').filter(Boolean)) {
    if (OIDC_SCOPES.has(s)) continue;
    const m = s.match(/^(https:\/\/[^/]+)\//);
    out.add(m ? m[1] : GRAPH.replace(/\/$/, ''));
  }
  return out;
}

function audienceOf(scope) {
  for (const s of String(scope ?? '').split(' ').filter(Boolean)) {
    if (OIDC_SCOPES.has(s)) continue;
    const m = s.match(/^(https:\/\/[^/]+)\//);
    return m ? m[1] : GRAPH.replace(/\/$/, '');
  }
  return undefined;
}

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
// application_type "native": oidc-provider ignores the port when matching
// http redirect URIs on localhost / 127.0.0.1 / [::1] (RFC 8252 §7.3), and so
// does Entra for "Mobile and desktop applications"; the path must match.
const REDIRECT_URIS = flags['registered-redirect-uri'].length > 0
  ? flags['registered-redirect-uri']
  : [
    'http://localhost/callback',
    'http://127.0.0.1/callback',
    'http://[::1]/callback',
    ...flags['redirect-uri'],
  ];

const clients = [{
  client_id: flags['client-id'],
  client_name: 'mslink (test, public)',
  application_type: 'native',
  token_endpoint_auth_method: 'none',
  grant_types: ['authorization_code', 'refresh_token', DEVICE_GRANT],
  response_types: ['code'],
  redirect_uris: REDIRECT_URIS,
}];
if (flags['confidential-client-secret']) {
  clients.push({
    client_id: flags['confidential-client-id'],
    client_secret: flags['confidential-client-secret'],
    client_name: 'mslink (test, confidential)',
    application_type: 'native',
    // client_secret_post is accepted too (oidc-provider treats basic/post alike).
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token', DEVICE_GRANT],
    response_types: ['code'],
    redirect_uris: REDIRECT_URIS,
  });
}
// The fake Graph (graph.mjs) authenticates with this client to introspect.
clients.push({
  client_id: flags['introspect-client-id'],
  client_secret: flags['introspect-client-secret'],
  client_name: 'fake Microsoft Graph (resource server)',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: [],
  response_types: [],
  redirect_uris: [],
});

function displayNameOf(login) {
  const local = String(login).split('@')[0];
  return local.split(/[._-]+/).filter(Boolean).map((p) => p[0].toUpperCase() + p.slice(1)).join(' ') || login;
}

async function findAccount(ctx, id) {
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        email: id,
        email_verified: true,
        preferred_username: id,
        name: displayNameOf(id),
      };
    },
  };
}

// The key comes out as a JWK from the generation itself. Generating a KeyObject and then calling
// `privateKey.export({ format: 'jwk' })` deadlocks now and then on Node 20: the export holds the
// key's mutex while it allocates the JWK's strings, a garbage collection then runs the finished
// generation job's destructor, and that destructor takes the same mutex (seen with gdb: main
// thread in ~KeyGenJob under Heap::CollectGarbage under NewStringFromOneByte; about 1 start in
// 60 with 40 peers started at once, each stuck for good at 0 % CPU).
const { privateKey: privateJwk } = generateKeyPairSync('rsa', {
  modulusLength: 2048,
  publicKeyEncoding: { format: 'jwk' },
  privateKeyEncoding: { format: 'jwk' },
});
const signingJwk = { ...privateJwk, use: 'sig', alg: 'RS256', kid: 'test-rs256' };
log('oidc', `start-up: signing key made after ${Math.round(performance.now())} ms`);

const configuration = {
  adapter: MemoryAdapter,
  clients,
  findAccount,
  scopes: SCOPES,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  // Put scope-derived claims into the ID token too (as Microsoft does), not
  // only into /me (userinfo).
  conformIdTokenClaims: false,
  responseTypes: ['code'],
  pkce: { required: () => true }, // and only S256 is supported by oidc-provider 9
  jwks: { keys: [signingJwk] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false }, // their pages load a web font from a CDN
    deviceFlow: {
      enabled: true,
      userCodeInputSource: pages.userCodeInputSource,
      userCodeConfirmSource: pages.userCodeConfirmSource,
      successSource: pages.successSource,
    },
    revocation: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId
        || client.clientId === flags['introspect-client-id'],
    },
    introspection: {
      enabled: true,
      // Public clients may introspect their own tokens; the resource-server
      // client (graph.mjs) may introspect anything.
      allowedPolicy: async (ctx, client, token) => !(client.clientAuthMethod === 'none'
        && token.clientId !== ctx.oidc.client.clientId),
    },
    userinfo: { enabled: true },
    // No resource indicators: every access token is an opaque token whose
    // audience is this server (userinfo / introspection), like a test needs.
    resourceIndicators: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: pages.logoutSource,
      postLogoutSuccessSource: pages.postLogoutSuccessSource,
    },
  },
  renderError: pages.renderError,
  clientBasedCORS: () => false,
  // Refresh tokens whenever the granted scope has offline_access (stock
  // behaviour). oidc-provider grants offline_access in an authorization
  // request only with prompt=consent (OIDC Core §11); --entra-offline-access
  // lifts that, as Entra does.
  issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token')
    && code.scopes.has('offline_access'),
  rotateRefreshToken: flags['rotate-refresh-token'],
  ttl: {
    AccessToken: flags['access-ttl'],
    AuthorizationCode: flags['code-ttl'],
    DeviceCode: flags['device-ttl'],
    IdToken: 3600,
    RefreshToken: flags['refresh-ttl'],
    Grant: flags['refresh-ttl'] * 2,
    Interaction: 3600,
    Session: 24 * 3600,
    ClientCredentials: 600,
  },
};

// ---- test-only admin -------------------------------------------------------

// POST /test/revoke?sub=LOGIN — TEST ONLY. Revokes every grant of the subject
// (refresh tokens, access tokens, codes, device codes) and ends its sessions,
// so the next refresh answers invalid_grant and Graph answers 401.
function revokeSubject(sub) {
  let grants = 0;
  let tokens = 0;
  let sessions = 0;
  for (const [grantId, payload] of entriesOf('Grant')) {
    if (payload.accountId !== sub) continue;
    grants += 1;
    for (const key of keysOfGrant(grantId)) {
      deleteKey(key);
      tokens += 1;
    }
    deleteKey(`Grant:${grantId}`);
  }
  for (const [id, payload] of entriesOf('Session')) {
    if (payload.accountId !== sub) continue;
    deleteKey(`Session:${id}`);
    sessions += 1;
  }
  return { sub, grants, tokens, sessions };
}

async function handleTest(req, res, url) {
  if (url.pathname === '/test/health') return sendJson(res, 200, { ok: true });
  if (url.pathname === '/test/revoke') {
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'method_not_allowed' }, { allow: 'POST' });
    let sub = url.searchParams.get('sub');
    if (!sub) {
      const raw = await readBody(req);
      try {
        sub = (req.headers['content-type'] ?? '').includes('json') ? JSON.parse(raw).sub : querystring.parse(raw).sub;
      } catch { /* fall through */ }
    }
    if (!sub) return sendJson(res, 400, { error: 'invalid_request', error_description: 'sub is required' });
    const result = revokeSubject(String(sub));
    log('oidc', 'TEST revoke', result);
    return sendJson(res, 200, result);
  }
  if (url.pathname === '/test/token-requests') {
    return sendJson(res, 200, { requests: tokenRequests });
  }
  if (url.pathname === '/test/grants') {
    const sub = url.searchParams.get('sub');
    const grants = entriesOf('Grant')
      .filter(([, p]) => !sub || p.accountId === sub)
      .map(([id, p]) => ({
        grantId: id, accountId: p.accountId, clientId: p.clientId, scope: p.openid?.scope,
        tokens: keysOfGrant(id).map((k) => k.split(':')[0]),
      }));
    return sendJson(res, 200, { grants });
  }
  return sendJson(res, 404, { error: 'not_found' });
}

// ---- interactions (login + consent pages) ----------------------------------

function html(res, status, body) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

async function handleInteraction(provider, req, res, url) {
  const m = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/);
  if (!m) return html(res, 404, pages.page('error', 'Not found', '<p>Not found.</p>'));
  const action = m[2];
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    log('oidc', `interaction ${m[1]}: ${err.message}`);
    return html(res, 400, pages.page('error', 'Sign-in error', `<p id="error">${pages.esc(err.error_description || err.message)}</p>`,
      `\n<meta name="mslink-test-error" content="${pages.esc(err.error_description || err.message)}">`));
  }
  const { uid, prompt, params, session } = details;

  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') {
      return html(res, 200, pages.loginPage({
        uid, clientId: params.client_id, loginHint: params.login_hint, scope: params.scope,
      }));
    }
    if (prompt.name === 'consent') {
      const missing = details.prompt.details.missingOIDCScope ?? [];
      return html(res, 200, pages.consentPage({
        uid,
        clientId: params.client_id,
        accountId: session?.accountId,
        scopes: missing.filter((s) => s !== 'openid' && s !== 'offline_access'),
        offline: String(params.scope ?? '').split(' ').includes('offline_access'),
      }));
    }
    return html(res, 501, pages.page('error', 'Unsupported', `<p>prompt ${pages.esc(prompt.name)} not implemented</p>`));
  }

  if (req.method !== 'POST') return html(res, 405, pages.page('error', 'Method not allowed', ''));
  const form = querystring.parse(await readBody(req));

  if (action === 'abort') {
    log('oidc', `interaction ${uid}: user cancelled at ${prompt.name}`);
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }

  if (action === 'login') {
    if (prompt.name !== 'login') return html(res, 400, pages.page('error', 'Unexpected', '<p>not at login</p>'));
    const login = String(form.login ?? '').trim();
    if (!login) {
      return html(res, 200, pages.loginPage({
        uid, clientId: params.client_id, scope: params.scope, flash: 'Enter a login name.',
      }));
    }
    log('oidc', `interaction ${uid}: login as ${login}`);
    return provider.interactionFinished(req, res, {
      login: { accountId: login },
    }, { mergeWithLastSubmission: false });
  }

  if (action === 'confirm') {
    if (prompt.name !== 'consent') return html(res, 400, pages.page('error', 'Unexpected', '<p>not at consent</p>'));
    const { details: missing } = prompt;
    let grant;
    if (details.grantId) {
      grant = await provider.Grant.find(details.grantId);
    }
    if (!grant) {
      grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    }
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    if (missing.missingResourceScopes) {
      for (const [indicator, scope] of Object.entries(missing.missingResourceScopes)) {
        grant.addResourceScope(indicator, scope.join(' '));
      }
    }
    const grantId = await grant.save();
    log('oidc', `interaction ${uid}: consent by ${session.accountId} for ${params.client_id}: ${params.scope}`);
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  return html(res, 404, pages.page('error', 'Not found', ''));
}

// ---- request tweaks on top of oidc-provider ----------------------------------

// Always (RFC 8628 behaviour oidc-provider leaves to the deployment):
// (1) slow_down: polling the token endpoint for a device code faster than the
//     interval answers slow_down and raises that code's interval by 5 s.
// (2) The device authorization response gets `interval` and a Microsoft-like
//     `message`.
// Only in the named Entra modes (Microsoft's differences, off by default so
// that tests see what a standard OpenID provider does):
// --entra-offline-access: OIDC drops `offline_access` from an authorization
//     request without prompt=consent; Entra keeps it. The request gets the
//     consent prompt added, so the scope (and a refresh token) is kept.
// --entra-select-account: Entra accepts prompt=select_account; stock
//     oidc-provider rejects it as unsupported. Mapped to the nearest, login.
// --entra-device-errors: Entra's token endpoint names a declined device code
//     `authorization_declined` (RFC 8628: access_denied) and an unknown one
//     `bad_verification_code` (oidc-provider: invalid_grant).
// --entra-resource-scopes: Entra's refresh tokens are multi-resource and the
//     scope of a token request picks the access token's resource; stock
//     oidc-provider narrows a refresh to the scope asked for, which is the same
//     token, and its introspection has no `aud` for opaque tokens without
//     resource indicators. The answer gets the `aud` of the token's scopes.
const tokenRequests = []; // the last 100 token requests: { grant_type, claims }

// --entra-resource-uris: groups of identifier URIs of one resource, and the audience each access
// token issued under an alias was asked for (the last 1000).
const RESOURCE_GROUPS = flags['entra-resource-uris']
  .map((g) => g.split(',').map((u) => u.trim().replace(/\/$/, '')).filter(Boolean));
const aliasAudience = new Map();

// The refresh request's `scope` with each permission the grant holds under another URI of the
// same resource written as granted, and the URI it was asked under; null when nothing changes.
async function grantedAlias(provider, body) {
  const asked = audienceOf(body.scope);
  const group = RESOURCE_GROUPS.find((g) => g.includes(asked));
  if (!group || typeof body.refresh_token !== 'string') return null;
  const grant = await provider.RefreshToken.find(body.refresh_token).catch(() => undefined);
  const held = new Set(String(grant?.scope ?? '').split(' '));
  let changed = false;
  const scope = String(body.scope).split(' ').map((s) => {
    if (held.has(s) || !s.startsWith(`${asked}/`)) return s;
    const permission = s.slice(asked.length + 1);
    const other = group.find((uri) => held.has(`${uri}/${permission}`));
    if (!other) return s;
    changed = true;
    return `${other}/${permission}`;
  }).join(' ');
  return changed ? { scope, asked } : null;
}

// Answers Entra's AADSTS28000 and returns true when `scope` names more than one resource.
function refuseTwoResources(ctx, scope) {
  if (resourcesOf(scope).size <= 1) return false;
  log('oidc', `token request for two resources refused: ${scope}`);
  ctx.status = 400;
  ctx.set('cache-control', 'no-store');
  ctx.body = {
    error: 'invalid_scope',
    error_description: `AADSTS28000: Provided value for the input parameter scope is not valid because it contains more than one resource. Scope ${scope} is not valid.`,
    error_codes: [28000],
  };
  return true;
}

function installTweaks(provider) {
  const polls = new Map(); // device_code -> { last: ms, interval: s }

  provider.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === '/auth'
        && (flags['entra-offline-access'] || flags['entra-select-account'])) {
      const q = { ...ctx.query };
      const scopes = String(q.scope ?? '').split(' ');
      const prompts = new Set(String(q.prompt ?? '').split(' ').filter(Boolean));
      let changed = false;
      if (flags['entra-select-account'] && prompts.delete('select_account')) {
        prompts.add('login');
        changed = true;
      }
      if (flags['entra-offline-access'] && scopes.includes('offline_access')
          && !prompts.has('consent') && !prompts.has('none')) {
        prompts.add('consent');
        changed = true;
      }
      if (changed) {
        q.prompt = [...prompts].join(' ');
        ctx.querystring = querystring.stringify(q);
      }
    }

    // --entra-resource-scopes: Entra issues a token for one resource per request and refuses a
    // token or device-code request whose scopes name two (AADSTS28000; "The scopes must all be
    // from a single resource", Microsoft identity platform, OAuth 2.0 authorization code flow).
    // The authorization request may name several: that is consent, not a token.
    if (flags['entra-resource-scopes'] && ctx.method === 'POST' && ctx.path === '/device/auth'
        && ctx.is('application/x-www-form-urlencoded')) {
      const raw = await readBody(ctx.req);
      ctx.req.body = raw;
      if (refuseTwoResources(ctx, querystring.parse(raw).scope)) return;
    }

    let deviceGrant = false;
    let alias = null;
    let introspected = null;
    if (RESOURCE_GROUPS.length > 0 && ctx.method === 'POST' && ctx.path === '/token/introspection'
        && ctx.is('application/x-www-form-urlencoded')) {
      const raw = await readBody(ctx.req);
      ctx.req.body = raw;
      introspected = querystring.parse(raw).token;
    }
    if (ctx.method === 'POST' && ctx.path === '/token' && ctx.is('application/x-www-form-urlencoded')) {
      // Read the body here; oidc-provider then uses the pre-read body.
      const raw = await readBody(ctx.req);
      ctx.req.body = raw;
      const body = querystring.parse(raw);
      // Observation only: which grant, and the `claims` it carried, for /test/token-requests
      // (oidc-provider ignores a `claims` parameter on token requests; Entra reads it).
      tokenRequests.push({ grant_type: body.grant_type ?? null, claims: body.claims ?? null });
      if (tokenRequests.length > 100) tokenRequests.shift();
      if (flags['entra-resource-scopes'] && refuseTwoResources(ctx, body.scope)) return;
      if (body.grant_type === 'refresh_token' && RESOURCE_GROUPS.length > 0) {
        alias = await grantedAlias(provider, body);
        if (alias) {
          log('oidc', `refresh for ${alias.asked} granted under another URI of its resource`);
          ctx.req.body = querystring.stringify({ ...body, scope: alias.scope });
        }
      }
      deviceGrant = body.grant_type === DEVICE_GRANT;
      if (deviceGrant && flags['device-interval'] > 0 && typeof body.device_code === 'string') {
        const nowMs = Date.now();
        const p = polls.get(body.device_code);
        if (p && nowMs - p.last < p.interval * 1000) {
          p.interval += 5;
          p.last = nowMs;
          log('oidc', `device poll too fast -> slow_down (interval now ${p.interval}s)`);
          ctx.status = 400;
          ctx.set('cache-control', 'no-store');
          ctx.body = {
            error: 'slow_down',
            error_description: 'you are polling too quickly and should back off at a reasonable rate',
          };
          return;
        }
        polls.set(body.device_code, { last: nowMs, interval: p?.interval ?? flags['device-interval'] });
      }
    }

    await next();

    if (flags['entra-device-errors'] && deviceGrant && ctx.status === 400 && ctx.body?.error) {
      const entra = { access_denied: 'authorization_declined', invalid_grant: 'bad_verification_code' }[ctx.body.error];
      if (entra) ctx.body = { ...ctx.body, error: entra };
    }

    if (alias && ctx.status === 200 && typeof ctx.body?.access_token === 'string') {
      aliasAudience.set(ctx.body.access_token, alias.asked);
      if (aliasAudience.size > 1000) aliasAudience.delete(aliasAudience.keys().next().value);
    }

    if (flags['entra-resource-scopes'] && ctx.method === 'POST' && ctx.path === '/token/introspection'
        && ctx.status === 200 && ctx.body?.active) {
      const aud = aliasAudience.get(introspected) ?? audienceOf(ctx.body.scope);
      if (aud) ctx.body = { ...ctx.body, aud };
    }

    if (ctx.method === 'POST' && ctx.path === '/device/auth' && ctx.status === 200 && ctx.body?.device_code) {
      ctx.body.interval = flags['device-interval'] || 5;
      ctx.body.message = `To sign in, use a web browser to open the page ${ctx.body.verification_uri} and enter the code ${ctx.body.user_code} to authenticate.`;
    }
  });
}

// ---- server ------------------------------------------------------------------

let provider;
let providerCallback;

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://placeholder');
  try {
    if (!provider) return sendJson(res, 503, { error: 'temporarily_unavailable' });
    if (url.pathname.startsWith('/test/')) return await handleTest(req, res, url);
    if (url.pathname.startsWith('/interaction/')) return await handleInteraction(provider, req, res, url);
    return providerCallback(req, res);
  } catch (err) {
    log('oidc', `error handling ${req.method} ${url.pathname}: ${err.stack || err}`);
    if (!res.headersSent) sendJson(res, 500, { error: 'server_error', error_description: String(err.message) });
    else res.destroy();
  }
});

log('oidc', `start-up: listen requested after ${Math.round(performance.now())} ms`);
server.listen(flags.port, flags.host, () => {
  const issuer = baseUrlOf(server);
  log('oidc', `start-up: listening after ${Math.round(performance.now())} ms`);
  provider = new Provider(issuer, configuration);
  installTweaks(provider);
  for (const ev of ['server_error', 'grant.error', 'authorization.error', 'introspection.error',
    'revocation.error', 'userinfo.error', 'backchannel.error']) {
    provider.on(ev, (ctx, err) => log('oidc', `${ev}: ${err?.error ?? ''} ${err?.error_description ?? ''} ${err?.error_detail ?? err?.message ?? ''}`));
  }
  provider.on('grant.success', (ctx) => log('oidc', `grant.success ${ctx.oidc.params.grant_type} client=${ctx.oidc.client?.clientId}`));
  provider.on('refresh_token.consumed', () => log('oidc', 'refresh token rotated (old one consumed)'));
  providerCallback = provider.callback();
  log('oidc', `issuer ${issuer}; clients: ${clients.map((c) => c.client_id).join(', ')}; access-ttl ${flags['access-ttl']}s`);
  announceReady(issuer);
});
server.on('error', (err) => fail(`listen failed: ${err.message}`, 1));
onTerminate(server, 'oidc', { exitWithStdin: flags['exit-with-stdin'] });
