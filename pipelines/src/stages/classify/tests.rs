//! Tests of classify: fixtures annotated field by field, every drop reason,
//! ICMP errors, and properties over arbitrary bytes.

use super::*;
use crate::packet::buf::HeapBuf;
use crate::testing::*;
use crate::wire::ICMP_HEADER_LEN;
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
        assert!(!m.is_icmp_error());
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
        // target MAC (unknown), target IP 10.0.0.9
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x09,
    ];
    // Not for the appliance: not answered.
    assert_eq!(
        drop_reason(&arp_request, LAN_PORT),
        DropReason::ArpUnhandled
    );
    // For its gateway address: answered out of the same port.
    let mut for_gateway = arp_request;
    for_gateway[41] = 1;
    let b = run(&stage(1), &for_gateway, LAN_PORT).expect("answered");
    let m = b.meta();
    assert_eq!((m.direction, m.out_port), (Direction::Local, LAN_PORT));
    assert_eq!(&b.data()[0..6], &CLIENT_MAC);
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
    // Fragments are classified (see `fragments`); one that is not the
    // last must carry a multiple of 8 bytes.
    assert!(
        run(&stage(1), &fragment(0x2000), LAN_PORT).is_ok(),
        "first fragment"
    );
    assert!(
        run(&stage(1), &fragment(0x0001), LAN_PORT).is_ok(),
        "offset 8"
    );
    let odd = udp4(|f| {
        f[L3 + 3] = 0x23; // total length 35: 15 bytes of payload
        f[L3 + 6..L3 + 8].copy_from_slice(&0x2001u16.to_be_bytes());
        fix_ipv4_checksum(f, L3);
    });
    assert_eq!(d(odd), DropReason::Fragment, "15 bytes, more follow");
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
    // A Fragment header followed by a hop-by-hop header (0).
    assert_eq!(d(&raw6(44)), DropReason::Ipv6ExtensionHeader);
    for next in [0, 43, 60] {
        assert_eq!(
            d(&raw6(next)),
            DropReason::Ipv6ExtensionHeader,
            "next header {next}"
        );
    }
    // Neighbour discovery goes to the responder (see `neighbour`),
    // which checks the hop limit (255) first.
    let ns = client_raw("fd00::2", "fd00::1", 58, &[135, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(d(&ns), DropReason::NdMalformed);
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
        DropReason::IcmpErrorMalformed,
        "destination unreachable quoting nothing"
    );
    assert_eq!(
        d(raw(1, &[5, 1, 0, 0, 10, 0, 0, 1])),
        DropReason::UnsupportedIcmp,
        "redirect"
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

    let inbound = |dst: &str, dst_port: u16| from_isp("203.0.113.5", dst, udp(53, dst_port, b"a"));
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
    let quiet = Classify::new(site_edited(4, |t| t.uplinks[0].answer_ping = false));
    assert_eq!(
        run(&quiet, &echo_request, WAN_PORT).unwrap_err(),
        DropReason::PortOutOfRange,
        "no NAT port in a request (the uplink does not answer pings)"
    );

    assert_eq!(
        drop_reason(&UDP4_FRAME, SPARE_PORT),
        DropReason::UnknownPort
    );
    assert_eq!(drop_reason(&UDP4_FRAME, 42), DropReason::UnknownPort);
}

mod fast;
mod fragments;
mod icmp_errors_and_fuzz;
mod site;
