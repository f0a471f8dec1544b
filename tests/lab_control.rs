//! The control socket against the appliance in the network-namespace lab
//! (`scripts/lab.sh`, af_packet backend, `conf/lab-afpacket.toml`), with
//! real Linux TCP clients and servers:
//!
//! - a long-lived TCP connection and a curl request show in `sessions`
//!   with the uplink that won their race (isp-a, the fastest) and their
//!   TCP state;
//! - `rtt` shows the server's destination over the lab's three ISPs,
//!   fastest first;
//! - `uplink drain isp-a` sends every new connection elsewhere while the
//!   long-lived connection on isp-a keeps carrying data;
//! - `sessions flush --uplink isp-b` removes exactly isp-b's sessions.
//!
//! Needs root, network namespaces, curl and python3: without them the test
//! fails, it never skips. Every packet stays inside the lab's namespaces.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::lab::require_tools;
use common::lab::{
    appliance_bin, ns_output, start_http_servers, wait_for_port, Lab, LabOptions, NsProcess,
    HTTP_PORT, SERVER4,
};
use serde_json::Value;

const PY: &str = "/usr/bin/python3";
const ECHO_PORT: u16 = 9000;

/// An echo server for any number of connections, one line at a time.
const ECHO_SERVER: &str = r#"
import socket, sys, threading
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(64)
def serve(c):
    for line in c.makefile('rb'):
        c.sendall(b'echo:' + line)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// One connection that exchanges a line every 100 ms for argv[3] seconds;
/// prints "connected" at once and "ok N" with the exchanges at the end.
const LONG_CLIENT: &str = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
f = s.makefile('rb')
print('connected', flush=True)
end, n = time.monotonic() + float(sys.argv[3]), 0
while time.monotonic() < end:
    s.sendall(b'%d\n' % n)
    assert f.readline() == b'echo:%d\n' % n
    n += 1
    time.sleep(0.1)
print('ok', n, flush=True)
"#;

fn client(socket: &Path, args: &[&str]) -> Output {
    Command::new(appliance_bin())
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap()
}

fn ok(socket: &Path, args: &[&str]) -> String {
    let out = client(socket, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(socket: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(socket, args)).unwrap()
}

fn sessions(socket: &Path, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["sessions", "--json", "--limit", "100000"];
    args.extend_from_slice(filters);
    json(socket, &args).as_array().unwrap().clone()
}

fn connections(socket: &Path, uplink: &str) -> u64 {
    let list = json(socket, &["uplink", "list", "--json"]);
    list.as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == uplink)
        .unwrap()["connections"]
        .as_u64()
        .unwrap()
}

