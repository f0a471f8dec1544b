//! Eviction under pressure: the list of sessions a newcomer may take the
//! place of, oldest first, threaded through the slab (two `u32` links a
//! session), and the host bookkeeping of sessions joining and leaving it.
//!
//! Two kinds of session are on it, in the order they joined:
//! - unanswered ones (a SYN or SYN copy no server answered, a UDP or ICMP
//!   flow with no reply), from their creation; one packet from outside
//!   takes such a session off the list;
//! - closed TCP connections (FINs seen both ways, TIME_WAIT-like, or an
//!   RST), from the packet that closed them to their end; late segments
//!   (the last ACK, a retransmitted FIN) leave them on it. Joining reuses
//!   the links the window tracker kept its edges in, so its checks become
//!   liberal for what is left of the connection (as before the first
//!   answer). One FIN alone is not enough: a half-closed connection may
//!   still carry data the other way for as long as it likes.
//!
//! A shard holding [`EVICT_AT_PERCENT`](super::EVICT_AT_PERCENT) of its
//! `max_sessions` removes the head of the list before it creates an
//! outbound session: O(1), no scan. A session with traffic both ways whose
//! connection has not ended (established, or half-closed) is never on the
//! list, so it is never evicted for a newcomer. This is conntrack's early
//! drop (entries not yet assured go first) and VPP NAT44-ED's reuse of
//! transitory sessions, made shard-wide and oldest-first.

use super::session::{seen, HOSTED, NONE, SENT, UNANSWERED, WIN};
use super::shard::NatShard;

impl NatShard {
    /// Appends live session `idx` (newest) to the unanswered list.
    pub(super) fn unanswered_push(&mut self, idx: u32) {
        let tail = self.unans_tail;
        {
            self.slots[idx as usize].flags |= UNANSWERED;
            let c = &mut self.cold[idx as usize];
            c.older = tail;
            c.newer = NONE;
        }
        if tail != NONE {
            self.cold[tail as usize].newer = idx;
        } else {
            self.unans_head = idx;
        }
        self.unans_tail = idx;
    }

    /// Appends live TCP session `idx`, whose connection ended and which is
    /// not on the list, as a closed one: the window tracker's edges give
    /// way to the links (its checks become liberal).
    pub(super) fn closed_push(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        s.flags &= !(WIN | SENT);
        s.tcp |= seen::CLOSED_LISTED;
        self.unanswered_push(idx);
    }

    /// Takes session `idx` off the list (it was answered or leaves); a race
    /// copy of a host waiting for its answer stops counting as a race in
    /// progress.
    pub(super) fn unanswered_unlink(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        if s.flags & UNANSWERED == 0 {
            return;
        }
        let waited = s.unanswered();
        s.flags &= !UNANSWERED;
        s.tcp &= !seen::CLOSED_LISTED;
        let c = &mut self.cold[idx as usize];
        let (older, newer) = (c.older, c.newer);
        c.older = NONE;
        c.newer = NONE;
        let s = &self.slots[idx as usize];
        let counted_race = waited && s.race != NONE && s.flags & HOSTED != 0;
        let client = s.client;
        if older != NONE {
            self.cold[older as usize].newer = newer;
        } else {
            self.unans_head = newer;
        }
        if newer != NONE {
            self.cold[newer as usize].older = older;
        } else {
            self.unans_tail = older;
        }
        if counted_race {
            self.hosts.race(&client, false);
        }
    }

    /// The head of the eviction list: the oldest session that never saw an
    /// answer or whose TCP connection ended, if any.
    pub fn oldest_unanswered(&self) -> Option<u32> {
        (self.unans_head != NONE).then_some(self.unans_head)
    }

    /// Removes the head of the eviction list unless it is `keep` (the
    /// session just created). Returns whether it did. Callers: outbound
    /// creation, in a nearly full shard.
    pub(super) fn make_room(&mut self, keep: u32) -> bool {
        let victim = self.unans_head;
        if victim == NONE || victim == keep {
            return false;
        }
        let closed = self.slots[victim as usize].tcp & seen::CLOSED_LISTED != 0;
        self.remove(victim);
        if closed {
            self.counters.evicted_closed.inc();
        } else {
            self.counters.evicted_unanswered.inc();
        }
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
