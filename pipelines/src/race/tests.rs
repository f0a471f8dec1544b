use super::*;
use crate::nat::NatConfig;
use crate::packet::buf::HeapBuf;
use crate::packet::buf::PacketBuf;
use crate::packet::burst::Burst;
use crate::packet::drop::DropReason;
use crate::packet::time::Nanos;
use crate::select::policy::RaceMode;
use crate::select::policy::SelectionPolicy;
use crate::select::SelEvent;
use crate::stages::classify::Classify;
use crate::stages::replicate::Replicate;
use crate::stages::translate::Translate;
use crate::testing::*;
use crate::wire::tcp::{TCP_ACK, TCP_RST, TCP_SYN};
use smoltcp::wire::{TcpControl, TcpPacket};
use std::net::IpAddr;
use std::sync::Arc;

const T0: Nanos = Nanos(1_000_000_000);
const SERVER: &str = "203.0.113.5";

/// classify → replicate → translate over the two-uplink test site.
struct Rig {
    classify: Classify,
    replicate: Replicate,
    translate: Translate,
}

impl Rig {
    fn new(policy: SelectionPolicy) -> Rig {
        let topo = site(1);
        let policy = Arc::new(policy);
        Rig {
            classify: Classify::new(topo.clone()),
            replicate: Replicate::with_policy(topo.clone(), policy.clone()),
            translate: Translate::with_policy(topo, 0, NatConfig::default(), policy),
        }
    }

    /// Runs one frame received on `port` through the three stages.
    fn send(&mut self, frame: &[u8], port: u16, now: Nanos) -> Vec<HeapBuf> {
        let mut input: Burst<HeapBuf> = Burst::new();
        input.push(buf(frame, port));
        let mut classified = Burst::new();
        self.classify.process(&mut input, &mut classified);
        let mut out = Vec::new();
        while !classified.is_empty() {
            let mut replicated = Burst::new();
            self.replicate
                .process(now, &mut classified, &mut replicated);
            while !replicated.is_empty() {
                let mut translated = Burst::new();
                self.translate
                    .process(now, &mut replicated, &mut translated);
                out.extend(translated.drain(..));
            }
        }
        out
    }

    fn events(&mut self) -> Vec<SelEvent> {
        self.translate.nat.events.drain(..).collect()
    }
}

fn syn() -> Vec<u8> {
    from_client("10.0.0.2", SERVER, tcp(40000, 443, TcpControl::Syn))
}

fn syn_ack_to(nat: &str, nat_port: u16, ack: u32) -> Vec<u8> {
    let l4 = L4::Tcp {
        src_port: 443,
        dst_port: nat_port,
        control: TcpControl::Syn,
        ack: Some(ack),
        payload: &[],
    };
    let dgram = ip_packet(ip(SERVER), ip(nat), 64, &l4);
    if nat == NAT4 {
        ethernet(WAN_MAC, ISP0_MAC, None, 0x0800, &dgram)
    } else {
        ethernet(WAN_TAGGED_MAC, ISP1_MAC, Some(TAGGED_VLAN), 0x0800, &dgram)
    }
}

fn port_of(nat: &str) -> u16 {
    if nat == NAT4 {
        WAN_PORT
    } else {
        WAN_TAGGED_PORT
    }
}

fn tcp_of(b: &HeapBuf) -> TcpPacket<&[u8]> {
    TcpPacket::new_checked(&b.data()[usize::from(b.meta().l4_offset)..]).unwrap()
}

/// (source address, source port) of each copy sent.
fn sources(out: &[HeapBuf]) -> Vec<(IpAddr, u16)> {
    out.iter()
        .map(|b| {
            let m = b.meta();
            let (src, _) = addrs(b.data(), usize::from(m.l3_offset));
            let (sp, _) = ports(b.data(), usize::from(m.l3_offset), usize::from(m.l4_offset));
            (src, sp)
        })
        .collect()
}

