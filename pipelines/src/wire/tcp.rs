//! TCP header (RFC 9293): field offsets, flag bits, inline accessors, and
//! reads of a classified packet (one whose `PacketMeta` offsets classify
//! has checked). Header readers index without checks: call them only on at
//! least [`MIN_HEADER_LEN`] bytes.

use crate::packet::buf::PacketBuf;

use super::bytes::be16;
use super::{ipv4, ipv6};

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

pub const MIN_HEADER_LEN: usize = 20;
pub const SRC_PORT_OFFSET: usize = 0;
pub const DST_PORT_OFFSET: usize = 2;
pub const SEQ_OFFSET: usize = 4;
pub const ACK_OFFSET: usize = 8;
pub const DATA_OFF_OFFSET: usize = 12;
pub const FLAGS_OFFSET: usize = 13;
pub const WINDOW_OFFSET: usize = 14;
pub const CHECKSUM_OFFSET: usize = 16;
pub const URGENT_OFFSET: usize = 18;

/// Option kinds (RFC 9293 3.2, RFC 7323, RFC 2018).
pub const OPT_END: u8 = 0;
pub const OPT_NOP: u8 = 1;
pub const OPT_MSS: u8 = 2;
pub const OPT_WSCALE: u8 = 3;
pub const OPT_SACK_PERMITTED: u8 = 4;
pub const OPT_SACK: u8 = 5;
pub const OPT_TIMESTAMP: u8 = 8;

#[inline]
pub fn src_port(tcp: &[u8]) -> u16 {
    u16::from_be_bytes([tcp[SRC_PORT_OFFSET], tcp[SRC_PORT_OFFSET + 1]])
}

#[inline]
pub fn dst_port(tcp: &[u8]) -> u16 {
    u16::from_be_bytes([tcp[DST_PORT_OFFSET], tcp[DST_PORT_OFFSET + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub fn seq(tcp: &[u8]) -> u32 {
    be32(tcp, SEQ_OFFSET)
}

#[inline]
pub fn ack(tcp: &[u8]) -> u32 {
    be32(tcp, ACK_OFFSET)
}

/// Header length in bytes (data offset × 4).
#[inline]
pub fn header_len(tcp: &[u8]) -> usize {
    usize::from(tcp[DATA_OFF_OFFSET] >> 4) * 4
}

#[inline]
pub fn flags(tcp: &[u8]) -> u8 {
    tcp[FLAGS_OFFSET]
}

#[inline]
pub fn window(tcp: &[u8]) -> u16 {
    u16::from_be_bytes([tcp[WINDOW_OFFSET], tcp[WINDOW_OFFSET + 1]])
}

/// The checksum field.
#[inline]
pub fn checksum(tcp: &[u8]) -> u16 {
    u16::from_be_bytes([tcp[CHECKSUM_OFFSET], tcp[CHECKSUM_OFFSET + 1]])
}

#[inline]
pub fn set_src_port(tcp: &mut [u8], port: u16) {
    tcp[SRC_PORT_OFFSET..SRC_PORT_OFFSET + 2].copy_from_slice(&port.to_be_bytes());
}

#[inline]
pub fn set_dst_port(tcp: &mut [u8], port: u16) {
    tcp[DST_PORT_OFFSET..DST_PORT_OFFSET + 2].copy_from_slice(&port.to_be_bytes());
}

#[inline]
pub fn set_seq(tcp: &mut [u8], v: u32) {
    tcp[SEQ_OFFSET..SEQ_OFFSET + 4].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub fn set_ack(tcp: &mut [u8], v: u32) {
    tcp[ACK_OFFSET..ACK_OFFSET + 4].copy_from_slice(&v.to_be_bytes());
}

/// Sets the data offset for a header of `len` bytes (a multiple of 4,
/// options included); the reserved bits are cleared.
#[inline]
pub fn set_header_len(tcp: &mut [u8], len: usize) {
    tcp[DATA_OFF_OFFSET] = data_off_byte(len);
}

#[inline]
pub fn set_flags(tcp: &mut [u8], flags: u8) {
    tcp[FLAGS_OFFSET] = flags;
}

#[inline]
pub fn set_window(tcp: &mut [u8], window: u16) {
    tcp[WINDOW_OFFSET..WINDOW_OFFSET + 2].copy_from_slice(&window.to_be_bytes());
}

#[inline]
pub fn set_checksum(tcp: &mut [u8], c: u16) {
    tcp[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 2].copy_from_slice(&c.to_be_bytes());
}

#[inline]
pub fn set_urgent(tcp: &mut [u8], urgent: u16) {
    tcp[URGENT_OFFSET..URGENT_OFFSET + 2].copy_from_slice(&urgent.to_be_bytes());
}

/// The data offset byte for a header of `len` bytes (a multiple of 4).
#[inline]
pub const fn data_off_byte(len: usize) -> u8 {
    ((len / 4) as u8) << 4
}

/// Sequence and acknowledgement numbers of a classified TCP packet.
pub fn tcp_seq_ack<B: PacketBuf>(pkt: &B) -> Option<(u32, u32)> {
    let l4 = usize::from(pkt.meta().l4_offset);
    let d = pkt.data().get(l4..l4 + ACK_OFFSET + 4)?;
    Some((seq(d), ack(d)))
}

/// Bytes of TCP payload of a classified packet (SYN and FIN not counted).
pub fn tcp_payload_len<B: PacketBuf>(pkt: &B) -> usize {
    let m = pkt.meta();
    let (l3, l4) = (usize::from(m.l3_offset), usize::from(m.l4_offset));
    let d = pkt.data();
    let Some(&off) = d.get(l4 + DATA_OFF_OFFSET) else {
        return 0;
    };
    let ip_end = if m.is_ipv6() {
        be16(d, l3 + ipv6::PAYLOAD_LEN_OFFSET).map_or(0, |n| l3 + ipv6::HEADER_LEN + usize::from(n))
    } else {
        be16(d, l3 + ipv4::TOTAL_LEN_OFFSET).map_or(0, |n| l3 + usize::from(n))
    };
    ip_end
        .min(d.len())
        .saturating_sub(l4 + usize::from(off >> 4) * 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_and_writers_agree_with_smoltcp() {
        let mut b = [0u8; 24];
        set_src_port(&mut b, 40000);
        set_dst_port(&mut b, 80);
        set_seq(&mut b, 0x0102_0304);
        set_ack(&mut b, 0x0a0b_0c0d);
        set_header_len(&mut b, 24);
        set_flags(&mut b, TCP_SYN | TCP_ACK);
        set_window(&mut b, 4096);
        set_checksum(&mut b, 0xbeef);
        set_urgent(&mut b, 7);
        b[20..24].copy_from_slice(&[OPT_MSS, 4, 0x05, 0xb4]);
        let p = smoltcp::wire::TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!((src_port(&b), dst_port(&b)), (40000, 80));
        assert_eq!(checksum(&b), p.checksum());
        assert_eq!(p.urgent_at(), 7);
        assert_eq!((src_port(&b), dst_port(&b)), (p.src_port(), p.dst_port()));
        assert_eq!(seq(&b), p.seq_number().0 as u32);
        assert_eq!(ack(&b), p.ack_number().0 as u32);
        assert_eq!(header_len(&b), usize::from(p.header_len()));
        assert!(p.syn() && p.ack() && !p.fin() && !p.rst());
        assert_eq!(flags(&b), TCP_SYN | TCP_ACK);
        assert_eq!(window(&b), p.window_len());
    }
}
