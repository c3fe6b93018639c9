// The fibergun console: the admin API (signed in by the console's cookie) drawn as a page.
'use strict';

const $ = (id) => document.getElementById(id);
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; };

async function api(method, path) {
  const r = await fetch('/api/v1/admin/' + path, { method, credentials: 'same-origin' });
  if (r.status === 401) { location.href = '/admin'; throw new Error('signed out'); }
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error((body && body.error) || r.statusText);
  return body;
}
const enc = (s) => s.split('/').map(encodeURIComponent).join('/');

function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0; while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + units[i];
}
function duration(secs) {
  if (secs < 60) return Math.round(secs) + ' s';
  if (secs < 3600) return Math.round(secs / 60) + ' min';
  if (secs < 86400) return (secs / 3600).toFixed(1) + ' h';
  return (secs / 86400).toFixed(1) + ' d';
}
const number = (n) => (n === null || n === undefined) ? '–' : Number(n).toLocaleString('en');

// ---- views
function show(view) {
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== view;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === view);
  if (view === 'moderation') loadModeration();
  if (view === 'graph' && !$('souls').childElementCount) findSouls(true);
}
window.addEventListener('hashchange', () => show(location.hash.slice(1) || 'overview'));

// ---- the relay at a glance
function chart(svg, series, names) {
  const W = 600, H = 160, L = 44, B = 18;
  svg.replaceChildren();
  const ns = 'http://www.w3.org/2000/svg';
  const add = (tag, attrs, text) => { const e = document.createElementNS(ns, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text; svg.appendChild(e); return e; };
  const values = series.flat().filter((v) => v !== null && v !== undefined);
  const top = values.length ? Math.max(...values) : 0;
  const max = (top > 0 ? top : 1) * 1.1;
  const label = (v) => (v >= 100 ? Math.round(v) : Number(v.toPrecision(2))).toLocaleString('en');
  add('line', { x1: L, y1: H - B, x2: W, y2: H - B, class: 'axis' });
  for (const f of [0.5, 1]) {
    const y = (H - B) - f * (H - B - 6);
    add('line', { x1: L, y1: y, x2: W, y2: y, class: 'axis' });
    add('text', { x: 2, y: y + 3 }, label(max * f / 1.1));
  }
  series.forEach((points, i) => {
    if (points.length < 2) return;
    const step = (W - L) / (points.length - 1);
    const d = points.map((v, j) => `${j ? 'L' : 'M'}${(L + j * step).toFixed(1)},${((H - B) - ((v || 0) / max) * (H - B - 6)).toFixed(1)}`).join(' ');
    add('path', { d, class: 's' + i });
    add('text', { x: L + 6 + i * 90, y: H - 4, class: 's' + i }, '— ' + names[i]);
  });
}

async function loadStatus() {
  let s;
  try { s = await api('GET', 'status'); } catch (e) { return; }
  $('version').textContent = 'v' + s.version;
  $('conn-open').textContent = number(s.connections.open);
  const kinds = {};
  for (const c of s.connections.listed) kinds[c.kind] = (kinds[c.kind] || 0) + 1;
  $('conn-detail').textContent = Object.entries(kinds).map(([k, n]) => `${n} ${k}${n > 1 && k !== 'in-process' ? 's' : ''}`).join(', ') || 'none';
  $('store-used').textContent = bytes(s.store.used_bytes);
  $('store-detail').textContent = `${s.store.kind}` + (s.store.nodes !== null ? `, ${number(s.store.nodes)} nodes, ${number(s.store.fields)} fields` : '') + (s.store.quota_bytes ? `, quota ${bytes(s.store.quota_bytes)}` : '');
  $('puts-total').textContent = number(s.totals.puts_acked);
  $('puts-detail').textContent = `acked of ${number(s.totals.puts_received)} received, ${number(s.totals.puts_refused)} refused; ${number(s.totals.gets_received)} GETs`;
  $('memory').textContent = bytes(s.totals.resident_bytes);
  const r = s.rules;
  $('rules').textContent = [r.signed_only ? 'signed writes only' : 'open writes', r.user_quota_bytes && `user quota ${bytes(r.user_quota_bytes)}`, r.public_quota_bytes && `public quota ${bytes(r.public_quota_bytes)}`, r.writes_per_key_per_sec && `${r.writes_per_key_per_sec} writes/s a key`].filter(Boolean).join(', ');
  const h = s.history;
  $('sampled').textContent = h.length ? `(every ${s.sample_every_secs} s, since ${new Date(h[0].t).toLocaleTimeString()})` : '(the first samples come in a few seconds)';
  chart($('chart-rates'), [h.map((p) => p.puts_per_sec), h.map((p) => p.gets_per_sec), h.map((p) => p.acks_per_sec)], ['puts', 'GETs', 'acks']);
  chart($('chart-latency'), [h.map((p) => p.ack_p50_ms), h.map((p) => p.ack_p99_ms)], ['p50', 'p99']);
  chart($('chart-memory'), [h.map((p) => p.resident_bytes / 1048576)], ['resident']);
  const peers = $('peers').tBodies[0];
  peers.replaceChildren();
  for (const p of s.peers) {
    const tr = peers.insertRow();
    for (const v of [p.url, p.upstream ? 'upstream' : 'peer', p.state, number(p.failures), number(p.pending)]) tr.appendChild(el('td', v));
  }
  if (!s.peers.length) { const tr = peers.insertRow(); const td = el('td', 'No configured peers or upstreams.', 'empty'); td.colSpan = 5; tr.appendChild(td); }
  const conns = $('connections').tBodies[0];
  conns.replaceChildren();
  for (const c of s.connections.listed) {
    const tr = conns.insertRow();
    for (const v of [c.id, c.kind + (c.dialled ? ' (dialled)' : ''), c.addr || '–', bytes(c.queued_bytes), duration(c.age_secs)]) tr.appendChild(el('td', String(v)));
  }
}

// ---- the graph
let nextAfter = null;
async function findSouls(fresh) {
  const prefix = $('prefix').value;
  if (fresh) { nextAfter = null; $('souls').replaceChildren(); }
  const q = new URLSearchParams({ prefix, limit: '100' });
  if (nextAfter) q.set('after', nextAfter);
  let page;
  try { page = await api('GET', 'souls?' + q); } catch (e) { $('souls').appendChild(el('li', e.message, 'error')); return; }
  for (const s of page.souls) {
    const a = el('a');
    a.href = '#graph';
    a.dataset.soul = s.soul;
    a.append(el('code', s.soul), el('span', s.fields + (s.fields === 1 ? ' field' : ' fields')));
    a.addEventListener('click', (ev) => { ev.preventDefault(); openNode(s.soul); });
    const li = el('li'); li.appendChild(a); $('souls').appendChild(li);
  }
  if (fresh && !page.souls.length) $('souls').appendChild(el('li', 'No souls start with that.', 'empty'));
  nextAfter = page.next;
  $('more').hidden = !page.next;
}
$('find') && $('find').addEventListener('submit', (ev) => { ev.preventDefault(); findSouls(true); });
$('more') && $('more').addEventListener('click', () => findSouls(false));

let watching = null;
async function openNode(soul) {
  for (const a of document.querySelectorAll('#souls a')) a.classList.toggle('open', a.dataset.soul === soul);
  if (watching) { watching.close(); watching = null; }
  $('node').hidden = false;
  $('node-soul').textContent = soul;
  $('live').textContent = '';
  await drawNode(soul, null);
  watching = new EventSource('/api/v1/admin/watch/' + enc(soul));
  watching.addEventListener('open', () => { $('live').textContent = '● live'; });
  watching.addEventListener('change', () => drawNode(soul, 'changed'));
  watching.addEventListener('error', () => { $('live').textContent = 'reconnecting…'; });
}

let shown = {};
async function drawNode(soul, mark) {
  let node;
  const body = $('fields').tBodies[0];
  try { node = await api('GET', 'nodes/' + enc(soul)); } catch (e) {
    body.replaceChildren();
    const tr = body.insertRow(); const td = el('td', e.message, 'error'); td.colSpan = 3; tr.appendChild(td);
    return;
  }
  if ($('node-soul').textContent !== soul) return;
  const before = shown; shown = {};
  body.replaceChildren();
  for (const f of node.fields) {
    const tr = body.insertRow();
    tr.dataset.key = f.key;
    const text = JSON.stringify(f.value);
    shown[f.key] = text + '@' + f.state;
    if (mark && before[f.key] !== shown[f.key]) tr.className = mark;
    tr.appendChild(el('td', f.key));
    const value = el('td', undefined, 'value');
    if (f.link) {
      const a = el('a', '→ ' + f.link, 'link');
      a.addEventListener('click', () => openNode(f.link));
      value.appendChild(a);
    } else {
      value.textContent = text;
    }
    tr.appendChild(value);
    const state = el('td', typeof f.state === 'number' ? new Date(f.state).toISOString().replace('T', ' ').replace('Z', ' UTC') : '–', 'state');
    state.title = String(f.state);
    tr.appendChild(state);
  }
}

// ---- bans and takedowns
async function loadModeration() {
  const error = $('moderation-error');
  try {
    const [bans, downs] = await Promise.all([api('GET', 'bans'), api('GET', 'takedowns')]);
    list($('bans'), bans.bans, 'No key is banned.', [['Lift', 'quiet-dark', (k) => api('DELETE', 'bans/' + encodeURIComponent(k))]]);
    list($('takedowns'), downs.takedowns, 'No soul is taken down.', [
      ['Restore', 'quiet-dark', (s) => api('DELETE', 'takedowns/' + enc(s))],
      ['Purge', 'danger', (s) => confirm(`Erase every field of ${s}? This cannot be undone.`) && api('POST', 'purge/' + enc(s))],
    ]);
    error.hidden = true;
  } catch (e) { error.textContent = e.message; error.hidden = false; }
}
function list(ul, names, empty, actions) {
  ul.replaceChildren();
  if (!names.length) ul.appendChild(el('li', empty, 'empty'));
  for (const name of names) {
    const li = el('li');
    li.appendChild(el('code', name));
    for (const [label, cls, act] of actions) {
      const b = el('button', label, cls);
      b.addEventListener('click', async () => {
        try { await act(name); } catch (e) { $('moderation-error').textContent = e.message; $('moderation-error').hidden = false; }
        loadModeration();
      });
      li.appendChild(b);
    }
    ul.appendChild(li);
  }
}
async function submitTo(form, input, call) {
  $(form).addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = $(input).value.trim();
    if (!v) return;
    try { await call(v); $(input).value = ''; } catch (e) { $('moderation-error').textContent = e.message; $('moderation-error').hidden = false; }
    loadModeration();
  });
}
submitTo('ban', 'ban-key', (k) => api('PUT', 'bans/' + encodeURIComponent(k)));
submitTo('takedown', 'takedown-soul', (s) => api('PUT', 'takedowns/' + enc(s)));

show(location.hash.slice(1) || 'overview');
loadStatus();
setInterval(() => { if (!$('overview').hidden) loadStatus(); }, 2000);
