//! IPv6 neighbour discovery (RFC 4861): answering solicitations for the
//! appliance's own addresses in place, learning next hops from
//! advertisements and solicitations, and building the solicitations the
//! solicitor sends. Byte offsets are in [`crate::wire::ndisc`],
//! [`crate::wire::ipv6`] and [`crate::wire::icmp`].

use std::net::{IpAddr, Ipv6Addr};

use super::local::{owns, port_mac, Answer};
use super::table::{Claim, Neighbours};
use crate::packet::drop::DropReason;
use crate::packet::time::Nanos;
use crate::topology::{PortInfo, Topology};
use crate::wire::ethernet::{self, l2_len, write_l2, ETHERTYPE_IPV6};
use crate::wire::ndisc::{self, BODY_LEN, LLA_OPT_LEN};
use crate::wire::{icmp, ipv6};

/// Handles an IPv6 neighbour discovery message (ICMPv6 type 133..=137) at
/// `l3` received on `port` at `now`. A neighbour solicitation for one of
/// the appliance's addresses becomes the advertisement (the frame's length
/// is returned in `new_len`, which the caller applies); an advertisement
/// whose target is a next hop is offered to the neighbour table with its
/// Solicited and Override flags; a solicitation from a next hop never
/// teaches its MAC (it is counted as refused). Router solicitations,
/// router advertisements and redirects are ignored: the appliance's routes
/// are its configuration.
pub fn answer_nd(
    frame: &mut [u8],
    l3: usize,
    port: u16,
    topo: &Topology,
    neighbours: &Neighbours,
    new_len: &mut usize,
    now: Nanos,
) -> Answer {
    let bad = Answer::Consumed(DropReason::NdMalformed);
    let Some(ip) = frame.get(l3..l3 + ipv6::HEADER_LEN) else {
        return bad;
    };
    let payload = ipv6::payload_len(ip);
    if ipv6::next_header(ip) != icmp::V6_NEXT_HEADER || ipv6::hop_limit(ip) != ndisc::HOP_LIMIT {
        return bad;
    }
    let (src, dst) = (ipv6::src(ip), ipv6::dst(ip));
    let start = l3 + ipv6::HEADER_LEN;
    let Some(body) = frame.get(start..start + payload) else {
        return bad;
    };
    let kind = body.first().copied().unwrap_or(0);
    if kind != ndisc::NS && kind != ndisc::NA {
        return Answer::Consumed(DropReason::NeighborDiscovery);
    }
    if body.len() < BODY_LEN || icmp::code(body) != 0 || icmp::v6_checksum(&src, &dst, body) != 0 {
        return bad;
    }
    let target = ndisc::target(body);
    let want = if kind == ndisc::NS {
        ndisc::OPT_SOURCE_LLA
    } else {
        ndisc::OPT_TARGET_LLA
    };
    let Ok(opt) = ndisc::lla_option(&body[ndisc::OPTIONS_OFFSET..], want) else {
        return bad;
    };
    let eth_src = ethernet::src(frame).unwrap_or_default();
    if kind == ndisc::NA {
        let flags = body[ndisc::FLAGS_OFFSET];
        let claim = Claim::Advert {
            answer: flags & ndisc::NA_SOLICITED != 0,
            overrides: flags & ndisc::NA_OVERRIDE != 0,
        };
        neighbours.offer(port, IpAddr::V6(target), opt.unwrap_or(eth_src), claim, now);
        return Answer::Consumed(DropReason::NeighbourConsumed);
    }
    // A solicitation: its sender (unless it is doing duplicate address
    // detection from ::) may be a next hop, whose source option is
    // refused and counted: anyone can send a solicitation.
    let dad = src.is_unspecified();
    if !dad {
        if let Some(m) = opt {
            neighbours.offer(port, IpAddr::V6(src), m, Claim::Solicitation, now);
        }
    }
    if !owns(topo, port, IpAddr::V6(target)) {
        return Answer::Consumed(DropReason::NeighborDiscovery);
    }
    let mine = port_mac(topo, port);
    let lan = topo.lan_port == port;
    // RFC 4861 7.2.4: to the solicitor, or to all nodes after DAD.
    let to = if dad { ndisc::ALL_NODES } else { src };
    let len = BODY_LEN + LLA_OPT_LEN;
    let end = start + len;
    if frame.len() < end {
        // A solicitation without a source option is 24 bytes; the frame
        // always has room for 8 more in practice (Ethernet minimum is 60),
        // but a short one cannot be answered in place.
        return bad;
    }
    let eth_dst = if dad { ndisc::ALL_NODES_MAC } else { eth_src };
    ethernet::set_dst(frame, &eth_dst);
    ethernet::set_src(frame, &mine);
    let ip = &mut frame[l3..l3 + ipv6::HEADER_LEN];
    ipv6::set_payload_len(ip, len as u16);
    ipv6::set_src(ip, &target);
    ipv6::set_dst(ip, &to);
    let flags = (if lan { ndisc::NA_ROUTER } else { 0 })
        | if dad { 0 } else { ndisc::NA_SOLICITED }
        | ndisc::NA_OVERRIDE;
    let body = &mut frame[start..end];
    ndisc::write(
        body,
        ndisc::NA,
        flags,
        &target,
        ndisc::OPT_TARGET_LLA,
        &mine,
        &target,
        &to,
    );
    *new_len = end;
    Answer::Reply
}

/// Writes a neighbour solicitation for `target` from `src` out of `port`
/// (to the target's solicited-node address) into `out`; returns its length.
pub(super) fn write_solicitation(
    port: &PortInfo,
    src: Ipv6Addr,
    target: Ipv6Addr,
    out: &mut [u8],
) -> Option<usize> {
    let l2 = l2_len(port.vlan);
    let dst = ndisc::solicited_node(&target);
    let body_len = BODY_LEN + LLA_OPT_LEN;
    let len = l2 + ipv6::HEADER_LEN + body_len;
    let out = out.get_mut(..len)?;
    out.fill(0);
    let mac = ndisc::multicast_mac(&dst);
    write_l2(out, mac, port.mac, port.vlan, ETHERTYPE_IPV6);
    let ip = &mut out[l2..l2 + ipv6::HEADER_LEN];
    ipv6::write_header(
        ip,
        body_len as u16,
        icmp::V6_NEXT_HEADER,
        ndisc::HOP_LIMIT,
        &src,
        &dst,
    );
    let body = &mut out[l2 + ipv6::HEADER_LEN..len];
    ndisc::write(
        body,
        ndisc::NS,
        0,
        &target,
        ndisc::OPT_SOURCE_LLA,
        &port.mac,
        &src,
        &dst,
    );
    Some(len)
}
