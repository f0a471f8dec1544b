use super::*;

/// RFC 4787 REQ-1 at packet level: one inside endpoint, three remotes,
/// one outside endpoint; replies from each reach the client.
#[test]
fn one_inside_endpoint_has_one_outside_endpoint_for_every_remote() {
    let mut s = Site::new();
    let outs: Vec<_> = ["203.0.113.5", "203.0.113.6", "198.18.0.1"]
        .iter()
        .map(|r| udp_out(&mut s, "10.0.0.2", 40000, r, 3478))
        .collect();
    let first = src_of(&outs[0]);
    assert_eq!(first, (ip(NAT4), 40000), "port preserved");
    for o in &outs {
        assert_eq!(src_of(o), first);
        assert_checksums_valid(o.data(), 14);
        let reply = from_isp(&dst_of(o).0.to_string(), NAT4, udp(3478, first.1, b"pong"));
        let back = s.back(&reply).unwrap();
        assert_eq!(dst_of(&back), (ip("10.0.0.2"), 40000));
        assert_checksums_valid(back.data(), 14);
    }
    assert_eq!(s.translate.nat.counters.mappings.get(), 1);
    assert_eq!(s.translate.nat.len(), 3);
}

/// Each filtering mode at packet level: what a remote the client never
/// contacted gets through, and that refusals are counted and leave the
/// session alone.
#[test]
fn filtering_modes_on_the_wire() {
    for (mode, host_ok, port_ok) in [
        (Filtering::EndpointIndependent, true, true),
        (Filtering::AddressDependent, false, true),
        (Filtering::AddressAndPortDependent, false, false),
    ] {
        let mut s = Site::with(NatConfig {
            filtering: mode,
            ..NatConfig::default()
        });
        let out = udp_out(&mut s, "10.0.0.2", 40000, "203.0.113.5", 3478);
        let np = src_of(&out).1;
        let from = |src: &str, sport: u16| from_isp(src, NAT4, udp(sport, np, b"hi"));
        let other_host = s.back(&from("198.18.0.9", 3478));
        let other_port = s.back(&from("203.0.113.5", 9999));
        assert_eq!(other_host.is_ok(), host_ok, "{mode:?}");
        assert_eq!(other_port.is_ok(), port_ok, "{mode:?}");
        for r in [&other_host, &other_port] {
            match r {
                Ok(b) => {
                    assert_eq!(dst_of(b), (ip("10.0.0.2"), 40000));
                    assert_checksums_valid(b.data(), 14);
                }
                Err(e) => assert_eq!(*e, DropReason::Filtered),
            }
        }
        let refused = u64::from(!host_ok) + u64::from(!port_ok);
        assert_eq!(s.translate.nat.counters.filtered.get(), refused);
        // The contacted remote still gets through.
        assert!(s.back(&from("203.0.113.5", 3478)).is_ok());
    }
}

/// Hairpinning (RFC 4787 REQ-9) within one shard: a LAN client sending to
/// another's outside endpoint reaches it, seen from that client's own
/// outside endpoint; with the default filtering it takes the usual hole
/// punch (each side sends first).
#[test]
fn hairpin_within_a_shard() {
    let mut s = Site::new();
    let a = src_of(&udp_out(&mut s, "10.0.0.2", 5000, "203.0.113.5", 3478));
    let b = src_of(&udp_out(&mut s, "10.0.0.3", 6000, "203.0.113.5", 3478));
    let to = |(addr, port): (IpAddr, u16), from: &str, sport: u16| {
        from_client(from, &addr.to_string(), udp(sport, port, b"punch"))
    };
    // A -> B's outside: B never sent to A's outside, so B's filter drops it.
    assert_eq!(
        s.out(&to(b, "10.0.0.2", 5000)).unwrap_err(),
        DropReason::Filtered
    );
    // B -> A's outside: A did send to B's outside: delivered to A.
    let got = s.out(&to(a, "10.0.0.3", 6000)).unwrap();
    let m = *got.meta();
    assert_eq!(dst_of(&got), (ip("10.0.0.2"), 5000));
    assert_eq!(
        src_of(&got),
        b,
        "the sender appears as its outside endpoint"
    );
    assert_eq!(
        (m.out_port, m.direction, m.hairpin),
        (LAN_PORT, Direction::Inbound, false)
    );
    assert_eq!(ttl(got.data(), 14), 63, "one router hop");
    assert_checksums_valid(got.data(), 14);
    // And now A -> B works too.
    let back = s.out(&to(b, "10.0.0.2", 5000)).unwrap();
    assert_eq!((src_of(&back), dst_of(&back)), (a, (ip("10.0.0.3"), 6000)));
    assert_checksums_valid(back.data(), 14);

    // Endpoint-independent filtering needs no punch.
    let mut s = Site::with(NatConfig {
        filtering: Filtering::EndpointIndependent,
        ..NatConfig::default()
    });
    let a = src_of(&udp_out(&mut s, "10.0.0.2", 5000, "203.0.113.5", 3478));
    let got = s.out(&to(a, "10.0.0.3", 7000)).unwrap();
    assert_eq!(dst_of(&got), (ip("10.0.0.2"), 5000));
    assert_eq!(src_of(&got).0, ip(NAT4));
    // Nobody behind that outside port: dropped, counted, no session left
    // half-made on the receiving side.
    let nobody = (ip(NAT4), 4242);
    assert_eq!(
        s.out(&to(nobody, "10.0.0.3", 7001)).unwrap_err(),
        DropReason::NoSession
    );
}

