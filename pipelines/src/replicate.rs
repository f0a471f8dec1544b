//! Stage 2, replicate: gives every outbound packet its uplink.
//!
//! In the full design (seed 001 [0026], [0035]-[0036]) a new outbound TCP SYN
//! with no fresh RTT entry becomes one copy per healthy uplink. Until uplink
//! selection lands, every outbound packet gets exactly one uplink from
//! [`Replicate::select_uplink`], the single function that selection will
//! replace. Inbound packets pass through untouched.

use std::sync::Arc;

use crate::buf::{Direction, PacketBuf};
use crate::burst::Burst;
use crate::counter::StageCounters;
use crate::drop::DropReason;
use crate::flow::FlowKey;
use crate::topology::{Topology, UplinkId};

pub struct Replicate {
    topo: Arc<Topology>,
    /// Bit i set: uplink i is healthy.
    healthy: u64,
    /// Shared with the management core, which only reads.
    pub counters: Arc<StageCounters>,
}

impl Replicate {
    pub fn new(topo: Arc<Topology>) -> Self {
        let n = topo.uplinks.len().min(64);
        let healthy = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        Replicate {
            topo,
            healthy,
            counters: Arc::default(),
        }
    }

    /// Marks uplink `id` healthy or not (from the management core's snapshot).
    pub fn set_healthy(&mut self, id: UplinkId, up: bool) {
        if usize::from(id) < 64 {
            if up {
                self.healthy |= 1 << id;
            } else {
                self.healthy &= !(1 << id);
            }
        }
    }

    /// The uplink for a new outbound flow: the first healthy uplink that has
    /// a NAT address of the flow's IP version (static policy).
    pub fn select_uplink(&self, flow: &FlowKey) -> Option<UplinkId> {
        self.topo
            .uplinks
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < 64 && self.healthy & (1 << i) != 0)
            .find(|(_, u)| {
                u.nat_addrs
                    .iter()
                    .any(|a| a.is_ipv4() == flow.src.is_ipv4())
            })
            .map(|(i, _)| i as UplinkId)
    }

    /// Moves packets from `input` to `output` (until `input` is empty or
    /// `output` is full), setting the uplink of outbound ones.
    pub fn process<B: PacketBuf>(&mut self, input: &mut Burst<B>, output: &mut Burst<B>) {
        let n = input.len().min(output.remaining_capacity());
        for mut pkt in input.drain(..n) {
            self.counters.packets.inc();
            if pkt.meta().direction == Direction::Outbound {
                match self.select_uplink(&pkt.meta().flow) {
                    Some(u) => pkt.meta_mut().uplink = u,
                    None => {
                        self.counters.count_drop(DropReason::NoUplink);
                        continue;
                    }
                }
            }
            output.push(pkt);
        }
    }
}
