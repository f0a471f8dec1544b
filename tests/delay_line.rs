//! `appliance delay-line` as a process on real interfaces: one namespace made
//! by the test holds `s0 ⟷ dla` and `dlb ⟷ r0`; the delay line joins `dla`
//! and `dlb`; the test sends raw frames on `s0`/`r0` and reads them at the other
//! end. Checks delay and order with jitter, both directions, control-file
//! changes (per-direction loss, a bad file), counter conservation and a
//! clean exit on SIGTERM; then measures the frame rate it forwards at delay
//! 0 (printed, not asserted):
//!
//!   cargo test --release --test delay_line -- --nocapture
//!
//! Needs root and network namespaces: it fails (never skips) without them.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use appliance::ports::linux::rawsock::{enter_netns, poll_readable, RawSocket};
use common::lab::{appliance_bin, ns_ok, run_ok, wait_carrier, NsProcess};
use serde_json::Value;

const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("dltest-{}", std::process::id());
        run_ok(std::process::Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns(name);
        let n = ns.0.as_str();
        ns_ok(n, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns_ok(
            n,
            &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
        );
        for (x, y) in [("s0", "dla"), ("dlb", "r0")] {
            ns_ok(
                n,
                &[
                    "ip", "link", "add", "name", x, "type", "veth", "peer", "name", y,
                ],
            );
        }
        for i in ["s0", "dla", "dlb", "r0"] {
            ns_ok(n, &["ip", "link", "set", i, "up"]);
            ns_ok(
                n,
                &[
                    "ethtool", "-K", i, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
                ],
            );
        }
        for i in ["s0", "dla", "dlb", "r0"] {
            wait_carrier(n, i, Duration::from_secs(5));
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// A test frame: broadcast, EtherType 0x88b5, `seq` at bytes 14..18, `len`
/// bytes in all.
fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(18)];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0x77, 1]);
    f[12..14].copy_from_slice(&ETHERTYPE);
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f
}

/// Sequence number of a test frame, None for other traffic.
fn seq_of(f: &[u8]) -> Option<u32> {
    (f.len() >= 18 && f[12..14] == ETHERTYPE)
        .then(|| u32::from_be_bytes(f[14..18].try_into().unwrap()))
}

/// Receives test frames on `s` until `n` arrived or `quiet` passes without
/// one; returns (seq, arrival) pairs.
fn collect(s: &RawSocket, n: usize, quiet: Duration) -> Vec<(u32, Instant)> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut last = Instant::now();
    while got.len() < n && last.elapsed() < quiet {
        poll_readable(&[s.fd()], Duration::from_millis(10)).unwrap();
        while let Some(len) = s.recv(&mut buf).unwrap() {
            if let Some(seq) = seq_of(&buf[..len]) {
                got.push((seq, Instant::now()));
                last = Instant::now();
            }
        }
    }
    got
}

fn send_all(s: &RawSocket, f: &[u8]) {
    while !s.send(f).unwrap() {
        std::thread::yield_now();
    }
}

