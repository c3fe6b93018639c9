// Scenario: two clients writing the same key concurrently end with the value HAM picks, on both and on
// the relay.
//
// Part 1 -- concurrent API writes. A and B both .on() the soul (and first see an initial value, so the relay
//   knows both want it), then in the same tick A puts v='fromA' and B puts v='fromB'. Both clients, and a
//   fresh client C (= what the relay answers), must converge on one value. The states come from the
//   process-wide, strictly increasing Gun.state(), so B's write has the higher state and HAM must pick
//   'fromB' (checked).
// Part 2 -- equal states through the API. put(data, cb, {state: S}) forces the state, so B puts w='a' and A
//   puts w='a!' in the same tick with the SAME state S. HAM breaks the tie on the JSON text under JS string
//   comparison: '"a"' > '"a!"' (index 2: '"' 0x22 > '!' 0x21), so 'a' must win everywhere -- although 'a!'
//   is the greater plain string.
// Part 3 -- raw equal-state puts. Two raw sockets put the same key with the SAME explicit state and different
//   values, in both orders, for several value pairs; a fresh GUN client then reads each key and must get the
//   value whose JSON text is greater under JS string comparison (UTF-16 code units), and a raw GET must show
//   that value with state S.
'use strict';
const { Gun, note, fail, pass, peerUrl, deadline, client, waitConnected, until, once, put, acked, rawClient, putMsg, assertEq, sleep, GUNJS, RUN } = require('./common');

const url = peerUrl();
deadline(20000);

// Run fn with Gun.state wrapped; return the states it handed out.
function statesOf(fn) {
  const orig = Gun.state; const got = [];
  const spy = function () { const st = orig.apply(this, arguments); got.push(st); return st; };
  Object.assign(spy, orig);
  Gun.state = spy;
  try { fn(); } finally { Gun.state = orig; }
  if (got.length !== 2) fail(`expected 2 calls to Gun.state() during the two puts, saw ${got.length}`);
  return got;
}

// JS `>` on JSON texts: the HAM tie-break.
const hamWinner = (x, y) => (JSON.stringify(x) > JSON.stringify(y) ? x : y);

async function part1() {
  const soul = 'conflict-' + RUN;
  const a = client(url); const b = client(url);
  await put(a.get(soul), { v: 'init' }, 8000, 'A initial put');
  const seenA = []; const seenB = [];
  a.get(soul).on((d) => seenA.push(d && d.v));
  b.get(soul).on((d) => seenB.push(d && d.v));
  await waitConnected(b, 5000, 'B');
  await until(() => seenB.includes('init') && seenA.includes('init'), 5000, () => `A/B .on() did not see the initial value: A ${JSON.stringify(seenA)}, B ${JSON.stringify(seenB)}`);

  // put() takes its state from Gun.state() synchronously; spy on it to learn both states.
  let pa; let pb;
  const [stA, stB] = statesOf(() => {
    pa = acked((cb) => a.get(soul).put({ v: 'fromA' }, cb), 8000, 'A concurrent put');
    pb = acked((cb) => b.get(soul).put({ v: 'fromB' }, cb), 8000, 'B concurrent put');
  });
  note(`A wrote fromA @${stA}, B wrote fromB @${stB} in the same tick`);
  if (!(stB > stA)) fail(`expected B's state to be greater (Gun.state() is strictly increasing in-process): ${stA} vs ${stB}`);
  // B's own put is always newer than anything stored, so it must be acked; A's loses if it arrives second, and
  // the GUN JS relay does not ack a losing put (fibergun acks it as a no-op).
  await pb;
  if (!GUNJS) await pa;
  const want = 'fromB';
  const cur = (g) => g._.graph[soul] && g._.graph[soul].v;
  await until(() => cur(a) === want && cur(b) === want, 5000, () => `A and B did not converge on ${want}: A has ${JSON.stringify(cur(a))} (on: ${JSON.stringify(seenA)}), B has ${JSON.stringify(cur(b))} (on: ${JSON.stringify(seenB)})`);
  const c = client(url);
  const r = await once(c.get(soul).get('v'), 5000, 'fresh C get(conflict).get(v)');
  assertEq(r.data, want, 'part 1: fresh C (relay) value');
  note(`part 1: A, B and fresh C agree on ${want}`);
}

