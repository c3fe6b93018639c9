// Decides HAM cases with GUN JS's own code: each case is put through a real in-process GUN root
// (`root.on('in', …)`, the path a frame from the network takes), with the clock GUN reads (`Date`)
// set to the case's wall clock, and `setTimeout` watched for the deferral of a future state.
// Message ids end with '.' so no id equals one of GUN's internal per-key ids (id + counter).
//
// stdin: one JSON array per line, [current, incoming, wall] where current is null (key absent) or
// [value, state], and incoming is [value, state]. Walls must increase strictly (GUN's clock never
// runs backwards). stdout: one JSON array per case, [deferred, value, state] after the put (value
// and state null when the key is still absent).
'use strict';
const RealDate = Date;
let fakeNow = 0;
global.Date = class extends RealDate {
  constructor(...a) { if (a.length) super(...a); else super(fakeNow); }
  static now() { return fakeNow; }
};
const path = require('path');
const Gun = require(path.join(__dirname, 'node_modules', 'gun', 'gun'));
const gun = Gun({ peers: [], localStorage: false, radisk: false, multicast: false });
const root = gun._;
const realSetTimeout = global.setTimeout;
const MAX_DEFER = 2147483647;

// GUN works synchronously until it has been busy for 9 ms, then continues on later turns of the
// event loop (setImmediate); each case waits until GUN's turn queue is empty before it is read.
const settle = () => new Promise((resolve) => setImmediate(resolve));
let wait = 0;
let deferred = false;
global.setTimeout = Object.assign((f, ms) => {
  if (wait > 0 && ms === wait) { deferred = true; return 0; }
  return realSetTimeout(f, ms);
}, realSetTimeout);

async function main() {
  const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(Boolean);
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const [cur, inc, wall] = JSON.parse(lines[i]);
    const soul = 'c' + i;
    if (cur) root.graph[soul] = { _: { '#': soul, '>': { k: cur[1] } }, k: cur[0] };
    fakeNow = wall;
    deferred = false;
    wait = Math.min(inc[1] - wall, MAX_DEFER);
    root.on('in', { '#': 'case' + i + '.', put: { [soul]: { _: { '#': soul, '>': { k: inc[1] } }, k: inc[0] } } });
    do { await settle(); } while (realSetTimeout.turn.s.length > 0);
    const node = root.graph[soul];
    const has = node && Object.prototype.hasOwnProperty.call(node, 'k');
    out.push(JSON.stringify([deferred, has ? node.k : null, has ? node._['>'].k : null]));
    delete root.graph[soul];
  }
  process.stdout.write(out.join('\n') + '\n');
}
main();
