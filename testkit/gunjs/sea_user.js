// Scenario: SEA users through the relay, and forged writes into a user's space refused by it.
//
// Client A (GUN JS with gun/sea) creates user alice and writes her profile. A fresh client B logs in as
// alice, which needs the relay to answer the `~@alias` lookup and alice's `~pub` node, and reads the profile
// back. A fresh client C, not logged in, reads it through `~pub` (GUN JS verifies the signatures it gets).
// Alice certifies bob to write `inbox` entries keyed by his own pub; bob's GUN client writes one.
//
// Then raw frames try forgeries, each signed with real SEA (`SEA.sign` as GUN JS signs puts), and each
// must get an `err` reply and leave nothing behind:
//   - unsigned value; value signed by another user's key (mallory);
//   - alice's signed value with its plain value changed (tampered);
//   - alice's signature replayed at another state, under another key, and in another user's space;
//   - alice's certificate for bob used by mallory (signed by mallory, `*` naming mallory, or naming bob);
//   - a value carrying `*` (a writer) but no certificate;
//   - a `~@alias` entry that points somewhere else, and a put with one good and one forged field
//     (refused whole).
// Finally a fresh client reads alice's profile: unchanged.
//
// Not in validate-gunjs.js's list: the stock GUN JS relay never answers a put carrying someone else's
// certificate, and stores a value carrying `*` without a certificate.
'use strict';
const { note, fail, pass, peerUrl, deadline, client, once, acked, RUN, userCall, seaSigned, rawGraph } = require('./common');
const SEA = require('gun/sea');

const url = peerUrl();
deadline(60000);

const seaClient = () => client(url);

