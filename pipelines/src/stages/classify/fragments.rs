//! Fragments (IPv4, and IPv6 with a Fragment header directly after the
//! fixed header): parsed here, tracked and translated by translate
//! (`crate::frag`, `stages/translate/fragments.rs`).
//!
//! Which shard: every fragment of a datagram, first or later, goes to its
//! *fragment shard*, a hash of (source, destination, identification,
//! protocol) ([`fragment_shard`]): a later fragment carries no port, so
//! neither the outbound rule (hash of the inside endpoint) nor the inbound
//! one (the NAT port) can place it, but all fragments share that key. That
//! shard's tracker learns the first fragment's ports and flow shard (set
//! here in `frag.flow_shard` by the ordinary rules), and sends every
//! fragment on to the flow's shard over the hairpin hand-off when it is
//! another one. The same in pipeline and run-to-completion placements:
//! `meta.shard` picks the translate lcore in both.
//!
//! Other IPv6 extension headers (before or after a Fragment header) are
//! still dropped as `ipv6_extension_header`; an atomic fragment (offset 0,
//! M clear, RFC 6946) is an ordinary packet whose transport header follows
//! the Fragment header.

use std::net::IpAddr;

use super::{parse_l4, Classify, L4Parsed, Parsed};
use crate::frag::{fragment_shard, FragKey};
use crate::packet::buf::{Direction, FragInfo, PacketBuf, PacketMeta};
use crate::packet::drop::DropReason;
use crate::packet::flow::{proto, FlowKey};
use crate::topology::{PortRole, UPLINK_AUTO};
use crate::wire::tcp::TCP_SYN;
use crate::wire::{icmp, ipv4, ipv6, tcp, udp};

/// An IPv4 fragment: `ip` from the IP header, `ihl` and `total` checked.
pub(super) fn parse_v4(
    ip: &[u8],
    l3: usize,
    ihl: usize,
    total: usize,
) -> Result<Parsed, DropReason> {
    let ff = ipv4::flags_frag(ip);
    let info = FragInfo {
        fragment: true,
        more: ff & ipv4::FLAG_MF != 0,
        id: u32::from(ipv4::ident(ip)),
        // At most 8191 * 8 = 65,528.
        offset: (ff & ipv4::FRAG_OFFSET_MASK) << 3,
        len: (total - ihl) as u16,
        ..FragInfo::default()
    };
    let src = IpAddr::V4(ipv4::src(ip));
    let dst = IpAddr::V4(ipv4::dst(ip));
    let at = (l3, l3 + ihl, l3 + total);
    parse(&ip[ihl..total], ipv4::proto(ip), src, dst, info, at)
}

/// An IPv6 packet whose fixed header is followed by a Fragment header;
/// `end` (the datagram's end in `ip`) checked.
pub(super) fn parse_v6(ip: &[u8], l3: usize, end: usize) -> Result<Parsed, DropReason> {
    let l4 = ipv6::HEADER_LEN + ipv6::FRAG_HEADER_LEN;
    if end < l4 {
        return Err(DropReason::BadPayloadLength);
    }
    let fh = &ip[ipv6::HEADER_LEN..l4];
    let next = ipv6::frag_next_header(fh);
    if next == ipv6::NEXT_FRAGMENT || ipv6::EXT_HEADERS.contains(&next) {
        return Err(DropReason::Ipv6ExtensionHeader);
    }
    let info = FragInfo {
        fragment: true,
        more: ipv6::frag_more(fh),
        id: ipv6::frag_id(fh),
        offset: ipv6::frag_offset(fh),
        len: (end - l4) as u16,
        ..FragInfo::default()
    };
    let src = IpAddr::V6(ipv6::src(ip));
    let dst = IpAddr::V6(ipv6::dst(ip));
    let payload = &ip[l4..end];
    if info.offset == 0 && !info.more {
        // Atomic fragment: the whole datagram, translated as one.
        let p = match parse_l4(payload, next, src, dst, true) {
            // Neighbour discovery is never fragmented (RFC 6980).
            Err(DropReason::NeighborDiscovery) => return Err(DropReason::Fragment),
            r => r?,
        };
        return Ok(Parsed::new(l3, l3 + l4, l3 + end, src, dst, p));
    }
    parse(payload, next, src, dst, info, (l3, l3 + l4, l3 + end))
}

/// A fragment's transport part: the first fragment must hold the whole
/// transport header (RFC 1858), a later one has none.
fn parse(
    payload: &[u8],
    protocol: u8,
    src: IpAddr,
    dst: IpAddr,
    info: FragInfo,
    (l3, l4, end): (usize, usize, usize),
) -> Result<Parsed, DropReason> {
    // Every fragment but the last carries a multiple of 8 bytes (RFC 791,
    // RFC 8200 4.5); anything else cannot be placed.
    if info.more && (info.len == 0 || !info.len.is_multiple_of(8)) {
        return Err(DropReason::Fragment);
    }
    let v6 = matches!(src, IpAddr::V6(_));
    let p = if info.offset == 0 {
        first_l4(payload, protocol, src, dst, v6)?
    } else {
        match protocol {
            proto::TCP | proto::UDP => {}
            proto::ICMP | proto::ICMPV6 if (protocol == proto::ICMPV6) == v6 => {}
            _ => return Err(DropReason::UnsupportedProtocol),
        }
        L4Parsed {
            flow: FlowKey {
                src,
                dst,
                src_port: 0,
                dst_port: 0,
                proto: protocol,
            },
            tcp_flags: 0,
            inner: None,
        }
    };
    let mut parsed = Parsed::new(l3, l4, end, src, dst, p);
    parsed.frag = info;
    Ok(parsed)
}

