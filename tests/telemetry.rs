//! Prometheus metrics of a running appliance (`appliance run` on the
//! embedded sim demo, conf/demo.toml, with `[telemetry] prometheus` on a
//! free loopback port): the scrape passes `promtool check metrics`, a real
//! Prometheus server (started here on loopback, scraping every second)
//! stores it, and what its HTTP API answers for `appliance_nat_sessions`
//! and `appliance_uplink_up` agrees with `appliance stats --json` of the
//! same moment. The sample alert rules (conf/prometheus-alerts.yml) pass
//! `promtool check rules` and load into that server.
//!
//! Needs Debian's `prometheus` package (scripts/install-deps.sh): without
//! `promtool` or `prometheus` the test fails.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run, tool, Killed};
use serde_json::Value;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.toml");
const ALERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/prometheus-alerts.yml");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0 (no chunked answers): status and body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Starts the demo with metrics on `port`; waits for its control socket.
fn start_demo(dir: &Path, port: u16) -> (Killed, PathBuf) {
    let demo = std::fs::read_to_string(DEMO).unwrap();
    let conf = demo.replace(
        "# prometheus = \"127.0.0.1:9417\"",
        &format!("prometheus = \"127.0.0.1:{port}\""),
    );
    assert_ne!(
        conf, demo,
        "conf/demo.toml lost its commented prometheus key"
    );
    let path = dir.join("demo.toml");
    std::fs::write(&path, conf).unwrap();
    let socket = dir.join("ctl.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .args(["run", "--duration", "90", "--config"])
        .arg(&path)
        .arg("--socket")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Killed(child);
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no control socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, socket)
}

fn stats(socket: &Path) -> Value {
    let out = run(Command::new(env!("CARGO_BIN_EXE_appliance"))
        .args(["stats", "--json", "--socket"])
        .arg(socket));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Starts Prometheus scraping `target_port` every second, with the sample
/// alert rules; waits until it is ready.
fn start_prometheus(dir: &Path, target_port: u16) -> (Killed, u16) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {ALERTS}\n\
             scrape_configs:\n  - job_name: appliance\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ),
    )
    .unwrap();
    let child = Command::new(tool("prometheus", "prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("prometheus.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let child = Killed(child);
    let t0 = Instant::now();
    while !matches!(get(port, "/-/ready"), Ok((200, _))) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "prometheus not ready: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (child, port)
}

/// The API's answer to an instant query: (labels, value) per series.
fn query(port: u16, q: &str) -> Vec<(Value, f64)> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = get(port, &format!("/api/v1/query?query={enc}")).unwrap();
    assert_eq!(status, 200, "{q}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{body}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let x: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
            (r["metric"].clone(), x)
        })
        .collect()
}

fn label<'a>(m: &'a Value, k: &str) -> &'a str {
    m[k].as_str()
        .unwrap_or_else(|| panic!("no label {k} in {m}"))
}

/// Compares Prometheus' latest samples with the stats JSON read right
/// after the query; `Err` explains a disagreement.
fn compare(prom: u16, socket: &Path) -> Result<(), String> {
    let sessions = query(prom, "appliance_nat_sessions");
    let up = query(prom, "appliance_uplink_up");
    let s = stats(socket);
    let uplinks = s["uplinks"].as_array().unwrap();
    if up.len() != uplinks.len() || sessions.len() != 2 * uplinks.len() {
        return Err(format!("series: {up:?} {sessions:?}"));
    }
    for u in uplinks {
        let name = u["name"].as_str().unwrap();
        let p_up = up.iter().find(|(m, _)| label(m, "uplink") == name);
        let want = if u["up"].as_bool().unwrap() { 1.0 } else { 0.0 };
        if p_up.map(|x| x.1) != Some(want) {
            return Err(format!(
                "{name}: up {p_up:?} in Prometheus, {want} in stats"
            ));
        }
        for proto in ["tcp", "udp"] {
            let json = u[format!("{proto}_sessions")].as_u64().unwrap() as f64;
            let p = sessions
                .iter()
                .find(|(m, _)| label(m, "uplink") == name && label(m, "proto") == proto)
                .map(|x| x.1)
                .ok_or(format!("no {proto} sessions of {name}"))?;
            // A moving count: samples are up to a scrape interval (1 s)
            // older than the stats.
            let tolerance = 50.0 + json * 0.3;
            if (p - json).abs() > tolerance {
                return Err(format!(
                    "{name} {proto}: {p} in Prometheus, {json} in stats"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn prometheus_scrapes_metrics_that_match_the_stats() {
    let promtool = tool("promtool", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let (_demo, socket) = start_demo(dir.path(), metrics_port);

    // The scrape: the text format, checked by promtool (lint included).
    let (status, body) = get(metrics_port, "/metrics").unwrap();
    assert_eq!(status, 200, "{body}");
    for family in [
        "appliance_port_packets_total",
        "appliance_drops_total",
        "appliance_nat_sessions",
        "appliance_nat_sessions_limit",
        "appliance_uplink_up",
        "appliance_uplink_load",
        "appliance_races_total",
        "appliance_lcore_busy_ratio",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "{family}:\n{body}"
        );
    }
    let scrape = dir.path().join("scrape.txt");
    std::fs::write(&scrape, &body).unwrap();
    run(Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&scrape).unwrap()));
    run(Command::new(&promtool).args(["check", "rules", ALERTS]));
    assert_eq!(get(metrics_port, "/nope").unwrap().0, 404);

    // A real server scrapes it.
    let (_prom, prom) = start_prometheus(dir.path(), metrics_port);
    let t0 = Instant::now();
    while query(prom, "appliance_uplink_up").is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(30), "no sample scraped");
        std::thread::sleep(Duration::from_millis(250));
    }
    let target = query(prom, "up{job=\"appliance\"}");
    assert_eq!(target.len(), 1);
    assert_eq!(target[0].1, 1.0, "{target:?}");
    // The demo's sessions move: a few tries at agreeing.
    let mut last = Err(String::new());
    for _ in 0..5 {
        last = compare(prom, &socket);
        if last.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    last.unwrap();
    // Sessions were counted at all (the demo opens some within seconds).
    let total: f64 = query(prom, "sum(appliance_nat_sessions)")
        .first()
        .map_or(0.0, |x| x.1);
    assert!(total > 0.0, "no sessions in Prometheus");

    // The sample alerts load and evaluate without error.
    let (status, body) = get(prom, "/api/v1/rules").unwrap();
    assert_eq!(status, 200);
    let rules: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ApplianceNatTableNearlyFull",
            "ApplianceUplinkDown",
            "ApplianceNatPortsExhausted"
        ]
    );
}
