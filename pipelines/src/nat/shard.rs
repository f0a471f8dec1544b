//! The shard: its slab, indexes, addresses and pools; lookup, refresh and
//! removal of sessions.

use hashbrown::{HashMap, HashTable};
use std::net::IpAddr;
use std::sync::Arc;

use super::bucket::{Home, SigIndex};
use super::config::NatConfig;
use super::counters::{NatCounters, TopHost, UplinkCounters};
use super::hosts::Hosts;
use super::index::{
    in_eq_key, inside_hash, out_eq_key, session_in_hash, session_out_hash, tag, Hasher, NatAddr,
    Tuple,
};
use super::ports::{class_of, PortPool, CLASSES};
use super::session::{
    seen, to16, Session, SessionCold, HOSTED, LOSER, NONE, OUT_INDEXED, UNANSWERED,
};
use crate::packet::counter::Counter;
use crate::packet::flow::{proto, FlowKey};
use crate::packet::time::Nanos;
use crate::select::SelEvent;
use crate::topology::{NatPortRange, Topology, UplinkId};

pub struct NatShard {
    pub(super) cfg: NatConfig,
    pub(super) slots: Vec<Session>,
    /// The cold halves, at the same slots as `slots` (see [`Session`]).
    pub(super) cold: Vec<SessionCold>,
    pub(super) free_head: u32,
    pub(super) live: usize,
    pub(super) by_out: SigIndex,
    pub(super) by_in: SigIndex,
    /// Inside endpoint → head session of its mapping(s).
    pub(super) by_inside: HashTable<u32>,
    /// `NatConfig::flow_hasher`: the same in every shard and in classify.
    pub(super) hasher: Hasher,
    /// Keyed by the run's seed alone, the same in every shard: paired
    /// address pooling.
    pub(super) pairing: Hasher,
    pub(super) addrs: Vec<NatAddr>,
    pub(super) addr_index: HashMap<IpAddr, u16>,
    /// Per uplink, its NAT address indexes of each family (v4, v6).
    pub(super) uplink_addrs: Vec<[Vec<u16>; 2]>,
    pub(super) range: NatPortRange,
    /// Indexed by `addr * CLASSES + class`; built on first use.
    pub(super) pools: Vec<Option<PortPool>>,
    pub(super) rng: u64,
    pub(super) sweep_cursor: usize,
    pub(super) sweep_owed: u64,
    pub(super) sweep_credit: u128,
    pub(super) last_sweep: Option<Nanos>,
    /// Race-tagged sessions removed since the owner last took them (see
    /// [`NatShard::take_race_exits`]).
    pub(super) race_exits: Vec<RaceExit>,
    /// Selection events (RTT samples, unanswered race copies) for the
    /// management core; the runtime drains them every loop turn. Bounded by
    /// [`EVENTS_MAX`]: past it events are counted `events_dropped`.
    pub events: Vec<SelEvent>,
    /// The NAT event log (see `event`): off until the lcore turns it on.
    pub log: super::event::EventLog,
    /// Per inside host limits and counts (see `hosts`).
    pub(super) hosts: Hosts,
    /// The unanswered list: oldest and newest (see `evict`).
    pub(super) unans_head: u32,
    pub(super) unans_tail: u32,
    /// Live sessions from which outbound creation evicts.
    pub(super) evict_at: usize,
    /// Shared with the management core, which only reads.
    pub counters: Arc<NatCounters>,
    /// The shortest of the configuration's session timeouts: a session
    /// seen more recently has not expired, whatever its kind.
    pub(super) fresh_for: Nanos,
}

/// The shortest timeout any session of `cfg` can have (see
/// `Session::timeout`).
fn shortest_timeout(cfg: &NatConfig) -> Nanos {
    [
        cfg.udp_idle_timeout,
        cfg.tcp_established_timeout,
        cfg.tcp_transitory_timeout,
        cfg.tcp_closed_timeout,
        cfg.icmp_timeout,
        cfg.race_timeout,
    ]
    .into_iter()
    .min()
    .unwrap_or(Nanos::ZERO)
}

