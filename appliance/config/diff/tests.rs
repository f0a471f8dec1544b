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
            Box::new(|c| c.redirection.avoid_ms = 1),
            "redirection.avoid_ms",
        ),
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
