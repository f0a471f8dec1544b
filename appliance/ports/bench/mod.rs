//! The bench backend of `appliance bench`: a generator on the LAN port's RX
//! queues and a sink on every port's TX queues, in safe Rust on heap
//! buffers.
//!
//! The generator makes no frame per packet: the flows' headers (Ethernet,
//! optional 802.1Q tag, IPv4, TCP or UDP, checksums done) are built once into
//! one table, and a packet is a copy of its flow's header followed by a
//! zeroed payload up to the frame size. RX queue `q` of `n` owns the flows
//! `q, q + n, q + 2n, ...`. In the warm-up phase each queue sends each of its
//! flows once (so the NAT shards hold every flow before timing), as far as
//! the credit the bench grants allows ([`BenchControl::grant`]), and then
//! nothing; in the run phase it cycles through its flows, a burst at a time,
//! and, with a rate of new flows, replaces one packet in so many by the
//! first packet of a fresh flow (the slot's client and remote, a source
//! port never used before). An empty pool gives a short burst, counted
//! `no_buffer` (a NIC's `rx_nombuf`), and the packet is made on a later call.
//! The sink counts and frees what it is given.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pipelines::wire::{checksum, ipv4};
use pipelines::{BufPool, Burst, Counter, HeapBuf, HeapPool, PacketBuf};

use super::{BackendControl, PortQueues, RxQueue, TxQueue};
use crate::config::plan::Plan;

#[cfg(test)]
mod tests;

/// What the generator sends.
#[derive(Clone, Debug)]
pub struct FlowSpec {
    /// Distinct established flows.
    pub flows: u32,
    /// New flows per second in the run phase, over all queues (0: none).
    pub new_per_sec: u64,
    /// Ethernet frame length in bytes (without FCS).
    pub size: usize,
    /// TCP and UDP shares of the flows (`tcp:udp`).
    pub tcp: u32,
    pub udp: u32,
}

/// Remotes one client endpoint (address and port) talks to.
pub const REMOTES_PER_ENDPOINT: u32 = 64;
/// Client endpoints (source ports) per client address.
pub const ENDPOINTS_PER_HOST: u32 = 16;
/// Flows of one client address.
pub const FLOWS_PER_HOST: u32 = REMOTES_PER_ENDPOINT * ENDPOINTS_PER_HOST;
/// The client endpoints' first source port; new flows use ports from
/// [`NEW_FLOW_PORT`] on.
const CLIENT_PORT: u16 = 10_000;
const NEW_FLOW_PORT: u16 = 20_000;
const NEW_FLOW_PORTS: u64 = 45_000;
/// Remotes are in 198.18.0.0/15 (RFC 2544's benchmarking range).
const REMOTE_BASE: u32 = 0xC612_0000;
const REMOTE_SPAN: u32 = 1 << 17;
/// Destination port of every flow (HTTPS / QUIC).
const REMOTE_PORT: u16 = 443;
/// Header bytes kept per flow (room for a tag and a TCP header).
const HDR_ROOM: usize = 64;
const TCP_ACK_PSH: u8 = 0x18;

/// The generator's phases.
pub const PHASE_WARM: u8 = 0;
pub const PHASE_RUN: u8 = 1;

/// How many client addresses `flows` flows use.
pub fn hosts_for(flows: u32) -> u32 {
    flows.div_ceil(FLOWS_PER_HOST).max(1)
}

/// One generator queue's counters (written by its lcore only).
#[derive(Debug, Default)]
pub struct GenCounters {
    pub packets: Counter,
    pub new_flows: Counter,
    pub no_buffer: Counter,
}

/// One sink queue's counters.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub packets: Counter,
    pub bytes: Counter,
}

/// The bench's side of the backend: the phase, and every queue's counters.
pub struct BenchControl {
    phase: AtomicU8,
    /// Generator queues that sent each of their flows once.
    warm_done: AtomicUsize,
    /// Warm-up packets the generators may still send: the bench grants
    /// them a ring's worth at a time, once the previous ones drained, so the
    /// warm-up loses no flow to a full ring.
    warm_credit: AtomicU64,
    pub generators: Vec<Arc<GenCounters>>,
    pub sinks: Vec<Arc<SinkCounters>>,
}

