#!/usr/bin/env node
// TEST PEER — drives a real headless Chromium (Debian's /usr/bin/chromium,
// through playwright-core) through the test OP's sign-in pages, the way a
// person would: authorization-code mode (--url) or device mode (--device).
//
// stdout on success (exit 0):
//   FINAL_URL <url of the last page>
//   <visible text of that page, may span lines>
// (with --json: one JSON object {"ok":true,"url":...,"text":...,"page":...})
// Exit codes: 0 final page reached; 1 sign-in failed (OP error page, user
// code rejected, unexpected page, timeout); 2 bad usage; 3 the redirect
// target could not be loaded (nothing listening on the loopback redirect_uri).
//
// Only loopback addresses are ever contacted: anything else is aborted by a
// request filter, and Chromium is given a dead proxy for non-loopback hosts.

import { chromium } from 'playwright-core';

import { parseFlags, fail, isLoopbackHost, stdoutOnlyForReady } from './lib/cli.mjs';

const USAGE = `usage:
  node signin.mjs --url AUTHORIZATION_URL [--login NAME] [--decline] [flags]
  node signin.mjs --device VERIFICATION_URL --code USER_CODE [--login NAME] [--decline] [flags]
flags:
  --login NAME          login name to sign in with (default alice@contoso.test)
  --password PW         typed into the password field; the test OP ignores it (default "test")
  --decline             press Cancel on the consent page (auth-code mode: the redirect
                        then carries error=access_denied; device mode: the device poll
                        then gets access_denied)
  --timeout SECONDS     overall time limit (default 30)
  --chromium PATH       browser binary (default /usr/bin/chromium)   [env CHROMIUM_PATH]
  --screenshot FILE     save a PNG of the last page (also on failure)
  --json                print one JSON object instead of FINAL_URL + text`;

const flags = parseFlags(process.argv.slice(2), {
  url: { type: 'string' },
  device: { type: 'string' },
  code: { type: 'string' },
  login: { type: 'string', default: 'alice@contoso.test' },
  password: { type: 'string', default: 'test' },
  decline: { type: 'bool', default: false },
  timeout: { type: 'int', default: 30 },
  chromium: { type: 'string', default: '/usr/bin/chromium', env: 'CHROMIUM_PATH' },
  screenshot: { type: 'string' },
  json: { type: 'bool', default: false },
}, USAGE);

const stdoutWrite = process.stdout.write.bind(process.stdout);
stdoutOnlyForReady(); // console.* -> stderr; results are written explicitly

if (!!flags.url === !!flags.device) fail(`give exactly one of --url or --device\n${USAGE}`);
if (flags.device && !flags.code) fail('--device needs --code USER_CODE');
const startUrl = new URL(flags.url ?? flags.device);
if (!isLoopbackHost(startUrl.hostname)) fail(`refusing non-loopback URL ${startUrl.href}`);

// Auth-code mode: the redirect target is where the flow ends.
let redirectTarget;
if (flags.url) {
  const ru = startUrl.searchParams.get('redirect_uri');
  if (ru) {
    redirectTarget = new URL(ru);
    if (!isLoopbackHost(redirectTarget.hostname)) fail(`refusing non-loopback redirect_uri ${ru}`);
  }
}
const opOrigin = startUrl.origin;

const say = (msg) => process.stderr.write(`[signin] ${msg}\n`);

function isLoopbackUrl(u) {
  try {
    const p = new URL(u);
    if (['data:', 'about:', 'blob:', 'chrome-error:'].includes(p.protocol)) return true;
    return (p.protocol === 'http:' || p.protocol === 'https:' || p.protocol === 'ws:') && isLoopbackHost(p.hostname);
  } catch {
    return false;
  }
}

function atRedirectTarget(u) {
  let p;
  try { p = new URL(u); } catch { return false; }
  if (redirectTarget) {
    return p.protocol === redirectTarget.protocol && p.host === redirectTarget.host
      && p.pathname === redirectTarget.pathname;
  }
  // No redirect_uri in the request: anything that is not the OP is the end.
  return (p.protocol === 'http:' || p.protocol === 'https:') && p.origin !== opOrigin;
}

let browser;
let page;
let lastNavUrl;
let exiting = false;

async function finish(code, { message, kind } = {}) {
  if (exiting) return;
  exiting = true;
  let url = lastNavUrl;
  let text = '';
  try {
    if (page) {
      const cur = page.url();
      // After a failed navigation page.url() still names the previous page;
      // the URL that could not be loaded is the interesting one then.
      if (code !== 3 && cur && !cur.startsWith('chrome-error:')) url = cur;
      text = (await page.locator('body').innerText({ timeout: 2000 })).trim();
      if (flags.screenshot) await page.screenshot({ path: flags.screenshot, fullPage: true });
    }
  } catch { /* page may be gone */ }
  if (flags.json) {
    stdoutWrite(`${JSON.stringify({
      ok: code === 0, exitCode: code, url, page: kind ?? null, text, error: code === 0 ? null : (message ?? null),
    })}\n`);
  } else {
    stdoutWrite(`FINAL_URL ${url ?? ''}\n${text}\n`);
  }
  if (message) say(`${code === 0 ? '' : 'FAILED: '}${message}`);
  try { await browser?.close(); } catch { /* ignore */ }
  process.exit(code);
}

