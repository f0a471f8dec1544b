//! Seed 000's server cluster with real stacks, in the network-namespace lab
//! (`scripts/lab.sh`, af_packet backend, `conf/lab-redirect.toml`): the
//! service on isp-a's NAT address (port 80) fronts three LAN servers in the
//! client namespace (`python3 -m http.server` and a UDP echo server on
//! 10.0.0.11-13 and fd00:1::11-13, port 8000); each server also has a
//! service address of its own (ports 81-83), the targets of redirections.
//! Clients run in the server ("internet") namespace. IPv4 and IPv6:
//!
//! - a plain `curl` is served by the least loaded server (three requests,
//!   three different servers; their TCP sessions in the stats);
//! - `appliance client --to` (TCP and UDP) is redirected and served by the
//!   target, and tcpdump on the ISP wire shows its SYNs marked DSCP 11 then
//!   27;
//! - with a server stopped, the client resends with the failure flag (DSCP
//!   43) and is served elsewhere, and after `failure_threshold` reports the
//!   appliance avoids that server;
//! - a permanent redirection is followed on the next run without
//!   asking the service (the state file), a leased one until its lease ends.
//!
//! Needs root, network namespaces, tcpdump, curl and python3: without them
//! the tests fail, they never skip. Every packet stays inside the lab's
//! namespaces; every client is bounded in count and time.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::lab::require_tools;
use common::lab::{appliance_bin, ns_output, wait_for_port, Lab, LabOptions, NsProcess};

const PY: &str = "/usr/bin/python3";
const SERVER_PORT: u16 = 8000;
const HTTP_REQ: &str = r"GET /name HTTP/1.0\r\n\r\n";

static SERIAL: Mutex<()> = Mutex::new(());

const UDP_ECHO: &str = r#"
import socket, sys
name, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
while True:
    d, a = s.recvfrom(65535)
    s.sendto(name.encode() + b': ' + d, a)
"#;

struct Family {
    /// The service address (isp-a's NAT address).
    svc: &'static str,
    /// The servers' addresses, s1..s3.
    servers: [&'static str; 3],
    /// Names of the per-server services in the stats.
    suffix: &'static str,
}

const V4: Family = Family {
    svc: "100.64.1.10",
    servers: ["10.0.0.11", "10.0.0.12", "10.0.0.13"],
    suffix: "",
};
const V6: Family = Family {
    svc: "2001:db8:a::10",
    servers: ["fd00:1::11", "fd00:1::12", "fd00:1::13"],
    suffix: "v6",
};

fn sock(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

struct Site {
    lab: Lab,
    work: tempfile::TempDir,
    /// Per server: (http, udp).
    servers: Vec<(NsProcess, NsProcess)>,
    app: Option<NsProcess>,
    ctl: PathBuf,
}

impl Site {
    fn up(fam: &Family) -> Site {
        require_tools(&["tcpdump", "curl", PY]);
        let lab = Lab::up(&LabOptions::default());
        let work = tempfile::tempdir().unwrap();
        let cli = lab.ns("cli");
        std::fs::write(work.path().join("udpecho.py"), UDP_ECHO).unwrap();
        let mut servers = Vec::new();
        for (i, addr) in fam.servers.iter().enumerate() {
            let (fl, len) = if addr.contains(':') {
                ("-6", "64")
            } else {
                ("-4", "24")
            };
            let cidr = format!("{addr}/{len}");
            let mut args = vec!["ip", fl, "addr", "add", &cidr, "dev", "eth0"];
            if addr.contains(':') {
                args.push("nodad");
            }
            let o = ns_output(&cli, &args);
            assert!(o.status.success(), "{args:?}: {o:?}");
            let www = work.path().join(format!("www{}", i + 1));
            std::fs::create_dir_all(&www).unwrap();
            std::fs::write(www.join("name"), format!("s{}\n", i + 1)).unwrap();
            let port = SERVER_PORT.to_string();
            let http = NsProcess::start(
                &cli,
                &[PY, "-m", "http.server", "--bind", addr, &port],
                &www,
                &work.path().join(format!("http{}.log", i + 1)),
            );
            let name = format!("s{}", i + 1);
            let echo = work.path().join("udpecho.py");
            let udp = NsProcess::start(
                &cli,
                &[PY, echo.to_str().unwrap(), &name, addr, &port],
                work.path(),
                &work.path().join(format!("udp{}.log", i + 1)),
            );
            servers.push((http, udp));
        }
        for addr in fam.servers {
            let a: std::net::IpAddr = addr.parse().unwrap();
            wait_for_port(&cli, (a, SERVER_PORT).into(), Duration::from_secs(10));
        }
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/lab-redirect.toml");
        let ctl = work.path().join("ctl.sock");
        let mut app = NsProcess::start(
            &lab.ns("app"),
            &[
                appliance_bin(),
                "run",
                "--config",
                config.to_str().unwrap(),
                "--socket",
                ctl.to_str().unwrap(),
            ],
            work.path(),
            &work.path().join("appliance.log"),
        );
        std::thread::sleep(Duration::from_millis(800));
        app.assert_running();
        Site {
            lab,
            work,
            servers,
            app: Some(app),
            ctl,
        }
    }

    fn srv(&self, args: &[&str]) -> String {
        let o = ns_output(&self.lab.ns("srv"), args);
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    /// `appliance client --to ...` in the server namespace; its output.
    fn client(&self, to: &str, tcp: bool, extra: &[&str]) -> String {
        let mut a = vec![
            appliance_bin(),
            "client",
            "--to",
            to,
            "--timeout-ms",
            "1000",
        ];
        if tcp {
            a.extend(["--tcp", "--request", HTTP_REQ]);
        } else {
            a.extend(["--request", "ping"]);
        }
        a.extend_from_slice(extra);
        self.srv(&a)
    }

    fn stats(&self) -> serde_json::Value {
        let o = std::process::Command::new(appliance_bin())
            .args(["stats", "--json", "--socket", self.ctl.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "appliance stats: {o:?}");
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("stats JSON: {e}: {}", String::from_utf8_lossy(&o.stdout)))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("appliance.log")).unwrap_or_default()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(mut a) = self.app.take() {
            a.stop(Duration::from_secs(5));
        }
        self.servers.clear();
    }
}

/// The named entry of `redirection.<list>` in the stats.
fn entry<'a>(stats: &'a serde_json::Value, list: &str, name: &str) -> &'a serde_json::Value {
    stats["redirection"][list]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no {list} {name} in {}", stats["redirection"]))
}

