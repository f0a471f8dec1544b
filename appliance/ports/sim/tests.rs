//! Tests of the sim backend against the real pipeline stages, driven by a
//! minimal single-threaded appliance loop in real time.

use std::time::{Duration, Instant};

use pipelines::stages::classify::Classify;
use pipelines::stages::replicate::Replicate;
use pipelines::stages::translate::Translate;
use pipelines::stages::transmit::Transmit;
use pipelines::{Burst, DropReason, HeapBuf, HeapPool, Nanos, StageCounters, BURST_MAX};

use super::*;
use crate::config::parse;
use crate::config::plan::validate_with_cpus;

/// One LAN port, one uplink on a VLAN-tagged port (both L2 shapes).
fn site_toml(clients: usize, servers: usize, tcp_ms: u64, udp_ms: u64, timeout_ms: u64) -> String {
    crate::config::site::SiteToml::new("sim")
        .lan_port("lan0", "02:00:00:00:00:01")
        .addresses(&["10.0.0.1"])
        .port("wan0", "02:00:00:00:01:01")
        .port_raw("wan0", "vlan = 100")
        .uplink("isp1", "wan0", &["198.51.100.1"], "02:00:00:00:02:01")
        .section(&format!(
            r#"
[runtime]
mode = "run-to-completion"
pool_size = 8192

[[runtime.lcores]]

[sim]
seed = 7
clients = {clients}
servers = {servers}
client_base = "10.0.1.1"
server_base = "203.0.113.1"
tcp_interval_ms = {tcp_ms}
udp_interval_ms = {udp_ms}
tcp_request_bytes = 300
tcp_response_bytes = 5000
tcp_timeout_ms = {timeout_ms}
udp_timeout_ms = {timeout_ms}

[[sim.uplinks]]
name = "isp1"
delay_ms = 5.0
jitter_ms = 2.0
"#
        ))
        .to_string()
}

fn plan_of(toml: &str) -> Plan {
    let cfg = parse(toml).expect("test config parses");
    validate_with_cpus(&cfg, 2).expect("test config validates")
}

/// The four stages on one lcore over the sim's queues.
struct MiniAppliance {
    classify: Classify,
    replicate: Replicate,
    translate: Translate,
    transmit: Transmit,
    ports: Vec<PortQueues<HeapBuf>>,
    per_port: Vec<Burst<HeapBuf>>,
    epoch: Instant,
}

impl MiniAppliance {
    fn new(plan: &Plan, ports: Vec<PortQueues<HeapBuf>>) -> Self {
        let topo = plan.topology.clone();
        MiniAppliance {
            classify: Classify::with_neighbours(topo.clone(), plan.neighbours.clone()),
            replicate: Replicate::new(topo.clone()),
            translate: Translate::new(topo.clone(), 0, plan.nat.clone()),
            transmit: Transmit::with_neighbours(topo, plan.neighbours.clone()),
            per_port: ports.iter().map(|_| Burst::new()).collect(),
            ports,
            epoch: Instant::now(),
        }
    }

    /// One loop turn over every RX queue; returns the packets received.
    fn turn(&mut self) -> usize {
        let now = Nanos(self.epoch.elapsed().as_nanos() as u64);
        let mut moved = 0;
        for p in 0..self.ports.len() {
            for q in 0..self.ports[p].rx.len() {
                let mut rx = Burst::new();
                let n = self.ports[p].rx[q].rx_burst(&mut rx, BURST_MAX);
                if n == 0 {
                    continue;
                }
                moved += n;
                let mut a = Burst::new();
                self.classify.process(&mut rx, &mut a);
                // Race copies can outgrow a burst: each stage is called
                // again for what it left.
                while !a.is_empty() {
                    let mut b = Burst::new();
                    self.replicate.process(now, &mut a, &mut b);
                    while !b.is_empty() {
                        let mut c = Burst::new();
                        self.translate.process(now, &mut b, &mut c);
                        while !c.is_empty() {
                            self.transmit.process(&mut c, &mut self.per_port);
                            for (out, port) in self.per_port.iter_mut().zip(&mut self.ports) {
                                if !out.is_empty() {
                                    port.tx[0].tx_burst(out);
                                    self.transmit.tx_rejected(out.len());
                                    out.clear();
                                }
                            }
                        }
                    }
                }
            }
        }
        self.translate.sweep(now);
        moved
    }

    fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.turn() == 0 {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    fn drops(&self) -> String {
        let show = |name: &str, c: &StageCounters| {
            let d: Vec<String> = DropReason::ALL
                .iter()
                .filter(|r| c.drops(**r) > 0)
                .map(|r| format!("{}={}", r.as_str(), c.drops(*r)))
                .collect();
            format!(
                "{name}: packets={} drops=[{}]",
                c.packets.get(),
                d.join(" ")
            )
        };
        [
            show("classify", &self.classify.counters),
            show("replicate", &self.replicate.counters),
            show("translate", &self.translate.counters),
            show("transmit", &self.transmit.counters),
        ]
        .join("; ")
    }
}

fn open(toml: &str) -> (SimSite, MiniAppliance) {
    let plan = plan_of(toml);
    let pool = HeapPool::new_static(plan.pool_size);
    let (ports, site) = SimSite::open(&plan, pool).expect("sim site opens");
    assert_eq!(ports.len(), 2);
    assert!(ports
        .iter()
        .all(|p| p.rx.len() == plan.rx_queues && p.tx.len() == plan.tx_queues));
    (site, MiniAppliance::new(&plan, ports))
}

#[test]
fn tcp_and_udp_cross_the_appliance() {
    let (mut site, mut app) = open(&site_toml(20, 4, 200, 200, 1500));
    site.start();
    app.run_for(Duration::from_millis(2500));
    let s = site.stop();
    let diag = format!("{s:#?}\n{}", app.drops());
    println!("{diag}");
    assert!(s.tcp_connections_ok > 50, "{diag}");
    assert!(
        s.tcp_connections_failed <= s.tcp_connections_ok / 50,
        "{diag}"
    );
    // Two 5 ms (+ up to 2 ms jitter) one-way paths: a SYN/SYN-ACK round trip
    // takes 10-14 ms plus scheduling.
    assert!(
        s.tcp_connect_ms_mean >= 9.0 && s.tcp_connect_ms_mean < 50.0,
        "{diag}"
    );
    assert!(s.udp_requests > 50 && s.udp_replies > 50, "{diag}");
    assert!(s.udp_timeouts <= s.udp_requests / 50, "{diag}");
    assert_eq!(s.unroutable + s.rx_nombuf + s.rx_queue_full, 0, "{diag}");
    assert!(
        s.frames_to_appliance > 0 && s.frames_from_appliance > 0,
        "{diag}"
    );
    let u = &s.uplinks[0];
    assert_eq!(u.name, "isp1");
    assert!(
        u.frames_up > 0 && u.frames_down > 0 && u.lost == 0,
        "{diag}"
    );
}

#[test]
fn total_loss_on_the_only_uplink_fails_connections_until_lifted() {
    let (mut site, mut app) = open(&site_toml(20, 4, 100, 100, 800));
    let handle = site.handle();
    site.start();
    app.run_for(Duration::from_millis(1200));
    let before = handle.stats();
    assert!(
        before.tcp_connections_ok > 20 && before.tcp_connections_failed == 0,
        "{before:#?}"
    );

    handle.set_uplink(0, 5.0, 0.0, 1.0);
    app.run_for(Duration::from_millis(2000));
    let during = handle.stats();
    assert_eq!(during.uplinks[0].loss, 1.0);
    let ok = during.tcp_connections_ok - before.tcp_connections_ok;
    let failed = during.tcp_connections_failed - before.tcp_connections_failed;
    // Only exchanges whose last segments were already through can still end OK.
    assert!(
        failed > 50 && ok <= 10,
        "ok +{ok} failed +{failed}\n{during:#?}\n{}",
        app.drops()
    );
    assert!(
        during.udp_timeouts > before.udp_timeouts + 20,
        "{during:#?}"
    );
    assert!(during.uplinks[0].lost > 0);

    handle.set_uplink(0, 5.0, 0.0, 0.0);
    // Retransmissions of the lossy period drain first (up to 2 s backoff).
    app.run_for(Duration::from_millis(1500));
    let after = site.stop();
    println!(
        "before {before:?}\nduring {during:?}\nafter {after:?}\n{}",
        app.drops()
    );
    assert!(
        after.tcp_connections_ok > during.tcp_connections_ok + 20,
        "{after:#?}\n{}",
        app.drops()
    );
    let json = BackendControl::stats(&handle);
    assert_eq!(json["uplinks"][0]["name"], "isp1");
    assert!(json["tcp_connections_ok"]
        .as_u64()
        .is_some_and(|n| n >= after.tcp_connections_ok));
}

#[test]
fn delay_line_keeps_order_and_loses_everything_at_loss_one() {
    let plan = plan_of(&site_toml(2, 1, 1000, 0, 1000));
    let pool = HeapPool::new_static(plan.pool_size);
    let (_ports, mut site) = SimSite::open(&plan, pool).unwrap();
    let handle = site.handle();
    let inner = site.site.as_mut().unwrap();
    handle.set_uplink(0, 3.0, 50.0, 0.0);
    for i in 0..200u64 {
        inner.offer_up_for_test(i * 10, vec![0; 20]);
    }
    let times = inner.up_release_times_for_test();
    assert_eq!(times.len(), 200);
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "release times go backwards"
    );
    assert!(times
        .iter()
        .enumerate()
        .all(|(i, &t)| t >= i as u64 * 10 + 3000));
    handle.set_uplink(0, 3.0, 0.0, 1.0);
    for i in 0..100u64 {
        inner.offer_up_for_test(10_000 + i, vec![0; 20]);
    }
    assert_eq!(inner.up_release_times_for_test().len(), 200);
    let s = handle.stats();
    assert_eq!((s.uplinks[0].frames_up, s.uplinks[0].lost), (300, 100));
    drop(_ports);
}

