//! Stage 1, classify: parse every frame with checked views, decide its
//! direction, flow key and owning NAT shard, or drop it with a reason.
//!
//! Frames come from the wire and are hostile: every length is checked
//! before a field is read, a frame that fails a check is dropped and its
//! [`DropReason`] counted, and nothing here panics or allocates. Ethernet
//! padding past the IP datagram is trimmed so later stages see the datagram.
//!
//! Shard choice (the DPVS/VPP design): an outbound packet goes to the shard
//! chosen by a stable hash of its inside endpoint (protocol, source address,
//! source port), so that all flows of one endpoint share a shard and can
//! share one mapping (endpoint-independent mapping, RFC 4787 REQ-1); an
//! inbound packet goes to the shard that owns its destination NAT port,
//! which needs no table lookup.
//!
//! ICMP errors (RFC 5508): an ICMPv4 destination unreachable, time exceeded
//! or parameter problem, or an ICMPv6 destination unreachable, packet too
//! big, time exceeded or parameter problem, belongs to the flow of the packet
//! it quotes. Classify parses that embedded packet, sets `inner_l3` /
//! `inner_l4`, and takes the embedded 5-tuple reversed as the flow, so that
//! direction and shard follow from it exactly as for the flow's own packets.

mod fast;
mod hygiene;
mod site;

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;

use crate::neighbour::{self, Neighbours};
use crate::packet::buf::{Direction, FragInfo, PacketBuf};
use crate::packet::burst::Burst;
use crate::packet::counter::StageCounters;
use crate::packet::drop::DropReason;
use crate::packet::flow::{proto, FlowHasher, FlowKey};
use crate::packet::time::Nanos;
use crate::topology::{PortRole, Topology};
use crate::wire::ethernet::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN};
use crate::wire::{checksum, icmp, ipv4, ipv6, tcp, udp};

pub struct Classify {
    topo: Arc<Topology>,
    /// The next hops' MACs, learned from ARP and neighbour discovery.
    neighbours: Arc<Neighbours>,
    /// Service addresses and the servers behind them (seed 000 [31]).
    services: Option<Arc<crate::redirect::service::ServiceMap>>,
    /// Shared with the management core, which only reads.
    pub counters: Arc<StageCounters>,
    /// The time ARP and ND messages are judged at (answer window, lock
    /// time); the runtime sets it once per burst with [`Classify::set_now`].
    now: Nanos,
    /// The rate limit of the ICMP classify originates (echo replies, time
    /// exceeded). Only this stage instance touches it.
    icmp_limit: RefCell<crate::stages::local::IcmpLimiter>,
    /// The topology's per-packet questions, precomputed.
    site: site::Site,
    /// Keys `PacketMeta::flow_hash`.
    hasher: FlowHasher,
}

/// What the L3/L4 parse found, before direction is decided.
struct Parsed {
    l3: usize,
    l4: usize,
    /// Length the frame should have (L2 + IP datagram), for trimming padding.
    frame_len: usize,
    /// Outer source and destination address (those of `flow` except for an
    /// ICMP error).
    src: IpAddr,
    dst: IpAddr,
    flow: FlowKey,
    tcp_flags: u8,
    /// ICMP error: frame offsets of the embedded IP and transport headers;
    /// 0 otherwise (as in `PacketMeta`).
    inner_l3: usize,
    inner_l4: usize,
    /// A fragment (see `fragments`); the default for every other packet.
    frag: FragInfo,
    /// From a LAN port: what the site says of `src` and `dst`.
    facts: site::Facts,
    /// From an uplink port: the uplink whose NAT address `dst` is.
    dst_nat: Option<u8>,
}

/// What the transport parse found. For an ICMP error, `flow` is already the
/// embedded 5-tuple reversed and the offsets are relative to the ICMP header.
struct L4Parsed {
    flow: FlowKey,
    tcp_flags: u8,
    inner: Option<(usize, usize)>,
}

impl Parsed {
    fn new(
        l3: usize,
        l4: usize,
        frame_len: usize,
        src: IpAddr,
        dst: IpAddr,
        p: L4Parsed,
    ) -> Parsed {
        let (inner_l3, inner_l4) = p.inner.map_or((0, 0), |(a, b)| (l4 + a, l4 + b));
        Parsed {
            l3,
            l4,
            frame_len,
            src,
            dst,
            flow: p.flow,
            tcp_flags: p.tcp_flags,
            inner_l3,
            inner_l4,
            frag: FragInfo::default(),
            facts: site::Facts::default(),
            dst_nat: None,
        }
    }

