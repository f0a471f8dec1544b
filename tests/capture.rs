//! `appliance capture` against the running sim demo (conf/demo.toml): a
//! count-bounded capture of an uplink port writes a pcap `tcpdump -r`
//! reads with that many frames, all translated (the uplink's NAT address,
//! no LAN address); one capture at a time; bad requests are refused naming
//! the argument. Needs tcpdump (scripts/install-deps.sh): without it the
//! test fails.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.toml");
/// isp-b's NAT address and the demo's LAN prefix.
const NAT_B: &str = "198.51.100.20";
const LAN: &str = "IP 10.0.1.";

fn capture(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_appliance"))
        .arg("capture")
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn capture_of_the_demo_writes_a_pcap_and_refuses_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ctl.sock");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .args(["run", "--config", DEMO, "--duration", "60", "--socket"])
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no control socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let file = dir.path().join("wan-b.pcap");
    let out = capture(
        &socket,
        &[
            "--port",
            "wan-b",
            "--count",
            "40",
            "--snaplen",
            "96",
            "-w",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("40 frames of port wan-b"),
        "{}",
        stderr(&out)
    );
    let td = Command::new("tcpdump")
        .arg("-nr")
        .arg(&file)
        .output()
        .expect("tcpdump missing: run scripts/install-deps.sh");
    assert!(td.status.success(), "{}", stderr(&td));
    let text = String::from_utf8_lossy(&td.stdout);
    assert_eq!(text.lines().count(), 40, "{text}");
    assert!(text.lines().all(|l| l.contains(NAT_B)), "{text}");
    assert!(!text.contains(LAN), "{text}");
    assert!(
        stderr(&td).contains("snapshot length 96"),
        "{}",
        stderr(&td)
    );

    // One capture at a time.
    let mut first = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .args(["capture", "--port", "lan", "--seconds", "2", "-w"])
        .arg(dir.path().join("lan.pcap"))
        .arg("--socket")
        .arg(&socket)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let second = capture(
        &socket,
        &["--port", "wan-a", "--count", "1", "-w", "/dev/null"],
    );
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("a capture is running already"),
        "{}",
        stderr(&second)
    );
    assert!(first.wait().unwrap().success());
    let lan = Command::new("tcpdump")
        .arg("-nr")
        .arg(dir.path().join("lan.pcap"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&lan.stdout);
    assert!(text.lines().any(|l| l.contains(LAN)), "{text}");
    assert!(!text.contains(&format!("IP {NAT_B}.")), "{text}");

    for (args, want) in [
        (&["--port", "wan-z"][..], "port: no port named \"wan-z\""),
        (
            &["--port", "lan", "--snaplen", "0"][..],
            "snaplen: 0; allowed: 1..=65535",
        ),
        (&["--port", "lan", "--count", "0"][..], "count: 0"),
        (&["--port", "lan", "--seconds=-1"][..], "seconds: -1"),
        (&["--port", "lan", "--seconds", "0"][..], "seconds: 0"),
    ] {
        let mut a = args.to_vec();
        a.extend(["-w", "/dev/null"]);
        let out = capture(&socket, &a);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    // The capture copied frames and counted them; the demo runs on.
    let stats = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .args(["stats", "--json", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert!(
        v["capture"]["copied"].as_u64().unwrap() >= 40,
        "{}",
        v["capture"]
    );
    assert!(demo.try_wait().unwrap().is_none(), "the demo stopped");
    let _ = demo.kill();
    let _ = demo.wait();
}
