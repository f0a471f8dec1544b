//! Virtual reassembly of IP fragments (the design of VPP's NAT44-ED and its
//! shallow reassembly; no code of it): fragments are never joined. The
//! first fragment (offset 0) holds the transport header and is translated as
//! any packet; the tracker remembers, per datagram, what the first fragment
//! told (its ports and the shard of its flow: the annotation `A`), and every
//! later fragment is given that annotation so it can be translated by the
//! same session (address rewrite only: the transport checksum lives in the
//! first fragment and is updated there).
//!
//! A datagram is named by (source, destination, identification, protocol)
//! ([`FragKey`]). Later fragments that arrive before their first fragment
//! are held (the packet buffers themselves, not copies) and move to the
//! ready queue when it arrives; they are freed and counted
//! (`fragment_timeout`) when the datagram's timeout passes first.
//!
//! Bounded everywhere ([`FragLimits`]): datagrams tracked, fragments held,
//! fragments per datagram. Everything is reserved up front: nothing here
//! allocates after [`FragTracker::new`]. Refusals are [`DropReason`]s:
//! `fragment_limit`, `fragment_overlap` (and any fragment past the end the
//! last fragment gave: the whole datagram is refused, RFC 5722),
//! `fragment_duplicate` (an exact copy: dropped, the datagram goes on),
//! `fragment_too_big` (past 65,535 bytes).
//!
//! Pure: no I/O, no clock (every call takes `now`). One tracker per NAT
//! shard; which shard sees a datagram is decided by classify (see
//! [`fragment_shard`]).

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::IpAddr;

use hashbrown::HashMap;

use crate::packet::counter::StageCounters;
use crate::packet::drop::DropReason;
use crate::packet::time::Nanos;

/// The limits of one shard's tracker (`[fragments]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragLimits {
    /// Later fragments held (waiting for their first fragment, or released
    /// and not yet translated) at once.
    pub max_held: usize,
    /// Datagrams tracked at once.
    pub max_datagrams: usize,
    /// How long a datagram is tracked after its first fragment seen.
    pub timeout: Nanos,
    /// Fragments one datagram may have.
    pub max_fragments: usize,
}

impl Default for FragLimits {
    fn default() -> Self {
        FragLimits {
            max_held: 256,
            max_datagrams: 1024,
            timeout: Nanos::from_millis(2_000),
            max_fragments: 64,
        }
    }
}

/// Largest IP datagram (IPv4 total length, IPv6 payload length).
pub const MAX_DATAGRAM: u32 = 65_535;

/// Names one datagram: its fragments share all four.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    pub proto: u8,
}

/// One fragment's place in its datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of its data in the datagram's payload, bytes.
    pub offset: u32,
    /// Bytes of data it carries.
    pub len: u32,
    /// More fragments follow.
    pub more: bool,
    /// Bytes of header that count against [`MAX_DATAGRAM`] (the IPv4
    /// header; the IPv6 Fragment header).
    pub header: u32,
}

/// The fragment shard of a datagram: every fragment of it, first or later,
/// in either direction, goes to this shard, whose tracker owns its state.
/// Computed from the key alone (no lookup), so any classify lcore picks
/// the same shard for all fragments of one datagram.
pub fn fragment_shard(key: &FragKey, shards: u16) -> u16 {
    let bits = |a: IpAddr| match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let mix = |h: u64, v: u64| (h ^ v).wrapping_mul(0xFF51_AFD7_ED55_8CCD).rotate_left(29);
    let (s, d) = (bits(key.src), bits(key.dst));
    let mut h = mix(0x9E37_79B9_7F4A_7C15, s as u64);
    h = mix(h, (s >> 64) as u64);
    h = mix(h, d as u64);
    h = mix(h, (d >> 64) as u64);
    h = mix(h, (u64::from(key.id) << 8) | u64::from(key.proto));
    h ^= h >> 32;
    (h % u64::from(shards.max(1))) as u16
}

/// What became of a later fragment.
#[derive(Debug)]
pub enum Later<B, A> {
    /// Its first fragment was seen: translate it now with this annotation.
    Pass(B, A),
    /// Held until its first fragment arrives (the tracker has it).
    Held,
    /// Refused: drop it and count the reason.
    Drop(B, DropReason),
}

const NONE: u32 = u32::MAX;

/// One tracked datagram.
struct Datagram<A> {
    key: FragKey,
    born: Nanos,
    /// The first fragment's annotation, once seen.
    ann: Option<A>,
    /// A refusal of the whole datagram: its later fragments are dropped
    /// with this reason until it times out.
    refused: Option<DropReason>,
    /// `[start, end)` of every fragment seen (capacity `max_fragments`,
    /// reserved once per slot).
    ranges: Vec<(u32, u32)>,
    /// Bytes seen (the ranges never overlap).
    seen: u32,
    /// The datagram's payload length, once its last fragment was seen.
    total: Option<u32>,
    /// Held fragments: a list through `FragTracker::held`.
    held_head: u32,
    held_tail: u32,
    live: bool,
}

