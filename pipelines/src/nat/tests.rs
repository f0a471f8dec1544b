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
            |p| p.free.len(),
        )
}

#[test]
fn session_record_is_104_bytes_and_128_with_its_index_entries() {
    assert_eq!(std::mem::size_of::<Session>(), 104);
    let nat = NatShard::new(NatConfig::default(), &site(1), 0);
    let (bytes, _) = nat.table_bytes();
    assert!(bytes / NatConfig::default().max_sessions <= 128, "{bytes}");
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

#[test]
fn tcp_from_outside_needs_a_syn() {
    let cfg = NatConfig {
        filtering: Filtering::EndpointIndependent,
        ..NatConfig::default()
    };
    let mut nat = NatShard::new(cfg, &site(1), 0);
    let idx = create(&mut nat, &tcp_key(7000), 0, T0).unwrap();
    let other = FlowKey {
        src: ip("198.18.0.7"),
        ..nat.inbound_key(nat.session(idx).unwrap())
    };
    for flags in [TCP_ACK, TCP_SYN | TCP_ACK, TCP_RST, TCP_SYN | TCP_RST] {
        assert_eq!(
            nat.admit_in(&other, flags, T0),
            Err(DropReason::NoSession),
            "{flags:#x}"
        );
    }
    let i = nat.admit_in(&other, TCP_SYN, T0).unwrap();
    nat.touch(i, T0, 60, TCP_SYN, true);
    assert_eq!(nat.session(i).unwrap().tcp_state(), TcpState::SynReceived);
    nat.touch(i, T0, 60, TCP_SYN | TCP_ACK, false);
    assert_eq!(nat.session(i).unwrap().tcp_state(), TcpState::Established);
}

#[test]
fn sweep_expires_idle_udp_after_the_timeout_and_frees_the_port() {
    let timeout = Nanos::from_secs(180);
    let cfg = NatConfig {
        udp_idle_timeout: timeout,
        ..NatConfig::default()
    };
    let mut nat = small_shard(cfg, 0, 1);
    let mut clock = VirtualClock { now: T0 };
    // Fill the shard's 64 ports; session 0 then stays idle, the others
    // are refreshed halfway through, half by outbound and half by
    // inbound packets (either direction refreshes an artificial session).
    let idx: Vec<u32> = (0..64)
        .map(|p| create(&mut nat, &udp_key(p), 0, clock.now).unwrap())
        .collect();
    let idle_port = outside(&nat, idx[0]).1;
    assert_eq!(nat.counters.udp_sessions.get(), 64);
    assert_eq!(
        create(&mut nat, &udp_key(99), 0, clock.now),
        Err(DropReason::PortExhausted)
    );

    clock.advance(Nanos::from_secs(90));
    for (n, &i) in idx[1..].iter().enumerate() {
        nat.touch(i, clock.now, 100, 0, n % 2 == 0).unwrap();
    }

    // At the deadline itself nothing has expired yet, however long the
    // sweep runs.
    let deadline = T0.saturating_add(timeout);
    clock.jump_to(deadline);
    for _ in 0..8 {
        assert_eq!(nat.sweep_slice(clock.now, 16), 0);
    }
    // One nanosecond later the idle session goes, within one sweep
    // interval of paced sweeping.
    clock.jump_to(deadline.saturating_add(Nanos(1)));
    let (n, took) = drive_sweep(&mut nat, &mut clock, Nanos::from_millis(10), 1, 200);
    assert_eq!(n, 1);
    assert!(took <= nat.cfg.sweep_interval, "took {took:?}");
    assert!(nat.session(idx[0]).is_none());
    assert_eq!(nat.len(), 63);
    assert_eq!(
        (nat.counters.expired.get(), nat.counters.udp_sessions.get()),
        (1, 63)
    );
    assert_eq!(nat.counters.uplinks[0].udp_sessions.get(), 63);

    // Its port is free again and is reused.
    let new = create(&mut nat, &udp_key(99), 0, clock.now).unwrap();
    assert_eq!(outside(&nat, new).1, idle_port);

    // The refreshed sessions expire one timeout after their refresh.
    clock.jump_to(
        T0.saturating_add(Nanos::from_secs(90))
            .saturating_add(timeout)
            .saturating_add(Nanos(1)),
    );
    let (n, _) = drive_sweep(&mut nat, &mut clock, Nanos::from_millis(10), 63, 200);
    assert_eq!(n, 63);
    assert_eq!(nat.len(), 1);
}

/// The paced sweep laps a large table once per `sweep_interval` and
/// never visits more than `SWEEP_MAX` slots in one call.
#[test]
fn paced_sweep_laps_once_per_interval_in_bounded_slices() {
    let cfg = NatConfig {
        max_sessions: 20_000,
        udp_idle_timeout: Nanos::from_secs(1),
        sweep_interval: Nanos::from_secs(2),
        hosts: HostLimits {
            max_hosts: 20_000,
            ..HostLimits::default()
        },
        ..NatConfig::default()
    };
    let mut nat = NatShard::new(cfg, &site(1), 0);
    let mut clock = VirtualClock { now: T0 };
    for i in 0..20_000u32 {
        let k = key(
            &format!("10.0.{}.{}", i / 250, i % 250 + 1),
            7000,
            "203.0.113.5",
            53,
            proto::UDP,
        );
        let s = create(&mut nat, &k, 0, clock.now).unwrap();
        // Answered: the table fills without evicting.
        nat.touch(s, clock.now, 60, 0, true);
    }
    nat.sweep(clock.now);
    // Everything is idle past its timeout; a turn every 1 ms.
    clock.advance(Nanos::from_secs(5));
    let mut worst = 0;
    let mut turns = 0;
    while !nat.is_empty() {
        clock.advance(Nanos::from_millis(1));
        let n = nat.sweep(clock.now);
        worst = worst.max(n);
        turns += 1;
        assert!(turns < 5_000, "sweep does not finish");
    }
    assert!(worst <= SWEEP_MAX, "{worst}");
    // The first turn after 5 s owes a whole lap but visits SWEEP_MAX;
    // then it keeps up with the backlog.
    assert_eq!(worst, SWEEP_MAX);
    assert!(turns <= 20_000 / SWEEP_MAX + 2, "{turns} turns");
    assert_eq!(nat.counters.udp_sessions.get(), 0);
    assert_eq!(nat.counters.mappings.get(), 0);

    // Pacing: with one turn per ms, 20,000 slots and a 2 s interval the
    // lap owes 10 visits a turn; the floor of SWEEP_MIN visits makes it
    // 20,000 / 32 turns, i.e. 625 ms: never longer than the interval.
    for i in 0..20_000u32 {
        let k = key(
            &format!("10.1.{}.{}", i / 250, i % 250 + 1),
            7000,
            "203.0.113.5",
            53,
            proto::UDP,
        );
        create(&mut nat, &k, 0, clock.now).unwrap();
    }
    let laps = nat.counters.sweep_laps.get();
    let start = clock.now;
    while nat.counters.sweep_laps.get() < laps + 2 {
        clock.advance(Nanos::from_millis(1));
        for i in nat.live_sessions().collect::<Vec<_>>() {
            nat.slots[i as usize].last_seen = clock.now;
        }
        nat.sweep(clock.now);
    }
    let per_lap = clock.now.since(start).as_nanos() / 2;
    assert!(
        (600_000_000..=650_000_000).contains(&per_lap),
        "a lap took {per_lap} ns"
    );
}

#[test]
fn lookup_does_not_return_an_expired_session() {
    let cfg = NatConfig {
        udp_idle_timeout: Nanos::from_secs(10),
        ..NatConfig::default()
    };
    let mut nat = NatShard::new(cfg, &site(1), 0);
    let idx = create(&mut nat, &udp_key(1), 0, T0).unwrap();
    let in_key = nat.inbound_key(nat.session(idx).unwrap());
    let later = T0.saturating_add(Nanos::from_secs(11));
    assert_eq!(nat.lookup_in(&in_key, later), None);
    assert!(
        nat.is_empty(),
        "removed on the spot, not left for the sweep"
    );
    assert_eq!(nat.counters.expired.get(), 1);
    assert_eq!(nat.lookup_out(&udp_key(1), later), None);
}

#[test]
fn tcp_state_picks_the_timeout() {
    let cfg = NatConfig::default();
    let mut nat = NatShard::new(cfg.clone(), &site(1), 0);
    let idx = create(&mut nat, &tcp_key(1), 0, T0).unwrap();
    let state = |nat: &NatShard| nat.session(idx).unwrap().tcp_state();
    let expired_after = |nat: &NatShard, d: Nanos| {
        nat.session(idx)
            .unwrap()
            .expired(T0.saturating_add(d), &cfg)
    };
    let past = |d: Nanos| d.saturating_add(Nanos(1));

    nat.touch(idx, T0, 60, TCP_SYN, false);
    assert_eq!(state(&nat), TcpState::SynSent);
    assert!(
        expired_after(&nat, past(cfg.tcp_transitory_timeout)),
        "a SYN nobody answered"
    );
    nat.touch(idx, T0, 60, TCP_SYN | TCP_ACK, false);
    assert_eq!(
        state(&nat),
        TcpState::SynSent,
        "the inside alone does not open a connection"
    );
    nat.touch(idx, T0, 60, TCP_SYN | TCP_ACK, true);
    assert_eq!(state(&nat), TcpState::Established);
    assert!(!expired_after(&nat, past(cfg.tcp_transitory_timeout)));
    assert!(expired_after(&nat, past(cfg.tcp_established_timeout)));
    nat.touch(idx, T0, 60, TCP_FIN | TCP_ACK, false);
    assert_eq!(state(&nat), TcpState::FinSeen);
    assert!(
        expired_after(&nat, past(cfg.tcp_transitory_timeout)),
        "FIN: the short timeout"
    );
    nat.touch(idx, T0, 60, TCP_FIN | TCP_ACK, true);
    assert_eq!(state(&nat), TcpState::Closed);
    assert!(expired_after(&nat, past(cfg.tcp_transitory_timeout)));
    nat.touch(idx, T0, 60, TCP_RST, true);
    assert_eq!(state(&nat), TcpState::Rst);
    assert!(expired_after(&nat, past(cfg.tcp_closed_timeout)));
    assert!(!expired_after(&nat, cfg.tcp_closed_timeout));

    let s = nat.session(idx).unwrap();
    assert_eq!(
        (s.packets_in, s.packets_out, s.bytes_in(), s.bytes_out()),
        (3, 3, 180, 180)
    );

    // A connection picked up mid-stream (no SYN seen) is established
    // once traffic went both ways.
    let mid = create(&mut nat, &tcp_key(2), 0, T0).unwrap();
    nat.touch(mid, T0, 60, TCP_ACK, false);
    assert_eq!(nat.session(mid).unwrap().tcp_state(), TcpState::SynSent);
    nat.touch(mid, T0, 60, TCP_ACK, true);
    assert_eq!(nat.session(mid).unwrap().tcp_state(), TcpState::Established);
}

#[derive(Clone, Debug)]
enum Op {
    Out {
        client: u8,
        cport: u8,
        remote: u8,
        rport: u8,
        protocol: u8,
        uplink: u8,
        v6: bool,
    },
    In {
        pick: usize,
        other_port: bool,
        other_host: bool,
        syn: bool,
    },
    Remove {
        pick: usize,
    },
    Advance {
        secs: u64,
    },
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    let protocol = prop_oneof![Just(proto::TCP), Just(proto::UDP), Just(proto::ICMP)];
    prop_oneof![
        5 => (0u8..4, 0u8..4, 0u8..4, 0u8..3, protocol, 0u8..2, any::<bool>()).prop_map(
            |(client, cport, remote, rport, protocol, uplink, v6)| Op::Out { client, cport, remote, rport, protocol, uplink, v6 }),
        3 => (any::<usize>(), any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(pick, other_port, other_host, syn)| Op::In { pick, other_port, other_host, syn }),
        1 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
        1 => (0u64..40).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Sweep),
    ]
}

