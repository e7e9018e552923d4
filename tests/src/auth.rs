//! Starting the auth service in-process for tests (filled by the auth work).