struct HeldSlot<B> {
    pkt: Option<B>,
    next: u32,
}

/// One shard's fragment state. `B` is the packet buffer, `A` what the
/// first fragment tells the others (copied, so `Copy`).
pub struct FragTracker<B, A> {
    limits: FragLimits,
    index: HashMap<FragKey, u32>,
    slots: Vec<Datagram<A>>,
    free: Vec<u32>,
    held: Vec<HeldSlot<B>>,
    held_free: Vec<u32>,
    ready: VecDeque<(B, A)>,
    /// Next slot the sweep looks at.
    cursor: usize,
}

/// Slots the sweep looks at per call.
pub const SWEEP_SLOTS: usize = 64;

impl<B, A: Copy> FragTracker<B, A> {
    /// A tracker with all its memory reserved (limits of 0 are taken as 1).
    pub fn new(limits: FragLimits) -> Self {
        let limits = FragLimits {
            max_held: limits.max_held.max(1),
            max_datagrams: limits.max_datagrams.max(1),
            max_fragments: limits.max_fragments.max(1),
            timeout: limits.timeout,
        };
        let unspecified = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        let slots = (0..limits.max_datagrams)
            .map(|_| Datagram {
                key: FragKey {
                    src: unspecified,
                    dst: unspecified,
                    id: 0,
                    proto: 0,
                },
                born: Nanos::ZERO,
                ann: None,
                refused: None,
                ranges: Vec::with_capacity(limits.max_fragments),
                seen: 0,
                total: None,
                held_head: NONE,
                held_tail: NONE,
                live: false,
            })
            .collect();
        FragTracker {
            index: HashMap::with_capacity(limits.max_datagrams),
            slots,
            free: (0..limits.max_datagrams as u32).rev().collect(),
            held: (0..limits.max_held)
                .map(|_| HeldSlot {
                    pkt: None,
                    next: NONE,
                })
                .collect(),
            held_free: (0..limits.max_held as u32).rev().collect(),
            ready: VecDeque::with_capacity(limits.max_held),
            cursor: 0,
            limits,
        }
    }

    pub fn limits(&self) -> &FragLimits {
        &self.limits
    }

    /// Datagrams tracked now.
    pub fn datagrams(&self) -> usize {
        self.index.len()
    }

    /// Fragments held now (waiting, or ready and not yet taken).
    pub fn held(&self) -> usize {
        self.held.len() - self.held_free.len() + self.ready.len()
    }

    /// Fragments released by their first fragment, waiting to be taken.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Takes the next released fragment with its annotation.
    pub fn pop_ready(&mut self) -> Option<(B, A)> {
        self.ready.pop_front()
    }

    /// The first fragment of `key` (offset 0), annotated `ann`: recorded,
    /// and the datagram's held fragments move to the ready queue. An error
    /// refuses it (the caller drops and counts it). Held fragments freed
    /// here (a refused datagram) are counted on `counters`.
    pub fn first(
        &mut self,
        now: Nanos,
        key: FragKey,
        frag: Fragment,
        ann: A,
        counters: &StageCounters,
    ) -> Result<(), DropReason> {
        let slot = self.entry(now, key, counters)?;
        self.add(slot, frag, counters)?;
        let d = &mut self.slots[slot as usize];
        d.ann = Some(ann);
        let mut h = std::mem::replace(&mut d.held_head, NONE);
        d.held_tail = NONE;
        while h != NONE {
            let s = &mut self.held[h as usize];
            let next = std::mem::replace(&mut s.next, NONE);
            if let Some(p) = s.pkt.take() {
                self.ready.push_back((p, ann));
            }
            self.held_free.push(h);
            h = next;
        }
        self.finish_if_complete(slot);
        Ok(())
    }

    /// A later fragment of `key` (offset > 0).
    pub fn later(
        &mut self,
        now: Nanos,
        key: FragKey,
        frag: Fragment,
        pkt: B,
        counters: &StageCounters,
    ) -> Later<B, A> {
        let slot = match self.entry(now, key, counters) {
            Ok(s) => s,
            Err(r) => return Later::Drop(pkt, r),
        };
        let ann = self.slots[slot as usize].ann;
        if ann.is_none() && self.held() >= self.limits.max_held {
            // Nothing recorded yet: a fragment that cannot be held leaves
            // no trace (a new entry with nothing in it is removed).
            self.remove_if_empty(slot);
            return Later::Drop(pkt, DropReason::FragmentLimit);
        }
        if let Err(r) = self.add(slot, frag, counters) {
            self.remove_if_empty(slot);
            return Later::Drop(pkt, r);
        }
        match ann {
            Some(a) => {
                self.finish_if_complete(slot);
                Later::Pass(pkt, a)
            }
            None => {
                // Room checked above: a free held slot exists.
                let Some(h) = self.held_free.pop() else {
                    return Later::Drop(pkt, DropReason::FragmentLimit);
                };
                self.held[h as usize] = HeldSlot {
                    pkt: Some(pkt),
                    next: NONE,
                };
                let d = &mut self.slots[slot as usize];
                match d.held_tail {
                    NONE => d.held_head = h,
                    t => self.held[t as usize].next = h,
                }
                d.held_tail = h;
                Later::Held
            }
        }
    }

