//! Loom models of the allocator's cross-CPU protocols, run on the real code through `mm-sync`
//! (`cargo xtask loom mm-buddy`). Each model boots a one-zone machine of 1024 pages and runs
//! two threads.

use super::*;
use mm_sync::sync::Arc;
use mm_sync::thread;

fn machine() -> Arc<Buddy> {
    let cfg = BuddyConfig::single_zone(2, ZoneId::Dma32, Pfn(4096), 1024);
    Arc::new(Buddy::new(Arc::new(PhysMem::new(Pfn(4096 + 1024))), &cfg).unwrap())
}

fn order(n: u32) -> Order {
    Order::new(n).unwrap()
}

/// Asserts the machine is back to one free MAX_ORDER block with nothing on any pcp list.
fn assert_fully_merged(b: &Buddy) {
    b.check_invariants().unwrap();
    let z = b.zone_info(ZoneId::Dma32);
    assert_eq!(z.nr_free_pages, 1024);
    assert_eq!(
        z.free_blocks,
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        "not merged exactly once"
    );
}

/// (a) Two CPUs free the two halves of a buddy pair at once: the halves merge exactly once,
/// all the way back to the MAX_ORDER block, whichever free runs first.
#[test]
fn loom_buddy_pair_merges_once() {
    mm_sync::model(|| {
        let b = machine();
        let a = b.alloc(CpuId(0), order(4), Gfp::GFP_KERNEL).unwrap();
        let c = b.alloc(CpuId(1), order(4), Gfp::GFP_KERNEL).unwrap();
        assert_eq!(
            a.pfn().buddy(order(4)),
            c.pfn(),
            "the two allocations are buddies"
        );
        let b1 = b.clone();
        let t = thread::spawn(move || b1.free(CpuId(1), c));
        b.free(CpuId(0), a);
        t.join().unwrap();
        assert_fully_merged(&b);
    });
}

/// (b) pcp allocations and frees on one CPU, both per-operation and under a held pcp lock,
/// race a remote `drain_all_pages`: no page is lost or handed out twice.
#[test]
fn loom_pcp_alloc_free_vs_remote_drain() {
    mm_sync::model(|| {
        let b = machine();
        let b1 = b.clone();
        let cpu = thread::spawn(move || {
            let f1 = b1.alloc(CpuId(0), Order::ZERO, Gfp::GFP_KERNEL).unwrap();
            let f2 = b1.alloc(CpuId(0), Order::ZERO, Gfp::GFP_KERNEL).unwrap();
            assert_ne!(f1.pfn(), f2.pfn(), "one page handed out twice");
            b1.free(CpuId(0), f1);
            let mut held = b1.lock_cpu(CpuId(0));
            let f3 = held.alloc(Order::ZERO, Gfp::GFP_KERNEL).unwrap();
            assert_ne!(f3.pfn(), f2.pfn(), "one page handed out twice");
            held.free(f2);
            held.relax();
            held.free(f3);
        });
        b.drain_all_pages(None);
        cpu.join().unwrap();
        b.drain_all_pages(None);
        assert_fully_merged(&b);
    });
}

/// A page of the first pageblock, allocated and then freed by the "freer" CPU while the
/// "offliner" isolates that pageblock.
fn page_in_first_block(b: &Buddy) -> Frame {
    let f = b.alloc(CpuId(0), Order::ZERO, Gfp::GFP_KERNEL).unwrap();
    assert!(f.pfn().0 < 4096 + 512);
    b.drain_all_pages(None);
    f
}

/// The checks after both threads joined: no page of the isolated block escaped to a pcp list
/// or a normal free list (`concurrency-races.md` B1).
fn assert_nothing_escaped(b: &Buddy) {
    let r = b.isolation_report(Pfn(4096), Pfn(4096 + 512));
    assert_eq!(
        r.on_pcp, 0,
        "a page of the isolated pageblock escaped to a pcp list"
    );
    assert_eq!(
        r.on_other_free_list, 0,
        "a page of the isolated pageblock is on a normal list"
    );
    assert_eq!(
        r.isolated_free, 512,
        "every page of the block is isolated and free"
    );
}

/// B1, historical (pre-v5.11) order: isolate the pageblock, then drain the pcp lists. A free
/// that read the pageblock type before the isolation and reaches its pcp list after the drain
/// leaves the page on the pcp list: loom must find that interleaving.
#[test]
fn race_b1_isolate_then_drain_is_caught() {
    let caught = std::panic::catch_unwind(|| {
        mm_sync::model(|| {
            let b = machine();
            let f = page_in_first_block(&b);
            let b1 = b.clone();
            let freer = thread::spawn(move || b1.free(CpuId(0), f));
            b.isolate_pageblocks(Pfn(4096), Pfn(4096 + 512)).unwrap();
            b.drain_all_pages(Some(ZoneId::Dma32));
            freer.join().unwrap();
            assert_nothing_escaped(&b);
        })
    });
    let payload = caught.expect_err("loom missed the historical pcp-vs-isolation race");
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        msg.contains("escaped to a pcp list"),
        "caught for another reason: {msg}"
    );
}

/// B1 with the upstream fix (ec6e8c7e0314), which `Buddy::offline_isolate` implements:
/// disable the zone's pcp lists (high = 0, drain all), then isolate. No interleaving lets the
/// page escape.
#[test]
fn race_b1_pcp_disable_then_isolate_passes() {
    mm_sync::model(|| {
        let b = machine();
        let f = page_in_first_block(&b);
        let b1 = b.clone();
        let freer = thread::spawn(move || b1.free(CpuId(0), f));
        let disabled = b.offline_isolate(Pfn(4096), Pfn(4096 + 512)).unwrap();
        freer.join().unwrap();
        assert_nothing_escaped(&b);
        drop(disabled);
    });
}
