//! Pure packet logic of the appliance.
//!
//! This crate owns everything that decides what happens to a packet: checked
//! wire views, flow keys, the fixed-capacity [`Burst`], the [`DropReason`]
//! counters, and the four stages of the packet path ([`classify`],
//! [`replicate`], [`translate`], [`transmit`]) together with the NAT shard the
//! translate stage owns.
//!
//! Invariants every module keeps:
//! - no threads, no sockets, no clock reads: every function that needs time
//!   takes `now` ([`Nanos`]) as an argument;
//! - no allocation per packet or per burst on the forwarding path (tables grow
//!   only up to their configured capacity, which is reserved up front);
//! - any byte sequence handed to a stage is either forwarded or dropped with a
//!   [`DropReason`] counted; nothing on the packet path panics on input.
#![deny(unsafe_code)]

pub mod buf;
pub mod burst;
pub mod checksum;
pub mod classify;
pub mod counter;
pub mod drop;
pub mod flow;
pub mod icmp_error;
pub mod nat;
pub mod neighbour;
pub mod race;
pub mod redirect;
pub mod replicate;
pub mod select;
#[cfg(test)]
mod test_frames;
pub mod time;
pub mod topology;
pub mod translate;
pub mod transmit;
pub mod wire;

pub use buf::{BufPool, Direction, HeapBuf, HeapPool, PacketBuf, PacketMeta};
pub use burst::{Burst, BURST_MAX};
pub use counter::{Counter, StageCounters};
pub use drop::DropReason;
pub use flow::FlowKey;
pub use time::Nanos;
pub use topology::{Topology, UplinkId};
