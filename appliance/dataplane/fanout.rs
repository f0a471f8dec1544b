//! Fanning a burst out to rings, the one way every lcore output that spreads
//! packets over several rings works (hand-off to the owner of a NAT shard,
//! the rings to the next group, hairpin rings): each packet joins the pending
//! burst of its ring, a pending burst that fills is enqueued at once, and the
//! rest wait for the end of the loop turn ([`flush`]). A full ring hands the
//! burst back: its packets are counted `ring_full` on the stage that produced
//! them and freed, so an lcore never waits on its peer.

use std::sync::Arc;

use crossbeam::queue::ArrayQueue;
use pipelines::{Burst, DropReason, PacketBuf, StageCounters};

/// A lock-free ring of bursts (the worker's `Ring`).
type Ring<B> = ArrayQueue<Burst<B>>;

/// One output of a fan-out: a ring, or `None` where there is none (an
/// lcore's own shard among its hand-off and hairpin outputs).
pub(crate) trait Slot<B: PacketBuf> {
    fn ring(&self) -> Option<&Ring<B>>;
}

impl<B: PacketBuf> Slot<B> for Arc<Ring<B>> {
    fn ring(&self) -> Option<&Ring<B>> {
        Some(self)
    }
}

impl<B: PacketBuf> Slot<B> for Option<Arc<Ring<B>>> {
    fn ring(&self) -> Option<&Ring<B>> {
        self.as_deref()
    }
}

/// Where one packet of a burst being fanned out goes.
pub(crate) enum Route {
    /// Stays in the burst (in order), for this lcore.
    Keep,
    /// Into the pending burst of this output.
    Out(usize),
    /// Nowhere: freed, counted `no_tx_port`.
    Drop,
}

/// Moves every packet of `burst` where `route` sends it. `pending` and
/// `rings` are indexed alike; every index `route` gives must be in both.
pub(crate) fn fan_out<B: PacketBuf, R: Slot<B>>(
    burst: &mut Burst<B>,
    pending: &mut [Burst<B>],
    rings: &[R],
    counters: &StageCounters,
    mut route: impl FnMut(&B) -> Route,
) {
    let mut kept = Burst::new();
    for pkt in burst.drain(..) {
        match route(&pkt) {
            Route::Keep => kept.push(pkt),
            Route::Out(i) => {
                if pending[i].is_full() {
                    let full = std::mem::take(&mut pending[i]);
                    enqueue(rings, i, full, counters);
                }
                pending[i].push(pkt);
            }
            // Dropping the buffer returns it to its pool.
            Route::Drop => counters.count_drop(DropReason::NoTxPort),
        }
    }
    *burst = kept;
}

/// Enqueues every non-empty pending burst (end of a loop turn).
pub(crate) fn flush<B: PacketBuf, R: Slot<B>>(
    pending: &mut [Burst<B>],
    rings: &[R],
    counters: &StageCounters,
) {
    for (i, out) in pending.iter_mut().enumerate() {
        if !out.is_empty() {
            enqueue(rings, i, std::mem::take(out), counters);
        }
    }
}

/// Pushes one burst onto output `i`'s ring. A full ring hands the burst
/// back: its packets are counted `ring_full` and freed.
pub(crate) fn enqueue<B: PacketBuf, R: Slot<B>>(
    rings: &[R],
    i: usize,
    burst: Burst<B>,
    counters: &StageCounters,
) {
    match rings.get(i).and_then(|r| r.ring()) {
        Some(ring) => {
            if let Err(back) = ring.push(burst) {
                counters.count_drops(DropReason::RingFull, back.len() as u64);
            }
        }
        // Routes only name outputs with a ring.
        None => counters.count_drops(DropReason::NoTxPort, burst.len() as u64),
    }
}
