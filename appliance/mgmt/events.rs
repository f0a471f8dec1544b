//! The management core's end of the lcores' NAT event rings: one reader
//! (the control socket's thread) drains them and hands each event to every
//! consumer it serves. Consumers register so the lcores log at all: with
//! none, the lcores do not build events (one branch per event site).
//!
//! A second consumer (a NAT log file, IPFIX) is another registration and
//! another callee of the same drain; the lcores are not touched again.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use pipelines::nat::NatEvent;

use crate::dataplane::assembly::LcoreView;
use crate::dataplane::rings::NatEventRing;

/// Events taken per drain call (the rest stay for the next one).
pub const DRAIN_MAX: usize = 8_192;

pub struct EventHub {
    rings: Vec<Arc<NatEventRing>>,
    consumers: usize,
}

impl EventHub {
    /// The rings of every translate lcore in `lcores`.
    pub fn new(lcores: &[LcoreView]) -> EventHub {
        EventHub {
            rings: lcores.iter().filter_map(|l| l.nat_events.clone()).collect(),
            consumers: 0,
        }
    }

    /// Sets how many consumers read events; the lcores log while it is
    /// non-zero (from their next loop turn).
    pub fn set_consumers(&mut self, n: usize) {
        if n != self.consumers {
            self.consumers = n;
            for r in &self.rings {
                r.consumers.store(n, Ordering::Relaxed);
            }
        }
    }

    pub fn consumers(&self) -> usize {
        self.consumers
    }

    /// Takes at most [`DRAIN_MAX`] events, the rings in turn, oldest
    /// first within each; `f` sees each. Returns how many.
    pub fn drain(&self, mut f: impl FnMut(&NatEvent)) -> usize {
        let mut n = 0;
        let mut more = true;
        while more && n < DRAIN_MAX {
            more = false;
            for r in &self.rings {
                if let Some(ev) = r.ring.pop() {
                    f(&ev);
                    n += 1;
                    more = true;
                }
            }
        }
        n
    }

    /// Events the lcores could not hand over (their buffers or rings were
    /// full), since the start.
    pub fn lost(&self) -> u64 {
        self.rings.iter().map(|r| r.lost.get()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_every_ring_in_turn_and_sets_consumers() {
        let views: Vec<Arc<NatEventRing>> = (0..2).map(|_| Arc::default()).collect();
        let mut hub = EventHub {
            rings: views.clone(),
            consumers: 0,
        };
        hub.set_consumers(2);
        assert!(views
            .iter()
            .all(|r| r.consumers.load(Ordering::Relaxed) == 2));
        let ev = |t: u64| {
            NatEvent::new(
                pipelines::Nanos(t),
                pipelines::nat::EventKind::SessionCreated,
                pipelines::nat::EventReason::None,
            )
        };
        for t in 0..3 {
            views[0].ring.push(ev(t)).unwrap();
        }
        views[1].ring.push(ev(10)).unwrap();
        views[1].lost.add(5);
        let mut seen = Vec::new();
        assert_eq!(hub.drain(|e| seen.push(e.time.0)), 4);
        assert_eq!(seen, [0, 10, 1, 2]);
        assert_eq!(hub.lost(), 5);
        hub.set_consumers(0);
        assert_eq!(views[1].consumers.load(Ordering::Relaxed), 0);
    }
}
