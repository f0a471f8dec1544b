//! Single-writer counters readable by other threads without locks.
//!
//! Each counter has exactly one writing thread (the lcore that owns the stage
//! or queue); the management core only reads. An increment is therefore a
//! relaxed load and store, which compiles to plain moves on x86 (no locked
//! read-modify-write), while readers still see a value that was actually
//! written. Counters are 64 bits: at 100 Mpps one wraps after 5,800 years.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::packet::drop::DropReason;

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    /// Adds `n`. Must only be called from the counter's single writer.
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Overwrites the value; for gauges with a single writer.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of one stage instance: packets it processed and packets it
/// dropped, by reason. One instance per (stage, lcore); the management core
/// sums instances of the same stage.
#[derive(Debug)]
pub struct StageCounters {
    pub packets: Counter,
    drops: [Counter; DropReason::COUNT],
}

impl Default for StageCounters {
    fn default() -> Self {
        StageCounters {
            packets: Counter::new(),
            drops: std::array::from_fn(|_| Counter::new()),
        }
    }
}

impl StageCounters {
    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].inc();
    }

    #[inline]
    pub fn count_drops(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].add(n);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }
}
