// Writes a known graph through the stock GUN JS relay (radisk on), for the radata import test:
//
//   node radata_seed.js URL
//
// A flat node with every kind of value, a nested object (linked nodes), a set of items, and
// one key written twice (the later state wins). Waits for every ack (radisk acks after its
// batch is on disk), then a little longer for radisk's files to settle.
'use strict';
const { note, fail, pass, peerUrl, deadline, client, put, set, sleep } = require('./common');

const url = peerUrl();
deadline(30000);

(async () => {
  const a = client(url);
  await put(a.get('rd-flat'), { s: 'héllo ☃', n: 42, f: 3.25, t: true, no: false, nothing: null }, 8000, 'flat');
  await put(a.get('rd-person'), { name: 'Ann', address: { city: 'Oslo', geo: { lat: 59.9 } } }, 8000, 'nested');
  for (const item of ['milk', 'bread', 'eggs']) await set(a.get('rd-list'), { item }, 8000, 'set ' + item);
  await put(a.get('rd-flat').get('n'), 43, 8000, 'overwrite');
  await sleep(600);
  note('seeded');
  pass();
})().catch((e) => fail(e && e.stack || String(e)));
