//! Stage 4, transmit: writes the egress L2 header (next-hop MAC decided by
//! translate, the port's own MAC, the port's VLAN tag if any) and sorts
//! packets into one TX burst per port. The caller hands those bursts to the
//! ports and reports what a port did not take with [`Transmit::tx_rejected`],
//! so it is counted and freed, never lost silently.

use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::burst::Burst;
use crate::counter::StageCounters;
use crate::drop::DropReason;
use crate::topology::Topology;
use crate::wire::{l2_len, write_l2, ETHERTYPE_IPV4, ETHERTYPE_IPV6};

pub struct Transmit {
    topo: Arc<Topology>,
    /// Shared with the management core, which only reads.
    pub counters: Arc<StageCounters>,
}

impl Transmit {
    pub fn new(topo: Arc<Topology>) -> Self {
        Transmit { topo, counters: Arc::default() }
    }

    /// Moves packets from `input` into `per_port[out_port]`. Packets whose
    /// port burst is full stay in `input` (in order) for the next call, after
    /// the caller has flushed `per_port`.
    pub fn process<B: PacketBuf>(&mut self, input: &mut Burst<B>, per_port: &mut [Burst<B>]) {
        let mut deferred: Burst<B> = Burst::new();
        for mut pkt in input.drain(..) {
            let port = pkt.meta().out_port as usize;
            let Some(out) = per_port.get_mut(port) else {
                self.counters.packets.inc();
                self.counters.count_drop(DropReason::NoTxPort);
                continue;
            };
            if out.is_full() {
                deferred.push(pkt);
                continue;
            }
            self.counters.packets.inc();
            match self.prepare(&mut pkt) {
                Ok(()) => out.push(pkt),
                Err(r) => self.counters.count_drop(r),
            }
        }
        input.extend(deferred);
    }

    /// Rewrites the L2 header for the egress port.
    pub fn prepare<B: PacketBuf>(&self, pkt: &mut B) -> Result<(), DropReason> {
        let m = *pkt.meta();
        let port = self.topo.ports.get(m.out_port as usize).ok_or(DropReason::NoTxPort)?;
        let have = m.l3_offset as usize;
        let want = l2_len(port.vlan);
        if want > have {
            if !pkt.prepend(want - have) {
                return Err(DropReason::TxFull);
            }
        } else if !pkt.adj(have - want) {
            return Err(DropReason::TruncatedEthernet);
        }
        let ethertype = if m.is_ipv6() { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
        let frame = pkt.data_mut();
        if frame.len() < want {
            return Err(DropReason::TruncatedEthernet);
        }
        write_l2(frame, m.next_hop_mac, port.mac, port.vlan, ethertype);
        pkt.meta_mut().l3_offset = want as u16;
        let l4 = m.l4_offset as usize + want - have;
        pkt.meta_mut().l4_offset = l4 as u16;
        Ok(())
    }

    /// Counts `n` packets a port's TX queue did not take (the caller frees them).
    pub fn tx_rejected(&self, n: usize) {
        self.counters.count_drops(DropReason::TxFull, n as u64);
    }
}
