//! The af_packet backend: Linux interfaces through memory-mapped AF_PACKET
//! rings, so a default build (no DPDK) runs on real interfaces.
//!
//! Per port: one socket per RX queue, each with a TPACKET_V3 receive ring
//! (blocks the kernel fills and hands over whole, so one poll of a block
//! status serves many frames); several RX queues join one PACKET_FANOUT
//! group hashed on the flow, the software analogue of RSS. Each TX queue
//! has a TPACKET_V3 transmit ring of fixed 2 KiB frames: transmit writes the
//! frames, flips their status to "send request" and kicks the kernel once
//! per burst. A TX queue shares the socket of the RX queue with its index;
//! a TX queue without one gets its own socket with a filter that accepts
//! nothing, so it never holds received frames.
//!
//! Frames are copied between the rings and [`HeapBuf`]s (the stages then
//! run on the heap buffers); a VLAN tag the kernel took off the frame (it
//! reports it beside the frame) is put back, because classify checks each
//! port's tag. What cannot be received (no free buffer, a frame larger than
//! a buffer) or sent (ring full, frame too large) is counted in the
//! backend's stats and, on TX, left to the caller, as the port traits say.
//!
//! This module is the I/O layer: it may use `unsafe`, and every block says
//! why it holds. The ring memory is shared with the kernel: the status word
//! of a block or frame is the only synchronisation, read with acquire and
//! written with release ordering, and a block or frame is touched only
//! while its status says it belongs to user space.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pipelines::{Burst, HeapBuf, HeapPool, PacketBuf};

use super::ethtool;
use super::rawsock::{self, RawSocket};
use crate::config::plan::Plan;
use crate::config::AfPacketConfig;
use crate::ports::{BackendControl, PortQueues, RxQueue, TxQueue};

// Kernel ABI constants (linux/if_packet.h); the libc crate lacks some.
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_SENDING: u32 = 2;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
const TP_STATUS_VLAN_VALID: u32 = 0x10;
const TP_STATUS_VLAN_TPID_VALID: u32 = 0x40;
const PACKET_FANOUT_HASH: u32 = 0;
/// `PACKET_LOSS` (linux/if_packet.h): the kernel skips a TX frame it cannot
/// send (marks it available again) instead of stopping the ring at it.
const PACKET_LOSS: libc::c_int = 14;

/// `struct tpacket_req3`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

// `struct tpacket_block_desc` (version, offset_to_priv, then
// `tpacket_hdr_v1`): byte offsets of the fields read here.
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
const BLOCK_LEN: usize = 20;

// `struct tpacket3_hdr`: byte offsets.
const PKT_NEXT_OFFSET: usize = 0;
const PKT_SNAPLEN: usize = 12;
const PKT_LEN: usize = 16;
const PKT_STATUS: usize = 20;
const PKT_MAC: usize = 24;
const PKT_VLAN_TCI: usize = 32;
const PKT_VLAN_TPID: usize = 36;
/// Size of `struct tpacket3_hdr`, already a multiple of TPACKET_ALIGNMENT
/// (16): a TX frame's data starts here (the kernel takes it at
/// `tp_hdrlen - sizeof(struct sockaddr_ll)`).
const TX_DATA_OFFSET: usize = 48;
const TX_FRAME_SIZE: usize = 2048;
/// TX frames per ring block.
const TX_FRAMES_PER_BLOCK: usize = 32;

/// A shared mapping of a socket's rings; unmapped on drop.
struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with the kernel; which thread
// touches which block or frame is decided by the status words (see the
// module doc), and each ring is driven by exactly one queue object.
unsafe impl Send for Mapping {}
// SAFETY: as for Send: the RX ring and the TX ring of one socket are
// disjoint ranges, each used by one queue object at a time.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned, unmapped
        // once; no reference into the mapping outlives its queue objects,
        // which hold the Arc that owns this.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

