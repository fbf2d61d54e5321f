// Routes: a tenant's routes, and a form for every field of the route object
// (API.md, Routes) with the JSON it sends beside it, the API's validation
// errors next to their fields, and each upstream's live health and breaker.
import { api, ApiError, mergePatch } from './api.js';
import { h, field, showErrors, clearErrors, toast, json, params, go } from './dom.js';
import { can } from './app.js';
import { loadTenants } from './tenants.js';

const METHODS = ['*', 'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
const MANAGED = ['id', 'version', 'createdAt', 'updatedAt'];

export function routesPage(main) {
  const q = params();
  let tenant = null;
  let poll = null;
  let tenants = null;

  const pickerInput = h('input', { id: 'route-tenant-search', type: 'search', autocomplete: 'off', placeholder: 'Tenant name' });
  const matches = h('div', { class: 'matches', id: 'tenant-matches' });
  const list = h('section', { class: 'card', id: 'route-list', 'aria-label': 'Routes of the tenant' });
  const editor = h('section', { class: 'editor', id: 'route-editor', 'aria-label': 'Route' });
  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Routes'),
      h('div', { class: 'field inline' }, h('label', { for: 'route-tenant-search' }, 'Tenant'), pickerInput), matches),
    list, editor);

  pickerInput.addEventListener('input', async () => {
    tenants ??= await loadTenants();
    const s = pickerInput.value.trim().toLowerCase();
    const found = s ? tenants.filter((t) => t.name.toLowerCase().includes(s) || t.id.startsWith(s)).slice(0, 8) : [];
    matches.replaceChildren(...found.map((t) => h('button', { type: 'button', class: 'chip', onclick: () => go('routes', { tenantId: t.id }) }, t.name)));
  });

  async function showTenant(id) {
    try {
      tenant = await api.tenant(id);
    } catch (e) {
      list.replaceChildren(h('p', { class: 'error' }, e.message));
      return;
    }
    pickerInput.value = tenant.name;
    const { items } = await api.tenantRoutes(id);
    list.replaceChildren(
      h('div', { class: 'page-head' }, h('h2', {}, `Routes of ${tenant.name}`),
        can('write') ? h('button', { class: 'primary', id: 'new-route', type: 'button', onclick: () => edit(null) }, 'New route') : null),
      items.length ? h('table', { class: 'grid' },
        h('thead', {}, h('tr', {}, ['Method', 'Path', 'Type', 'Upstreams', 'Version', ''].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, items.map((r) => h('tr', { dataset: { id: r.id } },
          h('td', {}, r.method), h('td', {}, h('code', {}, r.path)), h('td', {}, r.pathType),
          h('td', {}, r.upstreams.length), h('td', {}, r.version),
          h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => go('routes', { tenantId: id, routeId: r.id }) }, can('write') ? 'Edit' : 'Open'))))))
        : h('p', { class: 'muted' }, 'No routes yet.'));
  }

  async function open(routeId) {
    try { edit(await api.route(routeId)); } catch (e) { editor.replaceChildren(h('p', { class: 'error' }, e.message)); }
  }

  function edit(route) {
    clearInterval(poll);
    const writable = can('write');
    const form = routeForm(route, tenant, writable);
    const preview = h('pre', { class: 'json', id: 'route-json', tabindex: '0', 'aria-label': 'Route as JSON' });
    const update = () => { preview.textContent = json(readRoute(form, tenant)); };
    form.addEventListener('input', update);
    form.addEventListener('change', update);
    form.addEventListener('click', (ev) => { if (ev.target.closest('[data-rerender]')) update(); });
    update();
    const health = h('section', { class: 'card', id: 'upstream-health', 'aria-label': 'Upstream health' });
    editor.replaceChildren(
      h('div', { class: 'split editor-split' }, form,
        h('div', { class: 'json-side' }, route ? health : null, h('h3', {}, route ? 'JSON of this route' : 'JSON to send'), preview)));

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const body = readRoute(form, tenant);
      try {
        let saved;
        if (route) {
          const before = Object.fromEntries(Object.entries(route).filter(([k]) => !MANAGED.includes(k)));
          saved = await api.patchRoute(route.id, mergePatch(before, body), route.version);
        } else {
          saved = await api.createRoute(body);
        }
        toast(`Route ${saved.path} ${route ? 'saved' : 'created'} (version ${saved.version})`);
        go('routes', { tenantId: tenant.id, routeId: saved.id });
        if (route && route.id === saved.id) { showTenant(tenant.id); edit(saved); }
      } catch (e) {
        if (e instanceof ApiError) showErrors(form, e); else throw e;
      }
    });
    form.querySelector('#delete-route')?.addEventListener('click', () => {
      const box = h('div', { class: 'confirm', role: 'alertdialog', 'aria-label': 'Confirm delete' },
        h('p', {}, `Delete route ${route.method} ${route.path}?`),
        h('button', { type: 'button', class: 'danger', id: 'confirm-delete-route', onclick: async () => {
          try {
            await api.deleteRoute(route.id, route.version);
            toast('Route deleted');
            go('routes', { tenantId: tenant.id });
          } catch (e) { showErrors(form, e); }
        } }, 'Delete for good'),
        h('button', { type: 'button', onclick: () => box.remove() }, 'Cancel'));
      form.append(box);
      box.querySelector('button').focus();
    });
    if (route) {
      const refresh = () => api.upstreams(route.id).then((r) => renderHealth(health, r.items), (e) => health.replaceChildren(h('p', { class: 'error' }, e.message)));
      refresh();
      poll = setInterval(refresh, 2000);
    }
    form.querySelector('input:not([readonly]), select')?.focus();
  }

  (async () => {
    if (q.tenantId) {
      await showTenant(q.tenantId);
      if (q.routeId) await open(q.routeId);
    } else {
      list.replaceChildren(h('p', { class: 'muted' }, 'Search a tenant to see its routes.'));
      pickerInput.focus();
    }
  })();

  return { stop() { clearInterval(poll); } };
}

