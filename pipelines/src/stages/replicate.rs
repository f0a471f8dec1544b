//! Stage 2, replicate: decides how new outbound TCP connections leave.
//!
//! A bare SYN (SYN set, ACK clear: a new connection, seed 001 [0036]) whose
//! destination has no fresh RTT entry becomes one copy per healthy uplink
//! (at most [`RACE_MAX`]), each tagged with its uplink; translate source-NATs
//! every copy to its uplink's address and races them ([0026]-[0027]). A
//! fresh entry skips the race and names the fastest uplink ([0041]). A
//! policy may keep some traffic out of races ([0043]); a SYN carrying TCP
//! Fast Open data never races, as its data would reach the server once per
//! uplink. SYNs that do not race get an uplink from the policy's RFC 2391
//! algorithm.
//!
//! Every other outbound packet gets [`UPLINK_AUTO`]: most belong to an
//! existing session, whose uplink translate already knows, and translate
//! runs the algorithm only when a packet does open a session, so round
//! robin rotates per new flow and not per packet.
//!
//! Uplinks marked down by the management core are left out, except that one
//! race copy every `probe_interval` goes to each down uplink whose link is up:
//! its answer is how the uplink comes back (seed 001 [0054]).
//!
//! Inbound packets pass through untouched.

use std::sync::Arc;

use crate::packet::buf::{Direction, PacketBuf};
use crate::packet::burst::Burst;
use crate::packet::counter::StageCounters;
use crate::packet::drop::DropReason;
use crate::packet::flow::{proto, FlowKey};
use crate::packet::time::Nanos;
use crate::select::policy::{
    candidates, family_masks, initial_snapshot, SelectionCounters, SelectionPolicy,
};
use crate::select::{Selector, RACE_MAX};
use crate::topology::{Topology, UplinkId, MAX_UPLINKS, UPLINK_AUTO};
use crate::wire::tcp::tcp_payload_len;
use crate::wire::tcp::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

pub struct Replicate {
    policy: Arc<SelectionPolicy>,
    pub selector: Selector,
    families: [u64; 2],
    next_tag: u32,
    /// When each uplink last got a probe copy.
    last_probe: Vec<Nanos>,
    /// Shared with the management core, which only reads.
    pub counters: Arc<StageCounters>,
    pub selection: Arc<SelectionCounters>,
}

impl Replicate {
    pub fn new(topo: Arc<Topology>) -> Self {
        Replicate::with_policy(topo, Arc::default())
    }

    /// Uses `policy` for the packets from now on (a reload).
    pub fn set_policy(&mut self, policy: Arc<SelectionPolicy>) {
        self.policy = policy;
    }

    pub fn with_policy(topo: Arc<Topology>, policy: Arc<SelectionPolicy>) -> Self {
        Replicate {
            policy,
            selector: Selector::new(initial_snapshot(&topo)),
            families: family_masks(&topo),
            next_tag: 0,
            last_probe: vec![Nanos::ZERO; topo.uplinks.len()],
            counters: Arc::default(),
            selection: Arc::default(),
        }
    }

    /// Moves packets from `input` to `output` (until `input` is empty or
    /// `output` has no room for the next packet's copies), deciding the
    /// uplink of outbound SYNs. Packets left in `input` wait for the next
    /// call; with an empty `output` at least one packet is always taken.
    pub fn process<B: PacketBuf>(
        &mut self,
        now: Nanos,
        input: &mut Burst<B>,
        output: &mut Burst<B>,
    ) {
        let mut rest = Burst::new();
        for mut pkt in input.drain(..) {
            let room = output.remaining_capacity();
            if !rest.is_empty() || room == 0 {
                rest.push(pkt);
                continue;
            }
            let m = *pkt.meta();
            if m.direction != Direction::Outbound {
                self.counters.packets.inc();
                output.push(pkt);
                continue;
            }
            let bare_syn = m.flow.proto == proto::TCP
                && m.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN;
            if !bare_syn {
                self.counters.packets.inc();
                pkt.meta_mut().uplink = UPLINK_AUTO;
                output.push(pkt);
                continue;
            }
            // Room for a whole race is checked before anything is decided,
            // so a deferred SYN has changed no state (probe times, counters).
            if output.remaining_capacity() < RACE_MAX && !output.is_empty() {
                rest.push(pkt);
                continue;
            }
            self.counters.packets.inc();
            let f = m.flow;
            let (race, alg) = self.policy.rule(&f);
            let cands = candidates(&self.families, &self.selector, &f);
            if let Some(u) = self.selector.cached(f.dst, cands, alg, f.proto, now) {
                self.selection.cache_hits.inc();
                pkt.meta_mut().uplink = u;
                output.push(pkt);
                continue;
            }
            // TCP Fast Open: the SYN's data would reach the server once per
            // uplink, so it does not race.
            if race
                && tcp_payload_len(&pkt) == 0
                && self.selector.snapshot().fresh(f.dst, now).is_none()
            {
                let set = self.race_set(now, &f, cands);
                if set.count_ones() >= 2 {
                    self.replicate(pkt, set, output);
                    continue;
                }
            }
            match self.selector.pick(alg, f.dst, f.proto, cands) {
                Some(u) => {
                    self.selection.by_algorithm[alg.index()].inc();
                    pkt.meta_mut().uplink = u;
                    output.push(pkt);
                }
                None => self.counters.count_drop(DropReason::NoUplink),
            }
        }
        *input = rest;
    }

    /// The uplinks a SYN races over: the candidates, plus down uplinks due
    /// for a probe; at most [`RACE_MAX`], the lowest-numbered.
    fn race_set(&mut self, now: Nanos, f: &FlowKey, cands: u64) -> u64 {
        let fam = self.families[usize::from(f.dst.is_ipv6())];
        let mut set = cands;
        for (u, v) in self
            .selector
            .snapshot()
            .uplinks
            .iter()
            .enumerate()
            .take(MAX_UPLINKS)
        {
            if fam & (1 << u) != 0 && !v.healthy && v.link_up {
                let last = &mut self.last_probe[u];
                if now.since(*last) >= self.policy.probe_interval || *last == Nanos::ZERO {
                    *last = now;
                    set |= 1 << u;
                    self.selection.probes.inc();
                }
            }
        }
        let mut kept = 0u64;
        while set != 0 && (kept.count_ones() as usize) < RACE_MAX {
            let bit = set & set.wrapping_neg();
            kept |= bit;
            set &= !bit;
        }
        kept
    }

    /// One copy of `pkt` per uplink of `set`, in uplink order, all stamped
    /// with one race tag. A copy the pool cannot supply is counted
    /// `no_buffer`; the race goes on with the others.
    fn replicate<B: PacketBuf>(&mut self, pkt: B, set: u64, output: &mut Burst<B>) {
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        let n = set.count_ones() as u8;
        let mut s = set;
        let mut k = 0u8;
        self.selection.races_planned.inc();
        let mut original = Some(pkt);
        while s != 0 {
            let u = s.trailing_zeros() as UplinkId;
            s &= s - 1;
            let copy = if s == 0 {
                original.take()
            } else {
                original.as_ref().and_then(|p| p.try_clone())
            };
            let Some(mut c) = copy else {
                self.counters.count_drop(DropReason::NoBuffer);
                continue;
            };
            let m = c.meta_mut();
            m.uplink = u;
            m.race = n;
            m.race_index = k;
            m.race_tag = self.next_tag;
            k += 1;
            self.selection.copies.inc();
            output.push(c);
        }
    }
}
