//! The plan's unit tests: hairpin rings, sim proxy keys, and the small
//! test site other modules' tests (`runtime`) build plans from.

use super::*;

/// A small pcap-backend site (one LAN port, two uplink ports) with the given
/// `[runtime]` section, for tests of placement and wiring. Nothing is opened.
pub(crate) fn test_plan(runtime: &str) -> Plan {
    let text = crate::config::site::SiteToml::new("pcap")
        .lan_key("pcap_in", "/nonexistent/lan.pcap")
        .port("wan-a", "02:00:00:00:0a:01")
        .port("wan-b", "02:00:00:00:0b:01")
        .uplink("isp-a", "wan-a", &["198.51.100.10"], "02:00:00:00:0a:fe")
        .uplink("isp-b", "wan-b", &["198.51.100.20"], "02:00:00:00:0b:fe")
        .section(runtime)
        .to_string();
    let cfg = crate::config::parse(&text).expect("test config parses");
    validate_with_cpus(&cfg, 8).expect("test config validates")
}

/// Pipeline mode with three translate lcores (shards 0, 1, 2 on lcores 1,
/// 2, 3) between a classify lcore and a transmit lcore.
pub(crate) const TEST_PIPELINE_3_SHARDS: &str = r#"
[runtime]
mode = "pipeline"
[[runtime.lcores]]
stages = ["classify", "replicate"]
[[runtime.lcores]]
stages = ["translate"]
[[runtime.lcores]]
stages = ["translate"]
[[runtime.lcores]]
stages = ["translate"]
[[runtime.lcores]]
stages = ["transmit"]
"#;

#[test]
fn every_translate_lcore_gets_a_hairpin_ring_fed_by_the_others() {
    let plan = test_plan(TEST_PIPELINE_3_SHARDS);
    assert_eq!(plan.shards(), 3);
    assert_eq!(
        plan.hairpin_rings,
        vec![
            HairpinRingPlan {
                to: 1,
                from: vec![2, 3]
            },
            HairpinRingPlan {
                to: 2,
                from: vec![1, 3]
            },
            HairpinRingPlan {
                to: 3,
                from: vec![1, 2]
            },
        ]
    );
    let text = plan.describe();
    assert!(
        text.contains("lcores 2, 3 -> lcore 1 (hairpin, shard 0)"),
        "{text}"
    );
    assert!(
        text.contains("lcores 1, 2 -> lcore 3 (hairpin, shard 2)"),
        "{text}"
    );
}

#[test]
fn run_to_completion_lcores_each_get_a_hairpin_ring() {
    let plan = test_plan(
        "[runtime]\nmode = \"run-to-completion\"\n[[runtime.lcores]]\n[[runtime.lcores]]\n",
    );
    assert_eq!(
        plan.hairpin_rings,
        vec![
            HairpinRingPlan {
                to: 0,
                from: vec![1]
            },
            HairpinRingPlan {
                to: 1,
                from: vec![0]
            },
        ]
    );
    assert!(plan
        .describe()
        .contains("lcore 1 -> lcore 0 (hairpin, shard 0)"));
}

/// The demo site with `extra` added to the first `[[sim.uplinks]]` entry.
fn demo_with_first_sim_uplink(extra: &str) -> Result<Plan, ConfigError> {
    let demo = include_str!("../../../conf/demo.toml");
    let anchor = "[[sim.uplinks]]\nname = \"isp-a\"\n";
    assert!(demo.contains(anchor), "demo.toml changed its sim uplinks");
    let text = demo.replace(anchor, &format!("{anchor}{extra}\n"));
    let cfg = crate::config::parse(&text).expect("demo variant parses");
    validate_with_cpus(&cfg, 8)
}