function renderHealth(box, items) {
  box.replaceChildren(h('h3', {}, 'Upstreams now'),
    h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, ['Upstream', 'Weight', 'Health', 'Breaker'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, items.map((u) => h('tr', {},
        h('td', {}, h('code', {}, u.url)), h('td', {}, u.weight),
        h('td', {}, h('span', { class: 'badge ' + (u.healthy ? 'ok' : 'bad') }, u.healthChecked ? (u.healthy ? 'healthy' : 'unhealthy') : 'not checked')),
        h('td', {}, h('span', { class: 'badge ' + (u.breaker === 'closed' ? 'ok' : 'bad') }, u.breakerEnabled ? u.breaker.replace('_', '-') : 'off')))))),
    h('small', { class: 'muted' }, 'As this instance sees them, refreshed every 2 s.'));
}

// ---- the form ----

const num = (v) => (v === undefined || v === null ? '' : v);

// kv renders a header or method map as "Name: value" lines.
const kvText = (m) => Object.entries(m || {}).map(([k, v]) => `${k}: ${v}`).join('\n');
function kvParse(s, asNumber) {
  const out = {};
  for (const line of s.split('\n')) {
    const i = line.indexOf(':');
    if (i < 1) continue;
    const v = line.slice(i + 1).trim();
    out[line.slice(0, i).trim()] = asNumber ? Number(v) : v;
  }
  return out;
}
const listParse = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

// block is an optional part of the route (a resilience mechanism, a
// transform): a checkbox includes it, its fields sit in a fieldset.
function block(name, label, present, fields) {
  const box = field({ label, name, type: 'checkbox', value: present, attrs: { 'data-block': name } });
  const set = h('fieldset', { class: 'block', dataset: { blockOf: name }, disabled: !present }, h('legend', {}, label), fields);
  box.input.addEventListener('change', () => { set.disabled = !box.input.checked; });
  return h('div', { class: 'block-wrap' }, box, set);
}

