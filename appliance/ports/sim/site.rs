//! The site thread: moves frames between the appliance's queues, the delay
//! lines and the hosts, and polls each host only when it is due.
//!
//! A host is due when input was delivered to it (the ready list) or when its
//! next deadline — the earlier of smoltcp's `poll_at` and its application's
//! timers — has come (a min-heap of `(time, host)`; an entry is live only if
//! it equals the host's `scheduled` time, stale entries are skipped). When
//! nothing is due the thread parks until the next deadline (at least
//! [`TIMER_SLACK_US`], at most [`IDLE_SLEEP_US`]); a TX queue that takes
//! frames from the appliance unparks it, so an idle site wakes only every
//! few milliseconds and a frame from the appliance waits for no timer.
//!
//! Delay lines keep per-direction order: a frame's release time is
//! `max(previous release, now + delay + U[0, jitter])`, so each line is a
//! FIFO whose front is its next deadline.
//!
//! An uplink with a SYN proxy ([`super::proxy`]) has two more lines, NEAR
//! UP and NEAR DOWN, between the appliance and the proxy (`proxy_delay_ms`,
//! no jitter, no loss); its UP and DOWN lines then join the proxy and the
//! servers:
//!
//! ```text
//!  appliance ─▶ NEAR UP ─▶ proxy ─▶ UP ─▶ servers
//!  appliance ◀─ NEAR DOWN ◀─ proxy ◀─ DOWN ◀─ servers
//! ```
//!
//! An uplink's link ([`super::SimHandle::set_link`]) joins the appliance to
//! the first line: while it is down, frames entering that line from the
//! appliance, frames entering the line toward the appliance and frames
//! leaving it for the appliance are dropped (`link_down_drops`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam::queue::ArrayQueue;
use pipelines::topology::Topology;
use pipelines::wire::{be16, ETHERTYPE_IPV4, ETHERTYPE_VLAN, ETH_HEADER_LEN, VLAN_TAG_LEN};
use pipelines::{FlowKey, HeapBuf, HeapPool, PacketBuf};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use smoltcp::wire::Ipv4Packet;

use super::host::{AppCtx, Host, Micros, NEVER};
use super::proxy::{Proxy, ProxyOut, Toward};
use super::Shared;
use crate::config::plan::SimPlan;
use crate::config::SimConfig;

/// Longest sleep when nothing is due. Frames from the appliance wake the
/// thread early (the TX queues unpark it), so this is only a safety net.
const IDLE_SLEEP_US: u64 = 5_000;
/// Shortest sleep: deadlines closer than this are served together after one
/// sleep of this length (each wake-up costs ~20 µs of CPU on a small VM).
/// Frames from the appliance still wake the thread at once.
const TIMER_SLACK_US: u64 = 100;
/// A host whose stack asks to be polled again at once is polled this much
/// later instead, so a stuck socket cannot make the thread spin.
const MIN_RESCHEDULE_US: u64 = 50;
/// Frames taken from one TX queue per loop turn (keeps the turn bounded).
const TX_DRAIN_MAX: usize = 1024;
/// Ethernet frames are padded to this length (without FCS), as on a wire.
const ETH_MIN_FRAME: usize = 60;

/// The site side of one port's queues.
pub struct PortIo {
    pub rx: Vec<Arc<ArrayQueue<HeapBuf>>>,
    pub tx: Vec<Arc<ArrayQueue<HeapBuf>>>,
}

/// One direction of one uplink's path.
#[derive(Default)]
struct DelayLine {
    frames: VecDeque<(Micros, Vec<u8>)>,
    last_release: Micros,
}

impl DelayLine {
    /// Queues a frame due at `due`, but never before the frame ahead of it.
    fn push(&mut self, due: Micros, ip: Vec<u8>) {
        let release = due.max(self.last_release);
        self.last_release = release;
        self.frames.push_back((release, ip));
    }

