//! ICMP messages the appliance builds in the buffer of the packet that
//! caused them: echo replies (RFC 792, RFC 4443 4.2) and errors quoting the
//! original datagram (RFC 792, RFC 1812 4.3.2.3: as much as fits in 576
//! bytes, as Linux does; RFC 4443 2.4 (c): as much as fits in 1280).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::packet::buf::{Direction, PacketBuf};
use crate::packet::drop::DropReason;
use crate::packet::flow::proto;
use crate::topology::PortInfo;
use crate::wire::checksum::{self, update16, update_bytes};
use crate::wire::ethernet::{self, l2_len, write_l2, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::wire::{icmp, ipv4, ipv6, tcp, udp};

/// The TTL / hop limit of what the appliance originates (Linux's default).
pub const TTL: u8 = 64;
/// Largest IPv4 ICMP error (RFC 1812 4.3.2.3).
pub const V4_ERROR_MAX: usize = 576;
/// Largest ICMPv6 error (RFC 4443 2.4 (c): the IPv6 minimum MTU).
pub const V6_ERROR_MAX: usize = 1280;
/// ICMP type and code of time exceeded in transit.
pub const V4_TIME_EXCEEDED: u8 = 11;
pub const V6_TIME_EXCEEDED: u8 = 3;
/// ICMP destination unreachable, code 4: fragmentation needed and DF set.
pub const V4_DEST_UNREACHABLE: u8 = 3;
pub const V4_FRAG_NEEDED: u8 = 4;
pub const V6_PACKET_TOO_BIG: u8 = 2;

/// Which error to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpError {
    /// TTL / hop limit exceeded in transit (code 0).
    TimeExceeded,
    /// IPv4 fragmentation needed and DF set, with the next-hop MTU
    /// (RFC 1191), or ICMPv6 packet too big with the MTU (RFC 4443 3.2).
    TooBig { mtu: u16 },
}

/// Rewrites the datagram at `l3` (IPv6 when `v6`; it ends where its length
/// fields say, or at the end of the frame) into the ICMP error `err` about
/// it, from `src` to the datagram's source, in a frame to `dst_mac` out of
/// `port` (`port_id`): `Direction::Local`, complete, L2 header included.
#[allow(clippy::too_many_arguments)]
pub fn error_in_place<B: PacketBuf>(
    pkt: &mut B,
    l3: usize,
    v6: bool,
    err: IcmpError,
    src: IpAddr,
    port_id: u16,
    port: &PortInfo,
    dst_mac: [u8; 6],
) -> Result<(), DropReason> {
    let d = pkt.data();
    let ip = d.get(l3..).ok_or(DropReason::TruncatedIpv4)?;
    let (dgram_len, ip_hdr, max, dst) = if v6 {
        if ip.len() < ipv6::HEADER_LEN {
            return Err(DropReason::TruncatedIpv6);
        }
        let len = ipv6::HEADER_LEN + ipv6::payload_len(ip);
        (
            len,
            ipv6::HEADER_LEN,
            V6_ERROR_MAX,
            IpAddr::V6(ipv6::src(ip)),
        )
    } else {
        if ip.len() < ipv4::MIN_HEADER_LEN {
            return Err(DropReason::TruncatedIpv4);
        }
        let len = ipv4::total_len(ip);
        (
            len,
            ipv4::MIN_HEADER_LEN,
            V4_ERROR_MAX,
            IpAddr::V4(ipv4::src(ip)),
        )
    };
    if src.is_ipv6() != v6 {
        return Err(DropReason::NoNatAddress);
    }
    let quote = dgram_len.min(ip.len()).min(max - ip_hdr - icmp::HEADER_LEN);
    let l2 = l2_len(port.vlan);
    let msg_at = l2 + ip_hdr;
    let quote_at = msg_at + icmp::HEADER_LEN;
    let need = quote_at + quote;
    if d.len() < need && !pkt.set_len(need) {
        return Err(DropReason::NoBuffer);
    }
    let f = pkt.data_mut();
    f.copy_within(l3..l3 + quote, quote_at);
    if !pkt.set_len(need) {
        return Err(DropReason::NoBuffer);
    }
    let f = pkt.data_mut();
    let ethertype = if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
    write_l2(f, dst_mac, port.mac, port.vlan, ethertype);
    let msg_len = icmp::HEADER_LEN + quote;
    let (kind, code, rest) = match (err, v6) {
        (IcmpError::TimeExceeded, false) => (V4_TIME_EXCEEDED, 0, [0; 4]),
        (IcmpError::TimeExceeded, true) => (V6_TIME_EXCEEDED, 0, [0; 4]),
        (IcmpError::TooBig { mtu }, false) => {
            let m = mtu.to_be_bytes();
            (V4_DEST_UNREACHABLE, V4_FRAG_NEEDED, [0, 0, m[0], m[1]])
        }
        (IcmpError::TooBig { mtu }, true) => (V6_PACKET_TOO_BIG, 0, u32::from(mtu).to_be_bytes()),
    };
    let m = &mut f[msg_at..need];
    m[icmp::TYPE_OFFSET] = kind;
    m[icmp::CODE_OFFSET] = code;
    m[icmp::IDENT_OFFSET..icmp::HEADER_LEN].copy_from_slice(&rest);
    write_ip_and_checksum(&mut f[l2..need], v6, src, dst, msg_len)?;
    mark_local(pkt, l2, msg_at, port_id);
    Ok(())
}