/// The transport header of a first fragment: whole, or `fragment_tiny`.
/// The UDP length names the whole datagram, so only its floor is checked.
/// ICMP errors, neighbour discovery and TCP SYNs are not translated in
/// fragments (`fragment`): errors and ND are never fragmented by a sound
/// sender, and a SYN would start a race whose copies the later fragments
/// cannot follow.
fn first_l4(
    l4: &[u8],
    protocol: u8,
    src: IpAddr,
    dst: IpAddr,
    v6: bool,
) -> Result<L4Parsed, DropReason> {
    let need = match protocol {
        proto::TCP if l4.len() >= tcp::MIN_HEADER_LEN => {
            tcp::header_len(l4).max(tcp::MIN_HEADER_LEN)
        }
        proto::TCP => tcp::MIN_HEADER_LEN,
        proto::UDP => udp::HEADER_LEN,
        proto::ICMP | proto::ICMPV6 => icmp::HEADER_LEN,
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    if l4.len() < need {
        return Err(DropReason::FragmentTiny);
    }
    let p = if protocol == proto::UDP {
        if udp::len(l4) < udp::HEADER_LEN {
            return Err(DropReason::TruncatedUdp);
        }
        L4Parsed {
            flow: FlowKey {
                src,
                dst,
                src_port: udp::src_port(l4),
                dst_port: udp::dst_port(l4),
                proto: protocol,
            },
            tcp_flags: 0,
            inner: None,
        }
    } else {
        match parse_l4(l4, protocol, src, dst, v6) {
            Err(DropReason::NeighborDiscovery) => return Err(DropReason::Fragment),
            r => r?,
        }
    };
    if p.inner.is_some() || (protocol == proto::TCP && p.tcp_flags & TCP_SYN != 0) {
        return Err(DropReason::Fragment);
    }
    Ok(p)
}

/// A first fragment classified as any packet: `m.shard` (its flow's
/// shard) moves to `frag.flow_shard`, and the fragment goes to its
/// datagram's fragment shard.
pub(super) fn mark_first(m: &mut PacketMeta, p: &Parsed, shards: u16) {
    m.frag = p.frag;
    m.frag.flow_shard = m.shard;
    m.shard = fragment_shard(&key(p), shards);
}

fn key(p: &Parsed) -> FragKey {
    FragKey {
        src: p.src,
        dst: p.dst,
        id: p.frag.id,
        proto: p.flow.proto,
    }
}

impl Classify {
    /// Fragments from the LAN to a NAT address of the appliance would be
    /// hairpinned (translated twice, by two shards): not done for
    /// fragments, the first one included.
    pub(super) fn fragment_hairpin(&self, p: &Parsed, role: &PortRole) -> Result<(), DropReason> {
        if *role == PortRole::Lan && self.topo.nat_addr_uplink.contains_key(&p.dst) {
            return Err(DropReason::Fragment);
        }
        Ok(())
    }

    /// A later fragment (no transport header): the checks of its direction
    /// that need no port, then its datagram's fragment shard. Its flow's
    /// ports, service and uplink come from the first fragment, in translate.
    pub(super) fn later_fragment<B: PacketBuf>(
        &self,
        pkt: &mut B,
        p: &Parsed,
        role: &PortRole,
        vlan: Option<u16>,
    ) -> Result<(), DropReason> {
        let t = &self.topo;
        let (direction, uplink) = match role {
            PortRole::Lan => {
                if !t.is_lan_source(p.src) {
                    return Err(DropReason::SpoofedSource);
                }
                if t.lan_addrs.contains(&p.dst) || t.is_lan_source(p.dst) {
                    return Err(DropReason::LocalDestination);
                }
                (Direction::Outbound, UPLINK_AUTO)
            }
            PortRole::Uplink(ids) => match t.nat_addr_uplink.get(&p.dst) {
                Some(u) if ids.contains(u) => (Direction::Inbound, *u),
                // A service address: the first fragment names the uplink.
                _ if self.services.is_some() => (Direction::Inbound, 0),
                _ => return Err(DropReason::NotNatAddress),
            },
            PortRole::Unused => return Err(DropReason::UnknownPort),
        };
        pkt.set_len(p.frame_len);
        let m = pkt.meta_mut();
        m.vlan = vlan;
        m.l3_offset = p.l3 as u16;
        m.l4_offset = p.l4 as u16;
        m.flow = p.flow;
        m.tcp_flags = 0;
        m.inner_l3 = 0;
        m.inner_l4 = 0;
        m.direction = direction;
        m.uplink = uplink;
        m.shard = fragment_shard(&key(p), t.shards);
        m.service = 0;
        m.dscp = 0;
        m.frag = p.frag;
        // No ports yet: the tracker completes `flow`, so no hash of it.
        m.flow_hash = 0;
        Ok(())
    }
}
