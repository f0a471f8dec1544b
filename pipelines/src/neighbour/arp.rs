//! ARP (RFC 826): answering requests for the appliance's own addresses in
//! place, learning next hops from what arrives, and building the requests
//! the solicitor sends. Byte offsets are in [`crate::wire::arp`].

use std::net::{IpAddr, Ipv4Addr};

use super::local::{owns, port_mac, Answer};
use super::table::{Claim, Neighbours};
use crate::packet::drop::DropReason;
use crate::packet::time::Nanos;
use crate::topology::{PortInfo, Topology};
use crate::wire::arp;
use crate::wire::ethernet::{self, is_unicast_mac, l2_len, write_l2, ETHERTYPE_ARP};

/// Handles an ARP frame received on `port` at `now` whose L2 header is
/// `l2` bytes long. Offers the sender's MAC to the neighbour table if the
/// sender is a next hop (a reply, or a gratuitous ARP: a request or reply
/// whose sender and target address are the same; every other opcode is
/// refused there); rewrites a request for one of the appliance's
/// addresses into the reply.
pub fn answer_arp(
    frame: &mut [u8],
    l2: usize,
    port: u16,
    topo: &Topology,
    neighbours: &Neighbours,
    now: Nanos,
) -> Answer {
    let Some(a) = frame.get(l2..l2 + arp::LEN) else {
        return Answer::Consumed(DropReason::ArpMalformed);
    };
    if !arp::is_ethernet_ipv4(a) {
        return Answer::Consumed(DropReason::ArpMalformed);
    }
    let op = arp::oper(a);
    let sha = arp::sha(a);
    let spa = arp::spa(a);
    let tpa = arp::tpa(a);
    let claim = match op {
        // A reply to one of our addresses may answer our request; any
        // reply from the next hop is otherwise unsolicited, like a
        // gratuitous ARP, and may override after the lock time.
        arp::REPLY => Claim::Advert {
            answer: owns(topo, port, IpAddr::V4(tpa)),
            overrides: true,
        },
        // A gratuitous ARP in its request form (RFC 5227 announcement,
        // VRRP/keepalived failover): no more trusted than a reply.
        arp::REQUEST if spa == tpa => Claim::Advert {
            answer: false,
            overrides: true,
        },
        _ => Claim::Opcode,
    };
    let learned = neighbours.offer(port, IpAddr::V4(spa), sha, claim, now);
    if op == arp::REQUEST && owns(topo, port, IpAddr::V4(tpa)) && is_unicast_mac(&sha) {
        let mine = port_mac(topo, port);
        frame.copy_within(ethernet::SRC, 0);
        ethernet::set_src(frame, &mine);
        let a = &mut frame[l2..l2 + arp::LEN];
        arp::write(a, arp::REPLY, &mine, tpa, &sha, spa);
        return Answer::Reply;
    }
    Answer::Consumed(if learned || op == arp::REPLY {
        DropReason::NeighbourConsumed
    } else {
        DropReason::ArpUnhandled
    })
}

/// Writes a broadcast ARP request for `target` from `src` out of `port`
/// into `out`; returns the frame length (padded to the Ethernet minimum).
pub(super) fn write_request(
    port: &PortInfo,
    src: Ipv4Addr,
    target: Ipv4Addr,
    out: &mut [u8],
) -> Option<usize> {
    let l2 = l2_len(port.vlan);
    let len = (l2 + arp::LEN).max(60);
    let out = out.get_mut(..len)?;
    out.fill(0);
    write_l2(out, ethernet::BROADCAST, port.mac, port.vlan, ETHERTYPE_ARP);
    let a = &mut out[l2..l2 + arp::LEN];
    arp::write(a, arp::REQUEST, &port.mac, src, &[0; 6], target);
    Some(len)
}
