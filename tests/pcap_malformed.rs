//! Malformed frames through the whole appliance: a capture of good frames
//! interleaved with broken ones is replayed through the pcap backend in each
//! mode. Every broken frame must be dropped by classify under its own
//! reason (exact counts), the oversize one skipped by the backend, and every
//! good frame must come out of the uplink's capture source-NATed with
//! checksums that smoltcp verifies. Nothing may panic or hang: a run is
//! bounded by a duration and must end because its input drained.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use appliance::config::site::SiteToml;
use appliance::runtime::{run, RunOptions};
use common::{read_capture, write_capture};
use pipelines::testing::{
    client_raw, fix_ipv4_checksum, from_client, ip, tcp, L4, NAT4, NAT6, WAN_MAC,
};
use serde_json::Value;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv6Packet, IpAddress, IpProtocol, Ipv4Packet,
    Ipv6Packet, TcpControl, TcpPacket, UdpPacket,
};

/// The uplink's next hop (`SiteToml::one_uplink`).
const ISP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xFE];
const NAT_PORTS: std::ops::RangeInclusive<u16> = 20_000..=29_999;

/// The site, its captures `input` → `output`, with a mode's `[runtime]`.
fn site(input: &Path, output: &Path, runtime: &str) -> String {
    SiteToml::one_uplink("pcap", &[NAT4, NAT6])
        .prefixes(&["10.0.0.0/16", "fd00::/64"])
        .addresses(&["10.0.0.1", "fd00::1"])
        .lan_key("pcap_in", input.to_str().unwrap())
        .port_key("wan", "pcap_out", output.to_str().unwrap())
        .section("[nat]\nport_range = [20000, 29999]")
        .section(runtime)
        .to_string()
}

const RUN_TO_COMPLETION_1: &str = r#"
[runtime]
mode = "run-to-completion"
pool_size = 1024

[[runtime.lcores]]
"#;

const RUN_TO_COMPLETION_2: &str = r#"
[runtime]
mode = "run-to-completion"
oversubscribe = true
pool_size = 1024

[[runtime.lcores]]
[[runtime.lcores]]
"#;

const PIPELINE_2: &str = r#"
[runtime]
mode = "pipeline"
oversubscribe = true
pool_size = 1024

[[runtime.lcores]]
stages = ["classify", "replicate"]

[[runtime.lcores]]
stages = ["translate", "transmit"]
"#;

/// `frame` with `edit` applied.
fn edited(mut frame: Vec<u8>, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    edit(&mut frame);
    frame
}

/// The capture: good frames interleaved with malformed ones.
struct Capture {
    frames: Vec<Vec<u8>>,
    /// The good frames, by destination address (each has its own).
    good: BTreeMap<IpAddr, Vec<u8>>,
    /// Expected `stages.classify.drops`, by reason.
    drops: BTreeMap<&'static str, u64>,
    oversize: u64,
}

