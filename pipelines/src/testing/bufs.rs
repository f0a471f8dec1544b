//! The contract every packet buffer pool keeps (the heap pool here, the
//! DPDK mbuf pool in the appliance): one set of checks that each pool's
//! tests run, instead of a mirrored copy per pool.

use crate::packet::buf::{HeapBuf, HeapPool, PacketBuf, DATA_ROOM, HEADROOM};

/// A pool under test: allocation, allocation with a frame, the count of
/// buffers out.
pub trait PoolUnderTest {
    type Buf: PacketBuf;
    fn alloc(&self) -> Option<Self::Buf>;
    fn alloc_with(&self, frame: &[u8]) -> Option<Self::Buf>;
    fn in_use(&self) -> usize;
}

impl PoolUnderTest for &'static HeapPool {
    type Buf = HeapBuf;
    fn alloc(&self) -> Option<HeapBuf> {
        crate::packet::buf::BufPool::alloc(self)
    }
    fn alloc_with(&self, frame: &[u8]) -> Option<HeapBuf> {
        HeapPool::alloc_with(self, frame)
    }
    fn in_use(&self) -> usize {
        HeapPool::in_use(self)
    }
}

/// `pool` holds two buffers: a third allocation fails, a freed buffer
/// returns to it, a buffer clones while the pool has room and not after.
pub fn check_pool_is_bounded_and_recycles<P: PoolUnderTest>(pool: &P) {
    let a = pool.alloc_with(&[1, 2, 3]).unwrap();
    let b = pool.alloc().unwrap();
    assert!(pool.alloc().is_none(), "third buffer from a pool of two");
    assert_eq!(pool.in_use(), 2);
    drop(b);
    assert_eq!(pool.in_use(), 1);
    let c = a.try_clone().unwrap();
    assert_eq!(c.data(), &[1, 2, 3]);
    assert!(a.try_clone().is_none());
}

/// `pool` holds one buffer: prepend, adj and set_len stay inside the
/// headroom and data room; a frame larger than the data room is refused.
pub fn check_prepend_adj_set_len_respect_bounds<P: PoolUnderTest>(pool: &P) {
    let mut b = pool.alloc_with(&[9; 60]).unwrap();
    assert!(b.prepend(4));
    assert_eq!(b.data().len(), 64);
    assert!(!b.prepend(HEADROOM));
    assert!(b.adj(4));
    assert!(!b.adj(61));
    assert!(b.set_len(10));
    assert_eq!(b.data(), &[9; 10]);
    assert!(!b.set_len(HEADROOM + DATA_ROOM));
    drop(b);
    assert!(pool.alloc_with(&[0; DATA_ROOM + 1]).is_none());
    assert!(pool.alloc_with(&[0; DATA_ROOM]).is_some());
}
