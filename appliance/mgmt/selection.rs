//! The management core's part of uplink selection (seed 001): it drains the
//! translate lcores' selection events (RTT samples from SYN races,
//! unanswered race copies), feeds them to the RFC 6298 estimators and the
//! uplink health rules of [`SelectionCore`], gathers each uplink's load
//! (TCP + artificial UDP sessions over all shards, seed 000 [75]) and
//! traffic, and publishes an immutable [`Snapshot`] to every replicate and
//! translate lcore.
//!
//! Publication is lock-free: each lcore has a one-slot ring; the management
//! core replaces an unread snapshot there with the newer one. It also keeps
//! every published snapshot until it holds the last reference, so an lcore
//! dropping its old snapshot never frees a table on the data plane.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;
use pipelines::nat::NatCounters;

use pipelines::select::{AdminState, SelectConfig, SelectionCore, UplinkSelStats};
use pipelines::Nanos;

pub use crate::dataplane::rings::SelectionRings;

/// How often the management core drains events.
const DRAIN_EVERY: Duration = Duration::from_millis(5);

/// What the stats JSON shows of selection, refreshed at every publication.
#[derive(Clone, Debug, Default)]
pub struct SelectionView {
    pub uplinks: Vec<UplinkSelStats>,
    pub cache_entries: usize,
    pub snapshots_published: u64,
    pub events: u64,
}

/// An operator's change to an uplink (from the control socket), applied
/// by the selection thread and published at once.
#[derive(Clone, Debug)]
pub enum AdminCmd {
    /// Uplink index, its new administrative state.
    State(usize, AdminState),
    /// Uplink index, its new selection weight (>= 1).
    Weight(usize, u32),
    /// A reload's selection settings and publish interval (the uplinks'
    /// admin states and weights are kept).
    Config(SelectConfig, Duration),
}

/// Changes that can wait for the selection thread (it drains them every
/// few milliseconds; a full ring refuses a change, nothing is lost silently).
pub const ADMIN_RING_SIZE: usize = 64;

/// A request for the RTT table (`appliance rtt`): rows within a prefix,
/// at most `limit`.
#[derive(Clone, Copy, Debug)]
pub struct RttQuery {
    pub id: u64,
    pub within: Option<(std::net::IpAddr, u8)>,
    pub limit: usize,
}

/// The selection thread's table requests and answers: one in flight,
/// answered within one drain period (5 ms).
pub struct RttControl {
    pub requests: ArrayQueue<RttQuery>,
    pub replies: ArrayQueue<(u64, Vec<pipelines::select::RttRow>)>,
}

impl Default for RttControl {
    fn default() -> Self {
        RttControl {
            requests: ArrayQueue::new(1),
            replies: ArrayQueue::new(1),
        }
    }
}

/// Where the management core reads loads and link states.
pub struct SelectionInputs {
    pub nat: Vec<Arc<NatCounters>>,
    /// Link state of uplink i's port.
    pub link_up: Box<dyn Fn(usize) -> bool + Send>,
    pub uplinks: usize,
    /// The operator's uplink changes.
    pub admin: Arc<ArrayQueue<AdminCmd>>,
    /// The operator's RTT table requests.
    pub rtt: Arc<RttControl>,
}

/// Starts the management core's selection thread.
pub fn spawn(
    mut core: SelectionCore,
    rings: SelectionRings,
    inputs: SelectionInputs,
    mut publish_every: Duration,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    view: Arc<Mutex<SelectionView>>,
) -> std::io::Result<std::thread::JoinHandle<Result<(), String>>> {
    std::thread::Builder::new()
        .name("mgmt-selection".into())
        .spawn(move || {
            let mut published = Publisher::default();
            let mut last_publish = Instant::now();
            let mut events = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let now = Nanos(epoch.elapsed().as_nanos() as u64);
                for ring in &rings.events {
                    while let Some(ev) = ring.pop() {
                        core.on_event(&ev, now);
                        events += 1;
                    }
                }
                let mut changed = false;
                while let Some(cmd) = inputs.admin.pop() {
                    changed |= match cmd {
                        AdminCmd::State(u, st) => core.set_admin(u, st),
                        AdminCmd::Weight(u, w) => core.set_weight(u, w),
                        AdminCmd::Config(cfg, every) => {
                            core.set_config(cfg);
                            publish_every = every;
                            true
                        }
                    };
                }
                if let Some(q) = inputs.rtt.requests.pop() {
                    let rows = core.rtt_rows(now, q.within, q.limit);
                    let _ = inputs.rtt.replies.force_push((q.id, rows));
                }
                // An operator's change is published at once.
                if changed || last_publish.elapsed() >= publish_every {
                    last_publish = Instant::now();
                    let n = inputs.uplinks;
                    let mut loads = vec![(0u64, 0u64); n];
                    let mut bytes = vec![0u64; n];
                    for nat in &inputs.nat {
                        for (u, c) in nat.uplinks.iter().enumerate().take(n) {
                            loads[u].0 += c.tcp_sessions.get();
                            loads[u].1 += c.udp_sessions.get();
                            bytes[u] += c.tx_bytes.get() + c.rx_bytes.get();
                        }
                    }
                    let links: Vec<bool> = (0..n).map(|u| (inputs.link_up)(u)).collect();
                    core.tick(now, &loads, &bytes, &links);
                    let count = published.publish(core.snapshot(now), &rings.snapshots);
                    if let Ok(mut v) = view.lock() {
                        v.uplinks = core.uplink_stats();
                        v.cache_entries = core.cache_len();
                        v.snapshots_published = count;
                        v.events = events;
                    }
                }
                std::thread::sleep(DRAIN_EVERY);
            }
            Ok(())
        })
}

/// Publishes immutable snapshots from a management thread to lcores over
/// one-slot rings, and frees old ones on this thread: each published
/// snapshot is kept until this holds its last reference, so an lcore
/// replacing its snapshot only drops a reference, never a table.
pub struct Publisher<T> {
    published: VecDeque<Arc<T>>,
    count: u64,
}

impl<T> Default for Publisher<T> {
    fn default() -> Self {
        Publisher {
            published: VecDeque::new(),
            count: 0,
        }
    }
}

impl<T> Publisher<T> {
    /// Puts `snap` into every ring (replacing an unread older one) and
    /// frees the snapshots no lcore holds any more. Returns how many
    /// snapshots have been published.
    pub fn publish(&mut self, snap: T, rings: &[Arc<ArrayQueue<Arc<T>>>]) -> u64 {
        let snap = Arc::new(snap);
        for q in rings {
            let _ = q.pop();
            let _ = q.push(snap.clone());
        }
        self.published.push_back(snap);
        self.count += 1;
        while self.published.len() > 1 && Arc::strong_count(&self.published[0]) == 1 {
            self.published.pop_front();
        }
        self.count
    }
}
