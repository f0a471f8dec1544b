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
fn site(runtime: &str) -> appliance::config::plan::Plan {
    let start = demo().find("[runtime]").unwrap();
    let end = demo().find("# The simulated site.").unwrap();
    let text = format!("{}{}\n{}", &demo()[..start], runtime, &demo()[end..])
        .replace("clients = 300", "clients = 60")
        .replace("servers = 30", "servers = 6")
        .replace("tcp_interval_ms = 1000", "tcp_interval_ms = 300")
        .replace("udp_interval_ms = 1000", "udp_interval_ms = 300");
    let cfg = appliance::config::parse(&text).unwrap();
    appliance::config::plan::validate(&cfg).unwrap()
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

/// Seed 000 [73]-[75] on the simulated site: while the clients run, their
/// traffic leaves with uplink addresses (the site routes nothing else from
/// an uplink port: `unroutable` stays 0), replies come back translated, and
/// the per-uplink TCP and artificial UDP session counts show the load; once
/// the clients stop, the sweep expires every session after the (short)
/// timeouts and the counts fall back to zero.
#[test]
fn session_counts_follow_the_clients_and_fall_to_zero_after_they_stop() {
    let text = {
        let d = demo();
        let start = d.find("[runtime]").unwrap();
        let end = d.find("# The simulated site.").unwrap();
        format!(
            "{}[runtime]\nmode = \"run-to-completion\"\noversubscribe = true\n[[runtime.lcores]]\n[[runtime.lcores]]\n\n{}",
            &d[..start],
            &d[end..]
        )
        .replace("udp_idle_timeout_s = 180", "udp_idle_timeout_s = 1")
        .replace("tcp_established_timeout_s = 7440", "tcp_established_timeout_s = 2")
        .replace("tcp_transitory_timeout_s = 240", "tcp_transitory_timeout_s = 1")
        .replace("tcp_closed_timeout_s = 10", "tcp_closed_timeout_s = 1")
        .replace("sweep_interval_ms = 1000", "sweep_interval_ms = 100")
        .replace("clients = 300", "clients = 60")
        .replace("servers = 30", "servers = 6")
        .replace("tcp_interval_ms = 1000", "tcp_interval_ms = 200")
        .replace("udp_interval_ms = 1000", "udp_interval_ms = 200")
    };
    assert!(
        text.contains("sweep_interval_ms = 100"),
        "demo.toml changed its NAT lines"
    );
    let plan =
        appliance::config::plan::validate(&appliance::config::parse(&text).unwrap()).unwrap();
    let rt = appliance::runtime::Runtime::start(&plan).unwrap();
    std::thread::sleep(Duration::from_secs(2));

    let busy = rt.stats();
    let load = |s: &Value, u: usize| {
        n(&s["uplinks"][u], &["tcp_sessions"]) + n(&s["uplinks"][u], &["udp_sessions"])
    };
    assert!(n(&busy["uplinks"][0], &["tcp_sessions"]) > 0, "{busy:#}");
    assert!(n(&busy["uplinks"][0], &["udp_sessions"]) > 0, "{busy:#}");
    assert_eq!(n(&busy["uplinks"][0], &["load"]), load(&busy, 0));
    assert_eq!(
        n(&busy, &["nat", "tcp_sessions"]) + n(&busy, &["nat", "udp_sessions"]),
        (0..3).map(|u| load(&busy, u)).sum::<u64>()
    );
    assert!(n(&busy, &["sim", "udp_replies"]) > 0 && n(&busy, &["sim", "tcp_connections_ok"]) > 0);
    assert!(
        n(&busy["uplinks"][0], &["rx_packets"]) > 0,
        "replies came back translated"
    );
    assert_eq!(
        n(&busy, &["sim", "unroutable"]),
        0,
        "everything left with a NAT address"
    );

    rt.sim().unwrap().pause_clients(true);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let idle = loop {
        std::thread::sleep(Duration::from_millis(200));
        let s = rt.stats();
        let live = n(&s, &["nat", "tcp_sessions"]) + n(&s, &["nat", "udp_sessions"]);
        if live == 0 || std::time::Instant::now() > deadline {
            break s;
        }
    };
    let stats = rt.stop();
    for u in 0..3 {
        assert_eq!(load(&idle, u), 0, "uplink {u}: {idle:#}");
    }
    assert_eq!(n(&idle, &["nat", "mappings"]), 0);
    assert!(n(&idle, &["nat", "expired"]) >= n(&busy, &["nat", "tcp_sessions"]));
    assert_eq!(
        n(&stats, &["nat", "created"]),
        n(&stats, &["nat", "expired"]) + n(&stats, &["nat", "race_closed"]),
        "every session went by expiry, or as a race loser its server answered"
    );
    assert!(n(&stats, &["nat", "race_closed"]) > 0, "races were run");
    assert!(n(&stats, &["nat", "sweep_laps"]) > 0);
}
