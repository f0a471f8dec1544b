//! The keyed hashes and the comparisons of the three session indexes.

use std::net::IpAddr;

use super::config::NatConfig;
use super::session::{to16, Session};
use crate::packet::flow::{FlowHasher, FlowKey};
use crate::topology::UplinkId;

/// What the seed of the session indexes' hash is derived with: keeps it
/// apart from the address pairing's hash (keyed by `seed` itself).
const INDEX_SEED_TWEAK: u64 = 0xD6E8_FEB8_6659_FD93;

impl NatConfig {
    /// The keyed hash of the session indexes, one for classify
    /// (`PacketMeta::flow_hash`, `Classify::set_flow_hasher`) and every
    /// shard of this configuration: secret as `seed` is, so hash flooding
    /// stays impossible, and shared, so translate's burst lookup uses the
    /// hash classify computed instead of hashing the packet again.
    pub fn flow_hasher(&self) -> FlowHasher {
        FlowHasher::new(self.seed.rotate_left(29) ^ INDEX_SEED_TWEAK)
    }
}

/// Seeded hash of two endpoints and a protocol tag: the [`FlowHasher`]
/// arithmetic over the tables' 16-byte form.
#[derive(Clone, Copy)]
pub(super) struct Hasher(FlowHasher);

impl Hasher {
    pub(super) fn new(seed: u64) -> Hasher {
        Hasher(FlowHasher::new(seed))
    }

    pub(super) fn of(h: FlowHasher) -> Hasher {
        Hasher(h)
    }

    #[inline]
    pub(super) fn hash(&self, a: &[u8; 16], ap: u16, b: &[u8; 16], bp: u16, tag: u8) -> u64 {
        self.0.hash_bytes(a, ap, b, bp, tag)
    }
}

/// The parts of a flow key the tables compare, in table form.
#[derive(Clone, Copy)]
pub(super) struct Tuple {
    pub(super) src: [u8; 16],
    pub(super) dst: [u8; 16],
    pub(super) src_port: u16,
    pub(super) dst_port: u16,
    pub(super) proto: u8,
    pub(super) v6: bool,
}

impl Tuple {
    #[inline]
    pub(super) fn of(k: &FlowKey) -> Tuple {
        Tuple {
            src: to16(k.src),
            dst: to16(k.dst),
            src_port: k.src_port,
            dst_port: k.dst_port,
            proto: k.proto,
            v6: k.src.is_ipv6(),
        }
    }

    #[inline]
    pub(super) fn tag(&self) -> u8 {
        self.proto ^ (u8::from(self.v6) << 7)
    }
}

/// A NAT address of the shard.
pub(super) struct NatAddr {
    pub(super) addr: IpAddr,
    pub(super) bytes: [u8; 16],
    pub(super) uplink: UplinkId,
}

#[inline]
pub(super) fn out_eq(s: &Session, t: &Tuple) -> bool {
    s.client == t.src
        && s.remote == t.dst
        && s.client_port == t.src_port
        && s.remote_port == t.dst_port
        && s.proto == t.proto
        && s.is_v6() == t.v6
        && s.is_live()
}

#[inline]
fn addr_is(b: &[u8; 16], v6: bool, a: IpAddr) -> bool {
    match a {
        // A session of the IPv4 family holds its addresses mapped: the
        // first 12 bytes are the mapping prefix.
        IpAddr::V4(a) => !v6 && b[12..] == a.octets(),
        IpAddr::V6(a) => v6 && *b == a.octets(),
    }
}

/// [`out_eq`] against the flow key itself (the per-packet lookups).
#[inline]
pub(super) fn out_eq_key(s: &Session, k: &FlowKey) -> bool {
    s.client_port == k.src_port
        && s.remote_port == k.dst_port
        && s.proto == k.proto
        && s.is_live()
        && addr_is(&s.client, s.is_v6(), k.src)
        && addr_is(&s.remote, s.is_v6(), k.dst)
}

/// Whether `s` is the session of inbound key `k`.
#[inline]
pub(super) fn in_eq_key(s: &Session, addrs: &[NatAddr], k: &FlowKey) -> bool {
    s.remote_port == k.src_port
        && s.nat_port == k.dst_port
        && s.proto == k.proto
        && s.is_live()
        && addr_is(&s.remote, s.is_v6(), k.src)
        && addrs
            .get(usize::from(s.nat_addr))
            .is_some_and(|a| addr_is(&a.bytes, s.is_v6(), k.dst))
}

#[inline]
pub(super) fn tag(s: &Session) -> u8 {
    s.proto ^ (u8::from(s.is_v6()) << 7)
}

#[inline]
pub(super) fn session_out_hash(h: &Hasher, s: &Session) -> u64 {
    h.hash(&s.client, s.client_port, &s.remote, s.remote_port, tag(s))
}

#[inline]
pub(super) fn session_in_hash(h: &Hasher, addrs: &[NatAddr], s: &Session) -> u64 {
    let na = addrs
        .get(usize::from(s.nat_addr))
        .map_or([0; 16], |a| a.bytes);
    h.hash(&s.remote, s.remote_port, &na, s.nat_port, tag(s))
}

#[inline]
pub(super) fn inside_hash(h: &Hasher, client: &[u8; 16], port: u16, tag: u8) -> u64 {
    h.hash(client, port, &[0; 16], 0, tag)
}
