//! The NAT event log of a running appliance (`appliance run` on the
//! embedded sim demo, conf/demo.toml, with `[telemetry.nat_log]` set to a
//! JSON lines file and an IPFIX collector): a real collector no one here
//! wrote, nfdump's `nfcapd` (started here on loopback), decodes the RFC 8158
//! NAT events; `nfdump -o json` reads them back with their natEvent and
//! post-NAT addresses and ports, which match the JSON log's, and every
//! session `appliance sessions --json` lists while the demo runs is in both.
//!
//! Needs Debian's `nfdump` package (scripts/install-deps.sh): without
//! `nfcapd` or `nfdump` the test fails.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run, tool, Killed};
use serde_json::Value;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.toml");

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The demo's config with the NAT log on: `json` and the collector `port`.
fn config(dir: &Path, json: &Path, port: u16) -> PathBuf {
    let demo = std::fs::read_to_string(DEMO).unwrap();
    let conf = demo
        .replace("# [telemetry.nat_log]", "[telemetry.nat_log]")
        .replace(
            "# json_file = \"/var/log/appliance/nat.jsonl\"",
            &format!("json_file = {:?}", json.display().to_string()),
        )
        .replace(
            "# ipfix_collector = \"127.0.0.1:4739\"",
            &format!("ipfix_collector = \"127.0.0.1:{port}\""),
        )
        .replace(
            "# ipfix_template_refresh_s = 60",
            "ipfix_template_refresh_s = 1",
        );
    assert_eq!(
        conf.matches("\n[telemetry.nat_log]").count()
            + conf.matches("json_file = \"/").count()
            + conf.matches("ipfix_collector = \"127.0.0.1:").count()
            + conf.matches("ipfix_template_refresh_s = 1\n").count(),
        4,
        "conf/demo.toml lost its commented [telemetry.nat_log] keys"
    );
    let path = dir.join("demo.toml");
    std::fs::write(&path, conf).unwrap();
    path
}

/// Outside `address:port`s of the JSON log's events of `kinds` (IPv4).
fn log_outsides(lines: &[Value], kinds: &[&str]) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|v| kinds.contains(&v["kind"].as_str().unwrap_or("")))
        .filter_map(|v| v["outside"].as_str())
        .filter(|o| !o.starts_with('['))
        .map(str::to_string)
        .collect()
}

