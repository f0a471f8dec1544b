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

pub mod icmp_error;

use std::net::IpAddr;
use std::sync::Arc;

use crate::nat::{NatConfig, NatShard, NONE};
use crate::packet::buf::{Direction, PacketBuf};
use crate::packet::burst::Burst;
use crate::packet::counter::StageCounters;
use crate::packet::drop::DropReason;
use crate::packet::flow::proto;
use crate::packet::time::Nanos;
use crate::race::{reflect_tcp, shift_seq, write_tcp, REPLAY_MAX};
use crate::select::policy::RaceMode;
use crate::select::policy::{
    candidates, family_masks, initial_snapshot, SelectionCounters, SelectionPolicy,
};
use crate::select::{SelEvent, Selector};
use crate::stages::translate::icmp_error::rewrite_icmp_error;
use crate::topology::{Topology, UplinkId, UPLINK_AUTO};
use crate::wire::checksum::{update16, update_bytes};
use crate::wire::tcp::{tcp_payload_len, tcp_seq_ack};
use crate::wire::tcp::{TCP_ACK, TCP_RST, TCP_SYN};

pub struct Translate {
    topo: Arc<Topology>,
    pub shard: u16,
    pub nat: NatShard,
    /// Picks the uplink of new sessions that replicate left to translate
    /// ([`UPLINK_AUTO`]).
    pub selector: Selector,
    policy: Arc<SelectionPolicy>,
    families: [u64; 2],
    /// Shared with the management core, which only reads.
    pub counters: Arc<StageCounters>,
    pub selection: Arc<SelectionCounters>,
    /// Service addresses of this appliance (seed 000 [31]), when any.
    pub service: Option<crate::redirect::service::ServicePlane>,
}

/// Which endpoint of the packet is rewritten.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Src,
    Dst,
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
        let nat = NatShard::new(cfg, &topo, shard);
        Translate {
            selector: Selector::new(initial_snapshot(&topo)),
            families: family_masks(&topo),
            policy,
            topo,
            shard,
            nat,
            counters: Arc::default(),
            selection: Arc::default(),
            service: None,
        }
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
        // First-payload races copy client segments to every racing uplink
        // and replay them to late ones: while any is open, each packet
        // needs room for its extras.
        let per_packet = if self.nat.races_live() > 0 && self.policy.mode == RaceMode::FirstPayload
        {
            1 + crate::select::RACE_MAX + crate::race::REPLAY_MAX
        } else {
            1
        };
        let n = input
            .len()
            .min((output.remaining_capacity() / per_packet).max(usize::from(output.is_empty())));
        // Look the whole burst up first (see `NatShard::find`), then
        // translate with the slots found as hints.
        let mut hints = [None; crate::packet::burst::BURST_MAX];
        for (h, pkt) in hints.iter_mut().zip(input.iter().take(n)) {
            let m = pkt.meta();
            if !m.is_icmp_error() {
                *h = match m.direction {
                    Direction::Outbound => self.nat.find(&m.flow, false),
                    Direction::Inbound => self.nat.find(&m.flow, true),
                    Direction::Unknown | Direction::Local => None,
                };
            }
        }
        let mut extra = Burst::new();
        for (i, mut pkt) in input.drain(..n).enumerate() {
            self.counters.packets.inc();
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
    }

    /// Paced expiry work (see [`NatShard::sweep`]); call once per loop turn.
    pub fn sweep(&mut self, now: Nanos) -> usize {
        self.nat.sweep(now)
    }

    pub fn translate<B: PacketBuf>(&mut self, now: Nanos, pkt: &mut B) -> Result<(), DropReason> {
        let mut extra = Burst::new();
        self.translate_hinted(now, pkt, None, &mut extra)
    }

    fn translate_hinted<B: PacketBuf>(
        &mut self,
        now: Nanos,
        pkt: &mut B,
        hint: Option<u32>,
        extra: &mut Burst<B>,
    ) -> Result<(), DropReason> {
        let m = pkt.meta_mut();
        if m.is_icmp_error() {
            return self.icmp_error(now, pkt);
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

    /// An ICMP error (RFC 5508) is translated for the session of the packet
    /// it quotes, found by `meta.flow` (the quoted flow reversed): from
    /// outside, the outer destination and the quoted source go back to the
    /// client; from inside, the outer source and the quoted destination
    /// become the NAT endpoint. It never creates or refreshes a session.
    fn icmp_error<B: PacketBuf>(&mut self, now: Nanos, pkt: &mut B) -> Result<(), DropReason> {
        let m = *pkt.meta();
        let inbound = match m.direction {
            Direction::Inbound => true,
            Direction::Outbound => false,
            Direction::Unknown | Direction::Local => return Err(DropReason::UnknownPort),
        };
        if !inbound && self.topo.nat_addr_uplink.contains_key(&m.flow.dst) {
            // About a hairpinned packet: its sender is inside too.
            return Err(DropReason::UnsupportedIcmp);
        }
        check_ttl(pkt)?;
        let idx = self
            .nat
            .lookup(&m.flow, inbound, None, now)
            .ok_or(DropReason::NoSession)?;
        let s = self.nat.session(idx).ok_or(DropReason::NoSession)?;
        let len = pkt.data().len() as u64;
        if inbound {
            let (addr, port, mac) = (s.client_addr(), s.client_port, s.client_mac);
            rewrite_icmp_error(pkt, true, addr, port)?;
            let meta = pkt.meta_mut();
            meta.out_port = self.topo.lan_port;
            meta.next_hop_mac = mac;
            if let Some(c) = self.nat.counters.uplinks.get(usize::from(m.uplink)) {
                c.rx_packets.inc();
                c.rx_bytes.add(len);
            }
        } else {
            let (addr, port, uplink) = (self.nat.nat_addr(s), s.nat_port, s.uplink);
            rewrite_icmp_error(pkt, false, addr, port)?;
            let u = &self.topo.uplinks[usize::from(uplink)];
            let meta = pkt.meta_mut();
            meta.out_port = u.port;
            meta.uplink = uplink;
            meta.next_hop_mac = u.next_hop_mac;
            if let Some(c) = self.nat.counters.uplinks.get(usize::from(uplink)) {
                c.tx_packets.inc();
                c.tx_bytes.add(len);
            }
        }
        Ok(())
    }

    fn outbound<B: PacketBuf>(
        &mut self,
        now: Nanos,
        pkt: &mut B,
        hint: Option<u32>,
        extra: &mut Burst<B>,
    ) -> Result<(), DropReason> {
        let m = *pkt.meta();
        // A LAN client sending to an outside address of this appliance:
        // hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8). The flow leaves by
        // the uplink owning that address and comes straight back in.
        let hairpin = self.topo.nat_addr_uplink.get(&m.flow.dst).copied();
        // Before any session is created: a packet that dies here must not
        // hold a NAT port until its flow times out.
        check_ttl(pkt)?;
        let client_mac = || {
            pkt.data()
                .get(6..12)
                .and_then(|s| s.try_into().ok())
                .unwrap_or([0u8; 6])
        };
        let mut found = self.nat.lookup(&m.flow, false, hint, now);
        if let Some(i) = found.filter(|&i| self.policy.reset_on_down && self.on_down_uplink(i)) {
            // on_uplink_down = "reset": the session does not wait for its
            // uplink to come back.
            if m.flow.proto == proto::TCP {
                let mac = self.nat.session(i).map_or([0; 6], |s| s.client_mac);
                let (seq, ack) = tcp_seq_ack(pkt).ok_or(DropReason::TruncatedTcp)?;
                let len = crate::wire::tcp::tcp_payload_len(pkt) as u32;
                self.nat.remove(i);
                // An RST to the client, as from its server, in its window.
                return reflect_tcp(pkt, TCP_RST | TCP_ACK, ack, seq.wrapping_add(len), 0, mac);
            }
            self.nat.remove(i);
            found = None;
        }
        let idx = match found {
            Some(i) => {
                let race = self.nat.session(i).map_or(NONE, |s| s.race);
                if m.race > 0 || race != NONE {
                    let mac = client_mac();
                    self.race_outbound(now, pkt, i, race, mac, extra)?
                } else {
                    i
                }
            }
            None if m.race > 0 && hairpin.is_none() => {
                let isn = tcp_seq_ack(pkt).map_or(0, |(seq, _)| seq);
                self.race_start(now, &m, client_mac(), isn)?
            }
            None => {
                let uplink = match hairpin {
                    Some(h) => h,
                    None if m.uplink == UPLINK_AUTO => self.pick(&m)?,
                    None => m.uplink,
                };
                if usize::from(uplink) >= self.topo.uplinks.len() {
                    return Err(DropReason::NoUplink);
                }
                let idx = self.nat.create_out(&m.flow, uplink, client_mac(), now)?.0;
                if m.flow.proto == proto::TCP && m.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
                    self.count_connection(idx);
                }
                idx
            }
        };
        let (addr, port) = self.send_by(now, pkt, idx)?;
        match hairpin {
            Some(via) => self.hairpin(now, pkt, via, addr, port, extra),
            None => Ok(()),
        }
    }

    /// Turns a source-translated hairpin packet into the inbound packet it
    /// would be on the wire, (NA, NP) of the sender → the destination NAT
    /// address, and finishes it here when this shard owns the destination
    /// port, or marks it for the owning shard's translate stage.
    fn hairpin<B: PacketBuf>(
        &mut self,
        now: Nanos,
        pkt: &mut B,
        via: UplinkId,
        src: IpAddr,
        src_port: u16,
        extra: &mut Burst<B>,
    ) -> Result<(), DropReason> {
        let m = pkt.meta_mut();
        m.flow.src = src;
        m.flow.src_port = src_port;
        let shard = self
            .topo
            .shard_of_nat_port(m.flow.dst_port)
            .ok_or(DropReason::PortOutOfRange)?;
        m.direction = Direction::Inbound;
        m.uplink = via;
        m.in_port = self.topo.uplinks[usize::from(via)].port;
        m.shard = shard;
        if shard == self.shard {
            self.inbound(now, pkt, false, None, extra)
        } else {
            m.hairpin = true;
            Ok(())
        }
    }

    fn inbound<B: PacketBuf>(
        &mut self,
        now: Nanos,
        pkt: &mut B,
        decrement_ttl: bool,
        hint: Option<u32>,
        extra: &mut Burst<B>,
    ) -> Result<(), DropReason> {
        let m = *pkt.meta();
        if decrement_ttl {
            check_ttl(pkt)?;
        }
        let idx = match self.nat.lookup(&m.flow, true, hint, now) {
            Some(i) => i,
            None if m.service != 0 => {
                use crate::redirect::service::{first_packet, Outcome};
                let plane = self.service.as_mut().ok_or(DropReason::NoSession)?;
                match first_packet(&mut self.nat, plane, &self.topo, now, pkt)? {
                    Outcome::Session(i) => i,
                    Outcome::Answered => return Ok(()),
                }
            }
            None => self.nat.admit_in(&m.flow, m.tcp_flags, now)?,
        };
        if m.flow.proto == proto::TCP {
            if let Some(s) = self.nat.session(idx) {
                if s.in_race() {
                    if !self.race_inbound(now, pkt, idx, extra)? {
                        return Ok(());
                    }
                } else if m.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK
                    && !NatShard::answered(s)
                    && s.packets_in == 0
                {
                    // A connection that did not race still measures its
                    // uplink (seed 001 [0041]).
                    let ev = SelEvent::Answer {
                        dst: s.remote_addr(),
                        uplink: s.uplink,
                        rtt: (s.packets_out == 1).then(|| now.since(s.last_seen)),
                        raced: false,
                        decided: false,
                    };
                    self.nat.emit(ev);
                }
            }
        }
        let len = pkt.data().len();
        self.nat.touch(idx, now, len, m.tcp_flags, true);
        let s = self.nat.session(idx).ok_or(DropReason::NoSession)?;
        let (addr, port, mac) = (s.client_addr(), s.client_port, s.client_mac);
        rewrite(pkt, Side::Dst, addr, port)?;
        let meta = pkt.meta_mut();
        meta.out_port = self.topo.lan_port;
        meta.next_hop_mac = mac;
        if let Some(c) = self.nat.counters.uplinks.get(usize::from(m.uplink)) {
            c.rx_packets.inc();
            c.rx_bytes.add(len as u64);
        }
        Ok(())
    }
}