async function part2() {
  const soul = 'tieapi-' + RUN;
  const S = Date.now() - 60000;
  const a = client(url); const b = client(url);
  await put(a.get(soul), { w: 'init' }, 8000, 'A initial put (older state)');
  const seenA = []; const seenB = [];
  a.get(soul).on((d) => seenA.push(d && d.w));
  b.get(soul).on((d) => seenB.push(d && d.w));
  await waitConnected(b, 5000, 'B');
  await until(() => seenB.includes('init') && seenA.includes('init'), 5000, () => `A/B .on() did not see the initial value: A ${JSON.stringify(seenA)}, B ${JSON.stringify(seenB)}`);
  // The initial put on key w used Gun.state() = now, newer than S, so the tie is played on a fresh key w2.
  const pb = acked((cb) => b.get(soul).put({ w2: 'a' }, cb, { state: S }), 8000, "B put w2='a' @S");
  const pa = acked((cb) => a.get(soul).put({ w2: 'a!' }, cb, { state: S }), 8000, "A put w2='a!' @S");
  const want = hamWinner('a', 'a!');
  if (want !== 'a') fail('self-check: JSON tie-break should pick "a" over "a!"');
  await pb; // the first write to a fresh key is always accepted and acked
  if (!GUNJS) await pa;
  const cur = (g) => g._.graph[soul] && g._.graph[soul].w2;
  await until(() => cur(a) === want && cur(b) === want, 5000, () => `part 2: A and B did not converge on ${JSON.stringify(want)}: A has ${JSON.stringify(cur(a))}, B has ${JSON.stringify(cur(b))}`);
  const c = client(url);
  const r = await once(c.get(soul).get('w2'), 5000, 'fresh C get(tieapi).get(w2)');
  assertEq(r.data, want, 'part 2: fresh C (relay) value at equal state');
  note(`part 2: equal-state API writes converge on ${JSON.stringify(want)} everywhere`);
}

async function part3() {
  const S = 1700000000000;
  // [first, second, expected winner]; the expectations are hard-coded and also re-derived with hamWinner.
  const pairs = [
    ['apple', 'banana', 'banana'],
    ['a!', 'a', 'a'], //                  JSON text order, not plain string order
    [1, '1', 1], //                       number beats string: '1' > '"'
    ['\uff5e', '\ud83d\ude00', '\uff5e'], // UTF-16 code units: 0xFF5E > 0xD83D (by code point/UTF-8 the emoji wins)
    [true, false, true],
    ['x', null, null], //                 'null' > '"x"': the tombstone wins
  ];
  const x = rawClient(url); const y = rawClient(url);
  await Promise.all([x.opened, y.opened]);
  const cases = [];
  pairs.forEach(([p, q, want], i) => {
    if (hamWinner(p, q) !== want || hamWinner(q, p) !== want) fail(`self-check failed for pair ${i}`);
    cases.push({ soul: `tie-${i}a-${RUN}`, first: p, second: q, want });
    cases.push({ soul: `tie-${i}b-${RUN}`, first: q, second: p, want });
  });
  for (const [n, c] of cases.entries()) {
    const id1 = `x${n}-${RUN}`; const id2 = `y${n}-${RUN}`;
    x.send(putMsg(id1, c.soul, { v: c.first }, S));
    const ack1 = await x.waitReply(id1, 5000, `raw put #${n} (first)`);
    if (ack1.err) fail(`raw put ${JSON.stringify(c.first)} into fresh soul ${c.soul} was refused: ${JSON.stringify(ack1)}`);
    y.send(putMsg(id2, c.soul, { v: c.second }, S));
    if (GUNJS) {
      // GUN JS does not ack a losing (no-op) put; a GET on the same socket is answered after the put was applied.
      y.send({ '#': 'sync' + id2, get: { '#': c.soul } });
      await y.waitReply('sync' + id2, 5000, `sync GET #${n}`);
    } else {
      const ack2 = await y.waitReply(id2, 5000, `raw put #${n} (second, equal state)`);
      if (ack2.err) fail(`equal-state put ${JSON.stringify(c.second)} on ${c.soul} was refused: ${JSON.stringify(ack2)}`);
    }
  }
  // The relay's view, raw.
  const z = rawClient(url);
  await z.opened;
  for (const [n, c] of cases.entries()) {
    z.send({ '#': `z${n}-${RUN}`, get: { '#': c.soul } });
    const rep = await z.waitReply(`z${n}-${RUN}`, 5000, `raw GET ${c.soul}`);
    const node = rep.put && rep.put[c.soul];
    if (!node) fail(`raw GET ${c.soul} returned no node: ${JSON.stringify(rep)}`);
    if (JSON.stringify(node.v) !== JSON.stringify(c.want)) fail(`relay holds ${JSON.stringify(node.v)} for ${c.soul} after equal-state puts ${JSON.stringify(c.first)} then ${JSON.stringify(c.second)}; HAM picks ${JSON.stringify(c.want)}`);
    if (!node._ || !node._['>'] || node._['>'].v !== S) fail(`relay state for ${c.soul}.v is ${JSON.stringify(node._)}; expected ${S}`);
  }
  // A fresh GUN client reads every key.
  const g = client(url);
  for (const c of cases) {
    const r = await once(g.get(c.soul).get('v'), 5000, `fresh GUN client get(${c.soul}).get(v)`);
    if (JSON.stringify(r.data) !== JSON.stringify(c.want)) fail(`fresh GUN client read ${JSON.stringify(r.data)} for ${c.soul} after equal-state puts ${JSON.stringify(c.first)} then ${JSON.stringify(c.second)}; HAM picks ${JSON.stringify(c.want)}`);
  }
  note(`part 3: ${cases.length} raw equal-state conflicts resolved by JSON text order, seen by a fresh GUN client`);
}

(async () => {
  await part1();
  await part2();
  await part3();
  await sleep(0);
  pass();
})().catch((e) => fail(e && e.stack || String(e)));