fn stats(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Writes the control file and waits until the delay line has read it.
fn control(file: &Path, stats_file: &Path, text: &str) -> Value {
    let before = stats(stats_file)["control_reloads"].as_u64().unwrap();
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let s = stats(stats_file);
        if s["control_reloads"].as_u64().unwrap() > before {
            return s;
        }
        assert!(Instant::now() < until, "control file not picked up: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// User + system CPU seconds process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime, stime are 14, 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0 // USER_HZ
}

/// frames_in = lost + overflow + queued + tx_errors + frames_out.
fn assert_conserved(lane: &Value) {
    let g = |k: &str| lane[k].as_u64().unwrap();
    assert_eq!(
        g("frames_in"),
        g("lost") + g("overflow") + g("queued") + g("tx_errors") + g("frames_out"),
        "{lane}"
    );
}

#[test]
fn delay_line_process_on_veths() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("control");
    let st = dir.path().join("stats.json");
    std::fs::write(&ctl, "").unwrap();
    let mut dl = NsProcess::start(
        &ns.0,
        &[
            appliance_bin(),
            "delay-line",
            "--a",
            "dla",
            "--b",
            "dlb",
            "--delay-ms",
            "20",
            "--jitter-ms",
            "5",
            "--seed",
            "7",
            "--control",
            ctl.to_str().unwrap(),
            "--stats",
            st.to_str().unwrap(),
        ],
        dir.path(),
        &dir.path().join("delay-line.log"),
    );
    let until = Instant::now() + Duration::from_secs(10);
    while !st.exists() {
        dl.assert_running();
        assert!(Instant::now() < until, "no stats file");
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = stats(&st);
    assert_eq!(s["seed"], 7);
    assert_eq!(s["a_to_b"]["delay_ms"], 20.0);
    assert_eq!(s["b_to_a"]["jitter_ms"], 5.0);

    let name = ns.0.clone();
    let (st2, ctl2) = (st.clone(), ctl.clone());
    let dl_pid = dl.pid();
    std::thread::spawn(move || {
        enter_netns(&name).unwrap();
        let s0 = RawSocket::open("s0").unwrap();
        let r0 = RawSocket::open("r0").unwrap();
        let receiver = std::thread::scope(|scope| {
            // a -> b: 1000 frames 200 us apart; jitter (5 ms) far exceeds
            // the spacing, yet the order is kept.
            let rx = scope.spawn(|| collect(&r0, 1000, Duration::from_secs(3)));
            let mut sent_at = Vec::new();
            for i in 0..1000u32 {
                sent_at.push(Instant::now());
                send_all(&s0, &frame(i, 60));
                std::thread::sleep(Duration::from_micros(200));
            }
            (rx.join().unwrap(), sent_at)
        });
        let (got, sent_at) = receiver;
        assert_eq!(got.len(), 1000, "frames lost a -> b");
        let mut max_ms = 0f64;
        for (i, &(seq, at)) in got.iter().enumerate() {
            assert_eq!(seq as usize, i, "order kept");
            let d = at.duration_since(sent_at[i]);
            assert!(d >= Duration::from_millis(20), "frame {i} after {d:?} < delay");
            max_ms = max_ms.max(d.as_secs_f64() * 1e3);
        }
        println!("a->b: 1000 frames in order, delay 20 ms + jitter 5 ms: longest {max_ms:.2} ms");

        // b -> a works too.
        for i in 0..20 {
            send_all(&r0, &frame(i, 100));
        }
        assert_eq!(collect(&s0, 20, Duration::from_secs(2)).len(), 20);

        // Loss only a -> b; b -> a unaffected; no delay.
        let s = control(&ctl2, &st2, "delay_ms = 0\njitter_ms = 0\na_to_b.loss = 1\n");
        assert_eq!(s["a_to_b"]["loss"], 1.0);
        assert_eq!(s["b_to_a"]["loss"], 0.0);
        for i in 0..100 {
            send_all(&s0, &frame(i, 60));
            send_all(&r0, &frame(i, 60));
        }
        assert_eq!(collect(&s0, 100, Duration::from_secs(2)).len(), 100);
        assert_eq!(collect(&r0, 1, Duration::from_millis(300)).len(), 0);

        // A bad control file is reported and changes nothing.
        let s = control(&ctl2, &st2, "loss = 7\n");
        let err = s["control_error"].as_str().unwrap_or_default().to_string();
        assert!(err.contains("line 1: loss = 7"), "{s}");
        assert_eq!(s["a_to_b"]["loss"], 1.0);

        // The forwarding rate at delay 0 (a measurement, printed): blast
        // 60-byte frames from s0 for 2 s with nobody reading r0 (the kernel
        // drops them there cheaply); the delay line's own counters say what
        // it read, what its socket dropped and what it sent, and its CPU
        // time what each frame cost it.
        drop(r0);
        let s = control(&ctl2, &st2, "delay_ms = 0\n");
        assert!(s["control_error"].is_null(), "{s}");
        std::thread::sleep(Duration::from_millis(300)); // counters settle
        let before = stats(&st2)["a_to_b"].clone();
        let cpu0 = cpu_seconds(dl_pid);
        let f = frame(0, 60);
        let t0 = Instant::now();
        let mut offered = 0u64;
        while t0.elapsed() < Duration::from_secs(2) {
            for _ in 0..64 {
                send_all(&s0, &f);
            }
            offered += 64;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(400));
        let cpu = cpu_seconds(dl_pid) - cpu0;
        let after = stats(&st2)["a_to_b"].clone();
        let d = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
        let kfps = |x: u64| x as f64 / elapsed / 1e3;
        println!(
            "rate at delay 0, 60-byte frames for {elapsed:.2} s: offered {:.0} kframes/s; delay line \
             read {:.0} k/s, its socket dropped {:.0} k/s, sent {:.0} k/s; CPU {:.2} s = {:.2} us per \
             frame sent",
            kfps(offered),
            kfps(d("frames_in")),
            kfps(d("kernel_drops")),
            kfps(d("frames_out")),
            cpu,
            cpu / d("frames_out").max(1) as f64 * 1e6,
        );
        assert!(d("frames_in") + d("kernel_drops") <= offered, "{after}");
        assert_eq!(d("frames_out"), d("frames_in"), "{after}");
        assert_conserved(&after);
    })
    .join()
    .expect("test thread");

    // SIGTERM: a clean exit printing the final stats.
    dl.assert_running();
    let log = dl.stop(Duration::from_secs(5));
    assert!(
        dl.status.unwrap().success(),
        "delay line exit: {:?}\n{log}",
        dl.status
    );
    let json_start = log.find("\n{").expect("final stats JSON in the output") + 1;
    let last: Value = serde_json::from_str(log[json_start..].trim()).unwrap();
    assert!(
        last["a_to_b"]["frames_in"].as_u64().unwrap() >= 1200,
        "{last}"
    );
    assert_eq!(last["b_to_a"]["lost"], 0);
    assert_conserved(&last["a_to_b"]);
    assert_conserved(&last["b_to_a"]);
    let exited: Value = stats(&st);
    assert_eq!(exited["a_to_b"]["frames_out"], last["a_to_b"]["frames_out"]);
}
