//! Stage 3, translate: owns one NAT shard and rewrites packets through it.
//!
//! Outbound packets get source NAT to their uplink's address and a port from
//! the shard's slice (seed 001 [0026]: the source address is translated to an
//! address of the chosen route, so replies come back the same route).
//! Inbound packets are matched by their full 5-tuple (address-and-port
//! dependent filtering: a remote the client never contacted is dropped,
//! seed 000 [72]) and get their destination restored. TTL / hop limit is
//! decremented as by any router. Checksums are updated incrementally (RFC
//! 1624); the payload is never read.
//!
//! The stage owns its NAT shard and the shard's SYN races
//! ([`Racer`]); a packet that races calls into the racer once.
//! Files: `outbound` (lookup or creation, races, hairpins, source
//! translation), `inbound` (destination restore), `icmp_error` (errors
//! quoting a translated packet), `rewrite` (address / port rewrite with
//! incremental checksums, TTL).

mod fragments;
pub mod icmp_error;
mod inbound;
mod outbound;
mod rewrite;
#[cfg(test)]
mod rewrite_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod window_tests;

use std::net::IpAddr;
use std::sync::Arc;

use crate::nat::{Hint, NatConfig, NatShard, Probe};
use crate::packet::buf::{Direction, PacketBuf};
use crate::packet::burst::Burst;
use crate::packet::counter::StageCounters;
use crate::packet::drop::DropReason;
use crate::packet::flow::proto;
use crate::packet::time::Nanos;
use crate::race::Racer;
use crate::select::policy::{family_masks, initial_snapshot, SelectionCounters, SelectionPolicy};
use crate::select::Selector;
use crate::topology::{Topology, UplinkId};
use crate::wire::tcp::valid_flags;

pub struct Translate {
    topo: Arc<Topology>,
    pub shard: u16,
    pub nat: NatShard,
    /// The SYN races of this shard's sessions (seed 001).
    race: Racer,
    /// Picks the uplink of new sessions that replicate left to translate
    /// ([`UPLINK_AUTO`](crate::topology::UPLINK_AUTO)).
    pub selector: Selector,
    policy: Arc<SelectionPolicy>,
    families: [u64; 2],
    /// Shared with the management core, which only reads.
    pub counters: Arc<StageCounters>,
    pub selection: Arc<SelectionCounters>,
    /// Service addresses of this appliance (seed 000 [31]), when any.
    pub service: Option<crate::redirect::service::ServicePlane>,
    /// The fragments of the datagrams classify sent to this shard.
    frags: fragments::Frags,
    /// The topology's NAT addresses, as a filter that spares most
    /// outbound packets the hairpin check's map lookup.
    nat_addrs: AddrFilter,
}

/// A 256-bit filter of a set of addresses: `may_contain` is true for every
/// member and for few others (a false positive costs the map lookup it
/// guards, nothing else).
#[derive(Clone, Copy, Debug, Default)]
struct AddrFilter([u64; 4]);

impl AddrFilter {
    fn new<'a>(addrs: impl Iterator<Item = &'a IpAddr>) -> AddrFilter {
        let mut f = AddrFilter::default();
        for &a in addrs {
            let b = Self::bit(a);
            f.0[b >> 6] |= 1 << (b & 63);
        }
        f
    }

    #[inline]
    fn bit(a: IpAddr) -> usize {
        let x = match a {
            IpAddr::V4(v) => u64::from(u32::from(v)),
            IpAddr::V6(v) => {
                let x = u128::from(v);
                (x as u64) ^ ((x >> 64) as u64)
            }
        };
        (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize
    }

    #[inline]
    fn may_contain(&self, a: IpAddr) -> bool {
        let b = Self::bit(a);
        self.0[b >> 6] & (1 << (b & 63)) != 0
    }
}

impl Translate {
    pub fn new(topo: Arc<Topology>, shard: u16, cfg: NatConfig) -> Self {
        Translate::with_policy(topo, shard, cfg, Arc::default())
    }

    pub fn with_policy(
        topo: Arc<Topology>,
        shard: u16,
        cfg: NatConfig,
        policy: Arc<SelectionPolicy>,
    ) -> Self {
        let race = Racer::new(cfg.max_races, policy.mode);
        let frags = fragments::Frags::new(cfg.fragments);
        let nat = NatShard::new(cfg, &topo, shard);
        Translate {
            nat_addrs: AddrFilter::new(topo.nat_addr_uplink.keys()),
            selector: Selector::new(initial_snapshot(&topo)),
            families: family_masks(&topo),
            policy,
            topo,
            shard,
            nat,
            race,
            counters: Arc::default(),
            selection: Arc::default(),
            service: None,
            frags,
        }
    }

    /// Uses `policy` for the packets from now on and decides new races by
    /// its mode (a reload); open races keep theirs.
    pub fn set_policy(&mut self, policy: Arc<SelectionPolicy>) {
        self.race.set_mode(policy.mode);
        self.policy = policy;
    }

    /// Serves service addresses: `addrs` are the service addresses with
    /// their uplinks, `servers` the number of local servers (load gauges).
    /// Call before the counters are shared.
    pub fn enable_services(
        &mut self,
        plane: crate::redirect::service::ServicePlane,
        addrs: &[(IpAddr, UplinkId)],
        servers: usize,
    ) {
        self.nat.enable_services(addrs, servers);
        self.service = Some(plane);
    }

