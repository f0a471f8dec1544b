//! The embedded simulated site end to end: real TCP and UDP (smoltcp hosts)
//! through the appliance's threads and rings, in both modes, and the
//! README's main command on conf/demo.toml.

use std::process::Command;
use std::time::Duration;

use appliance::runtime::{run, RunOptions};
use serde_json::Value;

fn demo() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.toml")).unwrap()
}

/// The demo site, smaller and busier, with the given runtime section.
fn site(runtime: &str) -> appliance::plan::Plan {
    let start = demo().find("[runtime]").unwrap();
    let end = demo().find("# The simulated site.").unwrap();
    let text = format!("{}{}\n{}", &demo()[..start], runtime, &demo()[end..])
        .replace("clients = 300", "clients = 60")
        .replace("servers = 30", "servers = 6")
        .replace("tcp_interval_ms = 1000", "tcp_interval_ms = 300")
        .replace("udp_interval_ms = 1000", "udp_interval_ms = 300");
    let cfg = appliance::config::parse(&text).unwrap();
    appliance::plan::validate(&cfg).unwrap()
}

fn n(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(v, |v, k| &v[k])
        .as_u64()
        .unwrap_or_else(|| panic!("no number at {path:?} in {v:#}"))
}

fn assert_traffic_flows(stats: &Value) {
    let ok = n(stats, &["sim", "tcp_connections_ok"]);
    let failed = n(stats, &["sim", "tcp_connections_failed"]);
    let req = n(stats, &["sim", "udp_requests"]);
    let rep = n(stats, &["sim", "udp_replies"]);
    assert!(ok >= 100, "only {ok} TCP connections completed: {stats:#}");
    assert!(failed * 100 <= ok, "{failed} failed vs {ok} ok: {stats:#}");
    assert!(
        req >= 100 && rep * 100 >= req * 95,
        "udp {rep}/{req}: {stats:#}"
    );
    // Every packet the clients sent crossed classify, translate, transmit.
    assert!(n(stats, &["ports", "lan", "rx_packets"]) > 0);
    assert!(n(stats, &["ports", "wan-a", "tx_packets"]) > 0);
    assert!(stats["uplinks"][0]["tx_packets"].as_u64().unwrap() > 0);
}

fn run_site(runtime: &str) -> Value {
    let plan = site(runtime);
    run(
        &plan,
        &RunOptions {
            duration: Some(Duration::from_secs(4)),
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn pipeline_mode_carries_tcp_and_udp() {
    let stats = run_site(
        "[runtime]\nmode = \"pipeline\"\noversubscribe = true\n\
         [[runtime.lcores]]\nstages = [\"classify\", \"replicate\"]\n\
         [[runtime.lcores]]\nstages = [\"translate\", \"transmit\"]\n",
    );
    assert_traffic_flows(&stats);
    assert_eq!(stats["mode"], "pipeline");
}

#[test]
fn run_to_completion_mode_carries_tcp_and_udp() {
    let stats = run_site(
        "[runtime]\nmode = \"run-to-completion\"\noversubscribe = true\n\
         [[runtime.lcores]]\n[[runtime.lcores]]\n",
    );
    assert_traffic_flows(&stats);
    assert_eq!(stats["mode"], "run-to-completion");
}

#[test]
fn demo_command_writes_stats_with_the_documented_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.json");
    let status = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .args([
            "run",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.toml"),
            "--duration",
            "4",
            "--stats-out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(s["uptime_s"].as_f64().unwrap() >= 3.9);
    for port in ["lan", "wan-a", "wan-b", "wan-c"] {
        for k in ["rx_packets", "tx_packets", "rx_bytes", "tx_bytes"] {
            n(&s, &["ports", port, k]);
        }
    }
    for k in ["rx_packets", "tx_packets", "rx_bytes", "tx_bytes"] {
        assert!(n(&s, &["ports", "lan", k]) > 0, "ports.lan.{k} is zero");
    }
    for stage in ["classify", "replicate", "translate", "transmit"] {
        assert!(
            n(&s, &["stages", stage, "packets"]) > 0,
            "{stage} saw no packets"
        );
        assert_eq!(n(&s, &["stages", stage, "drops", "ring_full"]), 0);
    }
    let uplinks = s["uplinks"].as_array().unwrap();
    assert_eq!(uplinks.len(), 3);
    for u in uplinks {
        assert!(u["name"].is_string() && u["up"].is_boolean());
        n(u, &["tx_packets"]);
        n(u, &["rx_packets"]);
    }
    assert!(n(&uplinks[0], &["tx_packets"]) > 0);
    let ok = n(&s, &["sim", "tcp_connections_ok"]);
    assert!(ok > 100, "{ok} connections");
    assert!(n(&s, &["sim", "tcp_connections_failed"]) * 100 <= ok);
    assert!(n(&s, &["sim", "udp_requests"]) > 0 && n(&s, &["sim", "udp_replies"]) > 0);
}
