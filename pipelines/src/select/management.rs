//! The management side: turns race events and periodic counters into uplink
//! health (seed 001 [0054]), RTT estimates per destination and uplink, and
//! immutable snapshots for the data plane.

use std::cmp::Reverse;

use arrayvec::ArrayVec;
use hashbrown::HashMap;

use super::config::SelectConfig;
use super::events::SelEvent;
use super::rtt::{sat_u64, CacheEntry, DestKey, RttEstimator, RACE_MAX};
use super::snapshot::{Snapshot, UplinkView};
use crate::packet::time::Nanos;
use crate::topology::{UplinkId, MAX_UPLINKS};

/// An uplink's administrative state, set by the operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AdminState {
    /// In service.
    #[default]
    Up,
    /// No new flows or races while another uplink is usable; its sessions
    /// stay until they end (graceful failback).
    Drained,
    /// Administratively down: as a link down (unhealthy, never probed,
    /// `on_uplink_down` applies to its sessions).
    Down,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Up => "up",
            AdminState::Drained => "drained",
            AdminState::Down => "down",
        }
    }
}

/// Per-uplink selection state, as the stats report it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UplinkSelStats {
    pub healthy: bool,
    pub link_up: bool,
    /// The operator's state for it.
    pub admin: AdminState,
    /// Its selection weight (the config's, or the operator's).
    pub weight: u32,
    /// Unanswered race copies since the last answer.
    pub unanswered_streak: u32,
    /// Distinct destinations (RTT cache keys) toward which race copies on
    /// this uplink failed within [`FAILURE_WINDOW`] since its last answer.
    pub failed_destinations: u32,
    pub unanswered: u64,
    pub answers: u64,
    /// Over all destinations.
    pub rtt: RttEstimator,
    pub traffic_bps: u64,
    /// Healthy <-> down changes.
    pub transitions: u64,
}

/// One uplink's measurements to one destination.
#[derive(Clone, Copy, Debug)]
pub(super) struct UplinkRtt {
    pub(super) uplink: UplinkId,
    pub(super) est: RttEstimator,
    /// When `est` last took a sample.
    pub(super) last: Nanos,
}

/// What the core keeps of one destination.
#[derive(Clone, Debug)]
pub(super) struct DestRecord {
    /// When the last race to it was decided; `None` while none was.
    pub(super) raced_at: Option<Nanos>,
    /// Last event for it (orders undecided records for eviction).
    seen: Nanos,
    /// At most [`RACE_MAX`]; a new uplink replaces the least recently
    /// sampled one.
    pub(super) rtts: ArrayVec<UplinkRtt, RACE_MAX>,
}

impl DestRecord {
    /// The time that ages the record: its last decided race, else its last
    /// event.
    fn age_from(&self) -> Nanos {
        self.raced_at.unwrap_or(self.seen)
    }

    fn sample(&mut self, uplink: UplinkId, rtt: Nanos, now: Nanos) {
        if let Some(u) = self.rtts.iter_mut().find(|u| u.uplink == uplink) {
            u.est.sample(rtt);
            u.last = now;
            return;
        }
        let mut est = RttEstimator::default();
        est.sample(rtt);
        let fresh = UplinkRtt {
            uplink,
            est,
            last: now,
        };
        if let Err(e) = self.rtts.try_push(fresh) {
            if let Some(oldest) = self.rtts.iter_mut().min_by_key(|u| u.last) {
                *oldest = e.element();
            }
        }
    }
}

/// Recent failed destinations one uplink remembers: the uplink health rule
/// needs at most this many distinct destinations (a larger
/// `unanswered_limit` counts as this).
pub const FAILED_DESTS: usize = 16;
/// How long a failed race copy toward one destination counts as evidence
/// against its uplink.
pub const FAILURE_WINDOW: Nanos = Nanos::from_secs(60);

#[derive(Clone, Debug)]
pub(super) struct UplinkState {
    pub(super) stats: UplinkSelStats,
    /// Destinations whose race copies failed on this uplink, with the last
    /// failure's time; cleared by an answer. Fixed capacity: the oldest
    /// goes for a new one.
    failed: ArrayVec<(DestKey, Nanos), FAILED_DESTS>,
    /// Marked down by failures (until an answer).
    failing: bool,
    weight: u32,
    tcp: u64,
    udp: u64,
    /// Previous tick's (time, byte counter).
    prev_bytes: Option<(Nanos, u64)>,
    /// `stats.traffic_bps` holds a measured rate.
    rate_known: bool,
}