/// One key of a burst lookup ([`NatShard::find_burst_hinted`]).
#[derive(Clone, Copy, Debug)]
pub struct Probe<'a> {
    pub key: &'a FlowKey,
    /// Looked up in the inbound index (else the outbound one).
    pub inbound: bool,
    /// The key's hash by [`NatConfig::flow_hasher`] (classify's
    /// `PacketMeta::flow_hash`), or 0: hashed here.
    pub hash: u64,
}

/// What a burst lookup found for a key: its slot, and the generation of
/// the index it was found in (see [`NatShard::lookup`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hint {
    pub slot: u32,
    generation: u32,
    inbound: bool,
}

/// Selection events a shard buffers between two drains.
pub const EVENTS_MAX: usize = 4_096;

/// Race exits reserved up front: a sweep call removes at most
/// `SWEEP_MAX` sessions, a lookup one, and the owner takes them after each.
const EXITS_RESERVED: usize = 1_024;

/// A session that carried a race tag (see [`NatShard::set_race`]) and left
/// the table (removed, expired or swept). The shard only keeps the tag; the
/// owner of the races takes these after every call that can remove
/// sessions and lets the race forget the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaceExit {
    pub race: u32,
    pub slot: u32,
}

impl NatShard {
    /// A shard owning `topo.shard_ports(shard)` on every NAT address.
    pub fn new(cfg: NatConfig, topo: &Topology, shard: u16) -> NatShard {
        let mut addrs = Vec::new();
        let mut addr_index = HashMap::new();
        let mut uplink_addrs: Vec<[Vec<u16>; 2]> = Vec::new();
        for (u, up) in topo.uplinks.iter().enumerate() {
            let mut fam: [Vec<u16>; 2] = [Vec::new(), Vec::new()];
            for a in &up.nat_addrs {
                let i = addrs.len() as u16;
                addrs.push(NatAddr {
                    addr: *a,
                    bytes: to16(*a),
                    uplink: u as UplinkId,
                });
                addr_index.insert(*a, i);
                fam[usize::from(a.is_ipv6())].push(i);
            }
            uplink_addrs.push(fam);
        }
        let cap = cfg.max_sessions;
        // The index hash is one per configuration (`NatConfig::flow_hasher`,
        // shared with classify); the port randomisation is per shard.
        let shard_seed = cfg.seed ^ u64::from(shard).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        NatShard {
            slots: Vec::with_capacity(cap),
            cold: Vec::with_capacity(cap),
            free_head: NONE,
            live: 0,
            by_out: SigIndex::with_capacity(cap),
            by_in: SigIndex::with_capacity(cap),
            by_inside: HashTable::with_capacity(cap),
            hasher: Hasher::of(cfg.flow_hasher()),
            pairing: Hasher::new(cfg.seed),
            pools: (0..addrs.len() * CLASSES).map(|_| None).collect(),
            addrs,
            addr_index,
            uplink_addrs,
            range: topo.shard_ports(shard),
            rng: shard_seed.rotate_left(17) | 1,
            sweep_cursor: 0,
            sweep_owed: 0,
            sweep_credit: 0,
            last_sweep: None,
            race_exits: Vec::with_capacity(EXITS_RESERVED),
            events: Vec::with_capacity(EVENTS_MAX),
            log: super::event::EventLog::default(),
            hosts: Hosts::new(cfg.hosts.max_hosts),
            unans_head: NONE,
            unans_tail: NONE,
            evict_at: cfg.evict_at(),
            fresh_for: shortest_timeout(&cfg),
            counters: Arc::new(NatCounters {
                created: Counter::new(),
                table_full: Counter::new(),
                expired: Counter::new(),
                port_exhausted: Counter::new(),
                filtered: Counter::new(),
                tcp_sessions: Counter::new(),
                udp_sessions: Counter::new(),
                icmp_sessions: Counter::new(),
                mappings: Counter::new(),
                sweep_laps: Counter::new(),
                races: Counter::new(),
                race_table_full: Counter::new(),
                events_dropped: Counter::new(),
                race_closed: Counter::new(),
                flushed: Counter::new(),
                host_sessions_limit: Counter::new(),
                host_rate_limit: Counter::new(),
                host_races_limit: Counter::new(),
                hosts_table_full: Counter::new(),
                evicted_unanswered: Counter::new(),
                evicted_closed: Counter::new(),
                mapping_sessions_limit: Counter::new(),
                fragments_held: Counter::new(),
                fragment_datagrams: Counter::new(),
                fragments: Counter::new(),
                top: std::array::from_fn(|_| TopHost::default()),
                uplinks: (0..topo.uplinks.len())
                    .map(|_| UplinkCounters::default())
                    .collect(),
                servers: Vec::new(),
            }),
            cfg,
        }
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }

