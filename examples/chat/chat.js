// A chat room on GUN: each room is the set `chat/<room>`; a message is a node {who, text, at}
// added with set(), and every page in the room sees it through map().on().
// The same room over REST: POST /api/v1/data/chat/<room> with {"who":…,"text":…,"at":…}.
'use strict';
const gun = Gun({ peers: [location.origin + '/gun'], localStorage: false });
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const shown = new Map();
let room = null;

function render() {
  const list = $('messages');
  const items = [...shown.values()].sort((a, b) => a.at - b.at);
  list.replaceChildren(...items.map((m) => {
    const li = document.createElement('li');
    li.className = 'message';
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = m.who;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = m.text;
    li.append(who, text);
    return li;
  }));
}

function join(name) {
  room = gun.get('chat').get(name);
  $('room-name').textContent = '#' + name;
  $('join').hidden = true;
  $('send').hidden = false;
  room.map().on((msg, key) => {
    if (!msg || typeof msg.text !== 'string') { shown.delete(key); render(); return; }
    shown.set(key, { who: String(msg.who || '?'), text: msg.text, at: Number(msg.at) || 0 });
    render();
  });
}

$('join').addEventListener('submit', (e) => {
  e.preventDefault();
  join($('room').value.trim());
});

$('send').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('text').value.trim();
  if (!text || !room) return;
  room.set({ who: $('who').value.trim(), text, at: Date.now() }, (ack) => {
    $('status').textContent = ack.err ? 'not sent: ' + ack.err : 'sent';
  });
  $('text').value = '';
});

gun.on('hi', () => { $('status').textContent = 'connected'; });
gun.on('bye', () => { $('status').textContent = 'disconnected, retrying'; });

if (params.get('room')) $('room').value = params.get('room');
if (params.get('who')) $('who').value = params.get('who');
if (params.get('room') && params.get('who')) join(params.get('room'));
