// The admin console in a real browser (headless Chromium driven by playwright-core), against a
// fibergun started with --admin-token, with GUN JS clients writing the data it shows.
//
//   node browser_console.js BASE TOKEN RUN [SCREENSHOTS_DIR]
//
// Without the token /admin answers 401 with the sign-in form, and a wrong token is refused there.
// Signed in: the relay at a glance shows this relay's version and its connections (a GUN JS
// client's among them); the graph browser finds the soul a GUN JS client wrote by its prefix,
// opens it (values, states as dates, a link followed), and shows a second client's change live;
// a key banned from the console is listed, and lifted; a soul taken down from it is not served
// until it is restored. With SCREENSHOTS_DIR, each view is saved
// there as a PNG. CHROMIUM names the browser (default /usr/bin/chromium).
'use strict';
const { chromium } = require('playwright-core');
const { client, acked, note, fail, pass, deadline } = require('./common');

const [base, token, run, shots] = process.argv.slice(2);
if (!base || !token || !run) { console.error('usage: node browser_console.js BASE TOKEN RUN [SCREENSHOTS_DIR]'); process.exit(2); }
deadline(60000);

const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

async function shot(p, name) {
  if (!shots) return;
  await p.screenshot({ path: require('path').join(shots, `console-${name}.png`), fullPage: false });
  note('screenshot', name);
}

(async () => {
  // A GUN JS client writes a node with a link to another.
  const soul = `console-${run}`;
  const writer = client(base + '/gun');
  await acked((cb) => writer.get(soul).put({ title: 'first', count: 1, owner: { name: 'ann' } }, cb), 10000, 'GUN JS put');
  note('GUN JS wrote', soul);

  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ARGS });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const p = await context.newPage();
  p.on('pageerror', (e) => fail(`page error on ${p.url()}: ${e.stack || e.message}`));

  // Signed out: 401 and the form; a wrong token is refused.
  const first = await p.goto(base + '/admin');
  if (first.status() !== 401) fail(`/admin without the token answered ${first.status()}, not 401`);
  await p.fill('#token', 'not-the-token-0123456789');
  const [refused] = await Promise.all([p.waitForNavigation(), p.click('button[type=submit]')]);
  if (refused.status() !== 401) fail(`a wrong token was answered ${refused.status()}`);
  if (!(await p.isVisible('#refused'))) fail('a wrong token: no refusal shown');
  note('a wrong token is refused');
  await shot(p, 'sign-in');

  // Signed in: the relay at a glance.
  await p.fill('#token', token);
  await Promise.all([p.waitForNavigation(), p.click('button[type=submit]')]);
  await p.waitForFunction(() => /^v\d/.test((document.getElementById('version') || {}).textContent || ''), null, { timeout: 10000 })
    .catch(() => fail('the console did not load the relay\'s status'));
  await p.waitForFunction(() => [...document.querySelectorAll('#connections tbody tr td:nth-child(2)')].some((td) => td.textContent === 'client'), null, { timeout: 10000 })
    .catch(() => fail('the GUN JS client\'s connection is not listed'));
  note('signed in; the GUN JS client is among the connections');
  await p.waitForFunction(() => document.querySelectorAll('#chart-rates path').length > 0, null, { timeout: 15000 })
    .catch(() => fail('the charts were never drawn'));
  await shot(p, 'relay');

  // The graph: find by prefix, open, follow a link, see a change live.
  await p.click('nav a[data-view=graph]');
  await p.fill('#prefix', soul);
  await p.click('#find button[type=submit]');
  const link = `#souls a[data-soul="${soul}"]`;
  await p.waitForSelector(link, { timeout: 10000 }).catch(() => fail(`${soul} not found by its prefix`));
  await p.click(link);
  await p.waitForSelector('#fields tr[data-key="title"] td.value:has-text("first")', { timeout: 10000 })
    .catch(() => fail('the node does not show title = "first"'));
  const state = await p.textContent('#fields tr[data-key="title"] td.state');
  if (!/^\d{4}-\d\d-\d\d /.test(state)) fail('the state is not shown as a date: ' + state);
  await p.waitForFunction(() => ((document.getElementById('live') || {}).textContent || '').includes('live'), null, { timeout: 10000 })
    .catch(() => fail('the node is not watched live'));
  const other = client(base + '/gun');
  await acked((cb) => other.get(soul).get('title').put('second', cb), 10000, 'second GUN JS put');
  await p.waitForSelector('#fields tr[data-key="title"] td.value:has-text("second")', { timeout: 10000 })
    .catch(() => fail('a second client\'s change did not appear live'));
  note('a second client\'s change appeared live');
  await shot(p, 'graph');
  await p.click('#fields tr[data-key="owner"] a.link');
  await p.waitForSelector('#fields tr[data-key="name"] td.value:has-text("ann")', { timeout: 10000 })
    .catch(() => fail('following the owner link did not open its node'));

  // Bans: one added from the console is listed, then lifted.
  await p.click('nav a[data-view=moderation]');
  const key = `key-${run}`;
  await p.fill('#ban-key', key);
  await p.click('#ban button[type=submit]');
  await p.waitForSelector(`#bans li:has-text("${key}")`, { timeout: 10000 }).catch(() => fail('the ban is not listed'));
  await shot(p, 'moderation');
  await p.click(`#bans li:has-text("${key}") button`);
  await p.waitForSelector('#bans li:has-text("No key is banned.")', { timeout: 10000 }).catch(() => fail('the ban was not lifted'));
  // A takedown from the console: the soul is no longer served to GUN JS's wire; restored, it is.
  await p.fill('#takedown-soul', soul);
  await p.click('#takedown button[type=submit]');
  await p.waitForSelector(`#takedowns li:has-text("${soul}")`, { timeout: 10000 }).catch(() => fail('the takedown is not listed'));
  const served = async () => {
    const r = await fetch(`${base}/api/v1/data/${soul}`);
    return r.status;
  };
  if (await served() !== 403) fail('a taken-down soul is still served over REST');
  await p.click(`#takedowns li:has-text("${soul}") button:has-text("Restore")`);
  await p.waitForSelector('#takedowns li:has-text("No soul is taken down.")', { timeout: 10000 }).catch(() => fail('the soul was not restored'));
  if (await served() !== 200) fail('a restored soul is not served');
  note('a soul taken down and restored from the console');
  await browser.close();
  pass('signed in, saw the relay, found and watched a node, banned and lifted a key');
})().catch((e) => fail(e && e.stack || String(e)));