#[test]
fn l2_stripping_handles_vlan_and_padding() {
    #[rustfmt::skip]
    let ip: [u8; 28] = [
        0x45, 0x00, 0x00, 28,  0, 0, 0x40, 0,  64, 17, 0, 0,   // v4, total 28, DF, TTL 64, UDP
        10, 0, 1, 1,  203, 0, 113, 1,                            // src, dst
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00,          // UDP 40000 -> 53, len 8
    ];
    let mut tagged = vec![0u8; 12];
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 100, 0x08, 0x00]);
    tagged.extend_from_slice(&ip);
    tagged.resize(64, 0);
    assert_eq!(site::strip_l2(&tagged), Some(&ip[..]));
    let mut plain = vec![0u8; 12];
    plain.extend_from_slice(&[0x08, 0x00]);
    plain.extend_from_slice(&ip);
    assert_eq!(site::strip_l2(&plain), Some(&ip[..]));
    plain[12] = 0x86;
    assert_eq!(site::strip_l2(&plain), None);
    assert_eq!(
        site::client_mac(0x01_0203),
        [0x02, 0x00, 0x0a, 0x01, 0x02, 0x03]
    );
}

/// CPU time (ns) the named threads of this process have used so far, and
/// their voluntary context switches (sleeps).
fn thread_cpu_ns(name: &str) -> (u64, u64) {
    let mut total = 0;
    let mut switches = 0;
    for entry in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = entry.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let vol = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"));
        switches += vol.and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    }
    (total, switches)
}

