// The two socketioxide hazards (shared/SOCKETIO-NOTES.md): a socket's events are handled in the
// order it sent them, and events emitted in the `connect` callback are never lost.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { io } = require('socket.io-client');
const { startStack } = require('./support/stack');
const { connect, record } = require('./support/client');

let stack;
let url;
// Thousands of events back to back from one socket are a flood by the default limits (100/s,
// burst 200, 256 queued): these tests are about ordering, so the stack runs without them.
before(async () => {
  stack = await startStack({ args: ['--rate-limit-per-sec', '0', '--event-queue-limit', '100000'] });
  url = stack.edges[0];
});
after(async () => { await stack?.stop(); });

test('2,000 back-to-back join_room + send_message pairs are handled in order', async () => {
  const pairs = 2000;
  const sender = await connect(url, { auth: { token: stack.users.alice.token }, transports: ['websocket'] });
  const exceptions = [];
  sender.on('exception', (e) => exceptions.push(e));
  const acks = [];
  for (let i = 0; i < pairs; i++) {
    const room = `order-${i}`;
    sender.emit('join_room', { room });
    acks.push(new Promise((resolve) => {
      sender.timeout(60000).emit('send_message', { room, message: `m${i}` }, (err, ack) => resolve(err ? { status: 'error', message: `no ack: ${err.message}` } : ack));
    }));
  }
  const results = await Promise.all(acks);
  const failed = results.filter((r) => r.status === 'error');
  assert.equal(failed.length, 0, `first failure: ${JSON.stringify(failed[0])}; exceptions: ${JSON.stringify(exceptions.slice(0, 3))}`);
  assert.equal(exceptions.length, 0);
  sender.close();
});

test('events emitted in the connect callback are never lost (500 connects)', async () => {
  const n = 500;
  const token = stack.users.bob.token;
  let pongs = 0;
  let joins = 0;
  await Promise.all(Array.from({ length: n }, (_, i) => new Promise((resolve, reject) => {
    const socket = io(url, { auth: { token }, forceNew: true, reconnection: false, transports: ['websocket'] });
    const timer = setTimeout(() => { socket.close(); reject(new Error(`socket ${i}: no answer`)); }, 30000);
    let got = 0;
    const done = () => { if (++got === 2) { clearTimeout(timer); socket.close(); resolve(); } };
    socket.on('connect', () => {
      socket.emit('ping');
      socket.emit('join_room', { room: `cb-${i % 10}` }, (ack) => { if (ack.room) joins++; done(); });
    });
    socket.on('pong', () => { pongs++; done(); });
    socket.on('connect_error', (e) => { clearTimeout(timer); reject(e); });
  })));
  assert.equal(pongs, n);
  assert.equal(joins, n);
});

test('a sequence of messages to a room arrives in the order it was sent', async () => {
  const a = await connect(url, { auth: { token: stack.users.alice.token } });
  const b = await connect(url, { auth: { token: stack.users.bob.token } });
  const eb = record(b);
  await a.emitWithAck('join_room', { room: 'seq' });
  await b.emitWithAck('join_room', { room: 'seq' });
  const n = 300;
  for (let i = 0; i < n; i++) a.emit('send_message', { room: 'seq', message: `s${i}` });
  await eb.next('new_message', (m) => m.message === `s${n - 1}`, 15000);
  const got = eb.events('new_message').filter((m) => m.room === 'seq').map((m) => m.message);
  assert.deepEqual(got, Array.from({ length: n }, (_, i) => `s${i}`));
  a.close(); b.close();
});
