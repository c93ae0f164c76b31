//! Holder crate for the `it` integration-test binary; it has no library code.
