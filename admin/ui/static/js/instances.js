// The cluster's instances with their appliedSeq and lag, polled every 2 s.
import { api } from './api.js';
import { h, fmtTime } from './dom.js';

export function instancesPage(main) {
  const body = h('tbody', { id: 'instances-body' });
  const info = h('p', { class: 'muted', id: 'instances-info', 'aria-live': 'polite' });
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Instances')), info,
    h('div', { class: 'card scroll-x' }, h('table', { class: 'grid', id: 'instances' },
      h('thead', {}, h('tr', {}, ['Instance', 'Applied seq', 'Behind', 'Lag', 'Ready', 'State hash', 'Started', 'Last seen'].map((c) => h('th', { scope: 'col' }, c)))),
      body)));

  async function refresh() {
    try {
      const [st, list] = await Promise.all([api.status(), api.instances()]);
      const head = st.storeHeadSeq;
      info.textContent = `Log head #${head}; this console talks to ${st.instanceId} (${st.store}, ${st.bus} bus). Updated ${new Date().toLocaleTimeString()}.`;
      body.replaceChildren(...list.items.map((i) => h('tr', { dataset: { instance: i.instanceId } },
        h('td', {}, h('code', {}, i.instanceId), i.instanceId === st.instanceId ? h('span', { class: 'badge' }, 'this') : null),
        h('td', { class: 'applied' }, i.appliedSeq),
        h('td', {}, head - i.appliedSeq > 0 ? `${head - i.appliedSeq} events` : 'up to date'),
        h('td', {}, `${i.lagMs} ms`),
        h('td', {}, h('span', { class: 'badge ' + (i.ready ? 'ok' : 'bad') }, i.ready ? 'ready' : 'not ready')),
        h('td', {}, h('code', {}, (i.stateHash || '').slice(0, 12))),
        h('td', {}, fmtTime(i.startedAt)), h('td', {}, fmtTime(i.lastSeenAt)))));
    } catch (e) {
      info.textContent = e.message;
    }
  }
  refresh();
  const timer = setInterval(refresh, 2000);
  return { stop() { clearInterval(timer); } };
}
