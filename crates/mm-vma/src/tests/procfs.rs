//! `/proc/PID/{status,statm,maps,smaps,smaps_rollup}` byte for byte, against the layouts of
//! linux-mm-facts.md Appendix A.7-A.9.

use super::fixture::{machine, process};
use crate::{AddressSpace, ExecImage, Layout, MapFlags, ProtFlags};
use mm_types::{Pid, VirtAddr};

const P: u64 = 4096;
const ANON: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);

#[test]
fn maps_pads_names_to_column_73_and_labels_heap_and_stack() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    as_.brk(c, VirtAddr(0x5555_5557_5000));
    as_.mmap(c, VirtAddr(0), P, ProtFlags::RW, ANON, None)
        .unwrap();
    as_.mmap(
        c,
        VirtAddr(0),
        2 * P,
        ProtFlags::READ | ProtFlags::EXEC,
        ANON,
        None,
    )
    .unwrap();
    as_.mmap(
        c,
        VirtAddr(0x10_0000),
        P,
        ProtFlags::NONE,
        ANON | MapFlags::FIXED,
        None,
    )
    .unwrap();
    let want = "\
00100000-00101000 ---p 00000000 00:00 0 
555555554000-555555575000 rw-p 00000000 00:00 0                          [heap]
7ffff7ffc000-7ffff7ffe000 r-xp 00000000 00:00 0 
7ffff7ffe000-7ffff7fff000 rw-p 00000000 00:00 0 
7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0                          [stack]
";
    assert_eq!(crate::proc_maps(&as_, c), want);
    as_.exit(c);
}

#[test]
fn status_has_the_task_mem_lines_in_order() {
    let mut m = machine(1, 4096);
    let layout = Layout {
        exec: Some(ExecImage {
            text_pages: 2,
            data_pages: 1,
            bss_pages: 1,
        }),
        ..Layout::plain()
    };
    let as_ = AddressSpace::new(&m.sys, &mut m.cpus[0], Pid(7), &layout).unwrap();
    let c = &mut m.cpus[0];
    let heap = as_.brk_value().0;
    assert_eq!(heap, 0x5555_5555_8000);
    as_.brk(c, VirtAddr(heap + 33 * P));
    for i in 0..4 {
        c.store_u64(&as_, VirtAddr(heap + i * P), 1).unwrap();
    }
    let a = as_
        .mmap(c, VirtAddr(0), P, ProtFlags::RW, ANON, None)
        .unwrap();
    c.store_u64(&as_, a, 1).unwrap();
    as_.mlock(c, a, P).unwrap();
    let pte_kb = as_.mm().pgtables_bytes() >> 10;
    let want = format!(
        "\
VmPeak:\t     284 kB
VmSize:\t     284 kB
VmLck:\t       4 kB
VmPin:\t       0 kB
VmHWM:\t      20 kB
VmRSS:\t      20 kB
RssAnon:\t      20 kB
RssFile:\t       0 kB
RssShmem:\t       0 kB
VmData:\t     144 kB
VmStk:\t     132 kB
VmExe:\t       8 kB
VmLib:\t       0 kB
VmPTE:\t{pte_kb:>8} kB
VmSwap:\t       0 kB
HugetlbPages:\t       0 kB
"
    );
    assert_eq!(crate::proc_status(&as_), want);
    assert_eq!(crate::proc_statm(&as_), "71 5 0 2 0 69 0\n");
    // Peaks stay when usage goes down.
    as_.munmap(c, VirtAddr(heap), 33 * P).unwrap();
    let s = crate::proc_status(&as_);
    assert!(
        s.starts_with("VmPeak:\t     284 kB\nVmSize:\t     152 kB\n"),
        "{s}"
    );
    assert!(
        s.contains("VmHWM:\t      20 kB\nVmRSS:\t       4 kB\n"),
        "{s}"
    );
    as_.exit(c);
}

#[test]
fn smaps_and_rollup_account_private_shared_and_pss() {
    let mut m = machine(1, 4096);
    let parent = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let a = parent
        .mmap(c, VirtAddr(0), 2 * P, ProtFlags::RW, ANON, None)
        .unwrap();
    c.store_u64(&parent, a, 1).unwrap();
    c.store_u64(&parent, VirtAddr(a.0 + P), 1).unwrap();
    let child = parent.fork(c, Pid(2)).unwrap();
    // The child writes one page (its own copy); the other stays shared by both.
    c.store_u64(&child, a, 2).unwrap();
    let smaps = crate::proc_smaps(&child, c);
    let want = "\
7ffff7ffd000-7ffff7fff000 rw-p 00000000 00:00 0 
Size:                  8 kB
KernelPageSize:        4 kB
MMUPageSize:           4 kB
Rss:                   8 kB
Pss:                   6 kB
Pss_Dirty:             6 kB
Shared_Clean:          0 kB
Shared_Dirty:          4 kB
Private_Clean:         0 kB
Private_Dirty:         4 kB
Referenced:            4 kB
Anonymous:             8 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
THPeligible:           0
VmFlags: rd wr mr mw me ac 
";
    assert!(smaps.starts_with(want), "{smaps}");
    let stack = smaps.split("[stack]\n").nth(1).expect("a stack VMA");
    assert!(
        stack.starts_with("Size:                132 kB\n"),
        "{stack}"
    );
    assert!(
        stack.ends_with("VmFlags: rd wr mr mw me gd ac \n"),
        "{stack}"
    );
    let rollup = crate::proc_smaps_rollup(&child, c);
    let want = "\
7ffff7ffd000-7ffffffff000 ---p 00000000 00:00 0                          [rollup]
Rss:                   8 kB
Pss:                   6 kB
Pss_Dirty:             6 kB
Pss_Anon:              6 kB
Pss_File:              0 kB
Pss_Shmem:             0 kB
Shared_Clean:          0 kB
Shared_Dirty:          4 kB
Private_Clean:         0 kB
Private_Dirty:         4 kB
Referenced:            4 kB
Anonymous:             8 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
";
    assert_eq!(rollup, want);
    // smaps and status agree: the sum of Rss over VMAs is VmRSS.
    assert!(crate::proc_status(&child).contains("VmRSS:\t       8 kB\n"));
    parent.exit(c);
    child.exit(c);
}
