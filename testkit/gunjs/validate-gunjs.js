// Run the interop scenarios against the stock GUN JS relay (gunjs-relay.js), each with a fresh relay and a
// fresh data directory, to check that the scenarios themselves are right.
//
//   node validate-gunjs.js [scenario ...]      (default: all of SCENARIOS; also `npm run validate-gunjs`)
//
// Sets INTEROP_RELAY=gunjs, which tolerates the GUN JS relay's missing acks (see common.js).
'use strict';
process.env.MULTICAST = 'false';
const { spawn, spawnSync } = require('child_process');
const path = require('path');

const SCENARIOS = ['put_flat', 'put_nested', 'on_update', 'set_map', 'get_missing', 'ham_conflict'];

function startRelay() {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'gunjs-relay.js'), '0'], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    let out = '';
    const to = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('relay did not start: ' + out)); }, 15000);
    const onData = (d) => {
      out += d;
      const m = /RELAY_READY port=(\d+)/.exec(out);
      if (m && !child.url) { child.url = `http://127.0.0.1:${m[1]}/gun`; clearTimeout(to); resolve(child); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (c) => { if (!child.url) { clearTimeout(to); reject(new Error('relay exited ' + c + ': ' + out)); } });
  });
}

(async () => {
  const names = process.argv.slice(2).length ? process.argv.slice(2) : SCENARIOS;
  let failed = 0;
  for (const n of names) {
    const relay = await startRelay();
    const r = spawnSync(process.execPath, [path.join(__dirname, n + '.js'), relay.url], {
      env: Object.assign({}, process.env, { INTEROP_RELAY: 'gunjs' }), encoding: 'utf8', timeout: 30000,
    });
    relay.kill('SIGTERM');
    const ok = r.status === 0;
    if (!ok) failed++;
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${n} (exit ${r.status}${r.signal ? ', ' + r.signal : ''})`);
    if (!ok || process.env.VERBOSE) process.stdout.write((r.stdout || '') + (r.stderr || ''));
  }
  console.log(`${names.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(1); });
