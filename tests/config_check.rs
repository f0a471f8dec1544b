//! `appliance check`: a good config prints the plan; each kind of bad
//! config exits non-zero with `error:`, the field's path and what is allowed.

use std::path::PathBuf;
use std::process::Command;

fn demo() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.toml")).unwrap()
}

/// Runs `appliance check` on `text`; returns (success, stdout, stderr).
fn check(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("site.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn rejected(text: &str, field: &str, allowed: &str) {
    let (ok, _, err) = check(text);
    assert!(!ok, "config was accepted; expected an error about {field}");
    assert!(
        err.starts_with("error:"),
        "stderr does not start with error: {err}"
    );
    assert!(err.contains(field), "error does not name `{field}`: {err}");
    assert!(
        err.contains(allowed),
        "error does not say `{allowed}`: {err}"
    );
}

#[test]
fn demo_config_is_valid_and_prints_the_plan() {
    let (ok, out, err) = check(&demo());
    assert!(ok, "{err}");
    for want in [
        "lcore 0",
        "classify -> replicate",
        "translate -> transmit",
        "lcore 0 -> lcore 1 (stage)",
        "isp-a",
        "198.51.100.10",
        "wan-c",
        "300 clients",
    ] {
        assert!(out.contains(want), "plan lacks `{want}`:\n{out}");
    }
}

#[test]
fn unknown_key_is_rejected_with_its_path() {
    rejected(
        &demo().replace("burst_size = 32", "burst_size = 32\nbrust = 4"),
        "runtime",
        "unknown field `brust`",
    );
    rejected(
        &demo().replace(
            "weight = 1\n\n[[uplinks]]\nname = \"isp-b\"",
            "weight = 1\ncolour = \"red\"\n\n[[uplinks]]\nname = \"isp-b\"",
        ),
        "uplinks[0]",
        "unknown field `colour`",
    );
}

#[test]
fn uplink_naming_a_missing_port_is_rejected() {
    rejected(
        &demo().replace("port = \"wan-b\"", "port = \"wan-x\""),
        "uplinks[1].port",
        "no port named `wan-x`; ports are: lan, wan-a, wan-b, wan-c",
    );
}

#[test]
fn overlapping_nat_ranges_are_rejected() {
    rejected(
        &demo().replace(
            "nat_addresses = [\"198.51.100.20\"]",
            "nat_addresses = [\"198.51.100.0/27\"]",
        ),
        "uplinks[1].nat_addresses[0]",
        "overlaps NAT addresses uplinks[0].nat_addresses[0] (isp-a)",
    );
}

#[test]
fn more_lcores_than_cpus_is_rejected() {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let extra = "[[runtime.lcores]]\nstages = [\"translate\", \"transmit\"]\n".repeat(cpus);
    let text = demo()
        .replace(
            "[[runtime.lcores]]\nstages = [\"translate\", \"transmit\"]\n",
            &extra.clone(),
        )
        .replace("# core = 1\n", "");
    rejected(
        &text,
        "runtime.lcores",
        &format!("this machine has {cpus} CPUs"),
    );
    // A lab may opt in explicitly.
    let (ok, _, err) = check(&text.replace("oversubscribe = false", "oversubscribe = true"));
    assert!(ok, "{err}");
    // Pinning to a CPU that does not exist is refused either way.
    rejected(
        &demo().replace("# core = 1", &format!("core = {cpus}")),
        "runtime.lcores[1].core",
        "does not exist",
    );
}

#[test]
fn ring_size_must_be_a_power_of_two() {
    rejected(
        &demo().replace("ring_size = 1024", "ring_size = 1000"),
        "runtime.ring_size",
        "not a power of two",
    );
}

#[test]
fn other_bad_values_name_their_field() {
    rejected(
        &demo().replace("burst_size = 32", "burst_size = 64"),
        "runtime.burst_size",
        "1..=32",
    );
    rejected(
        &demo().replace("mac = \"02:00:00:00:0a:01\"", "mac = \"02:00:00:0a:01\""),
        "ports[1].mac",
        "not a MAC address",
    );
    rejected(
        &demo().replace(
            "stages = [\"classify\", \"replicate\"]",
            "stages = [\"classify\", \"replicat\"]",
        ),
        "runtime.lcores[0].stages[1]",
        "unknown stage",
    );
    rejected(
        &demo().replace(
            "stages = [\"classify\", \"replicate\"]",
            "stages = [\"classify\"]",
        ),
        "runtime.lcores",
        "exactly once, in that order",
    );
    rejected(
        &demo().replace(
            "loss = 0.0\n\n[[sim.uplinks]]\nname = \"isp-b\"",
            "loss = 1.5\n\n[[sim.uplinks]]\nname = \"isp-b\"",
        ),
        "sim.uplinks[0].loss",
        "0.0 <= loss <= 1.0",
    );
    rejected(
        &demo().replace("mode = \"pipeline\"", "mode = \"fast\""),
        "runtime.mode",
        "pipeline",
    );
    rejected(
        &demo().replace("port_range = [1024, 65535]", "port_range = [2000, 1000]"),
        "nat.port_range",
        "first <= last",
    );
    rejected(
        &demo().replace("clients = 300", "clients = 70000"),
        "sim.clients",
        "1..=60000",
    );
}

#[test]
fn bad_host_limits_name_the_field_and_what_is_allowed() {
    for (from, to, field, allowed) in [
        (
            "host_max_sessions = 4096",
            "host_max_sessions = 0",
            "nat.host_max_sessions",
            "1..=16777216",
        ),
        (
            "host_new_per_second = 2000",
            "host_new_per_second = 0",
            "nat.host_new_per_second",
            "1..=10000000",
        ),
        (
            "host_new_burst = 4000",
            "host_new_burst = 20000000",
            "nat.host_new_burst",
            "1..=10000000",
        ),
        (
            "host_max_races = 1024",
            "host_max_races = 0",
            "nat.host_max_races",
            "1..=1000000",
        ),
        (
            "max_hosts_per_shard = 8192",
            "max_hosts_per_shard = 0",
            "nat.max_hosts_per_shard",
            "1..=1048576",
        ),
        (
            "mapping_max_sessions = 256",
            "mapping_max_sessions = 0",
            "nat.mapping_max_sessions",
            "1..=65535",
        ),
        (
            "mapping_max_sessions = 256",
            "mapping_max_sessions = 65536",
            "nat.mapping_max_sessions",
            "1..=65535",
        ),
    ] {
        assert!(demo().contains(from), "{from}");
        rejected(&demo().replace(from, to), field, allowed);
    }
}

#[test]
fn bad_selection_settings_name_the_field_and_what_is_allowed() {
    let d = demo();
    let cases = [
        (
            "mode = \"syn-ack\"",
            "mode = \"fastest\"",
            "selection.mode",
            "first-payload",
        ),
        (
            "algorithm = \"weighted-least-load\"",
            "algorithm = \"random\"",
            "selection.algorithm",
            "least-traffic",
        ),
        (
            "rtt_cache_ttl_s = 60",
            "rtt_cache_ttl_s = 0",
            "selection.rtt_cache_ttl_s",
            "1..=86400",
        ),
        (
            "dest_prefix_v4 = 32",
            "dest_prefix_v4 = 33",
            "selection.dest_prefix_v4",
            "1..=32",
        ),
        (
            "on_uplink_down = \"keep\"",
            "on_uplink_down = \"drop\"",
            "selection.on_uplink_down",
            "keep, reset",
        ),
        (
            "# algorithm = \"round-robin\"",
            "[[selection.policies]]\nprotocol = \"sctp\"",
            "selection.policies[0].protocol",
            "tcp, udp, icmp, any",
        ),
        (
            "# algorithm = \"round-robin\"",
            "[[selection.policies]]\nports = [443, 80]",
            "selection.policies[0].ports",
            "must not exceed",
        ),
    ];
    for (from, to, field, allowed) in cases {
        assert!(d.contains(from), "demo.toml lacks `{from}`");
        rejected(&d.replacen(from, to, 1), field, allowed);
    }
}

fn conf(name: &str) -> String {
    std::fs::read_to_string(format!("{}/conf/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn every_shipped_site_config_is_valid() {
    for name in [
        "demo.toml",
        "lab-afpacket.toml",
        "lab-dpdk.toml",
        "bench-dpdk.toml",
    ] {
        let (ok, out, err) = check(&conf(name));
        assert!(ok, "{name}: {err}");
        assert!(out.contains("is valid"), "{name}: {out}");
    }
    // The bare-metal example names 6 lcores: valid on a machine that has them.
    let cfg = appliance::config::parse(&conf("sriov-example.toml")).unwrap();
    let plan = appliance::config::plan::validate_with_cpus(&cfg, 16).unwrap();
    assert_eq!(plan.backend, appliance::config::BackendKind::Dpdk);
    assert!(plan.dpdk.as_ref().unwrap().hugepages);
}

#[test]
fn live_backend_keys_name_the_field_and_what_is_allowed() {
    let lab = conf("lab-afpacket.toml");
    // af-packet ports need an interface; dpdk ports a device.
    rejected(
        &lab.replacen("interface = \"lan0\"", "", 1),
        "ports[0].interface",
        "the Linux interface name",
    );
    rejected(
        &lab.replacen("interface = \"lan0\"", "interface = \"wan-a\"", 1),
        "ports[1].interface",
        "`wan-a` is already used",
    );
    rejected(
        &lab.replacen("interface = \"lan0\"", "device = \"net_null0\"", 1),
        "ports[0]",
        "`device` only for backend = \"dpdk\"",
    );
    // Without next_hop_mac, each family with NAT addresses needs its next hop.
    rejected(
        &lab.replacen("next_hop_v6 = \"2001:db8:a::1\"", "", 1),
        "uplinks[0].next_hop_v6",
        "neighbour discovery",
    );
    rejected(
        &lab.replacen(
            "next_hop = \"100.64.1.1\"",
            "next_hop = \"2001:db8:a::1\"",
            1,
        ),
        "uplinks[0].next_hop",
        "not an IPv4 address",
    );
    rejected(
        &lab.replacen(
            "next_hop = \"100.64.1.1\"",
            "next_hop = \"100.64.1.1\"\nnext_hop_mac = \"01:00:5e:00:00:01\"",
            1,
        ),
        "uplinks[0].next_hop_mac",
        "unicast",
    );
    // The sim and pcap backends still need every port's MAC.
    rejected(
        &demo().replacen("mac = \"02:00:00:00:00:01\"", "", 1),
        "ports[0].mac",
        "required with the sim and pcap backends",
    );
    let dpdk = conf("lab-dpdk.toml");
    rejected(
        &dpdk.replacen(
            "return_steering = \"software\"",
            "return_steering = \"rss\"",
            1,
        ),
        "dpdk.return_steering",
        "\"software\", \"flow\"",
    );
    rejected(
        &dpdk.replacen("rx_desc = 1024", "rx_desc = 1000", 1),
        "dpdk.rx_desc",
        "a power of two in 64..=16384",
    );
    rejected(
        &format!("{dpdk}\n[af_packet]\nrx_blocks = 8\n"),
        "af_packet",
        "only allowed with backend = \"af-packet\"",
    );
    rejected(
        &format!("{lab}\n[af_packet]\nblock_kib = 100\n"),
        "af_packet.block_kib",
        "a power of two in 4..=4096",
    );
}

#[test]
fn bad_redirection_settings_name_the_field_and_what_is_allowed() {
    let site = |extra: &str| {
        appliance::lab::redirect::site_config("a", "198.51.100", 2, None, extra)
            .replace("backend = \"external\"", "backend = \"pcap\"")
            .replace(
                "mac = \"02:00:00:00:00:01\"",
                "mac = \"02:00:00:00:00:01\"\npcap_in = \"in.pcap\"",
            )
    };
    // The lab's own site is valid (as a pcap site, so `check` can run it).
    let (ok, out, err) = check(&site(""));
    assert!(ok, "{out}{err}");
    rejected(
        &site("store = \"etcd\""),
        "redirection.store",
        "allowed: embedded, redis",
    );
    rejected(
        &site("avoid_ms = 0"),
        "redirection.avoid_ms",
        "allowed: 1..=",
    );
    rejected(
        &site("report_interval_ms = 2000\nload_ttl_ms = 1000"),
        "redirection.load_ttl_ms",
        "must exceed report_interval_ms",
    );
    rejected(
        &site("").replace(
            "address = \"10.0.2.1:7000\"",
            "address = \"192.0.2.1:7000\"",
        ),
        "redirection.servers[0].address",
        "not inside the LAN prefixes",
    );
    rejected(
        &site("").replace("uplink = \"isp\"\n", "uplink = \"isp-z\"\n"),
        "redirection.services[0].uplink",
        "uplinks are: isp",
    );
    rejected(
        &site("").replace("server = \"a1\"", "server = \"a9\""),
        "redirection.services[1].members[0].server",
        "servers are: a1, a2",
    );
    rejected(
        &site("[[redirection.peers]]\nname = \"b/web\"\naddress = \"192.0.2.10:7000\""),
        "redirection.peers[0].name",
        "redirection.store = \"redis\"",
    );
    rejected(
        &site("").replace("persistence = \"none\"", "persistence = \"sometimes\""),
        "redirection.services[1].persistence",
        "allowed: once, permanent, leased, none",
    );
    rejected(
        &site("").replace(
            "address = \"198.51.100.11:7000\"",
            "address = \"198.51.100.1:7000\"",
        ),
        "redirection.services[1].address",
        "outside nat.port_range",
    );
    rejected(
        &site("tcp_weight = 2"),
        "redirection",
        "unknown field `tcp_weight`",
    );
}
