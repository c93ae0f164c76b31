//! Holder crate for the `it` integration-test binary (cross-crate scenarios); it has no
//! library code of its own.
//!
//! # Invariants
//! - Every cross-crate test lives in the single `it` binary, so the workspace links one test
//!   executable for all of them.
//!
//! # Locking protocol
//! None: no code here.