impl Mapping {
    /// The 32-bit word at `off` as an atomic (status words the kernel also
    /// writes).
    fn word(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off.is_multiple_of(4) && off + 4 <= self.len);
        // SAFETY: `off` is 4-aligned and inside the mapping (every caller
        // derives it from the ring geometry checked at setup); the memory
        // lives as long as `self`; AtomicU32 has the layout of u32.
        unsafe { AtomicU32::from_ptr(self.base.add(off).cast::<u32>()) }
    }

    fn read_u32(&self, off: usize) -> u32 {
        self.word(off).load(Ordering::Relaxed)
    }

    fn read_u16(&self, off: usize) -> u16 {
        debug_assert!(off + 2 <= self.len);
        // SAFETY: inside the mapping; an unaligned read of plain bytes.
        unsafe { self.base.add(off).cast::<u16>().read_unaligned() }
    }

    /// `len` bytes at `off`, clamped to the mapping.
    fn bytes(&self, off: usize, len: usize) -> &[u8] {
        let off = off.min(self.len);
        let len = len.min(self.len - off);
        // SAFETY: the range is inside the mapping (clamped above) and the
        // kernel does not write a block while its status is TP_STATUS_USER,
        // which the caller checked before reading.
        unsafe { std::slice::from_raw_parts(self.base.add(off), len) }
    }

    /// Copies `data` into the mapping at `off` (a TX frame this side owns).
    fn write(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= self.len, "TX frame write out of range");
        // SAFETY: in range (asserted); the frame's status is AVAILABLE, so
        // the kernel does not read it until the status is flipped after
        // this copy.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(off), data.len()) }
    }
}

/// One socket with its rings: RX ring first in the mapping, then TX.
struct RingSocket {
    sock: RawSocket,
    map: Mapping,
    rx: Option<TpacketReq3>,
    tx: Option<TpacketReq3>,
}

impl RingSocket {
    fn rx_bytes(&self) -> usize {
        self.rx
            .map_or(0, |r| r.block_size as usize * r.block_nr as usize)
    }
}

/// Counters of one port, shared by its queues and the stats.
#[derive(Default)]
struct PortStats {
    rx_frames: AtomicU64,
    rx_no_buffer: AtomicU64,
    rx_oversize: AtomicU64,
    rx_vlan_restored: AtomicU64,
    tx_frames: AtomicU64,
    tx_ring_full: AtomicU64,
    tx_oversize: AtomicU64,
    tx_wrong_format: AtomicU64,
    tx_kick_errors: AtomicU64,
    kernel_rx: AtomicU64,
    kernel_drops: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn open_ring_socket(
    ifname: &str,
    cfg: &AfPacketConfig,
    rx: bool,
    tx: bool,
    fanout: Option<u32>,
) -> io::Result<RingSocket> {
    let sock = RawSocket::open(ifname)?;
    let ctx = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{ifname}: {what}: {e}"));
    sock.setsockopt(libc::SOL_PACKET, libc::PACKET_VERSION, &TPACKET_V3)
        .map_err(|e| ctx("TPACKET_V3", e))?;
    if !rx {
        // Accept nothing: a TX-only socket must not queue received frames.
        let reject = [libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: reject.as_ptr().cast_mut(),
        };
        sock.setsockopt(libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
            .map_err(|e| ctx("reject-all filter", e))?;
    }
    let rx_req = rx.then(|| TpacketReq3 {
        block_size: cfg.block_kib * 1024,
        block_nr: cfg.rx_blocks,
        frame_size: TX_FRAME_SIZE as u32,
        frame_nr: (cfg.block_kib * 1024 / TX_FRAME_SIZE as u32) * cfg.rx_blocks,
        retire_blk_tov: cfg.block_timeout_ms,
        sizeof_priv: 0,
        feature_req_word: 0,
    });
    let tx_req = tx.then(|| {
        let blocks = (cfg.tx_frames as usize).div_ceil(TX_FRAMES_PER_BLOCK) as u32;
        TpacketReq3 {
            block_size: (TX_FRAME_SIZE * TX_FRAMES_PER_BLOCK) as u32,
            block_nr: blocks,
            frame_size: TX_FRAME_SIZE as u32,
            frame_nr: blocks * TX_FRAMES_PER_BLOCK as u32,
            ..TpacketReq3::default()
        }
    });
    if tx_req.is_some() {
        // A frame the kernel refuses (larger than the MTU after all, say)
        // is skipped rather than stopping every frame behind it (set before
        // any ring: the kernel refuses it after).
        let one: libc::c_int = 1;
        sock.setsockopt(libc::SOL_PACKET, PACKET_LOSS, &one)
            .map_err(|e| ctx("PACKET_LOSS", e))?;
    }
    if let Some(r) = &rx_req {
        sock.setsockopt(libc::SOL_PACKET, libc::PACKET_RX_RING, r)
            .map_err(|e| ctx("PACKET_RX_RING", e))?;
    }
    if let Some(r) = &tx_req {
        sock.setsockopt(libc::SOL_PACKET, libc::PACKET_TX_RING, r)
            .map_err(|e| ctx("PACKET_TX_RING", e))?;
        let one: libc::c_int = 1;
        // Straight to the driver: the appliance is the only sender here and
        // keeps its own queues. Best effort (older kernels lack it).
        let _ = sock.setsockopt(libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one);
    }
    let size =
        |r: &Option<TpacketReq3>| r.map_or(0, |r| r.block_size as usize * r.block_nr as usize);
    let len = size(&rx_req) + size(&tx_req);
    // SAFETY: a fresh shared mapping of the socket's rings, of exactly the
    // size the ring requests add up to; the kernel checks it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            sock.fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(ctx("mmap of the rings", io::Error::last_os_error()));
    }
    let map = Mapping {
        base: base.cast(),
        len,
    };
    if let Some(group) = fanout {
        // No PACKET_FANOUT_FLAG_DEFRAG: the kernel would join IP fragments
        // into one frame larger than a buffer (dropped as rx_oversize);
        // the appliance tracks fragments itself (pipelines::frag). The
        // kernel's hash of a fragment uses its addresses only, so the
        // fragments of a datagram still share a queue.
        let arg: u32 = group | (PACKET_FANOUT_HASH << 16);
        sock.setsockopt(libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)
            .map_err(|e| ctx("PACKET_FANOUT", e))?;
    }
    Ok(RingSocket {
        sock,
        map,
        rx: rx_req,
        tx: tx_req,
    })
}

/// One RX queue: walks the blocks of its socket's ring in order.
struct AfRx {
    ring: Arc<RingSocket>,
    port: u16,
    pool: &'static HeapPool,
    stats: Arc<PortStats>,
    block: usize,
    /// Frames left in the current block, and the offset of the next one
    /// (0 = the current block has not been opened).
    left: u32,
    next: usize,
    /// Oversize frames not yet reported by `take_oversize`.
    oversize: Cell<u64>,
}

impl AfRx {
    fn count_oversize(&self) {
        bump(&self.stats.rx_oversize, 1);
        self.oversize.set(self.oversize.get() + 1);
    }

