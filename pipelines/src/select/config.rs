//! The selection settings the configuration fills in (`[selection]`).

use crate::packet::time::Nanos;

#[derive(Clone, Debug)]
pub struct SelectConfig {
    /// How long a race's measurements let later connections to the
    /// destination skip the race (seed 001 [0041]: "if the stored time
    /// results are recent enough").
    pub rtt_cache_ttl: Nanos,
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    /// Most destinations the cache holds (the least recently raced are
    /// dropped first).
    pub cache_capacity: usize,
    /// On a cache hit, uplinks whose smoothed RTT is within this percentage
    /// of the best tie; the policy's algorithm picks among them.
    pub tie_margin_pct: u32,
    /// Weighted least load: weight of one TCP session and of one artificial
    /// UDP session.
    pub tcp_session_weight: u32,
    pub udp_session_weight: u32,
    /// Distinct destinations toward which failed race copies (with no
    /// answer in between) mark an uplink down (0: never by race copies;
    /// link state still counts). See `SelectionCore` for the rule.
    pub unanswered_limit: u32,
    /// Time constant of the least-traffic byte rate (an EWMA).
    pub traffic_window: Nanos,
}

impl Default for SelectConfig {
    fn default() -> Self {
        SelectConfig {
            rtt_cache_ttl: Nanos::from_secs(60),
            prefix_v4: 32,
            prefix_v6: 128,
            cache_capacity: 65536,
            tie_margin_pct: 10,
            tcp_session_weight: 1,
            udp_session_weight: 1,
            unanswered_limit: 3,
            traffic_window: Nanos::from_secs(1),
        }
    }
}
