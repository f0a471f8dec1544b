//! The stats JSON and the human views of it (live status line, exit
//! summary). The management core assembles them from the single-writer
//! counters of every lcore; nothing here takes a lock or stops a worker.
//!
//! Key names are a contract: later versions add keys, never rename them.

use std::sync::Arc;
use std::time::Duration;

use pipelines::nat::NatCounters;
use pipelines::{DropReason, StageCounters};
use serde_json::{json, Map, Value};

use crate::config::plan::{Plan, Stage};
use crate::dataplane::worker::{LcoreCounters, PortCounters};
use crate::mgmt::selection::SelectionView;
use pipelines::select::policy::SelectionCounters;
use pipelines::select::Algorithm;
use pipelines::Nanos;

/// What the management core can read of one lcore.
pub struct LcoreView {
    pub id: usize,
    pub stages: Vec<(Stage, Arc<StageCounters>)>,
    pub nat: Option<Arc<NatCounters>>,
    pub ports: Arc<Vec<PortCounters>>,
    pub counters: Arc<LcoreCounters>,
}

pub struct StatsSources<'a> {
    pub plan: &'a Plan,
    pub uptime: Duration,
    pub lcores: &'a [LcoreView],
    pub backend_name: &'static str,
    pub backend: Value,
    pub selection: &'a SelectionView,
    pub selection_counters: &'a [Arc<SelectionCounters>],
    /// Server-cluster rerouting, when configured: the plan, the database's
    /// view, the translate lcores' service counters.
    pub redirect: Option<(
        &'a crate::config::plan::RedirectionPlan,
        crate::mgmt::redirect::RedirectView,
        &'a [Arc<pipelines::redirect::service::ServiceCounters>],
    )>,
}

/// `redirection.*` of the stats JSON.
fn redirection(
    plan: &crate::config::plan::RedirectionPlan,
    view: &crate::mgmt::redirect::RedirectView,
    counters: &[Arc<pipelines::redirect::service::ServiceCounters>],
) -> Value {
    let sum = |f: &dyn Fn(&pipelines::redirect::service::ServiceCounters) -> u64| -> u64 {
        counters.iter().map(|c| f(c)).sum()
    };
    let by_target: serde_json::Map<String, Value> = plan
        .target_names()
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let n: u64 = counters
                .iter()
                .map(|c| c.by_target.get(i).map_or(0, |x| x.get()))
                .sum();
            (name, json!(n))
        })
        .collect();
    json!({
        "appliance": plan.appliance,
        "store": view.store,
        "requests": sum(&|c| c.requests.get()),
        "plain": sum(&|c| c.plain.get()),
        "served": sum(&|c| c.served.get()),
        "redirected": sum(&|c| c.redirected.get()),
        "no_server": sum(&|c| c.no_server.get()),
        "failures": sum(&|c| c.failures.get()),
        "avoided": view.avoided,
        "by_target": by_target,
        "servers": view.servers,
        "services": view.services,
        "peers": view.peers,
        "snapshots_published": view.snapshots_published,
        "store_reports": view.store_reports,
        "store_errors": view.store_errors,
        "last_store_error": view.last_store_error,
    })
}

/// Milliseconds, three decimals.
fn ms(n: Nanos) -> f64 {
    (n.as_nanos() / 1_000) as f64 / 1_000.0
}

/// Sums of the counters the status line needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub drops: u64,
    pub stage_packets: u64,
}

impl Totals {
    pub fn of(lcores: &[LcoreView]) -> Totals {
        let mut t = Totals::default();
        for l in lcores {
            for p in l.ports.iter() {
                t.rx_packets += p.rx_packets.get();
                t.tx_packets += p.tx_packets.get();
            }
            for (_, s) in &l.stages {
                t.drops += s.total_drops();
                t.stage_packets += s.packets.get();
            }
        }
        t
    }

    /// A number that grows while any packet moves anywhere.
    pub fn processed(&self) -> u64 {
        self.rx_packets + self.tx_packets + self.drops + self.stage_packets
    }
}

fn sum_nat(lcores: &[LcoreView], f: impl Fn(&NatCounters) -> u64) -> u64 {
    lcores.iter().filter_map(|l| l.nat.as_deref()).map(f).sum()
}

