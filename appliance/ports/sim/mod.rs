//! The `sim` port backend: an in-process simulated site attached to the
//! appliance through virtual ports.
//!
//! The site owns N LAN clients and M internet servers speaking real TCP and
//! UDP (one smoltcp `Interface` per host, see [`host`]), one delay line per
//! uplink and direction (one-way delay, uniform jitter, Bernoulli loss,
//! order kept), and the appliance-facing queues: per port, `plan.rx_queues`
//! RX queues and `plan.tx_queues` TX queues over lock-free `ArrayQueue`s.
//!
//! ```text
//!  clients ──eth──▶ LAN port RX ─▶ appliance ─▶ uplink port TX ─▶ UP line ─▶ servers
//!  clients ◀────── LAN port TX ◀─ appliance ◀─ uplink port RX ◀─eth── DOWN line ◀─ servers
//! ```
//!
//! Everything but the queues lives on one site thread ([`site`]), which
//! runs in real time and sleeps when nothing is due. Counters are written
//! by that thread only and read lock-free by [`SimHandle::stats`]; uplink
//! conditions are atomics written by [`SimHandle::set_uplink`] and
//! [`SimHandle::set_link`] (an uplink's link up or down).
//!
//! An uplink may carry a transparent SYN proxy ([`proxy`], `proxy = true`)
//! near the appliance: it answers SYNs itself and joins the server only
//! after the client's ACK, as SYNPROXY or a TCP-terminating middlebox does.
//! Servers count their half-open connections (SYN-RECEIVED now, and how
//! those ended: RST or timeout), which SYN racing's RSTs show up in.
//!
//! Ownership: frames toward the appliance are copied into pool buffers when
//! they are queued (an empty pool or a full RX queue drops and counts them);
//! frames from the appliance are copied out and their buffers dropped as
//! soon as the site thread takes them, so pool buffers are never held for a
//! delay line's duration.

mod host;
mod proxy;
mod site;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;
use std::thread::{JoinHandle, Thread};

use crossbeam::queue::ArrayQueue;
use pipelines::{Burst, Counter, HeapBuf, HeapPool};

use crate::config::plan::Plan;
use crate::ports::{BackendControl, PortQueues, RxQueue, TxQueue};

/// Packets each RX and TX queue holds.
const QUEUE_CAPACITY: usize = 4096;

/// Counters of the site. Written only by the site thread.
#[derive(Debug, Default)]
struct Counters {
    tcp_ok: Counter,
    tcp_failed: Counter,
    tcp_reset: Counter,
    /// Sum of the setup times (µs) of OK connections.
    tcp_connect_us: Counter,
    /// Sum of the exchange times (µs, connect to full response) of OK connections.
    tcp_exchange_us: Counter,
    udp_requests: Counter,
    udp_replies: Counter,
    udp_timeouts: Counter,
    frames_to_appliance: Counter,
    frames_from_appliance: Counter,
    rx_nombuf: Counter,
    rx_queue_full: Counter,
    unroutable: Counter,
    /// Gauge: server sockets in SYN-RECEIVED as of their last service.
    server_syn_received: Counter,
    /// Server connections that left SYN-RECEIVED for LISTEN or CLOSED
    /// without reaching ESTABLISHED, by an RST (or soon, as after one).
    server_half_open_reset: Counter,
    /// ... that left it by the socket's timeout.
    server_half_open_timeout: Counter,
    /// Server sockets that reached ESTABLISHED.
    server_connections_established: Counter,
}

/// An `f64` readable and writable from any thread without a lock.
#[derive(Debug)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn new(v: f64) -> Self {
        AtomicF64(AtomicU64::new(v.to_bits()))
    }

    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
}

/// One uplink's path: its conditions (written by the handle) and counters
/// (written by the site thread).
#[derive(Debug)]
struct UplinkPath {
    name: String,
    /// The appliance port the uplink leaves through.
    port: usize,
    delay_ms: AtomicF64,
    jitter_ms: AtomicF64,
    loss: AtomicF64,
    /// The link between the appliance and the uplink's path (written by
    /// [`SimHandle::set_link`]).
    link_up: AtomicBool,
    /// A SYN proxy sits on the uplink, `proxy_delay_ms` from the appliance.
    proxy: bool,
    proxy_delay_ms: f64,
    frames_up: Counter,
    frames_down: Counter,
    lost: Counter,
    link_down_drops: Counter,
    proxy_syn_answered: Counter,
    proxy_connections: Counter,
    proxy_passed: Counter,
    proxy_dropped: Counter,
}

