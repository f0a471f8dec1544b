//! Per-host limits, the token bucket, the top offenders and eviction under
//! pressure.

use super::*;
use crate::packet::drop::DropReason;
use crate::packet::flow::{proto, FlowKey};
use crate::packet::time::Nanos;
use crate::testing::{ip, site};
use proptest::prelude::*;

const T0: Nanos = Nanos(1_000_000_000);
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn udp(host: &str, port: u16) -> FlowKey {
    FlowKey {
        src: ip(host),
        dst: ip("203.0.113.5"),
        src_port: port,
        dst_port: 53,
        proto: proto::UDP,
    }
}

fn shard(max_sessions: usize, hosts: HostLimits) -> NatShard {
    let cfg = NatConfig {
        max_sessions,
        hosts,
        ..NatConfig::default()
    };
    NatShard::new(cfg, &site(1), 0)
}

fn answer(nat: &mut NatShard, idx: u32, now: Nanos) {
    assert!(nat.touch(idx, now, 60, 0, true).is_some());
}

#[test]
fn token_bucket_bursts_then_refills_at_its_rate() {
    let mut b = TokenBucket::full(3, T0);
    assert!((0..3).all(|_| b.take(T0, 10, 3)));
    assert!(!b.take(T0, 10, 3), "burst spent");
    // 10 a second: one token every 100 ms.
    assert!(!b.take(T0.saturating_add(Nanos::from_millis(99)), 10, 3));
    assert!(b.take(T0.saturating_add(Nanos::from_millis(100)), 10, 3));
    // Fractions are kept: 50 ms + 50 ms make a token.
    let t = T0.saturating_add(Nanos::from_millis(150));
    assert!(!b.take(t, 10, 3));
    assert!(b.take(t.saturating_add(Nanos::from_millis(50)), 10, 3));
    // A long pause refills to the burst, no further.
    let later = T0.saturating_add(Nanos::from_secs(3_600));
    assert!((0..3).all(|_| b.take(later, 10, 3)));
    assert!(!b.take(later, 10, 3));
    // Time going backwards refills nothing and does not panic.
    assert!(!b.take(T0, 10, 3));
    assert_eq!(b.tokens(), 0);
}

#[test]
fn a_host_at_its_sessions_limit_does_not_stop_another() {
    let lim = HostLimits {
        max_sessions: 5,
        ..HostLimits::default()
    };
    let mut nat = shard(1_000, lim);
    let a: Vec<u32> = (0..5)
        .map(|p| {
            nat.create_out(&udp("10.0.0.1", 1000 + p), 0, MAC, T0)
                .unwrap()
                .0
        })
        .collect();
    for p in 0..3 {
        assert_eq!(
            nat.create_out(&udp("10.0.0.1", 2000 + p), 0, MAC, T0),
            Err(DropReason::HostSessionsLimit)
        );
    }
    for p in 0..5 {
        nat.create_out(&udp("10.0.0.2", 1000 + p), 0, MAC, T0)
            .unwrap();
    }
    assert_eq!(nat.counters.host_sessions_limit.get(), 3);
    assert_eq!(nat.host_usage(ip("10.0.0.1")), Some((5, 0)));
    assert_eq!(nat.host_usage(ip("10.0.0.2")), Some((5, 0)));
    let top: Vec<_> = nat.counters.top.iter().filter_map(|t| t.read()).collect();
    assert_eq!(top, vec![(ip("10.0.0.1"), 3, 5)]);
    // One of A's sessions goes: A may open one more, and the top offender
    // slot follows its live sessions.
    nat.remove(a[0]);
    let top: Vec<_> = nat.counters.top.iter().filter_map(|t| t.read()).collect();
    assert_eq!(top, vec![(ip("10.0.0.1"), 3, 4)]);
    nat.create_out(&udp("10.0.0.1", 3000), 0, MAC, T0).unwrap();
    // All gone: the host's entry goes with its last session.
    for i in nat.live_sessions().collect::<Vec<_>>() {
        nat.remove(i);
    }
    assert_eq!(nat.hosts_tracked(), 0);
    assert_eq!(nat.host_usage(ip("10.0.0.1")), None);
}