/// Builds the stats JSON.
pub fn build(src: &StatsSources<'_>) -> Value {
    let plan = src.plan;
    let lcores = src.lcores;

    let mut ports = Map::new();
    for (i, p) in plan.ports.iter().enumerate() {
        let get = |f: fn(&PortCounters) -> u64| -> u64 {
            lcores.iter().filter_map(|l| l.ports.get(i)).map(f).sum()
        };
        ports.insert(
            p.name.clone(),
            json!({
                "rx_packets": get(|c| c.rx_packets.get()),
                "tx_packets": get(|c| c.tx_packets.get()),
                "rx_bytes": get(|c| c.rx_bytes.get()),
                "tx_bytes": get(|c| c.tx_bytes.get()),
            }),
        );
    }

    let mut stages = Map::new();
    for stage in Stage::ALL {
        let insts: Vec<&StageCounters> = lcores
            .iter()
            .flat_map(|l| l.stages.iter())
            .filter(|(s, _)| *s == stage)
            .map(|(_, c)| &**c)
            .collect();
        let mut drops = Map::new();
        for r in DropReason::ALL {
            drops.insert(
                r.as_str().into(),
                json!(insts.iter().map(|c| c.drops(*r)).sum::<u64>()),
            );
        }
        stages.insert(
            stage.name().into(),
            json!({
                "packets": insts.iter().map(|c| c.packets.get()).sum::<u64>(),
                "drops_total": insts.iter().map(|c| c.total_drops()).sum::<u64>(),
                "drops": drops,
                "lcores": insts.len(),
            }),
        );
    }

    let uplinks: Vec<Value> = plan
        .topology
        .uplinks
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let get = |f: fn(&pipelines::nat::UplinkCounters) -> u64| {
                sum_nat(lcores, |n| n.uplinks.get(i).map(f).unwrap_or(0))
            };
            let sel = src.selection.uplinks.get(i).cloned().unwrap_or_default();
            json!({
                "name": u.name,
                // Usable for new connections (seed 001 [0054]).
                "up": sel.healthy || src.selection.snapshots_published == 0,
                "link_up": sel.link_up || src.selection.snapshots_published == 0,
                "port": plan.ports[u.port as usize].name,
                "tx_packets": get(|c| c.tx_packets.get()),
                "rx_packets": get(|c| c.rx_packets.get()),
                "tx_bytes": get(|c| c.tx_bytes.get()),
                "rx_bytes": get(|c| c.rx_bytes.get()),
                "tcp_sessions": get(|c| c.tcp_sessions.get()),
                "udp_sessions": get(|c| c.udp_sessions.get()),
                // seed 000 [75]: load = TCP sessions + artificial UDP sessions.
                "load": get(|c| c.tcp_sessions.get() + c.udp_sessions.get()),
                "port_exhausted": get(|c| c.port_exhausted.get()),
                "connections": get(|c| c.connections.get()),
                "races_won": get(|c| c.races_won.get()),
                "races_lost": get(|c| c.races_lost.get()),
                "race_unanswered": get(|c| c.race_unanswered.get()),
                "unanswered_streak": sel.unanswered_streak,
                "health_transitions": sel.transitions,
                "traffic_bps": sel.traffic_bps,
                "rtt_ms": {
                    "smoothed": sel.rtt.smoothed().map(ms),
                    "min": sel.rtt.min().map(ms),
                    "var": ms(sel.rtt.var()),
                    "samples": sel.rtt.samples(),
                },
            })
        })
        .collect();

    let nat = json!({
        "tcp_sessions": sum_nat(lcores, |n| n.tcp_sessions.get()),
        "udp_sessions": sum_nat(lcores, |n| n.udp_sessions.get()),
        "icmp_sessions": sum_nat(lcores, |n| n.icmp_sessions.get()),
        "mappings": sum_nat(lcores, |n| n.mappings.get()),
        "created": sum_nat(lcores, |n| n.created.get()),
        "expired": sum_nat(lcores, |n| n.expired.get()),
        "port_exhausted": sum_nat(lcores, |n| n.port_exhausted.get()),
        "table_full": sum_nat(lcores, |n| n.table_full.get()),
        "filtered": sum_nat(lcores, |n| n.filtered.get()),
        "sweep_laps": sum_nat(lcores, |n| n.sweep_laps.get()),
        "race_closed": sum_nat(lcores, |n| n.race_closed.get()),
        "filtering": plan.nat.filtering.as_str(),
    });

    let sc = src.selection_counters;
    let sel_sum = |f: fn(&SelectionCounters) -> u64| sc.iter().map(|c| f(c)).sum::<u64>();
    let mut by_algorithm = Map::new();
    for a in Algorithm::ALL {
        by_algorithm.insert(
            a.as_str().into(),
            json!(sc
                .iter()
                .map(|c| c.by_algorithm[a.index()].get())
                .sum::<u64>()),
        );
    }
    let policy = &plan.selection.policy;
    let selection = json!({
        "mode": plan.selection.mode_name,
        "algorithm": policy.algorithm.as_str(),
        "races": sum_nat(lcores, |n| n.races.get()),
        "cache_hits": sel_sum(|c| c.cache_hits.get()),
        "by_algorithm": by_algorithm,
        "race_copies": sel_sum(|c| c.copies.get()),
        "probes": sel_sum(|c| c.probes.get()),
        "race_table_full": sum_nat(lcores, |n| n.race_table_full.get()),
        "events_dropped": sum_nat(lcores, |n| n.events_dropped.get()),
        "events": src.selection.events,
        "rtt_cache_entries": src.selection.cache_entries,
        "snapshots_published": src.selection.snapshots_published,
    });

    let lcore_list: Vec<Value> = lcores
        .iter()
        .map(|l| {
            json!({
                "id": l.id,
                "stages": l.stages.iter().map(|(s, _)| s.name()).collect::<Vec<_>>(),
                "busy_turns": l.counters.busy_turns.get(),
                "idle_turns": l.counters.idle_turns.get(),
            })
        })
        .collect();

    let mut root = Map::new();
    root.insert("uptime_s".into(), json!(src.uptime.as_secs_f64()));
    root.insert(
        "mode".into(),
        json!(match plan.mode {
            crate::config::Mode::Pipeline => "pipeline",
            crate::config::Mode::RunToCompletion => "run-to-completion",
        }),
    );
    root.insert("ports".into(), Value::Object(ports));
    root.insert("stages".into(), Value::Object(stages));
    root.insert("uplinks".into(), Value::Array(uplinks));
    root.insert("nat".into(), nat);
    root.insert("selection".into(), selection);
    root.insert("neighbours".into(), neighbours(plan));
    if let Some((plan, view, counters)) = &src.redirect {
        root.insert("redirection".into(), redirection(plan, view, counters));
    }
    root.insert("lcores".into(), Value::Array(lcore_list));
    root.insert(src.backend_name.into(), src.backend.clone());
    Value::Object(root)
}

