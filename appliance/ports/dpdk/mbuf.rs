//! [`Mbuf`]: the appliance's [`PacketBuf`] on a DPDK `rte_mbuf`, zero-copy,
//! its pools ([`MbufPool`]), and the RX/TX queue handles that move mbufs
//! between a port and a [`Burst`].
//!
//! Part of the backend's I/O layer: `unsafe` is allowed here and in `ffi.rs`
//! only, and every block says why it holds.
//!
//! Invariants this module keeps:
//! - An [`Mbuf`] owns exactly one single-segment mbuf (refcount 1, never
//!   shared, never indirect) from a pool made by [`MbufPool::create`], whose
//!   private area holds a [`PacketMeta`] that was written when the mbuf
//!   entered Rust (RX, alloc, clone). Multi-segment mbufs and mbufs whose
//!   private area is too small are dropped at RX and counted.
//! - The frame is `buf_addr + data_off .. + data_len`. `data()` reads the
//!   mbuf header in place (offsets checked at compile time by `shim.c`), so
//!   the stages pay no call per access; the length changes (prepend, adj,
//!   set_len) are those of DPDK's inline `rte_pktmbuf_prepend/adj/append/
//!   trim` on one segment, written on the header in place too.
//! - Headroom and data room equal [`HeapBuf`](pipelines::HeapBuf)'s
//!   (`RTE_PKTMBUF_HEADROOM` = [`HEADROOM`], data room 2048), so the two
//!   buffers accept and refuse the same operations.
#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::ffi::CString;
use std::mem::{align_of, size_of};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use pipelines::packet::buf::{DATA_ROOM, HEADROOM};
use pipelines::{BufPool, Burst, PacketBuf, PacketMeta, BURST_MAX};

use super::ffi::{self, RteMbuf, RteMempool, RunningPort};

/// Bytes of each mbuf's private area: a [`PacketMeta`], rounded up to
/// `RTE_MBUF_PRIV_ALIGN` (8) as `rte_pktmbuf_pool_create` requires.
pub const META_PRIV_SIZE: u16 = {
    let n = size_of::<PacketMeta>().div_ceil(8) * 8;
    assert!(n <= u16::MAX as usize);
    n as u16
};
/// The private area starts right after the 128-byte mbuf header, which is
/// cache-line aligned; DPDK guarantees it is aligned to 8.
const _: () = assert!(align_of::<PacketMeta>() <= 8);
const _: () = assert!(HEADROOM == 128, "RTE_PKTMBUF_HEADROOM (checked in shim.c)");
/// Data room of every mbuf: headroom plus the same frame room as a HeapBuf.
pub(super) const MBUF_DATA_ROOM: u16 = (HEADROOM + DATA_ROOM) as u16;

/// A received or allocated packet in an `rte_mbuf`. Eight bytes wide (the
/// mbuf pointer), like `HeapBuf`; dropping it frees the mbuf to its pool.
#[repr(transparent)]
pub struct Mbuf {
    raw: NonNull<RteMbuf>,
}

