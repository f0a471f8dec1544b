//! Inbound packets: matched by their full 5-tuple (or admitted by the
//! filtering mode, or given to a local server), destination restored.

use super::rewrite::{check_ttl, rewrite, Side};
use super::Translate;
use crate::nat::NatShard;
use crate::packet::buf::PacketBuf;
use crate::packet::burst::Burst;
use crate::packet::drop::DropReason;
use crate::packet::flow::proto;
use crate::packet::time::Nanos;
use crate::select::SelEvent;
use crate::wire::tcp::{tcp_segment, TCP_ACK, TCP_SYN};

impl Translate {
    pub(super) fn inbound<B: PacketBuf>(
        &mut self,
        now: Nanos,
        pkt: &mut B,
        decrement_ttl: bool,
        hint: Option<crate::nat::Hint>,
        extra: &mut Burst<B>,
    ) -> Result<(), DropReason> {
        let m = *pkt.meta();
        if decrement_ttl {
            check_ttl(pkt)?;
        }
        let found = self.nat.lookup(&m.flow, true, hint, now);
        self.race.settle(&mut self.nat);
        let idx = match found {
            Some(i) => i,
            None if m.service != 0 => {
                use crate::redirect::service::{first_packet, Outcome};
                let plane = self.service.as_mut().ok_or(DropReason::NoSession)?;
                let first = first_packet(&mut self.nat, plane, &self.topo, now, pkt);
                self.race.settle(&mut self.nat);
                match first? {
                    Outcome::Session(i) => i,
                    Outcome::Answered => return Ok(()),
                }
            }
            None => self.nat.admit_in(&m.flow, m.tcp_flags, now)?,
        };
        // Window tracking (nat/window.rs): checked before a race or the
        // refresh sees the segment, learnt from after the refresh.
        let seg = if m.flow.proto == proto::TCP {
            let seg = tcp_segment(pkt).ok_or(DropReason::TruncatedTcp)?;
            self.nat.tcp_check_in(idx, &seg)?;
            Some(seg)
        } else {
            None
        };
        if m.flow.proto == proto::TCP {
            if let (Some(s), Some(c)) = (self.nat.session(idx), self.nat.cold(idx)) {
                if s.in_race() {
                    let (racer, mut cx) = self.racing(now);
                    if !racer.inbound(&mut cx, pkt, idx, extra)? {
                        return Ok(());
                    }
                } else if m.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK
                    && !NatShard::answered(s)
                    && c.packets_in == 0
                {
                    // A connection that did not race still measures its
                    // uplink (seed 001 [0041]).
                    let ev = SelEvent::Answer {
                        dst: s.remote_addr(),
                        uplink: s.uplink,
                        rtt: (c.packets_out == 1).then(|| now.since(s.last_seen)),
                        raced: false,
                        decided: false,
                    };
                    self.nat.emit(ev);
                }
            }
        }
        let len = pkt.data().len();
        self.nat.touch(idx, now, len, m.tcp_flags, true);
        if let Some(seg) = &seg {
            self.nat.tcp_learn_in(idx, seg);
        }
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