    fn block_base(&self) -> usize {
        let r = self.ring.rx.unwrap_or_default();
        self.block * r.block_size as usize
    }

    fn release_block(&mut self) {
        let base = self.block_base();
        self.ring
            .map
            .word(base + BLOCK_STATUS)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        let blocks = self.ring.rx.map_or(1, |r| r.block_nr as usize);
        self.block = (self.block + 1) % blocks;
        self.left = 0;
        self.next = 0;
    }

    /// Copies the frame whose tpacket3_hdr is at `hdr` into a buffer.
    fn take(&self, hdr: usize, block_end: usize) -> Option<HeapBuf> {
        let m = &self.ring.map;
        let snap = m.read_u32(hdr + PKT_SNAPLEN) as usize;
        let wire_len = m.read_u32(hdr + PKT_LEN) as usize;
        let mac = usize::from(m.read_u16(hdr + PKT_MAC));
        let status = m.read_u32(hdr + PKT_STATUS);
        if snap < wire_len || hdr + mac + snap > block_end {
            self.count_oversize();
            return None;
        }
        let frame = m.bytes(hdr + mac, snap);
        let Some(mut b) = self.pool.alloc_with(frame) else {
            if frame.len() <= pipelines::packet::buf::DATA_ROOM {
                bump(&self.stats.rx_no_buffer, 1);
            } else {
                self.count_oversize();
            }
            return None;
        };
        if status & TP_STATUS_VLAN_VALID != 0 && frame.len() >= 12 {
            let tci = m.read_u32(hdr + PKT_VLAN_TCI) as u16;
            let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 {
                m.read_u16(hdr + PKT_VLAN_TPID)
            } else {
                0x8100
            };
            if !b.prepend(4) {
                self.count_oversize();
                return None;
            }
            let d = b.data_mut();
            d.copy_within(4..16, 0);
            d[12..14].copy_from_slice(&tpid.to_be_bytes());
            d[14..16].copy_from_slice(&tci.to_be_bytes());
            bump(&self.stats.rx_vlan_restored, 1);
        }
        b.meta_mut().in_port = self.port;
        Some(b)
    }
}

impl RxQueue<HeapBuf> for AfRx {
    fn rx_burst(&mut self, out: &mut Burst<HeapBuf>, max: usize) -> usize {
        let max = max.min(out.remaining_capacity());
        let mut n = 0;
        let block_size = self.ring.rx.map_or(0, |r| r.block_size as usize);
        while n < max {
            let base = self.block_base();
            if self.next == 0 {
                let status = self
                    .ring
                    .map
                    .word(base + BLOCK_STATUS)
                    .load(Ordering::Acquire);
                if status & TP_STATUS_USER == 0 {
                    break;
                }
                self.left = self.ring.map.read_u32(base + BLOCK_NUM_PKTS);
                let first = self.ring.map.read_u32(base + BLOCK_FIRST_PKT) as usize;
                if self.left == 0 || first >= block_size {
                    self.release_block();
                    continue;
                }
                self.next = base + first;
            }
            let blk_len = (self.ring.map.read_u32(base + BLOCK_LEN) as usize).min(block_size);
            let block_end = base + blk_len;
            let hdr = self.next;
            if hdr + TX_DATA_OFFSET > block_end {
                // A corrupt offset: give the block back rather than walk off it.
                self.release_block();
                continue;
            }
            if let Some(b) = self.take(hdr, block_end) {
                out.push(b);
                n += 1;
            }
            self.left -= 1;
            let step = self.ring.map.read_u32(hdr + PKT_NEXT_OFFSET) as usize;
            if self.left == 0 || step == 0 {
                self.release_block();
            } else {
                self.next = hdr + step;
            }
        }
        bump(&self.stats.rx_frames, n as u64);
        n
    }