#[test]
fn nat_events_reach_nfcapd_and_the_json_log_alike() {
    let (nfcapd, nfdump) = (tool("nfcapd", "nfdump"), tool("nfdump", "nfdump"));
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    let json = dir.path().join("nat.jsonl");
    let port = free_udp_port();
    let mut collector = Killed(
        Command::new(nfcapd)
            .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-w"])
            .arg(&flows)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("nfcapd.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let conf = config(dir.path(), &json, port);
    let socket = dir.path().join("ctl.sock");
    let mut demo = Killed(
        Command::new(env!("CARGO_BIN_EXE_appliance"))
            .args(["run", "--duration", "8", "--config"])
            .arg(&conf)
            .arg("--socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no control socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    let out = run(Command::new(env!("CARGO_BIN_EXE_appliance"))
        .args(["sessions", "--json", "--limit", "100000", "--socket"])
        .arg(&socket));
    let listed: Vec<Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter::<Value>()
        .flat_map(|v| match v.unwrap() {
            Value::Array(a) => a,
            v => vec![v],
        })
        .collect();
    let stats: Value = serde_json::from_slice(
        &run(Command::new(env!("CARGO_BIN_EXE_appliance"))
            .args(["stats", "--json", "--socket"])
            .arg(&socket))
        .stdout,
    )
    .unwrap();
    // The run ends by itself (its last events written), then the collector
    // is stopped (SIGTERM: it closes its file).
    assert!(demo.0.wait().unwrap().success(), "appliance run failed");
    run(Command::new("kill").args(["-TERM", &collector.0.id().to_string()]));
    let _ = collector.0.wait();
    // nfcapd's own account at exit: our sequence numbers and messages.
    let log = std::fs::read_to_string(dir.path().join("nfcapd.log")).unwrap();
    assert!(
        log.contains("Sequence Errors: 0, Bad Packets: 0"),
        "nfcapd: {log}"
    );

    assert_eq!(stats["events"]["lost"], 0, "{:#}", stats["events"]);
    assert!(
        stats["nat_log"]["written"].as_u64().unwrap() > 0,
        "{stats:#}"
    );
    assert!(
        stats["nat_log"]["ipfix_sent"].as_u64().unwrap() > 0,
        "{stats:#}"
    );
    assert_eq!(stats["nat_log"]["errors"], 0, "{:#}", stats["nat_log"]);

    let text = std::fs::read_to_string(&json).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(lines.len() > 100, "{} events logged", lines.len());
    for v in &lines {
        assert!(
            v["unix_ms"].as_u64().is_some() && v["kind"].is_string(),
            "{v}"
        );
    }

    let out = run(Command::new(nfdump)
        .arg("-R")
        .arg(&flows)
        .args(["-o", "json"]));
    let records: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "nfdump -o json: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let nf = |event: &str| -> BTreeSet<String> {
        records
            .iter()
            .filter(|r| r["nat_event_id"] == event)
            .map(|r| {
                format!(
                    "{}:{}",
                    r["src4_xlt_ip"].as_str().unwrap(),
                    r["src_xlt_port"].as_str().unwrap()
                )
            })
            .collect()
    };
    // natEvent 4 (NAT44 session create): created sessions and decided races.
    let created = log_outsides(&lines, &["session_created", "race_decided"]);
    assert!(created.len() > 100, "{} outside endpoints", created.len());
    assert_eq!(nf("4"), created, "collector's creates vs the JSON log's");
    // natEvent 5 (NAT44 session delete): expired and flushed ones.
    let deleted = log_outsides(&lines, &["session_expired", "session_flushed"]);
    assert_eq!(nf("5"), deleted, "collector's deletes vs the JSON log's");
    // The collector's records carry the inside and remote endpoints too.
    let inside_of = |o: &str| {
        lines
            .iter()
            .find(|v| v["outside"] == o)
            .map(|v| v["inside"].as_str().unwrap().to_string())
    };
    for r in records
        .iter()
        .filter(|r| r["nat_event_id"] == "4")
        .take(200)
    {
        let o = format!(
            "{}:{}",
            r["src4_xlt_ip"].as_str().unwrap(),
            r["src_xlt_port"].as_str().unwrap()
        );
        let i = format!("{}:{}", r["src4_addr"].as_str().unwrap(), r["src_port"]);
        assert_eq!(inside_of(&o), Some(i), "{r}");
    }

    // Every session listed while the demo ran is in the log, with its
    // inside endpoint, its remote and its uplink.
    assert!(listed.len() > 100, "{} sessions listed", listed.len());
    let mut missing = Vec::new();
    for s in &listed {
        let found = lines.iter().any(|v| {
            v["kind"] == "session_created"
                && v["outside"] == s["outside"]
                && v["inside"] == s["inside"]
                && v["remote"] == s["remote"]
                && v["uplink"] == s["uplink"]
        });
        if !found {
            missing.push(s.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} listed sessions not in the log, e.g. {:?}",
        missing.len(),
        listed.len(),
        missing.first()
    );
}

/// Waits until `path` exists and is not empty.
fn wait_for_lines(path: &Path, what: &str) {
    let t0 = Instant::now();
    while std::fs::metadata(path).map_or(0, |m| m.len()) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(15), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigusr1_and_reload_reopen_the_json_log_for_logrotate() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("nat.jsonl");
    // A collector nobody listens on: sends succeed (UDP) or count errors.
    let conf = config(dir.path(), &json, free_udp_port());
    let socket = dir.path().join("ctl.sock");
    let mut demo = Killed(
        Command::new(env!("CARGO_BIN_EXE_appliance"))
            .args(["run", "--duration", "60", "--config"])
            .arg(&conf)
            .arg("--socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_lines(&json, "no event logged");
    // logrotate: move the file away, then SIGUSR1.
    let first = dir.path().join("nat.jsonl.1");
    std::fs::rename(&json, &first).unwrap();
    run(Command::new("kill").args(["-USR1", &demo.0.id().to_string()]));
    wait_for_lines(&json, "SIGUSR1 did not reopen the log");
    // The same with `appliance reload` (nothing changed: still reopens).
    let second = dir.path().join("nat.jsonl.2");
    std::fs::rename(&json, &second).unwrap();
    run(Command::new(env!("CARGO_BIN_EXE_appliance"))
        .args(["reload", "--socket"])
        .arg(&socket));
    wait_for_lines(&json, "reload did not reopen the log");
    let stats: Value = serde_json::from_slice(
        &run(Command::new(env!("CARGO_BIN_EXE_appliance"))
            .args(["stats", "--json", "--socket"])
            .arg(&socket))
        .stdout,
    )
    .unwrap();
    run(Command::new("kill").args(["-TERM", &demo.0.id().to_string()]));
    assert!(demo.0.wait().unwrap().success());
    let count = |p: &Path| {
        let text = std::fs::read_to_string(p).unwrap();
        for l in text.lines() {
            serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        }
        text.lines().count() as u64
    };
    let (a, b, c) = (count(&first), count(&second), count(&json));
    assert!(a > 0 && b > 0 && c > 0, "{a} {b} {c}");
    assert!(
        stats["nat_log"]["written"].as_u64().unwrap() <= a + b + c,
        "{:#}",
        stats["nat_log"]
    );
}

/// The set ids of one IPFIX message (RFC 7011: a 16-byte header, then
/// sets of id + length).
fn set_ids(m: &[u8]) -> Vec<u16> {
    let mut ids = Vec::new();
    let len = m
        .get(2..4)
        .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
    assert_eq!(len, m.len(), "message length");
    assert_eq!(&m[..2], &10u16.to_be_bytes(), "IPFIX version 10");
    let mut at = 16;
    while at + 4 <= m.len() {
        let id = u16::from_be_bytes([m[at], m[at + 1]]);
        let l = usize::from(u16::from_be_bytes([m[at + 2], m[at + 3]]));
        assert!(l >= 4 && at + l <= m.len(), "set length {l} at {at}");
        ids.push(id);
        at += l;
    }
    ids
}

/// `ipfix_template_refresh_s = 1` over a 4-second run: the template set
/// (set id 2) goes at start and again every second (a collector that
/// started late or restarted learns it), between messages of data records
/// (the templates' ids 256, 257) that do not repeat it.
#[test]
fn ipfix_templates_are_sent_again_every_refresh_interval() {
    let dir = tempfile::tempdir().unwrap();
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = collector.local_addr().unwrap().port();
    collector
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let conf = config(dir.path(), &dir.path().join("nat.jsonl"), port);
    let mut demo = Killed(
        Command::new(env!("CARGO_BIN_EXE_appliance"))
            .args(["run", "--duration", "4", "--config"])
            .arg(&conf)
            .arg("--socket")
            .arg(dir.path().join("ctl.sock"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (mut templates, mut data) = (Vec::new(), 0);
    let t0 = Instant::now();
    let mut buf = vec![0u8; 65_536];
    loop {
        match collector.recv(&mut buf) {
            Ok(n) => {
                let ids = set_ids(&buf[..n]);
                if ids.contains(&2) {
                    templates.push(t0.elapsed());
                }
                data += ids.iter().filter(|&&i| i >= 256).count();
            }
            Err(_) => {
                if demo.0.try_wait().unwrap().is_some() {
                    break;
                }
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the run did not end"
        );
    }
    assert!(demo.0.wait().unwrap().success());
    assert!(data > 10, "data sets: {data}");
    assert!(
        (4..=7).contains(&templates.len()),
        "template sets at {templates:?} over a 4 s run refreshed every 1 s"
    );
    assert!(
        templates.len() < data,
        "templates repeat with every message: {} vs {data}",
        templates.len()
    );
}

/// A flood of new sessions (20,000 UDP flows from 40 LAN hosts, read from
/// a pcap as fast as the lcore takes them) with an event ring of 16: the
/// NAT log loses events, counted in `events.lost`, while every packet is
/// forwarded (the log never holds the data plane back); every session's
/// event is logged, counted lost, or still in a ring at the stop.
#[test]
fn a_flood_of_new_sessions_loses_events_counted_and_forwards_everything() {
    use appliance::config::site::SiteToml;
    use common::{frame, read_capture, udp, write_capture};
    const HOSTS: u32 = 40;
    const PORTS: u16 = 500;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let json = dir.path().join("nat.jsonl");
    let mut frames = Vec::new();
    for p in 0..PORTS {
        for h in 0..HOSTS {
            let src = format!("10.0.{}.{}", 1 + h / 200, 1 + h % 200);
            frames.push(frame(
                &src,
                "203.0.113.7",
                17,
                udp(20_000 + p, 53, b"flood"),
                6,
            ));
        }
    }
    let sent = frames.len() as u64;
    write_capture(&dir.path().join("in.pcap"), &frames);
    let text = SiteToml::one_uplink("pcap", &["198.51.100.1"])
        .lan_key("pcap_in", &format!("{d}/in.pcap"))
        .port_key("wan", "pcap_out", &format!("{d}/wan-out.pcap"))
        .section(&format!(
            "[telemetry]\nevent_ring_size = 16\n[telemetry.nat_log]\njson_file = {:?}\n",
            json.display().to_string()
        ))
        .to_string();
    let plan =
        appliance::config::plan::validate(&appliance::config::parse(&text).unwrap()).unwrap();
    assert_eq!(plan.event_ring_size, 16);
    let stats = appliance::runtime::run(&plan, &appliance::runtime::RunOptions::default()).unwrap();
    let wan = read_capture(&dir.path().join("wan-out.pcap"));
    assert_eq!(wan.len() as u64, sent, "forwarded: {:#}", stats["stages"]);
    assert_eq!(stats["nat"]["udp_sessions"].as_u64(), Some(sent));
    let lost = stats["events"]["lost"].as_u64().unwrap();
    assert!(
        lost > 0,
        "a ring of 16 kept up with the flood: {:#}",
        stats["events"]
    );
    let logged = std::fs::read_to_string(&json).unwrap().lines().count() as u64;
    let log_lost = stats["nat_log"]["lost"].as_u64().unwrap();
    println!("sent {sent}; events logged {logged}, lost in the rings {lost}, in the log queue {log_lost}");
    assert!(logged > 0);
    // What no one took before the stop stays behind: at most a ring's
    // worth per translate lcore in its ring, and as much taken by the last
    // drain into the log's queue after the log thread's last turn.
    let lcores = stats["lcores"].as_array().unwrap().len() as u64;
    let accounted = logged + lost + log_lost;
    assert!(
        accounted <= sent && sent - accounted <= 2 * 16 * lcores,
        "{accounted} of {sent}: {:#} {:#}",
        stats["events"],
        stats["nat_log"]
    );
}