impl BenchControl {
    /// Starts the run phase (the generators cycle through their flows).
    pub fn start_run(&self) {
        self.phase.store(PHASE_RUN, Ordering::Release);
    }

    /// Lets the generators send `n` more warm-up packets.
    pub fn grant(&self, n: u64) {
        self.warm_credit.fetch_add(n, Ordering::AcqRel);
    }

    /// Warm-up packets granted and not sent yet.
    pub fn credit(&self) -> u64 {
        self.warm_credit.load(Ordering::Acquire)
    }

    /// Takes up to `n` warm-up packets of credit; how many it got.
    fn take_credit(&self, n: usize) -> usize {
        let got = self
            .warm_credit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.saturating_sub(n as u64))
            })
            .unwrap_or(0);
        got.min(n as u64) as usize
    }

    /// Whether every generator queue sent each of its flows once.
    pub fn warmed_up(&self) -> bool {
        self.warm_done.load(Ordering::Acquire) >= self.generators.len()
    }

    /// Packets generated, new flows among them, and packets not made for
    /// want of a buffer, over all queues.
    pub fn generated(&self) -> (u64, u64, u64) {
        self.generators.iter().fold((0, 0, 0), |(p, n, b), g| {
            (
                p + g.packets.get(),
                n + g.new_flows.get(),
                b + g.no_buffer.get(),
            )
        })
    }

    /// Packets the sinks took.
    pub fn sunk(&self) -> u64 {
        self.sinks.iter().map(|s| s.packets.get()).sum()
    }
}

impl BackendControl for BenchControl {
    fn stats(&self) -> serde_json::Value {
        let (packets, new_flows, no_buffer) = self.generated();
        serde_json::json!({
            "generated": packets,
            "new_flows": new_flows,
            "no_buffer": no_buffer,
            "sunk": self.sunk(),
        })
    }
}

/// Every flow's header, `HDR_ROOM` bytes apart, and the frame layout.
pub struct FlowTable {
    headers: Vec<u8>,
    /// Header length of each flow (TCP or UDP).
    lens: Vec<u8>,
    size: usize,
    /// Offset of the L4 header in a frame.
    l4: usize,
}

impl FlowTable {
    /// Builds the headers of `spec.flows` flows from the plan's LAN port to
    /// remotes in 198.18.0.0/15. Errors name the flag at fault.
    pub fn build(plan: &Plan, spec: &FlowSpec) -> Result<FlowTable, String> {
        let t = &plan.topology;
        let lan = &plan.ports[usize::from(t.lan_port)];
        let base = client_base(plan, spec.flows)?;
        let eth = if lan.vlan.is_some() { 18 } else { 14 };
        let mtu = plan
            .ports
            .iter()
            .map(|p| usize::from(p.mtu))
            .min()
            .unwrap_or(1500);
        let min = eth + 20 + if spec.tcp > 0 { 20 } else { 8 };
        let max = eth + mtu;
        if spec.size < min.max(64) || spec.size > max {
            return Err(format!(
                "--size {}: the frame size must be in {}..={max} bytes (headers; the smallest port MTU, {mtu}, plus the Ethernet header{})",
                spec.size,
                min.max(64),
                if lan.vlan.is_some() { " and tag" } else { "" }
            ));
        }
        let n = spec.flows as usize;
        let mut ft = FlowTable {
            headers: vec![0; n * HDR_ROOM],
            lens: vec![0; n],
            size: spec.size,
            l4: eth + 20,
        };
        let share = spec.tcp + spec.udp;
        for i in 0..spec.flows {
            let (src, sport, dst) = flow_tuple(base, i);
            let tcp = i % share < spec.tcp;
            let h = &mut ft.headers[i as usize * HDR_ROOM..(i as usize + 1) * HDR_ROOM];
            ft.lens[i as usize] =
                write_headers(h, lan.mac, lan.vlan, (src, sport, dst), tcp, spec.size) as u8;
        }
        Ok(ft)
    }

    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Flow `i`'s header.
    pub fn header(&self, i: usize) -> &[u8] {
        &self.headers[i * HDR_ROOM..i * HDR_ROOM + usize::from(self.lens[i])]
    }
}

