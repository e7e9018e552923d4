// The "Node.js Client" snippet of the NestJS gateway's websocket-integration-guide.md,
// unchanged. The e2e test substitutes the URL and 'your-jwt-token-here' with a real edge and
// token before running it; nothing else is touched.
const { io } = require('socket.io-client');

const socket = io('ws://localhost:3000', {
  auth: {
    token: 'your-jwt-token-here'
  }
});

socket.on('connect', () => {
  console.log('Connected:', socket.id);
  
  // Get online users
  socket.emit('get_online_users');
  
  // Join room
  socket.emit('join_room', { room: 'developers' });
});

socket.on('new_message', (data) => {
  console.log(`Message from ${data.from.email}: ${data.message}`);
});
