use super::*;

#[test]
fn failures_toward_one_destination_never_mark_an_uplink_down() {
    // One destination that drops (or rejects) one ISP's SYNs: the ISP is
    // fine for everyone else.
    let mut c = core(2);
    for t in 0..50 {
        c.on_event(&unanswered(0, 7), ms(t));
    }
    let st = &c.uplink_stats()[0];
    assert!(st.healthy);
    assert_eq!((st.unanswered_streak, st.failed_destinations), (50, 1));
    // Two destinations: still up; a third one: down.
    c.on_event(&unanswered(0, 8), ms(60));
    assert!(c.uplink_stats()[0].healthy);
    c.on_event(&unanswered(0, 9), ms(61));
    assert!(!c.uplink_stats()[0].healthy);
}

#[test]
fn failures_spread_wider_than_the_window_do_not_add_up() {
    let mut c = core(1);
    let gap = FAILURE_WINDOW.saturating_add(Nanos(1));
    let mut now = ms(1);
    for d in 0..10 {
        c.on_event(&unanswered(0, d), now);
        now = now.saturating_add(gap);
    }
    let st = &c.uplink_stats()[0];
    assert!(st.healthy);
    assert_eq!(st.failed_destinations, 1);
}

#[test]
fn the_failed_destinations_are_a_bounded_set() {
    let cfg = SelectConfig {
        unanswered_limit: 1_000,
        ..SelectConfig::default()
    };
    let mut c = SelectionCore::new(cfg, vec![1]);
    for d in 0..(FAILED_DESTS as u8 - 1) {
        c.on_event(&unanswered(0, d), ms(u64::from(d)));
    }
    assert!(c.uplink_stats()[0].healthy);
    // A limit beyond the set counts as its capacity.
    c.on_event(&unanswered(0, 200), ms(100));
    let st = &c.uplink_stats()[0];
    assert!(!st.healthy);
    assert_eq!(st.failed_destinations as usize, FAILED_DESTS);
    for d in 0..100 {
        c.on_event(&unanswered(0, d), ms(200));
    }
    assert_eq!(
        c.uplink_stats()[0].failed_destinations as usize,
        FAILED_DESTS
    );
}

#[test]
fn unanswered_streak_marks_uplink_down() {
    let mut c = core(2);
    let un = |d| SelEvent::Unanswered {
        uplink: 1,
        dst: v4(198, 51, 100, d),
    };
    c.on_event(&un(1), ms(1));
    c.on_event(&un(2), ms(2));
    assert!(c.uplink_stats()[1].healthy);
    c.on_event(&un(3), ms(3));
    let st = &c.uplink_stats()[1];
    assert!(!st.healthy);
    assert_eq!(
        (st.unanswered_streak, st.unanswered, st.transitions),
        (3, 3, 1)
    );
    assert!(c.uplink_stats()[0].healthy);
    assert_eq!(c.snapshot(ms(4)).healthy_mask(), 0b01);
}

#[test]
fn answer_resets_unanswered_streak() {
    let mut c = core(2);
    let un = |d| SelEvent::Unanswered {
        uplink: 0,
        dst: v4(198, 51, 100, d),
    };
    c.on_event(&un(1), ms(1));
    c.on_event(&un(2), ms(2));
    c.on_event(&answer(v4(192, 0, 2, 1), 0, Some(ms(20)), false), ms(3));
    c.on_event(&un(3), ms(4));
    c.on_event(&un(4), ms(5));
    let st = &c.uplink_stats()[0];
    assert!(st.healthy);
    assert_eq!((st.unanswered_streak, st.unanswered, st.answers), (2, 4, 1));
    assert_eq!(st.transitions, 0);
}

#[test]
fn answer_while_down_recovers() {
    let mut c = core(2);
    for t in 0..3 {
        c.on_event(&unanswered(0, t as u8), ms(t));
    }
    assert!(!c.uplink_stats()[0].healthy);
    // A probe copy's answer, even a retransmitted (ambiguous) one.
    c.on_event(&answer(v4(192, 0, 2, 1), 0, None, false), ms(10));
    let st = &c.uplink_stats()[0];
    assert!(st.healthy);
    assert_eq!((st.unanswered_streak, st.transitions), (0, 2));
    assert_eq!(st.rtt.samples(), 0); // Karn: no sample
}