    fn take_oversize(&mut self) -> u64 {
        self.oversize.replace(0)
    }
}

/// One TX queue: fills the frames of its socket's TX ring in order.
struct AfTx {
    ring: Arc<RingSocket>,
    stats: Arc<PortStats>,
    head: usize,
    /// The interface's MTU: a frame whose L3 part is larger is never sent.
    mtu: usize,
    /// Oversize frames not yet reported by `take_oversize`.
    oversize: u64,
}

impl AfTx {
    fn frame_off(&self, i: usize) -> usize {
        self.ring.rx_bytes() + i * TX_FRAME_SIZE
    }

    fn frames(&self) -> usize {
        self.ring.tx.map_or(0, |r| r.frame_nr as usize)
    }

    /// Whether `data` is more than this port can send: larger than a TX
    /// frame's room, or its L3 part (after the Ethernet header and any
    /// 802.1Q/802.1ad tags) larger than the interface's MTU, which the
    /// kernel would refuse.
    fn oversize(&self, data: &[u8]) -> bool {
        data.len() > TX_FRAME_SIZE - TX_DATA_OFFSET || data.len() > self.mtu + l2_len(data)
    }
}

/// The Ethernet header's length with its VLAN tags (at most two).
fn l2_len(frame: &[u8]) -> usize {
    let mut at = 12;
    while at < 20
        && frame.len() >= at + 2
        && matches!([frame[at], frame[at + 1]], [0x81, 0x00] | [0x88, 0xa8])
    {
        at += 4;
    }
    at + 2
}

impl TxQueue<HeapBuf> for AfTx {
    fn tx_burst(&mut self, pkts: &mut Burst<HeapBuf>) -> usize {
        let frames = self.frames();
        let mut taken = 0;
        let mut consumed = 0;
        for pkt in pkts.iter() {
            if self.oversize(pkt.data()) {
                // Never sendable: dropped on its own (the caller counts it
                // tx_oversize); the frames after it still go.
                bump(&self.stats.tx_oversize, 1);
                self.oversize += 1;
                consumed += 1;
                continue;
            }
            let off = self.frame_off(self.head);
            let status = self.ring.map.word(off + PKT_STATUS);
            let st = status.load(Ordering::Acquire);
            if st == TP_STATUS_WRONG_FORMAT {
                bump(&self.stats.tx_wrong_format, 1);
            } else if st & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0 {
                bump(&self.stats.tx_ring_full, 1);
                break;
            }
            let data = pkt.data();
            self.ring.map.write(off + TX_DATA_OFFSET, data);
            self.ring
                .map
                .word(off + PKT_LEN)
                .store(data.len() as u32, Ordering::Relaxed);
            self.ring
                .map
                .word(off + PKT_SNAPLEN)
                .store(data.len() as u32, Ordering::Relaxed);
            status.store(TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.head = (self.head + 1) % frames;
            taken += 1;
            consumed += 1;
        }
        if taken > 0 {
            // SAFETY: a send with no buffer and no address on our own open
            // socket: the kernel walks the TX ring for frames marked
            // SEND_REQUEST; MSG_DONTWAIT keeps the lcore from blocking.
            let rc = unsafe {
                libc::sendto(
                    self.ring.sock.fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS)) {
                    bump(&self.stats.tx_kick_errors, 1);
                }
            }
            bump(&self.stats.tx_frames, taken as u64);
        }
        pkts.drain(..consumed);
        taken
    }

