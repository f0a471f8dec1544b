//! The fast path against the general one: on frames it takes and frames one
//! byte away from them, `classify` (fast, then general) and the general
//! path alone give the same verdict, the same metadata and the same frame.

use super::*;
use crate::redirect::service::ServiceMap;
use std::sync::Arc;

/// Frames the fast path takes (and, mutated, frames it must leave alone),
/// with the port each is received on.
fn common_frames() -> Vec<(Vec<u8>, u16)> {
    let tagged = |src: &str, dst: &str, l4: &L4| {
        ethernet(
            WAN_TAGGED_MAC,
            ISP1_MAC,
            Some(TAGGED_VLAN),
            0x0800,
            &ip_packet(ip(src), ip(dst), 64, l4),
        )
    };
    vec![
        (UDP4_FRAME.to_vec(), LAN_PORT),
        (
            from_client("10.0.3.4", "198.18.0.9", tcp(40001, 443, TcpControl::Syn)),
            LAN_PORT,
        ),
        (
            from_client("10.0.0.9", "10.0.255.255", udp(5, 6, b"b")),
            LAN_PORT,
        ),
        (
            from_isp("203.0.113.5", NAT4, udp(53, 40000, b"answer")),
            WAN_PORT,
        ),
        (
            from_isp("203.0.113.5", NAT4, tcp(443, 2000, TcpControl::None)),
            WAN_PORT,
        ),
        (
            tagged("203.0.113.5", NAT4_TAGGED, &udp(53, 4000, b"x")),
            WAN_TAGGED_PORT,
        ),
        (
            from_client("fd00::2", "2001:db8:ffff::5", udp(5353, 53, b"q")),
            LAN_PORT,
        ),
    ]
}

/// Runs `frame` through both paths and compares everything they leave.
fn same(c: &Classify, frame: &[u8], in_port: u16, good: bool) -> Result<(), TestCaseError> {
    let (mut a, mut b) = (buf(frame, in_port), buf(frame, in_port));
    a.meta_mut().rx_ip_checksum_good = good;
    b.meta_mut().rx_ip_checksum_good = good;
    let ra = c.classify(&mut a);
    let rb = c.classify_general(&mut b);
    prop_assert_eq!(ra, rb);
    prop_assert_eq!(format!("{:?}", a.meta()), format!("{:?}", b.meta()));
    prop_assert_eq!(a.data(), b.data());
    Ok(())
}

#[test]
fn the_fast_path_takes_the_common_packets() {
    let c = stage(4);
    for (i, (f, port)) in common_frames().into_iter().enumerate() {
        let mut b = buf(&f, port);
        // The directed broadcast (2) and IPv6 (6) are the general path's.
        assert_eq!(c.classify_fast(&mut b), i != 2 && i != 6, "frame {i}");
    }
}

proptest! {
    #[test]
    fn fast_and_general_paths_agree(
        which in 0usize..7,
        edits in proptest::collection::vec((0usize..80, any::<u8>()), 0..3),
        fix_checksum in any::<bool>(),
        cut in proptest::option::of(0usize..80),
        port in 0u16..5,
        good in any::<bool>(),
        ttl in proptest::option::of(0u8..3),
    ) {
        let (mut f, home) = common_frames().swap_remove(which);
        let l3 = if home == WAN_TAGGED_PORT { 18 } else { 14 };
        if let Some(t) = ttl {
            if f.len() > l3 + 8 {
                f[l3 + 8] = t;
            }
        }
        for (at, v) in edits {
            if let Some(b) = f.get_mut(at) {
                *b = v;
            }
        }
        let ihl = f.get(l3).map_or(0, |b| usize::from(b & 0x0F) * 4);
        if fix_checksum && ihl >= 20 && f.len() >= l3 + ihl {
            fix_ipv4_checksum(&mut f, l3);
        }
        if let Some(n) = cut {
            f.truncate(n);
        }
        // The home port most of the time, any port (spare, unknown) else.
        let in_port = if port < 3 { home } else { port };
        for c in [stage(4), stage(1)] {
            same(&c, &f, in_port, good)?;
        }
    }
}

/// With services configured the fast path leaves service packets to the
/// general path and takes the rest.
#[test]
fn service_packets_take_the_general_path() {
    let mut c = stage(4);
    let mut services = ServiceMap::default();
    // The first WAN frame is to a service, the first TCP one from a server.
    services.add_service(1, "192.0.2.1:40000".parse().unwrap(), true, true, 0);
    services.add_server(0, "10.0.3.4:40001".parse().unwrap());
    c.set_services(Arc::new(services));
    let fast = |f: &[u8], port| c.classify_fast(&mut buf(f, port));
    let frames = common_frames();
    assert!(!fast(&frames[3].0, WAN_PORT) && !fast(&frames[1].0, LAN_PORT));
    assert!(fast(&frames[0].0, LAN_PORT) && fast(&frames[4].0, WAN_PORT));
    for (f, port) in common_frames() {
        let (mut a, mut b) = (buf(&f, port), buf(&f, port));
        assert_eq!(c.classify(&mut a), c.classify_general(&mut b));
        assert_eq!(format!("{:?}", a.meta()), format!("{:?}", b.meta()));
    }
}
