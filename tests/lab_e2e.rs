//! End to end through the network-namespace lab (`scripts/lab.sh`), with
//! real Linux TCP/IP stacks on both sides of the appliance: a client
//! namespace on the LAN, three ISPs (delay lines of 2, 15 and 30 ms one way)
//! and a server reachable through every ISP.
//!
//! With each backend (af_packet; dpdk over `net_af_packet` vdevs when built
//! with `--features dpdk`) the appliance must: answer ARP / neighbour
//! discovery for its gateway and NAT addresses and resolve its next hops;
//! carry HTTP over IPv4 and IPv6 byte for byte and UDP request/response;
//! race new connections so the lowest-delay ISP (isp-a) wins every race and
//! the other ISPs' server sockets are reset (the server's kernel counts the
//! RSTs it got in SYN-RECEIVED); and, with af_packet, carry a loop of
//! 10,000 HTTP requests (each its own TCP connection) with no failure.
//!
//! Needs root and network namespaces (CI runs as root): without them the
//! tests fail, they never skip. All traffic stays inside the lab's
//! namespaces.

mod common;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::lab::count as n;
use common::lab::{appliance_bin, ns_ok, ns_output, wait_for_port, Lab, LabOptions, NsProcess};

const SERVER4: &str = "203.0.113.80";
const SERVER6: &str = "2001:db8:80::80";
const HTTP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5300;

/// A UDP echo server: answers every datagram with "echo:" + the datagram.
const UDP_ECHO: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(b'echo:' + d, a)
"#;

/// Sends N numbered requests, each awaited up to 2 s (one resend); prints
/// how many correct replies came back.
const UDP_CLIENT: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(2.0)
ok = 0
for i in range(int(sys.argv[3])):
    msg = ('request %d' % i).encode()
    for attempt in range(2):
        s.sendto(msg, (sys.argv[1], int(sys.argv[2])))
        try:
            d, _ = s.recvfrom(2048)
        except socket.timeout:
            continue
        if d == b'echo:' + msg:
            ok += 1
        break
print(ok)
"#;

/// The lab's servers: HTTP on both addresses (serving `dir`), UDP echo on
/// IPv4 and IPv6.
struct Servers {
    _procs: Vec<NsProcess>,
}

fn start_servers(lab: &Lab, dir: &Path) -> Servers {
    let srv = lab.ns("srv");
    let py = "/usr/bin/python3";
    let port = HTTP_PORT.to_string();
    let udp = UDP_PORT.to_string();
    let mut procs = Vec::new();
    for (i, addr) in [SERVER4, SERVER6].into_iter().enumerate() {
        procs.push(NsProcess::start(
            &srv,
            &[py, "-m", "http.server", "--bind", addr, &port],
            dir,
            &dir.join(format!("../http{i}.log")),
        ));
        procs.push(NsProcess::start(
            &srv,
            &[py, "-c", UDP_ECHO, addr, &udp],
            dir,
            &dir.join(format!("../udp{i}.log")),
        ));
    }
    for addr in [SERVER4, SERVER6] {
        let a: std::net::IpAddr = addr.parse().unwrap();
        wait_for_port(&srv, (a, HTTP_PORT).into(), Duration::from_secs(10));
    }
    Servers { _procs: procs }
}

/// A page with bytes of every value, so any corruption shows.
fn page() -> Vec<u8> {
    (0..20_000u32).map(|i| (i * 7 + i / 256) as u8).collect()
}

/// `curl` from the client namespace; returns the body, panicking on failure.
fn fetch(lab: &Lab, url: &str) -> Vec<u8> {
    let out = ns_output(
        &lab.ns("cli"),
        &["curl", "-sS", "--fail", "-g", "-m", "10", url],
    );
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The server kernel's count of RSTs received by connections still in
/// SYN-RECEIVED (`TcpExtEmbryonicRsts`): how many racing copies it had to
/// forget because the appliance reset them.
fn server_embryonic_resets(lab: &Lab) -> u64 {
    let text = ns_ok(&lab.ns("srv"), &["nstat", "-az", "TcpExtEmbryonicRsts"]);
    text.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "TcpExtEmbryonicRsts").then(|| w.next()?.parse().ok())?
        })
        .unwrap_or(0)
}

fn uplink<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats["uplinks"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["name"] == name))
        .unwrap_or_else(|| panic!("no uplink {name} in stats"))
}