// SAFETY: an `Mbuf` is the only handle to its mbuf (module invariant), so
// moving it to another thread moves sole ownership: no other thread can reach
// the mbuf's header, private area or data. Freeing it from any thread is
// sound because mempool put/get are multi-producer/multi-consumer safe; the
// per-lcore mempool cache is only used by threads with their own lcore id
// (EAL lcores and threads registered with `register_thread`), so two threads
// never share a cache.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of an mbuf handed out by DPDK and writes fresh
    /// metadata into its private area.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf that nothing else owns, from a pool whose
    /// private area is at least [`META_PRIV_SIZE`] bytes.
    #[inline]
    unsafe fn adopt(raw: NonNull<RteMbuf>, meta: PacketMeta) -> Mbuf {
        // SAFETY: per this function's contract the private area exists, is
        // ours, and is large and aligned enough for a PacketMeta; `write`
        // does not read the stale bytes (PacketMeta is Copy, nothing to drop).
        unsafe { ptr::write(meta_ptr(raw), meta) };
        Mbuf { raw }
    }

    /// As [`Mbuf::adopt`], copying the metadata from `meta` as one block.
    ///
    /// # Safety
    /// As [`Mbuf::adopt`].
    #[inline]
    unsafe fn adopt_copy(raw: NonNull<RteMbuf>, meta: &PacketMeta) -> Mbuf {
        // SAFETY: as in `adopt`; `meta` is a valid PacketMeta outside the
        // mbuf, so the regions do not overlap.
        unsafe { ptr::copy_nonoverlapping(meta, meta_ptr(raw), 1) };
        Mbuf { raw }
    }

    #[inline]
    fn header(&self) -> &RteMbuf {
        // SAFETY: we own the mbuf (module invariant) and nobody else writes
        // its header while this borrow lives.
        unsafe { self.raw.as_ref() }
    }

    #[inline]
    fn header_mut(&mut self) -> &mut RteMbuf {
        // SAFETY: as `header`, and `&mut self` makes this the only borrow.
        unsafe { self.raw.as_mut() }
    }

    /// The mbuf's offload flags (`ol_flags`): RX results such as checksum
    /// verdicts, or TX offload requests.
    pub fn ol_flags(&self) -> u64 {
        self.header().ol_flags
    }

    /// Sets `ol_flags` (for TX offload requests; the PMD reads them).
    pub fn set_ol_flags(&mut self, flags: u64) {
        self.header_mut().ol_flags = flags;
    }

    /// The packet's length as DPDK's `pkt_len` says (equal to the frame's
    /// length: a single segment).
    pub fn pkt_len(&self) -> u32 {
        self.header().pkt_len
    }

    /// Bytes free in front of the frame.
    pub fn headroom(&self) -> usize {
        usize::from(self.header().data_off)
    }

    /// Bytes free after the frame.
    pub fn tailroom(&self) -> usize {
        let h = self.header();
        usize::from(h.buf_len).saturating_sub(usize::from(h.data_off) + usize::from(h.data_len))
    }

    /// The frame as DPDK's own inline accessors (`rte_pktmbuf_mtod`,
    /// `rte_pktmbuf_data_len`, `rte_pktmbuf_headroom/tailroom`, through the
    /// shim) see it: (data address, data length, headroom, tailroom). Lets
    /// tests check that the in-place reads of [`PacketBuf::data`] agree.
    pub fn dpdk_view(&self) -> (usize, usize, usize, usize) {
        let m = self.raw.as_ptr();
        // SAFETY: `m` is a valid mbuf we own; the accessors only read it.
        unsafe {
            (
                ffi::shim_pktmbuf_mtod(m) as usize,
                usize::from(ffi::shim_pktmbuf_data_len(m)),
                usize::from(ffi::shim_pktmbuf_headroom(m)),
                usize::from(ffi::shim_pktmbuf_tailroom(m)),
            )
        }
    }
}

