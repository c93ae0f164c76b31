//! The memory files of `/proc/PID` in Linux's exact text format (`fs/proc/task_mmu.c`, in
//! the 6.18 layout of linux-mm-facts.md Appendix A): the `Vm*`/`Rss*` lines of `status`,
//! `statm`, `maps`, `smaps` and `smaps_rollup`.
//!
//! `status` and `statm` read counters without a lock, as `task_mem` does. The others take the
//! mmap read lock (on the calling context: a CPU keeps handling IPIs while it waits; another
//! thread passes a daemon context from `Mmu::daemon`) and walk the page tables of each VMA
//! under the page-table lock.

use crate::ctx::CpuCtx;
use crate::flags::VmFlags;
use crate::lock::lock_spin;
use crate::mm::{AddressSpace, MmState};
use crate::pt;
use crate::vma::Vma;
use mm_phys::PageFlags;
use mm_types::{PAGE_SHIFT, PAGE_SIZE};
use std::fmt::Write;

/// `PSS_SHIFT`: PSS is kept in fixed point.
const PSS_SHIFT: u32 = 12;
/// The width `show_vma_header_prefix` pads to before a name: `25 + sizeof(void *) * 6 - 1`.
const NAME_COLUMN: usize = 72;

fn kb(pages: u64) -> u64 {
    pages << (PAGE_SHIFT - 10)
}

/// The `Vm*`, `Rss*` and `HugetlbPages` lines of `/proc/PID/status` (`task_mem` and
/// `hugetlb_report_usage`), each `Name:\t%8lu kB`.
pub fn proc_status(as_: &AddressSpace) -> String {
    let core = &as_.core;
    let [total, locked, data, exec, stack, hiwater_vm] = core.vm.snapshot();
    let rss = core.rss();
    let (start_code, end_code) = core.code;
    let page = PAGE_SIZE as u64;
    let text = ((end_code + page - 1) & !(page - 1)) - (start_code & !(page - 1));
    let text = text.min(exec << PAGE_SHIFT);
    let lib = (exec << PAGE_SHIFT) - text;
    let mut out = String::with_capacity(512);
    let mut line = |name: &str, kb: u64| {
        let _ = writeln!(out, "{name}:\t{kb:>8} kB");
    };
    line("VmPeak", kb(hiwater_vm));
    line("VmSize", kb(total));
    line("VmLck", kb(locked));
    line("VmPin", 0);
    line("VmHWM", kb(core.hiwater_rss()));
    line("VmRSS", kb(rss.resident()));
    line("RssAnon", kb(rss.anon));
    line("RssFile", kb(rss.file));
    line("RssShmem", kb(rss.shmem));
    line("VmData", kb(data));
    line("VmStk", kb(stack));
    line("VmExe", text >> 10);
    line("VmLib", lib >> 10);
    line("VmPTE", core.mm.pgtables_bytes() >> 10);
    line("VmSwap", kb(rss.swap));
    line("HugetlbPages", 0);
    out
}

/// `/proc/PID/statm`: `size resident shared text lib data dt` in pages (`task_statm`).
pub fn proc_statm(as_: &AddressSpace) -> String {
    let core = &as_.core;
    let [total, _, data, _, stack, _] = core.vm.snapshot();
    let rss = core.rss();
    let (start_code, end_code) = core.code;
    let page = PAGE_SIZE as u64;
    let text = (((end_code + page - 1) & !(page - 1)) - (start_code & !(page - 1))) >> PAGE_SHIFT;
    let shared = rss.file + rss.shmem;
    format!(
        "{total} {} {shared} {text} 0 {} 0\n",
        shared + rss.anon,
        data + stack
    )
}

/// `show_vma_header_prefix`: `start-end perms offset major:minor inode `.
fn header_prefix(
    out: &mut String,
    start: u64,
    end: u64,
    flags: VmFlags,
    pgoff: u64,
    dev: (u32, u32),
    ino: u64,
) -> usize {
    let begin = out.len();
    let c = |f: VmFlags, ch: char| if flags.contains(f) { ch } else { '-' };
    let _ = write!(
        out,
        "{start:08x}-{end:08x} {}{}{}{} {pgoff:08x} {:02x}:{:02x} {ino} ",
        c(VmFlags::READ, 'r'),
        c(VmFlags::WRITE, 'w'),
        c(VmFlags::EXEC, 'x'),
        if flags.contains(VmFlags::MAYSHARE) {
            's'
        } else {
            'p'
        },
        dev.0,
        dev.1,
    );
    begin
}

