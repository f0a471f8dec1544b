//! IPv6 fixed header (RFC 8200): field offsets and inline accessors.
//!
//! Readers index without checks: call them only on at least
//! [`HEADER_LEN`] bytes.

use std::net::Ipv6Addr;

pub const HEADER_LEN: usize = 40;
pub const VER_TC_OFFSET: usize = 0;
pub const PAYLOAD_LEN_OFFSET: usize = 4;
pub const NEXT_HEADER_OFFSET: usize = 6;
pub const HOP_LIMIT_OFFSET: usize = 7;
pub const SRC: core::ops::Range<usize> = 8..24;
pub const DST: core::ops::Range<usize> = 24..40;
/// Next-header values that are extension headers the appliance does not walk.
pub const EXT_HEADERS: [u8; 6] = [0, 43, 44, 51, 60, 135];
pub const NEXT_FRAGMENT: u8 = 44;

/// The Fragment extension header (RFC 8200 4.5), read from its first byte:
/// next header, reserved, offset (13 bits, 8-byte units) with 2 reserved
/// bits and M, identification. Readers take at least
/// [`FRAG_HEADER_LEN`] bytes.
pub const FRAG_HEADER_LEN: usize = 8;
const FRAG_OFFSET_M_OFFSET: usize = 2;
const FRAG_ID_OFFSET: usize = 4;

/// The header after the Fragment header.
#[inline]
pub fn frag_next_header(fh: &[u8]) -> u8 {
    fh[0]
}

/// Fragment offset in bytes.
#[inline]
pub fn frag_offset(fh: &[u8]) -> u16 {
    u16::from_be_bytes([fh[FRAG_OFFSET_M_OFFSET], fh[FRAG_OFFSET_M_OFFSET + 1]]) & 0xFFF8
}

/// The M (more fragments) flag.
#[inline]
pub fn frag_more(fh: &[u8]) -> bool {
    fh[FRAG_OFFSET_M_OFFSET + 1] & 1 != 0
}

#[inline]
pub fn frag_id(fh: &[u8]) -> u32 {
    u32::from_be_bytes([
        fh[FRAG_ID_OFFSET],
        fh[FRAG_ID_OFFSET + 1],
        fh[FRAG_ID_OFFSET + 2],
        fh[FRAG_ID_OFFSET + 3],
    ])
}

#[inline]
pub fn version(ip: &[u8]) -> u8 {
    ip[VER_TC_OFFSET] >> 4
}

/// The DSCP (upper six bits of the traffic class).
#[inline]
pub fn dscp(ip: &[u8]) -> u8 {
    ((ip[0] & 0x0F) << 2) | (ip[1] >> 6)
}

#[inline]
pub fn payload_len(ip: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([
        ip[PAYLOAD_LEN_OFFSET],
        ip[PAYLOAD_LEN_OFFSET + 1],
    ]))
}

#[inline]
pub fn next_header(ip: &[u8]) -> u8 {
    ip[NEXT_HEADER_OFFSET]
}

#[inline]
pub fn hop_limit(ip: &[u8]) -> u8 {
    ip[HOP_LIMIT_OFFSET]
}

#[inline]
pub fn addr_at(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

#[inline]
pub fn src(ip: &[u8]) -> Ipv6Addr {
    addr_at(&ip[SRC])
}

#[inline]
pub fn dst(ip: &[u8]) -> Ipv6Addr {
    addr_at(&ip[DST])
}

#[inline]
pub fn set_payload_len(ip: &mut [u8], len: u16) {
    ip[PAYLOAD_LEN_OFFSET..PAYLOAD_LEN_OFFSET + 2].copy_from_slice(&len.to_be_bytes());
}

#[inline]
pub fn set_hop_limit(ip: &mut [u8], hop_limit: u8) {
    ip[HOP_LIMIT_OFFSET] = hop_limit;
}

#[inline]
pub fn set_src(ip: &mut [u8], a: &Ipv6Addr) {
    ip[SRC].copy_from_slice(&a.octets());
}

#[inline]
pub fn set_dst(ip: &mut [u8], a: &Ipv6Addr) {
    ip[DST].copy_from_slice(&a.octets());
}

/// Writes a header with traffic class and flow label 0.
pub fn write_header(
    ip: &mut [u8],
    payload_len: u16,
    next_header: u8,
    hop_limit: u8,
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
) {
    ip[..PAYLOAD_LEN_OFFSET].copy_from_slice(&[0x60, 0, 0, 0]);
    set_payload_len(ip, payload_len);
    ip[NEXT_HEADER_OFFSET] = next_header;
    set_hop_limit(ip, hop_limit);
    set_src(ip, src);
    set_dst(ip, dst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_header_is_what_smoltcp_sees() {
        let mut ip = [0u8; 48];
        let (s, d): (Ipv6Addr, Ipv6Addr) =
            ("fd00::2".parse().unwrap(), "2001:db8::1".parse().unwrap());
        write_header(&mut ip, 8, 17, 255, &s, &d);
        let p = smoltcp::wire::Ipv6Packet::new_checked(&ip[..]).unwrap();
        assert_eq!(p.payload_len(), 8);
        assert_eq!(p.hop_limit(), 255);
        assert_eq!(p.src_addr(), s);
        assert_eq!(p.dst_addr(), d);
        assert_eq!(
            (version(&ip), payload_len(&ip), next_header(&ip)),
            (6, 8, 17)
        );
        assert_eq!(
            (src(&ip), dst(&ip), hop_limit(&ip), dscp(&ip)),
            (s, d, 255, 0)
        );
    }
}
