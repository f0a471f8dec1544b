//! ARP (RFC 826) and IPv6 neighbour discovery (RFC 4861): the appliance
//! answers for its own addresses and resolves its uplinks' next hops.
//!
//! What it owns:
//! - [`Neighbours`] (`table`): the next hop of every uplink and family, with
//!   the MAC either fixed by the configuration (`next_hop_mac`) or learned
//!   from the wire. It lives beside the [`crate::topology::Topology`] (which is static
//!   configuration and knows nothing of it): whoever builds the topology
//!   builds the one `Arc<Neighbours>` and hands it to classify (which
//!   learns), transmit (which reads) and the solicitor.
//! - [`answer_arp`] (`arp`) and [`answer_nd`] (`ndisc`): turn an ARP
//!   request or a neighbour solicitation for one of the appliance's
//!   addresses on the receiving port into the reply, in place (no
//!   allocation), and offer next hops' MACs they see to the table, which
//!   accepts only answers to the appliance's own requests and, after a
//!   lock time, gratuitous ones (see `table`).
//! - [`Solicitor`] (`solicit`): when to send the next ARP request /
//!   neighbour solicitation for each dynamic next hop (pure: `now` is an
//!   argument), and [`write_request`], which builds one.
//!
//! Which addresses the appliance owns on a port: on the LAN port, the LAN
//! gateway addresses (`lan.addresses`); on an uplink port, every NAT address
//! of the uplinks leaving through it. Frames are hostile: every length is
//! checked, a malformed frame is dropped with a reason, nothing panics.
//! Every byte offset is in [`crate::wire`] (`arp`, `ndisc`, `ipv6`, `icmp`).

mod arp;
mod local;
mod ndisc;
mod solicit;
mod table;

pub use self::arp::answer_arp;
pub use self::local::Answer;
pub use self::ndisc::answer_nd;
pub use self::solicit::{write_request, Solicitor, REQUEST_MAX_LEN};
pub use self::table::{Claim, HopCounters, Neighbours, NextHop, ANSWER_WINDOW, LOCK_TIME};
pub use crate::wire::ethernet::frame_l2;
pub use crate::wire::ndisc::solicited_node;

#[cfg(test)]
mod tests;
