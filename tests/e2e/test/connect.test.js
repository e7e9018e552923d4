// Connecting: the three token sources, both transports, every rejection reason (DESIGN.md §2).
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack, mintToken } = require('./support/stack');
const { connect, connectError, emitAck } = require('./support/client');

let stack;
let url;
before(async () => { stack = await startStack(); url = stack.edges[0]; });
after(async () => { await stack?.stop(); });

const alice = () => stack.users.alice;

test('token in the handshake auth object', async () => {
  const socket = await connect(url, { auth: { token: alice().token } });
  const pong = await emitAck(socket, 'ping');
  assert.equal(pong.user.id, alice().id);
  socket.close();
});

test('token in the query string', async () => {
  const socket = await connect(`${url}?token=${alice().token}`);
  assert.equal((await emitAck(socket, 'ping')).user.email, alice().email);
  socket.close();
});

test('token in the Authorization header', async () => {
  const socket = await connect(url, { extraHeaders: { Authorization: `Bearer ${alice().token}` } });
  assert.equal((await emitAck(socket, 'ping')).user.id, alice().id);
  socket.close();
});

test('a leading "Bearer " is accepted in the auth object and the query', async () => {
  const a = await connect(url, { auth: { token: `Bearer ${alice().token}` } });
  const b = await connect(`${url}?token=${encodeURIComponent(`Bearer ${alice().token}`)}`);
  a.close(); b.close();
});

test('the auth object wins over the query and the header', async () => {
  const garbage = 'not.a.jwt';
  const socket = await connect(`${url}?token=${garbage}`, {
    auth: { token: alice().token },
    extraHeaders: { Authorization: `Bearer ${garbage}` },
  });
  socket.close();
  assert.equal(await connectError(`${url}?token=${alice().token}`, { auth: { token: garbage } }), 'token invalid');
});

test('long-polling only', async () => {
  const socket = await connect(url, { auth: { token: alice().token }, transports: ['polling'] });
  assert.equal(socket.io.engine.transport.name, 'polling');
  assert.equal((await emitAck(socket, 'ping')).user.id, alice().id);
  socket.close();
});

test('websocket only', async () => {
  const socket = await connect(url, { auth: { token: alice().token }, transports: ['websocket'] });
  assert.equal(socket.io.engine.transport.name, 'websocket');
  socket.close();
});

test('default transports upgrade from polling to websocket', async () => {
  const socket = await connect(url, { auth: { token: alice().token } });
  await new Promise((resolve) => {
    if (socket.io.engine.transport.name === 'websocket') return resolve();
    socket.io.engine.once('upgrade', resolve);
  });
  assert.equal((await emitAck(socket, 'ping')).user.id, alice().id);
  socket.close();
});

test('connect_error names the reason', async (t) => {
  const secret = stack.jwtSecret;
  const a = alice();
  const cases = [
    ['no token at all', {}, 'token missing'],
    ['garbage', { auth: { token: 'garbage' } }, 'token invalid'],
    ['wrong secret', { auth: { token: mintToken('not-the-secret', { sub: a.id, email: a.email, role: 'user' }) } }, 'token invalid'],
    ['alg none', { auth: { token: `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: a.id, email: a.email, role: 'user', tokenVersion: 0, exp: Math.floor(Date.now() / 1000) + 60 })).toString('base64url')}.` } }, 'token invalid'],
    ['expired', { auth: { token: mintToken(secret, { sub: a.id, email: a.email, role: 'user', exp: Math.floor(Date.now() / 1000) - 120 }) } }, 'token expired'],
    ['stale tokenVersion', { auth: { token: mintToken(secret, { sub: a.id, email: a.email, role: 'user', tokenVersion: 99 }) } }, 'token revoked'],
    ['unknown user', { auth: { token: mintToken(secret, { sub: 'nobody-here', email: 'n@example.com', role: 'user' }) } }, 'user unknown'],
  ];
  for (const [name, options, reason] of cases) {
    await t.test(name, async () => {
      assert.equal(await connectError(url, options), reason);
    });
  }
});

test('a rejected connection leaves nothing behind (no user_online, not listed online)', async () => {
  const watcher = await connect(url, { auth: { token: stack.users.bob.token } });
  const seen = [];
  watcher.on('user_online', (e) => seen.push(e.user.id));
  const ghost = await stack.command({ cmd: 'create_user', email: `ghost-${Date.now()}@example.com` });
  const expired = mintToken(stack.jwtSecret, { sub: ghost.id, email: ghost.email, role: 'user', exp: Math.floor(Date.now() / 1000) - 5 });
  assert.equal(await connectError(url, { auth: { token: expired } }), 'token expired');
  const online = await emitAck(watcher, 'get_online_users');
  assert.ok(!online.users.some((u) => u.id === ghost.id));
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(!seen.includes(ghost.id));
  watcher.close();
});

test('POST /auth/login gives a token that connects', async () => {
  const res = await fetch(`${url}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: alice().email, password: stack.password }),
  });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(typeof body.token, 'string');
  assert.ok(body.expiresAt);
  const socket = await connect(url, { auth: { token: body.token } });
  socket.close();
  const bad = await fetch(`${url}/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: alice().email, password: 'wrong' }),
  });
  assert.equal(bad.status, 401);
});

test('POST /auth/login answers 429 after 10 failed logins for one email', async () => {
  const email = `guessed-${Date.now()}@example.com`;
  await stack.command({ cmd: 'create_user', email });
  const post = (password) => fetch(`${url}/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  for (let n = 0; n < 10; n += 1) assert.equal((await post(`wrong-${n}`)).status, 401);
  const locked = await post(stack.password);
  assert.equal(locked.status, 429);
  const body = await locked.json();
  assert.equal(body.status, 'error');
  assert.match(body.message, /^too many failed logins for this email; try again in \d+ s$/);
  const alicesLogin = await fetch(`${url}/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: alice().email, password: stack.password }),
  });
  assert.equal(alicesLogin.status, 200, 'other accounts are not affected');
});

test('health endpoints', async () => {
  assert.equal((await fetch(`${url}/healthz`)).status, 200);
  assert.equal((await fetch(`${url}/readyz`)).status, 200);
});
