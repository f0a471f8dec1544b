//! IP fragments through the network-namespace lab (`scripts/lab.sh`), real
//! Linux stacks on both sides of the appliance (af_packet backend,
//! `conf/lab-afpacket.toml` with two run-to-completion lcores, so two NAT
//! shards and the fragment hand-off between them):
//!
//! - a 3,200-byte UDP datagram to an echo server crosses both ways, IPv4 and
//!   IPv6 (Linux fragments it on the client and on the server; the lab's
//!   veths have offloads off and MTU 1500, and the appliance's stats count
//!   the fragments its trackers saw);
//! - the same, its fragments sent by scapy out of order and duplicated;
//! - a flood of 20,000 first fragments never completed: HTTP requests and
//!   small UDP echoes meanwhile all succeed, and the stats show the
//!   fragment state at its limit and the refusals counted.
//!
//! Needs root, network namespaces, curl and Debian's python3 with scapy
//! (scripts/install-deps.sh): without them the tests fail, they never skip.
//! Every packet stays inside the lab's namespaces; the flood is bounded in
//! count (20,000) and time (paced over ~2 s). One lab at a time (a mutex).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use common::lab::require_tools;
use common::lab::{count as n, Appliance};
use common::lab::{
    ns_output, start_http_servers, Lab, LabOptions, NsProcess, HTTP_PORT, SERVER4, SERVER6,
};

const CLIENT4: &str = "10.0.0.2";
const CLIENT6: &str = "fd00:1::2";
const ECHO_PORT: u16 = 7007;
const PY: &str = "/usr/bin/python3";
/// First fragments in the flood.
const FLOOD: u32 = 20_000;
/// `[fragments] max_datagrams_per_shard` of the flood test.
const DATAGRAMS_PER_SHARD: u64 = 256;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A UDP echo server on both server addresses.
const ECHO_SERVER: &str = r#"
import select, socket, sys
port = int(sys.argv[3])
socks = []
for fam, addr in ((socket.AF_INET, sys.argv[1]), (socket.AF_INET6, sys.argv[2])):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((addr, port))
    socks.append(s)
while True:
    ready, _, _ = select.select(socks, [], [])
    for s in ready:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)
"#;

/// Sends `count` datagrams of `size` random bytes to `dst:port` (up to 3
/// tries each, 2 s apart) and prints how many came back intact.
const ECHO_CLIENT: &str = r#"
import os, socket, sys
dst, port, size, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ':' in dst else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
ok = 0
for i in range(count):
    data = os.urandom(size)
    for attempt in range(3):
        s.sendto(data, (dst, port))
        try:
            while True:
                got, _ = s.recvfrom(65535)
                if got == data:
                    ok += 1
                    break
        except socket.timeout:
            continue
        break
print(ok)
"#;

/// Sends `count` 3,200-byte datagrams from `src` to `dst:port` as scapy
/// fragments in `order` (indexes into the 3 fragments, repeats allowed:
/// duplicates), and prints how many echoes came back intact.
const SCAPY_REORDER: &str = r#"
import os, socket, sys
from scapy.all import IP, IPv6, UDP, IPv6ExtHdrFragment, Raw, conf, fragment, fragment6, send
conf.verb = 0
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
order = [int(x) for x in sys.argv[4].split(',')]
count = int(sys.argv[5])
v6 = ':' in dst
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
s.settimeout(3)
sport = s.getsockname()[1]
ok = 0
for i in range(count):
    data = os.urandom(3200)
    if v6:
        pkt = IPv6(src=src, dst=dst) / IPv6ExtHdrFragment(id=0x5000 + i) / UDP(sport=sport, dport=port) / Raw(data)
        frags = fragment6(pkt, 1280)
    else:
        pkt = IP(src=src, dst=dst, id=0x5000 + i) / UDP(sport=sport, dport=port) / Raw(data)
        frags = fragment(pkt, 1480)
    assert len(frags) == 3, len(frags)
    send([frags[j] for j in order])
    try:
        while True:
            got, _ = s.recvfrom(65535)
            if got == data:
                ok += 1
                break
    except socket.timeout:
        pass
