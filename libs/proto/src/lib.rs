//! Generated gRPC code for Switchboard's services.
//!
//! The `.proto` files live in `proto/switchboard/<service>/v1/`; this crate
//! compiles them at build time (see `build.rs`). Each service module holds the
//! messages, the client and the server trait, e.g. [`auth::v1::auth_service_client`].
//! [`FILE_DESCRIPTOR_SET`] feeds tonic-reflection so `grpcurl list` works.

#![allow(clippy::doc_markdown, clippy::large_enum_variant)]

/// Encoded `FileDescriptorSet` of every Switchboard proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// The auth service: users and access tokens.
pub mod auth {
    /// Version 1 of the auth API (`switchboard.auth.v1`).
    pub mod v1 {
        tonic::include_proto!("switchboard.auth.v1");
    }
}

/// The presence service: who is online, where, and in which rooms.
pub mod presence {
    /// Version 1 of the presence API (`switchboard.presence.v1`).
    pub mod v1 {
        tonic::include_proto!("switchboard.presence.v1");
    }
}

/// The messaging service: stored messages, history, notifications.
pub mod messaging {
    /// Version 1 of the messaging API (`switchboard.messaging.v1`).
    pub mod v1 {
        tonic::include_proto!("switchboard.messaging.v1");
    }
}

/// Edge control (kick, drain, list edges), served by the presence service.
pub mod edge {
    /// Version 1 of the edge control API (`switchboard.edge.v1`).
    pub mod v1 {
        tonic::include_proto!("switchboard.edge.v1");
    }
}