/// Measures the site thread's CPU use with 200 clients at the default rates
/// (one TCP exchange and one UDP request per client per second; override
/// with `SIM_TCP_MS` / `SIM_UDP_MS`, e.g. `SIM_TCP_MS=100000000 SIM_UDP_MS=0`
/// for a site with no traffic). Run with `cargo test --release --lib
/// sim::tests::idle_cpu -- --ignored --nocapture`.
#[test]
#[ignore = "measurement; prints the site thread's CPU use"]
fn idle_cpu_of_the_site_thread() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (tcp_ms, udp_ms) = (env("SIM_TCP_MS", 1000), env("SIM_UDP_MS", 1000));
    let (mut site, mut app) = open(&site_toml(200, 20, tcp_ms, udp_ms, 5000));
    site.start();
    app.run_for(Duration::from_millis(500));
    let cpu0 = thread_cpu_ns("sim-site");
    let t0 = Instant::now();
    app.run_for(Duration::from_secs(5));
    let (cpu1, sw1) = thread_cpu_ns("sim-site");
    let (cpu, wakes) = (cpu1 - cpu0.0, sw1 - cpu0.1);
    let wall = t0.elapsed();
    let s = site.stop();
    println!(
        "site thread: {:.1} ms CPU in {:.2} s wall = {:.2}% of a core, {} sleeps; ok={} failed={} udp {}/{}",
        cpu as f64 / 1e6,
        wall.as_secs_f64(),
        cpu as f64 / wall.as_nanos() as f64 * 100.0,
        wakes,
        s.tcp_connections_ok,
        s.tcp_connections_failed,
        s.udp_replies,
        s.udp_requests
    );
}

/// Drives one server host directly: a SYN puts a listener in SYN-RECEIVED
/// (the gauge shows it), an RST puts it back to LISTEN (a half-open reset,
/// counted too when another peer's SYN takes the listener in the same poll),
/// an ACK establishes the next one, and a third that nobody answers times out.
#[test]
fn server_half_open_connections_are_counted_by_how_they_end() {
    use super::host::{AppCtx, Host, Micros};
    use super::proxy::{build, parse, SegSpec, TCP_ACK, TCP_RST, TCP_SYN};
    use rand::SeedableRng;
    use std::net::Ipv4Addr;

    let cfg = crate::config::SimConfig {
        tcp_timeout_ms: 1000,
        ..Default::default()
    };
    let counters = Counters::default();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let mut scratch = vec![0u8; 64 * 1024];
    let server = Ipv4Addr::new(203, 0, 113, 1);
    let mut host = Host::new_server(server, 5, &cfg);
    let mut service = |host: &mut Host, now: Micros| -> (Micros, Vec<Vec<u8>>) {
        let mut cx = AppCtx {
            now,
            cfg: &cfg,
            server_base: u32::from(server),
            rng: &mut rng,
            stats: &counters,
            scratch: &mut scratch,
            paused: false,
        };
        let next = host.service(&mut cx);
        (next, std::mem::take(&mut host.dev.tx))
    };
    let from_client = |port: u16, flags: u8, seq: u32, ack: u32| {
        build(
            &SegSpec {
                src: [198, 51, 100, 1],
                dst: server.octets(),
                sport: port,
                dport: cfg.tcp_port,
                seq,
                ack,
                flags,
                win: 8192,
                mss: (flags & TCP_SYN != 0).then_some(1460),
            },
            &[],
        )
    };
    service(&mut host, 0);

    // SYN, then an RST from the client side (as SYN racing's loser gets).
    host.dev.rx.push_back(from_client(50_000, TCP_SYN, 1000, 0));
    let (_, sent) = service(&mut host, 1_000);
    let synack = sent
        .iter()
        .filter_map(|ip| parse(ip))
        .find(|s| s.flags == TCP_SYN | TCP_ACK)
        .expect("the server answers the SYN");
    assert_eq!(synack.ack, 1001);
    assert_eq!(counters.server_syn_received.get(), 1);
    host.dev.rx.push_back(from_client(50_000, TCP_RST, 1001, 0));
    service(&mut host, 3_000);
    assert_eq!(counters.server_syn_received.get(), 0);
    assert_eq!(counters.server_half_open_reset.get(), 1);
    assert_eq!(counters.server_half_open_timeout.get(), 0);

    // The same listener reset and given another peer's SYN within one
    // poll's frames (a loaded simulator hands a server several at once): it
    // is in SYN-RECEIVED again, with another peer; the reset still counts.
    host.dev.rx.push_back(from_client(50_010, TCP_SYN, 7000, 0));
    service(&mut host, 3_100);
    assert_eq!(counters.server_syn_received.get(), 1);
    host.dev.rx.push_back(from_client(50_010, TCP_RST, 7001, 0));
    host.dev.rx.push_back(from_client(50_011, TCP_SYN, 7100, 0));
    service(&mut host, 3_200);
    assert_eq!(counters.server_half_open_reset.get(), 2);
    assert_eq!(counters.server_syn_received.get(), 1);
    host.dev.rx.push_back(from_client(50_011, TCP_RST, 7101, 0));
    service(&mut host, 3_300);
    assert_eq!(counters.server_half_open_reset.get(), 3);
    assert_eq!(counters.server_syn_received.get(), 0);

    // SYN, ACK: established.
    host.dev.rx.push_back(from_client(50_001, TCP_SYN, 5000, 0));
    let (_, sent) = service(&mut host, 4_000);
    let synack = sent.iter().filter_map(|ip| parse(ip)).next().unwrap();
    host.dev.rx.push_back(from_client(
        50_001,
        TCP_ACK,
        5001,
        synack.seq.wrapping_add(1),
    ));
    service(&mut host, 5_000);
    assert_eq!(counters.server_connections_established.get(), 1);
    assert_eq!(counters.server_syn_received.get(), 0);

    // SYN and silence: the socket's timeout (2 s here) ends it.
    host.dev.rx.push_back(from_client(50_002, TCP_SYN, 9000, 0));
    let (mut next, _) = service(&mut host, 6_000);
    assert_eq!(counters.server_syn_received.get(), 1);
    let mut now = 6_000;
    while now < 4_000_000 {
        now = next.clamp(now + 1, now + 100_000);
        next = service(&mut host, now).0;
    }
    assert_eq!(counters.server_syn_received.get(), 0);
    assert_eq!(counters.server_half_open_timeout.get(), 1);
    assert_eq!(counters.server_half_open_reset.get(), 3);
    assert_eq!(counters.server_connections_established.get(), 1);
}

