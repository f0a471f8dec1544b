use super::*;

#[test]
fn a_silent_copy_past_the_race_timeout_lets_the_negative_answer_through() {
    let mut rig = Rig::new(SelectionPolicy::default());
    let src = sources(&rig.send(&syn(), LAN_PORT, T0));
    assert!(rig.send(&rst_to(NAT4, src[0].1), WAN_PORT, T0).is_empty());
    // Uplink 1 stays silent. The client retransmits its SYN after the
    // race timeout: it goes out on both uplinks again, and the rejecting
    // one's RST now reaches the client.
    let timeout = rig.translate.nat.config().race_timeout;
    let later = T0.saturating_add(timeout).saturating_add(Nanos(1));
    let again = rig.send(&syn(), LAN_PORT, later);
    assert_eq!(sources(&again), src);
    let out = rig.send(&rst_to(NAT4, src[0].1), WAN_PORT, later);
    assert_eq!(out.len(), 1);
    assert!(tcp_of(&out[0]).rst());
    assert_eq!(out[0].meta().out_port, LAN_PORT);
    assert_eq!(rig.translate.selection.races_all_failed.get(), 1);
}

#[test]
fn without_racing_a_syn_leaves_by_one_uplink_and_still_measures_it() {
    let mut rig = Rig::new(SelectionPolicy {
        race_tcp: false,
        ..SelectionPolicy::default()
    });
    let out = rig.send(&syn(), LAN_PORT, T0);
    assert_eq!(out.len(), 1);
    let (nat, port) = sources(&out)[0];
    let nat = nat.to_string();
    let t1 = T0.saturating_add(Nanos::from_millis(7));
    let back = rig.send(&syn_ack_to(&nat, port, 1001), port_of(&nat), t1);
    assert_eq!(back.len(), 1);
    assert!(matches!(
        rig.events()[..],
        [SelEvent::Answer { rtt: Some(r), raced: false, decided: false, .. }] if r == Nanos::from_millis(7)
    ));
}

#[test]
fn a_policy_keeps_matching_connections_out_of_races() {
    use crate::select::policy::Policy;
    use crate::select::Algorithm;
    let mut rig = Rig::new(SelectionPolicy {
        policies: vec![Policy {
            protocol: Some(crate::packet::flow::proto::TCP),
            ports: (25, 25),
            race: false,
            algorithm: Algorithm::RoundRobin,
        }],
        ..SelectionPolicy::default()
    });
    let smtp = from_client("10.0.0.2", SERVER, tcp(40001, 25, TcpControl::Syn));
    assert_eq!(rig.send(&smtp, LAN_PORT, T0).len(), 1);
    assert_eq!(
        rig.replicate.selection.by_algorithm[Algorithm::RoundRobin.index()].get(),
        1
    );
    assert_eq!(rig.send(&syn(), LAN_PORT, T0).len(), 2, "other ports race");
    assert_eq!(rig.translate.nat.counters.races.get(), 1);
}

