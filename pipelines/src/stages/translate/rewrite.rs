//! Address and port rewrite with incremental checksum updates (RFC 1624),
//! and the TTL / hop-limit decrement of a forwarded packet.

use std::net::IpAddr;

use crate::packet::buf::PacketBuf;
use crate::packet::drop::DropReason;
use crate::packet::flow::proto;
use crate::wire::checksum::{fold, update16, update_bytes};
use crate::wire::{icmp, ipv4, ipv6, tcp, udp};

/// Which endpoint of the packet is rewritten.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Src,
    Dst,
}

/// Drops packets whose TTL / hop limit would reach zero, else decrements it
/// (fixing the IPv4 header checksum).
pub(crate) fn check_ttl<B: PacketBuf>(pkt: &mut B) -> Result<(), DropReason> {
    let l3 = pkt.meta().l3_offset as usize;
    let v6 = pkt.meta().is_ipv6();
    let d = pkt.data_mut();
    let ip = d.get_mut(l3..).ok_or(DropReason::TruncatedIpv4)?;
    if v6 {
        if ip.len() <= ipv6::HOP_LIMIT_OFFSET {
            return Err(DropReason::TruncatedIpv6);
        }
        let hl = ipv6::hop_limit(ip);
        if hl <= 1 {
            return Err(DropReason::TtlExpired);
        }
        ipv6::set_hop_limit(ip, hl - 1);
    } else {
        if ip.len() < ipv4::CHECKSUM_OFFSET + 2 {
            return Err(DropReason::TruncatedIpv4);
        }
        let ttl = ipv4::ttl(ip);
        if ttl <= 1 {
            return Err(DropReason::TtlExpired);
        }
        // TTL and protocol share a 16-bit word of the header checksum.
        let p = ipv4::proto(ip);
        let old = u16::from_be_bytes([ttl, p]);
        ipv4::set_ttl(ip, ttl - 1);
        let new = u16::from_be_bytes([ttl - 1, p]);
        ipv4::set_checksum(ip, update16(ipv4::checksum(ip), old, new));
    }
    Ok(())
}

/// Rewrites the source or destination address of a later fragment (no
/// transport header: the first fragment's checksum covers the
/// pseudo-header), updating the IPv4 header checksum.
pub(crate) fn rewrite_addr<B: PacketBuf>(
    pkt: &mut B,
    side: Side,
    addr: IpAddr,
) -> Result<(), DropReason> {
    rewrite_ip(pkt, side, addr).map(|_| ())
}

/// Rewrites the address in the IP header and the IPv4 header checksum;
/// returns the old and new address bytes and their length.
fn rewrite_ip<B: PacketBuf>(
    pkt: &mut B,
    side: Side,
    addr: IpAddr,
) -> Result<([u8; 16], [u8; 16], usize), DropReason> {
    let m = *pkt.meta();
    let l3 = m.l3_offset as usize;
    let d = pkt.data_mut();
    let trunc = if m.is_ipv6() {
        DropReason::TruncatedIpv6
    } else {
        DropReason::TruncatedIpv4
    };
    let mut old_addr = [0u8; 16];
    let mut new_addr = [0u8; 16];
    let alen = match (addr, m.is_ipv6()) {
        (IpAddr::V4(a), false) => {
            new_addr[..4].copy_from_slice(&a.octets());
            4
        }
        (IpAddr::V6(a), true) => {
            new_addr.copy_from_slice(&a.octets());
            16
        }
        _ => return Err(DropReason::NoNatAddress),
    };
    let at = l3
        + match (m.is_ipv6(), side) {
            (false, Side::Src) => ipv4::SRC.start,
            (false, Side::Dst) => ipv4::DST.start,
            (true, Side::Src) => ipv6::SRC.start,
            (true, Side::Dst) => ipv6::DST.start,
        };
    let field = d.get_mut(at..at + alen).ok_or(trunc)?;
    old_addr[..alen].copy_from_slice(field);
    field.copy_from_slice(&new_addr[..alen]);
    if !m.is_ipv6() {
        // In bounds: the address, past the checksum, was.
        let ip = &mut d[l3..];
        let hc = update_bytes(ipv4::checksum(ip), &old_addr[..4], &new_addr[..4]);
        ipv4::set_checksum(ip, hc);
    }
    Ok((old_addr, new_addr, alen))
}

/// Rewrites the source or destination address and port (ICMP echo
/// identifier) of a classified packet, updating the IPv4 header checksum and
/// the L4 checksum (pseudo-header included) incrementally.
pub(crate) fn rewrite<B: PacketBuf>(
    pkt: &mut B,
    side: Side,
    addr: IpAddr,
    port: u16,
) -> Result<(), DropReason> {
    if let (IpAddr::V4(a), false) = (addr, pkt.meta().is_ipv6()) {
        return rewrite_v4(pkt, side, u32::from(a), port);
    }
    rewrite_any(pkt, side, addr, port)
}

