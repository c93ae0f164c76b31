//! Shared pieces of the loom models: a machine small enough to explore, and the check that a
//! historical variant fails with the property it violates.

use super::fixture::{machine_with, small_tlb, Machine};
use crate::VmConfig;

/// Two CPUs with tiny TLBs over 128 frames.
pub(crate) fn loom_machine() -> Machine {
    machine_with(2, 128, VmConfig::linux_default(), small_tlb(true))
}

/// Runs `model` under loom and returns the message of the panic it ends in, if any.
pub(crate) fn failure(model: fn()) -> Option<String> {
    std::panic::catch_unwind(|| mm_sync::model(model))
        .err()
        .map(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".to_string())
        })
}
