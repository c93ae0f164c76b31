//! The layer's kernel objects in the slab: every live address space, VMA, anon_vma and
//! (VMA, anon_vma) link has exactly one `mm_struct`, `vm_area_struct`, `anon_vma` and
//! `anon_vma_chain` allocated, holding what the `kobj` module documents; running out of slab
//! memory is ENOMEM (or OOM for a fault) with nothing changed.

use super::fixture::{free_pages, machine, process, Machine};
use crate::kobj::{VM_END, VM_FLAGS, VM_MM, VM_START};
use crate::{AccessError, AddressSpace, MapFlags, ProtFlags};
use mm_buddy::Frame;
use mm_slab::{SlabObj, StdCache};
use mm_types::{CpuId, Errno, Gfp, Order, PhysAddr, Pid, VirtAddr};

const P: u64 = 4096;
const ANON: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);
const RW: ProtFlags = ProtFlags::RW;

/// Allocated objects of the four caches the layer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Live {
    mm: u64,
    vma: u64,
    av: u64,
    avc: u64,
}

impl Live {
    fn plus(self, mm: i64, vma: i64, av: i64, avc: i64) -> Live {
        let add = |a: u64, d: i64| a.checked_add_signed(d).expect("a count below zero");
        Live {
            mm: add(self.mm, mm),
            vma: add(self.vma, vma),
            av: add(self.av, av),
            avc: add(self.avc, avc),
        }
    }
}

/// Counts the allocated objects (not on any freelist, CPU freelists included).
fn live(m: &Machine) -> Live {
    let slab = m.sys.slab().expect("test machines have a slab");
    let n = |c: StdCache| {
        let k = slab.cache_counts(slab.std_cache(c)).expect("a sound cache");
        assert_eq!(k.cpus_skipped, 0, "no other thread holds a CPU");
        k.total_objects - k.free_objects
    };
    Live {
        mm: n(StdCache::MmStruct),
        vma: n(StdCache::VmAreaStruct),
        av: n(StdCache::AnonVma),
        avc: n(StdCache::AnonVmaChain),
    }
}

/// Maps `n` one-page VMAs that cannot merge (alternating protections), returning them.
fn map_separate(as_: &AddressSpace, m: &mut Machine, n: u64) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let prot = if i % 2 == 0 { RW } else { ProtFlags::READ };
            as_.mmap(&mut m.cpus[0], VirtAddr(0), P, prot, ANON, None)
                .unwrap()
                .0
        })
        .collect()
}

fn check(as_: &AddressSpace, m: &mut Machine) {
    as_.check_invariants(&mut m.cpus[0]).unwrap();
}

#[test]
fn each_vma_has_a_vm_area_struct_holding_its_range_until_it_is_unmapped() {
    let mut m = machine(1, 4096);
    let base = live(&m);
    let as_ = process(&mut m, 7);
    let with_process = live(&m);
    assert_eq!(
        with_process,
        base.plus(1, as_.map_count() as i64, 0, 0),
        "one mm_struct and one vm_area_struct per VMA of the new process"
    );
    let addrs = map_separate(&as_, &mut m, 10);
    assert_eq!(live(&m), with_process.plus(0, 10, 0, 0));
    check(&as_, &mut m);

    // The objects hold vm_start, vm_end, vm_mm and vm_flags at Linux's offsets.
    {
        let st = as_.state.read_nocpu();
        let mm = st.mm_obj.as_ref().expect("an mm_struct").addr().0;
        let rd = |a: u64| m.sys.mem.read_u64(PhysAddr(a)).unwrap();
        assert_eq!(rd(mm), crate::kobj::MM_MAGIC);
        assert_eq!(rd(mm + 8), 7, "the pid");
        let mut seen = std::collections::BTreeSet::new();
        for v in st.vmas.iter() {
            let o = v.objs.as_ref().expect("a vm_area_struct").vma.addr().0;
            assert!(seen.insert(o), "two VMAs share the object at {o:#x}");
            assert_eq!(rd(o + VM_START), v.start);
            assert_eq!(rd(o + VM_END), v.end);
            assert_eq!(rd(o + VM_MM), mm);
            assert_eq!(rd(o + VM_FLAGS), v.flags.bits());
        }
        assert_eq!(seen.len(), as_.map_count());
    }

    for a in addrs {
        as_.munmap(&mut m.cpus[0], VirtAddr(a), P).unwrap();
    }
    assert_eq!(live(&m), with_process);
    as_.exit(&mut m.cpus[0]);
    assert_eq!(
        live(&m),
        base,
        "exit frees the mm_struct and every vm_area_struct"
    );

    // Once the CPU slabs are flushed, slabinfo's active_objs are the live counts.
    let slab = m.sys.slab().unwrap().clone();
    for c in [StdCache::MmStruct, StdCache::VmAreaStruct] {
        slab.shrink_cache(CpuId(0), slab.std_cache(c));
        let row = slab
            .slabinfo_rows()
            .into_iter()
            .find(|r| r.name == c.name())
            .unwrap();
        let want = if c == StdCache::MmStruct {
            base.mm
        } else {
            base.vma
        };
        assert_eq!(row.active_objs, want, "{row:?}");
    }
}