/// Uplink selection and SYN races (seed 001), the translate side.
impl Translate {
    /// The policy's RFC 2391 algorithm for a new session replicate left to
    /// translate.
    fn pick(&mut self, m: &crate::packet::buf::PacketMeta) -> Result<UplinkId, DropReason> {
        let (_, alg) = self.policy.rule(&m.flow);
        let cands = candidates(&self.families, &self.selector, &m.flow);
        let u = self
            .selector
            .pick(alg, m.flow.dst, m.flow.proto, cands)
            .ok_or(DropReason::NoUplink)?;
        self.selection.by_algorithm[alg.index()].inc();
        Ok(u)
    }

    /// Whether session `idx`'s uplink is down now (and others are up).
    fn on_down_uplink(&self, idx: u32) -> bool {
        let Some(s) = self.nat.session(idx) else {
            return false;
        };
        let snap = self.selector.snapshot();
        let healthy = snap.healthy_mask();
        healthy != 0 && healthy & (1u64 << s.uplink.min(63)) == 0 && !s.in_race()
    }

    fn count_connection(&self, idx: u32) {
        if let Some(s) = self.nat.session(idx) {
            if let Some(c) = self.nat.counters.uplinks.get(usize::from(s.uplink)) {
                c.connections.inc();
            }
        }
    }

    /// The first copy of a replicated SYN to arrive starts its race: a
    /// session on the copy's uplink holding the outbound index entry. With
    /// the race table full the SYN goes out by this uplink alone.
    fn race_start(
        &mut self,
        now: Nanos,
        m: &crate::packet::buf::PacketMeta,
        client_mac: [u8; 6],
        client_isn: u32,
    ) -> Result<u32, DropReason> {
        if usize::from(m.uplink) >= self.topo.uplinks.len() {
            return Err(DropReason::NoUplink);
        }
        let Some(r) = self.nat.races.start(now, m.race_tag, self.policy.mode) else {
            self.nat.counters.race_table_full.inc();
            let idx = self.nat.create_out(&m.flow, m.uplink, client_mac, now)?.0;
            self.count_connection(idx);
            return Ok(idx);
        };
        let idx = match self.nat.create_out(&m.flow, m.uplink, client_mac, now) {
            Ok((idx, _)) => idx,
            Err(e) => {
                self.nat.race_free_empty(r);
                return Err(e);
            }
        };
        self.nat.race_attach(r, idx);
        if let Some(x) = self.nat.races.get_mut(r) {
            x.client_next = client_isn.wrapping_add(1);
        }
        self.nat.counters.races.inc();
        Ok(idx)
    }

    /// An outbound packet of a flow that has a session `i` (the indexed one)
    /// while it races or is a race copy. Returns the session to send it by;
    /// may add copies of it for other uplinks to `extra`.
    fn race_outbound<B: PacketBuf>(
        &mut self,
        now: Nanos,
        pkt: &mut B,
        i: u32,
        race: u32,
        client_mac: [u8; 6],
        extra: &mut Burst<B>,
    ) -> Result<u32, DropReason> {
        let m = *pkt.meta();
        let Some(r) = self.nat.race(race).cloned() else {
            return if m.race_index == 0 {
                Ok(i)
            } else {
                Err(DropReason::RaceSuppressed)
            };
        };
        if m.race == 0 {
            // The client's own packets go by the indexed session.
            if r.mode == RaceMode::FirstPayload {
                if r.decided {
                    shift_seq(pkt, 0, r.offset);
                } else {
                    self.first_payload_outbound(now, pkt, race, &r, extra);
                }
            }
            return Ok(i);
        }
        if r.decided {
            // Settled: one copy goes by the connection's session.
            return if m.race_index == 0 {
                Ok(i)
            } else {
                Err(DropReason::RaceSuppressed)
            };
        }
        // A copy for an uplink already racing: the first SYN's own copy
        // never meets one, a retransmitted SYN's copies go out again by
        // their uplink's session (whose packet count then marks its RTT
        // sample ambiguous).
        if let Some(j) = self.nat.race_member_on(race, m.uplink) {
            return Ok(j);
        }
        // Another copy of the SYN that started the race joins it; a
        // retransmission does not add uplinks (no second race).
        if m.race_tag != r.tag || usize::from(m.uplink) >= self.topo.uplinks.len() {
            return Err(DropReason::RaceSuppressed);
        }
        let (j, _) = self
            .nat
            .create_out_with(&m.flow, m.uplink, client_mac, now, false)?;
        if !self.nat.race_attach(race, j) {
            self.nat.remove(j);
            return Err(DropReason::RaceSuppressed);
        }
        Ok(j)
    }

