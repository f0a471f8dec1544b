use super::mask::{bit, first_n};
use super::*;
use crate::packet::flow::proto;
use crate::packet::time::Nanos;
use crate::topology::{UplinkId, MAX_UPLINKS};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

const TCP: u8 = proto::TCP;
const UDP: u8 = proto::UDP;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn ms(x: u64) -> Nanos {
    Nanos::from_millis(x)
}

fn view(weight: u32, tcp: u64, udp: u64, bps: u64, srtt: Option<Nanos>) -> UplinkView {
    UplinkView {
        drained: false,
        healthy: true,
        link_up: true,
        weight,
        tcp_sessions: tcp,
        udp_sessions: udp,
        traffic_bps: bps,
        srtt,
    }
}

fn snap_of(uplinks: Vec<UplinkView>) -> Snapshot {
    let mut s = Snapshot::initial(&SelectConfig::default(), &[]);
    s.uplinks = uplinks;
    s
}

fn equal(n: usize) -> Snapshot {
    snap_of((0..n).map(|_| view(1, 0, 0, 0, None)).collect())
}

fn entry(raced_at: Nanos, rtts: &[(UplinkId, Nanos)]) -> CacheEntry {
    let mut e = CacheEntry {
        raced_at,
        n: 0,
        uplinks: [0; RACE_MAX],
        srtt: [Nanos::ZERO; RACE_MAX],
    };
    for (i, &(u, s)) in rtts.iter().enumerate() {
        e.uplinks[i] = u;
        e.srtt[i] = s;
    }
    e.n = rtts.len() as u8;
    e
}

fn with_entry(mut s: Snapshot, dst: IpAddr, e: CacheEntry) -> Snapshot {
    s.rtt.insert(s.key(dst), e);
    s
}

/// How many of `n` picks went to each uplink, and the sequence.
fn run(
    sel: &mut Selector,
    alg: Algorithm,
    cand: u64,
    n: usize,
    proto: u8,
) -> (Vec<usize>, Vec<UplinkId>) {
    let mut counts = vec![0; MAX_UPLINKS];
    let mut seq = Vec::new();
    for _ in 0..n {
        let u = sel.pick(alg, v4(198, 51, 100, 1), proto, cand).unwrap();
        counts[usize::from(u)] += 1;
        seq.push(u);
    }
    (counts, seq)
}

// ---- Algorithm ----

#[test]
fn algorithm_names_round_trip() {
    for (i, a) in Algorithm::ALL.iter().enumerate() {
        assert_eq!(a.index(), i);
        assert_eq!(a.as_str(), Algorithm::NAMES[i]);
        assert_eq!(a.as_str().parse::<Algorithm>(), Ok(*a));
        assert_eq!(a.to_string(), Algorithm::NAMES[i]);
    }
    assert_eq!(
        "weighted-least-load".parse::<Algorithm>(),
        Ok(Algorithm::WeightedLeastLoad)
    );
    let err = "fastest".parse::<Algorithm>().unwrap_err();
    assert!(err.contains("fastest"), "{err}");
    for name in Algorithm::NAMES {
        assert!(err.contains(name), "{err}");
    }
}

// ---- RttEstimator ----

#[test]
fn estimator_matches_hand_computed_rfc6298() {
    let mut e = RttEstimator::default();
    assert_eq!(e.smoothed(), None);
    assert_eq!(e.min(), None);
    assert_eq!(e.samples(), 0);
    // (2.2): SRTT = R = 100 ms, RTTVAR = R/2 = 50 ms.
    e.sample(ms(100));
    assert_eq!(e.smoothed(), Some(ms(100)));
    assert_eq!(e.var(), ms(50));
    // (2.3) with R = 200 ms: RTTVAR = 3/4*50 + 1/4*|100-200| = 62.5 ms,
    // SRTT = 7/8*100 + 1/8*200 = 112.5 ms.
    e.sample(ms(200));
    assert_eq!(e.var(), Nanos(62_500_000));
    assert_eq!(e.smoothed(), Some(Nanos(112_500_000)));
    // R = 50 ms: RTTVAR = 3/4*62.5 + 1/4*|112.5-50| = 62.5 ms,
    // SRTT = 7/8*112.5 + 1/8*50 = 104.6875 ms.
    e.sample(ms(50));
    assert_eq!(e.var(), Nanos(62_500_000));
    assert_eq!(e.smoothed(), Some(Nanos(104_687_500)));
    assert_eq!(e.min(), Some(ms(50)));
    assert_eq!(e.samples(), 3);
    // RTO = SRTT + max(G, 4*RTTVAR) = 104.6875 + 250 ms.
    assert_eq!(e.rto(ms(1)), Some(Nanos(354_687_500)));
    assert_eq!(e.rto(Nanos::from_secs(1)), Some(Nanos(1_104_687_500)));
    assert_eq!(RttEstimator::default().rto(ms(1)), None);
}

