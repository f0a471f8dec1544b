//! The netns lab checked without the appliance: `lab.sh up --kernel-router`
//! makes the app namespace a Linux router (masquerade out of wan-a), so the
//! wiring, the addresses and the delay lines can be verified on their own:
//! ping RTTs follow the configured one-way delays, HTTP over IPv4 and IPv6
//! returns a file's exact bytes, `lab.sh set` changes the delay and the loss
//! of a running delay line, and `down` removes everything.
//!
//! A second test checks the lab as the appliance gets it (no
//! --kernel-router): the app namespace's kernel is silent and the server's
//! and client's ARP requests reach its ports through the delay lines.
//!
//! Needs root and network namespaces: it fails (never skips) without them.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use appliance::ports::linux::rawsock::{enter_netns, poll_readable, RawSocket};
use common::lab::{ns_cmd, ns_ok, ns_output, ping, wait_for_port, Lab, LabOptions, NsProcess};

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

/// The frame on `sock` within `wait` that `pred` accepts, with its arrival.
fn wait_frame(
    sock: &RawSocket,
    wait: Duration,
    pred: impl Fn(&[u8]) -> bool,
) -> Option<(Vec<u8>, Instant)> {
    let until = Instant::now() + wait;
    let mut buf = vec![0u8; 2048];
    while Instant::now() < until {
        poll_readable(&[sock.fd()], Duration::from_millis(10)).unwrap();
        while let Some(n) = sock.recv(&mut buf).unwrap() {
            if pred(&buf[..n]) {
                return Some((buf[..n].to_vec(), Instant::now()));
            }
        }
    }
    None
}

/// An ARP request for `target`.
fn is_arp_request_for(f: &[u8], target: [u8; 4]) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 1] && f[38..42] == target
}

/// The lab as the appliance gets it: the app namespace's kernel stays
/// silent on every port (no addresses, IPv6 off), the client's and the
/// server's ARP requests for the gateway and the NAT addresses reach the
/// app namespace's ports, through each ISP's delay line.
#[test]
fn appliance_mode_lab_is_wired_and_silent() {
    let lab = Lab::up(&LabOptions::default());
    let (app, srv, cli) = (lab.ns("app"), lab.ns("srv"), lab.ns("cli"));
    let addrs = ns_ok(&app, &["ip", "-o", "addr", "show"]);
    assert!(
        addrs.lines().all(|l| l.contains(" lo ")),
        "app namespace has addresses: {addrs}"
    );
    let s = lab.delay_line_stats("isp-b");
    assert_eq!(s["a_to_b"]["delay_ms"], 15.0, "{s}");

    // Raw sockets on the app namespace's ports.
    let app_ns = app.clone();
    let (srv2, cli2) = (srv.clone(), cli.clone());
    std::thread::spawn(move || {
        enter_netns(&app_ns).unwrap();
        let ports: Vec<RawSocket> = ["lan0", "wan-a", "wan-b", "wan-c"]
            .iter()
            .map(|i| RawSocket::open(i).unwrap())
            .collect();
        // Server -> NAT address of each ISP: its ARP request crosses that
        // ISP's delay line (one way: 2, 15, 30 ms) to that port only.
        for (i, (addr, one_way_ms)) in [("100.64.1.10", 2u64), ("100.64.2.10", 15), ("100.64.3.10", 30)]
            .into_iter()
            .enumerate()
        {
            let target: std::net::Ipv4Addr = addr.parse().unwrap();
            let sent = Instant::now();
            let mut ping = ns_cmd(&srv2, &["ping", "-c", "1", "-W", "1", addr])
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let got = wait_frame(&ports[1 + i], Duration::from_secs(3), |f| {
                is_arp_request_for(f, target.octets())
            });
            let _ = ping.wait();
            let (frame, at) = got.unwrap_or_else(|| panic!("no ARP for {addr} on wan port {i}"));
            let isp_mac = [2, 0, 0, 0, [0x0a, 0x0b, 0x0c][i], 0xfe];
            assert_eq!(frame[6..12], isp_mac, "ARP for {addr} not from the ISP router");
            let took = at.duration_since(sent);
            assert!(
                took >= Duration::from_millis(one_way_ms),
                "ARP for {addr} after {took:?}, under the {one_way_ms} ms delay"
            );
            println!("srv ARP for {addr} reached the app namespace after {took:?} (delay {one_way_ms} ms)");
        }
        // Client -> its gateway, on lan0 (no delay line on the LAN).
        let mut ping = ns_cmd(&cli2, &["ping", "-c", "1", "-W", "1", "10.0.0.1"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let got = wait_frame(&ports[0], Duration::from_secs(3), |f| {
            is_arp_request_for(f, [10, 0, 0, 1])
        });
        let _ = ping.wait();
        let (frame, _) = got.expect("client's ARP for 10.0.0.1 on lan0");
        assert_eq!(frame[6..12], [2, 0, 0, 0, 0, 2]);
    })
    .join()
    .expect("app namespace checks");

    // Nothing leaves the app namespace's kernel: watch the far ends.
    let quiet = std::thread::spawn({
        let (srv, cli) = (srv.clone(), cli.clone());
        move || {
            let watch = |ns: &str, ifs: &[&str]| -> Vec<RawSocket> {
                enter_netns(ns).unwrap();
                ifs.iter().map(|i| RawSocket::open(i).unwrap()).collect()
            };
            let mut socks = watch(&srv, &["isp-a0", "isp-b0", "isp-c0"]);
            socks.extend(watch(&cli, &["eth0"]));
            let app_macs: [[u8; 6]; 4] = [
                [2, 0, 0, 0, 0, 1],
                [2, 0, 0, 0, 0x0a, 1],
                [2, 0, 0, 0, 0x0b, 1],
                [2, 0, 0, 0, 0x0c, 1],
            ];
            let mut from_app = 0;
            let until = Instant::now() + Duration::from_millis(1500);
            let mut buf = vec![0u8; 2048];
            while Instant::now() < until {
                let fds: Vec<_> = socks.iter().map(|s| s.fd()).collect();
                poll_readable(&fds, Duration::from_millis(20)).unwrap();
                for s in &socks {
                    while let Some(n) = s.recv(&mut buf).unwrap() {
                        if n >= 12 && app_macs.iter().any(|m| buf[6..12] == m[..]) {
                            from_app += 1;
                        }
                    }
                }
            }
            from_app
        }
    });
    assert_eq!(
        quiet.join().unwrap(),
        0,
        "the app namespace's kernel sent frames"
    );

    let status = lab.status();
    assert!(!status.contains("STOPPED"), "{status}");
    assert!(lab.down().status.success());
    assert!(lab.namespaces().is_empty());
}
