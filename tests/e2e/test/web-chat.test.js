// The browser example (examples/web-chat) in headless Chromium, driven by playwright-core.
// The page is served from its own origin (another port than the edge's), so its login
// (`POST /auth/login`) and its Socket.IO connection are cross-origin, as from a real web app.
// Two pages (alice and bob, separate browser contexts) log in, see each other online, join a
// room, exchange a room and a private message and show an admin announcement; once over
// WebSocket only and once over long-polling only (the page's `transports` parameter).
// Every check reads the page's DOM, so a message that does not arrive fails the test.
// Chromium: CHROMIUM_BIN, set by scripts/e2e.sh from scripts/ensure-chromium.sh.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { startStack } = require('./support/stack');
const { connect, emitAck } = require('./support/client');

const EXAMPLE_DIR = path.resolve(__dirname, '..', '..', '..', 'examples', 'web-chat');
const PINNED_CLIENT_DIR = path.resolve(__dirname, '..', 'node_modules', 'socket.io-client');
const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};
const WAIT_MS = 15000;

let stack;
let web;
let browser;

/** Serves examples/web-chat on a free loopback port; resolves with its origin and the paths asked for. */
function serveExample() {
  const requested = [];
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://localhost');
    requested.push(pathname);
    const file = path.join(EXAMPLE_DIR, path.normalize(decodeURIComponent(pathname === '/' ? '/index.html' : pathname)));
    const type = CONTENT_TYPES[path.extname(file)];
    if (!file.startsWith(EXAMPLE_DIR + path.sep) || !type || !fs.existsSync(file)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({
      url: `http://127.0.0.1:${server.address().port}`,
      requested,
      close: () => new Promise((done) => { server.closeAllConnections(); server.close(done); }),
    }));
  });
}

function chromiumPath() {
  const candidate = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
  if (!fs.existsSync(candidate)) {
    throw new Error(`no Chromium at ${candidate}: run the suite with scripts/e2e.sh (it installs Debian's chromium `
      + 'through scripts/ensure-chromium.sh), or set CHROMIUM_BIN to a Chromium or Chrome binary');
  }
  return candidate;
}

before(async () => {
  [stack, web, browser] = await Promise.all([
    startStack(),
    serveExample(),
    chromium.launch({
      executablePath: chromiumPath(),
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    }),
  ]);
});
after(async () => {
  await browser?.close();
  await web?.close();
  await stack?.stop();
});

/** Opens the chat in a fresh browser context and logs `user` in; resolves once the page says connected. */
async function openChat(user, params) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`); });
  await page.goto(`${web.url}/?${new URLSearchParams(params)}`);
  await page.fill('#email', user.email);
  await page.fill('#password', stack.password);
  await page.click('#login button[type=submit]');
  await page.waitForFunction(
    () => document.querySelector('#status').dataset.state === 'connected' || document.querySelector('#login-error').textContent,
    null,
    { timeout: WAIT_MS },
  );
  const loginError = await page.textContent('#login-error');
  assert.equal(loginError, '', `${user.email} could not log in: ${loginError}; ${problems.join('; ')}`);
  return { page, context, problems };
}

/** The text of the first log line of `kind` containing `text`, waiting for it to appear. */
async function logLine(page, kind, text) {
  const line = page.locator(`#log li[data-kind="${kind}"]`, { hasText: text }).first();
  await line.waitFor({ timeout: WAIT_MS });
  return line.locator('span').textContent();
}