    /// First-payload mode, before the decision: a client segment also goes
    /// to every other uplink whose handshake the appliance completed, its
    /// ACK (and SACK) numbers moved into that server's sequence space
    /// (seed 001 [0032]); a segment with payload is also kept for uplinks
    /// whose SYN+ACK is still to come.
    fn first_payload_outbound<B: PacketBuf>(
        &mut self,
        now: Nanos,
        pkt: &mut B,
        race: u32,
        r: &crate::race::Race,
        extra: &mut Burst<B>,
    ) {
        let payload = tcp_payload_len(pkt);
        if let Some((seq, _)) = tcp_seq_ack(pkt) {
            let end = seq.wrapping_add(payload as u32);
            let room = r.replay_n < REPLAY_MAX as u8;
            let slot = if payload > 0 && room {
                self.nat.races.replay.keep(pkt)
            } else {
                None
            };
            if let Some(x) = self.nat.races.get_mut(race) {
                if end.wrapping_sub(x.client_next) as i32 > 0 {
                    x.client_next = end;
                }
                if payload > 0 {
                    x.data_sent = true;
                    match slot {
                        Some(slot) => {
                            x.replay[usize::from(x.replay_n)] = slot;
                            x.replay_n += 1;
                        }
                        None => x.replay_lost = true,
                    }
                }
            }
        }
        for (k, member) in r.live_members() {
            if member == r.client_side || r.answered & (1 << k) == 0 {
                continue;
            }
            let Some(mut copy) = pkt.try_clone() else {
                self.counters.count_drop(DropReason::NoBuffer);
                continue;
            };
            shift_seq(&mut copy, 0, r.isn[k].wrapping_sub(r.client_isn));
            if self.send_by(now, &mut copy, member).is_ok() {
                extra.push(copy);
            }
        }
    }

    /// Source-translates an outbound packet by session `idx` and points it
    /// at that session's uplink; returns the NAT address and port it took.
    fn send_by<B: PacketBuf>(
        &mut self,
        now: Nanos,
        pkt: &mut B,
        idx: u32,
    ) -> Result<(IpAddr, u16), DropReason> {
        let len = pkt.data().len();
        let flags = pkt.meta().tcp_flags;
        self.nat.touch(idx, now, len, flags, false);
        let s = self.nat.session(idx).ok_or(DropReason::NoSession)?;
        let (addr, port, uplink) = (self.nat.nat_addr(s), s.nat_port, s.uplink);
        rewrite(pkt, Side::Src, addr, port)?;
        if let Some(c) = self.nat.counters.uplinks.get(usize::from(uplink)) {
            c.tx_packets.inc();
            c.tx_bytes.add(len as u64);
        }
        let u = &self.topo.uplinks[usize::from(uplink)];
        let meta = pkt.meta_mut();
        meta.out_port = u.port;
        meta.uplink = uplink;
        meta.next_hop_mac = u.next_hop_mac;
        Ok((addr, port))
    }

    /// An inbound TCP segment on a session that races (or lost a race).
    /// Returns true when the segment is to be translated to the client as
    /// usual, false when it was turned into the appliance's own answer
    /// (ready to leave); drops it otherwise.
    fn race_inbound<B: PacketBuf>(
        &mut self,
        now: Nanos,
        pkt: &mut B,
        idx: u32,
        extra: &mut Burst<B>,
    ) -> Result<bool, DropReason> {
        let m = *pkt.meta();
        let Some(s) = self.nat.session(idx) else {
            return Err(DropReason::NoSession);
        };
        let r = s.race;
        let Some(race) = self.nat.race(r).cloned() else {
            return Ok(true);
        };
        let synack = m.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK;
        let rst = m.tcp_flags & TCP_RST != 0;
        let payload = tcp_payload_len(pkt) > 0;
        if s.is_race_loser() {
            let answer = synack || (race.mode == RaceMode::FirstPayload && payload);
            return self
                .answer_loser(now, pkt, idx, &race, answer, rst)
                .map(|()| false);
        }
        if race.decided {
            // A first-payload winner in another sequence space.
            shift_seq(pkt, race.offset.wrapping_neg(), 0);
            return Ok(true);
        }
        if race.mode == RaceMode::SynAck {
            return if synack || rst {
                self.decide(now, r, idx, 0, &*pkt, extra);
                Ok(true)
            } else {
                Err(DropReason::RacePending)
            };
        }
        self.first_payload_inbound(now, pkt, r, &race, idx, synack, rst, payload, extra)
    }

    /// First-payload mode, before the decision (seed 001 [0031]-[0033]).
    #[allow(clippy::too_many_arguments)]
    fn first_payload_inbound<B: PacketBuf>(
        &mut self,
        now: Nanos,
        pkt: &mut B,
        r: u32,
        race: &crate::race::Race,
        idx: u32,
        synack: bool,
        rst: bool,
        payload: bool,
        extra: &mut Burst<B>,
    ) -> Result<bool, DropReason> {
        let k = race.position(idx).ok_or(DropReason::NoSession)?;
        let (seq, ack) = tcp_seq_ack(pkt).ok_or(DropReason::TruncatedTcp)?;
        if payload {
            // The first payload decides; the winner's sequence numbers are
            // moved into the space of the SYN+ACK the client got.
            let offset = if race.client_side == NONE || race.answered & (1 << k) == 0 {
                0
            } else {
                race.isn[k].wrapping_sub(race.client_isn)
            };
            self.decide(now, r, idx, offset, &*pkt, extra);
            shift_seq(pkt, offset.wrapping_neg(), 0);
            return Ok(true);
        }
        if rst {
            let others = race
                .live_members()
                .any(|(j, x)| x != idx && race.answered & (1 << j) != 0);
            if idx == race.client_side && !others {
                self.decide(now, r, idx, 0, &*pkt, extra);
                return Ok(true);
            }
            self.nat.remove(idx);
            self.nat.counters.race_closed.inc();
            return Err(DropReason::RaceLoser);
        }
        if !synack {
            // The client's side may talk to it (window updates, ACKs).
            return if idx == race.client_side {
                Ok(true)
            } else {
                Err(DropReason::RacePending)
            };
        }
        if race.client_side == NONE || race.client_side == idx {
            // The first SYN+ACK (or its retransmission) goes to the client,
            // and the client's packets now follow this session.
            for (_, x) in race.live_members() {
                if x != idx {
                    self.nat.set_out_indexed(x, false);
                }
            }
            self.nat.set_out_indexed(idx, true);
            if let Some(x) = self.nat.races.get_mut(r) {
                x.client_side = idx;
                x.client_isn = seq;
                x.isn[k] = seq;
                x.answered |= 1 << k;
            }
            return Ok(true);
        }
        // Another uplink's SYN+ACK: the appliance completes that handshake
        // itself and replays what the client already sent.
        if race.data_sent && (race.replay_lost || race.replay_n == 0) {
            let next_hop = self.next_hop_of(idx);
            self.nat.remove(idx);
            self.nat.counters.race_closed.inc();
            reflect_tcp(pkt, TCP_RST, ack, 0, 0, next_hop)?;
            return Ok(false);
        }
        if let Some(x) = self.nat.races.get_mut(r) {
            x.isn[k] = seq;
            x.answered |= 1 << k;
        }
        let offset = seq.wrapping_sub(race.client_isn);
        for &slot in &race.replay[..usize::from(race.replay_n)] {
            let Some(mut copy) = pkt.try_clone() else {
                self.counters.count_drop(DropReason::NoBuffer);
                continue;
            };
            if !self.nat.races.replay.restore(slot, &mut copy) {
                continue;
            }
            shift_seq(&mut copy, 0, offset);
            if self.send_by(now, &mut copy, idx).is_ok() {
                extra.push(copy);
            }
        }
        let next_hop = self.next_hop_of(idx);
        self.nat
            .touch(idx, now, pkt.data().len(), TCP_SYN | TCP_ACK, true);
        reflect_tcp(pkt, TCP_ACK, ack, seq.wrapping_add(1), u16::MAX, next_hop)?;
        // The ACK leaves before the replayed data.
        Ok(false)
    }

    fn next_hop_of(&self, idx: u32) -> [u8; 6] {
        self.nat
            .session(idx)
            .and_then(|s| self.topo.uplinks.get(usize::from(s.uplink)))
            .map_or([0; 6], |u| u.next_hop_mac)
    }

    /// The first answer decides the race (seed 001 [0036]): its session
    /// takes the outbound index entry and carries the connection; every
    /// other copy loses. In first-payload mode the losers whose handshake the
    /// appliance completed get an RST at once (their servers hold an
    /// established connection); the others, as in SYN+ACK mode, wait for the
    /// race timeout for their SYN+ACK, which is answered with an RST.
    fn decide<B: PacketBuf>(
        &mut self,
        now: Nanos,
        r: u32,
        winner: u32,
        offset: u32,
        template: &B,
        extra: &mut Burst<B>,
    ) {
        let Some(race) = self.nat.race(r).cloned() else {
            return;
        };
        for (k, x) in race.live_members() {
            if x == winner {
                continue;
            }
            self.nat.set_out_indexed(x, false);
            let Some(s) = self.nat.session_mut(x) else {
                continue;
            };
            s.flags |= crate::nat::LOSER;
            s.last_seen = now;
            let u = s.uplink;
            if let Some(c) = self.nat.counters.uplinks.get(usize::from(u)) {
                c.races_lost.inc();
            }
            if race.mode == RaceMode::FirstPayload && race.answered & (1 << k) != 0 {
                self.reset_member(x, race.client_next, template, extra);
            }
        }
        self.nat.set_out_indexed(winner, true);
        self.nat.races.release_replay(r);
        if let Some(x) = self.nat.races.get_mut(r) {
            x.decided = true;
            x.offset = offset;
        }
        let Some(s) = self.nat.session(winner) else {
            return;
        };
        let ev = SelEvent::Answer {
            dst: s.remote_addr(),
            uplink: s.uplink,
            rtt: (s.packets_out == 1 || race.mode == RaceMode::FirstPayload)
                .then(|| now.since(race.started)),
            raced: true,
            decided: true,
        };
        if let Some(c) = self.nat.counters.uplinks.get(usize::from(s.uplink)) {
            c.races_won.inc();
            c.connections.inc();
        }
        self.nat.emit(ev);
        if offset == 0 {
            self.nat.race_detach(r, winner);
        }
    }

