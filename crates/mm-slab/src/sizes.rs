//! Cache geometry (`calculate_alignment`, `calculate_sizes`, `calculate_order`) and the kmalloc
//! size classes (`kmalloc_info[]`, `size_index[]`), after Linux 6.1 `mm/slub.c` and
//! `mm/slab_common.c`.

use mm_types::{MAX_ORDER, PAGE_SIZE};

bitflags::bitflags! {
    /// Cache flags (`slab_flags_t`), with the kernel's bit values.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct SlabFlags: u32 {
        /// `SLAB_HWCACHE_ALIGN`: align objects on cache lines (halved while the object fits
        /// twice in the smaller line, as `calculate_alignment` does).
        const HWCACHE_ALIGN = 0x0000_2000;
        /// `SLAB_CACHE_DMA`: slab pages from ZONE_DMA.
        const CACHE_DMA = 0x0000_4000;
        /// `SLAB_RECLAIM_ACCOUNT`: slab pages count as SReclaimable and are freed by shrinkers.
        const RECLAIM_ACCOUNT = 0x0002_0000;
        /// `SLAB_PANIC`: the kernel panics if creation fails (here creation returns an error
        /// either way).
        const PANIC = 0x0004_0000;
        /// `SLAB_TYPESAFE_BY_RCU`: the free pointer is kept outside the object.
        const TYPESAFE_BY_RCU = 0x0008_0000;
        /// `SLAB_ACCOUNT`: charge objects to the memory cgroup (recorded, not modelled).
        const ACCOUNT = 0x0400_0000;
        /// `SLAB_KMALLOC`: one of the kmalloc caches.
        const KMALLOC = 0x1000_0000;
    }
}

/// `cache_line_size()` on x86-64.
pub const CACHE_LINE_SIZE: u32 = 64;
/// `ARCH_SLAB_MINALIGN` (`__alignof__(unsigned long long)`).
pub(crate) const ARCH_SLAB_MINALIGN: u32 = 8;
/// `ARCH_KMALLOC_MINALIGN` on x86-64.
pub(crate) const ARCH_KMALLOC_MINALIGN: u32 = 8;
/// `MAX_OBJS_PER_PAGE`: objects per slab are counted in 15 bits.
pub const MAX_OBJS_PER_PAGE: u32 = 32767;
/// `MIN_PARTIAL`: the fewest empty-able slabs a node keeps on its partial list.
pub(crate) const MIN_PARTIAL: u64 = 5;
/// `MAX_PARTIAL`.
pub(crate) const MAX_PARTIAL: u64 = 10;
/// `PAGE_ALLOC_COSTLY_ORDER`, the default `slub_max_order`.
pub const SLUB_MAX_ORDER_DEFAULT: u32 = 3;
/// Size of a free pointer (`sizeof(void *)`).
pub(crate) const PTR_SIZE: u32 = 8;

/// `KMALLOC_MIN_SIZE` on x86-64.
pub const KMALLOC_MIN_SIZE: usize = 8;
/// `KMALLOC_SHIFT_HIGH` for SLUB (`PAGE_SHIFT + 1`): the largest kmalloc cache is 8 KiB.
pub(crate) const KMALLOC_SHIFT_HIGH: u32 = 13;
/// `KMALLOC_MAX_CACHE_SIZE`: larger requests go to the page allocator.
pub const KMALLOC_MAX_CACHE_SIZE: usize = 1 << KMALLOC_SHIFT_HIGH;
/// `KMALLOC_MAX_SIZE`: the largest kmalloc, one block of `MAX_PAGE_ORDER`.
pub const KMALLOC_MAX_SIZE: usize = PAGE_SIZE << MAX_ORDER;
/// Slots of the kmalloc cache arrays: index 1 (96), 2 (192) and 3..=13 (8 .. 8k); 0 is unused.
pub(crate) const KMALLOC_SLOTS: usize = KMALLOC_SHIFT_HIGH as usize + 1;
/// The kmalloc indices in the kernel's creation order: 96 and 192 first, then 8 .. 8k (the
/// order a 6.18 kernel's slabinfo shows, newest first).
pub(crate) const KMALLOC_CREATE_ORDER: [usize; 13] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];

