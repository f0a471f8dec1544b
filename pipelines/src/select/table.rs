//! The RTT table as the operator reads it (`appliance rtt`): one row per
//! destination prefix and uplink, with the estimator, its age, whether the
//! entry is fresh, and the uplink a cache hit would pick.

use std::net::IpAddr;

use super::management::{AdminState, SelectionCore};
use super::rtt::RttEstimator;
use crate::packet::time::Nanos;
use crate::topology::UplinkId;

/// One destination prefix × uplink.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RttRow {
    /// The prefix's first address and length.
    pub dest: IpAddr,
    pub prefix: u8,
    pub uplink: UplinkId,
    pub est: RttEstimator,
    /// Since this uplink's last sample toward the prefix.
    pub age: Nanos,
    /// Its last race was decided within the TTL and this uplink was
    /// sampled recently enough to be offered from the cache.
    pub fresh: bool,
    /// What a cache hit to this prefix would pick now: the fresh uplink
    /// with the lowest smoothed RTT among usable ones (before the
    /// `tie_margin_pct` sharing); `None` without a fresh entry.
    pub pick: Option<UplinkId>,
}

impl SelectionCore {
    /// At most `limit` rows whose destination lies in `within` (address,
    /// prefix length; `None`: all), ordered by destination then uplink.
    pub fn rtt_rows(&self, now: Nanos, within: Option<(IpAddr, u8)>, limit: usize) -> Vec<RttRow> {
        let ttl = self.cfg.rtt_cache_ttl;
        let usable = |u: UplinkId| {
            self.uplinks
                .get(usize::from(u))
                .is_some_and(|s| s.stats.healthy && s.stats.admin == AdminState::Up)
        };
        let mut keys: Vec<_> = self
            .dests
            .keys()
            .filter(|k| within.is_none_or(|(a, l)| contains(a, l, k.addr())))
            .copied()
            .collect();
        keys.sort_unstable_by_key(|k| (k.addr().is_ipv6(), k.addr()));
        let mut rows = Vec::new();
        for k in keys {
            let r = &self.dests[&k];
            let decided = r.raced_at.filter(|&t| now.since(t) < ttl);
            let fresh_since = decided.map(|t| Nanos(t.0.saturating_sub(ttl.0)));
            let is_fresh = |last: Nanos| fresh_since.is_some_and(|f| last >= f);
            let pick = r
                .rtts
                .iter()
                .filter(|u| is_fresh(u.last) && usable(u.uplink))
                .filter_map(|u| u.est.smoothed().map(|s| (s, u.uplink)))
                .min()
                .map(|(_, u)| u);
            let prefix = if k.addr().is_ipv6() {
                self.cfg.prefix_v6.min(128)
            } else {
                self.cfg.prefix_v4.min(32)
            };
            let mut us: Vec<_> = r.rtts.iter().collect();
            us.sort_unstable_by_key(|u| u.uplink);
            for u in us {
                if rows.len() >= limit {
                    return rows;
                }
                rows.push(RttRow {
                    dest: k.addr(),
                    prefix,
                    uplink: u.uplink,
                    est: u.est,
                    age: now.since(u.last),
                    fresh: is_fresh(u.last),
                    pick,
                });
            }
        }
        rows
    }
}

fn contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(p), IpAddr::V4(a)) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(p) & m == u32::from(a) & m
        }
        (IpAddr::V6(p), IpAddr::V6(a)) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(p) & m == u128::from(a) & m
        }
        _ => false,
    }
}
