//! Flow keys: the 5-tuple of a packet as it was received, for IPv4 and IPv6.

use std::net::{IpAddr, Ipv4Addr};

/// IP protocol numbers the appliance translates.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// A packet's 5-tuple. For ICMP echo the identifier takes the place of the
/// port on the side that chose it: `src_port` for a request, `dst_port` for
/// a reply, the other port being 0. This lets one NAT table serve all three
/// protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

impl Default for FlowKey {
    fn default() -> Self {
        FlowKey {
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            src_port: 0,
            dst_port: 0,
            proto: 0,
        }
    }
}

impl FlowKey {
    /// The key of the reverse direction.
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
        }
    }

    /// A stable (unseeded) hash of the whole key. It must be the same in
    /// every process and run so that captures replay identically; it is not
    /// a defence against hash flooding (the session tables use seeded hashes
    /// for that).
    #[inline]
    pub fn stable_hash(&self) -> u32 {
        let mut h = HASH_SEED;
        h = mix(h, addr_bits(self.src));
        h = mix(h, addr_bits(self.dst));
        h = mix(
            h,
            (u64::from(self.src_port) << 32)
                | (u64::from(self.dst_port) << 16)
                | u64::from(self.proto),
        );
        finish(h)
    }

    /// A stable hash of the inside endpoint only (protocol, source address,
    /// source port), which picks the NAT shard of an outbound packet. Every
    /// flow of one inside endpoint must land on the same shard, because only
    /// that shard can keep one mapping for all of them (endpoint-independent
    /// mapping, RFC 4787 REQ-1). Stable across runs, as [`Self::stable_hash`].
    #[inline]
    pub fn inside_endpoint_hash(&self) -> u32 {
        endpoint_hash(addr_bits(self.src), self.src_port, self.proto)
    }
}

/// [`FlowKey::inside_endpoint_hash`] of an IPv4 source given as an integer.
#[inline]
pub fn inside_endpoint_hash_v4(src: u32, src_port: u16, protocol: u8) -> u32 {
    endpoint_hash(u64::from(src), src_port, protocol)
}

#[inline]
fn endpoint_hash(addr: u64, port: u16, protocol: u8) -> u32 {
    let h = mix(HASH_SEED, addr);
    finish(mix(h, (u64::from(port) << 16) | u64::from(protocol)))
}

/// The keyed hash of a whole flow key that classify computes once per packet
/// (`PacketMeta::flow_hash`) for the session index of translate to reuse.
///
/// Keyed (foldhash-style folded 64 × 64 → 128-bit multiplies whose
/// multipliers come from the seed), so without the seed no one can aim many
/// flows at one bucket. It is the NAT's own hasher too (`nat::index`, keyed
/// by `NatConfig::flow_hasher`, one secret seed for classify and every
/// shard): the NAT hashes the received tuple the same way (addresses as 16
/// bytes, IPv4 mapped; the protocol with the family in its top bit), so
/// translate's burst lookup takes classify's value instead of hashing again.
#[derive(Clone, Copy, Debug)]
pub struct FlowHasher {
    k: [u64; 4],
}

impl FlowHasher {
    pub fn new(seed: u64) -> FlowHasher {
        let mut x = seed | 1;
        FlowHasher {
            k: std::array::from_fn(|_| xorshift_star(&mut x) | 1),
        }
    }

    /// The hash of `k`: never 0 (`PacketMeta::flow_hash` 0 means "not
    /// computed").
    #[inline]
    pub fn hash(&self, k: &FlowKey) -> u64 {
        let tag = k.proto ^ (u8::from(k.src.is_ipv6()) << 7);
        self.hash_parts(ne128(k.src), k.src_port, ne128(k.dst), k.dst_port, tag)
    }

    /// [`Self::hash`] of an IPv4 flow given as integers.
    #[inline]
    pub fn hash_v4(&self, src: u32, src_port: u16, dst: u32, dst_port: u16, protocol: u8) -> u64 {
        let a = ne128(IpAddr::V4(src.into()));
        let b = ne128(IpAddr::V4(dst.into()));
        self.hash_parts(a, src_port, b, dst_port, protocol)
    }

    /// The hash of two endpoints given as 16-byte addresses (IPv4 mapped)
    /// and a tag (the protocol, the family in its top bit): the form the
    /// NAT's tables keep. `hash(k)` is
    /// `hash_bytes(src16, k.src_port, dst16, k.dst_port, tag)`.
    #[inline]
    pub fn hash_bytes(&self, a: &[u8; 16], ap: u16, b: &[u8; 16], bp: u16, tag: u8) -> u64 {
        self.hash_parts(
            u128::from_ne_bytes(*a),
            ap,
            u128::from_ne_bytes(*b),
            bp,
            tag,
        )
    }

    #[inline]
    fn hash_parts(&self, a: u128, src_port: u16, b: u128, dst_port: u16, tag: u8) -> u64 {
        let tail = (u64::from(src_port) << 32) | (u64::from(dst_port) << 16) | u64::from(tag);
        let h = fold128(a as u64 ^ self.k[0], (a >> 64) as u64 ^ self.k[1]);
        let h = fold128(h ^ b as u64, (b >> 64) as u64 ^ self.k[2]);
        fold128(h ^ tail, self.k[3]).max(1)
    }
}

#[inline]
fn fold128(x: u64, y: u64) -> u64 {
    let r = u128::from(x) * u128::from(y);
    (r as u64) ^ ((r >> 64) as u64)
}

