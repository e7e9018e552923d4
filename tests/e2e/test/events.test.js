// Every client event of DESIGN.md §2 with its ack and payload shape, on one edge.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack } = require('./support/stack');
const { connect, emitAck, record, quiet } = require('./support/client');

const RFC3339_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let stack;
let url;
let users;
before(async () => {
  stack = await startStack();
  url = stack.edges[0];
  users = stack.users;
});
after(async () => { await stack?.stop(); });

async function client(name) {
  const socket = await connect(url, { auth: { token: users[name].token } });
  return { socket, events: record(socket), user: users[name] };
}

function uniqueRoom(prefix) {
  return `${prefix}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
}

test('ping answers pong with the user, as event and as ack', async () => {
  const a = await client('alice');
  const ack = await emitAck(a.socket, 'ping');
  assert.deepEqual(ack.user, { id: a.user.id, email: a.user.email, role: 'user' });
  assert.match(ack.timestamp, RFC3339_MS);
  const pong = await a.events.next('pong');
  assert.equal(pong.user.id, a.user.id);
  a.socket.emit('ping');
  await a.events.next('pong', (p) => p !== pong);
  a.socket.close();
});

test('join_room acks the room and its members; others get user_joined', async () => {
  const room = uniqueRoom('join');
  const a = await client('alice');
  const b = await client('bob');
  const ackA = await emitAck(a.socket, 'join_room', { room });
  assert.equal(ackA.room, room);
  assert.ok(Array.isArray(ackA.members));
  assert.ok(ackA.members.some((m) => m.id === a.user.id && m.email === a.user.email));
  const ackB = await emitAck(b.socket, 'join_room', { room });
  assert.deepEqual(new Set(ackB.members.map((m) => m.id)), new Set([a.user.id, b.user.id]));
  const joined = await a.events.next('user_joined', (e) => e.room === room);
  assert.deepEqual(joined.user, { id: b.user.id, email: b.user.email });
  assert.match(joined.timestamp, RFC3339_MS);
  await quiet(200);
  assert.equal(b.events.events('user_joined').filter((e) => e.room === room && e.user.id === b.user.id).length, 0,
    'the joining user does not get its own user_joined');
  a.socket.close(); b.socket.close();
});

test('leave_room acks the room; others get user_left; no more room messages', async () => {
  const room = uniqueRoom('leave');
  const a = await client('alice');
  const b = await client('bob');
  await emitAck(a.socket, 'join_room', { room });
  await emitAck(b.socket, 'join_room', { room });
  const ack = await emitAck(b.socket, 'leave_room', { room });
  assert.equal(ack.room, room);
  const left = await a.events.next('user_left', (e) => e.room === room);
  assert.deepEqual(left.user, { id: b.user.id, email: b.user.email });
  await emitAck(a.socket, 'send_message', { room, message: 'after leave' });
  await a.events.next('new_message', (m) => m.message === 'after leave');
  await quiet();
  assert.equal(b.events.events('new_message').filter((m) => m.message === 'after leave').length, 0);
  a.socket.close(); b.socket.close();
});

test('send_message to a room: ack {id, timestamp} and new_message to every member', async () => {
  const room = uniqueRoom('chat');
  const a = await client('alice');
  const b = await client('bob');
  await emitAck(a.socket, 'join_room', { room });
  await emitAck(b.socket, 'join_room', { room });
  const ack = await emitAck(a.socket, 'send_message', { room, message: 'hello room' });
  assert.match(ack.id, UUID_V7);
  assert.match(ack.timestamp, RFC3339_MS);
  const msg = await b.events.next('new_message', (m) => m.id === ack.id);
  assert.deepEqual(msg, {
    id: ack.id, from: { id: a.user.id, email: a.user.email }, room, message: 'hello room', timestamp: ack.timestamp,
  });
  await a.events.next('new_message', (m) => m.id === ack.id); // the sender's socket gets it too, like NestJS
  a.socket.close(); b.socket.close();
});

test('send_message to a user: every socket of the recipient and the sender\'s other sockets', async () => {
  const a1 = await client('alice');
  const a2 = await client('alice');
  const b1 = await client('bob');
  const b2 = await client('bob');
  const admin = await client('admin');
  const ack = await emitAck(a1.socket, 'send_message', { to: b1.user.id, message: 'psst' });
  assert.match(ack.id, UUID_V7);
  for (const c of [b1, b2, a2]) {
    const m = await c.events.next('new_message', (x) => x.id === ack.id);
    assert.deepEqual(m, { id: ack.id, from: { id: a1.user.id, email: a1.user.email }, to: b1.user.id, message: 'psst', timestamp: ack.timestamp });
  }
  await quiet();
  assert.equal(a1.events.events('new_message').filter((m) => m.id === ack.id).length, 0, 'not echoed to the sending socket');
  assert.equal(admin.events.events('new_message').filter((m) => m.id === ack.id).length, 0, 'not leaked to others');
  for (const c of [a1, a2, b1, b2, admin]) c.socket.close();
});

test('send_message to everyone', async () => {
  const a = await client('alice');
  const b = await client('bob');
  const ack = await emitAck(a.socket, 'send_message', { message: 'hello all' });
  const m = await b.events.next('new_message', (x) => x.id === ack.id);
  assert.deepEqual(m, { id: ack.id, from: { id: a.user.id, email: a.user.email }, message: 'hello all', timestamp: ack.timestamp });
  assert.equal(m.room, undefined);
  assert.equal(m.to, undefined);
  a.socket.close(); b.socket.close();
});

test('a private message to an offline user is delivered when it connects, in order, once', async () => {
  const carol = await stack.command({ cmd: 'create_user', email: `carol-${Date.now()}@example.com` });
  const a = await client('alice');
  const ids = [];
  for (let i = 0; i < 5; i++) {
    ids.push((await emitAck(a.socket, 'send_message', { to: carol.id, message: `offline ${i}` })).id);
  }
  const c1 = await connect(url, { auth: { token: carol.token } });
  const ev1 = record(c1);
  for (const id of ids) await ev1.next('new_message', (m) => m.id === id);
  assert.deepEqual(ev1.events('new_message').map((m) => m.id), ids, 'in order, once');
  c1.close();
  const c2 = await connect(url, { auth: { token: carol.token } });
  const ev2 = record(c2);
  await emitAck(c2, 'ping');
  await quiet();
  assert.equal(ev2.events('new_message').length, 0, 'not delivered twice');
  c2.close(); a.socket.close();
});

test('admin_broadcast: admin_announcement to everyone, admins only', async () => {
  const admin = await client('admin');
  const a = await client('alice');
  const ack = await emitAck(admin.socket, 'admin_broadcast', { message: 'maintenance at 5' });
  assert.match(ack.id, UUID_V7);
  const ann = await a.events.next('admin_announcement', (x) => x.id === ack.id);
  assert.deepEqual(ann, { id: ack.id, from: { id: admin.user.id, email: admin.user.email }, message: 'maintenance at 5', timestamp: ack.timestamp });
  const denied = await emitAck(a.socket, 'admin_broadcast', { message: 'not allowed' });
  assert.equal(denied.status, 'error');
  const exc = await a.events.next('exception', (e) => e.event === 'admin_broadcast');
  assert.equal(exc.status, 'error');
  await quiet();
  assert.equal(admin.events.events('admin_announcement').filter((x) => x.message === 'not allowed').length, 0);
  admin.socket.close(); a.socket.close();
});

test('get_history: a room (members only) and a conversation, newest first, paginated', async () => {
  const room = uniqueRoom('hist');
  const a = await client('alice');
  const b = await client('bob');
  await emitAck(a.socket, 'join_room', { room });
  const sent = [];
  for (let i = 0; i < 7; i++) sent.push((await emitAck(a.socket, 'send_message', { room, message: `m${i}` })).id);
  await a.events.next('new_message', (m) => m.id === sent[6]);
  const page1 = await emitAck(a.socket, 'get_history', { room, limit: 3 });
  assert.deepEqual(page1.messages.map((m) => m.message), ['m6', 'm5', 'm4']);
  assert.equal(page1.messages[0].from.id, a.user.id);
  const page2 = await emitAck(a.socket, 'get_history', { room, limit: 3, before: page1.messages[2].id });
  assert.deepEqual(page2.messages.map((m) => m.message), ['m3', 'm2', 'm1']);
  const denied = await emitAck(b.socket, 'get_history', { room });
  assert.equal(denied.status, 'error', 'a non-member may not read a room');

  const p = await emitAck(a.socket, 'send_message', { to: b.user.id, message: 'dm history' });
  await b.events.next('new_message', (m) => m.id === p.id);
  const conv = await emitAck(b.socket, 'get_history', { with: a.user.id });
  assert.equal(conv.messages[0].id, p.id);
  assert.equal(conv.messages[0].to, b.user.id);
  const tooMany = await emitAck(a.socket, 'get_history', { room, limit: 1000 });
  assert.ok(tooMany.status === 'error' || tooMany.messages.length <= 100);
  a.socket.close(); b.socket.close();
});

test('notification from admin tooling reaches the user', async () => {
  const a = await client('alice');
  await stack.command({ cmd: 'notify', user_id: a.user.id, title: 'hey', message: 'system notice' });
  const n = await a.events.next('notification', (x) => x.message === 'system notice');
  assert.equal(n.title, 'hey');
  assert.match(n.timestamp, RFC3339_MS);
  a.socket.close();
});

test('every event works without an ack callback too', async () => {
  const room = uniqueRoom('noack');
  const a = await client('alice');
  const b = await client('bob');
  await emitAck(b.socket, 'join_room', { room });
  a.socket.emit('join_room', { room });
  a.socket.emit('send_message', { room, message: 'no ack' });
  await b.events.next('new_message', (m) => m.message === 'no ack');
  a.socket.emit('leave_room', { room });
  await b.events.next('user_left', (e) => e.room === room && e.user.id === a.user.id);
  a.socket.close(); b.socket.close();
});
