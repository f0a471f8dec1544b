use super::*;
use crate::packet::drop::DropReason;
use crate::packet::flow::{proto, FlowKey};
use crate::packet::time::Nanos;
use crate::testing::{ip, site, site_with, NAT4, NAT4_TAGGED};
use crate::topology::{NatPortRange, UplinkId};
use crate::wire::tcp::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use ports::{class_of, CLASSES};
use proptest::prelude::*;
use std::collections::{HashMap as StdMap, HashSet};
use std::net::IpAddr;

const T0: Nanos = Nanos(5_000_000_000);
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];

/// A time source that only moves when the test moves it, in the style of
/// quinn's test harness: it jumps straight to the next deadline.
struct VirtualClock {
    now: Nanos,
}

impl VirtualClock {
    fn jump_to(&mut self, t: Nanos) {
        assert!(t >= self.now, "time runs forward");
        self.now = t;
    }

    fn advance(&mut self, d: Nanos) {
        self.now = self.now.saturating_add(d);
    }
}

/// Calls the paced `sweep` every `step` of virtual time until it expired
/// `want` sessions in all, failing (instead of hanging) after
/// `max_turns` calls. Returns the sessions expired and the time spent.
fn drive_sweep(
    nat: &mut NatShard,
    clock: &mut VirtualClock,
    step: Nanos,
    want: usize,
    max_turns: usize,
) -> (usize, Nanos) {
    let start = clock.now;
    let mut expired = 0;
    for _ in 0..max_turns {
        expired += nat.sweep(clock.now);
        if expired >= want {
            return (expired, clock.now.since(start));
        }
        clock.advance(step);
    }
    panic!("sweep expired {expired} of {want} sessions in {max_turns} turns");
}

fn key(client: &str, cport: u16, remote: &str, rport: u16, protocol: u8) -> FlowKey {
    FlowKey {
        src: ip(client),
        dst: ip(remote),
        src_port: cport,
        dst_port: rport,
        proto: protocol,
    }
}

fn udp_key(client_port: u16) -> FlowKey {
    key("10.0.0.2", client_port, "203.0.113.5", 53, proto::UDP)
}

fn tcp_key(client_port: u16) -> FlowKey {
    key("10.0.0.2", client_port, "203.0.113.5", 443, proto::TCP)
}

/// A shard of a site whose NAT range is 64 ports per shard.
fn small_shard(cfg: NatConfig, shard: u16, shards: u16) -> NatShard {
    let range = NatPortRange {
        first: 2000,
        last: 2000 + 64 * shards - 1,
    };
    NatShard::new(cfg, &site_with(range, shards), shard)
}

fn create(
    nat: &mut NatShard,
    k: &FlowKey,
    uplink: UplinkId,
    now: Nanos,
) -> Result<u32, DropReason> {
    nat.create_out(k, uplink, MAC, now).map(|(i, _)| i)
}

fn outside(nat: &NatShard, idx: u32) -> (IpAddr, u16) {
    let s = nat.session(idx).unwrap();
    (nat.nat_addr(s), s.nat_port)
}

fn free_ports(nat: &NatShard, addr: &str, protocol: u8) -> usize {
    let a = nat.addr_index[&ip(addr)];
    nat.pools[usize::from(a) * CLASSES + class_of(protocol)]
        .as_ref()
        .map_or(
            nat.range.last as usize - nat.range.first as usize + 1,
            |p| p.free_len(),
        )
}

#[test]
fn session_halves_are_a_cache_line_and_40_bytes_128_with_index_entries() {
    assert_eq!(std::mem::size_of::<Session>(), 64);
    assert_eq!(std::mem::align_of::<Session>(), 64, "one line each");
    assert_eq!(std::mem::size_of::<SessionCold>(), 40);
    let nat = NatShard::new(NatConfig::default(), &site(1), 0);
    let (bytes, _) = nat.table_bytes();
    assert!(bytes / NatConfig::default().max_sessions <= 128, "{bytes}");
    assert_eq!(nat.slots.as_ptr() as usize % 64, 0);
}

