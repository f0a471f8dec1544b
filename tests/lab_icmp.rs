//! ICMP the appliance originates, MTU and martians, through the
//! network-namespace lab (`scripts/lab.sh`) with real Linux peers and the
//! af_packet backend (`conf/lab-afpacket.toml`):
//!
//! - `ping` (IPv4 and IPv6) of the LAN gateway from the client and of a NAT
//!   address from the server side answers;
//! - `ping -t 1` through the appliance gets time exceeded from the LAN
//!   gateway address (the hop `traceroute` shows), IPv4 and IPv6;
//! - LAN mDNS (224.0.0.251), limited and subnet broadcasts never appear on
//!   any ISP wire (tcpdump in each ISP namespace, bounded), while a unicast
//!   datagram sent beside them does; a unicast frame to the subnet
//!   broadcast address is counted `martian_destination`;
//! - a VLAN-0 (priority) tagged frame from the client is translated and
//!   reaches the server;
//! - with one uplink whose port has `mtu = 1280`: a 1 MB TCP upload
//!   completes (PMTUD: the appliance sends fragmentation needed) and a DF
//!   UDP datagram of 1,400 bytes makes the sender's path MTU 1280.
//!
//! Needs root, network namespaces, tcpdump and Debian's python3 with scapy:
//! without them the tests fail, they never skip. Every packet stays inside
//! the lab's namespaces; every sender is bounded in count and time.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use common::lab::{count as n, Appliance};
use common::lab::{lab_config, require_tools};
use common::lab::{ns_ok, ns_output, Lab, LabOptions, NsProcess, SERVER4};

const PY: &str = "/usr/bin/python3";
const APP_LAN_MAC: &str = "02:00:00:00:00:01";
const CLI_MAC: &str = "02:00:00:00:00:02";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Site {
    lab: Lab,
    work: tempfile::TempDir,
}

impl Site {
    fn up() -> Site {
        require_tools(&["tcpdump", "ping", PY]);
        Site {
            lab: Lab::up(&LabOptions::default()),
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn ns(&self, short: &str) -> String {
        self.lab.ns(short)
    }

    /// The lab's af_packet config with `edit` applied, written to a file.
    fn config(&self, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
        lab_config(self.work.path(), name, edit)
    }

    fn start(&self, config: &Path, tag: &str) -> Appliance {
        Appliance::start(&self.lab, config, self.work.path(), tag)
    }

    /// Runs the Python program `code` with `args` in namespace `short`.
    fn py(&self, short: &str, code: &str, args: &[&str]) -> std::process::Output {
        let mut a = vec![PY, "-c", code];
        a.extend_from_slice(args);
        ns_output(&self.ns(short), &a)
    }
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `ping` in `ns` with `args`, at most `count` probes 200 ms apart; output.
fn ping(site: &Site, short: &str, args: &[&str]) -> (bool, String) {
    let mut a = vec!["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2"];
    a.extend_from_slice(args);
    let o = ns_output(&site.ns(short), &a);
    (o.status.success(), text(&o))
}

/// Sends mDNS to 224.0.0.251, a limited and a subnet broadcast (5 each)
/// and 5 unicast datagrams to the server, all to UDP port 5353, from the
/// client's eth0.
const LAN_NOISE: &str = r#"
import socket, time
SO_BINDTODEVICE = 25
def sock():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, b"eth0")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("10.0.0.2"))
    return s
s = sock()
sent = 0
for i in range(5):
    for dst in ["224.0.0.251", "255.255.255.255", "10.0.0.255", "203.0.113.80"]:
        s.sendto(b"noise %d" % i, (dst, 5353))
        sent += 1
    time.sleep(0.05)
print(sent)
"#;

/// Scapy: a frame to the appliance's MAC addressed to the subnet broadcast
/// (martian), and 3 VLAN-0 priority-tagged UDP datagrams to the server.
const SCAPY_FRAMES: &str = r#"
import sys
from scapy.all import Ether, Dot1Q, IP, UDP, sendp
app, cli = sys.argv[1], sys.argv[2]
sendp(Ether(dst=app, src=cli)/IP(src="10.0.0.2", dst="10.0.0.255")/UDP(sport=5353, dport=5353)/b"martian",
      iface="eth0", count=3, verbose=False)
sendp(Ether(dst=app, src=cli)/Dot1Q(vlan=0, prio=5)/IP(src="10.0.0.2", dst="203.0.113.80", ttl=64)
      /UDP(sport=40404, dport=9999)/b"vlan zero", iface="eth0", count=3, inter=0.2, verbose=False)
print("sent")
"#;

/// Receives on 203.0.113.80:9999 for up to 8 s; prints what came.
const UDP_RECV: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("203.0.113.80", 9999))
s.settimeout(8)
try:
    data, peer = s.recvfrom(2048)
    print("got", data.decode(), peer[0])
