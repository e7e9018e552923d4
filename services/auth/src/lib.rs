//! The auth service (not built yet).
