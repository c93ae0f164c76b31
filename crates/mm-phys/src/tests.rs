use super::*;
use mm_types::{Pfn, PhysAddr, PAGE_SIZE};
use proptest::prelude::*;

#[test]
fn descriptor_fits_one_cache_line() {
    assert_eq!(std::mem::size_of::<Page>(), 64);
    assert_eq!(std::mem::align_of::<Page>(), 64);
}

fn host_rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * PAGE_SIZE as u64
}

#[test]
fn untouched_ram_reserves_nothing_and_reads_zero() {
    let before = host_rss_bytes();
    let mem = PhysMem::new(Pfn(1 << 28)); // 1 TiB
    assert_eq!(mem.read_u64(PhysAddr(0x10_0000_0000)).unwrap(), 0);
    mem.write_u64(PhysAddr(0x80_0000_0000), 7).unwrap();
    mem.page(Pfn(1 << 27)).set_refcount(1);
    // Other tests run in parallel in this process, so allow them some growth.
    assert!(
        host_rss_bytes() < before + (64 << 20),
        "a 1 TiB machine costs almost nothing"
    );
    assert!(matches!(
        mem.read_u64(Pfn(1 << 28).phys()),
        Err(PhysError::NoSuchFrame { .. })
    ));
}

#[test]
fn unaligned_and_cross_frame_accesses_round_trip() {
    let mem = PhysMem::new(Pfn(4));
    let a = PhysAddr(PAGE_SIZE as u64 - 3);
    mem.write_u64(a, 0x1122_3344_5566_7788).unwrap();
    assert_eq!(mem.read_u64(a).unwrap(), 0x1122_3344_5566_7788);
    assert_eq!(mem.read_u8(PhysAddr(PAGE_SIZE as u64)).unwrap(), 0x55);
    mem.write_u32(PhysAddr(5), 0xdead_beef).unwrap();
    assert_eq!(mem.read_u32(PhysAddr(5)).unwrap(), 0xdead_beef);
    assert!(matches!(
        mem.write(PhysAddr(4 * PAGE_SIZE as u64 - 2), &[1, 2, 3]),
        Err(PhysError::OutOfRange { .. })
    ));
}

#[test]
fn aligned_word_access_stops_at_the_end_of_ram() {
    let mem = PhysMem::new(Pfn(2));
    let last = PhysAddr(2 * PAGE_SIZE as u64 - 8);
    assert!(mem.store_aligned_u64(last, 0xfeed));
    assert_eq!(mem.load_aligned_u64(last), Some(0xfeed));
    assert_eq!(mem.read_u64(last).unwrap(), 0xfeed);
    mem.write_u64(PhysAddr(PAGE_SIZE as u64), 9).unwrap();
    assert_eq!(mem.load_aligned_u64(PhysAddr(PAGE_SIZE as u64)), Some(9));
    let past = Pfn(2).phys();
    assert_eq!(mem.load_aligned_u64(past), None);
    assert!(!mem.store_aligned_u64(past, 1));
    assert_eq!(mem.load_aligned_u64(PhysAddr(!7)), None);
}

#[test]
fn concurrent_byte_stores_to_one_word_are_not_lost() {
    let mem = mm_sync::sync::Arc::new(PhysMem::new(Pfn(1)));
    let threads: Vec<_> = (0..8u8)
        .map(|i| {
            let mem = mem.clone();
            mm_sync::thread::spawn(move || {
                for round in 0..2000u32 {
                    mem.write_u8(PhysAddr(i as u64), (round as u8) ^ i).unwrap();
                }
                mem.write_u8(PhysAddr(i as u64), 0xa0 + i).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        mem.read_u64(PhysAddr(0)).unwrap(),
        u64::from_le_bytes([0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7])
    );
}

#[test]
fn zero_and_copy_frame() {
    let mem = PhysMem::new(Pfn(3));
    mem.write(Pfn(1).phys(), &[7u8; PAGE_SIZE]).unwrap();
    mem.copy_frame(Pfn(2), Pfn(1)).unwrap();
    let mut buf = vec![0u8; PAGE_SIZE];
    mem.read(Pfn(2).phys(), &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 7));
    mem.zero_frame(Pfn(1)).unwrap();
    mem.read(Pfn(1).phys(), &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
}

#[test]
fn page_list_links_and_unlinks() {
    let mem = PhysMem::new(Pfn(16));
    let mut l = PageList::new();
    for p in [3, 5, 7] {
        l.push_back(&mem, Pfn(p));
    }
    l.push_front(&mem, Pfn(1));
    assert_eq!(
        l.iter(&mem).collect::<Vec<_>>(),
        [Pfn(1), Pfn(3), Pfn(5), Pfn(7)]
    );
    l.remove(&mem, Pfn(5));
    assert_eq!(l.pop_back(&mem), Some(Pfn(7)));
    assert_eq!(l.pop_front(&mem), Some(Pfn(1)));
    let mut other = PageList::new();
    other.push_back(&mem, Pfn(9));
    other.push_back(&mem, Pfn(10));
    l.splice_front(&mem, &mut other);
    assert!(other.is_empty());
    assert_eq!(l.iter(&mem).collect::<Vec<_>>(), [Pfn(9), Pfn(10), Pfn(3)]);
    assert_eq!(l.len(), 3);
}

#[test]
fn refcount_follows_get_put_semantics() {
    let mem = PhysMem::new(Pfn(1));
    let p = mem.page(Pfn(0));
    assert!(!p.get_unless_zero());
    p.set_refcount(1);
    assert!(p.get_unless_zero());
    assert!(!p.put_testzero());
    assert!(p.put_testzero());
    p.set(PageFlags::DIRTY | PageFlags::LRU);
    p.clear(PageFlags::LRU);
    assert_eq!(p.flags(), PageFlags::DIRTY);
}

proptest! {
    #[test]
    fn writes_read_back_like_a_byte_array(ops in proptest::collection::vec((0u64..3 * 4096 - 16, proptest::collection::vec(any::<u8>(), 1..16)), 1..64)) {
        let mem = PhysMem::new(Pfn(3));
        let mut model = vec![0u8; 3 * 4096];
        for (addr, bytes) in &ops {
            mem.write(PhysAddr(*addr), bytes).unwrap();
            model[*addr as usize..*addr as usize + bytes.len()].copy_from_slice(bytes);
        }
        let mut out = vec![0u8; 3 * 4096];
        mem.read(PhysAddr(0), &mut out).unwrap();
        prop_assert_eq!(out, model);
    }
}