print(ok)
"#;

/// `count` IPv4 first fragments (more-fragments set, offset 0, a UDP header
/// claiming 3,200 bytes, 56 bytes of data), each its own identification,
/// from `src` to `dst:port`, paced over `secs` seconds; prints how many.
const FLOOD_FIRSTS: &str = r#"
import socket, struct, sys, time
src, dst, port, count, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
srcb, dstb = socket.inet_aton(src), socket.inet_aton(dst)
body = struct.pack('!HHHH', 40999, port, 3208, 0) + b'f' * 56
start = time.monotonic()
sent = 0
for i in range(count):
    ident = 1 + i
    hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(body), ident, 0x2000, 64, 17, 0, srcb, dstb)
    s.sendto(hdr + body, (dst, 0))
    sent += 1
    if i % 500 == 0:
        ahead = start + secs * i / count - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
print(sent)
"#;

struct Site {
    lab: Lab,
    work: tempfile::TempDir,
    _servers: Vec<NsProcess>,
}

impl Site {
    fn up() -> Site {
        require_tools(&["curl", PY]);
        let lab = Lab::up(&LabOptions::default());
        let work = tempfile::tempdir().unwrap();
        let www = work.path().join("www");
        std::fs::create_dir(&www).unwrap();
        std::fs::write(www.join("page.txt"), b"hello through the appliance").unwrap();
        let mut servers = start_http_servers(&lab, &www, work.path());
        let port = ECHO_PORT.to_string();
        servers.push(NsProcess::start(
            &lab.ns("srv"),
            &[PY, "-c", ECHO_SERVER, SERVER4, SERVER6, &port],
            work.path(),
            &work.path().join("echo.log"),
        ));
        Site {
            lab,
            work,
            _servers: servers,
        }
    }

    /// The lab's af_packet config with two lcores and `extra` appended.
    fn config(&self, name: &str, extra: &str) -> PathBuf {
        let base = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/lab-afpacket.toml"),
        )
        .unwrap();
        let path = self.work.path().join(name);
        std::fs::write(&path, format!("{base}\n[[runtime.lcores]]\n{extra}\n")).unwrap();
        path
    }

    fn start(&self, config: &Path, tag: &str) -> Appliance {
        Appliance::start(&self.lab, config, self.work.path(), tag)
    }

    /// Runs a python script in the client namespace; its last stdout line
    /// as a number.
    fn py_count(&self, script: &str, args: &[&str]) -> u64 {
        let mut all = vec![PY, "-c", script];
        all.extend_from_slice(args);
        let out = ns_output(&self.lab.ns("cli"), &all);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{args:?}: no count; stdout {text:?}, stderr {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    }

    fn echo(&self, dst: &str, size: usize, count: u32) -> u64 {
        let (port, size, count) = (ECHO_PORT.to_string(), size.to_string(), count.to_string());
        self.py_count(ECHO_CLIENT, &[dst, &port, &size, &count])
    }

    fn reorder(&self, src: &str, dst: &str, order: &str, count: u32) -> u64 {
        let (port, count) = (ECHO_PORT.to_string(), count.to_string());
        self.py_count(SCAPY_REORDER, &[src, dst, &port, order, &count])
    }

    /// `count` HTTP requests to the IPv4 server; how many got a 200.
    fn http(&self, count: u32) -> usize {
        let url = format!("http://{SERVER4}:{HTTP_PORT}/page.txt?[1-{count}]");
        let out = ns_output(
            &self.lab.ns("cli"),
            &[
                "curl",
                "-s",
                "-m",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}\n",
                &url,
            ],
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| *l == "200")
            .count()
    }
}

fn print_fragments(what: &str, stats: &serde_json::Value) {
    let nat = &stats["nat"];
    let drops = &stats["stages"]["translate"]["drops"];
    println!(
        "{what}: fragments {} held {}/{} datagrams {}/{}; drops: fragment {} limit {} timeout {} \
         overlap {} duplicate {} too_big {}; classify fragment drops {} tiny {}",
        nat["fragments"],
        nat["fragments_held"],
        nat["fragments_held_limit"],
        nat["fragment_datagrams"],
        nat["fragment_datagrams_limit"],
        drops["fragment"],
        drops["fragment_limit"],
        drops["fragment_timeout"],
        drops["fragment_overlap"],
        drops["fragment_duplicate"],
        drops["fragment_too_big"],
        stats["stages"]["classify"]["drops"]["fragment"],
        stats["stages"]["classify"]["drops"]["fragment_tiny"],
    );
}

