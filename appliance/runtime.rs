//! Starting, watching and stopping the appliance: opens the backend's ports
//! ([`backend`]), has the data plane assembled from the plan
//! ([`crate::dataplane::assembly`]), pins and starts the lcore threads and the
//! management core's threads, and runs the management loop (status line, end
//! of run, stats JSON) on the calling thread.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use crossbeam::queue::ArrayQueue;
use pipelines::select::SelectionCore;
use pipelines::PacketBuf;

use crate::config::plan::Plan;
use crate::config::BackendKind;
use crate::dataplane::assembly::{assemble, Assembly, QueuedLen};
use crate::dataplane::worker::bench::BenchHooks;
use crate::mgmt::reader::StatsReader;
use crate::mgmt::report;
use crate::mgmt::selection::{AdminCmd, RttControl, SelectionInputs, SelectionView};
use crate::mgmt::stats::{self, Stats};
use crate::ports::{BackendControl, PortQueues};

mod backend;
#[cfg(test)]
mod tests;

#[cfg(feature = "dpdk")]
pub use backend::eal_args;
use backend::{Backend, Opened};

/// How a run ends and what it shows.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Stop after this long (else at Ctrl-C, or when a finite input drained).
    pub duration: Option<Duration>,
    /// Redraw a one-line status on stderr every second.
    pub live_status: bool,
    /// Stop when this becomes true (Ctrl-C handler, tests).
    pub stop: Option<Arc<AtomicBool>>,
    /// Serve the control socket here (`appliance run` always gives one).
    pub socket: Option<std::path::PathBuf>,
    /// The config file the plan came from and what it held: reloads
    /// (`appliance reload`, SIGHUP) compare against it.
    pub config: Option<(std::path::PathBuf, crate::config::Config)>,
    /// Reload when this becomes true (the SIGHUP handler); it is reset.
    pub reload: Option<Arc<AtomicBool>>,
    /// Reopen the NAT log's file when this becomes true (the SIGUSR1
    /// handler, for logrotate); it is reset.
    pub reopen: Option<Arc<AtomicBool>>,
}

/// A running appliance: its lcore threads and its backend.
pub struct Runtime {
    plan: Plan,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// The management core's threads (selection, redirection): one that
    /// ends before the stop stops the appliance ([`Runtime::health`]).
    mgmt: Vec<MgmtThread>,
    /// What the stats are built from (shared with the control socket).
    reader: Arc<StatsReader>,
    /// The operator's uplink changes, to the selection thread.
    admin: Arc<ArrayQueue<AdminCmd>>,
    /// The operator's RTT table requests, to the selection thread.
    rtt: Arc<RttControl>,
    rings: Vec<Arc<dyn QueuedLen>>,
    backend: Backend,
    reloader: Option<Arc<crate::control::reload::Reloader>>,
    /// A reloaded `[redirection]`, to the redirection thread (if it runs).
    redirect_reload: Option<crate::mgmt::redirect::ReloadSlot>,
    /// `appliance bench`: each lcore's stage clock (by lcore id), else empty.
    bench: Vec<Arc<BenchHooks>>,
}