#[test]
fn ipv6_connections_race_too() {
    use crate::topology::{IpPrefix, NatPortRange, PortInfo, PortRole, Topology};
    let base = site(1);
    let mut uplinks = base.uplinks.clone();
    uplinks[1].nat_addrs.push(ip("2001:db8:1::1"));
    let ports: Vec<PortInfo> = base
        .ports
        .iter()
        .map(|p| PortInfo {
            role: PortRole::Unused,
            ..p.clone()
        })
        .collect();
    let topo = Arc::new(Topology::new(
        ports,
        LAN_PORT,
        vec![
            "10.0.0.0/16".parse::<IpPrefix>().unwrap(),
            "fd00::/64".parse().unwrap(),
        ],
        vec![ip("10.0.0.1"), ip("fd00::1")],
        uplinks,
        NatPortRange {
            first: 1024,
            last: 65535,
        },
        1,
    ));
    let policy = Arc::new(SelectionPolicy::default());
    let mut rig = Rig {
        classify: Classify::new(topo.clone()),
        replicate: Replicate::with_policy(topo.clone(), policy.clone()),
        translate: Translate::with_policy(topo, 0, NatConfig::default(), policy),
    };
    let server = "2001:db8:ffff::5";
    let copies = rig.send(
        &from_client("fd00::2", server, tcp(40000, 443, TcpControl::Syn)),
        LAN_PORT,
        T0,
    );
    let src = sources(&copies);
    assert_eq!(
        src.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![ip(NAT6), ip("2001:db8:1::1")]
    );
    for c in &copies {
        assert_checksums_valid(c.data(), usize::from(c.meta().l3_offset));
    }
    let answer = |nat: &str, port: u16| {
        let l4 = L4::Tcp {
            src_port: 443,
            dst_port: port,
            control: TcpControl::Syn,
            ack: Some(1001),
            payload: &[],
        };
        let dgram = ip_packet(ip(server), ip(nat), 64, &l4);
        if nat == NAT6 {
            ethernet(WAN_MAC, ISP0_MAC, None, 0x86DD, &dgram)
        } else {
            ethernet(WAN_TAGGED_MAC, ISP1_MAC, Some(TAGGED_VLAN), 0x86DD, &dgram)
        }
    };
    let won = rig.send(&answer("2001:db8:1::1", src[1].1), WAN_TAGGED_PORT, T0);
    assert_eq!(won[0].meta().out_port, LAN_PORT);
    let rst = rig.send(&answer(NAT6, src[0].1), WAN_PORT, T0);
    assert_eq!(rst.len(), 1);
    assert!(tcp_of(&rst[0]).rst());
    assert_eq!(tcp_of(&rst[0]).seq_number().0, 1001);
    assert_checksums_valid(rst[0].data(), usize::from(rst[0].meta().l3_offset));
    assert_eq!(rig.translate.nat.len(), 1);
}

#[test]
fn a_fast_open_syn_does_not_race() {
    let mut rig = Rig::new(SelectionPolicy::default());
    let tfo = from_client(
        "10.0.0.2",
        SERVER,
        L4::Tcp {
            src_port: 40000,
            dst_port: 443,
            control: TcpControl::Syn,
            ack: None,
            payload: b"GET / HTTP/1.1\r\n\r\n",
        },
    );
    assert_eq!(rig.send(&tfo, LAN_PORT, T0).len(), 1);
    assert_eq!(rig.translate.nat.counters.races.get(), 0);
}

fn summary(b: &HeapBuf) -> (u16, bool, bool, bool, u32, u32, usize) {
    let t = tcp_of(b);
    (
        b.meta().out_port,
        t.syn(),
        t.ack(),
        t.rst(),
        t.seq_number().0 as u32,
        t.ack_number().0 as u32,
        t.payload().len(),
    )
}

