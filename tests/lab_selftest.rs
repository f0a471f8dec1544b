//! The netns lab checked without the appliance: `lab.sh up --kernel-router`
//! makes the app namespace a Linux router (masquerade out of wan-a), so the
//! wiring, the addresses and the delay lines can be verified on their own:
//! ping RTTs follow the configured one-way delays, HTTP over IPv4 and IPv6
//! returns a file's exact bytes, `lab.sh set` changes the delay and the loss
//! of a running delay line, and `down` removes everything.
//!
//! Needs root and network namespaces: it fails (never skips) without them.

mod common;

use std::time::Duration;

use common::lab::{ns_ok, ns_output, ping, wait_for_port, Lab, LabOptions, NsProcess};

/// One-way delay of isp-a for this test, ms (larger than the lab's default
/// 2 ms so that "the delay is there" stands out from scheduling noise).
const DELAY_A: f64 = 5.0;
/// Slack above 2 x delay allowed for a loaded 2-core machine, ms.
const SLACK_MS: f64 = 20.0;

fn assert_rtt(what: &str, p: &common::lab::Ping, one_way_ms: f64) {
    assert_eq!(p.received, p.sent, "{what}: replies lost: {p:?}");
    let floor = 2.0 * one_way_ms;
    // The delay line never sends early: every RTT is at least 2 x delay.
    assert!(
        p.min_ms() >= floor,
        "{what}: RTT {} ms below 2 x {one_way_ms} ms",
        p.min_ms()
    );
    assert!(
        p.median_ms() < floor + SLACK_MS,
        "{what}: median RTT {} ms, expected about {floor} ms",
        p.median_ms()
    );
    println!(
        "{what}: configured RTT {floor} ms, measured min {:.3} median {:.3} ms",
        p.min_ms(),
        p.median_ms()
    );
}

