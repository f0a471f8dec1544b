//! The tracker alone: packets are numbers, the annotation a port.

use super::*;

fn key(id: u32) -> FragKey {
    FragKey {
        src: "10.0.0.2".parse().unwrap(),
        dst: "203.0.113.9".parse().unwrap(),
        id,
        proto: 17,
    }
}

fn frag(offset: u32, len: u32, more: bool) -> Fragment {
    Fragment {
        offset,
        len,
        more,
        header: 20,
    }
}

fn tracker(max_held: usize, max_datagrams: usize) -> FragTracker<u32, u16> {
    FragTracker::new(FragLimits {
        max_held,
        max_datagrams,
        timeout: Nanos::from_millis(100),
        max_fragments: 8,
    })
}

fn ms(n: u64) -> Nanos {
    Nanos::from_millis(n)
}

fn passed(l: Later<u32, u16>) -> (u32, u16) {
    match l {
        Later::Pass(p, a) => (p, a),
        other => panic!("expected Pass, got {other:?}"),
    }
}

fn dropped(l: Later<u32, u16>) -> DropReason {
    match l {
        Later::Drop(_, r) => r,
        other => panic!("expected Drop, got {other:?}"),
    }
}

#[test]
fn in_order_fragments_get_the_first_ones_annotation_and_the_datagram_is_forgotten() {
    let c = StageCounters::default();
    let mut t = tracker(4, 4);
    t.first(ms(0), key(1), frag(0, 1480, true), 5353, &c)
        .unwrap();
    assert_eq!(t.datagrams(), 1);
    assert_eq!(
        passed(t.later(ms(1), key(1), frag(1480, 1480, true), 2, &c)),
        (2, 5353)
    );
    assert_eq!(
        passed(t.later(ms(1), key(1), frag(2960, 248, false), 3, &c)),
        (3, 5353)
    );
    assert_eq!(t.datagrams(), 0, "all 3208 bytes seen: forgotten");
    assert_eq!((t.held(), c.total_drops()), (0, 0));
}

#[test]
fn fragments_before_their_first_are_held_then_released_in_arrival_order() {
    let c = StageCounters::default();
    let mut t = tracker(4, 4);
    assert!(matches!(
        t.later(ms(0), key(7), frag(2960, 248, false), 30, &c),
        Later::Held
    ));
    assert!(matches!(
        t.later(ms(0), key(7), frag(1480, 1480, true), 20, &c),
        Later::Held
    ));
    assert_eq!((t.held(), t.ready_len()), (2, 0));
    t.first(ms(2), key(7), frag(0, 1480, true), 99, &c).unwrap();
    assert_eq!(t.pop_ready(), Some((30, 99)));
    assert_eq!(t.pop_ready(), Some((20, 99)));
    assert_eq!(t.pop_ready(), None);
    assert_eq!((t.held(), t.datagrams()), (0, 0));
    assert_eq!(c.total_drops(), 0);
}

#[test]
fn an_exact_duplicate_is_dropped_alone_and_the_datagram_goes_on() {
    let c = StageCounters::default();
    let mut t = tracker(4, 4);
    t.first(ms(0), key(1), frag(0, 1480, true), 1, &c).unwrap();
    assert_eq!(
        t.first(ms(0), key(1), frag(0, 1480, true), 1, &c),
        Err(DropReason::FragmentDuplicate)
    );
    passed(t.later(ms(0), key(1), frag(1480, 800, true), 2, &c));
    assert_eq!(
        dropped(t.later(ms(0), key(1), frag(1480, 800, true), 2, &c)),
        DropReason::FragmentDuplicate
    );
    passed(t.later(ms(0), key(1), frag(2280, 8, false), 3, &c));
    assert_eq!(t.datagrams(), 0);
}

#[test]
fn an_overlap_refuses_the_whole_datagram_and_frees_what_it_held() {
    let c = StageCounters::default();
    let mut t = tracker(4, 4);
    assert!(matches!(
        t.later(ms(0), key(1), frag(1480, 1480, true), 2, &c),
        Later::Held
    ));
    // RFC 1858's attack: a fragment rewriting part of an earlier one.
    assert_eq!(
        dropped(t.later(ms(0), key(1), frag(1000, 1000, true), 3, &c)),
        DropReason::FragmentOverlap
    );
    assert_eq!(c.drops(DropReason::FragmentOverlap), 1, "the held one");
    assert_eq!(t.held(), 0);
    assert_eq!(
        t.first(ms(0), key(1), frag(0, 1480, true), 1, &c),
        Err(DropReason::FragmentOverlap),
        "the rest of the datagram is refused too"
    );
    // Another datagram is not affected.
    t.first(ms(0), key(2), frag(0, 1480, true), 1, &c).unwrap();
}