/// The private area of `m`, where its [`PacketMeta`] lives.
#[inline]
fn meta_ptr(m: NonNull<RteMbuf>) -> *mut PacketMeta {
    // `rte_mbuf_to_priv`: the private area follows the 128-byte header
    // (`size_of::<RteMbuf>()`, checked against DPDK in shim.c). Pointer
    // arithmetic only; nothing is dereferenced here.
    m.as_ptr().wrapping_add(1).cast::<PacketMeta>()
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and give it back exactly once; `self.raw`
        // is not used after this.
        unsafe { ffi::shim_pktmbuf_free(self.raw.as_ptr()) };
    }
}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf")
            .field("len", &self.header().data_len)
            .field("headroom", &self.header().data_off)
            .field("meta", self.meta())
            .finish()
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let h = self.header();
        // SAFETY: a single-segment mbuf's frame is `data_len` bytes at
        // `buf_addr + data_off`, inside its `buf_len`-byte buffer (DPDK
        // invariant, kept by the PMD and by prepend/adj/append/trim). We own
        // the buffer; the slice borrows `self`, so it cannot outlive the mbuf.
        unsafe {
            std::slice::from_raw_parts(
                h.buf_addr.add(usize::from(h.data_off)),
                usize::from(h.data_len),
            )
        }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let h = self.header();
        let (addr, off, len) = (h.buf_addr, usize::from(h.data_off), usize::from(h.data_len));
        // SAFETY: as `data`; `&mut self` makes this the only view of the
        // frame, and the mbuf's refcount is 1 (never cloned by reference).
        unsafe { std::slice::from_raw_parts_mut(addr.add(off), len) }
    }

    #[inline]
    fn meta(&self) -> &PacketMeta {
        // SAFETY: the private area holds a PacketMeta written when the mbuf
        // entered Rust (module invariant); the borrow is tied to `self`.
        unsafe { &*meta_ptr(self.raw) }
    }

    #[inline]
    fn meta_mut(&mut self) -> &mut PacketMeta {
        // SAFETY: as `meta`, and `&mut self` makes it the only borrow.
        unsafe { &mut *meta_ptr(self.raw) }
    }

    // The length changes below are those of DPDK's inline
    // `rte_pktmbuf_prepend/adj/append/trim` on a single-segment mbuf (the
    // module invariant), done on the header in place: the same checks and
    // the same fields (`data_off`, `data_len`, `pkt_len`), without a call
    // into the shim per change (translate and transmit make several a
    // packet). `mbuf_in_place_reads_agree_with_dpdk_accessors` and
    // `mbuf_behaves_like_heapbuf` (tests/dpdk_ports.rs) hold them to DPDK's
    // accessors and to HeapBuf.
    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        let h = self.header_mut();
        if n > h.data_off {
            return false;
        }
        // data_off + data_len <= buf_len: the sum still fits a u16.
        h.data_off -= n;
        h.data_len += n;
        h.pkt_len += u32::from(n);
        true
    }

    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        let h = self.header_mut();
        if n > h.data_len {
            return false;
        }
        h.data_off += n;
        h.data_len -= n;
        h.pkt_len = h.pkt_len.saturating_sub(u32::from(n));
        true
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        let Ok(len) = u16::try_from(len) else {
            return false;
        };
        let tailroom = self.tailroom();
        let h = self.header_mut();
        let cur = h.data_len;
        if len >= cur {
            let add = len - cur;
            if usize::from(add) > tailroom {
                return false;
            }
            h.pkt_len += u32::from(add);
        } else {
            h.pkt_len = h.pkt_len.saturating_sub(u32::from(cur - len));
        }
        h.data_len = len;
        true
    }

    fn try_clone(&self) -> Option<Self> {
        // SAFETY: reads our valid single-segment mbuf; returns a fresh mbuf
        // of the same pool (so the same private-area size) owned by nobody,
        // or NULL.
        let copy = NonNull::new(unsafe { ffi::shim_pktmbuf_copy_frame(self.raw.as_ptr()) })?;
        // SAFETY: `copy` is a fresh mbuf of our pool (contract of `adopt`).
        Some(unsafe { Mbuf::adopt(copy, *self.meta()) })
    }
}

/// A DPDK packet mbuf pool whose mbufs carry a [`PacketMeta`] in their
/// private area. Pools live until the process exits (DPDK memory is not
/// returned), like [`HeapPool`](pipelines::HeapPool)s.
#[derive(Clone, Copy)]
pub struct MbufPool {
    raw: NonNull<RteMempool>,
}

// SAFETY: a mempool is built for concurrent use: get/put are MP/MC safe and
// the counters read by `available`/`in_use` are read-only walks. The pool is
// never freed, so the pointer stays valid on every thread.
unsafe impl Send for MbufPool {}
// SAFETY: as for Send; every method takes `&self` and DPDK synchronises.
unsafe impl Sync for MbufPool {}

impl MbufPool {
    /// Creates a pool of `mbufs` mbufs with a per-lcore cache of `cache`,
    /// on NUMA socket `socket` (`-1`: any). The EAL must be up
    /// ([`super::init_eal`]). Errors carry DPDK's errno.
    pub(super) fn create(name: &str, mbufs: u32, cache: u32, socket: i32) -> Result<MbufPool, i32> {
        let cname = CString::new(name).map_err(|_| ffi::EINVAL)?;
        // SAFETY: `cname` is a NUL-terminated string that outlives the call
        // (DPDK copies the name); the EAL is initialised (checked by the
        // callers in ffi/mod). Sizes are plain numbers DPDK validates.
        let raw = unsafe {
            ffi::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                mbufs,
                cache,
                META_PRIV_SIZE,
                MBUF_DATA_ROOM,
                socket,
            )
        };
        NonNull::new(raw)
            .map(|raw| MbufPool { raw })
            .ok_or_else(ffi::errno)
    }

    /// The pool's name (as DPDK knows it).
    pub fn name(&self) -> String {
        // SAFETY: a valid mempool (never freed); the name is a NUL-terminated
        // array inside it.
        unsafe { ffi::cstr_lossy(ffi::shim_mempool_name(self.raw.as_ptr())) }
    }

    /// Mbufs ready to be allocated (including those in lcore caches).
    pub fn available(&self) -> usize {
        // SAFETY: a valid mempool; the count is a read-only walk.
        unsafe { ffi::rte_mempool_avail_count(self.raw.as_ptr()) as usize }
    }

    /// Mbufs currently handed out (to Rust, to PMD rings, to NIC queues).
    pub fn in_use(&self) -> usize {
        // SAFETY: as `available`.
        unsafe { ffi::rte_mempool_in_use_count(self.raw.as_ptr()) as usize }
    }

    /// A fresh mbuf holding a copy of `frame`, or `None` when the pool is
    /// exhausted or the frame is larger than the data room.
    pub fn alloc_with(&self, frame: &[u8]) -> Option<Mbuf> {
        let mut m = self.alloc()?;
        if !m.set_len(frame.len()) {
            return None;
        }
        m.data_mut().copy_from_slice(frame);
        Some(m)
    }

    pub(super) fn as_ptr(&self) -> *mut RteMempool {
        self.raw.as_ptr()
    }
}