/// Each uplink's next hop per family: its address, its MAC (`null` while
/// unresolved), whether the MAC is configured, and how often it was learned.
fn neighbours(plan: &Plan) -> Value {
    let t = &plan.topology;
    Value::Array(
        plan.neighbours
            .hops()
            .iter()
            .map(|h| {
                json!({
                    "uplink": t.uplinks.get(usize::from(h.uplink)).map(|u| u.name.as_str()),
                    "ip": h.ip.map(|a| a.to_string()),
                    "mac": h.mac().map(|m| pipelines::wire::fmt_mac(&m)),
                    "fixed": h.fixed,
                    "learned": h.times_learned(),
                })
            })
            .collect(),
    )
}

fn num(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or(0)
}

/// One line: rates since the previous line, drops, sessions, sim outcomes.
pub fn status_line(stats: &Value, now: &Totals, before: &Totals, dt: Duration) -> String {
    let secs = dt.as_secs_f64().max(1e-3);
    let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs;
    let mut line = format!(
        "{:>6.1}s  rx {:>9.0} pps  tx {:>9.0} pps  drops {:>8}  sessions tcp {} udp {}",
        stats["uptime_s"].as_f64().unwrap_or(0.0),
        rate(now.rx_packets, before.rx_packets),
        rate(now.tx_packets, before.tx_packets),
        now.drops,
        num(stats, &["nat", "tcp_sessions"]),
        num(stats, &["nat", "udp_sessions"]),
    );
    if stats.get("sim").is_some() {
        line.push_str(&format!(
            "  tcp ok {} failed {}  udp {}/{}",
            num(stats, &["sim", "tcp_connections_ok"]),
            num(stats, &["sim", "tcp_connections_failed"]),
            num(stats, &["sim", "udp_replies"]),
            num(stats, &["sim", "udp_requests"]),
        ));
    }
    line
}