fn out_key(client: u8, cport: u8, remote: u8, rport: u8, protocol: u8, v6: bool) -> FlowKey {
    let (c, r) = if v6 {
        (
            format!("fd00::{}", client + 2),
            format!("2001:db8:ffff::{}", remote + 1),
        )
    } else {
        (
            format!("10.0.0.{}", client + 2),
            format!("203.0.113.{}", remote + 1),
        )
    };
    // Inside ports collide across clients on purpose (2000..2004 is in
    // the shard's slice, so preservation competes with allocation).
    let k = key(
        &c,
        2000 + u16::from(cport),
        &r,
        53 + u16::from(rport),
        protocol,
    );
    if protocol == proto::ICMP {
        let p = if v6 { proto::ICMPV6 } else { proto::ICMP };
        FlowKey {
            proto: p,
            dst_port: 0,
            ..k
        }
    } else {
        k
    }
}

fn check_invariants(nat: &NatShard, now: Nanos) -> Result<(), TestCaseError> {
    let live: Vec<(u32, Session)> = nat
        .live_sessions()
        .map(|i| (i, nat.slots[i as usize].clone()))
        .collect();
    prop_assert_eq!(live.len(), nat.len());
    prop_assert!(nat.len() <= nat.cfg.max_sessions && nat.slots.len() <= nat.cfg.max_sessions);
    prop_assert_eq!(nat.by_out.len(), nat.len());
    prop_assert_eq!(nat.by_in.len(), nat.len());
    // (proto, inside endpoint, uplink) -> outside; outside -> inside.
    let mut mapping: StdMap<(u8, IpAddr, u16, u8), (IpAddr, u16)> = StdMap::new();
    let mut owner: StdMap<(u8, IpAddr, u16), (IpAddr, u16)> = StdMap::new();
    let mut sticky: StdMap<(u8, IpAddr, u16), u8> = StdMap::new();
    let mut shard = nat.clone_for_lookup();
    for (i, s) in &live {
        // A bijection: each key finds exactly this session.
        prop_assert_eq!(
            shard.lookup_out(&s.outbound_key(), now.min(s.last_seen)),
            Some(*i)
        );
        prop_assert_eq!(
            shard.lookup_in(&nat.inbound_key(s), now.min(s.last_seen)),
            Some(*i)
        );
        let out = (nat.nat_addr(s), s.nat_port);
        let inside = (s.client_addr(), s.client_port);
        let m = mapping
            .entry((s.proto, inside.0, inside.1, s.uplink))
            .or_insert(out);
        prop_assert_eq!(*m, out, "endpoint-independent mapping");
        let o = owner
            .entry((class_of(s.proto) as u8, out.0, out.1))
            .or_insert(inside);
        prop_assert_eq!(
            *o,
            inside,
            "an outside endpoint held by two inside endpoints"
        );
        if s.proto != proto::TCP {
            let u = sticky
                .entry((s.proto, inside.0, inside.1))
                .or_insert(s.uplink);
            prop_assert_eq!(*u, s.uplink, "UDP/ICMP mapping not sticky");
        }
        prop_assert!((nat.range.first..=nat.range.last).contains(&s.nat_port));
    }
    prop_assert_eq!(nat.by_inside.len(), mapping.len());
    prop_assert_eq!(nat.counters.mappings.get() as usize, mapping.len());
    // Pools: owned ports are not free, and nothing leaked.
    for (pi, pool) in nat.pools.iter().enumerate() {
        let Some(pool) = pool else { continue };
        let addr = nat.addrs[pi / CLASSES].addr;
        let class = (pi % CLASSES) as u8;
        let owned = owner
            .keys()
            .filter(|(c, a, _)| *c == class && *a == addr)
            .count();
        prop_assert_eq!(
            pool.free.len() + owned,
            pool.owner.len(),
            "ports leaked or duplicated"
        );
        for (p, &o) in pool.owner.iter().enumerate() {
            let port = pool.base + p as u16;
            prop_assert_eq!(o != NONE, owner.contains_key(&(class, addr, port)));
            if o == NONE {
                prop_assert_eq!(pool.free[usize::from(pool.pos[p])], port);
            }
        }
    }
    let count = |p: u8| live.iter().filter(|(_, s)| s.proto == p).count() as u64;
    prop_assert_eq!(nat.counters.tcp_sessions.get(), count(proto::TCP));
    prop_assert_eq!(nat.counters.udp_sessions.get(), count(proto::UDP));
    Ok(())
}