#[test]
fn a_syn_races_over_every_uplink_and_the_first_syn_ack_wins() {
    let mut rig = Rig::new(SelectionPolicy::default());
    let copies = rig.send(&syn(), LAN_PORT, T0);
    assert_eq!(copies.len(), 2, "one copy per uplink with an IPv4 address");
    let src = sources(&copies);
    assert_eq!(src[0].0, ip(NAT4));
    assert_eq!(src[1].0, ip(NAT4_TAGGED));
    assert_eq!(copies[0].meta().out_port, WAN_PORT);
    assert_eq!(copies[1].meta().out_port, WAN_TAGGED_PORT);
    for c in &copies {
        assert_checksums_valid(c.data(), usize::from(c.meta().l3_offset));
        assert!(tcp_of(c).syn() && !tcp_of(c).ack());
    }
    assert_eq!(rig.translate.nat.len(), 2);
    assert_eq!(rig.translate.races_live(), 1);
    assert_eq!(rig.translate.nat.counters.races.get(), 1);

    // The tagged uplink answers first: it wins.
    let t1 = T0.saturating_add(Nanos::from_millis(20));
    let won = rig.send(
        &syn_ack_to(NAT4_TAGGED, src[1].1, 1001),
        port_of(NAT4_TAGGED),
        t1,
    );
    assert_eq!(won.len(), 1);
    assert_eq!(won[0].meta().out_port, LAN_PORT);
    let (_, dst) = addrs(won[0].data(), usize::from(won[0].meta().l3_offset));
    assert_eq!(dst, ip("10.0.0.2"));
    let up = &rig.translate.nat.counters.uplinks;
    assert_eq!((up[1].races_won.get(), up[0].races_lost.get()), (1, 1));
    assert_eq!(
        rig.events(),
        vec![SelEvent::Answer {
            dst: ip(SERVER),
            uplink: 1,
            rtt: Some(Nanos::from_millis(20)),
            raced: true,
            decided: true,
        }]
    );

    // The client's ACK follows the winner.
    let ack = from_client(
        "10.0.0.2",
        SERVER,
        L4::Tcp {
            src_port: 40000,
            dst_port: 443,
            control: TcpControl::None,
            ack: Some(1001),
            payload: &[],
        },
    );
    let out = rig.send(&ack, LAN_PORT, t1);
    assert_eq!(out.len(), 1);
    assert_eq!(sources(&out)[0], src[1]);

    // The loser's late SYN+ACK is answered with an RST to its server,
    // sequence number = the SYN+ACK's acknowledgement.
    let t2 = T0.saturating_add(Nanos::from_millis(50));
    let rst = rig.send(&syn_ack_to(NAT4, src[0].1, 1001), WAN_PORT, t2);
    assert_eq!(rst.len(), 1);
    let r = &rst[0];
    assert_eq!(r.meta().out_port, WAN_PORT);
    assert_eq!(r.meta().next_hop_mac, ISP0_MAC);
    assert_checksums_valid(r.data(), usize::from(r.meta().l3_offset));
    let (s, d) = addrs(r.data(), usize::from(r.meta().l3_offset));
    assert_eq!((s, d), (ip(NAT4), ip(SERVER)));
    let t = tcp_of(r);
    assert!(t.rst() && !t.syn() && !t.ack());
    assert_eq!(t.seq_number().0, 1001);
    assert_eq!((t.src_port(), t.dst_port()), (src[0].1, 443));
    assert_eq!(
        rig.events(),
        vec![SelEvent::Answer {
            dst: ip(SERVER),
            uplink: 0,
            rtt: Some(Nanos::from_millis(50)),
            raced: true,
            decided: false,
        }]
    );
    // Only the winner's session is left, and no race record.
    assert_eq!(rig.translate.nat.len(), 1);
    assert_eq!(rig.translate.races_live(), 0);
}

#[test]
fn a_retransmitted_syn_goes_out_again_on_each_racing_uplink_without_a_second_race() {
    let mut rig = Rig::new(SelectionPolicy::default());
    let first = rig.send(&syn(), LAN_PORT, T0);
    let again = rig.send(&syn(), LAN_PORT, T0.saturating_add(Nanos::from_secs(1)));
    assert_eq!(sources(&first), sources(&again));
    assert_eq!(rig.translate.nat.len(), 2);
    assert_eq!(rig.translate.nat.counters.races.get(), 1);
    // Karn: the answer to a retransmitted SYN gives no RTT sample.
    let src = sources(&first);
    rig.send(
        &syn_ack_to(NAT4, src[0].1, 1001),
        WAN_PORT,
        T0.saturating_add(Nanos::from_secs(2)),
    );
    assert!(matches!(
        rig.events()[..],
        [SelEvent::Answer {
            rtt: None,
            decided: true,
            ..
        }]
    ));
}

#[test]
fn a_loser_that_never_answers_is_freed_after_the_race_timeout_and_reported() {
    let mut rig = Rig::new(SelectionPolicy::default());
    let src = sources(&rig.send(&syn(), LAN_PORT, T0));
    rig.send(&syn_ack_to(NAT4, src[0].1, 1001), WAN_PORT, T0);
    rig.events();
    assert_eq!(rig.translate.nat.len(), 2);
    let timeout = rig.translate.nat.config().race_timeout;
    let later = T0.saturating_add(timeout).saturating_add(Nanos(1));
    for _ in 0..100 {
        rig.translate.sweep(later);
    }
    assert_eq!(rig.translate.nat.len(), 1);
    assert_eq!(rig.translate.races_live(), 0);
    assert_eq!(
        rig.events(),
        vec![SelEvent::Unanswered {
            uplink: 1,
            dst: ip(SERVER)
        }]
    );
    assert_eq!(
        rig.translate.nat.counters.uplinks[1].race_unanswered.get(),
        1
    );
}