/// Management side: turns events and periodic counters into snapshots.
pub struct SelectionCore {
    pub(super) cfg: SelectConfig,
    pub(super) uplinks: Vec<UplinkState>,
    pub(super) dests: HashMap<DestKey, DestRecord>,
    version: u64,
    /// Reused by the capacity eviction.
    scratch: Vec<u64>,
}

impl SelectionCore {
    /// `weights[i]` is uplink i's capacity weight (0 counts as 1; uplinks
    /// past [`MAX_UPLINKS`] are left out). Every uplink starts healthy with
    /// its link up, as [`Snapshot::initial`].
    pub fn new(cfg: SelectConfig, weights: Vec<u32>) -> SelectionCore {
        let uplinks = weights
            .iter()
            .take(MAX_UPLINKS)
            .map(|&w| UplinkState {
                stats: UplinkSelStats {
                    healthy: true,
                    link_up: true,
                    weight: w.max(1),
                    ..UplinkSelStats::default()
                },
                failed: ArrayVec::new(),
                failing: false,
                weight: w.max(1),
                tcp: 0,
                udp: 0,
                prev_bytes: None,
                rate_known: false,
            })
            .collect();
        SelectionCore {
            cfg,
            uplinks,
            dests: HashMap::new(),
            version: 0,
            scratch: Vec::new(),
        }
    }

    pub fn config(&self) -> &SelectConfig {
        &self.cfg
    }

    /// Takes `cfg` (a reload), except the destination prefix lengths: the
    /// cache's keys are built with them, so they stay as started. The
    /// next tick applies a smaller cache capacity, the next snapshot
    /// carries the rest.
    pub fn set_config(&mut self, cfg: SelectConfig) {
        let (v4, v6) = (self.cfg.prefix_v4, self.cfg.prefix_v6);
        self.cfg = SelectConfig {
            prefix_v4: v4,
            prefix_v6: v6,
            ..cfg
        };
    }

    /// Seed 001 [0054], with evidence from more than one destination:
    /// healthy iff the link is up and the uplink has not failed race copies
    /// toward `unanswered_limit` distinct destinations (at most
    /// [`FAILED_DESTS`]), each within [`FAILURE_WINDOW`] of the last, with
    /// no answer in between. Once down, only an answer (to a probe copy)
    /// or the link brings it back.
    fn update_health(u: &mut UplinkState) {
        let s = &mut u.stats;
        s.failed_destinations = u.failed.len() as u32;
        let healthy = s.link_up && !u.failing && s.admin != AdminState::Down;
        if healthy != s.healthy {
            s.healthy = healthy;
            s.transitions = s.transitions.saturating_add(1);
        }
    }

    /// Sets uplink `i`'s administrative state (false: no such uplink).
    /// Health follows at once; the next snapshot carries it.
    pub fn set_admin(&mut self, i: usize, state: AdminState) -> bool {
        let Some(u) = self.uplinks.get_mut(i) else {
            return false;
        };
        u.stats.admin = state;
        Self::update_health(u);
        true
    }

    /// Sets uplink `i`'s selection weight (0 counts as 1; false: no such
    /// uplink).
    pub fn set_weight(&mut self, i: usize, weight: u32) -> bool {
        let Some(u) = self.uplinks.get_mut(i) else {
            return false;
        };
        u.weight = weight.max(1);
        u.stats.weight = u.weight;
        true
    }

    /// Remembers a failure toward `key`: failures older than the window
    /// are forgotten, the same destination counts once, and
    /// `limit` distinct destinations mark the uplink down.
    fn record_failure(u: &mut UplinkState, key: DestKey, now: Nanos, limit: u32) {
        u.failed
            .retain(|&mut (_, t)| now.since(t) <= FAILURE_WINDOW);
        if let Some(e) = u.failed.iter_mut().find(|(k, _)| *k == key) {
            e.1 = e.1.max(now);
        } else if let Err(e) = u.failed.try_push((key, now)) {
            if let Some(oldest) = u.failed.iter_mut().min_by_key(|(_, t)| *t) {
                *oldest = e.element();
            }
        }
        let need = (limit as usize).min(FAILED_DESTS);
        if limit != 0 && u.failed.len() >= need {
            u.failing = true;
        }
    }

