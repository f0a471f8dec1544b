//! What the appliance answers for: which addresses it owns on which port,
//! the MAC it answers with, and what an answer did with a frame.

use std::net::IpAddr;

use crate::packet::drop::DropReason;
use crate::topology::{PortRole, Topology};

/// What [`answer_arp`] / [`answer_nd`] did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The frame was rewritten into the reply; send it back out of the port
    /// it came in on, as is (its L2 header is complete).
    Reply,
    /// Nothing to send (a reply consumed after learning, a request for
    /// someone else): drop it with this reason.
    Consumed(DropReason),
}

/// Whether `a` is one of the appliance's own addresses on `port`.
pub(super) fn owns(topo: &Topology, port: u16, a: IpAddr) -> bool {
    match topo.ports.get(usize::from(port)).map(|p| &p.role) {
        Some(PortRole::Lan) => topo.lan_addrs.contains(&a),
        Some(PortRole::Uplink(ids)) => topo
            .nat_addr_uplink
            .get(&a)
            .is_some_and(|u| ids.contains(u)),
        _ => false,
    }
}

pub(super) fn port_mac(topo: &Topology, port: u16) -> [u8; 6] {
    topo.ports.get(usize::from(port)).map_or([0; 6], |p| p.mac)
}
