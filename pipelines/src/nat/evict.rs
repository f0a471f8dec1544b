//! Eviction under pressure: the list of sessions that never saw an answer,
//! oldest first, threaded through the slab (two `u32` links a session), and
//! the host bookkeeping of sessions joining and leaving it.
//!
//! A shard holding [`EVICT_AT_PERCENT`](super::EVICT_AT_PERCENT) of its
//! `max_sessions` removes the oldest unanswered session (a SYN or SYN copy
//! no server answered, a UDP or ICMP flow with no reply) before it creates
//! an outbound session: O(1), no scan. A session that saw one packet from
//! outside leaves the list for good, so sessions with traffic both ways are
//! never evicted for a newcomer.

use super::session::{HOSTED, NONE, UNANSWERED};
use super::shard::NatShard;

impl NatShard {
    /// Appends live session `idx` (newest) to the unanswered list.
    pub(super) fn unanswered_push(&mut self, idx: u32) {
        let tail = self.unans_tail;
        {
            let s = &mut self.slots[idx as usize];
            s.flags |= UNANSWERED;
            s.older = tail;
            s.newer = NONE;
        }
        if tail != NONE {
            self.slots[tail as usize].newer = idx;
        } else {
            self.unans_head = idx;
        }
        self.unans_tail = idx;
    }

    /// Takes session `idx` off the unanswered list (it was answered or
    /// leaves); a race copy of a host stops counting as a race in progress.
    pub(super) fn unanswered_unlink(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        if s.flags & UNANSWERED == 0 {
            return;
        }
        s.flags &= !UNANSWERED;
        let (older, newer) = (s.older, s.newer);
        s.older = NONE;
        s.newer = NONE;
        let counted_race = s.race != NONE && s.flags & HOSTED != 0;
        let client = s.client;
        if older != NONE {
            self.slots[older as usize].newer = newer;
        } else {
            self.unans_head = newer;
        }
        if newer != NONE {
            self.slots[newer as usize].older = older;
        } else {
            self.unans_tail = older;
        }
        if counted_race {
            self.hosts.race(&client, false);
        }
    }

    /// The oldest session that never saw an answer, if any.
    pub fn oldest_unanswered(&self) -> Option<u32> {
        (self.unans_head != NONE).then_some(self.unans_head)
    }

    /// Removes the oldest unanswered session unless it is `keep` (the
    /// session just created). Returns whether it did. Callers: outbound
    /// creation, in a nearly full shard.
    pub(super) fn make_room(&mut self, keep: u32) -> bool {
        let victim = self.unans_head;
        if victim == NONE || victim == keep {
            return false;
        }
        self.remove(victim);
        self.counters.evicted_unanswered.inc();
        true
    }

    /// Whether inside host `client` may start another race (its race
    /// copies waiting for an answer are below `host_max_races`); a refusal
    /// is counted `host_races_limit`. Translate asks before it starts a
    /// race and sends the SYN by one uplink when refused.
    /// `count`: whether a refusal is counted (once per race, not per copy).
    pub fn host_may_race(&mut self, client: std::net::IpAddr, count: bool) -> bool {
        let lim = self.cfg.hosts;
        self.hosts.may_race(
            &super::session::to16(client),
            &lim,
            count.then_some(&*self.counters),
        )
    }

    /// The live sessions and race copies waiting for an answer of inside
    /// host `client` in this shard (`None` when it has no session).
    pub fn host_usage(&self, client: std::net::IpAddr) -> Option<(u32, u32)> {
        self.hosts
            .get(&super::session::to16(client))
            .map(|h| (h.sessions, h.races))
    }

    /// Inside hosts with live sessions in this shard.
    pub fn hosts_tracked(&self) -> usize {
        self.hosts.len()
    }
}
