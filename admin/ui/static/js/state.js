// Time travel: the whole state at any seq, the diff between two seqs, and
// a rollback that shows its diff first and asks to confirm.
import { api } from './api.js';
import { h, put, field, json, toast, params, go } from './dom.js';
import { can } from './app.js';

const SHOWN = 200; // rows per table; the JSON view has everything

export async function statePage(main) {
  const q = params();
  const head = (await api.status()).storeHeadSeq;
  const at = q.at !== undefined ? Number(q.at) : head;

  const seq = field({ label: 'Seq', name: 'at', type: 'number', value: at, attrs: { min: 0, max: head } });
  const slider = h('input', { type: 'range', id: 'seq-slider', min: 0, max: head, value: at, 'aria-label': 'Seq slider' });
  slider.addEventListener('input', () => { seq.input.value = slider.value; });
  seq.input.addEventListener('input', () => { slider.value = seq.input.value; });
  const atForm = h('form', { class: 'card', id: 'state-form' },
    h('h2', {}, 'State at a seq'), h('p', { class: 'muted' }, `The log's head is #${head}.`),
    h('div', { class: 'row' }, seq, h('div', { class: 'field grow' }, slider)),
    h('button', { type: 'submit', class: 'primary' }, 'Show state'));
  atForm.addEventListener('submit', (ev) => { ev.preventDefault(); go('state', { at: seq.input.value }); });

  const from = field({ label: 'From seq', name: 'from', type: 'number', value: q.from ?? Math.max(0, at - 1), attrs: { min: 0, max: head } });
  const to = field({ label: 'To seq', name: 'to', type: 'number', value: q.to ?? at, attrs: { min: 0, max: head } });
  const diffForm = h('form', { class: 'card', id: 'diff-form' }, h('h2', {}, 'Diff between two seqs'),
    h('div', { class: 'row' }, from, to), h('button', { type: 'submit' }, 'Show diff'));
  const diffOut = h('div', { id: 'diff-out' });
  diffForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    diffOut.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    try { diffOut.replaceChildren(renderDiff(await api.diff(from.input.value, to.input.value))); } catch (e) { diffOut.replaceChildren(h('p', { class: 'error', role: 'alert' }, e.message)); }
  });

  const stateOut = h('section', { class: 'card', id: 'state-out', 'aria-label': 'State' });
  const rollbackBox = h('section', { class: 'card', id: 'rollback' });

  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Time travel')),
    h('div', { class: 'split' }, atForm, diffForm), diffOut, stateOut, rollbackBox);

  try {
    const st = await api.state(at);
    renderState(stateOut, st);
  } catch (e) {
    stateOut.replaceChildren(h('p', { class: 'error', role: 'alert' }, e.message));
  }
  if (q.from !== undefined && q.to !== undefined) diffForm.requestSubmit();

  if (can('write') && at < head) {
    rollbackBox.append(h('h2', {}, `Roll back to #${at}`),
      h('p', {}, 'A rollback appends the events that make the state equal the state at this seq (API keys excepted). First see what it changes.'),
      h('button', { type: 'button', id: 'rollback-preview', onclick: preview }, 'Show what the rollback changes'));
  }

  async function preview() {
    const out = h('div', { id: 'rollback-diff' }, h('p', { class: 'muted' }, 'Loading…'));
    rollbackBox.querySelector('#rollback-diff')?.remove();
    rollbackBox.append(out);
    let d;
    try { d = await api.diff(head, at); } catch (e) { out.replaceChildren(h('p', { class: 'error' }, e.message)); return; }
    out.replaceChildren(renderDiff(d),
      d.changes.length
        ? h('div', { class: 'confirm', role: 'alertdialog', 'aria-label': 'Confirm rollback' },
          h('p', {}, `Apply these ${d.changes.length} changes to roll back to #${at}?`),
          h('button', { type: 'button', class: 'danger', id: 'rollback-confirm', onclick: confirm }, `Roll back to #${at}`),
          h('button', { type: 'button', onclick: () => out.remove() }, 'Cancel'))
        : h('p', {}, 'Nothing to roll back: the state already equals it.'));
    out.querySelector('#rollback-confirm')?.focus();
  }

  async function confirm(ev) {
    ev.target.disabled = true;
    try {
      const r = await api.rollback(at);
      toast(`Rolled back to #${at}: ${r.changes.length} changes, now at #${r.appliedSeq ?? head}`);
      put(rollbackBox, h('p', { id: 'rollback-done', role: 'status' }, `Rolled back to #${at} with ${r.changes.length} changes${r.appliedSeq ? `; the log is now at #${r.appliedSeq}` : ''}.`),
        r.appliedSeq ? h('button', { type: 'button', onclick: () => go('state', { at: r.appliedSeq }) }, 'Show the new state') : null);
    } catch (e) {
      ev.target.disabled = false;
      rollbackBox.append(h('p', { class: 'error', role: 'alert' }, e.message));
    }
  }
}

