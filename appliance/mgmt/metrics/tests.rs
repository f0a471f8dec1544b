use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use super::*;
use crate::mgmt::selection::SelectionView;
use crate::mgmt::stats::{build, StatsSources};

/// A collector over a fixed `Stats` (no runtime needed).
#[derive(Debug)]
struct Fixed(Stats, u64);

impl Collector for Fixed {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_stats(&self.0, self.1, &mut enc)
    }
}

fn stats() -> Stats {
    let plan = crate::config::plan::test_plan("");
    let mut s = build(&StatsSources {
        plan: &plan,
        uptime: std::time::Duration::from_secs(3),
        lcores: &[],
        backend_name: "pcap",
        backend: serde_json::json!({}),
        selection: &SelectionView::default(),
        selection_counters: &[],
        redirect: None,
        control: &Default::default(),
    });
    s.uplinks[0].tcp_sessions = 7;
    s.uplinks[0].udp_sessions = 2;
    s.uplinks[0].load = 9;
    s.uplinks[1].up = false;
    s.uplinks[1].admin = "drained";
    s.uplinks[0].rtt_ms.smoothed = Some(12.5);
    s.uplinks[0].races_won = 4;
    s.nat.tcp_sessions = 7;
    s.nat.udp_sessions = 2;
    s.nat.icmp_sessions = 1;
    s
}

fn text(s: Stats, limit: u64) -> String {
    let mut r = Registry::default();
    r.register_collector(Box::new(Fixed(s, limit)));
    render(&r)
}

#[test]
fn exposition_has_the_stats_values_with_conventional_names() {
    let t = text(stats(), 4096);
    for line in [
        "# TYPE appliance_port_packets_total counter",
        "appliance_port_packets_total{port=\"wan-a\",direction=\"rx\"} 0",
        "# TYPE appliance_nat_sessions gauge",
        "appliance_nat_sessions{proto=\"tcp\",uplink=\"isp-a\"} 7",
        "appliance_nat_sessions{proto=\"udp\",uplink=\"isp-a\"} 2",
        "appliance_nat_table_sessions 10",
        "appliance_nat_sessions_limit 4096",
        "appliance_uplink_up{uplink=\"isp-a\"} 1",
        "appliance_uplink_up{uplink=\"isp-b\"} 0",
        "appliance_uplink_drained{uplink=\"isp-b\"} 1",
        "appliance_uplink_load{uplink=\"isp-a\"} 9",
        "appliance_uplink_rtt_seconds{uplink=\"isp-a\",stat=\"smoothed\"} 0.0125",
        "appliance_races_total{uplink=\"isp-a\",result=\"won\"} 4",
        "appliance_drops_total{stage=\"classify\",reason=\"truncated_ethernet\"} 0",
        "appliance_uptime_seconds 3.0",
    ] {
        assert!(t.lines().any(|l| l == line), "missing {line:?} in\n{t}");
    }
    // No RTT before a sample: the series is absent, not 0.
    assert!(
        !t.contains("appliance_uplink_rtt_seconds{uplink=\"isp-b\""),
        "{t}"
    );
    // No redirection configured: no redirection family.
    assert!(!t.contains("appliance_redirections"), "{t}");
}

#[test]
fn every_drop_reason_of_every_stage_is_a_series() {
    let t = text(stats(), 1);
    let n = t
        .lines()
        .filter(|l| l.starts_with("appliance_drops_total{"))
        .count();
    assert_eq!(n, 4 * pipelines::DropReason::ALL.len(), "{t}");
}