#[test]
fn link_down_is_unhealthy_regardless() {
    let mut c = core(2);
    c.tick(ms(0), &[], &[], &[true, false]);
    let st = &c.uplink_stats()[1];
    assert!(!st.healthy && !st.link_up);
    assert_eq!(st.transitions, 1);
    c.on_event(&answer(v4(192, 0, 2, 1), 1, Some(ms(5)), true), ms(1));
    assert!(!c.uplink_stats()[1].healthy);
    let snap = c.snapshot(ms(2));
    assert_eq!(snap.healthy_mask(), 0b01);
    assert!(!snap.uplinks[1].link_up);
    c.tick(ms(3), &[], &[], &[true, true]);
    assert!(c.uplink_stats()[1].healthy);
    // Link up but a streak at the limit: still down.
    for t in 0..3 {
        c.on_event(&unanswered(1, t as u8), ms(4 + t));
    }
    c.tick(ms(10), &[], &[], &[true, true]);
    assert!(!c.uplink_stats()[1].healthy);
    // down (link), up (link), down (streak)
    assert_eq!(c.uplink_stats()[1].transitions, 3);
}

#[test]
fn unanswered_limit_zero_never_marks_down() {
    let cfg = SelectConfig {
        unanswered_limit: 0,
        ..SelectConfig::default()
    };
    let mut c = SelectionCore::new(cfg, vec![1]);
    for t in 0..100 {
        c.on_event(&unanswered(0, t as u8), ms(t));
    }
    assert!(c.uplink_stats()[0].healthy);
    assert_eq!(c.uplink_stats()[0].unanswered_streak, 100);
}

#[test]
fn events_for_unknown_uplinks_are_ignored() {
    let mut c = core(2);
    c.on_event(&unanswered(2, 1), ms(1));
    c.on_event(&answer(v4(192, 0, 2, 1), 200, Some(ms(5)), true), ms(1));
    assert_eq!(c.cache_len(), 0);
    assert_eq!(c.uplink_stats().len(), 2);
    assert!(c.uplink_stats().iter().all(|s| s.healthy && s.answers == 0));
}

// ---- SelectionCore: cache ----

#[test]
fn entry_only_after_a_decided_race() {
    let dst = v4(192, 0, 2, 1);
    let mut c = core(2);
    // An answer that did not race creates nothing.
    c.on_event(
        &SelEvent::Answer {
            dst,
            uplink: 0,
            rtt: Some(ms(7)),
            raced: false,
            decided: false,
        },
        ms(1),
    );
    assert_eq!(c.cache_len(), 0);
    assert_eq!(c.uplink_stats()[0].rtt.smoothed(), Some(ms(7)));
    // A raced but undecided answer makes a record, not an entry.
    c.on_event(&answer(dst, 1, Some(ms(30)), false), ms(2));
    assert_eq!(c.cache_len(), 1);
    assert!(c.snapshot(ms(3)).rtt.is_empty());
    c.on_event(&answer(dst, 0, Some(ms(10)), true), ms(4));
    // The deciding answer starts the destination's figures afresh; the
    // loser's answer comes after it.
    let snap = c.snapshot(ms(4));
    let e = snap.fresh(dst, ms(4)).unwrap();
    assert_eq!(e.iter().collect::<Vec<_>>(), vec![(0, ms(10))]);
    c.on_event(&answer(dst, 1, Some(ms(30)), false), ms(4));
    let snap = c.snapshot(ms(5));
    let e = snap.fresh(dst, ms(5)).unwrap();
    assert_eq!(e.raced_at, ms(4));
    let mut got: Vec<_> = e.iter().collect();
    got.sort();
    assert_eq!(got, vec![(0, ms(10)), (1, ms(30))]);
    // Now a non-raced answer (a cache hit) refreshes the record.
    c.on_event(
        &SelEvent::Answer {
            dst,
            uplink: 0,
            rtt: Some(ms(18)),
            raced: false,
            decided: false,
        },
        ms(6),
    );
    let snap = c.snapshot(ms(7));
    let e = snap.fresh(dst, ms(7)).unwrap();
    assert_eq!(e.raced_at, ms(4)); // not a race: freshness unchanged
    assert_eq!(e.iter().next(), Some((0, ms(11)))); // (7*10 + 18)/8
}