    fn take_oversize(&mut self) -> u64 {
        std::mem::take(&mut self.oversize)
    }
}

/// The backend's control side: link state, counters, port MACs.
pub struct AfPacketControl {
    interfaces: Vec<String>,
    stats: Vec<Arc<PortStats>>,
    /// RX sockets per port, for the kernel's drop counters.
    rx_sockets: Vec<Vec<Arc<RingSocket>>>,
    /// Serialises reads of the kernel counters (reading resets them).
    kernel_lock: Mutex<()>,
    /// Offloads turned off at start, per interface: back on at stop.
    offloads_off: Vec<(String, Vec<String>)>,
}

impl Drop for AfPacketControl {
    fn drop(&mut self) {
        restore_offloads(&self.offloads_off);
    }
}

/// Turns back on the offloads [`open`] turned off.
fn restore_offloads(offloads_off: &[(String, Vec<String>)]) {
    for (ifname, offs) in offloads_off {
        let names: Vec<&str> = offs.iter().map(String::as_str).collect();
        if names.is_empty() {
            continue;
        }
        if let Err(e) = ethtool::set_features(ifname, &names, true) {
            eprintln!(
                "af_packet: {ifname}: cannot turn {} back on: {e}",
                names.join(", ")
            );
        }
    }
}

impl AfPacketControl {
    fn refresh_kernel_counters(&self) {
        let Ok(_g) = self.kernel_lock.lock() else {
            return;
        };
        for (p, socks) in self.rx_sockets.iter().enumerate() {
            for s in socks {
                if let Ok((rx, drops)) = s.sock.kernel_stats() {
                    bump(&self.stats[p].kernel_rx, u64::from(rx));
                    bump(&self.stats[p].kernel_drops, u64::from(drops));
                }
            }
        }
    }
}

impl BackendControl for AfPacketControl {
    fn stats(&self) -> serde_json::Value {
        self.refresh_kernel_counters();
        let ports: Vec<serde_json::Value> = self
            .interfaces
            .iter()
            .zip(&self.stats)
            .map(|(ifname, s)| {
                let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
                serde_json::json!({
                    "interface": ifname,
                    "link_up": rawsock::if_up(ifname).unwrap_or(false),
                    "rx_frames": g(&s.rx_frames),
                    "rx_no_buffer": g(&s.rx_no_buffer),
                    "rx_oversize": g(&s.rx_oversize),
                    "rx_vlan_restored": g(&s.rx_vlan_restored),
                    "kernel_rx": g(&s.kernel_rx),
                    "kernel_drops": g(&s.kernel_drops),
                    "tx_frames": g(&s.tx_frames),
                    "tx_ring_full": g(&s.tx_ring_full),
                    "tx_oversize": g(&s.tx_oversize),
                    "tx_wrong_format": g(&s.tx_wrong_format),
                    "tx_kick_errors": g(&s.tx_kick_errors),
                })
            })
            .collect();
        serde_json::json!({ "ports": ports })
    }

