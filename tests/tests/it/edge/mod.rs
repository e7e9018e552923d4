//! Edge tests: the Socket.IO gateway against real NATS and the real auth,
//! presence and messaging services (`sb_tests::stack::TestStack`).

mod admin;
mod auth;
mod caps;
mod delivery;
mod events;
mod handshake;
mod http;
mod lifecycle;
mod ordering;
mod slow;
mod without_auth;
