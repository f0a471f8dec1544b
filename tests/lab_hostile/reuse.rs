//! A 5-tuple reused right after a FIN close, with real Linux stacks: the
//! client binds the same source port (SO_REUSEADDR) and connects twice to
//! the same server; the second SYN finds the first connection's closed
//! session and must open (and race) a new connection instead of landing on
//! the dead one.

use super::{n, uplink, Site, PY};
use crate::common::lab::{ns_output, HTTP_PORT, SERVER4};

/// Two HTTP/1.0 requests from `src:port` to `dst:dport`, `gap` seconds
/// apart, each its own connection from the same source port (SO_REUSEADDR):
/// the server closes first (HTTP/1.0), so the client side ends in CLOSED
/// (no TIME_WAIT) and may connect from the same port again. Prints one line
/// per connection: `port <local port> status <first line of the answer>`.
const REUSE_CLIENT: &str = r#"
import socket, sys, time
src, sport, dst, dport, gap = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
for i in range(2):
    if i:
        time.sleep(gap)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(10)
    s.bind((src, sport))
    s.connect((dst, dport))
    s.sendall(b'GET /page.txt HTTP/1.0\r\nHost: x\r\n\r\n')
    data = b''
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    port = s.getsockname()[1]
    s.close()
    print('port %d status %s body %s' % (port, data.split(b'\r\n')[0].decode(),
                                         data.endswith(b'hello through the appliance')), flush=True)
"#;

#[test]
fn a_five_tuple_reused_right_after_a_fin_close_opens_and_races_a_new_connection() {
    let _one = super::serial();
    let site = Site::up();
    // A 1 s RTT cache: the second connection (1.5 s later) races again
    // instead of following the cache, so a second race shows that the SYN
    // opened a new connection rather than landing on the closed session
    // (which lives for tcp_transitory_timeout_s, 30 s in the lab config).
    let config = site.config("reuse.toml", |s| {
        assert!(s.contains("rtt_cache_ttl_s = 10\n"), "lab config changed");
        assert!(
            s.contains("tcp_transitory_timeout_s = 30\n"),
            "lab config changed"
        );
        s.replace("rtt_cache_ttl_s = 10\n", "rtt_cache_ttl_s = 1\n")
    });
    let app = site.start_appliance(&config, "reuse");
    let out = ns_output(
        &site.ns("cli"),
        &[
            "timeout",
            "40",
            PY,
            "-c",
            REUSE_CLIENT,
            super::GOOD_HOST,
            "41234",
            SERVER4,
            &HTTP_PORT.to_string(),
            "1.5",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stats = app.stop();
    let sel = &stats["selection"];
    let nat = &stats["nat"];
    let connections: u64 = ["isp-a", "isp-b", "isp-c"]
        .iter()
        .map(|u| n(&uplink(&stats, u)["connections"]))
        .sum();
    println!(
        "reuse: client said {:?}; races {} race copies {}; connections {connections}; nat created {} \
         tcp_sessions {} expired {}",
        text.lines().collect::<Vec<_>>(),
        sel["races"],
        sel["race_copies"],
        nat["created"],
        nat["tcp_sessions"],
        nat["expired"]
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "both connections completed: {text}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for l in &lines {
        assert_eq!(
            *l, "port 41234 status HTTP/1.0 200 OK body True",
            "each connection from source port 41234 got the page: {text}"
        );
    }
    // Each connection raced (one copy per uplink), and each counts as one
    // new connection on the uplink that won it.
    assert_eq!(n(&sel["races"]), 2, "two races: {sel}");
    assert_eq!(connections, 2, "two connections carried");
    // Three copies per race: the second race's sessions are new ones.
    assert!(n(&nat["created"]) >= 6, "{nat}");
    // The first connection's session was ended by the new SYN, not left to
    // expire: at most the second connection's sessions are live at the end
    // (losing copies may already have gone at their race timeout).
    assert!(n(&nat["tcp_sessions"]) <= 3, "{nat}");
}