/** Waits until presence reports `userId`'s sessions and every one used `transport`. */
async function sessionsUse(userId, transport) {
  const deadline = Date.now() + WAIT_MS;
  let info;
  while (Date.now() < deadline) {
    info = await stack.command({ cmd: 'get_user', user_id: userId });
    if (info.sessions.length > 0 && info.sessions.every((s) => s.transport === transport)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${userId}'s sessions never all used ${transport}: ${JSON.stringify(info)}`);
}

test('the example page is served from another origin than the edge', () => {
  assert.notEqual(new URL(web.url).origin, new URL(stack.edges[0]).origin);
});

test('the vendored socket.io.min.js is the pinned socket.io-client\'s browser bundle', () => {
  const pinned = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')).dependencies['socket.io-client'];
  const installed = JSON.parse(fs.readFileSync(path.join(PINNED_CLIENT_DIR, 'package.json'), 'utf8')).version;
  assert.equal(installed, pinned);
  const vendored = fs.readFileSync(path.join(EXAMPLE_DIR, 'vendor', 'socket.io.min.js'));
  const bundle = fs.readFileSync(path.join(PINNED_CLIENT_DIR, 'dist', 'socket.io.min.js'));
  assert.ok(vendored.equals(bundle),
    `examples/web-chat/vendor/socket.io.min.js differs from socket.io-client ${pinned}'s dist/socket.io.min.js: copy it again`);
  assert.match(vendored.subarray(0, 64).toString(), new RegExp(`Socket\\.IO v${pinned.replaceAll('.', '\\.')}\\b`));
});

for (const transport of ['websocket', 'polling']) {
  test(`two browser pages chat over ${transport}: online list, room and private messages, announcement`, { timeout: 90000 }, async () => {
    const edge = stack.edges[0];
    const { alice, bob, admin } = stack.users;
    const room = `web-chat-${transport}`;
    const params = { edge, auth: edge, transports: transport, room };
    const pages = [];
    try {
      const a = await openChat(alice, params);
      pages.push(a);
      const b = await openChat(bob, params);
      pages.push(b);
      assert.equal(await a.page.textContent('#status'), `connected as ${alice.email} over ${transport}`);
      assert.equal(await b.page.textContent('#status'), `connected as ${bob.email} over ${transport}`);
      await sessionsUse(alice.id, transport);
      await sessionsUse(bob.id, transport);

      // each sees the other in the online list
      await a.page.locator(`#online li[data-user-id="${bob.id}"]`, { hasText: bob.email }).waitFor();
      await b.page.locator(`#online li[data-user-id="${alice.id}"]`, { hasText: alice.email }).waitFor();

      // both join the room (the join box is prefilled from the `room` parameter)
      for (const p of [a, b]) {
        assert.equal(await p.page.inputValue('#room'), room);
        await p.page.click('#join button[type=submit]');
        await p.page.locator(`#rooms li[data-room="${room}"]`).waitFor();
      }
      assert.equal(await logLine(a.page, 'presence', `${bob.email} joined ${room}`), `${bob.email} joined ${room}`);

      // a room message from alice reaches bob's page
      const roomText = `hello ${room} from alice's browser`;
      assert.equal(await a.page.inputValue('#target'), `room:${room}`);
      await a.page.fill('#message', roomText);
      await a.page.click('#send button[type=submit]');
      assert.equal(await logLine(b.page, 'room', roomText), `[${room}] ${alice.email}: ${roomText}`);
      assert.equal(await logLine(a.page, 'room', roomText), `[${room}] ${alice.email}: ${roomText}`);

      // a private message from bob, addressed by clicking alice in his online list, reaches alice's page
      const privateText = `psst alice, bob here (${transport})`;
      await b.page.click(`#online li[data-user-id="${alice.id}"] button`);
      assert.equal(await b.page.inputValue('#target'), `user:${alice.id}`);
      await b.page.fill('#message', privateText);
      await b.page.click('#send button[type=submit]');
      assert.equal(await logLine(a.page, 'private', privateText), `[private] ${bob.email} → ${alice.email}: ${privateText}`);
      assert.equal(await logLine(b.page, 'private', privateText), `[private] ${bob.email} → ${alice.email}: ${privateText}`);

      // an admin announcement (sent from Node with the official client) shows on both pages
      const announcement = `maintenance at noon (${transport})`;
      const adminSocket = await connect(edge, { auth: { token: admin.token } });
      try {
        const ack = await emitAck(adminSocket, 'admin_broadcast', { message: announcement });
        assert.equal(ack.status, 'ok');
      } finally {
        adminSocket.close();
      }
      for (const p of [a, b]) {
        assert.equal(await logLine(p.page, 'announcement', announcement), `[announcement] ${admin.email}: ${announcement}`);
      }

      // each message shows once (an ack and its echo are one line), and nothing failed in the pages
      assert.equal(await a.page.locator('#log li', { hasText: roomText }).count(), 1);
      assert.equal(await a.page.locator('#log li[data-kind="error"]').count(), 0, await a.page.textContent('#log'));
      assert.equal(await b.page.locator('#log li[data-kind="error"]').count(), 0, await b.page.textContent('#log'));
      assert.deepEqual(a.problems, []);
      assert.deepEqual(b.problems, []);
      assert.ok(web.requested.includes('/vendor/socket.io.min.js'), `the page did not load the vendored client: ${web.requested}`);
    } finally {
      for (const p of pages) await p.context.close();
    }
  });
}
