//! Cross-crate integration tests: one binary.

mod cli;
mod zoneinfo;
