//! messaging service tests.
