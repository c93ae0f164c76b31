//! Random syscall and access sequences against a reference model of an address space:
//! page -> (protection, locked, contents). Every load returns what the model holds, every
//! syscall returns what the model says, the address space keeps its invariants, and after
//! exit no frame is left allocated.
//!
//! The model is page-granular. VMA boundaries matter to one answer only, mremap's EFAULT for
//! a range that crosses VMAs; for it the model reads the VMA around the address from the
//! implementation (whose tree `check_invariants` verifies: ordered, non-overlapping, merged).

use super::fixture::{free_pages, machine, process};
use crate::{AccessError, AddressSpace, MapFlags, MremapFlags, ProtFlags, SegvCode, Signal};
use mm_types::{Errno, VirtAddr};
use proptest::prelude::*;
use std::collections::BTreeMap;

const P: u64 = 4096;
const ARENA: u64 = 0x3000_0000;
const SLOTS: usize = 40;

#[derive(Clone, Copy, Debug)]
enum Slot {
    Arena(usize),
    Top(usize),
    Heap(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Mmap {
        pages: u64,
        prot: u8,
        fixed: Option<usize>,
        noreplace: bool,
        populate: bool,
    },
    Munmap {
        at: Slot,
        pages: u64,
    },
    Mprotect {
        at: Slot,
        pages: u64,
        prot: u8,
    },
    Mremap {
        at: Slot,
        old: u64,
        new: u64,
        maymove: bool,
        fixed: Option<usize>,
    },
    Brk {
        pages: u64,
        odd: bool,
    },
    Madvise {
        at: Slot,
        pages: u64,
        advice: i32,
    },
    Mlock {
        at: Slot,
        pages: u64,
    },
    Munlock {
        at: Slot,
        pages: u64,
    },
    Load {
        at: Slot,
    },
    Store {
        at: Slot,
        val: u64,
    },
}

fn slot() -> impl Strategy<Value = Slot> {
    prop_oneof![
        (0..SLOTS).prop_map(Slot::Arena),
        (0..SLOTS).prop_map(Slot::Top),
        (0..12usize).prop_map(Slot::Heap),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..6u64, 0..4u8, proptest::option::of(0..SLOTS), any::<bool>(), any::<bool>())
            .prop_map(|(pages, prot, fixed, noreplace, populate)| Op::Mmap { pages, prot, fixed, noreplace, populate }),
        2 => (slot(), 1..8u64).prop_map(|(at, pages)| Op::Munmap { at, pages }),
        2 => (slot(), 1..6u64, 0..4u8).prop_map(|(at, pages, prot)| Op::Mprotect { at, pages, prot }),
        2 => (slot(), 1..6u64, 1..8u64, any::<bool>(), proptest::option::of(0..SLOTS))
            .prop_map(|(at, old, new, maymove, fixed)| Op::Mremap { at, old, new, maymove, fixed }),
        2 => (0..12u64, any::<bool>()).prop_map(|(pages, odd)| Op::Brk { pages, odd }),
        2 => (slot(), 1..6u64, prop_oneof![Just(3), Just(4), Just(8)])
            .prop_map(|(at, pages, advice)| Op::Madvise { at, pages, advice }),
        1 => (slot(), 1..4u64).prop_map(|(at, pages)| Op::Mlock { at, pages }),
        1 => (slot(), 1..6u64).prop_map(|(at, pages)| Op::Munlock { at, pages }),
        6 => slot().prop_map(|at| Op::Load { at }),
        6 => (slot(), 1..u64::MAX).prop_map(|(at, val)| Op::Store { at, val }),
    ]
}