#[test]
fn a_host_past_its_rate_does_not_stop_another() {
    let lim = HostLimits {
        new_per_second: 100,
        new_burst: 10,
        ..HostLimits::default()
    };
    let mut nat = shard(1_000, lim);
    for p in 0..10 {
        nat.create_out(&udp("10.0.0.1", 1000 + p), 0, MAC, T0)
            .unwrap();
    }
    assert_eq!(
        nat.create_out(&udp("10.0.0.1", 1100), 0, MAC, T0),
        Err(DropReason::HostRateLimit)
    );
    nat.create_out(&udp("10.0.0.2", 1000), 0, MAC, T0).unwrap();
    // 10 ms later A has one token again.
    let t = T0.saturating_add(Nanos::from_millis(10));
    nat.create_out(&udp("10.0.0.1", 1101), 0, MAC, t).unwrap();
    assert_eq!(
        nat.create_out(&udp("10.0.0.1", 1102), 0, MAC, t),
        Err(DropReason::HostRateLimit)
    );
    assert_eq!(nat.counters.host_rate_limit.get(), 2);
    // A refused flow takes no port and no session.
    assert_eq!(nat.len(), 12);
}

#[test]
fn a_full_host_table_refuses_new_hosts_and_never_grows() {
    let lim = HostLimits {
        max_hosts: 2,
        ..HostLimits::default()
    };
    let mut nat = shard(1_000, lim);
    let cap = nat.hosts_bytes();
    let a = nat
        .create_out(&udp("10.0.0.1", 1000), 0, MAC, T0)
        .unwrap()
        .0;
    nat.create_out(&udp("10.0.0.2", 1000), 0, MAC, T0).unwrap();
    assert_eq!(
        nat.create_out(&udp("10.0.0.3", 1000), 0, MAC, T0),
        Err(DropReason::HostsTableFull)
    );
    // Known hosts go on.
    let a2 = nat
        .create_out(&udp("10.0.0.1", 1001), 0, MAC, T0)
        .unwrap()
        .0;
    assert_eq!(nat.counters.hosts_table_full.get(), 1);
    // Churn: hosts come and go thousands of times, the table never grows.
    nat.remove(a);
    assert_eq!(nat.hosts_tracked(), 2, "10.0.0.1 still has a session");
    nat.remove(a2);
    for i in 0..5_000u32 {
        let h = format!("10.1.{}.{}", i / 250, i % 250 + 1);
        let s = nat.create_out(&udp(&h, 1000), 0, MAC, T0).unwrap().0;
        nat.remove(s);
    }
    assert_eq!(nat.hosts_bytes(), cap);
    assert_eq!(nat.hosts_tracked(), 1, "10.0.0.2");
}

#[test]
fn race_copies_waiting_for_an_answer_count_per_host() {
    let lim = HostLimits {
        max_races: 2,
        ..HostLimits::default()
    };
    let mut nat = shard(1_000, lim);
    let a0 = nat.create_out(&udp("10.0.0.1", 1), 0, MAC, T0).unwrap().0;
    let a1 = nat.create_out(&udp("10.0.0.1", 2), 0, MAC, T0).unwrap().0;
    assert!(nat.host_may_race(ip("10.0.0.1"), true));
    nat.set_race(a0, 7);
    nat.set_race(a1, 8);
    assert_eq!(nat.host_usage(ip("10.0.0.1")), Some((2, 2)));
    assert!(!nat.host_may_race(ip("10.0.0.1"), true));
    assert!(!nat.host_may_race(ip("10.0.0.1"), false));
    assert!(
        nat.host_may_race(ip("10.0.0.2"), true),
        "another host races"
    );
    assert_eq!(
        nat.counters.host_races_limit.get(),
        1,
        "counted once a race"
    );
    // An answer ends the wait; untagging and removal too.
    answer(&mut nat, a0, T0);
    assert_eq!(nat.host_usage(ip("10.0.0.1")), Some((2, 1)));
    nat.set_race(a1, NONE);
    assert_eq!(nat.host_usage(ip("10.0.0.1")), Some((2, 0)));
    nat.set_race(a1, 9);
    nat.remove(a1);
    assert_eq!(nat.host_usage(ip("10.0.0.1")), Some((1, 0)));
    assert!(nat.host_may_race(ip("10.0.0.1"), true));
}

