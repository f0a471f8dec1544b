//! The fast path of classify: the common packet (IPv4 without options, TCP
//! or UDP, not a fragment, on its port's VLAN, addressed to the port's MAC,
//! neither from nor to the appliance's own addresses, TTL above 1, not to a
//! service) classified in one pass over the frame, on integer addresses,
//! each field read once.
//!
//! It only ever accepts: any packet it is not sure of (a check that would
//! fail, any case the general path treats specially) goes to the general
//! path untouched, which then decides it — so every drop and its reason
//! come from the general path alone, and a packet the fast path accepts
//! leaves with exactly the metadata the general path would give it (the
//! differential tests in `tests/fast.rs` compare the two on mutated frames).

use std::net::{IpAddr, Ipv4Addr};

use super::Classify;
use crate::packet::buf::{Direction, PacketBuf};
use crate::packet::flow::{inside_endpoint_hash_v4, proto, FlowKey};
use crate::topology::{PortInfo, PortRole};
use crate::wire::ethernet::{ETHERTYPE_IPV4, ETHERTYPE_VLAN, VLAN_ID_MASK};
use crate::wire::{checksum, ipv4, tcp, udp};

/// An IPv4 5-tuple as integers.
struct V4Key {
    src: u32,
    dst: u32,
    src_port: u16,
    dst_port: u16,
    proto: u8,
}

/// What the fast path decided, written to the metadata by `classify_fast`.
struct Verdict {
    direction: Direction,
    uplink: u8,
    shard: u16,
}

#[inline]
fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

/// `stages::local::icmp::is_special` of an IPv4 address, on its integer:
/// multicast, limited broadcast, loopback, link-local, 0.0.0.0/8.
#[inline]
fn special_v4(a: u32) -> bool {
    let top = a >> 24;
    a >> 28 == 0xE || a == u32::MAX || top == 127 || a >> 16 == 0xA9FE || top == 0
}

/// The martian sources of an uplink packet that need no table: multicast,
/// limited broadcast, loopback, 0.0.0.0/8.
#[inline]
fn bad_source_v4(a: u32) -> bool {
    let top = a >> 24;
    a >> 28 == 0xE || a == u32::MAX || top == 127 || top == 0
}

