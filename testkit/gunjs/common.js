// Shared helpers for the interop scenarios.
//
// Every scenario script is run as `node <script>.js http://127.0.0.1:PORT/gun` and exits 0 on success,
// non-zero (with a message on stderr) on failure. The clients are "browser-like" GUN clients: core
// `gun/gun.js` only (what a browser loads) with the `ws` package as the WebSocket implementation. We never
// require('gun') (= lib/server.js) here, so GUN's UDP multicast, AXE, radisk and stats modules are never
// loaded; MULTICAST=false is set anyway as a second guard.
'use strict';
process.env.MULTICAST = 'false';

const path = require('path');

// Use the `ws` that gun itself depends on, wherever npm placed it.
const WS = require(require.resolve('ws', { paths: [path.dirname(require.resolve('gun/package.json'))] }));

// Quiet GUN's console chatter ("Hello wonderful person! :)" etc.) unless GUN_LOG is set.
if (!process.env.GUN_LOG) {
  const log = console.log;
  console.log = (...a) => { if (typeof a[0] === 'string' && /wonderful person|AXE relay|Warning: No localStorage/.test(a[0])) return; log(...a); };
}
const Gun = require('gun/gun');

const T0 = Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function note(...a) {
  console.log(`[${String(Date.now() - T0).padStart(5)} ms]`, ...a);
}

function fail(msg) {
  console.error(`FAIL (${path.basename(process.argv[1])}, after ${Date.now() - T0} ms): ${msg}`);
  process.exit(1);
}

// argv[2] is the peer URL; only loopback peers are allowed.
function peerUrl() {
  const url = process.argv[2];
  if (!url) fail('usage: node ' + path.basename(process.argv[1]) + ' http://127.0.0.1:PORT/gun');
  let u;
  try { u = new URL(url); } catch (e) { fail('bad peer url ' + JSON.stringify(url)); }
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)) fail('refusing non-loopback peer ' + url);
  if (!/^(http|ws)s?:$/.test(u.protocol)) fail('peer url must be http(s):// or ws(s)://, got ' + url);
  return url;
}

// ws://… form of the peer URL for raw clients.
function wsUrl(url) { return url.replace(/^http/, 'ws'); }

// Overall deadline so nothing hangs; GUN keeps sockets open, so success must call pass().
function deadline(ms) {
  const t = setTimeout(() => fail(`overall timeout of ${ms} ms reached`), ms);
  return t;
}

function pass(msg) {
  console.log(`PASS (${path.basename(process.argv[1])}, ${Date.now() - T0} ms)${msg ? ': ' + msg : ''}`);
  process.exit(0);
}

// GUN_WIRE_LOG=1 prints every frame the GUN clients send and receive (to stderr), labelled A, B, C... in
// creation order.
const wireLog = !!process.env.GUN_WIRE_LOG;
function loggingWS(label) {
  return class extends WS {
    constructor(u, p) {
      super(u, p);
      this.on('message', (d) => console.error(`[${String(Date.now() - T0).padStart(5)} ms] ${label} <- ${d.toString().slice(0, 400)}`));
      const send = this.send.bind(this);
      this.send = (x, ...r) => { console.error(`[${String(Date.now() - T0).padStart(5)} ms] ${label} -> ${String(x).slice(0, 400)}`); return send(x, ...r); };
    }
  };
}

// A fresh browser-like GUN client with its own empty in-memory graph.
// localStorage:false matters: gun.js's localStorage adapter falls back to ONE module-level in-memory object
// when no window.localStorage exists, so without it every Gun instance in this process would share (and
// read each other's) "disk" -- a second client would not be fresh. It also means puts are acked only by
// the relay (with localStorage on, the client acks its own puts locally).
let clients = 0;
function client(url, extra) {
  const label = String.fromCharCode(65 + (clients++ % 26));
  const gun = Gun(Object.assign({ peers: [url], WebSocket: wireLog ? loggingWS(label) : WS, localStorage: false, multicast: false, axe: false }, extra || {}));
  const g = gun._.graph || {};
  if (Object.keys(g).length !== 0) fail('a new Gun instance did not start with an empty graph: ' + Object.keys(g).join(','));
  return gun;
}

