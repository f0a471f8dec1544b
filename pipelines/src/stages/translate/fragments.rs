//! Fragments through translate (virtual reassembly, `crate::frag`).
//!
//! A fragment from classify reaches the translate stage of its datagram's
//! fragment shard (see `stages/classify/fragments.rs`), whose tracker owns
//! the datagram:
//! - the first fragment is recorded (its ports, service, uplink and its
//!   flow's shard), then translated as any packet: session lookup or
//!   creation, address and port rewrite, the transport checksum updated;
//! - a later fragment whose first fragment was seen gets those ports in its
//!   `flow`; one that came before its first fragment is held (the buffer
//!   itself) and released, in arrival order, when the first one comes;
//! - every fragment then goes to its flow's shard: translated here when
//!   that is this shard, else marked `hairpin` (with `frag.tracked`) for
//!   the hairpin hand-off, which runs it from translate on the owner;
//! - a later fragment is translated by its flow's session alone: TTL /
//!   hop limit, the address, the IPv4 header checksum. No session (its
//!   first fragment was refused): `fragment`.

use std::any::Any;

use super::rewrite::{check_ttl, rewrite_addr, Side};
use super::Translate;
use crate::frag::{FragKey, FragLimits, FragTracker, Fragment, Later};
use crate::packet::buf::{Direction, PacketBuf};
use crate::packet::burst::Burst;
use crate::packet::counter::StageCounters;
use crate::packet::drop::DropReason;
use crate::packet::time::Nanos;
use crate::topology::UplinkId;

/// What a first fragment tells the later ones of its datagram.
#[derive(Clone, Copy, Debug)]
pub(super) struct FirstFragment {
    src_port: u16,
    dst_port: u16,
    shard: u16,
    service: u16,
    uplink: UplinkId,
}

/// The shard's tracker, of the buffer type the stage runs on. `Translate`
/// is not generic over its buffers (its `process` is), so the tracker is
/// made on the first burst, and kept behind this object-safe face for the
/// calls that know no buffer type (sweep, gauges).
trait Tracker: Send {
    fn sweep(&mut self, now: Nanos, counters: &StageCounters) -> usize;
    fn held(&self) -> usize;
    fn datagrams(&self) -> usize;
    fn ready(&self) -> usize;
    fn as_any(&mut self) -> &mut dyn Any;
}

impl<B: PacketBuf> Tracker for FragTracker<B, FirstFragment> {
    fn sweep(&mut self, now: Nanos, counters: &StageCounters) -> usize {
        FragTracker::sweep(self, now, counters)
    }
    fn held(&self) -> usize {
        FragTracker::held(self)
    }
    fn datagrams(&self) -> usize {
        FragTracker::datagrams(self)
    }
    fn ready(&self) -> usize {
        self.ready_len()
    }
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

/// The shard's fragment state.
pub(super) struct Frags {
    limits: FragLimits,
    tracker: Option<Box<dyn Tracker>>,
}

impl Frags {
    pub(super) fn new(limits: FragLimits) -> Frags {
        Frags {
            limits,
            tracker: None,
        }
    }

    /// The tracker for buffers `B`, made (all its memory reserved) on the
    /// first call.
    fn get<B: PacketBuf>(&mut self) -> &mut FragTracker<B, FirstFragment> {
        let limits = self.limits;
        let make =
            || -> Box<dyn Tracker> { Box::new(FragTracker::<B, FirstFragment>::new(limits)) };
        let t = self.tracker.get_or_insert_with(make);
        if !t.as_any().is::<FragTracker<B, FirstFragment>>() {
            // A stage runs on one buffer type; only a test mixing two
            // gets here, and starts afresh.
            *t = make();
        }
        match t.as_any().downcast_mut() {
            Some(t) => t,
            None => unreachable!("the tracker was just made for B"),
        }
    }

    /// Fragments held and datagrams tracked now.
    pub(super) fn gauges(&self) -> (usize, usize) {
        self.tracker
            .as_ref()
            .map_or((0, 0), |t| (t.held(), t.datagrams()))
    }

    pub(super) fn sweep(&mut self, now: Nanos, counters: &StageCounters) -> usize {
        self.tracker.as_mut().map_or(0, |t| t.sweep(now, counters))
    }

