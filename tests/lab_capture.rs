//! `appliance capture` in the network-namespace lab (`scripts/lab.sh`, the
//! af_packet backend, `conf/lab-afpacket.toml`): while the client namespace
//! makes HTTP requests through the appliance, a capture of the uplink port
//! `wan-a` and then one of the LAN port write pcaps that `tcpdump -r`
//! reads; the uplink's holds translated packets (isp-a's NAT source
//! address, no LAN address), the LAN port's untranslated ones (the LAN
//! client's address, no NAT address).
//!
//! Needs root, network namespaces, curl and tcpdump
//! (scripts/install-deps.sh): without them the test fails, it never skips.
//! Every packet stays inside the lab's namespaces.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::lab::{
    appliance_bin, ns_output, start_appliance, start_http_servers, Lab, LabOptions, HTTP_PORT,
    SERVER4,
};

/// The client namespace's address and isp-a's NAT address (the lab).
const CLIENT: &str = "10.0.0.2";
const NAT_A: &str = "100.64.1.10";

/// `count` HTTP requests from the client namespace; how many got a 200.
fn requests(lab: &Lab, count: u32) -> usize {
    let url = format!("http://{SERVER4}:{HTTP_PORT}/page.txt?[1-{count}]");
    let out = ns_output(
        &lab.ns("cli"),
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

/// Captures `port` for `seconds` while requests run; the decoded capture
/// (`tcpdump -nr`) and the command's summary line.
fn capture(lab: &Lab, socket: &Path, work: &Path, port: &str) -> (String, String) {
    let file = work.join(format!("{port}.pcap"));
    let mut child = Command::new(appliance_bin())
        .args(["capture", "--port", port, "--seconds", "4", "-w"])
        .arg(&file)
        .arg("--socket")
        .arg(socket)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(requests(lab, 5), 5, "requests through the appliance failed");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "capture did not end"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut summary = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut summary)
        .unwrap();
    assert!(status.success(), "appliance capture failed: {summary}");
    let out = Command::new("tcpdump")
        .arg("-nr")
        .arg(&file)
        .output()
        .expect("tcpdump missing: run scripts/install-deps.sh");
    assert!(
        out.status.success(),
        "tcpdump -r {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    (String::from_utf8_lossy(&out.stdout).to_string(), summary)
}

#[test]
fn capture_writes_translated_packets_on_an_uplink_and_untranslated_on_the_lan() {
    let lab = Lab::up(&LabOptions::default());
    let work = tempfile::tempdir().unwrap();
    let www = work.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("page.txt"), b"captured through the appliance").unwrap();
    let _http = start_http_servers(&lab, &www, work.path());
    let socket = work.path().join("ctl.sock");
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/lab-afpacket.toml"),
    )
    .unwrap();
    let config = work.path().join("capture.toml");
    std::fs::write(
        &config,
        format!("{base}\n[control]\nsocket = \"{}\"\n", socket.display()),
    )
    .unwrap();
    let (mut app, _stats) = start_appliance(&lab, &config, work.path(), "capture");
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no control socket");
        std::thread::sleep(Duration::from_millis(50));
    }

    let (wan, summary) = capture(&lab, &socket, work.path(), "wan-a");
    let tcp = |t: &str, src: &str| {
        t.lines()
            .filter(|l| l.contains(&format!("IP {src}.")))
            .count()
    };
    assert!(
        tcp(&wan, NAT_A) > 0,
        "no translated packet on wan-a ({summary}):\n{wan}"
    );
    assert!(!wan.contains(CLIENT), "a LAN address on wan-a:\n{wan}");
    assert!(
        wan.lines().any(|l| l.contains(&format!("> {NAT_A}."))),
        "no answer to the NAT address on wan-a:\n{wan}"
    );

    let (lan, summary) = capture(&lab, &socket, work.path(), "lan");
    assert!(
        tcp(&lan, CLIENT) > 0,
        "no LAN packet on lan ({summary}):\n{lan}"
    );
    assert!(
        lan.lines().any(|l| l.contains(&format!("> {CLIENT}."))),
        "no answer to the client on lan:\n{lan}"
    );
    assert!(!lan.contains(NAT_A), "a NAT address on lan:\n{lan}");
    assert!(summary.contains("0 lost"), "{summary}");

    app.assert_running();
    let log = app.stop(Duration::from_secs(10));
    assert!(
        app.status.is_some_and(|s| s.success()),
        "appliance exit; log:\n{log}"
    );
}
