//! Per inside host limits of one shard: live sessions, new sessions per
//! second (a token bucket), race copies waiting for their answer; and the
//! shard's top offenders, which the management core reads without locks.
//!
//! The table is reserved up front for twice `max_hosts` entries and never
//! holds more than `max_hosts`: hashbrown then always rehashes in place
//! (its tombstones included) and never allocates on the packet path. A
//! host's entry lives while it has live sessions; a new host finding the
//! table full is refused (`hosts_table_full`).

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;

use super::counters::{NatCounters, TOP_HOSTS};
use crate::packet::drop::DropReason;
use crate::packet::time::Nanos;

/// Nano-tokens per token: the bucket keeps fractions of a token exactly.
const NANO: u64 = 1_000_000_000;

/// A token bucket: `rate` tokens a second up to `burst`; time is passed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    nano_tokens: u64,
    at: Nanos,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn full(burst: u32, now: Nanos) -> TokenBucket {
        TokenBucket {
            nano_tokens: u64::from(burst) * NANO,
            at: now,
        }
    }

    /// Refills for the time since the last call and takes one token if
    /// there is one. Time going backwards refills nothing.
    pub fn take(&mut self, now: Nanos, rate: u32, burst: u32) -> bool {
        let dt = now.since(self.at).as_nanos();
        if now > self.at {
            self.at = now;
        }
        self.nano_tokens = self
            .nano_tokens
            .saturating_add(dt.saturating_mul(u64::from(rate)))
            .min(u64::from(burst) * NANO);
        if self.nano_tokens >= NANO {
            self.nano_tokens -= NANO;
            true
        } else {
            false
        }
    }

    /// Whole tokens left (as of the last call).
    pub fn tokens(&self) -> u64 {
        self.nano_tokens / NANO
    }
}

/// One inside host's state in one shard.
#[derive(Clone, Copy, Debug)]
pub(super) struct Host {
    pub(super) sessions: u32,
    /// Race-tagged sessions of the host that have not seen an answer.
    pub(super) races: u32,
    pub(super) bucket: TokenBucket,
    /// Refusals of this host, all reasons.
    pub(super) refusals: u64,
}

/// The per-host limits of one shard (already divided across shards).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostLimits {
    pub max_sessions: u32,
    pub new_per_second: u32,
    pub new_burst: u32,
    pub max_races: u32,
    /// Distinct inside hosts with live sessions the shard tracks.
    pub max_hosts: usize,
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            max_sessions: 4_096,
            new_per_second: 2_000,
            new_burst: 4_000,
            max_races: 1_024,
            max_hosts: 8_192,
        }
    }
}

pub(super) struct Hosts {
    map: HashMap<[u8; 16], Host>,
    /// Writer-side copy of the published top offenders' addresses.
    top: [Option<[u8; 16]>; TOP_HOSTS],
}

/// Why a host's new session was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    Sessions,
    Rate,
    Races,
    Mapping,
}

impl Hosts {
    pub(super) fn new(max_hosts: usize) -> Hosts {
        Hosts {
            map: HashMap::with_capacity(max_hosts.saturating_mul(2)),
            top: [None; TOP_HOSTS],
        }
    }

