// Scenario: .set() several items and .map().once() them from a fresh client.
//
// Client A adds 5 objects to a set with get(list).set({n, label}) (each becomes its own node with a random
// soul, linked from the list node) and waits for each ack. Fresh client B runs get(list).map().once(cb):
// it must receive all 5 items, each with its fields, reached through the links. Also checks that a set of
// primitives (set('x')) reads back through map().once().
'use strict';
const { note, fail, pass, peerUrl, deadline, client, until, set, plain, assertEq, RUN } = require('./common');

const url = peerUrl();
deadline(20000);

const N = 5;

(async () => {
  const list = 'list-' + RUN;
  const a = client(url);
  for (let i = 1; i <= N; i++) {
    await set(a.get(list), { n: i, label: 'item' + i }, 8000, `A set #${i}`);
  }
  note(`A added ${N} items to ${list}`);

  const b = client(url);
  const items = new Map();
  const start = Date.now();
  b.get(list).map().once((d, key) => { items.set(key, d); });
  await until(() => items.size >= N, 6000, () => `fresh B map().once() saw ${items.size} of ${N} items: ${JSON.stringify([...items])}`);
  note(`fresh B saw all ${N} items after ${Date.now() - start} ms`);
  const got = [...items.values()].map(plain).sort((x, y) => (x && x.n) - (y && y.n));
  const want = []; for (let i = 1; i <= N; i++) want.push({ n: i, label: 'item' + i });
  assertEq(got, want, 'items read by fresh B');
  for (const [key, d] of items) {
    if (!d || !d._ || d._['#'] !== key) fail(`item under key ${key} has soul ${JSON.stringify(d && d._ && d._['#'])}; set() items should be keyed by their own soul`);
  }
  // No extra items show up a little later.
  await new Promise((r) => setTimeout(r, 300));
  if (items.size !== N) fail(`fresh B saw ${items.size} items, expected exactly ${N}`);

  // A set of primitives.
  const prims = 'prims-' + RUN;
  for (const v of ['p1', 'p2', 'p3']) {
    await set(a.get(prims), v, 8000, `A set(${JSON.stringify(v)})`);
  }
  const c = client(url);
  const pv = new Set();
  c.get(prims).map().once((d) => { pv.add(d); });
  await until(() => pv.size >= 3, 6000, () => `fresh C map().once() on a set of primitives saw ${JSON.stringify([...pv])}`);
  assertEq([...pv].sort(), ['p1', 'p2', 'p3'], 'primitive set items read by fresh C');
  pass();
})().catch((e) => fail(e && e.stack || String(e)));