/// State shared by the site thread, [`SimSite`] and every [`SimHandle`].
#[derive(Debug)]
struct Shared {
    counters: Counters,
    /// Indexed like `plan.topology.uplinks`.
    uplinks: Vec<UplinkPath>,
    stop: AtomicBool,
    /// Clients start no new connections or requests while set.
    clients_paused: AtomicBool,
    /// The site thread, once started: TX queues unpark it when they queue
    /// frames, so it can sleep until its next deadline instead of polling.
    site_thread: OnceLock<Thread>,
}

/// The site's counters at one moment.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SimStats {
    /// TCP exchanges whose full response arrived within `tcp_timeout_ms`.
    pub tcp_connections_ok: u64,
    /// TCP exchanges that timed out, were reset, or were closed early
    /// (includes `tcp_connections_reset`).
    pub tcp_connections_failed: u64,
    /// Failed exchanges ended by an RST.
    pub tcp_connections_reset: u64,
    /// Mean time from `connect()` to ESTABLISHED of the OK connections.
    pub tcp_connect_ms_mean: f64,
    /// Mean time from `connect()` to the last byte of the response of the
    /// OK connections.
    pub tcp_exchange_ms_mean: f64,
    pub udp_requests: u64,
    /// Replies matching an outstanding request within `udp_timeout_ms`.
    pub udp_replies: u64,
    pub udp_timeouts: u64,
    /// Frames queued on the appliance's RX queues.
    pub frames_to_appliance: u64,
    /// Frames the appliance transmitted on any port.
    pub frames_from_appliance: u64,
    /// Frames toward the appliance lost for want of a pool buffer.
    pub rx_nombuf: u64,
    /// Frames toward the appliance lost to a full RX queue.
    pub rx_queue_full: u64,
    /// Frames from the appliance (or a server) with no host or uplink to go to.
    pub unroutable: u64,
    /// Server sockets in SYN-RECEIVED now (a gauge, summed over servers, as
    /// of each server's last service).
    pub server_syn_received: u64,
    /// Server connections that left SYN-RECEIVED without ever reaching
    /// ESTABLISHED because of an RST (smoltcp returns the listener to
    /// LISTEN), or left it early for CLOSED.
    pub server_half_open_reset: u64,
    /// Server connections that left SYN-RECEIVED for CLOSED after at least
    /// half the server sockets' timeout: nobody completed the handshake.
    pub server_half_open_timeout: u64,
    /// Server sockets that reached ESTABLISHED.
    pub server_connections_established: u64,
    pub uplinks: Vec<SimUplinkStats>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SimUplinkStats {
    pub name: String,
    pub delay_ms: f64,
    pub jitter_ms: f64,
    pub loss: f64,
    /// Frames that entered the UP line (appliance or proxy → servers), lost
    /// ones included.
    pub frames_up: u64,
    /// Frames that entered the DOWN line (servers → appliance or proxy),
    /// lost ones included.
    pub frames_down: u64,
    /// Frames the line lost, both directions.
    pub lost: u64,
    /// The link between the appliance and the path is up
    /// ([`SimHandle::set_link`]).
    pub link_up: bool,
    /// Frames dropped because the link was down: sent by the appliance, or
    /// on their way to it (not counted in `frames_up` / `frames_down`).
    pub link_down_drops: u64,
    /// A SYN proxy sits on this uplink.
    pub proxy: bool,
    /// One-way delay between the appliance and the proxy (0 without one).
    pub proxy_delay_ms: f64,
    /// SYNs the proxy answered itself (retransmitted SYNs included).
    pub proxy_syn_answered: u64,
    /// Connections the proxy spliced to their server (server's SYN+ACK came).
    pub proxy_connections: u64,
    /// Datagrams the proxy passed unchanged (not TCP, malformed, untracked).
    pub proxy_passed: u64,
    /// Segments the proxy dropped (bad checksum, full hold queue, wrong state).
    pub proxy_dropped: u64,
}

