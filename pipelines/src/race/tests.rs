use super::*;
use crate::nat::NatConfig;
use crate::packet::buf::HeapBuf;
use crate::packet::buf::PacketBuf;
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
use crate::testing::chain::Chain as Rig;

impl Rig {
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

mod policy_and_first_payload;
