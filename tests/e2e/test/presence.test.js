// Presence rows of DESIGN.md §2: user_online / user_offline exactly once per transition,
// cluster-wide, and get_online_users with pagination.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack } = require('./support/stack');
const { connect, emitAck, record, quiet } = require('./support/client');

const RFC3339_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

let stack;
before(async () => { stack = await startStack({ edges: 2 }); });
after(async () => { await stack?.stop(); });

async function newUser(tag) {
  return stack.command({ cmd: 'create_user', email: `${tag}-${Date.now()}-${Math.random().toString(36).slice(2, 7)}@example.com` });
}

test('user_online on the first socket anywhere, user_offline when the last one goes, once each', async () => {
  const observer = await connect(stack.edges[0], { auth: { token: stack.users.admin.token } });
  const seen = record(observer);
  const u = await newUser('frank');
  const s1 = await connect(stack.edges[0], { auth: { token: u.token } });
  const online = await seen.next('user_online', (e) => e.user.id === u.id);
  assert.deepEqual(online.user, { id: u.id, email: u.email });
  assert.match(online.timestamp, RFC3339_MS);
  const s2 = await connect(stack.edges[1], { auth: { token: u.token } }); // a second socket, on the other edge
  await emitAck(s2, 'ping');
  s1.close(); // one socket left, on edge 1
  await quiet(500);
  assert.equal(seen.events('user_online').filter((e) => e.user.id === u.id).length, 1);
  assert.equal(seen.events('user_offline').filter((e) => e.user.id === u.id).length, 0, 'still online on the other edge');
  s2.close();
  const offline = await seen.next('user_offline', (e) => e.user.id === u.id);
  assert.deepEqual(offline.user, { id: u.id, email: u.email });
  await quiet(500);
  assert.equal(seen.events('user_offline').filter((e) => e.user.id === u.id).length, 1);
  observer.close();
});

test('get_online_users: cluster-wide list as event and ack, paginated with limit and cursor', async () => {
  const users = [];
  const sockets = [];
  for (let i = 0; i < 5; i++) {
    const u = await newUser('grace');
    users.push(u);
    sockets.push(await connect(stack.edges[i % 2], { auth: { token: u.token } }));
  }
  const asker = await connect(stack.edges[0], { auth: { token: stack.users.alice.token } });
  const events = record(asker);
  const all = await emitAck(asker, 'get_online_users');
  const ids = new Set(all.users.map((u) => u.id));
  for (const u of users) assert.ok(ids.has(u.id), `${u.id} is listed (edge ${users.indexOf(u) % 2})`);
  assert.equal(all.count, all.users.length);
  for (const u of all.users) assert.deepEqual(Object.keys(u).sort(), ['email', 'id']);
  const event = await events.next('online_users');
  assert.equal(event.count, all.count);

  let cursor;
  const paged = [];
  do {
    const page = await emitAck(asker, 'get_online_users', { limit: 2, ...(cursor ? { cursor } : {}) });
    assert.ok(page.users.length <= 2);
    paged.push(...page.users.map((u) => u.id));
    cursor = page.cursor;
  } while (cursor);
  assert.deepEqual(new Set(paged), ids, 'pages cover the list once');
  assert.equal(paged.length, ids.size);

  for (const s of sockets) s.close();
  asker.close();
});

test('a user who is not connected is not listed', async () => {
  const u = await newUser('heidi');
  const s = await connect(stack.edges[1], { auth: { token: u.token } });
  const asker = await connect(stack.edges[0], { auth: { token: stack.users.alice.token } });
  assert.ok((await emitAck(asker, 'get_online_users', { limit: 1000 })).users.some((x) => x.id === u.id));
  s.close();
  const deadline = Date.now() + 5000;
  for (;;) {
    const list = await emitAck(asker, 'get_online_users', { limit: 1000 });
    if (!list.users.some((x) => x.id === u.id)) break;
    assert.ok(Date.now() < deadline, 'still listed 5 s after disconnecting');
    await quiet(100);
  }
  asker.close();
});
