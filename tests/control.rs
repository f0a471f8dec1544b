//! The control socket against a running appliance (`appliance run` on the
//! embedded sim demo, conf/demo.toml), driven through the CLI: `stats
//! --json` has the keys of `--stats-out`; `uplink drain/down/up/weight`
//! show in `uplink list` and take effect; garbage, oversized requests and a
//! client that never reads do not stop or block it.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.toml");

fn appliance(args: &[&str], socket: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_appliance"))
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap()
}

/// Runs a client command that must succeed; its stdout.
fn ok(args: &[&str], socket: &Path) -> String {
    let out = appliance(args, socket);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    stdout
}

fn json(args: &[&str], socket: &Path) -> Value {
    serde_json::from_str(&ok(args, socket)).unwrap()
}

/// A running demo with its socket in a temp dir; killed if a test fails.
struct Running {
    child: Option<Child>,
    socket: PathBuf,
    stats_out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(duration: &str) -> Running {
        Running::start_with(tempfile::tempdir().unwrap(), Path::new(DEMO), duration)
    }

    /// Runs `config`, with the socket and stats in `dir`.
    fn start_with(dir: tempfile::TempDir, config: &Path, duration: &str) -> Running {
        Running::start_mode(dir, config, duration, 0o600)
    }

    /// [`Running::start_with`], the socket file's mode expected `mode`.
    fn start_mode(dir: tempfile::TempDir, config: &Path, duration: &str, mode: u32) -> Running {
        let socket = dir.path().join("ctl.sock");
        let stats_out = dir.path().join("final.json");
        let child = Command::new(env!("CARGO_BIN_EXE_appliance"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(["--duration", duration, "--socket"])
            .arg(&socket)
            .arg("--stats-out")
            .arg(&stats_out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while UnixStream::connect(&socket).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "no control socket");
            std::thread::sleep(Duration::from_millis(50));
        }
        let meta = std::fs::metadata(&socket).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, mode);
        Running {
            child: Some(child),
            socket,
            stats_out,
            _dir: dir,
        }
    }