fn prot_of(p: u8) -> ProtFlags {
    match p {
        0 => ProtFlags::NONE,
        1 => ProtFlags::READ,
        2 => ProtFlags::RW,
        _ => ProtFlags::READ | ProtFlags::EXEC,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PageM {
    prot: ProtFlags,
    locked: bool,
    val: u64,
}

/// The reference model: pages, the break.
struct Model {
    pages: BTreeMap<u64, PageM>,
    start_brk: u64,
    brk: u64,
    mmap_base: u64,
}

fn align(v: u64) -> u64 {
    (v + P - 1) & !(P - 1)
}

impl Model {
    fn addr(&self, s: Slot) -> u64 {
        match s {
            Slot::Arena(i) => ARENA + i as u64 * P,
            Slot::Top(i) => self.mmap_base - (i as u64 + 1) * P,
            Slot::Heap(i) => self.start_brk + i as u64 * P,
        }
    }

    fn any_mapped(&self, start: u64, end: u64) -> bool {
        self.pages.range(start..end).next().is_some()
    }

    fn unmap(&mut self, start: u64, end: u64) {
        let keys: Vec<u64> = self.pages.range(start..end).map(|(k, _)| *k).collect();
        for k in keys {
            self.pages.remove(&k);
        }
    }

    fn map(&mut self, start: u64, pages: u64, prot: ProtFlags, locked: bool) {
        for i in 0..pages {
            self.pages.insert(
                start + i * P,
                PageM {
                    prot,
                    locked,
                    val: 0,
                },
            );
        }
    }

    /// get_unmapped_area top-down below mmap_base.
    fn topdown(&self, len: u64) -> u64 {
        let mut end = self.mmap_base;
        loop {
            match self.pages.range(..end).next_back() {
                Some((&p, _)) if p + P > end - len => end = p,
                _ => return end - len,
            }
        }
    }

    fn load(&self, a: u64) -> Result<u64, AccessError> {
        match self.pages.get(&a) {
            None => Err(segv(a, SegvCode::MapErr)),
            Some(p) if p.prot.is_empty() => Err(segv(a, SegvCode::AccErr)),
            Some(p) => Ok(p.val),
        }
    }

    fn store(&mut self, a: u64, v: u64) -> Result<(), AccessError> {
        match self.pages.get_mut(&a) {
            None => Err(segv(a, SegvCode::MapErr)),
            Some(p) if !p.prot.contains(ProtFlags::WRITE) => Err(segv(a, SegvCode::AccErr)),
            Some(p) => {
                p.val = v;
                Ok(())
            }
        }
    }

    /// The model's answer to one syscall; `vma_end` is the end of the VMA containing the
    /// address, as the implementation has it.
    fn syscall(&mut self, op: &Op, vma_end: Option<u64>) -> Result<u64, Errno> {
        match *op {
            Op::Mmap {
                pages,
                prot,
                fixed,
                noreplace,
                ..
            } => {
                let len = pages * P;
                let a = match fixed {
                    Some(i) => {
                        let a = ARENA + i as u64 * P;
                        if noreplace && self.any_mapped(a, a + len) {
                            return Err(Errno::Eexist);
                        }
                        self.unmap(a, a + len);
                        a
                    }
                    None => self.topdown(len),
                };
                self.map(a, pages, prot_of(prot), false);
                Ok(a)
            }
            Op::Munmap { at, pages } => {
                let a = self.addr(at);
                self.unmap(a, a + pages * P);
                Ok(0)
            }
            Op::Mprotect { at, pages, prot } => {
                let a = self.addr(at);
                for i in 0..pages {
                    match self.pages.get_mut(&(a + i * P)) {
                        None => return Err(Errno::Enomem),
                        Some(p) => p.prot = prot_of(prot),
                    }
                }
                Ok(0)
            }
            Op::Mlock { at, pages } | Op::Munlock { at, pages } => {
                let lock = matches!(op, Op::Mlock { .. });
                let a = self.addr(at);
                for i in 0..pages {
                    match self.pages.get_mut(&(a + i * P)) {
                        None => return Err(Errno::Enomem),
                        Some(p) => p.locked = lock,
                    }
                }
                let none = (0..pages).any(|i| self.pages[&(a + i * P)].prot.is_empty());
                if lock && none {
                    return Err(Errno::Enomem);
                }
                Ok(0)
            }
            Op::Madvise { at, pages, advice } => {
                let a = self.addr(at);
                let mut hole = false;
                for i in 0..pages {
                    match self.pages.get_mut(&(a + i * P)) {
                        None => hole = true,
                        Some(p) if advice != 3 && p.locked => return Err(Errno::Einval),
                        Some(p) => {
                            if advice == 4 {
                                p.val = 0;
                            }
                        }
                    }
                }
                if hole {
                    Err(Errno::Enomem)
                } else {
                    Ok(0)
                }
            }
            Op::Brk { pages, odd } => {
                let new = self.start_brk + pages * P + if odd { 0x10 } else { 0 };
                let (newbrk, oldbrk) = (align(new), align(self.brk));
                if newbrk == oldbrk {
                    self.brk = new;
                } else if new <= self.brk {
                    if !self.any_mapped(newbrk, oldbrk) {
                        return Ok(self.brk);
                    }
                    self.unmap(newbrk, oldbrk);
                    self.brk = new;
                } else {
                    if self.any_mapped(oldbrk, newbrk + P) {
                        return Ok(self.brk);
                    }
                    self.map(oldbrk, (newbrk - oldbrk) / P, ProtFlags::RW, false);
                    self.brk = new;
                }
                Ok(self.brk)
            }
            Op::Mremap {
                at,
                old,
                new,
                maymove,
                fixed,
            } => {
                let a = self.addr(at);
                let (mut old_len, new_len) = (old * P, new * P);
                let Some(vend) = vma_end else {
                    return Err(Errno::Efault);
                };
                let pick = |m: &Model| {
                    let p = m.pages[&a];
                    (p.prot, p.locked)
                };
                if let Some(i) = fixed {
                    let dest = ARENA + i as u64 * P;
                    if a + old_len > dest && dest + new_len > a {
                        return Err(Errno::Einval);
                    }
                    let (prot, locked) = pick(self);
                    self.unmap(dest, dest + new_len);
                    let vend = if dest >= a && dest < vend { dest } else { vend };
                    if old_len > new_len {
                        self.unmap(a + new_len, a + old_len);
                        old_len = new_len;
                    }
                    if old_len > vend - a {
                        return Err(Errno::Efault);
                    }
                    self.move_pages(a, old_len, dest, new_len, prot, locked);
                    return Ok(dest);
                }
                if old_len >= new_len {
                    self.unmap(a + new_len, a + old_len);
                    return Ok(a);
                }
                if old_len > vend - a {
                    return Err(Errno::Efault);
                }
                let (prot, locked) = pick(self);
                if old_len == vend - a && !self.any_mapped(a + old_len, a + new_len) {
                    self.map(a + old_len, (new_len - old_len) / P, prot, locked);
                    return Ok(a);
                }
                if !maymove {
                    return Err(Errno::Enomem);
                }
                let dest = self.topdown(new_len);
                self.move_pages(a, old_len, dest, new_len, prot, locked);
                Ok(dest)
            }
            Op::Load { .. } | Op::Store { .. } => unreachable!("not a syscall"),
        }
    }

    fn move_pages(
        &mut self,
        a: u64,
        old_len: u64,
        dest: u64,
        new_len: u64,
        prot: ProtFlags,
        locked: bool,
    ) {
        let moved: Vec<(u64, PageM)> = (0..old_len / P)
            .map(|i| (i, self.pages[&(a + i * P)]))
            .collect();
        self.unmap(a, a + old_len);
        for (i, p) in moved {
            self.pages.insert(dest + i * P, p);
        }
        for i in old_len / P..new_len / P {
            self.pages.insert(
                dest + i * P,
                PageM {
                    prot,
                    locked,
                    val: 0,
                },
            );
        }
    }
}

fn segv(a: u64, code: SegvCode) -> AccessError {
    AccessError::Signal(Signal::Segv {
        addr: VirtAddr(a),
        code,
    })
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut m = machine(1, 4096);
    let free0 = free_pages(&m.sys);
    let as_: AddressSpace = process(&mut m, 1);
    let c = &mut m.cpus[0];
    let mut model = Model {
        pages: BTreeMap::new(),
        start_brk: as_.brk_value().0,
        brk: as_.brk_value().0,
        mmap_base: as_.mmap_base().0,
    };
    let anon = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
    for (n, op) in ops.iter().enumerate() {
        match *op {
            Op::Load { at } => {
                let a = model.addr(at);
                prop_assert_eq!(
                    c.load_u64(&as_, VirtAddr(a)),
                    model.load(a),
                    "op {} {:?}",
                    n,
                    op
                );
            }
            Op::Store { at, val } => {
                let a = model.addr(at);
                prop_assert_eq!(
                    c.store_u64(&as_, VirtAddr(a), val),
                    model.store(a, val),
                    "op {} {:?}",
                    n,
                    op
                );
            }
            _ => {
                let vma_end = match *op {
                    Op::Mremap { at, .. } => {
                        let a = model.addr(at);
                        as_.vmas()
                            .iter()
                            .find(|v| v.0 .0 <= a && a < v.1 .0)
                            .map(|v| v.1 .0)
                    }
                    _ => None,
                };
                let want = model.syscall(op, vma_end);
                let got = match *op {
                    Op::Mmap {
                        pages,
                        prot,
                        fixed,
                        noreplace,
                        populate,
                    } => {
                        let mut f = anon;
                        let mut addr = 0;
                        if let Some(i) = fixed {
                            addr = ARENA + i as u64 * P;
                            f |= if noreplace {
                                MapFlags::FIXED_NOREPLACE
                            } else {
                                MapFlags::FIXED
                            };
                        }
                        if populate {
                            f |= MapFlags::POPULATE;
                        }
                        as_.mmap(c, VirtAddr(addr), pages * P, prot_of(prot), f, None)
                            .map(|a| a.0)
                    }
                    Op::Munmap { at, pages } => as_
                        .munmap(c, VirtAddr(model.addr(at)), pages * P)
                        .map(|()| 0),
                    Op::Mprotect { at, pages, prot } => as_
                        .mprotect(c, VirtAddr(model.addr(at)), pages * P, prot_of(prot))
                        .map(|()| 0),
                    Op::Mlock { at, pages } => as_
                        .mlock(c, VirtAddr(model.addr(at)), pages * P)
                        .map(|()| 0),
                    Op::Munlock { at, pages } => as_
                        .munlock(c, VirtAddr(model.addr(at)), pages * P)
                        .map(|()| 0),
                    Op::Madvise { at, pages, advice } => as_
                        .madvise(c, VirtAddr(model.addr(at)), pages * P, advice)
                        .map(|()| 0),
                    Op::Brk { pages, odd } => {
                        let v = model.start_brk + pages * P + if odd { 0x10 } else { 0 };
                        Ok(as_.brk(c, VirtAddr(v)).0)
                    }
                    Op::Mremap {
                        at,
                        old,
                        new,
                        maymove,
                        fixed,
                    } => {
                        let mut f = MremapFlags::empty();
                        let mut dest = 0;
                        if maymove || fixed.is_some() {
                            f |= MremapFlags::MAYMOVE;
                        }
                        if let Some(i) = fixed {
                            f |= MremapFlags::FIXED;
                            dest = ARENA + i as u64 * P;
                        }
                        as_.mremap(
                            c,
                            VirtAddr(model.addr(at)),
                            old * P,
                            new * P,
                            f,
                            VirtAddr(dest),
                        )
                        .map(|a| a.0)
                    }
                    Op::Load { .. } | Op::Store { .. } => unreachable!(),
                };
                prop_assert_eq!(got, want, "op {} {:?}", n, op);
                if let Err(e) = as_.check_invariants(c) {
                    return Err(TestCaseError::fail(format!("after op {n} {op:?}: {e}")));
                }
            }
        }
    }
    // Every page reads what the model says.
    let pages: Vec<(u64, PageM)> = model.pages.iter().map(|(k, v)| (*k, *v)).collect();
    for (a, p) in pages {
        let want = if p.prot.is_empty() {
            Err(segv(a, SegvCode::AccErr))
        } else {
            Ok(p.val)
        };
        prop_assert_eq!(c.load_u64(&as_, VirtAddr(a)), want);
    }
    let resident = as_.rss().resident();
    prop_assert!(resident <= model.pages.len() as u64);
    as_.exit(c);
    drop(as_);
    c.mmu().leave_mm();
    prop_assert_eq!(
        free_pages(&m.sys),
        free0,
        "frames left allocated after exit"
    );
    prop_assert_eq!(m.sys.committed_pages(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_syscalls_and_accesses_match_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(&ops)?;
    }
}