#[test]
fn a_fragment_past_the_last_ones_end_is_an_overlap() {
    let c = StageCounters::default();
    let mut t = tracker(4, 4);
    assert!(matches!(
        t.later(ms(0), key(1), frag(1480, 100, false), 2, &c),
        Later::Held
    ));
    assert_eq!(
        dropped(t.later(ms(0), key(1), frag(1600, 8, true), 3, &c)),
        DropReason::FragmentOverlap
    );
    assert_eq!(c.drops(DropReason::FragmentOverlap), 1, "the held last one");
    // A second, different last fragment is inconsistent too.
    t.first(ms(0), key(2), frag(0, 1480, true), 1, &c).unwrap();
    passed(t.later(ms(0), key(2), frag(2960, 100, false), 2, &c));
    assert_eq!(
        dropped(t.later(ms(0), key(2), frag(1480, 2000, false), 3, &c)),
        DropReason::FragmentOverlap
    );
}

#[test]
fn a_fragment_ending_past_65535_bytes_is_too_big() {
    let c = StageCounters::default();
    let mut t = tracker(4, 4);
    t.first(ms(0), key(1), frag(0, 1480, true), 1, &c).unwrap();
    assert_eq!(
        dropped(t.later(ms(0), key(1), frag(65_528 - 8, 1000, false), 2, &c)),
        DropReason::FragmentTooBig
    );
    // 20 bytes of header + 65,512 + 8 = 65,540 > 65,535.
    assert_eq!(
        dropped(t.later(ms(0), key(3), frag(65_512, 8, false), 2, &c)),
        DropReason::FragmentTooBig
    );
    assert!(matches!(
        t.later(ms(0), key(4), frag(65_512, 3, false), 2, &c),
        Later::Held
    ));
}

#[test]
fn held_fragments_time_out_and_are_counted() {
    let c = StageCounters::default();
    let mut t = tracker(4, 4);
    assert!(matches!(
        t.later(ms(0), key(1), frag(1480, 100, false), 2, &c),
        Later::Held
    ));
    assert_eq!(t.sweep(ms(99), &c), 0);
    assert_eq!(t.sweep(ms(100), &c), 1);
    assert_eq!(c.drops(DropReason::FragmentTimeout), 1);
    assert_eq!((t.held(), t.datagrams()), (0, 0));
    // A late first fragment starts a new datagram (and passes).
    t.first(ms(150), key(1), frag(0, 1480, true), 1, &c)
        .unwrap();
}

#[test]
fn an_expired_datagram_met_again_is_restarted_and_its_held_fragments_counted() {
    let c = StageCounters::default();
    let mut t = tracker(4, 4);
    assert!(matches!(
        t.later(ms(0), key(1), frag(1480, 100, false), 2, &c),
        Later::Held
    ));
    t.first(ms(500), key(1), frag(0, 1480, true), 1, &c)
        .unwrap();
    assert_eq!(c.drops(DropReason::FragmentTimeout), 1);
    assert_eq!(t.pop_ready(), None, "the stale one is not released");
}

#[test]
fn limits_per_shard_refuse_new_datagrams_and_held_fragments_but_not_known_ones() {
    let c = StageCounters::default();
    let mut t = tracker(2, 3);
    for id in 0..2 {
        assert!(matches!(
            t.later(ms(0), key(id), frag(8, 8, true), id, &c),
            Later::Held
        ));
    }
    assert_eq!(
        dropped(t.later(ms(0), key(2), frag(8, 8, true), 2, &c)),
        DropReason::FragmentLimit,
        "held limit"
    );
    assert_eq!(t.datagrams(), 2, "a refused fragment leaves no datagram");
    t.first(ms(0), key(3), frag(0, 8, true), 3, &c).unwrap();
    assert_eq!(
        t.first(ms(0), key(4), frag(0, 8, true), 4, &c),
        Err(DropReason::FragmentLimit),
        "datagram limit"
    );
    // A datagram whose first fragment is known needs no held room.
    passed(t.later(ms(0), key(3), frag(8, 8, true), 5, &c));
    // Releasing frees held room.
    t.first(ms(0), key(0), frag(0, 8, true), 6, &c).unwrap();
    assert_eq!(t.held(), 2, "one released, one still waiting");
    assert_eq!(t.pop_ready(), Some((0, 6)));
    assert_eq!(t.held(), 1);
}

#[test]
fn a_datagram_of_too_many_fragments_is_refused_whole() {
    let c = StageCounters::default();
    let mut t = tracker(16, 4);
    t.first(ms(0), key(1), frag(0, 8, true), 1, &c).unwrap();
    for i in 1..8 {
        passed(t.later(ms(0), key(1), frag(8 * i, 8, true), i, &c));
    }
    assert_eq!(
        dropped(t.later(ms(0), key(1), frag(64, 8, true), 9, &c)),
        DropReason::FragmentLimit
    );
    assert_eq!(
        dropped(t.later(ms(0), key(1), frag(72, 8, false), 10, &c)),
        DropReason::FragmentLimit
    );
}

#[test]
fn the_fragment_shard_depends_on_the_key_only_and_spreads() {
    let mut seen = [0usize; 4];
    for id in 0..400 {
        let s = fragment_shard(&key(id), 4);
        assert_eq!(s, fragment_shard(&key(id), 4));
        seen[usize::from(s)] += 1;
    }
    assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    assert_eq!(fragment_shard(&key(9), 1), 0);
    assert_eq!(fragment_shard(&key(9), 0), 0);
}