    fn link_up(&self, port: usize) -> bool {
        self.interfaces
            .get(port)
            .is_none_or(|i| rawsock::if_up(i).unwrap_or(false))
    }
}

/// The interfaces' own MACs, for ports whose config omits `mac`.
pub fn interface_macs(plan: &Plan) -> Result<Vec<[u8; 6]>, String> {
    plan.ports
        .iter()
        .map(|p| {
            let ifname = p.interface.as_deref().unwrap_or("");
            rawsock::if_mac(ifname)
                .map_err(|e| format!("port `{}`: interface `{ifname}`: {e}", p.name))
        })
        .collect()
}

/// Checks each `ports[].mtu` against its interface's MTU (SIOCGIFMTU): the
/// appliance may send no larger datagram than the interface carries.
pub fn check_mtus(plan: &Plan) -> Result<(), String> {
    for (i, p) in plan.ports.iter().enumerate() {
        let ifname = p.interface.as_deref().unwrap_or("");
        let dev = rawsock::if_mtu(ifname)
            .map_err(|e| format!("port `{}`: interface `{ifname}`: {e}", p.name))?;
        if u32::from(p.mtu) > dev {
            return Err(mtu_error(i, p.mtu, &format!("interface `{ifname}`"), dev));
        }
    }
    Ok(())
}

/// The error of a `ports[i].mtu` larger than its device's.
pub fn mtu_error(i: usize, mtu: u16, what: &str, dev: u32) -> String {
    format!(
        "ports[{i}].mtu = {mtu} is larger than the MTU of {what}, {dev}: lower ports[{i}].mtu to at most {dev} or raise the device's MTU"
    )
}

/// One port's queues on `ifname`, with its counters and RX sockets.
struct OpenPort {
    queues: PortQueues<HeapBuf>,
    stats: Arc<PortStats>,
    rx_sockets: Vec<Arc<RingSocket>>,
}

fn open_port(
    ifname: &str,
    port: u16,
    cfg: &AfPacketConfig,
    rx_queues: usize,
    tx_queues: usize,
    pool: &'static HeapPool,
) -> io::Result<OpenPort> {
    let stats = Arc::new(PortStats::default());
    // A fanout group id unique to this process and port.
    let group = std::process::id()
        .wrapping_mul(31)
        .wrapping_add(u32::from(port))
        & 0xffff;
    let fanout = (rx_queues > 1).then_some(group);
    let mtu = ethtool::mtu(ifname)? as usize;
    let mut socks = Vec::new();
    for q in 0..rx_queues.max(tx_queues) {
        let rx = q < rx_queues;
        socks.push(Arc::new(open_ring_socket(
            ifname,
            cfg,
            rx,
            q < tx_queues,
            if rx { fanout } else { None },
        )?));
    }
    let rx = socks[..rx_queues]
        .iter()
        .map(|r| {
            Box::new(AfRx {
                ring: r.clone(),
                port,
                pool,
                stats: stats.clone(),
                block: 0,
                left: 0,
                next: 0,
                oversize: Cell::new(0),
            }) as Box<dyn RxQueue<HeapBuf>>
        })
        .collect();
    let tx = socks[..tx_queues]
        .iter()
        .map(|r| {
            Box::new(AfTx {
                ring: r.clone(),
                stats: stats.clone(),
                head: 0,
                mtu,
                oversize: 0,
            }) as Box<dyn TxQueue<HeapBuf>>
        })
        .collect();
    Ok(OpenPort {
        queues: PortQueues { rx, tx },
        stats,
        rx_sockets: socks[..rx_queues].to_vec(),
    })
}

/// Opens every port of the plan on its interface with the plan's RX and TX
/// queue counts.
pub fn open(
    plan: &Plan,
    pool: &'static HeapPool,
) -> Result<(Vec<PortQueues<HeapBuf>>, Arc<AfPacketControl>), String> {
    let mut queues = Vec::new();
    let mut stats = Vec::new();
    let mut rx_sockets = Vec::new();
    let mut interfaces = Vec::new();
    let mut offloads_off: Vec<(String, Vec<String>)> = Vec::new();
    for (p, port) in plan.ports.iter().enumerate() {
        let ifname = port
            .interface
            .as_deref()
            .ok_or_else(|| format!("port `{}` has no interface", port.name))?;
        if !offloads_off.iter().any(|(i, _)| i == ifname) {
            let (changed, log) = ethtool::disable_offloads(ifname);
            for line in log {
                eprintln!("{line}");
            }
            offloads_off.push((ifname.to_string(), changed));
        }
        let o = open_port(
            ifname,
            p as u16,
            &plan.af_packet,
            plan.rx_queues,
            plan.tx_queues,
            pool,
        )
        .map_err(|e| {
            restore_offloads(&offloads_off);
            format!("port `{}` (interface `{ifname}`): {e}", port.name)
        })?;
        queues.push(o.queues);
        stats.push(o.stats);
        rx_sockets.push(o.rx_sockets);
        interfaces.push(ifname.to_string());
    }
    Ok((
        queues,
        Arc::new(AfPacketControl {
            interfaces,
            stats,
            rx_sockets,
            kernel_lock: Mutex::new(()),
            offloads_off,
        }),
    ))
}

#[cfg(test)]
mod tests {
    //! Root and `ip netns` needed: each test makes its own namespace with a
    //! veth pair (see `rawsock::tests::VethNs`); without them they fail.
    use super::*;
    use crate::ports::linux::rawsock::tests::VethNs;
    use std::time::{Duration, Instant};

    fn pool() -> &'static HeapPool {
        static POOL: std::sync::OnceLock<&'static HeapPool> = std::sync::OnceLock::new();
        POOL.get_or_init(|| HeapPool::new_static(8192))
    }

