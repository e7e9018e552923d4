//! The messaging service (not built yet).
