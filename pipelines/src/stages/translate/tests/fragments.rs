//! Fragments through classify → replicate → translate: a 3,200-byte UDP
//! datagram out and back, IPv4 and IPv6, in and out of order, duplicated;
//! refusals and timeouts; several shards with the hand-off.

use crate::frag::{fragment_shard, FragKey, FragLimits};
use crate::nat::NatConfig;
use crate::packet::buf::{HeapBuf, PacketBuf};
use crate::packet::burst::Burst;
use crate::packet::drop::DropReason;
use crate::packet::time::Nanos;
use crate::select::policy::SelectionPolicy;
use crate::stages::classify::Classify;
use crate::stages::translate::Translate;
use crate::testing::chain::Chain;
use crate::testing::frag::{join, split};
use crate::testing::*;

const T0: Nanos = Nanos(1_000_000_000);
const L3: usize = 14;

fn frames(bufs: Vec<HeapBuf>) -> Vec<Vec<u8>> {
    bufs.iter().map(|b| b.data().to_vec()).collect()
}

/// Each fragment's IPv4 header checksum verifies.
fn headers_valid(frags: &[Vec<u8>]) {
    for f in frags {
        if f[L3] >> 4 == 4 {
            let ihl = usize::from(f[L3] & 0x0F) * 4;
            assert_eq!(crate::wire::checksum::checksum(&f[L3..L3 + ihl]), 0);
        }
    }
}

fn payload() -> Vec<u8> {
    (0..3200u32).map(|i| (i * 7) as u8).collect()
}

/// A 3,200-byte UDP echo through the chain (one shard): out in `order`,
/// the answer back in the same order; returns the joined frames.
fn echo(
    client: &str,
    server: &str,
    nat: &str,
    chunk: usize,
    order: &[usize],
) -> (Vec<u8>, Vec<u8>) {
    let mut c = Chain::new(SelectionPolicy::default());
    let data = payload();
    let out = split(
        &from_client(client, server, udp(40000, 7, &data)),
        chunk,
        0x4242,
    );
    let mut sent = Vec::new();
    for &i in order {
        sent.extend(frames(c.send(&out[i], LAN_PORT, T0)));
    }
    assert_eq!(sent.len(), out.len(), "every fragment out");
    headers_valid(&sent);
    let whole_out = join(&sent);
    assert_checksums_valid(&whole_out, L3);
    assert_eq!(addrs(&whole_out, L3), (ip(nat), ip(server)));
    let (nat_port, _) = ports(&whole_out, L3, whole_out.len() - data.len() - 8);
    assert_eq!(ttl(&whole_out, L3), 63);
    let back = split(
        &from_isp(server, nat, udp(7, nat_port, &data)),
        chunk,
        0x0101,
    );
    let mut got = Vec::new();
    for &i in order {
        got.extend(frames(c.send(&back[i], WAN_PORT, T0)));
    }
    assert_eq!(got.len(), back.len(), "every fragment back");
    headers_valid(&got);
    let whole_back = join(&got);
    assert_checksums_valid(&whole_back, L3);
    assert_eq!(addrs(&whole_back, L3), (ip(server), ip(client)));
    let l4 = whole_back.len() - data.len() - 8;
    assert_eq!(ports(&whole_back, L3, l4), (7, 40000));
    assert_eq!(&whole_back[l4 + 8..], &data[..]);
    assert_eq!(c.translate.counters.total_drops(), 0);
    (whole_out, whole_back)
}

#[test]
fn a_3200_byte_udp_echo_crosses_both_ways_ipv4() {
    echo("10.0.0.2", "203.0.113.5", NAT4, 1480, &[0, 1, 2]);
}

#[test]
fn a_3200_byte_udp_echo_crosses_both_ways_ipv6() {
    echo("fd00::2", "2001:db8:ffff::5", NAT6, 1232, &[0, 1, 2]);
}

#[test]
fn out_of_order_fragments_wait_for_the_first_and_cross() {
    echo("10.0.0.2", "203.0.113.5", NAT4, 1480, &[2, 1, 0]);
    echo("fd00::2", "2001:db8:ffff::5", NAT6, 1232, &[1, 2, 0]);
    echo("10.0.0.2", "203.0.113.5", NAT4, 512, &[3, 0, 6, 1, 5, 2, 4]);
}

