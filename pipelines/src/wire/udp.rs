//! UDP header (RFC 768): field offsets and inline accessors. Readers index
//! without checks: call them only on at least [`HEADER_LEN`] bytes.

pub const HEADER_LEN: usize = 8;
pub const SRC_PORT_OFFSET: usize = 0;
pub const DST_PORT_OFFSET: usize = 2;
pub const LEN_OFFSET: usize = 4;
pub const CHECKSUM_OFFSET: usize = 6;

#[inline]
pub fn src_port(udp: &[u8]) -> u16 {
    u16::from_be_bytes([udp[SRC_PORT_OFFSET], udp[SRC_PORT_OFFSET + 1]])
}

#[inline]
pub fn dst_port(udp: &[u8]) -> u16 {
    u16::from_be_bytes([udp[DST_PORT_OFFSET], udp[DST_PORT_OFFSET + 1]])
}

/// The length field (header and payload).
#[inline]
pub fn len(udp: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([udp[LEN_OFFSET], udp[LEN_OFFSET + 1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_agree_with_smoltcp() {
        #[rustfmt::skip]
        let b = [
            0x9c, 0x40, 0x00, 0x35, // source port 40000, destination port 53
            0x00, 0x0c, 0x00, 0x00, // length 12, checksum
            1, 2, 3, 4,             // payload
        ];
        let p = smoltcp::wire::UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(src_port(&b), p.src_port());
        assert_eq!(dst_port(&b), p.dst_port());
        assert_eq!(len(&b), usize::from(p.len()));
    }
}
