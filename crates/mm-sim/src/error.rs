//! Errors of booting a machine.

/// Why a machine could not boot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootError {
    /// The configuration is inconsistent (the scenario layer normally catches this first).
    #[error("machine: {0}")]
    Config(String),
    /// The page allocator refused the zones or sysctls.
    #[error("machine: {0}")]
    Buddy(mm_buddy::ConfigError),
    /// The host would not reserve simulated RAM.
    #[error("machine: {0}")]
    Phys(mm_phys::PhysError),
    /// The slab allocator could not create its boot caches.
    #[error("machine: {0}")]
    Slab(mm_slab::BootError),
}

impl From<mm_slab::BootError> for BootError {
    fn from(e: mm_slab::BootError) -> Self {
        BootError::Slab(e)
    }
}

// The inner error is part of the message, so it is not also reported as a `source` (an error
// chain would print it twice).
impl From<mm_buddy::ConfigError> for BootError {
    fn from(e: mm_buddy::ConfigError) -> Self {
        BootError::Buddy(e)
    }
}

impl From<mm_phys::PhysError> for BootError {
    fn from(e: mm_phys::PhysError) -> Self {
        BootError::Phys(e)
    }
}