function renderState(box, st) {
  const tenants = st.tenants || [];
  const routes = st.routes || [];
  const names = new Map(tenants.map((t) => [t.id, t.name]));
  const jsonView = h('pre', { class: 'json', tabindex: '0' });
  const details = h('details', {}, h('summary', {}, 'JSON of the whole state'), jsonView);
  details.addEventListener('toggle', () => { if (details.open && !jsonView.textContent) jsonView.textContent = json(st); });
  put(box,
    h('h2', { id: 'state-title' }, `State at #${st.at}`),
    h('p', { id: 'state-summary' }, `${tenants.length} tenants, ${routes.length} routes`),
    h('h3', {}, 'Tenants'),
    table(['Name', 'Status', 'Rate limit', 'Version'], tenants.slice(0, SHOWN).map((t) => [t.name, t.status, t.rateLimit ? `${t.rateLimit.limit}/${t.rateLimit.windowMs} ms` : 'unlimited', t.version]), 'state-tenants'),
    tenants.length > SHOWN ? h('p', { class: 'muted' }, `… and ${tenants.length - SHOWN} more (see the JSON).`) : null,
    h('h3', {}, 'Routes'),
    routes.length ? null : h('p', { class: 'muted' }, 'No routes.'),
    table(['Tenant', 'Method', 'Path', 'Upstreams', 'Version'], routes.slice(0, SHOWN).map((r) => [names.get(r.tenantId) || r.tenantId, r.method, r.path, r.upstreams.map((u) => u.url).join(' '), r.version]), 'state-routes'),
    details);
}

function table(cols, rows, id) {
  return h('table', { class: 'grid', id },
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))));
}

// renderDiff shows each change with its fields' old and new values.
export function renderDiff(d) {
  if (!d.changes.length) return h('p', { class: 'diff-empty' }, `No changes between #${d.from} and #${d.to}.`);
  return h('div', { class: 'card diff' },
    h('h3', {}, `${d.changes.length} changes from #${d.from} to #${d.to}`),
    h('ul', { class: 'changes' }, d.changes.map((c) => h('li', { class: 'change ' + c.change },
      h('span', { class: 'badge ' + c.change }, c.change), ' ', h('strong', {}, c.aggregateType), ' ', h('code', {}, c.aggregateId),
      c.fields ? h('table', { class: 'grid' },
        h('thead', {}, h('tr', {}, ['Field', 'From', 'To'].map((x) => h('th', { scope: 'col' }, x)))),
        h('tbody', {}, Object.entries(c.fields).map(([k, v]) => h('tr', {},
          h('td', {}, k), h('td', {}, h('code', { class: 'from' }, short(v.from))), h('td', {}, h('code', { class: 'to' }, short(v.to)))))))
        : null))));
}

function short(v) {
  if (v === undefined) return '—';
  const s = JSON.stringify(v);
  return s.length > 300 ? s.slice(0, 300) + '…' : s;
}