impl std::fmt::Debug for MbufPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MbufPool")
            .field("name", &self.name())
            .field("available", &self.available())
            .finish()
    }
}

impl BufPool for MbufPool {
    type Buf = Mbuf;

    fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: a valid mempool; rte_pktmbuf_alloc returns a reset mbuf
        // (data_off = headroom, length 0, refcount 1) or NULL.
        let raw = NonNull::new(unsafe { ffi::shim_pktmbuf_alloc(self.raw.as_ptr()) })?;
        // SAFETY: fresh mbuf of one of our pools (private area sized for a
        // PacketMeta by `create`), owned by nobody.
        Some(unsafe { Mbuf::adopt(raw, PacketMeta::default()) })
    }
}

/// What one RX burst did, for the caller's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxOutcome {
    /// Packets appended to the burst.
    pub delivered: usize,
    /// Dropped: the PMD found the IPv4 header checksum bad.
    pub ip_checksum_bad: u32,
    /// Dropped: the PMD found the TCP/UDP checksum bad.
    pub l4_checksum_bad: u32,
    /// Dropped: the frame came in several segments (the stages need one).
    pub multi_segment: u32,
    /// Dropped: the mbuf came from a pool without room for a PacketMeta.
    pub foreign_pool: u32,
}

impl RxOutcome {
    pub fn dropped(&self) -> u32 {
        self.ip_checksum_bad + self.l4_checksum_bad + self.multi_segment + self.foreign_pool
    }
}

/// The sole handle to one RX queue of a running port.
pub(super) struct RxHandle {
    port_id: u16,
    queue: u16,
    /// The metadata every received packet starts with (default, with
    /// `in_port` = the appliance's index of the port). Kept in memory and
    /// copied whole: one block copy instead of a store per field.
    fresh_meta: PacketMeta,
    /// The pool this queue was set up with: mbufs from it need no check.
    pool: *mut RteMempool,
    /// Keeps the port started while the handle lives.
    _port: Arc<RunningPort>,
}

// SAFETY: DPDK requires that one RX queue be polled by one thread at a time;
// the handle is unique (made once per queue in `RunningPort::start`, not
// Clone) and `rx_burst` takes `&mut self`, so moving it between threads keeps
// that rule. `pool` is only compared, never dereferenced.
unsafe impl Send for RxHandle {}

impl RxHandle {
    /// # Safety
    /// `queue` must be a set-up RX queue of the started port `port`, this
    /// must be the only handle to it, and `pool` the pool it was set up with.
    pub(super) unsafe fn new(
        port: Arc<RunningPort>,
        queue: u16,
        in_port: u16,
        pool: MbufPool,
    ) -> RxHandle {
        RxHandle {
            port_id: port.port_id(),
            queue,
            fresh_meta: PacketMeta {
                in_port,
                ..PacketMeta::default()
            },
            pool: pool.as_ptr(),
            _port: port,
        }
    }

