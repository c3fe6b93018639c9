// Scenario: two relays joined in a mesh; a GUN JS client on each side sees the other's writes.
//
//   node mesh_two_sides.js URL_A URL_B
//
// Client A talks only to relay A, client B only to relay B. Each direction is checked three
// times: a live update (the reader subscribed with .on() before the write), a fresh read (.once()
// of a node written before the reader asked for it), and an update from the far side to a node
// both relays already hold (the reader's own relay answers its GET locally, and must still hear
// of the change). Passes when all six arrive with the right data.
'use strict';
const { note, fail, pass, deadline, client, waitConnected, once, put, until, RUN } = require('./common');

const [urlA, urlB] = process.argv.slice(2);
if (!urlA || !urlB) fail('usage: node mesh_two_sides.js URL_A URL_B');
for (const u of [urlA, urlB]) {
  if (!/^(https?|wss?):\/\/(127\.0\.0\.1|localhost)(:\d+)?\//.test(u)) fail('refusing non-loopback url ' + u);
}
deadline(40000);

// A live update: `reader` subscribes, then `writer` writes; the reader must see the value.
async function live(writer, reader, soul, what) {
  let seen = null;
  reader.get(soul).on((data) => { if (data && data.text) seen = data.text; });
  await new Promise((r) => setTimeout(r, 300)); // let the subscription reach the relays
  const text = `${what} ${RUN}`;
  const { ms } = await put(writer.get(soul), { text }, 10000, `${what}: put`);
  note(`${what}: put acked in ${ms} ms`);
  const start = Date.now();
  await until(() => seen === text, 15000, () => `${what}: the reader saw ${JSON.stringify(seen)}, not ${JSON.stringify(text)}`);
  note(`${what}: seen across the mesh ${Date.now() - start} ms after the ack`);
}

// A fresh read: `writer` writes first, then `reader` asks for it.
async function fresh(writer, reader, soul, what) {
  const text = `${what} ${RUN}`;
  await put(writer.get(soul), { text }, 10000, `${what}: put`);
  const start = Date.now();
  for (;;) {
    const got = await once(reader.get(soul), 5000, `${what}: once`);
    if (got.data && got.data.text === text) break;
    if (Date.now() - start > 15000) fail(`${what}: read ${JSON.stringify(got.data)} instead of ${JSON.stringify(text)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  note(`${what}: read across the mesh ${Date.now() - start} ms after the ack`);
}

// A node written on the reader's side and known to both relays is changed on the writer's side.
async function shared(reader, writer, writerUrl, soul, what) {
  const v0 = `${what} v0 ${RUN}`;
  await put(reader.get(soul), { text: v0 }, 10000, `${what}: first put`);
  // The writer's relay has it before the update (so both relays hold the node).
  const start = Date.now();
  for (;;) {
    const got = await once(client(writerUrl).get(soul), 5000, `${what}: once`);
    if (got.data && got.data.text === v0) break;
    if (Date.now() - start > 15000) fail(`${what}: the far side read ${JSON.stringify(got.data)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  let seen = null;
  reader.get(soul).on((data) => { if (data && data.text) seen = data.text; });
  await new Promise((r) => setTimeout(r, 300));
  const v1 = `${what} v1 ${RUN}`;
  await put(writer.get(soul), { text: v1 }, 10000, `${what}: update`);
  const t = Date.now();
  await until(() => seen === v1, 15000, () => `${what}: the reader still sees ${JSON.stringify(seen)}, not ${JSON.stringify(v1)}`);
  note(`${what}: update seen across the mesh ${Date.now() - t} ms after the ack`);
}

(async () => {
  const a = client(urlA);
  const b = client(urlB);
  await waitConnected(a, 5000, 'client A');
  await waitConnected(b, 5000, 'client B');
  await live(a, b, 'mesh-live-ab-' + RUN, 'A to B live');
  await live(b, a, 'mesh-live-ba-' + RUN, 'B to A live');
  // Fresh readers, so nothing comes from their own memory.
  await fresh(a, client(urlB), 'mesh-fresh-ab-' + RUN, 'A to B fresh');
  await fresh(b, client(urlA), 'mesh-fresh-ba-' + RUN, 'B to A fresh');
  await shared(a, b, urlB, 'mesh-shared-a-' + RUN, 'B updates a node A wrote');
  await shared(b, a, urlA, 'mesh-shared-b-' + RUN, 'A updates a node B wrote');
  pass();
})().catch((e) => fail(e && e.stack || String(e)));
