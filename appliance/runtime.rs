//! Starting, watching and stopping the appliance: opens the backend's ports,
//! builds one [`Worker`] per lcore of the plan with the rings between them
//! (stage, hand-off and hairpin rings), pins and starts their threads, and
//! runs the management loop (status line, end of run, stats JSON) on the
//! calling thread.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use pipelines::nat::NatCounters;
use pipelines::stages::classify::Classify;
use pipelines::stages::replicate::Replicate;
use pipelines::stages::translate::Translate;
use pipelines::stages::transmit::Transmit;
use pipelines::{BufPool, HeapPool, PacketBuf, StageCounters};

use crate::config::plan::{Plan, RingKind, Stage};
use crate::config::BackendKind;
use crate::dataplane::worker::{
    Alloc, LcoreCounters, NextGroup, PortCounters, Ring, Solicit, Stages, Worker,
};
use crate::mgmt::selection::{SelectionInputs, SelectionView};
use crate::mgmt::stats::{self, LcoreView, StatsSources};
use crate::ports::{BackendControl, PortQueues};
use pipelines::select::SelectionCore;

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
    selection: Arc<Mutex<SelectionView>>,
    selection_counters: Vec<Arc<pipelines::select::policy::SelectionCounters>>,
    redirect: Arc<Mutex<crate::mgmt::redirect::RedirectView>>,
    redirect_counters: Vec<Arc<pipelines::redirect::service::ServiceCounters>>,
    lcores: Vec<LcoreView>,
    rings: Vec<Arc<dyn QueuedLen>>,
    backend: Backend,
    started: Instant,
}

/// How many packets a ring holds now (rings of any buffer type).
trait QueuedLen: Send + Sync {
    fn queued(&self) -> usize;
}

impl<B: PacketBuf> QueuedLen for Ring<B> {
    fn queued(&self) -> usize {
        self.len()
    }
}

enum Backend {
    Sim(
        Option<Box<crate::ports::sim::SimSite>>,
        crate::ports::sim::SimHandle,
    ),
    /// Every other backend: only its control side stays here.
    Other(&'static str, Arc<dyn BackendControl>),
}

impl Backend {
    fn control(&self) -> &dyn BackendControl {
        match self {
            Backend::Sim(_, h) => h,
            Backend::Other(_, c) => &**c,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Sim(..) => "sim",
            Backend::Other(n, _) => n,
        }
    }

    /// Link state of each uplink's port, for the management core's thread.
    fn link_state(&self, plan: &Plan) -> Box<dyn Fn(usize) -> bool + Send> {
        let ports: Vec<usize> = plan
            .topology
            .uplinks
            .iter()
            .map(|u| usize::from(u.port))
            .collect();
        match self {
            Backend::Sim(_, h) => {
                let h = h.clone();
                Box::new(move |u| ports.get(u).is_none_or(|&p| h.link_up(p)))
            }
            Backend::Other(_, c) => {
                let c = c.clone();
                Box::new(move |u| ports.get(u).is_none_or(|&p| c.link_up(p)))
            }
        }
    }
}

impl Runtime {
    /// Opens the ports and starts every lcore (and the sim site, if any).
    pub fn start(plan: &Plan) -> anyhow::Result<Runtime> {
        match plan.backend {
            BackendKind::Sim => {
                let pool = HeapPool::new_static(plan.pool_size);
                let (q, site) = crate::ports::sim::SimSite::open(plan, pool)
                    .map_err(|e| anyhow!("sim backend: {e}"))?;
                let h = site.handle();
                let mut rt = build(
                    plan,
                    q,
                    Backend::Sim(Some(Box::new(site)), h),
                    heap_alloc(pool),
                )?;
                if let Backend::Sim(Some(site), _) = &mut rt.backend {
                    site.start();
                }
                Ok(rt)
            }
            BackendKind::Pcap => {
                let pool = HeapPool::new_static(plan.pool_size);
                let (q, c) = crate::ports::pcap::open(plan, pool)
                    .map_err(|e| anyhow!("pcap backend: {e}"))?;
                build(plan, q, Backend::Other("pcap", c), heap_alloc(pool))
            }
            BackendKind::AfPacket => start_af_packet(plan),
            BackendKind::Dpdk => start_dpdk(plan),
            BackendKind::External => Err(anyhow!(
                "backend = \"external\" has its ports attached by the program that embeds the appliance (Runtime::start_with_ports: tests, `appliance client --lab`); `appliance run` cannot open them"
            )),
        }
    }

