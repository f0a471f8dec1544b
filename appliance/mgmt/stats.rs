//! The stats JSON, as typed structs ([`Stats`]): the management core
//! assembles them from the single-writer counters of every lcore; nothing
//! here takes a lock or stops a worker. The human views of them (live status
//! line, exit summary) are in [`crate::mgmt::report`].
//!
//! Key names are a contract: later versions add keys, never rename them. The
//! JSON is that of [`Stats::to_json`]: a `serde_json::Value`, whose objects
//! keep their keys sorted; maps keyed by name are `BTreeMap`s, so reading
//! them gives the same order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pipelines::nat::NatCounters;
use pipelines::neighbour::HopCounters;
use pipelines::packet::counter::Sent;
use pipelines::{DropReason, StageCounters};
use serde::Serialize;
use serde_json::Value;

use crate::config::plan::{Plan, Stage};
pub use crate::dataplane::assembly::LcoreView;
use crate::dataplane::worker::PortCounters;
use crate::mgmt::selection::SelectionView;
use pipelines::select::policy::SelectionCounters;
use pipelines::select::Algorithm;
use pipelines::Nanos;

pub struct StatsSources<'a> {
    pub plan: &'a Plan,
    pub uptime: Duration,
    pub lcores: &'a [LcoreView],
    pub backend_name: &'static str,
    pub backend: Value,
    pub selection: &'a SelectionView,
    pub selection_counters: &'a [Arc<SelectionCounters>],
    /// The control socket's and the reloads' counters.
    pub control: &'a ControlCounters,
    /// Server-cluster rerouting, when configured: the plan, the database's
    /// view, the translate lcores' service counters.
    pub redirect: Option<(
        &'a crate::config::plan::RedirectionPlan,
        crate::mgmt::redirect::RedirectView,
        &'a [Arc<pipelines::redirect::service::ServiceCounters>],
    )>,
}

/// The stats JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub uptime_s: f64,
    pub mode: &'static str,
    /// By port name.
    pub ports: BTreeMap<String, PortStats>,
    /// By stage name.
    pub stages: BTreeMap<&'static str, StageStats>,
    pub uplinks: Vec<UplinkStats>,
    pub nat: NatStats,
    pub selection: SelectionStats,
    pub neighbours: Vec<NeighbourStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirection: Option<RedirectionStats>,
    pub lcores: Vec<LcoreStats>,
    pub control: ControlStats,
    pub events: EventStats,
    /// `[telemetry.nat_log]`: what the NAT event log wrote and sent.
    pub nat_log: NatLogStats,
    /// `appliance capture`: frames the lcores copied, and lost to a full
    /// capture ring.
    pub capture: CaptureStats,
    /// Large tables and their page size (`[runtime] huge_pages`).
    pub memory: crate::memory::MemoryStats,
    /// The backend's own section, under its name (`sim`, `pcap`, ...).
    #[serde(flatten)]
    pub backend: BackendStats,
}

impl Stats {
    /// The stats JSON as a value (objects with sorted keys).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("stats serialize to JSON")
    }

    /// The backend's section when the backend is `name`.
    pub fn backend(&self, name: &str) -> Option<&Value> {
        (self.backend.name == name).then_some(&self.backend.stats)
    }
}

/// `ports.<name>`: packets and bytes, summed over the lcores.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// `stages.<name>`: summed over the stage's instances.
#[derive(Clone, Debug, Serialize)]
pub struct StageStats {
    pub packets: u64,
    pub drops_total: u64,
    /// By drop reason, every reason present.
    pub drops: BTreeMap<&'static str, u64>,
    /// What the stage originated (ICMP echo replies and errors, fragments)
    /// or refused to send (`icmp_rate_limited`), every key present.
    pub originated: BTreeMap<&'static str, u64>,
    /// Instances (lcores running the stage).
    pub lcores: usize,
}

