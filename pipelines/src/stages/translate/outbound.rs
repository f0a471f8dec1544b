//! Outbound packets: session lookup or creation (uplink selection, races,
//! hairpinning) and source translation.

use std::net::IpAddr;

use super::rewrite::{check_ttl, rewrite, Side};
use super::Translate;
use crate::nat::NatShard;
use crate::packet::buf::{Direction, PacketBuf, PacketMeta};
use crate::packet::burst::Burst;
use crate::packet::drop::DropReason;
use crate::packet::flow::proto;
use crate::packet::time::Nanos;
use crate::race::{reflect_tcp, Ctx, Racer};
use crate::select::policy::candidates;
use crate::topology::{Topology, UplinkId, UPLINK_AUTO};
use crate::wire::ethernet;
use crate::wire::tcp::{tcp_payload_len, tcp_segment, tcp_seq_ack, TCP_ACK, TCP_RST, TCP_SYN};

impl Translate {
    pub(super) fn outbound<B: PacketBuf>(
        &mut self,
        now: Nanos,
        pkt: &mut B,
        hint: Option<crate::nat::Hint>,
        extra: &mut Burst<B>,
    ) -> Result<(), DropReason> {
        let m = *pkt.meta();
        // A LAN client sending to an outside address of this appliance:
        // hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8). The flow leaves by
        // the uplink owning that address and comes straight back in.
        let hairpin = if self.nat_addrs.may_contain(m.flow.dst) {
            self.topo.nat_addr_uplink.get(&m.flow.dst).copied()
        } else {
            None
        };
        // Before any session is created: a packet that dies here must not
        // hold a NAT port until its flow times out.
        check_ttl(pkt)?;
        let client_mac = || ethernet::src(pkt.data()).unwrap_or([0u8; 6]);
        let mut found = self.nat.lookup(&m.flow, false, hint, now);
        self.race.settle(&mut self.nat);
        if let Some(i) = found.filter(|&i| self.policy.reset_on_down && self.on_down_uplink(i)) {
            // on_uplink_down = "reset": the session does not wait for its
            // uplink to come back.
            if m.flow.proto == proto::TCP {
                let mac = self.nat.session(i).map_or([0; 6], |s| s.client_mac);
                let (seq, ack) = tcp_seq_ack(pkt).ok_or(DropReason::TruncatedTcp)?;
                let len = tcp_payload_len(pkt) as u32;
                self.nat.remove(i);
                self.race.settle(&mut self.nat);
                // An RST to the client, as from its server, in its window.
                return reflect_tcp(pkt, TCP_RST | TCP_ACK, ack, seq.wrapping_add(len), 0, mac);
            }
            // UDP / ICMP: the whole sticky mapping leaves the down uplink,
            // or its other sessions would pull new flows back onto it.
            self.nat.remove_mapping(i);
            self.race.settle(&mut self.nat);
            found = None;
        }
        // TIME_WAIT reuse: a new SYN from inside on a closed or closing
        // connection (FINs both ways, or an RST) is a new connection: the
        // old session goes, the SYN creates (and races) a fresh one.
        if let Some(i) = found.filter(|&i| {
            m.flow.proto == proto::TCP
                && m.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
                && self.nat.tcp_reusable(i)
        }) {
            self.nat.tcp_replace(i);
            self.race.settle(&mut self.nat);
            found = None;
        }
        if found.is_none() && self.policy.reset_on_down && hairpin.is_none() {
            self.leave_down_mapping(&m);
        }
        // An inside host with `host_max_races` race copies waiting for an
        // answer starts no race: its SYN leaves by the first copy's uplink
        // alone, the other copies are suppressed.
        let race_refused = found.is_none()
            && m.race > 0
            && hairpin.is_none()
            && !self.nat.host_may_race(m.flow.src, m.race_index == 0);
        if race_refused && m.race_index != 0 {
            return Err(DropReason::RaceSuppressed);
        }
        let idx = match found {
            Some(i) => {
                let racing = self.nat.session(i).is_some_and(|s| s.in_race());
                if m.race > 0 || racing {
                    let mac = client_mac();
                    let (racer, mut cx) = self.racing(now);
                    racer.outbound(&mut cx, pkt, i, mac, extra)?
                } else {
                    i
                }
            }
            None if m.race > 0 && hairpin.is_none() && !race_refused => {
                let isn = tcp_seq_ack(pkt).map_or(0, |(seq, _)| seq);
                let mac = client_mac();
                let (racer, mut cx) = self.racing::<B>(now);
                racer.start(&mut cx, &m, mac, isn)?
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
                    self.nat.count_connection(idx);
                }
                idx
            }
        };
        // Creation may have evicted a race-tagged session.
        self.race.settle(&mut self.nat);
        let (addr, port) = send_by(&mut self.nat, &self.topo, now, pkt, idx)?;
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
        // Classify's hash was of the key before: the owning shard hashes.
        m.flow_hash = 0;
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

