// The example pages in a real browser (headless Chromium driven by playwright-core), served by
// fibergun with `--static examples`, talking GUN JS to it.
//
//   node browser_examples.js BASE PHASE RUN
//
// BASE is http://127.0.0.1:PORT. PHASE is one of:
//   chat        two pages join room RUN and exchange messages live, both ways;
//   todos-add   user RUN adds items, completes one and deletes one; checked over REST too;
//   todos-check a fresh page (after the test restarted the server) shows the items again.
// CHROMIUM names the browser (default /usr/bin/chromium).
'use strict';
const { chromium } = require('playwright-core');

const [base, phase, run] = process.argv.slice(2);
if (!base || !phase || !run) { console.error('usage: node browser_examples.js BASE PHASE RUN'); process.exit(2); }
const T0 = Date.now();
const note = (...a) => console.log(`[${String(Date.now() - T0).padStart(5)} ms]`, ...a);
function fail(msg) { console.error(`FAIL (browser ${phase}): ${msg}`); process.exit(1); }
setTimeout(() => fail('overall timeout of 45 s'), 45000);

// Flags for a closed machine: no background networking, no first-run or sync traffic.
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

async function page(browser, path) {
  const context = await browser.newContext();
  const p = await context.newPage();
  p.on('pageerror', (e) => fail(`page error on ${path}: ${e.message}`));
  await p.goto(base + path);
  await p.waitForFunction(() => document.getElementById('status').textContent === 'connected', null, { timeout: 10000 })
    .catch(() => fail(`${path} never connected to /gun`));
  return p;
}

async function chat(browser) {
  const a = await page(browser, `/chat/?room=${run}&who=ann`);
  const b = await page(browser, `/chat/?room=${run}&who=bob`);
  await a.fill('#text', 'hello from ann');
  await a.click('#send-button');
  await b.waitForSelector('#messages li:has-text("hello from ann")', { timeout: 10000 })
    .catch(() => fail('bob did not see ann\'s message live'));
  note('bob saw ann\'s message');
  await b.fill('#text', 'hi ann, bob here');
  await b.click('#send-button');
  await a.waitForSelector('#messages li:has-text("hi ann, bob here")', { timeout: 10000 })
    .catch(() => fail('ann did not see bob\'s reply live'));
  note('ann saw bob\'s reply');
  // The same room over REST.
  const res = await fetch(`${base}/api/v1/data/chat/${run}?depth=1`);
  const room = await res.json();
  const texts = Object.values(room).map((m) => m && m.text).sort();
  if (JSON.stringify(texts) !== JSON.stringify(['hello from ann', 'hi ann, bob here'])) fail('REST sees ' + JSON.stringify(room));
}

async function todosAdd(browser) {
  const p = await page(browser, `/todos/?user=${run}`);
  for (const text of ['milk', 'bread']) {
    await p.fill('#text', text);
    await p.click('#add-button');
    await p.waitForSelector(`#todos li:has-text("${text}")`, { timeout: 10000 }).catch(() => fail(`item ${text} not shown`));
  }
  await p.check('#todos li:has-text("milk") .toggle');
  await p.waitForSelector('#todos li.done:has-text("milk")', { timeout: 10000 }).catch(() => fail('milk not shown done'));
  await p.fill('#text', 'junk');
  await p.click('#add-button');
  await p.waitForSelector('#todos li:has-text("junk")', { timeout: 10000 }).catch(() => fail('item junk not shown'));
  await p.click('#todos li:has-text("junk") .delete');
  await p.waitForSelector('#todos li:has-text("junk")', { state: 'detached', timeout: 10000 }).catch(() => fail('junk not gone after delete'));
  // Wait until the server has it all (acks come after the commit).
  const end = Date.now() + 10000;
  for (;;) {
    const items = await (await fetch(`${base}/api/v1/data/todos/${run}?depth=1`)).json().catch(() => ({}));
    const byText = Object.fromEntries(Object.values(items).filter(Boolean).map((i) => [i.text, i.done]));
    if (byText.milk === true && byText.bread === false && !('junk' in byText)) break;
    if (Date.now() > end) fail('the server does not hold the items: ' + JSON.stringify(items));
    await new Promise((r) => setTimeout(r, 100));
  }
  note('items added, milk done, junk deleted, all on the server');
}

async function todosCheck(browser) {
  const p = await page(browser, `/todos/?user=${run}`);
  await p.waitForSelector('#todos li:has-text("bread")', { timeout: 10000 }).catch(() => fail('bread not shown after the restart'));
  await p.waitForSelector('#todos li.done:has-text("milk")', { timeout: 10000 }).catch(() => fail('milk not shown done after the restart'));
  const count = await p.locator('#todos li').count();
  if (count !== 2) fail(`expected 2 items after the restart, found ${count}`);
  note('the items came back after the restart');
}

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS });
  try {
    if (phase === 'chat') await chat(browser);
    else if (phase === 'todos-add') await todosAdd(browser);
    else if (phase === 'todos-check') await todosCheck(browser);
    else fail('unknown phase ' + phase);
  } finally {
    await browser.close();
  }
  console.log(`PASS (browser ${phase}, ${Date.now() - T0} ms)`);
  process.exit(0);
})().catch((e) => fail(e && e.stack || String(e)));
