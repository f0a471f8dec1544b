//! One timed run: start the runtime over the bench backend, warm up (every
//! flow sent once, the pipeline drained), read every counter, let the
//! generator run for the time asked while sampling the rings, read them
//! again, stop; the report is the difference.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressStyle};
use pipelines::DropReason;

use super::report::{RingReport, RunReport};
use crate::config::plan::Plan;
use crate::ports::bench::{BenchControl, FlowSpec};
use crate::runtime::Runtime;

/// Counters of one lcore at one instant.
#[derive(Clone, Debug, Default)]
pub(super) struct LcoreSnap {
    pub rx: u64,
    pub tx: u64,
    pub busy: u64,
    pub idle: u64,
    pub nanos: [u64; 4],
    pub packets: [u64; 4],
    /// Indexed like `DropReason::ALL`.
    pub drops: Vec<u64>,
}

/// Every counter the report needs, at one instant.
#[derive(Clone, Debug, Default)]
pub(super) struct Snap {
    pub lcores: Vec<LcoreSnap>,
    pub generated: u64,
    pub new_flows: u64,
    pub no_buffer: u64,
}

impl Snap {
    fn take(rt: &Runtime, ctl: &BenchControl) -> Snap {
        let lcores = rt
            .lcore_views()
            .iter()
            .map(|v| {
                let hooks = rt.bench_hooks().get(v.id);
                let clock = |f: &dyn Fn(usize) -> u64| std::array::from_fn(f);
                LcoreSnap {
                    rx: v.ports.iter().map(|p| p.rx_packets.get()).sum(),
                    tx: v.ports.iter().map(|p| p.tx_packets.get()).sum(),
                    busy: v.counters.busy_turns.get(),
                    idle: v.counters.idle_turns.get(),
                    nanos: clock(&|i| hooks.map_or(0, |h| h.clock.nanos[i].get())),
                    packets: clock(&|i| hooks.map_or(0, |h| h.clock.packets[i].get())),
                    drops: DropReason::ALL
                        .iter()
                        .map(|&r| v.stages.iter().map(|(_, c)| c.drops(r)).sum())
                        .collect(),
                }
            })
            .collect();
        let (generated, new_flows, no_buffer) = ctl.generated();
        Snap {
            lcores,
            generated,
            new_flows,
            no_buffer,
        }
    }

    /// Packets forwarded and dropped so far (what stops moving once the
    /// pipeline drained).
    fn moved(&self) -> u64 {
        self.lcores
            .iter()
            .map(|l| l.tx + l.drops.iter().sum::<u64>())
            .sum()
    }
}

/// Mean and largest occupancy of each ring over the samples.
#[derive(Default)]
struct RingSamples {
    sum: Vec<u64>,
    max: Vec<usize>,
    n: u64,
}

impl RingSamples {
    fn add(&mut self, depths: &[usize]) {
        self.sum.resize(depths.len(), 0);
        self.max.resize(depths.len(), 0);
        for (i, &d) in depths.iter().enumerate() {
            self.sum[i] += d as u64;
            self.max[i] = self.max[i].max(d);
        }
        self.n += 1;
    }

    fn report(&self, plan: &Plan) -> Vec<RingReport> {
        let ends = plan
            .rings
            .iter()
            .map(|r| (r.from, r.to, format!("{:?}", r.kind).to_lowercase()))
            .chain(
                plan.hairpin_rings
                    .iter()
                    .map(|r| (usize::MAX, r.to, "hairpin".to_string())),
            );
        ends.enumerate()
            .map(|(i, (from, to, kind))| RingReport {
                kind,
                from: (from != usize::MAX).then_some(from),
                to,
                capacity: plan.ring_size,
                mean: self
                    .sum
                    .get(i)
                    .map_or(0.0, |&s| s as f64 / self.n.max(1) as f64),
                max: self.max.get(i).copied().unwrap_or(0),
            })
            .collect()
    }
}

