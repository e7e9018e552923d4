// Starts a whole Switchboard stack for a test file: the `stack` launcher (built by
// scripts/e2e.sh; SB_STACK_BIN) runs nats-server and the four services in-process on free
// ports and prints one JSON line describing them. Stopping = closing its stdin (or SIGTERM).
'use strict';
const { spawn } = require('node:child_process');
const readline = require('node:readline');
const crypto = require('node:crypto');

const STACK_BIN = process.env.SB_STACK_BIN || `${__dirname}/../../../../target/debug/stack`;

/** Starts a stack; `opts.edges` (default 1), `opts.db` ('sqlite' | 'postgres'), `opts.args` extra flags. */
async function startStack(opts = {}) {
  const args = ['--edges', String(opts.edges ?? 1), '--db', opts.db ?? 'sqlite', ...(opts.args ?? [])];
  const child = spawn(STACK_BIN, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout });
  const pending = [];
  const waiters = [];
  lines.on('line', (line) => {
    let value;
    try { value = JSON.parse(line); } catch { return; }
    const waiter = waiters.shift();
    if (waiter) waiter(value); else pending.push(value);
  });
  const nextLine = (timeoutMs = 60000) => new Promise((resolve, reject) => {
    if (pending.length) return resolve(pending.shift());
    const timer = setTimeout(() => reject(new Error('sb-stack did not answer in time')), timeoutMs);
    waiters.push((v) => { clearTimeout(timer); resolve(v); });
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const info = await Promise.race([
    nextLine(120000),
    exited.then((e) => { throw new Error(`sb-stack exited before it was ready: ${JSON.stringify(e)}`); }),
  ]);
  return {
    ...info,
    /** Sends one command to the launcher and resolves with its JSON answer. */
    async command(cmd) {
      child.stdin.write(JSON.stringify(cmd) + '\n');
      const answer = await nextLine(30000);
      if (answer.error) throw new Error(`sb-stack ${cmd.cmd}: ${answer.error}`);
      return answer;
    },
    async stop() {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function b64url(value) {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

/** Mints an HS256 JWT like the NestJS gateway did; `header` and `claims` override the defaults. */
function mintToken(secret, claims, header = { alg: 'HS256', typ: 'JWT' }) {
  const now = Math.floor(Date.now() / 1000);
  const payload = { iat: now, exp: now + 3600, tokenVersion: 0, ...claims };
  const signingInput = `${b64url(header)}.${b64url(payload)}`;
  const signature = crypto.createHmac('sha256', secret).update(signingInput).digest('base64url');
  return `${signingInput}.${signature}`;
}

module.exports = { startStack, mintToken };