#[test]
fn kernel_router_lab_wiring_delay_and_loss() {
    let lab = Lab::up(&LabOptions {
        kernel_router: true,
        env: vec![("DELAY_A".into(), DELAY_A.to_string())],
    });
    let (cli, app, srv) = (lab.ns("cli"), lab.ns("app"), lab.ns("srv"));
    assert_eq!(lab.namespaces().len(), 6, "{:?}", lab.namespaces());

    // The addresses and MACs the appliance's config relies on.
    let link = ns_ok(&cli, &["ip", "-br", "link", "show", "eth0"]);
    assert!(link.contains("02:00:00:00:00:02"), "{link}");
    for (ifname, mac) in [
        ("lan0", "02:00:00:00:00:01"),
        ("wan-a", "02:00:00:00:0a:01"),
        ("wan-b", "02:00:00:00:0b:01"),
        ("wan-c", "02:00:00:00:0c:01"),
    ] {
        let link = ns_ok(&app, &["ip", "-br", "link", "show", ifname]);
        assert!(link.contains(mac) && link.contains("UP"), "{link}");
    }
    let feats = ns_ok(&lab.ns("isp-b"), &["ethtool", "-k", "up0"]);
    for off in [
        "tx-checksumming: off",
        "tcp-segmentation-offload: off",
        "generic-segmentation-offload: off",
        "generic-receive-offload: off",
    ] {
        assert!(feats.contains(off), "isp-b up0 offloads: {feats}");
    }

    // Through isp-a (masquerade) to the server, both families.
    let p = ping(&cli, "203.0.113.80", 1, Duration::from_millis(200), 5); // ARP/ND warm-up
    assert_eq!(p.received, 1, "first ping through the lab: {p:?}");
    let p = ping(&cli, "203.0.113.80", 20, Duration::from_millis(50), 2);
    assert_rtt("cli -> srv via isp-a (IPv4)", &p, DELAY_A);
    ping(&cli, "2001:db8:80::80", 1, Duration::from_millis(200), 5);
    let p = ping(&cli, "2001:db8:80::80", 10, Duration::from_millis(50), 2);
    assert_rtt("cli -> srv via isp-a (IPv6)", &p, DELAY_A);
    // The other two ISPs' wires, from the router to their routers.
    let p = ping(&app, "100.64.2.1", 3, Duration::from_millis(100), 2);
    assert_rtt("app -> isp-b router", &p, 15.0);
    let p = ping(&app, "2001:db8:c::1", 3, Duration::from_millis(100), 2);
    assert_rtt("app -> isp-c router (IPv6)", &p, 30.0);

    // HTTP: a file's exact bytes, several hundred segments each way.
    let dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.path().join("blob.bin"), &body).unwrap();
    let mut servers = Vec::new();
    for (bind, log) in [
        ("203.0.113.80", "http4.log"),
        ("2001:db8:80::80", "http6.log"),
    ] {
        servers.push(NsProcess::start(
            &srv,
            &[
                "/usr/bin/python3",
                "-m",
                "http.server",
                "--bind",
                bind,
                "8080",
            ],
            dir.path(),
            &dir.path().join(log),
        ));
    }
    wait_for_port(
        &srv,
        "203.0.113.80:8080".parse().unwrap(),
        Duration::from_secs(10),
    );
    wait_for_port(
        &srv,
        "[2001:db8:80::80]:8080".parse().unwrap(),
        Duration::from_secs(10),
    );
    for url in [
        "http://203.0.113.80:8080/blob.bin",
        "http://[2001:db8:80::80]:8080/blob.bin",
    ] {
        let out = ns_output(&cli, &["curl", "-sS", "-g", "--max-time", "30", url]);
        assert!(
            out.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == body,
            "curl {url}: {} bytes differ from the file",
            out.stdout.len()
        );
    }
    // The server saw the masqueraded address of isp-a, not the client's.
    for s in &mut servers {
        s.assert_running();
    }
    let log4 = servers[0].stop(Duration::from_secs(2));
    assert!(log4.contains("100.64.1.10"), "server log: {log4}");
    let log6 = servers[1].stop(Duration::from_secs(2));
    assert!(log6.contains("2001:db8:a::10"), "server log: {log6}");

    // Changing the running delay line's delay changes the RTT.
    let out = lab.set("isp-a", &["delay_ms=25"]);
    assert!(out.contains("delay_ms = 25"), "{out}");
    let p = ping(&cli, "203.0.113.80", 10, Duration::from_millis(50), 2);
    assert_rtt("cli -> srv via isp-a after set delay_ms=25", &p, 25.0);
    let stats = lab.delay_line_stats("isp-a");
    assert_eq!(stats["a_to_b"]["delay_ms"], 25.0, "{stats}");
    assert_eq!(stats["b_to_a"]["delay_ms"], 25.0, "{stats}");

    // Loss 1 drops everything, and the delay line counts it.
    let lost_before = stats["a_to_b"]["lost"].as_u64().unwrap();
    lab.set("isp-a", &["loss=1.0"]);
    let p = ping(&cli, "203.0.113.80", 3, Duration::from_millis(200), 1);
    assert_eq!(p.received, 0, "loss=1.0 yet replies came: {p:?}");
    // Stats are rewritten within ~250 ms of a change.
    std::thread::sleep(Duration::from_millis(600));
    let stats = lab.delay_line_stats("isp-a");
    assert!(
        stats["a_to_b"]["lost"].as_u64().unwrap() >= lost_before + 3,
        "{stats}"
    );
    // A bad value is refused by the script, the running settings stay.
    let out = lab
        .script()
        .args(["set", "isp-a", "loss=lots"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loss=lots"));
    // Back to no loss: traffic flows again.
    lab.set("isp-a", &["loss=0", "delay_ms=5"]);
    let p = ping(&cli, "203.0.113.80", 5, Duration::from_millis(50), 2);
    assert_rtt("cli -> srv via isp-a after loss=0", &p, 5.0);

    let status = lab.status();
    for isp in ["isp-a", "isp-b", "isp-c"] {
        assert!(
            status.contains(&format!("{isp}: delay line pid")),
            "{status}"
        );
    }
    assert!(!status.contains("STOPPED"), "{status}");

    // Down removes everything and may be repeated.
    let run_dir = lab.run_dir.clone();
    assert!(lab.down().status.success());
    assert!(lab.namespaces().is_empty(), "{:?}", lab.namespaces());
    assert!(!run_dir.exists());
    assert!(lab.down().status.success(), "down twice");
}