    pub(super) fn get(&self, addr: &[u8; 16]) -> Option<&Host> {
        self.map.get(addr)
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes reserved for the table.
    pub(super) fn capacity(&self) -> usize {
        self.map.capacity()
    }

    /// Admits one new session of `addr`: within its sessions limit and, if
    /// `rate`, with a token from its bucket. Counts it on success.
    pub(super) fn admit(
        &mut self,
        addr: &[u8; 16],
        now: Nanos,
        rate: bool,
        lim: &HostLimits,
        c: &NatCounters,
    ) -> Result<(), DropReason> {
        // One hash of the address: an entry, created only while the table
        // has room (it never grows past its reserved capacity).
        let full = self.map.len() >= lim.max_hosts;
        let h = match self.map.entry(*addr) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(_) if full => {
                c.hosts_table_full.inc();
                return Err(DropReason::HostsTableFull);
            }
            Entry::Vacant(v) => v.insert(Host {
                sessions: 0,
                races: 0,
                bucket: TokenBucket::full(lim.new_burst, now),
                refusals: 0,
            }),
        };
        let refusal = if h.sessions >= lim.max_sessions {
            Some((Refusal::Sessions, DropReason::HostSessionsLimit))
        } else if rate && !h.bucket.take(now, lim.new_per_second, lim.new_burst) {
            Some((Refusal::Rate, DropReason::HostRateLimit))
        } else {
            None
        };
        match refusal {
            None => {
                h.sessions += 1;
                Ok(())
            }
            Some((r, reason)) => {
                if h.sessions == 0 {
                    self.map.remove(addr);
                    // A host with no session is not kept: counted, not ranked.
                    count(c, r);
                } else {
                    self.refuse(addr, r, c);
                }
                Err(reason)
            }
        }
    }

    /// Whether `addr` may start another race; a refusal is counted.
    pub(super) fn may_race(
        &mut self,
        addr: &[u8; 16],
        lim: &HostLimits,
        c: Option<&NatCounters>,
    ) -> bool {
        match self.map.get(addr) {
            Some(h) if h.races >= lim.max_races => {
                if let Some(c) = c {
                    self.refuse(addr, Refusal::Races, c);
                }
                false
            }
            _ => true,
        }
    }

    /// Counts a refusal of host `addr` and ranks it (a host without an
    /// entry is counted, not ranked).
    pub(super) fn refuse(&mut self, addr: &[u8; 16], r: Refusal, c: &NatCounters) {
        count(c, r);
        let Some(h) = self.map.get_mut(addr) else {
            return;
        };
        h.refusals += 1;
        let (mut refusals, sessions) = (h.refusals, h.sessions);
        let slot = match self.top.iter().position(|t| t.as_ref() == Some(addr)) {
            // A ranked host's count goes on from its slot's (its entry may
            // have been dropped and made again since it was ranked).
            Some(i) => {
                refusals = refusals.max(c.top[i].refusals.get() + 1);
                i
            }
            None => {
                let (i, least) = (0..TOP_HOSTS)
                    .map(|i| (i, self.top_refusals(i, c)))
                    .min_by_key(|&(_, n)| n)
                    .expect("TOP_HOSTS > 0");
                if least >= refusals {
                    return;
                }
                self.top[i] = Some(*addr);
                i
            }
        };
        c.top[slot].publish(addr, refusals, sessions);
    }

    fn top_refusals(&self, i: usize, c: &NatCounters) -> u64 {
        if self.top[i].is_some() {
            c.top[i].refusals.get()
        } else {
            0
        }
    }

    /// The race-copy count of `addr` moves by one.
    pub(super) fn race(&mut self, addr: &[u8; 16], up: bool) {
        if let Some(h) = self.map.get_mut(addr) {
            h.races = if up {
                h.races + 1
            } else {
                h.races.saturating_sub(1)
            };
        }
    }

    /// One session of `addr` left; the entry goes with its last one.
    pub(super) fn release(&mut self, addr: &[u8; 16], c: &NatCounters) {
        let Some(h) = self.map.get_mut(addr) else {
            return;
        };
        h.sessions = h.sessions.saturating_sub(1);
        let (sessions, refusals) = (h.sessions, h.refusals);
        if sessions == 0 {
            self.map.remove(addr);
        }
        if refusals > 0 {
            if let Some(i) = self.top.iter().position(|t| t.as_ref() == Some(addr)) {
                c.top[i].sessions.set(u64::from(sessions));
            }
        }
    }
}

fn count(c: &NatCounters, r: Refusal) {
    match r {
        Refusal::Sessions => c.host_sessions_limit.inc(),
        Refusal::Rate => c.host_rate_limit.inc(),
        Refusal::Races => c.host_races_limit.inc(),
        Refusal::Mapping => c.mapping_sessions_limit.inc(),
    }
}