    /// Takes the settings of `cfg` that can change while sessions live (a
    /// reload): timeouts (existing sessions expire by the new ones at the
    /// sweep's next visit), filtering and port preservation for new
    /// sessions, the sweep interval, the race timeout and the per-host
    /// rate and count limits. What sized the tables up front stays:
    /// `max_sessions`, `max_races`, `hosts.max_hosts`, and the `seed`.
    pub fn set_live(&mut self, cfg: &NatConfig) {
        let c = &mut self.cfg;
        c.udp_idle_timeout = cfg.udp_idle_timeout;
        c.tcp_established_timeout = cfg.tcp_established_timeout;
        c.tcp_transitory_timeout = cfg.tcp_transitory_timeout;
        c.tcp_closed_timeout = cfg.tcp_closed_timeout;
        c.icmp_timeout = cfg.icmp_timeout;
        c.filtering = cfg.filtering;
        c.sweep_interval = cfg.sweep_interval;
        c.port_preservation = cfg.port_preservation;
        c.race_timeout = cfg.race_timeout;
        c.hosts.max_sessions = cfg.hosts.max_sessions;
        c.hosts.new_per_second = cfg.hosts.new_per_second;
        c.hosts.new_burst = cfg.hosts.new_burst;
        c.hosts.max_races = cfg.hosts.max_races;
        self.fresh_for = shortest_timeout(&self.cfg);
    }

    /// The live session in slot `idx`.
    pub fn session(&self, idx: u32) -> Option<&Session> {
        self.slots.get(idx as usize).filter(|s| s.is_live())
    }

    /// The cold half (counters) of the live session in slot `idx`.
    pub fn cold(&self, idx: u32) -> Option<&SessionCold> {
        self.session(idx)?;
        self.cold.get(idx as usize)
    }

