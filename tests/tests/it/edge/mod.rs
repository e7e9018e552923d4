//! Edge tests: the Socket.IO gateway against real NATS and (where it
//! matters) the real auth, messaging and presence services.

mod without_auth;
