use super::super::{NatConfig, NatShard, TcpState};
use crate::packet::drop::DropReason;
use crate::packet::flow::{proto, FlowKey};
use crate::packet::time::Nanos;
use crate::testing::{ip, site};
use crate::wire::tcp::{Segment, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use proptest::prelude::*;

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

fn key() -> FlowKey {
    FlowKey {
        src: ip("10.0.0.2"),
        dst: ip("203.0.113.5"),
        src_port: 40000,
        dst_port: 443,
        proto: proto::TCP,
    }
}

fn seg(seq: u32, ack: u32, flags: u8, window: u16, len: u32) -> Segment {
    Segment {
        seq,
        ack,
        flags,
        window,
        len,
        wscale: None,
    }
}

fn out(nat: &mut NatShard, idx: u32, s: Segment, now: Nanos) {
    nat.touch(idx, now, 60, s.flags, false);
    nat.tcp_learn_out(idx, &s);
}

/// What translate does with an inbound segment: check, refresh, learn.
fn inb(nat: &mut NatShard, idx: u32, s: Segment, now: Nanos) -> Result<(), DropReason> {
    nat.tcp_check_in(idx, &s)?;
    nat.touch(idx, now, 60, s.flags, true);
    nat.tcp_learn_in(idx, &s);
    Ok(())
}

/// A shard with one connection through its handshake: the client's ISN
/// `c`, the server's `s`, window scale options as given, and the client's
/// third segment advertising `win`. Returns the shard and the session.
fn connected(c: u32, s: u32, ws: (Option<u8>, Option<u8>), win: u16) -> (NatShard, u32) {
    let mut nat = NatShard::new(NatConfig::default(), &site(1), 0);
    let t0 = Nanos::from_secs(1);
    let idx = nat.create_out(&key(), 0, MAC, t0).unwrap().0;
    let mut syn = seg(c, 0, TCP_SYN, 64240, 0);
    syn.wscale = ws.0;
    out(&mut nat, idx, syn, t0);
    let mut synack = seg(s, c.wrapping_add(1), TCP_SYN | TCP_ACK, 65160, 0);
    synack.wscale = ws.1;
    inb(&mut nat, idx, synack, t0).unwrap();
    let ack = seg(c.wrapping_add(1), s.wrapping_add(1), TCP_ACK, win, 0);
    out(&mut nat, idx, ack, t0);
    assert_eq!(nat.session(idx).unwrap().tcp_state(), TcpState::Established);
    (nat, idx)
}

fn last_seen(nat: &NatShard, idx: u32) -> Nanos {
    nat.session(idx).unwrap().last_seen
}

#[test]
fn window_scale_applies_only_when_both_syns_carry_it() {
    let (c, s) = (1000, 5000);
    // Both sent it: 502 << 7 = 64256 bytes.
    let (nat, idx) = connected(c, s, (Some(7), Some(8)), 502);
    assert_eq!(nat.rcv_window(idx), 64256);
    // Only one side: no scaling (RFC 7323 2.2).
    let (nat, idx) = connected(c, s, (Some(7), None), 502);
    assert_eq!(nat.rcv_window(idx), 502);
    let (nat, idx) = connected(c, s, (None, Some(7)), 502);
    assert_eq!(nat.rcv_window(idx), 502);
    // A shift above 14 is read as 14 (RFC 7323 2.3).
    let (nat, idx) = connected(c, s, (Some(200), Some(1)), 1);
    assert_eq!(nat.rcv_window(idx), 1 << 14);
}

#[test]
fn data_is_accepted_inside_the_scaled_window_only() {
    let (c, s) = (1000, 5000);
    let (mut nat, idx) = connected(c, s, (Some(7), Some(7)), 502);
    let t1 = Nanos::from_secs(2);
    let next = s + 1;
    // The last byte the window allows, and one past it.
    assert!(inb(
        &mut nat,
        idx,
        seg(next + 64256 - 100, c + 1, TCP_ACK, 500, 100),
        t1
    )
    .is_ok());
    let t2 = Nanos::from_secs(3);
    let past = seg(next + 64257, c + 1, TCP_ACK, 500, 100);
    assert_eq!(
        inb(&mut nat, idx, past, t2),
        Err(DropReason::TcpOutOfWindow)
    );
    assert_eq!(
        last_seen(&nat, idx),
        t1,
        "an out-of-window segment refreshes nothing"
    );
    // A retransmission of acknowledged data within a window back: fine.
    out(
        &mut nat,
        idx,
        seg(c + 1, next + 10_000, TCP_ACK, 502, 0),
        t2,
    );
    assert!(inb(&mut nat, idx, seg(next, c + 1, TCP_ACK, 500, 1000), t2).is_ok());
    // Far behind: dropped.
    let old = seg(next.wrapping_sub(200_000), c + 1, TCP_ACK, 500, 1000);
    assert_eq!(inb(&mut nat, idx, old, t2), Err(DropReason::TcpOutOfWindow));
    // The same with the scale unknown to one side: 502 bytes.
    let (mut nat, idx) = connected(c, s, (Some(7), None), 502);
    assert!(inb(&mut nat, idx, seg(next + 400, c + 1, TCP_ACK, 500, 100), t1).is_ok());
    let past = seg(next + 600, c + 1, TCP_ACK, 500, 100);
    assert_eq!(
        inb(&mut nat, idx, past, t1),
        Err(DropReason::TcpOutOfWindow)
    );
}

#[test]
fn acks_of_data_never_sent_are_dropped() {
    let (c, s) = (1000, 5000);
    let (mut nat, idx) = connected(c, s, (None, None), 65535);
    let t = Nanos::from_secs(2);
    out(&mut nat, idx, seg(c + 1, s + 1, TCP_ACK, 65535, 300), t);
    assert!(inb(&mut nat, idx, seg(s + 1, c + 301, TCP_ACK, 500, 0), t).is_ok());
    let ahead = seg(s + 1, c + 302, TCP_ACK, 500, 0);
    assert_eq!(
        inb(&mut nat, idx, ahead, t),
        Err(DropReason::TcpOutOfWindow)
    );
    let random = seg(s + 1, c.wrapping_add(0x9000_0000), TCP_ACK, 500, 0);
    assert_eq!(
        inb(&mut nat, idx, random, t),
        Err(DropReason::TcpOutOfWindow)
    );
}

#[test]
fn sequence_numbers_wrap_around_2_pow_32() {
    let c = u32::MAX - 10;
    let s = u32::MAX - 1_000;
    let (mut nat, idx) = connected(c, s, (Some(7), Some(7)), 502);
    let mut t = Nanos::from_secs(2);
    let mut next = s.wrapping_add(1);
    // The server sends 10 segments of 1400 bytes across 2^32, the client
    // acknowledges each one.
    for _ in 0..10 {
        t = t.saturating_add(Nanos::from_millis(10));
        let d = seg(next, c.wrapping_add(1), TCP_ACK, 500, 1400);
        assert!(inb(&mut nat, idx, d, t).is_ok(), "{next}");
        next = next.wrapping_add(1400);
        out(
            &mut nat,
            idx,
            seg(c.wrapping_add(1), next, TCP_ACK, 502, 0),
            t,
        );
    }
    assert!(next < 20_000, "wrapped: {next}");
    assert_eq!(nat.cold(idx).unwrap().older, next);
    // Out of window on the far side of the wrap: dropped.
    let far = seg(
        next.wrapping_add(1 << 20),
        c.wrapping_add(1),
        TCP_ACK,
        500,
        10,
    );
    assert_eq!(inb(&mut nat, idx, far, t), Err(DropReason::TcpOutOfWindow));
    // An RST at the wrapped edge is in the window and closes.
    let rst = seg(next, 0, TCP_RST, 0, 0);
    assert!(inb(&mut nat, idx, rst, t).is_ok());
    assert_eq!(nat.session(idx).unwrap().tcp_state(), TcpState::Rst);
}

#[test]
fn rst_in_window_closes_rst_out_of_window_changes_nothing() {
    let (c, s) = (77, 0x8000_0000);
    let (mut nat, idx) = connected(c, s, (Some(7), Some(7)), 502);
    let t1 = Nanos::from_secs(5);
    let before = nat.session(idx).unwrap().clone();
    let before_in = nat.cold(idx).unwrap().packets_in;
    for bad in [s, s + 1 + 64256, s.wrapping_sub(1_000_000), s + 0x4000_0000] {
        let rst = seg(bad, 0, TCP_RST | TCP_ACK, 0, 0);
        assert_eq!(inb(&mut nat, idx, rst, t1), Err(DropReason::TcpOutOfWindow));
    }
    let after = nat.session(idx).unwrap();
    assert_eq!(after.tcp_state(), TcpState::Established);
    assert_eq!(after.last_seen, before.last_seen);
    assert_eq!(nat.cold(idx).unwrap().packets_in, before_in);
    // RFC 5961 3.2: anywhere in [RCV.NXT, RCV.NXT + RCV.WND).
    let rst = seg(s + 1 + 64255, 0, TCP_RST, 0, 0);
    assert!(inb(&mut nat, idx, rst, t1).is_ok());
    assert_eq!(nat.session(idx).unwrap().tcp_state(), TcpState::Rst);
    assert_eq!(last_seen(&nat, idx), t1);
}

#[test]
fn blind_rsts_over_the_sequence_space_hit_only_in_window() {
    let (c, s) = (5, 0x1234_5678);
    let (mut nat, idx) = connected(c, s, (Some(7), Some(7)), 502);
    let w = u64::from(nat.rcv_window(idx));
    // 65,536 RSTs 2^16 apart cover the whole space: with a 64 KiB window
    // at most one of them may act; count the ones the check lets through
    // without letting them close the session.
    let mut accepted = 0u64;
    for k in 0..65_536u32 {
        let rst = seg(k << 16 | 0x1f3, 0, TCP_RST, 0, 0);
        if nat.in_window(idx, &rst) {
            accepted += 1;
        }
    }
    assert!(accepted <= w.div_ceil(1 << 16), "{accepted}");
    // 64 RSTs spread over the space at the live session: all dropped but
    // the in-window ones; the session survives them.
    let t = Nanos::from_secs(9);
    let mut dropped = 0;
    for k in 0..64u32 {
        let rst = seg(k << 26 | 0x00ab_cdef, 0, TCP_RST, 0, 0);
        if inb(&mut nat, idx, rst, t).is_err() {
            dropped += 1;
        }
    }
    let inside = (0..64u32)
        .filter(|k| u64::from((k << 26 | 0x00ab_cdef).wrapping_sub(s + 1)) < w)
        .count();
    assert_eq!(dropped, 64 - inside);
    assert_eq!(inside, 0, "this seed's RSTs all miss the window");
    assert_eq!(nat.session(idx).unwrap().tcp_state(), TcpState::Established);
}

#[test]
fn nothing_is_checked_before_an_answer_or_on_a_mid_stream_pickup() {
    let mut nat = NatShard::new(NatConfig::default(), &site(1), 0);
    let t = Nanos::from_secs(1);
    let idx = nat.create_out(&key(), 0, MAC, t).unwrap().0;
    // An ACK from inside opens the session mid-stream: unanswered, the
    // first segment from outside is taken whatever its numbers.
    out(&mut nat, idx, seg(10, 20, TCP_ACK, 1000, 100), t);
    assert!(nat.session(idx).unwrap().unanswered());
    assert!(inb(&mut nat, idx, seg(0xdead_beef, 110, TCP_ACK, 1000, 50), t).is_ok());
    assert!(!nat.session(idx).unwrap().unanswered());
    // Learnt from it: the window is read with the largest shift.
    assert_eq!(nat.rcv_window(idx), 1000 << 14);
    let next = seg(0xdead_beef + 50, 110, TCP_ACK, 1000, 50);
    assert!(inb(&mut nat, idx, next, t).is_ok());
    let far = seg(0x5ead_beef, 110, TCP_ACK, 1000, 50);
    assert_eq!(inb(&mut nat, idx, far, t), Err(DropReason::TcpOutOfWindow));
}

#[test]
fn a_fin_out_of_window_is_dropped_in_window_it_counts() {
    let (c, s) = (1, 2);
    let (mut nat, idx) = connected(c, s, (None, None), 8000);
    let t = Nanos::from_secs(3);
    let fin = seg(s + 100_000, c + 1, TCP_FIN | TCP_ACK, 500, 0);
    assert_eq!(inb(&mut nat, idx, fin, t), Err(DropReason::TcpOutOfWindow));
    assert_eq!(nat.session(idx).unwrap().tcp_state(), TcpState::Established);
    let fin = seg(s + 1, c + 1, TCP_FIN | TCP_ACK, 500, 0);
    assert!(inb(&mut nat, idx, fin, t).is_ok());
    assert_eq!(nat.session(idx).unwrap().tcp_state(), TcpState::FinSeen);
    out(
        &mut nat,
        idx,
        seg(c + 1, s + 2, TCP_FIN | TCP_ACK, 8000, 0),
        t,
    );
    assert!(nat.tcp_reusable(idx));
}

#[test]
fn byte_counters_keep_48_bits_and_saturate() {
    let mut nat = NatShard::new(NatConfig::default(), &site(1), 0);
    let t = Nanos::from_secs(1);
    let idx = nat.create_out(&key(), 0, MAC, t).unwrap().0;
    nat.touch(idx, t, 1500, TCP_SYN, false);
    nat.touch(idx, t, 70_000, TCP_SYN | TCP_ACK, true);
    let s = nat.cold(idx).unwrap();
    assert_eq!((s.bytes_out(), s.bytes_in()), (1500, 70_000));
    let mut s = s.clone();
    for _ in 0..4 {
        s.add_bytes(false, 3_000_000_000);
    }
    assert_eq!(s.bytes_out(), 12_000_001_500);
    assert_eq!(s.bytes_in(), 70_000);
    // The top of 48 bits: it stays there.
    s.bytes_hi[1] = u16::MAX;
    s.bytes_lo[1] = u32::MAX - 10;
    s.add_bytes(true, 100);
    assert_eq!(s.bytes_in(), (1 << 48) - 1);
    s.add_bytes(true, 100);
    assert_eq!(s.bytes_in(), (1 << 48) - 1);
    assert_eq!(s.bytes_out(), 12_000_001_500);
}

proptest! {
    /// An RST acts iff SEG.SEQ - RCV.NXT < RCV.WND (mod 2^32); other
    /// segments fit [RCV.NXT - W, RCV.NXT + W]; whatever the numbers.
    #[test]
    fn acceptance_is_the_window_rule(
        c in any::<u32>(), s in any::<u32>(), win in 1u16.., shift in 0u8..15,
        seq in any::<u32>(), len in 0u32..70_000,
    ) {
        let (nat, idx) = connected(c, s, (Some(shift), Some(0)), win);
        let w = u32::from(win) << shift.min(14);
        prop_assert_eq!(nat.rcv_window(idx), w);
        let nxt = s.wrapping_add(1);
        let rst = seg(seq, 0, TCP_RST, 0, 0);
        prop_assert_eq!(nat.in_window(idx, &rst), seq.wrapping_sub(nxt) < w);
        let data = seg(seq, c.wrapping_add(1), TCP_ACK, 1, len);
        let start = seq.wrapping_sub(nxt) as i32;
        let end = seq.wrapping_add(len).wrapping_sub(nxt) as i32;
        prop_assert_eq!(nat.in_window(idx, &data), start <= w as i32 && end >= -(w as i32));
    }
}
