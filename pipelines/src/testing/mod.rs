//! Fixtures for tests, benches and labs (the `testing` cargo feature; the
//! crate's own unit tests have it without the feature): sites, frame
//! builders on top of smoltcp's `Repr` emitters, and checks that read a
//! frame back through smoltcp's checked views.
//!
//! - this file: the stage tests' site ([`site`]), the benches' one-uplink
//!   site ([`one_uplink`]), the test buffer pool;
//! - [`frames`]: well-formed frames from a client or an ISP, any transport;
//! - [`icmp`]: ICMP errors quoting a datagram;
//! - [`raw`]: frames built byte by byte (what tests corrupt on purpose) and
//!   the many-flow UDP frames of the benches;
//! - [`reads`]: reading a frame back and asserting its checksums;
//! - [`bufs`]: the contract checks every buffer pool's tests run;
//! - [`chain`]: classify → replicate → translate, a frame at a time;
//! - [`frag`]: a frame split into IP fragments, and fragments joined back.
//!
//! The site:
//! - port 0 `lan`, untagged, the LAN: 10.0.0.0/16 and fd00::/64, gateway
//!   10.0.0.1 and fd00::1;
//! - port 1 `wan`, untagged, uplink 0 `isp0` with NAT addresses 192.0.2.1
//!   and 2001:db8::1;
//! - port 2 `wan-tagged`, VLAN 100, uplink 1 `isp1` with NAT address
//!   198.51.100.1;
//! - port 3 `spare`, no role.

pub mod bufs;
pub mod chain;
pub mod frag;
pub mod frames;
pub mod fuzz;
pub mod fuzz_seeds;
pub mod icmp;
pub mod raw;
pub mod reads;

pub use frames::*;
pub use icmp::*;
pub use reads::*;

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use crate::packet::buf::{HeapBuf, HeapPool, PacketBuf};
use crate::topology::{IpPrefix, NatPortRange, PortInfo, PortRole, Topology, UplinkInfo};

pub const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const WAN_TAGGED_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const ISP0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xA0];
pub const ISP1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xA1];
pub const TAGGED_VLAN: u16 = 100;

pub const LAN_PORT: u16 = 0;
pub const WAN_PORT: u16 = 1;
pub const WAN_TAGGED_PORT: u16 = 2;
pub const SPARE_PORT: u16 = 3;

pub const NAT4: &str = "192.0.2.1";
pub const NAT6: &str = "2001:db8::1";
pub const NAT4_TAGGED: &str = "198.51.100.1";

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// The site described in the module doc, with NAT ports `nat_ports` split
/// between `shards` shards.
pub fn site_with(nat_ports: NatPortRange, shards: u16) -> Arc<Topology> {
    let port = |name: &str, mac, vlan| PortInfo {
        name: name.into(),
        mac,
        vlan,
        role: PortRole::Unused,
        mtu: crate::topology::DEFAULT_MTU,
    };
    Arc::new(Topology::new(
        vec![
            port("lan", LAN_MAC, None),
            port("wan", WAN_MAC, None),
            port("wan-tagged", WAN_TAGGED_MAC, Some(TAGGED_VLAN)),
            port("spare", [0x02, 0, 0, 0, 0, 0x04], None),
        ],
        LAN_PORT,
        vec![
            "10.0.0.0/16".parse::<IpPrefix>().unwrap(),
            "fd00::/64".parse().unwrap(),
        ],
        vec![ip("10.0.0.1"), ip("fd00::1")],
        vec![
            UplinkInfo {
                name: "isp0".into(),
                port: WAN_PORT,
                nat_addrs: vec![ip(NAT4), ip(NAT6)],
                next_hop_mac: ISP0_MAC,
                next_hop_v4: None,
                next_hop_v6: None,
                weight: 1,
                answer_ping: true,
            },
            UplinkInfo {
                name: "isp1".into(),
                port: WAN_TAGGED_PORT,
                nat_addrs: vec![ip(NAT4_TAGGED)],
                next_hop_mac: ISP1_MAC,
                next_hop_v4: None,
                next_hop_v6: None,
                weight: 1,
                answer_ping: true,
            },
        ],
        nat_ports,
        shards,
    ))
}

/// [`site`] with `edit` applied (port MTUs, `answer_ping`, ICMP limits:
/// fields no derived index depends on).
pub fn site_edited(shards: u16, edit: impl FnOnce(&mut Topology)) -> Arc<Topology> {
    let mut t = (*site(shards)).clone();
    edit(&mut t);
    Arc::new(t)
}

/// The site with NAT ports 1024..=65535.
pub fn site(shards: u16) -> Arc<Topology> {
    site_with(
        NatPortRange {
            first: 1024,
            last: 65535,
        },
        shards,
    )
}

/// One pool for every test of the crate (pools live for the whole process).
pub fn pool() -> &'static HeapPool {
    static POOL: OnceLock<&'static HeapPool> = OnceLock::new();
    POOL.get_or_init(|| HeapPool::new_static(1 << 14))
}

/// A buffer holding `frame`, received on `in_port`.
pub fn buf(frame: &[u8], in_port: u16) -> HeapBuf {
    let mut b = pool().alloc_with(frame).expect("test pool exhausted");
    b.meta_mut().in_port = in_port;
    b
}

/// The benches' site: a LAN port `lan` (10.0.0.0/8, address 10.0.0.1) and
/// one port per uplink (`wan0`, `wan1`, ...; MAC 02:00:00:00:00:02 on);
/// uplink `u` has `nat_addrs` IPv4 addresses 198.51.(100+u).1 on and next
/// hop 02:00:00:00:0u:fe; the full port range split between `shards` shards.
pub fn bench_site(uplinks: u8, nat_addrs: u8, shards: u16) -> Arc<Topology> {
    let port = |name: String, mac: u8| PortInfo {
        name,
        mac: [2, 0, 0, 0, 0, mac],
        vlan: None,
        role: PortRole::Unused,
        mtu: crate::topology::DEFAULT_MTU,
    };
    let mut ports = vec![port("lan".into(), 1)];
    let mut infos = Vec::new();
    for u in 0..uplinks {
        ports.push(port(format!("wan{u}"), 2 + u));
        infos.push(UplinkInfo {
            name: format!("isp{u}"),
            port: u16::from(u) + 1,
            nat_addrs: (1..=nat_addrs)
                .map(|i| IpAddr::V4([198, 51, 100 + u, i].into()))
                .collect(),
            next_hop_mac: [2, 0, 0, 0, u, 0xfe],
            next_hop_v4: None,
            next_hop_v6: None,
            weight: 1,
            answer_ping: true,
        });
    }
    Arc::new(Topology::new(
        ports,
        0,
        vec!["10.0.0.0/8".parse::<IpPrefix>().expect("prefix")],
        vec![ip("10.0.0.1")],
        infos,
        NatPortRange {
            first: 1024,
            last: 65535,
        },
        shards,
    ))
}

/// [`bench_site`] with one uplink.
pub fn one_uplink(nat_addrs: u8, shards: u16) -> Arc<Topology> {
    bench_site(1, nat_addrs, shards)
}