#[test]
fn an_anon_vma_and_its_chain_come_with_the_first_anonymous_page() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let before = live(&m);
    let a = as_
        .mmap(&mut m.cpus[0], VirtAddr(0), 4 * P, RW, ANON, None)
        .unwrap();
    // A read maps the zero page: no anon_vma yet.
    assert_eq!(m.cpus[0].load_u64(&as_, a), Ok(0));
    assert_eq!(live(&m), before.plus(0, 1, 0, 0));
    m.cpus[0].store_u64(&as_, a, 1).unwrap();
    m.cpus[0].store_u64(&as_, VirtAddr(a.0 + P), 2).unwrap();
    assert_eq!(
        live(&m),
        before.plus(0, 1, 1, 1),
        "one anon_vma, one chain link"
    );
    check(&as_, &mut m);
    as_.munmap(&mut m.cpus[0], a, 4 * P).unwrap();
    assert_eq!(live(&m), before);
    as_.exit(&mut m.cpus[0]);
}

#[test]
fn an_anon_vma_referenced_elsewhere_is_freed_by_its_last_holder() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let before = live(&m);
    let a = as_
        .mmap(&mut m.cpus[0], VirtAddr(0), P, RW, ANON, None)
        .unwrap();
    m.cpus[0].store_u64(&as_, a, 1).unwrap();
    // What an rmap walk holds while the VMA goes away.
    let held = as_
        .state
        .read_nocpu()
        .vmas
        .lookup(a.0)
        .unwrap()
        .anon_vma
        .clone()
        .unwrap();
    let obj = held.kobj.as_ref().unwrap().addr();
    let refcount = |m: &Machine| m.sys.mem.read_u64(PhysAddr(obj + 48)).unwrap();
    assert_eq!(refcount(&m), 1);
    as_.munmap(&mut m.cpus[0], a, P).unwrap();
    assert_eq!(
        live(&m),
        before.plus(0, 0, 1, 0),
        "the held anon_vma lives on"
    );
    drop(held);
    assert_eq!(
        live(&m),
        before,
        "the last holder freed it, through a shared pin"
    );
    assert_eq!(refcount(&m), 0);
    as_.exit(&mut m.cpus[0]);
}

#[test]
fn fork_doubles_the_vmas_and_links_the_child_into_every_anon_vma() {
    let mut m = machine(1, 4096);
    let base = live(&m);
    let parent = process(&mut m, 1);
    let addrs = map_separate(&parent, &mut m, 4);
    // Pages in the two writable VMAs: each gets an anon_vma.
    for &a in addrs.iter().step_by(2) {
        m.cpus[0].store_u64(&parent, VirtAddr(a), a).unwrap();
    }
    let k = parent.map_count() as i64;
    let before = live(&m);
    assert_eq!(before, base.plus(1, k, 2, 2));

    let child = parent.fork(&mut m.cpus[0], Pid(2)).unwrap();
    // The child: its mm_struct, a copy of every VMA, for each VMA with anonymous pages a
    // fresh anon_vma linked next to the parent's (two chain links).
    assert_eq!(live(&m), before.plus(1, k, 2, 4));
    check(&parent, &mut m);
    check(&child, &mut m);
    // A grandchild links into all three generations.
    let grandchild = child.fork(&mut m.cpus[0], Pid(3)).unwrap();
    assert_eq!(live(&m), before.plus(2, 2 * k, 4, 4 + 6));
    check(&grandchild, &mut m);
    grandchild.exit(&mut m.cpus[0]);
    assert_eq!(live(&m), before.plus(1, k, 2, 4));

    // The parent's anon_vmas outlive its exit while the child still links to them.
    parent.exit(&mut m.cpus[0]);
    assert_eq!(live(&m), base.plus(1, k, 4, 4));
    for &a in addrs.iter().step_by(2) {
        assert_eq!(m.cpus[0].load_u64(&child, VirtAddr(a)), Ok(a));
    }
    check(&child, &mut m);
    child.exit(&mut m.cpus[0]);
    assert_eq!(live(&m), base);
}

