//! Tests of ARP and neighbour discovery answers, learning and the solicitor.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Deref;
use std::sync::Arc;

use super::table::{mac_word, word_mac};
use super::*;
use crate::packet::drop::DropReason;
use crate::packet::time::Nanos;
use crate::testing::*;
use crate::topology::{Topology, UplinkId};
use crate::wire::arp::{REPLY as ARP_REPLY, REQUEST as ARP_REQUEST};
use crate::wire::be16;
use crate::wire::icmp::{v6_checksum as icmpv6_checksum, V6_NEXT_HEADER as ICMPV6};
use crate::wire::ipv6::addr_at as v6;
use crate::wire::ndisc::{
    NA as ND_NA, NA_OVERRIDE, NA_ROUTER, NA_SOLICITED, NS as ND_NS, OPT_SOURCE_LLA, OPT_TARGET_LLA,
};

/// A topology and the neighbour table built beside it, as the runtime
/// builds them.
struct Site {
    topo: Arc<Topology>,
    neighbours: Neighbours,
}

impl Deref for Site {
    type Target = Topology;
    fn deref(&self) -> &Topology {
        &self.topo
    }
}

fn with_table(topo: Arc<Topology>) -> Site {
    let neighbours = Neighbours::new(&topo.uplinks);
    Site { topo, neighbours }
}

fn ipv4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn mac_words_round_trip() {
    let m = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
    assert_eq!(word_mac(mac_word(m)), Some(m));
    assert_eq!(word_mac(0), None);
    assert_eq!(word_mac(mac_word([0; 6])), Some([0; 6]));
}

#[test]
fn fixed_macs_need_no_resolution() {
    let topo = with_table(site(1));
    for (u, up) in topo.uplinks.iter().enumerate() {
        assert_eq!(
            topo.neighbours.mac_for(u as UplinkId, false),
            Some(up.next_hop_mac)
        );
    }
    let mut s = Solicitor::new(&topo.neighbours);
    let mut asked = 0;
    s.poll(Nanos::ZERO, &topo.neighbours, |_| {
        asked += 1;
        true
    });
    assert_eq!(asked, 0);
}

#[test]
fn solicitor_retries_until_learned_then_refreshes() {
    let topo = dynamic_site();
    let n = &topo.neighbours;
    let mut s = Solicitor::new(n);
    let mut log: Vec<(Nanos, IpAddr)> = Vec::new();
    let tick = |s: &mut Solicitor, log: &mut Vec<(Nanos, IpAddr)>, now| {
        s.poll(now, n, |h| {
            log.push((now, h.ip.unwrap()));
            true
        })
    };
    tick(&mut s, &mut log, Nanos::ZERO);
    assert_eq!(log.len(), 2, "v4 and v6 next hops asked at once: {log:?}");
    tick(&mut s, &mut log, Nanos(Solicitor::RETRY.0 - 1));
    assert_eq!(log.len(), 2);
    tick(&mut s, &mut log, Solicitor::RETRY);
    assert_eq!(log.len(), 4);
    assert!(n.learn(WAN_PORT, IpAddr::V4(ipv4(NEXT_HOP4)), ISP0_MAC));
    tick(&mut s, &mut log, Nanos(2 * Solicitor::RETRY.0));
    // Both asked; the v4 one is resolved and waits a refresh period now.
    assert_eq!(log.len(), 6);
    tick(&mut s, &mut log, Nanos(3 * Solicitor::RETRY.0));
    assert_eq!(log.len(), 7);
    assert!(log[6].1.is_ipv6());
    tick(
        &mut s,
        &mut log,
        Nanos(2 * Solicitor::RETRY.0 + Solicitor::REFRESH.0),
    );
    assert!(log[7..].iter().any(|(_, ip)| ip.is_ipv4()));
}

