//! Per-mapping limits (`mapping_max_sessions`) and the eviction of closed
//! TCP sessions beside unanswered ones.

use super::*;
use crate::packet::drop::DropReason;
use crate::packet::flow::{proto, FlowKey};
use crate::packet::time::Nanos;
use crate::testing::{ip, site};
use crate::wire::tcp::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

const T0: Nanos = Nanos(1_000_000_000);
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// UDP from `host`:`port` to remote 203.0.113.`remote`:53.
fn udp(host: &str, port: u16, remote: u8) -> FlowKey {
    FlowKey {
        src: ip(host),
        dst: ip(&format!("203.0.113.{remote}")),
        src_port: port,
        dst_port: 53,
        proto: proto::UDP,
    }
}

fn tcp(host: &str, port: u16) -> FlowKey {
    FlowKey {
        proto: proto::TCP,
        dst_port: 443,
        ..udp(host, port, 7)
    }
}

fn shard(max_sessions: usize, mapping_max: u16, filtering: Filtering) -> NatShard {
    let cfg = NatConfig {
        max_sessions,
        mapping_max_sessions: mapping_max,
        filtering,
        ..NatConfig::default()
    };
    NatShard::new(cfg, &site(1), 0)
}

#[test]
fn a_mapping_at_its_limit_refuses_new_remotes_and_nothing_else() {
    let mut nat = shard(1_000, 4, Filtering::default());
    let first = nat
        .create_out(&udp("10.0.0.1", 5000, 1), 0, MAC, T0)
        .unwrap();
    assert_eq!(first.1, Created::NewMapping);
    let mut on_it = vec![first.0];
    for r in 2..=4 {
        let (i, how) = nat
            .create_out(&udp("10.0.0.1", 5000, r), 0, MAC, T0)
            .unwrap();
        assert_eq!(how, Created::ExistingMapping);
        on_it.push(i);
    }
    for r in 5..8 {
        assert_eq!(
            nat.create_out(&udp("10.0.0.1", 5000, r), 0, MAC, T0),
            Err(DropReason::MappingSessionsLimit)
        );
    }
    assert_eq!(nat.counters.mapping_sessions_limit.get(), 3);
    // The refused host heads the top offenders.
    let top: Vec<_> = nat.counters.top.iter().filter_map(|t| t.read()).collect();
    assert_eq!(top, vec![(ip("10.0.0.1"), 3, 4)]);
    // The same host's other socket, and another host's, are not affected.
    nat.create_out(&udp("10.0.0.1", 5001, 5), 0, MAC, T0)
        .unwrap();
    nat.create_out(&udp("10.0.0.2", 5000, 5), 0, MAC, T0)
        .unwrap();
    // Existing sessions of the full mapping still translate.
    assert!(nat.lookup_out(&udp("10.0.0.1", 5000, 3), T0).is_some());
    // A session leaves: the mapping takes one more.
    nat.remove(on_it[1]);
    nat.create_out(&udp("10.0.0.1", 5000, 9), 0, MAC, T0)
        .unwrap();
    assert_eq!(
        nat.create_out(&udp("10.0.0.1", 5000, 10), 0, MAC, T0),
        Err(DropReason::MappingSessionsLimit)
    );
    // The head leaves (the mapping passes to the next session): the count
    // goes with the mapping, not with its head.
    nat.remove(on_it[0]);
    nat.create_out(&udp("10.0.0.1", 5000, 11), 0, MAC, T0)
        .unwrap();
    assert_eq!(
        nat.create_out(&udp("10.0.0.1", 5000, 12), 0, MAC, T0),
        Err(DropReason::MappingSessionsLimit)
    );
    assert_eq!(nat.counters.mapping_sessions_limit.get(), 5);
}

