//! `appliance bench`: a one-second comparison on the embedded demo site
//! (no DPDK, no root) prints the JSON the README documents, with packets
//! forwarded by both forwarders; bad flag values are refused naming the flag.

mod common;

use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(common::lab::appliance_bin())
        .arg("bench")
        .args(args)
        .output()
        .unwrap()
}

/// The keys of one forwarder's run, and its figures' sanity.
fn check_run(r: &Value, forwarder: &str, lcores: usize) {
    assert_eq!(r["forwarder"], forwarder);
    assert!(r["seconds"].as_f64().unwrap() >= 1.0);
    let t = &r["total"];
    for k in [
        "generated",
        "new_flows",
        "generator_no_buffer",
        "rx_packets",
        "tx_packets",
        "drops_total",
        "sessions",
    ] {
        assert!(t[k].is_u64(), "total.{k} in {t}");
    }
    for k in ["mpps", "rx_mpps"] {
        assert!(t[k].is_f64(), "total.{k} in {t}");
    }
    assert!(t["drops"].is_object() && t["ns_per_packet"].is_object());
    assert!(
        t["tx_packets"].as_u64().unwrap() > 0,
        "{forwarder} forwarded nothing: {t}"
    );
    assert!(t["mpps"].as_f64().unwrap() > 0.0);
    assert!(t["tx_packets"].as_u64() <= t["generated"].as_u64());
    let lc = r["lcores"].as_array().unwrap();
    assert_eq!(lc.len(), lcores);
    for l in lc {
        for k in ["id", "rx_packets", "tx_packets"] {
            assert!(l[k].is_u64(), "lcores[].{k} in {l}");
        }
        for k in ["rx_mpps", "tx_mpps", "busy"] {
            assert!(l[k].is_f64(), "lcores[].{k} in {l}");
        }
        assert!(l["stages"].is_array() && l["ns_per_packet"].is_object() && l["drops"].is_object());
        // Every stage an lcore runs has its time per packet.
        for s in l["stages"].as_array().unwrap() {
            assert!(l["ns_per_packet"][s.as_str().unwrap()].is_f64(), "{l}");
        }
    }
    let tx: u64 = lc.iter().map(|l| l["tx_packets"].as_u64().unwrap()).sum();
    assert_eq!(tx, t["tx_packets"].as_u64().unwrap());
    for ring in r["rings"].as_array().unwrap() {
        for k in ["kind", "to", "capacity", "mean", "max"] {
            assert!(!ring[k].is_null(), "rings[].{k} in {ring}");
        }
        assert!(ring["max"].as_u64() <= ring["capacity"].as_u64());
    }
}

#[test]
fn compare_prints_both_forwarders_and_their_ratio() {
    let out = bench(&["--compare", "--seconds", "1", "--flows", "10000", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["flows"], 10000);
    assert_eq!(v["mix"], "1:1");
    assert_eq!(v["size"], 64);
    assert!(["pipeline", "run-to-completion"].contains(&v["mode"].as_str().unwrap()));
    let lcores = v["lcores"].as_u64().unwrap() as usize;
    assert!(v["adjusted"].is_array() && v["shards"].is_u64());
    check_run(&v["appliance"], "appliance", lcores);
    check_run(&v["noop"], "no-op", lcores);
    // The NAT tables held the flows before timing (the demo's limits
    // admit 10,000 flows), and the timed run created none.
    assert_eq!(v["appliance"]["warmup"]["sessions"], 10000);
    assert_eq!(v["appliance"]["total"]["sessions"], 10000);
    assert_eq!(v["noop"]["warmup"]["sessions"], 0);
    let ratio = v["ratio"].as_f64().unwrap();
    assert!(ratio > 0.0 && ratio < 2.0, "ratio {ratio}");
    let a = v["appliance"]["total"]["mpps"].as_f64().unwrap();
    let n = v["noop"]["total"]["mpps"].as_f64().unwrap();
    assert!((ratio - a / n).abs() < 1e-9);
}

#[test]
fn bad_flag_values_are_refused_naming_the_flag() {
    for (args, flag, code) in [
        (&["--flows", "0"][..], "--flows", 2),
        (&["--mix", "1:x"][..], "--mix", 2),
        (&["--seconds", "0"][..], "--seconds", 2),
        (&["--size", "10"][..], "--size", 2),
        (&["--lcores", "0"][..], "--lcores", 2),
        // Past the demo's ports' MTU: found when the flows are built.
        (
            &["--size", "2000", "--seconds", "0.1"][..],
            "--size 2000",
            1,
        ),
    ] {
        let out = bench(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
