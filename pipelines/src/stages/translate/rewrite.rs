//! Address and port rewrite with incremental checksum updates (RFC 1624),
//! and the TTL / hop-limit decrement of a forwarded packet.

use std::net::IpAddr;

use crate::packet::buf::PacketBuf;
use crate::packet::drop::DropReason;
use crate::packet::flow::proto;
use crate::wire::checksum::{update16, update_bytes};

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
        let hl = ip.get_mut(7).ok_or(DropReason::TruncatedIpv6)?;
        if *hl <= 1 {
            return Err(DropReason::TtlExpired);
        }
        *hl -= 1;
    } else {
        if ip.len() < 12 {
            return Err(DropReason::TruncatedIpv4);
        }
        let ttl = ip[8];
        if ttl <= 1 {
            return Err(DropReason::TtlExpired);
        }
        let old = u16::from_be_bytes([ttl, ip[9]]);
        ip[8] = ttl - 1;
        let new = u16::from_be_bytes([ip[8], ip[9]]);
        let hc = u16::from_be_bytes([ip[10], ip[11]]);
        ip[10..12].copy_from_slice(&update16(hc, old, new).to_be_bytes());
    }
    Ok(())
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
    let m = *pkt.meta();
    let (l3, l4) = (m.l3_offset as usize, m.l4_offset as usize);
    let p = m.flow.proto;
    let d = pkt.data_mut();
    let trunc = if m.is_ipv6() {
        DropReason::TruncatedIpv6
    } else {
        DropReason::TruncatedIpv4
    };

    // Address in the IP header, and the IPv4 header checksum.
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
            (false, Side::Src) => 12,
            (false, Side::Dst) => 16,
            (true, Side::Src) => 8,
            (true, Side::Dst) => 24,
        };
    let field = d.get_mut(at..at + alen).ok_or(trunc)?;
    old_addr[..alen].copy_from_slice(field);
    field.copy_from_slice(&new_addr[..alen]);
    if !m.is_ipv6() {
        let hc = u16::from_be_bytes([d[l3 + 10], d[l3 + 11]]);
        let hc = update_bytes(hc, &old_addr[..4], &new_addr[..4]);
        d[l3 + 10..l3 + 12].copy_from_slice(&hc.to_be_bytes());
    }

    // Port (or echo identifier) and the L4 checksum.
    let (port_at, csum_at, pseudo) = match p {
        proto::TCP => (if side == Side::Src { 0 } else { 2 }, 16, true),
        proto::UDP => (if side == Side::Src { 0 } else { 2 }, 6, true),
        proto::ICMP => (4, 2, false),
        proto::ICMPV6 => (4, 2, true),
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