#[test]
fn a_3200_byte_udp_echo_crosses_both_ways_in_order_out_of_order_and_duplicated() {
    let _g = serial();
    let site = Site::up();
    let cfg = site.config("echo.toml", "");
    let app = site.start(&cfg, "echo");
    // Linux fragments on both sides.
    assert_eq!(site.echo(SERVER4, 3200, 10), 10, "IPv4 echo");
    assert_eq!(site.echo(SERVER6, 3200, 10), 10, "IPv6 echo");
    // Scapy's fragments: last first, a duplicate, the first last.
    assert_eq!(
        site.reorder(CLIENT4, SERVER4, "2,1,1,0", 5),
        5,
        "IPv4 reordered"
    );
    assert_eq!(
        site.reorder(CLIENT6, SERVER6, "1,2,0,2", 5),
        5,
        "IPv6 reordered"
    );
    // Small datagrams are untouched by all this.
    assert_eq!(site.echo(SERVER4, 100, 5), 5);
    let stats = app.stop();
    print_fragments("echo", &stats);
    let nat = &stats["nat"];
    // 20 echoes of 3 fragments each way, plus 10 scapy datagrams (3 each
    // plus a duplicate) and their 3-fragment answers.
    assert!(
        n(&nat["fragments"]) >= 20 * 3 * 2 + 10 * 4 + 10 * 3,
        "the appliance saw the fragments: {}",
        nat["fragments"]
    );
    let drops = &stats["stages"]["translate"]["drops"];
    assert!(n(&drops["fragment_duplicate"]) >= 5, "the IPv4 duplicates");
    for key in [
        "fragment",
        "fragment_limit",
        "fragment_overlap",
        "fragment_too_big",
    ] {
        assert_eq!(n(&drops[key]), 0, "{key}");
    }
}

#[test]
fn a_flood_of_first_fragments_stops_at_the_limit_while_other_traffic_crosses() {
    let _g = serial();
    let site = Site::up();
    let extra = format!(
        "\n[fragments]\nmax_datagrams_per_shard = {DATAGRAMS_PER_SHARD}\ntimeout_ms = 60000\n"
    );
    let cfg = site.config("flood.toml", &extra);
    let app = site.start(&cfg, "flood");
    // Neighbours resolved and sessions warm before the flood.
    assert_eq!(site.echo(SERVER4, 100, 2), 2);
    let ns = site.lab.ns("cli");
    let flood = std::thread::spawn(move || {
        let (port, count) = (ECHO_PORT.to_string(), FLOOD.to_string());
        ns_output(
            &ns,
            &[PY, "-c", FLOOD_FIRSTS, CLIENT4, SERVER4, &port, &count, "2"],
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let http = site.http(20);
    let echoes = site.echo(SERVER4, 100, 20);
    let out = flood.join().unwrap();
    let sent: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("flood: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(sent, FLOOD);
    assert_eq!(http, 20, "HTTP requests during the flood");
    assert_eq!(echoes, 20, "UDP echoes during the flood");
    // And after it.
    assert_eq!(site.http(5), 5);
    let stats = app.stop();
    print_fragments("flood", &stats);
    let nat = &stats["nat"];
    let limit = n(&nat["fragment_datagrams_limit"]);
    assert_eq!(limit, 2 * DATAGRAMS_PER_SHARD, "two shards");
    assert_eq!(
        n(&nat["fragment_datagrams"]),
        limit,
        "the state is at its limit"
    );
    assert!(n(&nat["fragments"]) >= u64::from(FLOOD));
    let refused = n(&stats["stages"]["translate"]["drops"]["fragment_limit"]);
    assert!(
        refused >= u64::from(FLOOD) - limit,
        "refusals counted: {refused}"
    );
}
