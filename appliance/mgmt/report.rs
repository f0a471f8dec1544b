//! The human views of the stats: the live status line and the summary
//! printed at the end of a run.

use std::time::Duration;

use serde_json::Value;

use crate::mgmt::stats::{Stats, Totals};

/// A number in the backend's own section (0 when absent).
fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// One line: rates since the previous line, drops, sessions, sim outcomes.
pub fn status_line(stats: &Stats, now: &Totals, before: &Totals, dt: Duration) -> String {
    let secs = dt.as_secs_f64().max(1e-3);
    let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs;
    let mut line = format!(
        "{:>6.1}s  rx {:>9.0} pps  tx {:>9.0} pps  drops {:>8}  sessions tcp {} udp {}",
        stats.uptime_s,
        rate(now.rx_packets, before.rx_packets),
        rate(now.tx_packets, before.tx_packets),
        now.drops,
        stats.nat.tcp_sessions,
        stats.nat.udp_sessions,
    );
    if let Some(sim) = stats.backend("sim") {
        line.push_str(&format!(
            "  tcp ok {} failed {}  udp {}/{}",
            num(sim, "tcp_connections_ok"),
            num(sim, "tcp_connections_failed"),
            num(sim, "udp_replies"),
            num(sim, "udp_requests"),
        ));
    }
    line
}

/// The multi-line summary printed at exit.
pub fn summary(stats: &Stats) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "ran {:.1} s in {} mode\n",
        stats.uptime_s, stats.mode
    ));
    s.push_str("ports:\n");
    for (name, p) in &stats.ports {
        s.push_str(&format!(
            "  {name:<12} rx {:>10} pkts {:>12} B   tx {:>10} pkts {:>12} B\n",
            p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes
        ));
    }
    s.push_str("stages:\n");
    for (name, v) in &stats.stages {
        let drops: Vec<String> = v
            .drops
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        s.push_str(&format!(
            "  {name:<10} packets {:>10}  drops {:>8}{}\n",
            v.packets,
            v.drops_total,
            if drops.is_empty() {
                String::new()
            } else {
                format!("  ({})", drops.join(", "))
            }
        ));
    }
    s.push_str("uplinks:\n");
    for u in &stats.uplinks {
        s.push_str(&format!(
            "  {:<10} tx {:>10}  rx {:>10}  tcp sessions {:>6}  udp sessions {:>6}  {}  connections {:>6}  races won {:>5} lost {:>5}  rtt {}\n",
            u.name,
            u.tx_packets,
            u.rx_packets,
            u.tcp_sessions,
            u.udp_sessions,
            if u.up { "up  " } else { "DOWN" },
            u.connections,
            u.races_won,
            u.races_lost,
            u.rtt_ms
                .smoothed
                .map_or("-".to_string(), |r| format!("{r:.1} ms")),
        ));
    }
    let n = &stats.nat;
    s.push_str(&format!(
        "nat: created {}  expired {}  live tcp {} udp {} icmp {} (mappings {})  port_exhausted {}  table_full {}  filtered {}\n",
        n.created,
        n.expired,
        n.tcp_sessions,
        n.udp_sessions,
        n.icmp_sessions,
        n.mappings,
        n.port_exhausted,
        n.table_full,
        n.filtered
    ));
    let sel = &stats.selection;
    s.push_str(&format!(
        "selection: mode {}  races {}  cache hits {}  rtt cache entries {}  algorithm {} picks {}\n",
        sel.mode,
        sel.races,
        sel.cache_hits,
        sel.rtt_cache_entries,
        sel.algorithm,
        sel.by_algorithm.get(sel.algorithm).copied().unwrap_or(0),
    ));
    if let Some(sim) = stats.backend("sim") {
        s.push_str(&format!(
            "sim: tcp connections ok {} failed {} (mean setup {:.1} ms)  udp requests {} replies {}\n",
            num(sim, "tcp_connections_ok"),
            num(sim, "tcp_connections_failed"),
            sim["tcp_connect_ms_mean"].as_f64().unwrap_or(0.0),
            num(sim, "udp_requests"),
            num(sim, "udp_replies")
        ));
    }
    s
}