/// Writes the IP header of an ICMP message of `msg_len` bytes (which
/// follows it in `ip`) and the message's checksum.
fn write_ip_and_checksum(
    ip: &mut [u8],
    v6: bool,
    src: IpAddr,
    dst: IpAddr,
    msg_len: usize,
) -> Result<(), DropReason> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) if !v6 => {
            let total = (ipv4::MIN_HEADER_LEN + msg_len) as u16;
            // TOS 0xc0 (internetwork control), no DF: as Linux sends errors.
            ipv4::write_header(ip, 0xc0, total, 0, TTL, proto::ICMP, s, d);
            ip[ipv4::FLAGS_FRAG_OFFSET..ipv4::FLAGS_FRAG_OFFSET + 2].fill(0);
            ipv4::fill_checksum(ip);
            let m = &mut ip[ipv4::MIN_HEADER_LEN..];
            icmp::set_checksum(m, 0);
            let c = checksum::checksum(m);
            icmp::set_checksum(m, c);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) if v6 => {
            ipv6::write_header(ip, msg_len as u16, icmp::V6_NEXT_HEADER, TTL, &s, &d);
            let m = &mut ip[ipv6::HEADER_LEN..];
            icmp::set_checksum(m, 0);
            let c = icmp::v6_checksum(&s, &d, m);
            icmp::set_checksum(m, c);
        }
        _ => return Err(DropReason::NoNatAddress),
    }
    Ok(())
}

fn mark_local<B: PacketBuf>(pkt: &mut B, l3: usize, l4: usize, port: u16) {
    let m = pkt.meta_mut();
    m.direction = Direction::Local;
    m.in_port = port;
    m.out_port = port;
    m.l3_offset = l3 as u16;
    m.l4_offset = l4 as u16;
    m.shard = 0;
    m.inner_l3 = 0;
    m.inner_l4 = 0;
    m.race = 0;
    m.hairpin = false;
    m.service = 0;
}

/// Rewrites the echo request at `l3` / `l4` (the frame ends at `end`) into
/// its echo reply, in place: addresses swapped, type changed, TTL / hop
/// limit [`TTL`], checksums recomputed; back to the sender's MAC from the
/// MAC of `port` (`port_id`), the frame's VLAN tag kept.
pub fn echo_reply<B: PacketBuf>(
    pkt: &mut B,
    l3: usize,
    l4: usize,
    end: usize,
    v6: bool,
    port_id: u16,
    port: &PortInfo,
) -> Result<(), DropReason> {
    if !pkt.set_len(end) || l4 + icmp::HEADER_LEN > end {
        return Err(DropReason::TruncatedIcmp);
    }
    let f = pkt.data_mut();
    f.copy_within(ethernet::SRC, 0);
    ethernet::set_src(f, &port.mac);
    let ip = &mut f[l3..end];
    if v6 {
        let (s, d) = (ipv6::src(ip), ipv6::dst(ip));
        ipv6::set_src(ip, &d);
        ipv6::set_dst(ip, &s);
        ipv6::set_hop_limit(ip, TTL);
        let m = &mut ip[l4 - l3..];
        m[icmp::TYPE_OFFSET] = icmp::V6_ECHO_REPLY;
        icmp::set_checksum(m, 0);
        let c = icmp::v6_checksum(&d, &s, m);
        icmp::set_checksum(m, c);
    } else {
        let (s, d) = (ipv4::src(ip), ipv4::dst(ip));
        ip[ipv4::SRC].copy_from_slice(&d.octets());
        ip[ipv4::DST].copy_from_slice(&s.octets());
        ipv4::set_ttl(ip, TTL);
        ipv4::fill_checksum(ip);
        let m = &mut ip[l4 - l3..];
        m[icmp::TYPE_OFFSET] = icmp::V4_ECHO_REPLY;
        icmp::set_checksum(m, 0);
        let c = checksum::checksum(m);
        icmp::set_checksum(m, c);
    }
    mark_local(pkt, l3, l4, port_id);
    Ok(())
}