#[test]
fn a_mapping_that_ends_frees_its_count_with_its_port() {
    let mut nat = shard(1_000, 2, Filtering::default());
    let a = nat
        .create_out(&udp("10.0.0.1", 5000, 1), 0, MAC, T0)
        .unwrap()
        .0;
    let b = nat
        .create_out(&udp("10.0.0.1", 5000, 2), 0, MAC, T0)
        .unwrap()
        .0;
    nat.remove(a);
    nat.remove(b);
    assert_eq!(nat.counters.mappings.get(), 0);
    // A new mapping (whatever port it gets) starts from 0.
    nat.create_out(&udp("10.0.0.1", 5000, 3), 0, MAC, T0)
        .unwrap();
    nat.create_out(&udp("10.0.0.1", 5000, 4), 0, MAC, T0)
        .unwrap();
    assert_eq!(
        nat.create_out(&udp("10.0.0.1", 5000, 5), 0, MAC, T0),
        Err(DropReason::MappingSessionsLimit)
    );
}

#[test]
fn remotes_spraying_an_open_mapping_stop_at_its_limit() {
    // Endpoint-independent filtering: any remote may open a session on
    // the mapping from outside, up to the limit.
    let mut nat = shard(1_000, 3, Filtering::EndpointIndependent);
    let i = nat
        .create_out(&udp("10.0.0.1", 5000, 1), 0, MAC, T0)
        .unwrap()
        .0;
    let inbound = nat.inbound_key(nat.session(i).unwrap());
    let from = |r: u8| FlowKey {
        src: ip(&format!("198.18.0.{r}")),
        ..inbound
    };
    nat.admit_in(&from(1), 0, T0).unwrap();
    nat.admit_in(&from(2), 0, T0).unwrap();
    for r in 3..50 {
        assert_eq!(
            nat.admit_in(&from(r), 0, T0),
            Err(DropReason::MappingSessionsLimit)
        );
    }
    assert_eq!(nat.len(), 3);
    assert_eq!(nat.counters.mapping_sessions_limit.get(), 47);
    // The host's other mappings are untouched.
    nat.create_out(&udp("10.0.0.1", 5001, 1), 0, MAC, T0)
        .unwrap();
}

/// A TCP session from `host`:`port` that carried a SYN both ways and data:
/// two-way, established.
fn established(nat: &mut NatShard, host: &str, port: u16) -> u32 {
    let i = nat.create_out(&tcp(host, port), 0, MAC, T0).unwrap().0;
    nat.touch(i, T0, 60, TCP_SYN, false);
    nat.touch(i, T0, 60, TCP_SYN | TCP_ACK, true);
    nat.touch(i, T0, 60, TCP_ACK, false);
    assert_eq!(nat.session(i).unwrap().tcp_state(), TcpState::Established);
    i
}

