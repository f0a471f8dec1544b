//! The data-plane side of service addresses (seed 000 [31]-[32], [54]-[56],
//! [63]): the first packet of a request to a service address is decided
//! from the database's [`Snapshot`]: *serve* creates a service session and
//! destination-NATs to the chosen local server; *redirect* turns the packet
//! into the redirection answer (`docs/redirection.md` sections 4-5).
//!
//! Nothing here waits for the management core: decisions come from the
//! last published snapshot, failure reports go back as [`ServiceEvent`]s.
//! No allocation per packet: the redirection table is a fixed array.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hashbrown::HashMap;

use crate::nat::NatShard;
use crate::packet::buf::{Direction, PacketBuf};
use crate::packet::counter::Counter;
use crate::packet::drop::DropReason;
use crate::packet::flow::{proto, FlowKey};
use crate::packet::time::Nanos;
use crate::redirect::db::{Decision, Mark, Member, Placed, Request, ServerId, ServiceId, Snapshot};
use crate::redirect::header::{self, HeaderRepr, Persistence};
use crate::topology::{Topology, UplinkId};
use crate::wire::checksum::{fold, sum};
use crate::wire::tcp::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// Where classify finds services: service endpoints (address, port,
/// protocol) and the servers' own endpoints behind them.
#[derive(Debug, Default)]
pub struct ServiceMap {
    services: HashMap<(IpAddr, u16, u8), (ServiceId, UplinkId)>,
    servers: HashMap<(IpAddr, u16, u8), ServerId>,
}

impl ServiceMap {
    /// A service reachable at `addr` over `tcp` / `udp`, on `uplink`.
    pub fn add_service(
        &mut self,
        id: ServiceId,
        addr: SocketAddr,
        tcp: bool,
        udp: bool,
        uplink: UplinkId,
    ) {
        for (on, p) in [(tcp, proto::TCP), (udp, proto::UDP)] {
            if on {
                self.services
                    .insert((addr.ip(), addr.port(), p), (id, uplink));
            }
        }
    }

    /// A local server's endpoint: its packets are sharded like its clients'.
    pub fn add_server(&mut self, id: ServerId, addr: SocketAddr) {
        for p in [proto::TCP, proto::UDP] {
            self.servers.insert((addr.ip(), addr.port(), p), id);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// For a packet from the LAN (`from_lan`) or an uplink: if it belongs to
    /// a service flow, its uplink, its shard (by the client's address, the
    /// same both ways) and its `PacketMeta::service` (0 for the servers'
    /// replies, which need no decision).
    pub fn classify(
        &self,
        f: &FlowKey,
        from_lan: bool,
        shards: u16,
    ) -> Option<(UplinkId, u16, u16)> {
        if self.services.is_empty() {
            return None;
        }
        let shard = |client: IpAddr| {
            let k = FlowKey {
                src: client,
                dst: client,
                src_port: 0,
                dst_port: 0,
                proto: 0,
            };
            (k.inside_endpoint_hash() % u32::from(shards.max(1))) as u16
        };
        if from_lan {
            self.servers
                .get(&(f.src, f.src_port, f.proto))
                .map(|_| (0, shard(f.dst), 0))
        } else {
            self.services
                .get(&(f.dst, f.dst_port, f.proto))
                .map(|&(id, u)| (u, shard(f.src), id + 1))
        }
    }
}

/// What the data plane tells the management core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceEvent {
    /// A client reported that a redirection to `member` failed ([62]).
    Failure { member: Member },
}

/// Counters of one shard's service handling (read by the management core).
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// First requests decided.
    pub requests: Counter,
    pub served: Counter,
    pub redirected: Counter,
    /// Failure resends received (reports of a failed target).
    pub failures: Counter,
    /// First requests no server could take.
    pub no_server: Counter,
    /// Redirections per target: service addresses, then peers.
    pub by_target: Vec<Counter>,
    /// Plain (not redirect-capable) first requests, all served.
    pub plain: Counter,
    /// Failure reports ignored: from a client this shard did not redirect
    /// to the reported target within the failure window (forged, stale,
    /// or about a target it was never sent to).
    pub failure_reports_refused: Counter,
    /// Failure events not delivered to the management core: the shard's
    /// buffer of undrained events was full, or the event ring was.
    pub failure_events_lost: Counter,
}

