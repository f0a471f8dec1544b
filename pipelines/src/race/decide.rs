//! The race decisions of the translate stage (seed 001 [0026]-[0036]): a
//! race starts on the first copy of a replicated SYN, later copies join it,
//! the client's segments follow it, and the first answer (SYN+ACK or first
//! payload) picks the winner; losers are answered with RSTs. Translate calls
//! [`Racer`] once per packet that races: `start` (the first copy of a SYN),
//! `outbound` (a client segment or copy of a racing flow) or `inbound` (a
//! server segment on a racing session).

use std::net::IpAddr;

use super::segments::{reflect_tcp, shift_seq, write_tcp};
use super::table::{Race, RaceTable, REPLAY_MAX};
use crate::nat::{NatShard, NONE};
use crate::packet::buf::{Direction, PacketBuf, PacketMeta};
use crate::packet::burst::Burst;
use crate::packet::counter::StageCounters;
use crate::packet::drop::DropReason;
use crate::packet::flow::{proto, FlowKey};
use crate::packet::time::Nanos;
use crate::select::policy::{RaceMode, SelectionCounters};
use crate::select::{SelEvent, RACE_MAX};
use crate::topology::{Topology, UplinkId};
use crate::wire::tcp::{tcp_payload_len, tcp_seq_ack, TCP_ACK, TCP_RST, TCP_SYN};

/// The translate stage's way of sending an outbound packet by a session:
/// source translation, counters, uplink and next hop. Returns the NAT
/// address and port the packet took.
pub type SendBy<B> =
    fn(&mut NatShard, &Topology, Nanos, &mut B, u32) -> Result<(IpAddr, u16), DropReason>;

/// What a race decision works with, lent by the translate stage.
pub struct Ctx<'a, B> {
    pub nat: &'a mut NatShard,
    pub topo: &'a Topology,
    /// The stage's counters (copies the pool could not supply).
    pub counters: &'a StageCounters,
    /// The stage's selection counters (negative answers, failed races).
    pub selection: &'a SelectionCounters,
    pub now: Nanos,
    pub send_by: SendBy<B>,
}

/// The races of one translate shard and their decisions. The NAT shard
/// holds the sessions and tags racing ones with their race; the racer holds
/// the races, and forgets a member the shard reports gone ([`Racer::settle`]).
pub struct Racer {
    table: RaceTable,
    mode: RaceMode,
    /// First-payload mode was in force at some point: races of that mode
    /// may still be open after a reload switched to SYN+ACK.
    wide: bool,
}

impl Racer {
    /// Room for `max_races` races decided by `mode`.
    pub fn new(max_races: usize, mode: RaceMode) -> Racer {
        Racer {
            table: RaceTable::with_capacity(max_races),
            mode,
            wide: mode == RaceMode::FirstPayload,
        }
    }

    /// Decides new races by `mode` (a reload); each open race keeps the
    /// mode it started with.
    pub fn set_mode(&mut self, mode: RaceMode) {
        self.mode = mode;
        self.wide |= mode == RaceMode::FirstPayload;
    }