except socket.timeout:
    print("nothing")
"#;

#[test]
fn pings_time_exceeded_martians_and_vlan_zero() {
    let _g = serial();
    let site = Site::up();
    let app = site.start(&site.config("base.toml", |c| c), "base");
    std::thread::sleep(Duration::from_secs(1));

    // The LAN gateway answers pings, IPv4 and IPv6.
    for gw in ["10.0.0.1", "fd00:1::1"] {
        let (ok, out) = ping(&site, "cli", &[gw]);
        assert!(ok, "ping {gw}:\n{out}");
    }
    // A NAT address answers from outside.
    for nat in ["100.64.1.10", "2001:db8:a::10"] {
        let (ok, out) = ping(&site, "srv", &[nat]);
        assert!(ok, "ping {nat}:\n{out}");
    }
    // TTL 1 through the appliance: time exceeded from the gateway.
    for (dst, gw) in [(SERVER4, "10.0.0.1"), ("2001:db8:80::80", "fd00:1::1")] {
        let (_, out) = ping(&site, "cli", &["-t", "1", dst]);
        assert!(
            out.contains(&format!("From {gw}")) && out.contains("exceeded"),
            "ping -t 1 {dst}:\n{out}"
        );
    }

    // LAN noise: tcpdump on each ISP wire for UDP port 5353.
    let dumps: Vec<(String, NsProcess)> = ["isp-a", "isp-b", "isp-c"]
        .iter()
        .map(|isp| {
            let pcap = site.work.path().join(format!("{isp}.pcap"));
            let p = NsProcess::start(
                &site.ns(isp),
                &[
                    "timeout",
                    "6",
                    "tcpdump",
                    "-n",
                    "-U",
                    "-i",
                    "up0",
                    "-c",
                    "200",
                    "-w",
                    pcap.to_str().unwrap(),
                    "udp port 5353",
                ],
                site.work.path(),
                &site.work.path().join(format!("tcpdump-{isp}.log")),
            );
            (pcap.to_str().unwrap().to_string(), p)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let o = site.py("cli", LAN_NOISE, &[]);
    assert!(o.status.success(), "noise: {}", text(&o));
    let o = site.py("cli", SCAPY_FRAMES, &[APP_LAN_MAC, CLI_MAC]);
    let recv = {
        let srv = site.ns("srv");
        std::thread::spawn(move || ns_output(&srv, &[PY, "-c", UDP_RECV]))
    };
    std::thread::sleep(Duration::from_millis(500));
    let o2 = site.py("cli", SCAPY_FRAMES, &[APP_LAN_MAC, CLI_MAC]);
    assert!(
        o.status.success() && o2.status.success(),
        "scapy: {}{}",
        text(&o),
        text(&o2)
    );
    let got = text(&recv.join().unwrap());
    assert!(
        got.contains("got vlan zero 100.64."),
        "the VLAN-0 frame reached the server from a NAT address: {got}"
    );
    let mut leaked = Vec::new();
    let mut unicast = 0;
    for (pcap, mut p) in dumps {
        p.stop(Duration::from_secs(8));
        let read = ns_output(&site.ns("isp-a"), &["tcpdump", "-n", "-r", &pcap]);
        for line in String::from_utf8_lossy(&read.stdout).lines() {
            if line.contains("203.0.113.80.5353") {
                unicast += 1;
            } else {
                leaked.push(line.to_string());
            }
        }
    }
    assert_eq!(unicast, 5, "the capture sees the unicast datagrams");
    assert!(
        leaked.is_empty(),
        "LAN multicast/broadcast on an ISP: {leaked:#?}"
    );

    let stats = app.stop();
    let c = &stats["stages"]["classify"];
    assert!(n(&c["originated"]["echo_reply"]) >= 12, "{c}");
    assert!(n(&c["originated"]["time_exceeded"]) >= 6, "{c}");
    assert!(n(&c["drops"]["not_for_us"]) >= 10, "{c}");
    assert!(n(&c["drops"]["martian_destination"]) >= 3, "{c}");
}

/// The config with isp-b and isp-c removed (their ports stay, unused) and
/// wan-a's MTU 1280.
fn one_small_uplink(c: String) -> String {
    let start = c
        .find("[[uplinks]]\nname = \"isp-b\"")
        .expect("isp-b block");
    let end = c.find("# NAT, with timeouts").expect("[nat] comment");
    let mut c = format!("{}{}", &c[..start], &c[end..]);
    c = c.replace(
        "interface = \"wan-a\"\n",
        "interface = \"wan-a\"\nmtu = 1280\n",
    );
    c
}

/// A TCP sink on 203.0.113.80:9100 that prints the bytes it read.
const TCP_SINK: &str = r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.80", 9100))
s.listen(1)
s.settimeout(30)
c, _ = s.accept()
c.settimeout(30)
n = 0
while True:
    b = c.recv(65536)
    if not b:
        break
    n += len(b)
c.sendall(str(n).encode())
c.close()
print(n)
"#;

/// Uploads 1 MB to 203.0.113.80:9100 (full-size segments, DF: Linux's
/// default PMTU discovery) and prints what the sink counted.
const TCP_UPLOAD: &str = r#"
import socket, time
for _ in range(50):
    try:
        s = socket.create_connection(("203.0.113.80", 9100), timeout=2)
        break
    except OSError:
        time.sleep(0.2)
s.settimeout(30)
s.sendall(b"x" * 1_000_000)
s.shutdown(socket.SHUT_WR)
print(s.recv(64).decode())
"#;

/// A DF UDP datagram of 1,400 bytes to 100.64.1.1:9 (the ISP router,
/// through the appliance); prints the path MTU the kernel then holds.
const DF_UDP: &str = r#"
import socket, time
IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_MTU = 10, 2, 14
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
s.connect(("100.64.1.1", 9))
s.send(b"d" * (1400 - 28))
time.sleep(1)
try:
    s.send(b"d" * (1400 - 28))
    print("sent again")
except OSError as e:
    print("refused", e.errno)
print("mtu", s.getsockopt(socket.IPPROTO_IP, IP_MTU))
"#;

#[test]
fn pmtud_over_an_uplink_with_mtu_1280() {
    let _g = serial();
    let site = Site::up();
    let app = site.start(&site.config("mtu.toml", one_small_uplink), "mtu");
    std::thread::sleep(Duration::from_secs(1));
    let sink = {
        let srv = site.ns("srv");
        std::thread::spawn(move || ns_output(&srv, &[PY, "-c", TCP_SINK]))
    };
    std::thread::sleep(Duration::from_millis(500));
    let up = site.py("cli", TCP_UPLOAD, &[]);
    let sink = sink.join().unwrap();
    assert!(up.status.success(), "upload: {}", text(&up));
    assert_eq!(text(&up).trim(), "1000000", "upload: {}", text(&up));
    assert_eq!(text(&sink).trim(), "1000000");

    // The upload spent the client's ICMP tokens (a window of full-size
    // segments each got one, burst 10): let its bucket refill (10/s).
    std::thread::sleep(Duration::from_millis(1500));
    let o = site.py("cli", DF_UDP, &[]);
    let out = text(&o);
    assert!(
        out.contains("refused 90") && out.contains("mtu 1280"),
        "DF UDP: {out}"
    );
    let route = ns_ok(&site.ns("cli"), &["ip", "route", "get", "100.64.1.1"]);
    assert!(route.contains("mtu 1280"), "{route}");

    let stats = app.stop();
    let t = &stats["stages"]["transmit"];
    assert!(n(&t["originated"]["frag_needed"]) >= 2, "{t}");
}