#[test]
fn estimator_truncates_and_survives_extremes() {
    let mut e = RttEstimator::default();
    e.sample(Nanos(1));
    assert_eq!(e.var(), Nanos(0)); // 1/2 truncates
    e.sample(Nanos(2));
    // RTTVAR = (3*0 + 1)/4 = 0, SRTT = (7*1 + 2)/8 = 1.
    assert_eq!((e.smoothed(), e.var()), (Some(Nanos(1)), Nanos(0)));

    let mut e = RttEstimator::default();
    e.sample(Nanos(u64::MAX));
    e.sample(Nanos(0));
    e.sample(Nanos(u64::MAX));
    assert_eq!(e.min(), Some(Nanos(0)));
    assert!(e.smoothed().is_some());
    assert!(e.rto(Nanos(u64::MAX)).is_some());
}

// ---- DestKey ----

#[test]
fn dest_key_v4_prefix_24() {
    let k = |a| DestKey::new(a, 24, 128);
    assert_eq!(k(v4(192, 0, 2, 1)), k(v4(192, 0, 2, 254)));
    assert_ne!(k(v4(192, 0, 2, 1)), k(v4(192, 0, 3, 1)));
    assert_eq!(k(v4(192, 0, 2, 77)).addr(), v4(192, 0, 2, 0));
    // /32 (the default) keeps hosts apart.
    assert_ne!(
        DestKey::new(v4(192, 0, 2, 1), 32, 128),
        DestKey::new(v4(192, 0, 2, 2), 32, 128)
    );
}

#[test]
fn dest_key_v6_prefix_48() {
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:ffff:1:2:3:4".parse().unwrap();
    let c: IpAddr = "2001:db8:2::1".parse().unwrap();
    let k = |x| DestKey::new(x, 32, 48);
    assert_eq!(k(a), k(b));
    assert_ne!(k(a), k(c));
    assert_eq!(k(a).addr(), "2001:db8:1::".parse::<IpAddr>().unwrap());
}

#[test]
fn dest_key_prefix_clamped_and_families_apart() {
    let a = v4(203, 0, 113, 9);
    assert_eq!(DestKey::new(a, 200, 128), DestKey::new(a, 32, 128));
    assert_ne!(
        DestKey::new(a, 200, 128),
        DestKey::new(v4(203, 0, 113, 8), 200, 128)
    );
    let x: IpAddr = "2001:db8::1".parse().unwrap();
    let y: IpAddr = "2001:db8::2".parse().unwrap();
    assert_eq!(DestKey::new(x, 32, 255), DestKey::new(x, 32, 128));
    assert_ne!(DestKey::new(x, 32, 255), DestKey::new(y, 32, 255));
    // Prefix 0: one entry per family, but never one for both.
    assert_eq!(DestKey::new(a, 0, 0), DestKey::new(v4(1, 2, 3, 4), 0, 0));
    assert_eq!(
        DestKey::new(x, 0, 0).addr(),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    );
    assert_ne!(DestKey::new(a, 0, 0), DestKey::new(x, 0, 0));
    assert_ne!(
        DestKey::new(v4(0, 0, 0, 0), 32, 128),
        DestKey::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 32, 128)
    );
}

// ---- pick ----