    /// The front frame if its release time has come.
    fn pop_due(&mut self, now: Micros) -> Option<Vec<u8>> {
        if self.frames.front().is_some_and(|f| f.0 <= now) {
            self.frames.pop_front().map(|f| f.1)
        } else {
            None
        }
    }
}

/// The SYN proxy of one uplink and its lines to the appliance.
struct ProxySite {
    proxy: Proxy,
    /// One-way delay between the appliance and the proxy.
    delay_us: Micros,
    near_up: DelayLine,
    near_down: DelayLine,
}

#[derive(Clone, Copy)]
enum Dir {
    Up,
    Down,
}

pub struct Site {
    epoch: std::time::Instant,
    cfg: SimConfig,
    topo: Arc<Topology>,
    pool: &'static HeapPool,
    shared: Arc<Shared>,
    /// Clients `0..clients`, then servers.
    hosts: Vec<Host>,
    clients: usize,
    client_base: u32,
    server_base: u32,
    heap: BinaryHeap<Reverse<(Micros, u32)>>,
    ready: Vec<u32>,
    ready_spare: Vec<u32>,
    up: Vec<DelayLine>,
    down: Vec<DelayLine>,
    /// Per uplink: its SYN proxy, if it has one.
    proxies: Vec<Option<ProxySite>>,
    /// What a proxy emitted, before it goes on a line (kept for its capacity).
    proxy_out: ProxyOut,
    ports: Vec<PortIo>,
    /// Clients' choices (intervals, servers).
    rng: SmallRng,
    /// Delay lines' jitter and loss.
    line_rng: SmallRng,
    scratch: Vec<u8>,
    frame: Vec<u8>,
}

/// The MAC of client `i`: 02:00:0a followed by the low 24 bits of `i`.
pub fn client_mac(i: usize) -> [u8; 6] {
    let b = (i as u32).to_be_bytes();
    [0x02, 0x00, 0x0a, b[1], b[2], b[3]]
}

/// splitmix64: independent seeds for the hosts from the site seed.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i.wrapping_add(1)));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The IPv4 datagram inside an Ethernet frame (optional 802.1Q tag),
/// trimmed to its total length, or `None` if it is not a valid IPv4 one.
pub(super) fn strip_l2(frame: &[u8]) -> Option<&[u8]> {
    let mut l2 = ETH_HEADER_LEN;
    let mut ethertype = be16(frame, 12)?;
    if ethertype == ETHERTYPE_VLAN {
        ethertype = be16(frame, 16)?;
        l2 += VLAN_TAG_LEN;
    }
    if ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = frame.get(l2..)?;
    let total = usize::from(Ipv4Packet::new_checked(ip).ok()?.total_len());
    ip.get(..total)
}

/// The 5-tuple of an IPv4 datagram (ports 0 for other protocols).
fn flow_of(ip: &[u8]) -> Option<FlowKey> {
    let p = Ipv4Packet::new_checked(ip).ok()?;
    let proto = u8::from(p.next_header());
    let l4 = p.payload();
    let (src_port, dst_port) = match (proto, be16(l4, 0), be16(l4, 2)) {
        (6 | 17, Some(s), Some(d)) => (s, d),
        _ => (0, 0),
    };
    Some(FlowKey {
        src: IpAddr::V4(p.src_addr()),
        dst: IpAddr::V4(p.dst_addr()),
        src_port,
        dst_port,
        proto,
    })
}