    fn is_icmp_error(&self) -> bool {
        self.inner_l3 != 0
    }
}

impl Classify {
    /// A classify stage with a neighbour table of its own (the uplinks'
    /// configured MACs; what it learns is seen by no one else). For tests
    /// and benches; the runtime uses [`Classify::with_neighbours`].
    pub fn new(topo: Arc<Topology>) -> Self {
        let neighbours = Arc::new(Neighbours::new(&topo.uplinks));
        Self::with_neighbours(topo, neighbours)
    }

    /// A classify stage that learns next hops' MACs into `neighbours`, the
    /// table built beside `topo` and shared with transmit.
    pub fn with_neighbours(topo: Arc<Topology>, neighbours: Arc<Neighbours>) -> Self {
        Classify {
            neighbours,
            services: None,
            counters: Arc::default(),
            now: Nanos::ZERO,
            icmp_limit: RefCell::new(crate::stages::local::IcmpLimiter::new(topo.icmp)),
            site: site::Site::new(&topo),
            hasher: FlowHasher::new(0),
            topo,
        }
    }

    /// Classifies packets to service addresses and from the servers behind
    /// them: both directions of a service flow go to the shard chosen by the
    /// client's address, since the service port cannot name a shard.
    pub fn set_services(&mut self, services: Arc<crate::redirect::service::ServiceMap>) {
        self.services = Some(services);
    }

    /// Keys the hash classify stores in `PacketMeta::flow_hash` (the
    /// session index that reuses it must use the same seed). Seed 0 until
    /// this is called.
    pub fn set_flow_hasher(&mut self, hasher: FlowHasher) {
        self.hasher = hasher;
    }

    /// Sets the time the next bursts arrived at (the runtime's clock, the
    /// one the neighbour solicitor records its requests with).
    pub fn set_now(&mut self, now: Nanos) {
        self.now = now;
    }

    /// Moves classified packets from `input` to `output` (until `input` is
    /// empty or `output` is full), dropping and counting the rest.
    pub fn process<B: PacketBuf>(&mut self, input: &mut Burst<B>, output: &mut Burst<B>) {
        let n = input.len().min(output.remaining_capacity());
        self.counters.packets.add(n as u64);
        for mut pkt in input.drain(..n) {
            match self.classify(&mut pkt) {
                Ok(()) => output.push(pkt),
                Err(reason) => self.counters.count_drop(reason),
            }
        }
    }

    /// Classifies one packet in place, filling its metadata: the common
    /// packet by the fast path (`fast`), every other by the general one.
    #[inline]
    pub fn classify<B: PacketBuf>(&self, pkt: &mut B) -> Result<(), DropReason> {
        if self.classify_fast(pkt) {
            return Ok(());
        }
        self.classify_general(pkt)
    }