#[test]
fn unanswered_race_copies_expire_at_twice_the_race_timeout() {
    let mut nat = shard(1_000, HostLimits::default());
    let cfg = nat.config().clone();
    let k = FlowKey {
        proto: proto::TCP,
        ..udp("10.0.0.1", 40000)
    };
    let copy = nat.create_out(&k, 0, MAC, T0).unwrap().0;
    nat.set_race(copy, 3);
    let plain = nat
        .create_out(
            &FlowKey {
                src_port: 40001,
                ..k
            },
            0,
            MAC,
            T0,
        )
        .unwrap()
        .0;
    // Alive past the race timeout (a SYN retransmitted then still finds
    // its race), gone after twice it, long before the transitory timeout.
    let past_race = T0.saturating_add(cfg.race_timeout).saturating_add(Nanos(1));
    assert!(!nat.session(copy).unwrap().expired(past_race, &cfg));
    let twice = cfg.race_timeout.saturating_add(cfg.race_timeout);
    let just_after = T0.saturating_add(twice).saturating_add(Nanos(1));
    assert!(nat.session(copy).unwrap().expired(just_after, &cfg));
    assert!(!nat.session(plain).unwrap().expired(just_after, &cfg));
    // Answered, a race member has its TCP state's timeout again.
    answer(&mut nat, copy, T0);
    assert!(!nat.session(copy).unwrap().expired(just_after, &cfg));
}

#[test]
fn eviction_takes_the_oldest_unanswered_never_a_two_way_session() {
    // 20 sessions; evicts from 18 on.
    let mut nat = shard(20, HostLimits::default());
    assert_eq!(nat.config().evict_at(), 18);
    let mut answered = Vec::new();
    let mut silent = Vec::new();
    for p in 0..18u16 {
        let i = nat
            .create_out(&udp("10.0.0.1", 1000 + p), 0, MAC, T0)
            .unwrap()
            .0;
        if p % 2 == 0 {
            answer(&mut nat, i, T0);
            answered.push(i);
        } else {
            silent.push(i);
        }
    }
    assert_eq!(nat.oldest_unanswered(), Some(silent[0]));
    // Each newcomer past 18 evicts the oldest silent session, in order.
    for (n, p) in (0..9u16).enumerate() {
        let before = nat.oldest_unanswered().unwrap();
        assert_eq!(before, silent[n]);
        let i = nat
            .create_out(&udp("10.0.0.2", 2000 + p), 0, MAC, T0)
            .unwrap()
            .0;
        assert!(nat.session(before).is_none(), "oldest silent evicted");
        assert!(nat.session(i).is_some());
        assert_eq!(nat.len(), 18);
    }
    assert_eq!(nat.counters.evicted_unanswered.get(), 9);
    for &i in &answered {
        assert!(nat.session(i).is_some(), "two-way sessions stay");
    }
    // Only answered sessions left (and the newest): answer those too and
    // fill the table; then newcomers are refused, nothing evicted.
    for i in nat.live_sessions().collect::<Vec<_>>() {
        answer(&mut nat, i, T0);
    }
    for p in 0..2u16 {
        let i = nat
            .create_out(&udp("10.0.0.3", 3000 + p), 0, MAC, T0)
            .unwrap()
            .0;
        answer(&mut nat, i, T0);
    }
    assert_eq!(nat.len(), 20);
    assert_eq!(
        nat.create_out(&udp("10.0.0.4", 4000), 0, MAC, T0),
        Err(DropReason::TableFull)
    );
    assert_eq!(nat.counters.evicted_unanswered.get(), 9);
    assert_eq!(nat.len(), 20);
}

#[test]
fn a_full_table_evicts_before_it_refuses() {
    let mut nat = shard(4, HostLimits::default());
    // Filled from outside-admitted and answered sessions plus one silent.
    let s: Vec<u32> = (0..4u16)
        .map(|p| {
            nat.create_out(&udp("10.0.0.1", 1000 + p), 0, MAC, T0)
                .unwrap()
                .0
        })
        .collect();
    // evict_at is 3: the fourth creation evicted the first (silent) one.
    assert_eq!(nat.len(), 3);
    assert!(nat.session(s[0]).is_none());
    for &i in &s[1..3] {
        answer(&mut nat, i, T0);
    }
    let k = nat
        .create_out(&udp("10.0.0.2", 1000), 0, MAC, T0)
        .unwrap()
        .0;
    assert_eq!(nat.len(), 3, "s[3] evicted for it");
    assert!(nat.session(s[3]).is_none());
    assert!(nat.session(k).is_some());
}