#[test]
fn an_mprotect_split_adds_one_vm_area_struct_and_the_merge_gives_it_back() {
    let mut m = machine(1, 4096);
    let as_ = process(&mut m, 1);
    let a = as_
        .mmap(&mut m.cpus[0], VirtAddr(0), 4 * P, RW, ANON, None)
        .unwrap()
        .0;
    m.cpus[0].store_u64(&as_, VirtAddr(a), 1).unwrap();
    let whole = live(&m);
    // The tail: one split; the new VMA links into the same anon_vma.
    as_.mprotect(&mut m.cpus[0], VirtAddr(a + 3 * P), P, ProtFlags::READ)
        .unwrap();
    assert_eq!(live(&m), whole.plus(0, 1, 0, 1));
    check(&as_, &mut m);
    as_.mprotect(&mut m.cpus[0], VirtAddr(a + 3 * P), P, RW)
        .unwrap();
    assert_eq!(live(&m), whole, "merged back");
    // The middle: two splits.
    as_.mprotect(&mut m.cpus[0], VirtAddr(a + P), P, ProtFlags::READ)
        .unwrap();
    assert_eq!(live(&m), whole.plus(0, 2, 0, 2));
    check(&as_, &mut m);
    // munmap of a hole splits too, then frees the middle.
    as_.mprotect(&mut m.cpus[0], VirtAddr(a + P), P, RW)
        .unwrap();
    as_.munmap(&mut m.cpus[0], VirtAddr(a + 2 * P), P).unwrap();
    assert_eq!(live(&m), whole.plus(0, 1, 0, 1));
    check(&as_, &mut m);
    as_.exit(&mut m.cpus[0]);
}

#[test]
fn an_address_space_dropped_without_exit_frees_its_objects() {
    let mut m = machine(1, 4096);
    let base = live(&m);
    let as_ = process(&mut m, 1);
    map_separate(&as_, &mut m, 3);
    assert_eq!(live(&m).mm, base.mm + 1);
    // Never loaded on a CPU: the drop tears it down itself.
    drop(as_);
    assert_eq!(live(&m), base);
}

/// Takes every free page of the machine.
fn take_all_pages(m: &Machine) -> Vec<Frame> {
    let buddy = m.sys.buddy();
    std::iter::from_fn(|| buddy.alloc(CpuId(0), Order::ZERO, Gfp::GFP_KERNEL).ok()).collect()
}