#[test]
fn round_robin_weights_1_1_2_exact() {
    let s = snap_of(vec![
        view(1, 0, 0, 0, None),
        view(1, 0, 0, 0, None),
        view(2, 0, 0, 0, None),
    ]);
    let mut sel = Selector::new(Arc::new(s));
    let (counts, seq) = run(&mut sel, Algorithm::RoundRobin, 0b111, 400, TCP);
    assert_eq!(&counts[..3], &[100, 100, 200]);
    // Smooth: every cycle of total weight 4 holds each uplink by weight.
    for block in seq.chunks(4) {
        let mut c = [0; 3];
        for &u in block {
            c[usize::from(u)] += 1;
        }
        assert_eq!(c, [1, 1, 2], "{block:?}");
    }
}

#[test]
fn round_robin_equal_weights_rotate_strictly() {
    let s = snap_of((0..3).map(|_| view(5, 0, 0, 0, None)).collect());
    let mut sel = Selector::new(Arc::new(s));
    let (counts, seq) = run(&mut sel, Algorithm::RoundRobin, 0b111, 30, UDP);
    assert_eq!(&counts[..3], &[10, 10, 10]);
    for w in seq.windows(3) {
        assert!(w[0] != w[1] && w[1] != w[2] && w[0] != w[2], "{seq:?}");
    }
    for w in seq.windows(4) {
        assert_eq!(w[0], w[3], "{seq:?}");
    }
    // Only the candidates take part.
    let (counts, _) = run(&mut sel, Algorithm::RoundRobin, 0b101, 10, TCP);
    assert_eq!((counts[0], counts[1], counts[2]), (5, 0, 5));
    // A new snapshot with the same weights keeps the rotation going: the
    // 1,1,2 cycle continues where it was instead of restarting.
    let s = Arc::new(snap_of(vec![
        view(1, 0, 0, 0, None),
        view(1, 0, 0, 0, None),
        view(2, 0, 0, 0, None),
    ]));
    let mut sel = Selector::new(s.clone());
    let (_, first) = run(&mut sel, Algorithm::RoundRobin, 0b111, 1, TCP);
    sel.install(s.clone());
    let (_, rest) = run(&mut sel, Algorithm::RoundRobin, 0b111, 3, TCP);
    let mut c = [0; 3];
    for &u in first.iter().chain(&rest) {
        c[usize::from(u)] += 1;
    }
    assert_eq!(c, [1, 1, 2], "{first:?} {rest:?}");
}

#[test]
fn least_load_fills_least_loaded_until_equal() {
    // Loads 10, 50, 90 (TCP + UDP).
    let s = snap_of(vec![
        view(1, 5, 5, 0, None),
        view(1, 20, 30, 0, None),
        view(1, 90, 0, 0, None),
    ]);
    let mut sel = Selector::new(Arc::new(s));
    let mut seq = Vec::new();
    for i in 0..150 {
        let p = if i % 2 == 0 { TCP } else { UDP };
        seq.push(
            sel.pick(Algorithm::LeastLoad, v4(192, 0, 2, 1), p, 0b111)
                .unwrap(),
        );
    }
    // The first 40 lift uplink 0 to uplink 1's 50: only the local pick
    // counts can tell the selector that.
    assert!(seq[..40].iter().all(|&u| u == 0), "{seq:?}");
    // 80 more bring 0 and 1 to 90, 30 more split three ways.
    let count = |id| seq.iter().filter(|&&u| u == id).count();
    assert_eq!((count(0), count(1), count(2)), (90, 50, 10));
    let total = |id: UplinkId| {
        let (t, u, o) = sel.local_picks(id);
        let v = &sel.snapshot().uplinks[usize::from(id)];
        v.tcp_sessions + v.udp_sessions + t + u + o
    };
    assert_eq!((total(0), total(1), total(2)), (100, 100, 100));
    // Both protocols counted, nothing as "other".
    let (t, u, o) = sel.local_picks(0);
    assert!(t > 0 && u > 0 && o == 0 && t + u == 90, "{t} {u} {o}");
}

#[test]
fn install_resets_local_pick_counts() {
    let s = Arc::new(snap_of(vec![
        view(1, 10, 0, 0, None),
        view(1, 20, 0, 0, None),
    ]));
    let mut sel = Selector::new(s.clone());
    let (counts, _) = run(&mut sel, Algorithm::LeastLoad, 0b11, 10, 1);
    assert_eq!(&counts[..2], &[10, 0]);
    assert_eq!(sel.local_picks(0), (0, 0, 10)); // ICMP counts as "other"
    let mut next = (*s).clone();
    next.version = 1;
    let old = sel.install(Arc::new(next));
    assert_eq!(old.version, 0);
    assert_eq!(sel.snapshot().version, 1);
    assert_eq!(sel.local_picks(0), (0, 0, 0));
    // Back to the snapshot's loads alone: uplink 0 again.
    assert_eq!(
        sel.pick(Algorithm::LeastLoad, v4(192, 0, 2, 1), TCP, 0b11),
        Some(0)
    );
}

