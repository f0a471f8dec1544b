//! What classify asks of the topology for every packet, precomputed once
//! per stage as plain integers: the LAN prefixes as (network, mask) pairs,
//! the LAN gateway addresses, the directed broadcasts of the LAN subnets,
//! and the shard count as a divisor by multiplication. The answers are
//! those of `Topology::is_lan_source`, `lan_addrs.contains` and the modulo
//! they replace (the tests in `tests.rs` compare them); only the cost
//! differs: no `IpAddr` matching per prefix, no 128-bit range arithmetic,
//! no division.

use std::net::IpAddr;

use crate::topology::Topology;

pub(super) struct Site {
    lan_v4: Vec<(u32, u32)>,
    lan_v6: Vec<(u128, u128)>,
    addrs_v4: Vec<u32>,
    addrs_v6: Vec<u128>,
    /// The last address of every IPv4 LAN prefix shorter than /31.
    broadcasts: Vec<u32>,
    /// The IPv4 gateway addresses outside every LAN prefix (usually none):
    /// with `is_lan_v4`, every address a LAN packet may not be sent to
    /// without the general path's look (the directed broadcasts and the
    /// other gateway addresses are inside the prefixes).
    gateways_outside_v4: Vec<u32>,
    /// `Topology::nat_addr_uplink`'s IPv4 addresses, sorted.
    nat_v4: Vec<(u32, u8)>,
    shards: FastMod,
}

/// What the hygiene and direction checks of one packet ask about its
/// addresses, answered once (they used to be asked up to three times).
#[derive(Clone, Copy, Default)]
pub(super) struct Facts {
    /// The flow's source is inside a LAN prefix.
    pub(super) src_lan: bool,
    /// The flow's destination is inside a LAN prefix.
    pub(super) dst_lan: bool,
    /// The flow's destination is one of the LAN gateway addresses.
    pub(super) dst_gateway: bool,
}

impl Site {
    pub(super) fn new(t: &Topology) -> Site {
        let mut s = Site {
            lan_v4: Vec::new(),
            lan_v6: Vec::new(),
            addrs_v4: Vec::new(),
            addrs_v6: Vec::new(),
            broadcasts: Vec::new(),
            nat_v4: Vec::new(),
            gateways_outside_v4: Vec::new(),
            shards: FastMod::new(u32::from(t.shards.max(1))),
        };
        for p in &t.lan_prefixes {
            match p.addr {
                IpAddr::V4(a) => {
                    let len = u32::from(p.len.min(32));
                    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                    s.lan_v4.push((u32::from(a) & mask, mask));
                    if len < 31 {
                        s.broadcasts.push(u32::from(a) | !mask);
                    }
                }
                IpAddr::V6(a) => {
                    let len = u32::from(p.len.min(128));
                    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                    s.lan_v6.push((u128::from(a) & mask, mask));
                }
            }
        }
        for a in &t.lan_addrs {
            match a {
                IpAddr::V4(a) => s.addrs_v4.push(u32::from(*a)),
                IpAddr::V6(a) => s.addrs_v6.push(u128::from(*a)),
            }
        }
        for (a, &u) in &t.nat_addr_uplink {
            if let IpAddr::V4(a) = a {
                s.nat_v4.push((u32::from(*a), u));
            }
        }
        s.nat_v4.sort_unstable();
        s.gateways_outside_v4 = s
            .addrs_v4
            .iter()
            .copied()
            .filter(|&a| !s.is_lan_v4(a))
            .collect();
        s
    }

    /// A LAN packet to `dst` that the fast path leaves to the general one:
    /// `is_directed_broadcast || is_gateway || is_lan` of an IPv4 address
    /// (the same set, by one prefix walk and, usually, an empty list).
    #[inline]
    pub(super) fn lan_dst_local_v4(&self, dst: u32) -> bool {
        let outside = &self.gateways_outside_v4;
        self.is_lan_v4(dst) || (!outside.is_empty() && outside.contains(&dst))
    }

    /// `is_lan` of an IPv4 address.
    #[inline]
    pub(super) fn is_lan_v4(&self, a: u32) -> bool {
        self.lan_v4.iter().any(|&(net, mask)| a & mask == net)
    }

    /// `Topology::nat_addr_uplink.get` of an IPv4 address.
    #[inline]
    pub(super) fn nat_uplink_v4(&self, a: u32) -> Option<u8> {
        let i = self.nat_v4.binary_search_by_key(&a, |&(n, _)| n).ok()?;
        self.nat_v4.get(i).map(|&(_, u)| u)
    }

    /// `Topology::is_lan_source`.
    #[inline]
    pub(super) fn is_lan(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => self.is_lan_v4(u32::from(a)),
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.lan_v6.iter().any(|&(net, mask)| a & mask == net)
            }
        }
    }

    /// `Topology::lan_addrs.contains(&a)`.
    #[inline]
    pub(super) fn is_gateway(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => self.addrs_v4.contains(&u32::from(a)),
            IpAddr::V6(a) => self.addrs_v6.contains(&u128::from(a)),
        }
    }

    /// The directed broadcast address of a LAN subnet.
    #[inline]
    pub(super) fn is_directed_broadcast(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => self.broadcasts.contains(&u32::from(a)),
            IpAddr::V6(_) => false,
        }
    }

    /// The facts of a packet from the LAN with flow source `src` and
    /// destination `dst`.
    #[inline]
    pub(super) fn facts(&self, src: IpAddr, dst: IpAddr) -> Facts {
        Facts {
            src_lan: self.is_lan(src),
            dst_lan: self.is_lan(dst),
            dst_gateway: self.is_gateway(dst),
        }
    }

    /// `hash % shards`.
    #[inline]
    pub(super) fn shard_of(&self, hash: u32) -> u16 {
        self.shards.rem(hash) as u16
    }
}

/// `x % d` for a fixed `d` by two multiplications (Lemire, Kaser and Kurz,
/// "Faster remainder by direct computation", 2019): exact for every 32-bit
/// `x` and `d`.
#[derive(Clone, Copy)]
pub(super) struct FastMod {
    m: u64,
    d: u32,
}

impl FastMod {
    pub(super) fn new(d: u32) -> FastMod {
        let d = d.max(1);
        FastMod {
            m: (u64::MAX / u64::from(d)).wrapping_add(1),
            d,
        }
    }

    #[inline]
    pub(super) fn rem(&self, x: u32) -> u32 {
        let low = self.m.wrapping_mul(u64::from(x));
        ((u128::from(low) * u128::from(self.d)) >> 64) as u32
    }
}
