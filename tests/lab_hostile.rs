//! Hostile and busy peers through the network-namespace lab
//! (`scripts/lab.sh`), with real Linux stacks on both sides of the appliance
//! (af_packet backend, `conf/lab-afpacket.toml`, default `[nat]` host
//! limits):
//!
//! - one LAN host (10.0.0.3, a second address of the client namespace)
//!   floods 100,000 SYNs with hping3 at an address whose SYNs the server
//!   namespace drops, while the other host (10.0.0.2) makes 50 HTTP
//!   requests: all 50 succeed, and the stats show the flooder refused by its
//!   per-host limits;
//! - the same host sends UDP from 30,000 source ports: the other host's 50
//!   requests succeed;
//! - the fastest ISP (isp-a) rejects the server port, first with TCP RST,
//!   then with ICMP host-unreachable (ICMPv6 admin-prohibited): 10
//!   connections per family, each racing, all succeed over another ISP and
//!   isp-a stays up;
//! - 64 blind RSTs over the sequence space at a live idle connection's NAT
//!   port: the connection still carries data both ways;
//! - a 5-tuple reused right after a FIN close opens and races a new
//!   connection (`reuse`);
//! - one UDP socket talking to 300 remotes gets 256 (the mapping limit),
//!   the rest refused and counted (`mapping`).
//!
//! Needs root, network namespaces, hping3, nft, curl and Debian's python3
//! with scapy (scripts/install-deps.sh): without them the tests fail, they
//! never skip. Every packet stays inside the lab's namespaces; every sender
//! is bounded in count and time. The tests share the machine, so they run
//! one at a time (a mutex).

mod common;
#[path = "lab_hostile/mapping.rs"]
mod mapping;
#[path = "lab_hostile/reuse.rs"]
mod reuse;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::lab::{count as n, Appliance};
use common::lab::{lab_config, require_tools};
use common::lab::{
    ns_ok, ns_output, start_http_servers, wait_for_port, Lab, LabOptions, NsProcess, HTTP_PORT,
    SERVER4, SERVER6,
};

/// The well-behaved LAN host (the client namespace's first address).
const GOOD_HOST: &str = "10.0.0.2";
/// The flooding LAN host (a second address of the client namespace).
const BAD_HOST: &str = "10.0.0.3";
/// Where the flooder aims: routed to the server namespace, which drops
/// everything sent to it (an nft rule), so nothing ever answers.
const BLACKHOLE: &str = "203.0.113.99";
const PY: &str = "/usr/bin/python3";

/// One lab at a time: they share two cores with the delay lines.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends one UDP datagram from each of `count` source ports (from `first`)
/// of `src` to `dst:port`, spread over `secs` seconds; prints how many.
const UDP_PORTS: &str = r#"
import socket, sys, time
src, dst, dport, first, count, secs = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
                                       int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
start = time.monotonic()
sent = 0
for i in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, first + i))
    s.sendto(b'hostile %d' % i, (dst, dport))
    s.close()
    sent += 1
    if i % 500 == 0:
        ahead = start + secs * i / count - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
print(sent)
"#;

/// The lab with an HTTP server on both server addresses, the flooder's
/// address on the client namespace, and the blackhole in the server's
/// nftables (a counter of what reached it).
struct Site {
    lab: Lab,
    work: tempfile::TempDir,
    _http: Vec<NsProcess>,
}

impl Site {
    fn up() -> Site {
        require_tools(&["hping3", "nft", "curl", PY]);
        let lab = Lab::up(&LabOptions::default());
        let work = tempfile::tempdir().unwrap();
        let www = work.path().join("www");
        std::fs::create_dir(&www).unwrap();
        std::fs::write(www.join("page.txt"), b"hello through the appliance").unwrap();
        let http = start_http_servers(&lab, &www, work.path());
        let srv = lab.ns("srv");
        ns_ok(
            &lab.ns("cli"),
            &[
                "ip",
                "addr",
                "add",
                &format!("{BAD_HOST}/24"),
                "dev",
                "eth0",
            ],
        );
        ns_ok(
            &srv,
            &["ip", "addr", "add", &format!("{BLACKHOLE}/32"), "dev", "lo"],
        );
        ns_ok(
            &srv,
            &[
                "nft",
                &format!(
                    "add table inet hostile; \
                     add chain inet hostile pre {{ type filter hook prerouting priority -300; }}; \
                     add rule inet hostile pre ip daddr {BLACKHOLE} counter drop"
                ),
            ],
        );
        Site {
            lab,
            work,
            _http: http,
        }
    }

