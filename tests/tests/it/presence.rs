//! presence service tests.
