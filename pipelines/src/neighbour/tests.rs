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
    ALL_NODES, ALL_NODES_MAC, NA as ND_NA, NA_OVERRIDE, NA_ROUTER, NA_SOLICITED, NS as ND_NS,
    OPT_SOURCE_LLA, OPT_TARGET_LLA,
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

/// An arbitrary time the tests' messages arrive at.
const T0: Nanos = Nanos::ZERO;

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
    let reply = Claim::Advert {
        answer: true,
        overrides: true,
    };
    let v4 = IpAddr::V4(ipv4(NEXT_HOP4));
    assert!(n.offer(WAN_PORT, v4, ISP0_MAC, reply, Solicitor::RETRY));
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
        answer_arp(&mut f, 14, LAN_PORT, &topo, &topo.neighbours, T0),
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
        answer_arp(&mut f, 14, WAN_PORT, &topo, &topo.neighbours, T0),
        Answer::Reply
    );
    assert_eq!(f[22..28], WAN_MAC);
    // The same question on the LAN port is not answered: the NAT
    // address does not live there.
    let mut f = arp(1, CLIENT_MAC, "10.0.0.2", [0; 6], nat, [0xff; 6]);
    assert_eq!(
        answer_arp(&mut f, 14, LAN_PORT, &topo, &topo.neighbours, T0),
        Answer::Consumed(DropReason::ArpUnhandled)
    );
    // Nor a question about someone else.
    let mut f = arp(1, CLIENT_MAC, "10.0.0.2", [0; 6], "10.0.0.9", [0xff; 6]);
    assert_eq!(
        answer_arp(&mut f, 14, LAN_PORT, &topo, &topo.neighbours, T0),
        Answer::Consumed(DropReason::ArpUnhandled)
    );
}

#[test]
fn arp_reply_from_the_next_hop_is_learned() {
    let topo = dynamic_site();
    assert_eq!(topo.neighbours.mac_for(0, false), None);
    let mut f = arp(2, ISP0_MAC, NEXT_HOP4, WAN_MAC, NAT4, WAN_MAC);
    assert_eq!(
        answer_arp(&mut f, 14, WAN_PORT, &topo, &topo.neighbours, T0),
        Answer::Consumed(DropReason::NeighbourConsumed)
    );
    assert_eq!(topo.neighbours.mac_for(0, false), Some(ISP0_MAC));
    // The same reply on another port teaches nothing.
    let topo = dynamic_site();
    let mut f = arp(2, ISP0_MAC, NEXT_HOP4, WAN_MAC, NAT4, WAN_MAC);
    answer_arp(&mut f, 14, LAN_PORT, &topo, &topo.neighbours, T0);
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
    answer_arp(&mut f, 14, WAN_PORT, &topo, &topo.neighbours, T0);
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
            answer_arp(&mut f, 14, LAN_PORT, &topo, &topo.neighbours, T0),
            Answer::Consumed(DropReason::ArpMalformed),
            "byte {at}"
        );
    }
    let mut short = good[..40].to_vec();
    assert_eq!(
        answer_arp(&mut short, 14, LAN_PORT, &topo, &topo.neighbours, T0),
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
        answer_nd(&mut f, 14, LAN_PORT, &topo, &topo.neighbours, &mut len, T0),
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
        answer_nd(&mut f, 14, LAN_PORT, &topo, &topo.neighbours, &mut len, T0),
        Answer::Consumed(DropReason::NdMalformed)
    );
    // Corrupted checksum.
    let mut f = good.clone();
    f[14 + 40 + 10] ^= 1;
    assert_eq!(
        answer_nd(&mut f, 14, LAN_PORT, &topo, &topo.neighbours, &mut len, T0),
        Answer::Consumed(DropReason::NdMalformed)
    );
    // For someone else.
    let mut f = ns("fd00::2", CLIENT_MAC, "fd00::7", true);
    assert_eq!(
        answer_nd(&mut f, 14, LAN_PORT, &topo, &topo.neighbours, &mut len, T0),
        Answer::Consumed(DropReason::NeighborDiscovery)
    );
}

