//! gRPC tests: waiting for the auth harness.