#[test]
fn sim_proxy_keys_are_validated_and_described() {
    let plan = demo_with_first_sim_uplink("").unwrap();
    let sim = plan.sim.as_ref().unwrap();
    assert!(sim
        .uplinks
        .iter()
        .all(|u| !u.proxy && u.proxy_delay_ms == 0.0));
    assert!(!plan.describe().contains("proxy"));

    let plan = demo_with_first_sim_uplink("proxy = true").unwrap();
    let u = &plan.sim.as_ref().unwrap().uplinks[0];
    assert!(u.proxy && u.proxy_delay_ms == SIM_PROXY_DELAY_MS_DEFAULT);
    let plan = demo_with_first_sim_uplink("proxy = true\nproxy_delay_ms = 2.5").unwrap();
    assert_eq!(plan.sim.as_ref().unwrap().uplinks[0].proxy_delay_ms, 2.5);
    let text = plan.describe();
    assert!(
        text.contains("isp-a") && text.contains("SYN proxy 2.5 ms from the appliance"),
        "{text}"
    );

    for (extra, msg) in [
        ("proxy = true\nproxy_delay_ms = -1.0", "allowed: 0..=10000"),
        (
            "proxy = true\nproxy_delay_ms = 20000.0",
            "allowed: 0..=10000",
        ),
        ("proxy = true\nproxy_delay_ms = nan", "allowed: 0..=10000"),
        ("proxy_delay_ms = 1.0", "only allowed with proxy = true"),
    ] {
        let e = demo_with_first_sim_uplink(extra).unwrap_err();
        assert_eq!(e.path, "sim.uplinks[0].proxy_delay_ms", "{extra}: {e:?}");
        assert!(e.msg.contains(msg), "{extra}: {e:?}");
    }
    let e = crate::config::parse(&include_str!("../../../conf/demo.toml").replace(
        "name = \"isp-a\"\ndelay_ms",
        "name = \"isp-a\"\nproxy = 1\ndelay_ms",
    ))
    .unwrap_err();
    assert!(e.contains("sim.uplinks[0].proxy"), "{e}");
}

#[test]
fn a_single_shard_needs_no_hairpin_ring() {
    let one_lcore = test_plan("[runtime]\nmode = \"run-to-completion\"\n[[runtime.lcores]]\n");
    assert!(one_lcore.hairpin_rings.is_empty());
    let pipeline = test_plan(
        "[runtime]\nmode = \"pipeline\"\n\
         [[runtime.lcores]]\nstages = [\"classify\", \"replicate\"]\n\
         [[runtime.lcores]]\nstages = [\"translate\", \"transmit\"]\n",
    );
    assert!(pipeline.hairpin_rings.is_empty());
    assert!(!pipeline.describe().contains("hairpin"));
}

#[test]
fn neighbour_lock_time_is_configured_and_bounded() {
    let plan = test_plan("");
    assert_eq!(plan.neighbours.lock_time(), pipelines::neighbour::LOCK_TIME);
    let plan = test_plan("[neighbours]\nlock_time_ms = 2500\n");
    assert_eq!(
        plan.neighbours.lock_time(),
        pipelines::Nanos::from_millis(2500)
    );
    let plan = test_plan("[neighbours]\nlock_time_ms = 0\n");
    assert_eq!(plan.neighbours.lock_time(), pipelines::Nanos::ZERO);
    let site = |section: &str| {
        crate::config::site::SiteToml::new("pcap")
            .lan_key("pcap_in", "/nonexistent/lan.pcap")
            .port("wan-a", "02:00:00:00:0a:01")
            .uplink("isp-a", "wan-a", &["198.51.100.10"], "02:00:00:00:0a:fe")
            .section(section)
            .to_string()
    };
    let cfg = crate::config::parse(&site("[neighbours]\nlock_time_ms = 60001\n")).unwrap();
    let e = validate_with_cpus(&cfg, 8).unwrap_err();
    assert_eq!(e.path, "neighbours.lock_time_ms", "{e:?}");
    assert!(e.msg.contains("allowed: 0..=60000"), "{e:?}");
    let e = crate::config::parse(&site("[neighbours]\nlocktime = 1\n")).unwrap_err();
    assert!(e.contains("locktime"), "{e}");
}

/// The demo site with its `[fragments]` keys replaced by `fragments`.
fn demo_with_fragments(fragments: &str) -> Result<Plan, ConfigError> {
    let demo = include_str!("../../../conf/demo.toml");
    let (start, end) = (
        demo.find("[fragments]\n")
            .expect("demo.toml has [fragments]"),
        demo.find("max_fragments_per_datagram = 64\n").unwrap(),
    );
    let text = format!(
        "{}[fragments]\n{fragments}\n{}",
        &demo[..start],
        &demo[end + "max_fragments_per_datagram = 64\n".len()..]
    );
    let cfg = crate::config::parse(&text).expect("demo variant parses");
    validate_with_cpus(&cfg, 8)
}