const TCP_PSH: u8 = 0x08;

/// Entries of the redirection table (per shard).
pub const REDIRECT_TABLE: usize = 4096;

/// The last redirection given to a client address for a service: what a
/// TCP exchange answers with, and what a TCP failure resend reports.
#[derive(Clone, Copy, Debug)]
struct Given {
    client: IpAddr,
    service: ServiceId,
    member: Member,
    header: HeaderRepr,
    at: Nanos,
}

/// Entries of the recent-redirections table (per shard), in sets of
/// [`RECENT_WAYS`]: client address → target, for failure reports.
pub const RECENT_TABLE: usize = 8192;
const RECENT_WAYS: usize = 4;

/// One redirection given: `client` was sent to `member` at `at`.
#[derive(Clone, Copy, Debug)]
struct Sent {
    client: IpAddr,
    member: Member,
    at: Nanos,
}

/// The redirections a shard gave recently, per client and target: a
/// fixed, set-associative table (one set per client address hash, the
/// oldest entry of a full set replaced). A failure report counts only if
/// its (client, target) is here and recent; a client redirected to many
/// targets keeps at most [`RECENT_WAYS`] of them, and a host cannot push
/// out more than its set.
struct Recent {
    sets: Vec<[Option<Sent>; RECENT_WAYS]>,
}

impl Recent {
    fn new() -> Recent {
        Recent {
            sets: vec![[None; RECENT_WAYS]; RECENT_TABLE / RECENT_WAYS],
        }
    }

    fn set_of(&self, client: IpAddr) -> usize {
        let k = FlowKey {
            src: client,
            dst: client,
            src_port: 0x5e7,
            dst_port: 0,
            proto: 0,
        };
        (k.stable_hash() as usize) % self.sets.len()
    }

    fn remember(&mut self, client: IpAddr, member: Member, now: Nanos) {
        let i = self.set_of(client);
        let set = &mut self.sets[i];
        let same = |e: &Option<Sent>| e.is_some_and(|e| e.client == client && e.member == member);
        let slot = match set.iter().position(same) {
            Some(k) => k,
            None => match set.iter().position(Option::is_none) {
                Some(k) => k,
                None => (0..RECENT_WAYS)
                    .min_by_key(|&k| set[k].map_or(Nanos::ZERO, |e| e.at))
                    .unwrap_or(0),
            },
        };
        set[slot] = Some(Sent {
            client,
            member,
            at: now,
        });
    }

    /// Whether `client` was redirected to `member` within `window`.
    #[cfg(test)]
    fn sent(&self, client: IpAddr, member: Member, now: Nanos, window: Nanos) -> bool {
        self.sets[self.set_of(client)]
            .iter()
            .flatten()
            .any(|e| e.client == client && e.member == member && now.since(e.at) <= window)
    }

    /// [`Self::sent`], and the redirection is used up: one redirection
    /// backs one failure report.
    fn take(&mut self, client: IpAddr, member: Member, now: Nanos, window: Nanos) -> bool {
        let i = self.set_of(client);
        let hit = |x: &Sent| x.client == client && x.member == member && now.since(x.at) <= window;
        match self.sets[i].iter_mut().find(|e| e.is_some_and(|x| hit(&x))) {
            Some(e) => {
                *e = None;
                true
            }
            None => false,
        }
    }
}

/// A shard's service state: the snapshot it decides from and its tallies.
pub struct ServicePlane {
    snapshot: Arc<Snapshot>,
    placed: Placed,
    given: Vec<Option<Given>>,
    recent: Recent,
    secret: u64,
    /// Failure reports for the management core; drained every loop turn.
    pub events: Vec<ServiceEvent>,
    pub counters: Arc<ServiceCounters>,
}

