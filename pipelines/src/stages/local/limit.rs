//! The rate limit of ICMP the appliance originates: a token bucket per
//! destination (as Linux's `icmp_ratelimit` per peer), in a table bounded
//! by `max_destinations`. A destination that finds the table full (after
//! buckets that have refilled completely are dropped from it, at most once
//! per second) shares one global bucket, so the table never grows and a
//! flood from many addresses is bounded by the global rate.

use hashbrown::HashMap;
use std::net::IpAddr;

use crate::packet::time::Nanos;
use crate::topology::IcmpLimits;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A token bucket in time units: `credit` nanoseconds of sending, one
/// message costs `cost`, at most `cap` kept.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    credit: u64,
    last: Nanos,
}

impl Bucket {
    fn full(cap: u64, now: Nanos) -> Bucket {
        Bucket {
            credit: cap,
            last: now,
        }
    }

    fn take(&mut self, now: Nanos, cost: u64, cap: u64) -> bool {
        let gained = now.since(self.last).as_nanos();
        self.last = Nanos(self.last.as_nanos().max(now.as_nanos()));
        self.credit = self.credit.saturating_add(gained).min(cap);
        if self.credit >= cost {
            self.credit -= cost;
            true
        } else {
            false
        }
    }

    fn refilled(&self, now: Nanos, cap: u64) -> bool {
        self.credit.saturating_add(now.since(self.last).as_nanos()) >= cap
    }
}

#[derive(Debug)]
pub struct IcmpLimiter {
    cost: u64,
    cap: u64,
    global_cost: u64,
    global_cap: u64,
    max: usize,
    table: HashMap<IpAddr, Bucket>,
    global: Bucket,
    last_purge: Nanos,
}

impl IcmpLimiter {
    pub fn new(l: IcmpLimits) -> IcmpLimiter {
        let cost = NANOS_PER_SEC / u64::from(l.rate_per_second.max(1));
        let global_cost = NANOS_PER_SEC / u64::from(l.global_per_second.max(1));
        let burst = u64::from(l.burst.max(1));
        IcmpLimiter {
            cost,
            cap: cost.saturating_mul(burst),
            global_cost,
            global_cap: global_cost.saturating_mul(burst),
            max: l.max_destinations,
            table: HashMap::with_capacity(l.max_destinations),
            global: Bucket::full(global_cost.saturating_mul(burst), Nanos::ZERO),
            last_purge: Nanos::ZERO,
        }
    }

    /// Whether one more message to `dst` may be sent at `now` (and if so,
    /// its token is taken).
    pub fn allow(&mut self, dst: IpAddr, now: Nanos) -> bool {
        let (cost, cap) = (self.cost, self.cap);
        if let Some(b) = self.table.get_mut(&dst) {
            return b.take(now, cost, cap);
        }
        if self.table.len() >= self.max && now.since(self.last_purge).as_nanos() >= NANOS_PER_SEC {
            self.last_purge = now;
            self.table.retain(|_, b| !b.refilled(now, cap));
        }
        if self.table.len() < self.max {
            let mut b = Bucket::full(cap, now);
            let ok = b.take(now, cost, cap);
            self.table.insert(dst, b);
            return ok;
        }
        self.global.take(now, self.global_cost, self.global_cap)
    }

    /// Destinations with a bucket of their own.
    pub fn destinations(&self) -> usize {
        self.table.len()
    }
}
