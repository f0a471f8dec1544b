//! Round-trip times: the RFC 6298 estimator kept per (destination, uplink)
//! and per uplink, and the RTT cache the data plane reads (seed 001 [0041]):
//! its key (a destination masked to a prefix) and its entries.

use std::net::IpAddr;

use super::mask::bit;
use crate::packet::time::Nanos;
use crate::topology::UplinkId;

/// Most uplinks one race (and one cache entry) covers.
pub const RACE_MAX: usize = 8;

/// RFC 6298 section 2 estimator in nanoseconds: the first sample R sets
/// SRTT = R and RTTVAR = R/2; each later one sets RTTVAR = 3/4 RTTVAR +
/// 1/4 |SRTT - R| (with the old SRTT) and then SRTT = 7/8 SRTT + 1/8 R.
/// Integer math in `u128` (divisions truncate), so no input can overflow or
/// panic. Also keeps the smallest sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RttEstimator {
    srtt: u64,
    rttvar: u64,
    min: u64,
    samples: u64,
}

/// `u128` back to `u64`, saturating (never needed for the averages below,
/// which cannot exceed their largest input).
pub(super) fn sat_u64(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

impl RttEstimator {
    /// Adds one measurement (RFC 6298 (2.2) for the first, (2.3) after).
    pub fn sample(&mut self, rtt: Nanos) {
        let r = rtt.0;
        if self.samples == 0 {
            self.srtt = r;
            self.rttvar = r / 2;
            self.min = r;
        } else {
            // RFC 6298 (2.3): RTTVAR first, with the SRTT before this sample.
            let diff = u128::from(self.srtt.abs_diff(r));
            self.rttvar = sat_u64((3 * u128::from(self.rttvar) + diff) / 4);
            self.srtt = sat_u64((7 * u128::from(self.srtt) + u128::from(r)) / 8);
            self.min = self.min.min(r);
        }
        self.samples = self.samples.saturating_add(1);
    }

    /// SRTT; `None` before the first sample.
    pub fn smoothed(&self) -> Option<Nanos> {
        (self.samples > 0).then_some(Nanos(self.srtt))
    }

    /// RTTVAR (zero before the first sample).
    pub fn var(&self) -> Nanos {
        Nanos(self.rttvar)
    }

    /// The smallest sample; `None` before the first.
    pub fn min(&self) -> Option<Nanos> {
        (self.samples > 0).then_some(Nanos(self.min))
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// RFC 6298 (2.3): RTO = SRTT + max(G, 4 * RTTVAR), with G the clock
    /// granularity; `None` before the first sample (the caller's initial
    /// RTO applies). Not clamped to the RFC's 1 s minimum: a race timeout
    /// wants the raw figure.
    pub fn rto(&self, granularity: Nanos) -> Option<Nanos> {
        let s = self.smoothed()?;
        let k_var = self.rttvar.saturating_mul(4);
        Some(Nanos(s.0.saturating_add(k_var.max(granularity.0))))
    }
}

/// A destination as the RTT cache keys it: the address masked to a prefix
/// length (configurable per family, so e.g. a /24 shares one entry). IPv4
/// and IPv6 keys never compare equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DestKey {
    bits: u128,
    v6: bool,
}

impl DestKey {
    /// `addr` masked to `prefix_v4` or `prefix_v6` bits (clamped to 32 and
    /// 128; 0 puts the whole family in one entry).
    pub fn new(addr: IpAddr, prefix_v4: u8, prefix_v6: u8) -> DestKey {
        match addr {
            IpAddr::V4(a) => {
                let p = u32::from(prefix_v4.min(32));
                let mask = u32::MAX.checked_shl(32 - p).unwrap_or(0);
                DestKey {
                    bits: u128::from(u32::from(a) & mask),
                    v6: false,
                }
            }
            IpAddr::V6(a) => {
                let p = u32::from(prefix_v6.min(128));
                let mask = u128::MAX.checked_shl(128 - p).unwrap_or(0);
                DestKey {
                    bits: u128::from(a) & mask,
                    v6: true,
                }
            }
        }
    }

    /// The masked address (the first address of the prefix).
    pub fn addr(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(self.bits.into())
        } else {
            IpAddr::V4(u32::try_from(self.bits).unwrap_or(0).into())
        }
    }
}

/// One destination's measurements for the data plane.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CacheEntry {
    /// When the last race to this destination was decided; the entry is
    /// fresh while `now - raced_at < ttl`.
    pub raced_at: Nanos,
    /// How many of `uplinks` / `srtt` are used (most recently sampled first).
    pub n: u8,
    pub uplinks: [UplinkId; RACE_MAX],
    pub srtt: [Nanos; RACE_MAX],
}

impl CacheEntry {
    /// The used (uplink, smoothed RTT) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (UplinkId, Nanos)> + '_ {
        let n = usize::from(self.n).min(RACE_MAX);
        self.uplinks[..n]
            .iter()
            .copied()
            .zip(self.srtt[..n].iter().copied())
    }

    /// Smoothed RTT of `id` in this entry (its first occurrence).
    pub(super) fn srtt_of(&self, id: usize) -> Option<Nanos> {
        self.iter()
            .find(|&(u, _)| usize::from(u) == id)
            .map(|(_, s)| s)
    }

    /// Bit i set: uplink i has a measurement here.
    pub(super) fn mask(&self) -> u64 {
        self.iter().fold(0, |m, (u, _)| m | bit(usize::from(u)))
    }
}
