//! The soak script (`scripts/soak.sh`) in short: 45 s of mixed HTTP and
//! UDP traffic from four LAN hosts through the netns lab (af_packet
//! backend), a bounded SYN flood from a fifth host in the middle, short
//! NAT timeouts so the table empties soon after. Asserts what the full
//! 10-minute soak promises: no failed request of a well-behaved host, live
//! sessions back to 0 after the timeouts, RSS growth bounded.
//!
//! Needs root, network namespaces, hping3, nft, curl, script (util-linux)
//! and python3: without them the script exits 2 and the test fails, it
//! never skips. Every packet stays in the lab's namespaces.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

#[test]
fn a_short_soak_has_no_failures_and_returns_to_zero_sessions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(root.join("scripts/soak.sh"))
        .env("APPLIANCE", env!("CARGO_BIN_EXE_appliance"))
        .env("LAB", format!("sk{}", std::process::id()))
        .env("SOAK_OUT", out_dir.path())
        .env("SOAK_SECS", "45")
        .env("SOAK_SAMPLE_SECS", "5")
        .env("SOAK_FLOOD_COUNT", "30000")
        .env("SOAK_UDP_TIMEOUT_S", "5")
        .env("SOAK_TCP_TRANSITORY_S", "5")
        .env("SOAK_TCP_CLOSED_S", "2")
        .env("SOAK_ICMP_TIMEOUT_S", "5")
        .output()
        .expect("bash scripts/soak.sh");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("{text}");
    eprintln!("{err}");
    let result = text
        .lines()
        .find_map(|l| l.strip_prefix("soak: result "))
        .unwrap_or_else(|| panic!("no result line (exit {}); needs root: {err}", out.status));
    let r: HashMap<&str, &str> = result
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let num = |k: &str| -> u64 {
        r.get(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in {result}"))
    };
    assert!(num("tcp_ok") >= 100, "HTTP requests were made: {result}");
    assert!(num("udp_ok") >= 400, "UDP requests were made: {result}");
    assert_eq!(num("tcp_failed"), 0, "{result}");
    assert_eq!(num("udp_failed"), 0, "{result}");
    assert_eq!(num("flood_sent"), 30_000, "the flood ran: {result}");
    assert_eq!(r.get("sessions_end"), Some(&"0+0"), "{result}");
    // RSS: the tables are reserved up front; what the traffic touches is
    // bounded (sessions are limited per host), and nothing grows after
    // the flood.
    let (first, mid, max, end) = (
        num("rss_kb_first"),
        num("rss_kb_mid"),
        num("rss_kb_max"),
        num("rss_kb_end"),
    );
    assert!(first > 0, "{result}");
    assert!(max - first <= 64 * 1024, "RSS grew by {} KiB", max - first);
    assert!(
        end <= mid + 8 * 1024,
        "RSS grew by {} KiB after the flood",
        end.saturating_sub(mid)
    );
    assert!(out.status.success(), "soak.sh failed: {err}");
}
