//! The TCP segments the appliance writes itself: RSTs to losing servers,
//! ACKs that continue a handshake in first-payload mode, and the sequence
//! shift of a first-payload winner.

use crate::packet::buf::{Direction, PacketBuf};
use crate::packet::drop::DropReason;
use crate::wire::checksum::{fold, sum};

/// Turns a classified TCP packet into a bare segment (no options, no
/// payload) from its receiver back to its sender: addresses and ports
/// swapped, the given sequence, acknowledgement, flags and window. The
/// packet then leaves by the port it came in on, toward `next_hop`.
pub(crate) fn reflect_tcp<B: PacketBuf>(
    pkt: &mut B,
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    next_hop: [u8; 6],
) -> Result<(), DropReason> {
    let m = *pkt.meta();
    let f = m.flow.reversed();
    write_tcp(pkt, &f, flags, seq, ack, window)?;
    let meta = pkt.meta_mut();
    meta.direction = match m.direction {
        Direction::Inbound => Direction::Outbound,
        Direction::Outbound => Direction::Inbound,
        d => d,
    };
    meta.out_port = m.in_port;
    meta.next_hop_mac = next_hop;
    Ok(())
}

/// Rewrites a classified TCP packet of the same IP version as `f` into a
/// bare segment (no options, no payload) for the 5-tuple `f`: TTL 64, both
/// checksums computed in full. Sets `meta.flow`, `l4_offset` and
/// `tcp_flags`; the caller sets where it goes.
pub(crate) fn write_tcp<B: PacketBuf>(
    pkt: &mut B,
    f: &crate::packet::flow::FlowKey,
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
) -> Result<(), DropReason> {
    let m = *pkt.meta();
    let (l3, l4) = (usize::from(m.l3_offset), usize::from(m.l4_offset));
    let v6 = m.is_ipv6();
    let (ip_len, alen, src_at, dst_at) = if v6 { (40, 16, 8, 24) } else { (20, 4, 12, 16) };
    let new_l4 = l3 + ip_len;
    let (src, dst) = match (f.src, f.dst, v6) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d), false) => {
            let mut a = [0u8; 16];
            let mut b = [0u8; 16];
            a[..4].copy_from_slice(&s.octets());
            b[..4].copy_from_slice(&d.octets());
            (a, b)
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d), true) => (s.octets(), d.octets()),
        _ => return Err(DropReason::NoNatAddress),
    };
    if pkt.data().len() < l4 + 20 || l4 < new_l4 {
        return Err(DropReason::TruncatedTcp);
    }
    let d = pkt.data_mut();
    let ip = &mut d[l3..new_l4];
    if v6 {
        ip[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        ip[4..6].copy_from_slice(&20u16.to_be_bytes());
        ip[6] = crate::packet::flow::proto::TCP;
        ip[7] = 64;
    } else {
        ip[..12].copy_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    }
    ip[src_at..src_at + alen].copy_from_slice(&src[..alen]);
    ip[dst_at..dst_at + alen].copy_from_slice(&dst[..alen]);
    if !v6 {
        let c = !fold(sum(ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let tcp = &mut d[new_l4..new_l4 + 20];
    tcp[0..2].copy_from_slice(&f.src_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&f.dst_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    tcp[16..20].copy_from_slice(&[0; 4]);
    let pseudo =
        sum(&dst[..alen], sum(&src[..alen], 0)) + u32::from(crate::packet::flow::proto::TCP) + 20;
    let c = !fold(sum(tcp, pseudo));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    if !pkt.set_len(new_l4 + 20) {
        return Err(DropReason::TruncatedTcp);
    }
    let meta = pkt.meta_mut();
    meta.l4_offset = new_l4 as u16;
    meta.flow = *f;
    meta.tcp_flags = flags;
    Ok(())
}

/// Adds `delta` to the 32-bit field at `at` of a TCP header (`tcp`),
/// updating its checksum incrementally.
fn add_to_field(tcp: &mut [u8], at: usize, delta: u32) {
    let Some(f) = tcp.get(at..at + 4) else {
        return;
    };
    let old = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
    let new = old.wrapping_add(delta);
    tcp[at..at + 4].copy_from_slice(&new.to_be_bytes());
    let hc = u16::from_be_bytes([tcp[16], tcp[17]]);
    let hc = crate::wire::checksum::update_bytes(hc, &old.to_be_bytes(), &new.to_be_bytes());
    tcp[16..18].copy_from_slice(&hc.to_be_bytes());
}

/// Shifts a segment between two sequence spaces (first-payload mode):
/// `ack_delta` is added to the acknowledgement number and to every SACK
/// block edge, `seq_delta` to the sequence number.
pub(crate) fn shift_seq<B: PacketBuf>(pkt: &mut B, seq_delta: u32, ack_delta: u32) {
    let l4 = usize::from(pkt.meta().l4_offset);
    let d = pkt.data_mut();
    let Some(tcp) = d.get_mut(l4..) else {
        return;
    };
    if tcp.len() < 20 {
        return;
    }
    if seq_delta != 0 {
        add_to_field(tcp, 4, seq_delta);
    }
    if ack_delta == 0 {
        return;
    }
    if tcp[13] & crate::wire::tcp::TCP_ACK != 0 {
        add_to_field(tcp, 8, ack_delta);
    }
    // SACK blocks (kind 5) in the options.
    let end = (usize::from(tcp[12] >> 4) * 4).min(tcp.len());
    let mut i = 20;
    while i < end {
        match tcp[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&len) = tcp.get(i + 1) else { break };
                let len = usize::from(len);
                if len < 2 || i + len > end {
                    break;
                }
                if kind == 5 {
                    let mut e = i + 2;
                    while e + 4 <= i + len {
                        add_to_field(tcp, e, ack_delta);
                        e += 4;
                    }
                }
                i += len;
            }
        }
    }
}