function routeForm(route, tenant, writable) {
  const r = route || {};
  const res = r.resilience || {};
  const tr = r.transform || {};
  const cb = res.circuitBreaker; const rt = res.retry; const to = res.timeout; const hc = res.healthCheck; const fb = res.fallback;
  const rq = tr.request || {}; const rs = tr.response || {};

  const ups = h('div', { class: 'upstreams', id: 'upstreams' });
  const addUpstream = (u) => {
    const i = ups.children.length;
    const rowEl = h('div', { class: 'row upstream' },
      field({ label: `Upstream ${i + 1} URL`, name: `upstreams[${i}].url`, type: 'url', value: u?.url, attrs: { placeholder: 'http://127.0.0.1:9001' } }),
      field({ label: 'Weight', name: `upstreams[${i}].weight`, type: 'number', value: num(u?.weight), attrs: { min: 1, max: 1000 } }),
      h('button', { type: 'button', class: 'remove', 'aria-label': `Remove upstream ${i + 1}`, dataset: { rerender: '1' }, onclick: () => { rowEl.remove(); renumber(); } }, 'Remove'));
    ups.append(rowEl);
  };
  // renumber keeps the field names equal to the API's paths after a removal.
  const renumber = () => [...ups.children].forEach((rowEl, i) => {
    const [url, weight] = rowEl.querySelectorAll('input');
    url.dataset.field = url.name = `upstreams[${i}].url`;
    weight.dataset.field = weight.name = `upstreams[${i}].weight`;
    rowEl.querySelector('label').textContent = `Upstream ${i + 1} URL`;
  });
  for (const u of r.upstreams || [{}]) addUpstream(u);

  const form = h('form', { id: 'route-form', class: 'card', novalidate: true },
    h('h2', {}, route ? `Route ${route.method} ${route.path}` : `New route for ${tenant.name}`),
    h('fieldset', { disabled: !writable },
      h('legend', {}, 'Match'),
      field({ label: 'Tenant id', name: 'tenantId', value: r.tenantId || tenant.id, attrs: { readonly: true } }),
      h('div', { class: 'row' },
        field({ label: 'Method', name: 'method', value: r.method || '*', options: METHODS }),
        field({ label: 'Path type', name: 'pathType', value: r.pathType || 'prefix', options: ['prefix', 'exact', 'regex'] })),
      field({ label: 'Path', name: 'path', value: r.path, attrs: { placeholder: '/api/users', required: true } })),
    h('fieldset', { disabled: !writable },
      h('legend', {}, 'Upstreams'),
      ups,
      writable ? h('button', { type: 'button', id: 'add-upstream', dataset: { rerender: '1' }, onclick: () => addUpstream({}) }, 'Add upstream') : null,
      field({ label: 'Load balancing', name: 'loadBalancing', value: r.loadBalancing || 'round-robin', options: ['round-robin', 'weighted', 'random'] })),
    h('fieldset', { disabled: !writable },
      h('legend', {}, 'Resilience'),
      block('resilience.circuitBreaker', 'Circuit breaker', !!cb, [
        field({ label: 'Enabled', name: 'resilience.circuitBreaker.enabled', type: 'checkbox', value: cb ? cb.enabled : true }),
        h('div', { class: 'row' },
          field({ label: 'Failure threshold', name: 'resilience.circuitBreaker.failureThreshold', type: 'number', value: num(cb?.failureThreshold), attrs: { placeholder: '5' } }),
          field({ label: 'Success threshold', name: 'resilience.circuitBreaker.successThreshold', type: 'number', value: num(cb?.successThreshold), attrs: { placeholder: '2' } }),
          field({ label: 'Open for (ms)', name: 'resilience.circuitBreaker.timeout', type: 'number', value: num(cb?.timeout), attrs: { placeholder: '30000' } }))]),
      block('resilience.retry', 'Retry', !!rt, [
        field({ label: 'Enabled', name: 'resilience.retry.enabled', type: 'checkbox', value: rt ? rt.enabled : true }),
        h('div', { class: 'row' },
          field({ label: 'Max retries', name: 'resilience.retry.maxRetries', type: 'number', value: num(rt?.maxRetries), attrs: { placeholder: '3' } }),
          field({ label: 'Base delay (ms)', name: 'resilience.retry.baseDelayMs', type: 'number', value: num(rt?.baseDelayMs), attrs: { placeholder: '100' } }),
          field({ label: 'Max delay (ms)', name: 'resilience.retry.maxDelayMs', type: 'number', value: num(rt?.maxDelayMs), attrs: { placeholder: '2000' } })),
        field({ label: 'Retryable status codes (comma separated)', name: 'resilience.retry.retryableStatusCodes', value: (rt?.retryableStatusCodes || []).join(', '), attrs: { placeholder: '500, 502, 503, 504' } }),
        field({ label: 'Retry non-idempotent methods too', name: 'resilience.retry.retryNonIdempotent', type: 'checkbox', value: rt?.retryNonIdempotent })]),
      block('resilience.timeout', 'Timeout', !!to, [
        field({ label: 'Default (ms)', name: 'resilience.timeout.default', type: 'number', value: num(to?.default), attrs: { placeholder: '10000' } }),
        field({ label: 'By method (one "METHOD: ms" a line)', name: 'resilience.timeout.byMethod', type: 'textarea', value: kvText(to?.byMethod), attrs: { placeholder: 'GET: 5000' } })]),
      block('resilience.healthCheck', 'Health check', !!hc, [
        field({ label: 'Enabled', name: 'resilience.healthCheck.enabled', type: 'checkbox', value: hc ? hc.enabled : true }),
        field({ label: 'Endpoint', name: 'resilience.healthCheck.endpoint', value: hc?.endpoint, attrs: { placeholder: '/health' } }),
        h('div', { class: 'row' },
          field({ label: 'Interval (ms)', name: 'resilience.healthCheck.intervalMs', type: 'number', value: num(hc?.intervalMs), attrs: { placeholder: '30000' } }),
          field({ label: 'Probe timeout (ms)', name: 'resilience.healthCheck.timeoutMs', type: 'number', value: num(hc?.timeoutMs), attrs: { placeholder: '5000' } })),
        h('div', { class: 'row' },
          field({ label: 'Healthy threshold', name: 'resilience.healthCheck.healthyThreshold', type: 'number', value: num(hc?.healthyThreshold), attrs: { placeholder: '2' } }),
          field({ label: 'Unhealthy threshold', name: 'resilience.healthCheck.unhealthyThreshold', type: 'number', value: num(hc?.unhealthyThreshold), attrs: { placeholder: '3' } }))]),
      block('resilience.fallback', 'Fallback', !!fb, [
        field({ label: 'Enabled', name: 'resilience.fallback.enabled', type: 'checkbox', value: fb ? fb.enabled : true }),
        h('div', { class: 'row' },
          field({ label: 'Status code', name: 'resilience.fallback.statusCode', type: 'number', value: num(fb?.statusCode), attrs: { placeholder: '503' } }),
          field({ label: 'Content type', name: 'resilience.fallback.contentType', value: fb?.contentType, attrs: { placeholder: 'application/json' } })),
        field({ label: 'Body', name: 'resilience.fallback.body', type: 'textarea', value: fb?.body })])),
    h('fieldset', { disabled: !writable },
      h('legend', {}, 'Transform'),
      block('transform.request.headers', 'Request headers', !!rq.headers, headerFields('transform.request.headers', rq.headers)),
      block('transform.request.path', 'Request path rewrite', !!rq.path, [
        field({ label: 'Pattern (RE2)', name: 'transform.request.path.pattern', value: rq.path?.pattern, attrs: { placeholder: '^/api/users(.*)$' } }),
        field({ label: 'Replacement', name: 'transform.request.path.replacement', value: rq.path?.replacement, attrs: { placeholder: '/v2/users$1' } })]),
      block('transform.response.headers', 'Response headers', !!rs.headers, headerFields('transform.response.headers', rs.headers))),
    h('p', { class: 'error form-error', role: 'alert', hidden: true }),
    writable ? h('div', { class: 'actions' },
      h('button', { class: 'primary', type: 'submit', id: 'save-route' }, route ? 'Save route' : 'Create route'),
      route ? h('button', { type: 'button', class: 'danger', id: 'delete-route' }, 'Delete route') : null,
      route ? h('button', { type: 'button', onclick: () => go('events', { aggregateType: 'route', aggregateId: route.id }) }, 'History') : null) : null);
  return form;
}

