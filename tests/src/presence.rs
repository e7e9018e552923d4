//! Starting the presence service in-process for tests (filled by the presence work).
