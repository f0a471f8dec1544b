//! The IPv4 rewrite in 32-bit words against the general rewrite: the same
//! bytes and the same outcome for every protocol, side and length, and
//! checksums that verify.

use std::net::{IpAddr, Ipv4Addr};

use super::rewrite::{rewrite, rewrite_any, Side};
use crate::packet::buf::PacketBuf;
use crate::packet::flow::proto;
use crate::testing::raw::{frame, udp_header};
use crate::testing::reads::assert_checksums_valid;
use crate::testing::{buf, pool};

fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// A frame of protocol `p` (UDP with checksum 0 when `p` is 0) from
/// 10.x to 203.0.113.x, and its metadata as classify sets it.
fn packet(p: u8, x: &mut u64) -> (Vec<u8>, u8) {
    let (sport, dport) = (next(x) as u16, next(x) as u16);
    let src = format!("10.{}.{}.{}", next(x) as u8, next(x) as u8, next(x) as u8);
    let dst = format!("203.0.113.{}", next(x) as u8);
    let payload: Vec<u8> = (0..next(x) % 40).map(|_| next(x) as u8).collect();
    match p {
        proto::TCP => {
            let mut l4 = vec![0u8; 20];
            l4[0..2].copy_from_slice(&sport.to_be_bytes());
            l4[2..4].copy_from_slice(&dport.to_be_bytes());
            l4[4..8].copy_from_slice(&(next(x) as u32).to_be_bytes());
            l4[12] = 5 << 4;
            l4[13] = 0x10;
            l4[14] = 0xff;
            l4.extend_from_slice(&payload);
            (frame(&src, &dst, p, l4, 16), p)
        }
        proto::ICMP => {
            let mut l4 = vec![8, 0, 0, 0];
            l4.extend_from_slice(&sport.to_be_bytes());
            l4.extend_from_slice(&[0, 1]);
            l4.extend_from_slice(&payload);
            (frame(&src, &dst, p, l4, 2), p)
        }
        _ => {
            let mut f = frame(
                &src,
                &dst,
                proto::UDP,
                udp_header(sport, dport, &payload),
                6,
            );
            if p == 0 {
                f[14 + 20 + 6] = 0;
                f[14 + 20 + 7] = 0;
            }
            (f, proto::UDP)
        }
    }
}

fn meta(b: &mut crate::packet::buf::HeapBuf, p: u8) {
    let m = b.meta_mut();
    m.l3_offset = 14;
    m.l4_offset = 34;
    m.flow.proto = p;
    m.flow.src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    m.flow.dst = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
}

#[test]
fn ipv4_rewrite_equals_the_general_one_and_keeps_checksums_valid() {
    let _ = pool();
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut checked = 0;
    for round in 0..400 {
        let p = [proto::TCP, proto::UDP, 0, proto::ICMP, proto::ICMPV6, 47][round % 6];
        let (f, l4p) = packet(p, &mut x);
        let addr = IpAddr::V4(Ipv4Addr::from(next(&mut x) as u32));
        let port = next(&mut x) as u16;
        let side = if round % 4 < 2 { Side::Src } else { Side::Dst };
        // Whole, and cut anywhere (a hostile length).
        let cut = if round % 3 == 0 {
            f.len()
        } else {
            (next(&mut x) as usize) % (f.len() + 1)
        };
        let (mut a, mut b) = (buf(&f, 0), buf(&f, 0));
        for pkt in [&mut a, &mut b] {
            assert!(pkt.set_len(cut));
            meta(pkt, l4p);
        }
        let ra = rewrite(&mut a, side, addr, port);
        let rb = rewrite_any(&mut b, side, addr, port);
        assert_eq!(
            ra,
            rb,
            "round {round}: protocol {p}, cut {cut} of {}",
            f.len()
        );
        if ra.is_ok() {
            assert_eq!(a.data(), b.data(), "round {round}");
            if cut == f.len() && l4p != proto::ICMPV6 {
                assert_checksums_valid(a.data(), 14);
                checked += 1;
            }
            if p == 0 {
                assert_eq!(&a.data()[40..42], &[0, 0], "UDP without checksum stays so");
            }
        }
    }
    assert!(checked > 50, "{checked}");
}