    /// Slot indexes of all live sessions (for tests and dumps; O(slots)).
    pub fn live_sessions(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.slots.len() as u32).filter(|&i| self.slots[i as usize].is_live())
    }

    pub fn nat_addr(&self, s: &Session) -> IpAddr {
        self.addrs[usize::from(s.nat_addr)].addr
    }

    /// The 5-tuple of the remote's replies: (SA, SP) → (NA, NP).
    pub fn inbound_key(&self, s: &Session) -> FlowKey {
        FlowKey {
            src: s.remote_addr(),
            dst: self.nat_addr(s),
            src_port: s.remote_port,
            dst_port: s.nat_port,
            proto: s.proto,
        }
    }

    /// The live session for an outbound 5-tuple, if any (an expired one that
    /// the sweep has not reached yet is removed here and not returned).
    #[inline]
    pub fn lookup_out(&mut self, key: &FlowKey, now: Nanos) -> Option<u32> {
        self.lookup(key, false, None, now)
    }

    /// The live session for an inbound 5-tuple, if any.
    #[inline]
    pub fn lookup_in(&mut self, key: &FlowKey, now: Nanos) -> Option<u32> {
        self.lookup(key, true, None, now)
    }

    /// The session slot an outbound (or inbound) 5-tuple's index entry
    /// names, without looking at its age. Translate calls it for a whole
    /// burst before translating any packet of it: the lookups of different
    /// packets do not depend on each other, so their cache misses overlap
    /// instead of being paid one after the other.
    #[inline]
    pub fn find(&self, key: &FlowKey, inbound: bool) -> Option<u32> {
        let t = Tuple::of(key);
        let h = self
            .hasher
            .hash(&t.src, t.src_port, &t.dst, t.dst_port, t.tag());
        self.find_home(key, self.index(inbound).home(h), inbound)
    }

    /// [`find`](Self::find) for a whole burst, in stages so that the
    /// packets' cache misses overlap (see `bucket`): hash every key and
    /// touch its bucket; compare signatures and touch the candidate
    /// sessions; then verify the keys. `keys[i]` is a 5-tuple and its
    /// direction (inbound or not), or `None` for a packet that needs no
    /// lookup; `out[i]` receives what `find` would return. The tests' way
    /// into [`find_burst_hinted`](Self::find_burst_hinted), which translate
    /// calls with classify's hashes.
    #[cfg(test)]
    pub(crate) fn find_burst(&self, keys: &[Option<(&FlowKey, bool)>], out: &mut [Option<u32>]) {
        const N: usize = crate::packet::burst::BURST_MAX;
        let mut probes: [Option<Probe<'_>>; N] = [None; N];
        let mut hints: [Option<Hint>; N] = [None; N];
        for (p, k) in probes.iter_mut().zip(keys) {
            *p = k.map(|(key, inbound)| Probe {
                key,
                inbound,
                hash: 0,
            });
        }
        let n = keys.len().min(N);
        self.find_burst_hinted(&probes[..n], &mut hints[..n]);
        for (o, h) in out.iter_mut().zip(&hints[..n]) {
            *o = h.map(|h| h.slot);
        }
    }

    /// [`find_burst`](Self::find_burst) taking each key's hash when the
    /// caller has it ([`Probe::hash`], classify's `PacketMeta::flow_hash`
    /// keyed by this configuration's [`NatConfig::flow_hasher`]), and
    /// giving hints that [`lookup`](Self::lookup) trusts without verifying
    /// the key again while no session entered or left the index since.
    pub fn find_burst_hinted(&self, probes: &[Option<Probe<'_>>], out: &mut [Option<Hint>]) {
        const N: usize = crate::packet::burst::BURST_MAX;
        // Per key: its home and the slot its signature points at (stage 2).
        let mut homes: [(Home, u32); N] = [(Home { bucket: 0, sig: 0 }, NONE); N];
        // Stage 1: hash what is not hashed yet, touch every bucket.
        let mut acc = 0u32;
        for (h, p) in homes.iter_mut().zip(probes) {
            if let Some(p) = p {
                let hash = if p.hash != 0 {
                    p.hash
                } else {
                    let t = Tuple::of(p.key);
                    self.hasher
                        .hash(&t.src, t.src_port, &t.dst, t.dst_port, t.tag())
                };
                let ix = self.index(p.inbound);
                let home = ix.home(hash);
                acc = acc.wrapping_add(u32::from(ix.touch(home)));
                h.0 = home;
            }
        }
        std::hint::black_box(acc);
        // Stage 2: signatures; touch the candidate sessions.
        for ((home, cand), p) in homes.iter_mut().zip(probes) {
            let Some(p) = p else {
                continue;
            };
            if let Some(c) = self.index(p.inbound).candidate(*home) {
                *cand = c;
                // The hot half is read next; the cold half's counters are
                // written by the packet's refresh.
                let hot = self.slots.get(c as usize).map_or(0, |s| s.flags);
                let cold = self.cold.get(c as usize).map_or(0, |s| s.wscale);
                acc = acc.wrapping_add(u32::from(hot ^ cold));
            }
        }
        std::hint::black_box(acc);
        // Stage 3: verify; the candidate first (what `find` would try
        // first), the whole search when it is not the key's.
        for ((o, p), (home, cand)) in out.iter_mut().zip(probes).zip(&homes) {
            *o = p.and_then(|p| {
                let is_key = |i: u32| {
                    self.slots.get(i as usize).is_some_and(|s| {
                        if p.inbound {
                            in_eq_key(s, &self.addrs, p.key)
                        } else {
                            out_eq_key(s, p.key)
                        }
                    })
                };
                let slot = if *cand != NONE && is_key(*cand) {
                    *cand
                } else {
                    self.find_home(p.key, *home, p.inbound)?
                };
                Some(Hint {
                    slot,
                    generation: self.index(p.inbound).generation(),
                    inbound: p.inbound,
                })
            });
        }
    }

    #[inline]
    fn index(&self, inbound: bool) -> &SigIndex {
        if inbound {
            &self.by_in
        } else {
            &self.by_out
        }
    }

    #[inline]
    fn find_home(&self, key: &FlowKey, home: Home, inbound: bool) -> Option<u32> {
        let (slots, addrs) = (&self.slots, &self.addrs);
        if inbound {
            self.by_in
                .find(home, |i| in_eq_key(&slots[i as usize], addrs, key))
        } else {
            self.by_out
                .find(home, |i| out_eq_key(&slots[i as usize], key))
        }
    }

    /// [`lookup_out`](Self::lookup_out) / [`lookup_in`](Self::lookup_in)
    /// with the slot [`find_burst_hinted`](Self::find_burst_hinted) gave
    /// earlier for this key: taken as it is while the index's generation
    /// has not moved (no entry added or removed since, so a lookup would
    /// find the same slot), checked against the key otherwise and looked
    /// up again when it no longer holds this flow's session. A hint is
    /// only ever given back with the key it was found for.
    #[inline]
    pub fn lookup(
        &mut self,
        key: &FlowKey,
        inbound: bool,
        hint: Option<Hint>,
        now: Nanos,
    ) -> Option<u32> {
        let ix = self.index(inbound);
        let idx = match hint {
            Some(h) if h.generation == ix.generation() && h.inbound == inbound => h.slot,
            _ => {
                let still = hint.map(|h| h.slot).filter(|&i| {
                    self.slots.get(i as usize).is_some_and(|s| {
                        if inbound {
                            in_eq_key(s, &self.addrs, key)
                        } else {
                            out_eq_key(s, key)
                        }
                    })
                });
                match still {
                    Some(i) => i,
                    None => self.find(key, inbound)?,
                }
            }
        };
        self.live_or_expire(idx, now)
    }

    #[inline]
    fn live_or_expire(&mut self, idx: u32, now: Nanos) -> Option<u32> {
        let s = &self.slots[idx as usize];
        // Seen within the shortest timeout: live whatever its kind.
        if now.since(s.last_seen) <= self.fresh_for {
            return Some(idx);
        }
        if s.expired(now, &self.cfg) {
            self.expire(idx);
            self.counters.expired.inc();
            return None;
        }
        Some(idx)
    }

    /// Removes a session that timed out. A race loser still here never
    /// answered its SYN copy (answered ones are removed when their RST goes
    /// out): that counts against its uplink's health (seed 001 [0054]).
    pub(super) fn expire(&mut self, idx: u32) {
        self.log_session(
            idx,
            super::event::EventKind::SessionExpired,
            super::event::EventReason::Timeout,
        );
        if let Some(s) = self.remove(idx) {
            if s.flags & LOSER != 0 && s.tcp & seen::SYN_IN == 0 {
                if let Some(u) = self.counters.uplinks.get(usize::from(s.uplink)) {
                    u.race_unanswered.inc();
                }
                self.emit(SelEvent::Unanswered {
                    uplink: s.uplink,
                    dst: s.remote_addr(),
                });
            }
        }
    }

    /// Queues a selection event for the management core.
    pub(crate) fn emit(&mut self, ev: SelEvent) {
        if self.events.len() < EVENTS_MAX {
            self.events.push(ev);
        } else {
            self.counters.events_dropped.inc();
        }
    }

    /// Gives session `idx` the outbound index entry of its 5-tuple, or takes
    /// it away (a race passes the entry to its winner).
    pub(crate) fn set_out_indexed(&mut self, idx: u32, on: bool) {
        let Some(s) = self.slots.get(idx as usize).filter(|s| s.is_live()) else {
            return;
        };
        let has = s.flags & OUT_INDEXED != 0;
        if on == has {
            // Nothing to change (the race decision's common case): no hash.
            return;
        }
        let h = session_out_hash(&self.hasher, s);
        if on {
            if self.by_out.insert(h, idx) {
                self.slots[idx as usize].flags |= OUT_INDEXED;
            } else {
                // No room within the index's bound: the session stays
                // without the entry (its packets find none), counted.
                self.counters.table_full.inc();
            }
        } else {
            self.by_out.remove(h, idx);
            self.slots[idx as usize].flags &= !OUT_INDEXED;
        }
    }

    /// Tags live session `idx` with race `race` (`NONE`: none). The shard
    /// does not interpret the tag; it reports a tagged session that leaves
    /// as a [`RaceExit`].
    pub(crate) fn set_race(&mut self, idx: u32, race: u32) {
        if let Some(s) = self.slots.get_mut(idx as usize).filter(|s| s.is_live()) {
            let was = s.race != NONE;
            s.race = race;
            // A race copy waiting for its answer counts as its host's race
            // in progress.
            if was != (race != NONE) && s.flags & HOSTED != 0 && s.unanswered() {
                let client = s.client;
                self.hosts.race(&client, !was);
            }
        }
    }

    /// Marks live session `idx` a race copy that lost: it lives on for the
    /// race timeout from `now` (to answer its SYN+ACK), and expiring
    /// unanswered counts against its uplink. Returns its uplink.
    pub(crate) fn mark_loser(&mut self, idx: u32, now: Nanos) -> Option<UplinkId> {
        let s = self.slots.get_mut(idx as usize).filter(|s| s.is_live())?;
        s.flags |= LOSER;
        s.last_seen = now;
        Some(s.uplink)
    }

    /// The race-tagged sessions removed since the last call, oldest first.
    pub fn take_race_exits(&mut self) -> std::vec::Drain<'_, RaceExit> {
        self.race_exits.drain(..)
    }

    /// Counts a new TCP connection carried by session `idx`'s uplink.
    pub fn count_connection(&self, idx: u32) {
        if let Some(s) = self.session(idx) {
            if let Some(c) = self.counters.uplinks.get(usize::from(s.uplink)) {
                c.connections.inc();
            }
        }
    }

    /// Whether the session saw a SYN from outside (its SYN+ACK).
    pub fn answered(s: &Session) -> bool {
        s.tcp & seen::SYN_IN != 0
    }

    /// Refreshes session `idx` with a packet of `len` bytes; returns it.
    #[inline]
    pub fn touch(
        &mut self,
        idx: u32,
        now: Nanos,
        len: usize,
        tcp_flags: u8,
        inbound: bool,
    ) -> Option<&Session> {
        let s = self.slots.get_mut(idx as usize).filter(|s| s.is_live())?;
        s.last_seen = now;
        let c = &mut self.cold[idx as usize];
        if inbound {
            c.packets_in = c.packets_in.saturating_add(1);
        } else {
            c.packets_out = c.packets_out.saturating_add(1);
        }
        c.add_bytes(inbound, len);
        if s.proto == proto::TCP {
            s.on_tcp(tcp_flags, inbound);
        }
        if inbound && s.unanswered() {
            self.unanswered_unlink(idx);
        }
        // A connection that ended joins the eviction list (see `evict`).
        let s = &self.slots[idx as usize];
        if s.flags & UNANSWERED == 0 && s.tcp_closed() {
            self.closed_push(idx);
        }
        self.slots.get(idx as usize)
    }

    /// Removes session `idx`: its index entries, its place in its mapping's
    /// chain, and with the mapping's last session the mapping and its port.
    pub fn remove(&mut self, idx: u32) -> Option<Session> {
        let s = self
            .slots
            .get(idx as usize)
            .filter(|s| s.is_live())?
            .clone();
        // Off the unanswered list first: a race copy stops counting as its
        // host's race in progress.
        self.unanswered_unlink(idx);
        if s.flags & HOSTED != 0 {
            self.hosts.release(&s.client, &self.counters);
        }
        if s.race != NONE {
            self.race_exits.push(RaceExit {
                race: s.race,
                slot: idx,
            });
        }
        let (hasher, addrs) = (&self.hasher, &self.addrs);
        if s.flags & OUT_INDEXED != 0 {
            self.by_out.remove(session_out_hash(hasher, &s), idx);
        }
        self.by_in.remove(session_in_hash(hasher, addrs, &s), idx);
        if let Some(n) = self.mapping_sessions(idx) {
            *n = n.saturating_sub(1);
        }
        let hasher = &self.hasher;
        let (next, prev) = (self.cold[idx as usize].next, self.cold[idx as usize].prev);
        if next != NONE {
            self.cold[next as usize].prev = prev;
        }
        if prev != NONE {
            self.cold[prev as usize].next = next;
        } else {
            // The head: the mapping passes to the next session, or ends.
            let mh = inside_hash(hasher, &s.client, s.client_port, tag(&s));
            let pool = self.pools[usize::from(s.nat_addr) * CLASSES + class_of(s.proto)].as_mut();
            let pi = pool.as_ref().and_then(|p| p.index(s.nat_port));
            if let Ok(mut e) = self.by_inside.find_entry(mh, |&i| i == idx) {
                if next != NONE {
                    *e.get_mut() = next;
                } else {
                    e.remove();
                }
            }
            if let (Some(pool), Some(pi)) = (pool, pi) {
                if next != NONE {
                    pool.owner[pi] = next;
                } else {
                    pool.give_back(pi);
                }
            }
            if next == NONE {
                self.counters
                    .mappings
                    .set(self.counters.mappings.get().saturating_sub(1));
            }
        }
        self.slots[idx as usize] = Session::FREE;
        self.cold[idx as usize] = SessionCold {
            next: self.free_head,
            ..SessionCold::FREE
        };
        self.free_head = idx;
        self.live -= 1;
        self.counters.adjust_gauges(s.proto, s.uplink, false);
        self.counters.adjust_server(s.proto, s.server, false);
        Some(s)
    }

    /// Bytes the host table reserves (its entries' key and value and
    /// control byte, at its reserved capacity).
    pub fn hosts_bytes(&self) -> usize {
        let buckets = (self.hosts.capacity() * 8 / 7).next_power_of_two();
        buckets * (16 + std::mem::size_of::<super::hosts::Host>() + 1)
    }

    /// The sticky (UDP or ICMP) mapping of `key`'s inside endpoint, if it
    /// has one: its head session and its uplink. TCP has none.
    pub(crate) fn sticky_mapping(&self, key: &FlowKey) -> Option<(u32, UplinkId)> {
        let t = Tuple::of(key);
        if t.proto == proto::TCP {
            return None;
        }
        let h = inside_hash(&self.hasher, &t.src, t.src_port, t.tag());
        let slots = &self.slots;
        let head = *self.by_inside.find(h, |&i| {
            let s = &slots[i as usize];
            s.client == t.src
                && s.client_port == t.src_port
                && s.proto == t.proto
                && s.is_v6() == t.v6
        })?;
        Some((head, slots[head as usize].uplink))
    }

    /// Removes every session of the mapping session `idx` belongs to (a
    /// sticky mapping moving off a down uplink for good); returns how
    /// many. The work is bounded by the mapping's chain.
    pub(crate) fn remove_mapping(&mut self, idx: u32) -> usize {
        let Some(mut i) = self.session(idx).map(|_| idx) else {
            return 0;
        };
        while let Some(p) = self
            .cold
            .get(i as usize)
            .map(|s| s.prev)
            .filter(|&p| p != NONE)
        {
            i = p;
        }
        let mut n = 0;
        while i != NONE {
            let next = self.cold[i as usize].next;
            if self.remove(i).is_none() {
                break;
            }
            n += 1;
            i = next;
        }
        n
    }

    /// Bytes the session slab and the three indexes take at their reserved
    /// capacity: (slab + both session indexes, mapping index). The session
    /// indexes are allocated whole at creation (see `bucket`); the mapping
    /// index's buckets are a `u32` and a control byte, hashbrown keeping
    /// them at most 7/8 full and rounding their count to a power of two.
    pub fn table_bytes(&self) -> (usize, usize) {
        let buckets = |cap: usize| (cap * 8 / 7).next_power_of_two();
        let slab = self.slots.capacity() * std::mem::size_of::<Session>()
            + self.cold.capacity() * std::mem::size_of::<SessionCold>();
        (
            slab + self.by_out.bytes() + self.by_in.bytes(),
            buckets(self.by_inside.capacity()) * (4 + 1),
        )
    }

    /// The uplink of a NAT address of this shard.
    pub fn uplink_of(&self, addr: IpAddr) -> Option<UplinkId> {
        let i = *self.addr_index.get(&addr)?;
        Some(self.addrs[usize::from(i)].uplink)
    }
}
