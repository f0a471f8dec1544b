//! Stage 1, classify: parse every frame with checked views, decide its
//! direction, flow key and owning NAT shard, or drop it with a reason.
//!
//! Frames come from the wire and are hostile: every length is checked
//! before a field is read, a frame that fails a check is dropped and its
//! [`DropReason`] counted, and nothing here panics or allocates. Ethernet
//! padding past the IP datagram is trimmed so later stages see the datagram.
//!
//! Shard choice (the DPVS/VPP design): an outbound packet goes to the shard
//! chosen by a stable hash of its 5-tuple; an inbound packet goes to the shard
//! that owns its destination NAT port, which needs no table lookup.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::buf::{Direction, PacketBuf};
use crate::burst::Burst;
use crate::checksum;
use crate::counter::StageCounters;
use crate::drop::DropReason;
use crate::flow::{proto, FlowKey};
use crate::topology::{PortRole, Topology};
use crate::wire::*;

/// IPv6 next-header values that are extension headers.
const IPV6_EXT_HEADERS: [u8; 6] = [0, 43, 44, 51, 60, 135];
const IPV6_FRAGMENT: u8 = 44;

pub struct Classify {
    topo: Arc<Topology>,
    /// Shared with the management core, which only reads.
    pub counters: Arc<StageCounters>,
}

/// What the L3/L4 parse found, before direction is decided.
struct Parsed {
    l3: usize,
    l4: usize,
    /// Length the frame should have (L2 + IP datagram), for trimming padding.
    frame_len: usize,
    flow: FlowKey,
    tcp_flags: u8,
}

impl Classify {
    pub fn new(topo: Arc<Topology>) -> Self {
        Classify { topo, counters: Arc::default() }
    }

    /// Moves classified packets from `input` to `output` (until `input` is
    /// empty or `output` is full), dropping and counting the rest.
    pub fn process<B: PacketBuf>(&mut self, input: &mut Burst<B>, output: &mut Burst<B>) {
        let n = input.len().min(output.remaining_capacity());
        for mut pkt in input.drain(..n) {
            self.counters.packets.inc();
            match self.classify(&mut pkt) {
                Ok(()) => output.push(pkt),
                Err(reason) => self.counters.count_drop(reason),
            }
        }
    }

    /// Classifies one packet in place, filling its metadata.
    pub fn classify<B: PacketBuf>(&self, pkt: &mut B) -> Result<(), DropReason> {
        let in_port = pkt.meta().in_port;
        let port = self.topo.ports.get(in_port as usize).ok_or(DropReason::UnknownPort)?;
        let (l2, vlan, ethertype) = parse_l2(pkt.data())?;
        if vlan != port.vlan {
            return Err(DropReason::UnexpectedVlan);
        }
        let parsed = parse_l3_l4(pkt.data(), l2, ethertype == ETHERTYPE_IPV4)?;
        let (direction, uplink, shard) = match &port.role {
            PortRole::Lan => self.outbound(&parsed.flow)?,
            PortRole::Uplink(ids) => self.inbound(&parsed.flow, ids)?,
            PortRole::Unused => return Err(DropReason::UnknownPort),
        };
        pkt.set_len(parsed.frame_len);
        let m = pkt.meta_mut();
        m.vlan = vlan;
        m.l3_offset = parsed.l3 as u16;
        m.l4_offset = parsed.l4 as u16;
        m.flow = parsed.flow;
        m.tcp_flags = parsed.tcp_flags;
        m.direction = direction;
        m.uplink = uplink;
        m.shard = shard;
        Ok(())
    }

    fn outbound(&self, flow: &FlowKey) -> Result<(Direction, u8, u16), DropReason> {
        let t = &self.topo;
        if !t.is_lan_source(flow.src) {
            return Err(DropReason::SpoofedSource);
        }
        if t.lan_addrs.contains(&flow.dst) || t.is_lan_source(flow.dst) {
            return Err(DropReason::LocalDestination);
        }
        let shard = (flow.stable_hash() % u32::from(t.shards)) as u16;
        Ok((Direction::Outbound, 0, shard))
    }

    fn inbound(&self, flow: &FlowKey, port_uplinks: &[u8]) -> Result<(Direction, u8, u16), DropReason> {
        let t = &self.topo;
        let uplink = match t.nat_addr_uplink.get(&flow.dst) {
            Some(u) if port_uplinks.contains(u) => *u,
            _ => return Err(DropReason::NotNatAddress),
        };
        let shard = t.shard_of_nat_port(flow.dst_port).ok_or(DropReason::PortOutOfRange)?;
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
    let mut ethertype = be16(d, 12).ok_or(DropReason::TruncatedEthernet)?;
    if d.len() < ETH_HEADER_LEN {
        return Err(DropReason::TruncatedEthernet);
    }
    let mut l2 = ETH_HEADER_LEN;
    let mut vlan = None;
    if ethertype == ETHERTYPE_VLAN {
        let tci = be16(d, 14).ok_or(DropReason::TruncatedVlan)?;
        ethertype = be16(d, 16).ok_or(DropReason::TruncatedVlan)?;
        vlan = Some(tci & 0x0FFF);
        l2 += VLAN_TAG_LEN;
    }
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Ok((l2, vlan, ethertype)),
        ETHERTYPE_ARP => Err(DropReason::ArpUnhandled),
        _ => Err(DropReason::UnknownEthertype),
    }
}

