//! Fragments through classify: first and later fragments, IPv4 and IPv6,
//! their fragment shard, and the refusals.

use super::*;
use crate::frag::{fragment_shard, FragKey};
use crate::testing::frag::split;

fn big_udp(src: &str, dst: &str, lan: bool) -> Vec<u8> {
    let payload = [0x5Au8; 3200];
    if lan {
        from_client(src, dst, udp(40000, 5000, &payload))
    } else {
        from_isp(src, dst, udp(5000, 40000, &payload))
    }
}

fn frag_key(src: &str, dst: &str, id: u32, proto: u8) -> FragKey {
    FragKey {
        src: ip(src),
        dst: ip(dst),
        id,
        proto,
    }
}

#[test]
fn ipv4_fragments_from_the_lan_share_their_datagrams_fragment_shard() {
    let c = stage(4);
    let frags = split(&big_udp("10.0.0.2", "203.0.113.5", true), 1480, 0x1234);
    assert_eq!(frags.len(), 3);
    let home = fragment_shard(&frag_key("10.0.0.2", "203.0.113.5", 0x1234, 17), 4);
    let first = run(&c, &frags[0], LAN_PORT).unwrap();
    let m = first.meta();
    assert_eq!(m.direction, Direction::Outbound);
    let flow = key("10.0.0.2", "203.0.113.5", 40000, 5000, proto::UDP);
    assert_eq!(m.flow, flow);
    assert!(m.frag.is_first() && m.frag.more && !m.frag.tracked);
    assert_eq!((m.frag.id, m.frag.offset, m.frag.len), (0x1234, 0, 1480));
    assert_eq!(m.frag.flow_shard, (flow.inside_endpoint_hash() % 4) as u16);
    assert_eq!(m.shard, home);
    for (i, f) in frags[1..].iter().enumerate() {
        let b = run(&c, f, LAN_PORT).unwrap();
        let m = b.meta();
        assert!(m.frag.is_later());
        assert_eq!(m.frag.offset as usize, 1480 * (i + 1));
        assert_eq!(m.frag.more, i == 0);
        assert_eq!((m.flow.src_port, m.flow.dst_port, m.flow.proto), (0, 0, 17));
        assert_eq!((m.direction, m.shard), (Direction::Outbound, home));
        assert_eq!((m.l3_offset, m.l4_offset), (14, 34));
    }
}

#[test]
fn ipv6_fragment_header_is_parsed_both_ways() {
    let c = stage(4);
    let frags = split(
        &big_udp("fd00::2", "2001:db8:ffff::5", true),
        1232,
        0xABCD_0001,
    );
    let first = run(&c, &frags[0], LAN_PORT).unwrap();
    let m = first.meta();
    assert_eq!((m.l3_offset, m.l4_offset), (14, 14 + 48));
    assert_eq!((m.flow.src_port, m.flow.dst_port), (40000, 5000));
    assert_eq!(
        (m.frag.id, m.frag.len, m.frag.more),
        (0xABCD_0001, 1232, true)
    );
    let later = run(&c, &frags[1], LAN_PORT).unwrap();
    assert_eq!(later.meta().frag.offset, 1232);
    assert_eq!(later.meta().shard, m.shard);
    // Inbound, to the NAT address.
    let frags = split(&big_udp("2001:db8:ffff::5", NAT6, false), 1232, 7);
    let later = run(&c, &frags[2], WAN_PORT).unwrap();
    let m = later.meta();
    assert_eq!((m.direction, m.uplink), (Direction::Inbound, 0));
    assert_eq!(
        m.shard,
        fragment_shard(&frag_key("2001:db8:ffff::5", NAT6, 7, 17), 4)
    );
}

#[test]
fn an_atomic_ipv6_fragment_is_an_ordinary_packet() {
    let c = stage(4);
    let frame = from_client("fd00::2", "2001:db8:ffff::5", udp(5353, 53, b"query"));
    let frags = split(&frame, 1232, 9);
    assert_eq!(frags.len(), 1, "fits: offset 0, M clear");
    let b = run(&c, &frags[0], LAN_PORT).unwrap();
    let m = b.meta();
    assert!(!m.frag.fragment);
    assert_eq!(
        (m.flow.src_port, m.flow.dst_port, m.l4_offset),
        (5353, 53, 62)
    );
}

#[test]
fn fragment_refusals() {
    // Inbound later fragment not to a NAT address.
    let frags = split(&big_udp("203.0.113.5", "192.0.2.99", false), 1480, 1);
    assert_eq!(drop_reason(&frags[1], WAN_PORT), DropReason::NotNatAddress);
    // A later fragment from outside the LAN prefixes.
    let frags = split(&big_udp("10.99.0.2", "203.0.113.5", true), 1480, 1);
    assert_eq!(drop_reason(&frags[1], LAN_PORT), DropReason::SpoofedSource);
    // Hairpinned fragments, first and later.
    let frags = split(&big_udp("10.0.0.2", NAT4, true), 1480, 1);
    assert_eq!(drop_reason(&frags[0], LAN_PORT), DropReason::Fragment);
    assert_eq!(drop_reason(&frags[1], LAN_PORT), DropReason::Fragment);
    // A first fragment that does not hold the whole TCP header (RFC 1858).
    let seg = from_client(
        "10.0.0.2",
        "203.0.113.5",
        L4::Tcp {
            src_port: 40000,
            dst_port: 80,
            control: TcpControl::None,
            ack: Some(1),
            payload: &[1; 64],
        },
    );
    let frags = split(&seg, 16, 1);
    assert_eq!(drop_reason(&frags[0], LAN_PORT), DropReason::FragmentTiny);
    // 24 bytes hold the header: fine.
    assert!(run(&stage(4), &split(&seg, 24, 1)[0], LAN_PORT).is_ok());
    // A fragmented SYN.
    let syn = from_client(
        "10.0.0.2",
        "203.0.113.5",
        L4::Tcp {
            src_port: 40000,
            dst_port: 80,
            control: TcpControl::Syn,
            ack: None,
            payload: &[0; 40],
        },
    );
    assert_eq!(
        drop_reason(&split(&syn, 8, 1)[0], LAN_PORT),
        DropReason::FragmentTiny
    );
    let syn_frags = split(&syn, 24, 1);
    assert_eq!(syn_frags.len(), 3);
    assert_eq!(drop_reason(&syn_frags[0], LAN_PORT), DropReason::Fragment);
    // A later fragment of an unsupported protocol.
    let raw = client_raw("10.0.0.2", "203.0.113.5", 47, &[0; 64]);
    assert_eq!(
        drop_reason(&split(&raw, 32, 1)[1], LAN_PORT),
        DropReason::UnsupportedProtocol
    );
}
