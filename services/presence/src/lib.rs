//! The presence service (not built yet).
