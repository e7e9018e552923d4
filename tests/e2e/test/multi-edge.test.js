// Two edges on one NATS: rooms, private messages, broadcasts and announcements cross edges.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack } = require('./support/stack');
const { connect, emitAck, record } = require('./support/client');

let stack;
before(async () => { stack = await startStack({ edges: 2 }); });
after(async () => { await stack?.stop(); });

async function client(name, edge) {
  const socket = await connect(stack.edges[edge], { auth: { token: stack.users[name].token } });
  return { socket, events: record(socket), user: stack.users[name] };
}

test('a member on edge A gets a room message sent on edge B; join/leave cross too', async () => {
  const a = await client('alice', 0);
  const b = await client('bob', 1);
  await emitAck(a.socket, 'join_room', { room: 'cross' });
  const ack = await emitAck(b.socket, 'join_room', { room: 'cross' });
  assert.deepEqual(new Set(ack.members.map((m) => m.id)), new Set([a.user.id, b.user.id]), 'members are cluster-wide');
  await a.events.next('user_joined', (e) => e.room === 'cross' && e.user.id === b.user.id);
  const sent = await emitAck(b.socket, 'send_message', { room: 'cross', message: 'from B' });
  const m = await a.events.next('new_message', (x) => x.id === sent.id);
  assert.equal(m.from.id, b.user.id);
  await emitAck(b.socket, 'leave_room', { room: 'cross' });
  await a.events.next('user_left', (e) => e.room === 'cross' && e.user.id === b.user.id);
  a.socket.close(); b.socket.close();
});

test('a private message crosses edges to every socket of the recipient', async () => {
  const a = await client('alice', 0);
  const b0 = await client('bob', 0);
  const b1 = await client('bob', 1);
  const sent = await emitAck(a.socket, 'send_message', { to: b1.user.id, message: 'across' });
  await b0.events.next('new_message', (x) => x.id === sent.id);
  await b1.events.next('new_message', (x) => x.id === sent.id);
  a.socket.close(); b0.socket.close(); b1.socket.close();
});

test('broadcasts and announcements reach both edges', async () => {
  const a = await client('alice', 0);
  const b = await client('bob', 1);
  const admin = await client('admin', 1);
  const all = await emitAck(a.socket, 'send_message', { message: 'everyone' });
  await b.events.next('new_message', (x) => x.id === all.id);
  const ann = await emitAck(admin.socket, 'admin_broadcast', { message: 'announcement' });
  await a.events.next('admin_announcement', (x) => x.id === ann.id);
  a.socket.close(); b.socket.close(); admin.socket.close();
});
