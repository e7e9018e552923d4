// The Switchboard web chat: log in over HTTP for a token, then the integration guide's browser
// snippet (io(url, { auth: { token } }), join_room, send_message, new_message, user_joined,
// user_online, exception) grown into a small page: rooms, private messages, the online list,
// admin announcements. A plain script with no build step: it uses the global `io` of
// socket.io-client's browser bundle (vendor/socket.io.min.js). Whatever the server or another
// user sent is written with textContent, never as HTML.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const ACK_TIMEOUT_MS = 10000;
  const TRANSPORTS = ['polling', 'websocket', 'webtransport'];

  const config = readConfig();
  const authBase = httpBase(config.auth || config.edge);

  let socket = null; // the Socket.IO socket while logged in
  let me = null; // {id, email, role} from the login answer
  const rooms = new Set(); // rooms this page joined; joined again after a reconnect
  const online = new Map(); // user id -> email, the edge's online list
  const known = new Map(); // user id -> email of every user seen, for private-message targets
  const shown = new Set(); // message ids already in the log (an ack and its echo show once)

  /** The page's settings: query parameters, else config.js, else defaults. */
  function readConfig() {
    const params = new URLSearchParams(location.search);
    const defaults = window.WEB_CHAT_CONFIG || {};
    const pick = (name) => params.get(name) || defaults[name] || '';
    const scheme = location.protocol === 'https:' ? 'https:' : 'http:';
    const asked = pick('transports').split(',').map((t) => t.trim()).filter(Boolean);
    const transports = asked.filter((t) => TRANSPORTS.includes(t));
    const unknown = asked.filter((t) => !TRANSPORTS.includes(t));
    return {
      problem: unknown.length ? `unknown transport ${unknown.join(', ')}: use ${TRANSPORTS.join(', ')}` : '',
      edge: pick('edge') || `${scheme}//${location.hostname || 'localhost'}:3000`,
      auth: pick('auth'),
      transports,
      room: pick('room') || 'general',
      email: pick('email'),
    };
  }

  /** `ws://host:3000/` -> `http://host:3000`: where the login endpoint lives. */
  function httpBase(url) {
    return url.replace(/^ws(s?):\/\//, 'http$1://').replace(/\/+$/, '');
  }

  // --- the log ---

  function addLine(kind, text, { id, timestamp } = {}) {
    if (id) {
      if (shown.has(id)) return;
      shown.add(id);
    }
    const line = document.createElement('li');
    line.dataset.kind = kind;
    if (id) line.dataset.id = id;
    let at = timestamp ? new Date(timestamp) : new Date();
    if (Number.isNaN(at.getTime())) at = new Date();
    const time = document.createElement('time');
    time.dateTime = at.toISOString();
    time.textContent = at.toLocaleTimeString();
    const body = document.createElement('span');
    body.textContent = text;
    line.append(time, ' ', body);
    const log = $('log');
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(line);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  const emailOf = (id) => known.get(id) || id;

  /** One `new_message` (or our own acknowledged message) as a log line. */
  function showMessage(message) {
    const from = message.from?.email ?? emailOf(message.from?.id) ?? 'someone';
    const at = { id: message.id, timestamp: message.timestamp };
    if (message.room) {
      addLine('room', `[${message.room}] ${from}: ${message.message}`, at);
    } else if (message.to) {
      addLine('private', `[private] ${from} → ${emailOf(message.to)}: ${message.message}`, at);
    } else {
      addLine('everyone', `[everyone] ${from}: ${message.message}`, at);
    }
  }

  function setStatus(state, text) {
    $('status').dataset.state = state;
    $('status').textContent = text;
  }

  // --- rooms, online users, targets ---

  function renderRooms() {
    const list = $('rooms');
    list.replaceChildren();
    for (const room of rooms) {
      const item = document.createElement('li');
      item.dataset.room = room;
      const name = document.createElement('span');
      name.textContent = room;
      const leave = document.createElement('button');
      leave.type = 'button';
      leave.textContent = 'leave';
      leave.addEventListener('click', () => leaveRoom(room));
      item.append(name, ' ', leave);
      list.append(item);
    }
  }

  function renderOnline(count) {
    const list = $('online');
    list.replaceChildren();
    for (const [id, email] of online) {
      const item = document.createElement('li');
      item.dataset.userId = id;
      if (id === me?.id) {
        item.textContent = `${email} (you)`;
      } else {
        const pick = document.createElement('button');
        pick.type = 'button';
        pick.textContent = email;
        pick.title = `send ${email} a private message`;
        pick.addEventListener('click', () => {
          $('target').value = `user:${id}`;
          $('message').focus();
        });
        item.append(pick);
      }
      list.append(item);
    }
    $('online-count').textContent = `(${count ?? online.size})`;
  }

  function renderTargets() {
    const select = $('target');
    const previous = select.value;
    select.replaceChildren();
    for (const room of rooms) select.append(new Option(`room ${room}`, `room:${room}`));
    for (const [id, email] of known) {
      if (id === me?.id) continue;
      select.append(new Option(`private: ${email}${online.has(id) ? '' : ' (offline)'}`, `user:${id}`));
    }
    select.append(new Option('everyone', 'all'));
    if ([...select.options].some((option) => option.value === previous)) select.value = previous;
  }

  function sawUser(user) {
    if (user?.id) known.set(user.id, user.email);
  }

  // --- talking to the edge ---

  /** Emits with an ack; `onOk` gets a success ack. Errors also arrive as `exception`, which the log shows. */
  function request(event, payload, onOk) {
    if (!socket) return;
    socket.timeout(ACK_TIMEOUT_MS).emit(event, payload, (err, ack) => {
      if (err) {
        addLine('error', `${event}: no answer within ${ACK_TIMEOUT_MS / 1000} s`);
        return;
      }
      if (ack && ack.status === 'error') return;
      onOk?.(ack);
    });
  }

  function joinRoom(room, { rejoin = false } = {}) {
    request('join_room', { room }, (ack) => {
      const members = ack?.members ?? [];
      members.forEach(sawUser);
      rooms.add(room);
      renderRooms();
      renderTargets();
      if (!rejoin) {
        $('target').value = `room:${room}`;
        addLine('system', `joined ${room}: ${members.map((m) => m.email).join(', ') || 'no one else'}`);
      }
    });
  }

  function leaveRoom(room) {
    request('leave_room', { room }, () => {
      rooms.delete(room);
      renderRooms();
      renderTargets();
      addLine('system', `left ${room}`);
    });
  }

  async function login(email, password) {
    let response;
    try {
      response = await fetch(`${authBase}/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email, password }),
      });
    } catch (err) {
      throw new Error(`cannot reach ${authBase}/auth/login (${err.message}): is the stack running, `
        + `and does the edge's CORS_ORIGINS allow ${location.origin}?`);
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.message || `login failed: HTTP ${response.status}`);
    return body; // {token, expiresAt, user: {id, email, role}}
  }

  function connect(token) {
    const options = { auth: { token } };
    if (config.transports.length) options.transports = config.transports;
    // The guide's snippet: io(url, { auth: { token } }). `s` is this login's socket; the
    // handlers use it, not `socket`, which a later login replaces.
    const s = io(config.edge, options);
    socket = s;

    s.on('connect', () => {
      const engine = s.io.engine;
      const connected = () => setStatus('connected', `connected as ${me.email} over ${engine.transport.name}`);
      connected();
      engine.on('upgrade', connected);
      s.emit('get_online_users');
      for (const room of rooms) joinRoom(room, { rejoin: true });
    });
    s.on('connect_error', (err) => {
      if (s.active) {
        setStatus('connecting', `cannot connect to ${config.edge} (${err.message}), retrying`);
      } else {
        // the edge refused the token (expired, revoked, …): back to the login form
        const reason = err.message;
        logout();
        $('login-error').textContent = `the edge refused the connection: ${reason}`;
      }
    });
    s.on('disconnect', (reason) => {
      if (socket === s) setStatus('disconnected', `disconnected (${reason})${s.active ? ', reconnecting' : ''}`);
    });

    s.on('new_message', (message) => {
      sawUser(message.from);
      showMessage(message);
    });
    s.on('online_users', (answer) => {
      online.clear();
      for (const user of answer.users ?? []) {
        online.set(user.id, user.email);
        sawUser(user);
      }
      renderOnline(answer.count);
      renderTargets();
    });
    s.on('user_online', ({ user }) => {
      online.set(user.id, user.email);
      sawUser(user);
      renderOnline();
      renderTargets();
    });
    s.on('user_offline', ({ user }) => {
      online.delete(user.id);
      renderOnline();
      renderTargets();
    });
    s.on('user_joined', ({ room, user }) => {
      sawUser(user);
      renderTargets();
      addLine('presence', `${user.email} joined ${room}`);
    });
    s.on('user_left', ({ room, user }) => addLine('presence', `${user.email} left ${room}`));
    s.on('admin_announcement', (announcement) => addLine('announcement',
      `[announcement] ${announcement.from?.email ?? 'admin'}: ${announcement.message}`,
      { id: announcement.id, timestamp: announcement.timestamp }));
    s.on('notification', (note) => addLine('notification',
      `[notification] ${note.title ? `${note.title}: ` : ''}${note.message}`,
      { id: note.id, timestamp: note.timestamp }));
    s.on('exception', (error) => addLine('error',
      `error${error.event ? ` (${error.event})` : ''}: ${error.message}`));
  }

  function showChat(loggedIn) {
    $('login-panel').hidden = loggedIn;
    $('chat-panel').hidden = !loggedIn;
    $('logout').hidden = !loggedIn;
    $('announce').hidden = !(loggedIn && me?.role === 'admin');
  }

  function logout() {
    socket?.close();
    socket = null;
    me = null;
    for (const set of [rooms, online, known, shown]) set.clear();
    $('log').replaceChildren();
    renderRooms();
    showChat(false);
    setStatus('logged-out', 'not connected');
  }

  // --- the forms ---

  $('login').addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = event.submitter || $('login').querySelector('button');
    button.disabled = true;
    $('login-error').textContent = '';
    try {
      const session = await login($('email').value.trim(), $('password').value);
      me = session.user;
      sawUser(me);
      $('password').value = '';
      $('room').value = config.room;
      showChat(true);
      setStatus('connecting', `connecting to ${config.edge}`);
      renderTargets();
      connect(session.token);
    } catch (err) {
      $('login-error').textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });

  $('join').addEventListener('submit', (event) => {
    event.preventDefault();
    const room = $('room').value.trim();
    if (room) joinRoom(room);
  });

  $('send').addEventListener('submit', (event) => {
    event.preventDefault();
    const message = $('message').value;
    const target = $('target').value;
    if (!message.trim()) return;
    let payload;
    if (target.startsWith('room:')) payload = { room: target.slice('room:'.length), message };
    else if (target.startsWith('user:')) payload = { to: target.slice('user:'.length), message };
    else payload = { message };
    $('message').value = '';
    // The sender sees its message once the edge acknowledged it (room members also get it as
    // new_message; the id keeps it to one line).
    request('send_message', payload, (ack) => showMessage({ ...payload, id: ack.id, timestamp: ack.timestamp, from: me }));
  });

  $('announce').addEventListener('submit', (event) => {
    event.preventDefault();
    const message = $('announcement').value;
    if (!message.trim()) return;
    $('announcement').value = '';
    request('admin_broadcast', { message }, (ack) => addLine('announcement',
      `[announcement] ${me.email}: ${message}`, { id: ack.id, timestamp: ack.timestamp }));
  });

  $('logout').addEventListener('click', logout);

  $('edge-url').textContent = config.edge;
  $('auth-url').textContent = `${authBase}/auth/login`;
  $('email').value = config.email;
  $('login-error').textContent = config.problem;
  if (config.email) $('password').focus(); else $('email').focus();
})();
