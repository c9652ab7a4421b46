// In-memory storage adapter for oidc-provider (test-only).
//
// oidc-provider ships its own MemoryAdapter, but it cannot be enumerated, and
// the test-only `POST /test/revoke?sub=...` endpoint needs to find every grant
// and session of a subject. This is the documented adapter interface
// (upsert/find/findByUid/findByUserCode/consume/destroy/revokeByGrantId).

const store = new Map(); // key `${model}:${id}` -> { payload, expiresAt }
const grantIndex = new Map(); // grantId -> Set of keys
const uidIndex = new Map(); // `${model}:${uid}` -> id
const userCodeIndex = new Map(); // `${model}:${userCode}` -> id

const now = () => Math.floor(Date.now() / 1000);

function get(key) {
  const entry = store.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt !== undefined && entry.expiresAt < now() - 60) {
    // Keep entries a little past their expiry (oidc-provider checks `exp`
    // itself and reports "expired" rather than "not found"), then drop them.
    store.delete(key);
    return undefined;
  }
  return entry.payload;
}

export default class MemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    store.set(key, {
      payload: structuredClone(payload),
      expiresAt: expiresIn ? now() + expiresIn : undefined,
    });
    if (payload.grantId) {
      if (!grantIndex.has(payload.grantId)) grantIndex.set(payload.grantId, new Set());
      grantIndex.get(payload.grantId).add(key);
    }
    if (payload.uid) uidIndex.set(`${this.model}:${payload.uid}`, id);
    if (payload.userCode) userCodeIndex.set(`${this.model}:${payload.userCode}`, id);
  }

  async find(id) {
    const p = get(this.key(id));
    return p ? structuredClone(p) : undefined;
  }

  async findByUid(uid) {
    const id = uidIndex.get(`${this.model}:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = userCodeIndex.get(`${this.model}:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = now();
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const keys = grantIndex.get(grantId);
    if (!keys) return;
    for (const key of keys) {
      if (key.startsWith(`${this.model}:`)) {
        store.delete(key);
        keys.delete(key);
      }
    }
    if (keys.size === 0) grantIndex.delete(grantId);
  }
}

// ---- test-only inspection helpers -----------------------------------------

// All live payloads of one model, as [id, payload] pairs.
export function entriesOf(model) {
  const out = [];
  for (const key of [...store.keys()]) {
    if (!key.startsWith(`${model}:`)) continue;
    const p = get(key);
    if (p) out.push([key.slice(model.length + 1), p]);
  }
  return out;
}

// Every key (any model) that belongs to a grant.
export function keysOfGrant(grantId) {
  return [...(grantIndex.get(grantId) ?? [])];
}

export function deleteKey(key) {
  store.delete(key);
}