/// The first client address: in the first IPv4 LAN prefix, past its
/// network address, with the clients' block clear of the appliance's own
/// LAN addresses and of the broadcast address.
fn client_base(plan: &Plan, flows: u32) -> Result<u32, String> {
    let t = &plan.topology;
    let pre = t
        .lan_prefixes
        .iter()
        .find(|p| p.addr.is_ipv4())
        .ok_or("the config's [lan] prefixes have no IPv4 prefix for the generator's clients")?;
    let (first, last, _) = pre.range();
    let (first, last) = (first as u32, last as u32);
    let hosts = hosts_for(flows);
    let own: Vec<u32> = t
        .lan_addrs
        .iter()
        .filter_map(|a| match a {
            std::net::IpAddr::V4(v) => Some(u32::from(*v)),
            _ => None,
        })
        .collect();
    let mut base = first.saturating_add(1);
    while let Some(&a) = own
        .iter()
        .filter(|&&a| a >= base && u64::from(a) < u64::from(base) + u64::from(hosts))
        .max()
    {
        base = a + 1;
    }
    if u64::from(base) + u64::from(hosts) > u64::from(last) {
        return Err(format!(
            "--flows {flows}: needs {hosts} client addresses ({FLOWS_PER_HOST} flows each) in the LAN prefix {}/{}, clear of the appliance's LAN addresses; it has room for {} ({} flows)",
            pre.addr,
            pre.len,
            last.saturating_sub(base),
            u64::from(last.saturating_sub(base)) * u64::from(FLOWS_PER_HOST)
        ));
    }
    Ok(base)
}

/// Client address, source port and remote address of flow `i`: client
/// endpoint `i / 64` (16 ports per address), remote `i % 64` of it, spread
/// over 198.18.0.0/15.
fn flow_tuple(base: u32, i: u32) -> (Ipv4Addr, u16, Ipv4Addr) {
    let (ep, r) = (i / REMOTES_PER_ENDPOINT, i % REMOTES_PER_ENDPOINT);
    let host = ep / ENDPOINTS_PER_HOST;
    let sport = CLIENT_PORT + (ep % ENDPOINTS_PER_HOST) as u16;
    let dst = REMOTE_BASE + (r.wrapping_mul(397).wrapping_add(ep)) % REMOTE_SPAN;
    (Ipv4Addr::from(base + host), sport, Ipv4Addr::from(dst))
}

