//! What `appliance bench` prints: the JSON object (`--json`, keys listed in
//! the README) and the text tables made from the same structs.

use std::collections::BTreeMap;
use std::fmt::Write;

use pipelines::DropReason;
use serde::Serialize;

use super::measure::Snap;
use super::BenchArgs;
use crate::config::plan::{Plan, Stage};
use crate::config::Mode;

/// The whole report.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub config: String,
    pub mode: &'static str,
    pub lcores: usize,
    pub shards: u16,
    pub flows: u32,
    pub new_per_sec: u64,
    pub size: u16,
    pub mix: String,
    pub seconds: f64,
    /// NAT limits raised so the flows fit ("key: old -> new").
    pub adjusted: Vec<String>,
    pub appliance: RunReport,
    /// The no-op forwarder's run (`--compare`), else null.
    pub noop: Option<RunReport>,
    /// appliance Mpps / no-op Mpps (`--compare`), else null.
    pub ratio: Option<f64>,
}

/// One forwarder's timed run.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// "appliance" or "no-op".
    pub forwarder: &'static str,
    /// Seconds timed.
    pub seconds: f64,
    pub warmup: Warmup,
    pub total: Total,
    pub lcores: Vec<LcoreReport>,
    pub rings: Vec<RingReport>,
}

#[derive(Debug, Serialize)]
pub struct Warmup {
    pub seconds: f64,
    /// Live NAT sessions when timing started.
    pub sessions: u64,
}

#[derive(Debug, Serialize)]
pub struct Total {
    /// Packets the generator made, and new flows among them.
    pub generated: u64,
    pub new_flows: u64,
    /// Packets the generator could not make: the pool was empty (the
    /// pipeline was full), as a NIC's rx_nombuf.
    pub generator_no_buffer: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Forwarded (sent to the sinks) million packets per second.
    pub mpps: f64,
    pub rx_mpps: f64,
    pub drops_total: u64,
    /// Drops by reason (only reasons that occurred).
    pub drops: BTreeMap<&'static str, u64>,
    /// Nanoseconds per packet in each stage, over every lcore running it.
    pub ns_per_packet: BTreeMap<&'static str, f64>,
    /// Live NAT sessions when timing ended.
    pub sessions: u64,
}

#[derive(Debug, Serialize)]
pub struct LcoreReport {
    pub id: usize,
    pub stages: Vec<&'static str>,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_mpps: f64,
    pub tx_mpps: f64,
    /// Share of loop turns that found work.
    pub busy: f64,
    pub ns_per_packet: BTreeMap<&'static str, f64>,
    pub drops: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
pub struct RingReport {
    /// "stage", "handoff" or "hairpin".
    pub kind: String,
    /// Producer lcore (null for a hairpin ring: every other translate lcore).
    pub from: Option<usize>,
    pub to: usize,
    /// Bursts the ring holds.
    pub capacity: usize,
    /// Bursts queued, mean and largest of the samples (every 10 ms).
    pub mean: f64,
    pub max: usize,
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Pipeline => "pipeline",
        Mode::RunToCompletion => "run-to-completion",
    }
}

fn mpps(packets: u64, secs: f64) -> f64 {
    packets as f64 / secs.max(1e-9) / 1e6
}

fn drops_of(d: &[u64]) -> BTreeMap<&'static str, u64> {
    DropReason::ALL
        .iter()
        .zip(d)
        .filter(|(_, &n)| n > 0)
        .map(|(r, &n)| (r.as_str(), n))
        .collect()
}

fn ns_of(nanos: &[u64; 4], packets: &[u64; 4], stages: &[Stage]) -> BTreeMap<&'static str, f64> {
    Stage::ALL
        .iter()
        .enumerate()
        .filter(|(_, s)| stages.contains(s))
        .map(|(i, s)| (s.name(), nanos[i] as f64 / packets[i].max(1) as f64))
        .collect()
}

