//! ICMP and ICMPv6 errors quoting a datagram, from a client or from a
//! router beyond an uplink.

use super::*;

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
        Icmpv6Packet::new_unchecked(&mut msg[..]).fill_checksum(&v6_of(src), &v6_of(dst));
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
