//! Listing and flushing sessions: filters, paging by cursor, bounded scans,
//! ports freed and counted.

use super::*;
use crate::packet::flow::{proto, FlowKey};
use crate::packet::time::Nanos;
use crate::testing::{ip, site};
use std::net::IpAddr;

const T0: Nanos = Nanos(5_000_000_000);

fn key(client: &str, cport: u16, remote: &str, rport: u16, p: u8) -> FlowKey {
    FlowKey {
        src: ip(client),
        dst: ip(remote),
        src_port: cport,
        dst_port: rport,
        proto: p,
    }
}

/// 30 sessions: clients 10.0.0.1..=3 × 10 flows; TCP on uplink 0 for
/// client 1, UDP on uplink 1 for client 2, ICMP on uplink 0 for client 3.
fn shard() -> NatShard {
    let mut nat = NatShard::new(NatConfig::default(), &site(1), 0);
    for i in 0..10u16 {
        let t = key("10.0.0.1", 40000 + i, "203.0.113.5", 443, proto::TCP);
        nat.create_out(&t, 0, [2; 6], T0).unwrap();
        let u = key("10.0.0.2", 41000 + i, "198.18.0.9", 53, proto::UDP);
        nat.create_out(&u, 1, [2; 6], T0).unwrap();
        let c = key("10.0.0.3", 100 + i, "203.0.113.77", 0, proto::ICMP);
        nat.create_out(&c, 0, [2; 6], T0).unwrap();
    }
    nat
}

fn prefix(s: &str) -> Prefix {
    let (a, l) = s.split_once('/').unwrap();
    Prefix {
        addr: a.parse::<IpAddr>().unwrap(),
        len: l.parse().unwrap(),
    }
}

fn all(nat: &NatShard, f: &SessionFilter) -> Vec<SessionInfo> {
    let mut out = Vec::new();
    let mut cursor = Some(0);
    while let Some(c) = cursor {
        cursor = nat.list_sessions(f, c, usize::MAX, 7, T0, &mut out);
    }
    out
}

#[test]
fn prefixes_match_by_family_and_length() {
    assert!(prefix("10.0.0.0/8").contains(ip("10.200.1.1")));
    assert!(!prefix("10.0.0.0/8").contains(ip("11.0.0.1")));
    assert!(prefix("0.0.0.0/0").contains(ip("1.2.3.4")));
    assert!(!prefix("0.0.0.0/0").contains(ip("::1")));
    assert!(prefix("10.0.0.1/32").contains(ip("10.0.0.1")));
    assert!(prefix("10.0.0.1/99").contains(ip("10.0.0.1")));
    assert!(!prefix("10.0.0.1/32").contains(ip("10.0.0.2")));
    assert!(prefix("2001:db8::/32").contains(ip("2001:db8:1::5")));
    assert!(!prefix("2001:db8::/32").contains(ip("2001:db9::5")));
}

#[test]
fn filters_select_exactly_their_sessions() {
    let nat = shard();
    assert_eq!(all(&nat, &SessionFilter::default()).len(), 30);
    let by = |f: SessionFilter| all(&nat, &f);
    let up0 = by(SessionFilter {
        uplink: Some(0),
        ..Default::default()
    });
    assert_eq!(up0.len(), 20);
    assert!(up0.iter().all(|s| s.uplink == 0));
    let udp = by(SessionFilter {
        proto: Some(proto::UDP),
        ..Default::default()
    });
    assert_eq!(udp.len(), 10);
    assert!(udp
        .iter()
        .all(|s| s.client == ip("10.0.0.2") && s.state == "udp"));
    let c1 = by(SessionFilter {
        client: Some(prefix("10.0.0.1/32")),
        ..Default::default()
    });
    assert_eq!(c1.len(), 10);
    assert!(c1
        .iter()
        .all(|s| s.state == "syn_sent" && s.remote_port == 443));
    let remote = by(SessionFilter {
        remote: Some(prefix("203.0.113.0/24")),
        uplink: Some(0),
        ..Default::default()
    });
    assert_eq!(remote.len(), 20);
    let none = by(SessionFilter {
        state: Some("established"),
        ..Default::default()
    });
    assert!(none.is_empty());
    let s = &c1[0];
    assert_eq!((s.packets_out, s.bytes_in, s.idle), (0, 0, Nanos::ZERO));
    assert!(s.expires_in > Nanos::ZERO && !s.in_race);
    assert_eq!(s.nat_addr, nat.nat_addr(nat.session(s.slot).unwrap()));
}

#[test]
fn pages_resume_from_the_cursor_without_gaps_or_repeats() {
    let nat = shard();
    let mut seen = Vec::new();
    let mut cursor = Some(0);
    let mut calls = 0;
    while let Some(c) = cursor {
        let mut page = Vec::new();
        cursor = nat.list_sessions(&SessionFilter::default(), c, 4, usize::MAX, T0, &mut page);
        assert!(page.len() <= 4);
        seen.extend(page.into_iter().map(|s| s.slot));
        calls += 1;
        assert!(calls < 100);
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 30);
    assert_eq!(sorted, seen, "slot order, each once");
    // A scan budget bounds one call even when nothing matches.
    let mut out = Vec::new();
    let f = SessionFilter {
        state: Some("rst"),
        ..Default::default()
    };
    let next = nat.list_sessions(&f, 0, 10, 3, T0, &mut out);
    assert_eq!((next, out.len()), (Some(3), 0));
}

#[test]
fn flush_removes_exactly_the_matching_sessions_and_frees_their_ports() {
    let mut nat = shard();
    let f = SessionFilter {
        uplink: Some(1),
        ..Default::default()
    };
    let live_before = nat.live;
    let mut removed = 0;
    let mut cursor = Some(0);
    while let Some(c) = cursor {
        let (n, next) = nat.flush_sessions(&f, c, 5);
        removed += n;
        cursor = next;
    }
    assert_eq!(removed, 10);
    assert_eq!(nat.live, live_before - 10);
    assert_eq!(nat.counters.flushed.get(), 10);
    assert!(all(&nat, &f).is_empty());
    assert_eq!(all(&nat, &SessionFilter::default()).len(), 20);
    // The flows come back as new sessions (their ports were freed).
    let u = key("10.0.0.2", 41000, "198.18.0.9", 53, proto::UDP);
    assert!(nat.lookup(&u, false, None, T0).is_none());
    nat.create_out(&u, 1, [2; 6], T0).unwrap();
    assert_eq!(all(&nat, &f).len(), 1);
}
