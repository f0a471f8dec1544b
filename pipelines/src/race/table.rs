//! The race records of one translate shard: a slab reserved up front, and
//! the replay slots of first-payload races.

use crate::nat::NONE;
use crate::packet::buf::{PacketBuf, PacketMeta};
use crate::packet::time::Nanos;
use crate::select::policy::RaceMode;
use crate::select::RACE_MAX;

/// One race.
#[derive(Clone, Debug)]
pub struct Race {
    /// Session slots, one per uplink raced; `NONE` once a member left.
    pub(crate) members: [u32; RACE_MAX],
    pub(crate) n: u8,
    /// When the first copy went out.
    pub(crate) started: Nanos,
    /// Which replicated SYN the copies come from (see `PacketMeta::race_tag`):
    /// a copy with another tag is a retransmission, not a new racer.
    pub(crate) tag: u32,
    pub(crate) decided: bool,
    pub(crate) mode: RaceMode,
    /// First-payload mode: the member whose SYN+ACK the client got, and
    /// that SYN+ACK's sequence number (the server ISN the client knows).
    pub(crate) client_side: u32,
    pub(crate) client_isn: u32,
    /// First-payload mode: each member's server ISN, valid where `answered`
    /// has its bit.
    pub(crate) isn: [u32; RACE_MAX],
    pub(crate) answered: u8,
    /// Members (by position) that got a negative answer (an RST, or an ICMP
    /// error quoting their SYN) before answering.
    pub(crate) failed: u8,
    /// First-payload mode: the client's next sequence number as seen so far.
    pub(crate) client_next: u32,
    /// First-payload mode: the client has sent payload; members answering
    /// later cannot be caught up and are reset.
    pub(crate) data_sent: bool,
    /// After a first-payload decision: winner ISN - client ISN, added to the
    /// client's ACK (and SACK) numbers, taken off the server's sequence
    /// numbers.
    pub(crate) offset: u32,
    /// First-payload mode: the client's segments with payload sent before
    /// the race was decided (replay slots), for members whose handshake
    /// completes after them.
    pub(crate) replay: [u16; REPLAY_MAX],
    pub(crate) replay_n: u8,
    /// A segment did not fit the replay slots: late members cannot be
    /// caught up.
    pub(crate) replay_lost: bool,
    next_free: u32,
}

/// Client segments a first-payload race keeps for late members.
pub const REPLAY_MAX: usize = 2;
/// Replay slots per shard, and their size.
pub const REPLAY_SLOTS: usize = 256;
const REPLAY_BYTES: usize = 2048;

/// Copies of client segments, in slots reserved up front.
pub(crate) struct ReplayStore {
    bytes: Vec<u8>,
    len: Vec<u16>,
    meta: Vec<PacketMeta>,
    free: Vec<u16>,
}

impl ReplayStore {
    fn new() -> ReplayStore {
        ReplayStore {
            bytes: vec![0; REPLAY_SLOTS * REPLAY_BYTES],
            len: vec![0; REPLAY_SLOTS],
            meta: vec![PacketMeta::default(); REPLAY_SLOTS],
            free: (0..REPLAY_SLOTS as u16).rev().collect(),
        }
    }

    /// Keeps a copy of `pkt`; `None` when no slot is free or it is too big.
    pub(crate) fn keep<B: PacketBuf>(&mut self, pkt: &B) -> Option<u16> {
        let d = pkt.data();
        if d.len() > REPLAY_BYTES {
            return None;
        }
        let slot = self.free.pop()?;
        let at = usize::from(slot) * REPLAY_BYTES;
        self.bytes[at..at + d.len()].copy_from_slice(d);
        self.len[usize::from(slot)] = d.len() as u16;
        self.meta[usize::from(slot)] = *pkt.meta();
        Some(slot)
    }

    /// Writes slot `slot` into `pkt` (frame and metadata).
    pub(crate) fn restore<B: PacketBuf>(&self, slot: u16, pkt: &mut B) -> bool {
        let i = usize::from(slot);
        let len = usize::from(self.len[i]);
        if !pkt.set_len(len) {
            return false;
        }
        let at = i * REPLAY_BYTES;
        pkt.data_mut().copy_from_slice(&self.bytes[at..at + len]);
        *pkt.meta_mut() = self.meta[i];
        true
    }