fn parse_l3_l4(d: &[u8], l3: usize, is_v4: bool) -> Result<Parsed, DropReason> {
    let ip = d.get(l3..).unwrap_or_default();
    let version = ip.first().map(|b| b >> 4);
    if is_v4 {
        if ip.len() < IPV4_MIN_HEADER_LEN {
            return Err(DropReason::TruncatedIpv4);
        }
        if version != Some(4) {
            return Err(DropReason::BadIpVersion);
        }
        let ihl = usize::from(ip[0] & 0x0F) * 4;
        if ihl < IPV4_MIN_HEADER_LEN || ihl > ip.len() {
            return Err(DropReason::BadIhl);
        }
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if total < ihl || total > ip.len() {
            return Err(DropReason::BadTotalLength);
        }
        if checksum::checksum(&ip[..ihl]) != 0 {
            return Err(DropReason::BadIpv4Checksum);
        }
        let frag = u16::from_be_bytes([ip[6], ip[7]]);
        if frag & 0x3FFF != 0 {
            // More-fragments set or a non-zero offset.
            return Err(DropReason::Fragment);
        }
        let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
        let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
        let (flow, tcp_flags) = parse_l4(&ip[ihl..total], ip[9], src, dst, false)?;
        Ok(Parsed { l3, l4: l3 + ihl, frame_len: l3 + total, flow, tcp_flags })
    } else {
        if ip.len() < IPV6_HEADER_LEN {
            return Err(DropReason::TruncatedIpv6);
        }
        if version != Some(6) {
            return Err(DropReason::BadIpVersion);
        }
        let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        let end = IPV6_HEADER_LEN + payload;
        if end > ip.len() {
            return Err(DropReason::BadPayloadLength);
        }
        let next = ip[6];
        if next == IPV6_FRAGMENT {
            return Err(DropReason::Fragment);
        }
        if IPV6_EXT_HEADERS.contains(&next) {
            return Err(DropReason::Ipv6ExtensionHeader);
        }
        let mut a = [0u8; 16];
        a.copy_from_slice(&ip[8..24]);
        let src = IpAddr::V6(Ipv6Addr::from(a));
        a.copy_from_slice(&ip[24..40]);
        let dst = IpAddr::V6(Ipv6Addr::from(a));
        let (flow, tcp_flags) = parse_l4(&ip[IPV6_HEADER_LEN..end], next, src, dst, true)?;
        Ok(Parsed { l3, l4: l3 + IPV6_HEADER_LEN, frame_len: l3 + end, flow, tcp_flags })
    }
}

/// Parses the transport header in `l4` (exactly the IP payload).
fn parse_l4(l4: &[u8], protocol: u8, src: IpAddr, dst: IpAddr, v6: bool) -> Result<(FlowKey, u8), DropReason> {
    let mut flow = FlowKey { src, dst, src_port: 0, dst_port: 0, proto: protocol };
    let mut flags = 0;
    match protocol {
        proto::TCP => {
            if l4.len() < TCP_MIN_HEADER_LEN {
                return Err(DropReason::TruncatedTcp);
            }
            let doff = usize::from(l4[12] >> 4) * 4;
            if doff < TCP_MIN_HEADER_LEN || doff > l4.len() {
                return Err(DropReason::TruncatedTcp);
            }
            flow.src_port = u16::from_be_bytes([l4[0], l4[1]]);
            flow.dst_port = u16::from_be_bytes([l4[2], l4[3]]);
            flags = l4[13];
        }
        proto::UDP => {
            if l4.len() < UDP_HEADER_LEN {
                return Err(DropReason::TruncatedUdp);
            }
            let ulen = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
            if ulen < UDP_HEADER_LEN || ulen > l4.len() {
                return Err(DropReason::TruncatedUdp);
            }
            flow.src_port = u16::from_be_bytes([l4[0], l4[1]]);
            flow.dst_port = u16::from_be_bytes([l4[2], l4[3]]);
        }
        proto::ICMP | proto::ICMPV6 if (protocol == proto::ICMPV6) == v6 => {
            if l4.len() < ICMP_HEADER_LEN {
                return Err(DropReason::TruncatedIcmp);
            }
            let ident = u16::from_be_bytes([l4[4], l4[5]]);
            match (v6, l4[0]) {
                // Echo request: the identifier is the "source port".
                (false, 8) | (true, 128) => flow.src_port = ident,
                // Echo reply: the identifier is the "destination port".
                (false, 0) | (true, 129) => flow.dst_port = ident,
                (true, 133..=137) => return Err(DropReason::NeighborDiscovery),
                _ => return Err(DropReason::UnsupportedIcmp),
            }
        }
        _ => return Err(DropReason::UnsupportedProtocol),
    }
    Ok((flow, flags))
}
