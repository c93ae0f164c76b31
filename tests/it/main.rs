//! Cross-crate integration tests: one binary.

mod cli;
mod run;
mod zoneinfo;