impl Shared {
    fn stats(&self) -> SimStats {
        let c = &self.counters;
        let ok = c.tcp_ok.get();
        SimStats {
            tcp_connections_ok: ok,
            tcp_connections_failed: c.tcp_failed.get(),
            tcp_connections_reset: c.tcp_reset.get(),
            tcp_connect_ms_mean: if ok == 0 {
                0.0
            } else {
                c.tcp_connect_us.get() as f64 / ok as f64 / 1000.0
            },
            tcp_exchange_ms_mean: if ok == 0 {
                0.0
            } else {
                c.tcp_exchange_us.get() as f64 / ok as f64 / 1000.0
            },
            udp_requests: c.udp_requests.get(),
            udp_replies: c.udp_replies.get(),
            udp_timeouts: c.udp_timeouts.get(),
            frames_to_appliance: c.frames_to_appliance.get(),
            frames_from_appliance: c.frames_from_appliance.get(),
            rx_nombuf: c.rx_nombuf.get(),
            rx_queue_full: c.rx_queue_full.get(),
            unroutable: c.unroutable.get(),
            server_syn_received: c.server_syn_received.get(),
            server_half_open_reset: c.server_half_open_reset.get(),
            server_half_open_timeout: c.server_half_open_timeout.get(),
            server_connections_established: c.server_connections_established.get(),
            uplinks: self
                .uplinks
                .iter()
                .map(|u| SimUplinkStats {
                    name: u.name.clone(),
                    delay_ms: u.delay_ms.get(),
                    jitter_ms: u.jitter_ms.get(),
                    loss: u.loss.get(),
                    frames_up: u.frames_up.get(),
                    frames_down: u.frames_down.get(),
                    lost: u.lost.get(),
                    link_up: u.link_up.load(Ordering::Relaxed),
                    link_down_drops: u.link_down_drops.get(),
                    proxy: u.proxy,
                    proxy_delay_ms: u.proxy_delay_ms,
                    proxy_syn_answered: u.proxy_syn_answered.get(),
                    proxy_connections: u.proxy_connections.get(),
                    proxy_passed: u.proxy_passed.get(),
                    proxy_dropped: u.proxy_dropped.get(),
                })
                .collect(),
        }
    }
}

/// An RX queue of a sim port: frames the site thread queued for the appliance.
struct SimRxQueue(Arc<ArrayQueue<HeapBuf>>);

impl RxQueue<HeapBuf> for SimRxQueue {
    fn rx_burst(&mut self, out: &mut Burst<HeapBuf>, max: usize) -> usize {
        let n = max.min(out.remaining_capacity());
        let mut got = 0;
        while got < n {
            let Some(b) = self.0.pop() else { break };
            out.push(b);
            got += 1;
        }
        got
    }
}

/// A TX queue of a sim port: frames the site thread takes and routes.
struct SimTxQueue {
    queue: Arc<ArrayQueue<HeapBuf>>,
    shared: Arc<Shared>,
}

impl TxQueue<HeapBuf> for SimTxQueue {
    fn tx_burst(&mut self, pkts: &mut Burst<HeapBuf>) -> usize {
        let mut taken = 0;
        let mut rest: Burst<HeapBuf> = Burst::new();
        for p in pkts.drain(..) {
            if !rest.is_empty() {
                rest.push(p);
                continue;
            }
            match self.queue.push(p) {
                Ok(()) => taken += 1,
                Err(p) => rest.push(p),
            }
        }
        *pkts = rest;
        if taken > 0 {
            // One atomic swap while the site is awake; a futex wake if it sleeps.
            if let Some(t) = self.shared.site_thread.get() {
                t.unpark();
            }
        }
        taken
    }
}

/// The simulated site. Built by [`SimSite::open`], run by [`SimSite::start`].
pub struct SimSite {
    shared: Arc<Shared>,
    site: Option<Box<site::Site>>,
    thread: Option<JoinHandle<()>>,
}