    /// Receives up to `max` packets (and never more than `out` has room
    /// for) into `out`, each with fresh metadata whose `in_port` is this
    /// port's index (and `rx_ip_checksum_good` when the PMD verified the
    /// IPv4 header checksum). Packets the PMD marked with a bad checksum, multi-
    /// segment frames and mbufs of foreign pools are freed and counted in
    /// the outcome instead. Allocates nothing.
    #[inline]
    pub(super) fn rx_burst(&mut self, out: &mut Burst<Mbuf>, max: usize) -> RxOutcome {
        let room = max.min(out.remaining_capacity()).min(BURST_MAX);
        if room == 0 {
            return RxOutcome::default();
        }
        let mut raw: [*mut RteMbuf; BURST_MAX] = [ptr::null_mut(); BURST_MAX];
        // SAFETY: this handle is the queue's only poller (see Send); `raw`
        // has room for `room` pointers, which is all rte_eth_rx_burst writes.
        let n =
            unsafe { ffi::shim_rx_burst(self.port_id, self.queue, raw.as_mut_ptr(), room as u16) };
        // Counters stay in registers: the drops are rare.
        let (mut ip_bad, mut l4_bad, mut multi, mut foreign) = (0u32, 0u32, 0u32, 0u32);
        let before = out.len();
        for &m in &raw[..usize::from(n).min(room)] {
            let Some(m) = NonNull::new(m) else { continue };
            // SAFETY: the PMD handed us this mbuf: valid, and ours alone.
            let h = unsafe { m.as_ref() };
            let flags = h.ol_flags;
            let keep = if flags & ffi::RX_IP_CKSUM_MASK == ffi::RX_IP_CKSUM_BAD {
                ip_bad += 1;
                false
            } else if flags & ffi::RX_L4_CKSUM_MASK == ffi::RX_L4_CKSUM_BAD {
                l4_bad += 1;
                false
            } else if h.nb_segs != 1 {
                multi += 1;
                false
            } else if h.pool != self.pool && h.priv_size < META_PRIV_SIZE {
                foreign += 1;
                false
            } else {
                true
            };
            if !keep {
                // SAFETY: ours, freed once, not used again.
                unsafe { ffi::shim_pktmbuf_free(m.as_ptr()) };
                continue;
            }
            // SAFETY: ours alone; its private area holds at least
            // META_PRIV_SIZE bytes (our pool, or checked just above).
            let mut pkt = unsafe { Mbuf::adopt_copy(m, &self.fresh_meta) };
            // The PMD verified the IPv4 header checksum: classify skips it.
            if flags & ffi::RX_IP_CKSUM_MASK == ffi::RX_IP_CKSUM_GOOD {
                pkt.meta_mut().rx_ip_checksum_good = true;
            }
            // Cannot fail: at most `room` packets were received. If it did,
            // the packet would be dropped (freed), not leaked.
            let _ = out.try_push(pkt);
        }
        RxOutcome {
            delivered: out.len() - before,
            ip_checksum_bad: ip_bad,
            l4_checksum_bad: l4_bad,
            multi_segment: multi,
            foreign_pool: foreign,
        }
    }
}

/// The sole handle to one TX queue of a running port.
pub(super) struct TxHandle {
    port_id: u16,
    queue: u16,
    _port: Arc<RunningPort>,
}

// SAFETY: as RxHandle: one unique handle per TX queue, `tx_burst` takes
// `&mut self`, so the queue is used by one thread at a time.
unsafe impl Send for TxHandle {}

impl TxHandle {
    /// # Safety
    /// `queue` must be a set-up TX queue of the started port `port`, and this
    /// must be the only handle to it.
    pub(super) unsafe fn new(port: Arc<RunningPort>, queue: u16) -> TxHandle {
        TxHandle {
            port_id: port.port_id(),
            queue,
            _port: port,
        }
    }

    /// Hands packets from the front of `pkts` to the PMD; removes those it
    /// took and returns how many. The rest stay in `pkts`. Allocates nothing.
    #[inline]
    pub(super) fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        let len = pkts.len();
        if len == 0 {
            return 0;
        }
        // `Mbuf` is `repr(transparent)` over a non-null mbuf pointer, so the
        // burst's packets are laid out as the `struct rte_mbuf **` array
        // rte_eth_tx_burst reads.
        let array = pkts.as_mut_ptr().cast::<*mut RteMbuf>();
        // SAFETY: this handle is the queue's only user; `array` points to
        // `len` (<= 32) valid mbufs we own. The PMD takes ownership of the
        // first `n` it returns and does not touch the others.
        let n = unsafe { ffi::shim_tx_burst(self.port_id, self.queue, array, len as u16) };
        let n = usize::from(n).min(len);
        // The PMD owns the first `n` mbufs now: remove them from the burst
        // without freeing them. `forget` is the hand-over, not a leak.
        pkts.drain(..n).for_each(std::mem::forget);
        n
    }
}
