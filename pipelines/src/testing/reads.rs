//! Reading a frame back: addresses, ports, TTL, and checksums verified
//! through smoltcp's checked views.

use std::net::IpAddr;

use smoltcp::wire::{IpAddress, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};

use super::frames::v6_of;

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
                .verify_checksum(&v6_of(src), &v6_of(dst)),
            "ICMPv6 checksum"
        ),
        p => panic!("unexpected protocol {p}"),
    }
}