/// One entry of `uplinks`.
#[derive(Clone, Debug, Serialize)]
pub struct UplinkStats {
    pub name: String,
    /// Usable for new connections (seed 001 [0054]).
    pub up: bool,
    pub link_up: bool,
    /// The operator's state: `up`, `drained` (no new flows or races) or
    /// `down` (as a link down), from `appliance uplink`.
    pub admin: &'static str,
    /// Selection weight in use (the config's, or `appliance uplink weight`).
    pub weight: u32,
    pub port: String,
    pub tx_packets: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tcp_sessions: u64,
    pub udp_sessions: u64,
    /// seed 000 [75]: load = TCP sessions + artificial UDP sessions.
    pub load: u64,
    pub port_exhausted: u64,
    pub connections: u64,
    pub races_won: u64,
    pub races_lost: u64,
    pub race_unanswered: u64,
    pub unanswered_streak: u32,
    /// Distinct destinations its race copies failed toward since its last
    /// answer (the health rule: `unanswered_limit` of them mark it down).
    pub failed_destinations: u32,
    pub health_transitions: u64,
    pub traffic_bps: u64,
    pub rtt_ms: RttStats,
}

/// `uplinks[].rtt_ms`: milliseconds, three decimals.
#[derive(Clone, Debug, Serialize)]
pub struct RttStats {
    pub smoothed: Option<f64>,
    pub min: Option<f64>,
    pub var: f64,
    pub samples: u64,
}

/// `nat`: summed over the translate lcores.
#[derive(Clone, Debug, Serialize)]
pub struct NatStats {
    pub tcp_sessions: u64,
    pub udp_sessions: u64,
    pub icmp_sessions: u64,
    pub mappings: u64,
    pub created: u64,
    pub expired: u64,
    pub port_exhausted: u64,
    pub table_full: u64,
    pub filtered: u64,
    pub sweep_laps: u64,
    pub race_closed: u64,
    /// Sessions removed by `appliance sessions flush`.
    pub flushed: u64,
    pub filtering: &'static str,
    /// Refusals by per-host limit (see `[nat] host_*`).
    pub host_sessions_limit: u64,
    pub host_rate_limit: u64,
    pub host_races_limit: u64,
    pub hosts_table_full: u64,
    /// Unanswered sessions evicted for new flows in nearly full shards.
    pub evicted_unanswered: u64,
    /// Closed TCP sessions (FINs both ways, or an RST) evicted for new
    /// flows in nearly full shards.
    pub evicted_closed: u64,
    /// New sessions refused on a mapping at `[nat] mapping_max_sessions`.
    pub mapping_sessions_limit: u64,
    /// Fragment trackers, summed over the shards: later fragments held
    /// (waiting for their first fragment), datagrams tracked, and the
    /// limits of both (`[fragments]` per shard times the shards).
    pub fragments_held: u64,
    pub fragment_datagrams: u64,
    pub fragments_held_limit: u64,
    pub fragment_datagrams_limit: u64,
    /// Fragments that reached a fragment tracker.
    pub fragments: u64,
    /// The inside hosts refused most (summed over shards), most first.
    pub top_offenders: Vec<OffenderStats>,
}

/// One entry of `nat.top_offenders`.
#[derive(Clone, Debug, Serialize)]
pub struct OffenderStats {
    pub host: String,
    pub refusals: u64,
    /// Its live sessions, as of each shard's last refusal or removal.
    pub sessions: u64,
}

/// `selection`.
#[derive(Clone, Debug, Serialize)]
pub struct SelectionStats {
    pub mode: String,
    pub algorithm: &'static str,
    pub races: u64,
    pub cache_hits: u64,
    /// Picks by algorithm name, every algorithm present.
    pub by_algorithm: BTreeMap<&'static str, u64>,
    pub race_copies: u64,
    pub probes: u64,
    pub race_table_full: u64,
    /// Negative answers (RST, ICMP error) to race copies that had not
    /// answered, held back while another copy could answer.
    pub races_negative_answers: u64,
    /// Races every copy of which failed: the client got the last negative
    /// answer.
    pub races_all_failed: u64,
    pub events_dropped: u64,
    pub events: u64,
    pub rtt_cache_entries: usize,
    pub snapshots_published: u64,
}