    pub(super) fn has_ready(&self) -> bool {
        self.tracker.as_ref().is_some_and(|t| t.ready() > 0)
    }
}

/// Where a fragment goes after the tracker.
pub(super) enum Tracked<B> {
    /// Its flow is this shard's: translate it here.
    Here(B),
    /// Its flow is another shard's: out for the hairpin hand-off.
    Away(B),
    /// Held or dropped (counted).
    Gone,
}

impl Translate {
    /// A fragment classify sent to this shard, not tracked yet.
    pub(super) fn track<B: PacketBuf>(&mut self, now: Nanos, mut pkt: B) -> Tracked<B> {
        self.nat.counters.fragments.inc();
        let m = *pkt.meta();
        let key = FragKey {
            src: m.flow.src,
            dst: m.flow.dst,
            id: m.frag.id,
            proto: m.flow.proto,
        };
        let header = if m.is_ipv6() {
            crate::wire::ipv6::FRAG_HEADER_LEN as u32
        } else {
            u32::from(m.l4_offset.saturating_sub(m.l3_offset))
        };
        let f = Fragment {
            offset: u32::from(m.frag.offset),
            len: u32::from(m.frag.len),
            more: m.frag.more,
            header,
        };
        let counters = &*self.counters;
        let tracker = self.frags.get::<B>();
        if m.frag.is_first() {
            let first = FirstFragment {
                src_port: m.flow.src_port,
                dst_port: m.flow.dst_port,
                shard: m.frag.flow_shard,
                service: m.service,
                uplink: m.uplink,
            };
            if let Err(r) = tracker.first(now, key, f, first, counters) {
                counters.count_drop(r);
                return Tracked::Gone;
            }
            let pm = pkt.meta_mut();
            pm.shard = first.shard;
            pm.frag.tracked = true;
            return self.route(pkt);
        }
        match tracker.later(now, key, f, pkt, counters) {
            Later::Pass(p, first) => self.route(annotated(p, first)),
            Later::Held => Tracked::Gone,
            Later::Drop(p, r) => {
                counters.count_drop(r);
                drop(p);
                Tracked::Gone
            }
        }
    }

    /// Translates (here) or hands on (away) the fragments the tracker
    /// released, while `output` has room.
    pub(super) fn release_fragments<B: PacketBuf>(&mut self, now: Nanos, output: &mut Burst<B>) {
        while !output.is_full() {
            let Some((p, first)) = self.frags.get::<B>().pop_ready() else {
                return;
            };
            match self.route(annotated(p, first)) {
                Tracked::Here(mut p) => match self.later_fragment(now, &mut p) {
                    Ok(()) => output.push(p),
                    Err(r) => self.counters.count_drop(r),
                },
                Tracked::Away(p) => output.push(p),
                Tracked::Gone => {}
            }
        }
    }

    /// Whether released fragments wait for room in an output burst: the
    /// runtime calls [`Translate::process`] again, with an empty input if
    /// need be, until there are none.
    pub fn fragments_ready(&self) -> bool {
        self.frags.has_ready()
    }

    fn route<B: PacketBuf>(&self, mut pkt: B) -> Tracked<B> {
        let shards = self.topo.shards.max(1);
        let m = pkt.meta_mut();
        if m.shard % shards == self.shard % shards {
            Tracked::Here(pkt)
        } else {
            m.hairpin = true;
            Tracked::Away(pkt)
        }
    }

    /// A later fragment, tracked: translated by its flow's session.
    pub(super) fn later_fragment<B: PacketBuf>(
        &mut self,
        now: Nanos,
        pkt: &mut B,
    ) -> Result<(), DropReason> {
        let m = *pkt.meta();
        let inbound = match m.direction {
            Direction::Outbound => false,
            Direction::Inbound => true,
            Direction::Local | Direction::Unknown => return Err(DropReason::Fragment),
        };
        check_ttl(pkt)?;
        let idx = self
            .nat
            .lookup(&m.flow, inbound, None, now)
            .ok_or(DropReason::Fragment)?;
        self.race.settle(&mut self.nat);
        if self.nat.session(idx).is_none_or(|s| s.in_race()) {
            return Err(DropReason::Fragment);
        }
        let len = pkt.data().len();
        self.nat.touch(idx, now, len, 0, inbound);
        let s = self.nat.session(idx).ok_or(DropReason::Fragment)?;
        let meta = if inbound {
            let (addr, mac) = (s.client_addr(), s.client_mac);
            rewrite_addr(pkt, Side::Dst, addr)?;
            if let Some(c) = self.nat.counters.uplinks.get(usize::from(m.uplink)) {
                c.rx_packets.inc();
                c.rx_bytes.add(len as u64);
            }
            let meta = pkt.meta_mut();
            meta.out_port = self.topo.lan_port;
            meta.next_hop_mac = mac;
            meta
        } else {
            let (addr, uplink) = (self.nat.nat_addr(s), s.uplink);
            rewrite_addr(pkt, Side::Src, addr)?;
            if let Some(c) = self.nat.counters.uplinks.get(usize::from(uplink)) {
                c.tx_packets.inc();
                c.tx_bytes.add(len as u64);
            }
            let u = &self.topo.uplinks[usize::from(uplink)];
            let meta = pkt.meta_mut();
            meta.out_port = u.port;
            meta.uplink = uplink;
            meta.next_hop_mac = u.next_hop_mac;
            meta
        };
        meta.hairpin = false;
        Ok(())
    }
}

/// A later fragment given its first fragment's ports, service, uplink and
/// flow shard.
fn annotated<B: PacketBuf>(mut pkt: B, first: FirstFragment) -> B {
    let m = pkt.meta_mut();
    m.flow.src_port = first.src_port;
    m.flow.dst_port = first.dst_port;
    m.shard = first.shard;
    m.service = first.service;
    if m.direction == Direction::Inbound {
        m.uplink = first.uplink;
    }
    m.frag.tracked = true;
    pkt
}
