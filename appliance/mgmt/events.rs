//! The management core's end of the lcores' NAT event rings: one reader
//! (the control socket's thread) drains them and hands each event to every
//! consumer it serves. Consumers register so the lcores log at all: with
//! none, the lcores do not build events (one branch per event site).
//!
//! The rings have one reader: whoever drains takes an event from every
//! other consumer. So the hub is shared (`Arc<Mutex<EventHub>>`) and tees:
//! each drained event is also pushed onto the NAT log's bounded queue
//! ([`LogTap`], when `[telemetry.nat_log]` is on) before the caller sees
//! it. The control thread drains while it has subscribers; the NAT log
//! thread drains (through [`EventHub::pump_log`]) only while it has none,
//! so neither steals the other's events.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;
use pipelines::nat::{EventKind, NatEvent, NO_UPLINK};
use pipelines::packet::flow::proto;
use serde_json::{json, Value};

use crate::dataplane::assembly::LcoreView;
use crate::dataplane::rings::NatEventRing;

/// Events taken per drain call (the rest stay for the next one).
pub const DRAIN_MAX: usize = 8_192;

/// Events the NAT log thread has not yet taken; beyond it they are
/// counted `nat_log.lost`.
pub const LOG_TAP_SIZE: usize = 65_536;

/// The NAT log's queue of events, filled by every drain of the hub; a
/// full queue counts `nat_log.lost` in `lost`.
pub struct LogTap {
    pub queue: ArrayQueue<NatEvent>,
    pub lost: Arc<AtomicU64>,
}

impl LogTap {
    pub fn new(lost: Arc<AtomicU64>) -> LogTap {
        LogTap {
            queue: ArrayQueue::new(LOG_TAP_SIZE),
            lost,
        }
    }
}

pub struct EventHub {
    rings: Vec<Arc<NatEventRing>>,
    consumers: usize,
    subscribers: usize,
    log: Option<Arc<LogTap>>,
}

impl EventHub {
    /// The rings of every translate lcore in `lcores`.
    pub fn new(lcores: &[LcoreView]) -> EventHub {
        EventHub {
            rings: lcores.iter().filter_map(|l| l.nat_events.clone()).collect(),
            consumers: 0,
            subscribers: 0,
            log: None,
        }
    }

