// Writes tests/vectors/sea_signatures.json: signatures and certificates made by GUN JS's own SEA
// (gun@0.2020.1241's gun/sea on node's WebCrypto), for tests/sea_signatures.rs.
//
//   node make_sea_vectors.js [COUNT]     (default 200 field signatures)
//
// Each field entry is a value in user space signed as GUN JS signs a put: `SEA.sign` of
// {"#":soul,".":key,":":value,">":state} with {raw:1}. `text` is what SEA hashed (JSON.stringify of
// that object), so the Rust side can check that it writes the same text. `high_s` marks signatures
// whose s is above n/2 (WebCrypto does not normalise them; about half are).
'use strict';
process.env.MULTICAST = 'false';
const fs = require('fs');
const path = require('path');
require('gun/gun');
const SEA = require('gun/sea');

const COUNT = Number(process.argv[2] || 200);
const HALF_N = BigInt('0x7FFFFFFF800000007FFFFFFFFFFFFFFFDE737D56D38BCF4279DCE5617E3192A8');

const VALUES = [
  'hello', '', 'héllo ☃ 😀', 'quote " backslash \\ newline \n tab \t', '\u2028\u2029 and \u0001',
  0, -0, 1, -1, 0.1, 1 / 3, 1e21, 1.5e-7, 123456789012345680000, -2.5e300, 9007199254740993,
  true, false, null, { '#': 'some/linked/soul' },
];

function highS(b64) {
  const raw = Buffer.from(b64, 'base64');
  return BigInt('0x' + raw.subarray(32).toString('hex')) > HALF_N;
}

(async () => {
  const pairs = [await SEA.pair(), await SEA.pair(), await SEA.pair()];
  const fields = [];
  for (let i = 0; i < COUNT; i++) {
    const pair = pairs[i % pairs.length];
    const soul = '~' + pair.pub + (i % 2 ? '/profile' : '');
    const key = i % 5 === 0 ? 'ké y ' + i : 'k' + i;
    const value = VALUES[i % VALUES.length];
    // Integer states and fractional ones, as GUN's state machine makes both.
    const state = 1795574000000 + i * 7919 + (i % 3 === 0 ? 0.5 + i / 1000 : 0);
    const m = { '#': soul, '.': key, ':': value, '>': state };
    const sig = await SEA.sign(m, pair, null, { raw: 1 });
    if (!sig || !sig.s) throw new Error('SEA.sign failed: ' + SEA.err);
    fields.push({ pub: pair.pub, soul, key, value, state, text: JSON.stringify(m), sig: sig.s, high_s: highS(sig.s) });
  }
  const certificates = [];
  const policies = ['inbox', { '*': 'inbox', '+': '*' }, [{ '*': 'a' }, { '#': 'b' }], { '#': { '*': 'x' }, '.': { '>': 'k' } }];
  for (let i = 0; i < policies.length * 2; i++) {
    const authority = pairs[i % pairs.length];
    const writers = i % 2 ? '*' : [pairs[(i + 1) % 3].pub, pairs[(i + 2) % 3].pub];
    const expiry = i % 3 === 0 ? 1795574000000 + 86400000 : undefined;
    const cert = await SEA.certify(writers, policies[i % policies.length], authority, null, expiry ? { expiry } : {});
    const parsed = JSON.parse(cert.slice(3));
    certificates.push({ pub: authority.pub, cert: parsed, text: JSON.stringify(parsed.m), high_s: highS(parsed.s) });
  }
  const out = {
    made_by: 'gun@0.2020.1241 gun/sea, node ' + process.version + ', testkit/gunjs/make_sea_vectors.js',
    fields,
    certificates,
  };
  const file = path.join(__dirname, '..', '..', 'tests', 'vectors', 'sea_signatures.json');
  fs.writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
  console.log(`wrote ${fields.length} field signatures (${fields.filter((f) => f.high_s).length} high-S) and ${certificates.length} certificates to ${file}`);
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