#[test]
fn a_link_taken_down_drops_its_frames_and_reports_its_port_down() {
    let (mut site, mut app) = open(&site_toml(20, 4, 100, 100, 800));
    let handle = site.handle();
    site.start();
    app.run_for(Duration::from_millis(1000));
    let before = handle.stats();
    assert!(before.uplinks[0].link_up && BackendControl::link_up(&handle, 1));
    assert!(before.tcp_connections_ok > 20, "{before:#?}");

    assert!(handle.set_link(0, false));
    assert!(!handle.set_link("no-such-uplink", false));
    assert!(!handle.set_link(7, false));
    assert!(!BackendControl::link_up(&handle, 1), "wan0 is down");
    assert!(BackendControl::link_up(&handle, 0), "the LAN port stays up");
    app.run_for(Duration::from_millis(1500));
    let during = handle.stats();
    assert!(!during.uplinks[0].link_up && handle.link(0) == Some(false));
    let ok = during.tcp_connections_ok - before.tcp_connections_ok;
    let failed = during.tcp_connections_failed - before.tcp_connections_failed;
    assert!(
        failed > 30 && ok <= 10,
        "ok +{ok} failed +{failed}\n{during:#?}"
    );
    assert!(during.uplinks[0].link_down_drops > 30, "{during:#?}");
    // Nothing new entered the line while the link was down.
    let up_frames = during.uplinks[0].frames_up;
    app.run_for(Duration::from_millis(300));
    assert_eq!(handle.stats().uplinks[0].frames_up, up_frames);

    assert!(handle.set_link("isp1", true));
    assert!(BackendControl::link_up(&handle, 1));
    app.run_for(Duration::from_millis(1500));
    let after = site.stop();
    assert!(
        after.tcp_connections_ok > during.tcp_connections_ok + 20,
        "{after:#?}"
    );
    let json = BackendControl::stats(&handle);
    assert_eq!(json["uplinks"][0]["link_up"], true);
    assert!(json["uplinks"][0]["link_down_drops"].as_u64().unwrap() > 30);
}