#[test]
fn closed_tcp_sessions_join_the_eviction_list_in_the_order_they_close() {
    // 20 sessions; evicts from 18 on.
    let mut nat = shard(20, 256, Filtering::default());
    let mut open = Vec::new();
    for p in 0..10u16 {
        open.push(established(&mut nat, "10.0.0.1", 1000 + p));
    }
    assert_eq!(nat.oldest_unanswered(), None, "all answered");
    // One silent UDP flow, then closes in this order: FINs both ways,
    // an RST from outside, an RST from inside; one FIN only (half-closed:
    // may still carry data, never a candidate).
    let silent = nat
        .create_out(&udp("10.0.0.2", 7000, 1), 0, MAC, T0)
        .unwrap()
        .0;
    let fin_both = open[3];
    nat.touch(fin_both, T0, 60, TCP_FIN | TCP_ACK, false);
    nat.touch(fin_both, T0, 60, TCP_FIN | TCP_ACK, true);
    let rst_in = open[5];
    nat.touch(rst_in, T0, 60, TCP_RST, true);
    let rst_out = open[1];
    nat.touch(rst_out, T0, 60, TCP_RST | TCP_ACK, false);
    let half = open[7];
    nat.touch(half, T0, 60, TCP_FIN | TCP_ACK, false);
    assert_eq!(nat.session(half).unwrap().tcp_state(), TcpState::FinSeen);
    for &i in &[fin_both, rst_in, rst_out] {
        let s = nat.session(i).unwrap();
        assert!(matches!(s.tcp_state(), TcpState::Closed | TcpState::Rst));
        assert!(!s.unanswered(), "a closed session is not an unanswered one");
    }
    // Late segments of a closed connection (the last ACK, a retransmitted
    // FIN from outside) keep it on the list.
    nat.touch(fin_both, T0, 60, TCP_ACK, false);
    nat.touch(fin_both, T0, 60, TCP_FIN | TCP_ACK, true);
    assert_eq!(nat.len(), 11);
    // Fill to 18 with answered UDP flows.
    for p in 0..7u16 {
        let i = nat
            .create_out(&udp("10.0.0.3", 8000 + p, 1), 0, MAC, T0)
            .unwrap()
            .0;
        nat.touch(i, T0, 60, 0, true);
    }
    assert_eq!(nat.len(), 18);
    // Newcomers evict oldest first, whichever the reason: the silent flow,
    // then the closed sessions in the order they closed.
    let order = [silent, fin_both, rst_in, rst_out];
    for (n, &victim) in order.iter().enumerate() {
        assert_eq!(nat.oldest_unanswered(), Some(victim));
        let i = nat
            .create_out(&udp("10.0.0.4", 9000 + n as u16, 1), 0, MAC, T0)
            .unwrap()
            .0;
        nat.touch(i, T0, 60, 0, true);
        assert!(nat.session(victim).is_none(), "victim {n} evicted");
        assert_eq!(nat.len(), 18);
    }
    assert_eq!(nat.counters.evicted_unanswered.get(), 1);
    assert_eq!(nat.counters.evicted_closed.get(), 3);
    // Nothing is left to evict: established and half-closed sessions stay,
    // the table fills and then refuses.
    assert_eq!(nat.oldest_unanswered(), None);
    for p in 0..2u16 {
        let i = nat
            .create_out(&udp("10.0.0.5", 100 + p, 1), 0, MAC, T0)
            .unwrap()
            .0;
        nat.touch(i, T0, 60, 0, true);
    }
    assert_eq!(
        nat.create_out(&udp("10.0.0.6", 100, 1), 0, MAC, T0),
        Err(DropReason::TableFull)
    );
    for (k, &i) in open.iter().enumerate() {
        if ![3, 5, 1].contains(&k) {
            assert!(nat.session(i).is_some(), "session {k} (two-way) stays");
        }
    }
}

#[test]
fn a_closed_session_on_the_list_expires_and_is_replaced_as_before() {
    let mut nat = shard(100, 256, Filtering::default());
    let i = established(&mut nat, "10.0.0.1", 1000);
    nat.touch(i, T0, 60, TCP_RST, true);
    assert_eq!(nat.oldest_unanswered(), Some(i));
    // The closed timeout still applies.
    let cfg = nat.config().clone();
    let late = T0
        .saturating_add(cfg.tcp_closed_timeout)
        .saturating_add(Nanos(1));
    assert!(nat.lookup_out(&tcp("10.0.0.1", 1000), late).is_none());
    assert_eq!(nat.oldest_unanswered(), None, "left the list with it");
    assert_eq!(nat.len(), 0);
    // A new SYN on a closed session's 5-tuple replaces it.
    let j = established(&mut nat, "10.0.0.1", 1001);
    nat.touch(j, T0, 60, TCP_FIN | TCP_ACK, false);
    nat.touch(j, T0, 60, TCP_FIN | TCP_ACK, true);
    assert!(nat.tcp_reusable(j));
    assert_eq!(nat.tcp_replace(j), 1);
    assert_eq!(nat.oldest_unanswered(), None);
    assert_eq!(nat.len(), 0);
}