/// Uplink 0 has a transparent proxy: its SYN+ACK comes first, its data
/// late. First-payload mode completes uplink 1's handshake itself,
/// replays the client's request there, and picks uplink 1 when its data
/// comes first, translating sequence numbers for the rest of the
/// connection.
#[test]
fn first_payload_mode_picks_the_uplink_whose_data_comes_first() {
    let mut rig = Rig::new(SelectionPolicy {
        mode: RaceMode::FirstPayload,
        ..SelectionPolicy::default()
    });
    let client = "10.0.0.2";
    let t = |ms| T0.saturating_add(Nanos::from_millis(ms));
    let copies = rig.send(
        &seg(client, SERVER, (40000, 80), true, 5000, None, b"", LAN_PORT),
        LAN_PORT,
        t(0),
    );
    let src = sources(&copies);
    assert_eq!(copies.len(), 2);
    let (n0, n1) = (src[0].1, src[1].1);

    // The proxy's SYN+ACK (ISN 7000) reaches the client.
    let out = rig.send(
        &seg(
            SERVER,
            NAT4,
            (80, n0),
            true,
            7000,
            Some(5001),
            b"",
            WAN_PORT,
        ),
        WAN_PORT,
        t(1),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(
        summary(&out[0]),
        (LAN_PORT, true, true, false, 7000, 5001, 0)
    );
    // The client's ACK and request go out by the proxy's uplink only
    // (uplink 1 has not answered yet).
    let out = rig.send(
        &seg(
            client,
            SERVER,
            (40000, 80),
            false,
            5001,
            Some(7001),
            b"",
            LAN_PORT,
        ),
        LAN_PORT,
        t(2),
    );
    assert_eq!(out.len(), 1);
    let out = rig.send(
        &seg(
            client,
            SERVER,
            (40000, 80),
            false,
            5001,
            Some(7001),
            b"GET",
            LAN_PORT,
        ),
        LAN_PORT,
        t(2),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(summary(&out[0]).0, WAN_PORT);

    // Uplink 1's server answers (ISN 9000): the appliance ACKs it and
    // replays the request, its ACK number in that server's space.
    let out = rig.send(
        &seg(
            SERVER,
            NAT4_TAGGED,
            (80, n1),
            true,
            9000,
            Some(5001),
            b"",
            WAN_TAGGED_PORT,
        ),
        WAN_TAGGED_PORT,
        t(40),
    );
    let got: Vec<_> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![
            (WAN_TAGGED_PORT, false, true, false, 5001, 9001, 0),
            (WAN_TAGGED_PORT, false, true, false, 5001, 9001, 3),
        ]
    );
    for b in &out {
        assert_checksums_valid(b.data(), usize::from(b.meta().l3_offset));
        assert_eq!(sources(std::slice::from_ref(b))[0], src[1]);
    }

    // Its response is the first payload: uplink 1 wins. The data reaches
    // the client in the proxy's sequence space, and the proxy's uplink
    // gets an RST at the client's next sequence number.
    let out = rig.send(
        &seg(
            SERVER,
            NAT4_TAGGED,
            (80, n1),
            false,
            9001,
            Some(5004),
            b"HTTP",
            WAN_TAGGED_PORT,
        ),
        WAN_TAGGED_PORT,
        t(80),
    );
    let got: Vec<_> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![
            (LAN_PORT, false, true, false, 7001, 5004, 4),
            (WAN_PORT, false, false, true, 5004, 0, 0),
        ]
    );
    for b in &out {
        assert_checksums_valid(b.data(), usize::from(b.meta().l3_offset));
    }
    let up = &rig.translate.nat.counters.uplinks;
    assert_eq!((up[1].races_won.get(), up[0].races_lost.get()), (1, 1));

    // From now on the client's ACKs are moved into uplink 1's space.
    let out = rig.send(
        &seg(
            client,
            SERVER,
            (40000, 80),
            false,
            5004,
            Some(7005),
            b"",
            LAN_PORT,
        ),
        LAN_PORT,
        t(81),
    );
    assert_eq!(
        summary(&out[0]),
        (WAN_TAGGED_PORT, false, true, false, 5004, 9005, 0)
    );
    assert_checksums_valid(out[0].data(), usize::from(out[0].meta().l3_offset));
    // The proxy's late data finds no session.
    let out = rig.send(
        &seg(
            SERVER,
            NAT4,
            (80, n0),
            false,
            7001,
            Some(5004),
            b"late",
            WAN_PORT,
        ),
        WAN_PORT,
        t(200),
    );
    assert!(out.is_empty());
    assert_eq!(rig.translate.nat.len(), 1);
}

#[test]
fn reflected_segments_are_valid_for_ipv6_too() {
    let mut b = buf(
        &from_isp(
            "2001:db8:ffff::5",
            NAT6,
            L4::Tcp {
                src_port: 443,
                dst_port: 5555,
                control: TcpControl::Syn,
                ack: Some(77),
                payload: b"xyz",
            },
        ),
        WAN_PORT,
    );
    Classify::new(site(1)).classify(&mut b).unwrap();
    reflect_tcp(&mut b, TCP_RST | TCP_ACK, 77, 9, 0, ISP0_MAC).unwrap();
    assert_checksums_valid(b.data(), usize::from(b.meta().l3_offset));
    let t = tcp_of(&b);
    assert!(t.rst() && t.ack() && !t.syn());
    assert_eq!((t.seq_number().0, t.ack_number().0), (77, 9));
    assert_eq!((t.src_port(), t.dst_port()), (5555, 443));
    assert_eq!(t.payload().len(), 0);
    let _ = TCP_SYN;
}
