//! Packet buffers.
//!
//! Stages are generic over [`PacketBuf`] (static dispatch), so the same code
//! runs on DPDK `rte_mbuf`s and on [`HeapBuf`]s from a [`HeapPool`], the
//! buffer of every non-DPDK backend (sim, pcap, af_packet) and of the benches.
//!
//! A buffer holds one frame starting at its Ethernet header, a headroom in
//! front of it (for VLAN insertion and encapsulation), and the packet's
//! [`PacketMeta`], which the stages fill in as the packet moves along.

use crossbeam::queue::ArrayQueue;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::packet::flow::FlowKey;
use crate::topology::UplinkId;

/// Which way a packet crosses the appliance, decided by classify.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// Not classified yet.
    #[default]
    Unknown,
    /// LAN → uplink: source NAT applies.
    Outbound,
    /// Uplink → LAN: the reverse translation applies.
    Inbound,
    /// An answer the appliance built in place (an ARP reply, a neighbour
    /// advertisement): its frame is complete, L2 header included, and it
    /// leaves by `out_port` untouched by translate and transmit.
    Local,
}

/// Per-packet metadata carried beside the frame from stage to stage.
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketMeta {
    /// Port the frame arrived on.
    pub in_port: u16,
    /// Port the frame leaves on (set by translate).
    pub out_port: u16,
    /// Offset of the IP header in the frame.
    pub l3_offset: u16,
    /// Offset of the TCP/UDP/ICMP header in the frame.
    pub l4_offset: u16,
    /// 802.1Q VLAN id the frame carried on ingress, if any.
    pub vlan: Option<u16>,
    pub direction: Direction,
    /// Outbound: the uplink chosen by replicate. Inbound: the uplink it came from.
    pub uplink: UplinkId,
    /// NAT shard that owns the flow (decided by classify).
    pub shard: u16,
    /// TCP flags byte (0 for other protocols).
    pub tcp_flags: u8,
    /// The 5-tuple as received.
    pub flow: FlowKey,
    /// Destination MAC the transmit stage writes (set by translate).
    pub next_hop_mac: [u8; 6],
    /// ICMP error messages (RFC 5508): offset of the embedded IP header in
    /// the frame, 0 for every other packet. `flow` is then the embedded
    /// packet's 5-tuple reversed, i.e. the flow the error belongs to as seen
    /// in the error's own direction.
    pub inner_l3: u16,
    /// ICMP error messages: offset of the embedded transport header.
    pub inner_l4: u16,
    /// Set by translate on a hairpinned packet (a LAN client sending to
    /// another LAN client's outside address) whose outbound half is done
    /// and whose inbound half belongs to the NAT shard `shard`, not to the
    /// translating one. The runtime hands it to that shard's translate stage;
    /// `direction` is then `Inbound`, `in_port` and `uplink` those of the
    /// destination NAT address.
    pub hairpin: bool,
    /// An outbound TCP SYN that replicate copied for a race (seed 001
    /// [0026], [0036]): how many copies of it exist, 0 for every other
    /// packet. Each copy has its own `uplink`.
    pub race: u8,
    /// Which copy this is, `0..race`.
    pub race_index: u8,
    /// Names the replicated SYN the copies were made from, so translate
    /// tells the copies of one SYN (one race) from a retransmission of it
    /// (which must not start a second race).
    pub race_tag: u32,
    /// A packet to a service address (seed 000 [31]), set by classify:
    /// the service's id plus one; 0 for every other packet.
    pub service: u16,
    /// The DSCP of the packet's IP header, for service packets (a
    /// redirecting client's capability mark, `docs/redirection.md`).
    pub dscp: u8,
    /// Set by the port: its hardware verified the IPv4 header checksum
    /// (DPDK `RTE_MBUF_F_RX_IP_CKSUM_GOOD`), so classify does not verify it
    /// again. False from every other port (af_packet's `TP_STATUS_CSUM_VALID`
    /// speaks of the transport checksum only), and then classify verifies.
    pub rx_ip_checksum_good: bool,
    /// The keyed hash of `flow` as classify set it (`FlowHasher` of the
    /// classify stage), for the session index to reuse; 0 when not computed
    /// (packets classify answered itself, later fragments whose ports the
    /// fragment tracker fills in): then whoever needs it computes it.
    pub flow_hash: u64,
    /// An IP fragment (IPv4 more-fragments or offset, an IPv6 Fragment
    /// header), set by classify; `FragInfo::default()` (not a fragment)
    /// for every other packet. See `crate::frag`.
    pub frag: FragInfo,
}