/// A frame from the server to `nat`:`nat_port` on that NAT address's
/// uplink carrying `l4`.
fn from_server_to(nat: &str, l4: L4) -> Vec<u8> {
    let dgram = ip_packet(ip(SERVER), ip(nat), 64, &l4);
    if nat == NAT4 {
        ethernet(WAN_MAC, ISP0_MAC, None, 0x0800, &dgram)
    } else {
        ethernet(WAN_TAGGED_MAC, ISP1_MAC, Some(TAGGED_VLAN), 0x0800, &dgram)
    }
}

fn rst_to(nat: &str, nat_port: u16) -> Vec<u8> {
    let l4 = L4::Tcp {
        src_port: 443,
        dst_port: nat_port,
        control: TcpControl::Rst,
        ack: Some(1001),
        payload: &[],
    };
    from_server_to(nat, l4)
}

/// An ICMP host unreachable from a router beyond `nat`'s uplink, quoting
/// the SYN copy that left by `nat`:`nat_port`.
fn unreachable_to(nat: &str, nat_port: u16) -> Vec<u8> {
    let quote = quoted(nat, SERVER, 60, tcp(nat_port, 443, TcpControl::Syn), None);
    let dgram = icmp_error_ip(ip("203.0.113.9"), ip(nat), 3, 1, [0; 4], &quote);
    if nat == NAT4 {
        ethernet(WAN_MAC, ISP0_MAC, None, 0x0800, &dgram)
    } else {
        ethernet(WAN_TAGGED_MAC, ISP1_MAC, Some(TAGGED_VLAN), 0x0800, &dgram)
    }
}

/// Feeds the events the rig's shard emitted to a selection core, and
/// returns whether each uplink is still up.
fn health_after(rig: &mut Rig) -> Vec<bool> {
    use crate::select::{SelectConfig, SelectionCore};
    let mut core = SelectionCore::new(SelectConfig::default(), vec![1, 1]);
    for ev in rig.events() {
        core.on_event(&ev, T0);
    }
    core.uplink_stats().iter().map(|s| s.healthy).collect()
}

/// The fastest uplink's negative answer is held back; the other uplink's
/// SYN+ACK decides the race and is all the client sees.
fn negative_then_syn_ack(mode: RaceMode, negative: fn(&str, u16) -> Vec<u8>) {
    let mut rig = Rig::new(SelectionPolicy {
        mode,
        ..SelectionPolicy::default()
    });
    let src = sources(&rig.send(&syn(), LAN_PORT, T0));
    let t1 = T0.saturating_add(Nanos::from_millis(2));
    assert!(rig.send(&negative(NAT4, src[0].1), WAN_PORT, t1).is_empty());
    let sel = &rig.translate.selection;
    assert_eq!(sel.races_negative_answers.get(), 1);
    assert_eq!(sel.races_all_failed.get(), 0);
    assert_eq!(
        rig.translate.counters.drops(DropReason::RaceNegative),
        1,
        "held back and counted"
    );
    // The race is still open: the other uplink's SYN+ACK wins it.
    let t2 = T0.saturating_add(Nanos::from_millis(30));
    let won = rig.send(
        &syn_ack_to(NAT4_TAGGED, src[1].1, 1001),
        port_of(NAT4_TAGGED),
        t2,
    );
    assert_eq!(won.len(), 1);
    assert_eq!(won[0].meta().out_port, LAN_PORT);
    let t = tcp_of(&won[0]);
    assert!(t.syn() && t.ack() && !t.rst());
    if mode == RaceMode::FirstPayload {
        // The server's first payload, by the same uplink, decides.
        let data = seg(
            SERVER,
            NAT4_TAGGED,
            (443, src[1].1),
            false,
            2,
            Some(1),
            b"hello",
            WAN_TAGGED_PORT,
        );
        let out = rig.send(&data, WAN_TAGGED_PORT, t2);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].meta().out_port, LAN_PORT);
        assert!(!tcp_of(&out[0]).rst());
    }
    let up = &rig.translate.nat.counters.uplinks;
    assert_eq!((up[1].races_won.get(), up[0].races_lost.get()), (1, 1));
    // The failed copy went at once; the winner carries on.
    assert_eq!(rig.translate.nat.len(), 1);
    assert_eq!(rig.translate.races_live(), 0);
    let events = rig.events();
    assert!(events.contains(&SelEvent::Unanswered {
        uplink: 0,
        dst: ip(SERVER)
    }));
    rig.translate.nat.events.extend(events);
    assert_eq!(
        health_after(&mut rig),
        vec![true, true],
        "the rejecting uplink stays up"
    );
}