/// The one-uplink test site with the uplink's next hop resolved on the
/// wire instead of configured.
fn dynamic_site() -> Site {
    let t = site(1);
    let mut uplinks = t.uplinks.clone();
    uplinks.truncate(1);
    uplinks[0].next_hop_mac = [0; 6];
    uplinks[0].next_hop_v4 = Some(ipv4(NEXT_HOP4));
    uplinks[0].next_hop_v6 = Some(NEXT_HOP6.parse().unwrap());
    with_table(Arc::new(Topology::new(
        t.ports.clone(),
        t.lan_port,
        t.lan_prefixes.clone(),
        t.lan_addrs.clone(),
        uplinks,
        t.nat_ports,
        t.shards,
    )))
}

const NEXT_HOP4: &str = "192.0.2.254";
const NEXT_HOP6: &str = "2001:db8::fe";

#[rustfmt::skip]
fn arp(op: u16, sha: [u8; 6], spa: &str, tha: [u8; 6], tpa: &str, dst: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);                   // Ethernet destination
    f.extend_from_slice(&sha);                   // Ethernet source
    f.extend_from_slice(&[0x08, 0x06]);          // EtherType ARP
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4]); // Ethernet, IPv4, 6, 4
    f.extend_from_slice(&op.to_be_bytes());      // operation
    f.extend_from_slice(&sha);                   // sender MAC
    f.extend_from_slice(&ipv4(spa).octets());    // sender IP
    f.extend_from_slice(&tha);                   // target MAC
    f.extend_from_slice(&ipv4(tpa).octets());    // target IP
    f.resize(60, 0);                             // Ethernet padding
    f
}

#[test]
fn arp_request_for_the_gateway_is_answered_in_place() {
    let topo = with_table(site(1));
    let mut f = arp(1, CLIENT_MAC, "10.0.0.2", [0; 6], "10.0.0.1", [0xff; 6]);
    assert_eq!(
        answer_arp(&mut f, 14, LAN_PORT, &topo, &topo.neighbours),
        Answer::Reply
    );
    assert_eq!(f[0..6], CLIENT_MAC);
    assert_eq!(f[6..12], LAN_MAC);
    assert_eq!(be16(&f, 20), Some(ARP_REPLY));
    assert_eq!(f[22..28], LAN_MAC, "sender MAC");
    assert_eq!(f[28..32], [10, 0, 0, 1], "sender IP");
    assert_eq!(f[32..38], CLIENT_MAC, "target MAC");
    assert_eq!(f[38..42], [10, 0, 0, 2], "target IP");
    assert_eq!(f.len(), 60);
}

#[test]
fn arp_for_nat_addresses_only_on_their_uplink_port() {
    let topo = with_table(site(1));
    let nat = NAT4;
    let mut f = arp(1, ISP0_MAC, "192.0.2.254", [0; 6], nat, [0xff; 6]);
    assert_eq!(
        answer_arp(&mut f, 14, WAN_PORT, &topo, &topo.neighbours),
        Answer::Reply
    );
    assert_eq!(f[22..28], WAN_MAC);
    // The same question on the LAN port is not answered: the NAT
    // address does not live there.
    let mut f = arp(1, CLIENT_MAC, "10.0.0.2", [0; 6], nat, [0xff; 6]);
    assert_eq!(
        answer_arp(&mut f, 14, LAN_PORT, &topo, &topo.neighbours),
        Answer::Consumed(DropReason::ArpUnhandled)
    );
    // Nor a question about someone else.
    let mut f = arp(1, CLIENT_MAC, "10.0.0.2", [0; 6], "10.0.0.9", [0xff; 6]);
    assert_eq!(
        answer_arp(&mut f, 14, LAN_PORT, &topo, &topo.neighbours),
        Answer::Consumed(DropReason::ArpUnhandled)
    );
}