#[test]
fn duplicated_fragments_are_counted_and_the_datagram_still_crosses() {
    let mut c = Chain::new(SelectionPolicy::default());
    let data = payload();
    let out = split(
        &from_client("10.0.0.2", "203.0.113.5", udp(40000, 7, &data)),
        1480,
        9,
    );
    let mut sent = Vec::new();
    for i in [1, 1, 0, 0, 2] {
        sent.extend(frames(c.send(&out[i], LAN_PORT, T0)));
    }
    assert_eq!(sent.len(), 3);
    assert_checksums_valid(&join(&sent), L3);
    assert_eq!(c.translate.counters.drops(DropReason::FragmentDuplicate), 2);
}

#[test]
fn overlapping_and_oversized_datagrams_are_refused() {
    let mut c = Chain::new(SelectionPolicy::default());
    let data = payload();
    let out = split(
        &from_client("10.0.0.2", "203.0.113.5", udp(40000, 7, &data)),
        1480,
        9,
    );
    assert_eq!(c.send(&out[0], LAN_PORT, T0).len(), 1);
    // A fragment at offset 1472 (8 bytes into the first one's data).
    let mut overlap = out[1].clone();
    overlap[L3 + 6..L3 + 8].copy_from_slice(&(0x2000u16 | 184).to_be_bytes());
    fix_ipv4_checksum(&mut overlap, L3);
    assert!(c.send(&overlap, LAN_PORT, T0).is_empty());
    assert!(
        c.send(&out[2], LAN_PORT, T0).is_empty(),
        "the datagram is refused"
    );
    assert_eq!(c.translate.counters.drops(DropReason::FragmentOverlap), 2);
    // Ending past 65,535 bytes.
    let mut far = out[2].clone();
    far[L3 + 4] = 0x77;
    far[L3 + 6..L3 + 8].copy_from_slice(&0x1FFFu16.to_be_bytes());
    fix_ipv4_checksum(&mut far, L3);
    assert!(c.send(&far, LAN_PORT, T0).is_empty());
    assert_eq!(c.translate.counters.drops(DropReason::FragmentTooBig), 1);
}

#[test]
fn later_fragments_of_a_refused_first_fragment_are_not_translated() {
    let mut c = Chain::new(SelectionPolicy::default());
    // No session for this inbound datagram: the first fragment is filtered.
    let back = split(
        &from_isp("203.0.113.5", NAT4, udp(7, 40000, &payload())),
        1480,
        3,
    );
    assert!(c.send(&back[0], WAN_PORT, T0).is_empty());
    assert!(c.send(&back[1], WAN_PORT, T0).is_empty());
    let drops = &c.translate.counters;
    assert_eq!(drops.drops(DropReason::Fragment), 1, "no session for it");
    assert_eq!(drops.total_drops(), 2);
}

#[test]
fn held_fragments_time_out_counted_and_the_gauges_follow() {
    let mut c = Chain::new(SelectionPolicy::default());
    let out = split(
        &from_client("10.0.0.2", "203.0.113.5", udp(40000, 7, &payload())),
        1480,
        5,
    );
    assert!(c.send(&out[1], LAN_PORT, T0).is_empty());
    assert!(c.send(&out[2], LAN_PORT, T0).is_empty());
    c.translate.sweep(T0);
    let n = &c.translate.nat.counters;
    assert_eq!((n.fragments_held.get(), n.fragment_datagrams.get()), (2, 1));
    let later = T0.saturating_add(FragLimits::default().timeout);
    // The sweep looks at a slice of the table per call.
    for _ in 0..=FragLimits::default().max_datagrams / crate::frag::SWEEP_SLOTS {
        c.translate.sweep(later);
    }
    assert_eq!(c.translate.counters.drops(DropReason::FragmentTimeout), 2);
    let n = &c.translate.nat.counters;
    assert_eq!((n.fragments_held.get(), n.fragment_datagrams.get()), (0, 0));
}