fn capture() -> Capture {
    let mut c = Capture {
        frames: Vec::new(),
        good: BTreeMap::new(),
        drops: BTreeMap::new(),
        oversize: 0,
    };
    let add_good = |c: &mut Capture, dst: &str, frame: Vec<u8>| {
        c.good.insert(ip(dst), frame.clone());
        c.frames.push(frame);
    };
    let add_bad = |c: &mut Capture, reason: &'static str, frame: Vec<u8>| {
        *c.drops.entry(reason).or_default() += 1;
        c.frames.push(frame);
    };

    let udp = from_client(
        "10.0.0.2",
        "203.0.113.11",
        L4::Udp {
            src_port: 40001,
            dst_port: 53,
            payload: b"query",
        },
    );
    assert_eq!(udp.len(), 14 + 20 + 8 + 5);

    add_good(
        &mut c,
        "203.0.113.10",
        from_client("10.0.0.2", "203.0.113.10", tcp(40000, 443, TcpControl::Syn)),
    );
    add_bad(&mut c, "empty", Vec::new());
    add_good(&mut c, "203.0.113.11", udp.clone());
    add_bad(&mut c, "truncated_ethernet", udp[..10].to_vec());
    add_bad(&mut c, "truncated_ethernet", udp[..13].to_vec());
    add_bad(&mut c, "truncated_ipv4", udp[..14 + 12].to_vec());
    add_bad(&mut c, "bad_ihl", edited(udp.clone(), |f| f[14] = 0x44));
    // IHL 15 (a 60-byte header) in a 33-byte datagram.
    add_bad(&mut c, "bad_ihl", edited(udp.clone(), |f| f[14] = 0x4F));
    add_good(
        &mut c,
        "203.0.113.12",
        from_client(
            "10.0.0.3",
            "203.0.113.12",
            L4::EchoRequest {
                ident: 0x77,
                seq_no: 1,
            },
        ),
    );
    add_bad(
        &mut c,
        "bad_total_length",
        edited(udp.clone(), |f| {
            f[16..18].copy_from_slice(&16u16.to_be_bytes())
        }),
    );
    add_bad(
        &mut c,
        "bad_total_length",
        edited(udp.clone(), |f| {
            f[16..18].copy_from_slice(&34u16.to_be_bytes())
        }),
    );
    add_bad(
        &mut c,
        "unknown_ethertype",
        edited(udp.clone(), |f| f[12..14].copy_from_slice(&[0x88, 0xB5])),
    );
    add_bad(
        &mut c,
        "truncated_tcp",
        client_raw(
            "10.0.0.2",
            "203.0.113.10",
            6,
            &[0x9C, 0x40, 0x01, 0xBB, 0, 0, 0, 7, 0, 0, 0, 0],
        ),
    );
    add_bad(
        &mut c,
        "truncated_udp",
        client_raw(
            "10.0.0.2",
            "203.0.113.11",
            17,
            &[0x9C, 0x41, 0x00, 0x35, 0x00, 0x08],
        ),
    );
    // A UDP length field past the datagram.
    add_bad(
        &mut c,
        "truncated_udp",
        edited(udp.clone(), |f| {
            f[38..40].copy_from_slice(&14u16.to_be_bytes())
        }),
    );
    add_bad(
        &mut c,
        "bad_ipv4_checksum",
        edited(udp.clone(), |f| f[24] ^= 0x40),
    );
    add_bad(
        &mut c,
        "fragment",
        edited(udp.clone(), |f| {
            f[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
            fix_ipv4_checksum(f, 14);
        }),
    );
    // A UDP frame relabelled ARP: not Ethernet/IPv4 ARP inside.
    add_bad(
        &mut c,
        "arp_malformed",
        edited(udp[..42].to_vec(), |f| {
            f[12..14].copy_from_slice(&[0x08, 0x06])
        }),
    );
    add_bad(
        &mut c,
        "spoofed_source",
        from_client(
            "192.168.7.7",
            "203.0.113.11",
            L4::Udp {
                src_port: 1,
                dst_port: 53,
                payload: b"",
            },
        ),
    );
    // A good frame with Ethernet padding up to the 60-byte minimum.
    let padded = from_client(
        "10.0.0.4",
        "203.0.113.13",
        L4::Udp {
            src_port: 5000,
            dst_port: 123,
            payload: b"ntp",
        },
    );
    assert!(padded.len() < 60);
    add_good(&mut c, "203.0.113.13", edited(padded, |f| f.resize(60, 0)));
    // Larger than a buffer: the backend skips it before classify.
    c.frames.push(edited(udp.clone(), |f| f.resize(3000, 0)));
    c.oversize += 1;
    add_good(
        &mut c,
        "2001:db8:ffff::14",
        from_client(
            "fd00::2",
            "2001:db8:ffff::14",
            tcp(40000, 80, TcpControl::Syn),
        ),
    );
    add_good(
        &mut c,
        "2001:db8:ffff::15",
        from_client(
            "fd00::2",
            "2001:db8:ffff::15",
            L4::Udp {
                src_port: 40002,
                dst_port: 53,
                payload: b"query6",
            },
        ),
    );
    add_good(
        &mut c,
        "2001:db8:ffff::16",
        from_client(
            "fd00::3",
            "2001:db8:ffff::16",
            L4::EchoRequest {
                ident: 0x78,
                seq_no: 1,
            },
        ),
    );
    let udp6 = from_client(
        "fd00::2",
        "2001:db8:ffff::17",
        L4::Udp {
            src_port: 40003,
            dst_port: 53,
            payload: b"q",
        },
    );
    add_bad(&mut c, "truncated_ipv6", udp6[..14 + 39].to_vec());
    add_bad(
        &mut c,
        "bad_payload_length",
        edited(udp6.clone(), |f| {
            f[18..20].copy_from_slice(&10u16.to_be_bytes())
        }),
    );
    add_bad(
        &mut c,
        "truncated_tcp",
        client_raw("fd00::2", "2001:db8:ffff::17", 6, &[0; 19]),
    );
    c
}

