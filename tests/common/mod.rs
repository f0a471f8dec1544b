//! Helpers the integration tests share: captures (frames come from
//! `pipelines::testing`); `lab` drives
//! the network-namespace lab.
#![allow(dead_code)]

pub mod lab;
pub mod redis;

use std::path::Path;

use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};

#[allow(unused_imports)]
pub use pipelines::testing::raw::{frame, udp_header as udp};

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
    assert_eq!(r.header().datalink, pcap_file::DataLink::ETHERNET);
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.unwrap().data.into_owned());
    }
    out
}
