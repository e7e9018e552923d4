// Revocation and expiry while connected (DESIGN.md §2).
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack, mintToken } = require('./support/stack');
const { connect, connectError, emitAck, record } = require('./support/client');

let stack;
before(async () => { stack = await startStack({ edges: 2 }); });
after(async () => { await stack?.stop(); });

test('revoking a user\'s tokens disconnects its sockets on every edge within a second', async () => {
  const dave = await stack.command({ cmd: 'create_user', email: `dave-${Date.now()}@example.com` });
  const sockets = [];
  for (const url of [...stack.edges, ...stack.edges]) sockets.push(await connect(url, { auth: { token: dave.token } }));
  const bystander = await connect(stack.edges[0], { auth: { token: stack.users.bob.token } });
  const watched = sockets.map((s) => {
    const events = record(s);
    return { events, gone: new Promise((resolve) => s.on('disconnect', (reason) => resolve(reason))) };
  });
  const started = Date.now();
  await stack.command({ cmd: 'revoke', user_id: dave.id });
  for (const w of watched) {
    const exc = await w.events.next('exception', (e) => e.message === 'token revoked', 3000);
    assert.equal(exc.status, 'error');
    await w.gone;
  }
  const elapsed = Date.now() - started;
  assert.ok(elapsed < 1500, `all sockets gone ${elapsed} ms after the revocation call`);
  assert.ok(bystander.connected);
  assert.equal(await connectError(stack.edges[1], { auth: { token: dave.token } }), 'token revoked');
  bystander.close();
});

test('disabling a user disconnects it and refuses new connections', async () => {
  const erin = await stack.command({ cmd: 'create_user', email: `erin-${Date.now()}@example.com` });
  const s = await connect(stack.edges[0], { auth: { token: erin.token } });
  const gone = new Promise((resolve) => s.on('disconnect', resolve));
  await stack.command({ cmd: 'disable', user_id: erin.id });
  await gone;
  const reason = await connectError(stack.edges[0], { auth: { token: erin.token } });
  assert.ok(['user disabled', 'token revoked'].includes(reason), reason);
});

test('events of a socket whose token expired get `token expired` and are not processed', async () => {
  const u = stack.users.alice;
  const exp = Math.floor(Date.now() / 1000) + 2;
  const token = mintToken(stack.jwtSecret, { sub: u.id, email: u.email, role: 'user', exp });
  const s = await connect(stack.edges[0], { auth: { token } });
  const ev = record(s);
  await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now()) + 1100));
  const ack = await emitAck(s, 'send_message', { message: 'too late' });
  assert.equal(ack.status, 'error');
  assert.equal(ack.message, 'token expired');
  const exc = await ev.next('exception', (e) => e.message === 'token expired');
  assert.equal(exc.status, 'error');
  s.close();
});
