//! The presence service.
pub mod state;
