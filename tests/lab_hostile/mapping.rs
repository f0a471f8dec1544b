//! The per-mapping limit with real Linux stacks: one UDP socket talking to
//! 300 remote endpoints gets `mapping_max_sessions` (256 by default) of
//! them; the rest are refused and counted, while the socket's existing
//! sessions and the host's other sockets carry on.

use super::{n, Site, GOOD_HOST, PY};
use crate::common::lab::{ns_ok, NsProcess, SERVER4};

/// UDP echo on argv[2] ports from argv[1] on address argv[0].
const ECHO_PORTS: &str = r#"
import select, socket, sys
addr, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for p in range(first, first + count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, p))
    socks.append(s)
print('ready', flush=True)
while True:
    for s in select.select(socks, [], [])[0]:
        d, a = s.recvfrom(2048)
        s.sendto(b'echo:' + d, a)
"#;

/// From one socket (src:sport) one datagram to each of `count` server
/// ports; then again to the first port; then from another socket
/// (src:sport+1) to the first port. Prints the number of ports that
/// answered the first socket, then "again ok|lost" and "other ok|lost".
const ONE_SOCKET_MANY_REMOTES: &str = r#"
import socket, sys, time
src, sport, dst, first, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, sport))
s.settimeout(0.5)
answered = set()
# Three rounds, each to the ports that have not answered yet (a datagram
# lost on the way is sent again; a refused one stays refused).
for _ in range(3):
    for p in range(first, first + count):
        if p not in answered:
            s.sendto(b'hello', (dst, p))
            time.sleep(0.002)
    end = time.time() + 2
    while time.time() < end:
        try:
            d, a = s.recvfrom(2048)
            answered.add(a[1])
        except socket.timeout:
            pass
print(len(answered), flush=True)
def ask(sock):
    for _ in range(3):
        sock.sendto(b'again', (dst, first))
        try:
            while True:
                d, a = sock.recvfrom(2048)
                if d == b'echo:again':
                    return 'ok'
        except socket.timeout:
            pass
    return 'lost'
print('again', ask(s), flush=True)
o = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
o.bind((src, sport + 1))
o.settimeout(0.5)
print('other', ask(o), flush=True)
"#;

#[test]
fn one_socket_talking_to_many_remotes_stops_at_its_mapping_limit() {
    let _one = super::serial();
    let site = Site::up();
    let config = site.config("mapping.toml", |s| s);
    let log = site.work.path().join("echo-ports.log");
    let _echo = NsProcess::start(
        &site.ns("srv"),
        &[PY, "-c", ECHO_PORTS, SERVER4, "20000", "300"],
        site.work.path(),
        &log,
    );
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("ready")
    {
        assert!(std::time::Instant::now() < until, "echo server not ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let app = site.start_appliance(&config, "mapping");
    // The uplinks' next hops resolved (ARP) before the burst starts.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = ns_ok(
        &site.ns("cli"),
        &[
            "timeout",
            "30",
            PY,
            "-c",
            ONE_SOCKET_MANY_REMOTES,
            GOOD_HOST,
            "33000",
            SERVER4,
            "20000",
            "300",
        ],
    );
    let stats = app.stop();
    let nat = &stats["nat"];
    println!(
        "mapping: client said {:?}; mapping_sessions_limit {} udp created {} top_offenders {}",
        out.lines().collect::<Vec<_>>(),
        nat["mapping_sessions_limit"],
        nat["created"],
        nat["top_offenders"]
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["256", "again ok", "other ok"],
        "256 remotes answered (the default mapping_max_sessions); the socket's existing \
         session and the host's other socket still work"
    );
    // The 44 others refused on each of the three rounds; the socket's
    // 256 sessions (and the other socket's one) were created.
    assert_eq!(n(&nat["mapping_sessions_limit"]), 3 * 44, "{nat}");
    assert_eq!(
        stats["stages"]["translate"]["drops"]["mapping_sessions_limit"],
        3 * 44,
        "{}",
        stats["stages"]["translate"]
    );
    assert_eq!(n(&nat["created"]), 257, "{nat}");
    let top = &nat["top_offenders"][0];
    assert_eq!(top["host"], GOOD_HOST, "{nat}");
    assert_eq!(n(&top["refusals"]), 3 * 44, "{nat}");
    assert_eq!(n(&nat["table_full"]), 0, "{nat}");
}
