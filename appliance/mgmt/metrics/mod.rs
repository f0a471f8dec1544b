//! Prometheus metrics: a collector that encodes the stats as of the scrape
//! (the same [`StatsReader`] as `appliance stats`), and the HTTP thread that
//! serves them ([`serve`]). Nothing here touches an lcore: the counters are
//! single-writer atomics read without locks, the views behind the mutexes
//! the stats JSON reads too.
//!
//! Counters are cumulative values read from a snapshot, so they are not
//! mirrored into registered metrics: [`StatsCollector`] implements
//! `prometheus_client`'s `Collector` and writes each family at scrape time.
//! Label sets are bounded by the configuration (ports, stages, drop
//! reasons, uplinks, algorithms, services, servers, lcores): never a
//! session, host or destination.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::mgmt::reader::StatsReader;
use crate::mgmt::stats::Stats;

mod serve;
pub use serve::{spawn, CONTENT_TYPE};

/// Labels of one series: bounded names and values.
type Labels = Vec<(&'static str, String)>;

/// Encodes [`Stats`] at each scrape.
pub struct StatsCollector {
    reader: Arc<StatsReader>,
}

impl std::fmt::Debug for StatsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsCollector")
    }
}

impl Collector for StatsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.reader.report();
        let plan = &self.reader.plan;
        let limit = plan.nat.max_sessions as u64 * u64::from(plan.shards());
        encode_stats(&stats, limit, &mut enc)
    }
}

/// A registry holding only the collector over `reader`.
pub fn registry(reader: Arc<StatsReader>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(StatsCollector { reader }));
    r
}

/// The text exposition (format 0.0.4) of `registry` as of now.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(64 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

/// One family of counters. `name` without `_total`: the encoder adds it.
fn counters<V: EncodeCounterValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, V)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        m.encode_family(&labels)?
            .encode_counter::<Labels, V, f64>(&v, None)?;
    }
    Ok(())
}

