//! Test-only fixtures shared by the stage tests: a small site ([`site`]),
//! frame builders on top of smoltcp's `Repr` emitters, and checks that
//! read a frame back through smoltcp's checked views.
//!
//! The site:
//! - port 0 `lan`, untagged, the LAN: 10.0.0.0/16 and fd00::/64, gateway
//!   10.0.0.1 and fd00::1;
//! - port 1 `wan`, untagged, uplink 0 `isp0` with NAT addresses 192.0.2.1
//!   and 2001:db8::1;
//! - port 2 `wan-tagged`, VLAN 100, uplink 1 `isp1` with NAT address
//!   198.51.100.1;
//! - port 3 `spare`, no role.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpControl, TcpPacket,
    TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};

use crate::packet::buf::{HeapBuf, HeapPool, PacketBuf};
use crate::topology::{IpPrefix, NatPortRange, PortInfo, PortRole, Topology, UplinkInfo};
use crate::wire::{write_l2, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_HEADER_LEN, VLAN_TAG_LEN};

pub const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const WAN_TAGGED_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const ISP0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xA0];
pub const ISP1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xA1];
pub const TAGGED_VLAN: u16 = 100;

pub const LAN_PORT: u16 = 0;
pub const WAN_PORT: u16 = 1;
pub const WAN_TAGGED_PORT: u16 = 2;
pub const SPARE_PORT: u16 = 3;

pub const NAT4: &str = "192.0.2.1";
pub const NAT6: &str = "2001:db8::1";
pub const NAT4_TAGGED: &str = "198.51.100.1";

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// The site described in the module doc, with NAT ports `nat_ports` split
/// between `shards` shards.
pub fn site_with(nat_ports: NatPortRange, shards: u16) -> Arc<Topology> {
    let port = |name: &str, mac, vlan| PortInfo {
        name: name.into(),
        mac,
        vlan,
        role: PortRole::Unused,
    };
    Arc::new(Topology::new(
        vec![
            port("lan", LAN_MAC, None),
            port("wan", WAN_MAC, None),
            port("wan-tagged", WAN_TAGGED_MAC, Some(TAGGED_VLAN)),
            port("spare", [0x02, 0, 0, 0, 0, 0x04], None),
        ],
        LAN_PORT,
        vec![
            "10.0.0.0/16".parse::<IpPrefix>().unwrap(),
            "fd00::/64".parse().unwrap(),
        ],
        vec![ip("10.0.0.1"), ip("fd00::1")],
        vec![
            UplinkInfo {
                name: "isp0".into(),
                port: WAN_PORT,
                nat_addrs: vec![ip(NAT4), ip(NAT6)],
                next_hop_mac: ISP0_MAC,
                next_hop_v4: None,
                next_hop_v6: None,
                weight: 1,
            },
            UplinkInfo {
                name: "isp1".into(),
                port: WAN_TAGGED_PORT,
                nat_addrs: vec![ip(NAT4_TAGGED)],
                next_hop_mac: ISP1_MAC,
                next_hop_v4: None,
                next_hop_v6: None,
                weight: 1,
            },
        ],
        nat_ports,
        shards,
    ))
}

/// The site with NAT ports 1024..=65535.
pub fn site(shards: u16) -> Arc<Topology> {
    site_with(
        NatPortRange {
            first: 1024,
            last: 65535,
        },
        shards,
    )
}

/// One pool for every test of the crate (pools live for the whole process).
pub fn pool() -> &'static HeapPool {
    static POOL: OnceLock<&'static HeapPool> = OnceLock::new();
    POOL.get_or_init(|| HeapPool::new_static(1 << 14))
}

/// A buffer holding `frame`, received on `in_port`.
pub fn buf(frame: &[u8], in_port: u16) -> HeapBuf {
    let mut b = pool().alloc_with(frame).expect("test pool exhausted");
    b.meta_mut().in_port = in_port;
    b
}

