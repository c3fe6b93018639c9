// Scenario: GUN JS and a program embedding fibergun (its Rust chain API) see each other's writes.
//
//   node embedded_peer.js URL RUN
//
// Before this runs, the Rust side has put `rust-RUN` = {name:"Ferris", address:{city:"Berlin"}} with
// `gun.get("rust-RUN").put(...)` and subscribed to `js-RUN`. Here a fresh GUN JS client reads the Rust
// write through its links (the nested object must be a linked node `rust-RUN/address`, as GUN JS makes
// them), then writes `js-RUN` = {title:"from js", inner:{n:1}} and sets an item into `js-RUN/list`;
// the Rust side then reads both back and checks its subscription saw the change.
'use strict';
const { note, fail, pass, peerUrl, deadline, client, once, put, set, plain, assertEq } = require('./common');

const url = peerUrl();
const run = process.argv[3];
if (!run) fail('usage: node embedded_peer.js URL RUN');
deadline(20000);

(async () => {
  const a = client(url);
  const root = await once(a.get('rust-' + run), 5000, 'read rust-' + run);
  if (!root.data) fail('GUN JS read nothing at rust-' + run);
  const link = root.data.address && root.data.address['#'];
  if (link !== 'rust-' + run + '/address') fail('the nested object is not a linked node at the path soul: ' + JSON.stringify(root.data.address));
  const city = await once(a.get('rust-' + run).get('address').get('city'), 5000, 'read city');
  assertEq(city.data, 'Berlin', 'city through the link');
  assertEq(plain(root.data).name, 'Ferris', 'name');
  note('GUN JS read the Rust write through its link');

  await put(a.get('js-' + run), { title: 'from js', inner: { n: 1 } }, 5000, 'GUN JS put');
  await set(a.get('js-' + run).get('list'), { item: 'first' }, 5000, 'GUN JS set');
  pass();
})().catch((e) => fail(e && e.stack || String(e)));