    /// Moves translated packets from `input` to `output` (until `input` is
    /// empty or `output` is full), dropping and counting the rest.
    pub fn process<B: PacketBuf>(
        &mut self,
        now: Nanos,
        input: &mut Burst<B>,
        output: &mut Burst<B>,
    ) {
        self.race.settle(&mut self.nat);
        self.release_fragments(now, output);
        let per_packet = self.race.room_per_packet();
        let n = input
            .len()
            .min((output.remaining_capacity() / per_packet).max(usize::from(output.is_empty())));
        // Look the whole burst up first, in stages whose cache misses
        // overlap (see `NatShard::find_burst`), then translate with the
        // slots found as hints.
        let mut hints = [None; crate::packet::burst::BURST_MAX];
        let mut probes = [None; crate::packet::burst::BURST_MAX];
        for (p, pkt) in probes.iter_mut().zip(input.iter().take(n)) {
            let m = pkt.meta();
            if !m.is_icmp_error() && !m.frag.fragment {
                let inbound = match m.direction {
                    Direction::Outbound => false,
                    Direction::Inbound => true,
                    Direction::Unknown | Direction::Local => continue,
                };
                // Classify's hash of this very key (0 when it has none):
                // the index is keyed the same (`NatConfig::flow_hasher`).
                *p = Some(Probe {
                    key: &m.flow,
                    inbound,
                    hash: m.flow_hash,
                });
            }
        }
        self.nat.find_burst_hinted(&probes[..n], &mut hints[..n]);
        let mut extra = Burst::new();
        for (i, pkt) in input.drain(..n).enumerate() {
            self.counters.packets.inc();
            let mut pkt = match pkt.meta().frag {
                f if f.fragment && !f.tracked => match self.track(now, pkt) {
                    fragments::Tracked::Here(p) => p,
                    fragments::Tracked::Away(p) => {
                        output.push(p);
                        continue;
                    }
                    fragments::Tracked::Gone => continue,
                },
                _ => pkt,
            };
            match self.translate_hinted(now, &mut pkt, hints[i], &mut extra) {
                Ok(()) => output.push(pkt),
                Err(reason) => self.counters.count_drop(reason),
            }
            for x in extra.drain(..) {
                if output.is_full() {
                    self.counters.count_drop(DropReason::RingFull);
                } else {
                    output.push(x);
                }
            }
        }
        self.release_fragments(now, output);
    }

    /// Paced expiry work (see [`NatShard::sweep`]); call once per loop turn.
    pub fn sweep(&mut self, now: Nanos) -> usize {
        let expired = self.nat.sweep(now);
        self.race.settle(&mut self.nat);
        let freed = self.frags.sweep(now, &self.counters);
        let (held, datagrams) = self.frags.gauges();
        self.nat.counters.fragments_held.set(held as u64);
        self.nat.counters.fragment_datagrams.set(datagrams as u64);
        expired + freed
    }

    /// [`NatShard::flush_sessions`], with the races of removed sessions
    /// settled.
    pub fn flush_sessions(
        &mut self,
        f: &crate::nat::SessionFilter,
        cursor: u32,
        scan: usize,
    ) -> (usize, Option<u32>) {
        let r = self.nat.flush_sessions(f, cursor, scan);
        self.race.settle(&mut self.nat);
        r
    }

    pub fn translate<B: PacketBuf>(&mut self, now: Nanos, pkt: &mut B) -> Result<(), DropReason> {
        let mut extra = Burst::new();
        let r = self.translate_hinted(now, pkt, None, &mut extra);
        // One packet in, one out: the packets the appliance made beside it
        // (race copies, replays, RSTs) have no room here; counted, freed.
        self.counters
            .count_drops(DropReason::RingFull, extra.len() as u64);
        r
    }

    fn translate_hinted<B: PacketBuf>(
        &mut self,
        now: Nanos,
        pkt: &mut B,
        hint: Option<Hint>,
        extra: &mut Burst<B>,
    ) -> Result<(), DropReason> {
        let m = pkt.meta_mut();
        if m.frag.tracked {
            // A fragment's hand-off uses the hairpin path; its TTL was not
            // decremented yet.
            m.hairpin = false;
            if m.frag.is_later() {
                return self.later_fragment(now, pkt);
            }
        }
        if m.is_icmp_error() {
            return self.icmp_error(now, pkt);
        }
        let tracked = matches!(m.direction, Direction::Outbound | Direction::Inbound);
        if tracked && m.flow.proto == proto::TCP && !valid_flags(m.tcp_flags) {
            return Err(DropReason::TcpInvalidFlags);
        }
        match m.direction {
            Direction::Outbound => self.outbound(now, pkt, hint, extra),
            Direction::Inbound => {
                // The second half of a hairpin handed over by another
                // shard: its TTL was decremented by the first half.
                let first_pass = !std::mem::take(&mut m.hairpin);
                self.inbound(now, pkt, first_pass, hint, extra)
            }
            Direction::Local => Ok(()),
            Direction::Unknown => Err(DropReason::UnknownPort),
        }
    }

    /// Races this shard holds (in progress, or first-payload offsets kept).
    pub fn races_live(&self) -> usize {
        self.race.len()
    }
}
