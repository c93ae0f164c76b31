//! Address and index newtypes.

use std::fmt;

/// log2 of the page size.
pub const PAGE_SHIFT: u32 = 12;
/// Size of a base page (and of a simulated frame) in bytes.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// Largest buddy order (`MAX_PAGE_ORDER` in Linux 6.8+): a block of `1 << 10` pages, 4 MiB.
pub const MAX_ORDER: u8 = 10;
/// Number of buddy orders (`NR_PAGE_ORDERS`).
pub const NR_ORDERS: usize = MAX_ORDER as usize + 1;

/// Generates a `u64` newtype with the shared arithmetic and formatting API.
macro_rules! implement_index {
    ($(#[$m:meta])* $name:ident, $fmt:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            /// Returns the raw value.
            #[inline]
            pub const fn get(self) -> u64 {
                self.0
            }
            /// Returns the raw value as a `usize` index.
            #[inline]
            pub const fn as_usize(self) -> usize {
                self.0 as usize
            }
            /// Returns `self + n`.
            #[inline]
            pub const fn add(self, n: u64) -> Self {
                Self(self.0 + n)
            }
            /// Returns `self - n`.
            #[inline]
            pub const fn sub(self, n: u64) -> Self {
                Self(self.0 - n)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "(", $fmt, ")"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, $fmt, self.0)
            }
        }
    };
}

/// Generates a small `u32` id newtype (CPU, node, process ids).
macro_rules! implement_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u32);

        impl $name {
            /// Returns the id as an index.
            #[inline]
            pub const fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

implement_index!(
    /// A page frame number: physical address >> [`PAGE_SHIFT`].
    Pfn, "{:#x}"
);
implement_index!(
    /// A physical byte address in simulated RAM.
    PhysAddr, "{:#x}"
);
implement_index!(
    /// A virtual byte address in a simulated address space.
    VirtAddr, "{:#x}"
);
implement_index!(
    /// A virtual page number: virtual address >> [`PAGE_SHIFT`].
    Vpn, "{:#x}"
);

impl Pfn {
    /// Returns the physical address of the first byte of this frame.
    #[inline]
    pub const fn phys(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }
    /// Returns the buddy of the block of `order` starting here (`pfn ^ (1 << order)`).
    #[inline]
    pub const fn buddy(self, order: Order) -> Pfn {
        Pfn(self.0 ^ (1 << order.0))
    }
    /// Returns true if this pfn is aligned to a block of `order`.
    #[inline]
    pub const fn is_aligned(self, order: Order) -> bool {
        self.0 & ((1 << order.0) - 1) == 0
    }
}

impl PhysAddr {
    /// Returns the frame that holds this address.
    #[inline]
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }
    /// Returns the offset of this address inside its frame.
    #[inline]
    pub const fn page_offset(self) -> usize {
        (self.0 as usize) & (PAGE_SIZE - 1)
    }
}

impl VirtAddr {
    /// Returns the virtual page that holds this address.
    #[inline]
    pub const fn vpn(self) -> Vpn {
        Vpn(self.0 >> PAGE_SHIFT)
    }
    /// Returns the offset of this address inside its page.
    #[inline]
    pub const fn page_offset(self) -> usize {
        (self.0 as usize) & (PAGE_SIZE - 1)
    }
    /// Rounds down to a page boundary.
    #[inline]
    pub const fn page_align_down(self) -> VirtAddr {
        VirtAddr(self.0 & !(PAGE_SIZE as u64 - 1))
    }
    /// Returns true if the address is page aligned.
    #[inline]
    pub const fn is_page_aligned(self) -> bool {
        self.0 & (PAGE_SIZE as u64 - 1) == 0
    }
}

impl Vpn {
    /// Returns the address of the first byte of this page.
    #[inline]
    pub const fn addr(self) -> VirtAddr {
        VirtAddr(self.0 << PAGE_SHIFT)
    }
}

implement_id!(
    /// A simulated CPU.
    CpuId
);
implement_id!(
    /// A NUMA node.
    NodeId
);
implement_id!(
    /// A simulated process (thread-group) id.
    Pid
);

/// A buddy order: a block of `1 << order` contiguous frames, `0..=MAX_ORDER`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Order(u8);

/// The error for an order above [`MAX_ORDER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("order {0} is above the largest buddy order {MAX_ORDER}")]
pub struct OrderError(pub u32);

impl Order {
    /// Order 0: one page.
    pub const ZERO: Order = Order(0);
    /// The largest order ([`MAX_ORDER`]).
    pub const MAX: Order = Order(MAX_ORDER);

