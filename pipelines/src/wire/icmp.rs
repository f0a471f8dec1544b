//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) header: field offsets, the types
//! the appliance reads, and the ICMPv6 checksum with its pseudo-header.
//! Readers index without checks: call them only on at least
//! [`HEADER_LEN`] bytes.

use std::net::Ipv6Addr;

use super::checksum;

/// Type, code, checksum, and the 4 bytes of rest-of-header (identifier and
/// sequence for echo, unused/MTU/pointer for errors).
pub const HEADER_LEN: usize = 8;
pub const TYPE_OFFSET: usize = 0;
pub const CODE_OFFSET: usize = 1;
pub const CHECKSUM_OFFSET: usize = 2;
pub const IDENT_OFFSET: usize = 4;
/// The transport bytes an error message quotes at least: the first 64 bits
/// of the original datagram's data (RFC 792; RFC 1812 4.3.2.3 and
/// RFC 4443 2.4 allow more).
pub const ERROR_QUOTE_MIN: usize = 8;

pub const V4_ECHO_REPLY: u8 = 0;
pub const V4_ECHO_REQUEST: u8 = 8;
pub const V6_ECHO_REQUEST: u8 = 128;
pub const V6_ECHO_REPLY: u8 = 129;
/// ICMPv6 types of neighbour discovery (RFC 4861): router solicitation to
/// redirect.
pub const V6_NDISC: core::ops::RangeInclusive<u8> = 133..=137;
/// The IPv6 next-header value of ICMPv6.
pub const V6_NEXT_HEADER: u8 = 58;

#[inline]
pub fn kind(icmp: &[u8]) -> u8 {
    icmp[TYPE_OFFSET]
}

#[inline]
pub fn code(icmp: &[u8]) -> u8 {
    icmp[CODE_OFFSET]
}

/// The echo identifier.
#[inline]
pub fn ident(icmp: &[u8]) -> u16 {
    u16::from_be_bytes([icmp[IDENT_OFFSET], icmp[IDENT_OFFSET + 1]])
}

#[inline]
pub fn set_checksum(icmp: &mut [u8], c: u16) {
    icmp[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 2].copy_from_slice(&c.to_be_bytes());
}

/// The ICMPv6 checksum of `body` between `src` and `dst` (RFC 4443 2.3);
/// 0 when `body` carries a correct one.
pub fn v6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, body: &[u8]) -> u16 {
    let mut acc = checksum::sum(&src.octets(), 0);
    acc = checksum::sum(&dst.octets(), acc);
    acc = checksum::sum(&(body.len() as u32).to_be_bytes(), acc);
    acc = checksum::sum(&[0, 0, 0, V6_NEXT_HEADER], acc);
    !checksum::fold(checksum::sum(body, acc))
}