/// A site whose only uplink has a SYN proxy 1 ms from the appliance and the
/// servers 40 ms beyond it.
fn proxy_site_toml(loss: f64) -> String {
    site_toml(20, 4, 150, 150, 3000).replace(
        "delay_ms = 5.0\njitter_ms = 2.0\n",
        &format!(
            "delay_ms = 40.0\njitter_ms = 0.0\nloss = {loss}\nproxy = true\nproxy_delay_ms = 1.0\n"
        ),
    )
}

#[test]
fn a_syn_proxy_answers_at_once_while_the_data_crosses_the_long_path() {
    let toml = proxy_site_toml(0.0);
    assert!(toml.contains("proxy = true"));
    let (mut site, mut app) = open(&toml);
    let handle = site.handle();
    site.start();
    app.run_for(Duration::from_millis(2500));
    handle.pause_clients(true);
    app.run_for(Duration::from_millis(800));
    let s = site.stop();
    let diag = format!("{s:#?}\n{}", app.drops());
    println!("{diag}");
    let u = &s.uplinks[0];
    assert!(u.proxy && u.proxy_delay_ms == 1.0, "{diag}");
    assert!(s.tcp_connections_ok > 100, "{diag}");
    assert!(
        s.tcp_connections_failed <= s.tcp_connections_ok / 50,
        "{diag}"
    );
    // The proxy's SYN+ACK comes back after 2 x 1 ms (plus scheduling; the
    // server's would take 80 ms) ...
    assert!(
        s.tcp_connect_ms_mean >= 1.5 && s.tcp_connect_ms_mean < 20.0,
        "{diag}"
    );
    // ... while the exchange needs the server, 40 ms beyond: its handshake
    // (80 ms) and the request and response (another 80 ms).
    assert!(s.tcp_exchange_ms_mean >= 160.0, "{diag}");
    assert!(u.proxy_syn_answered >= s.tcp_connections_ok, "{diag}");
    assert!(u.proxy_connections >= s.tcp_connections_ok, "{diag}");
    assert!(
        s.server_connections_established >= s.tcp_connections_ok,
        "{diag}"
    );
    assert_eq!(
        s.server_half_open_reset + s.server_half_open_timeout,
        0,
        "{diag}"
    );
    // UDP is not the proxy's business: it passes.
    assert!(
        s.udp_replies > 100 && u.proxy_passed >= s.udp_requests,
        "{diag}"
    );
    assert_eq!(u.proxy_dropped, 0, "{diag}");
    assert_eq!(s.unroutable + s.rx_nombuf + s.rx_queue_full, 0, "{diag}");
}

/// With loss between the proxy and the servers, the proxy's SYN resends
/// and the hosts' retransmissions still finish the exchanges.
#[test]
fn a_syn_proxy_on_a_lossy_path_still_completes_exchanges() {
    let (mut site, mut app) = open(&proxy_site_toml(0.03));
    let handle = site.handle();
    site.start();
    app.run_for(Duration::from_millis(2500));
    handle.pause_clients(true);
    // Retransmissions (1 s RTO, doubling) drain.
    app.run_for(Duration::from_millis(3500));
    let s = site.stop();
    let diag = format!("{s:#?}\n{}", app.drops());
    println!("{diag}");
    assert!(s.uplinks[0].lost > 0, "{diag}");
    assert!(s.tcp_connections_ok > 100, "{diag}");
    assert!(
        s.tcp_connections_failed <= s.tcp_connections_ok / 20,
        "{diag}"
    );
    assert!(s.tcp_connect_ms_mean < 20.0, "{diag}");
}
