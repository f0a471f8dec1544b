//! Starting, watching and stopping the appliance: opens the backend's ports,
//! builds one [`Worker`] per lcore of the plan with the rings between them,
//! pins and starts their threads, and runs the management loop (status line,
//! end of run, stats JSON) on the calling thread.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use pipelines::classify::Classify;
use pipelines::nat::NatCounters;
use pipelines::replicate::Replicate;
use pipelines::translate::Translate;
use pipelines::transmit::Transmit;
use pipelines::{HeapBuf, HeapPool, StageCounters};

use crate::config::BackendKind;
use crate::plan::{Plan, RingKind, Stage};
use crate::ports::{BackendControl, PortQueues};
use crate::stats::{self, LcoreView, StatsSources};
use crate::worker::{LcoreCounters, NextGroup, PortCounters, Ring, Stages, Worker};

/// How a run ends and what it shows.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Stop after this long (else at Ctrl-C, or when a finite input drained).
    pub duration: Option<Duration>,
    /// Redraw a one-line status on stderr every second.
    pub live_status: bool,
    /// Stop when this becomes true (Ctrl-C handler, tests).
    pub stop: Option<Arc<AtomicBool>>,
}

/// A running appliance: its lcore threads and its backend.
pub struct Runtime {
    plan: Plan,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    lcores: Vec<LcoreView>,
    rings: Vec<Arc<Ring<HeapBuf>>>,
    backend: Backend,
    started: Instant,
}

enum Backend {
    Sim(
        Option<Box<crate::ports::sim::SimSite>>,
        crate::ports::sim::SimHandle,
    ),
    Pcap(Arc<crate::ports::pcap::PcapControl>),
}

impl Backend {
    fn control(&self) -> &dyn BackendControl {
        match self {
            Backend::Sim(_, h) => h,
            Backend::Pcap(c) => &**c,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Sim(..) => "sim",
            Backend::Pcap(_) => "pcap",
        }
    }
}

