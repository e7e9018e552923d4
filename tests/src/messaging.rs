//! Starting the messaging service in-process for tests (filled by the messaging work).