    /// Sends an RST for losing member `x` to its server (a copy of a pool
    /// buffer written from scratch), sequence number `seq` (the client's
    /// next), and frees the member.
    fn reset_member<B: PacketBuf>(&mut self, x: u32, seq: u32, template: &B, extra: &mut Burst<B>) {
        let Some(s) = self.nat.session(x) else {
            return;
        };
        let f = crate::packet::flow::FlowKey {
            src: self.nat.nat_addr(s),
            dst: s.remote_addr(),
            src_port: s.nat_port,
            dst_port: s.remote_port,
            proto: proto::TCP,
        };
        let uplink = &self.topo.uplinks[usize::from(s.uplink)];
        let (port, next_hop) = (uplink.port, uplink.next_hop_mac);
        // The segment in hand (same IP version, classified) is the template.
        match template.try_clone() {
            Some(mut b) => {
                if write_tcp(&mut b, &f, TCP_RST, seq, 0, 0).is_ok() && !extra.is_full() {
                    let m = b.meta_mut();
                    m.direction = Direction::Outbound;
                    m.out_port = port;
                    m.uplink = s.uplink;
                    m.next_hop_mac = next_hop;
                    extra.push(b);
                }
            }
            None => self.counters.count_drop(DropReason::NoBuffer),
        }
        self.nat.remove(x);
        self.nat.counters.race_closed.inc();
    }

    /// A segment from a losing uplink. Its SYN+ACK is answered with an RST
    /// toward the server, sequence number taken from the SYN+ACK's
    /// acknowledgement (RFC 9293 3.10.7.3), so the server's half-open
    /// connection goes at once (seed 001 [0030], [0036]); the loser's
    /// session is freed. Its RST just frees the session.
    fn answer_loser<B: PacketBuf>(
        &mut self,
        now: Nanos,
        pkt: &mut B,
        idx: u32,
        race: &crate::race::Race,
        synack: bool,
        rst: bool,
    ) -> Result<(), DropReason> {
        let Some(s) = self.nat.session(idx) else {
            return Err(DropReason::NoSession);
        };
        if rst {
            self.nat.remove(idx);
            self.nat.counters.race_closed.inc();
            return Err(DropReason::RaceLoser);
        }
        if !synack {
            return Err(DropReason::RaceLoser);
        }
        let ev = SelEvent::Answer {
            dst: s.remote_addr(),
            uplink: s.uplink,
            rtt: (s.packets_out == 1).then(|| now.since(race.started)),
            raced: true,
            decided: false,
        };
        let uplink = &self.topo.uplinks[usize::from(s.uplink)];
        let next_hop = uplink.next_hop_mac;
        let (_, ack) = tcp_seq_ack(pkt).ok_or(DropReason::TruncatedTcp)?;
        self.nat.emit(ev);
        self.nat.remove(idx);
        self.nat.counters.race_closed.inc();
        reflect_tcp(pkt, TCP_RST, ack, 0, 0, next_hop)
    }
}

/// Drops packets whose TTL / hop limit would reach zero, else decrements it
/// (fixing the IPv4 header checksum).
fn check_ttl<B: PacketBuf>(pkt: &mut B) -> Result<(), DropReason> {
    let l3 = pkt.meta().l3_offset as usize;
    let v6 = pkt.meta().is_ipv6();
    let d = pkt.data_mut();
    let ip = d.get_mut(l3..).ok_or(DropReason::TruncatedIpv4)?;
    if v6 {
        let hl = ip.get_mut(7).ok_or(DropReason::TruncatedIpv6)?;
        if *hl <= 1 {
            return Err(DropReason::TtlExpired);
        }
        *hl -= 1;
    } else {
        if ip.len() < 12 {
            return Err(DropReason::TruncatedIpv4);
        }
        let ttl = ip[8];
        if ttl <= 1 {
            return Err(DropReason::TtlExpired);
        }
        let old = u16::from_be_bytes([ttl, ip[9]]);
        ip[8] = ttl - 1;
        let new = u16::from_be_bytes([ip[8], ip[9]]);
        let hc = u16::from_be_bytes([ip[10], ip[11]]);
        ip[10..12].copy_from_slice(&update16(hc, old, new).to_be_bytes());
    }
    Ok(())
}