#[test]
fn without_slab_memory_syscalls_fail_with_enomem_and_change_nothing() {
    let mut m = machine(1, 4096);
    let free0 = free_pages(&m.sys);
    let base = live(&m);
    let as_ = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let big = as_.mmap(c, VirtAddr(0), 8 * P, RW, ANON, None).unwrap().0;
    c.store_u64(&as_, VirtAddr(big), 1).unwrap();
    // The lowest VMA, so fork copies it first: it has an anon_vma of its own.
    let low = VirtAddr(1 << 30);
    let fixed = ANON | MapFlags::FIXED;
    assert_eq!(as_.mmap(c, low, P, RW, fixed, None), Ok(low));
    c.store_u64(&as_, low, 2).unwrap();
    let stack_top = as_.vmas().last().unwrap().1;
    let mut held = take_all_pages(&m);
    assert!(!held.is_empty());

    // New VMAs come from what the caches still hold, then mmap fails.
    let mut made = Vec::new();
    let err = loop {
        let prot = if made.len() % 2 == 0 {
            RW
        } else {
            ProtFlags::READ
        };
        match as_.mmap(&mut m.cpus[0], VirtAddr(0), P, prot, ANON, None) {
            Ok(a) => made.push(a),
            Err(e) => break e,
        }
        assert!(
            made.len() < 10_000,
            "the vm_area_struct cache never ran out"
        );
    };
    assert_eq!(err, Errno::Enomem);
    assert!(!made.is_empty(), "the process's slab had room");
    check(&as_, &mut m);
    let full = live(&m);
    let vmas = as_.vmas();

    // Splits need a vm_area_struct: a hole punch and a protection change in the middle fail,
    // leaving the tree as it was.
    let hole = VirtAddr(big + 2 * P);
    assert_eq!(as_.munmap(&mut m.cpus[0], hole, P), Err(Errno::Enomem));
    assert_eq!(
        as_.mprotect(&mut m.cpus[0], hole, P, ProtFlags::READ),
        Err(Errno::Enomem)
    );
    assert_eq!(as_.vmas(), vmas);
    assert_eq!(live(&m), full);
    check(&as_, &mut m);

    // With one vm_area_struct to spare, the first of two splits succeeds and the second
    // fails: the first is merged back.
    as_.munmap(&mut m.cpus[0], made.pop().unwrap(), P).unwrap();
    let (vmas, full) = (as_.vmas(), live(&m));
    assert_eq!(
        as_.mprotect(&mut m.cpus[0], hole, P, ProtFlags::READ),
        Err(Errno::Enomem)
    );
    assert_eq!(as_.vmas(), vmas);
    assert_eq!(live(&m), full);
    assert_eq!(as_.munmap(&mut m.cpus[0], hole, P), Err(Errno::Enomem));
    assert_eq!(as_.vmas(), vmas);
    assert_eq!(live(&m), full);
    check(&as_, &mut m);

    // Fork, with a page for the child's page-table root: its mm_struct comes from the cached
    // slab, and so does the anon_vma for its copy of `low`, but that copy's vm_area_struct
    // cannot. Everything the fork allocated goes back.
    let slab = m.sys.slab().unwrap().clone();
    // The one vm_area_struct left (the failed splits gave theirs back).
    let hoarded_vma = slab
        .cpu(CpuId(0))
        .alloc(slab.std_cache(StdCache::VmAreaStruct), Gfp::GFP_KERNEL)
        .unwrap();
    m.sys.buddy().free(CpuId(0), held.pop().unwrap());
    let full = live(&m);
    assert_eq!(as_.fork(&mut m.cpus[0], Pid(2)).err(), Some(Errno::Enomem));
    assert_eq!(live(&m), full, "the failed fork freed what it allocated");
    assert_eq!(as_.vmas(), vmas);
    check(&as_, &mut m);
    held.extend(take_all_pages(&m));

    // A write fault in a VMA without an anon_vma (the stack): without an anon_vma object, or
    // with one but no anon_vma_chain for it, the fault is OOM and the VMA stays without one.
    let fresh = VirtAddr(stack_top.0 - 8);
    let hoard = |c: StdCache| -> Vec<SlabObj> {
        let pin = slab.cpu(CpuId(0));
        std::iter::from_fn(|| pin.alloc(slab.std_cache(c), Gfp::GFP_KERNEL).ok()).collect()
    };
    let give_back = |c: StdCache, objs: Vec<SlabObj>| {
        let pin = slab.cpu(CpuId(0));
        for o in objs {
            pin.free(slab.std_cache(c), o);
        }
    };
    for short in [StdCache::AnonVma, StdCache::AnonVmaChain] {
        let hoarded = hoard(short);
        let full = live(&m);
        assert!(
            matches!(
                m.cpus[0].store_u64(&as_, fresh, 1),
                Err(AccessError::Oom { .. })
            ),
            "no {short:?} left"
        );
        assert_eq!(live(&m), full, "what the fault allocated went back");
        let st = as_.state.read_nocpu();
        assert!(st.vmas.lookup(fresh.0).unwrap().anon_vma.is_none());
        drop(st);
        check(&as_, &mut m);
        give_back(short, hoarded);
    }
    give_back(StdCache::VmAreaStruct, vec![hoarded_vma]);

    // With memory back, the same calls work.
    for f in held {
        m.sys.buddy().free(CpuId(0), f);
    }
    as_.munmap(&mut m.cpus[0], hole, P).unwrap();
    m.cpus[0].store_u64(&as_, fresh, 1).unwrap();
    let child = as_.fork(&mut m.cpus[0], Pid(2)).unwrap();
    check(&child, &mut m);
    assert_eq!(m.cpus[0].load_u64(&child, low), Ok(2));
    child.exit(&mut m.cpus[0]);
    as_.exit(&mut m.cpus[0]);
    assert_eq!(live(&m), base);
    drop(as_);
    drop(child);
    m.cpus[0].mmu().leave_mm();
    assert_eq!(free_pages(&m.sys), free0);
}
