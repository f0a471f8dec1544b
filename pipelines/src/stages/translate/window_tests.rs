//! TCP window tracking and flag checks on the wire: classify → replicate →
//! translate over the two-uplink test site (SYNs race by default).

use std::net::IpAddr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber};

use super::*;
use crate::nat::TcpState;
use crate::packet::buf::HeapBuf;
use crate::select::policy::SelectionPolicy;
use crate::testing::*;
use crate::wire::tcp::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN};

const T0: Nanos = Nanos(1_000_000_000);
const CLIENT: &str = "10.0.0.2";
const SERVER: &str = "203.0.113.5";

use crate::testing::chain::Chain as Rig;

/// The rig with SYN races on (`race`) or off.
fn new_rig(race: bool) -> Rig {
    Rig::new(SelectionPolicy {
        race_tcp: race,
        ..SelectionPolicy::default()
    })
}

impl Rig {
    fn drops(&self, r: DropReason) -> u64 {
        self.translate.counters.drops(r)
    }

    /// The session of the connection's outbound 5-tuple.
    fn session(&mut self) -> Option<u32> {
        let k = crate::packet::flow::FlowKey {
            src: ip(CLIENT),
            dst: ip(SERVER),
            src_port: 40000,
            dst_port: 443,
            proto: proto::TCP,
        };
        self.translate.nat.find(&k, false)
    }
}

/// A TCP segment with any flag byte, sequence, ack, window scale option
/// and SACK blocks; `to_nat`: from the server to `NAT4`:`port` on the
/// uplink, otherwise from the client.
#[allow(clippy::too_many_arguments)]
fn seg(
    to_nat: Option<(IpAddr, u16)>,
    flags: u8,
    seq: u32,
    ack: u32,
    wscale: Option<u8>,
    sack: Option<(u32, u32)>,
    payload: &[u8],
) -> Vec<u8> {
    let (src, dst, ports) = match to_nat {
        Some((a, p)) => (ip(SERVER), a, (443, p)),
        None => (ip(CLIENT), ip(SERVER), (40000, 443)),
    };
    let mut sack_ranges = [None; 3];
    sack_ranges[0] = sack;
    let repr = TcpRepr {
        src_port: ports.0,
        dst_port: ports.1,
        control: TcpControl::None,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: Some(TcpSeqNumber(ack as i32)),
        window_len: 500,
        window_scale: wscale,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges,
        timestamp: None,
        payload,
    };
    let mut b = vec![0; repr.buffer_len()];
    let caps = ChecksumCapabilities::default();
    let (s, d) = (IpAddress::from(src), IpAddress::from(dst));
    repr.emit(&mut TcpPacket::new_unchecked(&mut b[..]), &s, &d, &caps);
    let mut p = TcpPacket::new_unchecked(&mut b[..]);
    p.set_syn(flags & TCP_SYN != 0);
    p.set_fin(flags & TCP_FIN != 0);
    p.set_rst(flags & TCP_RST != 0);
    p.set_psh(flags & TCP_PSH != 0);
    p.set_ack(flags & TCP_ACK != 0);
    p.fill_checksum(&s, &d);
    let dgram = raw_ip(src, dst, 6, 64, &b);
    match to_nat {
        Some((a, _)) if a == ip(NAT4) => ethernet(WAN_MAC, ISP0_MAC, None, 0x0800, &dgram),
        Some(_) => ethernet(WAN_TAGGED_MAC, ISP1_MAC, Some(TAGGED_VLAN), 0x0800, &dgram),
        None => ethernet(LAN_MAC, CLIENT_MAC, None, 0x0800, &dgram),
    }
}

/// The port a segment to `nat` comes in on.
fn port_for(nat: (IpAddr, u16)) -> u16 {
    if nat.0 == ip(NAT4) {
        WAN_PORT
    } else {
        WAN_TAGGED_PORT
    }
}

/// The NAT address and port a translated outbound segment left with.
fn source(b: &HeapBuf) -> (IpAddr, u16) {
    let m = b.meta();
    let l3 = usize::from(m.l3_offset);
    let (a, _) = addrs(b.data(), l3);
    let (p, _) = ports(b.data(), l3, usize::from(m.l4_offset));
    (a, p)
}

/// Client ISN and server ISN of [`handshake`].
const C: u32 = 1000;
const S: u32 = 0xffff_f000;

