//! Starting the edge service in-process for tests (filled by the edge work).
