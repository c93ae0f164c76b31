//! B4, Dirty COW, CVE-2016-5195 (concurrency-races.md): a forced write (`/proc/PID/mem`,
//! ptrace) to a read-only private file mapping breaks COW, then retries the lookup; if
//! MADV_DONTNEED zaps the private copy in between and the retry no longer asks for write
//! access, a read fault maps the file's page and the write goes into the page cache.
//! The real code keeps asking for write access and follows a read-only entry only to an
//! anonymous page this mapping alone maps (FOLL_COW, 19be0eaffa3a); COW decisions and the
//! entry change happen under the page-table lock, and the zap takes the same lock.

#[cfg(not(debug_assertions))]
compile_error!("run the loom models with -C debug-assertions (cargo xtask loom)");

use super::fixture::{process, TestFile};
use super::loom_common::{failure, loom_machine};
use crate::mm::Regressions;
use crate::{MapFlags, ProtFlags, VmFileRef};
use mm_sync::sync::Arc;
use mm_sync::thread;
use mm_types::VirtAddr;

const P: u64 = 4096;
const FILE: u64 = 0xf11e_f11e_f11e_f11e;
const EVIL: u64 = 0xbad0_bad0_bad0_bad0;

/// CPU 0 writes the read-only mapping through GUP with FOLL_FORCE; CPU 1 (the main thread)
/// runs MADV_DONTNEED on it.
fn model(regress: Regressions) {
    let mut m = loom_machine();
    let file = TestFile::new(&m.sys, 0xf11e, 2, false, |_| FILE);
    let fref = VmFileRef::new(file.clone());
    let mut as_ = process(&mut m, 1);
    as_.regress = regress;
    let a = {
        let c = &mut m.cpus[0];
        let a = as_
            .mmap(
                c,
                VirtAddr(0),
                2 * P,
                ProtFlags::READ,
                MapFlags::PRIVATE,
                Some((&fref, 0)),
            )
            .unwrap();
        // Map the file page, and give the VMA its anon_vma with a forced write to the other page.
        let mut buf = [0u8; 8];
        as_.read_remote(c, a, &mut buf, false).unwrap();
        assert_eq!(u64::from_le_bytes(buf), FILE);
        as_.write_remote(c, VirtAddr(a.0 + P), &[1; 8], true)
            .unwrap();
        a
    };
    let as_ = Arc::new(as_);
    let mut c1 = m.cpus.pop().unwrap();
    let mut c0 = m.cpus.pop().unwrap();
    let as0 = as_.clone();
    let t = thread::spawn(move || {
        assert_eq!(
            as0.write_remote(&mut c0, a, &EVIL.to_le_bytes(), true),
            Ok(8)
        );
        c0
    });
    as_.madvise(&mut c1, a, P, 4).unwrap();
    let mut c0 = t.join().unwrap();
    let mem = m.sys.buddy().mem().clone();
    assert_eq!(
        mem.read_u64(file.pfn(0).phys()),
        Ok(FILE),
        "Dirty COW (CVE-2016-5195): a forced write through a read-only private mapping reached \
         the file's page-cache page"
    );
    let mut buf = [0u8; 8];
    as_.read_remote(&mut c0, a, &mut buf, false).unwrap();
    let seen = u64::from_le_bytes(buf);
    assert!(seen == EVIL || seen == FILE, "the mapping reads {seen:#x}");
    as_.exit(&mut c0);
    drop(as_);
    file.evict();
}

#[test]
fn race_b4_real_code_never_writes_the_file() {
    mm_sync::model(|| model(Regressions::default()));
}

#[test]
fn race_b4_historical_is_caught() {
    let msg = failure(|| {
        model(Regressions {
            gup_drops_foll_write_after_cow: true,
            ..Regressions::default()
        })
    })
    .expect("loom finds the interleaving that writes the file");
    assert!(msg.contains("CVE-2016-5195"), "{msg}");
}

/// CPU 0 writes a COW-shared anonymous page (the fault copies it); CPU 1 (the main thread)
/// runs MADV_DONTNEED on it meanwhile. Whatever the order, DONTNEED's effect must stick: the
/// word nobody rewrites reads zero afterwards, never the data DONTNEED threw away.
fn cow_model(regress: Regressions) {
    const OLD: u64 = 0x01d0_01d0;
    let mut m = loom_machine();
    let mut as_ = process(&mut m, 1);
    as_.regress = regress;
    let (a, child) = {
        let c = &mut m.cpus[0];
        let a = as_
            .mmap(
                c,
                VirtAddr(0),
                P,
                ProtFlags::RW,
                MapFlags::PRIVATE | MapFlags::ANONYMOUS,
                None,
            )
            .unwrap();
        c.store_u64(&as_, VirtAddr(a.0 + 8), OLD).unwrap();
        let child = as_.fork(c, mm_types::Pid(2)).unwrap();
        c.mmu().leave_mm();
        (a, child)
    };
    let as_ = Arc::new(as_);
    let mut c1 = m.cpus.pop().unwrap();
    let mut c0 = m.cpus.pop().unwrap();
    c0.enter(&as_);
    let done = Arc::new(mm_sync::sync::atomic::AtomicBool::new(false));
    let (as0, done0) = (as_.clone(), done.clone());
    let t = thread::spawn(move || {
        c0.store_u64(&as0, a, 7).unwrap();
        // Stay in the cpumask acknowledging shootdowns until DONTNEED is done.
        c0.mmu().spin_until(|| {
            done0
                .load(mm_sync::sync::atomic::Ordering::Acquire)
                .then_some(())
        });
        c0
    });
    as_.madvise(&mut c1, a, P, 4).unwrap();
    done.store(true, mm_sync::sync::atomic::Ordering::Release);
    let mut c0 = t.join().unwrap();
    assert_eq!(
        c0.load_u64(&as_, VirtAddr(a.0 + 8)),
        Ok(0),
        "a COW fault that did not re-check the entry (pte_same) under the page-table lock \
         resurrected data MADV_DONTNEED had discarded (Dirty COW's check-then-act, CVE-2016-5195)"
    );
    let first = c0.load_u64(&as_, a).unwrap();
    assert!(first == 0 || first == 7, "{first:#x}");
    as_.exit(&mut c0);
    c0.mmu().leave_mm();
    child.exit(&mut c0);
}

#[test]
fn race_b4_cow_fault_vs_dontneed_rechecks_the_entry() {
    mm_sync::model(|| cow_model(Regressions::default()));
}

#[test]
fn race_b4_cow_without_recheck_is_caught() {
    let msg = failure(|| {
        cow_model(Regressions {
            cow_skips_pte_same_recheck: true,
            ..Regressions::default()
        })
    })
    .expect("loom finds the interleaving that resurrects the data");
    assert!(msg.contains("pte_same"), "{msg}");
}
