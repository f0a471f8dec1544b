//! `appliance events`: the control thread streams events to subscribed
//! clients, one JSON line each (`{"v":1,"event":{...}}`) after the answer
//! to `{"v":1,"cmd":"events"}`.
//!
//! Sources: the lcores' NAT events (sessions created, expired, flushed;
//! races decided with the winner and RTTs; limits hit), drained through the
//! [`EventHub`], and uplink changes (admin state, health, link) seen in the
//! selection view. Bounds: each subscriber gets at most [`RATE`] events per
//! second (a token bucket of [`RATE`]) and at most [`BACKLOG`] bytes of
//! unsent lines; what is beyond is dropped for that subscriber only, counted
//! (`events.subscriber_dropped`) and announced in an `events_dropped` line
//! once a second. The lcores never wait: a full ring counts `events.lost`.

use std::time::{Duration, Instant};

use pipelines::select::UplinkSelStats;
use serde_json::{json, Value};

/// Events per second one subscriber receives at most.
pub const RATE: f64 = 2_000.0;
/// Unsent event bytes per subscriber beyond which events are dropped.
pub const BACKLOG: usize = 1 << 20;

/// One subscribed client's budget.
pub struct Subscription {
    tokens: f64,
    refilled: Instant,
    /// Dropped since the last `events_dropped` line.
    pub dropped: u64,
    announced: Instant,
}

impl Default for Subscription {
    fn default() -> Self {
        Subscription {
            tokens: RATE,
            refilled: Instant::now(),
            dropped: 0,
            announced: Instant::now(),
        }
    }
}

impl Subscription {
    /// Whether one more event may go to a client with `pending` unsent
    /// bytes; a refusal is counted.
    pub fn admit(&mut self, pending: usize) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + dt * RATE).min(RATE);
        if self.tokens >= 1.0 && pending < BACKLOG {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// The `events_dropped` line due now (at most one a second), if any
    /// were dropped.
    pub fn dropped_line(&mut self) -> Option<String> {
        if self.dropped == 0 || self.announced.elapsed() < Duration::from_secs(1) {
            return None;
        }
        self.announced = Instant::now();
        let n = std::mem::take(&mut self.dropped);
        Some(line(json!({"kind": "events_dropped", "count": n})))
    }
}

/// An event line (newline included).
pub fn line(event: Value) -> String {
    json!({"v": super::protocol::VERSION, "event": event}).to_string() + "\n"
}

pub use crate::mgmt::events::nat_event;

/// Uplink state changes between two views of the selection: one event per
/// uplink whose admin state, health or link changed.
pub fn uplink_changes(
    before: &[UplinkSelStats],
    now: &[UplinkSelStats],
    uplinks: &[String],
) -> Vec<Value> {
    now.iter()
        .zip(before)
        .enumerate()
        .filter(|(_, (n, b))| {
            n.admin != b.admin || n.healthy != b.healthy || n.link_up != b.link_up
        })
        .map(|(i, (n, _))| {
            json!({
                "kind": "uplink",
                "uplink": uplinks.get(i).cloned().unwrap_or_default(),
                "admin": n.admin.as_str(),
                "health": if n.healthy { "up" } else { "down" },
                "link": if n.link_up { "up" } else { "down" },
            })
        })
        .collect()
}

/// One event as a line of text (`conntrack -E` style).
pub fn text(ev: &Value) -> String {
    let s = |k: &str| ev[k].as_str().unwrap_or("-").to_string();
    let kind = s("kind");
    match kind.as_str() {
        "uplink" => format!(
            "[UPLINK] {} admin {} health {} link {}",
            s("uplink"),
            s("admin"),
            s("health"),
            s("link")
        ),
        "events_dropped" => format!(
            "[DROPPED] {} events (this client reads too slowly)",
            ev["count"]
        ),
        _ => {
            let tag = match kind.as_str() {
                "session_created" => "NEW",
                "session_expired" => "EXPIRE",
                "session_flushed" => "FLUSH",
                "race_decided" => "RACE",
                "race_started" => "RACE-START",
                "limit_hit" => "LIMIT",
                _ => "?",
            };
            let mut t = format!(
                "{:>10.3} [{tag}] {} {} -> {} via {} as {}",
                ev["time_s"].as_f64().unwrap_or(0.0),
                s("proto"),
                s("inside"),
                s("remote"),
                s("uplink"),
                s("outside")
            );
            if let Some(r) = ev["reason"].as_str() {
                t.push_str(&format!(" ({r})"));
            }
            if let Some(rtts) = ev["rtt_ms"].as_object() {
                if ev.get("winner").is_some() {
                    t.push_str(&format!(" winner {}", s("winner")));
                }
                for (u, r) in rtts {
                    match r.as_f64() {
                        Some(ms) => t.push_str(&format!(" {u} {ms:.1} ms")),
                        None => t.push_str(&format!(" {u} -")),
                    }
                }
            }
            t
        }
    }
}
