//! The keyed hashes and the comparisons of the three session indexes.

use std::net::IpAddr;

use super::ports::next_rand;
use super::session::{to16, Session};
use crate::packet::flow::FlowKey;
use crate::topology::UplinkId;

#[inline]
fn fold(x: u64, y: u64) -> u64 {
    let r = u128::from(x) * u128::from(y);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Seeded hash of two endpoints and a protocol tag (foldhash-style folded
/// multiplies; the multipliers are per-shard secrets).
#[derive(Clone, Copy)]
pub(super) struct Hasher {
    k: [u64; 4],
}

impl Hasher {
    pub(super) fn new(seed: u64) -> Hasher {
        let mut x = seed | 1;
        Hasher {
            k: std::array::from_fn(|_| next_rand(&mut x) | 1),
        }
    }

    #[inline]
    pub(super) fn hash(&self, a: &[u8; 16], ap: u16, b: &[u8; 16], bp: u16, tag: u8) -> u64 {
        let a = u128::from_ne_bytes(*a);
        let b = u128::from_ne_bytes(*b);
        let tail = (u64::from(ap) << 32) | (u64::from(bp) << 16) | u64::from(tag);
        let h = fold(a as u64 ^ self.k[0], (a >> 64) as u64 ^ self.k[1]);
        let h = fold(h ^ b as u64, (b >> 64) as u64 ^ self.k[2]);
        fold(h ^ tail, self.k[3])
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
pub(super) fn in_eq(s: &Session, addrs: &[NatAddr], t: &Tuple) -> bool {
    s.remote == t.src
        && s.remote_port == t.src_port
        && s.nat_port == t.dst_port
        && s.proto == t.proto
        && s.is_v6() == t.v6
        && s.is_live()
        && addrs.get(usize::from(s.nat_addr)).map(|a| a.bytes) == Some(t.dst)
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