/// The transport part of a test packet.
#[derive(Clone, Copy, Debug)]
pub enum L4<'a> {
    Tcp {
        src_port: u16,
        dst_port: u16,
        control: TcpControl,
        ack: Option<u32>,
        payload: &'a [u8],
    },
    Udp {
        src_port: u16,
        dst_port: u16,
        payload: &'a [u8],
    },
    /// ICMP (v4 or v6, after the IP version) echo request.
    EchoRequest { ident: u16, seq_no: u16 },
    /// ICMP (v4 or v6) echo reply.
    EchoReply { ident: u16, seq_no: u16 },
}

/// A TCP segment with `control` and no payload.
pub fn tcp(src_port: u16, dst_port: u16, control: TcpControl) -> L4<'static> {
    L4::Tcp {
        src_port,
        dst_port,
        control,
        ack: None,
        payload: &[],
    }
}

pub fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> L4<'_> {
    L4::Udp {
        src_port,
        dst_port,
        payload,
    }
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// The transport header and payload, checksummed for `src` → `dst`.
fn transport(src: IpAddr, dst: IpAddr, l4: &L4) -> (IpProtocol, Vec<u8>) {
    let caps = ChecksumCapabilities::default();
    let (s, d) = (IpAddress::from(src), IpAddress::from(dst));
    match *l4 {
        L4::Tcp {
            src_port,
            dst_port,
            control,
            ack,
            payload,
        } => {
            let repr = TcpRepr {
                src_port,
                dst_port,
                control,
                seq_number: TcpSeqNumber(1000),
                ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
                window_len: 64_000,
                window_scale: None,
                max_seg_size: None,
                sack_permitted: false,
                sack_ranges: [None; 3],
                timestamp: None,
                payload,
            };
            let mut b = vec![0; repr.buffer_len()];
            repr.emit(&mut TcpPacket::new_unchecked(&mut b[..]), &s, &d, &caps);
            (IpProtocol::Tcp, b)
        }
        L4::Udp {
            src_port,
            dst_port,
            payload,
        } => {
            let repr = UdpRepr { src_port, dst_port };
            let mut b = vec![0; 8 + payload.len()];
            let mut pkt = UdpPacket::new_unchecked(&mut b[..]);
            repr.emit(
                &mut pkt,
                &s,
                &d,
                payload.len(),
                |p| p.copy_from_slice(payload),
                &caps,
            );
            (IpProtocol::Udp, b)
        }
        L4::EchoRequest { ident, seq_no } | L4::EchoReply { ident, seq_no } => {
            let request = matches!(l4, L4::EchoRequest { .. });
            let data: &[u8] = b"ping";
            if src.is_ipv4() {
                use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr};
                let repr = if request {
                    Icmpv4Repr::EchoRequest {
                        ident,
                        seq_no,
                        data,
                    }
                } else {
                    Icmpv4Repr::EchoReply {
                        ident,
                        seq_no,
                        data,
                    }
                };
                let mut b = vec![0; repr.buffer_len()];
                repr.emit(&mut Icmpv4Packet::new_unchecked(&mut b[..]), &caps);
                (IpProtocol::Icmp, b)
            } else {
                use smoltcp::wire::{Icmpv6Packet, Icmpv6Repr};
                let repr = if request {
                    Icmpv6Repr::EchoRequest {
                        ident,
                        seq_no,
                        data,
                    }
                } else {
                    Icmpv6Repr::EchoReply {
                        ident,
                        seq_no,
                        data,
                    }
                };
                let mut b = vec![0; repr.buffer_len()];
                repr.emit(
                    &v6(src),
                    &v6(dst),
                    &mut Icmpv6Packet::new_unchecked(&mut b[..]),
                    &caps,
                );
                (IpProtocol::Icmpv6, b)
            }
        }
    }
}

/// An IPv4 or IPv6 datagram (after the family of `src`) carrying `l4`.
pub fn ip_packet(src: IpAddr, dst: IpAddr, ttl: u8, l4: &L4) -> Vec<u8> {
    let (next_header, payload) = transport(src, dst, l4);
    raw_ip(src, dst, next_header.into(), ttl, &payload)
}