    /// Returns the order, or an error if it is above [`MAX_ORDER`].
    #[inline]
    pub const fn new(order: u32) -> Result<Order, OrderError> {
        if order <= MAX_ORDER as u32 {
            Ok(Order(order as u8))
        } else {
            Err(OrderError(order))
        }
    }
    /// Returns the order as an index.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
    /// Returns the raw order.
    #[inline]
    pub const fn get(self) -> u32 {
        self.0 as u32
    }
    /// Returns the number of pages in a block of this order.
    #[inline]
    pub const fn pages(self) -> u64 {
        1 << self.0
    }
    /// Returns every order, smallest first.
    pub fn all() -> impl DoubleEndedIterator<Item = Order> {
        (0..=MAX_ORDER).map(Order)
    }
}

impl fmt::Debug for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Order({})", self.0)
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A zone index inside a node, in the kernel's order (`enum zone_type` on x86-64).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum ZoneId {
    /// `ZONE_DMA`: the first 16 MiB.
    Dma = 0,
    /// `ZONE_DMA32`: 16 MiB to 4 GiB.
    Dma32 = 1,
    /// `ZONE_NORMAL`: above 4 GiB.
    Normal = 2,
    /// `ZONE_MOVABLE`: only when configured (kernelcore=/movablecore=).
    Movable = 3,
    /// `ZONE_DEVICE`: never holds managed pages.
    Device = 4,
}

impl ZoneId {
    /// Number of zone types (`MAX_NR_ZONES`); sysctl arrays such as `lowmem_reserve_ratio`
    /// have this many entries.
    pub const COUNT: usize = 5;
    /// Every zone type, lowest first.
    pub const ALL: [ZoneId; 5] = [
        ZoneId::Dma,
        ZoneId::Dma32,
        ZoneId::Normal,
        ZoneId::Movable,
        ZoneId::Device,
    ];

    /// Returns the zone index.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
    /// Returns the kernel's name (`zone_names[]`).
    pub const fn name(self) -> &'static str {
        match self {
            ZoneId::Dma => "DMA",
            ZoneId::Dma32 => "DMA32",
            ZoneId::Normal => "Normal",
            ZoneId::Movable => "Movable",
            ZoneId::Device => "Device",
        }
    }
    /// Returns the lower-case name used in vmstat counters (`pgalloc_dma32`).
    pub const fn counter_name(self) -> &'static str {
        match self {
            ZoneId::Dma => "dma",
            ZoneId::Dma32 => "dma32",
            ZoneId::Normal => "normal",
            ZoneId::Movable => "movable",
            ZoneId::Device => "device",
        }
    }
    /// Parses a kernel zone name (`DMA`, `DMA32`, `Normal`, `Movable`).
    pub fn from_name(name: &str) -> Option<ZoneId> {
        ZoneId::ALL.into_iter().find(|z| z.name() == name)
    }
    /// Returns the zone with this index.
    pub const fn from_index(i: usize) -> Option<ZoneId> {
        if i < Self::COUNT {
            Some(Self::ALL[i])
        } else {
            None
        }
    }
}

impl fmt::Display for ZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A swap entry: swap device type and page offset, opaque to everything but the swap layer
/// and the PTE encoder (`swp_entry_t`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SwapEntry {
    /// The swap device index (`swp_type`), `0..MAX_SWAPFILES`.
    pub kind: u8,
    /// The page offset in the device (`swp_offset`).
    pub offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buddy_and_alignment_follow_the_kernel_rule() {
        let o3 = Order::new(3).unwrap();
        assert_eq!(Pfn(8).buddy(o3), Pfn(0));
        assert_eq!(Pfn(0).buddy(o3), Pfn(8));
        assert_eq!(Pfn(24).buddy(o3), Pfn(16));
        assert!(Pfn(16).is_aligned(o3));
        assert!(!Pfn(12).is_aligned(o3));
        assert_eq!(Order::new(11), Err(OrderError(11)));
        assert_eq!(Order::all().count(), NR_ORDERS);
    }

    #[test]
    fn address_conversions_round_trip() {
        let pa = PhysAddr(0x1234_5678);
        assert_eq!(pa.pfn(), Pfn(0x12345));
        assert_eq!(pa.page_offset(), 0x678);
        assert_eq!(Pfn(0x12345).phys(), PhysAddr(0x1234_5000));
        let va = VirtAddr(0x7fff_1234);
        assert_eq!(va.vpn().addr(), va.page_align_down());
        assert_eq!(format!("{}", Pfn(255)), "0xff");
        assert_eq!(ZoneId::from_name("DMA32"), Some(ZoneId::Dma32));
        assert_eq!(ZoneId::from_name("dma32"), None);
    }
}
