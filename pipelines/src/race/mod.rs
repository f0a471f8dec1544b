//! SYN races (seed 001 [0026]-[0036]): the per-shard records that tie the
//! copies of one client SYN together, and the TCP segments the appliance
//! writes itself (RSTs to losing servers, ACKs that continue a handshake in
//! first-payload mode).
//!
//! A race has one NAT session per uplink, all with the client's outbound
//! 5-tuple; only one of them holds the outbound index entry (the one the
//! client's later packets must find), the others are reached through the
//! race. The race is decided by the first SYN+ACK (mode 1) or the first
//! payload (mode 2, [0031]-[0033]); the winner keeps the index entry, every
//! other copy becomes a *loser*: kept for the race timeout so that its
//! SYN+ACK can be answered with an RST, then freed.
//!
//! Invariants:
//! - every member slot of a live race names a live session whose `race` is
//!   that race, and a session with `race != NONE` is a member of it;
//! - at most one member is `OUT_INDEXED`;
//! - a race record is freed with its last member, so records never leak.
//!
//! Files: `table` (the race records and replay slots), `decide` (the
//! [`Racer`]: the decisions translate asks for), `segments` (the TCP
//! segments the appliance writes). The NAT shard knows nothing of races: it
//! keeps each session's race tag and reports tagged sessions it removes.

mod decide;
mod segments;
mod table;
#[cfg(test)]
mod tests;

pub use decide::{Ctx, Racer, SendBy};
pub(crate) use segments::reflect_tcp;
pub use table::{Race, RaceTable, REPLAY_MAX, REPLAY_SLOTS};
