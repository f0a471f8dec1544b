//! Helpers the integration tests share: frames and captures; `lab` drives
//! the network-namespace lab.
#![allow(dead_code)]

pub mod lab;

use std::path::Path;

use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use pipelines::wire::checksum::{checksum, fold, sum};

/// Ethernet + IPv4 or IPv6 + `l4` (whose checksum field at `csum_at` is
/// filled in, with the pseudo-header unless `icmp4`).
pub fn frame(src: &str, dst: &str, proto: u8, mut l4: Vec<u8>, csum_at: usize) -> Vec<u8> {
    let (src, dst): (std::net::IpAddr, std::net::IpAddr) =
        (src.parse().unwrap(), dst.parse().unwrap());
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 9, 9, 9];
    let (s, d) = match (src, dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            (s.octets().to_vec(), d.octets().to_vec())
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            (s.octets().to_vec(), d.octets().to_vec())
        }
        _ => unreachable!(),
    };
    if proto != 1 {
        let mut pseudo = [s.clone(), d.clone()].concat();
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        let c = !fold(sum(&l4, sum(&pseudo, 0)));
        l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    } else {
        let c = checksum(&l4);
        l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    }
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

pub fn write_capture(path: &Path, frames: &[Vec<u8>]) {
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            std::time::Duration::from_micros(i as u64),
            f.len() as u32,
            f,
        ))
        .unwrap();
    }
}

pub fn read_capture(path: &Path) -> Vec<Vec<u8>> {
    let mut r = PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.unwrap().data.into_owned());
    }
    out
}

/// A UDP header + `payload` (checksum left 0 for [`frame`] to fill).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}