    /// Races held (in progress, or first-payload offsets kept).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn race(&self, r: u32) -> Option<&Race> {
        self.table.get(r)
    }

    /// Output slots one packet may need: first-payload races copy client
    /// segments to every racing uplink and replay them to late ones, so
    /// while any is open each packet needs room for its extras.
    pub fn room_per_packet(&self) -> usize {
        if !self.table.is_empty() && self.wide {
            1 + RACE_MAX + REPLAY_MAX
        } else {
            1
        }
    }

    /// Lets the races forget the members the shard removed (expired, swept
    /// or removed) since the last call. Call after every shard call that
    /// can remove sessions, before the next race decision.
    pub fn settle(&mut self, nat: &mut NatShard) {
        for e in nat.take_race_exits() {
            self.table.forget(e.race, e.slot);
        }
    }

    /// Adds session `idx` to race `r` (false when the race is full).
    fn attach(&mut self, nat: &mut NatShard, r: u32, idx: u32) -> bool {
        if !self.table.attach(r, idx) {
            return false;
        }
        nat.set_race(idx, r);
        true
    }

    /// Takes live session `idx` out of race `r`; the race record goes with
    /// its last member.
    fn detach(&mut self, nat: &mut NatShard, r: u32, idx: u32) {
        nat.set_race(idx, NONE);
        self.table.forget(r, idx);
    }

    /// Closes race copy `idx` (it lost, or its race closed it): logged
    /// with reason `race_lost` and its RTT if it answered (`rtt`), removed,
    /// counted `race_closed`.
    fn close_member(&mut self, nat: &mut NatShard, idx: u32, rtt: Option<Nanos>) {
        log_lost(nat, idx, rtt);
        self.drop_member(nat, idx);
        nat.counters.race_closed.inc();
    }

    /// Removes member session `idx` from the shard (and so from its race).
    fn drop_member(&mut self, nat: &mut NatShard, idx: u32) {
        nat.remove(idx);
        self.settle(nat);
    }

    /// The member of race `r` on `uplink`, if any.
    fn member_on(&self, nat: &NatShard, r: u32, uplink: UplinkId) -> Option<u32> {
        let race = self.table.get(r)?;
        race.live_members()
            .map(|(_, m)| m)
            .find(|&m| nat.session(m).is_some_and(|s| s.uplink == uplink))
    }

    /// The first copy of a replicated SYN to arrive starts its race: a
    /// session on the copy's uplink holding the outbound index entry. With
    /// the race table full the SYN goes out by this uplink alone.
    pub(crate) fn start<B: PacketBuf>(
        &mut self,
        cx: &mut Ctx<'_, B>,
        m: &PacketMeta,
        client_mac: [u8; 6],
        client_isn: u32,
    ) -> Result<u32, DropReason> {
        if usize::from(m.uplink) >= cx.topo.uplinks.len() {
            return Err(DropReason::NoUplink);
        }
        let Some(r) = self.table.start(cx.now, m.race_tag, self.mode) else {
            cx.nat.counters.race_table_full.inc();
            let idx = cx.nat.create_out(&m.flow, m.uplink, client_mac, cx.now)?.0;
            cx.nat.count_connection(idx);
            return Ok(idx);
        };
        let idx = match cx.nat.create_out(&m.flow, m.uplink, client_mac, cx.now) {
            Ok((idx, _)) => idx,
            Err(e) => {
                self.table.free_if_empty(r);
                return Err(e);
            }
        };
        self.attach(cx.nat, r, idx);
        if let Some(x) = self.table.get_mut(r) {
            x.client_next = client_isn.wrapping_add(1);
        }
        cx.nat.counters.races.inc();
        if cx.nat.log.enabled {
            use crate::nat::{EventKind, EventReason};
            if let Some(ev) = cx
                .nat
                .session_event(idx, EventKind::RaceStarted, EventReason::None)
            {
                cx.nat.log.push(ev);
            }
        }
        Ok(idx)
    }

    /// An outbound packet of a flow that has a session `i` (the indexed one)
    /// while it races or is a race copy. Returns the session to send it by;
    /// may add copies of it for other uplinks to `extra`.
    pub(crate) fn outbound<B: PacketBuf>(
        &mut self,
        cx: &mut Ctx<'_, B>,
        pkt: &mut B,
        i: u32,
        client_mac: [u8; 6],
        extra: &mut Burst<B>,
    ) -> Result<u32, DropReason> {
        let m = *pkt.meta();
        let race = cx.nat.session(i).map_or(NONE, |s| s.race);
        let Some(r) = self.table.get(race).cloned() else {
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
                    self.first_payload_outbound(cx, pkt, race, &r, extra);
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
        if let Some(j) = self.member_on(cx.nat, race, m.uplink) {
            return Ok(j);
        }
        // Another copy of the SYN that started the race joins it; a
        // retransmission does not add uplinks (no second race).
        if m.race_tag != r.tag || usize::from(m.uplink) >= cx.topo.uplinks.len() {
            return Err(DropReason::RaceSuppressed);
        }
        let (j, _) = cx
            .nat
            .create_out_with(&m.flow, m.uplink, client_mac, cx.now, false)?;
        if !self.attach(cx.nat, race, j) {
            self.drop_member(cx.nat, j);
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
        cx: &mut Ctx<'_, B>,
        pkt: &mut B,
        race: u32,
        r: &Race,
        extra: &mut Burst<B>,
    ) {
        let payload = tcp_payload_len(pkt);
        if let Some((seq, _)) = tcp_seq_ack(pkt) {
            let end = seq.wrapping_add(payload as u32);
            let room = r.replay_n < REPLAY_MAX as u8;
            let slot = if payload > 0 && room {
                self.table.replay.keep(pkt)
            } else {
                None
            };
            if let Some(x) = self.table.get_mut(race) {
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
                cx.counters.count_drop(DropReason::NoBuffer);
                continue;
            };
            shift_seq(&mut copy, 0, r.isn[k].wrapping_sub(r.client_isn));
            match (cx.send_by)(cx.nat, cx.topo, cx.now, &mut copy, member) {
                Ok(_) => push_extra(cx.counters, extra, copy),
                Err(reason) => cx.counters.count_drop(reason),
            }
        }
    }

    /// An inbound TCP segment on a session that races (or lost a race).
    /// Returns true when the segment is to be translated to the client as
    /// usual, false when it was turned into the appliance's own answer
    /// (ready to leave); drops it otherwise.
    pub(crate) fn inbound<B: PacketBuf>(
        &mut self,
        cx: &mut Ctx<'_, B>,
        pkt: &mut B,
        idx: u32,
        extra: &mut Burst<B>,
    ) -> Result<bool, DropReason> {
        let m = *pkt.meta();
        let Some(s) = cx.nat.session(idx) else {
            return Err(DropReason::NoSession);
        };
        let r = s.race;
        let Some(race) = self.table.get(r).cloned() else {
            return Ok(true);
        };
        let synack = m.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK;
        let rst = m.tcp_flags & TCP_RST != 0;
        let payload = tcp_payload_len(pkt) > 0;
        if s.is_race_loser() {
            let answer = synack || (race.mode == RaceMode::FirstPayload && payload);
            return self
                .answer_loser(cx, pkt, idx, &race, answer, rst)
                .map(|()| false);
        }
        if race.decided {
            // A first-payload winner in another sequence space.
            shift_seq(pkt, race.offset.wrapping_neg(), 0);
            return Ok(true);
        }
        if race.mode == RaceMode::SynAck {
            return if synack {
                self.decide(cx, r, idx, 0, &*pkt, extra);
                Ok(true)
            } else if rst {
                // Honest races: an RST decides nothing while another copy
                // can still answer.
                self.negative(cx, r, idx).map(|()| true)
            } else {
                Err(DropReason::RacePending)
            };
        }
        self.first_payload_inbound(cx, pkt, r, &race, idx, synack, rst, payload, extra)
    }

    /// First-payload mode, before the decision (seed 001 [0031]-[0033]).
    #[allow(clippy::too_many_arguments)]
    fn first_payload_inbound<B: PacketBuf>(
        &mut self,
        cx: &mut Ctx<'_, B>,
        pkt: &mut B,
        r: u32,
        race: &Race,
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
            self.decide(cx, r, idx, offset, &*pkt, extra);
            shift_seq(pkt, offset.wrapping_neg(), 0);
            return Ok(true);
        }
        if rst && race.answered & (1 << k) == 0 && idx != race.client_side {
            // An RST to a copy's SYN: a negative answer.
            return self.negative(cx, r, idx).map(|()| true);
        }
        if rst {
            let others = race
                .live_members()
                .any(|(j, x)| x != idx && race.answered & (1 << j) != 0);
            if idx == race.client_side && !others {
                self.decide(cx, r, idx, 0, &*pkt, extra);
                return Ok(true);
            }
            self.close_member(cx.nat, idx, None);
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
                    cx.nat.set_out_indexed(x, false);
                }
            }
            cx.nat.set_out_indexed(idx, true);
            if let Some(x) = self.table.get_mut(r) {
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
            let next_hop = next_hop_of(cx.nat, cx.topo, idx);
            self.close_member(cx.nat, idx, None);
            reflect_tcp(pkt, TCP_RST, ack, 0, 0, next_hop)?;
            return Ok(false);
        }
        if let Some(x) = self.table.get_mut(r) {
            x.isn[k] = seq;
            x.answered |= 1 << k;
        }
        let offset = seq.wrapping_sub(race.client_isn);
        for &slot in &race.replay[..usize::from(race.replay_n)] {
            let Some(mut copy) = pkt.try_clone() else {
                cx.counters.count_drop(DropReason::NoBuffer);
                continue;
            };
            if !self.table.replay.restore(slot, &mut copy) {
                cx.counters.count_drop(DropReason::RaceCopyFailed);
                continue;
            }
            shift_seq(&mut copy, 0, offset);
            match (cx.send_by)(cx.nat, cx.topo, cx.now, &mut copy, idx) {
                Ok(_) => push_extra(cx.counters, extra, copy),
                Err(reason) => cx.counters.count_drop(reason),
            }
        }
        let next_hop = next_hop_of(cx.nat, cx.topo, idx);
        cx.nat
            .touch(idx, cx.now, pkt.data().len(), TCP_SYN | TCP_ACK, true);
        reflect_tcp(pkt, TCP_ACK, ack, seq.wrapping_add(1), u16::MAX, next_hop)?;
        // The ACK leaves before the replayed data.
        Ok(false)
    }

    /// The first answer decides the race (seed 001 [0036]): its session
    /// takes the outbound index entry and carries the connection; every
    /// other copy loses. In first-payload mode the losers whose handshake the
    /// appliance completed get an RST at once (their servers hold an
    /// established connection); the others, as in SYN+ACK mode, wait for the
    /// race timeout for their SYN+ACK, which is answered with an RST.
    fn decide<B: PacketBuf>(
        &mut self,
        cx: &mut Ctx<'_, B>,
        r: u32,
        winner: u32,
        offset: u32,
        template: &B,
        extra: &mut Burst<B>,
    ) {
        let Some(race) = self.table.get(r).cloned() else {
            return;
        };
        for (k, x) in race.live_members() {
            if x == winner {
                continue;
            }
            cx.nat.set_out_indexed(x, false);
            if race.failed & (1 << k) != 0 {
                // Its server (or a router on its way) already said no:
                // nothing to reset; it lost to a positive answer.
                self.lose_failed(cx, x);
                continue;
            }
            let Some(u) = cx.nat.mark_loser(x, cx.now) else {
                continue;
            };
            if let Some(c) = cx.nat.counters.uplinks.get(usize::from(u)) {
                c.races_lost.inc();
            }
            if race.mode == RaceMode::FirstPayload && race.answered & (1 << k) != 0 {
                self.reset_member(cx, x, race.client_next, template, extra);
            }
        }
        cx.nat.set_out_indexed(winner, true);
        self.table.release_replay(r);
        if let Some(x) = self.table.get_mut(r) {
            x.decided = true;
            x.offset = offset;
        }
        let Some(s) = cx.nat.session(winner) else {
            return;
        };
        let ev = SelEvent::Answer {
            dst: s.remote_addr(),
            uplink: s.uplink,
            rtt: (cx.nat.cold(winner).is_some_and(|c| c.packets_out == 1)
                || race.mode == RaceMode::FirstPayload)
                .then(|| cx.now.since(race.started)),
            raced: true,
            decided: true,
        };
        if let Some(c) = cx.nat.counters.uplinks.get(usize::from(s.uplink)) {
            c.races_won.inc();
            c.connections.inc();
        }
        if cx.nat.log.enabled {
            self.log_decision(cx.nat, &race, winner, ev);
        }
        cx.nat.emit(ev);
        if offset == 0 {
            self.detach(cx.nat, r, winner);
        }
    }

    /// Logs the decision: the winner and each member's uplink, with the
    /// winner's RTT (the others had not answered yet; their answers reach
    /// the RTT table).
    fn log_decision(&self, nat: &mut NatShard, race: &Race, winner: u32, ev: SelEvent) {
        use crate::nat::{EventKind, EventReason};
        let Some(mut log) = nat.session_event(winner, EventKind::RaceDecided, EventReason::None)
        else {
            return;
        };
        log.winner = log.uplink;
        let rtt = match ev {
            SelEvent::Answer { rtt, .. } => rtt,
            SelEvent::Unanswered { .. } => None,
        };
        for (k, (_, x)) in race.live_members().enumerate().take(log.rtts.len()) {
            let Some(u) = nat.session(x).map(|s| s.uplink) else {
                continue;
            };
            log.rtts[k] = (u, if x == winner { rtt } else { None });
            log.races = k as u8 + 1;
        }
        nat.log.push(log);
    }

    /// A negative answer (an inbound RST, or an ICMP error quoting the
    /// copy) on member `idx` of undecided race `r`, which had not answered:
    /// the copy is marked failed. While another copy can still answer (it
    /// answered, or it neither failed nor passed the race timeout) the
    /// answer is held back (`RaceNegative`): the race is decided by a
    /// positive answer, and the client never sees this one. Otherwise every
    /// copy failed or timed out: the race ends with this (the last)
    /// negative answer, which goes to the client by `idx` (Ok). Copies that
    /// stay silent are answered again on the client's retransmitted SYN, so
    /// the client gets the negative answer then.
    pub(crate) fn negative<B>(
        &mut self,
        cx: &mut Ctx<'_, B>,
        r: u32,
        idx: u32,
    ) -> Result<(), DropReason> {
        let Some(race) = self.table.get(r).cloned() else {
            return Ok(());
        };
        let k = race.position(idx).ok_or(DropReason::NoSession)?;
        cx.selection.races_negative_answers.inc();
        let failed = race.failed | 1 << k;
        if let Some(x) = self.table.get_mut(r) {
            x.failed = failed;
        }
        let timed_out = cx.now.since(race.started) >= cx.nat.config().race_timeout;
        let open = race.live_members().any(|(j, x)| {
            x != idx && (race.answered & (1 << j) != 0 || (failed & (1 << j) == 0 && !timed_out))
        });
        if open {
            return Err(DropReason::RaceNegative);
        }
        cx.selection.races_all_failed.inc();
        // The destination failed on every uplink: no uplink is to blame,
        // the other copies just go.
        for (_, x) in race.live_members() {
            if x != idx {
                cx.nat.set_out_indexed(x, false);
                self.close_member(cx.nat, x, None);
            }
        }
        cx.nat.set_out_indexed(idx, true);
        self.table.release_replay(r);
        if let Some(x) = self.table.get_mut(r) {
            x.decided = true;
            x.offset = 0;
        }
        self.detach(cx.nat, r, idx);
        Ok(())
    }

    /// An ICMP error from outside quoting session `idx`, which races (or
    /// lost a race). Ok: translate it to the client as usual. A loser's is
    /// dropped (the client's connection is on the winner) and frees it; a
    /// copy that had not answered gets a negative answer ([`Self::negative`]).
    pub(crate) fn icmp_error<B>(
        &mut self,
        cx: &mut Ctx<'_, B>,
        idx: u32,
    ) -> Result<(), DropReason> {
        let Some(s) = cx.nat.session(idx) else {
            return Err(DropReason::NoSession);
        };
        let (r, loser) = (s.race, s.is_race_loser());
        let Some(race) = self.table.get(r).cloned() else {
            return Ok(());
        };
        if loser {
            self.close_member(cx.nat, idx, None);
            return Err(DropReason::RaceLoser);
        }
        let Some(k) = race.position(idx) else {
            return Ok(());
        };
        if race.decided || race.answered & (1 << k) != 0 || idx == race.client_side {
            // A first-payload winner, or a handshake the client (or the
            // appliance) completed: an error about an open connection.
            return Ok(());
        }
        self.negative(cx, r, idx)
    }

    /// Failed member `x` of a race another uplink won: it lost, its uplink
    /// is told (the failure counts toward its health only with failures
    /// toward other destinations), and it goes at once.
    fn lose_failed<B>(&mut self, cx: &mut Ctx<'_, B>, x: u32) {
        if let Some(s) = cx.nat.session(x) {
            let ev = SelEvent::Unanswered {
                uplink: s.uplink,
                dst: s.remote_addr(),
            };
            if let Some(c) = cx.nat.counters.uplinks.get(usize::from(s.uplink)) {
                c.races_lost.inc();
            }
            cx.nat.emit(ev);
        }
        self.close_member(cx.nat, x, None);
    }

    /// Sends an RST for losing member `x` to its server (a copy of a pool
    /// buffer written from scratch), sequence number `seq` (the client's
    /// next), and frees the member.
    fn reset_member<B: PacketBuf>(
        &mut self,
        cx: &mut Ctx<'_, B>,
        x: u32,
        seq: u32,
        template: &B,
        extra: &mut Burst<B>,
    ) {
        let Some(s) = cx.nat.session(x) else {
            return;
        };
        let f = FlowKey {
            src: cx.nat.nat_addr(s),
            dst: s.remote_addr(),
            src_port: s.nat_port,
            dst_port: s.remote_port,
            proto: proto::TCP,
        };
        let uplink = &cx.topo.uplinks[usize::from(s.uplink)];
        let (port, next_hop) = (uplink.port, uplink.next_hop_mac);
        // The segment in hand (same IP version, classified) is the template.
        match template.try_clone() {
            Some(mut b) => {
                if write_tcp(&mut b, &f, TCP_RST, seq, 0, 0).is_ok() {
                    let m = b.meta_mut();
                    m.direction = Direction::Outbound;
                    m.out_port = port;
                    m.uplink = s.uplink;
                    m.next_hop_mac = next_hop;
                    push_extra(cx.counters, extra, b);
                } else {
                    cx.counters.count_drop(DropReason::RaceCopyFailed);
                }
            }
            None => cx.counters.count_drop(DropReason::NoBuffer),
        }
        self.close_member(cx.nat, x, None);
    }

    /// A segment from a losing uplink. Its SYN+ACK is answered with an RST
    /// toward the server, sequence number taken from the SYN+ACK's
    /// acknowledgement (RFC 9293 3.10.7.3), so the server's half-open
    /// connection goes at once (seed 001 [0030], [0036]); the loser's
    /// session is freed. Its RST just frees the session.
    fn answer_loser<B: PacketBuf>(
        &mut self,
        cx: &mut Ctx<'_, B>,
        pkt: &mut B,
        idx: u32,
        race: &Race,
        synack: bool,
        rst: bool,
    ) -> Result<(), DropReason> {
        let Some(s) = cx.nat.session(idx) else {
            return Err(DropReason::NoSession);
        };
        if rst {
            self.close_member(cx.nat, idx, None);
            return Err(DropReason::RaceLoser);
        }
        if !synack {
            return Err(DropReason::RaceLoser);
        }
        let rtt = cx
            .nat
            .cold(idx)
            .is_some_and(|c| c.packets_out == 1)
            .then(|| cx.now.since(race.started));
        let ev = SelEvent::Answer {
            dst: s.remote_addr(),
            uplink: s.uplink,
            rtt,
            raced: true,
            decided: false,
        };
        let uplink = &cx.topo.uplinks[usize::from(s.uplink)];
        let next_hop = uplink.next_hop_mac;
        let (_, ack) = tcp_seq_ack(pkt).ok_or(DropReason::TruncatedTcp)?;
        cx.nat.emit(ev);
        // A late answer: the loser's RTT, logged with its exit.
        self.close_member(cx.nat, idx, rtt);
        reflect_tcp(pkt, TCP_RST, ack, 0, 0, next_hop)
    }
}

/// Queues a packet the appliance made for a race; one that finds the
/// burst of extra packets full is counted `ring_full` and freed.
fn push_extra<B: PacketBuf>(counters: &StageCounters, extra: &mut Burst<B>, pkt: B) {
    if let Err(e) = extra.try_push(pkt) {
        counters.count_drop(DropReason::RingFull);
        drop(e.element());
    }
}

fn next_hop_of(nat: &NatShard, topo: &Topology, idx: u32) -> [u8; 6] {
    nat.session(idx)
        .and_then(|s| topo.uplinks.get(usize::from(s.uplink)))
        .map_or([0; 6], |u| u.next_hop_mac)
}

/// Logs that race copy `idx` leaves (reason `race_lost`), with its RTT
/// when its answer came (`None`: it had not answered).
fn log_lost(nat: &mut NatShard, idx: u32, rtt: Option<Nanos>) {
    use crate::nat::{EventKind, EventReason};
    if !nat.log.enabled {
        return;
    }
    if let Some(mut ev) = nat.session_event(idx, EventKind::SessionExpired, EventReason::RaceLost) {
        ev.rtts[0] = (ev.uplink, rtt);
        ev.races = 1;
        nat.log.push(ev);
    }
}