#[test]
fn stale_uplinks_are_not_offered() {
    let dst = v4(192, 0, 2, 1);
    let mut c = core(2); // ttl 60 s
    c.on_event(&answer(dst, 0, Some(ms(10)), true), Nanos::from_secs(0));
    c.on_event(&answer(dst, 1, Some(ms(20)), false), Nanos::from_secs(0));
    let t = Nanos::from_secs(100);
    // A new race that only uplink 1 answered (uplink 0 was down).
    c.on_event(&answer(dst, 1, Some(ms(25)), true), t);
    let snap = c.snapshot(t);
    let e = snap.fresh(dst, t).unwrap();
    // The new race's time replaces the stored ones; uplink 0's 100 s
    // old figure is out.
    assert_eq!(e.iter().collect::<Vec<_>>(), vec![(1, ms(25))]);
    // Within the ttl before raced_at both stay offered.
    let mut c = core(2);
    c.on_event(&answer(dst, 0, Some(ms(10)), true), Nanos::from_secs(50));
    c.on_event(&answer(dst, 1, Some(ms(25)), true), Nanos::from_secs(100));
    c.on_event(&answer(dst, 0, Some(ms(12)), false), Nanos::from_secs(100));
    assert_eq!(
        c.snapshot(Nanos::from_secs(100)).rtt[&DestKey::new(dst, 32, 128)].n,
        2
    );
}

#[test]
fn karn_ambiguous_answer_leaves_no_entry() {
    let dst = v4(192, 0, 2, 1);
    let mut c = core(1);
    c.on_event(&answer(dst, 0, None, true), ms(1));
    assert_eq!(c.cache_len(), 1);
    assert!(c.snapshot(ms(2)).rtt.is_empty());
    assert_eq!(c.uplink_stats()[0].answers, 1);
    assert_eq!(c.uplink_stats()[0].rtt.samples(), 0);
}

#[test]
fn snapshot_evicts_oldest_beyond_capacity() {
    let cfg = SelectConfig {
        cache_capacity: 3,
        ..SelectConfig::default()
    };
    let mut c = SelectionCore::new(cfg.clone(), vec![1, 1]);
    for i in 1..=5u8 {
        c.on_event(
            &answer(v4(192, 0, 2, i), 0, Some(ms(10)), true),
            Nanos::from_secs(u64::from(i)),
        );
    }
    assert_eq!(c.cache_len(), 5);
    let now = Nanos::from_secs(6);
    let snap = c.snapshot(now);
    assert_eq!(c.cache_len(), 3);
    assert_eq!(snap.rtt.len(), 3);
    for i in 1..=5u8 {
        assert_eq!(snap.fresh(v4(192, 0, 2, i), now).is_some(), i >= 3, "{i}");
    }
    // Equal ages: exactly capacity kept.
    let mut c = SelectionCore::new(
        SelectConfig {
            cache_capacity: 2,
            ..cfg
        },
        vec![1],
    );
    for i in 1..=4u8 {
        c.on_event(&answer(v4(192, 0, 2, i), 0, Some(ms(10)), true), ms(1));
    }
    assert_eq!(c.snapshot(ms(2)).rtt.len(), 2);
    assert_eq!(c.cache_len(), 2);
}

#[test]
fn records_between_snapshots_stay_bounded() {
    let cfg = SelectConfig {
        cache_capacity: 4,
        ..SelectConfig::default()
    };
    let mut c = SelectionCore::new(cfg, vec![1]);
    for i in 0..1000u32 {
        let dst = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        c.on_event(&answer(dst, 0, Some(ms(10)), true), ms(u64::from(i)));
        assert!(c.cache_len() <= 4 * 2 + 64 + 1);
    }
    // The newest survive.
    let snap = c.snapshot(ms(1000));
    assert!(snap
        .fresh(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 999)), ms(1000))
        .is_some());
    assert_eq!(snap.rtt.len(), 4);
}