impl Site {
    pub fn new(
        sim: &SimPlan,
        topo: Arc<Topology>,
        pool: &'static HeapPool,
        shared: Arc<Shared>,
        ports: Vec<PortIo>,
    ) -> Site {
        let cfg = sim.cfg.clone();
        let client_base = u32::from(sim.client_base);
        let server_base = u32::from(sim.server_base);
        let mut hosts = Vec::with_capacity(cfg.clients + cfg.servers);
        for i in 0..cfg.clients {
            let addr = Ipv4Addr::from(client_base.wrapping_add(i as u32));
            hosts.push(Host::new_client(i, addr, mix(cfg.seed, i as u64), &cfg));
        }
        for j in 0..cfg.servers {
            let addr = Ipv4Addr::from(server_base.wrapping_add(j as u32));
            hosts.push(Host::new_server(
                addr,
                mix(cfg.seed, (cfg.clients + j) as u64),
                &cfg,
            ));
        }
        let n_up = topo.uplinks.len();
        // Proxies forget a connection silent for longer than a server socket lives.
        let proxy_idle_us = (cfg.tcp_timeout_ms.max(1000) * 2 + 1000) * 1000;
        let proxies = (0..n_up)
            .map(|u| {
                let p = sim.uplinks.get(u).filter(|p| p.proxy)?;
                Some(ProxySite {
                    proxy: Proxy::new(mix(cfg.seed, u64::MAX - 3 - u as u64), proxy_idle_us),
                    delay_us: (p.proxy_delay_ms * 1000.0) as Micros,
                    near_up: DelayLine::default(),
                    near_down: DelayLine::default(),
                })
            })
            .collect();
        Site {
            epoch: std::time::Instant::now(),
            rng: SmallRng::seed_from_u64(mix(cfg.seed, u64::MAX - 1)),
            line_rng: SmallRng::seed_from_u64(mix(cfg.seed, u64::MAX - 2)),
            clients: cfg.clients,
            cfg,
            topo,
            pool,
            shared,
            hosts,
            client_base,
            server_base,
            heap: BinaryHeap::new(),
            ready: Vec::new(),
            ready_spare: Vec::new(),
            up: (0..n_up).map(|_| DelayLine::default()).collect(),
            down: (0..n_up).map(|_| DelayLine::default()).collect(),
            proxies,
            proxy_out: Vec::new(),
            ports,
            scratch: vec![0; 64 * 1024],
            frame: Vec::with_capacity(2048),
        }
    }

    fn now(&self) -> Micros {
        self.epoch.elapsed().as_micros() as Micros
    }