#[derive(Clone, Debug)]
enum Op {
    Create { host: u8, port: u16 },
    Answer(usize),
    Remove(usize),
    Race(usize),
    Sweep(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 1u16..400).prop_map(|(host, port)| Op::Create { host, port }),
        2 => (0usize..64).prop_map(Op::Answer),
        1 => (0usize..64).prop_map(Op::Remove),
        1 => (0usize..64).prop_map(Op::Race),
        1 => (0u16..3000).prop_map(Op::Sweep),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Host counts always equal the live sessions; the table never passes
    /// `max_sessions`; an answered session is only ever removed by its
    /// timeout or by hand, never evicted; the unanswered list is in
    /// creation order.
    #[test]
    fn limits_and_eviction_keep_their_invariants(ops in prop::collection::vec(op(), 1..300)) {
        let lim = HostLimits { max_sessions: 12, new_per_second: 50, new_burst: 20, max_races: 3, max_hosts: 4 };
        let mut nat = shard(32, lim);
        let mut now = T0;
        let mut order: Vec<u32> = Vec::new(); // live sessions, oldest first
        let mut two_way = std::collections::HashSet::new();
        for o in ops {
            let evicted_before = nat.counters.evicted_unanswered.get();
            match o {
                Op::Create { host, port } => {
                    let h = format!("10.0.0.{}", host + 1);
                    if let Ok((i, _)) = nat.create_out(&udp(&h, port), 0, MAC, now) {
                        order.retain(|&x| nat.session(x).is_some());
                        order.push(i);
                    }
                }
                Op::Answer(n) => if let Some(&i) = order.get(n % order.len().max(1)) {
                    if nat.session(i).is_some() {
                        answer(&mut nat, i, now);
                        two_way.insert(i);
                    }
                },
                Op::Remove(n) => if let Some(&i) = order.get(n % order.len().max(1)) {
                    nat.remove(i);
                    two_way.remove(&i);
                },
                Op::Race(n) => if let Some(&i) = order.get(n % order.len().max(1)) {
                    nat.set_race(i, n as u32);
                },
                Op::Sweep(ms) => {
                    now = now.saturating_add(Nanos::from_millis(u64::from(ms) * 100));
                    nat.sweep_slice(now, 64);
                    let _ = nat.take_race_exits().count();
                    for &i in &two_way.clone() {
                        if nat.session(i).is_none() { two_way.remove(&i); }
                    }
                }
            }
            let _ = nat.take_race_exits().count();
            order.retain(|&x| nat.session(x).is_some());
            if nat.counters.evicted_unanswered.get() > evicted_before {
                for &i in &two_way {
                    prop_assert!(nat.session(i).is_some(), "two-way session {} evicted", i);
                }
            }
            prop_assert!(nat.len() <= 32);
            prop_assert!(nat.hosts_tracked() <= 4);
            for host in 1..=6 {
                let a = ip(&format!("10.0.0.{host}"));
                let live: Vec<u32> = nat.live_sessions().filter(|&i| nat.session(i).unwrap().client_addr() == a).collect();
                let races = live.iter().filter(|&&i| { let s = nat.session(i).unwrap(); s.in_race() && s.unanswered() }).count() as u32;
                let usage = nat.host_usage(a);
                if live.is_empty() {
                    prop_assert_eq!(usage, None);
                } else {
                    prop_assert_eq!(usage, Some((live.len() as u32, races)));
                    prop_assert!(live.len() <= 12);
                }
            }
            // The unanswered list, walked from the oldest, is the live
            // unanswered sessions in creation order.
            let expect: Vec<u32> = order.iter().copied().filter(|&i| nat.session(i).unwrap().unanswered()).collect();
            let mut walk = Vec::new();
            let mut i = nat.unans_head;
            while i != NONE { walk.push(i); i = nat.cold[i as usize].newer; }
            prop_assert_eq!(walk, expect);
        }
    }
}