/// One entry of `neighbours`.
#[derive(Clone, Debug, Serialize)]
pub struct NeighbourStats {
    pub uplink: Option<String>,
    pub ip: Option<String>,
    /// `null` while unresolved.
    pub mac: Option<String>,
    pub fixed: bool,
    pub learned: u64,
    /// Answers to the appliance's own ARP request / solicitation learned.
    pub learned_reply: u64,
    /// Gratuitous ARPs / unsolicited replies / NAs with Override learned
    /// after the lock time.
    pub learned_gratuitous: u64,
    /// NAs answering no request of ours and without Override.
    pub refused_unsolicited: u64,
    /// Unsolicited claims within the lock time of the last change.
    pub refused_locktime: u64,
    /// ARP requests (other than gratuitous) and other opcodes from it.
    pub refused_opcode: u64,
    /// Neighbour solicitations claiming its address (never learned from).
    pub refused_ns: u64,
}

/// `redirection`, when configured.
#[derive(Clone, Debug, Serialize)]
pub struct RedirectionStats {
    pub appliance: String,
    pub store: String,
    pub requests: u64,
    pub plain: u64,
    pub served: u64,
    pub redirected: u64,
    pub no_server: u64,
    pub failures: u64,
    /// Failure reports ignored: not from a client redirected to that target
    /// within the failure window.
    pub failure_reports_refused: u64,
    /// Failure events lost on their way to the management core (a shard's
    /// event buffer or its ring full): not packets, reports not acted on.
    pub failure_events_lost: u64,
    pub avoided: u64,
    pub by_target: BTreeMap<String, u64>,
    pub servers: Vec<crate::mgmt::redirect::ServerView>,
    pub services: Vec<crate::mgmt::redirect::ServiceView>,
    pub peers: Vec<crate::mgmt::redirect::PeerView>,
    pub snapshots_published: u64,
    pub store_reports: u64,
    pub store_errors: u64,
    pub last_store_error: Option<String>,
    pub store_timeouts: u64,
    pub store_reconnects: u64,
    pub store_backoff_skips: u64,
    pub store_invalid_loads: u64,
    /// Reloads that changed `[redirection]` (database rebuilt live).
    pub reloads: u64,
}

/// `capture`, summed over the lcores.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CaptureStats {
    pub copied: u64,
    pub lost: u64,
}

/// One entry of `lcores`.
#[derive(Clone, Debug, Serialize)]
pub struct LcoreStats {
    pub id: usize,
    pub stages: Vec<&'static str>,
    pub busy_turns: u64,
    pub idle_turns: u64,
}

/// The backend's section: one key, the backend's name.
#[derive(Clone, Debug)]
pub struct BackendStats {
    pub name: &'static str,
    pub stats: Value,
}

impl Serialize for BackendStats {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.name, &self.stats)?;
        m.end()
    }
}

/// `redirection.*` of the stats JSON.
fn redirection(
    plan: &crate::config::plan::RedirectionPlan,
    view: &crate::mgmt::redirect::RedirectView,
    counters: &[Arc<pipelines::redirect::service::ServiceCounters>],
) -> RedirectionStats {
    let sum = |f: &dyn Fn(&pipelines::redirect::service::ServiceCounters) -> u64| -> u64 {
        counters.iter().map(|c| f(c)).sum()
    };
    let by_target = plan
        .target_names()
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let n: u64 = counters
                .iter()
                .map(|c| c.by_target.get(i).map_or(0, |x| x.get()))
                .sum();
            (name, n)
        })
        .collect();
    RedirectionStats {
        appliance: if view.appliance.is_empty() {
            plan.appliance.clone()
        } else {
            view.appliance.clone()
        },
        store: view.store.clone(),
        requests: sum(&|c| c.requests.get()),
        plain: sum(&|c| c.plain.get()),
        served: sum(&|c| c.served.get()),
        redirected: sum(&|c| c.redirected.get()),
        no_server: sum(&|c| c.no_server.get()),
        failures: sum(&|c| c.failures.get()),
        failure_reports_refused: sum(&|c| c.failure_reports_refused.get()),
        failure_events_lost: sum(&|c| c.failure_events_lost.get()),
        avoided: view.avoided,
        by_target,
        servers: view.servers.clone(),
        services: view.services.clone(),
        peers: view.peers.clone(),
        snapshots_published: view.snapshots_published,
        store_reports: view.store_reports,
        store_errors: view.store_errors,
        last_store_error: view.last_store_error.clone(),
        store_timeouts: view.store_timeouts,
        store_reconnects: view.store_reconnects,
        store_backoff_skips: view.store_backoff_skips,
        store_invalid_loads: view.store_invalid_loads,
        reloads: view.reloads,
    }
}