impl Runtime {
    /// Opens the ports and starts every lcore (and the sim site, if any).
    pub fn start(plan: &Plan) -> anyhow::Result<Runtime> {
        match plan.backend {
            BackendKind::Sim => {
                let mut rt = build(backend::open_sim(plan)?)?;
                if let Backend::Sim(Some(site), _) = &mut rt.backend {
                    site.start();
                }
                Ok(rt)
            }
            BackendKind::Pcap => build(backend::open_pcap(plan)?),
            BackendKind::AfPacket => build(backend::open_af_packet(plan)?),
            BackendKind::Dpdk => build(backend::open_dpdk(plan)?),
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
        build(backend::external(plan, queues, control))
    }

    /// `appliance bench`: every lcore over the bench backend's generator
    /// and sinks ([`crate::ports::bench`]), each with a stage clock; with
    /// `passthrough` the stages are the no-op forwarder's pass-throughs.
    pub fn start_bench(
        plan: &Plan,
        flows: &crate::ports::bench::FlowSpec,
        passthrough: bool,
    ) -> anyhow::Result<(Runtime, Arc<crate::ports::bench::BenchControl>)> {
        let (opened, ctl) = backend::open_bench(plan, flows)?;
        Ok((build_with(opened, Some(passthrough))?, ctl))
    }

    /// What the management core reads of each lcore (by lcore id).
    pub fn lcore_views(&self) -> &[crate::dataplane::assembly::LcoreView] {
        &self.reader.lcores
    }

    /// The stage clocks of a runtime started by [`Runtime::start_bench`].
    pub fn bench_hooks(&self) -> &[Arc<BenchHooks>] {
        &self.bench
    }

    /// Bursts queued in each ring now: the plan's `rings`, then its
    /// `hairpin_rings`.
    pub fn ring_depths(&self) -> Vec<usize> {
        self.rings.iter().map(|r| r.queued()).collect()
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
        self.report().to_json()
    }

    /// The stats as of now.
    pub fn report(&self) -> Stats {
        self.reader.report()
    }

    /// Serves the control socket at `path` (see [`crate::control`]) until
    /// the appliance stops; the socket file goes with it.
    pub fn serve_control(&mut self, path: &std::path::Path) -> anyhow::Result<()> {
        let state = crate::control::server::State {
            reader: self.reader.clone(),
            admin: self.admin.clone(),
            rtt: self.rtt.clone(),
            reload: self.reloader.clone(),
            captures: Default::default(),
        };
        let handle =
            crate::control::server::spawn(path, state, self.stop.clone(), self.plan.control_group)?;
        self.mgmt.push(MgmtThread {
            name: "mgmt-control",
            what: "control socket",
            handle: Some(handle),
        });
        Ok(())
    }

    /// Lets `appliance reload` and [`Runtime::reload`] re-read `path`,
    /// which held `cfg` when this started (call before
    /// [`Runtime::serve_control`]).
    pub fn enable_reload(&mut self, path: std::path::PathBuf, cfg: crate::config::Config) {
        let lcores = self
            .reader
            .lcores
            .iter()
            .filter_map(|l| l.settings.clone())
            .collect();
        self.reloader = Some(Arc::new(crate::control::reload::Reloader::new(
            path,
            cfg,
            self.admin.clone(),
            lcores,
            self.reader.control.clone(),
            self.redirect_reload.clone(),
        )));
    }

    /// Reloads the config file (see [`crate::control::reload`]): the
    /// fields changed, or why nothing was applied.
    pub fn reload(&self, path: Option<&std::path::Path>) -> Result<serde_json::Value, String> {
        match &self.reloader {
            Some(r) => r.reload(path),
            None => {
                Err("this appliance was not started from a config file; nothing to reload".into())
            }
        }
    }

    /// Serves Prometheus metrics (`GET /metrics`) at `addr` until the
    /// appliance stops (see [`crate::mgmt::metrics`]).
    pub fn serve_metrics(&mut self, addr: std::net::SocketAddr) -> anyhow::Result<()> {
        let handle = crate::mgmt::metrics::spawn(addr, self.reader.clone(), self.stop.clone())?;
        self.mgmt.push(MgmtThread {
            name: "mgmt-metrics",
            what: "Prometheus metrics",
            handle: Some(handle),
        });
        Ok(())
    }

    /// Starts the NAT event log (`[telemetry.nat_log]`, see
    /// [`crate::mgmt::natlog`]) until the appliance stops.
    pub fn serve_nat_log(&mut self, plan: &crate::config::plan::NatLogPlan) -> anyhow::Result<()> {
        let handle = crate::mgmt::natlog::spawn(plan, self.reader.clone(), self.stop.clone())?;
        self.mgmt.push(MgmtThread {
            name: "mgmt-natlog",
            what: "NAT event log",
            handle: Some(handle),
        });
        Ok(())
    }

    /// Has the NAT log reopen its file (as SIGUSR1 does).
    pub fn reopen_nat_log(&self) {
        self.reader
            .control
            .nat_log_reopen
            .store(true, Ordering::Relaxed);
    }

    /// An error naming the management thread that ended (panicked or
    /// returned an error) while the appliance runs: its snapshots would
    /// then be frozen, so the run must end.
    pub fn health(&mut self) -> anyhow::Result<()> {
        check_mgmt(&mut self.mgmt)
    }

    /// Packets still queued in rings between lcores.
    fn in_flight(&self) -> usize {
        self.rings.iter().map(|r| r.queued()).sum()
    }

    /// Stops the site (no new traffic), then the lcores; returns final stats.
    pub fn stop(self) -> serde_json::Value {
        self.stop_report().to_json()
    }

    /// [`Runtime::stop`], returning the final stats as [`Stats`].
    pub fn stop_report(mut self) -> Stats {
        if let Backend::Sim(site, _) = &mut self.backend {
            if let Some(site) = site.take() {
                site.stop();
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for m in &mut self.mgmt {
            m.join();
        }
        self.report()
    }
}

/// A management thread and what it does (for the error when it dies).
struct MgmtThread {
    name: &'static str,
    what: &'static str,
    handle: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl MgmtThread {
    /// Joins it; the cause if it panicked or returned an error.
    fn join(&mut self) -> Option<String> {
        match self.handle.take()?.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(p) => Some(format!("panicked: {}", crate::mgmt::panic_message(&*p))),
        }
    }
}

/// An error for the first management thread that ended before the stop;
/// it is joined (a thread that ended without an error is joined silently).
fn check_mgmt(mgmt: &mut [MgmtThread]) -> anyhow::Result<()> {
    for m in mgmt {
        if m.handle.as_ref().is_some_and(|h| h.is_finished()) {
            let cause = m
                .join()
                .unwrap_or_else(|| "it returned before the stop".into());
            return Err(anyhow!(
                "the management core's {} thread ({}) stopped: {cause}; stopping the appliance",
                m.what,
                m.name
            ));
        }
    }
    Ok(())
}

impl Drop for Runtime {
    /// A runtime dropped without [`Runtime::stop`] (an error path) still
    /// stops its lcores instead of leaving them polling forever.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for m in &mut self.mgmt {
            m.join();
        }
    }
}

/// Has the data plane assembled over the opened ports, and starts the
/// management core's threads and the lcore threads.
fn build<B: PacketBuf>(opened: Opened<B>) -> anyhow::Result<Runtime> {
    build_with(opened, None)
}

/// [`build`]; with `bench`, every worker gets a stage clock, and the
/// pass-through stages when it is `Some(true)`.
fn build_with<B: PacketBuf>(opened: Opened<B>, bench: Option<bool>) -> anyhow::Result<Runtime> {
    let Opened {
        plan,
        queues,
        backend,
        alloc,
        thread_init,
    } = opened;
    let plan = &plan;
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let epoch_unix = std::time::SystemTime::now();
    // Before the tables are built: they take their pages from it.
    crate::memory::set_mode(plan.huge_pages);
    let Assembly {
        mut workers,
        views,
        rings,
        selection,
        redirect,
    } = assemble(plan, queues, &stop, epoch, alloc)?;
    let hooks: Vec<Arc<BenchHooks>> = match bench {
        Some(passthrough) => workers
            .iter_mut()
            .map(|(w, _)| {
                let h = Arc::new(BenchHooks {
                    passthrough,
                    ..Default::default()
                });
                w.bench = Some(h.clone());
                h
            })
            .collect(),
        None => Vec::new(),
    };
    eprintln!("{}", crate::memory::MemoryStats::now().summary());
    let redirect_view = Arc::new(Mutex::new(crate::mgmt::redirect::RedirectView::default()));
    let redirect_counters = redirect.counters.clone();
    let mut threads = Vec::new();
    let mut mgmt = Vec::new();
    let selection_view = Arc::new(Mutex::new(SelectionView::default()));
    let selection_counters = selection.counters.clone();
    let weights: Vec<u32> = plan
        .topology
        .uplinks
        .iter()
        .map(|u| u.weight.max(1))
        .collect();
    let admin = Arc::new(ArrayQueue::new(crate::mgmt::selection::ADMIN_RING_SIZE));
    let rtt = Arc::new(RttControl::default());
    let inputs = SelectionInputs {
        nat: views.iter().filter_map(|v| v.nat.clone()).collect(),
        link_up: backend.link_state(plan),
        uplinks: plan.topology.uplinks.len(),
        admin: admin.clone(),
        rtt: rtt.clone(),
    };
    mgmt.push(MgmtThread {
        name: "mgmt-selection",
        what: "uplink selection",
        handle: Some(
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
        ),
    });
    let mut redirect_reload = None;
    if let Some(rp) = &plan.redirection {
        let slot = Arc::new(ArrayQueue::new(1));
        redirect_reload = Some(slot.clone());
        let mut redirect = redirect;
        redirect.nat = views.iter().filter_map(|v| v.nat.clone()).collect();
        let spawned = crate::mgmt::redirect::spawn(
            rp,
            redirect,
            epoch,
            stop.clone(),
            redirect_view.clone(),
            slot,
        );
        match spawned {
            Ok(h) => mgmt.push(MgmtThread {
                name: "mgmt-redirect",
                what: "redirection",
                handle: Some(h),
            }),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                for m in &mut mgmt {
                    m.join();
                }
                return Err(e).context("spawning the management core's redirection thread");
            }
        }
    }
    // The NAT log counts as a consumer before any lcore runs, so its
    // first sessions are logged too (its thread starts later).
    let control = Arc::new(stats::ControlCounters::default());
    let mut hub = crate::mgmt::events::EventHub::new(&views);
    if plan.nat_log.is_some() {
        hub.attach_log(Arc::new(crate::mgmt::events::LogTap::new(
            control.nat_log_lost.clone(),
        )));
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
                for m in &mut mgmt {
                    m.join();
                }
                return Err(e).context("spawning an lcore thread");
            }
        }
    }

    let events = Arc::new(Mutex::new(hub));
    let reader = Arc::new(StatsReader {
        plan: plan.clone(),
        started: Instant::now(),
        lcores: views,
        backend_name: backend.name(),
        backend: backend.shared_control(),
        selection: selection_view,
        selection_counters,
        redirect: redirect_view,
        redirect_counters,
        control,
        events,
        epoch_unix,
    });
    Ok(Runtime {
        plan: plan.clone(),
        stop,
        threads,
        mgmt,
        reader,
        admin,
        rtt,
        rings,
        backend,
        reloader: None,
        redirect_reload,
        bench: hooks,
    })
}

