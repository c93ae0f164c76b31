//! The x86-64 process layout an `execve` sets up (`arch/x86/mm/mmap.c`, `fs/binfmt_elf.c`):
//! the stack at the top with its random offset, `mmap_base` below the stack's rlimit and guard
//! gap, the PIE image at `ELF_ET_DYN_BASE`, and the heap (`brk`) right after the image.

use mm_types::{PAGE_SHIFT, PAGE_SIZE};

/// `TASK_SIZE` with 4-level paging (`DEFAULT_MAP_WINDOW`): one past the highest user page.
pub const TASK_SIZE: u64 = (1 << 47) - PAGE_SIZE as u64;
/// The PIE load address without randomization (`ELF_ET_DYN_BASE`, page aligned).
pub const ELF_ET_DYN_BASE: u64 = 0x5555_5555_4000;
/// Size of the initial stack VMA (132 KiB: 33 pages, what a small program starts with).
pub const INITIAL_STACK_PAGES: u64 = 33;
/// `RLIM_INFINITY`.
pub const RLIM_INFINITY: u64 = u64::MAX;
/// `SIZE_128M`: the smallest gap between `mmap_base` and the stack top.
const MIN_GAP: u64 = 128 << 20;
/// `mmap_rnd_bits` on x86-64.
const MMAP_RND_BITS: u32 = 28;
/// `STACK_RND_MASK` on 64-bit: the stack top moves by up to 16 GiB.
const STACK_RND_MASK: u64 = 0x3f_ffff;
/// `arch_randomize_brk` moves the heap start by up to 32 MiB.
const BRK_RND_RANGE: u64 = 0x0200_0000;

/// The resource limits the VMA layer checks.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Rlimits {
    /// `RLIMIT_STACK` in bytes (8 MiB).
    pub stack: u64,
    /// `RLIMIT_MEMLOCK` in bytes (8 MiB).
    pub memlock: u64,
    /// `RLIMIT_DATA` in bytes.
    pub data: u64,
    /// `RLIMIT_AS` in bytes.
    pub address_space: u64,
}

impl Rlimits {
    /// A modern distribution's defaults: 8 MiB stack, 8 MiB memlock, no data or AS limit.
    pub const fn linux_default() -> Rlimits {
        Rlimits {
            stack: 8 << 20,
            memlock: 8 << 20,
            data: RLIM_INFINITY,
            address_space: RLIM_INFINITY,
        }
    }
}

/// The program image `execve` maps: anonymous stand-ins for the ELF segments (there is no
/// page cache to map the binary from yet), text `r-xp`, then data and bss `rw-p`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ExecImage {
    /// Text pages (`start_code..end_code`).
    pub text_pages: u64,
    /// Initialized data pages (`start_data..end_data`).
    pub data_pages: u64,
    /// Zero-initialized data pages after the data.
    pub bss_pages: u64,
}

/// How a new address space is laid out.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Layout {
    /// `None`: no randomization (`randomize_va_space = 0`, the classic layout debuggers
    /// show); `Some(seed)`: ASLR with offsets drawn from `seed` (full randomization, 2).
    pub seed: Option<u64>,
    /// The process's limits.
    pub rlimits: Rlimits,
    /// The program image, if any; without one the heap starts at the PIE base.
    pub exec: Option<ExecImage>,
}

impl Layout {
    /// No randomization, default limits, no image.
    pub const fn plain() -> Layout {
        Layout {
            seed: None,
            rlimits: Rlimits::linux_default(),
            exec: None,
        }
    }
}

/// Addresses a layout resolves to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Placed {
    pub(crate) stack_top: u64,
    pub(crate) mmap_base: u64,
    pub(crate) load_base: u64,
    /// Added to the page-aligned end of the image to get `start_brk`.
    pub(crate) brk_offset: u64,
}

/// SplitMix64: the layout's random offsets, from the caller's seed.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn page_align(v: u64) -> u64 {
    (v + PAGE_SIZE as u64 - 1) & !(PAGE_SIZE as u64 - 1)
}

/// Resolves `layout` (`arch_pick_mmap_layout`, `randomize_stack_top`, `load_elf_binary`).
pub(crate) fn place(layout: &Layout, stack_guard_gap: u64) -> Placed {
    let mut rng = layout.seed;
    let mut draw = |mask: u64| match rng.as_mut() {
        Some(s) => splitmix(s) & mask,
        None => 0,
    };
    let stack_top = TASK_SIZE - (draw(STACK_RND_MASK) << PAGE_SHIFT);
    let mmap_rnd = draw((1 << MMAP_RND_BITS) - 1) << PAGE_SHIFT;
    let load_rnd = draw((1 << MMAP_RND_BITS) - 1) << PAGE_SHIFT;
    let brk_offset = (draw(u64::MAX) % (BRK_RND_RANGE >> PAGE_SHIFT)) << PAGE_SHIFT;
    // mmap_base(): leave the stack rlimit, the guard gap and the stack's random range free.
    let stack_rnd_range = if layout.seed.is_some() {
        STACK_RND_MASK << PAGE_SHIFT
    } else {
        0
    };
    let gap = layout
        .rlimits
        .stack
        .saturating_add(stack_guard_gap + stack_rnd_range)
        .clamp(MIN_GAP, TASK_SIZE / 6 * 5);
    Placed {
        stack_top,
        mmap_base: page_align(TASK_SIZE - gap - mmap_rnd),
        load_base: ELF_ET_DYN_BASE + load_rnd,
        brk_offset,
    }
}