#[test]
fn arp_reply_from_the_next_hop_is_learned() {
    let topo = dynamic_site();
    assert_eq!(topo.neighbours.mac_for(0, false), None);
    let mut f = arp(2, ISP0_MAC, NEXT_HOP4, WAN_MAC, NAT4, WAN_MAC);
    assert_eq!(
        answer_arp(&mut f, 14, WAN_PORT, &topo, &topo.neighbours),
        Answer::Consumed(DropReason::NeighbourConsumed)
    );
    assert_eq!(topo.neighbours.mac_for(0, false), Some(ISP0_MAC));
    // The same reply on another port teaches nothing.
    let topo = dynamic_site();
    let mut f = arp(2, ISP0_MAC, NEXT_HOP4, WAN_MAC, NAT4, WAN_MAC);
    answer_arp(&mut f, 14, LAN_PORT, &topo, &topo.neighbours);
    assert_eq!(topo.neighbours.mac_for(0, false), None);
    // A multicast sender MAC is never learned.
    let mut f = arp(
        2,
        [0x01, 0, 0x5e, 0, 0, 1],
        NEXT_HOP4,
        WAN_MAC,
        NAT4,
        WAN_MAC,
    );
    answer_arp(&mut f, 14, WAN_PORT, &topo, &topo.neighbours);
    assert_eq!(topo.neighbours.mac_for(0, false), None);
}

#[test]
fn malformed_arp_is_dropped() {
    let topo = with_table(site(1));
    let good = arp(1, CLIENT_MAC, "10.0.0.2", [0; 6], "10.0.0.1", [0xff; 6]);
    for (at, v) in [(15, 6), (16, 0x86), (18, 8), (19, 16)] {
        let mut f = good.clone();
        f[at] = v;
        assert_eq!(
            answer_arp(&mut f, 14, LAN_PORT, &topo, &topo.neighbours),
            Answer::Consumed(DropReason::ArpMalformed),
            "byte {at}"
        );
    }
    let mut short = good[..40].to_vec();
    assert_eq!(
        answer_arp(&mut short, 14, LAN_PORT, &topo, &topo.neighbours),
        Answer::Consumed(DropReason::ArpMalformed)
    );
}