    /// The general path: every packet, every check in order, every drop.
    fn classify_general<B: PacketBuf>(&self, pkt: &mut B) -> Result<(), DropReason> {
        let in_port = pkt.meta().in_port;
        let csum_good = pkt.meta().rx_ip_checksum_good;
        let port = self
            .topo
            .ports
            .get(in_port as usize)
            .ok_or(DropReason::UnknownPort)?;
        let (l2, vlan, ethertype) = parse_l2(pkt.data())?;
        if vlan != port.vlan {
            return Err(DropReason::UnexpectedVlan);
        }
        if !self.for_us(pkt.data(), in_port, port, ethertype) {
            return Err(DropReason::NotForUs);
        }
        if ethertype == ETHERTYPE_ARP {
            let a = neighbour::answer_arp(
                pkt.data_mut(),
                l2,
                in_port,
                &self.topo,
                &self.neighbours,
                self.now,
            );
            return self.local(pkt, a, None, vlan);
        }
        let mut parsed = match parse_l3_l4(pkt.data(), l2, ethertype == ETHERTYPE_IPV4, csum_good) {
            Err(DropReason::NeighborDiscovery) => {
                let mut len = 0;
                let a = neighbour::answer_nd(
                    pkt.data_mut(),
                    l2,
                    in_port,
                    &self.topo,
                    &self.neighbours,
                    &mut len,
                    self.now,
                );
                return self.local(pkt, a, Some(len), vlan);
            }
            r => r?,
        };
        match &port.role {
            PortRole::Lan => parsed.facts = self.site.facts(parsed.src, parsed.dst),
            PortRole::Uplink(_) => {
                parsed.dst_nat = self.topo.nat_addr_uplink.get(&parsed.dst).copied();
            }
            PortRole::Unused => {}
        }
        if let Some(r) = self.local_ip(pkt, &parsed, in_port, port) {
            return r;
        }
        if parsed.frag.fragment {
            self.fragment_hairpin(&parsed, &port.role)?;
            if parsed.frag.is_later() {
                return self.later_fragment(pkt, &parsed, &port.role, vlan);
            }
        }
        let service = match (&self.services, &port.role) {
            (Some(s), PortRole::Uplink(_) | PortRole::Lan) if !parsed.is_icmp_error() => {
                s.classify(&parsed.flow, port.role == PortRole::Lan, self.topo.shards)
            }
            _ => None,
        };
        let (direction, uplink, shard, service) = match (&port.role, service) {
            (PortRole::Lan, Some((_, shard, _))) => {
                let (d, u, _) = self.outbound(&parsed)?;
                (d, u, shard, 0)
            }
            (PortRole::Uplink(ids), Some((uplink, shard, id))) if ids.contains(&uplink) => {
                (Direction::Inbound, uplink, shard, id)
            }
            (PortRole::Lan, None) => {
                let (d, u, s) = self.outbound(&parsed)?;
                (d, u, s, 0)
            }
            (PortRole::Uplink(ids), _) => {
                let (d, u, s) = self.inbound(&parsed, ids)?;
                (d, u, s, 0)
            }
            (PortRole::Unused, _) => return Err(DropReason::UnknownPort),
        };
        let dscp = match pkt.data().get(parsed.l3..parsed.l3 + 2) {
            Some(ip) if service != 0 => {
                if ethertype == ETHERTYPE_IPV4 {
                    ipv4::dscp(ip)
                } else {
                    ipv6::dscp(ip)
                }
            }
            _ => 0,
        };
        pkt.set_len(parsed.frame_len);
        let m = pkt.meta_mut();
        m.vlan = vlan;
        m.l3_offset = parsed.l3 as u16;
        m.l4_offset = parsed.l4 as u16;
        m.flow = parsed.flow;
        m.tcp_flags = parsed.tcp_flags;
        m.inner_l3 = parsed.inner_l3 as u16;
        m.inner_l4 = parsed.inner_l4 as u16;
        m.direction = direction;
        m.uplink = uplink;
        m.shard = shard;
        m.service = service;
        m.dscp = dscp;
        m.flow_hash = self.hasher.hash(&parsed.flow);
        if parsed.frag.fragment {
            fragments::mark_first(m, &parsed, self.topo.shards);
        }
        Ok(())
    }

    /// An ARP or neighbour discovery frame answered (or consumed) by
    /// [`neighbour`]: the answer leaves by the port it came in on.
    fn local<B: PacketBuf>(
        &self,
        pkt: &mut B,
        a: neighbour::Answer,
        len: Option<usize>,
        vlan: Option<u16>,
    ) -> Result<(), DropReason> {
        match a {
            neighbour::Answer::Consumed(r) => Err(r),
            neighbour::Answer::Reply => {
                if let Some(len) = len {
                    if !pkt.set_len(len) {
                        return Err(DropReason::NdMalformed);
                    }
                }
                let m = pkt.meta_mut();
                m.direction = Direction::Local;
                m.out_port = m.in_port;
                m.vlan = vlan;
                m.shard = 0;
                m.inner_l3 = 0;
                m.inner_l4 = 0;
                m.race = 0;
                Ok(())
            }
        }
    }

    fn outbound(&self, p: &Parsed) -> Result<(Direction, u8, u16), DropReason> {
        let s = &self.site;
        let flow = &p.flow;
        // `facts` are of the outer addresses, the flow's except in an ICMP
        // error (whose flow is the quoted packet's, reversed).
        let f = if p.is_icmp_error() {
            s.facts(flow.src, flow.dst)
        } else {
            p.facts
        };
        if !f.src_lan {
            return Err(DropReason::SpoofedSource);
        }
        if f.dst_gateway || f.dst_lan {
            return Err(DropReason::LocalDestination);
        }
        // An error about an inbound packet may come from any LAN host (a
        // router on the way to the client), but from no one else: its source
        // is rewritten to a NAT address, which must not launder a spoofed
        // sender.
        if p.is_icmp_error() && !p.facts.src_lan {
            return Err(DropReason::IcmpErrorMismatch);
        }
        let shard = s.shard_of(flow.inside_endpoint_hash());
        Ok((Direction::Outbound, 0, shard))
    }