/// Which endpoint of a quoted (translated) datagram is put back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuoteSide {
    Src,
    Dst,
}

/// Puts the address and port (echo identifier) `side` of the translated
/// datagram at `l3` / `l4` back to what its sender wrote (`addr`, `port`),
/// before an error quotes it: the sender matches the error to its socket by
/// them. The IPv4 header checksum and the transport checksum are updated
/// (RFC 1624), as a NAT translates a quoted packet (RFC 5508 4.2).
pub fn restore_quote<B: PacketBuf>(
    pkt: &mut B,
    l3: usize,
    l4: usize,
    side: QuoteSide,
    addr: IpAddr,
    port: u16,
) -> Result<(), DropReason> {
    let f = pkt.data_mut();
    let ip = f.get_mut(l3..).ok_or(DropReason::TruncatedIpv4)?;
    let v6 = addr.is_ipv6();
    let (range, protocol) = match (v6, side) {
        (false, QuoteSide::Src) => (ipv4::SRC, ip.get(ipv4::PROTO_OFFSET)),
        (false, QuoteSide::Dst) => (ipv4::DST, ip.get(ipv4::PROTO_OFFSET)),
        (true, QuoteSide::Src) => (ipv6::SRC, ip.get(ipv6::NEXT_HEADER_OFFSET)),
        (true, QuoteSide::Dst) => (ipv6::DST, ip.get(ipv6::NEXT_HEADER_OFFSET)),
    };
    let protocol = *protocol.ok_or(DropReason::TruncatedIpv4)?;
    let mut new_addr = [0u8; 16];
    let alen = match addr {
        IpAddr::V4(a) => {
            new_addr[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            new_addr.copy_from_slice(&a.octets());
            16
        }
    };
    let field = ip.get_mut(range.clone()).ok_or(DropReason::TruncatedIpv4)?;
    let mut old_addr = [0u8; 16];
    old_addr[..alen].copy_from_slice(field);
    field.copy_from_slice(&new_addr[..alen]);
    if !v6 && (ipv4::MIN_HEADER_LEN..=ip.len()).contains(&ipv4::header_len(ip)) {
        ipv4::fill_checksum(ip);
    }
    let (port_at, csum_at, pseudo) = match protocol {
        proto::TCP => (
            if side == QuoteSide::Src {
                tcp::SRC_PORT_OFFSET
            } else {
                tcp::DST_PORT_OFFSET
            },
            tcp::CHECKSUM_OFFSET,
            true,
        ),
        proto::UDP => (
            if side == QuoteSide::Src {
                udp::SRC_PORT_OFFSET
            } else {
                udp::DST_PORT_OFFSET
            },
            udp::CHECKSUM_OFFSET,
            true,
        ),
        proto::ICMP => (icmp::IDENT_OFFSET, icmp::CHECKSUM_OFFSET, false),
        proto::ICMPV6 => (icmp::IDENT_OFFSET, icmp::CHECKSUM_OFFSET, true),
        _ => return Ok(()),
    };
    let Some(t) = f.get_mut(l4..) else {
        return Ok(());
    };
    if t.len() < port_at.max(csum_at) + 2 {
        return Ok(());
    }
    let old_port = u16::from_be_bytes([t[port_at], t[port_at + 1]]);
    t[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    let hc = u16::from_be_bytes([t[csum_at], t[csum_at + 1]]);
    if protocol == proto::UDP && hc == 0 && !v6 {
        return Ok(());
    }
    let mut hc = update16(hc, old_port, port);
    if pseudo {
        hc = update_bytes(hc, &old_addr[..alen], &new_addr[..alen]);
    }
    if protocol == proto::UDP && hc == 0 {
        hc = 0xFFFF;
    }
    t[csum_at..csum_at + 2].copy_from_slice(&hc.to_be_bytes());
    Ok(())
}

/// The appliance's address of family `v6` among `addrs` (the first one).
pub fn first_of_family(addrs: &[IpAddr], v6: bool) -> Option<IpAddr> {
    addrs.iter().copied().find(|a| a.is_ipv6() == v6)
}

/// Whether `a` may be the source or destination of a packet the appliance
/// answers or forwards between hosts: not multicast, broadcast, loopback,
/// link-local or unspecified.
pub fn is_special(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => is_special_v4(v),
        IpAddr::V6(v) => is_special_v6(v),
    }
}

fn is_special_v4(v: Ipv4Addr) -> bool {
    v.is_multicast()
        || v.is_broadcast()
        || v.is_loopback()
        || v.is_link_local()
        || v.octets()[0] == 0
}

fn is_special_v6(v: Ipv6Addr) -> bool {
    v.is_multicast()
        || v.is_loopback()
        || v.is_unspecified()
        || (v.segments()[0] & 0xffc0) == 0xfe80
}