    fn ns(&self, short: &str) -> String {
        self.lab.ns(short)
    }

    /// The lab's af_packet config with `edit` applied, written to a file.
    fn config(&self, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
        lab_config(self.work.path(), name, edit)
    }

    fn start_appliance(&self, config: &Path, tag: &str) -> Appliance {
        Appliance::start(&self.lab, config, self.work.path(), tag)
    }

    /// Packets the server namespace's blackhole rule dropped so far.
    fn blackholed(&self) -> u64 {
        let text = ns_ok(
            &self.ns("srv"),
            &["nft", "list", "chain", "inet", "hostile", "pre"],
        );
        nft_counter(&text, BLACKHOLE)
    }
}

/// The packet count of the first rule of an `nft list` output mentioning
/// `what`.
fn nft_counter(text: &str, what: &str) -> u64 {
    text.lines()
        .find(|l| l.contains(what) && l.contains("counter packets"))
        .and_then(|l| l.split("counter packets ").nth(1))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no counter for {what} in:\n{text}"))
}

fn uplink<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats["uplinks"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["name"] == name))
        .unwrap_or_else(|| panic!("no uplink {name} in stats"))
}

/// `count` HTTP requests from the well-behaved host, one after the other,
/// each its own TCP connection; returns how many got a 200.
fn good_host_requests(site: &Site, count: u32) -> usize {
    let url = format!("http://{SERVER4}:{HTTP_PORT}/page.txt?[1-{count}]");
    let out = ns_output(
        &site.ns("cli"),
        &[
            "curl",
            "-s",
            "--interface",
            GOOD_HOST,
            "-m",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\n",
            &url,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let ok = text.lines().filter(|l| *l == "200").count();
    if ok != count as usize {
        eprintln!(
            "curl: {:?}; stderr: {}",
            text.lines().collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ok
}

/// Runs `args` in namespace `ns` on a thread of its own, so the test can
/// work while it runs.
fn in_background(ns: String, args: Vec<String>) -> std::thread::JoinHandle<std::process::Output> {
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ns_output(&ns, &args)
    })
}

fn print_nat(what: &str, stats: &serde_json::Value) {
    let nat = &stats["nat"];
    println!(
        "{what}: created {} table_full {} host_sessions_limit {} host_rate_limit {} \
         host_races_limit {} hosts_table_full {} evicted_unanswered {} top_offenders {}",
        nat["created"],
        nat["table_full"],
        nat["host_sessions_limit"],
        nat["host_rate_limit"],
        nat["host_races_limit"],
        nat["hosts_table_full"],
        nat["evicted_unanswered"],
        nat["top_offenders"]
    );
}

/// The flooder heads `nat.top_offenders`.
fn assert_flooder_top(stats: &serde_json::Value) {
    let top = &stats["nat"]["top_offenders"][0];
    assert_eq!(top["host"], BAD_HOST, "top offender: {}", stats["nat"]);
    assert!(n(&top["refusals"]) > 0, "{top}");
    let others = stats["nat"]["top_offenders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["host"] == GOOD_HOST)
        .count();
    assert_eq!(
        others, 0,
        "the good host was never refused: {}",
        stats["nat"]
    );
}

#[test]
fn one_host_flooding_syns_or_udp_ports_leaves_another_hosts_requests_alone() {
    let _one = serial();
    let site = Site::up();
    let config = site.config("flood.toml", |s| s);

    // 1. 100,000 SYNs from one host (hping3 counts up its source port from
    // a random base, so they are new flows), nothing answers them.
    let app = site.start_appliance(&config, "syn");
    let flood = in_background(
        site.ns("cli"),
        [
            "timeout", "90", "hping3", "-q", "-S", "--faster", "-c", "100000", "-a", BAD_HOST,
            "-p", "9", BLACKHOLE,
        ]
        .map(String::from)
        .to_vec(),
    );
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let ok = good_host_requests(&site, 50);
    println!(
        "SYN flood: {ok} of 50 requests ok in {:?}",
        started.elapsed()
    );
    assert!(
        !flood.is_finished(),
        "the flood ended before the 50 requests did: not a test of \"during\""
    );
    let out = flood.join().unwrap();
    let hping =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        hping.contains("100000 packets transmitted"),
        "hping3 did not send its 100,000 SYNs ({}):\n{hping}",
        out.status
    );
    let stats = app.stop();
    print_nat("SYN flood", &stats);
    println!(
        "SYN flood: lan rx {} blackholed {}",
        stats["ports"]["lan"]["rx_packets"],
        site.blackholed()
    );
    assert_eq!(
        ok, 50,
        "every request of the other host succeeds during the flood"
    );
    assert!(
        n(&stats["ports"]["lan"]["rx_packets"]) >= 100_000,
        "the flood reached the appliance"
    );
    // What the defaults make happen (4,096 sessions a host; 1,024 race
    // copies a host; 2,000 new flows/s with a burst of 4,000): the race
    // limit sends most SYNs by one uplink, and the host reaches its 4,096
    // sessions inside the first burst, so the sessions limit refuses the
    // rest (a refused flow spends no token: host_rate_limit stays 0).
    assert!(
        n(&stats["nat"]["host_sessions_limit"]) > 0,
        "{}",
        stats["nat"]
    );
    assert!(n(&stats["nat"]["host_races_limit"]) > 0, "{}", stats["nat"]);
    assert_flooder_top(&stats);
    assert_eq!(n(&stats["nat"]["table_full"]), 0, "{}", stats["nat"]);

    // 2. UDP from 30,000 source ports of one host, over ~6 s.
    let app = site.start_appliance(&config, "udp");
    let udp = in_background(
        site.ns("cli"),
        [
            "timeout", "90", PY, "-c", UDP_PORTS, BAD_HOST, BLACKHOLE, "9", "20000", "30000", "6",
        ]
        .map(String::from)
        .to_vec(),
    );
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let ok = good_host_requests(&site, 50);
    println!(
        "UDP ports: {ok} of 50 requests ok in {:?}",
        started.elapsed()
    );
    assert!(
        !udp.is_finished(),
        "the UDP sender ended before the 50 requests did: not a test of \"during\""
    );
    let out = udp.join().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "30000",
        "UDP sender: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = app.stop();
    print_nat("UDP ports", &stats);
    assert_eq!(
        ok, 50,
        "every request of the other host succeeds during the UDP burst"
    );
    assert!(n(&stats["ports"]["lan"]["rx_packets"]) >= 30_000);
    // The defaults: the host's 4,096 sessions fill inside the first burst
    // of 4,000 new flows a second (plus refills), then the sessions limit
    // refuses the rest.
    assert!(
        n(&stats["nat"]["host_sessions_limit"]) > 0,
        "{}",
        stats["nat"]
    );
    assert_flooder_top(&stats);
    assert_eq!(n(&stats["nat"]["table_full"]), 0, "{}", stats["nat"]);
    assert_eq!(n(&stats["nat"]["port_exhausted"]), 0, "{}", stats["nat"]);
}

/// One connection, from the client namespace, to `url`; Ok or curl's error.
fn connect_once(site: &Site, url: &str) -> Result<(), String> {
    let out = ns_output(
        &site.ns("cli"),
        &[
            "curl",
            "-sS",
            "--fail",
            "-g",
            "-m",
            "10",
            "-o",
            "/dev/null",
            url,
        ],
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[test]
fn the_fastest_isp_rejecting_the_port_decides_no_race_and_stays_up() {
    let _one = serial();
    let site = Site::up();
    // A 1 s RTT cache, so that every connection (1.2 s apart) races again
    // instead of following the cache to the winner of the first race.
    let config = site.config("reject.toml", |s| {
        assert!(s.contains("rtt_cache_ttl_s = 10\n"), "lab config changed");
        s.replace("rtt_cache_ttl_s = 10\n", "rtt_cache_ttl_s = 1\n")
    });
    let srv = site.ns("srv");
    // isp-a's router is the server namespace's isp-a0: its firewall rejects
    // the server port on that interface only, answering within isp-a's 4 ms
    // RTT while the server answers over isp-b after 30 ms.
    ns_ok(
        &srv,
        &[
            "nft",
            "add table inet isp_a_fw; \
             add chain inet isp_a_fw input { type filter hook input priority 0; }",
        ],
    );
    // Every rejection answered: no ICMP rate limit in the server namespace.
    ns_ok(
        &srv,
        &[
            "sysctl",
            "-qw",
            "net.ipv4.icmp_ratelimit=0",
            "net.ipv6.icmp.ratelimit=0",
        ],
    );
    const N: u32 = 10;
    let phases: [(&str, &[&str]); 2] = [
        ("tcp-reset", &["reject with tcp reset"]),
        (
            "icmp",
            &[
                "meta nfproto ipv4 reject with icmp type host-unreachable",
                "meta nfproto ipv6 reject with icmpv6 type admin-prohibited",
            ],
        ),
    ];
    let urls = [
        format!("http://{SERVER4}:{HTTP_PORT}/page.txt"),
        format!("http://[{SERVER6}]:{HTTP_PORT}/page.txt"),
    ];
    for (phase, rules) in phases {
        ns_ok(&srv, &["nft", "flush chain inet isp_a_fw input"]);
        for r in rules {
            ns_ok(
                &srv,
                &[
                    "nft",
                    &format!(
                        "add rule inet isp_a_fw input iifname \"isp-a0\" tcp dport {HTTP_PORT} counter {r}"
                    ),
                ],
            );
        }
        let app = site.start_appliance(&config, phase);
        let mut failures = Vec::new();
        for round in 0..N {
            for url in &urls {
                if let Err(e) = connect_once(&site, url) {
                    failures.push(format!("round {round} {url}: {e}"));
                }
            }
            std::thread::sleep(Duration::from_millis(1200));
        }
        let fw = ns_ok(&srv, &["nft", "list", "chain", "inet", "isp_a_fw", "input"]);
        let rejected: u64 = fw
            .lines()
            .filter(|l| l.contains("counter packets"))
            .map(|l| nft_counter(l, "reject"))
            .sum();
        let stats = app.stop();
        let (a, b, c) = (
            uplink(&stats, "isp-a"),
            uplink(&stats, "isp-b"),
            uplink(&stats, "isp-c"),
        );
        println!(
            "{phase}: {} of {} connections ok; isp-a firewall rejected {rejected}; \
             races {} negative answers held {} all failed {}; isp-a up {} won {} lost {} \
             failed_destinations {}; isp-b won {} connections {}; isp-c won {}",
            2 * N as usize - failures.len(),
            2 * N,
            stats["selection"]["races"],
            stats["selection"]["races_negative_answers"],
            stats["selection"]["races_all_failed"],
            a["up"],
            a["races_won"],
            a["races_lost"],
            a["failed_destinations"],
            b["races_won"],
            b["connections"],
            c["races_won"]
        );
        assert!(
            failures.is_empty(),
            "{phase}: connections failed: {failures:#?}"
        );
        // Every connection raced, and isp-a's rejection reached the
        // appliance and was held back each time.
        assert!(
            rejected >= u64::from(2 * N),
            "{phase}: firewall hits {rejected}\n{fw}"
        );
        assert!(
            n(&stats["selection"]["races"]) >= u64::from(2 * N),
            "{phase}"
        );
        assert!(
            n(&stats["selection"]["races_negative_answers"]) >= u64::from(2 * N),
            "{phase}: {}",
            stats["selection"]
        );
        assert_eq!(n(&stats["selection"]["races_all_failed"]), 0, "{phase}");
        assert_eq!(n(&a["races_won"]), 0, "{phase}: isp-a won a race: {a}");
        assert_eq!(n(&a["connections"]), 0, "{phase}: {a}");
        assert!(
            n(&b["races_won"]) >= u64::from(2 * N),
            "{phase}: isp-b (next fastest) wins: {b}"
        );
        // Two destinations only: a rejection is not evidence against the
        // uplink until it spans unanswered_limit (3) distinct ones.
        assert_eq!(a["up"], true, "{phase}: isp-a marked down: {a}");
        assert_eq!(n(&a["health_transitions"]), 0, "{phase}: {a}");
    }
}

/// An echo server for one connection: writes the peer's address (the NAT
/// endpoint) to argv[3], then echoes every line.
const ECHO_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
c, peer = s.accept()
open(sys.argv[3] + '.tmp', 'w').write('%s %d\n' % peer)
import os; os.rename(sys.argv[3] + '.tmp', sys.argv[3])
f = c.makefile('rb')
for line in f:
    c.sendall(b'echo:' + line)
"#;

/// A client with a small receive window: one exchange, idle argv[3]
/// seconds, another exchange; prints "ok" when both echoes came back.
const IDLE_CLIENT: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.settimeout(10)
s.connect((sys.argv[1], int(sys.argv[2])))
f = s.makefile('rb')
s.sendall(b'one\n'); assert f.readline() == b'echo:one\n'
print('first', flush=True)
time.sleep(float(sys.argv[3]))
s.sendall(b'two\n'); got = f.readline()
print('ok' if got == b'echo:two\n' else 'bad %r' % got, flush=True)
"#;

/// 64 RSTs from the server's address and port to the NAT endpoint,
/// sequence numbers spread evenly over the 2^32 space.
const BLIND_RSTS: &str = r#"
import sys
from scapy.all import IP, TCP, send
src, sport, dst, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
pkts = [IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags='R', seq=(i << 26) + 12345)
        for i in range(64)]
send(pkts, verbose=False)
print(len(pkts))
"#;

#[test]
fn blind_rsts_spread_over_the_sequence_space_do_not_kill_an_idle_connection() {
    let _one = serial();
    let site = Site::up();
    let config = site.config("rst.toml", |s| s);
    let app = site.start_appliance(&config, "rst");
    let peer_file = site.work.path().join("peer");
    let _server = NsProcess::start(
        &site.ns("srv"),
        &[
            PY,
            "-c",
            ECHO_SERVER,
            SERVER4,
            "9000",
            peer_file.to_str().unwrap(),
        ],
        site.work.path(),
        &site.work.path().join("echo.log"),
    );
    wait_for_port(
        &site.ns("srv"),
        (SERVER4.parse::<std::net::IpAddr>().unwrap(), 9000).into(),
        Duration::from_secs(10),
    );
    // wait_for_port's probe was the server's one connection: start again.
    drop(_server);
    let _server = NsProcess::start(
        &site.ns("srv"),
        &[
            PY,
            "-c",
            ECHO_SERVER,
            SERVER4,
            "9000",
            peer_file.to_str().unwrap(),
        ],
        site.work.path(),
        &site.work.path().join("echo2.log"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let _ = std::fs::remove_file(&peer_file);
    // Idle 10 s: the RSTs come after ~1 s, then the closed timeout (5 s in
    // the lab config) passes with the connection idle.
    let client = in_background(
        site.ns("cli"),
        [PY, "-c", IDLE_CLIENT, SERVER4, "9000", "10"]
            .map(String::from)
            .to_vec(),
    );
    let until = Instant::now() + Duration::from_secs(10);
    while !peer_file.exists() {
        assert!(Instant::now() < until, "the client never connected");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let peer = std::fs::read_to_string(&peer_file).unwrap();
    let (nat_ip, nat_port) = peer.trim().split_once(' ').unwrap();
    let sent = ns_ok(
        &site.ns("srv"),
        &[PY, "-c", BLIND_RSTS, SERVER4, "9000", nat_ip, nat_port],
    );
    assert_eq!(sent.trim(), "64");
    let out = client.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let stats = app.stop();
    println!(
        "blind RSTs at {nat_ip}:{nat_port}: client said {:?}; translate drops {}",
        text.trim(),
        stats["stages"]["translate"]["drops"]
    );
    assert!(
        text.lines().any(|l| l == "ok"),
        "the connection died: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One session, kept all along: no RST closed it (a closed session would
    // have expired after tcp_closed_timeout_s, and the second exchange
    // would have opened another).
    println!("nat: {}", stats["nat"]);
    assert_eq!(n(&stats["nat"]["expired"]), 0, "{}", stats["nat"]);
    assert_eq!(n(&stats["nat"]["tcp_sessions"]), 1, "{}", stats["nat"]);
}
