//! The precomputed site answers what the topology answers; the RX checksum
//! flag; the flow hash classify stores.

use super::super::site::{FastMod, Site};
use super::*;
use crate::packet::flow::FlowHasher;
use crate::topology::{IpPrefix, NatPortRange, Topology};
use std::net::{Ipv4Addr, Ipv6Addr};

/// A topology with only LAN prefixes and gateway addresses.
fn lan_site(prefixes: &[IpPrefix], addrs: &[IpAddr]) -> Topology {
    Topology::new(
        vec![],
        0,
        prefixes.to_vec(),
        addrs.to_vec(),
        vec![],
        NatPortRange {
            first: 1024,
            last: 65535,
        },
        3,
    )
}

fn directed_broadcast(t: &Topology, a: IpAddr) -> bool {
    t.lan_prefixes.iter().any(|pre| {
        let (_, last, w) = pre.range();
        w == 32 && pre.len < 31 && pre.contains(a) && a == IpAddr::V4((last as u32).into())
    })
}

fn v4_prefix() -> impl Strategy<Value = IpPrefix> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, len)| IpPrefix {
        addr: IpAddr::V4(Ipv4Addr::from(a)),
        len,
    })
}

fn v6_prefix() -> impl Strategy<Value = IpPrefix> {
    (any::<u128>(), 0u8..=128).prop_map(|(a, len)| IpPrefix {
        addr: IpAddr::V6(Ipv6Addr::from(a)),
        len,
    })
}

proptest! {
    /// Addresses near the prefixes (their own, their last, one bit off) as
    /// well as arbitrary ones.
    #[test]
    fn site_agrees_with_the_topology(
        p4 in proptest::collection::vec(v4_prefix(), 0..4),
        p6 in proptest::collection::vec(v6_prefix(), 0..3),
        flip in 0u32..128,
        any4 in any::<u32>(),
        any6 in any::<u128>(),
    ) {
        let prefixes: Vec<IpPrefix> = p4.iter().chain(&p6).copied().collect();
        // Gateway addresses inside and (any4) maybe outside the prefixes.
        let mut addrs: Vec<IpAddr> = prefixes.iter().map(|p| p.addr).take(2).collect();
        addrs.push(IpAddr::V4(any4.into()));
        let t = lan_site(&prefixes, &addrs);
        let s = Site::new(&t);
        let mut probes = vec![IpAddr::V4(any4.into()), IpAddr::V6(any6.into())];
        for p in &prefixes {
            let (_, last, w) = p.range();
            probes.push(p.addr);
            match p.addr {
                IpAddr::V4(a) => {
                    probes.push(IpAddr::V4((last as u32).into()));
                    probes.push(IpAddr::V4((u32::from(a) ^ (1 << (flip % 32))).into()));
                }
                IpAddr::V6(a) => {
                    probes.push(IpAddr::V6(last.into()));
                    probes.push(IpAddr::V6((u128::from(a) ^ (1 << flip)).into()));
                }
            }
            prop_assert!(w == 32 || w == 128);
        }
        for a in probes {
            prop_assert_eq!(s.is_lan(a), t.is_lan_source(a), "{}", a);
            prop_assert_eq!(s.is_gateway(a), t.lan_addrs.contains(&a), "{}", a);
            prop_assert_eq!(s.is_directed_broadcast(a), directed_broadcast(&t, a), "{}", a);
            if let IpAddr::V4(v) = a {
                let v = u32::from(v);
                prop_assert_eq!(
                    s.lan_dst_local_v4(v),
                    s.is_directed_broadcast(a) || s.is_gateway(a) || s.is_lan(a),
                    "{}", a
                );
            }
        }
    }

    #[test]
    fn fast_mod_is_the_remainder(x in any::<u32>(), d in 1u32..) {
        prop_assert_eq!(FastMod::new(d).rem(x), x % d);
        for small in 1..=8 {
            prop_assert_eq!(FastMod::new(small).rem(x), x % small);
        }
        prop_assert_eq!(FastMod::new(u32::MAX).rem(x), x % u32::MAX);
    }
}

/// A bad IPv4 header checksum is dropped unless the port says it checked
/// the header (then the hardware dropped the bad ones: DPDK counts them at
/// RX as `ip_checksum_bad`).
#[test]
fn rx_checksum_flag_skips_verification() {
    let c = stage(4);
    let bad = udp4(|f| f[L3 + 10] ^= 0x01);
    assert_eq!(
        run(&c, &bad, LAN_PORT).map(|_| ()),
        Err(DropReason::BadIpv4Checksum)
    );
    let mut b = buf(&bad, LAN_PORT);
    b.meta_mut().rx_ip_checksum_good = true;
    assert_eq!(c.classify(&mut b), Ok(()));
    // The flag vouches for the checksum only: the rest is still checked.
    let mut b = buf(&udp4(|f| f[L3] = 0x44), LAN_PORT);
    b.meta_mut().rx_ip_checksum_good = true;
    assert_eq!(c.classify(&mut b), Err(DropReason::BadIhl));
}

/// Classify stores the keyed hash of the flow it found, with the hasher it
/// was given; 0 for later fragments (their ports come later).
#[test]
fn flow_hash_is_the_keyed_hash_of_the_flow() {
    let mut c = stage(4);
    let b = run(&c, &UDP4_FRAME, LAN_PORT).unwrap();
    let m = b.meta();
    assert_eq!(m.flow_hash, FlowHasher::new(0).hash(&m.flow));
    c.set_flow_hasher(FlowHasher::new(99));
    let b = run(&c, &UDP4_FRAME, LAN_PORT).unwrap();
    assert_eq!(b.meta().flow_hash, FlowHasher::new(99).hash(&b.meta().flow));
    assert_ne!(b.meta().flow_hash, m.flow_hash);
    // A later fragment: offset 8, its datagram's shard, no hash.
    let later = udp4(|f| {
        f[L3 + 6] = 0x00;
        f[L3 + 7] = 0x01;
        fix_ipv4_checksum(f, L3);
    });
    let mut b = buf(&later, LAN_PORT);
    b.meta_mut().flow_hash = 5;
    assert_eq!(c.classify(&mut b), Ok(()));
    assert!(b.meta().frag.is_later());
    assert_eq!(b.meta().flow_hash, 0);
}

/// The sorted NAT addresses answer as the topology's map.
#[test]
fn nat_addresses_agree_with_the_topology() {
    let t = site(4);
    let s = Site::new(&t);
    let mut probes: Vec<u32> = vec![0, 1, u32::MAX, 0xC000_0200, 0xC000_0202];
    for a in t.nat_addr_uplink.keys() {
        if let IpAddr::V4(v) = a {
            probes.push(u32::from(*v));
        }
    }
    assert!(probes.len() > 5, "the test site has IPv4 NAT addresses");
    for a in probes {
        let ip = IpAddr::V4(a.into());
        assert_eq!(
            s.nat_uplink_v4(a),
            t.nat_addr_uplink.get(&ip).copied(),
            "{ip}"
        );
        assert_eq!(s.is_lan_v4(a), t.is_lan_source(ip), "{ip}");
    }
}
