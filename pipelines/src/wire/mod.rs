//! Wire formats: one file per header, and every byte offset of a header in
//! its file as a named constant or an inline accessor.
//!
//! - [`ethernet`] (with the 802.1Q tag), [`arp`], [`ipv4`], [`ipv6`],
//!   [`tcp`], [`udp`], [`icmp`] (v4 and v6), [`ndisc`] (IPv6 neighbour
//!   discovery), [`checksum`] (full and incremental).
//!
//! The header readers are plain `#[inline]` functions over byte slices so
//! the per-packet path (classify) pays nothing for them; they index without
//! checks, and each module's doc says how many bytes its caller must have
//! checked first. Off the hot path, and in tests, smoltcp's checked views
//! (`smoltcp::wire`, re-exported here) are used where they fit; the tests
//! of each header file check that what it writes is what smoltcp reads.
//!
//! The names at the root (EtherTypes, header lengths, [`be16`],
//! [`write_l2`], MAC text) are kept for the code that uses them.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod ndisc;
pub mod tcp;
pub mod udp;

pub use smoltcp::wire::{
    ArpPacket, EthernetFrame, Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet, TcpPacket,
    UdpPacket,
};

pub use ethernet::{
    fmt_mac, l2_len, parse_mac, write_l2, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6,
    ETHERTYPE_VLAN, VLAN_TAG_LEN,
};

pub const ETH_HEADER_LEN: usize = ethernet::HEADER_LEN;
pub const IPV4_MIN_HEADER_LEN: usize = ipv4::MIN_HEADER_LEN;
pub const IPV6_HEADER_LEN: usize = ipv6::HEADER_LEN;
pub const TCP_MIN_HEADER_LEN: usize = tcp::MIN_HEADER_LEN;
pub const UDP_HEADER_LEN: usize = udp::HEADER_LEN;
pub const ICMP_HEADER_LEN: usize = icmp::HEADER_LEN;

/// Reads a big-endian u16 at `at`; `None` past the end.
#[inline]
pub fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads a big-endian u32 at `at`; `None` past the end.
#[inline]
pub fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

#[inline]
pub fn put_be16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub fn put_be32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