impl NatShard {
    /// A copy good enough for read-only lookups in the invariant check
    /// (lookups take `&mut self` because they remove expired sessions).
    fn clone_for_lookup(&self) -> NatShard {
        let mut c = NatShard::new(self.cfg.clone(), &site(1), 0);
        c.slots = self.slots.clone();
        c.by_out = self.by_out.clone();
        c.by_in = self.by_in.clone();
        c.by_inside = self.by_inside.clone();
        c.hasher = self.hasher;
        c
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Whatever the sequence of flows, replies, removals, time and
    /// sweeps: lookups are a bijection over live sessions, mappings are
    /// endpoint-independent and sticky, no outside endpoint has two
    /// inside endpoints, ports neither leak nor double, gauges match.
    #[test]
    fn invariants_hold_under_any_operation_sequence(
        ops in proptest::collection::vec(op(), 1..150),
        filtering in 0usize..3,
    ) {
        let cfg = NatConfig {
            max_sessions: 40,
            udp_idle_timeout: Nanos::from_secs(30),
            tcp_transitory_timeout: Nanos::from_secs(60),
            filtering: Filtering::NAMES[filtering].parse().unwrap(),
            ..NatConfig::default()
        };
        let mut nat = small_shard(cfg, 0, 1);
        let mut clock = VirtualClock { now: T0 };
        for op in ops {
            let live: Vec<u32> = nat.live_sessions().collect();
            match op {
                Op::Out { client, cport, remote, rport, protocol, uplink, v6 } => {
                    let k = out_key(client, cport, remote, rport, protocol, v6);
                    let uplink = if v6 { 0 } else { uplink };
                    if nat.lookup_out(&k, clock.now).is_none() {
                        match nat.create_out(&k, uplink, MAC, clock.now) {
                            Ok((i, _)) => {
                                let s = nat.session(i).unwrap();
                                prop_assert_eq!(s.outbound_key(), k);
                            }
                            Err(DropReason::TableFull) | Err(DropReason::PortExhausted) => {}
                            Err(e) => prop_assert!(false, "unexpected {:?}", e),
                        }
                    }
                }
                Op::In { pick, other_port, other_host, syn } if !live.is_empty() => {
                    let s = nat.session(live[pick % live.len()]).unwrap().clone();
                    let mut k = nat.inbound_key(&s);
                    if other_port { k.src_port = k.src_port.wrapping_add(1); }
                    if other_host { k.src = if k.src.is_ipv4() { ip("198.18.0.1") } else { ip("2001:db8:eeee::1") }; }
                    let flags = if syn { TCP_SYN } else { TCP_ACK };
                    let got = match nat.lookup_in(&k, clock.now) {
                        Some(i) => Ok(i),
                        None => nat.admit_in(&k, flags, clock.now),
                    };
                    if let Ok(i) = got {
                        // The reply reaches the inside endpoint that owns (NA, NP).
                        let r = nat.session(i).unwrap();
                        prop_assert_eq!((r.client_addr(), r.client_port), (s.client_addr(), s.client_port));
                        nat.touch(i, clock.now, 64, flags, true);
                    }
                }
                Op::Remove { pick } if !live.is_empty() => {
                    prop_assert!(nat.remove(live[pick % live.len()]).is_some());
                }
                Op::Advance { secs } => clock.advance(Nanos::from_secs(secs)),
                Op::Sweep => { nat.sweep(clock.now); }
                _ => {}
            }
            check_invariants(&nat, clock.now)?;
        }
    }
}