const deadline = setTimeout(() => {
  finish(1, { message: `timed out after ${flags.timeout}s (last URL ${lastNavUrl ?? 'none'})` });
}, flags.timeout * 1000);
deadline.unref();

async function pageKind() {
  return page.evaluate(() => ({
    kind: document.querySelector('meta[name="mslink-test-page"]')?.content ?? null,
    state: document.querySelector('meta[name="mslink-test-state"]')?.content ?? null,
    error: document.querySelector('meta[name="mslink-test-error"]')?.content ?? null,
  }));
}

// Click something that submits a form and wait for the resulting navigation
// (including the OP's 303 redirect chain) to load.
async function submitVia(selector) {
  const timeout = flags.timeout * 1000;
  await Promise.all([
    page.waitForNavigation({ waitUntil: 'load', timeout }),
    page.click(selector, { timeout }),
  ]);
}

async function main() {
  try {
    browser = await chromium.launch({
      executablePath: flags.chromium,
      headless: true,
      chromiumSandbox: false,
      timeout: flags.timeout * 1000,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync',
        '--disable-default-apps', '--disable-extensions', '--no-default-browser-check',
        '--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication',
        // Non-loopback hosts go to a proxy nobody serves (loopback bypasses
        // proxies implicitly), so nothing can leave this machine.
        '--proxy-server=http://127.0.0.1:9',
      ],
    });
  } catch (err) {
    return finish(1, { message: `could not launch ${flags.chromium}: ${err.message}` });
  }
  const context = await browser.newContext({ ignoreHTTPSErrors: false });
  await context.route('**/*', (route) => {
    const u = route.request().url();
    if (isLoopbackUrl(u)) return route.continue();
    say(`blocked non-loopback request ${u}`);
    return route.abort('blockedbyclient');
  });
  page = await context.newPage();
  page.on('request', (r) => {
    if (r.isNavigationRequest() && r.frame() === page.mainFrame()) lastNavUrl = r.url();
  });
  page.on('requestfailed', (r) => {
    if (r.isNavigationRequest()) say(`navigation failed: ${r.url()} (${r.failure()?.errorText})`);
  });

  try {
    await page.goto(startUrl.href, { waitUntil: 'load', timeout: flags.timeout * 1000 });
  } catch (err) {
    return navFailure(err);
  }

  let sawConsent = false;
  let codeSubmitted = false;
  for (let step = 0; step < 25; step += 1) {
    const url = page.url();
    if (flags.url && atRedirectTarget(url)) {
      if (flags.decline && !sawConsent) {
        return finish(1, { message: 'reached the redirect target without a consent page to decline' });
      }
      return finish(0, { kind: 'redirect', message: `reached redirect target ${url}` });
    }
    const { kind, state, error } = await pageKind();
    say(`step ${step}: ${kind ?? 'unknown page'} ${url}`);
    try {
      switch (kind) {
        case 'login':
          await page.fill('#login', flags.login);
          await page.fill('#password', flags.password);
          await submitVia('#submit');
          break;
        case 'consent':
          sawConsent = true;
          await submitVia(flags.decline ? '#cancel' : '#approve');
          break;
        case 'device-input':
          if (state === 'aborted' && flags.decline && sawConsent) {
            return finish(0, { kind, message: 'sign-in declined; device page reports cancellation' });
          }
          if (state === 'bad-code') return finish(1, { kind, message: `user code ${flags.code} was rejected` });
          if (state && state !== 'ok') return finish(1, { kind, message: `device page reports ${state}` });
          if (codeSubmitted) return finish(1, { kind, message: 'device page shown again after the code was entered' });
          if (!flags.code) return finish(1, { kind, message: 'device code page but no --code given' });
          await page.fill('input[name="user_code"]', flags.code);
          codeSubmitted = true;
          await submitVia('#submit');
          break;
        case 'device-confirm':
          await submitVia('#approve');
          break;
        case 'device-success':
          if (flags.decline) return finish(1, { kind, message: 'device sign-in succeeded although --decline was given' });
          return finish(0, { kind, message: 'device sign-in complete' });
        case 'error':
          return finish(1, { kind, message: `identity provider error: ${error ?? 'unknown'}` });
        default:
          if (flags.device) return finish(1, { kind, message: `unexpected page ${url}` });
          return finish(1, { kind, message: `unexpected page ${url} (not the OP's, not the redirect_uri)` });
      }
    } catch (err) {
      return navFailure(err);
    }
  }
  return finish(1, { message: 'too many steps; sign-in did not converge' });
}

function navFailure(err) {
  const target = lastNavUrl ?? '';
  if (flags.url && atRedirectTarget(target)) {
    return finish(3, { kind: 'redirect', message: `redirect target not reachable: ${target}: ${err.message.split('\n')[0]}` });
  }
  return finish(1, { message: `navigation failed at ${target}: ${err.message.split('\n')[0]}` });
}

main().catch((err) => finish(1, { message: err.stack || String(err) }));
