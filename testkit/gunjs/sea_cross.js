// Scenario: SEA signatures cross between the Rust API and GUN JS, both ways, through the relay.
//
//   node sea_cross.js URL '{"pub":…,"priv":…}'
//
// Before this runs, the Rust side has written `~PUB`.name = "Rusty", signed with the pair by
// `fibergun::sea::SignedValue::sign`. Here: a fresh GUN JS client reads it through `~PUB` (GUN JS checks
// the signature of what it receives), and `SEA.verify` checks the stored signature directly, bound to its
// soul, key and state. Then GUN JS's `SEA.sign` signs `~PUB`.city = "Lisbon" with the same pair and a
// raw put stores it; the Rust side reads it back and verifies it with `fibergun::sea::verify_field`.
'use strict';
const { note, fail, pass, peerUrl, deadline, client, once, rawClient, putMsg, RUN } = require('./common');
const SEA = require('gun/sea');

const url = peerUrl();
deadline(30000);

(async () => {
  let pair;
  try { pair = JSON.parse(process.argv[3]); } catch (e) { fail('argv[3] must be the pair as JSON'); }
  const soul = '~' + pair.pub;

  const reader = client(url);
  const name = await once(reader.get(soul).get('name'), 8000, 'fresh client ~pub.name');
  if (name.data !== 'Rusty') fail('GUN JS read ~pub.name = ' + JSON.stringify(name.data));
  note('a fresh GUN JS client read the value signed in Rust');

  const r = rawClient(url);
  await r.opened;
  r.send({ '#': 'get-' + RUN, get: { '#': soul } });
  const rep = await r.waitReply('get-' + RUN, 5000, 'raw GET');
  const node = rep.put && rep.put[soul];
  if (!node || typeof node.name !== 'string') fail('relay holds no signed name: ' + JSON.stringify(rep));
  const stored = JSON.parse(node.name);
  const state = node._['>'].name;
  const field = (st) => ({ m: { '#': soul, '.': 'name', ':': stored[':'], '>': st }, s: stored['~'] });
  const ok = await SEA.verify(field(state), pair.pub);
  if (!ok || ok[':'] !== 'Rusty') fail('SEA.verify refused the Rust signature: ' + JSON.stringify(ok));
  if (await SEA.verify(field(state + 1), pair.pub)) fail('SEA.verify accepted the Rust signature at another state');
  note('SEA.verify accepts the Rust signature, and refuses it at another state');

  const now = Date.now();
  const sig = await SEA.sign({ '#': soul, '.': 'city', ':': 'Lisbon', '>': now }, pair, null, { raw: 1 });
  if (!sig || !sig.s) fail('SEA.sign failed: ' + SEA.err);
  r.send(putMsg('put-' + RUN, soul, { city: JSON.stringify({ ':': 'Lisbon', '~': sig.s }) }, now));
  const ack = await r.waitReply('put-' + RUN, 5000, 'raw put of the GUN JS signed city');
  if (ack.err) fail('relay refused the GUN JS signed value: ' + JSON.stringify(ack.err));
  pass('signed in Rust, verified by GUN JS; signed by GUN JS, stored');
})().catch((e) => fail(e && e.stack || String(e)));