#[test]
fn least_traffic_picks_quietest() {
    let s = snap_of(vec![
        view(1, 0, 0, 500, None),
        view(1, 0, 0, 100, None),
        view(1, 0, 0, 300, None),
    ]);
    let mut sel = Selector::new(Arc::new(s));
    let (counts, _) = run(&mut sel, Algorithm::LeastTraffic, 0b111, 20, TCP);
    assert_eq!(&counts[..3], &[0, 20, 0]);
    let (counts, _) = run(&mut sel, Algorithm::LeastTraffic, 0b101, 20, TCP);
    assert_eq!(&counts[..3], &[0, 0, 20]);
}

#[test]
fn weighted_least_load_splits_by_weight() {
    // Equal (zero) loads, weights 1 and 3: new flows split 1:3 exactly.
    let s = snap_of(vec![view(1, 0, 0, 0, None), view(3, 0, 0, 0, None)]);
    let mut sel = Selector::new(Arc::new(s));
    let (counts, _) = run(&mut sel, Algorithm::WeightedLeastLoad, 0b11, 400, TCP);
    assert_eq!(&counts[..2], &[100, 300]);
    // Loads already proportional to capacity (10 and 30): still 1:3.
    let s = snap_of(vec![view(1, 10, 0, 0, None), view(3, 0, 30, 0, None)]);
    let mut sel = Selector::new(Arc::new(s));
    let (counts, _) = run(&mut sel, Algorithm::WeightedLeastLoad, 0b11, 400, UDP);
    assert_eq!(&counts[..2], &[100, 300]);
}

#[test]
fn weighted_least_load_weighs_sessions() {
    // 10 TCP sessions at weight 3 (= 30) against 25 UDP sessions at 1.
    let mut s = snap_of(vec![view(1, 10, 0, 0, None), view(1, 0, 25, 0, None)]);
    s.tcp_session_weight = 3;
    s.udp_session_weight = 1;
    let mut sel = Selector::new(Arc::new(s));
    // Plain least load sees 10 < 25.
    assert_eq!(
        sel.pick(Algorithm::LeastLoad, v4(192, 0, 2, 1), 0, 0b11),
        Some(0)
    );
    sel.install(sel.snapshot().clone());
    // Weighted: 25 < 30, and five UDP picks (weight 1) close the gap.
    let (_, seq) = run(&mut sel, Algorithm::WeightedLeastLoad, 0b11, 5, UDP);
    assert_eq!(seq, vec![1; 5]);
    // Now 30 = 30: a tie, broken by rotation; after one TCP pick on
    // uplink 0 (33) uplink 1 is lighter again.
    let (counts, _) = run(&mut sel, Algorithm::WeightedLeastLoad, 0b11, 2, TCP);
    assert_eq!(&counts[..2], &[1, 1]);
}

#[test]
fn response_time_uses_destination_entry_then_uplink_srtt() {
    let dst = v4(192, 0, 2, 10);
    let s = snap_of(vec![
        view(1, 0, 0, 0, Some(ms(30))),
        view(1, 0, 0, 0, Some(ms(10))),
        view(1, 0, 0, 0, Some(ms(20))),
        view(1, 0, 0, 0, Some(ms(15))),
    ]);
    let s = with_entry(s, dst, entry(Nanos::ZERO, &[(0, ms(5)), (2, ms(8))]));
    let mut sel = Selector::new(Arc::new(s));
    let rt = Algorithm::ResponseTime;
    // The destination's own measurements win over the uplink averages:
    // among the entry's candidates, never an uplink outside the entry.
    assert_eq!(sel.pick(rt, dst, TCP, 0b1111), Some(0));
    assert_eq!(sel.pick(rt, dst, TCP, 0b1110), Some(2));
    // No candidate in the entry: the uplinks' aggregate srtt.
    assert_eq!(sel.pick(rt, dst, TCP, 0b1010), Some(1));
    assert_eq!(sel.pick(rt, dst, TCP, 0b1000), Some(3));
    // Unknown destination: aggregate.
    assert_eq!(sel.pick(rt, v4(192, 0, 2, 11), TCP, 0b1111), Some(1));
    assert_eq!(sel.pick(rt, v4(192, 0, 2, 11), TCP, 0b1101), Some(3));
}