/// A cheap, cloneable view of a running site: stats and uplink conditions.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
}

impl SimSite {
    /// Builds hosts and queues; starts no thread. Err(message) on a setup problem.
    pub fn open(
        plan: &Plan,
        pool: &'static HeapPool,
    ) -> Result<(Vec<PortQueues<HeapBuf>>, SimSite), String> {
        let sim = plan
            .sim
            .as_ref()
            .ok_or("the plan has no [sim] section (backend = \"sim\" needs one)")?;
        let topo = &plan.topology;
        if sim.uplinks.len() != topo.uplinks.len() {
            return Err(format!(
                "{} sim uplinks for {} uplinks; every uplink needs one [[sim.uplinks]] entry",
                sim.uplinks.len(),
                topo.uplinks.len()
            ));
        }
        if topo.ports.len() != plan.ports.len() || usize::from(topo.lan_port) >= topo.ports.len() {
            return Err("the plan's ports and topology disagree".into());
        }
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            uplinks: topo
                .uplinks
                .iter()
                .zip(&sim.uplinks)
                .map(|(u, p)| UplinkPath {
                    name: u.name.clone(),
                    port: usize::from(u.port),
                    delay_ms: AtomicF64::new(p.delay_ms),
                    jitter_ms: AtomicF64::new(p.jitter_ms),
                    loss: AtomicF64::new(p.loss),
                    link_up: AtomicBool::new(true),
                    proxy: p.proxy,
                    proxy_delay_ms: if p.proxy { p.proxy_delay_ms } else { 0.0 },
                    frames_up: Counter::new(),
                    frames_down: Counter::new(),
                    lost: Counter::new(),
                    link_down_drops: Counter::new(),
                    proxy_syn_answered: Counter::new(),
                    proxy_connections: Counter::new(),
                    proxy_passed: Counter::new(),
                    proxy_dropped: Counter::new(),
                })
                .collect(),
            stop: AtomicBool::new(false),
            clients_paused: AtomicBool::new(false),
            site_thread: OnceLock::new(),
        });
        let rx_n = plan.rx_queues.max(1);
        let tx_n = plan.tx_queues.max(1);
        let mut queues = Vec::with_capacity(plan.ports.len());
        let mut ports = Vec::with_capacity(plan.ports.len());
        for _ in &plan.ports {
            let rx: Vec<_> = (0..rx_n)
                .map(|_| Arc::new(ArrayQueue::new(QUEUE_CAPACITY)))
                .collect();
            let tx: Vec<_> = (0..tx_n)
                .map(|_| Arc::new(ArrayQueue::new(QUEUE_CAPACITY)))
                .collect();
            queues.push(PortQueues {
                rx: rx
                    .iter()
                    .map(|q| Box::new(SimRxQueue(q.clone())) as Box<dyn RxQueue<HeapBuf>>)
                    .collect(),
                tx: tx
                    .iter()
                    .map(|q| {
                        Box::new(SimTxQueue {
                            queue: q.clone(),
                            shared: shared.clone(),
                        }) as Box<dyn TxQueue<HeapBuf>>
                    })
                    .collect(),
            });
            ports.push(site::PortIo { rx, tx });
        }
        let site = Box::new(site::Site::new(
            sim,
            topo.clone(),
            pool,
            shared.clone(),
            ports,
        ));
        Ok((
            queues,
            SimSite {
                shared,
                site: Some(site),
                thread: None,
            },
        ))
    }

    /// Spawns the site thread (once; later calls do nothing).
    pub fn start(&mut self) {
        let Some(site) = self.site.take() else { return };
        let spawned = std::thread::Builder::new()
            .name("sim-site".into())
            .spawn(move || site.run());
        match spawned {
            Ok(t) => {
                let _ = self.shared.site_thread.set(t.thread().clone());
                self.thread = Some(t);
            }
            // Without a thread the site stays idle; the stats show no traffic.
            Err(e) => eprintln!("sim: cannot start the site thread: {e}"),
        }
    }

    pub fn handle(&self) -> SimHandle {
        SimHandle {
            shared: self.shared.clone(),
        }
    }

    /// Stops and joins the site thread; returns final stats.
    pub fn stop(mut self) -> SimStats {
        self.join();
        self.shared.stats()
    }

    fn join(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for SimSite {
    fn drop(&mut self) {
        self.join();
    }
}

impl SimHandle {
    pub fn stats(&self) -> SimStats {
        self.shared.stats()
    }

    /// Changes an uplink's conditions while running (index into
    /// `plan.topology.uplinks`; others are ignored). Values are clamped to
    /// delay, jitter >= 0 and 0 <= loss <= 1; frames already in the line
    /// keep their release times.
    pub fn set_uplink(&self, uplink: usize, delay_ms: f64, jitter_ms: f64, loss: f64) {
        let Some(u) = self.shared.uplinks.get(uplink) else {
            return;
        };
        let clean = |v: f64, max: f64| if v.is_nan() { 0.0 } else { v.clamp(0.0, max) };
        u.delay_ms.set(clean(delay_ms, 1e6));
        u.jitter_ms.set(clean(jitter_ms, 1e6));
        u.loss.set(clean(loss, 1.0));
    }
}

/// An uplink of the site, by index (into `plan.topology.uplinks`) or by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimUplink<'a> {
    Index(usize),
    Name(&'a str),
}

impl From<usize> for SimUplink<'_> {
    fn from(i: usize) -> Self {
        SimUplink::Index(i)
    }
}

