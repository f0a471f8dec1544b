use std::alloc::{GlobalAlloc, Layout};
use std::sync::Mutex;

use super::smaps::{anon_huge_bytes, parse_thp};
use super::*;

/// The mode is process-wide: tests that allocate take turns.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn ours(p: *mut u8) -> Option<usize> {
    regions()
        .into_iter()
        .find(|&(a, _)| a == p as usize)
        .map(|r| r.1)
}

/// Whether any page of `addr..addr+len` is still mapped (mincore fails
/// with ENOMEM on an unmapped range).
fn mapped(addr: usize, len: usize) -> bool {
    let mut vec = vec![0u8; len.div_ceil(4096)];
    // SAFETY: mincore only reads the page tables; `vec` has one byte per
    // base page of the range.
    unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr()) == 0 }
}

#[test]
fn large_blocks_get_an_aligned_registered_mapping_that_free_unmaps() {
    let _t = turn();
    set_mode(HugePages::Auto);
    let a = HugeAlloc;
    let layout = Layout::from_size_align(3 * HUGE_PAGE + 5, 8).unwrap();
    // SAFETY: non-zero size; freed below with the same layout.
    let p = unsafe { a.alloc(layout) };
    assert!(!p.is_null());
    assert_eq!(p as usize % HUGE_PAGE, 0, "2 MiB-aligned");
    assert_eq!(
        ours(p),
        Some(4 * HUGE_PAGE),
        "rounded up to whole huge pages"
    );
    // SAFETY: the block is `layout.size()` bytes long.
    unsafe {
        p.write_bytes(0xab, layout.size());
        assert_eq!(*p.add(layout.size() - 1), 0xab);
    }
    assert!(mapped(p as usize, 4 * HUGE_PAGE));
    // SAFETY: allocated above with this layout.
    unsafe { a.dealloc(p, layout) };
    assert_eq!(ours(p), None, "unregistered");
    assert!(!mapped(p as usize, 4 * HUGE_PAGE), "returned to the kernel");
}

#[test]
fn alignment_above_2_mib_is_honoured_and_zeroed_blocks_read_zero() {
    let _t = turn();
    set_mode(HugePages::Auto);
    let a = HugeAlloc;
    let layout = Layout::from_size_align(HUGE_PAGE, 8 * HUGE_PAGE).unwrap();
    // SAFETY: non-zero size; freed below.
    let p = unsafe { a.alloc_zeroed(layout) };
    assert_eq!(p as usize % (8 * HUGE_PAGE), 0);
    assert!(ours(p).is_some());
    // SAFETY: the block is `HUGE_PAGE` bytes long.
    let s = unsafe { std::slice::from_raw_parts(p, HUGE_PAGE) };
    assert!(s.iter().all(|&b| b == 0));
    // SAFETY: allocated above with this layout.
    unsafe { a.dealloc(p, layout) };
    assert_eq!(ours(p), None);
}

#[test]
fn small_blocks_go_to_the_system_allocator() {
    let _t = turn();
    set_mode(HugePages::Auto);
    let a = HugeAlloc;
    let before = regions().len();
    let layout = Layout::from_size_align(HUGE_PAGE - 1, 64).unwrap();
    // SAFETY: non-zero size; freed below.
    let p = unsafe { a.alloc(layout) };
    assert!(!p.is_null());
    assert_eq!(p as usize % 64, 0);
    assert_eq!(ours(p), None);
    assert_eq!(regions().len(), before);
    // SAFETY: allocated above with this layout.
    unsafe { a.dealloc(p, layout) };
}