function headerFields(prefix, hd) {
  return [
    field({ label: 'Set (one "Name: value" a line; replaces)', name: `${prefix}.set`, type: 'textarea', value: kvText(hd?.set) }),
    field({ label: 'Add (one "Name: value" a line; appends)', name: `${prefix}.add`, type: 'textarea', value: kvText(hd?.add) }),
    field({ label: 'Remove (comma separated names)', name: `${prefix}.remove`, value: (hd?.remove || []).join(', ') }),
  ];
}

// readRoute turns the form into the route's JSON, leaving out what is
// empty so that the API fills its defaults.
function readRoute(form, tenant) {
  const get = (name) => form.querySelector(`[data-field="${name}"]`);
  const val = (name) => get(name)?.value.trim() ?? '';
  const on = (name) => !!get(name)?.checked;
  const put = (obj, key, v) => { if (v !== '' && v !== undefined) obj[key] = v; return obj; };
  const n = (name) => (val(name) === '' ? '' : Number(val(name)));
  const present = (name) => on(name);

  const body = { tenantId: val('tenantId') || tenant.id, method: val('method'), path: val('path'), pathType: val('pathType') };
  body.upstreams = [...form.querySelectorAll('.upstream')].map((_, i) => put(put({}, 'url', val(`upstreams[${i}].url`)), 'weight', n(`upstreams[${i}].weight`)));
  body.loadBalancing = val('loadBalancing');

  const res = {};
  const rb = 'resilience.';
  const sub = (name, keys) => {
    const o = {};
    for (const [k, kind] of keys) {
      const f = `${rb}${name}.${k}`;
      if (kind === 'bool') o[k] = on(f);
      else if (kind === 'num') put(o, k, n(f));
      else put(o, k, val(f));
    }
    return o;
  };
  if (present(rb + 'circuitBreaker')) res.circuitBreaker = sub('circuitBreaker', [['enabled', 'bool'], ['failureThreshold', 'num'], ['successThreshold', 'num'], ['timeout', 'num']]);
  if (present(rb + 'retry')) {
    res.retry = sub('retry', [['enabled', 'bool'], ['maxRetries', 'num'], ['baseDelayMs', 'num'], ['maxDelayMs', 'num'], ['retryNonIdempotent', 'bool']]);
    const codes = listParse(val(rb + 'retry.retryableStatusCodes')).map(Number);
    if (codes.length) res.retry.retryableStatusCodes = codes;
  }
  if (present(rb + 'timeout')) {
    res.timeout = sub('timeout', [['default', 'num']]);
    const by = kvParse(val(rb + 'timeout.byMethod'), true);
    if (Object.keys(by).length) res.timeout.byMethod = by;
  }
  if (present(rb + 'healthCheck')) res.healthCheck = sub('healthCheck', [['enabled', 'bool'], ['endpoint'], ['intervalMs', 'num'], ['timeoutMs', 'num'], ['healthyThreshold', 'num'], ['unhealthyThreshold', 'num']]);
  if (present(rb + 'fallback')) {
    res.fallback = sub('fallback', [['enabled', 'bool'], ['statusCode', 'num'], ['contentType']]);
    put(res.fallback, 'body', get(rb + 'fallback.body').value);
  }
  if (Object.keys(res).length) body.resilience = res;

  const headers = (prefix) => {
    const o = {};
    const set = kvParse(val(`${prefix}.set`)); const add = kvParse(val(`${prefix}.add`)); const rm = listParse(val(`${prefix}.remove`));
    if (Object.keys(set).length) o.set = set;
    if (Object.keys(add).length) o.add = add;
    if (rm.length) o.remove = rm;
    return o;
  };
  const transform = {};
  const request = {};
  if (present('transform.request.headers')) request.headers = headers('transform.request.headers');
  if (present('transform.request.path')) request.path = put(put({}, 'pattern', val('transform.request.path.pattern')), 'replacement', get('transform.request.path.replacement').value);
  if (Object.keys(request).length) transform.request = request;
  if (present('transform.response.headers')) transform.response = { headers: headers('transform.response.headers') };
  if (Object.keys(transform).length) body.transform = transform;
  return body;
}
