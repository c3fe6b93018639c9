// Scenario: three relays in a mesh, a GUN JS client on each. A write on peer 0 is read on peers
// 1 and 2 (fresh clients, whole node and one key), then a write on peer 2 is read on peer 0.
//
//   node mesh_sync.js URL0 URL1 URL2
'use strict';
const { note, fail, pass, deadline, client, waitConnected, once, put, plain, canon, RUN } = require('./common');

const urls = process.argv.slice(2);
if (urls.length !== 3) fail('usage: node mesh_sync.js URL0 URL1 URL2');
for (const u of urls) {
  if (!/^(http|ws):\/\/(127\.0\.0\.1|localhost)(:\d+)?\//.test(u)) fail('refusing non-loopback url ' + u);
}
deadline(40000);

async function readUntil(chain, expected, what) {
  const start = Date.now();
  for (;;) {
    const got = await once(chain, 5000, what);
    const value = got.data && typeof got.data === 'object' ? plain(got.data) : got.data;
    if (canon(value) === canon(expected)) return Date.now() - start;
    if (Date.now() - start > 15000) fail(`${what}: expected ${canon(expected)}, got ${canon(value)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

(async () => {
  const peers = urls.map((u) => client(u));
  for (const [i, p] of peers.entries()) await waitConnected(p, 5000, `client ${i}`);
  const soul = 'sync-' + RUN;
  const value = { name: 'three peers', n: 3, ok: true };
  await put(peers[0].get(soul), value, 10000, 'put on peer 0');
  for (const i of [1, 2]) {
    const ms = await readUntil(client(urls[i]).get(soul), value, `fresh read on peer ${i}`);
    note(`peer ${i} read the node ${ms} ms after the ack`);
    const one = await readUntil(client(urls[i]).get(soul).get('name'), value.name, `key read on peer ${i}`);
    note(`peer ${i} read one key ${one} ms after`);
  }
  const back = 'sync-back-' + RUN;
  await put(peers[2].get(back), { from: 2 }, 10000, 'put on peer 2');
  const ms = await readUntil(client(urls[0]).get(back), { from: 2 }, 'fresh read on peer 0');
  note(`peer 0 read peer 2's write ${ms} ms after the ack`);
  pass();
})().catch((e) => fail(e && e.stack || String(e)));