#[test]
fn create_indexes_both_ways_and_remove_frees_everything() {
    let mut nat = NatShard::new(NatConfig::default(), &site(1), 0);
    let k = tcp_key(40000);
    let (idx, how) = nat.create_out(&k, 0, MAC, T0).unwrap();
    assert_eq!(how, Created::NewMapping);
    let s = nat.session(idx).unwrap().clone();
    assert_eq!(
        (
            nat.nat_addr(&s),
            s.uplink,
            s.tcp_state(),
            s.last_seen,
            s.nat_port
        ),
        (ip(NAT4), 0, TcpState::SynSent, T0, 40000),
        "the inside port is preserved when free"
    );
    assert_eq!(s.outbound_key(), k);
    let in_key = nat.inbound_key(&s);
    assert_eq!(nat.lookup_out(&k, T0), Some(idx));
    assert_eq!(nat.lookup_in(&in_key, T0), Some(idx));
    assert_eq!((in_key.src, in_key.dst), (k.dst, ip(NAT4)));
    assert_eq!(
        (
            nat.counters.tcp_sessions.get(),
            nat.counters.uplinks[0].tcp_sessions.get(),
            nat.counters.mappings.get()
        ),
        (1, 1, 1)
    );

    assert!(nat.remove(idx).is_some());
    assert!(nat.remove(idx).is_none(), "removing twice is harmless");
    assert!(nat.is_empty());
    assert_eq!(nat.lookup_out(&k, T0), None);
    assert_eq!(nat.lookup_in(&in_key, T0), None);
    assert_eq!(nat.counters.tcp_sessions.get(), 0);
    assert_eq!(nat.counters.mappings.get(), 0);
    assert_eq!(
        free_ports(&nat, NAT4, proto::TCP),
        64512,
        "the port went back"
    );
    assert_eq!(
        create(
            &mut nat,
            &key("fd00::2", 1, "2001:db8::9", 53, proto::UDP),
            1,
            T0
        ),
        Err(DropReason::NoNatAddress),
        "uplink 1 has no IPv6 address"
    );
}

#[test]
fn mapping_is_endpoint_independent_and_udp_is_sticky() {
    let mut nat = NatShard::new(NatConfig::default(), &site(1), 0);
    let a = create(
        &mut nat,
        &key("10.0.0.2", 5000, "203.0.113.5", 53, proto::UDP),
        0,
        T0,
    )
    .unwrap();
    // Same inside endpoint, other remotes: same outside endpoint, even
    // when replicate asks for the other uplink.
    let (b, how) = nat
        .create_out(
            &key("10.0.0.2", 5000, "198.18.0.1", 3478, proto::UDP),
            0,
            MAC,
            T0,
        )
        .unwrap();
    assert_eq!(how, Created::ExistingMapping);
    let (c, _) = nat
        .create_out(
            &key("10.0.0.2", 5000, "198.18.0.2", 9, proto::UDP),
            1,
            MAC,
            T0,
        )
        .unwrap();
    assert_eq!(outside(&nat, a), outside(&nat, b));
    assert_eq!(outside(&nat, a), outside(&nat, c));
    assert_eq!(nat.session(c).unwrap().uplink, 0, "UDP stays on its uplink");
    assert_eq!(nat.counters.mappings.get(), 1);
    assert_eq!(nat.counters.uplinks[0].udp_sessions.get(), 3);

    // TCP: one mapping per uplink (the SYN race needs one per uplink).
    let t0 = create(
        &mut nat,
        &key("10.0.0.2", 6000, "203.0.113.5", 80, proto::TCP),
        0,
        T0,
    )
    .unwrap();
    let t1 = create(
        &mut nat,
        &key("10.0.0.2", 6000, "203.0.113.6", 80, proto::TCP),
        1,
        T0,
    )
    .unwrap();
    let t0b = create(
        &mut nat,
        &key("10.0.0.2", 6000, "203.0.113.7", 80, proto::TCP),
        0,
        T0,
    )
    .unwrap();
    assert_eq!(outside(&nat, t0), outside(&nat, t0b));
    assert_eq!(outside(&nat, t1).0, ip(NAT4_TAGGED));
    assert_eq!(nat.counters.mappings.get(), 3);

    // The mapping outlives its first session and ends with its last.
    let before = outside(&nat, a);
    nat.remove(a);
    assert_eq!(outside(&nat, b), before);
    let d = create(
        &mut nat,
        &key("10.0.0.2", 5000, "198.18.0.3", 1, proto::UDP),
        0,
        T0,
    )
    .unwrap();
    assert_eq!(outside(&nat, d), before);
    nat.remove(b);
    nat.remove(c);
    nat.remove(d);
    assert_eq!(nat.counters.mappings.get(), 2);
    assert_eq!(free_ports(&nat, NAT4, proto::UDP), 64512);
}

