//! The data-plane side: one [`Selector`] per worker lcore answers cache hits
//! (seed 001 [0041]) and runs the RFC 2391 algorithms (seed 001 [0047]) on
//! its current snapshot, counting its own picks until the next snapshot.

use std::net::IpAddr;
use std::sync::Arc;

use super::algorithms::{self, Algorithm, LocalPicks};
use super::mask::{bit, first_n};
use super::snapshot::Snapshot;
use crate::packet::flow::proto;
use crate::packet::time::Nanos;
use crate::topology::{UplinkId, MAX_UPLINKS};

/// Data-plane side: one per lcore, single-threaded, no allocation per call.
pub struct Selector {
    snap: Arc<Snapshot>,
    /// Smooth weighted round robin: the current weight of every uplink.
    swrr: [i64; MAX_UPLINKS],
    /// New flows this selector put on each uplink since the snapshot: TCP,
    /// UDP, other protocols (counted with UDP's: the NAT keeps them as
    /// artificial sessions too).
    picked_tcp: [u64; MAX_UPLINKS],
    picked_udp: [u64; MAX_UPLINKS],
    picked_other: [u64; MAX_UPLINKS],
    /// Where the tie-breaking scan starts; advances on every pick.
    rot: u64,
}

impl Selector {
    pub fn new(snap: Arc<Snapshot>) -> Selector {
        Selector {
            snap,
            swrr: [0; MAX_UPLINKS],
            picked_tcp: [0; MAX_UPLINKS],
            picked_udp: [0; MAX_UPLINKS],
            picked_other: [0; MAX_UPLINKS],
            rot: 0,
        }
    }

    /// Installs a newer snapshot, returning the previous one (the caller
    /// decides where it is freed). Resets the local pick counts: the new
    /// snapshot's loads include those flows. The round-robin state is kept
    /// (so the rotation runs on across snapshots) unless the weights changed.
    pub fn install(&mut self, snap: Arc<Snapshot>) -> Arc<Snapshot> {
        let same_weights = snap.uplinks.len() == self.snap.uplinks.len()
            && snap
                .uplinks
                .iter()
                .zip(&self.snap.uplinks)
                .all(|(a, b)| a.weight == b.weight);
        if !same_weights {
            self.swrr = [0; MAX_UPLINKS];
        }
        self.picked_tcp = [0; MAX_UPLINKS];
        self.picked_udp = [0; MAX_UPLINKS];
        self.picked_other = [0; MAX_UPLINKS];
        std::mem::replace(&mut self.snap, snap)
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snap
    }

    /// Flows this selector picked for uplink `id` since the snapshot:
    /// (TCP, UDP, other).
    pub fn local_picks(&self, id: UplinkId) -> (u64, u64, u64) {
        let i = usize::from(id);
        if i >= MAX_UPLINKS {
            return (0, 0, 0);
        }
        (self.picked_tcp[i], self.picked_udp[i], self.picked_other[i])
    }

    /// Cache hit (seed 001 [0041]): for a fresh entry of `dst`, the uplink
    /// with the lowest smoothed RTT among the entry's uplinks that are in
    /// `candidates` (bit mask); uplinks within `tie_margin_pct` of that best
    /// tie, and `alg` picks among them. `None` when the entry is missing,
    /// stale, or has no candidate uplink. Counts the pick like [`Self::pick`].
    pub fn cached(
        &mut self,
        dst: IpAddr,
        candidates: u64,
        alg: Algorithm,
        proto: u8,
        now: Nanos,
    ) -> Option<UplinkId> {
        let ties = {
            let snap = &*self.snap;
            let e = snap.fresh(dst, now)?;
            let cand = candidates & first_n(snap.uplinks.len());
            let best = e
                .iter()
                .filter(|&(u, _)| cand & bit(usize::from(u)) != 0)
                .map(|(_, s)| s.0)
                .min()?;
            let limit = u128::from(best) * (100 + u128::from(snap.tie_margin_pct));
            e.iter()
                .filter(|&(u, s)| cand & bit(usize::from(u)) != 0 && u128::from(s.0) * 100 <= limit)
                .fold(0, |m, (u, _)| m | bit(usize::from(u)))
        };
        self.pick(alg, dst, proto, ties)
    }

    /// RFC 2391 pick among `candidates` (bit mask of uplink ids; ids beyond
    /// the snapshot's uplinks are ignored). `None` if that leaves none.
    ///
    /// - `RoundRobin`: smooth weighted round robin (nginx) by uplink weight;
    ///   equal weights give strict rotation.
    /// - `LeastLoad`: fewest TCP + UDP sessions, plus this selector's picks
    ///   since the snapshot (a burst of new flows between two snapshots
    ///   spreads instead of landing on one uplink).
    /// - `LeastTraffic`: lowest `traffic_bps`.
    /// - `WeightedLeastLoad`: lowest (tcp * tcp_session_weight + udp *
    ///   udp_session_weight, local picks weighted the same) / weight,
    ///   compared by cross-multiplication.
    /// - `ResponseTime`: lowest smoothed RTT for `dst` if the snapshot has an
    ///   entry for it (fresh or not) with candidate uplinks, else the lowest
    ///   uplink srtt; uplinks without one come after those with one.
    ///
    /// (Each lives in `select/algorithms.rs`.) Equal scores are broken by a
    /// start index that advances on every call. `proto` (6 TCP, 17 UDP, else
    /// other) says which local pick count of the chosen uplink to bump.
    pub fn pick(
        &mut self,
        alg: Algorithm,
        dst: IpAddr,
        proto: u8,
        candidates: u64,
    ) -> Option<UplinkId> {
        let k = self.rot;
        self.rot = self.rot.wrapping_add(1);
        let snap = &*self.snap;
        let up = &snap.uplinks;
        // From here on every id is < up.len() <= MAX_UPLINKS.
        let cand = candidates & first_n(up.len());
        if cand == 0 {
            return None;
        }
        let picks = LocalPicks {
            tcp: &self.picked_tcp,
            udp: &self.picked_udp,
            other: &self.picked_other,
        };
        let chosen = algorithms::choose(alg, snap, dst, cand, k, &mut self.swrr, &picks)?;
        let count = match proto {
            proto::TCP => &mut self.picked_tcp[chosen],
            proto::UDP => &mut self.picked_udp[chosen],
            _ => &mut self.picked_other[chosen],
        };
        *count = count.saturating_add(1);
        UplinkId::try_from(chosen).ok()
    }
}