/// What classify read of a fragment, and what the fragment tracker learnt
/// for it (`crate::frag`, `stages/translate/fragments.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragInfo {
    /// Whether the packet is a fragment at all (an IPv6 atomic fragment,
    /// offset 0 and no more fragments, is not: it is translated whole).
    pub fragment: bool,
    /// More fragments follow (IPv4 MF, IPv6 M).
    pub more: bool,
    /// The fragment tracker has seen it (its shard owns the datagram) and,
    /// for a non-first fragment, put the first fragment's ports into
    /// `flow`; `shard` is then the flow's shard.
    pub tracked: bool,
    /// IPv4 identification (16 bits) or IPv6 fragment identification.
    pub id: u32,
    /// Offset of this fragment's data in the datagram's payload, in bytes.
    pub offset: u16,
    /// Bytes of payload this fragment carries (after the IP header and, in
    /// IPv6, the Fragment header).
    pub len: u16,
    /// First fragment: the shard owning its flow (the one its ports name);
    /// `PacketMeta::shard` is the datagram's fragment shard until tracked.
    pub flow_shard: u16,
}

impl FragInfo {
    /// A fragment at offset 0: it holds the transport header.
    pub fn is_first(&self) -> bool {
        self.fragment && self.offset == 0
    }

    /// A fragment after the first: no transport header, no ports.
    pub fn is_later(&self) -> bool {
        self.fragment && self.offset != 0
    }
}

impl PacketMeta {
    /// The IP version of the classified packet.
    pub fn is_ipv6(&self) -> bool {
        matches!(self.flow.dst, IpAddr::V6(_))
    }

    /// Whether classify found an ICMP error message (see `inner_l3`).
    pub fn is_icmp_error(&self) -> bool {
        self.inner_l3 != 0
    }
}

/// A packet buffer the stages can read, rewrite, grow and shrink at the front.
pub trait PacketBuf: Send + Sized + 'static {
    /// The frame, from its first byte to its last.
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    fn meta(&self) -> &PacketMeta;
    fn meta_mut(&mut self) -> &mut PacketMeta;
    /// Grows the frame by `n` bytes at the front, out of the headroom.
    /// Returns false (and changes nothing) when the headroom is too small.
    fn prepend(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the front. False if the frame is shorter.
    fn adj(&mut self, n: usize) -> bool;
    /// Sets the frame length, truncating or extending at the tail (extended
    /// bytes are unspecified). False if `len` exceeds the tailroom.
    fn set_len(&mut self, len: usize) -> bool;
    /// A copy of frame and metadata in a fresh buffer of the same pool
    /// (`None` when the pool is empty).
    fn try_clone(&self) -> Option<Self>;
}

/// Where new buffers come from (RX of the software backends, packets the
/// appliance originates, such as RSTs).
pub trait BufPool {
    type Buf: PacketBuf;
    /// A zero-length buffer with default metadata, or `None` when exhausted.
    fn alloc(&self) -> Option<Self::Buf>;
}

/// Bytes kept free in front of the frame, as DPDK's `RTE_PKTMBUF_HEADROOM`.
pub const HEADROOM: usize = 128;
/// Largest frame a [`HeapBuf`] holds (a 1500-byte MTU frame with two VLAN tags
/// fits with room to spare).
pub const DATA_ROOM: usize = 2048;

struct HeapBufInner {
    pool: &'static HeapPool,
    meta: PacketMeta,
    head: u16,
    len: u16,
    bytes: [u8; HEADROOM + DATA_ROOM],
}

/// A packet buffer from a [`HeapPool`]. Dropping it returns its storage to
/// the pool. Eight bytes wide, so a burst of 32 moves as 256 bytes.
pub struct HeapBuf {
    // `Some` for the whole life of the buffer; taken only in `Drop`.
    inner: Option<Box<HeapBufInner>>,
}

impl HeapBuf {
    #[inline]
    fn inner(&self) -> &HeapBufInner {
        match &self.inner {
            Some(b) => b,
            None => unreachable!("HeapBuf used after drop"),
        }
    }

    #[inline]
    fn inner_mut(&mut self) -> &mut HeapBufInner {
        match &mut self.inner {
            Some(b) => b,
            None => unreachable!("HeapBuf used after drop"),
        }
    }

    /// Replaces the frame with `frame` (truncated to the data room). Returns
    /// false if `frame` did not fit whole.
    pub fn fill(&mut self, frame: &[u8]) -> bool {
        let inner = self.inner_mut();
        let n = frame.len().min(DATA_ROOM);
        inner.head = HEADROOM as u16;
        inner.len = n as u16;
        inner.bytes[HEADROOM..HEADROOM + n].copy_from_slice(&frame[..n]);
        n == frame.len()
    }
}

impl std::fmt::Debug for HeapBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeapBuf")
            .field("len", &self.inner().len)
            .field("meta", &self.inner().meta)
            .finish()
    }
}

impl Drop for HeapBuf {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let pool = inner.pool;
            pool.release(inner);
        }
    }
}

