//! auth service tests.
