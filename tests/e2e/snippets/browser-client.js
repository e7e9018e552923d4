// The "JavaScript/TypeScript (Browser)" snippet of the integration guide (the auth-object
// variant; the query variant is the same with `?token=` in the URL), unchanged apart from the
// substituted URL and token. It runs in Node with the same official client.
const { io } = require('socket.io-client');

// Connect with token in auth object (recommended)
const socket = io('ws://localhost:3000', {
  auth: {
    token: 'your-jwt-token-here'
  }
});

// Listen for connection
socket.on('connect', () => {
  console.log('Connected:', socket.id);
});

// Join a room
socket.emit('join_room', { room: 'general' });

// Send message
socket.emit('send_message', { 
  room: 'general', 
  message: 'Hello everyone!' 
});

// Listen for messages
socket.on('new_message', (data) => {
  console.log('New message:', data);
});

// Listen for user events
socket.on('user_joined', (data) => {
  console.log('User joined:', data);
});

socket.on('user_online', (data) => {
  console.log('User online:', data);
});

// Handle errors
socket.on('exception', (error) => {
  console.error('WebSocket error:', error);
});