    /// Starts every lcore over port queues the caller built (one entry per
    /// port of the plan, `plan.rx_queues` RX and `plan.tx_queues` TX queues
    /// each) and answers for with `control`.
    pub fn start_with_ports(
        plan: &Plan,
        queues: Vec<PortQueues<pipelines::HeapBuf>>,
        control: Arc<dyn BackendControl>,
    ) -> anyhow::Result<Runtime> {
        build(
            plan,
            queues,
            Backend::Other("external", control),
            heap_alloc(HeapPool::new_static(1024)),
        )
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
            selection: &self.selection.lock().map(|v| v.clone()).unwrap_or_default(),
            selection_counters: &self.selection_counters,
            redirect: self.plan.redirection.as_ref().map(|p| {
                (
                    p,
                    self.redirect.lock().map(|v| v.clone()).unwrap_or_default(),
                    &self.redirect_counters[..],
                )
            }),
        })
    }

    /// Packets still queued in rings between lcores.
    fn in_flight(&self) -> usize {
        self.rings.iter().map(|r| r.queued()).sum()
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
fn build<B: PacketBuf>(
    plan: &Plan,
    queues: Vec<PortQueues<B>>,
    backend: Backend,
    alloc: Alloc<B>,
) -> anyhow::Result<Runtime> {
    build_with(plan, queues, backend, alloc, None)
}

/// Called first on every lcore thread; what it returns lives as long as the
/// thread's loop (DPDK: the thread's lcore registration, which gives it a
/// mempool cache).
type ThreadInit = Arc<dyn Fn() -> Box<dyn std::any::Any> + Send + Sync>;

fn build_with<B: PacketBuf>(
    plan: &Plan,
    queues: Vec<PortQueues<B>>,
    backend: Backend,
    alloc: Alloc<B>,
    thread_init: Option<ThreadInit>,
) -> anyhow::Result<Runtime> {
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let Assembly {
        workers,
        views,
        rings,
        selection,
        redirect,
    } = assemble(plan, queues, &stop, epoch, alloc)?;
    let redirect_view = Arc::new(Mutex::new(crate::mgmt::redirect::RedirectView::default()));
    let redirect_counters = redirect.counters.clone();
    let mut threads = Vec::new();
    let selection_view = Arc::new(Mutex::new(SelectionView::default()));
    let selection_counters = selection.counters.clone();
    let weights: Vec<u32> = plan
        .topology
        .uplinks
        .iter()
        .map(|u| u.weight.max(1))
        .collect();
    let inputs = SelectionInputs {
        nat: views.iter().filter_map(|v| v.nat.clone()).collect(),
        link_up: backend.link_state(plan),
        uplinks: plan.topology.uplinks.len(),
    };
    threads.push(
        crate::mgmt::selection::spawn(
            SelectionCore::new(plan.selection.core.clone(), weights),
            selection,
            inputs,
            plan.selection.publish_interval,
            epoch,
            stop.clone(),
            selection_view.clone(),
        )
        .context("spawning the management core's selection thread")?,
    );
    if let Some(rp) = &plan.redirection {
        let mut redirect = redirect;
        redirect.nat = views.iter().filter_map(|v| v.nat.clone()).collect();
        threads.push(
            crate::mgmt::redirect::spawn(rp, redirect, epoch, stop.clone(), redirect_view.clone())
                .context("spawning the management core's redirection thread")?,
        );
    }
    for (worker, core) in workers {
        let init = thread_init.clone();
        let t = std::thread::Builder::new()
            .name(format!("lcore-{}", worker.id))
            .spawn(move || {
                if let Some(c) = core {
                    // Pinning can fail in a restricted cpuset; the lcore
                    // still runs, unpinned.
                    core_affinity::set_for_current(core_affinity::CoreId { id: c });
                }
                let _registration = init.map(|f| f());
                worker.run();
            });
        match t {
            Ok(t) => threads.push(t),
            Err(e) => {
                // The lcores already running must not poll forever.
                stop.store(true, Ordering::Relaxed);
                for t in threads {
                    let _ = t.join();
                }
                return Err(e).context("spawning an lcore thread");
            }
        }
    }

    Ok(Runtime {
        plan: plan.clone(),
        stop,
        threads,
        selection: selection_view,
        selection_counters,
        redirect: redirect_view,
        redirect_counters,
        lcores: views,
        rings,
        backend,
        started: Instant::now(),
    })
}

/// Everything [`build`] starts, not yet started: one worker per lcore with
/// the CPU to pin it to, the counters the management core reads, and every
/// ring (to see what is still in flight).
struct Assembly<B: PacketBuf> {
    workers: Vec<(Worker<B>, Option<usize>)>,
    views: Vec<LcoreView>,
    rings: Vec<Arc<dyn QueuedLen>>,
    /// The management core's ends of the selection rings.
    selection: crate::mgmt::selection::SelectionRings,
    /// ... and of the redirection rings.
    redirect: crate::mgmt::redirect::RedirectRings,
}

/// Creates the rings of the plan and one worker per lcore, wired to them and
/// to the port queues.
fn assemble<B: PacketBuf>(
    plan: &Plan,
    mut queues: Vec<PortQueues<B>>,
    stop: &Arc<AtomicBool>,
    epoch: Instant,
    alloc: Alloc<B>,
) -> anyhow::Result<Assembly<B>> {
    let topo = plan.topology.clone();
    let nports = plan.ports.len();

    // One ring per planned (from, to, kind).
    let rings: Vec<Arc<Ring<B>>> = plan
        .rings
        .iter()
        .map(|_| Arc::new(Ring::new(plan.ring_size)))
        .collect();
    let ring_to = |to: usize, kind: RingKind| -> Vec<Arc<Ring<B>>> {
        plan.rings
            .iter()
            .zip(&rings)
            .filter(|(r, _)| r.to == to && r.kind == kind)
            .map(|(_, q)| q.clone())
            .collect()
    };
    let ring_between = |from: usize, to: usize, kind: RingKind| -> Option<Arc<Ring<B>>> {
        plan.rings
            .iter()
            .zip(&rings)
            .find(|(r, _)| r.from == from && r.to == to && r.kind == kind)
            .map(|(_, q)| q.clone())
    };
    // One hairpin ring per translate lcore, shared by its senders.
    let hairpin: Vec<Arc<Ring<B>>> = plan
        .hairpin_rings
        .iter()
        .map(|_| Arc::new(Ring::new(plan.ring_size)))
        .collect();
    let hairpin_to = |to: usize| -> Option<Arc<Ring<B>>> {
        plan.hairpin_rings
            .iter()
            .zip(&hairpin)
            .find(|(r, _)| r.to == to)
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

    let mut workers = Vec::new();
    let mut views = Vec::new();
    let mut selection = crate::mgmt::selection::SelectionRings::default();
    let mut redirect = crate::mgmt::redirect::RedirectRings::default();
    let services = plan.redirection.as_ref().map(|r| {
        let db = pipelines::redirect::db::RedirectDb::new(r.spec.clone());
        let addrs: Vec<(std::net::IpAddr, pipelines::UplinkId)> = r
            .spec
            .services
            .iter()
            .zip(&r.service_uplinks)
            .map(|(s, &u)| (s.addr.ip(), u))
            .collect();
        (
            r,
            Arc::new(r.service_map()),
            Arc::new(db.snapshot(pipelines::Nanos::ZERO)),
            addrs,
        )
    });
    for lc in &plan.lcores {
        let group = &plan.groups[lc.group];
        let has = |s: Stage| group.stages.contains(&s);
        let mut stages = Stages {
            classify: has(Stage::Classify)
                .then(|| Classify::with_neighbours(topo.clone(), plan.neighbours.clone())),
            replicate: has(Stage::Replicate)
                .then(|| Replicate::with_policy(topo.clone(), plan.selection.policy.clone())),
            translate: has(Stage::Translate).then(|| {
                Translate::with_policy(
                    topo.clone(),
                    lc.index as u16,
                    plan.nat.clone(),
                    plan.selection.policy.clone(),
                )
            }),
            transmit: has(Stage::Transmit)
                .then(|| Transmit::with_neighbours(topo.clone(), plan.neighbours.clone())),
        };
        let (mut service_snapshots, mut service_events) = (None, None);
        if let Some((r, map, snap, addrs)) = &services {
            if let Some(c) = stages.classify.as_mut() {
                c.set_services(map.clone());
            }
            if let Some(t) = stages.translate.as_mut() {
                let plane = pipelines::redirect::service::ServicePlane::new(
                    snap.clone(),
                    r.spec.services.len() + r.spec.peers.len(),
                    plan.nat.seed ^ (lc.index as u64).wrapping_mul(0x9E37_79B9),
                );
                redirect.counters.push(plane.counters.clone());
                t.enable_services(plane, addrs, r.spec.servers.len());
                let q = Arc::new(crossbeam::queue::ArrayQueue::new(1));
                redirect.snapshots.push(q.clone());
                service_snapshots = Some(q);
                let q = Arc::new(crossbeam::queue::ArrayQueue::new(
                    crate::mgmt::redirect::EVENT_RING_SIZE,
                ));
                redirect.events.push(q.clone());
                service_events = Some(q);
            }
        }
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
        // Indexed by shard, i.e. by index in the translate group; empty for
        // lcores without translate and with a single shard (no rings).
        let hairpin_out = if has(Stage::Translate) && !plan.hairpin_rings.is_empty() {
            group
                .lcores
                .iter()
                .map(|&to| if to == lc.id { None } else { hairpin_to(to) })
                .collect()
        } else {
            Vec::new()
        };
        let snapshots = (has(Stage::Replicate) || has(Stage::Translate)).then(|| {
            let q = Arc::new(crossbeam::queue::ArrayQueue::new(1));
            selection.snapshots.push(q.clone());
            q
        });
        let events = has(Stage::Translate).then(|| {
            let q = Arc::new(crossbeam::queue::ArrayQueue::new(
                crate::mgmt::selection::EVENT_RING_SIZE,
            ));
            selection.events.push(q.clone());
            q
        });
        if let Some(r) = stages.replicate.as_ref() {
            selection.counters.push(r.selection.clone());
        }
        if let Some(t) = stages.translate.as_ref() {
            selection.counters.push(t.selection.clone());
        }
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
            hairpin_in: hairpin_to(lc.id),
            hairpin_out,
            next,
            ports,
            counters,
            snapshots,
            events,
            solicit: (has(Stage::Transmit) && lc.index == 0)
                .then(|| Solicit::new(topo.clone(), plan.neighbours.clone(), alloc.clone())),
            service_snapshots,
            service_events,
            stop: stop.clone(),
            epoch,
        };
        workers.push((worker, lc.core));
    }

    Ok(Assembly {
        workers,
        views,
        rings: rings
            .into_iter()
            .chain(hairpin)
            .map(|r| r as Arc<dyn QueuedLen>)
            .collect(),
        selection,
        redirect,
    })
}

/// Buffers for packets the appliance originates, from a heap pool.
fn heap_alloc(pool: &'static HeapPool) -> Alloc<pipelines::HeapBuf> {
    Arc::new(move || pool.alloc())
}

/// The plan with the ports whose config omits `mac` given `macs[i]`.
fn with_port_macs(plan: &Plan, macs: &[[u8; 6]]) -> Plan {
    let mut plan = plan.clone();
    for (p, mac) in plan.ports.iter_mut().zip(macs) {
        if p.mac == [0; 6] {
            p.mac = *mac;
        }
    }
    let t = &plan.topology;
    let ports = t
        .ports
        .iter()
        .zip(&plan.ports)
        .map(|(info, p)| pipelines::topology::PortInfo {
            mac: p.mac,
            ..info.clone()
        })
        .collect();
    plan.topology = Arc::new(pipelines::Topology::new(
        ports,
        t.lan_port,
        t.lan_prefixes.clone(),
        t.lan_addrs.clone(),
        t.uplinks.clone(),
        t.nat_ports,
        t.shards,
    ));
    plan.neighbours = Arc::new(pipelines::neighbour::Neighbours::new(
        &plan.topology.uplinks,
    ));
    plan
}

#[cfg(target_os = "linux")]
fn start_af_packet(plan: &Plan) -> anyhow::Result<Runtime> {
    use crate::ports::linux::afpacket;
    let macs = afpacket::interface_macs(plan).map_err(|e| anyhow!("af-packet backend: {e}"))?;
    let plan = with_port_macs(plan, &macs);
    let pool = HeapPool::new_static(plan.pool_size);
    let (q, c) = afpacket::open(&plan, pool).map_err(|e| anyhow!("af-packet backend: {e}"))?;
    build(&plan, q, Backend::Other("af_packet", c), heap_alloc(pool))
}

#[cfg(not(target_os = "linux"))]
fn start_af_packet(_: &Plan) -> anyhow::Result<Runtime> {
    Err(anyhow!("the af-packet backend needs Linux"))
}

#[cfg(not(feature = "dpdk"))]
fn start_dpdk(_: &Plan) -> anyhow::Result<Runtime> {
    Err(anyhow!(
        "backend = \"dpdk\" needs a build with the DPDK backend: cargo build --release --features dpdk (see the README's DPDK section)"
    ))
}

/// The EAL arguments for the plan's `[dpdk]` section: memory, vdevs, the
/// PCI allow-list (no PCI scan without one), a file prefix of this process
/// (several appliances on one host), then the operator's extra arguments.
#[cfg(feature = "dpdk")]
pub fn eal_args(d: &crate::config::DpdkConfig) -> Vec<String> {
    let mut a: Vec<String> = vec!["-l".into(), "0".into()];
    if d.hugepages {
        a.extend(["-m".into(), d.memory_mb.to_string()]);
    } else {
        a.extend(["--no-huge".into(), "-m".into(), d.memory_mb.to_string()]);
        a.push("--no-shconf".into());
    }
    a.extend([
        "--file-prefix".into(),
        format!("appliance-{}", std::process::id()),
    ]);
    for v in &d.vdevs {
        a.extend(["--vdev".into(), v.clone()]);
    }
    if d.allow.is_empty() {
        a.push("--no-pci".into());
    }
    for p in &d.allow {
        a.extend(["-a".into(), p.clone()]);
    }
    a.extend(d.eal_args.iter().cloned());
    a
}

#[cfg(feature = "dpdk")]
fn start_dpdk(plan: &Plan) -> anyhow::Result<Runtime> {
    use crate::ports::dpdk::{
        open, register_thread, DeviceSpec, DpdkSettings, NatSteering, ReturnSteering,
    };
    let d = plan
        .dpdk
        .as_ref()
        .ok_or_else(|| anyhow!("dpdk backend without a [dpdk] plan"))?;
    let flow = d.return_steering == crate::config::ReturnSteering::Flow;
    let settings = DpdkSettings {
        eal_args: eal_args(d),
        mbufs_per_socket: d.mbufs_per_socket,
        mbuf_cache: d.mbuf_cache,
        rx_desc: d.rx_desc,
        tx_desc: d.tx_desc,
        return_steering: if flow {
            ReturnSteering::Flow
        } else {
            ReturnSteering::Software
        },
    };
    let t = &plan.topology;
    let devices: Vec<DeviceSpec> = plan
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let addresses: Vec<std::net::IpAddr> = t
                .uplinks
                .iter()
                .filter(|u| usize::from(u.port) == i)
                .flat_map(|u| u.nat_addrs.iter().copied())
                .collect();
            DeviceSpec {
                name: p.device.clone().unwrap_or_default(),
                mac: (p.mac != [0; 6]).then_some(p.mac),
                // Solicited-node multicast (ND) and frames for the
                // appliance's addresses on a shared segment.
                promiscuous: true,
                nat_steering: (flow && !addresses.is_empty()).then(|| NatSteering {
                    addresses,
                    queue_ports: (0..plan.rx_queues as u16)
                        .map(|q| t.shard_ports(q))
                        .collect(),
                }),
            }
        })
        .collect();
    let (queues, control) = open(&settings, &devices, plan.rx_queues, plan.tx_queues)
        .map_err(|e| anyhow!("dpdk backend: {e}"))?;
    let macs: Vec<[u8; 6]> = (0..plan.ports.len())
        .map(|i| control.port_mac(i).unwrap_or([0; 6]))
        .collect();
    let plan = with_port_macs(plan, &macs);
    let pool = control.pool();
    let alloc: Alloc<crate::ports::dpdk::Mbuf> = Arc::new(move || pool.alloc());
    let init: ThreadInit = Arc::new(|| match register_thread() {
        Ok(r) => Box::new(r) as Box<dyn std::any::Any>,
        Err(e) => {
            eprintln!("warning: lcore thread without a DPDK lcore id (no mempool cache): {e}");
            Box::new(())
        }
    });
    build_with(
        &plan,
        queues,
        Backend::Other("dpdk", control),
        alloc,
        Some(init),
    )
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use pipelines::{Burst, Direction, DropReason, HeapBuf, HeapPool, Nanos, PacketBuf};

    use super::*;
    use crate::config::plan::{test_plan, TEST_PIPELINE_3_SHARDS};
    use crate::ports::{RxQueue, TxQueue};

    const RTC_3_LCORES: &str = "[runtime]\nmode = \"run-to-completion\"\n\
        [[runtime.lcores]]\n[[runtime.lcores]]\n[[runtime.lcores]]\n";

    struct NoRx;

    impl RxQueue<HeapBuf> for NoRx {
        fn rx_burst(&mut self, _: &mut Burst<HeapBuf>, _: usize) -> usize {
            0
        }
    }

    /// (port, frame) of every packet sent.
    type Sent = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;

    /// Takes every packet, recording it and freeing the buffer.
    struct RecordTx {
        port: usize,
        sent: Sent,
    }

    impl TxQueue<HeapBuf> for RecordTx {
        fn tx_burst(&mut self, pkts: &mut Burst<HeapBuf>) -> usize {
            let n = pkts.len();
            let mut sent = self.sent.lock().unwrap();
            sent.extend(pkts.drain(..).map(|p| (self.port, p.data().to_vec())));
            n
        }
    }

    /// The plan's workers over queues that receive nothing and record what
    /// is sent, and how many rings the runtime would watch.
    fn workers(plan: &Plan) -> (Vec<Worker<HeapBuf>>, usize, Sent) {
        let sent = Sent::default();
        let queues = (0..plan.ports.len())
            .map(|port| PortQueues {
                rx: (0..plan.rx_queues)
                    .map(|_| Box::new(NoRx) as Box<dyn RxQueue<HeapBuf>>)
                    .collect(),
                tx: (0..plan.tx_queues)
                    .map(|_| {
                        Box::new(RecordTx {
                            port,
                            sent: sent.clone(),
                        }) as Box<dyn TxQueue<HeapBuf>>
                    })
                    .collect(),
            })
            .collect();
        let pool = HeapPool::new_static(16);
        let a = assemble(
            plan,
            queues,
            &Arc::default(),
            Instant::now(),
            heap_alloc(pool),
        )
        .unwrap();
        let rings = a.rings.len();
        (a.workers.into_iter().map(|(w, _)| w).collect(), rings, sent)
    }

    /// Position of the translate lcore owning `shard`.
    fn translate_lcore(workers: &[Worker<HeapBuf>], shard: u16) -> usize {
        workers
            .iter()
            .position(|w| w.stages.translate.is_some() && w.shard == shard)
            .unwrap()
    }

    /// An Ethernet/IPv4/UDP frame 10.0.0.2 → 203.0.113.1 whose last payload
    /// byte is `tag`.
    fn frame(tag: u8) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 9, 0x08, 0x00];
        let mut ip = vec![
            0x45, 0, 0, 29, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 2, 203, 0, 113, 1,
        ];
        let c = pipelines::wire::checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 9, 0, 0, tag]);
        f
    }

    /// A packet as translate leaves it for transmit: routed to port 1.
    fn outbound(pool: &'static HeapPool, tag: u8) -> HeapBuf {
        let mut p = pool.alloc_with(&frame(tag)).unwrap();
        let m = p.meta_mut();
        m.direction = Direction::Outbound;
        m.l3_offset = 14;
        m.l4_offset = 34;
        m.out_port = 1;
        m.next_hop_mac = [2, 0, 0, 0, 0x0a, 0xfe];
        p
    }

    /// The inbound half of a hairpinned packet, for `shard`'s translate.
    fn hairpinned(pool: &'static HeapPool, tag: u8, shard: u16) -> HeapBuf {
        let mut p = pool.alloc_with(&frame(tag)).unwrap();
        let m = p.meta_mut();
        m.direction = Direction::Inbound;
        m.hairpin = true;
        m.shard = shard;
        m.l3_offset = 14;
        m.l4_offset = 34;
        m.in_port = 2;
        p
    }

    fn assert_hairpin_wiring(plan: &Plan) {
        let (workers, rings, _) = workers(plan);
        let shards = usize::from(plan.shards());
        assert_eq!(plan.hairpin_rings.len(), shards);
        assert_eq!(rings, plan.rings.len() + shards, "in_flight sees them");
        for w in &workers {
            if w.stages.translate.is_none() {
                assert!(w.hairpin_in.is_none() && w.hairpin_out.is_empty());
                continue;
            }
            assert!(w.hairpin_in.is_some(), "lcore {} has no hairpin ring", w.id);
            assert_eq!(w.hairpin_out.len(), shards);
            for (k, out) in w.hairpin_out.iter().enumerate() {
                if k == usize::from(w.shard) {
                    assert!(out.is_none(), "lcore {} sends to itself", w.id);
                    continue;
                }
                let owner = &workers[translate_lcore(&workers, k as u16)];
                let (Some(out), Some(into)) = (out, &owner.hairpin_in) else {
                    panic!("lcore {} has no ring to shard {k}", w.id);
                };
                assert!(Arc::ptr_eq(out, into), "lcore {} shard {k}", w.id);
            }
        }
    }

    #[test]
    fn every_translate_lcore_has_a_hairpin_ring_the_others_send_to() {
        assert_hairpin_wiring(&test_plan(TEST_PIPELINE_3_SHARDS));
        assert_hairpin_wiring(&test_plan(RTC_3_LCORES));
    }

    #[test]
    fn a_single_shard_gets_no_hairpin_rings() {
        for runtime in [
            "[runtime]\nmode = \"run-to-completion\"\n[[runtime.lcores]]\n",
            "[runtime]\nmode = \"pipeline\"\n\
             [[runtime.lcores]]\nstages = [\"classify\", \"replicate\"]\n\
             [[runtime.lcores]]\nstages = [\"translate\", \"transmit\"]\n",
        ] {
            let (workers, _, _) = workers(&test_plan(runtime));
            for w in &workers {
                assert!(w.hairpin_in.is_none() && w.hairpin_out.is_empty());
            }
        }
    }

    /// Shard 0's translate lcore produces a burst with hairpinned packets for
    /// shards 1 and 2 among ordinary ones: the ordinary ones are sent on
    /// port 1, the hairpinned ones reach their shard's lcore and enter it at
    /// translate (there, with no session, translate drops them).
    fn hairpinned_packets_reach_their_shard_at_translate(runtime: &str) {
        let plan = test_plan(runtime);
        let (mut workers, _, sent) = workers(&plan);
        let pool = HeapPool::new_static(64);
        let sender = translate_lcore(&workers, 0);
        let mut burst = Burst::new();
        burst.push(outbound(pool, 1));
        burst.push(hairpinned(pool, 2, 1));
        burst.push(outbound(pool, 3));
        burst.push(hairpinned(pool, 4, 2));
        burst.push(hairpinned(pool, 5, 4)); // shard 4 of 3 is shard 1
        burst.push(outbound(pool, 6));
        let mut pending = workers[sender].pending();
        workers[sender].after_translate(burst, &mut pending);
        workers[sender].flush_rings(&mut pending);

        // In pipeline mode the ordinary packets cross a stage ring to the
        // transmit lcore; in run-to-completion the sender transmits them.
        for w in workers.iter_mut() {
            if w.stages.translate.is_none() {
                let mut p = w.pending();
                w.turn(Nanos::ZERO, &mut p);
            }
        }
        let sent: Vec<_> = sent
            .lock()
            .unwrap()
            .iter()
            .map(|(port, f)| (*port, f[f.len() - 1]))
            .collect();
        assert_eq!(sent, [(1, 1), (1, 3), (1, 6)]);

        for (shard, tags) in [(1u16, vec![2u8, 5]), (2, vec![4])] {
            let i = translate_lcore(&workers, shard);
            let ring = workers[i].hairpin_in.clone().unwrap();
            let arrived = ring.pop().unwrap();
            assert!(ring.is_empty());
            let got: Vec<u8> = arrived
                .iter()
                .map(|p| p.data()[p.data().len() - 1])
                .collect();
            assert_eq!(got, tags, "shard {shard}");
            for p in &arrived {
                assert!(p.meta().hairpin && p.meta().direction == Direction::Inbound);
            }
            ring.push(arrived).unwrap();

            let w = &mut workers[i];
            let mut p = w.pending();
            let work = w.turn(Nanos::ZERO, &mut p);
            assert!(work >= tags.len(), "hairpin input counts as work");
            assert!(ring.is_empty());
            let t = &w.stages.translate.as_ref().unwrap().counters;
            assert_eq!(t.packets.get(), tags.len() as u64);
            // Synthetic packets: no NAT address or session of this site
            // matches them, so translate drops them, counted.
            assert_eq!(t.total_drops(), tags.len() as u64);
            let classify = w.stages.classify.as_ref().map(|c| &c.counters);
            let replicate = w.stages.replicate.as_ref().map(|r| &r.counters);
            for c in [classify, replicate].into_iter().flatten() {
                assert_eq!(c.packets.get(), 0, "entered before translate");
            }
        }
        let t = &workers[sender].stages.translate.as_ref().unwrap().counters;
        assert_eq!(t.total_drops(), 0);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn pipeline_hands_hairpinned_packets_to_their_shard() {
        hairpinned_packets_reach_their_shard_at_translate(TEST_PIPELINE_3_SHARDS);
    }

    #[test]
    fn run_to_completion_hands_hairpinned_packets_to_their_shard() {
        hairpinned_packets_reach_their_shard_at_translate(RTC_3_LCORES);
    }

    #[test]
    fn a_full_hairpin_ring_counts_ring_full_and_frees_the_packets() {
        let plan = test_plan(RTC_3_LCORES);
        let (mut workers, _, sent) = workers(&plan);
        let pool = HeapPool::new_static(64);
        let ring = workers[1].hairpin_in.clone().unwrap();
        while ring.push(Burst::new()).is_ok() {}
        let mut burst = Burst::new();
        for tag in 0..5 {
            burst.push(hairpinned(pool, tag, 1));
        }
        burst.push(outbound(pool, 9));
        let mut pending = workers[0].pending();
        workers[0].after_translate(burst, &mut pending);
        workers[0].flush_rings(&mut pending);
        let t = &workers[0].stages.translate.as_ref().unwrap().counters;
        assert_eq!(t.drops(DropReason::RingFull), 5);
        assert_eq!(t.total_drops(), 5);
        assert_eq!(sent.lock().unwrap().len(), 1, "the rest was sent");
        assert_eq!(pool.in_use(), 0);
    }
}
