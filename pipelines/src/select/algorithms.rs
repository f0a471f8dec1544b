//! The load-sharing algorithms of RFC 2391 section 3.2 (seed 001 [0047]):
//! round robin, least load, least traffic, weighted least load, plus
//! response time. Each chooses one id of a candidate mask from a snapshot
//! and the picking selector's own state.

use std::net::IpAddr;

use super::mask::{best_of, Rotated};
use super::snapshot::{Snapshot, UplinkView};
use crate::topology::MAX_UPLINKS;

/// The load-sharing algorithms of RFC 2391 section 3.2 (plus response time,
/// seed 001 [0047]: "other types of load balancing algorithms such as those
/// described in RFC 2391").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Weighted round robin (RFC 2391 3.2.1), smooth as in nginx.
    RoundRobin,
    /// Fewest sessions (RFC 2391 3.2.2 "least load first").
    LeastLoad,
    /// Fewest bytes per second (RFC 2391 3.2.3 "least traffic first").
    LeastTraffic,
    /// Fewest weighted sessions per unit of capacity (RFC 2391 3.2.4).
    WeightedLeastLoad,
    /// Lowest smoothed round-trip time (seed 001 [0041], [0055]).
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

    /// The configuration names, in the order of [`Self::ALL`].
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

    /// Position in [`Self::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        match self {
            Algorithm::RoundRobin => 0,
            Algorithm::LeastLoad => 1,
            Algorithm::LeastTraffic => 2,
            Algorithm::WeightedLeastLoad => 3,
            Algorithm::ResponseTime => 4,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Algorithm::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown selection algorithm `{s}`; allowed: {}",
                    Self::NAMES.join(", ")
                )
            })
    }
}

/// New flows one selector put on each uplink since its snapshot (TCP, UDP,
/// other protocols): the loads count them on top of the snapshot's.
pub(super) struct LocalPicks<'a> {
    pub tcp: &'a [u64; MAX_UPLINKS],
    pub udp: &'a [u64; MAX_UPLINKS],
    pub other: &'a [u64; MAX_UPLINKS],
}

/// The id `alg` chooses among `cand` (every id of it < `snap.uplinks.len()`
/// <= [`MAX_UPLINKS`]; not empty), ties broken by the rotation `k`. `swrr`
/// is the round-robin state, updated by `RoundRobin` only.
pub(super) fn choose(
    alg: Algorithm,
    snap: &Snapshot,
    dst: IpAddr,
    cand: u64,
    k: u64,
    swrr: &mut [i64; MAX_UPLINKS],
    picks: &LocalPicks<'_>,
) -> Option<usize> {
    let up = &snap.uplinks;
    match alg {
        Algorithm::RoundRobin => round_robin(up, cand, k, swrr),
        Algorithm::LeastLoad => least_load(up, cand, k, picks),
        Algorithm::LeastTraffic => least_traffic(up, cand, k),
        Algorithm::WeightedLeastLoad => weighted_least_load(snap, cand, k, picks),
        Algorithm::ResponseTime => response_time(snap, dst, cand, k),
    }
}

/// RFC 2391 3.2.1: smooth weighted round robin (nginx) by uplink weight;
/// equal weights give strict rotation.
fn round_robin(
    up: &[UplinkView],
    cand: u64,
    k: u64,
    swrr: &mut [i64; MAX_UPLINKS],
) -> Option<usize> {
    let mut total: i64 = 0;
    for i in Rotated::new(cand, 0) {
        let w = i64::from(up[i].weight.max(1));
        swrr[i] = swrr[i].saturating_add(w);
        total = total.saturating_add(w);
    }
    let best = best_of(cand, k, |a, b| swrr[a] > swrr[b])?;
    swrr[best] = swrr[best].saturating_sub(total);
    Some(best)
}

/// RFC 2391 3.2.2: fewest TCP + UDP sessions, plus the selector's own picks
/// since the snapshot (a burst of new flows between two snapshots spreads
/// instead of landing on one uplink).
fn least_load(up: &[UplinkView], cand: u64, k: u64, p: &LocalPicks<'_>) -> Option<usize> {
    let load = |i: usize| {
        up[i]
            .tcp_sessions
            .saturating_add(up[i].udp_sessions)
            .saturating_add(p.tcp[i])
            .saturating_add(p.udp[i])
            .saturating_add(p.other[i])
    };
    best_of(cand, k, |a, b| load(a) < load(b))
}

/// RFC 2391 3.2.3: lowest `traffic_bps`.
fn least_traffic(up: &[UplinkView], cand: u64, k: u64) -> Option<usize> {
    best_of(cand, k, |a, b| up[a].traffic_bps < up[b].traffic_bps)
}

/// RFC 2391 3.2.4: lowest (tcp * tcp_session_weight + udp *
/// udp_session_weight, local picks weighted the same) / weight, compared by
/// cross-multiplication.
fn weighted_least_load(snap: &Snapshot, cand: u64, k: u64, p: &LocalPicks<'_>) -> Option<usize> {
    let up = &snap.uplinks;
    let (tw, uw) = (
        u128::from(snap.tcp_session_weight),
        u128::from(snap.udp_session_weight),
    );
    let load = |i: usize| {
        let tcp = u128::from(up[i].tcp_sessions.saturating_add(p.tcp[i]));
        let udp = u128::from(
            up[i]
                .udp_sessions
                .saturating_add(p.udp[i])
                .saturating_add(p.other[i]),
        );
        tcp.saturating_mul(tw)
            .saturating_add(udp.saturating_mul(uw))
    };
    let weight = |i: usize| u128::from(up[i].weight.max(1));
    // load(a) / weight(a) < load(b) / weight(b), without division.
    best_of(cand, k, |a, b| {
        load(a).saturating_mul(weight(b)) < load(b).saturating_mul(weight(a))
    })
}

/// Seed 001 [0041], [0055]: lowest smoothed RTT for `dst` if the snapshot
/// has an entry for it (fresh or not) with candidate uplinks, else the
/// lowest uplink srtt; uplinks without one come after those with one.
fn response_time(snap: &Snapshot, dst: IpAddr, cand: u64, k: u64) -> Option<usize> {
    let up = &snap.uplinks;
    match snap.entry(dst) {
        Some(e) if e.mask() & cand != 0 => {
            let rtt = |i: usize| e.srtt_of(i).map_or(u64::MAX, |s| s.0);
            best_of(e.mask() & cand, k, |a, b| rtt(a) < rtt(b))
        }
        _ => {
            // (false, srtt) sorts before (true, 0): measured first.
            let rtt = |i: usize| (up[i].srtt.is_none(), up[i].srtt.map_or(0, |s| s.0));
            best_of(cand, k, |a, b| rtt(a) < rtt(b))
        }
    }
}