/// SYN (window scale 7), SYN+ACK (scale 7), ACK (window 500 << 7) over
/// uplink 0 without racing; returns the NAT port.
fn handshake(rig: &mut Rig) -> (IpAddr, u16) {
    let out = rig.send(&seg(None, TCP_SYN, C, 0, Some(7), None, b""), LAN_PORT, T0);
    assert_eq!(out.len(), 1);
    let port = source(&out[0]);
    let synack = seg(Some(port), TCP_SYN | TCP_ACK, S, C + 1, Some(7), None, b"");
    assert_eq!(rig.send(&synack, port_for(port), T0).len(), 1);
    let ack = seg(None, TCP_ACK, C + 1, S.wrapping_add(1), None, None, b"");
    assert_eq!(rig.send(&ack, LAN_PORT, T0).len(), 1);
    port
}

#[test]
fn invalid_flag_combinations_are_dropped_both_ways() {
    let mut rig = new_rig(false);
    let port = handshake(&mut rig);
    let bad = [
        0,
        TCP_SYN | TCP_FIN,
        TCP_SYN | TCP_RST,
        TCP_FIN | TCP_RST | TCP_ACK,
        TCP_FIN,
        TCP_PSH,
    ];
    for (i, f) in bad.iter().enumerate() {
        let n = i as u64 + 1;
        let o = seg(None, *f, C + 1, S.wrapping_add(1), None, None, b"x");
        assert!(rig.send(&o, LAN_PORT, T0).is_empty(), "{f:#x} out");
        assert_eq!(rig.drops(DropReason::TcpInvalidFlags), 2 * n - 1);
        let i = seg(Some(port), *f, S.wrapping_add(1), C + 1, None, None, b"x");
        assert!(rig.send(&i, port_for(port), T0).is_empty(), "{f:#x} in");
        assert_eq!(rig.drops(DropReason::TcpInvalidFlags), 2 * n);
    }
    // A SYN+FIN from inside creates no session either.
    let mut fresh = new_rig(false);
    let o = seg(None, TCP_SYN | TCP_FIN, C, 0, None, None, b"");
    assert!(fresh.send(&o, LAN_PORT, T0).is_empty());
    assert_eq!(fresh.translate.nat.len(), 0);
    assert_eq!(fresh.drops(DropReason::TcpInvalidFlags), 1);
}

#[test]
fn blind_rsts_over_the_sequence_space_leave_the_connection_alive() {
    let mut rig = new_rig(false);
    let port = handshake(&mut rig);
    let idx = rig.session().unwrap();
    let seen = rig.translate.nat.session(idx).unwrap().last_seen;
    // 64 RSTs spread over 2^32 (the window is 500 << 7 = 64000 bytes).
    let t1 = T0.saturating_add(Nanos::from_secs(1));
    let mut passed = 0;
    for k in 0..64u32 {
        let r = seg(
            Some(port),
            TCP_RST | TCP_ACK,
            k << 26 | 0x0123_4567,
            C + 1,
            None,
            None,
            b"",
        );
        passed += rig.send(&r, port_for(port), t1).len();
    }
    assert_eq!(passed, 0);
    assert_eq!(rig.drops(DropReason::TcpOutOfWindow), 64);
    let s = rig.translate.nat.session(idx).unwrap();
    assert_eq!(s.tcp_state(), TcpState::Established);
    assert_eq!(s.last_seen, seen, "not refreshed");
    // Data both ways still, with a SACK block on the way in; then an RST
    // in the window goes through and closes.
    let data = seg(
        Some(port),
        TCP_ACK | TCP_PSH,
        S.wrapping_add(1),
        C + 1,
        None,
        None,
        b"hi",
    );
    assert_eq!(rig.send(&data, port_for(port), t1).len(), 1);
    let ack = seg(
        None,
        TCP_ACK,
        C + 1,
        S.wrapping_add(3),
        None,
        Some((S.wrapping_add(9), S.wrapping_add(19))),
        b"",
    );
    assert_eq!(rig.send(&ack, LAN_PORT, t1).len(), 1);
    let sacked = seg(
        Some(port),
        TCP_ACK,
        S.wrapping_add(3),
        C + 1,
        None,
        Some((C, C + 1)),
        b"more",
    );
    assert_eq!(rig.send(&sacked, port_for(port), t1).len(), 1);
    let rst = seg(
        Some(port),
        TCP_RST,
        S.wrapping_add(3 + 30_000),
        0,
        None,
        None,
        b"",
    );
    assert_eq!(rig.send(&rst, port_for(port), t1).len(), 1);
    let s = rig.translate.nat.session(idx).unwrap();
    assert_eq!(s.tcp_state(), TcpState::Rst);
}

