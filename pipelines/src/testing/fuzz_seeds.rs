//! Seed inputs of the fuzz targets whose bodies are in [`super::fuzz`]:
//! valid frames from the test site's builders, encoded as each target reads
//! them. `tests/fuzz_corpus.rs` writes them to `fuzz/corpus/<target>/`
//! (`scripts/fuzz-corpus`) and checks the files there are current.

use smoltcp::wire::TcpControl;

use super::fuzz::*;
use super::*;

/// `(target, file name, bytes)` of every seed of the pipelines' targets.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, bytes) in pipeline_seeds() {
        out.push(("pipeline", name, bytes));
    }
    for (name, bytes) in icmp_error_seeds() {
        out.push(("icmp_error", name, bytes));
    }
    for (name, bytes) in neighbour_seeds() {
        out.push(("neighbour", name, bytes));
    }
    for (name, bytes) in service_seeds() {
        out.push(("service", name, bytes));
    }
    for (name, bytes) in tcp_window_seeds() {
        out.push(("tcp_window", name, bytes));
    }
    out
}

/// A pipeline record: (port, dt, frame).
type Record = (u16, u8, Vec<u8>);

fn synack(nat: &str, seq: u32) -> Vec<u8> {
    server_segment(nat, 0x12, seq, 1, &[], &[])
}

fn pipeline_seeds() -> Vec<(String, Vec<u8>)> {
    let data = client_segment(0x18, 1, 5001, 64_000, &[], b"GET / HTTP/1.1\r\n\r\n");
    let ack = client_segment(0x10, 1, 5001, 64_000, &[], &[]);
    let reply = server_segment(NAT4, 0x18, 5001, 19, &[], b"HTTP/1.1 200 OK\r\n");
    let udp_back = from_isp(SERVER, NAT4, udp(53, UDP_PORT, b"answer"));
    let udp6_back = from_isp(SERVER6, NAT6, udp(53, UDP_PORT, b"answer6"));
    let echo_back = from_isp(
        SERVER,
        NAT4,
        L4::EchoReply {
            ident: ECHO_ID,
            seq_no: 1,
        },
    );
    let new_tcp6 = from_client(CLIENT6, SERVER6, tcp(40002, 80, TcpControl::Syn));
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1]);
    let w = |p: u16, f: &Vec<u8>| (p, 1u8, f.clone());
    let sets: Vec<(&str, u8, Vec<Record>)> = vec![
        (
            "race_synack",
            0,
            vec![
                w(WAN_PORT, &synack(NAT4, 5000)),
                w(WAN_TAGGED_PORT, &synack(NAT4_TAGGED, 9000)),
                w(LAN_PORT, &ack),
                w(LAN_PORT, &data),
                w(WAN_PORT, &reply),
            ],
        ),
        (
            "race_first_payload",
            MODE_FIRST_PAYLOAD,
            vec![
                w(WAN_PORT, &synack(NAT4, 5000)),
                w(LAN_PORT, &ack),
                w(LAN_PORT, &data),
                w(WAN_TAGGED_PORT, &synack(NAT4_TAGGED, 9000)),
                w(
                    WAN_TAGGED_PORT,
                    &server_segment(NAT4_TAGGED, 0x18, 9001, 19, &[], b"x"),
                ),
                w(WAN_PORT, &reply),
            ],
        ),
        (
            "udp_icmp_both_ways",
            0,
            vec![
                w(WAN_PORT, &udp_back),
                w(WAN_PORT, &udp6_back),
                w(WAN_PORT, &echo_back),
                w(LAN_PORT, &new_tcp6),
            ],
        ),
        (
            "arp_and_burst",
            MODE_OPEN_FILTERING,
            vec![
                (LAN_PORT, 0, arp),
                (WAN_PORT, 0, udp_back.clone()),
                (
                    WAN_PORT,
                    0,
                    from_isp("198.18.9.9", NAT4, udp(99, UDP_PORT, b"u")),
                ),
            ],
        ),
    ];
    sets.into_iter()
        .map(|(name, mode, recs)| {
            let r: Vec<(u16, u8, &[u8])> = recs
                .iter()
                .map(|(p, d, f)| (*p, *d, f.as_slice()))
                .collect();
            (name.to_string(), encode(mode, &r))
        })
        .collect()
}

fn icmp_error_seeds() -> Vec<(String, Vec<u8>)> {
    let tcp_out = quoted(NAT4, SERVER, 60, tcp(TCP_PORT, 443, TcpControl::Syn), None);
    let udp_out = quoted(NAT4, SERVER, 60, udp(UDP_PORT, 53, b"q"), Some(28));
    let udp6_out = quoted(NAT6, SERVER6, 60, udp(UDP_PORT, 53, b"q6"), None);
    let from_server = quoted(SERVER, CLIENT, 60, udp(53, UDP_PORT, b"a"), None);
    let seed = |sel: u8, t: u8, c: u8, q: &[u8]| {
        let mut v = vec![sel, t, c];
        v.extend_from_slice(q);
        v
    };
    vec![
        ("unreach_tcp".into(), seed(0, 3, 1, &tcp_out)),
        ("frag_needed_udp".into(), seed(0, 3, 4, &udp_out)),
        (
            "time_exceeded_race".into(),
            seed(MODE_FIRST_PAYLOAD << 4, 11, 0, &tcp_out),
        ),
        ("v6_unreach".into(), seed(1, 1, 4, &udp6_out)),
        ("from_lan".into(), seed(2, 3, 3, &from_server)),
    ]
}

