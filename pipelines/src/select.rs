//! TEMPORARY stub of the select module (replaced by branch select-core).
#![allow(dead_code, unused_variables)]
use std::net::IpAddr;
use std::sync::Arc;

use crate::time::Nanos;
use crate::topology::UplinkId;

pub const RACE_MAX: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RoundRobin,
    LeastLoad,
    LeastTraffic,
    WeightedLeastLoad,
    ResponseTime,
}
impl Algorithm {
    pub const ALL: [Algorithm; 5] = [
        Algorithm::RoundRobin,
        Algorithm::LeastLoad,
        Algorithm::LeastTraffic,
        Algorithm::WeightedLeastLoad,
        Algorithm::ResponseTime,
    ];
    pub const NAMES: [&'static str; 5] = [
        "round-robin",
        "least-load",
        "least-traffic",
        "weighted-least-load",
        "response-time",
    ];
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self.index()]
    }
    pub fn index(self) -> usize {
        self as usize
    }
}
impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| format!("one of {}", Self::NAMES.join(", ")))
    }
}
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub uplinks: Vec<UplinkView>,
}
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UplinkView {
    pub healthy: bool,
    pub link_up: bool,
    pub weight: u32,
}
#[derive(Clone, Debug, Default)]
pub struct SelectConfig {
    pub rtt_cache_ttl: Nanos,
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    pub cache_capacity: usize,
    pub tie_margin_pct: u32,
    pub tcp_session_weight: u32,
    pub udp_session_weight: u32,
    pub unanswered_limit: u32,
    pub traffic_window: Nanos,
}
impl Snapshot {
    pub fn initial(cfg: &SelectConfig, weights: &[u32]) -> Snapshot {
        Snapshot {
            uplinks: weights
                .iter()
                .map(|w| UplinkView {
                    healthy: true,
                    link_up: true,
                    weight: *w,
                })
                .collect(),
        }
    }
    pub fn fresh(&self, dst: IpAddr, now: Nanos) -> Option<&()> {
        None
    }
    pub fn healthy_mask(&self) -> u64 {
        let mut m = 0;
        for (i, u) in self.uplinks.iter().enumerate() {
            if u.healthy {
                m |= 1 << i;
            }
        }
        m
    }
}
pub struct Selector {
    snap: Arc<Snapshot>,
    rr: usize,
}
impl Selector {
    pub fn new(snap: Arc<Snapshot>) -> Selector {
        Selector { snap, rr: 0 }
    }
    pub fn install(&mut self, snap: Arc<Snapshot>) -> Arc<Snapshot> {
        std::mem::replace(&mut self.snap, snap)
    }
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snap
    }
    pub fn cached(
        &mut self,
        dst: IpAddr,
        candidates: u64,
        alg: Algorithm,
        proto: u8,
        now: Nanos,
    ) -> Option<UplinkId> {
        None
    }
    pub fn pick(
        &mut self,
        alg: Algorithm,
        dst: IpAddr,
        proto: u8,
        candidates: u64,
    ) -> Option<UplinkId> {
        if candidates == 0 {
            return None;
        }
        for _ in 0..64 {
            self.rr = (self.rr + 1) % 64;
            if candidates & (1 << self.rr) != 0 {
                return Some(self.rr as UplinkId);
            }
        }
        None
    }
}
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SelEvent {
    Answer {
        dst: IpAddr,
        uplink: UplinkId,
        rtt: Option<Nanos>,
        raced: bool,
        decided: bool,
    },
    Unanswered {
        uplink: UplinkId,
    },
}
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UplinkSelStats {
    pub healthy: bool,
    pub link_up: bool,
    pub unanswered_streak: u32,
    pub unanswered: u64,
    pub answers: u64,
    pub rtt: RttEstimator,
    pub traffic_bps: u64,
    pub transitions: u64,
}
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RttEstimator {}
impl RttEstimator {
    pub fn smoothed(&self) -> Option<Nanos> {
        None
    }
    pub fn min(&self) -> Option<Nanos> {
        None
    }
    pub fn var(&self) -> Nanos {
        Nanos(0)
    }
    pub fn samples(&self) -> u64 {
        0
    }
}
pub struct SelectionCore {}
impl SelectionCore {
    pub fn new(cfg: SelectConfig, weights: Vec<u32>) -> SelectionCore {
        SelectionCore {}
    }
    pub fn on_event(&mut self, ev: &SelEvent, now: Nanos) {}
    pub fn tick(&mut self, now: Nanos, loads: &[(u64, u64)], bytes: &[u64], link_up: &[bool]) {}
    pub fn snapshot(&mut self, now: Nanos) -> Snapshot {
        Snapshot::initial(&SelectConfig::default(), &[1, 1, 1])
    }
    pub fn uplink_stats(&self) -> Vec<UplinkSelStats> {
        vec![]
    }
    pub fn cache_len(&self) -> usize {
        0
    }
}