/// Across shards: the first shard does the outbound half and marks the
/// packet for the shard owning the destination port, which finishes it.
#[test]
fn hairpin_across_shards() {
    let topo = site(2);
    let classify = Classify::new(topo.clone());
    let cfg = NatConfig {
        filtering: Filtering::EndpointIndependent,
        ..NatConfig::default()
    };
    let mut shard = [
        Translate::new(topo.clone(), 0, cfg.clone()),
        Translate::new(topo.clone(), 1, cfg),
    ];
    let send = |t: &mut Translate, frame: &[u8]| {
        let mut b = buf(frame, LAN_PORT);
        classify.classify(&mut b).unwrap();
        t.translate(T0, &mut b).map(|()| b)
    };
    // A's mapping on shard 1 (its inside port 40000 is in shard 1's slice).
    let a = src_of(
        &send(
            &mut shard[1],
            &from_client("10.0.0.2", "203.0.113.5", udp(40000, 53, b"q")),
        )
        .unwrap(),
    );
    assert_eq!(topo.shard_of_nat_port(a.1), Some(1));
    // B on shard 0 sends to A's outside endpoint.
    let mut half = send(
        &mut shard[0],
        &from_client("10.0.0.3", "192.0.2.1", udp(6000, a.1, b"hi")),
    )
    .unwrap();
    let m = *half.meta();
    assert!(m.hairpin);
    assert_eq!(
        (m.shard, m.direction, m.in_port, m.uplink),
        (1, Direction::Inbound, WAN_PORT, 0)
    );
    assert_eq!(m.flow.dst_port, a.1);
    assert_eq!(ttl(half.data(), 14), 63);
    shard[1].translate(T0, &mut half).unwrap();
    let m = *half.meta();
    assert!(!m.hairpin);
    assert_eq!(dst_of(&half), (ip("10.0.0.2"), 40000));
    assert_eq!((m.out_port, m.next_hop_mac), (LAN_PORT, CLIENT_MAC));
    assert_eq!(
        ttl(half.data(), 14),
        63,
        "the second half does not decrement again"
    );
    assert_checksums_valid(half.data(), 14);
}

/// Hostile input: unsolicited packets, packets to unowned ports,
/// exhaustion and a full table are all counted, none panics, and the
/// live session keeps working throughout.
#[test]
fn hostile_traffic_is_counted_and_leaves_sessions_alone() {
    let mut s = Site::with(NatConfig {
        max_sessions: 4,
        ..NatConfig::default()
    });
    let out = udp_out(&mut s, "10.0.0.2", 40000, "203.0.113.5", 53);
    let np = src_of(&out).1;
    let reply = from_isp("203.0.113.5", NAT4, udp(53, np, b"ok"));
    let mut frames = Vec::new();
    for i in 0..50u16 {
        frames.push((
            from_isp("198.18.0.1", NAT4, udp(i, 2000 + i, b"x")),
            WAN_PORT,
        ));
        frames.push((from_isp("198.18.0.2", NAT4, udp(i, np, b"x")), WAN_PORT));
        frames.push((
            from_client("10.0.0.9", "203.0.113.7", udp(1000 + i, 53, b"x")),
            LAN_PORT,
        ));
        frames.push((reply.clone(), WAN_PORT));
    }
    let mut output: Burst<HeapBuf> = Burst::new();
    for chunk in frames.chunks(16) {
        let mut input: Burst<HeapBuf> = Burst::new();
        for (f, port) in chunk {
            let mut b = buf(f, *port);
            s.classify.classify(&mut b).unwrap();
            input.push(b);
        }
        s.translate.process(T0, &mut input, &mut output);
        for b in output.drain(..) {
            if b.meta().out_port == LAN_PORT {
                assert_eq!(dst_of(&b), (ip("10.0.0.2"), 40000));
            }
        }
    }
    let c = &s.translate.counters;
    assert_eq!(c.drops(DropReason::NoSession), 50, "unowned ports");
    assert_eq!(c.drops(DropReason::Filtered), 50, "unsolicited remote");
    // The shard is nearly full from its fourth session on: each new
    // unanswered flow evicts the oldest unanswered one, never the session
    // with a reply; none is refused.
    assert_eq!(c.drops(DropReason::TableFull), 0);
    assert_eq!(s.translate.nat.counters.evicted_unanswered.get(), 48);
    assert_eq!(c.packets.get(), 200);
    assert_eq!(s.translate.nat.len(), 3);
    let u = &s.translate.nat.counters.uplinks[0];
    assert_eq!(u.rx_packets.get(), 50, "every genuine reply went through");
}