/// Milliseconds, three decimals.
fn ms(n: Nanos) -> f64 {
    (n.as_nanos() / 1_000) as f64 / 1_000.0
}

/// Sums of the counters the status line needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
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

    /// The same sums, from the stats (ports and stages are sums over the
    /// lcores already).
    pub fn of_stats(stats: &Stats) -> Totals {
        Totals {
            rx_packets: stats.ports.values().map(|p| p.rx_packets).sum(),
            tx_packets: stats.ports.values().map(|p| p.tx_packets).sum(),
            drops: stats.stages.values().map(|s| s.drops_total).sum(),
            stage_packets: stats.stages.values().map(|s| s.packets).sum(),
        }
    }

    /// A number that grows while any packet moves anywhere.
    pub fn processed(&self) -> u64 {
        self.rx_packets + self.tx_packets + self.drops + self.stage_packets
    }
}

fn sum_nat(lcores: &[LcoreView], f: impl Fn(&NatCounters) -> u64) -> u64 {
    lcores.iter().filter_map(|l| l.nat.as_deref()).map(f).sum()
}

/// Builds the stats.
pub fn build(src: &StatsSources<'_>) -> Stats {
    let plan = src.plan;
    Stats {
        uptime_s: src.uptime.as_secs_f64(),
        mode: match plan.mode {
            crate::config::Mode::Pipeline => "pipeline",
            crate::config::Mode::RunToCompletion => "run-to-completion",
        },
        ports: ports(plan, src.lcores),
        stages: stages(src.lcores),
        uplinks: uplinks(src),
        nat: nat(plan, src.lcores, reloaded(src).map(|r| r.filtering)),
        selection: selection(src),
        neighbours: neighbours(plan),
        redirection: src
            .redirect
            .as_ref()
            .map(|(plan, view, counters)| redirection(plan, view, counters)),
        lcores: src
            .lcores
            .iter()
            .map(|l| LcoreStats {
                id: l.id,
                stages: l.stages.iter().map(|(s, _)| s.name()).collect(),
                busy_turns: l.counters.busy_turns.get(),
                idle_turns: l.counters.idle_turns.get(),
            })
            .collect(),
        control: src.control.stats(),
        events: EventStats {
            lost: src
                .lcores
                .iter()
                .filter_map(|l| l.nat_events.as_ref())
                .map(|r| r.lost.get())
                .sum(),
            delivered: src
                .control
                .events
                .load(std::sync::atomic::Ordering::Relaxed),
            subscriber_dropped: src
                .control
                .events_dropped_subscribers
                .load(std::sync::atomic::Ordering::Relaxed),
        },
        nat_log: src.control.nat_log_stats(),
        capture: CaptureStats {
            copied: src.lcores.iter().map(|l| l.capture.copied.get()).sum(),
            lost: src.lcores.iter().map(|l| l.capture.lost.get()).sum(),
        },
        memory: crate::memory::MemoryStats::now(),
        backend: BackendStats {
            name: src.backend_name,
            stats: src.backend.clone(),
        },
    }
}

/// Counted by the management core's control thread and the run loop
/// (reloads from the socket and from SIGHUP), read by the stats.
#[derive(Debug, Default)]
pub struct ControlCounters {
    pub reloads: std::sync::atomic::AtomicU64,
    pub reloads_refused: std::sync::atomic::AtomicU64,
    /// Events taken from the lcores' event rings (`events.delivered`).
    pub events: std::sync::atomic::AtomicU64,
    /// Events a subscriber's full buffer did not take.
    pub events_dropped_subscribers: std::sync::atomic::AtomicU64,
    /// The NAT log (`nat_log.*`): JSON lines written, IPFIX messages
    /// sent, write/send errors, events its full queue did not take.
    pub nat_log_written: std::sync::atomic::AtomicU64,
    pub nat_log_ipfix_sent: std::sync::atomic::AtomicU64,
    pub nat_log_errors: std::sync::atomic::AtomicU64,
    pub nat_log_lost: Arc<std::sync::atomic::AtomicU64>,
    /// Set by SIGUSR1 and `reload`: the NAT log reopens its file.
    pub nat_log_reopen: std::sync::atomic::AtomicBool,
    /// The settings the last reload put in force that the stats show
    /// (`None`: the plan's, as started).
    pub reloaded: std::sync::Mutex<Option<Reloaded>>,
}