    /// A frame v0 → v1 with the local experimental EtherType 0x88b5, `len`
    /// bytes, its sequence number in bytes 14..18.
    fn frame(seq: u32, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0x99, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0x99, 0]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f[14..18].copy_from_slice(&seq.to_be_bytes());
        for (i, b) in f[18..].iter_mut().enumerate() {
            *b = (i as u8) ^ (seq as u8);
        }
        f
    }

    fn small_rings() -> AfPacketConfig {
        AfPacketConfig {
            rx_blocks: 4,
            block_kib: 16,
            block_timeout_ms: 1,
            tx_frames: 64,
        }
    }

    /// The test frames `rx` has now (one burst, no waiting).
    fn drain(rx: &mut dyn RxQueue<HeapBuf>, in_port: u16) -> Vec<Vec<u8>> {
        let mut b = Burst::new();
        rx.rx_burst(&mut b, 32);
        b.drain(..)
            .inspect(|p| assert_eq!(p.meta().in_port, in_port))
            .map(|p| p.data().to_vec())
            .filter(|d| d.len() >= 18 && (d[12..14] == [0x88, 0xb5] || d[16..18] == [0x88, 0xb5]))
            .collect()
    }

    /// Polls `queues` until `want` test frames arrived or 3 s passed.
    fn collect(
        queues: &mut [Box<dyn RxQueue<HeapBuf>>],
        in_port: u16,
        want: usize,
    ) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let until = Instant::now() + Duration::from_secs(3);
        while got.len() < want && Instant::now() < until {
            for q in queues.iter_mut() {
                got.extend(drain(&mut **q, in_port));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        got
    }

    #[test]
    fn frames_cross_in_order_through_tx_and_rx_rings_across_many_blocks() {
        let ns = VethNs::new();
        ns.run(|| {
            let cfg = small_rings();
            let mut a = open_port("v0", 0, &cfg, 1, 1, pool()).unwrap();
            let mut b = open_port("v1", 1, &cfg, 1, 1, pool()).unwrap();
            // 16 KiB blocks hold a handful of 1400-byte frames: 600 frames
            // wrap the 4-block RX ring many times and the 64-frame TX ring
            // too, so the reader must release blocks as it goes.
            let total = 600u32;
            let mut sent = Vec::new();
            let mut got = Vec::new();
            let mut seq = 0;
            let until = Instant::now() + Duration::from_secs(10);
            while seq < total && Instant::now() < until {
                let mut burst = Burst::new();
                while seq < total && !burst.is_full() {
                    let len = 60 + (seq as usize * 37) % 1400;
                    burst.push(pool().alloc_with(&frame(seq, len)).unwrap());
                    seq += 1;
                }
                let offered = burst.len();
                let took = a.queues.tx[0].tx_burst(&mut burst);
                // What the ring did not take is still ours, in order.
                assert_eq!(took + burst.len(), offered);
                // Resend the untaken ones next turn.
                seq -= burst.len() as u32;
                for s in seq - took as u32..seq {
                    sent.push(frame(s, 60 + (s as usize * 37) % 1400));
                }
                // Keep pace with the receiver: a full RX ring drops (the
                // kernel counts it), which is not what this test is about.
                got.extend(collect(&mut b.queues.rx, 1, sent.len() - got.len()));
            }
            assert_eq!(got.len(), sent.len(), "every frame arrives");
            assert!(got == sent, "in order and intact");
            assert!(b.stats.rx_frames.load(Ordering::Relaxed) >= u64::from(total));
            assert_eq!(a.stats.tx_frames.load(Ordering::Relaxed), u64::from(total));
        });
    }

    #[test]
    fn a_tx_only_socket_receives_nothing_and_fanout_spreads_flows() {
        let ns = VethNs::new();
        ns.run(|| {
            let cfg = small_rings();
            let mut a = open_port("v0", 0, &cfg, 1, 2, pool()).unwrap();
            let mut b = open_port("v1", 1, &cfg, 2, 1, pool()).unwrap();
            assert_eq!(a.queues.rx.len(), 1);
            assert_eq!(a.queues.tx.len(), 2);
            // Frames from both TX queues arrive; the second queue's socket
            // (TX only) never holds received frames.
            let mut n = 0u32;
            for q in 0..2 {
                let mut burst = Burst::new();
                for _ in 0..16 {
                    burst.push(pool().alloc_with(&frame(n, 100)).unwrap());
                    n += 1;
                }
                assert_eq!(a.queues.tx[q].tx_burst(&mut burst), 16);
            }
            let got = collect(&mut b.queues.rx, 1, 32);
            assert_eq!(
                got.len(),
                32,
                "both RX queues of the fanout group together get all"
            );
        });
    }

    #[test]
    fn a_vlan_tag_the_kernel_strips_is_put_back() {
        let ns = VethNs::new();
        ns.run(|| {
            let cfg = small_rings();
            let mut a = open_port("v0", 0, &cfg, 1, 1, pool()).unwrap();
            let mut b = open_port("v1", 1, &cfg, 1, 1, pool()).unwrap();
            let mut f = frame(9, 100);
            // 802.1Q, VLAN 100, then the test EtherType.
            f.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
            f.truncate(100);
            let mut burst = Burst::new();
            burst.push(pool().alloc_with(&f).unwrap());
            assert_eq!(a.queues.tx[0].tx_burst(&mut burst), 1);
            let got = collect(&mut b.queues.rx, 1, 1);
            let seen = got.first();
            assert_eq!(seen, Some(&f), "tag restored, frame intact");
        });
    }

    #[test]
    fn an_oversize_frame_is_dropped_alone_and_the_rest_of_its_burst_goes() {
        let ns = VethNs::new();
        ns.run(|| {
            let cfg = small_rings();
            let mut a = open_port("v0", 0, &cfg, 1, 1, pool()).unwrap();
            let mut b = open_port("v1", 1, &cfg, 1, 1, pool()).unwrap();
            // MTU 1500: 1514 bytes with the Ethernet header go; 1515 (over
            // the MTU, under the 2,000-byte TX frame: the kernel would
            // refuse it) and 1600 do not; a tagged 1518 goes.
            let mut tagged = frame(4, 1518);
            tagged.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
            tagged.truncate(1518);
            let frames = [
                frame(0, 100),
                frame(1, 1515),
                frame(2, 1514),
                frame(3, 1600),
                tagged.clone(),
                frame(5, 60),
            ];
            let mut burst = Burst::new();
            for f in &frames {
                burst.push(pool().alloc_with(f).unwrap());
            }
            assert_eq!(
                a.queues.tx[0].tx_burst(&mut burst),
                4,
                "every frame but the two oversize"
            );
            assert!(burst.is_empty(), "nothing left for tx_full");
            assert_eq!(a.queues.tx[0].take_oversize(), 2);
            assert_eq!(a.queues.tx[0].take_oversize(), 0, "reading resets");
            assert_eq!(a.stats.tx_oversize.load(Ordering::Relaxed), 2);
            let got = collect(&mut b.queues.rx, 1, 4);
            let want = vec![
                frames[0].clone(),
                frames[2].clone(),
                tagged,
                frames[5].clone(),
            ];
            assert_eq!(got.len(), 4);
            assert!(got == want, "the other frames arrive, in order");
            // The ring goes on after them.
            let mut burst = Burst::new();
            burst.push(pool().alloc_with(&frame(6, 200)).unwrap());
            assert_eq!(a.queues.tx[0].tx_burst(&mut burst), 1);
            assert_eq!(collect(&mut b.queues.rx, 1, 1).len(), 1);
        });
    }

    #[test]
    fn open_turns_gro_off_and_stop_turns_it_back_on() {
        let ns = VethNs::new();
        let name = ns.0.clone();
        let k = move |ifname: &str| {
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &name, "ethtool", "-k", ifname])
                .output()
                .expect("ethtool");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let x = |args: &[&str]| {
            let st = std::process::Command::new("ip")
                .args(["netns", "exec", &ns.0, "ethtool"])
                .args(args)
                .status()
                .expect("ethtool");
            assert!(st.success());
        };
        x(&["-K", "v0", "gro", "on", "tso", "on", "gso", "on"]);
        x(&["-K", "v1", "gro", "on"]);
        assert!(k("v0").contains("generic-receive-offload: on"));
        let toml = r#"
backend = "af-packet"
[lan]
port = "lan"
prefixes = ["10.0.0.0/24"]
addresses = ["10.0.0.1"]
[[ports]]
name = "lan"
interface = "v0"
mac = "02:00:00:00:99:00"
[[ports]]
name = "wan"
interface = "v1"
mac = "02:00:00:00:99:01"
[[uplinks]]
name = "isp"
port = "wan"
nat_addresses = ["100.64.1.10"]
next_hop_mac = "02:00:00:00:0a:fe"
"#;
        let cfg = crate::config::parse(toml).unwrap();
        let plan = crate::config::plan::validate_with_cpus(&cfg, 4).unwrap();
        let control = ns.run(move || open(&plan, pool()).map(|(_, c)| c).unwrap());
        for v in ["v0", "v1"] {
            let shown = k(v);
            for off in [
                "generic-receive-offload: off",
                "tcp-segmentation-offload: off",
                "generic-segmentation-offload: off",
            ] {
                assert!(shown.contains(off), "{v}: {off} in\n{shown}");
            }
        }
        // Stopping (the control dropped in the namespace) restores them.
        ns.run(move || drop(control));
        assert!(k("v0").contains("generic-receive-offload: on"));
        assert!(k("v1").contains("generic-receive-offload: on"));
    }
}
