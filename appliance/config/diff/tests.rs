use super::diff;
use crate::config::{parse, Config};

const DEMO: &str = include_str!("../../../conf/demo.toml");

fn demo() -> Config {
    parse(DEMO).expect("demo parses")
}

/// The demo with `from` replaced by `to` (exactly once).
fn edited(from: &str, to: &str) -> Config {
    assert_eq!(DEMO.matches(from).count(), 1, "{from:?} once in demo.toml");
    parse(&DEMO.replacen(from, to, 1)).expect("edited demo parses")
}

#[test]
fn the_same_config_changes_nothing() {
    assert_eq!(diff(&demo(), &demo()), Ok(vec![]));
}

#[test]
fn each_live_field_is_reported_by_its_path() {
    let cases = [
        (
            "udp_idle_timeout_s = 180",
            "udp_idle_timeout_s = 30",
            "nat.udp_idle_timeout_s",
        ),
        (
            "tcp_established_timeout_s = 7440",
            "tcp_established_timeout_s = 600",
            "nat.tcp_established_timeout_s",
        ),
        (
            "filtering = \"address-and-port-dependent\"",
            "filtering = \"endpoint-independent\"",
            "nat.filtering",
        ),
        (
            "mode = \"syn-ack\"",
            "mode = \"first-payload\"",
            "selection.mode",
        ),
        (
            "algorithm = \"weighted-least-load\"",
            "algorithm = \"round-robin\"",
            "selection.algorithm",
        ),
        (
            "tcp_session_weight = 1",
            "tcp_session_weight = 4",
            "selection.tcp_session_weight",
        ),
        (
            "[control]",
            "[[selection.policies]]\nprotocol = \"udp\"\nrace = false\n\n[control]",
            "selection.policies",
        ),
        (
            "host_max_sessions = 4096",
            "host_max_sessions = 100",
            "nat.host_max_sessions",
        ),
    ];
    for (from, to, path) in cases {
        assert_eq!(
            diff(&demo(), &edited(from, to)),
            Ok(vec![path.to_string()]),
            "{path}"
        );
    }
    let mut new = demo();
    new.uplinks[2].weight = 3;
    new.nat.icmp_timeout_s = 5;
    assert_eq!(
        diff(&demo(), &new),
        Ok(vec![
            "uplinks[2].weight".to_string(),
            "nat.icmp_timeout_s".to_string()
        ])
    );
}

#[test]
fn each_restart_field_is_refused_by_its_path() {
    type Edit = Box<dyn Fn(&mut Config)>;
    let mut cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|c| c.ports[1].name = "wan-x".into()),
            "ports[1].name",
        ),
        (Box::new(|c| c.ports[2].vlan = Some(7)), "ports[2].vlan"),
        (
            Box::new(|c| {
                c.ports.pop();
            }),
            "ports",
        ),
        (
            Box::new(|c| c.uplinks[0].port = "wan-b".into()),
            "uplinks[0].port",
        ),
        (
            Box::new(|c| c.uplinks[1].nat_addresses.clear()),
            "uplinks[1].nat_addresses",
        ),
        (
            Box::new(|c| c.nat.port_range = [2000, 60000]),
            "nat.port_range",
        ),
        (
            Box::new(|c| c.nat.max_sessions_per_shard = 10),
            "nat.max_sessions_per_shard",
        ),
        (Box::new(|c| c.nat.seed = Some(9)), "nat.seed"),
        (
            Box::new(|c| c.selection.dest_prefix_v4 = 24),
            "selection.dest_prefix_v4",
        ),
        (
            Box::new(|c| c.selection.max_races_per_shard = 5),
            "selection.max_races_per_shard",
        ),
        (Box::new(|c| c.runtime.lcores.truncate(1)), "runtime"),
        (
            Box::new(|c| c.backend = crate::config::BackendKind::Pcap),
            "backend",
        ),
        (Box::new(|c| c.lan.addresses.clear()), "lan"),
        (
            Box::new(|c| c.control.socket = Some("/tmp/x.sock".into())),
            "control",
        ),
        (Box::new(|c| c.neighbours.lock_time_ms = 1), "neighbours"),
    ];
    for (edit, path) in cases.drain(..) {
        let mut new = demo();
        // A live change beside it is not applied either: the whole reload
        // is refused.
        new.nat.udp_idle_timeout_s = 30;
        edit(&mut new);
        let e = diff(&demo(), &new).expect_err(path);
        assert_eq!(e.path, path);
        assert!(e.msg.contains("needs a restart"), "{e}");
    }
}

/// A site with redirection: the lab's (two servers, a master service and
/// one service per server).
fn redirecting() -> Config {
    let text = crate::lab::redirect::site_config("a", "198.51.100", 2, None, "");
    parse(&text).expect("lab site parses")
}

#[test]
fn redirection_changes_apply_live_where_they_can() {
    let old = redirecting();
    let mut new = old.clone();
    new.redirection.avoid_ms = 1;
    new.redirection.store = crate::config::RedirectStoreKind::Redis;
    new.redirection.services[0].members[1].weight = 5;
    new.redirection.services[1].persistence = crate::config::PersistenceKind::Permanent;
    let mut s3 = new.redirection.servers[1].clone();
    s3.name = "a3".into();
    s3.address = "10.0.2.3:7000".parse().unwrap();
    new.redirection.servers.push(s3);
    let changed = diff(&old, &new).unwrap();
    for f in [
        "redirection.servers",
        "redirection.services[0].members",
        "redirection.services[1].persistence",
        "redirection.store",
        "redirection.avoid_ms",
    ] {
        assert!(changed.iter().any(|c| c == f), "{f} in {changed:?}");
    }
}

#[test]
fn redirection_changes_that_need_a_restart_are_refused_by_path() {
    type Edit = Box<dyn Fn(&mut Config)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|c| c.redirection.servers[0].address = "10.0.2.9:7000".parse().unwrap()),
            "redirection.servers[0].address",
        ),
        (
            Box::new(|c| c.redirection.servers[1].name = "zz".into()),
            "redirection.servers[1].name",
        ),
        (
            Box::new(|c| {
                c.redirection.servers.pop();
            }),
            "redirection.servers",
        ),
        (
            Box::new(|c| {
                c.redirection.services.pop();
            }),
            "redirection.services",
        ),
        (
            Box::new(|c| c.redirection.services[2].address = "198.51.100.99:7000".parse().unwrap()),
            "redirection.services[2].address",
        ),
        (
            Box::new(|c| c.redirection.services.clear()),
            "redirection.services",
        ),
    ];
    for (edit, path) in cases {
        let mut new = redirecting();
        new.redirection.avoid_ms = 1;
        edit(&mut new);
        let e = diff(&redirecting(), &new).expect_err(path);
        assert_eq!(e.path, path);
        assert!(e.msg.contains("needs a restart"), "{e}");
    }
}