/// The multi-line summary printed at exit.
pub fn summary(stats: &Value) -> String {
    let mut s = String::new();
    let up = stats["uptime_s"].as_f64().unwrap_or(0.0);
    s.push_str(&format!(
        "ran {up:.1} s in {} mode\n",
        stats["mode"].as_str().unwrap_or("?")
    ));
    s.push_str("ports:\n");
    if let Some(ports) = stats["ports"].as_object() {
        for (name, p) in ports {
            s.push_str(&format!(
                "  {name:<12} rx {:>10} pkts {:>12} B   tx {:>10} pkts {:>12} B\n",
                num(p, &["rx_packets"]),
                num(p, &["rx_bytes"]),
                num(p, &["tx_packets"]),
                num(p, &["tx_bytes"])
            ));
        }
    }
    s.push_str("stages:\n");
    if let Some(st) = stats["stages"].as_object() {
        for (name, v) in st {
            let drops: Vec<String> = v["drops"]
                .as_object()
                .map(|d| {
                    d.iter()
                        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                        .map(|(k, n)| format!("{k}={n}"))
                        .collect()
                })
                .unwrap_or_default();
            s.push_str(&format!(
                "  {name:<10} packets {:>10}  drops {:>8}{}\n",
                num(v, &["packets"]),
                num(v, &["drops_total"]),
                if drops.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", drops.join(", "))
                }
            ));
        }
    }
    s.push_str("uplinks:\n");
    if let Some(ups) = stats["uplinks"].as_array() {
        for u in ups {
            s.push_str(&format!(
                "  {:<10} tx {:>10}  rx {:>10}  tcp sessions {:>6}  udp sessions {:>6}  {}  connections {:>6}  races won {:>5} lost {:>5}  rtt {}\n",
                u["name"].as_str().unwrap_or("?"),
                num(u, &["tx_packets"]),
                num(u, &["rx_packets"]),
                num(u, &["tcp_sessions"]),
                num(u, &["udp_sessions"]),
                if u["up"].as_bool().unwrap_or(true) { "up  " } else { "DOWN" },
                num(u, &["connections"]),
                num(u, &["races_won"]),
                num(u, &["races_lost"]),
                u["rtt_ms"]["smoothed"]
                    .as_f64()
                    .map_or("-".to_string(), |r| format!("{r:.1} ms")),
            ));
        }
    }
    let n = &stats["nat"];
    s.push_str(&format!(
        "nat: created {}  expired {}  live tcp {} udp {} icmp {} (mappings {})  port_exhausted {}  table_full {}  filtered {}\n",
        num(n, &["created"]),
        num(n, &["expired"]),
        num(n, &["tcp_sessions"]),
        num(n, &["udp_sessions"]),
        num(n, &["icmp_sessions"]),
        num(n, &["mappings"]),
        num(n, &["port_exhausted"]),
        num(n, &["table_full"]),
        num(n, &["filtered"])
    ));
    let sel = &stats["selection"];
    s.push_str(&format!(
        "selection: mode {}  races {}  cache hits {}  rtt cache entries {}  algorithm {} picks {}\n",
        sel["mode"].as_str().unwrap_or("?"),
        num(sel, &["races"]),
        num(sel, &["cache_hits"]),
        num(sel, &["rtt_cache_entries"]),
        sel["algorithm"].as_str().unwrap_or("?"),
        sel["algorithm"]
            .as_str()
            .map_or(0, |a| num(sel, &["by_algorithm", a])),
    ));
    if let Some(sim) = stats.get("sim") {
        s.push_str(&format!(
            "sim: tcp connections ok {} failed {} (mean setup {:.1} ms)  udp requests {} replies {}\n",
            num(sim, &["tcp_connections_ok"]),
            num(sim, &["tcp_connections_failed"]),
            sim["tcp_connect_ms_mean"].as_f64().unwrap_or(0.0),
            num(sim, &["udp_requests"]),
            num(sim, &["udp_replies"])
        ));
    }
    s
}
