// Scenario: .on() on one client sees another client's update.
//
// Writer A puts an initial value and waits for the ack. Listener B subscribes with get(soul).on() and must
// first receive the initial value (which proves its GET reached the relay, so the relay knows B wants this
// soul). Listener C subscribes to one key only: get(soul).get('msg').on(). Then A writes twice more; B and C
// must see every later value live, pushed by the relay (neither B nor C reads again). B must not get the
// update through any local shortcut: it is a separate Gun instance with its own graph and socket.
'use strict';
const { note, fail, pass, peerUrl, deadline, client, waitConnected, until, put, RUN } = require('./common');

const url = peerUrl();
deadline(20000);

(async () => {
  const soul = 'room-' + RUN;
  const a = client(url);
  await put(a.get(soul), { msg: 'hello', n: 0 }, 8000, 'A initial put');

  const b = client(url);
  const c = client(url);
  const seenB = []; const seenC = [];
  b.get(soul).on((d) => { seenB.push({ msg: d && d.msg, n: d && d.n, t: Date.now() }); });
  c.get(soul).get('msg').on((v) => { seenC.push({ v, t: Date.now() }); });
  await waitConnected(b, 5000, 'B');
  await waitConnected(c, 5000, 'C');
  await until(() => seenB.some((s) => s.msg === 'hello'), 5000, () => 'B .on() never saw the initial value; saw ' + JSON.stringify(seenB));
  await until(() => seenC.some((s) => s.v === 'hello'), 5000, () => 'C .get(msg).on() never saw the initial value; saw ' + JSON.stringify(seenC));
  note('B and C are subscribed and saw the initial value');

  for (const [i, msg] of [[1, 'world'], [2, 'third']]) {
    const t = Date.now();
    const { ms } = await put(a.get(soul), { msg, n: i }, 8000, `A put #${i}`);
    await until(() => seenB.some((s) => s.msg === msg && s.n === i), 5000, () => `B .on() did not see update #${i} (${msg}); saw ${JSON.stringify(seenB)}`);
    await until(() => seenC.some((s) => s.v === msg), 5000, () => `C .get('msg').on() did not see update #${i} (${msg}); saw ${JSON.stringify(seenC)}`);
    const tb = seenB.find((s) => s.msg === msg).t - t; const tc = seenC.find((s) => s.v === msg).t - t;
    note(`update #${i}: A ack ${ms} ms, B saw it after ${tb} ms, C after ${tc} ms`);
  }
  // The last thing each listener saw is the latest value.
  const lastB = seenB[seenB.length - 1]; const lastC = seenC[seenC.length - 1];
  if (lastB.msg !== 'third' || lastB.n !== 2) fail('B last saw ' + JSON.stringify(lastB));
  if (lastC.v !== 'third') fail('C last saw ' + JSON.stringify(lastC));
  pass();
})().catch((e) => fail(e && e.stack || String(e)));
