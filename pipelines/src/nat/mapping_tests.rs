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
