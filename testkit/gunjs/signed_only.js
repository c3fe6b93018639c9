// Scenario: a relay that takes signed writes only (`fibergun serve --write signed`).
//
// GUN JS's own API, unchanged:
//   - a plain `gun.get(x).put(...)` in the public space gets an ack whose err names the rule ("signed
//     writes only"), and a fresh client finds nothing there;
//   - content-addressed data (`gun.get('#').get(SHA-256 of the value).put(value)`) is taken and read back;
//   - alice's user space takes her writes (user.create/auth and a fresh login are sea_user.js's part);
//   - bob, holding alice's certificate for `inbox` entries keyed by his own pub, writes one;
//   - bob's write outside his certificate (alice's `profile`) and carol's write with a certificate that
//     has expired are refused.
// The same refusals over raw frames (values signed with real SEA, as GUN JS signs puts), so the relay
// itself is what refuses them, not GUN JS's client-side checks: a certified write outside the
// certificate's terms, an expired certificate ("Certificate expired."), and an unsigned public put.
'use strict';
const { note, fail, pass, peerUrl, deadline, client, once, acked, RUN, firstAck, userCall, seaSigned, rawGraph } = require('./common');
const SEA = require('gun/sea');

const url = peerUrl();
deadline(60000);

(async () => {
  // The public space: refused with the rule's error, nothing stored.
  const a = client(url);
  const publicSoul = 'public-' + RUN;
  const refused = await firstAck((cb) => a.get(publicSoul).put({ hello: 'world' }, cb), 10000, 'public put');
  if (!refused.err || !String(refused.err).includes('signed writes only')) {
    fail('a public put was not refused with the signed-only error: ' + JSON.stringify(refused));
  }
  note('public put refused:', JSON.stringify(refused.err));

  // Content-addressed data is taken.
  const text = 'hello, signed world ' + RUN;
  const hash = await SEA.work(text, null, null, { name: 'SHA-256' });
  await acked((cb) => a.get('#').get(hash).put(text, cb), 10000, 'content-addressed put');
  note('content-addressed put acked under', hash);

  // alice's space takes her writes.
  const alias = 'alice-' + RUN;
  const user = a.user();
  await userCall((cb) => user.create(alias, 'correct horse ' + RUN, cb), 20000, 'alice user.create');
  await userCall((cb) => user.auth(alias, 'correct horse ' + RUN, cb), 20000, 'alice user.auth');
  const alice = user._.sea;
  const aliceSoul = '~' + alice.pub;
  await acked((cb) => user.get('profile').put({ name: 'Alice' }, cb), 10000, 'alice profile put');

  // bob writes where alice's certificate lets him, and is refused outside it.
  const bob = await SEA.pair();
  const cert = await SEA.certify(bob.pub, [{ '*': 'inbox', '+': '*' }], alice);
  if (!cert) fail('SEA.certify returned nothing');
  const bobGun = client(url);
  await userCall((cb) => bobGun.user().auth(bob, cb), 10000, 'bob auth with a pair');
  await acked((cb) => bobGun.get(aliceSoul).get('inbox').get(bob.pub).put('hi from bob', cb, { opt: { cert } }), 10000, 'bob certified put');
  note('bob wrote into alice\'s inbox with his certificate');
  const outside = await firstAck((cb) => bobGun.get(aliceSoul).get('profile').get('name').put('Bob was here', cb, { opt: { cert } }), 10000, 'bob put outside his certificate');
  if (!outside.err) fail('bob\'s write outside his certificate was acked: ' + JSON.stringify(outside));
  note('bob outside his certificate:', JSON.stringify(outside.err));

  // carol's certificate has expired.
  const carol = await SEA.pair();
  const expired = await SEA.certify(carol.pub, [{ '*': 'inbox', '+': '*' }], alice, null, { expiry: Date.now() - 60000 });
  if (!expired) fail('SEA.certify (expired) returned nothing');
  const carolGun = client(url);
  await userCall((cb) => carolGun.user().auth(carol, cb), 10000, 'carol auth with a pair');
  const late = await firstAck((cb) => carolGun.get(aliceSoul).get('inbox').get(carol.pub).put('hi from carol', cb, { opt: { cert: expired } }), 10000, 'carol put with an expired certificate');
  if (!late.err) fail('a write with an expired certificate was acked: ' + JSON.stringify(late));
  note('carol with an expired certificate:', JSON.stringify(late.err));

  // The same refusals over raw frames: the relay itself refuses them.
  const raw = await rawGraph(url);
  const rawGet = raw.get;
  const rawPut = raw.put;
  const aliceNode = await rawGet(aliceSoul);
  if (!aliceNode || !aliceNode.inbox || !aliceNode.profile) fail('alice\'s node lacks inbox or profile: ' + JSON.stringify(aliceNode));
  const inboxSoul = JSON.parse(aliceNode.inbox)[':']['#'];
  const profileSoul = JSON.parse(aliceNode.profile)[':']['#'];
  const later = Date.now() + 1;
  const terms = (c) => JSON.parse(c.slice(3));
  const attempts = [
    ['a public put', publicSoul, { hello: 'raw' }, later, 'signed writes only'],
    ['a certified write outside the certificate', profileSoul,
      { name: await seaSigned(bob, profileSoul, 'name', 'Bob', later, { '+': terms(cert), '*': bob.pub }) }, later, null],
    ['an expired certificate', inboxSoul,
      { [carol.pub]: await seaSigned(carol, inboxSoul, carol.pub, 'late', later, { '+': terms(expired), '*': carol.pub }) }, later, 'Certificate expired.'],
  ];
  for (const [what, soul, fields, state, expect] of attempts) {
    const rep = await rawPut(what, soul, fields, state);
    if (!rep.err || rep.ok) fail(`${what} was not refused: ${JSON.stringify(rep)}`);
    if (expect && !String(rep.err).includes(expect)) fail(`${what}: expected an error with ${JSON.stringify(expect)}, got ${JSON.stringify(rep.err)}`);
    note(`refused: ${what}: ${JSON.stringify(rep.err)}`);
  }

  // A fresh client reads what was taken, and none of what was refused.
  const d = client(url);
  const got = await once(d.get('#').get(hash), 8000, 'fresh read of the content-addressed value');
  if (got.data !== text) fail('content-addressed value read back as ' + JSON.stringify(got.data));
  const name = await once(d.get(aliceSoul).get('profile').get('name'), 8000, 'fresh read of alice\'s profile.name');
  if (name.data !== 'Alice') fail('alice\'s profile.name read back as ' + JSON.stringify(name.data));
  const bobEntry = await once(d.get(aliceSoul).get('inbox').get(bob.pub), 8000, 'fresh read of bob\'s inbox entry');
  if (bobEntry.data !== 'hi from bob') fail('bob\'s inbox entry read back as ' + JSON.stringify(bobEntry.data));
  const inbox = await rawGet(inboxSoul);
  if (inbox && inbox[carol.pub] !== undefined) fail('carol\'s expired-certificate entry is stored: ' + JSON.stringify(inbox));
  const pub = await rawGet(publicSoul);
  if (pub && Object.keys(pub).some((k) => k !== '_')) fail('the public put is stored: ' + JSON.stringify(pub));
  pass('public writes refused; signed, certified and content-addressed writes taken; out-of-terms and expired certificates refused');
})().catch((e) => fail(e && e.stack || String(e)));