    /// Waits for the run's end: it must exit 0 and leave its stats JSON.
    fn finish(mut self) -> Value {
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "appliance run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!self.socket.exists(), "the socket file outlived the run");
        serde_json::from_str(&std::fs::read_to_string(&self.stats_out).unwrap()).unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every object key path of `v` (arrays: their first element's).
fn keys(v: &Value, at: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}.{k}");
                out.insert(p.clone());
                keys(x, &p, out);
            }
        }
        Value::Array(a) => {
            if let Some(x) = a.first() {
                keys(x, &format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

fn key_set(v: &Value) -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    keys(v, "", &mut s);
    s
}

fn uplink<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("no uplink {name} in {list}"))
}

fn connections(list: &Value, name: &str) -> u64 {
    uplink(list, name)["connections"].as_u64().unwrap()
}

/// `uplink list --json` until `pred` holds for it (at most 2 s: the
/// selection thread publishes an operator's change at once).
fn list_until(socket: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let list = json(&["uplink", "list", "--json"], socket);
        if pred(&list) {
            return list;
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "{what}: {list}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One raw request line; the answer line.
fn raw(stream: &mut UnixStream, line: &[u8]) -> Value {
    stream.write_all(line).unwrap();
    let mut answer = String::new();
    BufReader::new(stream.try_clone().unwrap())
        .read_line(&mut answer)
        .unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{answer:?}: {e}"))
}

fn error_of(v: &Value) -> &str {
    assert_eq!(v["v"], 1, "{v}");
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {v}"))
}

/// Garbage, unknown and oversized requests get error answers; the
/// connection (except after an oversized line) stays usable.
fn hostile_requests(socket: &Path) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(error_of(&raw(&mut s, b"garbage\n")).contains("malformed"));
    assert!(error_of(&raw(&mut s, b"\xff\x00\x01\n")).contains("malformed"));
    assert!(error_of(&raw(&mut s, b"{\"v\":1,\"cmd\":\"reboot\"}\n")).contains("reboot"));
    assert!(error_of(&raw(&mut s, b"{\"v\":9,\"cmd\":\"stats\"}\n")).contains("version"));
    let bad = raw(
        &mut s,
        b"{\"v\":1,\"cmd\":\"uplink\",\"name\":\"nope\",\"action\":\"down\"}\n",
    );
    assert!(error_of(&bad).contains("isp-a"), "{bad}");
    // Still answering on the same connection.
    let good = raw(&mut s, b"{\"v\":1,\"cmd\":\"uplink_list\"}\n");
    assert_eq!(good["ok"].as_array().unwrap().len(), 3, "{good}");
    // A line without end: an error after 64 KiB, then the server closes.
    let mut big = UnixStream::connect(socket).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    big.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = big.write_all(&vec![b'x'; 70 * 1024]);
    let mut reader = BufReader::new(big);
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    let first: Value = serde_json::from_str(&answer).unwrap();
    assert!(error_of(&first).contains("65536"), "{first}");
    // Then closed: end of stream (or a reset, for the unread rest).
    let mut rest = Vec::new();
    assert!(matches!(reader.read_to_end(&mut rest), Ok(0) | Err(_)));
}

/// Connects, floods stats requests and never reads: the server must keep
/// answering everyone else. Returns the stream (kept open by the caller).
fn never_reads(socket: &Path) -> UnixStream {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let line = b"{\"v\":1,\"cmd\":\"stats\"}\n".repeat(100);
    let t0 = Instant::now();
    // Until our writes block (the server stopped reading us) or 3 s.
    while t0.elapsed() < Duration::from_secs(3) {
        if s.write_all(&line).is_err() {
            break;
        }
    }
    s
}

#[test]
fn control_socket_drives_a_running_demo() {
    let run = Running::start("16");
    let socket = run.socket.clone();
    let stalled = never_reads(&socket);
    hostile_requests(&socket);

    // stats: the table, then the JSON.
    let text = ok(&["stats"], &socket);
    assert!(
        text.contains("uplinks:") && text.contains("isp-a"),
        "{text}"
    );
    let live = json(&["stats", "--json"], &socket);
    assert!(live["uptime_s"].as_f64().unwrap() > 0.0);

    // The RTT table: every destination raced over the three ISPs; a
    // cache hit picks the fastest, isp-a.
    let rtt = json(&["rtt", "--json", "--limit", "10000"], &socket);
    let rows = rtt.as_array().unwrap();
    for isp in ["isp-a", "isp-b", "isp-c"] {
        assert!(
            rows.iter().any(|r| r["uplink"] == isp),
            "{isp} missing: {rtt}"
        );
    }
    let fresh: Vec<&Value> = rows.iter().filter(|r| r["fresh"] == true).collect();
    assert!(
        !fresh.is_empty() && fresh.iter().all(|r| r["pick"] == "isp-a"),
        "{rtt}"
    );
    let dest = rows[0]["dest"].as_str().unwrap().to_string();
    let one = json(&["rtt", "--json", "--dest", &dest], &socket);
    assert!(one
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["dest"] == dest.as_str()));

    // Drain the fastest uplink: every new TCP connection goes elsewhere.
    let before = json(&["uplink", "list", "--json"], &socket);
    assert_eq!(uplink(&before, "isp-a")["admin"], "up");
    assert_eq!(
        ok(&["uplink", "drain", "isp-a"], &socket),
        "isp-a: drained\n"
    );
    list_until(&socket, "isp-a drained", |l| {
        uplink(l, "isp-a")["admin"] == "drained"
    });
    std::thread::sleep(Duration::from_millis(300));
    let t0 = json(&["uplink", "list", "--json"], &socket);
    assert!(
        uplink(&t0, "isp-a")["up"].as_bool().unwrap(),
        "drained stays healthy"
    );
    std::thread::sleep(Duration::from_secs(2));
    let t1 = json(&["uplink", "list", "--json"], &socket);
    assert_eq!(
        connections(&t1, "isp-a"),
        connections(&t0, "isp-a"),
        "new connections on a drained uplink"
    );
    let others = |l: &Value| connections(l, "isp-b") + connections(l, "isp-c");
    assert!(others(&t1) > others(&t0) + 10, "{t0}\n{t1}");
    ok(&["uplink", "resume", "isp-a"], &socket);
    let t2 = list_until(&socket, "isp-a resumed", |l| {
        uplink(l, "isp-a")["admin"] == "up"
    });
    std::thread::sleep(Duration::from_secs(1));
    let t3 = json(&["uplink", "list", "--json"], &socket);
    assert!(connections(&t3, "isp-a") > connections(&t2, "isp-a"));

    // Down: unhealthy (not by its link); up again.
    ok(&["uplink", "down", "isp-b"], &socket);
    let l = list_until(&socket, "isp-b down", |l| uplink(l, "isp-b")["up"] == false);
    assert_eq!(uplink(&l, "isp-b")["admin"], "down");
    assert_eq!(uplink(&l, "isp-b")["link_up"], true);
    let table = ok(&["uplink", "list"], &socket);
    assert!(
        table
            .lines()
            .any(|t| t.starts_with("isp-b") && t.contains("down") && t.contains("DOWN")),
        "{table}"
    );
    ok(&["uplink", "up", "isp-b"], &socket);
    list_until(&socket, "isp-b up", |l| uplink(l, "isp-b")["up"] == true);

    // Weight.
    assert_eq!(
        ok(&["uplink", "weight", "isp-c", "7"], &socket),
        "isp-c: weight 7\n"
    );
    list_until(&socket, "isp-c weight", |l| {
        uplink(l, "isp-c")["weight"] == 7
    });

    // Errors: one `error:` line and exit 1; usage: exit 2.
    let out = appliance(&["uplink", "drain", "isp-z"], &socket);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: no uplink named \"isp-z\"") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(
        appliance(&["uplink", "weight", "isp-c", "0"], &socket)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        appliance(&["uplink", "explode"], &socket).status.code(),
        Some(2)
    );

