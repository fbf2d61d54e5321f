// Tenants: a virtual list (only the visible rows exist in the DOM, so
// 10,000 tenants scroll as fast as ten), search, and a detail panel with
// the edit, suspend, rotate and delete actions the key's role allows.
import { api, ApiError, mergePatch } from './api.js';
import { h, field, showErrors, clearErrors, toast, fmtTime, params, go } from './dom.js';
import { can } from './app.js';

const ROW = 44; // px, fixed so that the list can be virtual

const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

// loadTenants reads every tenant, 500 a page, calling progress after each.
export async function loadTenants(progress) {
  const all = [];
  let cursor = null;
  do {
    const page = await api.tenants(cursor, 500);
    all.push(...page.items);
    cursor = page.nextCursor;
    progress?.(all, !cursor);
  } while (cursor);
  return all;
}

export function tenantsPage(main) {
  let all = [];
  let shown = [];
  let selected = params().id || null;
  let focusIndex = 0;
  let stopped = false;

  const count = h('span', { class: 'muted', id: 'tenant-count', 'aria-live': 'polite' }, 'Loading…');
  const search = h('input', { id: 'tenant-search', type: 'search', placeholder: 'Name or id', autocomplete: 'off' });
  const spacer = h('div', { class: 'vspacer' });
  const rows = h('div', { class: 'vrows' });
  const list = h('div', { class: 'vlist', id: 'tenant-list', role: 'list', 'aria-label': 'Tenants', tabindex: '-1' }, spacer, rows);
  const detail = h('section', { class: 'detail card', id: 'tenant-detail', 'aria-label': 'Tenant' });

  main.append(
    h('div', { class: 'page-head' },
      h('h1', {}, 'Tenants'), count,
      h('div', { class: 'field inline' }, h('label', { for: 'tenant-search' }, 'Search'), search),
      can('createTenant') ? h('button', { class: 'primary', id: 'new-tenant', type: 'button', onclick: () => { selected = null; renderCreate(); } }, 'New tenant') : null),
    h('div', { class: 'split' }, list, detail));

  function filter() {
    const q = search.value.trim().toLowerCase();
    shown = q ? all.filter((t) => t.name.toLowerCase().includes(q) || t.id.startsWith(q)) : all;
    spacer.style.height = `${shown.length * ROW}px`;
    count.textContent = q ? `${shown.length} of ${all.length} tenants` : `${all.length} tenants`;
    focusIndex = Math.min(focusIndex, Math.max(shown.length - 1, 0));
    paint();
  }

  // paint renders the rows in view and a few around them.
  function paint() {
    const top = list.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW) - 5);
    const last = Math.min(shown.length, Math.ceil((top + (list.clientHeight || 600)) / ROW) + 5);
    const frag = [];
    for (let i = first; i < last; i++) frag.push(row(shown[i], i));
    rows.style.transform = `translateY(${first * ROW}px)`;
    rows.replaceChildren(...frag);
  }

  function row(t, i) {
    const b = h('button', {
      type: 'button', class: 'vrow' + (t.id === selected ? ' selected' : ''), role: 'listitem', tabindex: i === focusIndex ? '0' : '-1',
      dataset: { index: i, id: t.id, name: t.name }, 'aria-current': t.id === selected ? 'true' : false,
      onclick: () => { focusIndex = i; select(t.id); },
    },
    h('span', { class: 'name' }, t.name),
    h('span', { class: `badge ${t.status}` }, t.status),
    h('span', { class: 'muted' }, t.rateLimit ? `${t.rateLimit.limit}/${t.rateLimit.windowMs} ms` : 'unlimited'),
    h('code', { class: 'muted' }, t.apiKeyPrefix));
    return b;
  }

  // Arrow keys, Home and End move through the list; Enter opens a tenant.
  list.addEventListener('keydown', (ev) => {
    const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: 10, PageUp: -10 };
    let next = null;
    if (ev.key in moves) next = focusIndex + moves[ev.key];
    else if (ev.key === 'Home') next = 0;
    else if (ev.key === 'End') next = shown.length - 1;
    if (next === null || !shown.length) return;
    ev.preventDefault();
    focusIndex = Math.max(0, Math.min(shown.length - 1, next));
    const y = focusIndex * ROW;
    if (y < list.scrollTop) list.scrollTop = y;
    else if (y + ROW > list.scrollTop + list.clientHeight) list.scrollTop = y + ROW - list.clientHeight;
    paint();
    rows.querySelector(`[data-index="${focusIndex}"]`)?.focus();
  });
  list.addEventListener('scroll', () => requestAnimationFrame(paint), { passive: true });
  search.addEventListener('input', filter);

  function replace(t) {
    const i = all.findIndex((x) => x.id === t.id);
    if (i >= 0) all[i] = t; else all.push(t);
    all.sort(byName);
    filter();
  }

  function remove(id) {
    all = all.filter((x) => x.id !== id);
    filter();
  }

  async function select(id) {
    selected = id;
    paint();
    detail.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    try {
      renderDetail(await api.tenant(id));
    } catch (e) {
      detail.replaceChildren(h('p', { class: 'error' }, e.message));
    }
  }

  function tenantFields(t) {
    return [
      field({ label: 'Name', name: 'name', value: t?.name, attrs: { required: true, maxlength: 100 } }),
      field({ label: 'Status', name: 'status', value: t?.status || 'active', options: ['active', 'suspended'] }),
      h('fieldset', {}, h('legend', {}, 'Rate limit (empty: unlimited)'),
        field({ label: 'Requests per window', name: 'rateLimit.limit', type: 'number', value: t?.rateLimit?.limit, attrs: { min: 1, max: 1000000 } }),
        field({ label: 'Window (ms)', name: 'rateLimit.windowMs', type: 'number', value: t?.rateLimit?.windowMs ?? (t ? '' : 1000), attrs: { min: 100, max: 86400000 } })),
    ];
  }

  function readTenant(form) {
    const limit = form.querySelector('[data-field="rateLimit.limit"]').value;
    const windowMs = form.querySelector('[data-field="rateLimit.windowMs"]').value;
    return {
      name: form.querySelector('[data-field="name"]').value.trim(),
      status: form.querySelector('[data-field="status"]').value,
      rateLimit: limit === '' ? null : { limit: Number(limit), windowMs: Number(windowMs || 1000) },
    };
  }

  function keyBox(t) {
    return h('div', { class: 'keybox', role: 'alert', id: 'new-key' },
      h('strong', {}, `API key of ${t.name}, shown this once:`),
      h('label', { for: 'new-key-value', class: 'sr-only' }, 'New API key'),
      h('input', { id: 'new-key-value', readonly: true, value: t.apiKey, onfocus: (e) => e.target.select() }),
      h('small', { class: 'muted' }, 'Copy it now: the gateway keeps only its digest.'));
  }

  function renderCreate() {
    const form = h('form', { id: 'tenant-create', novalidate: true },
      h('h2', {}, 'New tenant'), tenantFields(null),
      h('p', { class: 'error form-error', role: 'alert', hidden: true }),
      h('button', { class: 'primary', type: 'submit' }, 'Create tenant'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const body = readTenant(form);
      if (body.rateLimit === null) delete body.rateLimit;
      try {
        const t = await api.createTenant(body);
        replace(t);
        selected = t.id;
        renderDetail(t, keyBox(t));
        toast(`Tenant ${t.name} created`);
      } catch (e) {
        if (e instanceof ApiError) showErrors(form, e); else throw e;
      }
    });
    detail.replaceChildren(form);
    form.querySelector('input').focus();
  }

  function renderDetail(t, notice) {
    const writable = can('write');
    const form = h('form', { id: 'tenant-edit', novalidate: true },
      h('h2', {}, t.name),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Id'), h('dd', {}, h('code', {}, t.id)),
        h('dt', {}, 'Key prefix'), h('dd', {}, h('code', {}, t.apiKeyPrefix)),
        h('dt', {}, 'Version'), h('dd', { id: 'tenant-version' }, t.version),
        h('dt', {}, 'Updated'), h('dd', {}, fmtTime(t.updatedAt))),
      writable ? [tenantFields(t), h('p', { class: 'error form-error', role: 'alert', hidden: true })] : [],
      h('div', { class: 'actions' },
        writable ? h('button', { class: 'primary', type: 'submit' }, 'Save') : null,
        writable ? h('button', { type: 'button', id: 'toggle-status', onclick: () => save({ status: t.status === 'active' ? 'suspended' : 'active' }) }, t.status === 'active' ? 'Suspend' : 'Activate') : null,
        writable ? h('button', { type: 'button', id: 'rotate-key', onclick: rotate }, 'Rotate key') : null,
        writable ? h('button', { type: 'button', class: 'danger', id: 'delete-tenant', onclick: confirmDelete }, 'Delete') : null,
        h('button', { type: 'button', onclick: () => go('routes', { tenantId: t.id }) }, 'Routes'),
        h('button', { type: 'button', onclick: () => go('events', { tenantId: t.id }) }, 'History')));
    if (!writable) form.append(h('p', { class: 'muted' }, `Status ${t.status}; rate limit ${t.rateLimit ? `${t.rateLimit.limit} per ${t.rateLimit.windowMs} ms` : 'none'}.`));

    async function save(patch) {
      clearErrors(form);
      try {
        const nt = await api.patchTenant(t.id, patch, t.version);
        replace(nt);
        renderDetail(nt);
        toast(`Tenant ${nt.name} saved (version ${nt.version})`);
      } catch (e) {
        if (e instanceof ApiError) showErrors(form, e); else throw e;
      }
    }
    async function rotate() {
      try {
        const nt = await api.rotateKey(t.id, t.version);
        replace(nt);
        renderDetail(nt, keyBox(nt));
      } catch (e) { showErrors(form, e); }
    }
    function confirmDelete() {
      const box = h('div', { class: 'confirm', role: 'alertdialog', 'aria-label': 'Confirm delete' },
        h('p', {}, `Delete ${t.name} and all its routes? This appends a delete event for each; a rollback can bring them back.`),
        h('button', { type: 'button', class: 'danger', id: 'confirm-delete', onclick: async () => {
          try {
            await api.deleteTenant(t.id, t.version);
            remove(t.id);
            detail.replaceChildren(h('p', { class: 'muted' }, `${t.name} deleted.`));
            toast(`Tenant ${t.name} deleted`);
          } catch (e) { showErrors(form, e); }
        } }, 'Delete for good'),
        h('button', { type: 'button', onclick: () => box.remove() }, 'Cancel'));
      form.append(box);
      box.querySelector('button').focus();
    }
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const before = { name: t.name, status: t.status, rateLimit: t.rateLimit ?? null };
      save(mergePatch(before, readTenant(form)));
    });
    detail.replaceChildren(...[notice, form].filter(Boolean));
  }

  if (selected) select(selected);
  else detail.append(h('p', { class: 'muted' }, 'Pick a tenant, or create one.'));

  const started = performance.now();
  loadTenants((items, done) => {
    if (stopped) return;
    all = items.slice().sort(byName);
    filter();
    if (done) {
      list.dataset.loaded = 'true';
      list.dataset.ms = String(Math.round(performance.now() - started));
    }
  }).catch((e) => { count.textContent = e.message; });

  return { stop() { stopped = true; } };
}