fn to_v6(a: IpAddr) -> smoltcp::wire::Ipv6Address {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// The transport header of a datagram, and the addresses smoltcp verifies
/// its checksum with.
struct Datagram<'a> {
    /// Length of the frame up to the datagram's end (Ethernet padding excluded).
    frame_len: usize,
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    proto: IpProtocol,
    l4: &'a [u8],
}

/// Parses the frame's IP header with smoltcp's checked views (IPv4 header
/// checksum verified).
fn datagram(frame: &[u8]) -> Datagram<'_> {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let start = EthernetFrame::<&[u8]>::header_len();
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let p = Ipv4Packet::new_checked(&frame[start..]).unwrap();
            assert!(p.verify_checksum(), "IPv4 header checksum");
            let (h, t) = (usize::from(p.header_len()), usize::from(p.total_len()));
            Datagram {
                frame_len: start + t,
                src: IpAddr::V4(p.src_addr()),
                dst: IpAddr::V4(p.dst_addr()),
                ttl: p.hop_limit(),
                proto: p.next_header(),
                l4: &frame[start + h..start + t],
            }
        }
        EthernetProtocol::Ipv6 => {
            let p = Ipv6Packet::new_checked(&frame[start..]).unwrap();
            let end = start + 40 + usize::from(p.payload_len());
            Datagram {
                frame_len: end,
                src: IpAddr::V6(p.src_addr()),
                dst: IpAddr::V6(p.dst_addr()),
                ttl: p.hop_limit(),
                proto: p.next_header(),
                l4: &frame[start + 40..end],
            }
        }
        other => panic!("EtherType {other}"),
    }
}

/// Verifies the transport checksum with smoltcp; returns (source port or
/// echo identifier, destination port, payload).
fn transport_of<'a>(d: &Datagram<'a>) -> (u16, u16, &'a [u8]) {
    let (s, t) = (IpAddress::from(d.src), IpAddress::from(d.dst));
    match d.proto {
        IpProtocol::Tcp => {
            let p = TcpPacket::new_checked(d.l4).unwrap();
            assert!(p.verify_checksum(&s, &t), "TCP checksum");
            (
                p.src_port(),
                p.dst_port(),
                &d.l4[usize::from(p.header_len())..],
            )
        }
        IpProtocol::Udp => {
            let p = UdpPacket::new_checked(d.l4).unwrap();
            assert!(p.checksum() != 0, "these tests send UDP with checksums");
            assert!(p.verify_checksum(&s, &t), "UDP checksum");
            (p.src_port(), p.dst_port(), &d.l4[8..])
        }
        IpProtocol::Icmp => {
            let p = Icmpv4Packet::new_checked(d.l4).unwrap();
            assert!(p.verify_checksum(), "ICMP checksum");
            (p.echo_ident(), 0, &d.l4[8..])
        }
        IpProtocol::Icmpv6 => {
            let p = Icmpv6Packet::new_checked(d.l4).unwrap();
            assert!(
                p.verify_checksum(&to_v6(d.src), &to_v6(d.dst)),
                "ICMPv6 checksum"
            );
            (p.echo_ident(), 0, &d.l4[8..])
        }
        other => panic!("protocol {other}"),
    }
}

fn num(v: &Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64()
        .unwrap_or_else(|| panic!("stats {} missing: {v:#}", path.join(".")))
}