#[test]
fn fragments_limits_are_planned_and_validated() {
    let plan = demo_with_fragments("").unwrap();
    assert_eq!(plan.nat.fragments, pipelines::frag::FragLimits::default());
    let plan = demo_with_fragments("max_held_per_shard = 10\ntimeout_ms = 500").unwrap();
    assert_eq!(plan.nat.fragments.max_held, 10);
    assert_eq!(
        plan.nat.fragments.timeout,
        pipelines::Nanos::from_millis(500)
    );
    for (keys, path, msg) in [
        (
            "max_held_per_shard = 0",
            "fragments.max_held_per_shard",
            "allowed: 1..=65536",
        ),
        (
            "max_datagrams_per_shard = 0",
            "fragments.max_datagrams_per_shard",
            "allowed",
        ),
        (
            "max_fragments_per_datagram = 9000",
            "fragments.max_fragments_per_datagram",
            "8192",
        ),
        (
            "timeout_ms = 5",
            "fragments.timeout_ms",
            "allowed: 10..=60000",
        ),
        // The demo's pool is 32,768 buffers: half is 16,384.
        (
            "max_held_per_shard = 60000",
            "fragments.max_held_per_shard",
            "at most half",
        ),
    ] {
        let e = demo_with_fragments(keys).unwrap_err();
        assert_eq!(e.path, path, "{keys}: {e:?}");
        assert!(e.msg.contains(msg), "{keys}: {e:?}");
    }
    let e = crate::config::parse(
        &include_str!("../../../conf/demo.toml")
            .replace("timeout_ms = 2000", "timeout_ms = 2000\nmax_fragments = 3"),
    )
    .unwrap_err();
    assert!(e.contains("max_fragments"), "{e}");
}

#[test]
fn port_mtus_and_icmp_limits_are_configured_and_bounded() {
    let site = |wan_mtu: &str, lan_prefixes: &[&str], section: &str| {
        let mut s = crate::config::site::SiteToml::new("pcap")
            .prefixes(lan_prefixes)
            .lan_key("pcap_in", "/nonexistent/lan.pcap")
            .port("wan-a", "02:00:00:00:0a:01")
            .uplink("isp-a", "wan-a", &["198.51.100.10"], "02:00:00:00:0a:fe")
            .section(section);
        if !wan_mtu.is_empty() {
            s = s.port_raw("wan-a", &format!("mtu = {wan_mtu}"));
        }
        crate::config::parse(&s.to_string()).unwrap()
    };
    let plan = validate_with_cpus(&site("", &["10.0.0.0/16"], ""), 8).unwrap();
    assert_eq!(
        plan.topology
            .ports
            .iter()
            .map(|p| p.mtu)
            .collect::<Vec<_>>(),
        [1500, 1500],
        "default"
    );
    assert_eq!(
        plan.topology.icmp,
        pipelines::topology::IcmpLimits::default()
    );
    assert!(
        plan.topology.uplinks[0].answer_ping,
        "answers pings by default"
    );
    let plan = validate_with_cpus(&site("576", &["10.0.0.0/16"], ""), 8).unwrap();
    assert_eq!(plan.topology.ports[1].mtu, 576);
    for (mtu, prefixes, allowed) in [
        ("67", &["10.0.0.0/16"][..], "allowed: 68..=9000"),
        ("9001", &["10.0.0.0/16"][..], "allowed: 68..=9000"),
        ("4000", &["10.0.0.0/16"][..], "at most 2034"),
    ] {
        let e = validate_with_cpus(&site(mtu, prefixes, ""), 8).unwrap_err();
        assert_eq!(e.path, "ports[1].mtu", "{e:?}");
        assert!(e.msg.contains(allowed), "{e:?}");
    }
    // The LAN port carries IPv6: at least 1280.
    let cfg = site("", &["10.0.0.0/16", "fd00::/64"], "");
    let mut cfg2 = cfg.clone();
    cfg2.ports[0].mtu = Some(1279);
    let e = validate_with_cpus(&cfg2, 8).unwrap_err();
    assert_eq!(e.path, "ports[0].mtu", "{e:?}");
    assert!(e.msg.contains("1280"), "{e:?}");
    cfg2.ports[0].mtu = Some(1280);
    assert!(validate_with_cpus(&cfg2, 8).is_ok());

    let section =
        "[icmp]\nrate_per_second = 5\nburst = 3\nmax_destinations = 64\nglobal_per_second = 100\n";
    let plan = validate_with_cpus(&site("", &["10.0.0.0/16"], section), 8).unwrap();
    assert_eq!(
        plan.topology.icmp,
        pipelines::topology::IcmpLimits {
            rate_per_second: 5,
            burst: 3,
            max_destinations: 64,
            global_per_second: 100
        }
    );
    let e = validate_with_cpus(&site("", &["10.0.0.0/16"], "[icmp]\nburst = 0\n"), 8).unwrap_err();
    assert_eq!(e.path, "icmp.burst", "{e:?}");
    assert!(e.msg.contains("allowed: 1..="), "{e:?}");
    let mut quiet = site("", &["10.0.0.0/16"], "");
    quiet.uplinks[0].answer_ping = false;
    assert!(!validate_with_cpus(&quiet, 8).unwrap().topology.uplinks[0].answer_ping);
}