    /// Events for uplinks the core does not know are ignored.
    pub fn on_event(&mut self, ev: &SelEvent, now: Nanos) {
        let limit = self.cfg.unanswered_limit;
        match *ev {
            SelEvent::Answer {
                dst,
                uplink,
                rtt,
                raced,
                decided,
            } => {
                let Some(u) = self.uplinks.get_mut(usize::from(uplink)) else {
                    return;
                };
                u.stats.answers = u.stats.answers.saturating_add(1);
                // The answer to a probe copy is how a down uplink comes back.
                u.stats.unanswered_streak = 0;
                u.failed.clear();
                u.failing = false;
                if let Some(r) = rtt {
                    u.stats.rtt.sample(r);
                }
                Self::update_health(u);

                let key = DestKey::new(dst, self.cfg.prefix_v4, self.cfg.prefix_v6);
                // Only races create records; a connection that did not race
                // refreshes the measurements of one that did.
                let rec = if raced || decided {
                    Some(self.dests.entry(key).or_insert_with(|| DestRecord {
                        raced_at: None,
                        seen: now,
                        rtts: ArrayVec::new(),
                    }))
                } else {
                    self.dests.get_mut(&key)
                };
                if let Some(rec) = rec {
                    rec.seen = rec.seen.max(now);
                    if decided && rtt.is_some() {
                        // A race measures every uplink afresh (seed 001
                        // [0041]): its times replace the stored ones, so a
                        // path that became faster wins at the next race
                        // instead of after many smoothed samples.
                        rec.rtts.clear();
                    }
                    if decided {
                        rec.raced_at = Some(rec.raced_at.map_or(now, |t| t.max(now)));
                    }
                    if let Some(r) = rtt {
                        rec.sample(uplink, r, now);
                    }
                }
                // Bound the records between two snapshots too.
                let guard = self.cfg.cache_capacity.saturating_mul(2).saturating_add(64);
                if self.dests.len() > guard {
                    self.prune(now);
                }
            }
            SelEvent::Unanswered { uplink, dst } => {
                let key = DestKey::new(dst, self.cfg.prefix_v4, self.cfg.prefix_v6);
                let Some(u) = self.uplinks.get_mut(usize::from(uplink)) else {
                    return;
                };
                u.stats.unanswered = u.stats.unanswered.saturating_add(1);
                u.stats.unanswered_streak = u.stats.unanswered_streak.saturating_add(1);
                Self::record_failure(u, key, now, limit);
                Self::update_health(u);
            }
        }
    }

    /// Periodic: `loads[i]` = (tcp, udp) sessions of uplink i summed over
    /// shards; `bytes[i]` = its tx+rx byte counter (monotonic; the rate comes
    /// from the previous tick, smoothed by an EWMA with time constant
    /// `traffic_window`); `link_up[i]` = port link state. Missing entries
    /// leave the uplink's previous values.
    pub fn tick(&mut self, now: Nanos, loads: &[(u64, u64)], bytes: &[u64], link_up: &[bool]) {
        let tau = u128::from(self.cfg.traffic_window.0);
        for (i, u) in self.uplinks.iter_mut().enumerate() {
            if let Some(&(tcp, udp)) = loads.get(i) {
                u.tcp = tcp;
                u.udp = udp;
            }
            if let Some(&b) = bytes.get(i) {
                match u.prev_bytes {
                    Some((t0, b0)) => {
                        let dt = u128::from(now.since(t0).0);
                        // A counter that went backwards (port reset) counts 0.
                        let delta = u128::from(b.saturating_sub(b0));
                        // No time passed (dt = 0): keep the previous rate.
                        if let Some(rate) = (delta * 1_000_000_000).checked_div(dt) {
                            let bps = if u.rate_known {
                                // Backward-Euler first-order low pass:
                                // y += (x - y) * dt / (tau + dt); dt > 0 here.
                                let y = u128::from(u.stats.traffic_bps);
                                y.saturating_mul(tau).saturating_add(rate * dt) / (tau + dt)
                            } else {
                                rate
                            };
                            u.stats.traffic_bps = sat_u64(bps);
                            u.rate_known = true;
                            u.prev_bytes = Some((now, b));
                        }
                    }
                    None => u.prev_bytes = Some((now, b)),
                }
            }
            if let Some(&l) = link_up.get(i) {
                u.stats.link_up = l;
            }
            Self::update_health(u);
        }
    }

