#!/usr/bin/env node
// Self-test of the test peers themselves (not of mslink): starts oidc.mjs and
// graph.mjs on loopback, runs the auth-code + PKCE flow and the device flow
// through signin.mjs (real Chromium), and checks rotation, revocation,
// introspection and the fake Graph. Needs /usr/bin/chromium.
// Usage: node selftest.mjs     (prints "N passed, N failed"; exit 1 on failure)

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const children = [];
let passed = 0;
let failed = 0;

function check(name, cond, detail = '') {
  if (cond) {
    passed += 1;
    process.stdout.write(`ok   - ${name}\n`);
  } else {
    failed += 1;
    process.stdout.write(`FAIL - ${name} ${detail}\n`);
  }
}

function startPeer(script, args) {
  const child = spawn(process.execPath, [path.join(here, script), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`${script} not READY: ${err}`)), 15000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/^READY (\S+)\n/);
      if (m) { clearTimeout(t); resolve({ child, url: m[1], stdout: () => out, stderr: () => err }); }
    });
    child.on('exit', (code) => reject(new Error(`${script} exited ${code}: ${err}`)));
  });
}

function run(script, args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(here, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}

const form = (o) => new URLSearchParams(o);
async function post(url, body, headers = {}) {
  const r = await fetch(url, { method: 'POST', body, headers });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, json, text, headers: r.headers };
}
async function get(url, headers = {}) {
  const r = await fetch(url, { headers });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, json, text, headers: r.headers };
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  // Redirect target standing in for the daemon's loopback listener.
  const cb = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<html><body><h1>callback reached</h1></body></html>');
  });
  cb.listen(0, '127.0.0.1');
  await once(cb, 'listening');
  const cbPort = cb.address().port;

  const op = await startPeer('oidc.mjs', ['--port', '0', '--access-ttl', '2', '--device-interval', '1',
    '--confidential-client-secret', 's3cret', '--exit-with-stdin']);
  const disco = (await get(`${op.url}/.well-known/openid-configuration`)).json;
  check('discovery issuer is the bound address', disco.issuer === op.url, disco.issuer);
  check('stdout has only the READY line', op.stdout() === `READY ${op.url}\n`);
  const graph = await startPeer('graph.mjs', ['--port', '0', '--introspect', disco.introspection_endpoint, '--exit-with-stdin']);

  // ---- authorization code + PKCE through a real browser
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const redirectUri = `http://localhost:${cbPort}/callback`;
  const authUrl = `${disco.authorization_endpoint}?${form({
    client_id: 'mslink-test', response_type: 'code', redirect_uri: redirectUri,
    scope: 'openid offline_access profile email User.Read Mail.Read Calendars.Read',
    // OIDC Core §11: offline_access is granted only when consent is prompted for.
    prompt: 'consent',
    state: 'st-1', code_challenge: challenge, code_challenge_method: 'S256',
  })}`;
  const s1 = await run('signin.mjs', ['--url', authUrl, '--login', 'alice@contoso.test']);
  check('signin.mjs auth-code exits 0', s1.code === 0, s1.err);
  const finalUrl = new URL(s1.out.split('\n')[0].replace(/^FINAL_URL /, ''));
  check('redirect reached callback with code+state', finalUrl.port === String(cbPort)
    && finalUrl.searchParams.get('code') && finalUrl.searchParams.get('state') === 'st-1', finalUrl.href);
  check('page text printed', s1.out.includes('callback reached'));

  const noVerifier = await post(disco.token_endpoint, form({
    grant_type: 'authorization_code', client_id: 'mslink-test', code: finalUrl.searchParams.get('code'), redirect_uri: redirectUri,
  }));
  check('code exchange without code_verifier fails', noVerifier.status === 400, noVerifier.text);
  const t1 = await post(disco.token_endpoint, form({
    grant_type: 'authorization_code', client_id: 'mslink-test', code: finalUrl.searchParams.get('code'),
    redirect_uri: redirectUri, code_verifier: verifier,
  }));
  check('code exchange with PKCE', t1.status === 200 && t1.json.refresh_token && t1.json.access_token, t1.text);
  check('scope granted', t1.json?.scope === 'openid offline_access profile email User.Read Mail.Read Calendars.Read', t1.json?.scope);

  const ui = await get(disco.userinfo_endpoint, { authorization: `Bearer ${t1.json.access_token}` });
  check('userinfo email = login', ui.json?.email === 'alice@contoso.test' && ui.json?.preferred_username === 'alice@contoso.test', ui.text);

  const me = await get(`${graph.url}/v1.0/me`, { authorization: `Bearer ${t1.json.access_token}` });
  check('graph /me accepts fresh token, mail = login', me.status === 200 && me.json.mail === 'alice@contoso.test', me.text);

  const r1 = await post(disco.token_endpoint, form({ grant_type: 'refresh_token', client_id: 'mslink-test', refresh_token: t1.json.refresh_token }));
  check('refresh #1', r1.status === 200 && r1.json.refresh_token && r1.json.refresh_token !== t1.json.refresh_token, r1.text);
  const r2 = await post(disco.token_endpoint, form({ grant_type: 'refresh_token', client_id: 'mslink-test', refresh_token: r1.json.refresh_token }));
  check('refresh #2 (rotated again)', r2.status === 200 && r2.json.refresh_token !== r1.json.refresh_token, r2.text);
  const reuse = await post(disco.token_endpoint, form({ grant_type: 'refresh_token', client_id: 'mslink-test', refresh_token: t1.json.refresh_token }));
  check('old refresh token rejected with invalid_grant', reuse.status === 400 && reuse.json?.error === 'invalid_grant', reuse.text);

  await sleep(3000);
  const expired = await get(`${graph.url}/v1.0/me`, { authorization: `Bearer ${t1.json.access_token}` });
  check('graph rejects expired token with 401 InvalidAuthenticationToken',
    expired.status === 401 && expired.json?.error?.code === 'InvalidAuthenticationToken'
    && /^Bearer /.test(expired.headers.get('www-authenticate') ?? ''), expired.text);

  // ---- declined sign-in
  const s2 = await run('signin.mjs', ['--url', authUrl.replace('st-1', 'st-2'), '--decline']);
  const declined = new URL(s2.out.split('\n')[0].replace(/^FINAL_URL /, ''));
  check('declined sign-in redirects with error=access_denied', s2.code === 0 && declined.searchParams.get('error') === 'access_denied', s2.out + s2.err);

  // ---- offline_access without prompt=consent is dropped -> no refresh token (stock OIDC)
  const s3url = `${disco.authorization_endpoint}?${form({
    client_id: 'mslink-test', response_type: 'code', redirect_uri: redirectUri, scope: 'openid offline_access User.Read',
    state: 'st-3', code_challenge: challenge, code_challenge_method: 'S256',
  })}`;
  const s3 = await run('signin.mjs', ['--url', s3url, '--login', 'bob@contoso.test']);
  const code3 = new URL(s3.out.split('\n')[0].replace(/^FINAL_URL /, '')).searchParams.get('code');
  const t3 = await post(disco.token_endpoint, form({
    grant_type: 'authorization_code', client_id: 'mslink-test', code: code3, redirect_uri: redirectUri, code_verifier: verifier,
  }));
  check('offline_access without prompt=consent: access token, no refresh token, scope dropped',
    t3.status === 200 && !t3.json.refresh_token && !t3.json.scope.split(' ').includes('offline_access'), t3.text);

  // ---- device flow (confidential client, client_secret_post)
  const da = await post(disco.device_authorization_endpoint, form({
    client_id: 'mslink-test-confidential', client_secret: 's3cret', scope: 'openid offline_access User.Read Mail.Read',
  }));
  check('device authorization', da.status === 200 && da.json.user_code && da.json.interval === 1, da.text);
  const poll = () => post(disco.token_endpoint, form({
    grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: da.json.device_code,
    client_id: 'mslink-test-confidential', client_secret: 's3cret',
  }));
  const p1 = await poll();
  check('device poll: authorization_pending', p1.json?.error === 'authorization_pending', p1.text);
  const p2 = await poll();
  check('device poll too fast: slow_down', p2.json?.error === 'slow_down', p2.text);
  const s4 = await run('signin.mjs', ['--device', da.json.verification_uri, '--code', da.json.user_code, '--login', 'carol@contoso.test']);
  check('signin.mjs device mode exits 0', s4.code === 0 && s4.out.includes('Sign-in complete'), s4.out + s4.err);
  await sleep(6500); // slow_down raised the interval to 6 s
  const p3 = await poll();
  check('device poll: tokens', p3.status === 200 && p3.json.access_token && p3.json.refresh_token, p3.text);

  const inbox0 = await get(`${graph.url}/v1.0/me/mailFolders/inbox`, { authorization: `Bearer ${p3.json.access_token}` });
  check('graph inbox default counts', inbox0.json?.totalItemCount === 10 && inbox0.json?.unreadItemCount === 3, inbox0.text);
  await post(`${graph.url}/test/mailbox`, JSON.stringify({ user: 'carol@contoso.test', total: 7, unread: 2 }));
  const inbox1 = await get(`${graph.url}/v1.0/me/mailFolders/inbox`, { authorization: `Bearer ${p3.json.access_token}` });
  check('graph inbox counts settable', inbox1.json?.totalItemCount === 7 && inbox1.json?.unreadItemCount === 2, inbox1.text);
  await post(`${graph.url}/test/mode`, JSON.stringify({ mode: 'throttle', count: 1 }));
  const thr = await get(`${graph.url}/v1.0/me`, { authorization: `Bearer ${p3.json.access_token}` });
  check('graph throttle: 429 + Retry-After', thr.status === 429 && thr.headers.get('retry-after') === '2' && thr.json?.error?.code === 'TooManyRequests', thr.text);

  // ---- revocation through the test endpoint
  const rv = await post(`${op.url}/test/revoke?sub=${encodeURIComponent('carol@contoso.test')}`);
  check('/test/revoke', rv.status === 200 && rv.json.grants === 1, rv.text);
  const afterRevoke = await post(disco.token_endpoint, form({
    grant_type: 'refresh_token', refresh_token: p3.json.refresh_token, client_id: 'mslink-test-confidential', client_secret: 's3cret',
  }));
  check('refresh after revoke: invalid_grant', afterRevoke.json?.error === 'invalid_grant', afterRevoke.text);

  // ---- declined device sign-in
  const da2 = await post(disco.device_authorization_endpoint, form({ client_id: 'mslink-test', scope: 'openid offline_access' }));
  const s5 = await run('signin.mjs', ['--device', da2.json.verification_uri, '--code', da2.json.user_code, '--decline']);
  const p5 = await post(disco.token_endpoint, form({
    grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: da2.json.device_code, client_id: 'mslink-test',
  }));
  check('declined device sign-in: access_denied', s5.code === 0 && p5.json?.error === 'access_denied', p5.text + s5.err);

  cb.close();
}

try {
  await main();
} catch (err) {
  failed += 1;
  process.stdout.write(`FAIL - ${err.stack || err}\n`);
} finally {
  for (const c of children) c.kill('SIGTERM');
  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  process.exitCode = failed ? 1 : 0;
}