#[test]
fn records_dropped_after_twice_the_ttl() {
    let cfg = SelectConfig {
        rtt_cache_ttl: Nanos::from_secs(10),
        ..SelectConfig::default()
    };
    let dst = v4(192, 0, 2, 1);
    let mut c = SelectionCore::new(cfg, vec![1]);
    c.on_event(&answer(dst, 0, Some(ms(10)), true), Nanos::ZERO);
    let snap = c.snapshot(Nanos::from_secs(20));
    assert_eq!(c.cache_len(), 1);
    assert!(snap.fresh(dst, Nanos::from_secs(20)).is_none()); // stale...
    assert!(snap.entry(dst).is_some()); // ...but still there
    c.snapshot(Nanos(Nanos::from_secs(20).0 + 1));
    assert_eq!(c.cache_len(), 0);
}

#[test]
fn tick_loads_traffic_and_versions() {
    let cfg = SelectConfig {
        traffic_window: Nanos::ZERO,
        ..SelectConfig::default()
    };
    let mut c = SelectionCore::new(cfg, vec![2, 0]);
    c.tick(Nanos::ZERO, &[(3, 4), (5, 6)], &[0, 500], &[true, true]);
    c.tick(Nanos::from_secs(1), &[(7, 8)], &[1000, 500], &[true, true]);
    let s1 = c.snapshot(Nanos::from_secs(1));
    assert_eq!(s1.version, 1);
    assert_eq!(s1.uplinks[0].weight, 2);
    assert_eq!(s1.uplinks[1].weight, 1); // 0 counts as 1
    assert_eq!(
        (s1.uplinks[0].tcp_sessions, s1.uplinks[0].udp_sessions),
        (7, 8)
    );
    assert_eq!(
        (s1.uplinks[1].tcp_sessions, s1.uplinks[1].udp_sessions),
        (5, 6)
    );
    assert_eq!(s1.uplinks[0].traffic_bps, 1000);
    assert_eq!(s1.uplinks[1].traffic_bps, 0);
    // 3000 bytes in half a second: 6000 B/s (window 0: no smoothing).
    c.tick(ms(1500), &[], &[4000, 500], &[]);
    assert_eq!(c.uplink_stats()[0].traffic_bps, 6000);
    // A counter that went backwards counts 0.
    c.tick(ms(2500), &[], &[10, 500], &[]);
    assert_eq!(c.uplink_stats()[0].traffic_bps, 0);
    assert_eq!(c.snapshot(ms(2500)).version, 2);
}

#[test]
fn traffic_rate_is_smoothed_over_the_window() {
    let mut c = SelectionCore::new(SelectConfig::default(), vec![1]); // 1 s window
    c.tick(Nanos::from_secs(0), &[], &[0], &[]);
    c.tick(Nanos::from_secs(1), &[], &[1000], &[]);
    assert_eq!(c.uplink_stats()[0].traffic_bps, 1000); // first rate as is
    c.tick(Nanos::from_secs(2), &[], &[4000], &[]);
    // (1000 * 1 s + 3000 * 1 s) / 2 s.
    assert_eq!(c.uplink_stats()[0].traffic_bps, 2000);
    // Same time again: no new rate, no division by zero.
    c.tick(Nanos::from_secs(2), &[], &[9000], &[]);
    assert_eq!(c.uplink_stats()[0].traffic_bps, 2000);
}