mod invariants {
    use super::*;
    use crate::nat::session::NONE;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Udp {
            host: u8,
            port: u16,
            remote: u8,
        },
        Tcp {
            host: u8,
            port: u16,
        },
        Answer(usize),
        /// FINs both ways (`false`) or an RST from outside (`true`).
        Close(usize, bool),
        Remove(usize),
        Sweep(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..4, 1u16..6, 1u8..8).prop_map(|(host, port, remote)| Op::Udp { host, port, remote }),
            3 => (0u8..4, 1u16..300).prop_map(|(host, port)| Op::Tcp { host, port }),
            3 => (0usize..64).prop_map(Op::Answer),
            2 => (0usize..64, any::<bool>()).prop_map(|(n, r)| Op::Close(n, r)),
            1 => (0usize..64).prop_map(Op::Remove),
            1 => (0u16..300).prop_map(Op::Sweep),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The eviction list is, oldest first, exactly the unanswered
        /// sessions (from their creation) and the closed TCP connections
        /// (from their close); a two-way connection that has not ended is
        /// never evicted; every mapping's count is its chain's length and
        /// never passes the limit.
        #[test]
        fn the_eviction_list_and_mapping_counts_keep_their_invariants(ops in prop::collection::vec(op(), 1..300)) {
            let mut nat = shard(24, 3, Filtering::default());
            let mut now = T0;
            let mut live: Vec<u32> = Vec::new();
            let mut list: Vec<u32> = Vec::new(); // the model, oldest first
            let mut closed = std::collections::HashSet::new();
            let mut open_two_way = std::collections::HashSet::new();
            let pick = |live: &Vec<u32>, n: usize| live.get(n % live.len().max(1)).copied();
            for o in ops {
                match o {
                    Op::Udp { host, port, remote } => {
                        let k = udp(&format!("10.0.0.{}", host + 1), 5000 + port, remote);
                        if let Ok((i, _)) = nat.create_out(&k, 0, MAC, now) { live.push(i); list.push(i); }
                    }
                    Op::Tcp { host, port } => {
                        let k = tcp(&format!("10.0.0.{}", host + 1), 10_000 + port);
                        if let Ok((i, _)) = nat.create_out(&k, 0, MAC, now) {
                            nat.touch(i, now, 60, TCP_SYN, false);
                            live.push(i);
                            list.push(i);
                        }
                    }
                    Op::Answer(n) => if let Some(i) = pick(&live, n) {
                        let tcp = nat.session(i).unwrap().proto == proto::TCP;
                        nat.touch(i, now, 60, if tcp { TCP_SYN | TCP_ACK } else { 0 }, true);
                        if tcp { nat.touch(i, now, 60, TCP_ACK, false); }
                        if !closed.contains(&i) {
                            list.retain(|&x| x != i);
                            open_two_way.insert(i);
                        }
                    },
                    Op::Close(n, rst) => if let Some(i) = pick(&live, n) {
                        if nat.session(i).unwrap().proto != proto::TCP || closed.contains(&i) { continue; }
                        if rst {
                            nat.touch(i, now, 60, TCP_RST, true);
                        } else {
                            nat.touch(i, now, 60, TCP_FIN | TCP_ACK, false);
                            nat.touch(i, now, 60, TCP_FIN | TCP_ACK, true);
                        }
                        list.retain(|&x| x != i);
                        list.push(i);
                        closed.insert(i);
                        open_two_way.remove(&i);
                    },
                    Op::Remove(n) => if let Some(i) = pick(&live, n) {
                        nat.remove(i);
                    },
                    Op::Sweep(ms) => {
                        now = now.saturating_add(Nanos::from_millis(u64::from(ms) * 1_000));
                        nat.sweep_slice(now, 64);
                    }
                }
                let _ = nat.take_race_exits().count();
                let gone: Vec<u32> = live.iter().copied().filter(|&x| nat.session(x).is_none()).collect();
                for x in gone {
                    live.retain(|&y| y != x);
                    list.retain(|&y| y != x);
                    closed.remove(&x);
                    open_two_way.remove(&x);
                }
                prop_assert!(nat.len() <= 24);
                let mut walk = Vec::new();
                let mut i = nat.unans_head;
                while i != NONE { walk.push(i); i = nat.cold[i as usize].newer; }
                prop_assert_eq!(&walk, &list);
                for &x in &open_two_way {
                    prop_assert!(!walk.contains(&x));
                }
                for &x in &live {
                    if nat.cold(x).unwrap().prev != NONE { continue; }
                    let mut len = 0u16;
                    let mut j = x;
                    while j != NONE { len += 1; j = nat.cold[j as usize].next; }
                    prop_assert!(len <= 3, "mapping of {} has {} sessions", x, len);
                    prop_assert_eq!(nat.mapping_sessions(x).copied(), Some(len));
                }
            }
        }
    }
}