#[test]
fn prometheus_address_is_off_by_default_and_validated() {
    assert_eq!(test_plan("").prometheus, None);
    let plan = test_plan("[telemetry]\nprometheus = \"127.0.0.1:9417\"\n");
    assert_eq!(plan.prometheus, Some("127.0.0.1:9417".parse().unwrap()));
    let plan = test_plan("[telemetry]\nprometheus = \"[::1]:9417\"\n");
    assert_eq!(plan.prometheus, Some("[::1]:9417".parse().unwrap()));
    let site = |section: &str| {
        crate::config::site::SiteToml::new("pcap")
            .lan_key("pcap_in", "/nonexistent/lan.pcap")
            .port("wan-a", "02:00:00:00:0a:01")
            .uplink("isp-a", "wan-a", &["198.51.100.10"], "02:00:00:00:0a:fe")
            .section(section)
            .to_string()
    };
    for bad in [
        "localhost:9417",
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:99999",
        "",
    ] {
        let cfg =
            crate::config::parse(&site(&format!("[telemetry]\nprometheus = \"{bad}\"\n"))).unwrap();
        let e = validate_with_cpus(&cfg, 8).unwrap_err();
        assert_eq!(e.path, "telemetry.prometheus", "{bad}: {e:?}");
        assert!(e.msg.contains("allowed: an IP address and a port"), "{e:?}");
    }
    let e = crate::config::parse(&site("[telemetry]\nprometheus_addr = \"x\"\n")).unwrap_err();
    assert!(e.contains("prometheus_addr"), "{e}");
}

#[test]
fn nat_log_is_off_by_default_and_validated() {
    assert_eq!(test_plan("").nat_log, None);
    let plan = test_plan(
        "[telemetry.nat_log]\njson_file = \"/tmp/nat.jsonl\"\nipfix_collector = \"127.0.0.1:4739\"\n",
    );
    let nl = plan.nat_log.unwrap();
    assert_eq!(nl.json_file, Some("/tmp/nat.jsonl".into()));
    assert_eq!(nl.ipfix_collector, Some("127.0.0.1:4739".parse().unwrap()));
    assert_eq!(nl.template_refresh, std::time::Duration::from_secs(60));
    assert_eq!(nl.observation_domain, 1);
    // Defaults alone configure no sink.
    assert_eq!(
        test_plan("[telemetry.nat_log]\nipfix_observation_domain = 5\n").nat_log,
        None
    );
    let site = |section: &str| {
        crate::config::site::SiteToml::new("pcap")
            .lan_key("pcap_in", "/nonexistent/lan.pcap")
            .port("wan-a", "02:00:00:00:0a:01")
            .uplink("isp-a", "wan-a", &["198.51.100.10"], "02:00:00:00:0a:fe")
            .section(section)
            .to_string()
    };
    for (body, field) in [
        ("ipfix_collector = \"localhost:4739\"", "ipfix_collector"),
        ("ipfix_collector = \"127.0.0.1:0\"", "ipfix_collector"),
        ("ipfix_collector = \"0.0.0.0:4739\"", "ipfix_collector"),
        ("json_file = \"\"", "json_file"),
        ("json_file = \"/var/log/\"", "json_file"),
        (
            "ipfix_collector = \"127.0.0.1:4739\"\nipfix_template_refresh_s = 0",
            "ipfix_template_refresh_s",
        ),
    ] {
        let cfg = crate::config::parse(&site(&format!("[telemetry.nat_log]\n{body}\n"))).unwrap();
        let e = validate_with_cpus(&cfg, 8).unwrap_err();
        assert_eq!(
            e.path,
            format!("telemetry.nat_log.{field}"),
            "{body}: {e:?}"
        );
        assert!(e.msg.contains("allowed"), "{e:?}");
    }
    let e = crate::config::parse(&site("[telemetry.nat_log]\njson = \"x\"\n")).unwrap_err();
    assert!(e.contains("json"), "{e}");
}