#[test]
fn solicitation_from_the_next_hop_is_answered_but_never_teaches() {
    let topo = dynamic_site();
    // The next hop asks for our NAT address: we answer, but its source
    // option is not learned (anyone can send a solicitation).
    let nat6 = topo.uplinks[0]
        .nat_addrs
        .iter()
        .find(|a| a.is_ipv6())
        .unwrap()
        .to_string();
    let mut f = ns(NEXT_HOP6, ISP0_MAC, &nat6, true);
    let mut len = 0;
    assert_eq!(
        answer_nd(&mut f, 14, WAN_PORT, &topo, &topo.neighbours, &mut len, T0),
        Answer::Reply
    );
    assert_eq!(topo.neighbours.mac_for(0, true), None);
    assert_eq!(topo.neighbours.mac_for(0, false), None);
    assert_eq!(counts(hop6(&topo)), [0, 0, 0, 0, 0, 1]);
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
            na[58] = NA_SOLICITED;
            // The solicitor records what it sent.
            hop.asked(T0);
            let (s2, d2) = (v6(&na[22..38]), v6(&na[38..54]));
            let c = icmpv6_checksum(&s2, &d2, &na[54..n]);
            na[56..58].copy_from_slice(&c.to_be_bytes());
            let mut len = 0;
            assert_eq!(
                answer_nd(&mut na, 14, WAN_PORT, &topo, &topo.neighbours, &mut len, T0),
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

// Who may change a next hop's MAC (issue 15): answers to our own
// requests, and unsolicited overrides only after the lock time.

const SPOOF_MAC: [u8; 6] = [0x02, 0xba, 0xd0, 0, 0, 1];

fn hop4(s: &Site) -> &NextHop {
    s.neighbours.hops().iter().find(|h| !h.is_v6()).unwrap()
}

fn hop6(s: &Site) -> &NextHop {
    s.neighbours.hops().iter().find(|h| h.is_v6()).unwrap()
}

/// learned_reply, learned_gratuitous, refused_unsolicited,
/// refused_locktime, refused_opcode, refused_ns.
fn counts(h: &NextHop) -> [u64; 6] {
    let c = &h.counters;
    [
        &c.learned_reply,
        &c.learned_gratuitous,
        &c.refused_unsolicited,
        &c.refused_locktime,
        &c.refused_opcode,
        &c.refused_ns,
    ]
    .map(HopCounters::get)
}

fn ms(n: u64) -> Nanos {
    Nanos::from_millis(n)
}

fn send_arp(s: &Site, op: u16, sha: [u8; 6], spa: &str, tpa: &str, now: Nanos) -> Answer {
    let mut f = arp(op, sha, spa, [0; 6], tpa, [0xff; 6]);
    answer_arp(&mut f, 14, WAN_PORT, s, &s.neighbours, now)
}

/// A neighbour advertisement from `mac` for `target` with `flags`.
fn na(mac: [u8; 6], target: &str, flags: u8, with_option: bool) -> Vec<u8> {
    let src: Ipv6Addr = target.parse().unwrap();
    let dst = ALL_NODES;
    let mut body = vec![ND_NA, 0, 0, 0, flags, 0, 0, 0];
    body.extend_from_slice(&src.octets());
    if with_option {
        body.extend_from_slice(&[OPT_TARGET_LLA, 1]);
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
    let mut f = ethernet(ALL_NODES_MAC, mac, None, 0x86dd, &ip);
    f.resize(f.len().max(60), 0);
    f
}

fn send_na(s: &Site, mac: [u8; 6], target: &str, flags: u8, now: Nanos) -> Answer {
    let mut f = na(mac, target, flags, true);
    let mut len = 0;
    answer_nd(&mut f, 14, WAN_PORT, s, &s.neighbours, &mut len, now)
}

#[test]
fn arp_reply_to_our_request_is_learned_and_takes_the_request() {
    let s = dynamic_site();
    let h = hop4(&s);
    let mut sol = Solicitor::new(&s.neighbours);
    let t = Nanos::from_secs(10);
    sol.poll(t, &s.neighbours, |_| true);
    let r = send_arp(
        &s,
        ARP_REPLY,
        ISP0_MAC,
        NEXT_HOP4,
        NAT4,
        t.saturating_add(ms(5)),
    );
    assert_eq!(r, Answer::Consumed(DropReason::NeighbourConsumed));
    assert_eq!(h.mac(), Some(ISP0_MAC));
    assert_eq!(counts(h), [1, 0, 0, 0, 0, 0]);
    // A second "answer" to the same request (a spoofer racing the router)
    // is unsolicited now, and inside the lock time.
    send_arp(
        &s,
        ARP_REPLY,
        SPOOF_MAC,
        NEXT_HOP4,
        NAT4,
        t.saturating_add(ms(6)),
    );
    assert_eq!(h.mac(), Some(ISP0_MAC));
    assert_eq!(counts(h), [1, 0, 0, 1, 0, 0]);
    // The next request's answer is learned even within the lock time of
    // the last change (the router moved; we asked).
    h.asked(t.saturating_add(ms(100)));
    send_arp(
        &s,
        ARP_REPLY,
        ISP1_MAC,
        NEXT_HOP4,
        NAT4,
        t.saturating_add(ms(200)),
    );
    assert_eq!(h.mac(), Some(ISP1_MAC));
    assert_eq!(counts(h), [2, 0, 0, 1, 0, 0]);
}

#[test]
fn a_reply_after_the_answer_window_is_unsolicited() {
    let s = dynamic_site();
    let h = hop4(&s);
    let t = Nanos::from_secs(100);
    h.asked(t);
    let late = t.saturating_add(ANSWER_WINDOW).saturating_add(ms(1));
    send_arp(&s, ARP_REPLY, ISP0_MAC, NEXT_HOP4, NAT4, late);
    // Still learned (nothing known yet, no lock), but not as an answer.
    assert_eq!(counts(h), [0, 1, 0, 0, 0, 0]);
    // A reply to someone else's address never answers our request.
    h.asked(late);
    send_arp(&s, ARP_REPLY, SPOOF_MAC, NEXT_HOP4, "192.0.2.77", late);
    assert_eq!(h.mac(), Some(ISP0_MAC));
    assert_eq!(counts(h), [0, 1, 0, 1, 0, 0]);
}

#[test]
fn spoofed_gratuitous_arp_waits_for_the_lock_time() {
    let s = dynamic_site();
    let h = hop4(&s);
    let t = Nanos::from_secs(50);
    h.asked(t);
    send_arp(&s, ARP_REPLY, ISP0_MAC, NEXT_HOP4, NAT4, t);
    assert_eq!(h.mac(), Some(ISP0_MAC));
    // Gratuitous ARP in both forms (request and reply, sender == target
    // address) within the lock time: the MAC does not move.
    for op in [ARP_REQUEST, ARP_REPLY] {
        send_arp(
            &s,
            op,
            SPOOF_MAC,
            NEXT_HOP4,
            NEXT_HOP4,
            t.saturating_add(ms(999)),
        );
        assert_eq!(h.mac(), Some(ISP0_MAC), "op {op}");
    }
    assert_eq!(counts(h), [1, 0, 0, 2, 0, 0]);
    // After it, it does (a router failover announces itself this way).
    send_arp(
        &s,
        ARP_REQUEST,
        ISP1_MAC,
        NEXT_HOP4,
        NEXT_HOP4,
        t.saturating_add(LOCK_TIME),
    );
    assert_eq!(h.mac(), Some(ISP1_MAC));
    assert_eq!(counts(h), [1, 1, 0, 2, 0, 0]);
    // And the lock starts again from that change.
    send_arp(
        &s,
        ARP_REPLY,
        SPOOF_MAC,
        NEXT_HOP4,
        NEXT_HOP4,
        t.saturating_add(ms(1500)),
    );
    assert_eq!(h.mac(), Some(ISP1_MAC));
    assert_eq!(counts(h), [1, 1, 0, 3, 0, 0]);
    // For another address than the next hop nothing is counted here.
    send_arp(
        &s,
        ARP_REPLY,
        SPOOF_MAC,
        "192.0.2.9",
        "192.0.2.9",
        Nanos::from_secs(99),
    );
    assert_eq!(counts(h), [1, 1, 0, 3, 0, 0]);
}

#[test]
fn lock_time_is_configurable() {
    let t = dynamic_site();
    let s = Site {
        neighbours: Neighbours::new(&t.topo.uplinks).with_lock_time(Nanos::from_secs(5)),
        topo: t.topo.clone(),
    };
    let h = hop4(&s);
    send_arp(&s, ARP_REPLY, ISP0_MAC, NEXT_HOP4, NEXT_HOP4, T0);
    send_arp(
        &s,
        ARP_REPLY,
        SPOOF_MAC,
        NEXT_HOP4,
        NEXT_HOP4,
        Nanos::from_secs(4),
    );
    assert_eq!(h.mac(), Some(ISP0_MAC));
    send_arp(
        &s,
        ARP_REPLY,
        SPOOF_MAC,
        NEXT_HOP4,
        NEXT_HOP4,
        Nanos::from_secs(5),
    );
    assert_eq!(h.mac(), Some(SPOOF_MAC));
    assert_eq!(counts(h), [0, 2, 0, 1, 0, 0]);
}

#[test]
fn arp_requests_and_other_opcodes_never_teach() {
    let s = dynamic_site();
    let h = hop4(&s);
    // The next hop asking for our address is answered, not learned from.
    assert_eq!(
        send_arp(&s, ARP_REQUEST, ISP0_MAC, NEXT_HOP4, NAT4, T0),
        Answer::Reply
    );
    assert_eq!(h.mac(), None);
    // Nor from a request for someone else, or RARP / unknown opcodes,
    // even with our request outstanding.
    h.asked(T0);
    for op in [1, 3, 4, 8, 0xffff] {
        send_arp(&s, op, SPOOF_MAC, NEXT_HOP4, "192.0.2.77", T0);
    }
    assert_eq!(h.mac(), None);
    assert_eq!(counts(h), [0, 0, 0, 0, 6, 0]);
}

#[test]
fn solicitations_of_others_never_teach() {
    let s = dynamic_site();
    let (h4, h6) = (hop4(&s), hop6(&s));
    h6.asked(T0);
    // A host claiming the next hop's address in a solicitation (for the
    // next hop's own address, or for anyone's).
    for target in [NEXT_HOP6, "2001:db8::77"] {
        let mut f = ns(NEXT_HOP6, SPOOF_MAC, target, true);
        let mut len = 0;
        answer_nd(&mut f, 14, WAN_PORT, &s, &s.neighbours, &mut len, T0);
    }
    // Another host's solicitation is about no next hop at all.
    let mut f = ns("2001:db8::99", SPOOF_MAC, NEXT_HOP6, true);
    let mut len = 0;
    answer_nd(&mut f, 14, WAN_PORT, &s, &s.neighbours, &mut len, T0);
    assert_eq!(h6.mac(), None);
    assert_eq!(counts(h6), [0, 0, 0, 0, 0, 2]);
    assert_eq!(counts(h4), [0; 6]);
}

#[test]
fn advertisements_need_our_request_or_override_after_the_lock_time() {
    let s = dynamic_site();
    let h = hop6(&s);
    let t = Nanos::from_secs(20);
    // Neither Solicited nor Override: refused, even for an unknown MAC.
    send_na(&s, SPOOF_MAC, NEXT_HOP6, 0, t);
    // Solicited, but we asked for nothing.
    send_na(&s, SPOOF_MAC, NEXT_HOP6, NA_SOLICITED, t);
    assert_eq!(h.mac(), None);
    assert_eq!(counts(h), [0, 0, 2, 0, 0, 0]);
    // Solicited while our solicitation is outstanding: learned.
    let mut sol = Solicitor::new(&s.neighbours);
    sol.poll(t, &s.neighbours, |_| true);
    send_na(
        &s,
        ISP0_MAC,
        NEXT_HOP6,
        NA_SOLICITED | NA_ROUTER,
        t.saturating_add(ms(3)),
    );
    assert_eq!(h.mac(), Some(ISP0_MAC));
    assert_eq!(counts(h), [1, 0, 2, 0, 0, 0]);
    // Override within the lock time: refused; without it, never.
    send_na(
        &s,
        SPOOF_MAC,
        NEXT_HOP6,
        NA_OVERRIDE,
        t.saturating_add(ms(500)),
    );
    send_na(
        &s,
        SPOOF_MAC,
        NEXT_HOP6,
        NA_SOLICITED,
        t.saturating_add(ms(600)),
    );
    send_na(&s, SPOOF_MAC, NEXT_HOP6, 0, Nanos::from_secs(60));
    assert_eq!(h.mac(), Some(ISP0_MAC));
    assert_eq!(counts(h), [1, 0, 4, 1, 0, 0]);
    // Override after the lock time (from the change at t + 3 ms): learned.
    let after = t.saturating_add(ms(3)).saturating_add(LOCK_TIME);
    send_na(&s, ISP1_MAC, NEXT_HOP6, NA_OVERRIDE, Nanos(after.0 - 1));
    assert_eq!(h.mac(), Some(ISP0_MAC));
    send_na(&s, ISP1_MAC, NEXT_HOP6, NA_OVERRIDE, after);
    assert_eq!(h.mac(), Some(ISP1_MAC));
    assert_eq!(counts(h), [1, 1, 4, 2, 0, 0]);
    // An advertisement for another target is about no next hop.
    send_na(
        &s,
        SPOOF_MAC,
        "2001:db8::77",
        NA_OVERRIDE,
        Nanos::from_secs(90),
    );
    assert_eq!(h.mac(), Some(ISP1_MAC));
    assert_eq!(counts(h), [1, 1, 4, 2, 0, 0]);
}

#[test]
fn fixed_next_hops_are_never_judged() {
    let s = with_table(site(1));
    for h in s.neighbours.hops() {
        h.asked(T0);
    }
    let ip = s.uplinks[0].next_hop_v4.map(|a| a.to_string());
    if let Some(ip) = ip {
        send_arp(&s, ARP_REPLY, SPOOF_MAC, &ip, NAT4, T0);
    }
    for (u, up) in s.uplinks.iter().enumerate() {
        assert_eq!(
            s.neighbours.mac_for(u as UplinkId, false),
            Some(up.next_hop_mac)
        );
    }
    assert!(s.neighbours.hops().iter().all(|h| counts(h) == [0; 6]));
}
