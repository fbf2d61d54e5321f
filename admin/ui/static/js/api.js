// The admin API client. The key is held in this tab's sessionStorage (gone
// when the tab closes; never persistent storage, never a URL) and sent as
// X-Admin-Key: a custom header, so another site cannot make the browser
// send it (no cookies are used at all).

const KEY = 'gateway.adminKey';
const ACTOR = 'gateway.actor';

export const session = {
  get key() { return sessionStorage.getItem(KEY) || ''; },
  get actor() { return sessionStorage.getItem(ACTOR) || ''; },
  save(key, actor) {
    sessionStorage.setItem(KEY, key);
    if (actor) sessionStorage.setItem(ACTOR, actor); else sessionStorage.removeItem(ACTOR);
  },
  clear() { sessionStorage.removeItem(KEY); sessionStorage.removeItem(ACTOR); },
};

// ApiError is an answer of the contract's error JSON.
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || 'http_' + status;
    this.details = e.details || [];
  }
}

let onUnauthorized = () => {};
export function whenUnauthorized(f) { onUnauthorized = f; }

// call sends one admin request. opts: {method, body, ifMatch, key, quiet401}.
export async function call(path, opts = {}) {
  const headers = { 'X-Admin-Key': opts.key || session.key };
  if (session.actor) headers['X-Actor'] = session.actor;
  if (opts.body !== undefined) headers['Content-Type'] = opts.method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
  if (opts.ifMatch !== undefined) headers['If-Match'] = `"${opts.ifMatch}"`;
  let resp;
  try {
    resp = await fetch(path, { method: opts.method || 'GET', headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body), cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    throw new ApiError(0, { error: { code: 'network', message: 'The gateway did not answer: ' + e.message } });
  }
  const text = await resp.text();
  let body = null;
  if (text) {
    try { body = JSON.parse(text); } catch { body = null; }
  }
  if (!resp.ok) {
    if (resp.status === 401 && !opts.quiet401) onUnauthorized();
    throw new ApiError(resp.status, body);
  }
  return body;
}

export const api = {
  whoami: (key) => call('/admin/whoami', { key, quiet401: true }),
  status: (key) => call('/admin/status', key ? { key, quiet401: true } : {}),
  tenants: (cursor, limit = 500) => call(`/admin/tenants?limit=${limit}${cursor ? '&cursor=' + encodeURIComponent(cursor) : ''}`),
  tenant: (id) => call(`/admin/tenants/${encodeURIComponent(id)}`),
  createTenant: (body) => call('/admin/tenants', { method: 'POST', body }),
  patchTenant: (id, body, version) => call(`/admin/tenants/${encodeURIComponent(id)}`, { method: 'PATCH', body, ifMatch: version }),
  deleteTenant: (id, version) => call(`/admin/tenants/${encodeURIComponent(id)}`, { method: 'DELETE', ifMatch: version }),
  rotateKey: (id, version) => call(`/admin/tenants/${encodeURIComponent(id)}/api-key`, { method: 'POST', ifMatch: version }),
  tenantRoutes: (id) => call(`/admin/tenants/${encodeURIComponent(id)}/routes`),
  route: (id) => call(`/admin/routes/${encodeURIComponent(id)}`),
  createRoute: (body) => call('/admin/routes', { method: 'POST', body }),
  patchRoute: (id, body, version) => call(`/admin/routes/${encodeURIComponent(id)}`, { method: 'PATCH', body, ifMatch: version }),
  deleteRoute: (id, version) => call(`/admin/routes/${encodeURIComponent(id)}`, { method: 'DELETE', ifMatch: version }),
  upstreams: (id) => call(`/admin/routes/${encodeURIComponent(id)}/upstreams`),
  events: (q) => call('/admin/events?' + new URLSearchParams(Object.entries(q).filter(([, v]) => v !== '' && v != null))),
  state: (at) => call('/admin/state' + (at === undefined || at === '' ? '' : '?at=' + encodeURIComponent(at))),
  diff: (from, to) => call(`/admin/diff?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`),
  rollback: (toSeq) => call('/admin/rollback', { method: 'POST', body: { toSeq } }),
  instances: () => call('/admin/instances'),
};

// mergePatch is the RFC 7396 merge patch that turns before into after:
// changed values, null for removed keys, objects recursively.
export function mergePatch(before, after) {
  const patch = {};
  for (const k of Object.keys(before || {})) {
    if (!(k in after)) patch[k] = null;
  }
  for (const [k, v] of Object.entries(after)) {
    const old = before ? before[k] : undefined;
    if (isObject(v) && isObject(old)) {
      const sub = mergePatch(old, v);
      if (Object.keys(sub).length) patch[k] = sub;
    } else if (JSON.stringify(v) !== JSON.stringify(old)) {
      patch[k] = v;
    }
  }
  return patch;
}

function isObject(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }
