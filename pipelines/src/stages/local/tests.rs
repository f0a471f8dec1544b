//! ICMP the appliance originates, checked byte by byte with checksums
//! recomputed here (not with `wire::checksum`); the rate limit; martians,
//! `not_for_us` and VLAN 0 in classify; MTU, DF and fragmentation in
//! transmit.

use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::packet::buf::{Direction, HeapBuf, PacketBuf};
use crate::packet::burst::Burst;
use crate::packet::counter::Sent;
use crate::packet::drop::DropReason;
use crate::packet::time::Nanos;
use crate::stages::classify::Classify;
use crate::stages::transmit::Transmit;
use crate::testing::*;
use crate::topology::{IcmpLimits, Topology};
use crate::wire::{be16, be32};

/// One's-complement checksum, written again here so the code under test
/// is not checked against itself.
fn ones(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    for (i, b) in data.iter().enumerate() {
        acc += if i % 2 == 0 {
            u64::from(*b) << 8
        } else {
            u64::from(*b)
        };
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The ICMPv6 checksum over `msg` with its pseudo-header.
fn ones6(src: &[u8], dst: &[u8], msg: &[u8]) -> u16 {
    let mut all = Vec::new();
    all.extend_from_slice(src);
    all.extend_from_slice(dst);
    all.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    all.extend_from_slice(&[0, 0, 0, 58]);
    all.extend_from_slice(msg);
    ones(&all)
}

fn octets(a: &str) -> Vec<u8> {
    match ip(a) {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn classify(
    topo: Arc<Topology>,
    frame: &[u8],
    port: u16,
) -> (Classify, Result<HeapBuf, DropReason>) {
    let c = Classify::new(topo);
    let r = classify_with(&c, frame, port);
    (c, r)
}

fn classify_with(c: &Classify, frame: &[u8], port: u16) -> Result<HeapBuf, DropReason> {
    let mut b = buf(frame, port);
    c.classify(&mut b).map(|()| b)
}

fn echo(ident: u16) -> L4<'static> {
    L4::EchoRequest { ident, seq_no: 7 }
}

#[test]
fn echo_reply_v4_for_the_lan_gateway() {
    let req = from_client("10.0.0.2", "10.0.0.1", echo(0x1234));
    let (c, r) = classify(site(1), &req, LAN_PORT);
    let b = r.expect("answered");
    let m = b.meta();
    assert_eq!((m.direction, m.out_port), (Direction::Local, LAN_PORT));
    let d = b.data();
    assert_eq!((&d[0..6], &d[6..12]), (&CLIENT_MAC[..], &LAN_MAC[..]));
    assert_eq!(be16(d, 12), Some(0x0800));
    let ip = &d[14..34];
    assert_eq!(ip[0], 0x45);
    assert_eq!(usize::from(be16(ip, 2).unwrap()), d.len() - 14);
    assert_eq!(ip[8], 64, "TTL");
    assert_eq!(ip[9], 1, "ICMP");
    assert_eq!(
        (&ip[12..16], &ip[16..20]),
        (&octets("10.0.0.1")[..], &octets("10.0.0.2")[..])
    );
    assert_eq!(ones(ip), 0, "IP header checksum");
    let icmp = &d[34..];
    assert_eq!((icmp[0], icmp[1]), (0, 0), "echo reply, code 0");
    assert_eq!(be16(icmp, 4), Some(0x1234), "identifier kept");
    assert_eq!(be16(icmp, 6), Some(7), "sequence kept");
    assert_eq!(&icmp[8..], &req[42..], "data echoed");
    assert_eq!(ones(icmp), 0, "ICMP checksum");
    assert_eq!(c.counters.sent(Sent::EchoReply), 1);
}

#[test]
fn echo_reply_v6_for_a_nat_address_and_not_when_switched_off() {
    let req = from_isp("2001:db8:ffff::5", NAT6, echo(9));
    let (c, r) = classify(site(1), &req, WAN_PORT);
    let b = r.expect("answered");
    assert_eq!(
        (b.meta().direction, b.meta().out_port),
        (Direction::Local, WAN_PORT)
    );
    let d = b.data();
    assert_eq!((&d[0..6], &d[6..12]), (&ISP0_MAC[..], &WAN_MAC[..]));
    let ip = &d[14..54];
    assert_eq!((ip[0] >> 4, ip[6], ip[7]), (6, 58, 64));
    assert_eq!(&ip[8..24], &octets(NAT6)[..]);
    assert_eq!(&ip[24..40], &octets("2001:db8:ffff::5")[..]);
    let icmp = &d[54..];
    assert_eq!(usize::from(be16(ip, 4).unwrap()), icmp.len());
    assert_eq!((icmp[0], icmp[1], be16(icmp, 4)), (129, 0, Some(9)));
    assert_eq!(ones6(&ip[8..24], &ip[24..40], icmp), 0);
    assert_eq!(c.counters.sent(Sent::EchoReply), 1);

    let quiet = site_edited(1, |t| t.uplinks[0].answer_ping = false);
    let (c, r) = classify(quiet, &req, WAN_PORT);
    assert!(r.map_or(true, |b| b.meta().direction != Direction::Local));
    assert_eq!(c.counters.sent(Sent::EchoReply), 0);
}

/// A client datagram with TTL `ttl` and `n` bytes of UDP payload.
fn client_udp(src: &str, dst: &str, ttl: u8, n: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..n).map(|i| i as u8).collect();
    let (s, d) = (ip(src), ip(dst));
    ethernet(
        LAN_MAC,
        CLIENT_MAC,
        None,
        ethertype_of(s),
        &ip_packet(s, d, ttl, &udp(40000, 53, &payload)),
    )
}

#[test]
fn time_exceeded_v4_quotes_the_datagram_from_the_gateway() {
    let f = client_udp("10.0.0.2", "203.0.113.5", 1, 20);
    let (c, r) = classify(site(1), &f, LAN_PORT);
    let b = r.expect("answered");
    assert_eq!(
        (b.meta().direction, b.meta().out_port),
        (Direction::Local, LAN_PORT)
    );
    let d = b.data();
    assert_eq!((&d[0..6], &d[6..12]), (&CLIENT_MAC[..], &LAN_MAC[..]));
    let ip = &d[14..34];
    assert_eq!((ip[0], ip[1], ip[8], ip[9]), (0x45, 0xc0, 64, 1));
    assert_eq!(be16(ip, 6), Some(0), "no DF, no fragment");
    assert_eq!(
        (&ip[12..16], &ip[16..20]),
        (&octets("10.0.0.1")[..], &octets("10.0.0.2")[..])
    );
    assert_eq!(ones(ip), 0);
    let icmp = &d[34..];
    assert_eq!(usize::from(be16(ip, 2).unwrap()), 20 + icmp.len());
    assert_eq!((icmp[0], icmp[1], be32(icmp, 4)), (11, 0, Some(0)));
    assert_eq!(&icmp[8..], &f[14..], "the whole datagram, as received");
    assert_eq!(ones(icmp), 0);
    assert_eq!(c.counters.sent(Sent::TimeExceeded), 1);
}

#[test]
fn time_exceeded_v6_from_the_nat_address_and_quote_limits() {
    // From outside, hop limit 1, to a NAT address: the NAT address answers.
    let big: Vec<u8> = vec![0xab; 1400];
    let (s, dst) = (ip("2001:db8:ffff::5"), ip(NAT6));
    let dgram = ip_packet(s, dst, 1, &udp(53, 5000, &big));
    let f = ethernet(WAN_MAC, ISP0_MAC, None, 0x86dd, &dgram);
    let (c, r) = classify(site(1), &f, WAN_PORT);
    let b = r.expect("answered");
    let d = b.data();
    assert_eq!(d.len(), 14 + 1280, "as much as fits in 1280 bytes");
    let ip6 = &d[14..54];
    assert_eq!(&ip6[8..24], &octets(NAT6)[..]);
    assert_eq!(&ip6[24..40], &octets("2001:db8:ffff::5")[..]);
    let icmp = &d[54..];
    assert_eq!((icmp[0], icmp[1]), (3, 0));
    assert_eq!(&icmp[8..], &dgram[..1280 - 48]);
    assert_eq!(ones6(&ip6[8..24], &ip6[24..40], icmp), 0);
    assert_eq!(c.counters.sent(Sent::TimeExceeded), 1);

    // IPv4: at most 576 bytes (RFC 1812 4.3.2.3, as Linux).
    let f = client_udp("10.0.0.2", "203.0.113.5", 1, 1400);
    let (_, r) = classify(site(1), &f, LAN_PORT);
    let b = r.unwrap();
    assert_eq!(b.data().len(), 14 + 576);
    assert_eq!(&b.data()[42..], &f[14..14 + 548]);
    assert_eq!(ones(&b.data()[34..]), 0);
}

#[test]
fn no_error_about_errors_fragments_or_spoofed_senders() {
    // An ICMP error with TTL 1 gets no time exceeded.
    let quote = quoted("203.0.113.5", NAT4, 64, udp(53, 5000, b"x"), None);
    let mut err = icmp_error_ip(ip("10.0.0.2"), ip("203.0.113.5"), 3, 3, [0; 4], &quote);
    err[8] = 1;
    fix_ipv4_checksum(&mut err, 0);
    let f = ethernet(LAN_MAC, CLIENT_MAC, None, 0x0800, &err);
    let (c, r) = classify(site(1), &f, LAN_PORT);
    assert!(r.map_or(true, |b| b.meta().direction != Direction::Local));
    assert_eq!(c.counters.sent(Sent::TimeExceeded), 0);
    // A non-first fragment.
    let mut dgram = ip_packet(ip("10.0.0.2"), ip("203.0.113.5"), 1, &udp(1, 2, b"frag"));
    dgram[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
    assert!(!errors_allowed(&dgram, false));
    // From a spoofed LAN source: no error to it.
    let f = client_udp("192.168.9.9", "203.0.113.5", 1, 4);
    let (c, r) = classify(site(1), &f, LAN_PORT);
    assert_eq!(r.unwrap_err(), DropReason::SpoofedSource);
    assert_eq!(c.counters.sent(Sent::TimeExceeded), 0);
}

fn limits(rate: u32, burst: u32, max: usize, global: u32) -> IcmpLimits {
    IcmpLimits {
        rate_per_second: rate,
        burst,
        max_destinations: max,
        global_per_second: global,
    }
}

#[test]
fn token_bucket_per_destination_then_global() {
    let mut l = IcmpLimiter::new(limits(2, 3, 2, 1));
    let (a, b, c, d) = (
        ip("10.0.0.2"),
        ip("10.0.0.3"),
        ip("10.0.0.4"),
        ip("10.0.0.5"),
    );
    let t0 = Nanos::from_secs(10);
    assert_eq!((0..5).filter(|_| l.allow(a, t0)).count(), 3, "the burst");
    assert!(
        !l.allow(a, Nanos(t0.0 + 499_000_000)),
        "2/s: not before 500 ms"
    );
    assert!(l.allow(a, Nanos(t0.0 + 500_000_000)));
    assert!(l.allow(b, t0), "another destination has its own bucket");
    // The table (2) is full: c and d share the global bucket (burst 3, 1/s).
    assert_eq!((0..3).filter(|_| l.allow(c, t0)).count(), 3);
    assert!(!l.allow(d, t0), "the global bucket is shared");
    assert_eq!(l.destinations(), 2, "never more than max_destinations");
    // A second later a and b have refilled: they leave the table, c gets one.
    let t1 = Nanos::from_secs(20);
    assert!(l.allow(c, t1));
    assert_eq!(l.destinations(), 1);
}

#[test]
fn echo_requests_past_the_rate_limit_are_dropped_and_counted() {
    let topo = site_edited(1, |t| t.icmp = limits(1, 2, 16, 1));
    let c = Classify::new(topo);
    let req = from_client("10.0.0.2", "10.0.0.1", echo(1));
    let got: Vec<_> = (0..4)
        .map(|_| classify_with(&c, &req, LAN_PORT).map(|_| ()))
        .collect();
    assert_eq!(
        got,
        [
            Ok(()),
            Ok(()),
            Err(DropReason::IcmpRateLimited),
            Err(DropReason::IcmpRateLimited)
        ]
    );
    assert_eq!(c.counters.sent(Sent::EchoReply), 2);
    assert_eq!(c.counters.sent(Sent::IcmpRateLimited), 2);
    // Another sender is not held back by the first.
    let other = from_client("10.0.0.3", "10.0.0.1", echo(1));
    assert!(classify_with(&c, &other, LAN_PORT).is_ok());
}

#[test]
fn martian_destinations_from_the_lan() {
    for dst in [
        "224.0.0.251",
        "255.255.255.255",
        "10.0.255.255",
        "127.0.0.1",
        "169.254.1.1",
        "0.0.0.0",
        "ff02::fb",
        "fe80::1",
        "::1",
        "::",
    ] {
        let src = if dst.contains(':') {
            "fd00::2"
        } else {
            "10.0.0.2"
        };
        let f = from_client(src, dst, udp(5353, 5353, b"m"));
        let (_, r) = classify(site(1), &f, LAN_PORT);
        assert_eq!(r.unwrap_err(), DropReason::MartianDestination, "{dst}");
    }
}

#[test]
fn martian_sources_on_uplinks() {
    for src in [
        "10.0.3.4",
        NAT4,
        "127.0.0.1",
        "224.0.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "fd00::9",
        "ff02::1",
        "::1",
    ] {
        let dst = if src.contains(':') { NAT6 } else { NAT4 };
        let f = from_isp(src, dst, udp(53, 5000, b"a"));
        let (_, r) = classify(site(1), &f, WAN_PORT);
        assert_eq!(r.unwrap_err(), DropReason::MartianSource, "{src}");
    }
}

#[test]
fn frames_not_for_the_port_are_dropped() {
    let mut f = from_client("10.0.0.2", "203.0.113.5", udp(1, 53, b"q"));
    for mac in [
        [2, 0, 0, 0, 0, 0x99],
        [0xff; 6],
        [1, 0, 0x5e, 0, 0, 0xfb],
        [0x33, 0x33, 0xff, 1, 2, 3],
    ] {
        f[..6].copy_from_slice(&mac);
        let (_, r) = classify(site(1), &f, LAN_PORT);
        assert_eq!(r.unwrap_err(), DropReason::NotForUs, "{mac:x?}");
    }
    // IPv6 all-nodes and the solicited-node group of fd00::1 are ours.
    let mut f = from_client("fd00::2", "2001:db8:ffff::5", udp(1, 53, b"q"));
    for mac in [[0x33, 0x33, 0, 0, 0, 1], [0x33, 0x33, 0xff, 0, 0, 1]] {
        f[..6].copy_from_slice(&mac);
        let (_, r) = classify(site(1), &f, LAN_PORT);
        assert_eq!(r.unwrap().meta().direction, Direction::Outbound, "{mac:x?}");
    }
}

#[test]
fn vlan_zero_priority_tags_are_untagged() {
    let dgram = ip_packet(ip("10.0.0.2"), ip("203.0.113.5"), 64, &udp(40000, 53, b"q"));
    let mut f = ethernet(LAN_MAC, CLIENT_MAC, Some(0), 0x0800, &dgram);
    f[14] |= 0xa0; // priority 5, VLAN 0
    let (_, r) = classify(site(1), &f, LAN_PORT);
    let b = r.expect("classified");
    assert_eq!(
        (b.meta().direction, b.meta().vlan, b.meta().l3_offset),
        (Direction::Outbound, None, 18)
    );
    // A real tag on the untagged port is still refused.
    let f = ethernet(LAN_MAC, CLIENT_MAC, Some(7), 0x0800, &dgram);
    assert_eq!(
        classify(site(1), &f, LAN_PORT).1.unwrap_err(),
        DropReason::UnexpectedVlan
    );
}

/// The site with the untagged WAN port's MTU at `mtu`.
fn small_wan(mtu: u16) -> Arc<Topology> {
    site_edited(1, |t| t.ports[WAN_PORT as usize].mtu = mtu)
}

/// `frame` classified on the LAN and routed to the WAN port as translate
/// would (source NAT to 192.0.2.1:`nat_port`, the TTL decremented is left
/// out).
fn to_wan(topo: &Arc<Topology>, frame: &[u8], nat_port: u16) -> HeapBuf {
    let mut b = buf(frame, LAN_PORT);
    Classify::new(topo.clone())
        .classify(&mut b)
        .expect("classified");
    let m = *b.meta();
    let (l3, l4) = (m.l3_offset as usize, m.l4_offset as usize);
    let nat = if m.is_ipv6() { ip(NAT6) } else { ip(NAT4) };
    // Translate's rewrite: restore_quote writes whatever it is given.
    super::icmp::restore_quote(&mut b, l3, l4, super::icmp::QuoteSide::Src, nat, nat_port).unwrap();
    let m = b.meta_mut();
    m.out_port = WAN_PORT;
    m.uplink = 0;
    m.next_hop_mac = ISP0_MAC;
    b
}

fn run_tx(topo: &Arc<Topology>, b: HeapBuf) -> (Transmit, Vec<Burst<HeapBuf>>) {
    let mut t = Transmit::new(topo.clone());
    let mut per_port: Vec<Burst<HeapBuf>> = (0..4).map(|_| Burst::new()).collect();
    let mut input: Burst<HeapBuf> = Burst::new();
    input.push(b);
    t.process(&mut input, &mut per_port);
    assert!(input.is_empty());
    (t, per_port)
}

#[test]
fn df_too_big_gets_frag_needed_quoting_the_client() {
    let topo = small_wan(1280);
    let f = client_udp("10.0.0.2", "203.0.113.5", 64, 1400);
    assert_ne!(be16(&f, 20).unwrap() & 0x4000, 0, "smoltcp sets DF");
    let (t, out) = run_tx(&topo, to_wan(&topo, &f, 7777));
    assert!(out[WAN_PORT as usize].is_empty());
    let b = &out[LAN_PORT as usize][0];
    assert_eq!(b.meta().direction, Direction::Local);
    let d = b.data();
    assert_eq!((&d[0..6], &d[6..12]), (&CLIENT_MAC[..], &LAN_MAC[..]));
    let ip4 = &d[14..34];
    assert_eq!(
        (&ip4[12..16], &ip4[16..20]),
        (&octets("10.0.0.1")[..], &octets("10.0.0.2")[..])
    );
    assert_eq!(ones(ip4), 0);
    let icmp = &d[34..];
    assert_eq!(
        (icmp[0], icmp[1], be16(icmp, 4), be16(icmp, 6)),
        (3, 4, Some(0), Some(1280))
    );
    assert_eq!(ones(icmp), 0);
    let q = &icmp[8..];
    assert_eq!(d.len(), 14 + 576);
    assert_eq!(&q[12..16], &octets("10.0.0.2")[..], "the client's address");
    assert_eq!(be16(q, 20), Some(40000), "the client's port");
    assert_eq!(ones(&q[..20]), 0, "the quoted header's checksum fixed");
    assert_eq!(t.counters.sent(Sent::FragNeeded), 1);
}

#[test]
fn ipv6_too_big_gets_packet_too_big() {
    let topo = small_wan(1280);
    let f = client_udp("fd00::2", "2001:db8:ffff::5", 64, 1300);
    let (t, out) = run_tx(&topo, to_wan(&topo, &f, 7777));
    let b = &out[LAN_PORT as usize][0];
    let d = b.data();
    let ip6 = &d[14..54];
    assert_eq!(&ip6[8..24], &octets("fd00::1")[..]);
    let icmp = &d[54..];
    assert_eq!((icmp[0], icmp[1], be32(icmp, 4)), (2, 0, Some(1280)));
    assert_eq!(ones6(&ip6[8..24], &ip6[24..40], icmp), 0);
    assert_eq!(&icmp[8 + 8..8 + 24], &octets("fd00::2")[..]);
    assert_eq!(be16(&icmp[8..], 40), Some(40000));
    assert_eq!(t.counters.sent(Sent::PacketTooBig), 1);
}

#[test]
fn without_df_ipv4_is_fragmented_on_egress() {
    let topo = small_wan(576);
    let mut f = client_udp("10.0.0.2", "203.0.113.5", 64, 1400);
    f[20] &= !0x40;
    fix_ipv4_checksum(&mut f, 14);
    let original = to_wan(&topo, &f, 7777).data()[14..].to_vec();
    let (t, out) = run_tx(&topo, to_wan(&topo, &f, 7777));
    let frags = &out[WAN_PORT as usize];
    assert_eq!(frags.len(), 3, "1408 data bytes in 552-byte pieces");
    let mut data = Vec::new();
    for (i, b) in frags.iter().enumerate() {
        let d = b.data();
        assert_eq!((&d[0..6], &d[6..12]), (&ISP0_MAC[..], &WAN_MAC[..]));
        let ip4 = &d[14..];
        assert!(ip4.len() <= 576);
        assert_eq!(usize::from(be16(ip4, 2).unwrap()), ip4.len());
        let ff = be16(ip4, 6).unwrap();
        assert_eq!(
            usize::from(ff & 0x1fff) * 8,
            data.len(),
            "offset of piece {i}"
        );
        assert_eq!(
            ff & 0x2000 != 0,
            i < 2,
            "more fragments on all but the last"
        );
        assert_eq!(ones(&ip4[..20]), 0);
        assert_eq!(be16(ip4, 4), be16(&original, 4), "same identification");
        data.extend_from_slice(&ip4[20..]);
    }
    assert_eq!(data, original[20..], "the pieces make the datagram");
    assert_eq!(t.counters.sent(Sent::FragmentedOut), 1);
    assert_eq!(t.counters.sent(Sent::FragmentsOut), 3);
}