(async () => {
  const alias = 'alice-' + RUN;
  const password = 'correct horse ' + RUN;

  // A: create and log in, write the profile.
  const a = seaClient();
  const user = a.user();
  const created = await userCall((cb) => user.create(alias, password, cb), 20000, 'A user.create');
  note('A created', alias, 'pub', created.pub);
  await userCall((cb) => user.auth(alias, password, cb), 20000, 'A user.auth');
  const alicePub = user.is.pub;
  const { ms } = await acked((cb) => user.get('profile').put({ name: 'Alice', city: 'Lisbon' }, cb), 10000, 'A put profile');
  note(`A profile put acked in ${ms} ms`);

  // B: a fresh client logs in as alice (the ~@alias lookup goes through the relay) and reads the profile.
  const b = seaClient();
  const bUser = b.user();
  const bAuth = await userCall((cb) => bUser.auth(alias, password, cb), 20000, 'fresh B user.auth');
  if (!bAuth.sea || bAuth.sea.pub !== alicePub) fail('fresh B logged in as another key: ' + JSON.stringify(bAuth.sea && bAuth.sea.pub));
  const bName = await once(bUser.get('profile').get('name'), 8000, 'B profile.name');
  if (bName.data !== 'Alice') fail('fresh B read profile.name = ' + JSON.stringify(bName.data));
  note('fresh B logged in and read the profile');

  // C: a fresh client, not logged in, reads through ~pub.
  const c = seaClient();
  const cCity = await once(c.get('~' + alicePub).get('profile').get('city'), 8000, 'C ~pub profile.city');
  if (cCity.data !== 'Lisbon') fail('fresh C read profile.city = ' + JSON.stringify(cCity.data));
  note('fresh C read the profile through ~pub');

  // What the relay holds: alice's node and her profile node.
  const raw = await rawGraph(url);
  const rawGet = raw.get;
  const rawPut = raw.put;
  const aliceSoul = '~' + alicePub;
  const aliceNode = await rawGet(aliceSoul);
  if (!aliceNode || !aliceNode.profile) fail('relay has no profile link on alice: ' + JSON.stringify(aliceNode));
  const profileSoul = JSON.parse(aliceNode.profile)[':']['#'];
  const profile = await rawGet(profileSoul);
  if (!profile || typeof profile.name !== 'string') fail('relay has no signed profile.name: ' + JSON.stringify(profile));
  const goodName = profile.name;
  const goodState = profile._['>'].name;
  note('profile soul', profileSoul, 'name', goodName.slice(0, 60) + '...');

  // bob gets a certificate from alice for inbox entries keyed by his pub; his GUN client writes with it.
  const bob = await SEA.pair();
  const mallory = await SEA.pair();
  const cert = await SEA.certify(bob.pub, [{ '*': 'inbox', '+': '*' }], user._.sea);
  if (!cert) fail('SEA.certify returned nothing');
  const bobGun = seaClient();
  const bobUser = bobGun.user();
  await userCall((cb) => bobUser.auth(bob, cb), 10000, 'bob auth with a pair');
  await acked((cb) => bobGun.get(aliceSoul).get('inbox').get(bob.pub).put('hi from bob', cb, { opt: { cert } }), 10000, 'bob certified put');
  const inboxSoul = aliceSoul + '/inbox';
  const inbox = await rawGet(aliceSoul);
  if (!inbox.inbox) fail('alice has no inbox link after bob\'s certified put: ' + JSON.stringify(inbox));
  const inboxNode = await rawGet(JSON.parse(inbox.inbox)[':']['#']);
  if (!inboxNode || typeof inboxNode[bob.pub] !== 'string' || !inboxNode[bob.pub].includes('hi from bob')) {
    fail('bob\'s certified entry is not in alice\'s inbox: ' + JSON.stringify(inboxNode));
  }
  note('bob wrote into alice\'s inbox with his certificate');

  const later = Date.now() + 1;
  const goodParsed = JSON.parse(goodName);
  const forgeries = [
    ['unsigned value', profileSoul, { name: 'Mallory' }, later],
    ['signed by another key', profileSoul, { name: await seaSigned(mallory, profileSoul, 'name', 'Mallory', later) }, later],
    ['tampered value', profileSoul, { name: JSON.stringify({ ':': 'Mallory', '~': goodParsed['~'] }) }, goodState],
    ['replayed at another state', profileSoul, { name: goodName }, goodState + 1000],
    ['replayed under another key', profileSoul, { nick: goodName }, goodState],
    ['replayed in another user\'s space', '~' + mallory.pub, { name: goodName }, goodState],
    ['a certificate for someone else (signed by mallory, * = mallory)', inboxSoul,
      { [mallory.pub]: await seaSigned(mallory, inboxSoul, mallory.pub, 'spam', later, { '+': JSON.parse(cert.slice(3)), '*': mallory.pub }) }, later],
    ['a certificate for someone else (signed by mallory, * = bob)', inboxSoul,
      { [bob.pub]: await seaSigned(mallory, inboxSoul, bob.pub, 'spam', later, { '+': JSON.parse(cert.slice(3)), '*': bob.pub }) }, later],
    ['a writer (*) without a certificate', inboxSoul,
      { [mallory.pub]: await seaSigned(mallory, inboxSoul, mallory.pub, 'spam', later, { '*': mallory.pub }) }, later],
    ['an alias entry pointing elsewhere', '~@' + alias, { ['~' + mallory.pub]: { '#': aliceSoul } }, later],
    ['one good field and one forged', profileSoul, {
      city: await seaSigned(user._.sea, profileSoul, 'city', 'Porto', later),
      name: await seaSigned(mallory, profileSoul, 'name', 'Mallory', later),
    }, later],
  ];
  for (const [what, soul, fields, state] of forgeries) {
    const rep = await rawPut(what, soul, fields, state);
    if (!rep.err || rep.ok) fail(`forgery "${what}" was not refused: ${JSON.stringify(rep)}`);
    note(`refused: ${what}: ${JSON.stringify(rep.err)}`);
  }

  // Nothing of the forgeries is stored: the relay's own nodes and a fresh client's reads are unchanged.
  const after = await rawGet(profileSoul);
  if (after.name !== goodName || after.nick !== undefined) fail('profile changed by a forgery: ' + JSON.stringify(after));
  if (after.city !== profile.city) fail('profile.city changed by a put with a forged field: ' + JSON.stringify(after.city));
  const inboxAfter = await rawGet(JSON.parse(inbox.inbox)[':']['#']);
  if (inboxAfter[mallory.pub] !== undefined || inboxAfter[bob.pub] !== inboxNode[bob.pub]) fail('inbox changed by a forgery: ' + JSON.stringify(inboxAfter));
  const malloryNode = await rawGet('~' + mallory.pub);
  if (malloryNode && malloryNode.name !== undefined) fail('replayed value stored in mallory\'s space: ' + JSON.stringify(malloryNode));
  const aliasNode = await rawGet('~@' + alias);
  if (aliasNode && aliasNode['~' + mallory.pub] !== undefined) fail('forged alias entry stored: ' + JSON.stringify(aliasNode));
  const d = seaClient();
  const dName = await once(d.get(aliceSoul).get('profile').get('name'), 8000, 'D ~pub profile.name');
  if (dName.data !== 'Alice') fail('fresh D read profile.name = ' + JSON.stringify(dName.data));
  pass(`${forgeries.length} forgeries refused, alice's profile intact`);
})().catch((e) => fail(e && e.stack || String(e)));