impl Classify {
    /// Classifies `pkt` if it is a common packet; false (and nothing
    /// changed) otherwise.
    #[inline]
    pub(super) fn classify_fast<B: PacketBuf>(&self, pkt: &mut B) -> bool {
        let in_port = pkt.meta().in_port;
        let csum_good = pkt.meta().rx_ip_checksum_good;
        let Some(port) = self.topo.ports.get(usize::from(in_port)) else {
            return false;
        };
        let d = pkt.data();
        let l3 = match port.vlan {
            None if d.len() >= 14 && be16(d, 12) == ETHERTYPE_IPV4 => 14,
            // VLAN id 0 is no VLAN (`hygiene::vlan_of`): the general path.
            Some(v)
                if v != 0
                    && d.len() >= 18
                    && be16(d, 12) == ETHERTYPE_VLAN
                    && be16(d, 14) & VLAN_ID_MASK == v
                    && be16(d, 16) == ETHERTYPE_IPV4 =>
            {
                18
            }
            _ => return false,
        };
        if d.first_chunk::<6>() != Some(&port.mac) {
            return false;
        }
        let Some(ip) = d.get(l3..) else {
            return false;
        };
        let Some(h) = ip.first_chunk::<20>() else {
            return false;
        };
        // Version 4, no options; the datagram whole in the frame.
        let total = usize::from(be16(h, ipv4::TOTAL_LEN_OFFSET));
        if h[0] != 0x45 || total < 20 || total > ip.len() {
            return false;
        }
        if !csum_good && !checksum::is_valid_20(h) {
            return false;
        }
        if be16(h, ipv4::FLAGS_FRAG_OFFSET) & ipv4::FRAGMENT_MASK != 0 {
            return false;
        }
        let l4 = &ip[20..total];
        let protocol = h[ipv4::PROTO_OFFSET];
        let tcp_flags = match protocol {
            proto::TCP if l4.len() >= tcp::MIN_HEADER_LEN => {
                let doff = tcp::header_len(l4);
                if doff < tcp::MIN_HEADER_LEN || doff > l4.len() {
                    return false;
                }
                tcp::flags(l4)
            }
            proto::UDP if l4.len() >= udp::HEADER_LEN => {
                let ulen = udp::len(l4);
                if ulen < udp::HEADER_LEN || ulen > l4.len() {
                    return false;
                }
                0
            }
            _ => return false,
        };
        let k = V4Key {
            src: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
            dst: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
            // Ports sit at the same offsets in TCP and UDP.
            src_port: be16(l4, 0),
            dst_port: be16(l4, 2),
            proto: protocol,
        };
        let Some(v) = self.fast_direction(port, in_port, &k, h[ipv4::TTL_OFFSET]) else {
            return false;
        };
        let flow = FlowKey {
            src: IpAddr::V4(Ipv4Addr::from(k.src)),
            dst: IpAddr::V4(Ipv4Addr::from(k.dst)),
            src_port: k.src_port,
            dst_port: k.dst_port,
            proto: k.proto,
        };
        if let Some(s) = &self.services {
            if s.classify(&flow, v.direction == Direction::Outbound, self.topo.shards)
                .is_some()
            {
                return false;
            }
        }
        let flow_hash = self
            .hasher
            .hash_v4(k.src, k.src_port, k.dst, k.dst_port, k.proto);
        pkt.set_len(l3 + total);
        let m = pkt.meta_mut();
        m.vlan = port.vlan;
        m.l3_offset = l3 as u16;
        m.l4_offset = (l3 + 20) as u16;
        m.flow = flow;
        m.tcp_flags = tcp_flags;
        m.inner_l3 = 0;
        m.inner_l4 = 0;
        m.direction = v.direction;
        m.uplink = v.uplink;
        m.shard = v.shard;
        m.service = 0;
        m.dscp = 0;
        m.flow_hash = flow_hash;
        true
    }

    /// The hygiene and direction of the general path, for the cases that
    /// pass them with nothing to answer: `None` for every other.
    #[inline(always)]
    fn fast_direction(&self, port: &PortInfo, in_port: u16, k: &V4Key, ttl: u8) -> Option<Verdict> {
        let s = &self.site;
        match &port.role {
            PortRole::Lan => {
                // Martian destination, to the gateway (answered or
                // `local_destination`), spoofed, TTL running out, to the LAN.
                if special_v4(k.dst) || s.lan_dst_local_v4(k.dst) || !s.is_lan_v4(k.src) || ttl <= 1
                {
                    return None;
                }
                let h = inside_endpoint_hash_v4(k.src, k.src_port, k.proto);
                Some(Verdict {
                    direction: Direction::Outbound,
                    uplink: 0,
                    shard: s.shard_of(h),
                })
            }
            PortRole::Uplink(ids) => {
                if bad_source_v4(k.src) || s.is_lan_v4(k.src) || s.nat_uplink_v4(k.src).is_some() {
                    return None;
                }
                let uplink = s.nat_uplink_v4(k.dst)?;
                if !ids.contains(&uplink) {
                    return None;
                }
                // The general path checks the TTL of packets to the port's
                // own NAT addresses (it may answer time exceeded).
                let own = self
                    .topo
                    .uplinks
                    .get(usize::from(uplink))
                    .is_some_and(|u| u.port == in_port);
                if own && ttl <= 1 {
                    return None;
                }
                Some(Verdict {
                    direction: Direction::Inbound,
                    uplink,
                    shard: self.topo.shard_of_nat_port(k.dst_port)?,
                })
            }
            PortRole::Unused => None,
        }
    }
}
