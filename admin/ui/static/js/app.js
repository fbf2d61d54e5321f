// The console's entry: sign-in, who is signed in, and the hash router.
import { api, session, whenUnauthorized, ApiError } from './api.js';
import { h } from './dom.js';
import { tenantsPage } from './tenants.js';
import { routesPage } from './routes.js';
import { eventsPage } from './events.js';
import { statePage } from './state.js';
import { instancesPage } from './instances.js';

const pages = { tenants: tenantsPage, routes: routesPage, events: eventsPage, state: statePage, instances: instancesPage };

// me is who is signed in, as GET /admin/whoami says. A gateway without
// named keys has no whoami (404): its only key is the root key.
export const me = { root: true, role: 'admin', name: 'root', tenantIds: undefined };

// can tells whether the signed-in key may do what: 'read', 'write' (tenants,
// routes, apply, rollback) or 'keys'. What it may not do is not offered.
export function can(what) {
  if (me.root) return true;
  const rank = { viewer: 0, operator: 1, admin: 2 }[me.role] ?? 0;
  if (what === 'write') return rank >= 1;
  if (what === 'keys') return rank >= 2;
  if (what === 'createTenant') return rank >= 1 && !me.tenantIds;
  return true;
}

async function identify(key) {
  try {
    const w = await api.whoami(key);
    Object.assign(me, { root: !!w.root, role: w.role || (w.root ? 'admin' : 'viewer'), name: w.name || (w.root ? 'root' : ''), tenantIds: w.tenantIds });
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
    await api.status(key); // no named keys here: a key /admin/status accepts is the root key
    Object.assign(me, { root: true, role: 'admin', name: 'root', tenantIds: undefined });
  }
}

function showSignin(message) {
  document.getElementById('shell').hidden = true;
  document.getElementById('signin').hidden = false;
  const err = document.getElementById('signin-error');
  err.textContent = message || '';
  err.hidden = !message;
  document.getElementById('signin-key').focus();
}

async function signIn(ev) {
  ev.preventDefault();
  const form = ev.target;
  const key = form.key.value.trim();
  const button = form.querySelector('button');
  if (!key) return showSignin('Enter an admin key.');
  button.disabled = true;
  try {
    await identify(key);
    session.save(key, me.root ? form.actor.value.trim() : '');
    form.reset();
    start();
  } catch (e) {
    showSignin(e.status === 401 ? 'That admin key was not accepted.' : `Could not sign in: ${e.message}`);
  } finally {
    button.disabled = false;
  }
}

function signOut() {
  session.clear();
  stopPage();
  document.getElementById('main').replaceChildren();
  showSignin('');
}

let current = { stop() {} };
function stopPage() { current.stop?.(); current = { stop() {} }; }

function render() {
  if (!session.key) return;
  const name = (location.hash.match(/^#\/([a-z]+)/) || [])[1] || 'tenants';
  const page = pages[name] || tenantsPage;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  stopPage();
  const main = document.getElementById('main');
  main.replaceChildren();
  current = page(main) || current;
}

function start() {
  document.getElementById('signin').hidden = true;
  document.getElementById('shell').hidden = false;
  const who = document.getElementById('who');
  who.replaceChildren(h('span', {}, me.root ? (session.actor || 'root key') : me.name), ' ', h('span', { class: 'badge', id: 'role' }, me.role));
  document.body.dataset.role = me.role;
  render();
  document.getElementById('main').focus();
}

whenUnauthorized(() => { session.clear(); showSignin('Your admin key is no longer accepted. Sign in again.'); });
window.addEventListener('hashchange', render);
document.getElementById('signin-form').addEventListener('submit', signIn);
document.getElementById('signout').addEventListener('click', signOut);

if (session.key) {
  identify(session.key).then(start, () => { session.clear(); showSignin(''); });
} else {
  showSignin('');
}