/// Port exhaustion at packet level with a 64-port shard.
#[test]
fn port_exhaustion_on_the_wire() {
    let topo = site_with(
        crate::topology::NatPortRange {
            first: 3000,
            last: 3063,
        },
        1,
    );
    let mut s = Site {
        classify: Classify::new(topo.clone()),
        translate: Translate::new(topo, 0, NatConfig::default()),
    };
    let mut ok = 0;
    for i in 0..80u16 {
        match s.out(&from_client(
            "10.0.0.2",
            "203.0.113.5",
            udp(10_000 + i, 53, b"q"),
        )) {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e, DropReason::PortExhausted),
        }
    }
    assert_eq!(ok, 64);
    assert_eq!(s.translate.nat.counters.uplinks[0].port_exhausted.get(), 16);
    assert_eq!(
        s.translate.counters.drops(DropReason::PortExhausted),
        0,
        "counted by process only"
    );
}

#[derive(Clone, Debug)]
struct Pkt {
    client: u8,
    cport: u8,
    remote: u8,
    rport: u8,
    kind: u8,
    v6: bool,
    uplink: u8,
    reply: bool,
    payload: Vec<u8>,
}

fn pkt() -> impl Strategy<Value = Pkt> {
    (
        (0u8..3, 0u8..3, 0u8..3, 0u8..2, 0u8..3, any::<bool>()),
        (
            0u8..2,
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..40),
        ),
    )
        .prop_map(
            |((client, cport, remote, rport, kind, v6), (uplink, reply, payload))| Pkt {
                client,
                cport,
                remote,
                rport,
                kind,
                v6,
                uplink,
                reply,
                payload,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// Random traffic (TCP, UDP, echo; IPv4 and IPv6; two uplinks; each
    /// packet either a client packet or the remote's answer to it):
    /// every translated packet's checksums verify by full recomputation,
    /// its payload is untouched, an inside endpoint keeps one outside
    /// endpoint per uplink, no outside endpoint serves two inside
    /// endpoints, and every answer reaches the client that sent.
    #[test]
    fn translation_is_consistent_and_checksums_verify(pkts in proptest::collection::vec(pkt(), 1..60)) {
        let mut s = Site::new();
        let mut mapping: std::collections::HashMap<(u8, IpAddr, u16, u8), (IpAddr, u16)> = Default::default();
        let mut owner: std::collections::HashMap<(u8, IpAddr, u16), (IpAddr, u16)> = Default::default();
        for p in pkts {
            let (c, r) = if p.v6 {
                (format!("fd00::{}", p.client + 2), format!("2001:db8:ffff::{}", p.remote + 1))
            } else {
                (format!("10.0.0.{}", p.client + 2), format!("203.0.113.{}", p.remote + 1))
            };
            let cport = 40000 + u16::from(p.cport);
            let rport = 80 + u16::from(p.rport);
            let l4 = match p.kind {
                0 => L4::Tcp { src_port: cport, dst_port: rport, control: TcpControl::Syn, ack: None, payload: &p.payload },
                1 => udp(cport, rport, &p.payload),
                _ => L4::EchoRequest { ident: cport, seq_no: 1 },
            };
            let uplink = if p.v6 { 0 } else { p.uplink };
            let frame = from_client(&c, &r, l4);
            let out = s.send(&frame, LAN_PORT, uplink, T0).unwrap();
            let m = *out.meta();
            assert_checksums_valid(out.data(), 14);
            let hdr = usize::from(m.l4_offset) + match p.kind { 0 => 20, 1 => 8, _ => 8 };
            prop_assert_eq!(&out.data()[hdr..], &frame[hdr..], "payload untouched");
            let (na, np) = src_of(&out);
            // The uplink the flow actually took: an existing flow keeps
            // its own, UDP and echo stick to their mapping's.
            let took = u8::from(na == ip(NAT4_TAGGED));
            let key = (p.kind, ip(&c), cport, if p.kind == 0 { took } else { 0 });
            let prev = *mapping.entry(key).or_insert((na, np));
            prop_assert_eq!(prev, (na, np), "endpoint-independent mapping");
            let prev = *owner.entry((p.kind, na, np)).or_insert((ip(&c), cport));
            prop_assert_eq!(prev, (ip(&c), cport), "outside endpoint shared");
            if p.reply {
                let back_l4 = match p.kind {
                    0 => L4::Tcp { src_port: rport, dst_port: np, control: TcpControl::Syn, ack: Some(1), payload: &p.payload },
                    1 => udp(rport, np, &p.payload),
                    _ => L4::EchoReply { ident: np, seq_no: 1 },
                };
                let port = if na == ip(NAT4_TAGGED) { WAN_TAGGED_PORT } else { WAN_PORT };
                let f = match port {
                    WAN_PORT => from_isp(&r, &na.to_string(), back_l4),
                    _ => ethernet(WAN_TAGGED_MAC, ISP1_MAC, Some(TAGGED_VLAN), 0x0800, &ip_packet(ip(&r), na, 64, &back_l4)),
                };
                let back = s.send(&f, port, 0, T0).unwrap();
                assert_checksums_valid(back.data(), 14 + if port == WAN_PORT { 0 } else { 4 });
                let l3 = usize::from(back.meta().l3_offset);
                let (_, dst) = addrs(back.data(), l3);
                prop_assert_eq!(dst, ip(&c));
                let dp = ports(back.data(), l3, usize::from(back.meta().l4_offset)).1;
                prop_assert_eq!(dp, cport);
            }
        }
    }
}

/// The (source, destination) addresses of the datagram at `l3`, read
/// raw (a quoted datagram may be cut short).
fn raw_addrs(frame: &[u8], l3: usize) -> (IpAddr, IpAddr) {
    let d = &frame[l3..];
    if d[0] >> 4 == 4 {
        let a = |o: usize| IpAddr::from(<[u8; 4]>::try_from(&d[o..o + 4]).unwrap());
        (a(12), a(16))
    } else {
        let a = |o: usize| IpAddr::from(<[u8; 16]>::try_from(&d[o..o + 16]).unwrap());
        (a(8), a(24))
    }
}

/// RFC 5508: an ICMP error about a translated packet is translated for
/// that packet's session, both ways, v4 and v6; it neither creates nor
/// refreshes a session; an error about no session is dropped.
#[test]
fn icmp_errors_follow_the_session_they_quote() {
    for (client, remote, nat, unreach, router) in [
        ("10.0.0.2", "203.0.113.5", NAT4, 3u8, "198.18.0.254"),
        (
            "fd00::2",
            "2001:db8:ffff::5",
            NAT6,
            1u8,
            "2001:db8:eeee::fe",
        ),
    ] {
        let mut s = Site::new();
        let out = udp_out(&mut s, client, 40000, remote, 53);
        let (na, np) = src_of(&out);
        let last_seen = s.translate.nat.session(0).unwrap().last_seen;
        // A router on the way says the remote is unreachable, quoting the
        // packet as it left the appliance (TTL 63 by then).
        let quote = quoted(&na.to_string(), remote, 63, udp(np, 53, b"ping"), None);
        let err = icmp_error_from_isp(router, &na.to_string(), unreach, 3, &quote);
        let later = T0.saturating_add(Nanos::from_secs(5));
        let back = s.send(&err, WAN_PORT, 0, later).unwrap();
        let m = *back.meta();
        assert_eq!(addrs(back.data(), 14), (ip(router), ip(client)));
        assert_eq!(
            raw_addrs(back.data(), m.inner_l3.into()),
            (ip(client), ip(remote)),
            "quoted source restored"
        );
        assert_eq!(
            ports(back.data(), m.inner_l3.into(), m.inner_l4.into()),
            (40000, 53)
        );
        assert_eq!((m.out_port, m.next_hop_mac), (LAN_PORT, CLIENT_MAC));
        assert_icmp_error_checksums_valid(back.data(), 14, m.inner_l3.into(), true);
        assert_eq!(
            s.translate.nat.session(0).unwrap().last_seen,
            last_seen,
            "errors do not refresh"
        );

        // The client says its port is unreachable for a reply, quoting
        // the reply as it reached it.
        let quote = quoted(
            remote,
            client,
            63,
            udp(53, 40000, b"late"),
            Some(28 + if na.is_ipv6() { 20 } else { 0 }),
        );
        let err = icmp_error_from_client(
            client,
            remote,
            unreach,
            if na.is_ipv6() { 4 } else { 3 },
            &quote,
        );
        let up = s.out(&err).unwrap();
        let m = *up.meta();
        assert_eq!(addrs(up.data(), 14), (ip(nat), ip(remote)));
        assert_eq!(
            raw_addrs(up.data(), m.inner_l3.into()),
            (ip(remote), ip(nat)),
            "quoted destination is the NAT address"
        );
        assert_eq!(
            ports(up.data(), m.inner_l3.into(), m.inner_l4.into()),
            (53, np)
        );
        assert_eq!((m.out_port, m.next_hop_mac), (WAN_PORT, ISP0_MAC));
        assert_icmp_error_checksums_valid(up.data(), 14, m.inner_l3.into(), false);

        // About a flow nobody has: dropped, no session made.
        let stray = quoted(
            &na.to_string(),
            remote,
            63,
            udp(np.wrapping_add(1), 53, b"?"),
            None,
        );
        let err = icmp_error_from_isp(router, &na.to_string(), unreach, 3, &stray);
        assert_eq!(s.back(&err).unwrap_err(), DropReason::NoSession);
        assert_eq!(s.translate.nat.len(), 1);
    }
}

/// on_uplink_down = "reset" with uplink 0 marked down (link lost) in the
/// translate stage's snapshot.
fn reset_site_with_uplink_0_down() -> Site {
    use crate::select::policy::SelectionPolicy;
    use crate::select::{SelectConfig, SelectionCore};
    let topo = site(1);
    let policy = SelectionPolicy {
        reset_on_down: true,
        ..SelectionPolicy::default()
    };
    let mut site = Site {
        classify: Classify::new(topo.clone()),
        translate: Translate::with_policy(topo, 0, NatConfig::default(), Arc::new(policy)),
    };
    let mut core = SelectionCore::new(SelectConfig::default(), vec![1, 1]);
    core.tick(T0, &[], &[], &[false, true]);
    site.translate.selector.install(Arc::new(core.snapshot(T0)));
    site
}

#[test]
fn reset_mode_moves_a_udp_mapping_off_the_down_uplink_for_good() {
    let mut s = Site::new();
    // Two flows of one client port on uplink 0 (one sticky mapping).
    let a = from_client("10.0.0.2", "203.0.113.5", udp(5000, 53, b"a"));
    let b = from_client("10.0.0.2", "203.0.113.6", udp(5000, 53, b"b"));
    let c = from_client("10.0.0.2", "203.0.113.7", udp(5000, 53, b"c"));
    s.send(&a, LAN_PORT, 0, T0).unwrap();
    s.send(&b, LAN_PORT, 0, T0).unwrap();
    assert_eq!(s.translate.nat.len(), 2);
    // Uplink 0 goes down; the same shard state under the reset policy.
    let mut down = reset_site_with_uplink_0_down();
    std::mem::swap(&mut down.translate.nat, &mut s.translate.nat);
    // A new flow of that client port, asked for uplink 1: the sticky
    // mapping on uplink 0 must not pull it back there.
    let out = down.send(&c, LAN_PORT, 1, T0).unwrap();
    assert_eq!(out.meta().uplink, 1, "never re-created on the down uplink");
    assert_eq!(down.translate.nat.len(), 1, "the old mapping went whole");
    // The client's other flows follow when they next send.
    for f in [&a, &b] {
        let out = down.send(f, LAN_PORT, 1, T0).unwrap();
        assert_eq!(out.meta().uplink, 1);
    }
    assert_eq!(down.translate.nat.len(), 3);
}

#[test]
fn reset_mode_does_not_recreate_a_found_udp_session_on_the_down_uplink() {
    let mut s = Site::new();
    let a = from_client("10.0.0.2", "203.0.113.5", udp(5000, 53, b"a"));
    let b = from_client("10.0.0.2", "203.0.113.6", udp(5000, 53, b"b"));
    s.send(&a, LAN_PORT, 0, T0).unwrap();
    s.send(&b, LAN_PORT, 0, T0).unwrap();
    let mut down = reset_site_with_uplink_0_down();
    std::mem::swap(&mut down.translate.nat, &mut s.translate.nat);
    // Flow a's own session is on the down uplink: it goes, and flow b's
    // session (same mapping) must not be where the new one lands.
    let out = down.send(&a, LAN_PORT, 1, T0).unwrap();
    assert_eq!(out.meta().uplink, 1);
    let out = down.send(&a, LAN_PORT, 1, T0).unwrap();
    assert_eq!(out.meta().uplink, 1, "stays off the down uplink");
}
