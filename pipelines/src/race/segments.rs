//! The TCP segments the appliance writes itself: RSTs to losing servers,
//! ACKs that continue a handshake in first-payload mode, and the sequence
//! shift of a first-payload winner.

use std::net::IpAddr;

use crate::packet::buf::{Direction, PacketBuf};
use crate::packet::drop::DropReason;
use crate::packet::flow::proto;
use crate::wire::checksum::{fold, sum, update_bytes};
use crate::wire::tcp::{self, OPT_END, OPT_NOP, OPT_SACK, TCP_ACK};
use crate::wire::{ipv4, ipv6, put_be32, IPV4_MIN_HEADER_LEN, IPV6_HEADER_LEN, TCP_MIN_HEADER_LEN};

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
    let tcp_len = TCP_MIN_HEADER_LEN as u16;
    // The IP header's length and the addresses' share of the TCP
    // pseudo-header sum (RFC 9293 3.1).
    let (ip_len, addr_sum) = match (f.src, f.dst, m.is_ipv6()) {
        (IpAddr::V4(s), IpAddr::V4(t), false) => {
            (IPV4_MIN_HEADER_LEN, sum(&t.octets(), sum(&s.octets(), 0)))
        }
        (IpAddr::V6(s), IpAddr::V6(t), true) => {
            (IPV6_HEADER_LEN, sum(&t.octets(), sum(&s.octets(), 0)))
        }
        _ => return Err(DropReason::NoNatAddress),
    };
    let new_l4 = l3 + ip_len;
    if pkt.data().len() < l4 + TCP_MIN_HEADER_LEN || l4 < new_l4 {
        return Err(DropReason::TruncatedTcp);
    }
    let d = pkt.data_mut();
    let ip = &mut d[l3..new_l4];
    match (f.src, f.dst) {
        (IpAddr::V4(s), IpAddr::V4(t)) => {
            let total = IPV4_MIN_HEADER_LEN as u16 + tcp_len;
            ipv4::write_header(ip, 0, total, 0, 64, proto::TCP, s, t);
        }
        (IpAddr::V6(s), IpAddr::V6(t)) => {
            ipv6::write_header(ip, tcp_len, proto::TCP, 64, &s, &t);
        }
        // Mixed families were refused above.
        _ => return Err(DropReason::NoNatAddress),
    }
    let pseudo = addr_sum + u32::from(proto::TCP) + u32::from(tcp_len);
    let tcp = &mut d[new_l4..new_l4 + TCP_MIN_HEADER_LEN];
    tcp::set_src_port(tcp, f.src_port);
    tcp::set_dst_port(tcp, f.dst_port);
    tcp::set_seq(tcp, seq);
    tcp::set_ack(tcp, ack);
    tcp::set_header_len(tcp, TCP_MIN_HEADER_LEN);
    tcp::set_flags(tcp, flags);
    tcp::set_window(tcp, window);
    tcp::set_checksum(tcp, 0);
    tcp::set_urgent(tcp, 0);
    let c = !fold(sum(tcp, pseudo));
    tcp::set_checksum(tcp, c);
    if !pkt.set_len(new_l4 + TCP_MIN_HEADER_LEN) {
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
    put_be32(tcp, at, new);
    let hc = update_bytes(tcp::checksum(tcp), &old.to_be_bytes(), &new.to_be_bytes());
    tcp::set_checksum(tcp, hc);
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
    if tcp.len() < TCP_MIN_HEADER_LEN {
        return;
    }
    if seq_delta != 0 {
        add_to_field(tcp, tcp::SEQ_OFFSET, seq_delta);
    }
    if ack_delta == 0 {
        return;
    }
    if tcp::flags(tcp) & TCP_ACK != 0 {
        add_to_field(tcp, tcp::ACK_OFFSET, ack_delta);
    }
    // SACK blocks in the options: kind, length, then 4-byte block edges.
    let end = tcp::header_len(tcp).min(tcp.len());
    let mut i = TCP_MIN_HEADER_LEN;
    while i < end {
        match tcp[i] {
            OPT_END => break,
            OPT_NOP => i += 1,
            kind => {
                let Some(&len) = tcp.get(i + 1) else { break };
                let len = usize::from(len);
                if len < 2 || i + len > end {
                    break;
                }
                if kind == OPT_SACK {
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