#[test]
fn a_flood_of_first_fragments_stops_at_the_limit_and_other_traffic_crosses() {
    let cfg = NatConfig {
        fragments: FragLimits {
            max_datagrams: 64,
            max_held: 16,
            ..FragLimits::default()
        },
        ..NatConfig::default()
    };
    let topo = site(1);
    let classify = Classify::new(topo.clone());
    let mut t = Translate::new(topo, 0, cfg);
    let mut run = |frame: &[u8], port: u16| {
        let mut b = buf(frame, port);
        classify.classify(&mut b).unwrap();
        let mut input: Burst<HeapBuf> = Burst::new();
        input.push(b);
        let mut out = Burst::new();
        t.process(T0, &mut input, &mut out);
        out.len()
    };
    let data = payload();
    let whole = from_client("10.0.0.2", "203.0.113.5", udp(40000, 7, &data));
    for id in 0..500 {
        let first = split(&whole, 1480, id).swap_remove(0);
        run(&first, LAN_PORT);
    }
    for id in 1000..1100 {
        let later = split(&whole, 1480, id).swap_remove(1);
        assert_eq!(run(&later, LAN_PORT), 0);
    }
    let small = from_client("10.0.0.2", "203.0.113.5", udp(40001, 7, b"still here"));
    assert_eq!(
        run(&small, LAN_PORT),
        1,
        "unfragmented traffic is not affected"
    );
    t.sweep(T0);
    assert_eq!(t.nat.counters.fragment_datagrams.get(), 64);
    assert_eq!(t.counters.drops(DropReason::FragmentLimit), 500 - 64 + 100);
}

/// classify over `shards` shards and one translate per shard, with the
/// hand-off: a packet marked `hairpin` goes to its shard's translate.
struct Shards {
    classify: Classify,
    translate: Vec<Translate>,
}

impl Shards {
    fn new(shards: u16) -> Shards {
        let topo = site(shards);
        Shards {
            classify: Classify::new(topo.clone()),
            translate: (0..shards)
                .map(|s| Translate::new(topo.clone(), s, NatConfig::default()))
                .collect(),
        }
    }

    fn send(&mut self, frame: &[u8], port: u16) -> Vec<Vec<u8>> {
        let mut b = buf(frame, port);
        self.classify.classify(&mut b).unwrap();
        let mut pending = vec![b];
        let mut out = Vec::new();
        while let Some(p) = pending.pop() {
            let shard = usize::from(p.meta().shard) % self.translate.len();
            let mut input: Burst<HeapBuf> = Burst::new();
            input.push(p);
            let t = &mut self.translate[shard];
            while !input.is_empty() || t.fragments_ready() {
                let mut o = Burst::new();
                t.process(T0, &mut input, &mut o);
                for p in o.drain(..) {
                    if p.meta().hairpin {
                        pending.insert(0, p);
                    } else {
                        out.push(p.data().to_vec());
                    }
                }
            }
        }
        out
    }
}

#[test]
fn with_several_shards_every_fragment_reaches_its_flows_shard() {
    let mut s = Shards::new(4);
    let data = payload();
    let whole = from_client("10.0.0.2", "203.0.113.5", udp(40000, 7, &data));
    let flow_shard = {
        // The same flow, small enough for a buffer.
        let small = from_client("10.0.0.2", "203.0.113.5", udp(40000, 7, b"x"));
        let mut b = buf(&small, LAN_PORT);
        s.classify.classify(&mut b).unwrap();
        b.meta().shard
    };
    let key = |id| FragKey {
        src: ip("10.0.0.2"),
        dst: ip("203.0.113.5"),
        id,
        proto: 17,
    };
    let id = (0..100)
        .find(|&id| fragment_shard(&key(id), 4) != flow_shard)
        .unwrap();
    let frags = split(&whole, 1480, id);
    let mut sent = Vec::new();
    for i in [2, 0, 1] {
        sent.extend(s.send(&frags[i], LAN_PORT));
    }
    assert_eq!(sent.len(), 3);
    let joined = join(&sent);
    assert_checksums_valid(&joined, L3);
    let l4 = joined.len() - data.len() - 8;
    let (nat_port, _) = ports(&joined, L3, l4);
    let owner = &s.translate[usize::from(flow_shard)];
    assert_eq!(
        owner.nat.counters.udp_sessions.get(),
        1,
        "the session is in the flow's shard"
    );
    // The answer, fragmented, comes back to the client.
    let back = split(
        &from_isp("203.0.113.5", NAT4, udp(7, nat_port, &data)),
        1480,
        77,
    );
    let mut got = Vec::new();
    for i in [1, 2, 0] {
        got.extend(s.send(&back[i], WAN_PORT));
    }
    let joined = join(&got);
    assert_checksums_valid(&joined, L3);
    assert_eq!(addrs(&joined, L3), (ip("203.0.113.5"), ip("10.0.0.2")));
    for t in &s.translate {
        assert_eq!(t.counters.total_drops(), 0);
    }
}