// Whether a Gun instance currently has an open socket to the peer.
function connected(gun) {
  const peers = gun._.opt.peers || {};
  return Object.values(peers).some((p) => p.wire && p.wire.readyState === 1);
}

async function waitConnected(gun, ms, what) {
  const end = Date.now() + (ms || 5000);
  while (!connected(gun)) {
    if (Date.now() > end) fail(`${what || 'client'} did not connect to the relay within ${ms || 5000} ms`);
    await sleep(10);
  }
}

// Poll until pred() is truthy; returns its value, or fails with msg.
async function until(pred, ms, msg) {
  const end = Date.now() + ms;
  for (;;) {
    const v = pred();
    if (v) return v;
    if (Date.now() > end) fail(typeof msg === 'function' ? msg() : msg);
    await sleep(10);
  }
}

// Resolve with {data, key, ms} from the first .once() callback; fail after ms.
function once(chain, ms, what) {
  const start = Date.now();
  return new Promise((res) => {
    const to = setTimeout(() => fail(`${what}: .once() did not fire within ${ms} ms`), ms);
    chain.once((data, key) => { clearTimeout(to); res({ data, key, ms: Date.now() - start }); });
  });
}

// INTEROP_RELAY=gunjs: the peer is the stock GUN JS relay (gunjs-relay.js), used to validate these scripts.
// That relay sometimes never acks a put (observed: 10-20 % of puts that add a key to a node which is still
// being written by radisk, e.g. the list node of set()); with this flag a missing ack is only a warning.
// fibergun must ack every put, so the default is strict.
const GUNJS = process.env.INTEROP_RELAY === 'gunjs';

// Run fn(cb) (a put/set with callback cb) and resolve with {ack, ms} for the first ack, which must not be an
// error. Fails after ms without an ack (or, against GUN JS, warns after 2.5 s and resolves {ack: null}).
function acked(fn, ms, what) {
  const start = Date.now();
  return new Promise((res) => {
    const wait = GUNJS ? Math.min(ms, 2500) : ms;
    const to = setTimeout(() => {
      if (!GUNJS) fail(`${what}: no ack within ${ms} ms`);
      note(`WARN ${what}: no ack within ${wait} ms (tolerated: INTEROP_RELAY=gunjs)`);
      res({ ack: null, ms: Date.now() - start });
    }, wait);
    fn((ack) => {
      clearTimeout(to);
      if (ack.err) fail(`${what}: nacked: ${JSON.stringify(ack.err)}`);
      res({ ack, ms: Date.now() - start });
    });
  });
}
// A put or set through GUN JS's API, made in a fresh millisecond. A client's second state within one
// millisecond is t + 0.001; a GUN JS relay whose clock still reads t defers such a "future" write
// (gun.js ham()) and never acknowledges a deferred write (back() waits on its stun forever). The
// first state of a millisecond is t itself, never ahead of a relay on this machine.
function freshMillisecond() {
  const t = Date.now();
  while (Date.now() === t) { /* at most 1 ms */ }
}
const put = (chain, value, ms, what) => acked((cb) => { freshMillisecond(); chain.put(value, cb); }, ms, what);
const set = (chain, value, ms, what) => acked((cb) => { freshMillisecond(); chain.set(value, cb); }, ms, what);

// Strip GUN metadata from node data for comparisons.
function plain(d) {
  if (d === undefined || d === null || typeof d !== 'object') return d;
  const o = {};
  for (const k of Object.keys(d)) if (k !== '_') o[k] = d[k];
  return o;
}

// JSON text with object keys sorted, for order-insensitive comparisons.
function canon(v) {
  if (Array.isArray(v)) return '[' + v.map(canon).join(',') + ']';
  if (v && typeof v === 'object') return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canon(v[k])).join(',') + '}';
  return JSON.stringify(v === undefined ? null : v);
}