/// `size_index[]`: the kmalloc index for sizes 1..=192, by `(size - 1) / 8`.
const SIZE_INDEX: [u8; 24] = [
    3, 4, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 2,
];

/// `fls()`: the 1-based position of the highest set bit, 0 for 0.
#[inline]
pub(crate) const fn fls(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// `get_order(size)`: the smallest order whose block holds `size` bytes (`size` > 0).
pub(crate) const fn get_order(size: u64) -> u32 {
    let pages = size.div_ceil(PAGE_SIZE as u64);
    fls(pages - 1)
}

/// Returns the kmalloc cache index serving `size` (`kmalloc_index` / `kmalloc_slab`): a table
/// lookup up to 192 bytes, `fls(size - 1)` up to 8 KiB, `None` for 0 and for larger sizes.
#[inline]
pub fn kmalloc_index(size: usize) -> Option<usize> {
    if size.wrapping_sub(1) < 192 {
        Some(SIZE_INDEX[(size - 1) / 8] as usize)
    } else if size <= KMALLOC_MAX_CACHE_SIZE && size != 0 {
        Some(fls(size as u64 - 1) as usize)
    } else {
        None
    }
}

/// Returns the object size of kmalloc index `index` (`kmalloc_info[index].size`).
pub const fn kmalloc_size(index: usize) -> usize {
    match index {
        1 => 96,
        2 => 192,
        i => 1 << i,
    }
}

/// Returns the size a kmalloc of `size` bytes really gets (`kmalloc_size_roundup`): its class
/// size, or whole pages above 8 KiB.
pub fn kmalloc_size_roundup(size: usize) -> usize {
    match kmalloc_index(size) {
        Some(i) => kmalloc_size(i),
        None if size == 0 => 0,
        None => PAGE_SIZE << get_order(size as u64),
    }
}

/// The kmalloc cache families modelled (`enum kmalloc_cache_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KmallocType {
    /// `KMALLOC_NORMAL`: `kmalloc-<n>`.
    Normal = 0,
    /// `KMALLOC_RECLAIM` (`__GFP_RECLAIMABLE`): `kmalloc-rcl-<n>`, counted as SReclaimable.
    Reclaim = 1,
}

impl KmallocType {
    /// Returns the family's name prefix.
    pub const fn prefix(self) -> &'static str {
        match self {
            KmallocType::Normal => "kmalloc-",
            KmallocType::Reclaim => "kmalloc-rcl-",
        }
    }
}

/// Returns the kernel's name of a kmalloc cache (`kmalloc-96`, `kmalloc-1k`, `kmalloc-rcl-8k`).
pub fn kmalloc_name(kind: KmallocType, index: usize) -> String {
    let size = kmalloc_size(index);
    if size >= 1024 {
        format!("{}{}k", kind.prefix(), size / 1024)
    } else {
        format!("{}{}", kind.prefix(), size)
    }
}

/// The `slub_*` boot parameters that shape every cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sizing {
    /// `slub_min_objects`, resolved: `4 * (fls(nr_cpus) + 1)` unless given.
    pub(crate) min_objects: u32,
    /// `slub_min_order`.
    pub(crate) min_order: u32,
    /// `slub_max_order`.
    pub(crate) max_order: u32,
}

/// The geometry of one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// `s->object_size`: what the user asked for.
    pub(crate) object_size: u32,
    /// `s->size`: the stride between objects (slabinfo's `<objsize>`).
    pub(crate) size: u32,
    /// `s->align`.
    pub(crate) align: u32,
    /// `s->offset`: where the free pointer lives inside a free object.
    pub(crate) offset: u32,
    /// Slab order (`oo_order(s->oo)`).
    pub(crate) order: u32,
    /// Objects per slab of that order (`oo_objects(s->oo)`).
    pub(crate) objects: u32,
    /// The fallback order when `order` cannot be had (`s->min`).
    pub(crate) min_order: u32,
    /// `s->min_partial`.
    pub(crate) min_partial: u64,
}

