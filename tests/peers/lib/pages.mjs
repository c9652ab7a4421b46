// HTML for the test OP's user-facing pages (test-only).
//
// oidc-provider's built-in pages (devInteractions, device flow, logout,
// errors) @import a web font from a public CDN, which a browser would try to
// fetch. These pages are self-contained: no external resources at all.
//
// Every page carries <meta name="mslink-test-page" content="KIND"> so that
// signin.mjs can tell where it is without scraping text. KINDs:
//   login, consent, device-input, device-confirm, device-success,
//   logout, logout-success, error

export function esc(value) {
  return String(value ?? '')
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

const STYLE = `body{font-family:sans-serif;margin:2em auto;max-width:28em;color:#222}
h1{font-weight:300}input[type=text],input[type=password]{display:block;width:100%;box-sizing:border-box;
padding:.5em;margin:.3em 0 .8em;font-size:1em}button{font-size:1em;padding:.5em 1em;margin-right:.5em}
.err{color:#b00}code{font-size:1.5em}pre{white-space:pre-wrap}`;

export function page(kind, title, body, extraMeta = '') {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="mslink-test-page" content="${esc(kind)}">${extraMeta}
<title>${esc(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${esc(title)}</h1>
${body}
</body>
</html>`;
}

export function loginPage({ uid, clientId, loginHint, scope, flash }) {
  return page('login', 'Sign in', `
<p>Test identity provider. <strong>Any</strong> login name is accepted; the password is ignored.</p>
<p>Application: <code id="client">${esc(clientId)}</code></p>
${flash ? `<p class="err" id="flash">${esc(flash)}</p>` : ''}
<form id="login-form" method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label for="login">Login (e-mail)</label>
  <input id="login" type="text" name="login" required autofocus value="${esc(loginHint ?? '')}" placeholder="alice@contoso.test">
  <label for="password">Password</label>
  <input id="password" type="password" name="password" placeholder="(ignored)">
  <button id="submit" type="submit">Sign in</button>
</form>
<form id="abort-form" method="post" action="/interaction/${esc(uid)}/abort">
  <button id="cancel" type="submit">Cancel</button>
</form>
<p><small>Requested scope: <span id="scope">${esc(scope ?? '')}</span></small></p>`);
}

export function consentPage({ uid, clientId, accountId, scopes, offline }) {
  const items = scopes.map((s) => `<li>${esc(s)}</li>`).join('');
  return page('consent', 'Permissions requested', `
<p>Signed in as <strong id="account">${esc(accountId)}</strong>.</p>
<p>The application <code id="client">${esc(clientId)}</code> would like to:</p>
<ul id="scopes">${items || '<li>confirm a previous authorization</li>'}</ul>
${offline ? '<p id="offline">Maintain access to the data you have given it access to (offline_access).</p>' : ''}
<form id="confirm-form" method="post" action="/interaction/${esc(uid)}/confirm">
  <button id="approve" type="submit" autofocus>Accept</button>
</form>
<form id="abort-form" method="post" action="/interaction/${esc(uid)}/abort">
  <button id="cancel" type="submit">Cancel</button>
</form>`);
}

// oidc-provider features.deviceFlow.userCodeInputSource(ctx, form, out, err)
export async function userCodeInputSource(ctx, form, out, err) {
  let msg;
  let state = 'ok';
  if (err && (err.userCode || err.name === 'NoCodeError')) {
    msg = '<p class="err" id="flash">The code you entered is incorrect. Try again.</p>';
    state = 'bad-code';
  } else if (err && err.name === 'AbortedError') {
    msg = '<p class="err" id="flash">The sign-in request was cancelled.</p>';
    state = 'aborted';
  } else if (err) {
    msg = `<p class="err" id="flash">There was an error processing your request: ${esc(err.message)}</p>`;
    state = 'error';
  } else {
    msg = '<p>Enter the code displayed on your device.</p>';
  }
  ctx.type = 'html';
  ctx.body = page('device-input', 'Device sign-in', `${msg}
${form}
<button id="submit" type="submit" form="op.deviceInputForm">Next</button>`,
  `\n<meta name="mslink-test-state" content="${state}">`);
}

// oidc-provider features.deviceFlow.userCodeConfirmSource(ctx, form, client, deviceInfo, userCode)
export async function userCodeConfirmSource(ctx, form, client, deviceInfo, userCode) {
  ctx.type = 'html';
  ctx.body = page('device-confirm', 'Confirm device', `
<p>Application <code id="client">${esc(client.clientName || client.clientId)}</code> is asking to sign in on a device.</p>
<p>The device should be showing the code <code id="user-code">${esc(userCode)}</code>.</p>
${form}
<button id="approve" type="submit" form="op.deviceConfirmForm">Continue</button>
<button id="cancel" type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Cancel</button>`);
}

// oidc-provider features.deviceFlow.successSource(ctx)
export async function successSource(ctx) {
  ctx.type = 'html';
  ctx.body = page('device-success', 'Sign-in complete', `
<p id="done">You have signed in to <code>${esc(ctx.oidc.client.clientName || ctx.oidc.client.clientId)}</code> on your device. You can close this window.</p>`);
}

// oidc-provider features.rpInitiatedLogout.logoutSource(ctx, form)
export async function logoutSource(ctx, form) {
  ctx.type = 'html';
  ctx.body = page('logout', 'Sign out?', `${form}
<button id="approve" type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>
<button id="cancel" type="submit" form="op.logoutForm">No, stay signed in</button>`);
}

// oidc-provider features.rpInitiatedLogout.postLogoutSuccessSource(ctx)
export async function postLogoutSuccessSource(ctx) {
  ctx.type = 'html';
  ctx.body = page('logout-success', 'Signed out', '<p id="done">You have been signed out.</p>');
}

// oidc-provider renderError(ctx, out, error)
export async function renderError(ctx, out, error) {
  ctx.type = 'html';
  const rows = Object.entries(out).map(([k, v]) => `<pre><strong>${esc(k)}</strong>: <span id="${esc(k)}">${esc(v)}</span></pre>`).join('\n');
  ctx.body = page('error', 'Sign-in error', `<div id="error-details">${rows}</div>`,
    `\n<meta name="mslink-test-error" content="${esc(out.error)}${out.error_description ? `: ${esc(out.error_description)}` : ''}">`);
  if (error) process.stderr.write(`[oidc] render error page: ${out.error} ${out.error_description ?? ''} (${error.message})\n`);
}
