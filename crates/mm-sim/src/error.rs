//! Errors of booting a machine.

/// Why a machine could not boot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootError {
    /// The configuration is inconsistent (the scenario layer normally catches this first).
    #[error("machine: {0}")]
    Config(String),
    /// The page allocator refused the zones or sysctls.
    #[error("machine: {0}")]
    Buddy(#[from] mm_buddy::ConfigError),
    /// The host would not reserve simulated RAM.
    #[error("machine: {0}")]
    Phys(#[from] mm_phys::PhysError),
}