#[test]
fn core_to_selector_end_to_end() {
    let dst = v4(203, 0, 113, 5);
    let mut c = core(3);
    let mut sel = Selector::new(Arc::new(Snapshot::initial(c.config(), &[1, 1, 1])));
    assert_eq!(sel.snapshot().healthy_mask(), 0b111);
    let now = Nanos::from_secs(1);
    // A race: uplink 2 answers first, 0 later, 1 never.
    c.on_event(&answer(dst, 2, Some(ms(12)), true), now);
    c.on_event(&answer(dst, 0, Some(ms(40)), false), now);
    c.on_event(&SelEvent::Unanswered { uplink: 1, dst }, now);
    let old = sel.install(Arc::new(c.snapshot(now)));
    assert_eq!(old.version, 0);
    let mask = sel.snapshot().healthy_mask();
    assert_eq!(
        sel.cached(dst, mask, Algorithm::RoundRobin, TCP, now),
        Some(2)
    );
    // Uplink 2 loses its link: the next snapshot's hit is uplink 0.
    c.tick(now, &[], &[], &[true, true, false]);
    sel.install(Arc::new(c.snapshot(now)));
    let mask = sel.snapshot().healthy_mask();
    assert_eq!(mask, 0b011);
    assert_eq!(
        sel.cached(dst, mask, Algorithm::RoundRobin, TCP, now),
        Some(0)
    );
}

// ---- properties ----

fn arb_view() -> impl Strategy<Value = UplinkView> {
    (
        any::<bool>(),
        0u32..5,
        any::<u64>(),
        0u64..1000,
        any::<u64>(),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(healthy, weight, tcp, udp, bps, srtt)| UplinkView {
            drained: false,
            healthy,
            link_up: healthy,
            weight,
            tcp_sessions: tcp,
            udp_sessions: udp,
            traffic_bps: bps,
            srtt: srtt.map(Nanos),
        })
}