impl Runtime {
    /// Opens the ports and starts every lcore (and the sim site, if any).
    pub fn start(plan: &Plan) -> anyhow::Result<Runtime> {
        let pool = HeapPool::new_static(plan.pool_size);
        let (queues, backend) = match plan.backend {
            BackendKind::Sim => {
                let (q, site) = crate::ports::sim::SimSite::open(plan, pool)
                    .map_err(|e| anyhow!("sim backend: {e}"))?;
                let h = site.handle();
                (q, Backend::Sim(Some(Box::new(site)), h))
            }
            BackendKind::Pcap => {
                let (q, c) = crate::ports::pcap::open(plan, pool)
                    .map_err(|e| anyhow!("pcap backend: {e}"))?;
                (q, Backend::Pcap(c))
            }
        };
        let mut rt = build(plan, queues, backend)?;
        if let Backend::Sim(Some(site), _) = &mut rt.backend {
            site.start();
        }
        Ok(rt)
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The sim site's handle (to change uplink conditions while running).
    pub fn sim(&self) -> Option<&crate::ports::sim::SimHandle> {
        match &self.backend {
            Backend::Sim(_, h) => Some(h),
            _ => None,
        }
    }

    /// The stats JSON as of now.
    pub fn stats(&self) -> serde_json::Value {
        stats::build(&StatsSources {
            plan: &self.plan,
            uptime: self.started.elapsed(),
            lcores: &self.lcores,
            backend_name: self.backend.name(),
            backend: self.backend.control().stats(),
        })
    }

    /// Packets still queued in rings between lcores.
    fn in_flight(&self) -> usize {
        self.rings.iter().map(|r| r.len()).sum()
    }

    /// Stops the site (no new traffic), then the lcores; returns final stats.
    pub fn stop(mut self) -> serde_json::Value {
        if let Backend::Sim(site, _) = &mut self.backend {
            if let Some(site) = site.take() {
                site.stop();
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.stats()
    }
}

impl Drop for Runtime {
    /// A runtime dropped without [`Runtime::stop`] (an error path) still
    /// stops its lcores instead of leaving them polling forever.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Builds workers and rings from the plan and the opened port queues, and
/// starts the lcore threads.
fn build(
    plan: &Plan,
    mut queues: Vec<PortQueues<HeapBuf>>,
    backend: Backend,
) -> anyhow::Result<Runtime> {
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let topo = plan.topology.clone();
    let nports = plan.ports.len();

    // One ring per planned (from, to, kind).
    let rings: Vec<Arc<Ring<HeapBuf>>> = plan
        .rings
        .iter()
        .map(|_| Arc::new(Ring::new(plan.ring_size)))
        .collect();
    let ring_to = |to: usize, kind: RingKind| -> Vec<Arc<Ring<HeapBuf>>> {
        plan.rings
            .iter()
            .zip(&rings)
            .filter(|(r, _)| r.to == to && r.kind == kind)
            .map(|(_, q)| q.clone())
            .collect()
    };
    let ring_between = |from: usize, to: usize, kind: RingKind| -> Option<Arc<Ring<HeapBuf>>> {
        plan.rings
            .iter()
            .zip(&rings)
            .find(|(r, _)| r.from == from && r.to == to && r.kind == kind)
            .map(|(_, q)| q.clone())
    };

    // Hand out port queues: RX queue i to lcore i of the first group, TX
    // queue i to lcore i of the transmit group.
    let mut rx_by_lcore: Vec<Vec<_>> = (0..plan.lcores.len()).map(|_| Vec::new()).collect();
    let mut tx_by_lcore: Vec<Vec<_>> = (0..plan.lcores.len()).map(|_| Vec::new()).collect();
    let first = &plan.groups[0];
    let txg = &plan.groups[plan.group_of(Stage::Transmit)];
    for (p, pq) in queues.iter_mut().enumerate() {
        if pq.rx.len() != plan.rx_queues || pq.tx.len() != plan.tx_queues {
            return Err(anyhow!(
                "port {} opened with {} RX / {} TX queues; the plan needs {} / {}",
                plan.ports[p].name,
                pq.rx.len(),
                pq.tx.len(),
                plan.rx_queues,
                plan.tx_queues
            ));
        }
        for (i, q) in pq.rx.drain(..).enumerate() {
            rx_by_lcore[first.lcores[i]].push(q);
        }
        for (i, q) in pq.tx.drain(..).enumerate() {
            tx_by_lcore[txg.lcores[i]].push(q);
        }
    }

    let mut threads = Vec::new();
    let mut views = Vec::new();
    for lc in &plan.lcores {
        let group = &plan.groups[lc.group];
        let has = |s: Stage| group.stages.contains(&s);
        let stages = Stages {
            classify: has(Stage::Classify).then(|| Classify::new(topo.clone())),
            replicate: has(Stage::Replicate).then(|| Replicate::new(topo.clone())),
            translate: has(Stage::Translate)
                .then(|| Translate::new(topo.clone(), lc.index as u16, plan.nat.clone())),
            transmit: has(Stage::Transmit).then(|| Transmit::new(topo.clone())),
        };
        let stage_counters: Vec<(Stage, Arc<StageCounters>)> = [
            stages
                .classify
                .as_ref()
                .map(|s| (Stage::Classify, s.counters.clone())),
            stages
                .replicate
                .as_ref()
                .map(|s| (Stage::Replicate, s.counters.clone())),
            stages
                .translate
                .as_ref()
                .map(|s| (Stage::Translate, s.counters.clone())),
            stages
                .transmit
                .as_ref()
                .map(|s| (Stage::Transmit, s.counters.clone())),
        ]
        .into_iter()
        .flatten()
        .collect();
        let nat: Option<Arc<NatCounters>> =
            stages.translate.as_ref().map(|t| t.nat.counters.clone());
        let next = plan.groups.get(lc.group + 1).map(|ng| {
            let by_shard = ng.stages.contains(&Stage::Translate);
            let rings = if by_shard {
                ng.lcores
                    .iter()
                    .filter_map(|&to| ring_between(lc.id, to, RingKind::Stage))
                    .collect()
            } else {
                ng.lcores
                    .iter()
                    .filter_map(|&to| ring_between(lc.id, to, RingKind::Stage))
                    .take(1)
                    .collect()
            };
            NextGroup { rings, by_shard }
        });
        let handoff_out = if group.handoff {
            group
                .lcores
                .iter()
                .map(|&to| {
                    if to == lc.id {
                        None
                    } else {
                        ring_between(lc.id, to, RingKind::Handoff)
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let ports: Arc<Vec<PortCounters>> =
            Arc::new((0..nports).map(|_| PortCounters::default()).collect());
        let counters = Arc::new(LcoreCounters::default());
        views.push(LcoreView {
            id: lc.id,
            stages: stage_counters,
            nat,
            ports: ports.clone(),
            counters: counters.clone(),
        });
        let worker = Worker {
            id: lc.id,
            shard: lc.index as u16,
            stages_run: group.stages.clone(),
            stages,
            burst_size: plan.burst_size,
            rx: std::mem::take(&mut rx_by_lcore[lc.id]),
            tx: std::mem::take(&mut tx_by_lcore[lc.id]),
            stage_in: ring_to(lc.id, RingKind::Stage),
            handoff_in: ring_to(lc.id, RingKind::Handoff),
            handoff_out,
            next,
            ports,
            counters,
            stop: stop.clone(),
            epoch,
        };
        let core = lc.core;
        let t = std::thread::Builder::new()
            .name(format!("lcore-{}", lc.id))
            .spawn(move || {
                if let Some(c) = core {
                    // Pinning can fail in a restricted cpuset; the lcore
                    // still runs, unpinned.
                    core_affinity::set_for_current(core_affinity::CoreId { id: c });
                }
                worker.run();
            })
            .context("spawning an lcore thread")?;
        threads.push(t);
    }

    Ok(Runtime {
        plan: plan.clone(),
        stop,
        threads,
        lcores: views,
        rings,
        backend,
        started: Instant::now(),
    })
}

/// Runs the plan until the duration ends, `opts.stop` is set, or a finite
/// input (pcap) has been read and the pipeline has drained. Returns the
/// stats JSON at exit.
pub fn run(plan: &Plan, opts: &RunOptions) -> anyhow::Result<serde_json::Value> {
    let rt = Runtime::start(plan)?;
    let started = Instant::now();
    let show = opts.live_status && std::io::stderr().is_terminal();
    let mut last_status = Instant::now();
    let mut last_totals = stats::Totals::default();
    let mut quiet_checks = 0;
    let mut last_progress = 0u64;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
        {
            break;
        }
        if rt.backend.control().input_done() {
            // Drained when nothing is queued and counters stopped moving.
            let progress = stats::Totals::of(&rt.lcores).processed();
            if rt.in_flight() == 0 && progress == last_progress {
                quiet_checks += 1;
                if quiet_checks >= 4 {
                    break;
                }
            } else {
                quiet_checks = 0;
            }
            last_progress = progress;
        }
        if show && last_status.elapsed() >= Duration::from_secs(1) {
            let totals = stats::Totals::of(&rt.lcores);
            let line =
                stats::status_line(&rt.stats(), &totals, &last_totals, last_status.elapsed());
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
            last_totals = totals;
            last_status = Instant::now();
        }
    }
    if show {
        eprintln!();
    }
    Ok(rt.stop())
}
