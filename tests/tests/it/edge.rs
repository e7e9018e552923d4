//! edge service tests.