/// What the stats show of the settings a reload changed.
#[derive(Clone, Debug)]
pub struct Reloaded {
    pub filtering: pipelines::nat::Filtering,
    pub mode: String,
    pub algorithm: Algorithm,
}

/// `nat_log`: JSON lines `written` to the file, IPFIX messages
/// `ipfix_sent`, `errors` (a failed open, write or send: the events of
/// that write are not retried), `lost` (the log's queue was full: the
/// thread fell behind the lcores by 65,536 events).
#[derive(Clone, Debug, Default, Serialize)]
pub struct NatLogStats {
    pub written: u64,
    pub ipfix_sent: u64,
    pub errors: u64,
    pub lost: u64,
}

impl ControlCounters {
    fn nat_log_stats(&self) -> NatLogStats {
        use std::sync::atomic::Ordering::Relaxed;
        NatLogStats {
            written: self.nat_log_written.load(Relaxed),
            ipfix_sent: self.nat_log_ipfix_sent.load(Relaxed),
            errors: self.nat_log_errors.load(Relaxed),
            lost: self.nat_log_lost.load(Relaxed),
        }
    }

    fn stats(&self) -> ControlStats {
        use std::sync::atomic::Ordering::Relaxed;
        ControlStats {
            reloads: self.reloads.load(Relaxed),
            reloads_refused: self.reloads_refused.load(Relaxed),
        }
    }
}

/// `control`: reloads applied (`appliance reload`, SIGHUP) and refused
/// (invalid, or a field that needs a restart; nothing applied).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ControlStats {
    pub reloads: u64,
    pub reloads_refused: u64,
}

/// `events`: the NAT event stream (`appliance events`). `lost`: events
/// the lcores could not hand over (their buffer or ring full; never
/// waited for); `delivered`: taken from the rings by the control thread;
/// `subscriber_dropped`: not sent to a subscriber over its rate or backlog.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EventStats {
    pub lost: u64,
    pub delivered: u64,
    pub subscriber_dropped: u64,
}

/// `ports`: each port's counters summed over the lcores.
fn ports(plan: &Plan, lcores: &[LcoreView]) -> BTreeMap<String, PortStats> {
    plan.ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let get = |f: fn(&PortCounters) -> u64| -> u64 {
                lcores.iter().filter_map(|l| l.ports.get(i)).map(f).sum()
            };
            let stats = PortStats {
                rx_packets: get(|c| c.rx_packets.get()),
                tx_packets: get(|c| c.tx_packets.get()),
                rx_bytes: get(|c| c.rx_bytes.get()),
                tx_bytes: get(|c| c.tx_bytes.get()),
            };
            (p.name.clone(), stats)
        })
        .collect()
}

/// `stages`: each stage's counters summed over its instances.
fn stages(lcores: &[LcoreView]) -> BTreeMap<&'static str, StageStats> {
    Stage::ALL
        .into_iter()
        .map(|stage| {
            let insts: Vec<&StageCounters> = lcores
                .iter()
                .flat_map(|l| l.stages.iter())
                .filter(|(s, _)| *s == stage)
                .map(|(_, c)| &**c)
                .collect();
            let drops = DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), insts.iter().map(|c| c.drops(*r)).sum::<u64>()))
                .collect();
            let originated = Sent::ALL
                .iter()
                .map(|w| (w.as_str(), insts.iter().map(|c| c.sent(*w)).sum::<u64>()))
                .collect();
            let stats = StageStats {
                originated,
                packets: insts.iter().map(|c| c.packets.get()).sum::<u64>(),
                drops_total: insts.iter().map(|c| c.total_drops()).sum::<u64>(),
                drops,
                lcores: insts.len(),
            };
            (stage.name(), stats)
        })
        .collect()
}

