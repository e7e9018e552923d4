//! Cross-service tests, one binary (see `sb_tests` for the harness).

mod harness;