    sessions_list_filter_and_flush(&socket);

    // The stalled client is still connected and never read; others were
    // answered all along. The run ends normally with its stats JSON.
    drop(stalled);
    let last = json(&["stats", "--json"], &socket);
    let fin = run.finish();
    assert_eq!(key_set(&last), key_set(&fin));
    let up = |v: &Value, n: &str| uplink(&v["uplinks"], n).clone();
    assert_eq!(up(&fin, "isp-c")["weight"], 7);
    assert_eq!(up(&fin, "isp-a")["admin"], "up");
}

fn sessions(args: &[&str], socket: &Path) -> Vec<Value> {
    let mut a = vec!["sessions", "--json", "--limit", "100000"];
    a.extend_from_slice(args);
    json(&a, socket).as_array().unwrap().clone()
}

/// `sessions` lists what the stats count, its filters hold, and `flush
/// --uplink` removes that uplink's sessions and no other.
fn sessions_list_filter_and_flush(socket: &Path) {
    let all = sessions(&[], socket);
    assert!(all.len() > 100, "{}", all.len());
    let tcp_a = sessions(&["--uplink", "isp-a", "--proto", "tcp"], socket);
    assert!(!tcp_a.is_empty());
    assert!(tcp_a
        .iter()
        .all(|s| s["uplink"] == "isp-a" && s["proto"] == "tcp"));
    let est = sessions(&["--state", "established"], socket);
    assert!(est.iter().all(|s| s["state"] == "established"));
    let c = sessions(&["--client", "10.0.1.0/24"], socket);
    assert!(!c.is_empty());
    assert!(c
        .iter()
        .all(|s| s["inside"].as_str().unwrap().starts_with("10.0.1.")));
    let r = sessions(&["--remote", "203.0.113.10"], socket);
    assert!(r
        .iter()
        .all(|s| s["remote"].as_str().unwrap().starts_with("203.0.113.10:")));
    // --limit bounds the listing; pages of 1000 join without repeats.
    let three = json(&["sessions", "--json", "--limit", "3"], socket);
    assert_eq!(three.as_array().unwrap().len(), 3);
    let mut keys: Vec<String> = all
        .iter()
        .map(|s| format!("{} {} {}", s["proto"], s["inside"], s["remote"]))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), all.len(), "a session listed twice");
    let table = ok(&["sessions", "--uplink", "isp-b", "--limit", "5"], socket);
    assert!(
        table.starts_with("PROTO") && table.ends_with("sessions\n"),
        "{table}"
    );

    // Flush isp-b: its sessions go (new ones may come), the others'
    // stay (fewer only by what expired meanwhile).
    let count = |u: &str| sessions(&["--uplink", u], socket).len() as u64;
    let nat = |k: &str| {
        json(&["stats", "--json"], socket)["nat"][k]
            .as_u64()
            .unwrap()
    };
    let expired0 = nat("expired");
    let (a0, b0, c0) = (count("isp-a"), count("isp-b"), count("isp-c"));
    assert!(b0 > 10, "{b0}");
    let before = nat("flushed");
    let out = json(
        &["sessions", "flush", "--uplink", "isp-b", "--json"],
        socket,
    );
    let flushed = out["flushed"].as_u64().unwrap();
    assert!(flushed + 20 >= b0, "{flushed} flushed of {b0}");
    assert_eq!(nat("flushed") - before, flushed);
    let (a1, b1, c1) = (count("isp-a"), count("isp-b"), count("isp-c"));
    let expired = nat("expired") - expired0;
    assert!(b1 < b0 / 2, "isp-b {b0} -> {b1}");
    assert!(
        a1 + c1 + expired >= a0 + c0,
        "others {a0}+{c0} -> {a1}+{c1}, {expired} expired"
    );
    // Usage and filter errors.
    for bad in [
        &["--client", "10.0.0.0/40"][..],
        &["--state", "open"],
        &["--uplink", "isp-z"],
    ] {
        let mut a = vec!["sessions"];
        a.extend_from_slice(bad);
        let out = appliance(&a, socket);
        assert_eq!(out.status.code(), Some(1), "{a:?}");
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
    }
    assert_eq!(
        appliance(&["sessions", "--proto", "sctp"], socket)
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn client_commands_without_an_appliance_fail_with_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    for args in [&["stats"][..], &["uplink", "list"], &["stats", "--json"]] {
        let out = appliance(args, &socket);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: cannot reach an appliance on"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// `[control] group`: the socket is owned by that group, mode 0660 (as
/// root the group is `daemon`, gid 1 on every Linux, so the file's group
/// really changed; otherwise the user's own group). An unknown group is a
/// config error naming the field.
#[test]
fn control_group_owns_the_socket_with_mode_0660() {
    use std::os::unix::fs::MetadataExt;
    let id = |a: &str| {
        let o = Command::new("id").arg(a).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let root = id("-u") == "0";
    let (group, gid) = if root {
        ("daemon".to_string(), 1)
    } else {
        (id("-gn"), id("-g").parse().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("site.toml");
    let demo = std::fs::read_to_string(DEMO).unwrap();
    let with = |g: &str| demo.replacen("[control]\n", &format!("[control]\ngroup = \"{g}\"\n"), 1);
    std::fs::write(&config, with("no-such-group-here")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("control.group") && err.contains("no-such-group-here"),
        "{err}"
    );
    std::fs::write(&config, with(&group)).unwrap();
    let run = Running::start_mode(dir, &config, "3", 0o660);
    let meta = std::fs::metadata(&run.socket).unwrap();
    assert_eq!(meta.gid(), gid, "group {group}");
    assert_eq!(
        json(&["stats", "--json"], &run.socket)["control"]["reloads"],
        0
    );
    run.finish();
}

#[test]
fn check_validates_for_another_machine_size() {
    let sriov = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/sriov-example.toml");
    let run = |cpus: &str| {
        Command::new(env!("CARGO_BIN_EXE_appliance"))
            .args(["check", "--config", sriov, "--cpus", cpus])
            .output()
            .unwrap()
    };
    let big = run("8");
    assert!(
        big.status.success(),
        "{}",
        String::from_utf8_lossy(&big.stderr)
    );
    let small = run("2");
    assert_eq!(small.status.code(), Some(1));
    let err = String::from_utf8_lossy(&small.stderr);
    assert!(
        err.contains("runtime.lcores") && err.contains("2 CPUs"),
        "{err}"
    );
    assert_eq!(run("0").status.code(), Some(2));
}

/// Live sessions in the stats.
fn live_sessions(socket: &Path) -> u64 {
    let nat = &json(&["stats", "--json"], socket)["nat"];
    ["tcp_sessions", "udp_sessions", "icmp_sessions"]
        .iter()
        .map(|k| nat[*k].as_u64().unwrap())
        .sum()
}

/// The largest `expires_in_s` among the listed UDP sessions.
fn udp_expiry_max(socket: &Path) -> f64 {
    sessions(&["--proto", "udp"], socket)
        .iter()
        .map(|s| s["expires_in_s"].as_f64().unwrap())
        .fold(0.0, f64::max)
}

fn reloads(socket: &Path) -> (u64, u64) {
    let c = &json(&["stats", "--json"], socket)["control"];
    (
        c["reloads"].as_u64().unwrap(),
        c["reloads_refused"].as_u64().unwrap(),
    )
}

/// `reload` applies a timeout and a weight with every session kept,
/// refuses a port change naming the field (and applies nothing of it),
/// and SIGHUP reloads too while the appliance keeps running.
#[test]
fn reload_and_sighup_apply_live_changes_and_refuse_restart_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("site.toml");
    let demo = std::fs::read_to_string(DEMO).unwrap();
    std::fs::write(&config, &demo).unwrap();
    let run = Running::start_with(dir, &config, "30");
    let socket = run.socket.clone();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(reloads(&socket), (0, 0));
    let before = live_sessions(&socket);
    assert!(before > 100, "{before}");
    assert!(udp_expiry_max(&socket) > 170.0);

    // The operator's uplink changes, which every reload keeps.
    ok(&["uplink", "drain", "isp-a"], &socket);
    ok(&["uplink", "weight", "isp-b", "3"], &socket);
    list_until(&socket, "isp-a drained, isp-b weight 3", |l| {
        uplink(l, "isp-a")["admin"] == "drained" && uplink(l, "isp-b")["weight"] == 3
    });

    // A timeout and a weight.
    let edited = demo
        .replacen("udp_idle_timeout_s = 180", "udp_idle_timeout_s = 120", 1)
        .replacen("weight = 1\n\n[nat]", "weight = 4\n\n[nat]", 1)
        .replacen(
            "algorithm = \"weighted-least-load\"",
            "algorithm = \"round-robin\"",
            1,
        );
    std::fs::write(&config, &edited).unwrap();
    let out = ok(&["reload"], &socket);
    assert!(
        out.contains("nat.udp_idle_timeout_s")
            && out.contains("uplinks[2].weight")
            && out.contains("selection.algorithm"),
        "{out}"
    );
    list_until(&socket, "isp-c weight 4", |l| {
        uplink(l, "isp-c")["weight"] == 4
    });
    let l = json(&["uplink", "list", "--json"], &socket);
    assert_eq!(uplink(&l, "isp-a")["admin"], "drained", "{l}");
    assert_eq!(uplink(&l, "isp-b")["weight"], 3, "{l}");
    let after = live_sessions(&socket);
    assert!(
        after >= before,
        "sessions dropped by the reload: {before} -> {after}"
    );
    let max = udp_expiry_max(&socket);
    assert!(
        max <= 120.5 && max > 100.0,
        "UDP sessions expire by the new timeout: {max}"
    );
    assert_eq!(reloads(&socket), (1, 0));
    let stats = json(&["stats", "--json"], &socket);
    assert_eq!(stats["selection"]["algorithm"], "round-robin");

    // A port renamed (with a timeout change beside it): refused, naming
    // the field; the timeout is not applied either.
    let renamed = edited.replace("\"wan-a\"", "\"wan-x\"").replacen(
        "udp_idle_timeout_s = 120",
        "udp_idle_timeout_s = 60",
        1,
    );
    std::fs::write(&config, &renamed).unwrap();
    let out = appliance(&["reload"], &socket);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("ports[1].name: changing ports needs a restart"),
        "{err}"
    );
    assert_eq!(reloads(&socket), (1, 1));
    let max = udp_expiry_max(&socket);
    assert!(max > 100.0, "a refused reload applied its timeout: {max}");

    // SIGHUP: the weight back to 2.
    std::fs::write(
        &config,
        edited.replacen("weight = 4\n\n[nat]", "weight = 2\n\n[nat]", 1),
    )
    .unwrap();
    let pid = run.child.as_ref().unwrap().id().to_string();
    let kill = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(kill.success());
    list_until(&socket, "isp-c weight 2 after SIGHUP", |l| {
        uplink(l, "isp-c")["weight"] == 2
    });
    assert_eq!(reloads(&socket), (2, 1));
    let l = json(&["uplink", "list", "--json"], &socket);
    assert_eq!(uplink(&l, "isp-a")["admin"], "drained", "after SIGHUP: {l}");
    assert_eq!(uplink(&l, "isp-b")["weight"], 3, "after SIGHUP: {l}");
    assert!(live_sessions(&socket) >= before);
    // Still running: it ends at its duration with its final stats.
    let stats = run.finish();
    assert_eq!(stats["control"]["reloads"], 2);
}

/// `events --json` during the demo (RTT entries kept 1 s, so races go on):
/// sessions created and races decided with their winner and its RTT; the
/// table view prints them `conntrack -E` style; nothing lost.
#[test]
fn events_stream_shows_races_decided_with_the_winner() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("site.toml");
    let demo = std::fs::read_to_string(DEMO).unwrap();
    assert!(demo.contains("\nrtt_cache_ttl_s = 60\n"));
    std::fs::write(
        &config,
        demo.replace("\nrtt_cache_ttl_s = 60\n", "\nrtt_cache_ttl_s = 1\n"),
    )
    .unwrap();
    let run = Running::start_with(dir, &config, "10");
    let socket = run.socket.clone();
    std::thread::sleep(Duration::from_secs(2));
    let out = ok(&["events", "--json", "--count", "1500"], &socket);
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1500);
    let kinds: BTreeSet<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains("session_created"), "{kinds:?}");
    let race = events
        .iter()
        .find(|e| e["kind"] == "race_decided")
        .unwrap_or_else(|| panic!("no race decided in {kinds:?}"));
    let winner = race["winner"].as_str().unwrap();
    assert!(["isp-a", "isp-b", "isp-c"].contains(&winner), "{race}");
    assert_eq!(race["uplink"], winner);
    assert!(race["rtt_ms"][winner].as_f64().unwrap() > 0.0, "{race}");
    assert_eq!(race["rtt_ms"].as_object().unwrap().len(), 3, "{race}");
    assert_eq!(race["proto"], "tcp");
    // Races started, and the losing copies leaving with their own RTT
    // (their SYN+ACK came after the winner's) or null (never answered).
    assert!(kinds.contains("race_started"), "{kinds:?}");
    let lost: Vec<&Value> = events
        .iter()
        .filter(|e| e["reason"] == "race_lost")
        .collect();
    assert!(!lost.is_empty(), "no race_lost exit in {kinds:?}");
    for e in &lost {
        assert_eq!(e["kind"], "session_expired", "{e}");
        let rtts = e["rtt_ms"].as_object().unwrap();
        assert_eq!(rtts.len(), 1, "{e}");
        assert!(rtts.contains_key(e["uplink"].as_str().unwrap()), "{e}");
    }
    assert!(
        lost.iter()
            .any(|e| e["rtt_ms"][e["uplink"].as_str().unwrap()]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0),
        "a loser answered late: {:?}",
        &lost[..lost.len().min(3)]
    );
    // The text view.
    let text = ok(&["events", "--count", "50"], &socket);
    assert!(
        text.lines().count() == 50 && text.contains("[NEW] "),
        "{text}"
    );
    let stats = json(&["stats", "--json"], &socket);
    assert!(
        stats["events"]["delivered"].as_u64().unwrap() >= 1550,
        "{}",
        stats["events"]
    );
    assert_eq!(stats["events"]["lost"], 0);
    run.finish();
}
