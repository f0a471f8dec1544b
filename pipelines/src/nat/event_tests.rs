//! The event log (off until enabled; created, expired, flushed, limits)
//! and the settings a reload changes (`set_live`).

use super::*;
use crate::packet::drop::DropReason;
use crate::packet::flow::{proto, FlowKey};
use crate::packet::time::Nanos;
use crate::testing::{ip, site, NAT4};
use std::net::SocketAddr;

const T0: Nanos = Nanos(5_000_000_000);
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn udp(cport: u16) -> FlowKey {
    FlowKey {
        src: ip("10.0.0.2"),
        dst: ip("203.0.113.5"),
        src_port: cport,
        dst_port: 53,
        proto: proto::UDP,
    }
}

#[test]
fn events_are_logged_only_when_enabled_with_their_endpoints() {
    let mut nat = NatShard::new(NatConfig::default(), &site(1), 0);
    nat.create_out(&udp(40000), 0, MAC, T0).unwrap();
    assert!(nat.log.events.is_empty(), "logged while off");
    nat.log.enabled = true;
    let (idx, _) = nat.create_out(&udp(40001), 0, MAC, T0).unwrap();
    let ev = nat.log.events[0];
    assert_eq!(ev.kind, EventKind::SessionCreated);
    assert_eq!((ev.proto, ev.uplink, ev.time), (proto::UDP, 0, T0));
    assert_eq!(ev.inside, "10.0.0.2:40001".parse::<SocketAddr>().unwrap());
    assert_eq!(ev.remote, "203.0.113.5:53".parse::<SocketAddr>().unwrap());
    assert_eq!(
        ev.outside,
        SocketAddr::new(ip(NAT4), nat.session(idx).unwrap().nat_port)
    );
    // Flushed, then expired.
    let (removed, _) = nat.flush_sessions(&SessionFilter::default(), 0, 16);
    assert_eq!(removed, 2);
    let kinds: Vec<_> = nat.log.events.iter().map(|e| (e.kind, e.reason)).collect();
    assert_eq!(
        kinds[1..],
        [(EventKind::SessionFlushed, EventReason::Flush); 2]
    );
    nat.log.events.clear();
    nat.create_out(&udp(40002), 0, MAC, T0).unwrap();
    let later = T0.saturating_add(Nanos::from_secs(181));
    for _ in 0..100 {
        nat.sweep(later);
    }
    assert!(nat.is_empty());
    let last = nat.log.events.last().unwrap();
    assert_eq!(
        (last.kind, last.reason, last.time),
        (EventKind::SessionExpired, EventReason::Timeout, later)
    );
}

#[test]
fn a_limit_hit_is_logged_and_a_full_log_counts_lost() {
    let cfg = NatConfig {
        hosts: HostLimits {
            max_sessions: 1,
            ..HostLimits::default()
        },
        ..NatConfig::default()
    };
    let mut nat = NatShard::new(cfg, &site(1), 0);
    nat.log.enabled = true;
    nat.create_out(&udp(40000), 0, MAC, T0).unwrap();
    let err = nat.create_out(&udp(40001), 0, MAC, T0).unwrap_err();
    assert_eq!(err, DropReason::HostSessionsLimit);
    let ev = nat.log.events.last().unwrap();
    assert_eq!(
        (ev.kind, ev.reason),
        (EventKind::LimitHit, EventReason::Limit(err))
    );
    assert_eq!(ev.inside, "10.0.0.2:40001".parse::<SocketAddr>().unwrap());
    assert_eq!((ev.uplink, ev.outside.port()), (0, 0));
    nat.log.events.clear();
    for _ in 0..LOG_MAX + 5 {
        nat.log.push(NatEvent::new(
            T0,
            EventKind::SessionCreated,
            EventReason::None,
        ));
    }
    assert_eq!((nat.log.events.len(), nat.log.lost), (LOG_MAX, 5));
}

#[test]
fn set_live_changes_timeouts_and_limits_but_not_what_sized_the_tables() {
    let mut nat = NatShard::new(NatConfig::default(), &site(1), 0);
    nat.create_out(&udp(40000), 0, MAC, T0).unwrap();
    let new = NatConfig {
        udp_idle_timeout: Nanos::from_secs(30),
        filtering: Filtering::EndpointIndependent,
        max_sessions: 7,
        seed: 99,
        max_races: 3,
        hosts: HostLimits {
            new_per_second: 5,
            max_hosts: 1,
            ..HostLimits::default()
        },
        ..NatConfig::default()
    };
    nat.set_live(&new);
    let c = nat.config();
    assert_eq!(c.udp_idle_timeout, Nanos::from_secs(30));
    assert_eq!(c.filtering, Filtering::EndpointIndependent);
    assert_eq!(c.hosts.new_per_second, 5);
    let old = NatConfig::default();
    assert_eq!(
        (c.max_sessions, c.seed, c.max_races),
        (old.max_sessions, old.seed, old.max_races)
    );
    assert_eq!(c.hosts.max_hosts, old.hosts.max_hosts);
    // The live session now expires by the new timeout.
    let t = T0.saturating_add(Nanos::from_secs(31));
    while !nat.is_empty() {
        assert!(nat.sweep(t) > 0, "the session outlived the new timeout");
    }
}
