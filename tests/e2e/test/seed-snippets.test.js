// The integration guide's client snippets, run unchanged (only the URL and token are
// substituted) as separate Node processes against the stack.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { startStack } = require('./support/stack');
const { connect, emitAck, record } = require('./support/client');

let stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.stop(); });

/** Runs a snippet with the edge URL and token substituted; returns a handle on its output. */
function runSnippet(file, token) {
  const source = fs.readFileSync(path.join(__dirname, '..', 'snippets', file), 'utf8')
    .replaceAll('ws://localhost:3000', stack.edges[0].replace(/^http/, 'ws'))
    .replaceAll('your-jwt-token-here', token);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-snippet-'));
  const script = path.join(dir, file);
  fs.writeFileSync(script, source);
  const child = spawn(process.execPath, [script], {
    env: { ...process.env, NODE_PATH: path.join(__dirname, '..', 'node_modules') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  return {
    output: () => out,
    async waitFor(pattern, timeoutMs = 10000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (pattern.test(out)) return out;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`snippet output never matched ${pattern}:\n${out}`);
    },
    stop() { child.kill(); fs.rmSync(dir, { recursive: true, force: true }); },
  };
}

test('the guide\'s Node.js client connects, gets online users, joins and receives messages', async () => {
  const snippet = runSnippet('node-client.js', stack.users.bob.token);
  try {
    await snippet.waitFor(/Connected: \S+/);
    const alice = await connect(stack.edges[0], { auth: { token: stack.users.alice.token } });
    const events = record(alice);
    await emitAck(alice, 'join_room', { room: 'developers' });
    // bob (the snippet) joined in its connect callback; the room now has both
    await events.next('user_joined', (e) => e.room === 'developers' && e.user.id === stack.users.bob.id).catch(() => {});
    await emitAck(alice, 'send_message', { room: 'developers', message: 'hello from alice' });
    await snippet.waitFor(new RegExp(`Message from ${stack.users.alice.email.replace('.', '\\.')}: hello from alice`));
    alice.close();
  } finally {
    snippet.stop();
  }
  assert.ok(!/Error|exception/i.test(snippet.output()), snippet.output());
});

test('the guide\'s browser snippet (emits before connect) joins and sends', async () => {
  const alice = await connect(stack.edges[0], { auth: { token: stack.users.alice.token } });
  const events = record(alice);
  await emitAck(alice, 'join_room', { room: 'general' });
  const snippet = runSnippet('browser-client.js', stack.users.bob.token);
  try {
    await snippet.waitFor(/Connected: \S+/);
    const m = await events.next('new_message', (x) => x.message === 'Hello everyone!' && x.room === 'general', 10000);
    assert.equal(m.from.id, stack.users.bob.id);
    await snippet.waitFor(/New message:/);
  } finally {
    snippet.stop();
    alice.close();
  }
  assert.ok(!/WebSocket error/.test(snippet.output()), snippet.output());
});