impl RunReport {
    pub(super) fn new(
        plan: &Plan,
        forwarder: &'static str,
        (secs, warm_s): (f64, f64),
        (warm_sessions, sessions): (u64, u64),
        before: &Snap,
        after: &Snap,
        rings: Vec<RingReport>,
    ) -> RunReport {
        let mut total_drops = vec![0u64; DropReason::ALL.len()];
        let (mut nanos, mut packets) = ([0u64; 4], [0u64; 4]);
        let (mut rx, mut tx) = (0, 0);
        let mut lcores = Vec::new();
        for (lc, (b, a)) in plan
            .lcores
            .iter()
            .zip(before.lcores.iter().zip(&after.lcores))
        {
            let stages = &plan.groups[lc.group].stages;
            let d: Vec<u64> = a.drops.iter().zip(&b.drops).map(|(x, y)| x - y).collect();
            for (t, v) in total_drops.iter_mut().zip(&d) {
                *t += v;
            }
            let n: [u64; 4] = std::array::from_fn(|i| a.nanos[i] - b.nanos[i]);
            let p: [u64; 4] = std::array::from_fn(|i| a.packets[i] - b.packets[i]);
            for i in 0..4 {
                nanos[i] += n[i];
                packets[i] += p[i];
            }
            let (lrx, ltx) = (a.rx - b.rx, a.tx - b.tx);
            rx += lrx;
            tx += ltx;
            let (busy, idle) = (a.busy - b.busy, a.idle - b.idle);
            lcores.push(LcoreReport {
                id: lc.id,
                stages: stages.iter().map(|s| s.name()).collect(),
                rx_packets: lrx,
                tx_packets: ltx,
                rx_mpps: mpps(lrx, secs),
                tx_mpps: mpps(ltx, secs),
                busy: busy as f64 / (busy + idle).max(1) as f64,
                ns_per_packet: ns_of(&n, &p, stages),
                drops: drops_of(&d),
            });
        }
        let all: Vec<Stage> = Stage::ALL.to_vec();
        let drops = drops_of(&total_drops);
        RunReport {
            forwarder,
            seconds: secs,
            warmup: Warmup {
                seconds: warm_s,
                sessions: warm_sessions,
            },
            total: Total {
                generated: after.generated - before.generated,
                new_flows: after.new_flows - before.new_flows,
                generator_no_buffer: after.no_buffer - before.no_buffer,
                rx_packets: rx,
                tx_packets: tx,
                mpps: mpps(tx, secs),
                rx_mpps: mpps(rx, secs),
                drops_total: drops.values().sum(),
                drops,
                ns_per_packet: ns_of(&nanos, &packets, &all),
                sessions,
            },
            lcores,
            rings,
        }
    }

    /// The run as text: a line per lcore and the total, drops, rings.
    fn text(&self, out: &mut String) {
        let t = &self.total;
        let _ = writeln!(
            out,
            "{} (warm-up {:.2} s, {} sessions; timed {:.2} s)",
            self.forwarder, self.warmup.seconds, self.warmup.sessions, self.seconds
        );
        let _ = writeln!(
            out,
            "  {:<6} {:<40} {:>8} {:>8} {:>5}   ns/packet: {}",
            "lcore",
            "stages",
            "rx Mpps",
            "tx Mpps",
            "busy",
            Stage::ALL.map(|s| format!("{:>9}", s.name())).join(" ")
        );
        let ns = |m: &BTreeMap<&str, f64>| {
            Stage::ALL
                .map(|s| {
                    m.get(s.name())
                        .map_or(format!("{:>9}", "-"), |v| format!("{v:>9.1}"))
                })
                .join(" ")
        };
        for l in &self.lcores {
            let _ = writeln!(
                out,
                "  {:<6} {:<40} {:>8.3} {:>8.3} {:>4.0}%              {}",
                l.id,
                l.stages.join(","),
                l.rx_mpps,
                l.tx_mpps,
                l.busy * 100.0,
                ns(&l.ns_per_packet)
            );
        }
        let _ = writeln!(
            out,
            "  {:<6} {:<40} {:>8.3} {:>8.3} {:>5}              {}",
            "total",
            "",
            t.rx_mpps,
            t.mpps,
            "",
            ns(&t.ns_per_packet)
        );
        let drops: Vec<String> = t.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            out,
            "  drops: {}; generator short of buffers {} times; {} new flows; {} sessions at the end",
            if drops.is_empty() { "none".to_string() } else { drops.join(", ") },
            t.generator_no_buffer,
            t.new_flows,
            t.sessions
        );
        for r in &self.rings {
            let from = r.from.map_or("*".to_string(), |f| f.to_string());
            let _ = writeln!(
                out,
                "  ring {} {from} -> {}: {:.1} bursts queued on average, {} at most, of {}",
                r.kind, r.to, r.mean, r.max, r.capacity
            );
        }
    }
}

impl BenchReport {
    pub(super) fn new(
        config: &str,
        plan: &Plan,
        args: &BenchArgs,
        adjusted: Vec<String>,
        appliance: RunReport,
        noop: Option<RunReport>,
    ) -> BenchReport {
        let ratio = noop
            .as_ref()
            .map(|n| appliance.total.mpps / n.total.mpps.max(1e-12));
        BenchReport {
            config: config.to_string(),
            mode: mode_name(plan.mode),
            lcores: plan.lcores.len(),
            shards: plan.shards(),
            flows: args.flows,
            new_per_sec: args.new_per_sec,
            size: args.size,
            mix: args.mix.to_string(),
            seconds: args.seconds,
            adjusted,
            appliance,
            noop,
            ratio,
        }
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "appliance bench: {}, {}, lcores: {}, NAT shards: {}; {} flows (tcp:udp {}), {}-byte frames, {} new flows/s",
            self.config, self.mode, self.lcores, self.shards, self.flows, self.mix, self.size, self.new_per_sec
        );
        if !self.adjusted.is_empty() {
            let _ = writeln!(out, "raised for the flows: {}", self.adjusted.join(", "));
        }
        self.appliance.text(&mut out);
        if let Some(n) = &self.noop {
            n.text(&mut out);
        }
        if let (Some(r), Some(n)) = (self.ratio, &self.noop) {
            let _ = writeln!(
                out,
                "ratio appliance / no-op: {r:.3} ({:.3} / {:.3} Mpps)",
                self.appliance.total.mpps, n.total.mpps
            );
        }
        out
    }
}