/// A redirection table entry older than this is not used.
const GIVEN_TTL: Nanos = Nanos::from_secs(300);
/// Events buffered between two drains.
const EVENTS_MAX: usize = 1024;
/// Longest UDP payload of a redirection (fits the IPv6 minimum MTU).
pub const MAX_UDP_REDIRECT: usize = 1232;

impl ServicePlane {
    pub fn new(snapshot: Arc<Snapshot>, targets: usize, secret: u64) -> ServicePlane {
        let mut placed = Placed::default();
        placed.reset(&snapshot);
        ServicePlane {
            snapshot,
            placed,
            given: vec![None; REDIRECT_TABLE],
            recent: Recent::new(),
            secret: secret | 1,
            events: Vec::with_capacity(EVENTS_MAX),
            counters: Arc::new(ServiceCounters {
                by_target: (0..targets).map(|_| Counter::new()).collect(),
                ..ServiceCounters::default()
            }),
        }
    }

    /// Takes a newer snapshot (the old one is only dropped here; the
    /// management core keeps it until it is the last holder).
    pub fn install(&mut self, snap: Arc<Snapshot>) {
        self.placed.reset(&snap);
        self.snapshot = snap;
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    fn slot(&self, client: IpAddr, service: ServiceId) -> usize {
        let k = FlowKey {
            src: client,
            dst: client,
            src_port: service,
            dst_port: 0,
            proto: 0,
        };
        (k.stable_hash() as usize) % REDIRECT_TABLE
    }

    fn given(&self, client: IpAddr, service: ServiceId, now: Nanos) -> Option<Given> {
        self.given[self.slot(client, service)]
            .filter(|g| g.client == client && g.service == service && now.since(g.at) <= GIVEN_TTL)
    }

    /// The SYN-cookie style sequence number of a redirected TCP exchange.
    fn cookie(&self, f: &FlowKey) -> u32 {
        let k = FlowKey {
            src: f.src,
            dst: f.dst,
            src_port: f.src_port,
            dst_port: f.dst_port,
            proto: f.proto,
        };
        (k.stable_hash() as u64 ^ self.secret).wrapping_mul(0x9E37_79B9_7F4A_7C15) as u32
    }

    /// A failure report from `client` about `member`: counted and passed
    /// on only if this shard redirected that client there within the
    /// failure window; otherwise counted refused and ignored.
    fn report(&mut self, client: IpAddr, member: Option<Member>, now: Nanos) -> Option<Member> {
        let window = self.snapshot.failure_window;
        let ok = member.filter(|&m| self.recent.take(client, m, now, window));
        match ok {
            Some(m) => {
                self.counters.failures.inc();
                self.emit(ServiceEvent::Failure { member: m });
            }
            None => self.counters.failure_reports_refused.inc(),
        }
        ok
    }

    fn emit(&mut self, ev: ServiceEvent) {
        if self.events.len() < EVENTS_MAX {
            self.events.push(ev);
        } else {
            self.counters.failure_events_lost.inc();
        }
    }

    fn count_target(&self, m: Member) {
        let i = match m {
            Member::Service(s) => usize::from(s),
            Member::Peer(p) => self.snapshot.services.len() + usize::from(p),
            Member::Server(_) => return,
        };
        if let Some(c) = self.counters.by_target.get(i) {
            c.inc();
        }
    }
}

/// The outcome of a service packet that matched no session.
pub enum Outcome {
    /// A session was created: translate it as any inbound packet of it.
    Session(u32),
    /// The packet was rewritten into the appliance's answer, ready to leave.
    Answered,
}

/// A first packet to a service address (or a segment of a redirected TCP
/// exchange): decides and acts.
pub fn first_packet<B: PacketBuf>(
    nat: &mut NatShard,
    plane: &mut ServicePlane,
    topo: &Topology,
    now: Nanos,
    pkt: &mut B,
) -> Result<Outcome, DropReason> {
    let m = *pkt.meta();
    let service = m.service - 1;
    let mark = Mark::from_dscp(m.dscp);
    match m.flow.proto {
        proto::UDP => first_datagram(nat, plane, topo, now, pkt, service, mark),
        proto::TCP if m.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN => {
            let failed = match mark {
                Mark::Failed => {
                    let given = plane.given(m.flow.src, service, now).map(|g| g.member);
                    plane.report(m.flow.src, given, now)
                }
                _ => None,
            };
            match decide(plane, service, &m.flow, mark, failed)? {
                Decision::Serve(server) => {
                    serve(nat, plane, now, &m.flow, server).map(Outcome::Session)
                }
                Decision::Redirect {
                    member,
                    target,
                    persistence,
                } => {
                    remember(plane, m.flow.src, service, member, target, persistence, now);
                    let (seq, _) = seq_ack(pkt).ok_or(DropReason::TruncatedTcp)?;
                    let isn = plane.cookie(&m.flow);
                    answer_tcp(pkt, topo, TCP_SYN | TCP_ACK, isn, seq.wrapping_add(1), &[])?;
                    Ok(Outcome::Answered)
                }
                Decision::NoServer => Err(DropReason::NoServer),
            }
        }
        proto::TCP => redirected_segment(plane, topo, now, pkt, service),
        _ => Err(DropReason::NoSession),
    }
}

fn decide(
    plane: &mut ServicePlane,
    service: ServiceId,
    flow: &FlowKey,
    mark: Mark,
    failed: Option<Member>,
) -> Result<Decision, DropReason> {
    plane.counters.requests.inc();
    if mark == Mark::Plain {
        plane.counters.plain.inc();
    }
    let req = Request {
        service,
        client: flow.src,
        mark,
        failed,
    };
    let snap = plane.snapshot.clone();
    let d = snap.decide(&req, &mut plane.placed);
    match d {
        Decision::Serve(_) => plane.counters.served.inc(),
        Decision::Redirect { member, .. } => {
            plane.counters.redirected.inc();
            plane.count_target(member);
        }
        Decision::NoServer => plane.counters.no_server.inc(),
    }
    Ok(d)
}

fn serve(
    nat: &mut NatShard,
    plane: &ServicePlane,
    now: Nanos,
    flow: &FlowKey,
    server: ServerId,
) -> Result<u32, DropReason> {
    let s = plane
        .snapshot
        .servers
        .get(usize::from(server))
        .ok_or(DropReason::NoServer)?;
    nat.create_service(flow, server, s.addr, s.mac, now)
}

fn remember(
    plane: &mut ServicePlane,
    client: IpAddr,
    service: ServiceId,
    member: Member,
    target: SocketAddr,
    persistence: Persistence,
    now: Nanos,
) {
    plane.recent.remember(client, member, now);
    let slot = plane.slot(client, service);
    plane.given[slot] = Some(Given {
        client,
        service,
        member,
        header: HeaderRepr {
            redirect: true,
            persistence,
            failed: false,
            target,
        },
        at: now,
    });
}

fn first_datagram<B: PacketBuf>(
    nat: &mut NatShard,
    plane: &mut ServicePlane,
    topo: &Topology,
    now: Nanos,
    pkt: &mut B,
    service: ServiceId,
    mark: Mark,
) -> Result<Outcome, DropReason> {
    let m = *pkt.meta();
    let l4 = usize::from(m.l4_offset);
    let data_at = l4 + 8;
    // A failure resend carries the redirection it failed on ([57]): report
    // it, and take it off so the server gets the request alone.
    let mut failed = None;
    if mark == Mark::Failed {
        let payload = pkt.data().get(data_at..).unwrap_or_default();
        if let Ok((h, rest)) = header::parse_message(payload) {
            let used = payload.len() - rest.len();
            failed = plane.snapshot.member_at(h.target).or_else(|| {
                plane
                    .given(m.flow.src, service, now)
                    .filter(|g| g.header.target == h.target)
                    .map(|g| g.member)
            });
            strip(pkt, data_at, used)?;
        }
        failed = plane.report(m.flow.src, failed, now);
    }
    match decide(plane, service, &m.flow, mark, failed)? {
        Decision::Serve(server) => serve(nat, plane, now, &m.flow, server).map(Outcome::Session),
        Decision::Redirect {
            member,
            target,
            persistence,
        } => {
            remember(plane, m.flow.src, service, member, target, persistence, now);
            let h = HeaderRepr {
                redirect: true,
                persistence,
                failed: false,
                target,
            };
            answer_udp(pkt, topo, &h)?;
            Ok(Outcome::Answered)
        }
        Decision::NoServer => Err(DropReason::NoServer),
    }
}

/// A TCP segment to a service address that matches no session: part of a
/// redirected exchange (the client's ACK, request or FIN), or stray.
fn redirected_segment<B: PacketBuf>(
    plane: &mut ServicePlane,
    topo: &Topology,
    now: Nanos,
    pkt: &mut B,
    service: ServiceId,
) -> Result<Outcome, DropReason> {
    let m = *pkt.meta();
    if m.tcp_flags & TCP_RST != 0 || m.tcp_flags & TCP_ACK == 0 {
        return Err(DropReason::NoSession);
    }
    let (seq, ack) = seq_ack(pkt).ok_or(DropReason::TruncatedTcp)?;
    let isn = plane.cookie(&m.flow);
    let g = plane
        .given(m.flow.src, service, now)
        .ok_or(DropReason::NoSession)?;
    let (msg, n) = g.header.to_message();
    let len = payload_len(pkt) as u32 + u32::from(m.tcp_flags & TCP_FIN != 0);
    let acked = ack.wrapping_sub(isn.wrapping_add(1)) as usize;
    let end = seq.wrapping_add(len);
    if acked <= n {
        // The client has not got all of the message and our FIN: (re)send.
        let flags = TCP_ACK | TCP_FIN | TCP_PSH;
        answer_tcp(pkt, topo, flags, isn.wrapping_add(1), end, &msg[..n])?;
        return Ok(Outcome::Answered);
    }
    if acked == n + 1 {
        if m.tcp_flags & TCP_FIN != 0 {
            answer_tcp(pkt, topo, TCP_ACK, isn.wrapping_add(2 + n as u32), end, &[])?;
            return Ok(Outcome::Answered);
        }
        return Err(DropReason::RedirectDone);
    }
    Err(DropReason::NoSession)
}

fn seq_ack<B: PacketBuf>(pkt: &B) -> Option<(u32, u32)> {
    let l4 = usize::from(pkt.meta().l4_offset);
    let t = pkt.data().get(l4..l4 + 12)?;
    Some((
        u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
    ))
}

fn payload_len<B: PacketBuf>(pkt: &B) -> usize {
    let l4 = usize::from(pkt.meta().l4_offset);
    let d = pkt.data();
    let doff = d.get(l4 + 12).map_or(20, |b| usize::from(b >> 4) * 4);
    d.len().saturating_sub(l4 + doff)
}

/// Removes `n` bytes at `at` (a UDP payload's start) and fixes lengths and
/// checksums.
fn strip<B: PacketBuf>(pkt: &mut B, at: usize, n: usize) -> Result<(), DropReason> {
    let len = pkt.data().len();
    let d = pkt.data_mut();
    d.copy_within(at + n..len, at);
    if !pkt.set_len(len - n) {
        return Err(DropReason::TruncatedUdp);
    }
    finish(pkt)
}

/// Rewrites a classified inbound service datagram into the redirection
/// answer: from the service address back to the client, payload = message
/// + the start of the request ([63]).
fn answer_udp<B: PacketBuf>(
    pkt: &mut B,
    topo: &Topology,
    h: &HeaderRepr,
) -> Result<(), DropReason> {
    let m = *pkt.meta();
    let data_at = usize::from(m.l4_offset) + 8;
    let (msg, n) = h.to_message();
    let req = pkt.data().len().saturating_sub(data_at);
    let echo = req.min(MAX_UDP_REDIRECT - n);
    if !pkt.set_len(data_at + n + echo) {
        return Err(DropReason::TruncatedUdp);
    }
    let d = pkt.data_mut();
    d.copy_within(data_at..data_at + echo, data_at + n);
    d[data_at..data_at + n].copy_from_slice(&msg[..n]);
    reflect(pkt, topo)?;
    finish(pkt)
}

/// Rewrites a classified inbound TCP segment into the appliance's own
/// segment back to the client, with `payload`.
fn answer_tcp<B: PacketBuf>(
    pkt: &mut B,
    topo: &Topology,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Result<(), DropReason> {
    let l4 = usize::from(pkt.meta().l4_offset);
    if !pkt.set_len(l4 + 20 + payload.len()) {
        return Err(DropReason::TruncatedTcp);
    }
    let d = pkt.data_mut();
    let t = &mut d[l4..];
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    t[18..20].copy_from_slice(&[0, 0]);
    t[20..].copy_from_slice(payload);
    reflect(pkt, topo)?;
    pkt.meta_mut().tcp_flags = flags;
    finish(pkt)
}

/// Swaps the addresses and ports of a classified inbound packet, resets its
/// TTL, and points it back out of the port it came in on.
fn reflect<B: PacketBuf>(pkt: &mut B, topo: &Topology) -> Result<(), DropReason> {
    let m = *pkt.meta();
    let (l3, l4) = (usize::from(m.l3_offset), usize::from(m.l4_offset));
    let v6 = m.is_ipv6();
    let d = pkt.data_mut();
    let (src, dst, alen) = if v6 { (8, 24, 16) } else { (12, 16, 4) };
    let ip = d.get_mut(l3..l4).ok_or(DropReason::TruncatedIpv4)?;
    let mut a = [0u8; 16];
    a[..alen].copy_from_slice(&ip[src..src + alen]);
    ip.copy_within(dst..dst + alen, src);
    ip[dst..dst + alen].copy_from_slice(&a[..alen]);
    if v6 {
        ip[7] = 64;
    } else {
        ip[8] = 64;
    }
    let t = d.get_mut(l4..l4 + 4).ok_or(DropReason::TruncatedUdp)?;
    let (sp, dp) = ([t[0], t[1]], [t[2], t[3]]);
    t[0..2].copy_from_slice(&dp);
    t[2..4].copy_from_slice(&sp);
    let uplink = topo.uplinks.get(usize::from(m.uplink));
    let meta = pkt.meta_mut();
    meta.flow = m.flow.reversed();
    meta.direction = Direction::Outbound;
    meta.out_port = m.in_port;
    meta.next_hop_mac = uplink.map_or([0xff; 6], |u| u.next_hop_mac);
    meta.service = 0;
    Ok(())
}

/// Recomputes the IP length fields, the IPv4 header checksum and the whole
/// L4 checksum from the buffer (the appliance's own packets, and a first
/// datagram whose payload changed: rare, so no incremental update).
fn finish<B: PacketBuf>(pkt: &mut B) -> Result<(), DropReason> {
    let m = *pkt.meta();
    let (l3, l4) = (usize::from(m.l3_offset), usize::from(m.l4_offset));
    let v6 = m.is_ipv6();
    let d = pkt.data_mut();
    let total = d.len();
    let l4_len = total.checked_sub(l4).ok_or(DropReason::TruncatedIpv4)?;
    let p = m.flow.proto;
    let (src, dst) = if v6 {
        (&d[l3 + 8..l3 + 24], &d[l3 + 24..l3 + 40])
    } else {
        (&d[l3 + 12..l3 + 16], &d[l3 + 16..l3 + 20])
    };
    let pseudo = sum(dst, sum(src, 0)) + u32::from(p) + l4_len as u32;
    if v6 {
        d[l3 + 4..l3 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    } else {
        let ip_len = (total - l3) as u16;
        d[l3 + 2..l3 + 4].copy_from_slice(&ip_len.to_be_bytes());
        d[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
        let c = !fold(sum(&d[l3..l4], 0));
        d[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    let csum_at = match p {
        proto::UDP => {
            d[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            6
        }
        proto::TCP => 16,
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    d[l4 + csum_at..l4 + csum_at + 2].copy_from_slice(&[0, 0]);
    let mut c = !fold(sum(&d[l4..], pseudo));
    if p == proto::UDP && c == 0 {
        c = 0xFFFF;
    }
    d[l4 + csum_at..l4 + csum_at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
