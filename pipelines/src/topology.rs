//! The site as the stages see it: ports and their roles, the LAN, the
//! uplinks with their NAT addresses, and how NAT ports are split between
//! shards. Built once by the runtime from the validated plan; read-only
//! afterwards and shared by every stage instance. Static configuration
//! only: the next hops' learned MACs live beside it, in
//! `neighbour::Neighbours`, built by whoever builds the topology.

use hashbrown::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Index of an uplink in [`Topology::uplinks`].
pub type UplinkId = u8;

/// Most uplinks a site may have (uplink health and races use 64-bit sets).
pub const MAX_UPLINKS: usize = 64;
/// `PacketMeta::uplink` of an outbound packet whose uplink translate picks
/// when (and only when) the packet opens a new session.
pub const UPLINK_AUTO: UplinkId = UplinkId::MAX;

/// An IP prefix (address and length), IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl IpPrefix {
    fn bits(a: IpAddr) -> (u128, u8) {
        match a {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    }

    /// The prefix as a `[first, last]` range of integers and the family width.
    pub fn range(&self) -> (u128, u128, u8) {
        let (a, w) = Self::bits(self.addr);
        let host_bits = u32::from(w - self.len.min(w));
        let mask: u128 = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        (a & !mask, a | mask, w)
    }

    /// True if `a` is inside the prefix. On the per-packet path: one XOR
    /// and one shift, no 128-bit range arithmetic.
    #[inline]
    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(p), IpAddr::V4(x)) => {
                let len = u32::from(self.len.min(32));
                len == 0 || (u32::from(p) ^ u32::from(x)) >> (32 - len) == 0
            }
            (IpAddr::V6(p), IpAddr::V6(x)) => {
                let len = u32::from(self.len.min(128));
                len == 0 || (u128::from(p) ^ u128::from(x)) >> (128 - len) == 0
            }
            _ => false,
        }
    }

    pub fn overlaps(&self, other: &IpPrefix) -> bool {
        let (a0, a1, aw) = self.range();
        let (b0, b1, bw) = other.range();
        aw == bw && a0 <= b1 && b0 <= a1
    }
}

impl std::fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl std::str::FromStr for IpPrefix {
    type Err = String;

    /// Parses `ADDR/LEN` or a bare address (a host prefix).
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| {
            format!("`{s}` is not an IP address or prefix (e.g. 192.0.2.0/24, 2001:db8::/64)")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0..={max}"))?,
        };
        Ok(IpPrefix { addr, len })
    }
}

/// What a port is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRole {
    /// The LAN side: clients behind the appliance.
    Lan,
    /// Carries these uplinks.
    Uplink(Vec<UplinkId>),
    /// Declared but unused.
    Unused,
}

#[derive(Clone, Debug)]
pub struct PortInfo {
    pub name: String,
    pub mac: [u8; 6],
    /// 802.1Q VLAN id frames carry on this port, if tagged.
    pub vlan: Option<u16>,
    pub role: PortRole,
    /// Largest IP datagram the port sends (its MTU): bigger packets are
    /// fragmented (IPv4 without DF) or answered with ICMP fragmentation
    /// needed / packet too big.
    pub mtu: u16,
}

/// The default port MTU (Ethernet).
pub const DEFAULT_MTU: u16 = 1500;

/// The rate limit of ICMP the appliance originates: a token bucket per
/// destination (`rate_per_second`, `burst`), at most `max_destinations`
/// of them per stage instance; a destination that finds the table full
/// shares one global bucket (`global_per_second`, burst `burst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpLimits {
    pub rate_per_second: u32,
    pub burst: u32,
    pub max_destinations: usize,
    pub global_per_second: u32,
}