/// `seq_pad(m, ' ')` then the name.
fn pad_name(out: &mut String, begin: usize, name: &str) {
    let used = out.len() - begin;
    if used < NAME_COLUMN {
        out.extend(std::iter::repeat_n(' ', NAME_COLUMN - used));
    }
    out.push(' ');
    out.push_str(name);
}

/// `show_map_vma`: one line of `/proc/PID/maps`.
fn map_line(out: &mut String, st: &MmState, v: &Vma) {
    let (pgoff, dev, ino) = match &v.file {
        Some(f) => (v.pgoff << PAGE_SHIFT, f.dev(), f.ino()),
        None => (0, (0, 0), 0),
    };
    let begin = header_prefix(out, v.start, v.end, v.flags, pgoff, dev, ino);
    let name = match &v.file {
        Some(f) => Some(f.path()),
        None if v.start <= st.brk && v.end >= st.start_brk => Some("[heap]"),
        None if v.start <= st.start_stack && v.end >= st.start_stack => Some("[stack]"),
        None => None,
    };
    if let Some(n) = name {
        pad_name(out, begin, n);
    }
    out.push('\n');
}

/// `/proc/PID/maps`.
pub fn proc_maps(as_: &AddressSpace, ctx: &mut CpuCtx) -> String {
    let st = as_.state.read(ctx.mmu());
    let mut out = String::new();
    for v in st.vmas.iter() {
        map_line(&mut out, &st, v);
    }
    out
}

/// `struct mem_size_stats`, in bytes (PSS fields in fixed point).
#[derive(Default, Clone, Copy)]
struct Mss {
    resident: u64,
    shared_clean: u64,
    shared_dirty: u64,
    private_clean: u64,
    private_dirty: u64,
    referenced: u64,
    anonymous: u64,
    lazyfree: u64,
    swap: u64,
    pss: u64,
    pss_anon: u64,
    pss_file: u64,
    pss_shmem: u64,
    pss_dirty: u64,
    pss_locked: u64,
    swap_pss: u64,
}

impl Mss {
    fn add(&mut self, o: &Mss) {
        self.resident += o.resident;
        self.shared_clean += o.shared_clean;
        self.shared_dirty += o.shared_dirty;
        self.private_clean += o.private_clean;
        self.private_dirty += o.private_dirty;
        self.referenced += o.referenced;
        self.anonymous += o.anonymous;
        self.lazyfree += o.lazyfree;
        self.swap += o.swap;
        self.pss += o.pss;
        self.pss_anon += o.pss_anon;
        self.pss_file += o.pss_file;
        self.pss_shmem += o.pss_shmem;
        self.pss_dirty += o.pss_dirty;
        self.pss_locked += o.pss_locked;
        self.swap_pss += o.swap_pss;
    }
}

/// `smap_gather_stats` for one VMA (`smaps_pte_entry` + `smaps_account`).
fn gather(as_: &AddressSpace, ctx: &mut CpuCtx, v: &Vma) -> Mss {
    let sys = &*as_.sys;
    let mut m = Mss::default();
    let locked = v.flags.contains(VmFlags::LOCKED);
    let page_size = PAGE_SIZE as u64;
    let _ptl = lock_spin(ctx.mmu(), &as_.core.ptl);
    pt::for_each_pte(
        &sys.mem,
        as_.core.mm.root(),
        sys.levels,
        v.start,
        v.end,
        &mut |_, pte| {
            if let Some(e) = pte.swap_entry() {
                m.swap += page_size;
                let count = sys.hooks.swap.swap_count(e).max(1) as u64;
                m.swap_pss += (page_size << PSS_SHIFT) / count;
                return;
            }
            if !pte.has_frame() || pte.pfn() == sys.zero_pfn {
                return;
            }
            let page = sys.mem.page(pte.pfn());
            let flags = page.flags();
            let anon = flags.contains(PageFlags::ANON);
            let dirty = pte.is_dirty() || flags.contains(PageFlags::DIRTY);
            if anon {
                m.anonymous += page_size;
                if !flags.contains(PageFlags::SWAPBACKED) && !dirty {
                    m.lazyfree += page_size;
                }
            }
            m.resident += page_size;
            if pte.is_young() || flags.contains(PageFlags::REFERENCED) {
                m.referenced += page_size;
            }
            let (pss, private) = if page.refcount() == 1 {
                (page_size << PSS_SHIFT, true)
            } else {
                let mapcount = page.mapcount().max(0) as u64;
                let pss = if mapcount >= 2 {
                    (page_size << PSS_SHIFT) / mapcount
                } else {
                    page_size << PSS_SHIFT
                };
                (pss, mapcount < 2)
            };
            // smaps_page_accumulate.
            m.pss += pss;
            if anon {
                m.pss_anon += pss;
            } else if flags.contains(PageFlags::SWAPBACKED) {
                m.pss_shmem += pss;
            } else {
                m.pss_file += pss;
            }
            if locked {
                m.pss_locked += pss;
            }
            if dirty {
                m.pss_dirty += pss;
                if private {
                    m.private_dirty += page_size;
                } else {
                    m.shared_dirty += page_size;
                }
            } else if private {
                m.private_clean += page_size;
            } else {
                m.shared_clean += page_size;
            }
        },
    );
    m
}