#[test]
fn response_time_puts_unmeasured_uplinks_last() {
    let s = snap_of(vec![
        view(1, 0, 0, 0, None),
        view(1, 0, 0, 0, Some(ms(900))),
        view(1, 0, 0, 0, None),
    ]);
    let mut sel = Selector::new(Arc::new(s));
    let (counts, _) = run(&mut sel, Algorithm::ResponseTime, 0b111, 10, TCP);
    assert_eq!(&counts[..3], &[0, 10, 0]);
    // Without a measured candidate the unmeasured ones share.
    let (counts, _) = run(&mut sel, Algorithm::ResponseTime, 0b101, 10, TCP);
    assert_eq!(&counts[..3], &[5, 0, 5]);
}

#[test]
fn ties_rotate() {
    let mut sel = Selector::new(Arc::new(equal(3)));
    for alg in [
        Algorithm::LeastTraffic,
        Algorithm::ResponseTime,
        Algorithm::RoundRobin,
    ] {
        let (counts, seq) = run(&mut sel, alg, 0b111, 300, TCP);
        assert_eq!(&counts[..3], &[100, 100, 100], "{alg:?}");
        assert!(seq.windows(2).all(|w| w[0] != w[1]), "{alg:?} {seq:?}");
    }
    // Sparse candidate sets rotate too.
    let mut sel = Selector::new(Arc::new(equal(4)));
    let (counts, seq) = run(&mut sel, Algorithm::LeastTraffic, 0b1010, 10, TCP);
    assert_eq!((counts[1], counts[3]), (5, 5));
    assert!(seq.windows(2).all(|w| w[0] != w[1]), "{seq:?}");
}

#[test]
fn pick_respects_candidates_and_ignores_unknown_ids() {
    let mut sel = Selector::new(Arc::new(equal(3)));
    for alg in Algorithm::ALL {
        assert_eq!(sel.pick(alg, v4(192, 0, 2, 1), TCP, 0), None, "{alg:?}");
        // Bits 3 and 63 name no uplink of this snapshot.
        assert_eq!(
            sel.pick(alg, v4(192, 0, 2, 1), TCP, (1 << 3) | (1 << 63)),
            None,
            "{alg:?}"
        );
        for _ in 0..10 {
            assert_eq!(
                sel.pick(alg, v4(192, 0, 2, 1), TCP, (1 << 2) | (1 << 40)),
                Some(2),
                "{alg:?}"
            );
        }
    }
    // An empty snapshot has nothing to offer.
    let mut sel = Selector::new(Arc::new(equal(0)));
    assert_eq!(
        sel.pick(Algorithm::RoundRobin, v4(192, 0, 2, 1), TCP, u64::MAX),
        None
    );
}

// ---- cached ----

#[test]
fn cached_fresh_until_ttl() {
    let dst = v4(192, 0, 2, 10);
    let raced = Nanos::from_secs(100);
    let s = equal(2); // ttl 60 s
    let s = with_entry(s, dst, entry(raced, &[(0, ms(20)), (1, ms(10))]));
    let mut sel = Selector::new(Arc::new(s));
    let rt = Algorithm::ResponseTime;
    let just_before = Nanos(Nanos::from_secs(160).0 - 1);
    assert!(sel.snapshot().fresh(dst, just_before).is_some());
    assert_eq!(sel.cached(dst, 0b11, rt, TCP, raced), Some(1));
    assert_eq!(sel.cached(dst, 0b11, rt, TCP, just_before), Some(1));
    assert_eq!(sel.local_picks(1), (2, 0, 0)); // counted like pick
    assert!(sel.snapshot().fresh(dst, Nanos::from_secs(160)).is_none());
    assert_eq!(sel.cached(dst, 0b11, rt, TCP, Nanos::from_secs(160)), None);
    assert_eq!(sel.cached(dst, 0b11, rt, TCP, Nanos::from_secs(999)), None);
    assert_eq!(sel.local_picks(1), (2, 0, 0));
    // Missing destination.
    assert_eq!(sel.cached(v4(192, 0, 2, 11), 0b11, rt, TCP, raced), None);
    // A stale entry still guides response-time picks.
    assert_eq!(sel.pick(rt, dst, TCP, 0b11), Some(1));
}

