//! One NAT shard: the session table a single translate lcore owns (one
//! writer, no locks), its mappings, its NAT port pools and its sweep.
//!
//! # Model
//! A **mapping** binds an inside endpoint (protocol, CA, CP) on one uplink to
//! an outside endpoint (NA, NP). Mapping is endpoint-independent (RFC 4787
//! REQ-1, RFC 5382 REQ-1): while the mapping lives, every flow from (CA, CP)
//! over that uplink leaves as (NA, NP), whatever its remote. UDP and ICMP
//! mappings are also *sticky*: an inside endpoint has at most one, so its
//! later flows stay on the uplink of its first (STUN and peer-to-peer
//! applications depend on that). TCP may hold one mapping per uplink, which
//! the SYN race of seed 001 needs.
//!
//! A **session** is a time-stamped mapping record in the sense of seed 000
//! [72]-[73]: the mapping plus one remote endpoint (SA, SP), the TCP state,
//! a last-seen time and packet and byte counters. It is created by the first
//! packet of a flow, refreshed by every matching packet in either direction
//! and removed when idle past its protocol's timeout; for UDP this is the
//! seed's "artificial UDP session". The sessions of one mapping form a
//! doubly linked chain; the mapping lives while its chain is not empty, and
//! its port returns to the pool when the last session goes.
//!
//! # Memory
//! Sessions live in a slab reserved up front and never reallocated, in two
//! halves at the same slot: the hot half (`Vec<Session>`, one 64-byte cache
//! line: the key a lookup verifies, the translation, time stamp, state and
//! flags) and the cold half (`Vec<SessionCold>`, 40 bytes: counters, the
//! mapping chain, the TCP window tracker), which packets write but never
//! wait for. The two per-packet indexes (outbound and inbound 5-tuple,
//! `bucket`) hold a 16-bit signature and a `u32` slot per entry in 64-byte
//! buckets, allocated whole from `max_sessions` (8 bytes an entry); the key
//! is compared against the hot half, so a lookup touches one bucket and one
//! line of the session it needs, and a burst's lookups run in stages whose
//! misses overlap. 64 + 40 + 2 × 8 = 120 bytes a session. The inside
//! endpoint → mapping head index (per new flow, not per packet) stays a
//! hashbrown `HashTable<u32>`. The outside endpoint → mapping direction
//! needs no hash: each pool keeps the owner of every port of the shard's
//! slice in a flat array. Hashes are keyed per shard with a random seed, so
//! remote hosts cannot aim packets at one bucket.
//!
//! # Invariants (checked by the property tests)
//! - Every live session has exactly one entry in each session index; every
//!   mapping exactly one entry in the mapping index and is the owner of its
//!   port; a port is owned by at most one mapping, and a free port is in its
//!   pool's free stack exactly once.
//! - Translation is a bijection over live sessions: outbound key ↔ inbound
//!   key.
//! - The slab never grows past `max_sessions`, so creation never reallocates.
//!
//! # Races
//! The shard knows nothing of the race records (the `race` module, owned by the
//! translate stage next to its shard). It keeps a session's race tag without
//! reading it, and reports a tagged session it removes (expired, swept or
//! removed) as a [`RaceExit`], which the owner takes after each call.
//!
//! Files: `config`, `session` (the record), `ports` (port pools of the
//! shard's slice), `index` (keyed hashes, key comparisons), `bucket` (the
//! per-packet indexes), `shard` (the
//! table: lookup, refresh, removal), `create`, `sweep`, `counters`, `window`
//! (TCP window tracking).

mod bucket;
#[cfg(test)]
mod bucket_tests;
mod config;
mod counters;
mod create;
mod event;
#[cfg(test)]
mod event_tests;
mod evict;
mod hosts;
mod index;
#[cfg(test)]
mod limits_tests;
mod list;
#[cfg(test)]
mod list_tests;
#[cfg(test)]
mod mapping_tests;
mod ports;
#[cfg(test)]
mod ports_tests;
mod session;
mod shard;
mod sweep;
#[cfg(test)]
mod tests;
mod window;

pub use config::{Filtering, NatConfig, EVICT_AT_PERCENT};
pub use counters::{NatCounters, ServerCounters, TopHost, UplinkCounters, TOP_HOSTS};
pub use create::{Created, ADF_WALK_MAX};
pub use event::{EventKind, EventLog, EventReason, NatEvent, LOG_MAX, NO_UPLINK};
pub use hosts::{HostLimits, TokenBucket};
pub use list::{state_name, Prefix, SessionFilter, SessionInfo, STATE_NAMES};
pub(crate) use session::NONE;
pub use session::{Session, SessionCold, TcpState, NO_SERVER};
pub use shard::{Hint, NatShard, Probe, RaceExit, EVENTS_MAX};
pub use sweep::{SWEEP_MAX, SWEEP_MIN};