/// `calculate_alignment()`: the object alignment for `flags`, the requested `align` and `size`.
pub(crate) fn calculate_alignment(flags: SlabFlags, align: u32, size: u32) -> u32 {
    let mut align = align;
    if flags.contains(SlabFlags::HWCACHE_ALIGN) {
        let mut ralign = CACHE_LINE_SIZE;
        while size <= ralign / 2 {
            ralign /= 2;
        }
        align = align.max(ralign);
    }
    align = align.max(ARCH_SLAB_MINALIGN);
    align.next_multiple_of(PTR_SIZE)
}

/// `order_objects()`: objects of `size` bytes in a slab of `order`.
pub(crate) const fn order_objects(order: u32, size: u32) -> u32 {
    ((PAGE_SIZE as u64) << order).div_euclid(size as u64) as u32
}

/// `calc_slab_order()`: the smallest order from `max(min_order, get_order(min_objects * size))`
/// up to `max_order` whose leftover is at most `1 / fract_leftover` of the slab, or
/// `max_order + 1` if there is none.
fn calc_slab_order(
    size: u32,
    min_objects: u32,
    min_order: u32,
    max_order: u32,
    fract_leftover: u32,
) -> u32 {
    if order_objects(min_order, size) > MAX_OBJS_PER_PAGE {
        return get_order(size as u64 * MAX_OBJS_PER_PAGE as u64) - 1;
    }
    let mut order = min_order.max(get_order(min_objects as u64 * size as u64));
    while order <= max_order {
        let slab_size = (PAGE_SIZE as u64) << order;
        let rem = slab_size % size as u64;
        if rem <= slab_size / fract_leftover as u64 {
            break;
        }
        order += 1;
    }
    order
}

/// `calculate_order()`: relax the waste fraction 1/16 → 1/8 → 1/4, then the minimum object
/// count, until a slab of at most `slub_max_order` fits; then one object per slab, up to
/// `MAX_PAGE_ORDER`.
pub(crate) fn calculate_order(size: u32, s: &Sizing) -> Option<u32> {
    let max_objects = order_objects(s.max_order, size);
    let mut min_objects = s.min_objects.min(max_objects);
    while min_objects > 1 {
        let mut fraction = 16;
        while fraction >= 4 {
            let order = calc_slab_order(size, min_objects, s.min_order, s.max_order, fraction);
            if order <= s.max_order {
                return Some(order);
            }
            fraction /= 2;
        }
        min_objects -= 1;
    }
    let order = calc_slab_order(size, 1, s.min_order, s.max_order, 1);
    if order <= s.max_order {
        return Some(order);
    }
    let order = calc_slab_order(size, 1, s.min_order, MAX_ORDER as u32, 1);
    (order <= MAX_ORDER as u32).then_some(order)
}

/// `calculate_sizes()` plus the `kmem_cache_open()` tail (`min_partial`): the layout of a
/// cache of `object_size` bytes aligned to `align`, or `None` if no slab order fits it.
pub(crate) fn calculate_sizes(
    object_size: u32,
    align: u32,
    flags: SlabFlags,
    has_ctor: bool,
    s: &Sizing,
) -> Option<Layout> {
    if object_size == 0 {
        return None;
    }
    let mut size = object_size.checked_next_multiple_of(PTR_SIZE)?;
    let offset = if flags.contains(SlabFlags::TYPESAFE_BY_RCU) || has_ctor {
        // The user may touch the object while it is free: keep the pointer after it.
        let o = size;
        size += PTR_SIZE;
        o
    } else {
        // Near the middle, away from small over- and underflows of neighbours.
        (object_size / 2) / PTR_SIZE * PTR_SIZE
    };
    size = size.checked_next_multiple_of(align)?;
    let order = calculate_order(size, s)?;
    let objects = order_objects(order, size);
    if objects == 0 {
        return None;
    }
    let min_order = get_order(size as u64);
    let min_partial = ((fls(size as u64) - 1) as u64 / 2).clamp(MIN_PARTIAL, MAX_PARTIAL);
    Some(Layout {
        object_size,
        size,
        align,
        offset,
        order,
        objects,
        min_order,
        min_partial,
    })
}
