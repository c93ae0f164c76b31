//! The MMU configuration: paging depth, TLB geometry, ASIDs and the cycle cost model.

use crate::ConfigError;

/// `TLB_NR_DYN_ASIDS`: recently used address spaces a CPU keeps tagged in its TLB.
pub const TLB_NR_DYN_ASIDS: u16 = 6;
/// `tlb_single_page_flush_ceiling`: a range flush of more pages than this flushes the whole mm.
pub const TLB_SINGLE_PAGE_FLUSH_CEILING: u64 = 33;
/// Largest number of CPUs a machine may have (the width of an mm's cpumask).
pub const MAX_CPUS: u32 = 256;
/// Largest ASID count: hardware PCIDs are 12 bits and PCID 0 is reserved.
pub const MAX_DYN_ASIDS: u16 = 4095;

/// Page-table depth.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PagingMode {
    /// 4-level paging, 48-bit virtual addresses (PGD, PUD, PMD, PTE; P4D folded).
    FourLevel,
    /// 5-level paging (LA57), 57-bit virtual addresses (PGD, P4D, PUD, PMD, PTE).
    FiveLevel,
}

impl PagingMode {
    /// Returns the number of table levels a walk reads.
    #[inline]
    pub const fn levels(self) -> u32 {
        match self {
            PagingMode::FourLevel => 4,
            PagingMode::FiveLevel => 5,
        }
    }

    /// Returns the virtual-address width in bits.
    #[inline]
    pub const fn va_bits(self) -> u32 {
        match self {
            PagingMode::FourLevel => 48,
            PagingMode::FiveLevel => 57,
        }
    }

    /// Returns one past the highest user address: the simulator maps only the lower canonical
    /// half (`1 << 47` or `1 << 56`).
    #[inline]
    pub const fn user_limit(self) -> u64 {
        1 << (self.va_bits() - 1)
    }
}

/// The geometry of one set-associative TLB level.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TlbGeometry {
    /// Total entries.
    pub entries: usize,
    /// Entries per set; `entries / ways` sets, which must be a power of two.
    pub ways: usize,
}

impl TlbGeometry {
    /// Returns the number of sets.
    #[inline]
    pub const fn sets(&self) -> usize {
        self.entries / self.ways
    }
}

/// The two TLB levels of one CPU.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TlbConfig {
    /// The first-level data TLB (4 KiB pages).
    pub l1: TlbGeometry,
    /// The second-level shared TLB (STLB).
    pub l2: TlbGeometry,
}

impl TlbConfig {
    /// A modern x86 core: L1 dTLB 64 entries 4-way, L2 STLB 1536 entries 12-way.
    pub const fn modern_x86() -> TlbConfig {
        TlbConfig {
            l1: TlbGeometry {
                entries: 64,
                ways: 4,
            },
            l2: TlbGeometry {
                entries: 1536,
                ways: 12,
            },
        }
    }
}

/// Simulated cycles charged per access, by how the translation was found.
///
/// An access that hits the L1 TLB costs `l1_hit` (the data reference included); one that hits
/// the L2 TLB costs `l1_hit + l2_hit`; one that walks costs `l1_hit + l2_hit` plus `walk_ref`
/// per table read (n reads for an n-level walk: seed 003's n + 1 memory references), plus
/// `fault` if the walk ends in a fault.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CostModel {
    /// An access whose translation hits the L1 TLB, data reference included.
    pub l1_hit: u64,
    /// The extra cost of an L2 (STLB) lookup.
    pub l2_hit: u64,
    /// One page-walk memory reference.
    pub walk_ref: u64,
    /// Entering the page-fault handler.
    pub fault: u64,
}

impl CostModel {
    /// Coarse figures for a modern x86 core: 4-cycle L1d load-to-use, 7-cycle STLB hit, 25
    /// cycles per walk reference (paging structures mostly hit the data caches), 1000 cycles
    /// for the fault entry and exit.
    pub const fn modern_x86() -> CostModel {
        CostModel {
            l1_hit: 4,
            l2_hit: 7,
            walk_ref: 25,
            fault: 1000,
        }
    }
}

/// Everything the MMU of one machine needs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MmuConfig {
    /// Number of CPUs (`1..=MAX_CPUS`); the allocator must have at least as many.
    pub nr_cpus: u32,
    /// 4- or 5-level paging.
    pub paging: PagingMode,
    /// TLB geometry of every CPU.
    pub tlb: TlbConfig,
    /// The cycle cost model.
    pub costs: CostModel,
    /// Tag TLB entries with PCIDs; without, every address-space switch flushes the TLB.
    pub pcid: bool,
    /// Dynamic ASIDs per CPU (`TLB_NR_DYN_ASIDS`, 6).
    pub nr_dyn_asids: u16,
    /// `tlb_single_page_flush_ceiling` (33).
    pub flush_ceiling: u64,
}

impl MmuConfig {
    /// A machine of `nr_cpus` modern x86-64 cores: 4-level paging, the default TLBs and costs,
    /// PCID with 6 dynamic ASIDs, a 33-page flush ceiling.
    pub const fn x86_64(nr_cpus: u32) -> MmuConfig {
        MmuConfig {
            nr_cpus,
            paging: PagingMode::FourLevel,
            tlb: TlbConfig::modern_x86(),
            costs: CostModel::modern_x86(),
            pcid: true,
            nr_dyn_asids: TLB_NR_DYN_ASIDS,
            flush_ceiling: TLB_SINGLE_PAGE_FLUSH_CEILING,
        }
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.nr_cpus == 0 || self.nr_cpus > MAX_CPUS {
            return Err(ConfigError::Cpus(self.nr_cpus));
        }
        for (name, g) in [("l1", self.tlb.l1), ("l2", self.tlb.l2)] {
            if g.ways == 0 || g.entries == 0 || g.entries % g.ways != 0 {
                return Err(ConfigError::TlbGeometry {
                    level: name,
                    entries: g.entries,
                    ways: g.ways,
                });
            }
            if !g.sets().is_power_of_two() {
                return Err(ConfigError::TlbGeometry {
                    level: name,
                    entries: g.entries,
                    ways: g.ways,
                });
            }
        }
        if self.nr_dyn_asids == 0 || self.nr_dyn_asids > MAX_DYN_ASIDS {
            return Err(ConfigError::Asids(self.nr_dyn_asids));
        }
        Ok(())
    }
}