/// `uplinks`: NAT counters of each uplink and what selection knows of it.
fn uplinks(src: &StatsSources<'_>) -> Vec<UplinkStats> {
    let (plan, lcores) = (src.plan, src.lcores);
    // Before the first publication every uplink counts as up.
    let unpublished = src.selection.snapshots_published == 0;
    plan.topology
        .uplinks
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let get = |f: fn(&pipelines::nat::UplinkCounters) -> u64| {
                sum_nat(lcores, |n| n.uplinks.get(i).map(f).unwrap_or(0))
            };
            let sel = src.selection.uplinks.get(i).cloned().unwrap_or_default();
            UplinkStats {
                name: u.name.clone(),
                up: sel.healthy || unpublished,
                link_up: sel.link_up || unpublished,
                admin: sel.admin.as_str(),
                weight: if unpublished {
                    u.weight.max(1)
                } else {
                    sel.weight
                },
                port: plan.ports[u.port as usize].name.clone(),
                tx_packets: get(|c| c.tx_packets.get()),
                rx_packets: get(|c| c.rx_packets.get()),
                tx_bytes: get(|c| c.tx_bytes.get()),
                rx_bytes: get(|c| c.rx_bytes.get()),
                tcp_sessions: get(|c| c.tcp_sessions.get()),
                udp_sessions: get(|c| c.udp_sessions.get()),
                load: get(|c| c.tcp_sessions.get() + c.udp_sessions.get()),
                port_exhausted: get(|c| c.port_exhausted.get()),
                connections: get(|c| c.connections.get()),
                races_won: get(|c| c.races_won.get()),
                races_lost: get(|c| c.races_lost.get()),
                race_unanswered: get(|c| c.race_unanswered.get()),
                unanswered_streak: sel.unanswered_streak,
                failed_destinations: sel.failed_destinations,
                health_transitions: sel.transitions,
                traffic_bps: sel.traffic_bps,
                rtt_ms: RttStats {
                    smoothed: sel.rtt.smoothed().map(ms),
                    min: sel.rtt.min().map(ms),
                    var: ms(sel.rtt.var()),
                    samples: sel.rtt.samples(),
                },
            }
        })
        .collect()
}

/// `nat`: the NAT counters summed over the translate lcores.
/// The settings in force after the last reload, if any.
fn reloaded(src: &StatsSources<'_>) -> Option<Reloaded> {
    src.control.reloaded.lock().ok().and_then(|r| r.clone())
}

fn nat(
    plan: &Plan,
    lcores: &[LcoreView],
    filtering: Option<pipelines::nat::Filtering>,
) -> NatStats {
    let sum = |f: fn(&NatCounters) -> u64| sum_nat(lcores, f);
    NatStats {
        tcp_sessions: sum(|n| n.tcp_sessions.get()),
        udp_sessions: sum(|n| n.udp_sessions.get()),
        icmp_sessions: sum(|n| n.icmp_sessions.get()),
        mappings: sum(|n| n.mappings.get()),
        created: sum(|n| n.created.get()),
        expired: sum(|n| n.expired.get()),
        port_exhausted: sum(|n| n.port_exhausted.get()),
        table_full: sum(|n| n.table_full.get()),
        filtered: sum(|n| n.filtered.get()),
        sweep_laps: sum(|n| n.sweep_laps.get()),
        race_closed: sum(|n| n.race_closed.get()),
        flushed: sum(|n| n.flushed.get()),
        filtering: filtering.unwrap_or(plan.nat.filtering).as_str(),
        host_sessions_limit: sum(|n| n.host_sessions_limit.get()),
        host_rate_limit: sum(|n| n.host_rate_limit.get()),
        host_races_limit: sum(|n| n.host_races_limit.get()),
        hosts_table_full: sum(|n| n.hosts_table_full.get()),
        evicted_unanswered: sum(|n| n.evicted_unanswered.get()),
        evicted_closed: sum(|n| n.evicted_closed.get()),
        mapping_sessions_limit: sum(|n| n.mapping_sessions_limit.get()),
        fragments_held: sum(|n| n.fragments_held.get()),
        fragment_datagrams: sum(|n| n.fragment_datagrams.get()),
        fragments: sum(|n| n.fragments.get()),
        fragments_held_limit: (plan.nat.fragments.max_held * usize::from(plan.topology.shards))
            as u64,
        fragment_datagrams_limit: (plan.nat.fragments.max_datagrams
            * usize::from(plan.topology.shards)) as u64,
        top_offenders: top_offenders(lcores),
    }
}