#[test]
fn an_rst_from_the_fastest_uplink_does_not_decide_the_race() {
    negative_then_syn_ack(RaceMode::SynAck, rst_to);
}

#[test]
fn an_icmp_unreachable_for_one_copy_does_not_reach_the_client() {
    negative_then_syn_ack(RaceMode::SynAck, unreachable_to);
}

#[test]
fn first_payload_races_are_honest_too() {
    negative_then_syn_ack(RaceMode::FirstPayload, rst_to);
    negative_then_syn_ack(RaceMode::FirstPayload, unreachable_to);
}

#[test]
fn when_every_copy_is_rejected_the_client_gets_the_last_rst() {
    for mode in [RaceMode::SynAck, RaceMode::FirstPayload] {
        let mut rig = Rig::new(SelectionPolicy {
            mode,
            ..SelectionPolicy::default()
        });
        let src = sources(&rig.send(&syn(), LAN_PORT, T0));
        assert!(rig.send(&rst_to(NAT4, src[0].1), WAN_PORT, T0).is_empty());
        let out = rig.send(
            &rst_to(NAT4_TAGGED, src[1].1),
            port_of(NAT4_TAGGED),
            T0.saturating_add(Nanos::from_millis(5)),
        );
        assert_eq!(out.len(), 1, "{mode:?}");
        assert_eq!(out[0].meta().out_port, LAN_PORT);
        let (_, dst) = addrs(out[0].data(), usize::from(out[0].meta().l3_offset));
        assert_eq!(dst, ip("10.0.0.2"));
        assert!(tcp_of(&out[0]).rst());
        let sel = &rig.translate.selection;
        assert_eq!(
            (sel.races_negative_answers.get(), sel.races_all_failed.get()),
            (2, 1)
        );
        // The destination refused on every uplink: no uplink is blamed.
        assert!(rig.events().is_empty());
        assert_eq!(rig.translate.nat.len(), 1, "the RST's session, closing");
        assert_eq!(rig.translate.races_live(), 0);
    }
}

#[test]
fn when_every_copy_fails_the_client_gets_the_icmp_error() {
    let mut rig = Rig::new(SelectionPolicy::default());
    let src = sources(&rig.send(&syn(), LAN_PORT, T0));
    assert!(rig
        .send(&unreachable_to(NAT4, src[0].1), WAN_PORT, T0)
        .is_empty());
    let out = rig.send(
        &unreachable_to(NAT4_TAGGED, src[1].1),
        port_of(NAT4_TAGGED),
        T0,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].meta().out_port, LAN_PORT);
    let (_, dst) = addrs(out[0].data(), usize::from(out[0].meta().l3_offset));
    assert_eq!(dst, ip("10.0.0.2"));
    assert_eq!(rig.translate.selection.races_all_failed.get(), 1);
}

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

/// A TCP segment with chosen sequence numbers between `src` and `dst`,
/// framed for the port it arrives on.
#[allow(clippy::too_many_arguments)]
fn seg(
    src: &str,
    dst: &str,
    ports: (u16, u16),
    syn: bool,
    seq: u32,
    ack: Option<u32>,
    payload: &[u8],
    port: u16,
) -> Vec<u8> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpAddress, TcpRepr, TcpSeqNumber};
    let repr = TcpRepr {
        src_port: ports.0,
        dst_port: ports.1,
        control: if syn {
            TcpControl::Syn
        } else {
            TcpControl::None
        },
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 64_000,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    let (s, d) = (ip(src), ip(dst));
    let mut b = vec![0; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut b[..]),
        &IpAddress::from(s),
        &IpAddress::from(d),
        &ChecksumCapabilities::default(),
    );
    let dgram = raw_ip(s, d, 6, 64, &b);
    match port {
        LAN_PORT => ethernet(LAN_MAC, CLIENT_MAC, None, 0x0800, &dgram),
        WAN_PORT => ethernet(WAN_MAC, ISP0_MAC, None, 0x0800, &dgram),
        _ => ethernet(WAN_TAGGED_MAC, ISP1_MAC, Some(TAGGED_VLAN), 0x0800, &dgram),
    }
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
