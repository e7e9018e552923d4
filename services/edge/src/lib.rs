//! The edge service (not built yet).