#[test]
fn cached_keys_by_prefix() {
    let mut s = equal(2);
    s.prefix_v4 = 24;
    let s = with_entry(s, v4(192, 0, 2, 0), entry(Nanos::ZERO, &[(1, ms(10))]));
    let mut sel = Selector::new(Arc::new(s));
    let rt = Algorithm::ResponseTime;
    assert_eq!(sel.cached(v4(192, 0, 2, 77), 0b11, rt, TCP, ms(1)), Some(1));
    assert_eq!(sel.cached(v4(192, 0, 3, 77), 0b11, rt, TCP, ms(1)), None);
}

#[test]
fn cached_skips_non_candidates() {
    let dst = v4(192, 0, 2, 10);
    let mut s = equal(3);
    s.uplinks[1].healthy = false;
    let s = with_entry(s, dst, entry(Nanos::ZERO, &[(1, ms(10)), (0, ms(40))]));
    let mask = s.healthy_mask();
    assert_eq!(mask, 0b101);
    let mut sel = Selector::new(Arc::new(s));
    let rt = Algorithm::ResponseTime;
    assert_eq!(sel.cached(dst, 0b111, rt, TCP, ms(1)), Some(1));
    // The unhealthy best is skipped for the next measured one.
    assert_eq!(sel.cached(dst, mask, rt, TCP, ms(1)), Some(0));
    // No measured candidate: no hit (the caller races instead).
    assert_eq!(sel.cached(dst, 0b100, rt, TCP, ms(1)), None);
}

#[test]
fn cached_tie_margin() {
    let dst = v4(192, 0, 2, 10);
    let mut s = equal(3);
    s.uplinks[1].tcp_sessions = 1;
    s.uplinks[0].tcp_sessions = 5;
    let e = entry(Nanos::ZERO, &[(0, ms(100)), (1, ms(109)), (2, ms(111))]);
    let s = with_entry(s, dst, e);
    assert_eq!(s.tie_margin_pct, 10);
    let mut sel = Selector::new(Arc::new(s.clone()));
    // 0 and 1 are within 10 % of the best; 2 is not.
    let mut counts = [0; 3];
    for _ in 0..20 {
        let u = sel
            .cached(dst, 0b111, Algorithm::RoundRobin, TCP, ms(1))
            .unwrap();
        counts[usize::from(u)] += 1;
    }
    assert_eq!(counts, [10, 10, 0]);
    // The policy picks among the tied: least load prefers 1.
    let mut sel = Selector::new(Arc::new(s.clone()));
    assert_eq!(
        sel.cached(dst, 0b111, Algorithm::LeastLoad, TCP, ms(1)),
        Some(1)
    );
    // Margin 0: only the best.
    let mut s0 = s;
    s0.tie_margin_pct = 0;
    let mut sel = Selector::new(Arc::new(s0));
    for _ in 0..5 {
        assert_eq!(
            sel.cached(dst, 0b111, Algorithm::LeastLoad, TCP, ms(1)),
            Some(0)
        );
    }
}

// ---- SelectionCore: health ----

fn answer(dst: IpAddr, uplink: UplinkId, rtt: Option<Nanos>, decided: bool) -> SelEvent {
    SelEvent::Answer {
        dst,
        uplink,
        rtt,
        raced: true,
        decided,
    }
}

fn core(n: usize) -> SelectionCore {
    SelectionCore::new(SelectConfig::default(), vec![1; n])
}

/// A failed race copy on `uplink` toward 198.51.100.`d`.
fn unanswered(uplink: UplinkId, d: u8) -> SelEvent {
    SelEvent::Unanswered {
        uplink,
        dst: v4(198, 51, 100, d),
    }
}

mod management;

mod admin;
