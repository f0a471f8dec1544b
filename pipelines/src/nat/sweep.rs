//! The paced sweep that expires idle sessions.

use super::shard::NatShard;
use crate::packet::time::Nanos;

/// Sweep visits per call: at least this many, so a small table is swept
/// briskly, and at most `SWEEP_MAX`, so one call never stalls forwarding
/// (1,024 removals take well under a millisecond; see the `nat` bench).
pub const SWEEP_MIN: usize = 32;
pub const SWEEP_MAX: usize = 1_024;

impl NatShard {
    /// Visits up to `budget` slots from where the last call stopped and
    /// removes the expired sessions among them. Returns how many expired.
    pub fn sweep_slice(&mut self, now: Nanos, budget: usize) -> usize {
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        let mut expired = 0;
        for _ in 0..budget.min(n) {
            if self.sweep_cursor >= n {
                self.sweep_cursor = 0;
                self.counters.sweep_laps.inc();
            }
            let idx = self.sweep_cursor as u32;
            self.sweep_cursor += 1;
            let s = &self.slots[idx as usize];
            if s.is_live() && s.expired(now, &self.cfg) {
                self.expire(idx);
                expired += 1;
            }
        }
        self.counters.expired.add(expired as u64);
        expired
    }

    /// The paced sweep, called once per loop turn: it visits as many slots
    /// as keep a whole lap of the table within `sweep_interval` (the
    /// periodic pass of seed 000 [73]), never fewer than [`SWEEP_MIN`] nor
    /// more than [`SWEEP_MAX`] per call, so expiring a million sessions at
    /// once is spread over many turns instead of stalling one.
    pub fn sweep(&mut self, now: Nanos) -> usize {
        self.log.now = now;
        let elapsed = self.last_sweep.map_or(0, |t| now.since(t).as_nanos());
        self.last_sweep = Some(now);
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        let interval = u128::from(self.cfg.sweep_interval.as_nanos().max(1));
        self.sweep_credit += n as u128 * u128::from(elapsed);
        let owed = self.sweep_credit / interval;
        self.sweep_credit %= interval;
        self.sweep_owed = (u128::from(self.sweep_owed) + owed).min(n as u128) as u64;
        let visits = (self.sweep_owed as usize).clamp(SWEEP_MIN, SWEEP_MAX);
        self.sweep_owed = self.sweep_owed.saturating_sub(visits as u64);
        self.sweep_slice(now, visits)
    }
}
