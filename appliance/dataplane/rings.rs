//! The rings between the lcores and the management core: what the
//! assembly creates for each lcore and hands, as these bundles, to the
//! management threads that drain and feed them (`mgmt::selection`,
//! `mgmt::redirect`). They live here, below the management core, so the
//! data plane never imports it.

use std::sync::Arc;

use crossbeam::queue::ArrayQueue;
use pipelines::nat::{NatCounters, SessionFilter, SessionInfo};
use pipelines::redirect::db::Snapshot as RedirectSnapshot;
use pipelines::redirect::service::{ServiceCounters, ServiceEvent};
use pipelines::select::policy::SelectionCounters;
use pipelines::select::{SelEvent, Snapshot};

/// Events each translate lcore can have in flight toward the management
/// core (about 10 ms of 300 k races/s with three uplinks).
pub const SELECTION_EVENT_RING_SIZE: usize = 16_384;

/// The management core's ends of the selection rings, one per lcore.
#[derive(Default)]
pub struct SelectionRings {
    /// One per lcore with replicate or translate.
    pub snapshots: Vec<Arc<ArrayQueue<Arc<Snapshot>>>>,
    /// One per translate lcore.
    pub events: Vec<Arc<ArrayQueue<SelEvent>>>,
    /// The selection counters of every replicate and translate stage.
    pub counters: Vec<Arc<SelectionCounters>>,
}

/// Failure reports each translate lcore can have in flight.
pub const REDIRECT_EVENT_RING_SIZE: usize = 4096;

/// The management core's ends of the redirection rings.
#[derive(Default)]
pub struct RedirectRings {
    /// One per translate lcore.
    pub snapshots: Vec<Arc<ArrayQueue<Arc<RedirectSnapshot>>>>,
    pub events: Vec<Arc<ArrayQueue<ServiceEvent>>>,
    pub counters: Vec<Arc<ServiceCounters>>,
    pub nat: Vec<Arc<NatCounters>>,
}

/// Slots a translate lcore visits per session request (listing or flush)
/// between two turns: about 16 µs at 1 ns a slot, so its packets wait
/// no longer than an idle back-off.
pub const SESSION_SCAN: usize = 16_384;

/// The most sessions one request returns.
pub const SESSION_PAGE: usize = 1_000;

/// A session request from the management core to a translate lcore.
#[derive(Clone, Debug)]
pub struct NatQuery {
    /// Echoed in the reply (a late reply to an abandoned request is told
    /// apart from the current one).
    pub id: u64,
    pub filter: SessionFilter,
    /// The slot to start from.
    pub cursor: u32,
    /// At most this many sessions (capped to [`SESSION_PAGE`]).
    pub max: usize,
    /// Remove the matching sessions instead of listing them.
    pub flush: bool,
}

/// A translate lcore's answer to a [`NatQuery`].
#[derive(Clone, Debug, Default)]
pub struct NatReply {
    pub id: u64,
    pub sessions: Vec<SessionInfo>,
    pub removed: usize,
    /// Where to resume; `None` at the shard's end.
    pub next: Option<u32>,
}

/// One translate lcore's session control rings: one request in flight,
/// taken between two loop turns.
pub struct NatControl {
    pub requests: ArrayQueue<NatQuery>,
    pub replies: ArrayQueue<NatReply>,
}

impl Default for NatControl {
    fn default() -> Self {
        NatControl {
            requests: ArrayQueue::new(1),
            replies: ArrayQueue::new(1),
        }
    }
}

/// The settings a reload changes on an lcore: the selection policy
/// (replicate, translate), the NAT shard's live settings (translate) and
/// the service map (classify).
#[derive(Debug)]
pub struct LiveSettings {
    /// Counts reloads from 1; an lcore records the last it applied.
    pub version: u64,
    pub policy: Arc<pipelines::select::policy::SelectionPolicy>,
    /// Only the fields `NatShard::set_live` takes are used.
    pub nat: pipelines::nat::NatConfig,
    /// Classify's new service map when the reload changed `[redirection]`
    /// (`None`: keep the current one).
    pub services: Option<Arc<pipelines::redirect::service::ServiceMap>>,
}

/// One lcore's reload ring: the newest settings (an unread older one is
/// replaced), taken at the start of a loop turn like a snapshot, and the
/// version it applied last.
pub struct SettingsControl {
    pub slot: ArrayQueue<Arc<LiveSettings>>,
    pub applied: std::sync::atomic::AtomicU64,
}