/// One `Label:` line of smaps: the label padded to 16 columns, the value to 8, in kB.
fn field(out: &mut String, label: &str, bytes: u64) {
    let _ = writeln!(out, "{:<16}{:>8} kB", format!("{label}:"), bytes >> 10);
}

/// `__show_smap`.
fn show_smap(out: &mut String, m: &Mss, rollup: bool) {
    field(out, "Rss", m.resident);
    field(out, "Pss", m.pss >> PSS_SHIFT);
    field(out, "Pss_Dirty", m.pss_dirty >> PSS_SHIFT);
    if rollup {
        field(out, "Pss_Anon", m.pss_anon >> PSS_SHIFT);
        field(out, "Pss_File", m.pss_file >> PSS_SHIFT);
        field(out, "Pss_Shmem", m.pss_shmem >> PSS_SHIFT);
    }
    field(out, "Shared_Clean", m.shared_clean);
    field(out, "Shared_Dirty", m.shared_dirty);
    field(out, "Private_Clean", m.private_clean);
    field(out, "Private_Dirty", m.private_dirty);
    field(out, "Referenced", m.referenced);
    field(out, "Anonymous", m.anonymous);
    field(out, "KSM", 0);
    field(out, "LazyFree", m.lazyfree);
    field(out, "AnonHugePages", 0);
    field(out, "ShmemPmdMapped", 0);
    field(out, "FilePmdMapped", 0);
    field(out, "Shared_Hugetlb", 0);
    field(out, "Private_Hugetlb", 0);
    field(out, "Swap", m.swap);
    field(out, "SwapPss", m.swap_pss >> PSS_SHIFT);
    field(out, "Locked", m.pss_locked >> PSS_SHIFT);
}

/// `/proc/PID/smaps`.
pub fn proc_smaps(as_: &AddressSpace, ctx: &mut CpuCtx) -> String {
    let st = as_.state.read(ctx.mmu());
    let mut out = String::new();
    for v in st.vmas.iter() {
        let m = gather(as_, ctx, v);
        map_line(&mut out, &st, v);
        field(&mut out, "Size", v.end - v.start);
        field(&mut out, "KernelPageSize", PAGE_SIZE as u64);
        field(&mut out, "MMUPageSize", PAGE_SIZE as u64);
        show_smap(&mut out, &m, false);
        let _ = writeln!(out, "THPeligible:    {:>8}", 0);
        out.push_str("VmFlags: ");
        for (f, name) in VmFlags::MNEMONICS {
            if v.flags.contains(f) {
                out.push_str(name);
                out.push(' ');
            }
        }
        out.push('\n');
    }
    out
}

/// `/proc/PID/smaps_rollup`: the sum over every VMA, under a `[rollup]` header spanning
/// the first VMA's start to the last one's end.
pub fn proc_smaps_rollup(as_: &AddressSpace, ctx: &mut CpuCtx) -> String {
    let st = as_.state.read(ctx.mmu());
    let mut total = Mss::default();
    let (mut first, mut last) = (0, 0);
    for (i, v) in st.vmas.iter().enumerate() {
        if i == 0 {
            first = v.start;
        }
        last = v.end;
        let m = gather(as_, ctx, v);
        total.add(&m);
    }
    let mut out = String::new();
    let begin = header_prefix(&mut out, first, last, VmFlags::empty(), 0, (0, 0), 0);
    pad_name(&mut out, begin, "[rollup]");
    out.push('\n');
    show_smap(&mut out, &total, true);
    out
}
