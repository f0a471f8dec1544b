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

pub mod frag;
pub mod nat;
pub mod neighbour;
pub mod packet;
pub mod race;
pub mod redirect;
pub mod select;
pub mod stages;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod topology;
pub mod wire;

pub use packet::buf::{BufPool, Direction, HeapBuf, HeapPool, PacketBuf, PacketMeta};
pub use packet::burst::{Burst, BURST_MAX};
pub use packet::counter::{Counter, StageCounters};
pub use packet::drop::DropReason;
pub use packet::flow::FlowKey;
pub use packet::time::Nanos;
pub use topology::{Topology, UplinkId};