fn xorshift_star(x: &mut u64) -> u64 {
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// `u128::from_ne_bytes` of the address as 16 bytes (IPv4 mapped,
/// `::ffff:a.b.c.d`), without building the bytes for IPv4.
#[inline]
fn ne128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[10] = 0xff;
            b[11] = 0xff;
            b[12..].copy_from_slice(&v4.octets());
            u128::from_ne_bytes(b)
        }
        IpAddr::V6(v6) => u128::from_ne_bytes(v6.octets()),
    }
}

const HASH_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0xFF51_AFD7_ED55_8CCD).rotate_left(29)
}

#[inline]
fn finish(h: u64) -> u32 {
    (h ^ (h >> 32)) as u32
}

#[inline]
fn addr_bits(a: IpAddr) -> u64 {
    match a {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let x = u128::from(v6);
            (x as u64) ^ ((x >> 64) as u64).rotate_left(17)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_spreads() {
        let k = FlowKey {
            src: "10.0.0.1".parse().unwrap(),
            dst: "192.0.2.1".parse().unwrap(),
            src_port: 40000,
            dst_port: 80,
            proto: proto::TCP,
        };
        assert_eq!(k.stable_hash(), k.stable_hash());
        assert_eq!(k.reversed().reversed(), k);
        assert_spreads((0..4000u16).map(|p| {
            FlowKey {
                src_port: 1024 + p,
                ..k
            }
            .stable_hash()
        }));
    }

    /// 4,000 hashes fall about evenly into 4 buckets.
    fn assert_spreads(hashes: impl Iterator<Item = u32>) {
        let mut buckets = [0u32; 4];
        for h in hashes {
            buckets[(h % 4) as usize] += 1;
        }
        assert!(buckets.iter().all(|&b| b > 800), "{buckets:?}");
    }

    #[test]
    fn flow_hasher_is_keyed_and_covers_the_whole_key() {
        let k = FlowKey {
            src: "10.0.0.1".parse().unwrap(),
            dst: "192.0.2.1".parse().unwrap(),
            src_port: 40000,
            dst_port: 80,
            proto: proto::TCP,
        };
        let h = FlowHasher::new(7);
        assert_eq!(h.hash(&k), FlowHasher::new(7).hash(&k));
        assert_ne!(h.hash(&k), FlowHasher::new(8).hash(&k));
        assert_eq!(
            h.hash_v4(0x0A00_0001, 40000, 0xC000_0201, 80, 6),
            h.hash(&k)
        );
        assert_eq!(
            inside_endpoint_hash_v4(0x0A00_0001, 40000, 6),
            k.inside_endpoint_hash()
        );
        // The bytes hashed are the NAT tables' (IPv4 mapped into IPv6).
        for a in ["10.0.0.1", "255.1.2.3", "2001:db8::1"] {
            let a: IpAddr = a.parse().unwrap();
            let mapped = match a {
                IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
                IpAddr::V6(v) => v.octets(),
            };
            assert_eq!(ne128(a), u128::from_ne_bytes(mapped));
        }
        for other in [
            FlowKey {
                src_port: 40001,
                ..k
            },
            FlowKey { dst_port: 81, ..k },
            FlowKey {
                proto: proto::UDP,
                ..k
            },
            FlowKey {
                dst: "192.0.2.2".parse().unwrap(),
                ..k
            },
            FlowKey {
                src: "::ffff:10.0.0.1".parse().unwrap(),
                ..k
            },
            k.reversed(),
        ] {
            assert_ne!(h.hash(&other), h.hash(&k), "{other:?}");
        }
        assert_spreads((0..4000u16).map(|p| h.hash(&FlowKey { src_port: p, ..k }) as u32));
        assert_spreads((0..4000u16).map(|p| (h.hash(&FlowKey { src_port: p, ..k }) >> 40) as u32));
    }

    #[test]
    fn inside_endpoint_hash_ignores_the_remote_end() {
        let k = FlowKey {
            src: "10.0.0.1".parse().unwrap(),
            dst: "192.0.2.1".parse().unwrap(),
            src_port: 40000,
            dst_port: 80,
            proto: proto::TCP,
        };
        let h = k.inside_endpoint_hash();
        for (dst, dst_port) in [("198.51.100.7", 443), ("192.0.2.1", 53), ("10.9.9.9", 0)] {
            let other = FlowKey {
                dst: dst.parse().unwrap(),
                dst_port,
                ..k
            };
            assert_eq!(other.inside_endpoint_hash(), h, "{other:?}");
        }
        // The inside port, address and protocol all count.
        assert_ne!(
            FlowKey {
                src_port: 40001,
                ..k
            }
            .inside_endpoint_hash(),
            h
        );
        assert_ne!(
            FlowKey {
                src: "10.0.0.2".parse().unwrap(),
                ..k
            }
            .inside_endpoint_hash(),
            h
        );
        assert_ne!(
            FlowKey {
                proto: proto::UDP,
                ..k
            }
            .inside_endpoint_hash(),
            h
        );
        // Pinned: the shard of an endpoint must not change between builds,
        // or a replayed capture would translate differently.
        assert_eq!(h, 3_193_299_004);
        assert_spreads((0..4000u16).map(|p| {
            FlowKey {
                src_port: 1024 + p,
                ..k
            }
            .inside_endpoint_hash()
        }));
        assert_spreads((0..4000u32).map(|host| {
            FlowKey {
                src: std::net::Ipv4Addr::from(0x0A00_0000 + host).into(),
                ..k
            }
            .inside_endpoint_hash()
        }));
    }
}