    /// Expires timed-out datagrams among the next [`SWEEP_SLOTS`] slots;
    /// their held fragments are freed and counted `fragment_timeout`.
    /// Returns the number of fragments freed.
    pub fn sweep(&mut self, now: Nanos, counters: &StageCounters) -> usize {
        let mut freed = 0;
        for _ in 0..SWEEP_SLOTS.min(self.slots.len()) {
            let i = self.cursor;
            self.cursor = (self.cursor + 1) % self.slots.len();
            let d = &self.slots[i];
            if d.live && now.since(d.born) >= self.limits.timeout {
                freed += self.remove(i as u32, Some((DropReason::FragmentTimeout, counters)));
            }
        }
        freed
    }

    /// The datagram's slot, created when new; an expired one is restarted.
    fn entry(
        &mut self,
        now: Nanos,
        key: FragKey,
        counters: &StageCounters,
    ) -> Result<u32, DropReason> {
        if let Some(&slot) = self.index.get(&key) {
            let d = &self.slots[slot as usize];
            if now.since(d.born) < self.limits.timeout {
                return match d.refused {
                    Some(r) => Err(r),
                    None => Ok(slot),
                };
            }
            self.remove(slot, Some((DropReason::FragmentTimeout, counters)));
        }
        let slot = self.free.pop().ok_or(DropReason::FragmentLimit)?;
        let d = &mut self.slots[slot as usize];
        d.key = key;
        d.born = now;
        d.ann = None;
        d.refused = None;
        d.ranges.clear();
        d.seen = 0;
        d.total = None;
        d.held_head = NONE;
        d.held_tail = NONE;
        d.live = true;
        self.index.insert(key, slot);
        Ok(slot)
    }

    /// Records `f` in datagram `slot`, or refuses it. A refusal of the
    /// whole datagram frees its held fragments (counted with the reason)
    /// and marks it, so its later fragments are refused too.
    fn add(&mut self, slot: u32, f: Fragment, counters: &StageCounters) -> Result<(), DropReason> {
        let d = &mut self.slots[slot as usize];
        let end = f.offset.saturating_add(f.len);
        let whole = if f.header.saturating_add(end) > MAX_DATAGRAM {
            Some(DropReason::FragmentTooBig)
        } else if d.total.is_some_and(|t| end > t || (!f.more && end != t))
            || (!f.more && d.ranges.iter().any(|r| r.1 > end))
        {
            Some(DropReason::FragmentOverlap)
        } else if d.ranges.contains(&(f.offset, end)) {
            return Err(DropReason::FragmentDuplicate);
        } else if d.ranges.iter().any(|r| r.0 < end && f.offset < r.1) {
            Some(DropReason::FragmentOverlap)
        } else if d.ranges.len() >= self.limits.max_fragments {
            Some(DropReason::FragmentLimit)
        } else {
            None
        };
        if let Some(r) = whole {
            d.refused = Some(r);
            self.free_held(slot, Some((r, counters)));
            return Err(r);
        }
        d.ranges.push((f.offset, end));
        d.seen += f.len;
        if !f.more {
            d.total = Some(end);
        }
        Ok(())
    }

    /// Forgets a datagram every fragment of which was seen.
    fn finish_if_complete(&mut self, slot: u32) {
        let d = &self.slots[slot as usize];
        if d.ann.is_some() && d.total == Some(d.seen) && d.held_head == NONE {
            self.remove(slot, None);
        }
    }

    /// Forgets a datagram that a refused fragment just created.
    fn remove_if_empty(&mut self, slot: u32) {
        let d = &self.slots[slot as usize];
        if d.ranges.is_empty() && d.refused.is_none() && d.held_head == NONE {
            self.remove(slot, None);
        }
    }

    /// Frees datagram `slot` and its held fragments (counted with the
    /// reason given); returns how many fragments it freed.
    fn remove(&mut self, slot: u32, count: Option<(DropReason, &StageCounters)>) -> usize {
        let freed = self.free_held(slot, count);
        let d = &mut self.slots[slot as usize];
        if d.live {
            d.live = false;
            self.index.remove(&d.key);
            self.free.push(slot);
        }
        freed
    }

    fn free_held(&mut self, slot: u32, count: Option<(DropReason, &StageCounters)>) -> usize {
        let d = &mut self.slots[slot as usize];
        let mut h = std::mem::replace(&mut d.held_head, NONE);
        d.held_tail = NONE;
        let mut n = 0;
        while h != NONE {
            let s = &mut self.held[h as usize];
            let next = std::mem::replace(&mut s.next, NONE);
            if s.pkt.take().is_some() {
                n += 1;
            }
            self.held_free.push(h);
            h = next;
        }
        if let Some((reason, counters)) = count {
            counters.count_drops(reason, n as u64);
        }
        n
    }
}
