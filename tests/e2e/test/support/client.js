// Small helpers around the official socket.io-client for the tests.
'use strict';
const { io } = require('socket.io-client');

const DEFAULT_WAIT = 5000;

/** Connects and resolves with the socket once connected; rejects with the connect_error. */
function connect(url, options = {}) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { reconnection: false, forceNew: true, timeout: 10000, ...options });
    // Record from the start: events the server sends right after CONNECT can be dispatched
    // before the caller's code after `await connect(..)` runs.
    record(socket);
    const timer = setTimeout(() => { socket.close(); reject(new Error('connect timed out')); }, 15000);
    socket.once('connect', () => { clearTimeout(timer); resolve(socket); });
    socket.once('connect_error', (err) => { clearTimeout(timer); socket.close(); reject(err); });
  });
}

/** Resolves with the connect_error message (fails if the connection is accepted). */
async function connectError(url, options = {}) {
  try {
    const socket = await connect(url, options);
    socket.close();
  } catch (err) {
    return err.message;
  }
  throw new Error('the connection was accepted');
}

/** Emits with an ack callback and resolves with the ack's first argument. */
function emitAck(socket, event, payload, timeoutMs = DEFAULT_WAIT) {
  const args = payload === undefined ? [] : [payload];
  return socket.timeout(timeoutMs).emitWithAck(event, ...args);
}

/** Records every event a socket receives, so tests can wait for or assert the absence of one. */
function record(socket) {
  if (socket.__recorder) return socket.__recorder;
  const seen = [];
  const waiters = new Set();
  socket.onAny((event, ...args) => {
    const item = { event, data: args[0], at: Date.now() };
    seen.push(item);
    for (const w of [...waiters]) {
      if (w.event === event && w.pred(item.data)) { waiters.delete(w); w.resolve(item.data); }
    }
  });
  socket.__recorder = {
    seen,
    events(name) { return seen.filter((s) => s.event === name).map((s) => s.data); },
    /** Resolves with the data of the first (past or future) `event` matching `pred`. */
    next(event, pred = () => true, timeoutMs = DEFAULT_WAIT) {
      const hit = seen.find((s) => s.event === event && pred(s.data));
      if (hit) return Promise.resolve(hit.data);
      return new Promise((resolve, reject) => {
        const w = { event, pred, resolve };
        waiters.add(w);
        setTimeout(() => {
          if (waiters.delete(w)) reject(new Error(`no ${event} within ${timeoutMs} ms; saw ${JSON.stringify(seen.map((s) => s.event))}`));
        }, timeoutMs);
      });
    },
    clear() { seen.length = 0; },
  };
  return socket.__recorder;
}

/** Waits `ms`; used only to give a message that must NOT arrive a fair chance to. */
const quiet = (ms = 400) => new Promise((r) => setTimeout(r, ms));

module.exports = { connect, connectError, emitAck, record, quiet };