    /// Drops records aged past 2 * ttl, then the oldest beyond
    /// `cache_capacity`. O(n): one selection of the threshold age and two
    /// passes.
    fn prune(&mut self, now: Nanos) {
        let max_age = self.cfg.rtt_cache_ttl.0.saturating_mul(2);
        self.dests
            .retain(|_, r| now.since(r.age_from()).0 <= max_age);
        let cap = self.cfg.cache_capacity;
        let excess = self.dests.len().saturating_sub(cap);
        if excess == 0 {
            return;
        }
        if cap == 0 {
            self.dests.clear();
            return;
        }
        self.scratch.clear();
        self.scratch
            .extend(self.dests.values().map(|r| r.age_from().0));
        // The newest age among the `excess` oldest records.
        let (_, &mut threshold, _) = self.scratch.select_nth_unstable(excess - 1);
        let mut quota = excess;
        self.dests.retain(|_, r| {
            if r.age_from().0 < threshold {
                quota = quota.saturating_sub(1);
                false
            } else {
                true
            }
        });
        self.dests.retain(|_, r| {
            if quota > 0 && r.age_from().0 == threshold {
                quota -= 1;
                false
            } else {
                true
            }
        });
    }

    /// A snapshot of the current state (the version increments). Drops
    /// destinations whose `raced_at` is older than 2 * ttl first and keeps at
    /// most `cache_capacity` (the oldest `raced_at` go). A destination with
    /// no decided race, or no uplink sampled since `raced_at - ttl`, has no
    /// entry.
    pub fn snapshot(&mut self, now: Nanos) -> Snapshot {
        self.prune(now);
        self.version = self.version.saturating_add(1);
        let ttl = self.cfg.rtt_cache_ttl;
        let mut rtt = HashMap::with_capacity(self.dests.len());
        for (key, r) in &self.dests {
            let Some(raced_at) = r.raced_at else {
                continue;
            };
            // Seed 001 [0041]: only results recent enough to be trusted.
            let oldest = Nanos(raced_at.0.saturating_sub(ttl.0));
            let mut recent: ArrayVec<&UplinkRtt, RACE_MAX> =
                r.rtts.iter().filter(|u| u.last >= oldest).collect();
            recent.sort_unstable_by_key(|u| Reverse(u.last));
            let mut e = CacheEntry {
                raced_at,
                n: 0,
                uplinks: [0; RACE_MAX],
                srtt: [Nanos::ZERO; RACE_MAX],
            };
            let mut n = 0;
            for u in recent {
                if let Some(s) = u.est.smoothed() {
                    e.uplinks[n] = u.uplink;
                    e.srtt[n] = s;
                    n += 1;
                }
            }
            if n > 0 {
                e.n = u8::try_from(n).unwrap_or(0);
                rtt.insert(*key, e);
            }
        }
        Snapshot {
            version: self.version,
            ttl,
            prefix_v4: self.cfg.prefix_v4,
            prefix_v6: self.cfg.prefix_v6,
            tie_margin_pct: self.cfg.tie_margin_pct,
            tcp_session_weight: self.cfg.tcp_session_weight,
            udp_session_weight: self.cfg.udp_session_weight,
            uplinks: self
                .uplinks
                .iter()
                .map(|u| UplinkView {
                    healthy: u.stats.healthy,
                    // Administratively down is a link down: never probed.
                    link_up: u.stats.link_up && u.stats.admin != AdminState::Down,
                    drained: u.stats.admin == AdminState::Drained,
                    weight: u.weight,
                    tcp_sessions: u.tcp,
                    udp_sessions: u.udp,
                    traffic_bps: u.stats.traffic_bps,
                    srtt: u.stats.rtt.smoothed(),
                })
                .collect(),
            rtt,
        }
    }

    pub fn uplink_stats(&self) -> Vec<UplinkSelStats> {
        self.uplinks.iter().map(|u| u.stats.clone()).collect()
    }

    /// Destinations the core holds (decided or still racing).
    pub fn cache_len(&self) -> usize {
        self.dests.len()
    }
}