#[test]
fn port_preservation_and_random_ports_never_collide() {
    let mut nat = NatShard::new(NatConfig::default(), &site(1), 0);
    // Two clients with the same inside port: the second cannot keep it.
    let a = create(
        &mut nat,
        &key("10.0.0.2", 40000, "203.0.113.5", 53, proto::UDP),
        0,
        T0,
    )
    .unwrap();
    let b = create(
        &mut nat,
        &key("10.0.0.3", 40000, "203.0.113.5", 53, proto::UDP),
        0,
        T0,
    )
    .unwrap();
    assert_eq!(outside(&nat, a), (ip(NAT4), 40000));
    assert_ne!(outside(&nat, b).1, 40000);
    // TCP and UDP are separate port spaces.
    let t = create(
        &mut nat,
        &key("10.0.0.3", 40000, "203.0.113.5", 53, proto::TCP),
        0,
        T0,
    )
    .unwrap();
    assert_eq!(outside(&nat, t), (ip(NAT4), 40000));
    // Without preservation, ports are random: 200 flows from port 5000
    // of different clients give 200 distinct, non-sequential ports.
    let mut nat = NatShard::new(
        NatConfig {
            port_preservation: false,
            ..NatConfig::default()
        },
        &site(1),
        0,
    );
    let ports: Vec<u16> = (0..200)
        .map(|i| {
            let k = key(&format!("10.0.1.{i}"), 5000, "203.0.113.5", 53, proto::UDP);
            let idx = create(&mut nat, &k, 0, T0).unwrap();
            outside(&nat, idx).1
        })
        .collect();
    assert_eq!(ports.iter().collect::<HashSet<_>>().len(), 200);
    let sequential = ports
        .windows(2)
        .filter(|w| w[1] == w[0].wrapping_add(1))
        .count();
    assert!(sequential < 5, "{sequential} sequential ports");
}

#[test]
fn port_exhaustion_is_counted_and_recovers() {
    let mut nat = small_shard(NatConfig::default(), 0, 1);
    let mut used = HashSet::new();
    for p in 0..64 {
        let idx = create(&mut nat, &udp_key(10_000 + p), 0, T0).unwrap();
        let port = outside(&nat, idx).1;
        assert!((2000..2064).contains(&port), "{port}");
        assert!(used.insert(port), "port {port} handed out twice");
    }
    for p in 0..100 {
        assert_eq!(
            create(&mut nat, &udp_key(20_000 + p), 0, T0),
            Err(DropReason::PortExhausted)
        );
    }
    assert_eq!(nat.counters.uplinks[0].port_exhausted.get(), 100);
    assert_eq!(nat.counters.port_exhausted.get(), 100);
    assert_eq!(nat.len(), 64);
    // Existing mappings still take new remotes; other spaces are free.
    assert!(create(
        &mut nat,
        &key("10.0.0.2", 10_000, "198.18.0.1", 1, proto::UDP),
        0,
        T0
    )
    .is_ok());
    assert!(create(&mut nat, &tcp_key(1), 0, T0).is_ok());
    assert!(create(
        &mut nat,
        &key("fd00::2", 1, "2001:db8::9", 53, proto::UDP),
        0,
        T0
    )
    .is_ok());
    // Freeing one mapping makes room for exactly one more.
    let idx = nat.lookup_out(&udp_key(10_005), T0).unwrap();
    let freed = outside(&nat, idx).1;
    nat.remove(idx);
    let again = create(&mut nat, &udp_key(30_000), 0, T0).unwrap();
    assert_eq!(outside(&nat, again).1, freed);
    assert_eq!(
        create(&mut nat, &udp_key(30_001), 0, T0),
        Err(DropReason::PortExhausted)
    );
}

#[test]
fn shards_hand_out_disjoint_ports() {
    let topo = site_with(
        NatPortRange {
            first: 2000,
            last: 2191,
        },
        3,
    );
    let mut seen = HashSet::new();
    for shard in 0..3 {
        let mut nat = small_shard(NatConfig::default(), shard, 3);
        for p in 0..64 {
            let idx = create(&mut nat, &udp_key(p), 0, T0).unwrap();
            let port = outside(&nat, idx).1;
            assert_eq!(
                topo.shard_of_nat_port(port),
                Some(shard),
                "inbound finds the owning shard"
            );
            assert!(seen.insert(port));
        }
    }
    assert_eq!(seen.len(), 192);
}