/// An Ethernet frame (802.1Q-tagged when `vlan` is set) around `payload`.
pub fn ethernet(
    dst: [u8; 6],
    src: [u8; 6],
    vlan: Option<u16>,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let l2 = ETH_HEADER_LEN + if vlan.is_some() { VLAN_TAG_LEN } else { 0 };
    let mut f = vec![0; l2 + payload.len()];
    write_l2(&mut f, dst, src, vlan, ethertype);
    f[l2..].copy_from_slice(payload);
    f
}

/// The EtherType of an IP datagram from `src`.
pub fn ethertype_of(src: IpAddr) -> u16 {
    if src.is_ipv4() {
        ETHERTYPE_IPV4
    } else {
        ETHERTYPE_IPV6
    }
}

/// A frame a LAN client sends to the appliance: `src` → `dst`, TTL 64.
pub fn from_client(src: &str, dst: &str, l4: L4) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    ethernet(
        LAN_MAC,
        CLIENT_MAC,
        None,
        ethertype_of(s),
        &ip_packet(s, d, 64, &l4),
    )
}

/// A frame the ISP router of uplink 0 delivers on the untagged WAN port.
pub fn from_isp(src: &str, dst: &str, l4: L4) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    ethernet(
        WAN_MAC,
        ISP0_MAC,
        None,
        ethertype_of(s),
        &ip_packet(s, d, 64, &l4),
    )
}

/// A frame from the client whose IP header (valid, checksummed) carries
/// protocol `proto` and the raw bytes `payload`.
pub fn client_raw(src: &str, dst: &str, proto: u8, payload: &[u8]) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    ethernet(
        LAN_MAC,
        CLIENT_MAC,
        None,
        ethertype_of(s),
        &raw_ip(s, d, proto, 64, payload),
    )
}

/// An IPv4 or IPv6 datagram with a valid header around raw `payload`.
pub fn raw_ip(src: IpAddr, dst: IpAddr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let next_header = IpProtocol::from(proto);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let repr = Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                next_header,
                payload_len: payload.len(),
                hop_limit: ttl,
            };
            let mut b = vec![0; repr.buffer_len() + payload.len()];
            repr.emit(
                &mut Ipv4Packet::new_unchecked(&mut b[..]),
                &ChecksumCapabilities::default(),
            );
            b[repr.buffer_len()..].copy_from_slice(payload);
            b
        }
        _ => {
            let repr = Ipv6Repr {
                src_addr: v6(src),
                dst_addr: v6(dst),
                next_header,
                payload_len: payload.len(),
                hop_limit: ttl,
            };
            let mut b = vec![0; repr.buffer_len() + payload.len()];
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut b[..]));
            b[repr.buffer_len()..].copy_from_slice(payload);
            b
        }
    }
}

