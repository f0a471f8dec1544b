//! TCP header fields the stages read and write beyond smoltcp's
//! `TcpPacket`: flag bits, and reads of a classified packet (one whose
//! `PacketMeta` offsets classify has checked).

use crate::packet::buf::PacketBuf;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Sequence and acknowledgement numbers of a classified TCP packet.
pub fn tcp_seq_ack<B: PacketBuf>(pkt: &B) -> Option<(u32, u32)> {
    let l4 = usize::from(pkt.meta().l4_offset);
    let d = pkt.data().get(l4 + 4..l4 + 12)?;
    Some((
        u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
        u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
    ))
}

/// Bytes of TCP payload of a classified packet (SYN and FIN not counted).
pub fn tcp_payload_len<B: PacketBuf>(pkt: &B) -> usize {
    let m = pkt.meta();
    let (l3, l4) = (usize::from(m.l3_offset), usize::from(m.l4_offset));
    let d = pkt.data();
    let Some(&off) = d.get(l4 + 12) else {
        return 0;
    };
    let ip_end = if m.is_ipv6() {
        d.get(l3 + 4..l3 + 6).map_or(0, |b| {
            l3 + 40 + usize::from(u16::from_be_bytes([b[0], b[1]]))
        })
    } else {
        d.get(l3 + 2..l3 + 4)
            .map_or(0, |b| l3 + usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    ip_end
        .min(d.len())
        .saturating_sub(l4 + usize::from(off >> 4) * 4)
}