impl Default for SettingsControl {
    fn default() -> Self {
        SettingsControl {
            slot: ArrayQueue::new(1),
            applied: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// Frames one lcore can hold for a running capture before it counts them
/// lost (with the largest snaplen, 64 MiB at most per lcore).
pub const CAPTURE_RING_SIZE: usize = 1024;
/// The largest capture snaplen (bytes kept of each frame).
pub const CAPTURE_SNAPLEN_MAX: u32 = 65_535;
/// Capture flag bits, per port.
pub const CAPTURE_RX: u8 = 1;
pub const CAPTURE_TX: u8 = 2;

/// A frame an lcore copied for `appliance capture`.
#[derive(Clone, Debug)]
pub struct CapturedFrame {
    pub port: u16,
    /// Sent (else received).
    pub tx: bool,
    /// Wall-clock time of its burst, since the Unix epoch.
    pub time: std::time::Duration,
    /// Its length on the wire; `data` holds at most the snaplen of it.
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// One lcore's capture tap: per-port flags the control thread sets (read
/// once per burst), the frames copied toward it, and what did not fit.
pub struct CaptureTap {
    /// Per port: [`CAPTURE_RX`] | [`CAPTURE_TX`] bits.
    pub ports: Vec<std::sync::atomic::AtomicU8>,
    pub snaplen: std::sync::atomic::AtomicU32,
    pub frames: ArrayQueue<CapturedFrame>,
    /// Written by the lcore only.
    pub copied: pipelines::packet::counter::Counter,
    /// Frames not copied because `frames` was full (written by the lcore).
    pub lost: pipelines::packet::counter::Counter,
}

impl CaptureTap {
    pub fn new(ports: usize) -> CaptureTap {
        CaptureTap {
            ports: (0..ports).map(|_| Default::default()).collect(),
            snaplen: CAPTURE_SNAPLEN_MAX.into(),
            frames: ArrayQueue::new(CAPTURE_RING_SIZE),
            copied: Default::default(),
            lost: Default::default(),
        }
    }

    /// Whether a burst of `port` in direction `dir` is to be copied: one
    /// relaxed load.
    #[inline]
    pub fn wants(&self, port: usize, dir: u8) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.ports
            .get(port)
            .is_some_and(|f| f.load(Relaxed) & dir != 0)
    }

    /// Copies `frames` (at most the snaplen of each) into the ring; what
    /// does not fit is counted lost, never waited for.
    pub fn copy<'a>(&self, port: usize, dir: u8, frames: impl Iterator<Item = &'a [u8]>) {
        use std::sync::atomic::Ordering::Relaxed;
        let snaplen = self.snaplen.load(Relaxed) as usize;
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        for d in frames {
            if self.frames.is_full() {
                self.lost.inc();
                continue;
            }
            let f = CapturedFrame {
                port: port as u16,
                tx: dir == CAPTURE_TX,
                time,
                orig_len: d.len() as u32,
                data: d[..d.len().min(snaplen)].to_vec(),
            };
            match self.frames.push(f) {
                Ok(()) => self.copied.inc(),
                Err(_) => self.lost.inc(),
            }
        }
    }
}

/// NAT events (`pipelines::nat::NatEvent`) each translate lcore can have in
/// flight toward the management core.
pub const NAT_EVENT_RING_SIZE: usize = crate::config::EVENT_RING_DEFAULT;

/// One translate lcore's NAT event ring. The lcore logs only while
/// `consumers` is non-zero (read once per turn), moves its shard's events
/// here every turn, and counts in `lost` those the ring (or the shard's
/// buffer) did not take: it never waits. The management core's
/// [`crate::mgmt::events::EventHub`] is the one reader; it hands each event
/// to every consumer (control socket subscribers, a log).
pub struct NatEventRing {
    pub ring: ArrayQueue<pipelines::nat::NatEvent>,
    pub lost: pipelines::Counter,
    pub consumers: std::sync::atomic::AtomicUsize,
}

impl Default for NatEventRing {
    fn default() -> Self {
        NatEventRing::new(NAT_EVENT_RING_SIZE)
    }
}

impl NatEventRing {
    /// A ring of `size` events (at least 1).
    pub fn new(size: usize) -> Self {
        NatEventRing {
            ring: ArrayQueue::new(size.max(1)),
            lost: pipelines::Counter::new(),
            consumers: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

#[cfg(test)]
#[path = "rings_tests.rs"]
mod tests;