/// A neighbour solicitation from `src` (MAC `mac`) for `target`.
fn ns(src: &str, mac: [u8; 6], target: &str, with_option: bool) -> Vec<u8> {
    let src: Ipv6Addr = src.parse().unwrap();
    let target: Ipv6Addr = target.parse().unwrap();
    let dst = solicited_node(&target);
    let mut body = vec![ND_NS, 0, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&target.octets());
    if with_option {
        body.extend_from_slice(&[OPT_SOURCE_LLA, 1]);
        body.extend_from_slice(&mac);
    }
    let c = icmpv6_checksum(&src, &dst, &body);
    body[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(body.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[ICMPV6, 255]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(&body);
    let d = dst.octets();
    let mut f = ethernet(
        [0x33, 0x33, d[12], d[13], d[14], d[15]],
        mac,
        None,
        0x86dd,
        &ip,
    );
    f.resize(f.len().max(60), 0);
    f
}

#[test]
fn solicitation_for_the_gateway_gets_an_advertisement() {
    let topo = with_table(site(1));
    let mut f = ns("fd00::2", CLIENT_MAC, "fd00::1", true);
    f.resize(14 + 40 + 32, 0);
    let mut len = 0;
    assert_eq!(
        answer_nd(&mut f, 14, LAN_PORT, &topo, &topo.neighbours, &mut len),
        Answer::Reply
    );
    assert_eq!(len, 14 + 40 + 32);
    let f = &f[..len];
    assert_eq!(f[0..6], CLIENT_MAC);
    assert_eq!(f[6..12], LAN_MAC);
    assert_eq!(v6(&f[22..38]), "fd00::1".parse::<Ipv6Addr>().unwrap());
    assert_eq!(v6(&f[38..54]), "fd00::2".parse::<Ipv6Addr>().unwrap());
    let body = &f[54..];
    assert_eq!(body[0], ND_NA);
    assert_eq!(body[4], NA_ROUTER | NA_SOLICITED | NA_OVERRIDE);
    assert_eq!(body[24..26], [OPT_TARGET_LLA, 1]);
    assert_eq!(body[26..32], LAN_MAC);
    let (s, d) = (v6(&f[22..38]), v6(&f[38..54]));
    assert_eq!(icmpv6_checksum(&s, &d, body), 0, "checksum verifies");
}

#[test]
fn solicitation_is_checked() {
    let topo = with_table(site(1));
    let good = ns("fd00::2", CLIENT_MAC, "fd00::1", true);
    let mut len = 0;
    // Hop limit other than 255.
    let mut f = good.clone();
    f[21] = 64;
    assert_eq!(
        answer_nd(&mut f, 14, LAN_PORT, &topo, &topo.neighbours, &mut len),
        Answer::Consumed(DropReason::NdMalformed)
    );
    // Corrupted checksum.
    let mut f = good.clone();
    f[14 + 40 + 10] ^= 1;
    assert_eq!(
        answer_nd(&mut f, 14, LAN_PORT, &topo, &topo.neighbours, &mut len),
        Answer::Consumed(DropReason::NdMalformed)
    );
    // For someone else.
    let mut f = ns("fd00::2", CLIENT_MAC, "fd00::7", true);
    assert_eq!(
        answer_nd(&mut f, 14, LAN_PORT, &topo, &topo.neighbours, &mut len),
        Answer::Consumed(DropReason::NeighborDiscovery)
    );
}

#[test]
fn advertisement_and_solicitation_from_the_next_hop_are_learned() {
    let topo = dynamic_site();
    // The next hop asks for our NAT address: we answer and learn it.
    let nat6 = topo.uplinks[0]
        .nat_addrs
        .iter()
        .find(|a| a.is_ipv6())
        .unwrap()
        .to_string();
    let mut f = ns(NEXT_HOP6, ISP0_MAC, &nat6, true);
    let mut len = 0;
    assert_eq!(
        answer_nd(&mut f, 14, WAN_PORT, &topo, &topo.neighbours, &mut len),
        Answer::Reply
    );
    assert_eq!(topo.neighbours.mac_for(0, true), Some(ISP0_MAC));
    assert_eq!(topo.neighbours.mac_for(0, false), None);
}

#[test]
fn requests_are_well_formed_and_their_answers_resolve() {
    let topo = dynamic_site();
    let mut buf = [0u8; REQUEST_MAX_LEN];
    for hop in topo.neighbours.hops() {
        let n = write_request(&topo, hop, &mut buf).unwrap();
        let f = &buf[..n];
        assert_eq!(f[6..12], WAN_MAC);
        if hop.is_v6() {
            let (s, d) = (v6(&f[22..38]), v6(&f[38..54]));
            assert_eq!(
                d,
                solicited_node(
                    &hop.ip
                        .map(|a| match a {
                            IpAddr::V6(a) => a,
                            _ => unreachable!(),
                        })
                        .unwrap()
                )
            );
            assert_eq!(icmpv6_checksum(&s, &d, &f[54..n]), 0);
            // Answer it as the next hop would: an NA with its MAC.
            let mut na = f.to_vec();
            na[54] = ND_NA;
            na[78] = OPT_TARGET_LLA;
            na[80..86].copy_from_slice(&ISP0_MAC);
            na[38..54].copy_from_slice(&s.octets());
            na[22..38].copy_from_slice(
                &hop.ip
                    .map(|a| match a {
                        IpAddr::V6(a) => a.octets(),
                        _ => unreachable!(),
                    })
                    .unwrap(),
            );
            na[56..58].fill(0);
            let (s2, d2) = (v6(&na[22..38]), v6(&na[38..54]));
            let c = icmpv6_checksum(&s2, &d2, &na[54..n]);
            na[56..58].copy_from_slice(&c.to_be_bytes());
            let mut len = 0;
            assert_eq!(
                answer_nd(&mut na, 14, WAN_PORT, &topo, &topo.neighbours, &mut len),
                Answer::Consumed(DropReason::NeighbourConsumed)
            );
            assert_eq!(topo.neighbours.mac_for(0, true), Some(ISP0_MAC));
        } else {
            assert_eq!(f[0..6], [0xff; 6]);
            assert_eq!(be16(f, 20), Some(ARP_REQUEST));
            assert_eq!(f[38..42], ipv4(NEXT_HOP4).octets());
        }
    }
}