fn curl(lab: &Lab) {
    let url = format!("http://{SERVER4}:{HTTP_PORT}/page.txt");
    let out = ns_output(&lab.ns("cli"), &["curl", "-sS", "-m", "5", &url]);
    assert!(
        out.status.success() && out.stdout == b"hello",
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sessions_drain_flush_and_rtt_in_the_lab() {
    require_tools(&["curl", PY]);
    let lab = Lab::up(&LabOptions::default());
    let work = tempfile::tempdir().unwrap();
    let www = work.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("page.txt"), b"hello").unwrap();
    let _http = start_http_servers(&lab, &www, work.path());
    let _echo = NsProcess::start(
        &lab.ns("srv"),
        &[PY, "-c", ECHO_SERVER, SERVER4, &ECHO_PORT.to_string()],
        work.path(),
        &work.path().join("echo.log"),
    );
    wait_for_port(
        &lab.ns("srv"),
        (SERVER4.parse::<std::net::IpAddr>().unwrap(), ECHO_PORT).into(),
        Duration::from_secs(10),
    );
    let socket = work.path().join("ctl.sock");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/lab-afpacket.toml");
    let mut app = NsProcess::start(
        &lab.ns("app"),
        &[
            appliance_bin(),
            "run",
            "--config",
            config.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
        ],
        work.path(),
        &work.path().join("appliance.log"),
    );
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "no control socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    app.assert_running();
    // Every next hop resolved first, so that every race copy can leave.
    let t0 = Instant::now();
    loop {
        let stats = json(&socket, &["stats", "--json"]);
        let hops = stats["neighbours"].as_array().unwrap().clone();
        if hops
            .iter()
            .all(|h| h["uplink"].is_null() || !h["mac"].is_null())
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "next hops unresolved: {hops:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // One request races the three ISPs; isp-a (2 ms) wins.
    curl(&lab);
    let long = std::thread::spawn({
        let ns = lab.ns("cli");
        move || {
            common::lab::ns_cmd(&ns, &[PY, "-c", LONG_CLIENT, SERVER4, "9000", "6"])
                .output()
                .unwrap()
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    let tcp = sessions(&socket, &["--proto", "tcp", "--remote", SERVER4]);
    let echo = tcp
        .iter()
        .find(|s| s["remote"] == format!("{SERVER4}:{ECHO_PORT}"))
        .unwrap_or_else(|| panic!("no session of the long connection: {tcp:?}"));
    assert_eq!(echo["uplink"], "isp-a", "{echo}");
    assert_eq!(echo["state"], "established", "{echo}");
    assert!(
        echo["inside"].as_str().unwrap().starts_with("10.0.0.2:"),
        "{echo}"
    );
    let web = tcp
        .iter()
        .find(|s| s["remote"] == format!("{SERVER4}:{HTTP_PORT}") && s["race"] != "lost")
        .unwrap_or_else(|| panic!("no session of curl's connection: {tcp:?}"));
    assert_eq!(web["uplink"], "isp-a", "{web}");
    assert!(
        ["fin_seen", "closed"].contains(&web["state"].as_str().unwrap()),
        "{web}"
    );

    // The RTT table: the server over the three ISPs, fastest first.
    // (The losers' answers arrive within about 70 ms.)
    let t0 = Instant::now();
    let rows = loop {
        let rows = json(&socket, &["rtt", "--json", "--dest", SERVER4]);
        if rows.as_array().unwrap().len() >= 3 || t0.elapsed() > Duration::from_secs(3) {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let rtt = |isp: &str| -> f64 {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["uplink"] == isp)
            .unwrap_or_else(|| panic!("no {isp} row: {rows}"))["smoothed_ms"]
            .as_f64()
            .unwrap()
    };
    let (a, b, c) = (rtt("isp-a"), rtt("isp-b"), rtt("isp-c"));
    println!("rtt to {SERVER4}: isp-a {a:.1} ms, isp-b {b:.1} ms, isp-c {c:.1} ms");
    assert!(a < b && b < c, "{rows}");
    assert!(
        b > 25.0 && c > 55.0,
        "the lab's delays are 2, 15 and 30 ms each way: {rows}"
    );

    // Drain isp-a: new connections leave by the others; the long one
    // keeps going on isp-a.
    let a0 = connections(&socket, "isp-a");
    ok(&socket, &["uplink", "drain", "isp-a"]);
    std::thread::sleep(Duration::from_millis(200));
    let others0 = connections(&socket, "isp-b") + connections(&socket, "isp-c");
    for _ in 0..5 {
        curl(&lab);
    }
    assert_eq!(
        connections(&socket, "isp-a"),
        a0,
        "a new connection took drained isp-a"
    );
    assert_eq!(
        connections(&socket, "isp-b") + connections(&socket, "isp-c"),
        others0 + 5
    );
    let out = long.join().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let n: u32 = said
        .lines()
        .find_map(|l| l.strip_prefix("ok "))
        .unwrap_or_else(|| {
            panic!(
                "the long connection died: {said} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .parse()
        .unwrap();
    assert!(n >= 30, "{n} exchanges in 6 s");
    let still = sessions(&socket, &["--uplink", "isp-a", "--proto", "tcp"]);
    assert!(
        still
            .iter()
            .any(|s| s["remote"] == format!("{SERVER4}:{ECHO_PORT}")),
        "the long connection's session left isp-a: {still:?}"
    );

    // Flush isp-b: exactly its sessions go.
    let count = |u: &str| sessions(&socket, &["--uplink", u]).len();
    let (a1, b1, c1) = (count("isp-a"), count("isp-b"), count("isp-c"));
    assert!(
        b1 >= 1,
        "the drained period's connections are on isp-b: {b1}"
    );
    let out = ok(&socket, &["sessions", "flush", "--uplink", "isp-b"]);
    assert_eq!(out.trim(), format!("flushed {b1} sessions"));
    assert_eq!(count("isp-b"), 0);
    assert_eq!((count("isp-a"), count("isp-c")), (a1, c1));
    ok(&socket, &["uplink", "resume", "isp-a"]);
    curl(&lab);
    app.assert_running();
    let log = app.stop(Duration::from_secs(10));
    assert!(app.status.is_some_and(|s| s.success()), "{log}");
}