    fn inbound(&self, p: &Parsed, port_uplinks: &[u8]) -> Result<(Direction, u8, u16), DropReason> {
        let t = &self.topo;
        let flow = &p.flow;
        let dst_nat = if p.is_icmp_error() {
            t.nat_addr_uplink.get(&flow.dst).copied()
        } else {
            p.dst_nat
        };
        let uplink = match dst_nat {
            Some(u) if port_uplinks.contains(&u) => u,
            _ => return Err(DropReason::NotNatAddress),
        };
        let shard = t
            .shard_of_nat_port(flow.dst_port)
            .ok_or(DropReason::PortOutOfRange)?;
        // An error goes back to the sender of the packet it quotes, i.e. to
        // the embedded source. Translate rewrites both to the client, so an
        // error addressed elsewhere would reach the client about a packet
        // that was never addressed to it (RFC 5508 section 4).
        if p.is_icmp_error() && p.dst != flow.dst {
            return Err(DropReason::IcmpErrorMismatch);
        }
        Ok((Direction::Inbound, uplink, shard))
    }
}

/// Parses the Ethernet header and an optional 802.1Q tag. Returns the L2
/// length, the VLAN id and the (IPv4 or IPv6) EtherType. ARP and unknown
/// EtherTypes are errors here.
fn parse_l2(d: &[u8]) -> Result<(usize, Option<u16>, u16), DropReason> {
    if d.is_empty() {
        return Err(DropReason::Empty);
    }
    let mut ethertype = ethernet::ethertype(d).ok_or(DropReason::TruncatedEthernet)?;
    if d.len() < ethernet::HEADER_LEN {
        return Err(DropReason::TruncatedEthernet);
    }
    let mut l2 = ethernet::HEADER_LEN;
    let mut vlan = None;
    if ethertype == ETHERTYPE_VLAN {
        let id = ethernet::vlan_id(d).ok_or(DropReason::TruncatedVlan)?;
        ethertype = ethernet::inner_ethertype(d).ok_or(DropReason::TruncatedVlan)?;
        vlan = hygiene::vlan_of(id);
        l2 += ethernet::VLAN_TAG_LEN;
    }
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 | ETHERTYPE_ARP => Ok((l2, vlan, ethertype)),
        _ => Err(DropReason::UnknownEthertype),
    }
}

/// `csum_good`: the port verified the IPv4 header checksum.
fn parse_l3_l4(d: &[u8], l3: usize, is_v4: bool, csum_good: bool) -> Result<Parsed, DropReason> {
    let ip = d.get(l3..).unwrap_or_default();
    let version = ip.first().map(|b| b >> 4);
    if is_v4 {
        if ip.len() < ipv4::MIN_HEADER_LEN {
            return Err(DropReason::TruncatedIpv4);
        }
        if version != Some(4) {
            return Err(DropReason::BadIpVersion);
        }
        let ihl = ipv4::header_len(ip);
        if ihl < ipv4::MIN_HEADER_LEN || ihl > ip.len() {
            return Err(DropReason::BadIhl);
        }
        let total = ipv4::total_len(ip);
        if total < ihl || total > ip.len() {
            return Err(DropReason::BadTotalLength);
        }
        if !csum_good {
            let valid = match ip.first_chunk::<20>() {
                Some(h) if ihl == 20 => checksum::is_valid_20(h),
                _ => checksum::is_valid(&ip[..ihl]),
            };
            if !valid {
                return Err(DropReason::BadIpv4Checksum);
            }
        }
        if ipv4::flags_frag(ip) & ipv4::FRAGMENT_MASK != 0 {
            // More-fragments set or a non-zero offset.
            return fragments::parse_v4(ip, l3, ihl, total);
        }
        let src = IpAddr::V4(ipv4::src(ip));
        let dst = IpAddr::V4(ipv4::dst(ip));
        let l4 = parse_l4(&ip[ihl..total], ipv4::proto(ip), src, dst, false)?;
        Ok(Parsed::new(l3, l3 + ihl, l3 + total, src, dst, l4))
    } else {
        if ip.len() < ipv6::HEADER_LEN {
            return Err(DropReason::TruncatedIpv6);
        }
        if version != Some(6) {
            return Err(DropReason::BadIpVersion);
        }
        let end = ipv6::HEADER_LEN + ipv6::payload_len(ip);
        if end > ip.len() {
            return Err(DropReason::BadPayloadLength);
        }
        let next = ipv6::next_header(ip);
        if next == ipv6::NEXT_FRAGMENT {
            return fragments::parse_v6(ip, l3, end);
        }
        if ipv6::EXT_HEADERS.contains(&next) {
            return Err(DropReason::Ipv6ExtensionHeader);
        }
        let src = IpAddr::V6(ipv6::src(ip));
        let dst = IpAddr::V6(ipv6::dst(ip));
        let l4 = parse_l4(&ip[ipv6::HEADER_LEN..end], next, src, dst, true)?;
        Ok(Parsed::new(
            l3,
            l3 + ipv6::HEADER_LEN,
            l3 + end,
            src,
            dst,
            l4,
        ))
    }
}

