use super::*;

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

    let s = nat.cold(idx).unwrap();
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
    nat.by_out.check();
    nat.by_in.check();
    // The burst lookup finds each live session both ways.
    let keys: Vec<(FlowKey, bool)> = live
        .iter()
        .flat_map(|(_, s)| [(s.outbound_key(), false), (nat.inbound_key(s), true)])
        .collect();
    for chunk in keys.chunks(crate::packet::burst::BURST_MAX) {
        let ks: Vec<Option<(&FlowKey, bool)>> = chunk.iter().map(|(k, d)| Some((k, *d))).collect();
        let mut out = vec![None; ks.len()];
        nat.find_burst(&ks, &mut out);
        for ((k, d), o) in chunk.iter().zip(&out) {
            prop_assert_eq!(*o, nat.find(k, *d));
        }
    }
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
            pool.free_len() + owned,
            pool.owner.len(),
            "ports leaked or duplicated"
        );
        for (p, &o) in pool.owner.iter().enumerate() {
            let port = pool.base + p as u16;
            let taken = !pool.is_free(p);
            prop_assert_eq!(taken, owner.contains_key(&(class, addr, port)));
            if taken {
                prop_assert!(
                    nat.session(o).is_some(),
                    "port {} owned by a free slot",
                    port
                );
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
        c.cold = self.cold.clone();
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