proptest! {
    #[test]
    fn estimator_stays_within_samples(
        samples in proptest::collection::vec(any::<u64>(), 1..40),
    ) {
        let mut e = RttEstimator::default();
        for &s in &samples {
            e.sample(Nanos(s));
        }
        let lo = *samples.iter().min().unwrap();
        let hi = *samples.iter().max().unwrap();
        prop_assert_eq!(e.min(), Some(Nanos(lo)));
        prop_assert_eq!(e.samples(), samples.len() as u64);
        let s = e.smoothed().unwrap().0;
        prop_assert!(lo <= s && s <= hi, "{} not in [{}, {}]", s, lo, hi);
        prop_assert!(e.var().0 <= hi);
    }

    #[test]
    fn dest_key_equal_iff_prefix_equal(a in any::<u32>(), b in any::<u32>(), p in 0u8..40,
                                       x in any::<u128>(), y in any::<u128>(), q in 0u8..140) {
        let pl = u32::from(p.min(32));
        let same4 = pl == 0 || (a ^ b) >> (32 - pl) == 0;
        let ka = DestKey::new(IpAddr::V4(a.into()), p, 128);
        prop_assert_eq!(ka == DestKey::new(IpAddr::V4(b.into()), p, 128), same4);
        prop_assert_eq!(DestKey::new(ka.addr(), p, 128), ka);
        let ql = u32::from(q.min(128));
        let same6 = ql == 0 || (x ^ y) >> (128 - ql) == 0;
        let kx = DestKey::new(IpAddr::V6(x.into()), 32, q);
        prop_assert_eq!(kx == DestKey::new(IpAddr::V6(y.into()), 32, q), same6);
        prop_assert_eq!(DestKey::new(kx.addr(), 32, q), kx);
    }

    #[test]
    fn round_robin_is_exact_per_cycle(
        weights in proptest::collection::vec(1u32..10, 1..7),
        cycles in 1usize..4,
        warmup in 0usize..3,
    ) {
        let s = snap_of(weights.iter().map(|&w| view(w, 0, 0, 0, None)).collect());
        let mut sel = Selector::new(Arc::new(s));
        let total: usize = weights.iter().map(|&w| w as usize).sum();
        // Whole cycles from any cycle boundary.
        let _ = run(&mut sel, Algorithm::RoundRobin, u64::MAX, warmup * total, TCP);
        let (counts, _) = run(&mut sel, Algorithm::RoundRobin, u64::MAX, cycles * total, TCP);
        for (i, &w) in weights.iter().enumerate() {
            prop_assert_eq!(counts[i], cycles * w as usize, "weights {:?}", weights);
        }
    }

    #[test]
    fn pick_returns_a_candidate_or_none(
        views in proptest::collection::vec(arb_view(), 0..10),
        picks in proptest::collection::vec((0usize..5, any::<u64>(), any::<u8>(), 0u8..4), 1..40),
        rtts in proptest::collection::vec((0u8..12, any::<u64>()), 0..9),
        tie in 0u32..300,
        raced in any::<u64>(),
        now in any::<u64>(),
    ) {
        let n = views.len();
        let mut s = snap_of(views);
        s.tie_margin_pct = tie;
        s.tcp_session_weight = tie;
        let e = entry(Nanos(raced), &rtts.iter().map(|&(u, r)| (u, Nanos(r))).collect::<Vec<_>>());
        let dsts = [v4(192, 0, 2, 0), v4(192, 0, 2, 1), v4(192, 0, 2, 2), "2001:db8::1".parse().unwrap()];
        let s = with_entry(s, dsts[0], e);
        let mut sel = Selector::new(Arc::new(s));
        let known = first_n(n);
        for (alg, cand, proto, d) in picks {
            let alg = Algorithm::ALL[alg];
            let dst = dsts[usize::from(d)];
            match sel.pick(alg, dst, proto, cand) {
                None => prop_assert_eq!(cand & known, 0),
                Some(u) => prop_assert!(cand & known & bit(usize::from(u)) != 0),
            }
            if let Some(u) = sel.cached(dst, cand, alg, proto, Nanos(now)) {
                prop_assert!(cand & known & bit(usize::from(u)) != 0);
                let e = sel.snapshot().fresh(dst, Nanos(now)).unwrap();
                prop_assert!(e.iter().any(|(x, _)| x == u));
            }
        }
    }

    #[test]
    fn core_keeps_its_invariants(
        events in proptest::collection::vec(
            (0u8..6, 0u8..6, proptest::option::of(0u64..1_000_000_000), any::<bool>(), any::<bool>(), 0u64..20_000_000_000),
            1..120),
        links in proptest::collection::vec(any::<bool>(), 4),
        cap in 0usize..6,
        limit in 0u32..4,
    ) {
        let cfg = SelectConfig {
            cache_capacity: cap,
            unanswered_limit: limit,
            rtt_cache_ttl: Nanos::from_secs(5),
            ..SelectConfig::default()
        };
        let mut c = SelectionCore::new(cfg, vec![1, 2, 3, 4]);
        let mut now = Nanos::ZERO;
        for (i, (kind, uplink, rtt, raced, decided, dt)) in events.into_iter().enumerate() {
            now = now.saturating_add(Nanos(dt / 10));
            let ev = if kind == 0 {
                SelEvent::Unanswered { uplink, dst: v4(198, 51, 100, (dt % 5) as u8) }
            } else {
                SelEvent::Answer { dst: v4(192, 0, 2, kind), uplink, rtt: rtt.map(Nanos), raced, decided }
            };
            c.on_event(&ev, now);
            if i % 10 == 0 {
                c.tick(now, &[], &[], &links);
            }
            for st in c.uplink_stats() {
                // Down by failures only with `limit` distinct destinations
                // (5 at most here) since the last answer.
                prop_assert!(!st.healthy || st.link_up);
                prop_assert!(!st.healthy || limit == 0 || st.failed_destinations < limit);
                prop_assert!(st.failed_destinations <= st.unanswered_streak.min(5));
                if limit == 0 || st.unanswered_streak < limit {
                    prop_assert_eq!(st.healthy, st.link_up);
                }
            }
            if i % 7 == 0 {
                let snap = c.snapshot(now);
                prop_assert!(snap.rtt.len() <= cap);
                prop_assert!(c.cache_len() <= cap);
                for e in snap.rtt.values() {
                    prop_assert!(e.n >= 1 && usize::from(e.n) <= RACE_MAX);
                    prop_assert!(e.raced_at <= now);
                    let mut seen = 0u64;
                    for (u, _) in e.iter() {
                        prop_assert!(u < 4);
                        prop_assert_eq!(seen & bit(usize::from(u)), 0);
                        seen |= bit(usize::from(u));
                    }
                }
            }
        }
    }
}
