// Shared helpers for the mslink test peers: flag parsing, loopback checks,
// stdout discipline. TEST-ONLY code; never deploy.

import { isIP } from 'node:net';

// Everything but the single READY line goes to stderr. Some libraries
// (oidc-provider's "NOTICE" messages) use console.info, which would land on
// stdout and confuse the Rust harness that reads the READY line.
export function stdoutOnlyForReady() {
  console.log = console.error;
  console.info = console.error;
  console.debug = console.error;
}

export function announceReady(url) {
  process.stdout.write(`READY ${url}\n`);
}

// Minimal flag parser.
//   spec: { name: { type: 'string'|'int'|'bool'|'list', default, env } }
// Accepts --name value, --name=value, --no-name (bool). Unknown flags are an
// error so that typos in test harnesses fail loudly.
export function parseFlags(argv, spec, usage) {
  const out = {};
  for (const [name, s] of Object.entries(spec)) {
    const envVal = s.env !== undefined ? process.env[s.env] : undefined;
    if (envVal !== undefined && envVal !== '') {
      out[name] = convert(name, s.type, envVal, s.type === 'list' ? [] : undefined);
    } else {
      out[name] = s.type === 'list' ? [...(s.default ?? [])] : s.default;
    }
  }
  const seenList = new Set();
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') {
      process.stderr.write(`${usage}\n`);
      process.exit(0);
    }
    if (!arg.startsWith('--')) fail(`unexpected argument: ${arg}\n${usage}`);
    let name = arg.slice(2);
    let value;
    const eq = name.indexOf('=');
    if (eq !== -1) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    if (!(name in spec) && name.startsWith('no-') && spec[name.slice(3)]?.type === 'bool') {
      out[name.slice(3)] = false;
      continue;
    }
    const s = spec[name];
    if (!s) fail(`unknown flag --${name}\n${usage}`);
    if (s.type === 'bool') {
      out[name] = value === undefined ? true : convert(name, 'bool', value);
      continue;
    }
    if (value === undefined) {
      i += 1;
      if (i >= argv.length) fail(`flag --${name} needs a value`);
      value = argv[i];
    }
    if (s.type === 'list') {
      // A list given on the command line replaces the env/default list.
      if (!seenList.has(name)) { out[name] = []; seenList.add(name); }
      out[name].push(value);
    } else {
      out[name] = convert(name, s.type, value);
    }
  }
  return out;
}

function convert(name, type, value, listAcc) {
  switch (type) {
    case 'int': {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0) fail(`flag --${name}: not a non-negative integer: ${value}`);
      return n;
    }
    case 'bool':
      if (['1', 'true', 'yes', 'on'].includes(String(value).toLowerCase())) return true;
      if (['0', 'false', 'no', 'off'].includes(String(value).toLowerCase())) return false;
      return fail(`flag --${name}: not a boolean: ${value}`);
    case 'list':
      return [...listAcc, ...String(value).split(/[\s,]+/).filter(Boolean)];
    default:
      return String(value);
  }
}

export function fail(msg, code = 2) {
  process.stderr.write(`error: ${msg}\n`);
  process.exit(code);
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

export function isLoopbackHost(host) {
  if (!host) return false;
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (LOOPBACK_NAMES.has(h)) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return false;
}

export function assertLoopbackHost(host, what) {
  if (!isLoopbackHost(host)) fail(`${what} must be a loopback address (127.0.0.0/8, ::1, localhost), got ${host}`);
}

// "http://HOST:PORT" for the address a server actually bound.
export function baseUrlOf(server) {
  const { address, port } = server.address();
  const host = isIP(address) === 6 ? `[${address}]` : address;
  return `http://${host}:${port}`;
}

export function readBody(req, limit = 64 * 1024) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export function sendJson(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function log(tag, ...args) {
  process.stderr.write(`[${tag}] ${new Date().toISOString()} ${args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ')}\n`);
}

export function onTerminate(server, tag, { exitWithStdin = false } = {}) {
  let closing = false;
  const stop = (sig) => {
    if (closing) return;
    closing = true;
    log(tag, `${sig} received, shutting down`);
    server.close(() => process.exit(0));
    server.closeAllConnections?.();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // --exit-with-stdin: a Rust test that panics drops its std::process::Child
  // without killing it; if the harness gives us a piped stdin, its closing
  // (parent exited) ends us too, so no peer outlives the test.
  if (exitWithStdin) {
    process.stdin.on('end', () => stop('stdin closed'));
    process.stdin.on('error', () => stop('stdin error'));
    process.stdin.resume();
  }
}