/// Runs the plan until the duration ends, `opts.stop` is set, or a finite
/// input (pcap) has been read and the pipeline has drained. Returns the
/// stats JSON at exit.
pub fn run(plan: &Plan, opts: &RunOptions) -> anyhow::Result<serde_json::Value> {
    run_report(plan, opts).map(|s| s.to_json())
}

/// [`run`], returning the stats at exit as [`Stats`].
pub fn run_report(plan: &Plan, opts: &RunOptions) -> anyhow::Result<Stats> {
    let mut rt = Runtime::start(plan)?;
    if let Some((path, cfg)) = &opts.config {
        rt.enable_reload(path.clone(), cfg.clone());
    }
    if let Some(path) = &opts.socket {
        rt.serve_control(path)?;
    }
    if let Some(addr) = plan.prometheus {
        rt.serve_metrics(addr)?;
    }
    if let Some(nl) = &plan.nat_log {
        rt.serve_nat_log(nl)?;
    }
    let started = Instant::now();
    let show = opts.live_status && std::io::stderr().is_terminal();
    let mut last_status = Instant::now();
    let mut last_totals = stats::Totals::default();
    let mut quiet_checks = 0;
    let mut last_progress = 0u64;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if let Err(e) = rt.health() {
            // Stops the lcores and the other threads before the error.
            drop(rt.stop_report());
            return Err(e);
        }
        if opts
            .reload
            .as_ref()
            .is_some_and(|r| r.swap(false, Ordering::Relaxed))
        {
            match rt.reload(None) {
                Ok(v) => eprintln!("\rSIGHUP: reloaded: {}", v["changed"]),
                Err(e) => eprintln!("\rSIGHUP: reload refused: {e}"),
            }
        }
        if opts
            .reopen
            .as_ref()
            .is_some_and(|r| r.swap(false, Ordering::Relaxed))
        {
            rt.reopen_nat_log();
        }
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
            let progress = stats::Totals::of(&rt.reader.lcores).processed();
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
            let totals = stats::Totals::of(&rt.reader.lcores);
            let line =
                report::status_line(&rt.report(), &totals, &last_totals, last_status.elapsed());
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
    Ok(rt.stop_report())
}