/// [`rewrite`] for any family (IPv6, or a family mismatch to refuse).
pub(super) fn rewrite_any<B: PacketBuf>(
    pkt: &mut B,
    side: Side,
    addr: IpAddr,
    port: u16,
) -> Result<(), DropReason> {
    let m = *pkt.meta();
    let l4 = m.l4_offset as usize;
    let p = m.flow.proto;
    let trunc = if m.is_ipv6() {
        DropReason::TruncatedIpv6
    } else {
        DropReason::TruncatedIpv4
    };

    // Address in the IP header, and the IPv4 header checksum.
    let (old_addr, new_addr, alen) = rewrite_ip(pkt, side, addr)?;
    let d = pkt.data_mut();

    // Port (or echo identifier) and the L4 checksum.
    let (port_at, csum_at, pseudo) = match p {
        proto::TCP => {
            let port_at = match side {
                Side::Src => tcp::SRC_PORT_OFFSET,
                Side::Dst => tcp::DST_PORT_OFFSET,
            };
            (port_at, tcp::CHECKSUM_OFFSET, true)
        }
        proto::UDP => {
            let port_at = match side {
                Side::Src => udp::SRC_PORT_OFFSET,
                Side::Dst => udp::DST_PORT_OFFSET,
            };
            (port_at, udp::CHECKSUM_OFFSET, true)
        }
        proto::ICMP => (icmp::IDENT_OFFSET, icmp::CHECKSUM_OFFSET, false),
        proto::ICMPV6 => (icmp::IDENT_OFFSET, icmp::CHECKSUM_OFFSET, true),
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    let l4d = d.get_mut(l4..).ok_or(trunc)?;
    if l4d.len() < csum_at + 2 || l4d.len() < port_at + 2 {
        return Err(DropReason::TruncatedUdp);
    }
    let old_port = u16::from_be_bytes([l4d[port_at], l4d[port_at + 1]]);
    l4d[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    let hc = u16::from_be_bytes([l4d[csum_at], l4d[csum_at + 1]]);
    if p == proto::UDP && hc == 0 && !m.is_ipv6() {
        // IPv4 UDP without checksum stays without (RFC 768).
        return Ok(());
    }
    let mut hc = update16(hc, old_port, port);
    if pseudo {
        hc = update_bytes(hc, &old_addr[..alen], &new_addr[..alen]);
    }
    if p == proto::UDP && hc == 0 {
        hc = 0xFFFF;
    }
    l4d[csum_at..csum_at + 2].copy_from_slice(&hc.to_be_bytes());
    Ok(())
}

/// [`rewrite`] of an IPv4 packet to an IPv4 address: the same checks and
/// results, with the address as one 32-bit word and each checksum updated
/// once by the sum of the changed words (RFC 1624 eqn. 3 over several
/// words: HC' = ~(~HC + ~m1 + m1' + ~m2 + m2' ...)).
#[inline]
fn rewrite_v4<B: PacketBuf>(
    pkt: &mut B,
    side: Side,
    addr: u32,
    port: u16,
) -> Result<(), DropReason> {
    let m = pkt.meta();
    let (l3, l4, p) = (m.l3_offset as usize, m.l4_offset as usize, m.flow.proto);
    let (port_at, csum_at, pseudo) = match (p, side) {
        (proto::TCP, Side::Src) => (tcp::SRC_PORT_OFFSET, tcp::CHECKSUM_OFFSET, true),
        (proto::TCP, Side::Dst) => (tcp::DST_PORT_OFFSET, tcp::CHECKSUM_OFFSET, true),
        (proto::UDP, Side::Src) => (udp::SRC_PORT_OFFSET, udp::CHECKSUM_OFFSET, true),
        (proto::UDP, Side::Dst) => (udp::DST_PORT_OFFSET, udp::CHECKSUM_OFFSET, true),
        (proto::ICMP, _) => (icmp::IDENT_OFFSET, icmp::CHECKSUM_OFFSET, false),
        (proto::ICMPV6, _) => (icmp::IDENT_OFFSET, icmp::CHECKSUM_OFFSET, true),
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    let at = l3
        + match side {
            Side::Src => ipv4::SRC.start,
            Side::Dst => ipv4::DST.start,
        };
    let d = pkt.data_mut();
    if d.len() < at + 4 {
        return Err(DropReason::TruncatedIpv4);
    }
    // The address sits past the header checksum.
    let old = u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]);
    d[at..at + 4].copy_from_slice(&addr.to_be_bytes());
    let sum16 = |x: u32| (x >> 16) + (x & 0xFFFF);
    let addr_delta = sum16(!old) + sum16(addr);
    let hc_at = l3 + ipv4::CHECKSUM_OFFSET;
    let hc = u16::from_be_bytes([d[hc_at], d[hc_at + 1]]);
    let hc = !fold(u32::from(!hc) + addr_delta);
    d[hc_at..hc_at + 2].copy_from_slice(&hc.to_be_bytes());
    let need = l4 + csum_at.max(port_at) + 2;
    if l4 > d.len() {
        return Err(DropReason::TruncatedIpv4);
    }
    if d.len() < need {
        return Err(DropReason::TruncatedUdp);
    }
    let (pa, ca) = (l4 + port_at, l4 + csum_at);
    let old_port = u16::from_be_bytes([d[pa], d[pa + 1]]);
    d[pa..pa + 2].copy_from_slice(&port.to_be_bytes());
    let c = u16::from_be_bytes([d[ca], d[ca + 1]]);
    if p == proto::UDP && c == 0 {
        // IPv4 UDP without checksum stays without (RFC 768).
        return Ok(());
    }
    let mut delta = u32::from(!old_port) + u32::from(port);
    if pseudo {
        delta += addr_delta;
    }
    let mut c = !fold(u32::from(!c) + delta);
    if p == proto::UDP && c == 0 {
        c = 0xFFFF;
    }
    d[ca..ca + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}
