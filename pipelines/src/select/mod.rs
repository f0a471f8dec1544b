//! Uplink selection: which uplink a new outbound connection takes.
//!
//! Two sides share this module.
//!
//! - The **management core** ([`SelectionCore`]) receives [`SelEvent`]s from
//!   the data plane (the answers to SYN race copies with their round-trip
//!   times, and race copies that went unanswered), keeps an RFC 6298
//!   estimator ([`RttEstimator`]) per (destination, uplink) and per uplink,
//!   decides uplink health, and periodically builds an immutable
//!   [`Snapshot`].
//! - The **data plane** ([`Selector`], one per worker lcore) reads the
//!   current `Arc<Snapshot>` to answer "is there a fresh RTT entry for this
//!   destination, and which uplink is best" ([`Selector::cached`], seed 001
//!   [0041]) and to run the RFC 2391 load-sharing algorithms
//!   ([`Selector::pick`], seed 001 [0047]).
//!
//! # Invariants
//! - The data plane never locks and never allocates here: a [`Selector`]
//!   owns its `Arc<Snapshot>` and fixed-size per-uplink arrays; a pick is a
//!   scan of at most [`MAX_UPLINKS`] bits and at most one hash lookup (two
//!   for a cache hit).
//! - Nothing panics on any input: uplink ids beyond the snapshot's uplinks
//!   (or beyond [`MAX_UPLINKS`]) are ignored, all arithmetic saturates or is
//!   done in a wider type, and no time is read (`now` is passed in).
//! - A pick returns only an uplink of its `candidates` mask, and `None` only
//!   when that mask holds no known uplink.
//! - An uplink is healthy iff its link is up and, since its last answer,
//!   its race copies have not failed (silent, or answered with an RST or
//!   ICMP error while another uplink answered) toward `unanswered_limit`
//!   distinct destinations within [`FAILURE_WINDOW`] of each other (seed
//!   001 [0054]; one destination that drops or rejects one ISP's SYNs
//!   never takes that ISP down for everyone).
//! - A cache entry offers only uplinks sampled at or after its `raced_at`
//!   minus the TTL, at most [`RACE_MAX`] of them, each with a smoothed RTT; a
//!   destination without a decided race has no entry. A snapshot holds at
//!   most `cache_capacity` entries.
//!
//! # Where things live
//! - `config.rs`: [`SelectConfig`], the `[selection]` settings.
//! - `rtt.rs`: the RFC 6298 [`RttEstimator`] and the RTT cache's
//!   [`DestKey`] (a destination masked to a prefix) and [`CacheEntry`]
//!   (seed 001 [0041]: "recent enough" results per destination).
//! - `algorithms.rs`: [`Algorithm`] and the RFC 2391 section 3.2
//!   load-sharing algorithms (round robin, least load, least traffic,
//!   weighted least load) plus response time (seed 001 [0047], [0055]).
//! - `mask.rs`: uplink id sets as bit masks and the rotated scan that breaks
//!   ties.
//! - `snapshot.rs`: the read-mostly [`Snapshot`] (with its [`UplinkView`]s)
//!   the data plane reads.
//! - `selector.rs`: the data-plane [`Selector`] (cache hits and picks).
//! - `events.rs`: [`SelEvent`], data plane to management core.
//! - `management.rs`: the management-side [`SelectionCore`]: uplink health (seed
//!   001 [0054]), estimators, snapshots, and [`UplinkSelStats`].
//! - `policy.rs`: which traffic races and how (seed 001 [0043]), the
//!   algorithm for the rest, and the uplinks a new flow may use.

mod algorithms;
mod config;
mod events;
mod management;
mod mask;
pub mod policy;
mod rtt;
mod selector;
mod snapshot;
mod table;

pub use self::algorithms::Algorithm;
pub use self::config::SelectConfig;
pub use self::events::SelEvent;
pub use self::management::{
    AdminState, SelectionCore, UplinkSelStats, FAILED_DESTS, FAILURE_WINDOW,
};
pub use self::rtt::{CacheEntry, DestKey, RttEstimator, RACE_MAX};
pub use self::selector::Selector;
pub use self::snapshot::{Snapshot, UplinkView};
pub use self::table::RttRow;

#[cfg(test)]
mod tests;
