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

pub const TCP_URG: u8 = 0x20;

/// Flag combinations a TCP segment may carry (Linux conntrack's
/// `tcp_valid_flags`), over FIN, SYN, RST, ACK and URG (PSH, ECE and CWR
/// ignored): bit `n` set when combination `n` is valid. SYN+FIN, SYN+RST,
/// FIN+RST, no flag at all, FIN or data without ACK are not.
const VALID_FLAGS: u64 = (1 << TCP_SYN)
    | (1 << (TCP_SYN | TCP_URG))
    | (1 << (TCP_SYN | TCP_ACK))
    | (1 << TCP_RST)
    | (1 << (TCP_RST | TCP_ACK))
    | (1 << (TCP_FIN | TCP_ACK))
    | (1 << (TCP_FIN | TCP_ACK | TCP_URG))
    | (1 << TCP_ACK)
    | (1 << (TCP_ACK | TCP_URG));

/// Whether a segment's flags are a valid combination (one shift, one mask).
#[inline]
pub const fn valid_flags(flags: u8) -> bool {
    let f = flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK | TCP_URG);
    (VALID_FLAGS >> f) & 1 != 0
}

/// The window scale option's shift (RFC 7323 2.2) in the options of a TCP
/// header, if any. The walk stops at the end of the header, at End of
/// Option List, and at an option whose length is below 2 or runs past the
/// header: a malformed option list is read as far as it is sound.
#[inline]
pub fn window_scale(tcp: &[u8]) -> Option<u8> {
    let end = header_len(tcp).min(tcp.len());
    let mut i = MIN_HEADER_LEN;
    while i < end {
        match tcp[i] {
            OPT_END => return None,
            OPT_NOP => i += 1,
            kind => {
                let len = usize::from(*tcp.get(i + 1)?);
                if len < 2 || i + len > end {
                    return None;
                }
                if kind == OPT_WSCALE && len == 3 {
                    return Some(tcp[i + 2]);
                }
                i += len;
            }
        }
    }
    None
}

/// What the window tracker reads of a TCP segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Payload bytes.
    pub len: u32,
    /// The window scale option of a SYN (not read on other segments).
    pub wscale: Option<u8>,
}

impl Segment {
    /// The sequence number just past the segment (SYN and FIN count one).
    #[inline]
    pub fn end(&self) -> u32 {
        self.seq
            .wrapping_add(self.len)
            .wrapping_add(u32::from(self.flags & TCP_SYN != 0))
            .wrapping_add(u32::from(self.flags & TCP_FIN != 0))
    }
}

/// The [`Segment`] of a classified TCP packet (`None` if its header is cut
/// short, which classify already refuses).
#[inline]
pub fn tcp_segment<B: PacketBuf>(pkt: &B) -> Option<Segment> {
    let l4 = usize::from(pkt.meta().l4_offset);
    let d = pkt.data().get(l4..)?;
    if d.len() < MIN_HEADER_LEN {
        return None;
    }
    let f = flags(d);
    Some(Segment {
        seq: seq(d),
        ack: ack(d),
        flags: f,
        window: window(d),
        len: tcp_payload_len(pkt) as u32,
        wscale: if f & TCP_SYN != 0 {
            window_scale(d)
        } else {
            None
        },
    })
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

    #[test]
    fn flag_combinations() {
        for ok in [
            TCP_SYN,
            TCP_SYN | TCP_ACK,
            TCP_ACK,
            TCP_ACK | TCP_PSH,
            TCP_FIN | TCP_ACK,
            TCP_FIN | TCP_ACK | TCP_PSH,
            TCP_RST,
            TCP_RST | TCP_ACK,
            TCP_ACK | 0x40 | 0x80,
            TCP_SYN | 0xc0,
        ] {
            assert!(valid_flags(ok), "{ok:#x}");
        }
        for bad in [
            0,
            TCP_PSH,
            TCP_FIN,
            TCP_SYN | TCP_FIN,
            TCP_SYN | TCP_RST,
            TCP_FIN | TCP_RST,
            TCP_FIN | TCP_RST | TCP_ACK,
            TCP_SYN | TCP_FIN | TCP_ACK,
            TCP_SYN | TCP_RST | TCP_ACK,
            TCP_FIN | TCP_PSH,
            TCP_URG,
            0x3f,
        ] {
            assert!(!valid_flags(bad), "{bad:#x}");
        }
    }

    #[test]
    fn window_scale_option_walk() {
        let mut b = [0u8; 40];
        set_header_len(&mut b, 40);
        // MSS, SACK permitted, timestamps, NOP, window scale 7.
        b[20..24].copy_from_slice(&[OPT_MSS, 4, 0x05, 0xb4]);
        b[24..26].copy_from_slice(&[OPT_SACK_PERMITTED, 2]);
        b[26..36].copy_from_slice(&[OPT_TIMESTAMP, 10, 0, 0, 0, 1, 0, 0, 0, 0]);
        b[36..40].copy_from_slice(&[OPT_NOP, OPT_WSCALE, 3, 7]);
        assert_eq!(window_scale(&b), Some(7));
        // A SACK block before it does not disturb the walk.
        let mut c = [0u8; 36];
        set_header_len(&mut c, 36);
        c[20..30].copy_from_slice(&[OPT_SACK, 10, 0, 0, 0, 1, 0, 0, 0, 9]);
        c[30..36].copy_from_slice(&[OPT_NOP, OPT_WSCALE, 3, 14, OPT_END, 0]);
        assert_eq!(window_scale(&c), Some(14));
        // End of list, zero length, running past the header: no option.
        b[36] = OPT_END;
        assert_eq!(window_scale(&b), None);
        b[36..40].copy_from_slice(&[OPT_WSCALE, 0, 0, 0]);
        assert_eq!(window_scale(&b), None);
        b[36..40].copy_from_slice(&[OPT_NOP, OPT_NOP, OPT_WSCALE, 3]);
        assert_eq!(window_scale(&b), None);
        // Data offset past the buffer, any garbage: never a panic.
        let mut g = [0xffu8; 22];
        g[DATA_OFF_OFFSET] = 0xf0;
        let _ = window_scale(&g);
        for x in 0..=255u8 {
            let mut h = [x; 28];
            h[DATA_OFF_OFFSET] = 0x70;
            let _ = window_scale(&h);
        }
    }
}