fn neighbour_seeds() -> Vec<(String, Vec<u8>)> {
    let arp = |op: u8, mac: [u8; 6], spa: [u8; 4], tpa: [u8; 4]| {
        let mut v = vec![0, 1, 8, 0, 6, 4, 0, op];
        v.extend_from_slice(&mac);
        v.extend_from_slice(&spa);
        v.extend_from_slice(&[0; 6]);
        v.extend_from_slice(&tpa);
        v
    };
    let mut ns = vec![135, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&ip6_bytes("fd00::1"));
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&CLIENT_MAC);
    let mut na = vec![136, 0, 0x60, 0, 0, 0];
    na.extend_from_slice(&ip6_bytes("fe80::a0"));
    na.extend_from_slice(&[2, 1]);
    na.extend_from_slice(&ISP0_MAC);
    let with = |sel: u8, body: Vec<u8>| {
        let mut v = vec![sel];
        v.extend(body);
        v
    };
    vec![
        (
            "arp_request_lan".into(),
            with(0, arp(1, CLIENT_MAC, [10, 0, 0, 2], [10, 0, 0, 1])),
        ),
        (
            "arp_reply_isp".into(),
            with(2, arp(2, ISP0_MAC, [192, 0, 2, 254], [192, 0, 2, 1])),
        ),
        ("ns_lan".into(), with(1, ns)),
        ("na_isp".into(), with(3, na)),
    ]
}

fn ip6_bytes(s: &str) -> [u8; 16] {
    match ip(s) {
        std::net::IpAddr::V6(a) => a.octets(),
        std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

fn service_seeds() -> Vec<(String, Vec<u8>)> {
    let with = |sel: u8, body: &[u8]| {
        let mut v = vec![sel];
        v.extend_from_slice(body);
        v
    };
    vec![
        ("udp_plain".into(), with(0, b"hello")),
        ("udp_failed".into(), with(2, b"again")),
        ("tcp_syn".into(), with(1, &[])),
        ("tcp_syn_failed".into(), with(3, &[])),
        (
            "tcp_data_redirected".into(),
            with(1 | (1 << 3) | 0x20, b"GET / HTTP/1.0\r\n\r\n"),
        ),
    ]
}

fn tcp_window_seeds() -> Vec<(String, Vec<u8>)> {
    // [dir|flags, seq, ack, win, nopt] + options.
    let rec = |dir: u8, flags: u8, seq: u32, ack: u32, opts: &[u8]| {
        let mut v = vec![dir | flags];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ack.to_be_bytes());
        v.extend_from_slice(&64_000u16.to_be_bytes());
        v.push(opts.len() as u8);
        v.extend_from_slice(opts);
        v
    };
    let mut sack = vec![1, 1, 5, 10];
    sack.extend_from_slice(&5100u32.to_be_bytes());
    sack.extend_from_slice(&5200u32.to_be_bytes());
    let mut a = vec![0];
    a.extend(rec(0, 0x10, 1, 5001, &[]));
    a.extend(rec(0, 0x18, 1, 5001, &[]));
    a.extend(rec(0x80, 0x18, 5001, 2, &[]));
    a.extend(rec(0, 0x10, 2, 5001, &sack));
    a.extend(rec(0, 0x11, 2, 5001, &[]));
    let mut b = vec![MODE_FIRST_PAYLOAD];
    b.extend(rec(0, 0x10, 1, 5001, &[]));
    b.extend(rec(0, 0x18, 1, 5001, &[]));
    b.extend(rec(0xc0, 0x18, 9001, 2, &[]));
    b.extend(rec(0, 0x10, 2, 9040, &sack));
    b.extend(rec(0x80, 0x14, 5001, 0, &[]));
    vec![("established".into(), a), ("first_payload_sack".into(), b)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::drop::DropReason;

    #[test]
    fn every_seed_runs_and_conserves_buffers() {
        for (target, name, bytes) in seeds() {
            match target {
                "pipeline" => pipeline(&bytes),
                "icmp_error" => icmp_error(&bytes),
                "neighbour" => neighbour(&bytes),
                "service" => service(&bytes),
                "tcp_window" => tcp_window(&bytes),
                other => panic!("seed {name} of unknown target {other}"),
            }
        }
    }

    #[test]
    fn the_race_seed_reaches_the_client_and_the_loser_is_reset() {
        let (_, bytes) = pipeline_seeds().remove(0);
        let mut rig = Rig::with_sessions(bytes[0]);
        rig.keep = true;
        run_records(&mut rig, &records(&bytes[1..]));
        rig.assert_conserved();
        let to_lan = rig.sent.iter().filter(|(p, _)| *p == LAN_PORT).count();
        assert!(
            to_lan >= 2,
            "the SYN+ACK and the reply reach the client: {to_lan}"
        );
        assert!(
            rig.sent.iter().any(|(p, _)| *p == WAN_TAGGED_PORT),
            "an RST to the loser"
        );
        assert_eq!(rig.drops_of(DropReason::NoSession), 0);
    }

    #[test]
    fn conservation_fails_when_a_buffer_is_freed_uncounted() {
        let mut rig = Rig::with_sessions(0);
        rig.assert_conserved();
        // A buffer handed out and freed by no stage: not conserved.
        drop(fuzz_pool().alloc_with(&[0; 60]));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rig.assert_conserved()));
        assert!(r.is_err());
    }
}
