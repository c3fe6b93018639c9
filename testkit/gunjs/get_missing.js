// Scenario: a get of a missing soul answers at once.
//
// GUN's .once() on a soul nobody has fires with `undefined` as soon as the relay answers the GET with a
// "not found" reply ({"#":…,"@":<get id>} without put) -- plus GUN's ~100 ms settle wait. If the relay stays
// silent, the client only gives up after its 9 s ack timeout (opt.lack). This script requires well under
// that (MAX_MS) for:
//   1. a fresh client's first action: get(missing).once()  (includes opening the socket);
//   2. a connected client: get(missing2).once();
//   3. a missing key on an existing soul: get(existing).get('nokey').once();
//   4. a missing child under a missing soul: get(missing3).get('a').get('b').once();
// and checks the raw replies: a GET of a missing soul, and of a missing key, is answered with an `@` reply
// that carries no data for it (and no err).
'use strict';
const { note, fail, pass, peerUrl, deadline, client, waitConnected, once, put, rawClient, RUN } = require('./common');

const url = peerUrl();
deadline(20000);
const MAX_MS = 2000;

async function missing(chain, what) {
  const r = await once(chain, 8000, what);
  note(`${what}: fired with ${JSON.stringify(r.data)} after ${r.ms} ms`);
  if (r.data !== undefined) fail(`${what}: expected undefined, got ${JSON.stringify(r.data)}`);
  if (r.ms >= MAX_MS) fail(`${what}: took ${r.ms} ms (limit ${MAX_MS} ms); the relay probably did not answer the GET with a not-found reply`);
}

(async () => {
  const c1 = client(url);
  await missing(c1.get('nope-' + RUN), '1. cold fresh client get(missing).once()');

  const c2 = client(url);
  await waitConnected(c2, 5000, 'C2');
  await missing(c2.get('nope2-' + RUN), '2. connected client get(missing).once()');

  const a = client(url);
  const soul = 'exists-' + RUN;
  await put(a.get(soul), { here: 1 }, 8000, 'A put');
  const c3 = client(url);
  await missing(c3.get(soul).get('nokey'), "3. fresh client get(existing).get('nokey').once()");
  await missing(c3.get('nope3-' + RUN).get('a').get('b'), "4. get(missing).get('a').get('b').once()");

  const r = rawClient(url);
  await r.opened;
  const t = Date.now();
  r.send({ '#': 'm1-' + RUN, get: { '#': 'nope4-' + RUN } });
  const m1 = await r.waitReply('m1-' + RUN, MAX_MS, 'raw GET of a missing soul');
  note(`raw GET missing soul answered in ${Date.now() - t} ms:`, JSON.stringify(m1));
  if (m1.err) fail('raw GET of a missing soul got an error: ' + JSON.stringify(m1));
  if (m1.put && m1.put['nope4-' + RUN]) fail('raw GET of a missing soul returned data: ' + JSON.stringify(m1));
  r.send({ '#': 'm2-' + RUN, get: { '#': soul, '.': 'nokey' } });
  const m2 = await r.waitReply('m2-' + RUN, MAX_MS, 'raw GET of a missing key');
  note('raw GET missing key answered:', JSON.stringify(m2));
  if (m2.err) fail('raw GET of a missing key got an error: ' + JSON.stringify(m2));
  if (m2.put && m2.put[soul] && Object.prototype.hasOwnProperty.call(m2.put[soul], 'nokey')) fail('raw GET of a missing key returned a value: ' + JSON.stringify(m2));
  pass();
})().catch((e) => fail(e && e.stack || String(e)));