    fn release(&mut self, slot: u16) {
        if usize::from(slot) < REPLAY_SLOTS && !self.free.contains(&slot) {
            self.free.push(slot);
        }
    }
}

impl Race {
    const FREE: Race = Race {
        members: [NONE; RACE_MAX],
        n: 0,
        started: Nanos::ZERO,
        tag: 0,
        decided: false,
        mode: RaceMode::SynAck,
        client_side: NONE,
        client_isn: 0,
        isn: [0; RACE_MAX],
        answered: 0,
        failed: 0,
        client_next: 0,
        data_sent: false,
        offset: 0,
        replay: [0; REPLAY_MAX],
        replay_n: 0,
        replay_lost: false,
        next_free: NONE,
    };

    /// Position of member `idx`.
    pub(crate) fn position(&self, idx: u32) -> Option<usize> {
        self.members[..usize::from(self.n)]
            .iter()
            .position(|&m| m == idx)
    }

    pub(crate) fn live_members(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.members[..usize::from(self.n)]
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, m)| m != NONE)
    }
}

/// The races of one shard: a slab reserved up front with a free list.
pub struct RaceTable {
    races: Vec<Race>,
    free: u32,
    live: usize,
    cap: usize,
    pub(crate) replay: ReplayStore,
}

impl RaceTable {
    pub fn with_capacity(cap: usize) -> RaceTable {
        RaceTable {
            races: Vec::with_capacity(cap),
            free: NONE,
            live: 0,
            cap,
            replay: ReplayStore::new(),
        }
    }

    /// Races in progress (and first-payload offsets kept).
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// A new race record, or `None` at capacity.
    pub(crate) fn start(&mut self, now: Nanos, tag: u32, mode: RaceMode) -> Option<u32> {
        let r = if self.free != NONE {
            let r = self.free;
            self.free = self.races[r as usize].next_free;
            r
        } else if self.races.len() < self.cap {
            self.races.push(Race::FREE);
            (self.races.len() - 1) as u32
        } else {
            return None;
        };
        self.races[r as usize] = Race {
            started: now,
            tag,
            mode,
            ..Race::FREE
        };
        self.live += 1;
        Some(r)
    }

    pub(crate) fn get(&self, r: u32) -> Option<&Race> {
        self.races.get(r as usize)
    }

    pub(crate) fn get_mut(&mut self, r: u32) -> Option<&mut Race> {
        self.races.get_mut(r as usize)
    }

    /// Lets the replay slots of race `r` go (when it is decided).
    pub(crate) fn release_replay(&mut self, r: u32) {
        if let Some(x) = self.races.get_mut(r as usize) {
            for &slot in &x.replay[..usize::from(x.replay_n)] {
                self.replay.release(slot);
            }
            x.replay_n = 0;
        }
    }

    fn free(&mut self, r: u32) {
        self.release_replay(r);
        if let Some(x) = self.races.get_mut(r as usize) {
            *x = Race {
                next_free: self.free,
                ..Race::FREE
            };
            self.free = r;
            self.live -= 1;
        }
    }

    /// Adds slot `idx` to race `r` (false when the race is full or free).
    pub(crate) fn attach(&mut self, r: u32, idx: u32) -> bool {
        let Some(race) = self.races.get_mut(r as usize) else {
            return false;
        };
        let n = usize::from(race.n);
        if n >= RACE_MAX {
            return false;
        }
        race.members[n] = idx;
        race.n += 1;
        true
    }

    /// Takes slot `idx` out of race `r`; the race record goes with its last
    /// member.
    pub(crate) fn forget(&mut self, r: u32, idx: u32) {
        let Some(race) = self.races.get_mut(r as usize) else {
            return;
        };
        if let Some(k) = race.position(idx) {
            race.members[k] = NONE;
        }
        if race.live_members().next().is_none() {
            self.free(r);
        }
    }

    /// Frees race `r` if it has no member (a race whose first session could
    /// not be created).
    pub(crate) fn free_if_empty(&mut self, r: u32) {
        if self
            .races
            .get(r as usize)
            .is_some_and(|x| x.live_members().next().is_none())
        {
            self.free(r);
        }
    }
}