function assertEq(actual, expected, what) {
  const a = canon(actual); const e = canon(expected);
  if (a !== e) fail(`${what}: expected ${e}, got ${a}`);
}

// A raw GUN-wire client on a bare `ws` socket. Frames are parsed as one message or an array of them.
function rawClient(url) {
  const ws = new WS(wsUrl(url));
  const c = { ws, inbox: [], closed: null };
  c.opened = new Promise((res, rej) => { ws.once('open', res); ws.once('error', (e) => rej(e)); });
  ws.on('error', () => {});
  ws.on('close', (code) => { c.closed = { code }; });
  ws.on('message', (d) => {
    const s = d.toString();
    let msgs;
    try { const j = JSON.parse(s); msgs = Array.isArray(j) ? j : [j]; } catch (e) { msgs = [{ __unparsed: s }]; }
    for (const m of msgs) c.inbox.push(m);
  });
  c.send = (o) => ws.send(typeof o === 'string' ? o : JSON.stringify(o));
  c.reply = (id) => c.inbox.find((m) => m && m['@'] === id);
  c.waitReply = (id, ms, what) => until(() => c.reply(id) || (c.closed && fail(`${what}: raw socket closed (${c.closed.code}) while waiting for a reply to ${id}`)), ms, `${what}: no reply to ${id} within ${ms} ms`);
  c.close = () => { try { ws.close(); } catch (e) { /* ignore */ } };
  return c;
}

// A one-node put message with the same state for every key.
function putMsg(id, soul, obj, state) {
  const st = {}; const node = { _: { '#': soul, '>': st } };
  for (const k of Object.keys(obj)) { node[k] = obj[k]; st[k] = state; }
  return { '#': id, put: { [soul]: node } };
}

// A random suffix so repeated runs against one long-lived relay do not collide.
const RUN = Date.now().toString(36) + Math.random().toString(36).slice(2, 7);

// The first ack of fn(cb) (a put or a user call through GUN JS's API), err or not; fails after ms.
function firstAck(fn, ms, what) {
  return new Promise((res) => {
    const to = setTimeout(() => fail(`${what}: no ack within ${ms} ms`), ms);
    fn((ack) => { clearTimeout(to); res(ack); });
  });
}

// A user call (create, auth) that must succeed.
async function userCall(fn, ms, what) {
  const ack = await firstAck(fn, ms, what);
  if (ack && ack.err) fail(`${what}: ${JSON.stringify(ack.err)}`);
  return ack;
}

// The wire form of a value signed the way GUN JS signs a put into a user's space (`extra`
// adds fields such as a certificate `+` and its writer `*`).
async function seaSigned(pair, soul, key, value, state, extra) {
  const SEA = require('gun/sea');
  const sig = await SEA.sign({ '#': soul, '.': key, ':': value, '>': state }, pair, null, { raw: 1 });
  if (!sig || !sig.s) fail('SEA.sign failed: ' + SEA.err);
  return JSON.stringify(Object.assign({ ':': value, '~': sig.s }, extra || {}));
}

// GETs and PUTs over one raw socket, each with an id of its own: get(soul) resolves with the
// node the relay answers (or undefined), put(what, soul, fields, state) with its reply.
async function rawGraph(url) {
  const r = rawClient(url);
  await r.opened;
  let n = 0;
  return {
    get: async (soul) => {
      const id = 'g' + (n++) + '-' + RUN;
      r.send({ '#': id, get: { '#': soul } });
      const rep = await r.waitReply(id, 5000, 'raw GET ' + soul);
      return rep.put && rep.put[soul];
    },
    put: async (what, soul, fields, state) => {
      const id = 'p' + (n++) + '-' + RUN;
      r.send(putMsg(id, soul, fields, state));
      return r.waitReply(id, 5000, what);
    },
  };
}

module.exports = {
  Gun, WS, sleep, note, fail, pass, peerUrl, wsUrl, deadline, client, connected, waitConnected, until, once,
  put, set, acked, GUNJS, plain, canon, assertEq, rawClient, putMsg, RUN,
  firstAck, userCall, seaSigned, rawGraph,
};
