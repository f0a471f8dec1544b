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
        Classify {
            topo,
            counters: Arc::default(),
        }
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
        let port = self
            .topo
            .ports
            .get(in_port as usize)
            .ok_or(DropReason::UnknownPort)?;
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
        let shard = (flow.inside_endpoint_hash() % u32::from(t.shards)) as u16;
        Ok((Direction::Outbound, 0, shard))
    }

    fn inbound(
        &self,
        flow: &FlowKey,
        port_uplinks: &[u8],
    ) -> Result<(Direction, u8, u16), DropReason> {
        let t = &self.topo;
        let uplink = match t.nat_addr_uplink.get(&flow.dst) {
            Some(u) if port_uplinks.contains(u) => *u,
            _ => return Err(DropReason::NotNatAddress),
        };
        let shard = t
            .shard_of_nat_port(flow.dst_port)
            .ok_or(DropReason::PortOutOfRange)?;
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
        Ok(Parsed {
            l3,
            l4: l3 + ihl,
            frame_len: l3 + total,
            flow,
            tcp_flags,
        })
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
        Ok(Parsed {
            l3,
            l4: l3 + IPV6_HEADER_LEN,
            frame_len: l3 + end,
            flow,
            tcp_flags,
        })
    }
}

/// Parses the transport header in `l4` (exactly the IP payload).
fn parse_l4(
    l4: &[u8],
    protocol: u8,
    src: IpAddr,
    dst: IpAddr,
    v6: bool,
) -> Result<(FlowKey, u8), DropReason> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::HeapBuf;
    use crate::test_frames::*;
    use proptest::prelude::*;
    use smoltcp::wire::TcpControl;

    /// A UDP query from the client 10.0.0.2:40000 to 203.0.113.5:53.
    #[rustfmt::skip]
    const UDP4_FRAME: [u8; 50] = [
        // Ethernet: destination (the LAN port), source (the client)
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x02, 0x00, 0x00, 0x00, 0x00, 0x10,
        // EtherType IPv4
        0x08, 0x00,
        // IPv4 (offset 14): version 4 + IHL 5, DSCP/ECN, total length 36
        0x45, 0x00, 0x00, 0x24,
        // identification, flags DF + fragment offset 0
        0x12, 0x34, 0x40, 0x00,
        // TTL 64, protocol 17 (UDP), header checksum
        0x40, 0x11, 0xe2, 0x8d,
        // source 10.0.0.2
        0x0a, 0x00, 0x00, 0x02,
        // destination 203.0.113.5
        0xcb, 0x00, 0x71, 0x05,
        // UDP (offset 34): source port 40000, destination port 53
        0x9c, 0x40, 0x00, 0x35,
        // length 16, checksum
        0x00, 0x10, 0x0d, 0x3d,
        // payload
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    ];
    const L3: usize = 14;

    fn stage(shards: u16) -> Classify {
        Classify::new(site(shards))
    }

    /// Classifies `frame` received on `in_port`.
    fn run(c: &Classify, frame: &[u8], in_port: u16) -> Result<HeapBuf, DropReason> {
        let mut b = buf(frame, in_port);
        c.classify(&mut b).map(|()| b)
    }

    fn drop_reason(frame: &[u8], in_port: u16) -> DropReason {
        match run(&stage(4), frame, in_port) {
            Ok(b) => panic!("classified: {:?}", b.meta()),
            Err(r) => r,
        }
    }

    /// The fixture with `edit` applied.
    fn udp4(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut f = UDP4_FRAME.to_vec();
        edit(&mut f);
        f
    }

    fn key(src: &str, dst: &str, src_port: u16, dst_port: u16, proto: u8) -> FlowKey {
        FlowKey {
            src: ip(src),
            dst: ip(dst),
            src_port,
            dst_port,
            proto,
        }
    }

    #[test]
    fn fixture_is_what_smoltcp_sees() {
        assert_checksums_valid(&UDP4_FRAME, L3);
        assert_eq!(addrs(&UDP4_FRAME, L3), (ip("10.0.0.2"), ip("203.0.113.5")));
    }

    #[test]
    fn outbound_udp4_fixture() {
        let c = stage(4);
        let b = run(&c, &UDP4_FRAME, LAN_PORT).unwrap();
        let m = b.meta();
        let flow = key("10.0.0.2", "203.0.113.5", 40000, 53, proto::UDP);
        assert_eq!(m.direction, Direction::Outbound);
        assert_eq!(m.flow, flow);
        assert_eq!(m.shard, (flow.inside_endpoint_hash() % 4) as u16);
        assert_eq!((m.l3_offset, m.l4_offset), (14, 34));
        assert_eq!((m.vlan, m.tcp_flags), (None, 0));
        assert_eq!(
            b.data(),
            &UDP4_FRAME[..],
            "nothing to trim, nothing rewritten"
        );
    }

    #[test]
    fn outbound_tcp_icmp_ipv4_and_ipv6() {
        let c = stage(4);
        let cases = [
            (
                from_client("10.0.0.2", "203.0.113.5", tcp(40000, 443, TcpControl::Syn)),
                key("10.0.0.2", "203.0.113.5", 40000, 443, proto::TCP),
                0x02,
                34,
            ),
            (
                from_client(
                    "10.0.0.2",
                    "203.0.113.5",
                    L4::EchoRequest {
                        ident: 0x1234,
                        seq_no: 1,
                    },
                ),
                key("10.0.0.2", "203.0.113.5", 0x1234, 0, proto::ICMP),
                0,
                34,
            ),
            (
                from_client(
                    "fd00::2",
                    "2001:db8:ffff::5",
                    tcp(40001, 80, TcpControl::Syn),
                ),
                key("fd00::2", "2001:db8:ffff::5", 40001, 80, proto::TCP),
                0x02,
                54,
            ),
            (
                from_client("fd00::2", "2001:db8:ffff::5", udp(5353, 53, b"query")),
                key("fd00::2", "2001:db8:ffff::5", 5353, 53, proto::UDP),
                0,
                54,
            ),
            (
                from_client(
                    "fd00::2",
                    "2001:db8:ffff::5",
                    L4::EchoRequest {
                        ident: 77,
                        seq_no: 9,
                    },
                ),
                key("fd00::2", "2001:db8:ffff::5", 77, 0, proto::ICMPV6),
                0,
                54,
            ),
        ];
        for (frame, flow, flags, l4) in cases {
            let b = run(&c, &frame, LAN_PORT).unwrap_or_else(|r| panic!("{flow:?}: {r:?}"));
            let m = b.meta();
            assert_eq!(m.direction, Direction::Outbound, "{flow:?}");
            assert_eq!(m.flow, flow);
            assert_eq!(m.tcp_flags, flags, "{flow:?}");
            assert_eq!((m.l3_offset, m.l4_offset), (14, l4), "{flow:?}");
            assert_eq!(
                m.shard,
                (flow.inside_endpoint_hash() % 4) as u16,
                "{flow:?}"
            );
            assert_eq!(m.vlan, None);
        }
    }

    #[test]
    fn inbound_is_sharded_by_nat_port() {
        let c = stage(4);
        let topo = site(4);
        let syn_ack = L4::Tcp {
            src_port: 443,
            dst_port: 50000,
            control: TcpControl::Syn,
            ack: Some(1001),
            payload: &[],
        };
        let cases = [
            (
                from_isp("203.0.113.5", NAT4, syn_ack),
                key("203.0.113.5", NAT4, 443, 50000, proto::TCP),
                0x12,
            ),
            (
                from_isp("203.0.113.5", NAT4, udp(53, 2000, b"answer")),
                key("203.0.113.5", NAT4, 53, 2000, proto::UDP),
                0,
            ),
            (
                from_isp(
                    "203.0.113.5",
                    NAT4,
                    L4::EchoReply {
                        ident: 30000,
                        seq_no: 1,
                    },
                ),
                key("203.0.113.5", NAT4, 0, 30000, proto::ICMP),
                0,
            ),
            (
                from_isp("2001:db8:ffff::5", NAT6, udp(53, 65535, b"answer")),
                key("2001:db8:ffff::5", NAT6, 53, 65535, proto::UDP),
                0,
            ),
            (
                from_isp(
                    "2001:db8:ffff::5",
                    NAT6,
                    L4::EchoReply {
                        ident: 1024,
                        seq_no: 1,
                    },
                ),
                key("2001:db8:ffff::5", NAT6, 0, 1024, proto::ICMPV6),
                0,
            ),
        ];
        for (frame, flow, flags) in cases {
            let b = run(&c, &frame, WAN_PORT).unwrap_or_else(|r| panic!("{flow:?}: {r:?}"));
            let m = b.meta();
            assert_eq!(m.direction, Direction::Inbound);
            assert_eq!(m.flow, flow);
            assert_eq!(m.uplink, 0);
            assert_eq!(m.tcp_flags, flags);
            assert_eq!(
                Some(m.shard),
                topo.shard_of_nat_port(flow.dst_port),
                "{flow:?}"
            );
        }
        // The slices are contiguous: the first and last NAT ports land in the
        // first and last shard.
        let first = run(
            &c,
            &from_isp("203.0.113.5", NAT4, udp(53, 1024, b"")),
            WAN_PORT,
        )
        .unwrap();
        let last = run(
            &c,
            &from_isp("203.0.113.5", NAT4, udp(53, 65535, b"")),
            WAN_PORT,
        )
        .unwrap();
        assert_eq!((first.meta().shard, last.meta().shard), (0, 3));
    }

    #[test]
    fn inbound_on_tagged_port() {
        let c = stage(2);
        let (s, d) = (ip("203.0.113.5"), ip(NAT4_TAGGED));
        let frame = ethernet(
            WAN_TAGGED_MAC,
            ISP1_MAC,
            Some(TAGGED_VLAN),
            0x0800,
            &ip_packet(s, d, 64, &udp(53, 4000, b"x")),
        );
        let b = run(&c, &frame, WAN_TAGGED_PORT).unwrap();
        let m = b.meta();
        assert_eq!(
            (m.direction, m.uplink, m.vlan),
            (Direction::Inbound, 1, Some(TAGGED_VLAN))
        );
        assert_eq!((m.l3_offset, m.l4_offset), (18, 38));
        assert_eq!(
            m.flow,
            key("203.0.113.5", NAT4_TAGGED, 53, 4000, proto::UDP)
        );
    }

    #[test]
    fn ethernet_padding_is_trimmed() {
        let c = stage(1);
        // 14 + 20 + 8 + 2 = 44 bytes, padded to the 60-byte Ethernet minimum.
        let mut frame = from_client("10.0.0.2", "203.0.113.5", udp(1000, 53, b"hi"));
        assert_eq!(frame.len(), 44);
        frame.resize(60, 0);
        let b = run(&c, &frame, LAN_PORT).unwrap();
        assert_eq!(b.data(), &frame[..44]);
        assert_checksums_valid(b.data(), L3);

        let mut frame = from_client("fd00::2", "2001:db8:ffff::5", udp(1000, 53, b"hi"));
        let len = frame.len();
        frame.extend_from_slice(&[0xEE; 6]);
        let b = run(&c, &frame, LAN_PORT).unwrap();
        assert_eq!(b.data().len(), len);
    }

    #[test]
    fn l2_drops() {
        assert_eq!(drop_reason(&[], LAN_PORT), DropReason::Empty);
        assert_eq!(
            drop_reason(&UDP4_FRAME[..1], LAN_PORT),
            DropReason::TruncatedEthernet
        );
        assert_eq!(
            drop_reason(&UDP4_FRAME[..13], LAN_PORT),
            DropReason::TruncatedEthernet
        );
        // A 14-byte header with EtherType 802.1Q and no (or half a) tag.
        let tagged = ethernet(LAN_MAC, CLIENT_MAC, Some(5), 0x0800, &UDP4_FRAME[L3..]);
        assert_eq!(
            drop_reason(&tagged[..14], LAN_PORT),
            DropReason::TruncatedVlan
        );
        assert_eq!(
            drop_reason(&tagged[..17], LAN_PORT),
            DropReason::TruncatedVlan
        );
        // LLDP.
        assert_eq!(
            drop_reason(
                &udp4(|f| f[12..14].copy_from_slice(&[0x88, 0xCC])),
                LAN_PORT
            ),
            DropReason::UnknownEthertype
        );
        // A tagged frame whose inner EtherType is unknown.
        let inner = ethernet(LAN_MAC, CLIENT_MAC, Some(5), 0x88CC, &[0; 46]);
        assert_eq!(drop_reason(&inner, LAN_PORT), DropReason::UnknownEthertype);
        #[rustfmt::skip]
        let arp_request = [
            // Ethernet: broadcast, the client, EtherType ARP
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x02, 0x00, 0x00, 0x00, 0x00, 0x10,
            0x08, 0x06,
            // hardware Ethernet, protocol IPv4, lengths 6 and 4, operation request
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
            // sender MAC, sender IP 10.0.0.2
            0x02, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0a, 0x00, 0x00, 0x02,
            // target MAC (unknown), target IP 10.0.0.1
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01,
        ];
        assert_eq!(
            drop_reason(&arp_request, LAN_PORT),
            DropReason::ArpUnhandled
        );
    }

    #[test]
    fn vlan_must_match_the_port() {
        // Tagged on the untagged LAN port.
        let tagged = ethernet(LAN_MAC, CLIENT_MAC, Some(5), 0x0800, &UDP4_FRAME[L3..]);
        assert_eq!(drop_reason(&tagged, LAN_PORT), DropReason::UnexpectedVlan);
        // Untagged, and tagged with another VLAN, on the VLAN 100 port.
        let (s, d) = (ip("203.0.113.5"), ip(NAT4_TAGGED));
        let dgram = ip_packet(s, d, 64, &udp(53, 4000, b"x"));
        let untagged = ethernet(WAN_TAGGED_MAC, ISP1_MAC, None, 0x0800, &dgram);
        assert_eq!(
            drop_reason(&untagged, WAN_TAGGED_PORT),
            DropReason::UnexpectedVlan
        );
        let other = ethernet(WAN_TAGGED_MAC, ISP1_MAC, Some(200), 0x0800, &dgram);
        assert_eq!(
            drop_reason(&other, WAN_TAGGED_PORT),
            DropReason::UnexpectedVlan
        );
        // The priority bits of the TCI are not part of the VLAN id.
        let mut pcp = ethernet(WAN_TAGGED_MAC, ISP1_MAC, Some(TAGGED_VLAN), 0x0800, &dgram);
        pcp[14] |= 0xE0;
        assert!(run(&stage(1), &pcp, WAN_TAGGED_PORT).is_ok());
    }

    #[test]
    fn ipv4_header_drops() {
        let d = |f: Vec<u8>| drop_reason(&f, LAN_PORT);
        assert_eq!(d(UDP4_FRAME[..L3 + 19].to_vec()), DropReason::TruncatedIpv4);
        assert_eq!(d(UDP4_FRAME[..L3].to_vec()), DropReason::TruncatedIpv4);
        assert_eq!(d(udp4(|f| f[L3] = 0x65)), DropReason::BadIpVersion);
        assert_eq!(d(udp4(|f| f[L3] = 0x44)), DropReason::BadIhl, "IHL 4 < 5");
        assert_eq!(d(udp4(|f| f[L3] = 0x40)), DropReason::BadIhl, "IHL 0");
        assert_eq!(
            d(udp4(|f| f[L3] = 0x4F)),
            DropReason::BadIhl,
            "IHL 15: 60 bytes, past the 36-byte datagram"
        );
        assert_eq!(
            d(udp4(
                |f| f[L3 + 2..L3 + 4].copy_from_slice(&19u16.to_be_bytes())
            )),
            DropReason::BadTotalLength
        );
        assert_eq!(
            d(udp4(
                |f| f[L3 + 2..L3 + 4].copy_from_slice(&0u16.to_be_bytes())
            )),
            DropReason::BadTotalLength
        );
        assert_eq!(
            d(udp4(
                |f| f[L3 + 2..L3 + 4].copy_from_slice(&37u16.to_be_bytes())
            )),
            DropReason::BadTotalLength
        );
        assert_eq!(d(udp4(|f| f[L3 + 10] ^= 0x01)), DropReason::BadIpv4Checksum);
        assert_eq!(
            d(udp4(|f| f[L3 + 8] = 63)),
            DropReason::BadIpv4Checksum,
            "TTL changed, checksum not"
        );
        let fragment = |flags_offset: u16| {
            udp4(|f| {
                f[L3 + 6..L3 + 8].copy_from_slice(&flags_offset.to_be_bytes());
                fix_ipv4_checksum(f, L3);
            })
        };
        assert_eq!(d(fragment(0x2000)), DropReason::Fragment, "more fragments");
        assert_eq!(d(fragment(0x0001)), DropReason::Fragment, "offset 8");
        assert_eq!(
            d(fragment(0x1FFF)),
            DropReason::Fragment,
            "last fragment at the largest offset"
        );
        assert!(
            run(&stage(1), &fragment(0x4000), LAN_PORT).is_ok(),
            "DF alone is not a fragment"
        );
        assert!(run(&stage(1), &fragment(0x0000), LAN_PORT).is_ok());
    }

    #[test]
    fn ipv6_header_drops() {
        let frame = from_client("fd00::2", "2001:db8:ffff::5", udp(5353, 53, b"query"));
        let d = |f: &[u8]| drop_reason(f, LAN_PORT);
        assert_eq!(d(&frame[..L3 + 39]), DropReason::TruncatedIpv6);
        let mut v4 = frame.clone();
        v4[L3] = 0x40;
        assert_eq!(d(&v4), DropReason::BadIpVersion);
        let mut long = frame.clone();
        long[L3 + 4..L3 + 6].copy_from_slice(&((frame.len() - L3 - 40 + 1) as u16).to_be_bytes());
        assert_eq!(d(&long), DropReason::BadPayloadLength);
        let raw6 = |next: u8| client_raw("fd00::2", "2001:db8:ffff::5", next, &[0; 16]);
        assert_eq!(d(&raw6(44)), DropReason::Fragment);
        for next in [0, 43, 60] {
            assert_eq!(
                d(&raw6(next)),
                DropReason::Ipv6ExtensionHeader,
                "next header {next}"
            );
        }
        let ns = client_raw("fd00::2", "fd00::1", 58, &[135, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d(&ns), DropReason::NeighborDiscovery);
    }

    #[test]
    fn transport_drops() {
        let d = |f: Vec<u8>| drop_reason(&f, LAN_PORT);
        let raw = |proto: u8, payload: &[u8]| client_raw("10.0.0.2", "203.0.113.5", proto, payload);
        let tcp_hdr = {
            let f = from_client("10.0.0.2", "203.0.113.5", tcp(40000, 80, TcpControl::Syn));
            f[34..].to_vec()
        };
        assert_eq!(tcp_hdr.len(), 20);
        assert_eq!(d(raw(6, &tcp_hdr[..19])), DropReason::TruncatedTcp);
        assert_eq!(d(raw(6, &[])), DropReason::TruncatedTcp);
        let mut short_doff = tcp_hdr.clone();
        short_doff[12] = 4 << 4;
        assert_eq!(
            d(raw(6, &short_doff)),
            DropReason::TruncatedTcp,
            "data offset 4 words"
        );
        let mut long_doff = tcp_hdr.clone();
        long_doff[12] = 6 << 4;
        assert_eq!(
            d(raw(6, &long_doff)),
            DropReason::TruncatedTcp,
            "options past the segment"
        );

        assert_eq!(d(raw(17, &UDP4_FRAME[34..41])), DropReason::TruncatedUdp);
        assert_eq!(
            d(udp4(|f| f[38..40].copy_from_slice(&7u16.to_be_bytes()))),
            DropReason::TruncatedUdp
        );
        assert_eq!(
            d(udp4(|f| f[38..40].copy_from_slice(&17u16.to_be_bytes()))),
            DropReason::TruncatedUdp
        );

        assert_eq!(d(raw(1, &[8, 0, 0, 0, 0, 1, 0])), DropReason::TruncatedIcmp);
        assert_eq!(
            d(raw(1, &[3, 1, 0, 0, 0, 0, 0, 0])),
            DropReason::UnsupportedIcmp,
            "destination unreachable"
        );
        assert_eq!(
            d(raw(58, &[128, 0, 0, 0, 0, 1, 0, 1])),
            DropReason::UnsupportedProtocol,
            "ICMPv6 over IPv4"
        );
        assert_eq!(d(raw(47, &[0; 8])), DropReason::UnsupportedProtocol, "GRE");
    }

    #[test]
    fn direction_drops() {
        let frame = |src: &str, dst: &str| from_client(src, dst, udp(1000, 53, b"q"));
        assert_eq!(
            drop_reason(&frame("192.168.1.2", "203.0.113.5"), LAN_PORT),
            DropReason::SpoofedSource
        );
        assert_eq!(
            drop_reason(&frame("fd01::2", "2001:db8:ffff::5"), LAN_PORT),
            DropReason::SpoofedSource
        );
        assert_eq!(
            drop_reason(&frame("10.0.0.2", "10.0.0.1"), LAN_PORT),
            DropReason::LocalDestination
        );
        assert_eq!(
            drop_reason(&frame("10.0.0.2", "10.0.9.9"), LAN_PORT),
            DropReason::LocalDestination
        );

        let inbound =
            |dst: &str, dst_port: u16| from_isp("203.0.113.5", dst, udp(53, dst_port, b"a"));
        assert_eq!(
            drop_reason(&inbound("192.0.2.99", 5000), WAN_PORT),
            DropReason::NotNatAddress
        );
        assert_eq!(
            drop_reason(&inbound(NAT4_TAGGED, 5000), WAN_PORT),
            DropReason::NotNatAddress,
            "the NAT address of an uplink on another port"
        );
        assert_eq!(
            drop_reason(&inbound(NAT4, 80), WAN_PORT),
            DropReason::PortOutOfRange
        );
        assert_eq!(
            drop_reason(&inbound(NAT4, 1023), WAN_PORT),
            DropReason::PortOutOfRange
        );
        let echo_request = from_isp(
            "203.0.113.5",
            NAT4,
            L4::EchoRequest {
                ident: 5000,
                seq_no: 1,
            },
        );
        assert_eq!(
            drop_reason(&echo_request, WAN_PORT),
            DropReason::PortOutOfRange,
            "no NAT port in a request"
        );

        assert_eq!(
            drop_reason(&UDP4_FRAME, SPARE_PORT),
            DropReason::UnknownPort
        );
        assert_eq!(drop_reason(&UDP4_FRAME, 42), DropReason::UnknownPort);
    }

    #[test]
    fn process_counts_every_packet_once() {
        let mut c = stage(2);
        let mut input: Burst<HeapBuf> = Burst::new();
        input.push(buf(&UDP4_FRAME, LAN_PORT));
        input.push(buf(&[], LAN_PORT));
        input.push(buf(&udp4(|f| f[L3 + 10] ^= 1), LAN_PORT));
        input.push(buf(&UDP4_FRAME, LAN_PORT));
        let mut output: Burst<HeapBuf> = Burst::new();
        c.process(&mut input, &mut output);
        assert!(input.is_empty());
        assert_eq!(output.len(), 2);
        assert_eq!(c.counters.packets.get(), 4);
        assert_eq!(c.counters.drops(DropReason::Empty), 1);
        assert_eq!(c.counters.drops(DropReason::BadIpv4Checksum), 1);
        assert_eq!(c.counters.total_drops(), 2);

        // A full output leaves the rest in the input, uncounted.
        let mut input: Burst<HeapBuf> = Burst::new();
        input.push(buf(&UDP4_FRAME, LAN_PORT));
        while !output.is_full() {
            output.push(buf(&UDP4_FRAME, LAN_PORT));
        }
        c.process(&mut input, &mut output);
        assert_eq!((input.len(), c.counters.packets.get()), (1, 4));
    }

    #[test]
    fn outbound_shard_follows_the_inside_endpoint_only() {
        let c = stage(4);
        let shard = |dst: &str, l4| {
            run(&c, &from_client("10.0.0.2", dst, l4), LAN_PORT)
                .unwrap()
                .meta()
                .shard
        };
        let first = shard("203.0.113.5", udp(40000, 53, b"q"));
        for (dst, dst_port) in [
            ("203.0.113.6", 53),
            ("198.51.100.20", 123),
            ("192.0.2.200", 9),
        ] {
            assert_eq!(
                shard(dst, udp(40000, dst_port, b"q")),
                first,
                "{dst}:{dst_port}"
            );
        }
        // Every shard is used by some inside endpoint.
        let mut seen = [false; 4];
        for port in 1000..1100 {
            seen[usize::from(shard("203.0.113.5", udp(port, 53, b"q")))] = true;
        }
        assert_eq!(seen, [true; 4]);
    }

    /// Interesting addresses for generated packets: a client, the gateway,
    /// NAT addresses, a remote.
    fn addr4() -> impl Strategy<Value = [u8; 4]> {
        prop_oneof![
            Just([10, 0, 0, 2]),
            Just([10, 0, 0, 1]),
            Just([192, 0, 2, 1]),
            Just([198, 51, 100, 1]),
            Just([203, 0, 113, 5]),
            any::<[u8; 4]>(),
        ]
    }

    fn check_invariants(c: &Classify, frame: &[u8], in_port: u16) -> Result<(), TestCaseError> {
        let mut b = buf(frame, in_port);
        if c.classify(&mut b).is_ok() {
            let m = *b.meta();
            prop_assert!(b.data().len() <= frame.len());
            prop_assert!(usize::from(m.l3_offset) < usize::from(m.l4_offset));
            prop_assert!(usize::from(m.l4_offset) <= b.data().len());
            prop_assert!(m.direction != Direction::Unknown);
            prop_assert!(m.shard < 4);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(
            frame in proptest::collection::vec(any::<u8>(), 0..160),
            in_port in 0u16..5,
        ) {
            check_invariants(&stage(4), &frame, in_port)?;
        }

        #[test]
        fn never_panics_after_a_valid_ipv4_prefix(
            src in addr4(),
            dst in addr4(),
            protocol in prop_oneof![Just(1u8), Just(6), Just(17), any::<u8>()],
            tail in proptest::collection::vec(any::<u8>(), 0..96),
            honest_length in any::<bool>(),
            total_length in any::<u16>(),
            in_port in 0u16..3,
        ) {
            let mut ipv4 = raw_ip(src.into(), dst.into(), protocol, 64, &tail);
            if !honest_length {
                ipv4[2..4].copy_from_slice(&total_length.to_be_bytes());
                fix_ipv4_checksum(&mut ipv4, 0);
            }
            let dst_mac = if in_port == LAN_PORT { LAN_MAC } else { WAN_MAC };
            let frame = ethernet(dst_mac, CLIENT_MAC, None, 0x0800, &ipv4);
            check_invariants(&stage(4), &frame, in_port)?;
        }

        #[test]
        fn never_panics_after_a_valid_ipv6_prefix(
            src in prop_oneof![Just(ip("fd00::2")), Just(ip(NAT6)), Just(ip("2001:db8:ffff::5"))],
            dst in prop_oneof![Just(ip("fd00::2")), Just(ip(NAT6)), Just(ip("2001:db8:ffff::5"))],
            next in prop_oneof![Just(58u8), Just(6), Just(17), Just(44), any::<u8>()],
            tail in proptest::collection::vec(any::<u8>(), 0..96),
            payload_length in proptest::option::of(any::<u16>()),
            in_port in 0u16..3,
        ) {
            let mut ipv6 = raw_ip(src, dst, next, 64, &tail);
            if let Some(l) = payload_length {
                ipv6[4..6].copy_from_slice(&l.to_be_bytes());
            }
            let frame = ethernet(LAN_MAC, CLIENT_MAC, None, 0x86DD, &ipv6);
            check_invariants(&stage(4), &frame, in_port)?;
        }
    }
}
