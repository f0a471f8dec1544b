//! IPv4 header (RFC 791): field offsets and inline accessors.
//!
//! Accessors take the datagram from its first byte. The readers index
//! without checks: call them only on at least [`MIN_HEADER_LEN`] bytes
//! (classify checks that first, and so must any other caller).

use std::net::Ipv4Addr;

use super::bytes::be16;

pub const MIN_HEADER_LEN: usize = 20;
pub const VER_IHL_OFFSET: usize = 0;
pub const DSCP_ECN_OFFSET: usize = 1;
pub const TOTAL_LEN_OFFSET: usize = 2;
pub const IDENT_OFFSET: usize = 4;
pub const FLAGS_FRAG_OFFSET: usize = 6;
pub const TTL_OFFSET: usize = 8;
pub const PROTO_OFFSET: usize = 9;
pub const CHECKSUM_OFFSET: usize = 10;
pub const SRC: core::ops::Range<usize> = 12..16;
pub const DST: core::ops::Range<usize> = 16..20;
/// More-fragments bit and fragment offset: non-zero for any fragment.
pub const FRAGMENT_MASK: u16 = 0x3FFF;
/// Fragment offset alone: non-zero for a fragment other than the first.
pub const FRAG_OFFSET_MASK: u16 = 0x1FFF;
pub const FLAG_DF: u16 = 0x4000;

#[inline]
pub fn version(ip: &[u8]) -> u8 {
    ip[VER_IHL_OFFSET] >> 4
}

/// Header length in bytes (IHL × 4).
#[inline]
pub fn header_len(ip: &[u8]) -> usize {
    usize::from(ip[VER_IHL_OFFSET] & 0x0F) * 4
}

#[inline]
pub fn dscp(ip: &[u8]) -> u8 {
    ip[DSCP_ECN_OFFSET] >> 2
}

#[inline]
pub fn total_len(ip: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([
        ip[TOTAL_LEN_OFFSET],
        ip[TOTAL_LEN_OFFSET + 1],
    ]))
}

/// Identification (the datagram a fragment belongs to).
#[inline]
pub fn ident(ip: &[u8]) -> u16 {
    u16::from_be_bytes([ip[IDENT_OFFSET], ip[IDENT_OFFSET + 1]])
}

/// More-fragments flag in [`flags_frag`].
pub const FLAG_MF: u16 = 0x2000;

/// Flags and fragment offset.
#[inline]
pub fn flags_frag(ip: &[u8]) -> u16 {
    u16::from_be_bytes([ip[FLAGS_FRAG_OFFSET], ip[FLAGS_FRAG_OFFSET + 1]])
}

#[inline]
pub fn ttl(ip: &[u8]) -> u8 {
    ip[TTL_OFFSET]
}

#[inline]
pub fn proto(ip: &[u8]) -> u8 {
    ip[PROTO_OFFSET]
}

/// The header checksum field.
#[inline]
pub fn checksum(ip: &[u8]) -> u16 {
    u16::from_be_bytes([ip[CHECKSUM_OFFSET], ip[CHECKSUM_OFFSET + 1]])
}

#[inline]
pub fn src(ip: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])
}

#[inline]
pub fn dst(ip: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])
}

/// The total length, or `None` past the end (a checked read for callers
/// that did not check the header length).
#[inline]
pub fn checked_total_len(ip: &[u8]) -> Option<usize> {
    be16(ip, TOTAL_LEN_OFFSET).map(usize::from)
}

#[inline]
pub fn set_total_len(ip: &mut [u8], len: u16) {
    ip[TOTAL_LEN_OFFSET..TOTAL_LEN_OFFSET + 2].copy_from_slice(&len.to_be_bytes());
}

#[inline]
pub fn set_ttl(ip: &mut [u8], ttl: u8) {
    ip[TTL_OFFSET] = ttl;
}

/// Writes the header checksum field.
#[inline]
pub fn set_checksum(ip: &mut [u8], c: u16) {
    ip[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 2].copy_from_slice(&c.to_be_bytes());
}

/// Recomputes the header checksum over the first [`header_len`] bytes.
pub fn fill_checksum(ip: &mut [u8]) {
    let ihl = header_len(ip);
    set_checksum(ip, 0);
    let c = super::checksum::checksum(&ip[..ihl]);
    set_checksum(ip, c);
}

/// Writes a 20-byte header without options: version 4, IHL 5, TOS `tos`,
/// identification `ident`, DF set, TTL `ttl`, and its checksum.
#[allow(clippy::too_many_arguments)]
pub fn write_header(
    ip: &mut [u8],
    tos: u8,
    total_len: u16,
    ident: u16,
    ttl: u8,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) {
    ip[VER_IHL_OFFSET] = 0x45;
    ip[DSCP_ECN_OFFSET] = tos;
    set_total_len(ip, total_len);
    ip[IDENT_OFFSET..IDENT_OFFSET + 2].copy_from_slice(&ident.to_be_bytes());
    ip[FLAGS_FRAG_OFFSET..FLAGS_FRAG_OFFSET + 2].copy_from_slice(&FLAG_DF.to_be_bytes());
    set_ttl(ip, ttl);
    ip[PROTO_OFFSET] = proto;
    ip[SRC].copy_from_slice(&src.octets());
    ip[DST].copy_from_slice(&dst.octets());
    fill_checksum(ip);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_header_is_what_smoltcp_sees() {
        let mut ip = [0u8; 28];
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(203, 0, 113, 5));
        write_header(&mut ip, 0x28, 28, 7, 64, 17, s, d);
        let p = smoltcp::wire::Ipv4Packet::new_checked(&ip[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.dscp(), 10);
        assert_eq!(dscp(&ip), 10);
        assert_eq!(p.total_len(), 28);
        assert!(p.dont_frag());
        assert_eq!(p.hop_limit(), 64);
        assert_eq!((version(&ip), header_len(&ip), total_len(&ip)), (4, 20, 28));
        assert_eq!((proto(&ip), src(&ip), dst(&ip)), (17, s, d));
        assert_eq!((ttl(&ip), checksum(&ip)), (64, p.checksum()));
        assert_eq!(flags_frag(&ip) & FRAGMENT_MASK, 0);
    }
}
