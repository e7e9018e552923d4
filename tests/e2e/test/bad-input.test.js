// Bad input (DESIGN.md §2, issue 3): each case gets an `exception` naming what was wrong, the
// ack gets {status:"error", message}, the event has no other effect, and the connection and
// every other socket carry on.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack } = require('./support/stack');
const { connect, emitAck, record, quiet } = require('./support/client');

let stack;
let url;
before(async () => { stack = await startStack(); url = stack.edges[0]; });
after(async () => { await stack?.stop(); });

async function client(name) {
  const socket = await connect(url, { auth: { token: stack.users[name].token } });
  return { socket, events: record(socket), user: stack.users[name] };
}

/** Emits with an ack; asserts the error ack and the exception, and that the socket still works. */
async function rejects(c, event, payload, messagePattern) {
  const ack = await emitAck(c.socket, event, payload);
  assert.equal(ack.status, 'error', `${event} ${JSON.stringify(payload)} acked ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.message, 'string');
  if (messagePattern) assert.match(ack.message, messagePattern);
  const exc = await c.events.next('exception', (e) => e.message === ack.message && e.event === event);
  assert.equal(exc.status, 'error');
  assert.equal(exc.event, event);
  assert.ok(c.socket.connected, 'the connection carries on');
  assert.equal((await emitAck(c.socket, 'ping')).user.id, c.user.id);
  return ack.message;
}

test('unknown event', async () => {
  const a = await client('alice');
  a.socket.emit('no_such_event', { x: 1 });
  const exc = await a.events.next('exception', (e) => /no_such_event/.test(e.message));
  assert.equal(exc.status, 'error');
  assert.equal((await emitAck(a.socket, 'ping')).user.id, a.user.id);
  a.socket.close();
});

test('wrong payload shapes and types', async () => {
  const a = await client('alice');
  await rejects(a, 'join_room', undefined);
  await rejects(a, 'join_room', 'general');
  await rejects(a, 'join_room', { room: 42 }, /room/);
  await rejects(a, 'join_room', {}, /room/);
  await rejects(a, 'leave_room', { room: null }, /room/);
  await rejects(a, 'send_message', {}, /message/);
  await rejects(a, 'send_message', { message: 7 }, /message/);
  await rejects(a, 'send_message', { room: ['x'], message: 'hi' }, /room/);
  await rejects(a, 'send_message', { to: 5, message: 'hi' });
  await rejects(a, 'send_message', [1, 2, 3]);
  await rejects(a, 'admin_broadcast', {});
  await rejects(a, 'get_history', {});
  await rejects(a, 'get_history', { room: 'x', limit: 'ten' });
  await rejects(a, 'get_online_users', { limit: 'all' });
  a.socket.close();
});

test('empty and over-long messages', async () => {
  const a = await client('alice');
  await rejects(a, 'send_message', { message: '' }, /message/);
  await rejects(a, 'send_message', { message: 'x'.repeat(4097) }, /message/);
  const ok = await emitAck(a.socket, 'send_message', { message: 'x'.repeat(4096) });
  assert.ok(ok.id, 'exactly at the limit is accepted');
  a.socket.close();
});

test('bad room names', async () => {
  const a = await client('alice');
  await rejects(a, 'join_room', { room: '' }, /room/);
  await rejects(a, 'join_room', { room: 'r'.repeat(101) }, /room/);
  await rejects(a, 'join_room', { room: 'a\u0000b' }, /room/);
  await rejects(a, 'join_room', { room: 'line\nbreak' }, /room/);
  a.socket.close();
});

test('room names that look like NATS wildcards get only their own traffic', async () => {
  const a = await client('alice');
  const b = await client('bob');
  for (const room of ['>', 'a.*', '*', 'x.y']) await emitAck(b.socket, 'join_room', { room });
  await emitAck(a.socket, 'join_room', { room: 'a.b' });
  await emitAck(a.socket, 'join_room', { room: 'plain' });
  await emitAck(a.socket, 'send_message', { room: 'a.b', message: 'to a.b' });
  await emitAck(a.socket, 'send_message', { room: 'plain', message: 'to plain' });
  await a.events.next('new_message', (m) => m.message === 'to plain');
  await quiet();
  assert.equal(b.events.events('new_message').length, 0, JSON.stringify(b.events.events('new_message')));
  await emitAck(b.socket, 'send_message', { room: '>', message: 'to >' });
  await b.events.next('new_message', (m) => m.message === 'to >' && m.room === '>');
  await quiet();
  assert.equal(a.events.events('new_message').filter((m) => m.message === 'to >').length, 0);
  a.socket.close(); b.socket.close();
});

test('`to` naming no user', async () => {
  const a = await client('alice');
  await rejects(a, 'send_message', { to: 'no-such-user-id', message: 'hello?' }, /user/);
  a.socket.close();
});

test('sending to a room the socket has not joined', async () => {
  const a = await client('alice');
  const b = await client('bob');
  await emitAck(b.socket, 'join_room', { room: 'members-only' });
  await rejects(a, 'send_message', { room: 'members-only', message: 'outsider' }, /member/);
  await quiet();
  assert.equal(b.events.events('new_message').filter((m) => m.message === 'outsider').length, 0);
  a.socket.close(); b.socket.close();
});

test('admin_broadcast from a non-admin', async () => {
  const a = await client('alice');
  await rejects(a, 'admin_broadcast', { message: 'hi all' }, /admin/);
  a.socket.close();
});

test('flooding past the rate limit is refused for that socket only', async () => {
  const flooder = await client('alice');
  const calm = await client('bob');
  const acks = await Promise.all(
    Array.from({ length: 400 }, () => emitAck(flooder.socket, 'ping', undefined, 10000)),
  );
  const limited = acks.filter((a) => a.status === 'error');
  assert.ok(limited.length > 0, 'some pings were rate limited');
  assert.match(limited[0].message, /rate/);
  await flooder.events.next('exception', (e) => /rate/.test(e.message));
  assert.ok(flooder.socket.connected);
  assert.equal((await emitAck(calm.socket, 'ping')).user.id, calm.user.id, 'other sockets carry on');
  flooder.socket.close(); calm.socket.close();
});

test('a frame over the engine limit closes that one connection only', async () => {
  const big = await connect(url, { auth: { token: stack.users.alice.token }, transports: ['websocket'] });
  const other = await client('bob');
  const closed = new Promise((resolve) => big.on('disconnect', resolve));
  big.emit('send_message', { message: 'x'.repeat(8 * 1024 * 1024) });
  await closed;
  assert.equal((await emitAck(other.socket, 'ping')).user.id, other.user.id);
  other.socket.close();
});