/// One family of gauges.
fn gauges<V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, V)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        m.encode_family(&labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

/// One series without labels.
fn gauge<V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> Result<(), std::fmt::Error> {
    gauges(enc, name, help, [(Labels::new(), v)])
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    counters(enc, name, help, [(Labels::new(), v)])
}

fn l1(k: &'static str, v: impl ToString) -> Labels {
    vec![(k, v.to_string())]
}

fn l2(k1: &'static str, v1: impl ToString, k2: &'static str, v2: impl ToString) -> Labels {
    vec![(k1, v1.to_string()), (k2, v2.to_string())]
}

/// Every family, from one [`Stats`]; `limit` is the NAT table's capacity
/// (sessions per shard times shards).
pub fn encode_stats(
    s: &Stats,
    limit: u64,
    enc: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    gauge(
        enc,
        "appliance_uptime_seconds",
        "Seconds since the appliance started.",
        s.uptime_s,
    )?;
    ports(s, enc)?;
    stages(s, enc)?;
    nat(s, limit, enc)?;
    uplinks(s, enc)?;
    selection(s, enc)?;
    redirection(s, enc)?;
    counters(
        enc,
        "appliance_capture_frames",
        "Frames the lcores copied for `appliance capture`, or lost to a full capture ring.",
        [
            (l1("result", "copied"), s.capture.copied),
            (l1("result", "lost"), s.capture.lost),
        ],
    )?;
    lcores(s, enc)
}

fn ports(s: &Stats, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let by_dir = |rx: fn(&crate::mgmt::stats::PortStats) -> u64,
                  tx: fn(&crate::mgmt::stats::PortStats) -> u64| {
        s.ports.iter().flat_map(move |(name, p)| {
            [
                (l2("port", name, "direction", "rx"), rx(p)),
                (l2("port", name, "direction", "tx"), tx(p)),
            ]
        })
    };
    counters(
        enc,
        "appliance_port_packets",
        "Packets received (rx) and sent (tx) by a port.",
        by_dir(|p| p.rx_packets, |p| p.tx_packets),
    )?;
    counters(
        enc,
        "appliance_port_bytes",
        "Bytes received (rx) and sent (tx) by a port.",
        by_dir(|p| p.rx_bytes, |p| p.tx_bytes),
    )
}

fn stages(s: &Stats, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    counters(
        enc,
        "appliance_stage_packets",
        "Packets a pipeline stage processed.",
        s.stages.iter().map(|(st, x)| (l1("stage", st), x.packets)),
    )?;
    counters(
        enc,
        "appliance_drops",
        "Packets dropped, by stage and drop reason (every reason present).",
        s.stages.iter().flat_map(|(st, x)| {
            x.drops
                .iter()
                .map(move |(r, n)| (l2("stage", st, "reason", r), *n))
        }),
    )?;
    counters(enc, "appliance_originated_packets", "Packets a stage originated (ICMP answers and errors, fragments) or refused to send (kind icmp_rate_limited).",
        s.stages.iter().flat_map(|(st, x)| x.originated.iter().map(move |(k, n)| (l2("stage", st, "kind", k), *n))))
}

fn nat(s: &Stats, limit: u64, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let n = &s.nat;
    gauges(enc, "appliance_nat_sessions", "Live NAT sessions by protocol and uplink (TCP and UDP; ICMP sessions are in appliance_nat_icmp_sessions).",
        s.uplinks.iter().flat_map(|u| {
            [(l2("proto", "tcp", "uplink", &u.name), u.tcp_sessions), (l2("proto", "udp", "uplink", &u.name), u.udp_sessions)]
        }))?;
    gauge(
        enc,
        "appliance_nat_icmp_sessions",
        "Live NAT sessions of ICMP echo (not attributed to an uplink).",
        n.icmp_sessions,
    )?;
    gauge(enc, "appliance_nat_table_sessions", "Live NAT sessions of every protocol: the table's fill, to compare with appliance_nat_sessions_limit.",
        n.tcp_sessions + n.udp_sessions + n.icmp_sessions)?;
    gauge(
        enc,
        "appliance_nat_sessions_limit",
        "Capacity of the NAT table: nat.max_sessions_per_shard times the shards.",
        limit,
    )?;
    gauge(
        enc,
        "appliance_nat_mappings",
        "Live NAT mappings (inside address and port to outside address and port).",
        n.mappings,
    )?;
    counters(
        enc,
        "appliance_nat_port_exhausted",
        "New sessions refused because the uplink's NAT port range was exhausted.",
        s.uplinks
            .iter()
            .map(|u| (l1("uplink", &u.name), u.port_exhausted)),
    )?;
    counter(
        enc,
        "appliance_nat_sessions_created",
        "NAT sessions created.",
        n.created,
    )?;
    counters(
        enc,
        "appliance_nat_sessions_removed",
        "NAT sessions removed, by reason.",
        [
            (l1("reason", "expired"), n.expired),
            (l1("reason", "race_closed"), n.race_closed),
            (l1("reason", "flushed"), n.flushed),
            (l1("reason", "evicted_unanswered"), n.evicted_unanswered),
            (l1("reason", "evicted_closed"), n.evicted_closed),
        ],
    )?;
    counters(
        enc,
        "appliance_nat_refused",
        "New sessions refused, by reason (the stats keys of nat).",
        [
            (l1("reason", "table_full"), n.table_full),
            (l1("reason", "port_exhausted"), n.port_exhausted),
            (l1("reason", "host_sessions_limit"), n.host_sessions_limit),
            (l1("reason", "host_rate_limit"), n.host_rate_limit),
            (l1("reason", "host_races_limit"), n.host_races_limit),
            (l1("reason", "hosts_table_full"), n.hosts_table_full),
            (
                l1("reason", "mapping_sessions_limit"),
                n.mapping_sessions_limit,
            ),
        ],
    )?;
    counter(
        enc,
        "appliance_nat_filtered",
        "Inbound packets matching no session's 5-tuple (address-and-port-dependent filtering).",
        n.filtered,
    )
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

fn uplinks(s: &Stats, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let u = &s.uplinks;
    let per = |f: fn(&crate::mgmt::stats::UplinkStats) -> i64| {
        u.iter().map(move |x| (l1("uplink", &x.name), f(x)))
    };
    gauges(enc, "appliance_uplink_up", "1 when selection counts the uplink up (link up and answering; a drained uplink stays up, see appliance_uplink_drained).", per(|x| flag(x.up)))?;
    gauges(
        enc,
        "appliance_uplink_link_up",
        "1 when the uplink's port reports its link up.",
        per(|x| flag(x.link_up)),
    )?;
    gauges(
        enc,
        "appliance_uplink_drained",
        "1 when the operator drained the uplink (no new flows or races).",
        per(|x| flag(x.admin == "drained")),
    )?;
    gauges(
        enc,
        "appliance_uplink_admin_down",
        "1 when the operator set the uplink down.",
        per(|x| flag(x.admin == "down")),
    )?;
    gauges(
        enc,
        "appliance_uplink_weight",
        "Selection weight in use.",
        per(|x| i64::from(x.weight)),
    )?;
    gauges(
        enc,
        "appliance_uplink_load",
        "Load of the uplink: TCP sessions plus artificial UDP sessions (seed 000 [75]).",
        u.iter().map(|x| (l1("uplink", &x.name), x.load)),
    )?;
    let dir = |rx: fn(&crate::mgmt::stats::UplinkStats) -> u64,
               tx: fn(&crate::mgmt::stats::UplinkStats) -> u64| {
        u.iter().flat_map(move |x| {
            [
                (l2("uplink", &x.name, "direction", "rx"), rx(x)),
                (l2("uplink", &x.name, "direction", "tx"), tx(x)),
            ]
        })
    };
    counters(
        enc,
        "appliance_uplink_packets",
        "Translated packets received (rx) and sent (tx) through the uplink.",
        dir(|x| x.rx_packets, |x| x.tx_packets),
    )?;
    counters(
        enc,
        "appliance_uplink_bytes",
        "Translated bytes received (rx) and sent (tx) through the uplink.",
        dir(|x| x.rx_bytes, |x| x.tx_bytes),
    )?;
    counters(
        enc,
        "appliance_uplink_connections",
        "Connections (sessions) opened through the uplink.",
        u.iter().map(|x| (l1("uplink", &x.name), x.connections)),
    )?;
    gauges(
        enc,
        "appliance_uplink_traffic_bytes_per_second",
        "Bytes per second through the uplink as selection measures it, smoothed (RFC 2391 least traffic).",
        u.iter().map(|x| (l1("uplink", &x.name), x.traffic_bps)),
    )?;
    counters(
        enc,
        "appliance_uplink_health_transitions",
        "Times the uplink went from healthy to unhealthy or back.",
        u.iter()
            .map(|x| (l1("uplink", &x.name), x.health_transitions)),
    )?;
    gauges(
        enc,
        "appliance_uplink_failed_destinations",
        "Distinct destinations the uplink's race copies failed toward since its last answer.",
        u.iter()
            .map(|x| (l1("uplink", &x.name), i64::from(x.failed_destinations))),
    )?;
    gauges(
        enc,
        "appliance_uplink_rtt_seconds",
        "RTT of the uplink (RFC 6298): smoothed and minimum; absent before the first sample.",
        u.iter().flat_map(|x| {
            [("smoothed", x.rtt_ms.smoothed), ("min", x.rtt_ms.min)]
                .into_iter()
                .filter_map(move |(stat, v)| {
                    v.map(|ms| (l2("uplink", &x.name, "stat", stat), ms / 1000.0))
                })
        }),
    )?;
    counters(
        enc,
        "appliance_uplink_rtt_samples",
        "RTT samples taken on the uplink.",
        u.iter().map(|x| (l1("uplink", &x.name), x.rtt_ms.samples)),
    )?;
    counters(
        enc,
        "appliance_races",
        "SYN races by the uplink's outcome: won, lost, or its copy unanswered.",
        u.iter().flat_map(|x| {
            [
                ("won", x.races_won),
                ("lost", x.races_lost),
                ("unanswered", x.race_unanswered),
            ]
            .map(|(r, n)| (l2("uplink", &x.name, "result", r), n))
        }),
    )
}

fn selection(s: &Stats, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let x = &s.selection;
    counters(enc, "appliance_selection_picks", "Uplinks picked by an RFC 2391 algorithm (per algorithm; the stats do not split picks by uplink).",
        x.by_algorithm.iter().map(|(a, n)| (l1("algorithm", a), *n)))?;
    counter(
        enc,
        "appliance_selection_races_started",
        "SYN races started (a SYN copied to every healthy uplink).",
        x.races,
    )?;
    counter(
        enc,
        "appliance_selection_cache_hits",
        "New connections sent to the uplink the RTT cache holds best.",
        x.cache_hits,
    )?;
    counter(
        enc,
        "appliance_selection_race_copies",
        "SYN copies sent by races.",
        x.race_copies,
    )?;
    counter(
        enc,
        "appliance_selection_probes",
        "Probes of uplinks marked down.",
        x.probes,
    )?;
    counter(
        enc,
        "appliance_selection_race_table_full",
        "Races not started because the race table was full.",
        x.race_table_full,
    )?;
    counter(
        enc,
        "appliance_selection_races_all_failed",
        "Races every copy of which failed.",
        x.races_all_failed,
    )?;
    counter(
        enc,
        "appliance_selection_events_dropped",
        "Selection events (RTT samples) lost to a full ring.",
        x.events_dropped,
    )?;
    gauge(
        enc,
        "appliance_selection_rtt_cache_entries",
        "Destinations in the RTT cache.",
        x.rtt_cache_entries as u64,
    )
}

fn redirection(s: &Stats, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let Some(r) = &s.redirection else {
        return Ok(());
    };
    counters(
        enc,
        "appliance_redirections",
        "Service requests redirected, by target (a local service or a peer appliance).",
        r.by_target.iter().map(|(t, n)| (l1("target", t), *n)),
    )?;
    counters(
        enc,
        "appliance_redirection_requests",
        "Service requests by outcome.",
        [
            (l1("result", "plain"), r.plain),
            (l1("result", "served"), r.served),
            (l1("result", "redirected"), r.redirected),
            (l1("result", "no_server"), r.no_server),
        ],
    )?;
    gauges(
        enc,
        "appliance_server_load",
        "Load of a cluster server: its TCP sessions plus artificial UDP sessions.",
        r.servers.iter().map(|v| (l1("server", &v.name), v.load)),
    )?;
    gauges(
        enc,
        "appliance_server_avoided",
        "1 while a server is avoided after failures.",
        r.servers
            .iter()
            .map(|v| (l1("server", &v.name), flag(v.avoided))),
    )?;
    counter(
        enc,
        "appliance_redirection_store_errors",
        "Errors talking to the shared redirection store.",
        r.store_errors,
    )
}

fn lcores(s: &Stats, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    counters(enc, "appliance_lcore_turns", "Loop turns of an lcore, busy (moved a packet) or idle; rate(busy)/rate(all) is its busy ratio.",
        s.lcores.iter().flat_map(|l| [("busy", l.busy_turns), ("idle", l.idle_turns)].map(|(st, n)| (l2("lcore", l.id, "state", st), n))))?;
    gauges(
        enc,
        "appliance_lcore_busy_ratio",
        "Share of an lcore's loop turns since start that moved a packet.",
        s.lcores.iter().map(|l| {
            let all = l.busy_turns + l.idle_turns;
            (
                l1("lcore", l.id),
                if all == 0 {
                    0.0
                } else {
                    l.busy_turns as f64 / all as f64
                },
            )
        }),
    )
}

#[cfg(test)]
mod tests;
