// The stock GUN JS relay (gun@0.2020.1241, like gun/examples/http.js), bound to 127.0.0.1 only.
// Used to validate the interop scenarios against the reference implementation, and as a baseline for
// benchmarks.
//
//   node gunjs-relay.js [PORT] [DATA_DIR]
//
// PORT defaults to 8765 (0 = pick a free one). DATA_DIR defaults to a fresh temporary directory that is
// removed on exit. When it listens it prints one line to stdout:
//   RELAY_READY port=<port> url=http://127.0.0.1:<port>/gun pid=<pid> file=<dir>
// Env: AXE=false disables GUN's AXE (flood mode); STORE=off runs without radisk (nothing is ever acked);
// PEERS=url,url… are relays it dials (GUN's `peers` option; loopback only). TLS_CERT=file and
// TLS_KEY=file (PEM) serve it over https (wss://) instead, as relays on the web are.
//
// Multicast is ALWAYS off: by default every node GUN instance (require('gun')) sends UDP multicast to
// 233.255.255.255:8765, which must never happen here. Both the env var and the option are set.
'use strict';
process.env.MULTICAST = 'false';

const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const https = require('https');

const port = process.argv[2] === undefined ? 8765 : Number(process.argv[2]);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error('usage: node gunjs-relay.js [PORT] [DATA_DIR]');
  process.exit(2);
}
let dataDir = process.argv[3];
let removeDataDir = false;
if (!dataDir) {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gunjs-relay-'));
  removeDataDir = true;
}

const Gun = require('gun');

const opt = {
  file: dataDir,
  multicast: false,
  // lib/stats.js would otherwise write node_modules/gun/stats.<basename(file)> every few seconds and,
  // through AXE, remember and re-dial peer URLs on the next start.
  stats: false,
  peers: (process.env.PEERS || '').split(',').filter(Boolean),
};
for (const p of opt.peers) {
  if (!/^(http|ws):\/\/(127\.0\.0\.1|localhost)(:\d+)?\//.test(p)) {
    console.error('gunjs-relay: refusing non-loopback peer ' + p);
    process.exit(2);
  }
}
if (process.env.STORE === 'off') {
  opt.radisk = false;
  opt.rfs = false;
}

const notFound = (req, res) => {
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('gunjs relay: websocket endpoint is /gun\n');
};
const tls = process.env.TLS_CERT && process.env.TLS_KEY;
const server = tls
  ? https.createServer({ cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY) }, notFound)
  : http.createServer(notFound);
opt.web = server;
Gun(opt);

server.listen(port, '127.0.0.1', () => {
  const p = server.address().port;
  const scheme = tls ? 'https' : 'http';
  console.log(`RELAY_READY port=${p} url=${scheme}://127.0.0.1:${p}/gun pid=${process.pid} file=${dataDir}`);
});

function stop() {
  if (removeDataDir) {
    try { fs.rmSync(dataDir, { recursive: true, force: true }); } catch (e) { /* best effort */ }
  }
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