impl Default for IcmpLimits {
    fn default() -> Self {
        IcmpLimits {
            rate_per_second: 10,
            burst: 10,
            max_destinations: 1024,
            global_per_second: 1000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct UplinkInfo {
    pub name: String,
    pub port: u16,
    /// Source-NAT addresses of this uplink, IPv4 and IPv6.
    pub nat_addrs: Vec<IpAddr>,
    /// MAC of the uplink's next hop (the ISP router), fixed by the
    /// configuration; all zeros when it is resolved on the wire from
    /// `next_hop_v4` / `next_hop_v6` (see `neighbour`).
    pub next_hop_mac: [u8; 6],
    /// The next hop's addresses, resolved by ARP / neighbour discovery when
    /// `next_hop_mac` is not given.
    pub next_hop_v4: Option<Ipv4Addr>,
    pub next_hop_v6: Option<Ipv6Addr>,
    pub weight: u32,
    /// Whether echo requests to the uplink's NAT addresses are answered.
    pub answer_ping: bool,
}

/// The inclusive range of NAT ports, split into equal contiguous slices, one
/// per shard: a returning packet's destination port names its shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatPortRange {
    pub first: u16,
    pub last: u16,
}

#[derive(Clone, Debug)]
pub struct Topology {
    pub ports: Vec<PortInfo>,
    pub lan_port: u16,
    /// Inside prefixes: a LAN packet whose source is elsewhere is spoofed.
    pub lan_prefixes: Vec<IpPrefix>,
    /// The appliance's own addresses on the LAN (gateway).
    pub lan_addrs: Vec<IpAddr>,
    pub uplinks: Vec<UplinkInfo>,
    /// Every NAT address → its uplink.
    pub nat_addr_uplink: HashMap<IpAddr, UplinkId>,
    pub nat_ports: NatPortRange,
    pub shards: u16,
    /// The rate limit of ICMP the appliance originates (defaults unless the
    /// builder sets it after [`Topology::new`]).
    pub icmp: IcmpLimits,
}

impl Topology {
    /// Builds the derived indexes. `uplinks[i].port` and `lan_port` must be
    /// valid indexes into `ports` (the config validation guarantees it).
    pub fn new(
        mut ports: Vec<PortInfo>,
        lan_port: u16,
        lan_prefixes: Vec<IpPrefix>,
        lan_addrs: Vec<IpAddr>,
        uplinks: Vec<UplinkInfo>,
        nat_ports: NatPortRange,
        shards: u16,
    ) -> Topology {
        let mut nat_addr_uplink = HashMap::new();
        for p in ports.iter_mut() {
            p.role = PortRole::Unused;
        }
        if let Some(p) = ports.get_mut(lan_port as usize) {
            p.role = PortRole::Lan;
        }
        for (i, u) in uplinks.iter().enumerate() {
            let id = i as UplinkId;
            for a in &u.nat_addrs {
                nat_addr_uplink.insert(*a, id);
            }
            if let Some(p) = ports.get_mut(u.port as usize) {
                match &mut p.role {
                    PortRole::Uplink(ids) => ids.push(id),
                    r => *r = PortRole::Uplink(vec![id]),
                }
            }
        }
        Topology {
            ports,
            lan_port,
            lan_prefixes,
            lan_addrs,
            uplinks,
            nat_addr_uplink,
            nat_ports,
            shards: shards.max(1),
            icmp: IcmpLimits::default(),
        }
    }

    fn slice_len(&self) -> u32 {
        let n = u32::from(self.nat_ports.last) - u32::from(self.nat_ports.first) + 1;
        n.div_ceil(u32::from(self.shards))
    }

    /// The shard owning NAT port `port`, or `None` outside the range.
    #[inline]
    pub fn shard_of_nat_port(&self, port: u16) -> Option<u16> {
        if port < self.nat_ports.first || port > self.nat_ports.last {
            return None;
        }
        Some(((u32::from(port) - u32::from(self.nat_ports.first)) / self.slice_len()) as u16)
    }

    /// The inclusive NAT port slice owned by `shard`.
    pub fn shard_ports(&self, shard: u16) -> NatPortRange {
        let len = self.slice_len();
        let first = u32::from(self.nat_ports.first) + u32::from(shard) * len;
        let last = (first + len - 1).min(u32::from(self.nat_ports.last));
        NatPortRange {
            first: first as u16,
            last: last as u16,
        }
    }

    pub fn is_lan_source(&self, a: IpAddr) -> bool {
        self.lan_prefixes.iter().any(|p| p.contains(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_contain_overlap() {
        let p: IpPrefix = "10.0.0.0/16".parse().unwrap();
        assert!(p.contains("10.0.255.1".parse().unwrap()));
        assert!(!p.contains("10.1.0.1".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        let q: IpPrefix = "10.0.3.4".parse().unwrap();
        assert_eq!(q.len, 32);
        assert!(p.overlaps(&q) && q.overlaps(&p));
        assert!(!p.overlaps(&"10.1.0.0/16".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpPrefix>().is_err());
        assert!("2001:db8::/129".parse::<IpPrefix>().is_err());
        let all: IpPrefix = "::/0".parse().unwrap();
        assert!(all.contains("2001:db8::1".parse().unwrap()));
    }

    proptest::proptest! {
        #[test]
        fn contains_agrees_with_the_range(p in proptest::prelude::any::<u32>(), x in proptest::prelude::any::<u32>(), len in 0u8..=32) {
            let pre = IpPrefix { addr: IpAddr::V4(p.into()), len };
            let (first, last, _) = pre.range();
            let v = u128::from(x);
            proptest::prop_assert_eq!(pre.contains(IpAddr::V4(x.into())), v >= first && v <= last);
        }
    }

    #[test]
    fn shard_slices_partition_the_range() {
        let t = Topology::new(
            vec![],
            0,
            vec![],
            vec![],
            vec![],
            NatPortRange {
                first: 1024,
                last: 65535,
            },
            3,
        );
        let mut next = 1024u32;
        for s in 0..3 {
            let r = t.shard_ports(s);
            assert_eq!(u32::from(r.first), next);
            for p in [r.first, r.last] {
                assert_eq!(t.shard_of_nat_port(p), Some(s));
            }
            next = u32::from(r.last) + 1;
        }
        assert_eq!(next, 65536);
        assert_eq!(t.shard_of_nat_port(1023), None);
    }
}
