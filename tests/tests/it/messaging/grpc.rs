//! gRPC MessagingService tests (need the auth service harness).