impl<'a> From<&'a str> for SimUplink<'a> {
    fn from(name: &'a str) -> Self {
        SimUplink::Name(name)
    }
}

impl<'a> From<&'a String> for SimUplink<'a> {
    fn from(name: &'a String) -> Self {
        SimUplink::Name(name)
    }
}

impl SimHandle {
    /// The index of an uplink (`None`: no such uplink).
    pub fn uplink_index<'a>(&self, uplink: impl Into<SimUplink<'a>>) -> Option<usize> {
        match uplink.into() {
            SimUplink::Index(i) => (i < self.shared.uplinks.len()).then_some(i),
            SimUplink::Name(n) => self.shared.uplinks.iter().position(|u| u.name == n),
        }
    }

    /// Takes an uplink's link down (or up again) while running, like pulling
    /// its cable between the appliance and the path (or its proxy): while
    /// it is down, frames the appliance sends on the uplink and frames on
    /// their way to the appliance over it are dropped (counted in
    /// `link_down_drops`), and [`BackendControl::link_up`] reports the
    /// uplink's port as down. Frames already beyond the appliance's link
    /// keep going. Returns false (and changes nothing) for an unknown uplink.
    pub fn set_link<'a>(&self, uplink: impl Into<SimUplink<'a>>, up: bool) -> bool {
        let Some(i) = self.uplink_index(uplink) else {
            return false;
        };
        self.shared.uplinks[i].link_up.store(up, Ordering::Relaxed);
        if let Some(t) = self.shared.site_thread.get() {
            t.unpark();
        }
        true
    }

    /// Whether an uplink's link is up (`None`: no such uplink).
    pub fn link(&self, uplink: usize) -> Option<bool> {
        self.shared
            .uplinks
            .get(uplink)
            .map(|u| u.link_up.load(Ordering::Relaxed))
    }
}

impl SimHandle {
    /// Pauses (or resumes) the clients: while paused they open no TCP
    /// connection and send no UDP request; what is under way finishes.
    pub fn pause_clients(&self, paused: bool) {
        self.shared.clients_paused.store(paused, Ordering::Relaxed);
        if let Some(t) = self.shared.site_thread.get() {
            t.unpark();
        }
    }
}

impl BackendControl for SimHandle {
    fn stats(&self) -> serde_json::Value {
        serde_json::to_value(self.shared.stats()).unwrap_or(serde_json::Value::Null)
    }

    /// A port is down while any uplink leaving through it has its link down
    /// ([`SimHandle::set_link`]); the LAN port is always up.
    fn link_up(&self, port: usize) -> bool {
        !self
            .shared
            .uplinks
            .iter()
            .any(|u| u.port == port && !u.link_up.load(Ordering::Relaxed))
    }
}
