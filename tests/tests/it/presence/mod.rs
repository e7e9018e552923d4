//! Presence: the edge-side reporter against a real nats-server, and the
//! presence service (two replicas) fed by simulated edges running the real
//! reporter.

mod edges;
mod grpc;
mod reporter;
mod service;
mod takeover;