fn replay(mode: &str, runtime: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.pcap"), dir.path().join("out.pcap"));
    let cap = capture();
    write_capture(&input, &cap.frames);
    let toml = site(&input, &output, runtime);
    let cfg = appliance::config::parse(&toml).unwrap_or_else(|e| panic!("{mode}: {e}"));
    let plan = appliance::config::plan::validate(&cfg).unwrap_or_else(|e| panic!("{mode}: {e}"));
    let opts = RunOptions {
        duration: Some(Duration::from_secs(60)),
        ..RunOptions::default()
    };
    let stats = run(&plan, &opts).unwrap_or_else(|e| panic!("{mode}: {e:#}"));

    assert_eq!(
        stats["pcap"]["input_done"], true,
        "{mode}: the run ended before the capture was read: {stats:#}"
    );
    let read = cap.frames.len() as u64 - cap.oversize;
    let dropped: u64 = cap.drops.values().sum();
    let good = cap.good.len() as u64;
    assert_eq!(read, dropped + good);
    assert_eq!(num(&stats, &["pcap", "frames_read"]), read, "{mode}");
    assert_eq!(num(&stats, &["pcap", "oversize"]), cap.oversize, "{mode}");
    assert_eq!(num(&stats, &["pcap", "read_errors"]), 0, "{mode}");
    assert_eq!(num(&stats, &["ports", "lan", "rx_packets"]), read, "{mode}");
    assert_eq!(
        num(&stats, &["stages", "classify", "packets"]),
        read,
        "{mode}"
    );

    // Each reason exactly; every other reason zero.
    let drops = stats["stages"]["classify"]["drops"]
        .as_object()
        .unwrap_or_else(|| panic!("{stats:#}"));
    for (reason, n) in drops {
        let want = cap.drops.get(reason.as_str()).copied().unwrap_or(0);
        assert_eq!(n.as_u64(), Some(want), "{mode}: classify drops `{reason}`");
    }
    for reason in cap.drops.keys() {
        assert!(
            drops.contains_key(*reason),
            "{mode}: no counter named `{reason}`"
        );
    }
    for stage in ["replicate", "translate", "transmit"] {
        assert_eq!(
            num(&stats, &["stages", stage, "packets"]),
            good,
            "{mode}: {stage}"
        );
        assert_eq!(
            num(&stats, &["stages", stage, "drops_total"]),
            0,
            "{mode}: {stage}: {stats:#}"
        );
    }
    assert_eq!(num(&stats, &["ports", "wan", "tx_packets"]), good, "{mode}");
    assert_eq!(num(&stats, &["ports", "lan", "tx_packets"]), 0, "{mode}");
    assert_eq!(num(&stats, &["pcap", "frames_written"]), good, "{mode}");

    // The uplink's capture: every good frame once, source-NATed.
    let written = read_capture(&output);
    assert_eq!(written.len() as u64, good, "{mode}");
    let mut seen = BTreeMap::new();
    for frame in &written {
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.dst_addr().0, ISP_MAC, "{mode}: next hop");
        assert_eq!(eth.src_addr().0, WAN_MAC, "{mode}: the uplink port's MAC");
        let out = datagram(frame);
        let (nat_port, dst_port, payload) = transport_of(&out);
        let original = cap
            .good
            .get(&out.dst)
            .unwrap_or_else(|| panic!("{mode}: unexpected frame to {}", out.dst));
        let inside = datagram(original);
        let (_, inside_dst_port, inside_payload) = transport_of(&inside);
        let nat = if out.src.is_ipv4() {
            ip(NAT4)
        } else {
            ip(NAT6)
        };
        assert_eq!(
            out.src, nat,
            "{mode}: source NAT of the frame to {}",
            out.dst
        );
        assert_eq!(out.proto, inside.proto);
        assert_eq!(
            out.ttl,
            inside.ttl - 1,
            "{mode}: TTL / hop limit decremented"
        );
        assert!(NAT_PORTS.contains(&nat_port), "{mode}: NAT port {nat_port}");
        assert_eq!(dst_port, inside_dst_port);
        assert_eq!(payload, inside_payload, "{mode}: payload untouched");
        assert_eq!(
            frame.len(),
            inside.frame_len,
            "{mode}: Ethernet padding trimmed"
        );
        assert!(
            seen.insert(out.dst, ()).is_none(),
            "{mode}: {} forwarded twice",
            out.dst
        );
    }
}

#[test]
fn malformed_frames_run_to_completion_one_lcore() {
    replay("run-to-completion, 1 lcore", RUN_TO_COMPLETION_1);
}

#[test]
fn malformed_frames_run_to_completion_two_lcores() {
    replay("run-to-completion, 2 lcores", RUN_TO_COMPLETION_2);
}

#[test]
fn malformed_frames_pipeline_two_lcores() {
    replay("pipeline, 2 lcores", PIPELINE_2);
}