/// Recomputes the IPv4 header checksum of the datagram at `l3` (after a
/// test changed a header field on purpose).
pub fn fix_ipv4_checksum(frame: &mut [u8], l3: usize) {
    let ihl = usize::from(frame[l3] & 0x0F) * 4;
    frame[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
    let c = crate::wire::checksum::checksum(&frame[l3..l3 + ihl]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// Source and destination address of the datagram at `l3`.
pub fn addrs(frame: &[u8], l3: usize) -> (IpAddr, IpAddr) {
    let ip = &frame[l3..];
    if ip[0] >> 4 == 4 {
        let p = Ipv4Packet::new_checked(ip).expect("IPv4 header");
        (IpAddr::V4(p.src_addr()), IpAddr::V4(p.dst_addr()))
    } else {
        let p = Ipv6Packet::new_checked(ip).expect("IPv6 header");
        (IpAddr::V6(p.src_addr()), IpAddr::V6(p.dst_addr()))
    }
}

/// TTL / hop limit of the datagram at `l3`.
pub fn ttl(frame: &[u8], l3: usize) -> u8 {
    let ip = &frame[l3..];
    if ip[0] >> 4 == 4 {
        ip[8]
    } else {
        ip[7]
    }
}

/// Source and destination port (ICMP: identifier twice) of the datagram at `l3`.
pub fn ports(frame: &[u8], l3: usize, l4: usize) -> (u16, u16) {
    let (proto, t) = (protocol(frame, l3), &frame[l4..]);
    match proto {
        1 | 58 => {
            let id = u16::from_be_bytes([t[4], t[5]]);
            (id, id)
        }
        _ => (
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
        ),
    }
}

fn protocol(frame: &[u8], l3: usize) -> u8 {
    let ip = &frame[l3..];
    if ip[0] >> 4 == 4 {
        ip[9]
    } else {
        ip[6]
    }
}

/// Asserts, through smoltcp's own checks, that the IPv4 header checksum (if
/// IPv4) and the transport checksum of the datagram at `l3` verify.
pub fn assert_checksums_valid(frame: &[u8], l3: usize) {
    let ip = &frame[l3..];
    let (src, dst) = addrs(frame, l3);
    let (s, d) = (IpAddress::from(src), IpAddress::from(dst));
    let payload: &[u8] = if src.is_ipv4() {
        let p = Ipv4Packet::new_checked(ip).expect("IPv4 header");
        assert!(p.verify_checksum(), "IPv4 header checksum");
        &ip[usize::from(p.header_len())..usize::from(p.total_len())]
    } else {
        let p = Ipv6Packet::new_checked(ip).expect("IPv6 header");
        &ip[40..40 + usize::from(p.payload_len())]
    };
    match protocol(frame, l3) {
        6 => assert!(
            TcpPacket::new_checked(payload)
                .unwrap()
                .verify_checksum(&s, &d),
            "TCP checksum"
        ),
        17 => {
            let u = UdpPacket::new_checked(payload).unwrap();
            assert!(
                u.checksum() != 0 || src.is_ipv4(),
                "IPv6 UDP needs a checksum"
            );
            assert!(u.verify_checksum(&s, &d), "UDP checksum");
        }
        1 => assert!(
            smoltcp::wire::Icmpv4Packet::new_checked(payload)
                .unwrap()
                .verify_checksum(),
            "ICMP checksum"
        ),
        58 => assert!(
            smoltcp::wire::Icmpv6Packet::new_checked(payload)
                .unwrap()
                .verify_checksum(&v6(src), &v6(dst)),
            "ICMPv6 checksum"
        ),
        p => panic!("unexpected protocol {p}"),
    }
}

/// The first `keep` bytes (all of it for `None`) of the datagram `src` →
/// `dst` carrying `l4`, with TTL `ttl`: what an ICMP error quotes.
pub fn quoted(src: &str, dst: &str, ttl: u8, l4: L4, keep: Option<usize>) -> Vec<u8> {
    let mut p = ip_packet(ip(src), ip(dst), ttl, &l4);
    if let Some(n) = keep {
        p.truncate(n);
    }
    p
}

/// An IP datagram `src` → `dst` (TTL 64) carrying an ICMP (after the family
/// of `src`: ICMPv4 or ICMPv6) message of type `icmp_type` and `code`,
/// `rest` as the second header word (unused, MTU or pointer) and `embedded`
/// as its body, with a valid checksum (pseudo-header included for ICMPv6).
pub fn icmp_error_ip(
    src: IpAddr,
    dst: IpAddr,
    icmp_type: u8,
    code: u8,
    rest: [u8; 4],
    embedded: &[u8],
) -> Vec<u8> {
    use smoltcp::wire::{Icmpv4Packet, Icmpv6Packet};
    let mut msg = vec![icmp_type, code, 0, 0];
    msg.extend_from_slice(&rest);
    msg.extend_from_slice(embedded);
    let proto = if src.is_ipv4() {
        Icmpv4Packet::new_unchecked(&mut msg[..]).fill_checksum();
        1
    } else {
        Icmpv6Packet::new_unchecked(&mut msg[..]).fill_checksum(&v6(src), &v6(dst));
        58
    };
    raw_ip(src, dst, proto, 64, &msg)
}

/// An ICMP error frame the ISP router of uplink 0 delivers on the untagged
/// WAN port: `src` (a router on the path) → `dst`, quoting `embedded`.
pub fn icmp_error_from_isp(
    src: &str,
    dst: &str,
    icmp_type: u8,
    code: u8,
    embedded: &[u8],
) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    let dgram = icmp_error_ip(s, d, icmp_type, code, [0; 4], embedded);
    ethernet(WAN_MAC, ISP0_MAC, None, ethertype_of(s), &dgram)
}

/// An ICMP error frame from the LAN (a client or a router behind the
/// appliance): `src` → `dst`, quoting `embedded`.
pub fn icmp_error_from_client(
    src: &str,
    dst: &str,
    icmp_type: u8,
    code: u8,
    embedded: &[u8],
) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    let dgram = icmp_error_ip(s, d, icmp_type, code, [0; 4], embedded);
    ethernet(LAN_MAC, CLIENT_MAC, None, ethertype_of(s), &dgram)
}

/// Asserts, by full recomputation, every checksum of the ICMP error frame
/// whose datagram starts at `l3` and quotes a datagram at `inner_l3`: the
/// outer IPv4 header checksum and the ICMP / ICMPv6 checksum (pseudo-header
/// included), the quoted IPv4 header checksum, and, when the quoted datagram
/// is whole (`inner_whole`), its transport checksum.
pub fn assert_icmp_error_checksums_valid(
    frame: &[u8],
    l3: usize,
    inner_l3: usize,
    inner_whole: bool,
) {
    assert_checksums_valid(frame, l3);
    let inner = &frame[inner_l3..];
    if inner[0] >> 4 == 4 {
        let ihl = usize::from(inner[0] & 0x0F) * 4;
        assert_eq!(
            crate::wire::checksum::checksum(&inner[..ihl]),
            0,
            "quoted IPv4 header checksum"
        );
    }
    if inner_whole {
        assert_checksums_valid(frame, inner_l3);
    }
}

/// The IPv4 datagram `dgram` with 4 bytes of options (three NOPs and an
/// end of list) after its header: IHL 6, total length and checksum fixed.
pub fn with_ipv4_options(dgram: &[u8]) -> Vec<u8> {
    let ihl = usize::from(dgram[0] & 0x0F) * 4;
    let mut p = dgram[..ihl].to_vec();
    p.extend_from_slice(&[1, 1, 1, 0]);
    p.extend_from_slice(&dgram[ihl..]);
    p[0] = (p[0] & 0xF0) | ((ihl + 4) / 4) as u8;
    let total = u16::from_be_bytes([p[2], p[3]]) + 4;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_checksum(&mut p, 0);
    p
}

/// For property tests: an ICMP error frame with a valid outer header and
/// checksum, received on the LAN (`from_lan`: a client reports on a packet
/// from 203.0.113.5 / 2001:db8:ffff::5) or on the WAN port (a router reports
/// on a packet from the NAT address), of the translated error type number
/// `type_index` (mod 3 for IPv4, 4 for IPv6). Its body is, when `ip_header`,
/// the first `cut` bytes of a datagram with a valid header that fits that
/// report and carries protocol `proto` and `tail`, followed by `junk`; else
/// `tail` alone. Returns the frame and its ingress port.
#[allow(clippy::too_many_arguments)]
pub fn icmp_error_for_proptest(
    v6: bool,
    from_lan: bool,
    type_index: usize,
    code: u8,
    ip_header: bool,
    proto: u8,
    cut: usize,
    tail: &[u8],
    junk: &[u8],
) -> (Vec<u8>, u16) {
    let (client, server, nat, types): (_, _, _, &[u8]) = if v6 {
        ("fd00::2", "2001:db8:ffff::5", NAT6, &[1, 2, 3, 4])
    } else {
        ("10.0.0.2", "203.0.113.5", NAT4, &[3, 11, 12])
    };
    let icmp_type = types[type_index % types.len()];
    let (outer_src, outer_dst, inner_src, inner_dst) = if from_lan {
        (client, server, server, client)
    } else {
        (server, nat, nat, server)
    };
    let body = if ip_header {
        let mut b = raw_ip(ip(inner_src), ip(inner_dst), proto, 1, tail);
        b.truncate(cut);
        b.extend_from_slice(junk);
        b
    } else {
        tail.to_vec()
    };
    if from_lan {
        let f = icmp_error_from_client(outer_src, outer_dst, icmp_type, code, &body);
        (f, LAN_PORT)
    } else {
        let f = icmp_error_from_isp(outer_src, outer_dst, icmp_type, code, &body);
        (f, WAN_PORT)
    }
}
