// A nats-server with JetStream owned by a test (the `stack` launcher normally starts its own):
// it outlives a stack, and `restart()` brings it back on the same store, as `make run` does
// after Ctrl-C. NATS_SERVER_BIN (set by scripts/e2e.sh), else `nats-server` on PATH.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const NATS_BIN = process.env.NATS_SERVER_BIN || 'nats-server';

/** Starts nats-server on a free loopback port with its JetStream store in `storeDir`. */
async function startNats(storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-e2e-nats-'))) {
  const portsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-e2e-nats-ports-'));
  const child = spawn(NATS_BIN, ['-a', '127.0.0.1', '-p', '-1', '-js', '-sd', storeDir, '--ports_file_dir', portsDir], {
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let gone = null;
  exited.then((e) => { gone = e; });
  child.on('error', () => {});
  const deadline = Date.now() + 10000;
  let url;
  while (!url) {
    if (gone) throw new Error(`nats-server exited at start-up: ${JSON.stringify(gone)} (set NATS_SERVER_BIN?)`);
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error('nats-server wrote no ports file within 10 s'); }
    // The ports file appears once the client listener is up: {"nats":["nats://127.0.0.1:PORT"],...}
    for (const file of fs.readdirSync(portsDir)) {
      const match = /"(nats:\/\/[^"]+)"/.exec(fs.readFileSync(path.join(portsDir, file), 'utf8'));
      if (match) url = match[1];
    }
    if (!url) await new Promise((r) => setTimeout(r, 20));
  }
  const stop = async () => {
    if (!gone) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
    await exited;
    clearTimeout(timer);
    fs.rmSync(portsDir, { recursive: true, force: true });
  };
  return {
    url,
    storeDir,
    stop,
    /** Stops the server and starts a new one on the same store (on another free port). */
    async restart() { await stop(); return startNats(storeDir); },
    /** Stops the server and removes its store. */
    async remove() { await stop(); fs.rmSync(storeDir, { recursive: true, force: true }); },
  };
}

module.exports = { startNats };