/// Parses the transport header in `l4` (exactly the IP payload).
fn parse_l4(
    l4: &[u8],
    protocol: u8,
    src: IpAddr,
    dst: IpAddr,
    v6: bool,
) -> Result<L4Parsed, DropReason> {
    let mut flow = FlowKey {
        src,
        dst,
        src_port: 0,
        dst_port: 0,
        proto: protocol,
    };
    let mut flags = 0;
    match protocol {
        proto::TCP => {
            if l4.len() < tcp::MIN_HEADER_LEN {
                return Err(DropReason::TruncatedTcp);
            }
            let doff = tcp::header_len(l4);
            if doff < tcp::MIN_HEADER_LEN || doff > l4.len() {
                return Err(DropReason::TruncatedTcp);
            }
            flow.src_port = tcp::src_port(l4);
            flow.dst_port = tcp::dst_port(l4);
            flags = tcp::flags(l4);
        }
        proto::UDP => {
            if l4.len() < udp::HEADER_LEN {
                return Err(DropReason::TruncatedUdp);
            }
            let ulen = udp::len(l4);
            if ulen < udp::HEADER_LEN || ulen > l4.len() {
                return Err(DropReason::TruncatedUdp);
            }
            flow.src_port = udp::src_port(l4);
            flow.dst_port = udp::dst_port(l4);
        }
        proto::ICMP | proto::ICMPV6 if (protocol == proto::ICMPV6) == v6 => {
            if l4.len() < icmp::HEADER_LEN {
                return Err(DropReason::TruncatedIcmp);
            }
            match (v6, icmp::kind(l4)) {
                (true, t) if icmp::V6_NDISC.contains(&t) => {
                    return Err(DropReason::NeighborDiscovery)
                }
                (_, t) if is_translated_error(v6, t) => {
                    return parse_icmp_error(l4, v6);
                }
                _ => echo_ports(&mut flow, l4, v6)?,
            }
        }
        _ => return Err(DropReason::UnsupportedProtocol),
    }
    Ok(L4Parsed {
        flow,
        tcp_flags: flags,
        inner: None,
    })
}

/// Sets the port of an ICMP echo request or reply in `icmp` (at least
/// [`icmp::HEADER_LEN`] bytes) from its identifier; other types are errors.
fn echo_ports(flow: &mut FlowKey, msg: &[u8], v6: bool) -> Result<(), DropReason> {
    if msg.len() < icmp::HEADER_LEN {
        return Err(DropReason::TruncatedIcmp);
    }
    let ident = icmp::ident(msg);
    match (v6, icmp::kind(msg)) {
        // Echo request: the identifier is the "source port".
        (false, icmp::V4_ECHO_REQUEST) | (true, icmp::V6_ECHO_REQUEST) => flow.src_port = ident,
        // Echo reply: the identifier is the "destination port".
        (false, icmp::V4_ECHO_REPLY) | (true, icmp::V6_ECHO_REPLY) => flow.dst_port = ident,
        _ => return Err(DropReason::UnsupportedIcmp),
    }
    Ok(())
}