/// A progress bar on stderr when `show`, else a hidden one.
fn bar(show: bool, len: u64, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    if let Ok(s) = ProgressStyle::with_template("{prefix:>10} {msg:12} [{bar:40}] {pos}/{len} ms") {
        b.set_style(s.progress_chars("=> "));
    }
    b.set_prefix(what.to_string());
    b
}

/// Sends every flow once and waits until the pipeline drained: the NAT
/// tables then hold the flows (those the config's limits let in). The flows
/// go in chunks of half a ring's packets, each when the previous one was
/// forwarded or dropped, so no ring overflows.
fn warm_up(
    rt: &mut Runtime,
    ctl: &BenchControl,
    plan: &Plan,
    flows: u32,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    let limit = Duration::from_secs(20 + u64::from(flows) / 20_000);
    let chunk = (plan.ring_size * plan.burst_size / 2).max(1) as u64;
    let started = Instant::now();
    let (mut last, mut quiet) = (u64::MAX, 0);
    pb.set_message("warm-up");
    loop {
        std::thread::sleep(Duration::from_millis(1));
        rt.health()?;
        pb.tick();
        let moved = Snap::take(rt, ctl).moved();
        let drained = moved >= ctl.generated().0 && rt.ring_depths().iter().sum::<usize>() == 0;
        if drained && ctl.warmed_up() {
            return Ok(());
        }
        if drained && ctl.credit() == 0 {
            ctl.grant(chunk);
        }
        // Packets the stages consume without a drop or a send would keep
        // `drained` false: rings empty and nothing moving for 50 ms will do.
        quiet = if moved == last && rt.ring_depths().iter().sum::<usize>() == 0 {
            quiet + 1
        } else {
            0
        };
        last = moved;
        if quiet >= 50 {
            if ctl.warmed_up() {
                return Ok(());
            }
            ctl.grant(chunk);
            quiet = 0;
        }
        if started.elapsed() > limit {
            return Err(anyhow!(
                "the warm-up (each of the {flows} flows sent once) did not drain in {} s",
                limit.as_secs()
            ));
        }
    }
}

/// Live NAT sessions (TCP and UDP) now.
fn sessions(rt: &Runtime) -> u64 {
    let n = rt.report().nat;
    n.tcp_sessions + n.udp_sessions
}

/// One run of `seconds` of the appliance (`passthrough`: of the no-op
/// forwarder) over the generator of `spec`.
pub(super) fn measure(
    plan: &Plan,
    spec: &FlowSpec,
    seconds: f64,
    passthrough: bool,
    show: bool,
) -> anyhow::Result<RunReport> {
    let what = if passthrough { "no-op" } else { "appliance" };
    let (mut rt, ctl) = Runtime::start_bench(plan, spec, passthrough)?;
    let total_ms = (seconds * 1000.0) as u64;
    let pb = bar(show, total_ms, what);
    let warm_started = Instant::now();
    warm_up(&mut rt, &ctl, plan, spec.flows, &pb)?;
    let warm_s = warm_started.elapsed().as_secs_f64();
    let warm_sessions = sessions(&rt);
    let before = Snap::take(&rt, &ctl);
    ctl.start_run();
    let t0 = Instant::now();
    let mut rings = RingSamples::default();
    pb.set_message("timing");
    loop {
        std::thread::sleep(Duration::from_millis(10));
        rings.add(&rt.ring_depths());
        rt.health()?;
        let el = t0.elapsed();
        pb.set_position((el.as_millis() as u64).min(total_ms));
        if el.as_secs_f64() >= seconds {
            break;
        }
    }
    let after = Snap::take(&rt, &ctl);
    let elapsed = t0.elapsed().as_secs_f64();
    let end_sessions = sessions(&rt);
    drop(rt.stop_report());
    pb.finish_and_clear();
    Ok(RunReport::new(
        plan,
        what,
        (elapsed, warm_s),
        (warm_sessions, end_sessions),
        &before,
        &after,
        rings.report(plan),
    ))
}