/// The two backends' runs take one lab and one appliance each; side by side
/// on a 2-core machine (the DPDK lcores poll without sleeping) they would
/// measure each other's scheduling, not the appliance.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Brings the lab up, runs the appliance with `config` in it, and checks
/// what the module doc lists; `http_loop` requests at the end.
fn through_the_lab(config: &str, http_loop: u32) {
    let _one_at_a_time = serial();
    let lab = Lab::up(&LabOptions::default());
    let work = tempfile::tempdir().unwrap();
    let www = work.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let body = page();
    std::fs::write(www.join("page.bin"), &body).unwrap();
    let _servers = start_servers(&lab, &www);

    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join(config);
    let stats_path = work.path().join("stats.json");
    let mut app = NsProcess::start(
        &lab.ns("app"),
        &[
            appliance_bin(),
            "run",
            "--config",
            config.to_str().unwrap(),
            "--stats-out",
            stats_path.to_str().unwrap(),
        ],
        work.path(),
        &work.path().join("appliance.log"),
    );
    // The client resolves its gateway through the appliance's ARP / ND
    // responder; the first fetch also waits for the next hops' MACs.
    std::thread::sleep(Duration::from_millis(500));
    app.assert_running();

    for url in [
        format!("http://{SERVER4}:{HTTP_PORT}/page.bin"),
        format!("http://[{SERVER6}]:{HTTP_PORT}/page.bin"),
    ] {
        let got = fetch(&lab, &url);
        assert!(got == body, "{url}: {} bytes, not the page", got.len());
    }
    for addr in [SERVER4, SERVER6] {
        let out = ns_ok(
            &lab.ns("cli"),
            &[
                "/usr/bin/python3",
                "-c",
                UDP_CLIENT,
                addr,
                &UDP_PORT.to_string(),
                "20",
            ],
        );
        assert_eq!(out.trim(), "20", "UDP echo replies from {addr}");
    }

    if http_loop > 0 {
        // One curl, `http_loop` URLs, 16 at a time; the server closes each
        // connection after its answer (HTTP/1.0), so every request is a new
        // TCP connection through the NAT. `%{http_code}` per transfer.
        let url = format!("http://{SERVER4}:{HTTP_PORT}/page.bin?[1-{http_loop}]");
        let out = ns_output(
            &lab.ns("cli"),
            &[
                "curl",
                "-s",
                "--parallel",
                "--parallel-max",
                "16",
                "-m",
                "20",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download}\n",
                &url,
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let ok = text
            .lines()
            .filter(|l| *l == format!("200 {}", body.len()))
            .count();
        let failed: Vec<&str> = text
            .lines()
            .filter(|l| *l != format!("200 {}", body.len()))
            .take(5)
            .collect();
        println!("HTTP loop: {ok} of {http_loop} requests complete");
        assert_eq!(
            ok,
            http_loop as usize,
            "every request completes; first failures: {failed:?}, curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    app.assert_running();
    // SIGTERM: the appliance stops cleanly and writes its stats.
    let log = app.stop(Duration::from_secs(10));
    assert!(
        app.status.is_some_and(|s| s.success()),
        "appliance exit {:?}; log:\n{log}",
        app.status
    );
    let text = std::fs::read_to_string(&stats_path)
        .unwrap_or_else(|e| panic!("no stats after SIGTERM ({e}); log:\n{log}"));
    let stats: serde_json::Value = serde_json::from_str(&text).unwrap();

    // Seed 001: the lowest-delay uplink wins every race, the others lose
    // every race and their servers' half-open sockets are reset.
    let (a, b, c) = (
        uplink(&stats, "isp-a"),
        uplink(&stats, "isp-b"),
        uplink(&stats, "isp-c"),
    );
    println!(
        "races won/lost: isp-a {}/{} isp-b {}/{} isp-c {}/{}; connections isp-a {} isp-b {} isp-c {}",
        a["races_won"],
        a["races_lost"],
        b["races_won"],
        b["races_lost"],
        c["races_won"],
        c["races_lost"],
        a["connections"],
        b["connections"],
        c["connections"]
    );
    assert!(n(&a["races_won"]) >= 2, "a race per family at least");
    assert_eq!(n(&a["races_lost"]), 0);
    assert_eq!(n(&b["races_won"]) + n(&c["races_won"]), 0);
    let lost = n(&b["races_lost"]) + n(&c["races_lost"]);
    assert_eq!(
        lost,
        2 * n(&a["races_won"]),
        "each race lost on isp-b and isp-c"
    );
    assert_eq!(
        server_embryonic_resets(&lab),
        lost,
        "every losing copy's server socket was reset"
    );
    // Every TCP connection ran over isp-a (races and cache hits alike).
    // (Fewer sessions than requests: a client port reused while its
    // previous connection's mapping lingers reuses that mapping.)
    assert!(n(&a["connections"]) >= 2);
    assert_eq!(n(&b["connections"]) + n(&c["connections"]), 0);
    assert_eq!(n(&b["tcp_sessions"]) + n(&c["tcp_sessions"]), 0);
    // Next hops were resolved on the wire (the config gives no MACs).
    let resolved = stats["neighbours"]
        .as_array()
        .expect("neighbours in stats")
        .iter()
        .filter(|h| h["mac"].is_string())
        .count();
    assert_eq!(
        resolved, 6,
        "3 uplinks x 2 families: {}",
        stats["neighbours"]
    );
}

#[test]
fn af_packet_backend_through_the_lab() {
    through_the_lab("conf/lab-afpacket.toml", 10_000);
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_backend_over_af_packet_vdevs_through_the_lab() {
    through_the_lab("conf/lab-dpdk.toml", 500);
}
