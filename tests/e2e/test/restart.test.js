// Issue 15: a stack stopped while clients connect and disconnect, then started again on the
// same NATS store (as `make run` after Ctrl-C), announces a new connect at once. Before the
// fix, the stopped presence replica kept the emission lease and the new one waited for its
// ttl (3 s) before announcing anything.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack } = require('./support/stack');
const { startNats } = require('./support/nats');
const { io } = require('socket.io-client');
const { connect, record } = require('./support/client');

let nats;
let stack;
after(async () => {
  await stack?.stop();
  await nats?.remove();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One churning client's connect: gives up after 2 s (a stopping stack may never answer). */
function churnConnect(url, token) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { reconnection: false, forceNew: true, timeout: 2000, auth: { token } });
    const fail = (err) => { clearTimeout(timer); socket.close(); reject(err); };
    const timer = setTimeout(() => fail(new Error('connect timed out')), 2000);
    socket.once('connect', () => { clearTimeout(timer); resolve(socket); });
    socket.once('connect_error', fail);
  });
}

/** Connects and disconnects `tokens` over and over until `stop()`; counts what got through. */
function churn(url, tokens) {
  let running = true;
  const counts = { connected: 0, closed: 0, failed: 0 };
  const workers = tokens.map(async (token) => {
    while (running) {
      try {
        const socket = await churnConnect(url, token);
        counts.connected++;
        await sleep(20 + Math.floor(Math.random() * 80));
        socket.close();
        counts.closed++;
      } catch {
        counts.failed++; // the stack is stopping: refused or cut off
        await sleep(20);
      }
    }
  });
  return { counts, async stop() { running = false; await Promise.all(workers); } };
}

test('stopped under churn and started again on the same NATS store: user_online within 1 s', async (t) => {
  nats = await startNats();
  stack = await startStack({ args: ['--nats-url', nats.url] });
  const tokens = [];
  for (let i = 0; i < 8; i++) {
    const u = await stack.command({ cmd: 'create_user', email: `churn${i}-${Date.now()}@example.com` });
    tokens.push(u.token);
  }
  const clients = churn(stack.edges[0], tokens);
  while (clients.counts.closed < 40) await sleep(20);
  // Stop everything while the clients keep coming and going, NATS last, as Ctrl-C on `make run`.
  await stack.stop();
  stack = undefined;
  await clients.stop();
  nats = await nats.restart();
  t.diagnostic(`clients around the stop: ${JSON.stringify(clients.counts)}`);

  stack = await startStack({ args: ['--nats-url', nats.url] });
  const bob = await connect(stack.edges[0], { auth: { token: stack.users.bob.token } });
  const seen = record(bob);
  const connectAt = Date.now();
  const alice = await connect(stack.edges[0], { auth: { token: stack.users.alice.token } });
  await seen.next('user_online', (e) => e.user.id === stack.users.alice.id);
  const arrival = seen.seen.find((s) => s.event === 'user_online' && s.data.user.id === stack.users.alice.id);
  const elapsed = arrival.at - connectAt;
  t.diagnostic(`alice connected -> bob got user_online after ${elapsed} ms`);
  assert.ok(elapsed <= 1000, `user_online arrived ${elapsed} ms after the connect (bound 1000 ms)`);
  alice.close();
  bob.close();
});
