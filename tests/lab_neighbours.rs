//! Hardened neighbours through the network-namespace lab (`scripts/lab.sh`):
//! the appliance (af_packet backend) resolves its next hops from the ISP
//! routers' real Linux answers, then a spoofer on isp-a's wire (scapy in the
//! server namespace, sending out of the router's own interface) claims the
//! router's IPv4 and IPv6 addresses with a gratuitous ARP (reply and request
//! forms), an unsolicited NA with Override and a solicitation carrying its
//! MAC. Inside the lock time none of them moves the next hop: the stats show
//! the router's MAC still, the claims counted as refused, and traffic still
//! flows.
//!
//! Needs root and network namespaces (CI runs as root): without them the
//! test fails, it never skips. Every frame stays inside the lab's
//! namespaces; the spoofer sends a bounded number of frames.

mod common;

use std::path::Path;
use std::time::Duration;

use common::lab::count as n;
use common::lab::{
    ns_ok, ns_output, start_appliance, start_http_servers, Lab, LabOptions, HTTP_PORT, SERVER4,
    SERVER6,
};

/// isp-a's router (the server namespace's `isp-a0`).
const ROUTER_A4: &str = "100.64.1.1";
const ROUTER_A6: &str = "2001:db8:a::1";
const ROUTER_A_MAC: &str = "02:00:00:00:0a:fe";
const SPOOF_MAC: &str = "02:66:66:66:66:66";
/// Rounds of the four forged frames.
const ROUNDS: u32 = 3;

/// Sends ROUNDS rounds of forged claims for isp-a's router out of `iface`:
/// argv = iface, spoof MAC, router v4, router v6, rounds.
const SPOOFER: &str = r#"
import sys
from scapy.all import (Ether, ARP, IPv6, ICMPv6ND_NA, ICMPv6ND_NS,
                       ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, sendp)
iface, mac, r4, r6, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
bc = "ff:ff:ff:ff:ff:ff"
frames = [
    # Gratuitous ARP, reply form and request form.
    Ether(src=mac, dst=bc) / ARP(op=2, hwsrc=mac, psrc=r4, hwdst=bc, pdst=r4),
    Ether(src=mac, dst=bc) / ARP(op=1, hwsrc=mac, psrc=r4, hwdst="00:00:00:00:00:00", pdst=r4),
    # Unsolicited NA with Override for the router's address.
    Ether(src=mac, dst="33:33:00:00:00:01")
    / IPv6(src=r6, dst="ff02::1", hlim=255)
    / ICMPv6ND_NA(tgt=r6, R=1, S=0, O=1)
    / ICMPv6NDOptDstLLAddr(lladdr=mac),
    # A solicitation from the router's address with the spoofer's MAC.
    Ether(src=mac, dst="33:33:ff:00:00:10")
    / IPv6(src=r6, dst="ff02::1:ff00:10", hlim=255)
    / ICMPv6ND_NS(tgt="2001:db8:a::10")
    / ICMPv6NDOptSrcLLAddr(lladdr=mac),
]
for _ in range(rounds):
    sendp(frames, iface=iface, verbose=False)
print(len(frames) * rounds)
"#;

fn fetch_ok(lab: &Lab, url: &str) {
    let out = ns_output(
        &lab.ns("cli"),
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
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn spoofed_gratuitous_claims_inside_the_lock_time_do_not_move_the_next_hop() {
    let lab = Lab::up(&LabOptions::default());
    let work = tempfile::tempdir().unwrap();
    let www = work.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("page.txt"), b"hello").unwrap();
    let _servers = start_http_servers(&lab, &www, work.path());
    let srv = lab.ns("srv");

    // The lab's af_packet site with the longest lock time, so the forged
    // claims below certainly fall inside it (the solicitor's 30 s refresh
    // answers also restart it).
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/lab-afpacket.toml"),
    )
    .unwrap();
    let config = work.path().join("lab.toml");
    std::fs::write(
        &config,
        format!("{base}\n[neighbours]\nlock_time_ms = 60000\n"),
    )
    .unwrap();
    let (mut app, stats_path) = start_appliance(&lab, &config, work.path(), "spoof");
    let urls = [
        format!("http://{SERVER4}:{HTTP_PORT}/page.txt"),
        format!("http://[{SERVER6}]:{HTTP_PORT}/page.txt"),
    ];
    for url in &urls {
        fetch_ok(&lab, url);
    }
    // Every next hop has been asked and answered by now (requests go out
    // at start and every second until answered).
    std::thread::sleep(Duration::from_millis(1500));

    let sent = ns_ok(
        &srv,
        &[
            "/usr/bin/python3",
            "-c",
            SPOOFER,
            "isp-a0",
            SPOOF_MAC,
            ROUTER_A4,
            ROUTER_A6,
            &ROUNDS.to_string(),
        ],
    );
    assert_eq!(sent.trim(), (4 * ROUNDS).to_string(), "forged frames sent");
    std::thread::sleep(Duration::from_millis(300));
    for url in &urls {
        fetch_ok(&lab, url);
    }

    app.assert_running();
    let log = app.stop(Duration::from_secs(10));
    assert!(
        app.status.is_some_and(|s| s.success()),
        "appliance exit {:?}; log:\n{log}",
        app.status
    );
    let text = std::fs::read_to_string(&stats_path)
        .unwrap_or_else(|e| panic!("no stats after SIGTERM ({e}); log:\n{log}"));
    let stats: serde_json::Value = serde_json::from_str(&text).unwrap();
    let hops = stats["neighbours"].as_array().expect("neighbours in stats");
    println!("neighbours: {}", stats["neighbours"]);
    assert_eq!(hops.len(), 6, "3 uplinks x 2 families");
    for h in hops {
        // Every next hop was learned from an answer to our own request.
        assert!(h["mac"].is_string(), "resolved: {h}");
        assert!(n(&h["learned_reply"]) >= 1, "learned from a reply: {h}");
        assert_eq!(n(&h["learned_gratuitous"]), 0, "{h}");
    }
    let hop = |ip: &str| {
        hops.iter()
            .find(|h| h["ip"] == ip)
            .unwrap_or_else(|| panic!("no next hop {ip}"))
    };
    let (a4, a6) = (hop(ROUTER_A4), hop(ROUTER_A6));
    assert_eq!(a4["mac"], ROUTER_A_MAC, "isp-a v4 next hop moved: {a4}");
    assert_eq!(a6["mac"], ROUTER_A_MAC, "isp-a v6 next hop moved: {a6}");
    // The forged frames arrived: both ARP forms and the NA were refused for
    // the lock time, the solicitation as one (the router's own requests and
    // solicitations for our addresses are refused the same way, hence >=).
    assert!(n(&a4["refused_locktime"]) >= 2 * u64::from(ROUNDS), "{a4}");
    assert!(n(&a6["refused_locktime"]) >= u64::from(ROUNDS), "{a6}");
    assert!(n(&a6["refused_ns"]) >= u64::from(ROUNDS), "{a6}");
}
