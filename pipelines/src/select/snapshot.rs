//! The read-mostly snapshot: what the management core publishes and every
//! data-plane [`Selector`](super::Selector) reads through an `Arc`
//! (uplink health, weights, loads, traffic, and the RTT cache).

use std::net::IpAddr;

use hashbrown::HashMap;

use super::config::SelectConfig;
use super::mask::bit;
use super::rtt::{CacheEntry, DestKey};
use crate::packet::time::Nanos;
use crate::topology::MAX_UPLINKS;

/// What the data plane knows of one uplink.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UplinkView {
    /// Usable for new connections.
    pub healthy: bool,
    pub link_up: bool,
    /// Drained by the operator: no new flows or races while another
    /// uplink is usable; its sessions stay.
    pub drained: bool,
    /// Capacity weight from the config, >= 1.
    pub weight: u32,
    /// Load (seed 000 [75]: TCP sessions plus artificial UDP sessions),
    /// summed over all shards.
    pub tcp_sessions: u64,
    pub udp_sessions: u64,
    /// Bytes per second over the traffic window, both directions.
    pub traffic_bps: u64,
    /// Smoothed RTT of the uplink over all destinations.
    pub srtt: Option<Nanos>,
}

/// Immutable; published by the management core, read by the data plane
/// through an `Arc`.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub version: u64,
    pub ttl: Nanos,
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    pub tie_margin_pct: u32,
    pub tcp_session_weight: u32,
    pub udp_session_weight: u32,
    /// At most [`MAX_UPLINKS`].
    pub uplinks: Vec<UplinkView>,
    pub rtt: HashMap<DestKey, CacheEntry>,
}

impl Snapshot {
    /// Before any measurement: every uplink healthy and link up, with these
    /// weights (0 counts as 1; uplinks past [`MAX_UPLINKS`] are left out).
    pub fn initial(cfg: &SelectConfig, weights: &[u32]) -> Snapshot {
        Snapshot {
            version: 0,
            ttl: cfg.rtt_cache_ttl,
            prefix_v4: cfg.prefix_v4,
            prefix_v6: cfg.prefix_v6,
            tie_margin_pct: cfg.tie_margin_pct,
            tcp_session_weight: cfg.tcp_session_weight,
            udp_session_weight: cfg.udp_session_weight,
            uplinks: weights
                .iter()
                .take(MAX_UPLINKS)
                .map(|&w| UplinkView {
                    healthy: true,
                    link_up: true,
                    weight: w.max(1),
                    ..UplinkView::default()
                })
                .collect(),
            rtt: HashMap::new(),
        }
    }

    /// Bit i set: uplink i healthy.
    pub fn healthy_mask(&self) -> u64 {
        self.uplinks
            .iter()
            .enumerate()
            .filter(|(_, u)| u.healthy)
            .fold(0, |m, (i, _)| m | bit(i))
    }

    /// Bit i set: uplink i healthy and not drained (what new flows use).
    pub fn usable_mask(&self) -> u64 {
        self.uplinks
            .iter()
            .enumerate()
            .filter(|(_, u)| u.healthy && !u.drained)
            .fold(0, |m, (i, _)| m | bit(i))
    }

    /// The cache key of `dst` under this snapshot's prefix lengths.
    pub fn key(&self, dst: IpAddr) -> DestKey {
        DestKey::new(dst, self.prefix_v4, self.prefix_v6)
    }

    /// The entry for `dst`, fresh or not.
    pub fn entry(&self, dst: IpAddr) -> Option<&CacheEntry> {
        self.rtt.get(&self.key(dst))
    }

    /// The fresh entry for `dst`, if any (seed 001 [0041]: "recent enough").
    pub fn fresh(&self, dst: IpAddr, now: Nanos) -> Option<&CacheEntry> {
        self.entry(dst).filter(|e| now.since(e.raced_at) < self.ttl)
    }
}