    /// Sets how many event subscribers the control thread serves; the
    /// lcores log while they or the NAT log are there (from their next loop
    /// turn).
    pub fn set_consumers(&mut self, subscribers: usize) {
        self.subscribers = subscribers;
        let n = subscribers + usize::from(self.log.is_some());
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

    /// Attaches the NAT log: it counts as a consumer from now on, and
    /// every drain feeds `tap`.
    pub fn attach_log(&mut self, tap: Arc<LogTap>) {
        self.log = Some(tap);
        let subs = self.subscribers;
        self.set_consumers(subs);
    }

    /// The NAT log's queue, once attached.
    pub fn log_tap(&self) -> Option<Arc<LogTap>> {
        self.log.clone()
    }

    /// Drains for the NAT log when no subscriber's drain does (the control
    /// thread drains every 5 ms while it has subscribers). Returns how
    /// many events were taken.
    pub fn pump_log(&self) -> usize {
        if self.log.is_none() || self.subscribers > 0 {
            return 0;
        }
        self.drain(|_| {})
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
                    if let Some(t) = &self.log {
                        if t.queue.push(ev).is_err() {
                            t.lost.fetch_add(1, Ordering::Relaxed);
                        }
                    }
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

fn proto_name(p: u8) -> &'static str {
    match p {
        proto::TCP => "tcp",
        proto::UDP => "udp",
        proto::ICMP => "icmp",
        proto::ICMPV6 => "icmpv6",
        _ => "other",
    }
}

fn addr(a: SocketAddr) -> Value {
    if a.ip().is_unspecified() && a.port() == 0 {
        Value::Null
    } else {
        Value::String(a.to_string())
    }
}

/// A NAT event as JSON: `time_s` (since the appliance started), `kind`,
/// `proto`, `inside`, `outside`, `remote`, `uplink`, `reason`, and for a
/// race decided `winner` and `rtt_ms` (per member uplink, null when
/// unanswered); a race copy leaving (reason `race_lost`) has `rtt_ms` of
/// its own uplink (null: it never answered).
pub fn nat_event(ev: &NatEvent, uplinks: &[String]) -> Value {
    let name = |u: u8| -> Value {
        if u == NO_UPLINK {
            Value::Null
        } else {
            uplinks
                .get(usize::from(u))
                .map_or(Value::Null, |n| Value::String(n.clone()))
        }
    };
    let mut v = json!({
        "time_s": ev.time.0 as f64 / 1e9,
        "kind": ev.kind.as_str(),
        "proto": proto_name(ev.proto),
        "inside": addr(ev.inside),
        "outside": addr(ev.outside),
        "remote": addr(ev.remote),
        "uplink": name(ev.uplink),
    });
    let reason = ev.reason.as_str();
    if !reason.is_empty() {
        v["reason"] = json!(reason);
    }
    let lost = ev.reason == pipelines::nat::EventReason::RaceLost;
    if ev.kind == EventKind::RaceDecided || lost {
        if !lost {
            v["winner"] = name(ev.winner);
        }
        let rtts: serde_json::Map<String, Value> = ev
            .race_rtts()
            .iter()
            .filter(|(u, _)| *u != NO_UPLINK)
            .map(|(u, r)| {
                let n = name(*u).as_str().unwrap_or("?").to_string();
                (n, r.map_or(Value::Null, |r| json!(r.0 as f64 / 1e6)))
            })
            .collect();
        v["rtt_ms"] = Value::Object(rtts);
    }
    v
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
            subscribers: 0,
            log: None,
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

    #[test]
    fn the_log_tap_sees_every_drained_event_and_drains_only_without_subscribers() {
        let ring: Arc<NatEventRing> = Arc::default();
        let mut hub = EventHub {
            rings: vec![ring.clone()],
            consumers: 0,
            subscribers: 0,
            log: None,
        };
        let lost = Arc::new(AtomicU64::new(0));
        let tap = Arc::new(LogTap::new(lost.clone()));
        hub.attach_log(tap.clone());
        assert_eq!(ring.consumers.load(Ordering::Relaxed), 1, "the log counts");
        hub.set_consumers(2);
        assert_eq!(ring.consumers.load(Ordering::Relaxed), 3);
        let ev = |t: u64| {
            NatEvent::new(
                pipelines::Nanos(t),
                pipelines::nat::EventKind::SessionCreated,
                pipelines::nat::EventReason::None,
            )
        };
        ring.ring.push(ev(1)).unwrap();
        // With subscribers the control thread drains; the log does not.
        assert_eq!(hub.pump_log(), 0);
        let mut seen = Vec::new();
        assert_eq!(hub.drain(|e| seen.push(e.time.0)), 1);
        assert_eq!(seen, [1]);
        assert_eq!(tap.queue.pop().map(|e| e.time.0), Some(1), "teed");
        // Without subscribers the log drains for itself.
        hub.set_consumers(0);
        assert_eq!(ring.consumers.load(Ordering::Relaxed), 1);
        ring.ring.push(ev(2)).unwrap();
        assert_eq!(hub.pump_log(), 1);
        assert_eq!(tap.queue.pop().map(|e| e.time.0), Some(2));
        // A full tap counts what it did not take.
        for t in 0..LOG_TAP_SIZE as u64 + 3 {
            let _ = tap.queue.push(ev(t));
        }
        ring.ring.push(ev(9)).unwrap();
        hub.pump_log();
        assert_eq!(lost.load(Ordering::Relaxed), 1);
    }
}