#[test]
fn realloc_moves_between_allocators_by_size_and_keeps_the_contents() {
    let _t = turn();
    set_mode(HugePages::Auto);
    let a = HugeAlloc;
    let small = Layout::from_size_align(4096, 8).unwrap();
    // SAFETY: every pointer is used with the layout it has at that point;
    // sizes are non-zero; contents are checked within each block's length.
    unsafe {
        let p = a.alloc(small);
        p.write_bytes(7, 4096);
        // Small to large: a mapping of ours, contents copied.
        let q = a.realloc(p, small, 5 * HUGE_PAGE);
        assert_eq!(ours(q), Some(5 * HUGE_PAGE));
        assert!(std::slice::from_raw_parts(q, 4096).iter().all(|&b| b == 7));
        q.add(5 * HUGE_PAGE - 1).write(9);
        // Large to smaller but still large: in place, the tail unmapped.
        let l5 = Layout::from_size_align(5 * HUGE_PAGE, 8).unwrap();
        let r = a.realloc(q, l5, 2 * HUGE_PAGE + 1);
        assert_eq!(r, q, "shrunk in place");
        assert_eq!(ours(r), Some(3 * HUGE_PAGE));
        assert!(!mapped(r as usize + 3 * HUGE_PAGE, 2 * HUGE_PAGE));
        // Large to larger: a new mapping, the old one gone.
        let l2 = Layout::from_size_align(2 * HUGE_PAGE + 1, 8).unwrap();
        let s = a.realloc(r, l2, 6 * HUGE_PAGE);
        assert_eq!(ours(s), Some(6 * HUGE_PAGE));
        assert!(std::slice::from_raw_parts(s, 4096).iter().all(|&b| b == 7));
        if s != r {
            assert_eq!(ours(r), None);
        }
        // Large to small: back to the system allocator.
        let l6 = Layout::from_size_align(6 * HUGE_PAGE, 8).unwrap();
        let t = a.realloc(s, l6, 100);
        assert_eq!(ours(s), None);
        assert_eq!(ours(t), None);
        assert!(std::slice::from_raw_parts(t, 100).iter().all(|&b| b == 7));
        a.dealloc(t, Layout::from_size_align(100, 8).unwrap());
    }
}

#[test]
fn frees_find_their_allocator_whatever_the_mode_is_then() {
    let _t = turn();
    let a = HugeAlloc;
    let layout = Layout::from_size_align(4 * HUGE_PAGE, 8).unwrap();
    // SAFETY: non-zero sizes; each block freed once with its layout.
    unsafe {
        set_mode(HugePages::Off);
        let sys = a.alloc(layout);
        assert_eq!(ours(sys), None, "off: the system allocator");
        set_mode(HugePages::Auto);
        let huge = a.alloc(layout);
        assert!(ours(huge).is_some());
        // Freed under the other mode: each still goes where it came from.
        a.dealloc(sys, layout);
        set_mode(HugePages::Off);
        a.dealloc(huge, layout);
        assert_eq!(ours(huge), None);
        assert!(!mapped(huge as usize, 4 * HUGE_PAGE));
    }
    set_mode(HugePages::Auto);
}

#[test]
fn a_vec_through_the_allocator_is_counted_in_the_stats() {
    let _t = turn();
    set_mode(HugePages::Auto);
    let a = HugeAlloc;
    let layout = Layout::from_size_align(8 * HUGE_PAGE, 64).unwrap();
    // SAFETY: non-zero size; touched within its length; freed below.
    unsafe {
        let p = a.alloc(layout);
        p.write_bytes(1, layout.size());
        let s = MemoryStats::now();
        assert_eq!(s.huge_pages, "auto");
        assert!(s.large_regions >= 1);
        assert!(s.large_bytes >= 8 * HUGE_PAGE as u64);
        assert!(s.table_bytes_huge <= s.large_bytes);
        // A test binary's global allocator is the system's.
        assert!(!s.huge_allocator);
        assert!(s.summary().contains("THP"), "{}", s.summary());
        a.dealloc(p, layout);
    }
}

#[test]
fn smaps_anon_huge_pages_are_summed_over_our_regions_only() {
    let smaps = "\
7f0000000000-7f0000800000 rw-p 00000000 00:00 0
Size:               8192 kB
AnonHugePages:      6144 kB
7f0000800000-7f0000a00000 rw-p 00000000 00:00 0
AnonHugePages:      2048 kB
55d000000000-55d000021000 r--p 00000000 fd:00 123    /usr/bin/appliance
AnonHugePages:         0 kB
";
    let regions = [(0x7f00_0000_0000, 0x40_0000), (0x7f00_0040_0000, 0x40_0000)];
    assert_eq!(anon_huge_bytes(smaps, &regions), 6144 * 1024);
    assert_eq!(anon_huge_bytes(smaps, &[]), 0);
    assert_eq!(
        parse_thp("always [madvise] never\n").as_deref(),
        Some("madvise")
    );
    assert_eq!(parse_thp("garbage"), None);
}