#[test]
fn table_full_at_max_sessions() {
    let cfg = NatConfig {
        max_sessions: 3,
        filtering: Filtering::EndpointIndependent,
        ..NatConfig::default()
    };
    let mut nat = NatShard::new(cfg, &site(1), 0);
    // Each answered at once: never evicted for a newcomer.
    let idx: Vec<u32> = (0..3)
        .map(|p| {
            let i = create(&mut nat, &udp_key(p), 0, T0).unwrap();
            nat.touch(i, T0, 60, 0, true);
            i
        })
        .collect();
    let free_before = free_ports(&nat, NAT4, proto::UDP);
    assert_eq!(
        create(&mut nat, &udp_key(3), 0, T0),
        Err(DropReason::TableFull)
    );
    assert_eq!(
        create(
            &mut nat,
            &key("fd00::2", 1, "2001:db8::9", 53, proto::TCP),
            0,
            T0
        ),
        Err(DropReason::TableFull)
    );
    // Admitting from outside is refused the same way.
    let mut from_outside = nat.inbound_key(nat.session(idx[0]).unwrap());
    from_outside.src = ip("198.18.0.99");
    assert_eq!(
        nat.admit_in(&from_outside, 0, T0),
        Err(DropReason::TableFull)
    );
    assert_eq!(nat.counters.table_full.get(), 3);
    assert_eq!(
        free_ports(&nat, NAT4, proto::UDP),
        free_before,
        "a refused flow takes no port"
    );
    assert_eq!(nat.len(), 3);
    for &i in &idx {
        assert!(nat.session(i).is_some(), "existing sessions unaffected");
    }
    nat.remove(idx[1]);
    let reused = create(&mut nat, &udp_key(3), 0, T0).unwrap();
    assert_eq!(reused, idx[1], "the freed slot is reused");
    assert_eq!(nat.slots.len(), 3, "slots never grow past max_sessions");
}

/// What each filtering mode lets in from remotes the client did not
/// contact (RFC 4787 section 5).
#[test]
fn filtering_modes() {
    let contacted = key("10.0.0.2", 5000, "203.0.113.5", 3478, proto::UDP);
    let cases = [
        (Filtering::EndpointIndependent, [true, true, true]),
        (Filtering::AddressDependent, [true, true, false]),
        (Filtering::AddressAndPortDependent, [true, false, false]),
    ];
    for (mode, expect) in cases {
        let cfg = NatConfig {
            filtering: mode,
            ..NatConfig::default()
        };
        let mut nat = NatShard::new(cfg, &site(1), 0);
        let idx = create(&mut nat, &contacted, 0, T0).unwrap();
        let known = nat.inbound_key(nat.session(idx).unwrap());
        // The contacted remote itself, the same host from another port,
        // another host.
        let remotes = [
            known,
            FlowKey {
                src_port: 3479,
                ..known
            },
            FlowKey {
                src: ip("198.18.0.7"),
                ..known
            },
        ];
        for (r, want) in remotes.iter().zip(expect) {
            let got = match nat.lookup_in(r, T0) {
                Some(i) => Ok(i),
                None => nat.admit_in(r, 0, T0),
            };
            assert_eq!(got.is_ok(), want, "{mode:?} from {r:?}");
            if let Ok(i) = got {
                let s = nat.session(i).unwrap();
                assert_eq!((s.client_addr(), s.client_port), (contacted.src, 5000));
                assert_eq!(nat.lookup_in(r, T0), Some(i), "now a session of its own");
            } else {
                assert_eq!(got, Err(DropReason::Filtered));
            }
        }
        let refused = expect.iter().filter(|&&w| !w).count() as u64;
        assert_eq!(nat.counters.filtered.get(), refused, "{mode:?}");
        // Nobody owns this port: not a filtering decision.
        let stray = FlowKey {
            dst_port: known.dst_port.wrapping_add(1),
            ..known
        };
        assert_eq!(nat.admit_in(&stray, 0, T0), Err(DropReason::NoSession));
    }
}

mod timeouts_and_invariants;