/// The DS bytes of the TCP SYNs in a `tcpdump -v` log, in order.
fn syn_ds_bytes(log: &str) -> Vec<u8> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let ds = ["(tos 0x", "(class 0x"]
            .iter()
            .find_map(|k| l.find(k).map(|j| &l[j + k.len()..]));
        // IPv4: header fields on one line, ports and flags on the next;
        // IPv6: all on one line.
        let flags = if l.contains("Flags [") {
            l
        } else {
            lines.get(i + 1).copied().unwrap_or("")
        };
        if let (Some(ds), true) = (ds, flags.contains("Flags [S]")) {
            let hex: String = ds.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
            out.push(u8::from_str_radix(&hex, 16).unwrap());
        }
    }
    out
}

/// A bounded tcpdump of the SYNs to the service address on isp-a's wire
/// (server namespace), running while `f` runs.
fn capture_syns<T>(site: &Site, fam: &Family, f: impl FnOnce() -> T) -> (T, Vec<u8>) {
    let log = site.work.path().join("tcpdump.log");
    let filter = format!("tcp and dst host {}", fam.svc);
    let mut td = NsProcess::start(
        &site.lab.ns("srv"),
        &[
            "timeout", "90", "tcpdump", "-l", "-v", "-n", "-i", "isp-a0", "-c", "400", &filter,
        ],
        site.work.path(),
        &log,
    );
    let until = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("listening on")
    {
        assert!(Instant::now() < until, "tcpdump did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = f();
    std::thread::sleep(Duration::from_millis(300));
    let text = td.stop(Duration::from_secs(2));
    (r, syn_ds_bytes(&text))
}

/// The port of the server that served (`served by ADDR:PORT`) in `out`.
fn served_port(out: &str) -> u16 {
    let l = out
        .lines()
        .find(|l| l.contains("served by"))
        .unwrap_or_else(|| panic!("not served:\n{out}"));
    let a = l.split("served by ").nth(1).unwrap();
    let a = a.split(',').next().unwrap();
    a.rsplit(':').next().unwrap().parse().unwrap()
}

fn cluster(fam: &Family) -> Site {
    let site = Site::up(fam);
    let svc80 = sock(fam.svc, 80);

    // A plain curl: served by the least loaded server. Sessions stay counted
    // (closed timeout 5 s), so three requests find three different servers.
    let mut names = Vec::new();
    for _ in 0..3 {
        let out = site.srv(&["curl", "-sS", "-m", "3", &format!("http://{svc80}/name")]);
        names.push(out.trim().to_string());
    }
    names.sort();
    assert_eq!(names, ["s1", "s2", "s3"], "log:\n{}", site.log());
    // The management core publishes server loads once per interval: poll
    // (well inside the 5 s closed timeout) until all three show.
    let until = Instant::now() + Duration::from_secs(3);
    let st = loop {
        let st = site.stats();
        let counted = (1..=3).all(|i| {
            let s = entry(&st, "servers", &format!("s{i}{}", fam.suffix));
            s["tcp_sessions"].as_u64().unwrap() >= 1
        });
        if counted || Instant::now() >= until {
            break st;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for i in 1..=3 {
        let s = entry(&st, "servers", &format!("s{i}{}", fam.suffix));
        assert!(s["tcp_sessions"].as_u64().unwrap() >= 1, "{s}");
    }
    assert!(st["redirection"]["plain"].as_u64().unwrap() >= 3);

    // The redirecting client over TCP: redirected, served by the target,
    // its SYNs marked 11 then 27 on the wire.
    let (out, ds) = capture_syns(&site, fam, || site.client(&svc80, true, &[]));
    assert!(
        out.contains("dscp 11 (capable, first): redirected to"),
        "{out}"
    );
    let port = served_port(&out);
    assert!((81..=83).contains(&port), "{out}");
    assert!(
        out.contains(&format!(
            "dscp 27 (redirected, follow): served by {}",
            sock(fam.svc, port)
        )),
        "{out}"
    );
    assert!(out.contains("HTTP/1.0 200 OK"), "{out}");
    assert_eq!(
        ds,
        [11 << 2, 27 << 2],
        "SYN DS bytes on the wire; client:\n{out}"
    );

    // Over UDP: the echo names the server behind the target.
    let out = site.client(&svc80, false, &[]);
    let port = served_port(&out);
    assert!(
        out.contains(&format!("\"s{}: ping\"", port - 80)),
        "served by the target's server:\n{out}"
    );
    assert!(
        out.contains("dscp 11 (capable, first): redirected to"),
        "{out}"
    );
    site
}

/// Stops s1's HTTP server; the client's redirections to it fail over with
/// the failure flag, and after the configured reports the appliance avoids
/// it.
fn failures(site: &mut Site, fam: &Family) {
    let svc80 = sock(fam.svc, 80);
    let s1 = sock(fam.svc, 81);
    site.servers[0].0.stop(Duration::from_secs(2));
    let name = format!("s1{}", fam.suffix);
    let (resends, ds) = capture_syns(site, fam, || {
        let mut resends = 0;
        for _ in 0..20 {
            let out = site.client(&svc80, true, &[]);
            if out.contains(&format!("tcp {s1} dscp 27")) {
                // Redirected to the stopped server: refused, then resent to
                // the service with the failure flag and served elsewhere.
                let resend = format!("tcp {svc80} dscp 43 (failed, resend): redirected to");
                assert!(out.contains(&resend), "{out}");
                let port = served_port(&out);
                assert!(port == 82 || port == 83, "{out}");
                resends += 1;
            } else {
                served_port(&out);
            }
            if entry(&site.stats(), "services", &name)["avoided"] == true {
                break;
            }
        }
        resends
    });
    // On the wire: each resend is a SYN marked 43 right after the refused
    // one marked 27.
    let on_wire = ds.windows(2).filter(|w| w == &[27 << 2, 43 << 2]).count();
    assert_eq!(on_wire, resends, "SYN DS bytes {ds:?}");
    assert!(
        !ds.is_empty() && ds.iter().all(|d| [11 << 2, 27 << 2, 43 << 2].contains(d)),
        "{ds:?}"
    );
    let st = site.stats();
    assert_eq!(
        entry(&st, "services", &name)["avoided"],
        true,
        "{}",
        st["redirection"]
    );
    assert!(resends >= 2, "failure_threshold = 2 reports");
    assert!(st["redirection"]["failures"].as_u64().unwrap() >= 2);
    // Avoided: no redirection goes there now.
    for _ in 0..4 {
        let out = site.client(&svc80, true, &[]);
        assert!(!out.contains(&s1), "{out}");
        served_port(&out);
    }
}

/// A permanent redirection is followed by the next run without asking the
/// service (the state file); a leased one until its lease ends.
fn persistence(site: &Site, fam: &Family) {
    // Permanent: the next run goes straight to the target (state file).
    let state = site.work.path().join(format!("client{}.json", fam.suffix));
    let st = state.to_str().unwrap();
    let perm = sock(fam.svc, 84);
    let out = site.client(&perm, true, &["--state", st]);
    assert!(
        out.contains("dscp 11 (capable, first): redirected to"),
        "{out}"
    );
    assert!(out.contains("(permanent)"), "{out}");
    let target = served_port(&out);
    let out = site.client(&perm, true, &["--state", st]);
    assert!(
        !out.contains(&format!("  tcp {perm} dscp")),
        "asked the service again:\n{out}"
    );
    assert!(
        out.contains(&format!(
            "tcp {} dscp 27 (redirected, remembered): served by",
            sock(fam.svc, target)
        )),
        "{out}"
    );

    // Leased (3 s): followed while the lease runs, then the service again.
    let leased = sock(fam.svc, 85);
    let out = site.client(&leased, false, &["--state", st]);
    assert!(out.contains("(leased 3 s)"), "{out}");
    let target = served_port(&out);
    let out = site.client(&leased, false, &["--state", st]);
    assert!(
        out.contains(&format!(
            "udp {} dscp 27 (redirected, remembered): served by",
            sock(fam.svc, target)
        )),
        "{out}"
    );
    std::thread::sleep(Duration::from_millis(3300));
    let out = site.client(&leased, false, &["--state", st]);
    assert!(
        out.contains(&format!(
            "udp {leased} dscp 11 (capable, first): redirected to"
        )),
        "lease over:\n{out}"
    );
}

#[test]
fn cluster_ipv4() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut site = cluster(&V4);
    persistence(&site, &V4);

    failures(&mut site, &V4);
}

#[test]
fn cluster_ipv6() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut site = cluster(&V6);
    persistence(&site, &V6);
    failures(&mut site, &V6);
}