/// Each shard's top offenders merged by host, most refusals first, at most
/// `TOP_HOSTS` of them. Read from the shards' published slots, no lock.
fn top_offenders(lcores: &[LcoreView]) -> Vec<OffenderStats> {
    let mut by_host: BTreeMap<std::net::IpAddr, (u64, u64)> = BTreeMap::new();
    for n in lcores.iter().filter_map(|l| l.nat.as_deref()) {
        for (ip, refusals, sessions) in n.top.iter().filter_map(|t| t.read()) {
            let e = by_host.entry(ip).or_default();
            e.0 += refusals;
            e.1 += sessions;
        }
    }
    let mut v: Vec<OffenderStats> = by_host
        .into_iter()
        .map(|(ip, (refusals, sessions))| OffenderStats {
            host: ip.to_string(),
            refusals,
            sessions,
        })
        .collect();
    v.sort_by_key(|o| std::cmp::Reverse(o.refusals));
    v.truncate(pipelines::nat::TOP_HOSTS);
    v
}

/// `selection`: the stages' selection counters and the management core's
/// view.
fn selection(src: &StatsSources<'_>) -> SelectionStats {
    let (plan, lcores, sc) = (src.plan, src.lcores, src.selection_counters);
    let sel_sum = |f: fn(&SelectionCounters) -> u64| sc.iter().map(|c| f(c)).sum::<u64>();
    let by_algorithm = Algorithm::ALL
        .iter()
        .map(|a| {
            let n = sc
                .iter()
                .map(|c| c.by_algorithm[a.index()].get())
                .sum::<u64>();
            (a.as_str(), n)
        })
        .collect();
    let reloaded = reloaded(src);
    SelectionStats {
        mode: reloaded
            .as_ref()
            .map_or_else(|| plan.selection.mode_name.clone(), |r| r.mode.clone()),
        algorithm: reloaded
            .map_or(plan.selection.policy.algorithm, |r| r.algorithm)
            .as_str(),
        races: sum_nat(lcores, |n| n.races.get()),
        cache_hits: sel_sum(|c| c.cache_hits.get()),
        by_algorithm,
        race_copies: sel_sum(|c| c.copies.get()),
        probes: sel_sum(|c| c.probes.get()),
        race_table_full: sum_nat(lcores, |n| n.race_table_full.get()),
        races_negative_answers: sel_sum(|c| c.races_negative_answers.get()),
        races_all_failed: sel_sum(|c| c.races_all_failed.get()),
        events_dropped: sum_nat(lcores, |n| n.events_dropped.get()),
        events: src.selection.events,
        rtt_cache_entries: src.selection.cache_entries,
        snapshots_published: src.selection.snapshots_published,
    }
}

/// Each uplink's next hop per family: its address, its MAC (`null` while
/// unresolved), whether the MAC is configured, how often it was learned,
/// and the ARP / ND claims about it accepted and refused, by reason.
fn neighbours(plan: &Plan) -> Vec<NeighbourStats> {
    let t = &plan.topology;
    plan.neighbours
        .hops()
        .iter()
        .map(|h| NeighbourStats {
            uplink: t.uplinks.get(usize::from(h.uplink)).map(|u| u.name.clone()),
            ip: h.ip.map(|a| a.to_string()),
            mac: h.mac().map(|m| pipelines::wire::fmt_mac(&m)),
            fixed: h.fixed,
            learned: h.times_learned(),
            learned_reply: HopCounters::get(&h.counters.learned_reply),
            learned_gratuitous: HopCounters::get(&h.counters.learned_gratuitous),
            refused_unsolicited: HopCounters::get(&h.counters.refused_unsolicited),
            refused_locktime: HopCounters::get(&h.counters.refused_locktime),
            refused_opcode: HopCounters::get(&h.counters.refused_opcode),
            refused_ns: HopCounters::get(&h.counters.refused_ns),
        })
        .collect()
}