/// Writes a frame's headers into `h` (a TCP ACK+PSH segment or a UDP
/// datagram of `size` bytes of frame, zero payload, checksums done); returns
/// their length.
fn write_headers(
    h: &mut [u8],
    lan_mac: [u8; 6],
    vlan: Option<u16>,
    (src, sport, dst): (Ipv4Addr, u16, Ipv4Addr),
    tcp: bool,
    size: usize,
) -> usize {
    h[0..6].copy_from_slice(&lan_mac);
    h[6..12].copy_from_slice(&[0x02, 0xbe, 0x0c, 0, 0, 1]);
    let mut o = 12;
    if let Some(v) = vlan {
        h[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        h[14..16].copy_from_slice(&v.to_be_bytes());
        o = 16;
    }
    h[o..o + 2].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = o + 2;
    let ip_len = size - ip;
    let proto = if tcp { 6 } else { 17 };
    ipv4::write_header(
        &mut h[ip..ip + 20],
        0,
        ip_len as u16,
        0,
        64,
        proto,
        src,
        dst,
    );
    let l4 = ip + 20;
    let l4_len = ip_len - 20;
    h[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    h[l4 + 2..l4 + 4].copy_from_slice(&REMOTE_PORT.to_be_bytes());
    let (hl, ck) = if tcp {
        h[l4 + 4..l4 + 8].copy_from_slice(&1u32.to_be_bytes());
        h[l4 + 8..l4 + 12].copy_from_slice(&1u32.to_be_bytes());
        h[l4 + 12] = 5 << 4;
        h[l4 + 13] = TCP_ACK_PSH;
        h[l4 + 14..l4 + 16].copy_from_slice(&65_535u16.to_be_bytes());
        (20, l4 + 16)
    } else {
        h[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        (8, l4 + 6)
    };
    // Pseudo-header and header; the payload is zeros and adds nothing.
    let mut acc = checksum::sum(&src.octets(), 0);
    acc = checksum::sum(&dst.octets(), acc);
    acc += u32::from(proto) + l4_len as u32;
    let c = !checksum::fold(checksum::sum(&h[l4..l4 + hl], acc));
    let c = if c == 0 && !tcp { 0xffff } else { c };
    h[ck..ck + 2].copy_from_slice(&c.to_be_bytes());
    l4 + hl
}

/// One generator RX queue.
struct GenQueue {
    port: u16,
    /// Where the no-op forwarder sends (the first uplink's port).
    egress: u16,
    pool: &'static HeapPool,
    flows: Arc<FlowTable>,
    queue: usize,
    queues: usize,
    /// Next flow to send, and flows left in the warm-up pass.
    cursor: usize,
    warm_left: usize,
    new_per_sec: u64,
    started: Option<Instant>,
    new_made: u64,
    ctl: Arc<BenchControl>,
    counters: Arc<GenCounters>,
}

impl GenQueue {
    /// The next flow of this queue after `i`.
    fn step(&self, i: usize) -> usize {
        let next = i + self.queues;
        if next >= self.flows.len() {
            self.queue
        } else {
            next
        }
    }

    /// A packet of flow `i`, or of a fresh flow in its slot when `fresh`.
    fn make(&self, i: usize, fresh: Option<u64>) -> Option<HeapBuf> {
        let mut b = self.pool.alloc()?;
        let hdr = self.flows.header(i);
        if !b.set_len(self.flows.size) {
            return None;
        }
        let d = b.data_mut();
        d[..hdr.len()].copy_from_slice(hdr);
        d[hdr.len()..].fill(0);
        if let Some(k) = fresh {
            // A source port never used before by this slot's client.
            let l4 = self.flows.l4;
            let old = u16::from_be_bytes([d[l4], d[l4 + 1]]);
            let new = NEW_FLOW_PORT + (k % NEW_FLOW_PORTS) as u16;
            d[l4..l4 + 2].copy_from_slice(&new.to_be_bytes());
            let ck = if hdr.len() - l4 == 20 {
                l4 + 16
            } else {
                l4 + 6
            };
            let c = u16::from_be_bytes([d[ck], d[ck + 1]]);
            let c = checksum::update16(c, old, new);
            d[ck..ck + 2].copy_from_slice(&c.to_be_bytes());
        }
        let m = b.meta_mut();
        m.in_port = self.port;
        m.out_port = self.egress;
        m.shard = i as u16;
        Some(b)
    }

    /// New flows due by now in the run phase, at most `max`.
    fn new_due(&mut self, max: usize) -> usize {
        if self.new_per_sec == 0 {
            return 0;
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        let want = started.elapsed().as_secs_f64() * self.new_per_sec as f64 / self.queues as f64;
        (want as u64).saturating_sub(self.new_made).min(max as u64) as usize
    }
}

impl RxQueue<HeapBuf> for GenQueue {
    fn rx_burst(&mut self, out: &mut Burst<HeapBuf>, max: usize) -> usize {
        if self.queue >= self.flows.len() {
            return 0;
        }
        let room = max.min(out.remaining_capacity());
        let warm = self.ctl.phase.load(Ordering::Acquire) == PHASE_WARM;
        let want = if warm {
            self.ctl.take_credit(room.min(self.warm_left))
        } else {
            room
        };
        let mut fresh = if warm { 0 } else { self.new_due(want) };
        let mut made = 0;
        while made < want {
            let i = self.cursor;
            // Slots of different queues differ in client or remote, and
            // one queue's fresh flows in their source port.
            let k = (fresh > 0).then_some(self.new_made);
            let Some(b) = self.make(i, k) else {
                self.counters.no_buffer.inc();
                break;
            };
            out.push(b);
            made += 1;
            self.cursor = self.step(i);
            if k.is_some() {
                fresh -= 1;
                self.new_made += 1;
                self.counters.new_flows.inc();
            }
        }
        if warm && made > 0 {
            self.warm_left -= made;
            if self.warm_left == 0 {
                self.ctl.warm_done.fetch_add(1, Ordering::AcqRel);
            }
        }
        if warm && made < want {
            // Not made for want of a buffer: the credit goes back.
            self.ctl.grant((want - made) as u64);
        }
        self.counters.packets.add(made as u64);
        made
    }
}

/// An RX queue that receives nothing (the uplink ports').
struct Silent;

impl RxQueue<HeapBuf> for Silent {
    fn rx_burst(&mut self, _: &mut Burst<HeapBuf>, _: usize) -> usize {
        0
    }
}

/// One sink TX queue: takes every packet, counts it, frees it.
struct Sink(Arc<SinkCounters>);

impl TxQueue<HeapBuf> for Sink {
    fn tx_burst(&mut self, pkts: &mut Burst<HeapBuf>) -> usize {
        let n = pkts.len();
        let bytes: usize = pkts.iter().map(|p| p.data().len()).sum();
        pkts.clear();
        self.0.packets.add(n as u64);
        self.0.bytes.add(bytes as u64);
        n
    }
}

/// The plan's ports as bench ports: generators on the LAN port's RX queues,
/// sinks on every TX queue.
pub fn open(
    plan: &Plan,
    pool: &'static HeapPool,
    spec: &FlowSpec,
) -> Result<(Vec<PortQueues<HeapBuf>>, Arc<BenchControl>), String> {
    let flows = Arc::new(FlowTable::build(plan, spec)?);
    let t = &plan.topology;
    let nq = plan.rx_queues;
    let sinks: Vec<Arc<SinkCounters>> = (0..plan.ports.len() * plan.tx_queues)
        .map(|_| Arc::default())
        .collect();
    let generators: Vec<Arc<GenCounters>> = (0..nq).map(|_| Arc::default()).collect();
    let ctl = Arc::new(BenchControl {
        phase: AtomicU8::new(PHASE_WARM),
        warm_done: AtomicUsize::new(0),
        warm_credit: AtomicU64::new(0),
        generators: generators.clone(),
        sinks: sinks.clone(),
    });
    let egress = t.uplinks.first().map_or(t.lan_port, |u| u.port);
    let mut queues = Vec::new();
    for p in 0..plan.ports.len() {
        let rx: Vec<Box<dyn RxQueue<HeapBuf>>> = (0..nq)
            .map(|q| -> Box<dyn RxQueue<HeapBuf>> {
                if p != usize::from(t.lan_port) {
                    return Box::new(Silent);
                }
                let own = (flows.len() + nq - 1 - q) / nq;
                Box::new(GenQueue {
                    port: p as u16,
                    egress,
                    pool,
                    flows: flows.clone(),
                    queue: q,
                    queues: nq,
                    cursor: q.min(flows.len().saturating_sub(1)),
                    warm_left: own,
                    new_per_sec: spec.new_per_sec,
                    started: None,
                    new_made: 0,
                    ctl: ctl.clone(),
                    counters: generators[q].clone(),
                })
            })
            .collect();
        let tx: Vec<Box<dyn TxQueue<HeapBuf>>> = (0..plan.tx_queues)
            .map(|q| -> Box<dyn TxQueue<HeapBuf>> {
                Box::new(Sink(sinks[p * plan.tx_queues + q].clone()))
            })
            .collect();
        queues.push(PortQueues { rx, tx });
    }
    // A queue without flows (more queues than flows) is warm already.
    let idle = (0..nq).filter(|&q| q >= flows.len()).count();
    ctl.warm_done.fetch_add(idle, Ordering::AcqRel);
    Ok((queues, ctl))
}
