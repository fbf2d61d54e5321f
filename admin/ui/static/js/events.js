// The event timeline, newest first, with filters. Tenant, aggregate type
// and aggregate id filter on the server; actor and type filter the events
// read so far (the API has no such query), and "Older" reads further back.
import { api } from './api.js';
import { h, field, fmtTime, json, params, go } from './dom.js';

const TYPES = ['', 'TenantCreated', 'TenantUpdated', 'TenantApiKeyRotated', 'TenantDeleted', 'RouteCreated', 'RouteUpdated', 'RouteDeleted', 'AdminKeyCreated', 'AdminKeyRevoked'];
const PAGE = 1000;

export function eventsPage(main) {
  const q = params();
  const f = {
    tenantId: field({ label: 'Tenant id', name: 'tenantId', value: q.tenantId }),
    aggregateType: field({ label: 'Aggregate', name: 'aggregateType', value: q.aggregateType || '', options: [['', 'any'], 'tenant', 'route', 'adminKey'] }),
    aggregateId: field({ label: 'Aggregate id (route or tenant)', name: 'aggregateId', value: q.aggregateId }),
    actor: field({ label: 'Actor', name: 'actor', value: q.actor }),
    type: field({ label: 'Type', name: 'type', value: q.type || '', options: TYPES.map((t) => [t, t || 'any']) }),
  };
  const form = h('form', { class: 'filters card', id: 'event-filters' }, Object.values(f), h('button', { type: 'submit', class: 'primary' }, 'Filter'));
  const out = h('ol', { class: 'timeline', id: 'timeline', reversed: true });
  const more = h('button', { type: 'button', id: 'older', hidden: true }, 'Older events');
  const info = h('p', { class: 'muted', id: 'timeline-info', 'aria-live': 'polite' });
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Events')), form, info, out, more);

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = Object.fromEntries(Object.entries(f).map(([k, w]) => [k, w.input.value.trim()]));
    go('events', v);
  });

  const server = { tenantId: q.tenantId, aggregateType: q.aggregateType, aggregateId: q.aggregateId };
  if (server.aggregateId && !server.aggregateType) server.aggregateType = 'route';
  let loaded = []; // ascending
  let floor = null; // the lowest 'after' read so far

  const keep = (e) => (!q.actor || e.actor === q.actor) && (!q.type || e.type === q.type);

  async function readWindow(after) {
    const page = await api.events({ ...server, after, limit: PAGE });
    return page.items;
  }

  // With filters on the server the log is read forwards from 0 (a filtered
  // read skips what does not match); without, the newest PAGE events first.
  async function first() {
    const filtered = server.tenantId || server.aggregateId;
    let after = 0;
    if (!filtered) {
      const st = await api.status();
      after = Math.max(0, st.storeHeadSeq - PAGE);
    }
    floor = after;
    loaded = [];
    let items;
    do {
      items = await readWindow(after);
      loaded.push(...items);
      if (items.length) after = items[items.length - 1].seq;
    } while (filtered && items.length === PAGE);
    paint();
  }

  async function older() {
    const from = Math.max(0, floor - PAGE);
    const items = (await readWindow(from)).filter((e) => e.seq <= floor);
    floor = from;
    loaded = [...items, ...loaded];
    paint();
  }
  more.addEventListener('click', older);

  function paint() {
    const shown = loaded.filter(keep).reverse();
    info.textContent = `${shown.length} events${floor > 0 ? ` since seq ${floor + 1}` : ''}`;
    more.hidden = !(floor > 0);
    out.replaceChildren(...shown.slice(0, 2000).map(item));
  }

  function item(e) {
    return h('li', { class: 'event', dataset: { seq: e.seq, type: e.type } },
      h('details', {},
        h('summary', {},
          h('span', { class: 'seq' }, `#${e.seq}`), ' ',
          h('strong', {}, e.type), ' ',
          h('span', { class: 'muted' }, `${e.aggregateType} ${e.aggregateId.slice(0, 8)} v${e.aggregateVersion} by ${e.actor}, ${fmtTime(e.occurredAt)}`)),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Aggregate'), h('dd', {}, h('code', {}, e.aggregateId)),
          e.tenantId ? [h('dt', {}, 'Tenant'), h('dd', {}, h('code', {}, e.tenantId))] : null,
          e.actorKeyId ? [h('dt', {}, 'Actor key'), h('dd', {}, h('code', {}, e.actorKeyId))] : null),
        h('pre', { class: 'json' }, json(e.data)),
        h('div', { class: 'actions' },
          h('button', { type: 'button', class: 'link', onclick: () => go('events', { aggregateType: e.aggregateType, aggregateId: e.aggregateId }) }, 'History of this ' + e.aggregateType),
          h('button', { type: 'button', class: 'link', onclick: () => go('state', { at: e.seq }) }, `State at #${e.seq}`),
          h('button', { type: 'button', class: 'link', onclick: () => go('state', { from: e.seq - 1, to: e.seq }) }, 'Diff of this event'))));
  }

  first().catch((e) => { info.textContent = e.message; });
}
