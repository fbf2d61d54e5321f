// Tiny DOM helpers. Text always goes in as text (never as HTML), so data
// from the API cannot inject markup.

// h builds an element: h('button', {class: 'x', onclick: f}, 'text', child).
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// put replaces el's children, skipping null and false as h does
// (replaceChildren would show them as text).
export function put(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

let ids = 0;
// uid gives a fresh id for label/input pairs.
export function uid(prefix) { ids += 1; return `${prefix || 'f'}-${ids}`; }

// field is a labelled input. opts: {label, name (the API field path), type,
// value, options (for select), help, attrs}. The error element after it
// receives the API's validation message for that field.
export function field(opts) {
  const id = uid('in');
  const errId = id + '-err';
  let input;
  const common = { id, name: opts.name, 'aria-describedby': errId, dataset: { field: opts.name || '' }, ...(opts.attrs || {}) };
  if (opts.options) {
    input = h('select', common, opts.options.map((o) => {
      const [v, label] = Array.isArray(o) ? o : [o, o];
      return h('option', { value: v, selected: String(v) === String(opts.value ?? '') }, label);
    }));
  } else if (opts.type === 'textarea') {
    input = h('textarea', { ...common, rows: opts.rows || 3 });
    input.value = opts.value ?? '';
  } else if (opts.type === 'checkbox') {
    input = h('input', { ...common, type: 'checkbox', checked: !!opts.value });
  } else {
    input = h('input', { ...common, type: opts.type || 'text', value: opts.value ?? '' });
  }
  const wrap = h('div', { class: 'field' + (opts.type === 'checkbox' ? ' check' : '') },
    opts.type === 'checkbox' ? [input, h('label', { for: id }, opts.label)] : [h('label', { for: id }, opts.label), input],
    opts.help ? h('small', { class: 'muted' }, opts.help) : null,
    h('span', { class: 'error field-error', id: errId, role: 'alert', hidden: true }));
  wrap.input = input;
  return wrap;
}

// showErrors puts each validation detail next to the input whose
// data-field is its field; the rest go into the form's general error box.
export function showErrors(form, err) {
  clearErrors(form);
  const general = form.querySelector('.form-error');
  const rest = [];
  for (const d of err.details || []) {
    const input = findField(form, d.field);
    if (input) {
      const box = document.getElementById(input.getAttribute('aria-describedby'));
      box.textContent = d.message;
      box.hidden = false;
      input.setAttribute('aria-invalid', 'true');
    } else {
      rest.push(`${d.field}: ${d.message}`);
    }
  }
  if (general) {
    general.textContent = [err.message, ...rest].join(' — ');
    general.hidden = false;
  }
  const first = form.querySelector('[aria-invalid="true"]');
  if (first) first.focus();
}

// findField finds the input for an API field path, or for its nearest
// parent path (resilience.retry -> the retry block's first input).
function findField(form, path) {
  let p = path;
  while (p) {
    const el = [...form.querySelectorAll('[data-field]')].find((e) => e.dataset.field === p);
    if (el) return el;
    const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['));
    p = cut > 0 ? p.slice(0, cut) : '';
  }
  return null;
}

export function clearErrors(form) {
  for (const e of form.querySelectorAll('.field-error, .form-error')) { e.hidden = true; e.textContent = ''; }
  for (const e of form.querySelectorAll('[aria-invalid]')) e.removeAttribute('aria-invalid');
}

export function fmtTime(s) {
  if (!s) return '';
  const d = new Date(s);
  return isNaN(d) ? s : d.toLocaleString();
}

export function json(v) { return JSON.stringify(v, null, 2); }

// toast announces the outcome of an action.
export function toast(msg, kind) {
  const t = document.getElementById('toast');
  t.textContent = msg;
  t.className = 'toast show ' + (kind || '');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = 'toast'; }, 4000);
}

// params reads the query of the hash (#/events?tenantId=x).
export function params() {
  const q = location.hash.split('?')[1] || '';
  return Object.fromEntries(new URLSearchParams(q));
}

export function go(page, query) {
  const q = query ? '?' + new URLSearchParams(Object.entries(query).filter(([, v]) => v !== '' && v != null)) : '';
  location.hash = `#/${page}${q}`;
}
