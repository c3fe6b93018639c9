// Scenario: put a nested object and read it through the links from a fresh client.
//
// Client A puts {title, nested:{deep, n, deeper:{leaf}}} on soul x-<run>. GUN splits it into three nodes
// joined by links (before the put it GETs each sub-path, so the relay must answer those GETs "not found"
// promptly or the put stalls ~9 s). Fresh client B then reads get(x).get('nested').get('deep') -- i.e. it
// must follow the link x.nested -> {"#": <child soul>} through the relay -- and two levels down to
// get('deeper').get('leaf'). A raw GET checks that the relay stores the parent's key as a link.
'use strict';
const { note, fail, pass, peerUrl, deadline, client, once, put, plain, assertEq, rawClient, RUN } = require('./common');

const url = peerUrl();
deadline(20000);

(async () => {
  const soul = 'x-' + RUN;
  const a = client(url);
  const { ack, ms } = await put(a.get(soul), { title: 'top', nested: { deep: 'value', n: 1, deeper: { leaf: true } } }, 8000, 'A nested put');
  note(`A nested put acked in ${ms} ms:`, JSON.stringify(ack));
  if (ms > 5000) fail(`nested put took ${ms} ms: the relay probably did not answer the client's sub-path GETs`);

  const b = client(url);
  const deep = await once(b.get(soul).get('nested').get('deep'), 5000, "fresh B get(x).get('nested').get('deep')");
  note(`fresh B read nested.deep in ${deep.ms} ms:`, JSON.stringify(deep.data));
  assertEq(deep.data, 'value', "get(x).get('nested').get('deep')");

  const leaf = await once(b.get(soul).get('nested').get('deeper').get('leaf'), 5000, "fresh B ...get('deeper').get('leaf')");
  assertEq(leaf.data, true, "get(x).get('nested').get('deeper').get('leaf')");

  const c = client(url);
  const nested = await once(c.get(soul).get('nested'), 5000, "fresh C get(x).get('nested')");
  assertEq(plain(nested.data), { deep: 'value', n: 1, deeper: nested.data && nested.data.deeper }, "fresh C get(x).get('nested') node");
  const link = nested.data && nested.data.deeper;
  if (!link || typeof link['#'] !== 'string' || Object.keys(link).length !== 1) fail('nested.deeper should read as a link {"#":soul}, got ' + JSON.stringify(link));

  // The relay holds x.nested as a link to a separate node.
  const r = rawClient(url);
  await r.opened;
  r.send({ '#': 'rawget1-' + RUN, get: { '#': soul } });
  const rep = await r.waitReply('rawget1-' + RUN, 3000, 'raw GET parent');
  const node = rep.put && rep.put[soul];
  if (!node) fail('raw GET of the parent answered without the node: ' + JSON.stringify(rep));
  const childLink = node.nested;
  if (!childLink || typeof childLink['#'] !== 'string') fail('relay stores nested as ' + JSON.stringify(childLink) + ', expected a link {"#":soul}');
  assertEq(node.title, 'top', 'relay parent.title');
  r.send({ '#': 'rawget2-' + RUN, get: { '#': childLink['#'] } });
  const rep2 = await r.waitReply('rawget2-' + RUN, 3000, 'raw GET child');
  const child = rep2.put && rep2.put[childLink['#']];
  if (!child) fail('raw GET of the child soul ' + childLink['#'] + ' answered without the node: ' + JSON.stringify(rep2));
  assertEq(child.deep, 'value', 'relay child.deep');
  note('child soul is', childLink['#']);
  pass();
})().catch((e) => fail(e && e.stack || String(e)));
