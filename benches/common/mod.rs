//! What the benches share: a one-uplink site and UDP frames of many flows.

use std::net::IpAddr;
use std::sync::Arc;

use pipelines::topology::{IpPrefix, NatPortRange, PortInfo, PortRole, Topology, UplinkInfo};
use pipelines::{Burst, HeapBuf, HeapPool};

/// A LAN port, a WAN port and one uplink with `nat_addrs` IPv4 addresses,
/// the full port range, `shards` shards.
pub fn topology(nat_addrs: u8, shards: u16) -> Arc<Topology> {
    let port = |name: &str, mac: u8| PortInfo {
        name: name.into(),
        mac: [2, 0, 0, 0, 0, mac],
        vlan: None,
        role: PortRole::Unused,
    };
    Arc::new(Topology::new(
        vec![port("lan", 1), port("wan", 2)],
        0,
        vec!["10.0.0.0/8".parse::<IpPrefix>().unwrap()],
        vec!["10.0.0.1".parse().unwrap()],
        vec![UplinkInfo {
            name: "isp".into(),
            port: 1,
            nat_addrs: (1..=nat_addrs)
                .map(|i| IpAddr::V4([198, 51, 100, i].into()))
                .collect(),
            next_hop_mac: [2, 0, 0, 0, 0, 0xfe],
            next_hop_v4: None,
            next_hop_v6: None,
            weight: 1,
        }],
        NatPortRange {
            first: 1024,
            last: 65535,
        },
        shards,
    ))
}

/// Flows per client address in [`frame`].
pub const PORTS_PER_CLIENT: usize = 1024;

/// An Ethernet/IPv4/UDP frame (valid IPv4 checksum, UDP checksum 0 =
/// "none") of flow `i`: client `i / PORTS_PER_CLIENT` (10.1.0.0 on), port
/// 10000 + i % PORTS_PER_CLIENT, to one of 200 servers.
pub fn frame(i: usize) -> Vec<u8> {
    let c = i / PORTS_PER_CLIENT;
    let src = [10, 1 + (c >> 16) as u8, (c >> 8) as u8, c as u8];
    let mut f = vec![0u8; 14 + 20 + 8 + 18];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 1, 0, 0]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&[203, 0, 113, (i % 200) as u8 + 1]);
    let c = pipelines::wire::checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&(10_000 + (i % PORTS_PER_CLIENT) as u16).to_be_bytes());
    udp[2..4].copy_from_slice(&53u16.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    f
}

/// Fills bursts from templates, in the order `order` gives (a random
/// permutation for the big tables, so neither the templates nor the
/// sessions are walked in memory order).
pub struct Refill {
    pub pool: &'static HeapPool,
    pub templates: Vec<Vec<u8>>,
    pub order: Vec<u32>,
    pub next: usize,
}

impl Refill {
    pub fn new(templates: Vec<Vec<u8>>, shuffle: bool) -> Refill {
        let mut order: Vec<u32> = (0..templates.len() as u32).collect();
        if shuffle {
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            for i in (1..order.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
        }
        Refill {
            pool: HeapPool::new_static(4 * pipelines::BURST_MAX + 64),
            templates,
            order,
            next: 0,
        }
    }

    pub fn refill(&mut self, burst: &mut Burst<HeapBuf>) {
        while !burst.is_full() {
            let t = &self.templates[self.order[self.next % self.order.len()] as usize];
            self.next += 1;
            burst.push(self.pool.alloc_with(t).expect("pool"));
        }
    }
}
