// Scenario: put a flat object and read it back from a second, fresh client.
//
// Client A puts a flat object (string, number, float, booleans, null, empty string, unicode) and waits for
// the relay's ack. Fresh client B (its own empty graph, new socket) reads the whole node with .once(), and
// fresh client C reads one key through .get(soul).get(key).once(). A raw GET checks what the relay itself
// answers.
'use strict';
const { note, fail, pass, peerUrl, deadline, client, once, put, plain, assertEq, rawClient, RUN } = require('./common');

const url = peerUrl();
deadline(20000);

(async () => {
  const soul = 'flat-' + RUN;
  const value = { name: 'Alice', age: 30, pi: 3.25, alive: true, dead: false, nothing: null, empty: '', uni: 'héllo ☃ 😀' };

  const a = client(url);
  const { ack, ms } = await put(a.get(soul), value, 8000, 'A put');
  note(`A put acked in ${ms} ms:`, JSON.stringify(ack));

  const b = client(url);
  const got = await once(b.get(soul), 5000, 'fresh B get(soul)');
  note(`fresh B read the node in ${got.ms} ms:`, JSON.stringify(got.data));
  if (!got.data) fail('fresh B read nothing for ' + soul);
  assertEq(plain(got.data), value, 'fresh B whole-node read');
  if (!got.data._ || got.data._['#'] !== soul) fail('node read by B has no soul metadata: ' + JSON.stringify(got.data._));

  const c = client(url);
  const name = await once(c.get(soul).get('name'), 5000, 'fresh C get(soul).get(name)');
  assertEq(name.data, 'Alice', 'fresh C key read');
  const uni = await once(c.get(soul).get('uni'), 5000, 'fresh C get(soul).get(uni)');
  assertEq(uni.data, value.uni, 'fresh C unicode key read');

  // What the relay itself holds (a raw GET).
  const r = rawClient(url);
  await r.opened;
  r.send({ '#': 'rawget-' + RUN, get: { '#': soul } });
  const rep = await r.waitReply('rawget-' + RUN, 3000, 'raw GET');
  const node = rep.put && rep.put[soul];
  if (!node) fail('raw GET answered without the node: ' + JSON.stringify(rep));
  assertEq(plain(node), value, 'raw GET node values');
  for (const k of Object.keys(value)) {
    const st = node._ && node._['>'] && node._['>'][k];
    if (typeof st !== 'number') fail(`raw GET: key ${k} has no numeric state: ${JSON.stringify(node._)}`);
  }
  pass();
})().catch((e) => fail(e && e.stack || String(e)));
