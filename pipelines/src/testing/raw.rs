//! Frames built byte by byte: what tests corrupt on purpose, and the
//! many-flow UDP frames the benches replay.

use std::net::IpAddr;

use crate::wire::checksum::{checksum, fold, sum};

/// Ethernet + IPv4 or IPv6 (after the family of `src`) + `l4`, whose
/// checksum field at `csum_at` is filled in (with the pseudo-header, except
/// for ICMPv4, `proto` 1). IPv4: identification 1, DF, TTL 64.
pub fn frame(src: &str, dst: &str, proto: u8, mut l4: Vec<u8>, csum_at: usize) -> Vec<u8> {
    let (src, dst): (IpAddr, IpAddr) = (super::ip(src), super::ip(dst));
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 9, 9, 9];
    let (s, d) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (s.octets().to_vec(), d.octets().to_vec()),
        (IpAddr::V6(s), IpAddr::V6(d)) => (s.octets().to_vec(), d.octets().to_vec()),
        _ => panic!("{src} and {dst} are of different families"),
    };
    let c = if proto != 1 {
        let mut pseudo = [s.clone(), d.clone()].concat();
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        !fold(sum(&l4, sum(&pseudo, 0)))
    } else {
        checksum(&l4)
    };
    l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    if src.is_ipv4() {
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
        ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&s);
        ip.extend_from_slice(&d);
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
    } else {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend_from_slice(&s);
        f.extend_from_slice(&d);
    }
    f.extend_from_slice(&l4);
    f
}

/// A UDP header + `payload`, checksum left 0 for [`frame`] to fill (at 6).
pub fn udp_header(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

/// Flows per client address in [`udp_flow`].
pub const PORTS_PER_CLIENT: usize = 1024;

/// An Ethernet/IPv4/UDP frame (valid IPv4 checksum, UDP checksum 0 =
/// "none") of flow `i`: client `i / PORTS_PER_CLIENT` (10.1.0.0 on), port
/// 10000 + i % PORTS_PER_CLIENT, to one of 200 servers (203.0.113.1-200).
pub fn udp_flow(i: usize) -> Vec<u8> {
    let c = i / PORTS_PER_CLIENT;
    let src = [10, 1 + (c >> 16) as u8, (c >> 8) as u8, c as u8];
    let mut f = vec![0u8; 14 + 20 + 8 + 18];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 1, 0, 0]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&[203, 0, 113, (i % 200) as u8 + 1]);
    let c = checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&(10_000 + (i % PORTS_PER_CLIENT) as u16).to_be_bytes());
    udp[2..4].copy_from_slice(&53u16.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    f
}

/// Ethernet + IPv4 + a 20-byte TCP header (`flags`, `seq`, `ack`, window
/// 64000), checksums computed; source MAC 02:00:00:09:09:09.
#[allow(clippy::too_many_arguments)]
pub fn tcp4(
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 40];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&[2, 0, 0, 9, 9, 9]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let t = &mut f[34..54];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64_000u16.to_be_bytes());
    let pseudo = sum(&dst, sum(&src, 0)) + 6 + 20;
    let c = !fold(sum(t, pseudo));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    f
}