    /// The site thread's body: runs until the stop flag is set.
    pub fn run(mut self) {
        let now = self.now();
        for h in 0..self.hosts.len() {
            let mut cx = AppCtx {
                now,
                cfg: &self.cfg,
                server_base: self.server_base,
                rng: &mut self.rng,
                stats: &self.shared.counters,
                scratch: &mut self.scratch,
                paused: false,
            };
            self.hosts[h].start(&mut cx);
            self.mark_ready(h);
        }
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = self.now();
            let mut work = self.drain_tx(now);
            work |= self.release_lines(now);
            work |= self.service_hosts(now);
            if self.heap.len() > 4 * self.hosts.len() + 1024 {
                let hosts = &self.hosts;
                self.heap
                    .retain(|Reverse((t, h))| hosts[*h as usize].scheduled == *t);
            }
            if !work && self.ready.is_empty() {
                let next = self.next_deadline();
                let now = self.now();
                if next > now {
                    let wait = (next - now).clamp(TIMER_SLACK_US, IDLE_SLEEP_US);
                    std::thread::park_timeout(Duration::from_micros(wait));
                }
            }
        }
    }

    fn next_deadline(&self) -> Micros {
        let proxies = self.proxies.iter().flatten();
        let lines = self
            .up
            .iter()
            .chain(&self.down)
            .chain(proxies.clone().flat_map(|p| [&p.near_up, &p.near_down]))
            .filter_map(|l| l.frames.front().map(|f| f.0));
        let timers = self.heap.peek().map_or(NEVER, |Reverse((t, _))| *t);
        let proxy_timers = proxies.map(|p| p.proxy.next_deadline());
        lines.chain(proxy_timers).fold(timers, Micros::min)
    }

    fn link_up(&self, u: usize) -> bool {
        self.shared.uplinks[u].link_up.load(Ordering::Relaxed)
    }

    fn mark_ready(&mut self, h: usize) {
        if !self.hosts[h].ready {
            self.hosts[h].ready = true;
            self.ready.push(h as u32);
        }
    }

    /// Takes the appliance's transmitted frames and routes them.
    fn drain_tx(&mut self, now: Micros) -> bool {
        let mut any = false;
        for p in 0..self.ports.len() {
            for q in 0..self.ports[p].tx.len() {
                for _ in 0..TX_DRAIN_MAX {
                    let Some(buf) = self.ports[p].tx[q].pop() else {
                        break;
                    };
                    any = true;
                    self.shared.counters.frames_from_appliance.inc();
                    // Copy out and free the pool buffer at once.
                    let ip = strip_l2(buf.data()).map(<[u8]>::to_vec);
                    drop(buf);
                    match ip {
                        Some(ip) => self.route_from_appliance(p, ip, now),
                        None => self.shared.counters.unroutable.inc(),
                    }
                }
            }
        }
        any
    }

    /// Routes a datagram the appliance sent on port `port`.
    fn route_from_appliance(&mut self, port: usize, ip: Vec<u8>, now: Micros) {
        let Some(flow) = flow_of(&ip) else {
            self.shared.counters.unroutable.inc();
            return;
        };
        if port == usize::from(self.topo.lan_port) {
            match self.client_of(flow.dst) {
                Some(i) => {
                    self.hosts[i].dev.rx.push_back(ip);
                    self.mark_ready(i);
                }
                None => self.shared.counters.unroutable.inc(),
            }
            return;
        }
        match self.topo.nat_addr_uplink.get(&flow.src) {
            Some(&u) if usize::from(self.topo.uplinks[usize::from(u)].port) == port => {
                let u = usize::from(u);
                if !self.link_up(u) {
                    self.shared.uplinks[u].link_down_drops.inc();
                    return;
                }
                match &mut self.proxies[u] {
                    Some(p) => p.near_up.push(now.saturating_add(p.delay_us), ip),
                    None => self.offer(u, Dir::Up, ip, now),
                }
            }
            _ => self.shared.counters.unroutable.inc(),
        }
    }

    fn client_of(&self, a: IpAddr) -> Option<usize> {
        let IpAddr::V4(v4) = a else { return None };
        let i = u32::from(v4).wrapping_sub(self.client_base) as usize;
        (i < self.clients).then_some(i)
    }

    fn server_of(&self, a: IpAddr) -> Option<usize> {
        let IpAddr::V4(v4) = a else { return None };
        let j = u32::from(v4).wrapping_sub(self.server_base) as usize;
        (j < self.cfg.servers).then_some(self.clients + j)
    }

    /// Puts a datagram on uplink `u`'s line in direction `dir` (or loses it).
    fn offer(&mut self, u: usize, dir: Dir, ip: Vec<u8>, now: Micros) {
        let path = &self.shared.uplinks[u];
        // Without a proxy the DOWN line ends at the appliance's link.
        if matches!(dir, Dir::Down) && self.proxies[u].is_none() && !self.link_up(u) {
            path.link_down_drops.inc();
            return;
        }
        let line = match dir {
            Dir::Up => {
                path.frames_up.inc();
                &mut self.up[u]
            }
            Dir::Down => {
                path.frames_down.inc();
                &mut self.down[u]
            }
        };
        let loss = path.loss.get();
        if loss > 0.0 && self.line_rng.random::<f64>() < loss {
            path.lost.inc();
            return;
        }
        let jitter = path.jitter_ms.get();
        let extra = if jitter > 0.0 {
            self.line_rng.random::<f64>() * jitter
        } else {
            0.0
        };
        let delay_us = ((path.delay_ms.get() + extra) * 1000.0) as Micros;
        line.push(now.saturating_add(delay_us), ip);
    }

    /// Delivers every frame whose release time has come.
    fn release_lines(&mut self, now: Micros) -> bool {
        let mut any = false;
        for u in 0..self.up.len() {
            while let Some(ip) = self.up[u].pop_due(now) {
                any = true;
                let dst = flow_of(&ip).map(|f| f.dst);
                match dst.and_then(|d| self.server_of(d)) {
                    Some(h) => {
                        self.hosts[h].dev.rx.push_back(ip);
                        self.mark_ready(h);
                    }
                    None => self.shared.counters.unroutable.inc(),
                }
            }
            while let Some(ip) = self.down[u].pop_due(now) {
                any = true;
                let Some(p) = &mut self.proxies[u] else {
                    self.deliver_to_appliance(u, &ip);
                    continue;
                };
                let mut out = std::mem::take(&mut self.proxy_out);
                p.proxy.on_server(now, ip, &mut out);
                self.dispatch_proxy_out(u, &mut out, now);
                self.proxy_out = out;
            }
            if self.proxies[u].is_some() {
                any |= self.release_proxy_lines(u, now);
            }
        }
        any
    }

    /// Moves uplink `u`'s proxy lines and runs its proxy's timers.
    fn release_proxy_lines(&mut self, u: usize, now: Micros) -> bool {
        let mut any = false;
        let path = &self.shared.uplinks[u];
        let rto_us =
            (((path.delay_ms.get() + path.jitter_ms.get()) * 2.0 + 200.0) * 1000.0) as Micros;
        let mut out = std::mem::take(&mut self.proxy_out);
        while let Some(p) = &mut self.proxies[u] {
            let Some(ip) = p.near_up.pop_due(now) else {
                break;
            };
            any = true;
            p.proxy.on_appliance(now, ip, rto_us, &mut out);
            self.dispatch_proxy_out(u, &mut out, now);
        }
        if let Some(p) = &mut self.proxies[u] {
            if p.proxy.next_deadline() <= now {
                any = true;
                p.proxy.poll(now, rto_us, &mut out);
                self.dispatch_proxy_out(u, &mut out, now);
            }
        }
        while let Some(p) = &mut self.proxies[u] {
            let Some(ip) = p.near_down.pop_due(now) else {
                break;
            };
            any = true;
            self.deliver_to_appliance(u, &ip);
        }
        self.proxy_out = out;
        any
    }

    /// Sends what uplink `u`'s proxy emitted on its way (toward the servers
    /// on the UP line, toward the appliance on the NEAR DOWN line) and
    /// publishes the proxy's counters.
    fn dispatch_proxy_out(&mut self, u: usize, out: &mut ProxyOut, now: Micros) {
        for (to, ip) in out.drain(..) {
            match to {
                Toward::Server => self.offer(u, Dir::Up, ip, now),
                Toward::Appliance => {
                    if !self.link_up(u) {
                        self.shared.uplinks[u].link_down_drops.inc();
                        continue;
                    }
                    if let Some(p) = &mut self.proxies[u] {
                        p.near_down.push(now.saturating_add(p.delay_us), ip);
                    }
                }
            }
        }
        if let Some(p) = &self.proxies[u] {
            let (c, path) = (&p.proxy.counts, &self.shared.uplinks[u]);
            path.proxy_syn_answered.set(c.syn_answered);
            path.proxy_connections.set(c.connections);
            path.proxy_passed.set(c.passed);
            path.proxy_dropped.set(c.dropped);
        }
    }

    /// Hands a datagram that crossed uplink `u` to the appliance, unless
    /// the uplink's link is down.
    fn deliver_to_appliance(&mut self, u: usize, ip: &[u8]) {
        if !self.link_up(u) {
            self.shared.uplinks[u].link_down_drops.inc();
            return;
        }
        let uplink = &self.topo.uplinks[u];
        let (port, src_mac) = (usize::from(uplink.port), uplink.next_hop_mac);
        self.queue_to_appliance(port, src_mac, ip);
    }

    /// Wraps a datagram in Ethernet for port `port` (its MAC as destination,
    /// its VLAN tag if any) and queues it on the port's RX queue chosen by
    /// the 5-tuple hash, as NIC RSS would.
    fn queue_to_appliance(&mut self, port: usize, src_mac: [u8; 6], ip: &[u8]) {
        let c = &self.shared.counters;
        let info = &self.topo.ports[port];
        let f = &mut self.frame;
        f.clear();
        f.extend_from_slice(&info.mac);
        f.extend_from_slice(&src_mac);
        if let Some(vlan) = info.vlan {
            f.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            f.extend_from_slice(&(vlan & 0x0FFF).to_be_bytes());
        }
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f.extend_from_slice(ip);
        if f.len() < ETH_MIN_FRAME {
            f.resize(ETH_MIN_FRAME, 0);
        }
        let Some(mut buf) = self.pool.alloc_with(f) else {
            c.rx_nombuf.inc();
            return;
        };
        buf.meta_mut().in_port = port as u16;
        let queues = &self.ports[port].rx;
        let hash = flow_of(ip).map_or(0, |k| k.stable_hash()) as usize;
        match queues[hash % queues.len()].push(buf) {
            Ok(()) => c.frames_to_appliance.inc(),
            Err(_) => c.rx_queue_full.inc(),
        }
    }

    /// Services the hosts with input and those whose deadline has come.
    fn service_hosts(&mut self, now: Micros) -> bool {
        let mut any = false;
        let mut ready = std::mem::take(&mut self.ready_spare);
        std::mem::swap(&mut ready, &mut self.ready);
        for &h in &ready {
            self.hosts[h as usize].ready = false;
        }
        for &h in &ready {
            self.service_host(h as usize, now);
            any = true;
        }
        ready.clear();
        self.ready_spare = ready;
        while let Some(&Reverse((t, h))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            if self.hosts[h as usize].scheduled != t {
                continue;
            }
            self.hosts[h as usize].scheduled = NEVER;
            self.service_host(h as usize, now);
            any = true;
        }
        any
    }

    fn service_host(&mut self, h: usize, now: Micros) {
        let mut cx = AppCtx {
            now,
            cfg: &self.cfg,
            server_base: self.server_base,
            rng: &mut self.rng,
            stats: &self.shared.counters,
            scratch: &mut self.scratch,
            paused: self.shared.clients_paused.load(Ordering::Relaxed),
        };
        let host = &mut self.hosts[h];
        let next = host.service(&mut cx);
        let mut sent = std::mem::take(&mut host.dev.tx);
        for ip in sent.drain(..) {
            if h < self.clients {
                self.queue_to_appliance(usize::from(self.topo.lan_port), client_mac(h), &ip);
                continue;
            }
            // A server's datagram goes to a NAT address: that uplink's DOWN line.
            let uplink = flow_of(&ip).and_then(|f| self.topo.nat_addr_uplink.get(&f.dst).copied());
            match uplink {
                Some(u) => self.offer(usize::from(u), Dir::Down, ip, now),
                None => self.shared.counters.unroutable.inc(),
            }
        }
        let host = &mut self.hosts[h];
        host.dev.tx = sent;
        if !host.dev.rx.is_empty() {
            self.mark_ready(h);
        }
        let next = if next <= now {
            now + MIN_RESCHEDULE_US
        } else {
            next
        };
        let host = &mut self.hosts[h];
        if next != host.scheduled {
            host.scheduled = next;
            if next != NEVER {
                self.heap.push(Reverse((next, h as u32)));
            }
        }
    }
}

#[cfg(test)]
impl Site {
    pub(super) fn offer_up_for_test(&mut self, now: Micros, ip: Vec<u8>) {
        self.offer(0, Dir::Up, ip, now);
    }

    pub(super) fn up_release_times_for_test(&self) -> Vec<Micros> {
        self.up[0].frames.iter().map(|f| f.0).collect()
    }
}
