// A todo list per user on GUN: the set `todos/<user>` holds items {text, done}. Items are added
// with set(), completed by merging {done: true} into the item, and deleted by setting the
// item's key in the set to null (GUN's delete).
// Over REST: GET /api/v1/data/todos/<user>?depth=1, POST to add, PUT …/<key> to update,
// DELETE …/<key> to delete.
'use strict';
const gun = Gun({ peers: [location.origin + '/gun'], localStorage: false });
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const items = new Map();
let list = null;

function render() {
  const ul = $('todos');
  const sorted = [...items.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  ul.replaceChildren(...sorted.map(([key, item]) => {
    const li = document.createElement('li');
    li.className = 'todo' + (item.done ? ' done' : '');
    li.dataset.key = key;
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.className = 'toggle';
    box.checked = !!item.done;
    box.addEventListener('change', () => list.get(key).put({ done: box.checked }));
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = item.text;
    const del = document.createElement('button');
    del.className = 'delete';
    del.textContent = 'delete';
    del.addEventListener('click', () => list.get(key).put(null));
    li.append(box, text, del);
    return li;
  }));
}

function open(user) {
  list = gun.get('todos').get(user);
  $('user-name').textContent = user;
  $('login').hidden = true;
  $('add').hidden = false;
  list.map().on((item, key) => {
    if (!item || typeof item.text !== 'string') items.delete(key);
    else items.set(key, { text: item.text, done: item.done === true });
    render();
  });
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  open($('user').value.trim());
});

$('add').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('text').value.trim();
  if (!text || !list) return;
  list.set({ text, done: false }, (ack) => {
    $('status').textContent = ack.err ? 'not saved: ' + ack.err : 'saved';
  });
  $('text').value = '';
});

gun.on('hi', () => { $('status').textContent = 'connected'; });

if (params.get('user')) { $('user').value = params.get('user'); open(params.get('user')); }