/// The client's and the server's FINs, acknowledged.
fn close(rig: &mut Rig, port: (IpAddr, u16)) {
    let fin = seg(
        None,
        TCP_FIN | TCP_ACK,
        C + 1,
        S.wrapping_add(1),
        None,
        None,
        b"",
    );
    assert_eq!(rig.send(&fin, LAN_PORT, T0).len(), 1);
    let fin = seg(
        Some(port),
        TCP_FIN | TCP_ACK,
        S.wrapping_add(1),
        C + 2,
        None,
        None,
        b"",
    );
    assert_eq!(rig.send(&fin, port_for(port), T0).len(), 1);
    let ack = seg(None, TCP_ACK, C + 2, S.wrapping_add(2), None, None, b"");
    assert_eq!(rig.send(&ack, LAN_PORT, T0).len(), 1);
}

#[test]
fn a_syn_after_a_fin_close_opens_a_new_connection() {
    let mut rig = new_rig(false);
    let port = handshake(&mut rig);
    close(&mut rig, port);
    let old = rig.session().unwrap();
    assert_eq!(
        rig.translate.nat.session(old).unwrap().tcp_state(),
        TcpState::Closed
    );
    let created = rig.translate.nat.counters.created.get();
    let t1 = T0.saturating_add(Nanos::from_secs(2));
    let out = rig.send(&seg(None, TCP_SYN, 7_000, 0, None, None, b""), LAN_PORT, t1);
    assert_eq!(out.len(), 1);
    assert_eq!(rig.translate.nat.counters.created.get(), created + 1);
    let new = rig.session().unwrap();
    let s = rig.translate.nat.session(new).unwrap();
    assert_eq!(s.tcp_state(), TcpState::SynSent);
    let c = rig.translate.nat.cold(new).unwrap();
    assert_eq!((s.last_seen, c.packets_in, c.packets_out), (t1, 0, 1));
    assert_eq!(rig.translate.nat.len(), 1);
    // A SYN on a live connection does not (a retransmission, or a
    // simultaneous open): the session stays.
    let again = rig.send(&seg(None, TCP_SYN, 7_000, 0, None, None, b""), LAN_PORT, t1);
    assert_eq!(again.len(), 1);
    assert_eq!(rig.translate.nat.counters.created.get(), created + 1);
}

#[test]
fn a_syn_after_an_rst_races_again() {
    let mut rig = new_rig(true);
    let out = rig.send(&seg(None, TCP_SYN, C, 0, Some(7), None, b""), LAN_PORT, T0);
    assert_eq!(out.len(), 2, "a race over both uplinks");
    assert_eq!(rig.translate.nat.counters.races.get(), 1);
    // Uplink 0 (NAT4) answers and wins.
    let port = source(&out[0]);
    let synack = seg(Some(port), TCP_SYN | TCP_ACK, S, C + 1, Some(7), None, b"");
    assert_eq!(rig.send(&synack, port_for(port), T0).len(), 1);
    let ack = seg(None, TCP_ACK, C + 1, S.wrapping_add(1), None, None, b"");
    assert_eq!(rig.send(&ack, LAN_PORT, T0).len(), 1);
    // The server resets the connection (in its window).
    let rst = seg(
        Some(port),
        TCP_RST | TCP_ACK,
        S.wrapping_add(1),
        C + 1,
        None,
        None,
        b"",
    );
    assert_eq!(rig.send(&rst, port_for(port), T0).len(), 1);
    // The client opens the same 5-tuple again within the RST timeout: a
    // new connection, which races again.
    let t1 = T0.saturating_add(Nanos::from_secs(1));
    let out = rig.send(
        &seg(None, TCP_SYN, 9_000, 0, Some(7), None, b""),
        LAN_PORT,
        t1,
    );
    assert_eq!(out.len(), 2, "a second race");
    assert_eq!(rig.translate.nat.counters.races.get(), 2);
    let idx = rig.session().unwrap();
    let s = rig.translate.nat.session(idx).unwrap();
    assert_eq!(s.tcp_state(), TcpState::SynSent);
    assert!(s.in_race());
    // The old race's silent copy on the other uplink went with the old
    // connection: that uplink's answer now reaches the new race and wins.
    assert_eq!(rig.translate.nat.len(), 2);
    let other = source(&out[1]);
    assert_ne!(other.0, ip(NAT4));
    let synack = seg(
        Some(other),
        TCP_SYN | TCP_ACK,
        77,
        9_001,
        Some(7),
        None,
        b"",
    );
    let won = rig.send(&synack, port_for(other), t1);
    assert_eq!(won.len(), 1);
    assert_eq!(won[0].meta().out_port, LAN_PORT);
    assert_eq!(rig.translate.nat.counters.uplinks[1].races_won.get(), 1);
}
