// Scenario: GUN JS and the REST API see each other's writes.
//
// Before this runs, the REST side has PUT `shared/doc` = {from:"rest", nested:{deep:1}}. A fresh GUN JS
// client reads it through its link, then writes `js` and a nested object `jsnested` into the same
// node; the REST side then reads them back.
'use strict';
const { note, fail, pass, peerUrl, deadline, client, once, put, assertEq } = require('./common');

const url = peerUrl();
deadline(20000);

(async () => {
  const a = client(url);
  const from = await once(a.get('shared').get('doc').get('from'), 5000, 'read shared/doc/from');
  assertEq(from.data, 'rest', 'the REST write');
  const deep = await once(a.get('shared').get('doc').get('nested').get('deep'), 5000, 'read nested/deep');
  assertEq(deep.data, 1, 'the nested REST write, through its link');
  note('GUN JS read the REST writes');
  await put(a.get('shared').get('doc'), { js: 'hello from js', jsnested: { n: 2 } }, 5000, 'GUN JS put');
  pass();
})().catch((e) => fail(e && e.stack || String(e)));
