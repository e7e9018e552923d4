// Defaults of the web chat. Query parameters of the page override each one:
//   index.html?edge=http://localhost:3000&auth=http://localhost:3000&transports=websocket&room=general&email=alice@example.com
// Edit this file to point a copy of the page at your own deployment.
window.WEB_CHAT_CONFIG = {
  // Socket.IO URL of an edge (http(s):// or ws(s)://). Empty: port 3000 on the host that served this page.
  edge: '',
  // Base URL of `POST /auth/login` (the edge serves it). Empty: the edge URL.
  auth: '',
  // Comma-separated Engine.IO transports, e.g. 'websocket' or 'polling'. Empty: the client's
  // default (long-polling first, then an upgrade to WebSocket).
  transports: '',
  // Room put in the join box after logging in.
  room: 'general',
  // Email put in the login box.
  email: '',
};