impl PacketBuf for HeapBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let i = self.inner();
        let h = i.head as usize;
        &i.bytes[h..h + i.len as usize]
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let i = self.inner_mut();
        let h = i.head as usize;
        let end = h + i.len as usize;
        &mut i.bytes[h..end]
    }

    #[inline]
    fn meta(&self) -> &PacketMeta {
        &self.inner().meta
    }

    #[inline]
    fn meta_mut(&mut self) -> &mut PacketMeta {
        &mut self.inner_mut().meta
    }

    fn prepend(&mut self, n: usize) -> bool {
        let i = self.inner_mut();
        if n > i.head as usize {
            return false;
        }
        i.head -= n as u16;
        i.len += n as u16;
        true
    }

    fn adj(&mut self, n: usize) -> bool {
        let i = self.inner_mut();
        if n > i.len as usize {
            return false;
        }
        i.head += n as u16;
        i.len -= n as u16;
        true
    }

    fn set_len(&mut self, len: usize) -> bool {
        let i = self.inner_mut();
        if i.head as usize + len > i.bytes.len() {
            return false;
        }
        i.len = len as u16;
        true
    }

    fn try_clone(&self) -> Option<Self> {
        let src = self.inner();
        let mut copy = src.pool.alloc()?;
        let dst = copy.inner_mut();
        dst.meta = src.meta;
        dst.head = src.head;
        dst.len = src.len;
        let (h, e) = (src.head as usize, src.head as usize + src.len as usize);
        dst.bytes[h..e].copy_from_slice(&src.bytes[h..e]);
        Some(copy)
    }
}

/// A bounded pool of [`HeapBuf`]s shared by all threads (a lock-free MPMC
/// free list). Storage is allocated lazily up to `capacity` and then reused;
/// an exhausted pool makes `alloc` return `None`, which callers count.
///
/// Pools live for the whole program (`&'static`), like a DPDK mempool, so a
/// buffer needs no reference count to find its way home.
pub struct HeapPool {
    free: ArrayQueue<Box<HeapBufInner>>,
    created: AtomicUsize,
    /// Buffers handed out since the start (tests check conservation:
    /// every buffer handed out is forwarded or counted as a drop).
    allocs: AtomicUsize,
    capacity: usize,
}

impl HeapPool {
    /// Creates a pool that lives until the process exits.
    pub fn new_static(capacity: usize) -> &'static HeapPool {
        let capacity = capacity.max(1);
        Box::leak(Box::new(HeapPool {
            free: ArrayQueue::new(capacity),
            created: AtomicUsize::new(0),
            allocs: AtomicUsize::new(0),
            capacity,
        }))
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Buffers currently handed out.
    pub fn in_use(&self) -> usize {
        self.created
            .load(Ordering::Relaxed)
            .saturating_sub(self.free.len())
    }

    /// Buffers handed out since the pool was made (allocations and clones).
    pub fn allocs(&self) -> usize {
        self.allocs.load(Ordering::Relaxed)
    }

    fn release(&self, mut inner: Box<HeapBufInner>) {
        inner.meta = PacketMeta::default();
        // The queue holds `capacity` entries and at most `capacity` buffers
        // exist, so this cannot fail; if it ever did, the box is freed.
        let _ = self.free.push(inner);
    }

    /// A fresh buffer holding a copy of `frame`, or `None` when the pool is
    /// exhausted or the frame is larger than the data room.
    pub fn alloc_with(&'static self, frame: &[u8]) -> Option<HeapBuf> {
        if frame.len() > DATA_ROOM {
            return None;
        }
        let mut b = self.alloc()?;
        b.fill(frame);
        Some(b)
    }
}

impl BufPool for &'static HeapPool {
    type Buf = HeapBuf;

    fn alloc(&self) -> Option<HeapBuf> {
        let pool: &'static HeapPool = self;
        let mut inner = match pool.free.pop() {
            Some(b) => b,
            None => {
                // Grow lazily, never past capacity.
                let n = pool.created.fetch_add(1, Ordering::Relaxed);
                if n >= pool.capacity {
                    pool.created.fetch_sub(1, Ordering::Relaxed);
                    return None;
                }
                Box::new(HeapBufInner {
                    pool,
                    meta: PacketMeta::default(),
                    head: HEADROOM as u16,
                    len: 0,
                    bytes: [0; HEADROOM + DATA_ROOM],
                })
            }
        };
        inner.head = HEADROOM as u16;
        inner.len = 0;
        pool.allocs.fetch_add(1, Ordering::Relaxed);
        Some(HeapBuf { inner: Some(inner) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_bounded_and_recycles() {
        crate::testing::bufs::check_pool_is_bounded_and_recycles(&HeapPool::new_static(2));
    }

    #[test]
    fn prepend_adj_set_len_respect_bounds() {
        crate::testing::bufs::check_prepend_adj_set_len_respect_bounds(&HeapPool::new_static(1));
    }
}
