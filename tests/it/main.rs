//! Cross-crate integration tests: one binary.

mod zoneinfo;