    /// The policy's RFC 2391 algorithm for a new session replicate left to
    /// translate.
    fn pick(&mut self, m: &PacketMeta) -> Result<UplinkId, DropReason> {
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
        self.nat
            .session(idx)
            .is_some_and(|s| !s.in_race() && self.uplink_down(s.uplink))
    }

    /// Whether `uplink` is down now while others are up.
    fn uplink_down(&self, uplink: UplinkId) -> bool {
        let healthy = self.selector.snapshot().healthy_mask();
        healthy != 0 && healthy & (1u64 << uplink.min(63)) == 0
    }

    /// on_uplink_down = "reset", a new UDP / ICMP flow: when its client's
    /// sticky mapping is on a down uplink, the mapping (all its sessions)
    /// goes, so the new flow is not created on the down uplink (the sticky
    /// mapping lookup would choose it) and the client's next packets of
    /// the other flows move too. The down uplink is never chosen again
    /// while down.
    fn leave_down_mapping(&mut self, m: &PacketMeta) {
        let Some((head, uplink)) = self.nat.sticky_mapping(&m.flow) else {
            return;
        };
        let service = self
            .nat
            .session(head)
            .is_some_and(|s| s.server != crate::nat::NO_SERVER);
        if !service && self.uplink_down(uplink) {
            self.nat.remove_mapping(head);
            self.race.settle(&mut self.nat);
        }
    }

    /// The racer with the context its decisions work in.
    pub(super) fn racing<B: PacketBuf>(&mut self, now: Nanos) -> (&mut Racer, Ctx<'_, B>) {
        (
            &mut self.race,
            Ctx {
                nat: &mut self.nat,
                topo: &self.topo,
                counters: &self.counters,
                selection: &self.selection,
                now,
                send_by: send_by::<B>,
            },
        )
    }
}

/// Source-translates an outbound packet by session `idx` and points it
/// at that session's uplink; returns the NAT address and port it took.
pub(super) fn send_by<B: PacketBuf>(
    nat: &mut NatShard,
    topo: &Topology,
    now: Nanos,
    pkt: &mut B,
    idx: u32,
) -> Result<(IpAddr, u16), DropReason> {
    let len = pkt.data().len();
    let flags = pkt.meta().tcp_flags;
    nat.touch(idx, now, len, flags, false);
    if pkt.meta().flow.proto == proto::TCP {
        if let Some(seg) = tcp_segment(pkt) {
            nat.tcp_learn_out(idx, &seg);
        }
    }
    let s = nat.session(idx).ok_or(DropReason::NoSession)?;
    let (addr, port, uplink) = (nat.nat_addr(s), s.nat_port, s.uplink);
    rewrite(pkt, Side::Src, addr, port)?;
    if let Some(c) = nat.counters.uplinks.get(usize::from(uplink)) {
        c.tx_packets.inc();
        c.tx_bytes.add(len as u64);
    }
    let u = &topo.uplinks[usize::from(uplink)];
    let meta = pkt.meta_mut();
    meta.out_port = u.port;
    meta.uplink = uplink;
    meta.next_hop_mac = u.next_hop_mac;
    Ok((addr, port))
}
