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
//! of the header files check their readers and writers against smoltcp.
//!
//! The names at the root (EtherTypes, header lengths, [`be16`],
//! [`write_l2`], MAC text) are kept for the code that uses them; the
//! big-endian byte helpers live in `bytes`.

pub mod arp;
mod bytes;
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

pub use bytes::{be16, be32, put_be16, put_be32};
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