/// Rewrites the source or destination address and port (ICMP echo
/// identifier) of a classified packet, updating the IPv4 header checksum and
/// the L4 checksum (pseudo-header included) incrementally.
pub(crate) fn rewrite<B: PacketBuf>(
    pkt: &mut B,
    side: Side,
    addr: IpAddr,
    port: u16,
) -> Result<(), DropReason> {
    let m = *pkt.meta();
    let (l3, l4) = (m.l3_offset as usize, m.l4_offset as usize);
    let p = m.flow.proto;
    let d = pkt.data_mut();
    let trunc = if m.is_ipv6() {
        DropReason::TruncatedIpv6
    } else {
        DropReason::TruncatedIpv4
    };

    // Address in the IP header, and the IPv4 header checksum.
    let mut old_addr = [0u8; 16];
    let mut new_addr = [0u8; 16];
    let alen = match (addr, m.is_ipv6()) {
        (IpAddr::V4(a), false) => {
            new_addr[..4].copy_from_slice(&a.octets());
            4
        }
        (IpAddr::V6(a), true) => {
            new_addr.copy_from_slice(&a.octets());
            16
        }
        _ => return Err(DropReason::NoNatAddress),
    };
    let at = l3
        + match (m.is_ipv6(), side) {
            (false, Side::Src) => 12,
            (false, Side::Dst) => 16,
            (true, Side::Src) => 8,
            (true, Side::Dst) => 24,
        };
    let field = d.get_mut(at..at + alen).ok_or(trunc)?;
    old_addr[..alen].copy_from_slice(field);
    field.copy_from_slice(&new_addr[..alen]);
    if !m.is_ipv6() {
        let hc = u16::from_be_bytes([d[l3 + 10], d[l3 + 11]]);
        let hc = update_bytes(hc, &old_addr[..4], &new_addr[..4]);
        d[l3 + 10..l3 + 12].copy_from_slice(&hc.to_be_bytes());
    }

    // Port (or echo identifier) and the L4 checksum.
    let (port_at, csum_at, pseudo) = match p {
        proto::TCP => (if side == Side::Src { 0 } else { 2 }, 16, true),
        proto::UDP => (if side == Side::Src { 0 } else { 2 }, 6, true),
        proto::ICMP => (4, 2, false),
        proto::ICMPV6 => (4, 2, true),
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    let l4d = d.get_mut(l4..).ok_or(trunc)?;
    if l4d.len() < csum_at + 2 || l4d.len() < port_at + 2 {
        return Err(DropReason::TruncatedUdp);
    }
    let old_port = u16::from_be_bytes([l4d[port_at], l4d[port_at + 1]]);
    l4d[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    let hc = u16::from_be_bytes([l4d[csum_at], l4d[csum_at + 1]]);
    if p == proto::UDP && hc == 0 && !m.is_ipv6() {
        // IPv4 UDP without checksum stays without (RFC 768).
        return Ok(());
    }
    let mut hc = update16(hc, old_port, port);
    if pseudo {
        hc = update_bytes(hc, &old_addr[..alen], &new_addr[..alen]);
    }
    if p == proto::UDP && hc == 0 {
        hc = 0xFFFF;
    }
    l4d[csum_at..csum_at + 2].copy_from_slice(&hc.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::buf::{HeapBuf, PacketMeta};
    use crate::stages::classify::Classify;
    use crate::testing::*;
    use smoltcp::wire::TcpControl;

    const T0: Nanos = Nanos(1_000_000_000);

    struct Site {
        classify: Classify,
        translate: Translate,
    }

    impl Site {
        fn new() -> Site {
            Site::with(NatConfig::default())
        }

        fn with(cfg: NatConfig) -> Site {
            let topo = site(1);
            Site {
                classify: Classify::new(topo.clone()),
                translate: Translate::new(topo, 0, cfg),
            }
        }

        /// Classifies `frame` (which must classify) on `port`, gives it
        /// `uplink` when outbound, and translates it.
        fn send(
            &mut self,
            frame: &[u8],
            port: u16,
            uplink: u8,
            now: Nanos,
        ) -> Result<HeapBuf, DropReason> {
            let mut b = buf(frame, port);
            self.classify
                .classify(&mut b)
                .unwrap_or_else(|r| panic!("classify: {r:?}"));
            if b.meta().direction == Direction::Outbound {
                b.meta_mut().uplink = uplink;
            }
            self.translate.translate(now, &mut b).map(|()| b)
        }

        fn out(&mut self, frame: &[u8]) -> Result<HeapBuf, DropReason> {
            self.send(frame, LAN_PORT, 0, T0)
        }

        fn back(&mut self, frame: &[u8]) -> Result<HeapBuf, DropReason> {
            self.send(frame, WAN_PORT, 0, T0)
        }
    }

    /// The bytes after the transport header's port/identifier and checksum
    /// fields: what translation must never touch.
    fn payload_of<'a>(frame: &'a [u8], m: &PacketMeta) -> &'a [u8] {
        let header = if m.flow.proto == proto::TCP { 20 } else { 8 };
        &frame[usize::from(m.l4_offset) + header..]
    }

    /// One protocol's exchange: the client's packet and the remote's reply
    /// to a given NAT port (or echo identifier).
    struct Exchange {
        name: &'static str,
        client: &'static str,
        remote: &'static str,
        nat: &'static str,
        request: L4<'static>,
        reply: fn(u16) -> L4<'static>,
    }

    fn exchanges() -> Vec<Exchange> {
        let syn = tcp(40000, 443, TcpControl::Syn);
        let syn_ack = |p| L4::Tcp {
            src_port: 443,
            dst_port: p,
            control: TcpControl::Syn,
            ack: Some(1001),
            payload: b"hello",
        };
        let query = udp(40001, 53, b"query");
        let answer = |p| udp(53, p, b"the answer");
        let ping = L4::EchoRequest {
            ident: 0x4242,
            seq_no: 7,
        };
        let pong = |p| L4::EchoReply {
            ident: p,
            seq_no: 7,
        };
        let (c4, r4, c6, r6) = ("10.0.0.2", "203.0.113.5", "fd00::2", "2001:db8:ffff::5");
        vec![
            Exchange {
                name: "tcp4",
                client: c4,
                remote: r4,
                nat: NAT4,
                request: syn,
                reply: syn_ack,
            },
            Exchange {
                name: "udp4",
                client: c4,
                remote: r4,
                nat: NAT4,
                request: query,
                reply: answer,
            },
            Exchange {
                name: "icmp4",
                client: c4,
                remote: r4,
                nat: NAT4,
                request: ping,
                reply: pong,
            },
            Exchange {
                name: "tcp6",
                client: c6,
                remote: r6,
                nat: NAT6,
                request: syn,
                reply: syn_ack,
            },
            Exchange {
                name: "udp6",
                client: c6,
                remote: r6,
                nat: NAT6,
                request: query,
                reply: answer,
            },
            Exchange {
                name: "icmp6",
                client: c6,
                remote: r6,
                nat: NAT6,
                request: ping,
                reply: pong,
            },
        ]
    }

    #[test]
    fn outbound_then_inbound_restores_the_client_and_checksums_verify() {
        for x in exchanges() {
            let mut s = Site::new();
            let request = from_client(x.client, x.remote, x.request);
            let l3 = 14;
            let client_ports = ports(
                &request,
                l3,
                34 + if x.client.contains(':') { 20 } else { 0 },
            );

            let out = s
                .out(&request)
                .unwrap_or_else(|r| panic!("{}: {r:?}", x.name));
            let m = *out.meta();
            assert_eq!(
                addrs(out.data(), l3),
                (ip(x.nat), ip(x.remote)),
                "{}: source NAT",
                x.name
            );
            let (nat_port, remote_port) = ports(out.data(), l3, m.l4_offset.into());
            assert!(
                nat_port >= 1024,
                "{}: NAT port {nat_port} in the range",
                x.name
            );
            if !matches!(x.request, L4::EchoRequest { .. }) {
                assert_eq!(
                    remote_port, client_ports.1,
                    "{}: destination port kept",
                    x.name
                );
            }
            assert_eq!(ttl(out.data(), l3), 63, "{}", x.name);
            assert_checksums_valid(out.data(), l3);
            assert_eq!(
                payload_of(out.data(), &m),
                payload_of(&request, &m),
                "{}: payload untouched",
                x.name
            );
            assert_eq!(
                (m.out_port, m.next_hop_mac),
                (WAN_PORT, ISP0_MAC),
                "{}",
                x.name
            );
            assert_eq!(s.translate.nat.len(), 1);

            let reply = from_isp(x.remote, x.nat, (x.reply)(nat_port));
            let back = s
                .back(&reply)
                .unwrap_or_else(|r| panic!("{}: {r:?}", x.name));
            let m = *back.meta();
            assert_eq!(
                addrs(back.data(), l3),
                (ip(x.remote), ip(x.client)),
                "{}: client restored",
                x.name
            );
            let (_, client_port) = ports(back.data(), l3, m.l4_offset.into());
            assert_eq!(
                client_port, client_ports.0,
                "{}: client port restored",
                x.name
            );
            assert_eq!(ttl(back.data(), l3), 63);
            assert_checksums_valid(back.data(), l3);
            assert_eq!(
                (m.out_port, m.next_hop_mac),
                (LAN_PORT, CLIENT_MAC),
                "{}",
                x.name
            );

            // The next packet of the flow reuses the mapping.
            let again = s.out(&request).unwrap();
            assert_eq!(
                ports(again.data(), l3, again.meta().l4_offset.into()).0,
                nat_port,
                "{}",
                x.name
            );
            assert_eq!(s.translate.nat.len(), 1);
            assert_eq!(s.translate.nat.counters.created.get(), 1);
        }
    }

    #[test]
    fn uplink_decides_nat_address_port_and_next_hop() {
        let mut s = Site::new();
        let frame = from_client("10.0.0.2", "203.0.113.5", udp(1000, 53, b"q"));
        let out = s.send(&frame, LAN_PORT, 1, T0).unwrap();
        assert_eq!(addrs(out.data(), 14).0, ip(NAT4_TAGGED));
        assert_eq!(
            (out.meta().out_port, out.meta().next_hop_mac),
            (WAN_TAGGED_PORT, ISP1_MAC)
        );
        assert_checksums_valid(out.data(), 14);
        let v6 = from_client("fd00::2", "2001:db8:ffff::5", udp(1000, 53, b"q"));
        assert_eq!(
            s.send(&v6, LAN_PORT, 1, T0).unwrap_err(),
            DropReason::NoNatAddress,
            "isp1 has no IPv6 address"
        );
        assert_eq!(
            s.send(&v6, LAN_PORT, 9, T0).unwrap_err(),
            DropReason::NoUplink
        );
    }

    #[test]
    fn ipv4_udp_without_checksum_stays_without() {
        let mut s = Site::new();
        let mut request = from_client("10.0.0.2", "203.0.113.5", udp(40000, 53, b"query"));
        request[40..42].copy_from_slice(&[0, 0]);
        let out = s.out(&request).unwrap();
        assert_eq!(&out.data()[40..42], &[0, 0]);
        assert_checksums_valid(out.data(), 14);
        let nat_port = ports(out.data(), 14, 34).0;

        let mut reply = from_isp("203.0.113.5", NAT4, udp(53, nat_port, b"answer"));
        reply[40..42].copy_from_slice(&[0, 0]);
        let back = s.back(&reply).unwrap();
        assert_eq!(&back.data()[40..42], &[0, 0]);
        assert_eq!(addrs(back.data(), 14).1, ip("10.0.0.2"));
        assert_checksums_valid(back.data(), 14);
    }

    #[test]
    fn udp_checksum_that_becomes_zero_is_sent_as_all_ones() {
        let mut s = Site::new();
        let request = |word: [u8; 2]| {
            from_client(
                "10.0.0.2",
                "203.0.113.5",
                udp(40000, 53, &[word[0], word[1]]),
            )
        };
        let nat_port = ports(s.out(&request([0, 0])).unwrap().data(), 14, 34).0;
        // Choose the payload word that makes the translated datagram's
        // one's-complement sum 0xFFFF, so its checksum computes to zero.
        let mut translated = [0u8; 22];
        translated[..4].copy_from_slice(&[192, 0, 2, 1]);
        translated[4..8].copy_from_slice(&[203, 0, 113, 5]);
        translated[8..12].copy_from_slice(&[0, 17, 0, 10]);
        translated[12..14].copy_from_slice(&nat_port.to_be_bytes());
        translated[14..16].copy_from_slice(&53u16.to_be_bytes());
        translated[16..18].copy_from_slice(&10u16.to_be_bytes());
        let sum = crate::wire::checksum::fold(crate::wire::checksum::sum(&translated, 0));
        let word = (0xFFFF - sum).to_be_bytes();

        let out = s.out(&request(word)).unwrap();
        assert_eq!(ports(out.data(), 14, 34).0, nat_port);
        assert_eq!(
            &out.data()[40..42],
            &[0xFF, 0xFF],
            "RFC 768: a computed zero is sent as all ones"
        );
        assert_checksums_valid(out.data(), 14);
    }

    #[test]
    fn ttl_one_is_dropped_without_creating_a_session() {
        let mut s = Site::new();
        for (src, dst) in [("10.0.0.2", "203.0.113.5"), ("fd00::2", "2001:db8:ffff::5")] {
            for hops in [0, 1] {
                let (a, b) = (ip(src), ip(dst));
                let frame = ethernet(
                    LAN_MAC,
                    CLIENT_MAC,
                    None,
                    ethertype_of(a),
                    &ip_packet(a, b, hops, &udp(40000, 53, b"q")),
                );
                assert_eq!(
                    s.out(&frame).unwrap_err(),
                    DropReason::TtlExpired,
                    "{src} hop limit {hops}"
                );
            }
        }
        assert_eq!(
            s.translate.nat.len(),
            0,
            "a dropped packet holds no NAT port"
        );
        assert_eq!(s.translate.nat.counters.created.get(), 0);

        // Inbound, the session stays for the packets that do arrive.
        let out = s
            .out(&from_client(
                "10.0.0.2",
                "203.0.113.5",
                udp(40000, 53, b"q"),
            ))
            .unwrap();
        let nat_port = ports(out.data(), 14, 34).0;
        let (r, n) = (ip("203.0.113.5"), ip(NAT4));
        let expiring = ethernet(
            WAN_MAC,
            ISP0_MAC,
            None,
            0x0800,
            &ip_packet(r, n, 1, &udp(53, nat_port, b"a")),
        );
        assert_eq!(s.back(&expiring).unwrap_err(), DropReason::TtlExpired);
        let fine = ethernet(
            WAN_MAC,
            ISP0_MAC,
            None,
            0x0800,
            &ip_packet(r, n, 2, &udp(53, nat_port, b"a")),
        );
        let back = s.back(&fine).unwrap();
        assert_eq!(ttl(back.data(), 14), 1);
        assert_checksums_valid(back.data(), 14);
    }

    #[test]
    fn inbound_needs_the_session_of_that_remote() {
        let mut s = Site::new();
        let out = s
            .out(&from_client(
                "10.0.0.2",
                "203.0.113.5",
                tcp(40000, 80, TcpControl::Syn),
            ))
            .unwrap();
        let nat_port = ports(out.data(), 14, 34).0;
        let other_port = if nat_port == 65535 {
            1024
        } else {
            nat_port + 1
        };
        let reply = |src: &str, sport: u16, dport: u16| {
            from_isp(
                src,
                NAT4,
                L4::Tcp {
                    src_port: sport,
                    dst_port: dport,
                    control: TcpControl::Syn,
                    ack: Some(1),
                    payload: &[],
                },
            )
        };
        assert_eq!(
            s.back(&reply("203.0.113.6", 80, nat_port)).unwrap_err(),
            DropReason::NoSession,
            "unknown remote"
        );
        assert_eq!(
            s.back(&reply("203.0.113.5", 81, nat_port)).unwrap_err(),
            DropReason::NoSession,
            "other remote port"
        );
        assert_eq!(
            s.back(&reply("203.0.113.5", 80, other_port)).unwrap_err(),
            DropReason::NoSession,
            "other NAT port"
        );
        let udp_reply = from_isp("203.0.113.5", NAT4, udp(80, nat_port, b""));
        assert_eq!(
            s.back(&udp_reply).unwrap_err(),
            DropReason::NoSession,
            "other protocol"
        );
        assert!(s.back(&reply("203.0.113.5", 80, nat_port)).is_ok());

        let mut unclassified = buf(
            &from_client("10.0.0.2", "203.0.113.5", udp(1, 2, b"")),
            LAN_PORT,
        );
        assert_eq!(
            s.translate.translate(T0, &mut unclassified).unwrap_err(),
            DropReason::UnknownPort
        );
    }

    #[test]
    fn idle_udp_mapping_expires_and_inbound_then_finds_nothing() {
        let timeout = Nanos::from_secs(30);
        let mut s = Site::with(NatConfig {
            udp_idle_timeout: timeout,
            ..NatConfig::default()
        });
        let out = s
            .send(
                &from_client("10.0.0.2", "203.0.113.5", udp(40000, 53, b"q")),
                LAN_PORT,
                0,
                T0,
            )
            .unwrap();
        let nat_port = ports(out.data(), 14, 34).0;
        let reply = from_isp("203.0.113.5", NAT4, udp(53, nat_port, b"a"));
        let at_deadline = T0.saturating_add(timeout);
        assert!(
            s.send(&reply, WAN_PORT, 0, at_deadline).is_ok(),
            "idle for exactly the timeout: still live"
        );
        let later = at_deadline.saturating_add(timeout).saturating_add(Nanos(1));
        assert_eq!(s.translate.sweep(later), 1);
        assert_eq!(
            s.send(&reply, WAN_PORT, 0, later).unwrap_err(),
            DropReason::NoSession
        );
    }

    #[test]
    fn process_counts_translations_and_drops() {
        let mut s = Site::new();
        let mut input: Burst<HeapBuf> = Burst::new();
        for frame in [
            from_client("10.0.0.2", "203.0.113.5", udp(40000, 53, b"q")),
            from_isp("203.0.113.9", NAT4, udp(53, 5000, b"a")),
            {
                let (a, b) = (ip("10.0.0.2"), ip("203.0.113.5"));
                ethernet(
                    LAN_MAC,
                    CLIENT_MAC,
                    None,
                    0x0800,
                    &ip_packet(a, b, 1, &udp(40000, 53, b"q")),
                )
            },
        ] {
            let mut b = buf(
                &frame,
                if frame[6..12] == CLIENT_MAC {
                    LAN_PORT
                } else {
                    WAN_PORT
                },
            );
            s.classify.classify(&mut b).unwrap();
            input.push(b);
        }
        let mut output: Burst<HeapBuf> = Burst::new();
        s.translate.process(T0, &mut input, &mut output);
        assert!(input.is_empty());
        assert_eq!(output.len(), 1);
        let c = &s.translate.counters;
        assert_eq!(c.packets.get(), 3);
        assert_eq!(
            (
                c.drops(DropReason::NoSession),
                c.drops(DropReason::TtlExpired)
            ),
            (1, 1)
        );
        assert_eq!(s.translate.nat.counters.uplinks[0].tx_packets.get(), 1);
    }

    use crate::nat::Filtering;
    use proptest::prelude::*;

    fn udp_out(s: &mut Site, client: &str, cport: u16, remote: &str, rport: u16) -> HeapBuf {
        s.out(&from_client(client, remote, udp(cport, rport, b"ping")))
            .unwrap_or_else(|r| panic!("{client}:{cport} -> {remote}:{rport}: {r:?}"))
    }

    fn src_of(b: &HeapBuf) -> (IpAddr, u16) {
        let l4 = usize::from(b.meta().l4_offset);
        (addrs(b.data(), 14).0, ports(b.data(), 14, l4).0)
    }

    fn dst_of(b: &HeapBuf) -> (IpAddr, u16) {
        let l4 = usize::from(b.meta().l4_offset);
        (addrs(b.data(), 14).1, ports(b.data(), 14, l4).1)
    }

    /// RFC 4787 REQ-1 at packet level: one inside endpoint, three remotes,
    /// one outside endpoint; replies from each reach the client.
    #[test]
    fn one_inside_endpoint_has_one_outside_endpoint_for_every_remote() {
        let mut s = Site::new();
        let outs: Vec<_> = ["203.0.113.5", "203.0.113.6", "198.18.0.1"]
            .iter()
            .map(|r| udp_out(&mut s, "10.0.0.2", 40000, r, 3478))
            .collect();
        let first = src_of(&outs[0]);
        assert_eq!(first, (ip(NAT4), 40000), "port preserved");
        for o in &outs {
            assert_eq!(src_of(o), first);
            assert_checksums_valid(o.data(), 14);
            let reply = from_isp(&dst_of(o).0.to_string(), NAT4, udp(3478, first.1, b"pong"));
            let back = s.back(&reply).unwrap();
            assert_eq!(dst_of(&back), (ip("10.0.0.2"), 40000));
            assert_checksums_valid(back.data(), 14);
        }
        assert_eq!(s.translate.nat.counters.mappings.get(), 1);
        assert_eq!(s.translate.nat.len(), 3);
    }

    /// Each filtering mode at packet level: what a remote the client never
    /// contacted gets through, and that refusals are counted and leave the
    /// session alone.
    #[test]
    fn filtering_modes_on_the_wire() {
        for (mode, host_ok, port_ok) in [
            (Filtering::EndpointIndependent, true, true),
            (Filtering::AddressDependent, false, true),
            (Filtering::AddressAndPortDependent, false, false),
        ] {
            let mut s = Site::with(NatConfig {
                filtering: mode,
                ..NatConfig::default()
            });
            let out = udp_out(&mut s, "10.0.0.2", 40000, "203.0.113.5", 3478);
            let np = src_of(&out).1;
            let from = |src: &str, sport: u16| from_isp(src, NAT4, udp(sport, np, b"hi"));
            let other_host = s.back(&from("198.18.0.9", 3478));
            let other_port = s.back(&from("203.0.113.5", 9999));
            assert_eq!(other_host.is_ok(), host_ok, "{mode:?}");
            assert_eq!(other_port.is_ok(), port_ok, "{mode:?}");
            for r in [&other_host, &other_port] {
                match r {
                    Ok(b) => {
                        assert_eq!(dst_of(b), (ip("10.0.0.2"), 40000));
                        assert_checksums_valid(b.data(), 14);
                    }
                    Err(e) => assert_eq!(*e, DropReason::Filtered),
                }
            }
            let refused = u64::from(!host_ok) + u64::from(!port_ok);
            assert_eq!(s.translate.nat.counters.filtered.get(), refused);
            // The contacted remote still gets through.
            assert!(s.back(&from("203.0.113.5", 3478)).is_ok());
        }
    }

    /// Hairpinning (RFC 4787 REQ-9) within one shard: a LAN client sending to
    /// another's outside endpoint reaches it, seen from that client's own
    /// outside endpoint; with the default filtering it takes the usual hole
    /// punch (each side sends first).
    #[test]
    fn hairpin_within_a_shard() {
        let mut s = Site::new();
        let a = src_of(&udp_out(&mut s, "10.0.0.2", 5000, "203.0.113.5", 3478));
        let b = src_of(&udp_out(&mut s, "10.0.0.3", 6000, "203.0.113.5", 3478));
        let to = |(addr, port): (IpAddr, u16), from: &str, sport: u16| {
            from_client(from, &addr.to_string(), udp(sport, port, b"punch"))
        };
        // A -> B's outside: B never sent to A's outside, so B's filter drops it.
        assert_eq!(
            s.out(&to(b, "10.0.0.2", 5000)).unwrap_err(),
            DropReason::Filtered
        );
        // B -> A's outside: A did send to B's outside: delivered to A.
        let got = s.out(&to(a, "10.0.0.3", 6000)).unwrap();
        let m = *got.meta();
        assert_eq!(dst_of(&got), (ip("10.0.0.2"), 5000));
        assert_eq!(
            src_of(&got),
            b,
            "the sender appears as its outside endpoint"
        );
        assert_eq!(
            (m.out_port, m.direction, m.hairpin),
            (LAN_PORT, Direction::Inbound, false)
        );
        assert_eq!(ttl(got.data(), 14), 63, "one router hop");
        assert_checksums_valid(got.data(), 14);
        // And now A -> B works too.
        let back = s.out(&to(b, "10.0.0.2", 5000)).unwrap();
        assert_eq!((src_of(&back), dst_of(&back)), (a, (ip("10.0.0.3"), 6000)));
        assert_checksums_valid(back.data(), 14);

        // Endpoint-independent filtering needs no punch.
        let mut s = Site::with(NatConfig {
            filtering: Filtering::EndpointIndependent,
            ..NatConfig::default()
        });
        let a = src_of(&udp_out(&mut s, "10.0.0.2", 5000, "203.0.113.5", 3478));
        let got = s.out(&to(a, "10.0.0.3", 7000)).unwrap();
        assert_eq!(dst_of(&got), (ip("10.0.0.2"), 5000));
        assert_eq!(src_of(&got).0, ip(NAT4));
        // Nobody behind that outside port: dropped, counted, no session left
        // half-made on the receiving side.
        let nobody = (ip(NAT4), 4242);
        assert_eq!(
            s.out(&to(nobody, "10.0.0.3", 7001)).unwrap_err(),
            DropReason::NoSession
        );
    }

    /// Across shards: the first shard does the outbound half and marks the
    /// packet for the shard owning the destination port, which finishes it.
    #[test]
    fn hairpin_across_shards() {
        let topo = site(2);
        let classify = Classify::new(topo.clone());
        let cfg = NatConfig {
            filtering: Filtering::EndpointIndependent,
            ..NatConfig::default()
        };
        let mut shard = [
            Translate::new(topo.clone(), 0, cfg.clone()),
            Translate::new(topo.clone(), 1, cfg),
        ];
        let send = |t: &mut Translate, frame: &[u8]| {
            let mut b = buf(frame, LAN_PORT);
            classify.classify(&mut b).unwrap();
            t.translate(T0, &mut b).map(|()| b)
        };
        // A's mapping on shard 1 (its inside port 40000 is in shard 1's slice).
        let a = src_of(
            &send(
                &mut shard[1],
                &from_client("10.0.0.2", "203.0.113.5", udp(40000, 53, b"q")),
            )
            .unwrap(),
        );
        assert_eq!(topo.shard_of_nat_port(a.1), Some(1));
        // B on shard 0 sends to A's outside endpoint.
        let mut half = send(
            &mut shard[0],
            &from_client("10.0.0.3", "192.0.2.1", udp(6000, a.1, b"hi")),
        )
        .unwrap();
        let m = *half.meta();
        assert!(m.hairpin);
        assert_eq!(
            (m.shard, m.direction, m.in_port, m.uplink),
            (1, Direction::Inbound, WAN_PORT, 0)
        );
        assert_eq!(m.flow.dst_port, a.1);
        assert_eq!(ttl(half.data(), 14), 63);
        shard[1].translate(T0, &mut half).unwrap();
        let m = *half.meta();
        assert!(!m.hairpin);
        assert_eq!(dst_of(&half), (ip("10.0.0.2"), 40000));
        assert_eq!((m.out_port, m.next_hop_mac), (LAN_PORT, CLIENT_MAC));
        assert_eq!(
            ttl(half.data(), 14),
            63,
            "the second half does not decrement again"
        );
        assert_checksums_valid(half.data(), 14);
    }

    /// Hostile input: unsolicited packets, packets to unowned ports,
    /// exhaustion and a full table are all counted, none panics, and the
    /// live session keeps working throughout.
    #[test]
    fn hostile_traffic_is_counted_and_leaves_sessions_alone() {
        let mut s = Site::with(NatConfig {
            max_sessions: 4,
            ..NatConfig::default()
        });
        let out = udp_out(&mut s, "10.0.0.2", 40000, "203.0.113.5", 53);
        let np = src_of(&out).1;
        let reply = from_isp("203.0.113.5", NAT4, udp(53, np, b"ok"));
        let mut frames = Vec::new();
        for i in 0..50u16 {
            frames.push((
                from_isp("198.18.0.1", NAT4, udp(i, 2000 + i, b"x")),
                WAN_PORT,
            ));
            frames.push((from_isp("198.18.0.2", NAT4, udp(i, np, b"x")), WAN_PORT));
            frames.push((
                from_client("10.0.0.9", "203.0.113.7", udp(1000 + i, 53, b"x")),
                LAN_PORT,
            ));
            frames.push((reply.clone(), WAN_PORT));
        }
        let mut output: Burst<HeapBuf> = Burst::new();
        for chunk in frames.chunks(16) {
            let mut input: Burst<HeapBuf> = Burst::new();
            for (f, port) in chunk {
                let mut b = buf(f, *port);
                s.classify.classify(&mut b).unwrap();
                input.push(b);
            }
            s.translate.process(T0, &mut input, &mut output);
            for b in output.drain(..) {
                if b.meta().out_port == LAN_PORT {
                    assert_eq!(dst_of(&b), (ip("10.0.0.2"), 40000));
                }
            }
        }
        let c = &s.translate.counters;
        assert_eq!(c.drops(DropReason::NoSession), 50, "unowned ports");
        assert_eq!(c.drops(DropReason::Filtered), 50, "unsolicited remote");
        assert_eq!(c.drops(DropReason::TableFull), 47, "3 of 50 new flows fit");
        assert_eq!(c.packets.get(), 200);
        assert_eq!(s.translate.nat.len(), 4);
        let u = &s.translate.nat.counters.uplinks[0];
        assert_eq!(u.rx_packets.get(), 50, "every genuine reply went through");
    }

    /// Port exhaustion at packet level with a 64-port shard.
    #[test]
    fn port_exhaustion_on_the_wire() {
        let topo = site_with(
            crate::topology::NatPortRange {
                first: 3000,
                last: 3063,
            },
            1,
        );
        let mut s = Site {
            classify: Classify::new(topo.clone()),
            translate: Translate::new(topo, 0, NatConfig::default()),
        };
        let mut ok = 0;
        for i in 0..80u16 {
            match s.out(&from_client(
                "10.0.0.2",
                "203.0.113.5",
                udp(10_000 + i, 53, b"q"),
            )) {
                Ok(_) => ok += 1,
                Err(e) => assert_eq!(e, DropReason::PortExhausted),
            }
        }
        assert_eq!(ok, 64);
        assert_eq!(s.translate.nat.counters.uplinks[0].port_exhausted.get(), 16);
        assert_eq!(
            s.translate.counters.drops(DropReason::PortExhausted),
            0,
            "counted by process only"
        );
    }

    #[derive(Clone, Debug)]
    struct Pkt {
        client: u8,
        cport: u8,
        remote: u8,
        rport: u8,
        kind: u8,
        v6: bool,
        uplink: u8,
        reply: bool,
        payload: Vec<u8>,
    }

    fn pkt() -> impl Strategy<Value = Pkt> {
        (
            (0u8..3, 0u8..3, 0u8..3, 0u8..2, 0u8..3, any::<bool>()),
            (
                0u8..2,
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..40),
            ),
        )
            .prop_map(
                |((client, cport, remote, rport, kind, v6), (uplink, reply, payload))| Pkt {
                    client,
                    cport,
                    remote,
                    rport,
                    kind,
                    v6,
                    uplink,
                    reply,
                    payload,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Random traffic (TCP, UDP, echo; IPv4 and IPv6; two uplinks; each
        /// packet either a client packet or the remote's answer to it):
        /// every translated packet's checksums verify by full recomputation,
        /// its payload is untouched, an inside endpoint keeps one outside
        /// endpoint per uplink, no outside endpoint serves two inside
        /// endpoints, and every answer reaches the client that sent.
        #[test]
        fn translation_is_consistent_and_checksums_verify(pkts in proptest::collection::vec(pkt(), 1..60)) {
            let mut s = Site::new();
            let mut mapping: std::collections::HashMap<(u8, IpAddr, u16, u8), (IpAddr, u16)> = Default::default();
            let mut owner: std::collections::HashMap<(u8, IpAddr, u16), (IpAddr, u16)> = Default::default();
            for p in pkts {
                let (c, r) = if p.v6 {
                    (format!("fd00::{}", p.client + 2), format!("2001:db8:ffff::{}", p.remote + 1))
                } else {
                    (format!("10.0.0.{}", p.client + 2), format!("203.0.113.{}", p.remote + 1))
                };
                let cport = 40000 + u16::from(p.cport);
                let rport = 80 + u16::from(p.rport);
                let l4 = match p.kind {
                    0 => L4::Tcp { src_port: cport, dst_port: rport, control: TcpControl::Syn, ack: None, payload: &p.payload },
                    1 => udp(cport, rport, &p.payload),
                    _ => L4::EchoRequest { ident: cport, seq_no: 1 },
                };
                let uplink = if p.v6 { 0 } else { p.uplink };
                let frame = from_client(&c, &r, l4);
                let out = s.send(&frame, LAN_PORT, uplink, T0).unwrap();
                let m = *out.meta();
                assert_checksums_valid(out.data(), 14);
                let hdr = usize::from(m.l4_offset) + match p.kind { 0 => 20, 1 => 8, _ => 8 };
                prop_assert_eq!(&out.data()[hdr..], &frame[hdr..], "payload untouched");
                let (na, np) = src_of(&out);
                // The uplink the flow actually took: an existing flow keeps
                // its own, UDP and echo stick to their mapping's.
                let took = u8::from(na == ip(NAT4_TAGGED));
                let key = (p.kind, ip(&c), cport, if p.kind == 0 { took } else { 0 });
                let prev = *mapping.entry(key).or_insert((na, np));
                prop_assert_eq!(prev, (na, np), "endpoint-independent mapping");
                let prev = *owner.entry((p.kind, na, np)).or_insert((ip(&c), cport));
                prop_assert_eq!(prev, (ip(&c), cport), "outside endpoint shared");
                if p.reply {
                    let back_l4 = match p.kind {
                        0 => L4::Tcp { src_port: rport, dst_port: np, control: TcpControl::Syn, ack: Some(1), payload: &p.payload },
                        1 => udp(rport, np, &p.payload),
                        _ => L4::EchoReply { ident: np, seq_no: 1 },
                    };
                    let port = if na == ip(NAT4_TAGGED) { WAN_TAGGED_PORT } else { WAN_PORT };
                    let f = match port {
                        WAN_PORT => from_isp(&r, &na.to_string(), back_l4),
                        _ => ethernet(WAN_TAGGED_MAC, ISP1_MAC, Some(TAGGED_VLAN), 0x0800, &ip_packet(ip(&r), na, 64, &back_l4)),
                    };
                    let back = s.send(&f, port, 0, T0).unwrap();
                    assert_checksums_valid(back.data(), 14 + if port == WAN_PORT { 0 } else { 4 });
                    let l3 = usize::from(back.meta().l3_offset);
                    let (_, dst) = addrs(back.data(), l3);
                    prop_assert_eq!(dst, ip(&c));
                    let dp = ports(back.data(), l3, usize::from(back.meta().l4_offset)).1;
                    prop_assert_eq!(dp, cport);
                }
            }
        }
    }

    /// The (source, destination) addresses of the datagram at `l3`, read
    /// raw (a quoted datagram may be cut short).
    fn raw_addrs(frame: &[u8], l3: usize) -> (IpAddr, IpAddr) {
        let d = &frame[l3..];
        if d[0] >> 4 == 4 {
            let a = |o: usize| IpAddr::from(<[u8; 4]>::try_from(&d[o..o + 4]).unwrap());
            (a(12), a(16))
        } else {
            let a = |o: usize| IpAddr::from(<[u8; 16]>::try_from(&d[o..o + 16]).unwrap());
            (a(8), a(24))
        }
    }

    /// RFC 5508: an ICMP error about a translated packet is translated for
    /// that packet's session, both ways, v4 and v6; it neither creates nor
    /// refreshes a session; an error about no session is dropped.
    #[test]
    fn icmp_errors_follow_the_session_they_quote() {
        for (client, remote, nat, unreach, router) in [
            ("10.0.0.2", "203.0.113.5", NAT4, 3u8, "198.18.0.254"),
            (
                "fd00::2",
                "2001:db8:ffff::5",
                NAT6,
                1u8,
                "2001:db8:eeee::fe",
            ),
        ] {
            let mut s = Site::new();
            let out = udp_out(&mut s, client, 40000, remote, 53);
            let (na, np) = src_of(&out);
            let last_seen = s.translate.nat.session(0).unwrap().last_seen;
            // A router on the way says the remote is unreachable, quoting the
            // packet as it left the appliance (TTL 63 by then).
            let quote = quoted(&na.to_string(), remote, 63, udp(np, 53, b"ping"), None);
            let err = icmp_error_from_isp(router, &na.to_string(), unreach, 3, &quote);
            let later = T0.saturating_add(Nanos::from_secs(5));
            let back = s.send(&err, WAN_PORT, 0, later).unwrap();
            let m = *back.meta();
            assert_eq!(addrs(back.data(), 14), (ip(router), ip(client)));
            assert_eq!(
                raw_addrs(back.data(), m.inner_l3.into()),
                (ip(client), ip(remote)),
                "quoted source restored"
            );
            assert_eq!(
                ports(back.data(), m.inner_l3.into(), m.inner_l4.into()),
                (40000, 53)
            );
            assert_eq!((m.out_port, m.next_hop_mac), (LAN_PORT, CLIENT_MAC));
            assert_icmp_error_checksums_valid(back.data(), 14, m.inner_l3.into(), true);
            assert_eq!(
                s.translate.nat.session(0).unwrap().last_seen,
                last_seen,
                "errors do not refresh"
            );

            // The client says its port is unreachable for a reply, quoting
            // the reply as it reached it.
            let quote = quoted(
                remote,
                client,
                63,
                udp(53, 40000, b"late"),
                Some(28 + if na.is_ipv6() { 20 } else { 0 }),
            );
            let err = icmp_error_from_client(
                client,
                remote,
                unreach,
                if na.is_ipv6() { 4 } else { 3 },
                &quote,
            );
            let up = s.out(&err).unwrap();
            let m = *up.meta();
            assert_eq!(addrs(up.data(), 14), (ip(nat), ip(remote)));
            assert_eq!(
                raw_addrs(up.data(), m.inner_l3.into()),
                (ip(remote), ip(nat)),
                "quoted destination is the NAT address"
            );
            assert_eq!(
                ports(up.data(), m.inner_l3.into(), m.inner_l4.into()),
                (53, np)
            );
            assert_eq!((m.out_port, m.next_hop_mac), (WAN_PORT, ISP0_MAC));
            assert_icmp_error_checksums_valid(up.data(), 14, m.inner_l3.into(), false);

            // About a flow nobody has: dropped, no session made.
            let stray = quoted(
                &na.to_string(),
                remote,
                63,
                udp(np.wrapping_add(1), 53, b"?"),
                None,
            );
            let err = icmp_error_from_isp(router, &na.to_string(), unreach, 3, &stray);
            assert_eq!(s.back(&err).unwrap_err(), DropReason::NoSession);
            assert_eq!(s.translate.nat.len(), 1);
        }
    }
}
