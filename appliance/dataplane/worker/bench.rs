//! What `appliance bench` asks of a worker: a clock around each stage call
//! (nanoseconds and packets per stage, read by the bench between its
//! snapshots), and the no-op forwarder of `bench --compare`, where every stage
//! is a pass-through and transmit sends each packet out of the port its
//! generator named (`meta.out_port`). Off (`Worker::bench` = `None`) for
//! every other run: then a stage call costs one `Option` test more.

use std::sync::Arc;
use std::time::Instant;

use pipelines::{Burst, Counter, PacketBuf};

use crate::config::plan::Stage;

/// Time and packets spent in each stage of one lcore, indexed by
/// [`Stage`] as in [`Stage::ALL`].
#[derive(Debug, Default)]
pub struct StageClock {
    pub nanos: [Counter; 4],
    pub packets: [Counter; 4],
}

/// A worker's bench settings and clock.
#[derive(Debug, Default)]
pub struct BenchHooks {
    /// The no-op forwarder: stages move packets without looking at them.
    pub passthrough: bool,
    pub clock: StageClock,
}

/// Index of `s` in [`Stage::ALL`].
pub fn stage_index(s: Stage) -> usize {
    match s {
        Stage::Classify => 0,
        Stage::Replicate => 1,
        Stage::Translate => 2,
        Stage::Transmit => 3,
    }
}

/// Starts timing a stage call (`None` when not benchmarking).
#[inline]
pub(crate) fn start(hooks: &Option<Arc<BenchHooks>>) -> Option<Instant> {
    hooks.as_ref().map(|_| Instant::now())
}

/// Charges the time since `t0` and `packets` to `stage`.
#[inline]
pub(crate) fn stop(hooks: &Option<Arc<BenchHooks>>, stage: Stage, t0: Option<Instant>, n: usize) {
    if let (Some(h), Some(t0)) = (hooks.as_ref(), t0) {
        let i = stage_index(stage);
        h.clock.nanos[i].add(t0.elapsed().as_nanos() as u64);
        h.clock.packets[i].add(n as u64);
    }
}

/// Whether the stages are pass-throughs.
#[inline]
pub(crate) fn passthrough(hooks: &Option<Arc<BenchHooks>>) -> bool {
    hooks.as_ref().is_some_and(|h| h.passthrough)
}

/// The no-op transmit: moves packets from `burst` into the output burst of
/// their `meta.out_port` until that one is full (the caller flushes and calls
/// again). A port the lcore has no queue for takes port 0's.
pub(crate) fn pass_transmit<B: PacketBuf>(burst: &mut Burst<B>, per_port: &mut [Burst<B>]) {
    if per_port.is_empty() {
        burst.clear();
        return;
    }
    let mut kept = Burst::new();
    for pkt in burst.drain(..) {
        let p = usize::from(pkt.meta().out_port);
        let p = if p < per_port.len() { p } else { 0 };
        match per_port[p].try_push(pkt) {
            Ok(()) => {}
            Err(e) => kept.push(e.element()),
        }
    }
    *burst = kept;
}