/// The ICMP error types translated (RFC 5508 section 4): ICMPv4 destination
/// unreachable, time exceeded, parameter problem (RFC 792); ICMPv6
/// destination unreachable, packet too big, time exceeded, parameter problem
/// (RFC 4443). Source quench and redirect are not forwarded across a NAT.
fn is_translated_error(v6: bool, icmp_type: u8) -> bool {
    if v6 {
        matches!(icmp_type, 1..=4)
    } else {
        matches!(icmp_type, 3 | 11 | 12)
    }
}

/// Every ICMP error type, translated or not: ICMPv4 3, 4, 5, 11, 12 (RFC
/// 1122 3.2.2) and ICMPv6 0..=127 (RFC 4443 2.1).
fn is_any_error(v6: bool, icmp_type: u8) -> bool {
    if v6 {
        icmp_type < 128
    } else {
        matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
    }
}

/// Parses the packet embedded in the ICMP error `icmp` (the whole ICMP
/// message, header included, at least [`icmp::HEADER_LEN`] bytes) and
/// returns its 5-tuple reversed, with the offsets of the embedded headers
/// relative to `icmp`.
///
/// The quoted packet is whatever the erroring node kept of it: at least its
/// IP header and 8 transport bytes (RFC 792; RFC 4443 2.4 (c) asks for as
/// much as fits in 1280 bytes), so its length fields may claim more than is
/// present and are not checked. Its IPv4 header checksum is not verified
/// either: translate updates it incrementally, which keeps a wrong one wrong.
fn parse_icmp_error(msg: &[u8], v6: bool) -> Result<L4Parsed, DropReason> {
    let inner_l3 = icmp::HEADER_LEN;
    let ip = msg.get(inner_l3..).unwrap_or_default();
    let malformed = DropReason::IcmpErrorMalformed;
    let (ihl, protocol, src, dst) = if v6 {
        if ip.len() < ipv6::HEADER_LEN || ipv6::version(ip) != 6 {
            return Err(malformed);
        }
        let next = ipv6::next_header(ip);
        if next == ipv6::NEXT_FRAGMENT {
            return Err(DropReason::Fragment);
        }
        if ipv6::EXT_HEADERS.contains(&next) {
            return Err(DropReason::Ipv6ExtensionHeader);
        }
        let src = IpAddr::V6(ipv6::src(ip));
        let dst = IpAddr::V6(ipv6::dst(ip));
        (ipv6::HEADER_LEN, next, src, dst)
    } else {
        if ip.len() < ipv4::MIN_HEADER_LEN || ipv4::version(ip) != 4 {
            return Err(malformed);
        }
        let ihl = ipv4::header_len(ip);
        if ihl < ipv4::MIN_HEADER_LEN || ihl > ip.len() {
            return Err(malformed);
        }
        // A first fragment quotes its transport header; a later one has no
        // ports to find the flow by.
        if ipv4::flags_frag(ip) & ipv4::FRAG_OFFSET_MASK != 0 {
            return Err(DropReason::Fragment);
        }
        let src = IpAddr::V4(ipv4::src(ip));
        let dst = IpAddr::V4(ipv4::dst(ip));
        (ihl, ipv4::proto(ip), src, dst)
    };
    let inner_l4 = inner_l3 + ihl;
    // Ports, echo identifier and type all sit in the first 8 bytes.
    let l4 = msg.get(inner_l4..inner_l4 + 8).ok_or(malformed)?;
    let mut flow = FlowKey {
        src,
        dst,
        src_port: 0,
        dst_port: 0,
        proto: protocol,
    };
    match protocol {
        // The ports sit at the same offsets in TCP and UDP.
        proto::TCP | proto::UDP => {
            flow.src_port = udp::src_port(l4);
            flow.dst_port = udp::dst_port(l4);
        }
        proto::ICMP | proto::ICMPV6 if (protocol == proto::ICMPV6) == v6 => {
            // No error is ever sent about an error (RFC 1122 3.2.2, RFC 4443
            // 2.4 (e)), so one that quotes an error is forged or broken.
            if is_any_error(v6, icmp::kind(l4)) {
                return Err(DropReason::IcmpErrorNested);
            }
            echo_ports(&mut flow, l4, v6)?;
        }
        _ => return Err(DropReason::UnsupportedProtocol),
    }
    Ok(L4Parsed {
        flow: flow.reversed(),
        tcp_flags: 0,
        inner: Some((inner_l3, inner_l4)),
    })
}

mod fragments;
#[cfg(test)]
mod tests;
