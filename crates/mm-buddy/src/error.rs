//! Errors of the page allocator.

use mm_types::{Pfn, ZoneId};

/// Why an allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// No zone in the zonelist could satisfy the request within its watermarks, and the slow
    /// path (kswapd, direct reclaim, OOM) made no progress.
    #[error("page allocation failure: order {order}, no zone up to {highest} has free memory")]
    NoMemory {
        /// The requested order.
        order: u32,
        /// The highest zone the request could use.
        highest: ZoneId,
    },
}

/// A configuration the allocator refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No CPUs.
    #[error("a machine needs at least one CPU")]
    NoCpus,
    /// No zone with managed pages.
    #[error("no zone has managed pages")]
    NoMemory,
    /// A zone is listed twice.
    #[error("zone {0} is listed twice")]
    DuplicateZone(ZoneId),
    /// Zones are not in ascending zone order or their spans overlap.
    #[error("zone {0} overlaps or precedes the zone before it")]
    Overlap(ZoneId),
    /// present > spanned or managed > present.
    #[error("zone {zone}: {what}")]
    Geometry {
        /// The zone.
        zone: ZoneId,
        /// What is inconsistent.
        what: &'static str,
    },
    /// The zone span runs past the end of simulated RAM.
    #[error("zone {zone} ends at pfn {end} beyond the end of RAM (max_pfn {max_pfn})")]
    BeyondRam {
        /// The zone.
        zone: ZoneId,
        /// Its end pfn.
        end: Pfn,
        /// RAM's end.
        max_pfn: Pfn,
    },
    /// A sysctl value out of the kernel's range.
    #[error("{name} = {value} is out of range ({range})")]
    Sysctl {
        /// The sysctl name.
        name: &'static str,
        /// The value given.
        value: i64,
        /// The accepted range.
        range: &'static str,
    },
}

/// Page-block isolation failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IsolateError {
    /// The range is not inside one populated zone or not pageblock aligned.
    #[error("pfn range {start}..{end} is not pageblock-aligned inside one zone")]
    BadRange {
        /// First pfn.
        start: Pfn,
        /// One past the last pfn.
        end: Pfn,
    },
    /// A pageblock in the range is already isolated (`-EBUSY`).
    #[error("pageblock at {0} is already isolated")]
    Busy(Pfn),
}

/// A broken allocator invariant, found by [`crate::Buddy::check_invariants`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("zone {zone}: {what}")]
pub struct InvariantError {
    /// The zone.
    pub zone: ZoneId,
    /// What is broken.
    pub what: String,
}
