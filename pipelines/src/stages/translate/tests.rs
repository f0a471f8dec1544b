use super::*;
use crate::packet::buf::{HeapBuf, PacketMeta};
use crate::packet::flow::proto;
use crate::stages::classify::Classify;
use crate::testing::*;
use smoltcp::wire::TcpControl;

const T0: Nanos = Nanos(1_000_000_000);

struct Site {
    classify: Classify,
    translate: Translate,
}

impl Site {
    fn new() -> Site {
        Site::with(NatConfig::default())
    }

    fn with(cfg: NatConfig) -> Site {
        let topo = site(1);
        Site {
            classify: Classify::new(topo.clone()),
            translate: Translate::new(topo, 0, cfg),
        }
    }

    /// Classifies `frame` (which must classify) on `port`, gives it
    /// `uplink` when outbound, and translates it.
    fn send(
        &mut self,
        frame: &[u8],
        port: u16,
        uplink: u8,
        now: Nanos,
    ) -> Result<HeapBuf, DropReason> {
        let mut b = buf(frame, port);
        self.classify
            .classify(&mut b)
            .unwrap_or_else(|r| panic!("classify: {r:?}"));
        if b.meta().direction == Direction::Outbound {
            b.meta_mut().uplink = uplink;
        }
        self.translate.translate(now, &mut b).map(|()| b)
    }

    fn out(&mut self, frame: &[u8]) -> Result<HeapBuf, DropReason> {
        self.send(frame, LAN_PORT, 0, T0)
    }

    fn back(&mut self, frame: &[u8]) -> Result<HeapBuf, DropReason> {
        self.send(frame, WAN_PORT, 0, T0)
    }
}

/// Sets the TTL / hop limit of a classified packet (the IPv4 header
/// checksum recomputed), as classify would not have let it pass.
fn set_ttl(b: &mut HeapBuf, ttl: u8) {
    let (l3, v6) = (b.meta().l3_offset as usize, b.meta().is_ipv6());
    let ip = &mut b.data_mut()[l3..];
    if v6 {
        crate::wire::ipv6::set_hop_limit(ip, ttl);
    } else {
        crate::wire::ipv4::set_ttl(ip, ttl);
        crate::wire::ipv4::fill_checksum(ip);
    }
}

/// The bytes after the transport header's port/identifier and checksum
/// fields: what translation must never touch.
fn payload_of<'a>(frame: &'a [u8], m: &PacketMeta) -> &'a [u8] {
    let header = if m.flow.proto == proto::TCP { 20 } else { 8 };
    &frame[usize::from(m.l4_offset) + header..]
}

/// One protocol's exchange: the client's packet and the remote's reply
/// to a given NAT port (or echo identifier).
struct Exchange {
    name: &'static str,
    client: &'static str,
    remote: &'static str,
    nat: &'static str,
    request: L4<'static>,
    reply: fn(u16) -> L4<'static>,
}

fn exchanges() -> Vec<Exchange> {
    let syn = tcp(40000, 443, TcpControl::Syn);
    let syn_ack = |p| L4::Tcp {
        src_port: 443,
        dst_port: p,
        control: TcpControl::Syn,
        ack: Some(1001),
        payload: b"hello",
    };
    let query = udp(40001, 53, b"query");
    let answer = |p| udp(53, p, b"the answer");
    let ping = L4::EchoRequest {
        ident: 0x4242,
        seq_no: 7,
    };
    let pong = |p| L4::EchoReply {
        ident: p,
        seq_no: 7,
    };
    let (c4, r4, c6, r6) = ("10.0.0.2", "203.0.113.5", "fd00::2", "2001:db8:ffff::5");
    vec![
        Exchange {
            name: "tcp4",
            client: c4,
            remote: r4,
            nat: NAT4,
            request: syn,
            reply: syn_ack,
        },
        Exchange {
            name: "udp4",
            client: c4,
            remote: r4,
            nat: NAT4,
            request: query,
            reply: answer,
        },
        Exchange {
            name: "icmp4",
            client: c4,
            remote: r4,
            nat: NAT4,
            request: ping,
            reply: pong,
        },
        Exchange {
            name: "tcp6",
            client: c6,
            remote: r6,
            nat: NAT6,
            request: syn,
            reply: syn_ack,
        },
        Exchange {
            name: "udp6",
            client: c6,
            remote: r6,
            nat: NAT6,
            request: query,
            reply: answer,
        },
        Exchange {
            name: "icmp6",
            client: c6,
            remote: r6,
            nat: NAT6,
            request: ping,
            reply: pong,
        },
    ]
}

#[test]
fn outbound_then_inbound_restores_the_client_and_checksums_verify() {
    for x in exchanges() {
        let mut s = Site::new();
        let request = from_client(x.client, x.remote, x.request);
        let l3 = 14;
        let client_ports = ports(
            &request,
            l3,
            34 + if x.client.contains(':') { 20 } else { 0 },
        );

        let out = s
            .out(&request)
            .unwrap_or_else(|r| panic!("{}: {r:?}", x.name));
        let m = *out.meta();
        assert_eq!(
            addrs(out.data(), l3),
            (ip(x.nat), ip(x.remote)),
            "{}: source NAT",
            x.name
        );
        let (nat_port, remote_port) = ports(out.data(), l3, m.l4_offset.into());
        assert!(
            nat_port >= 1024,
            "{}: NAT port {nat_port} in the range",
            x.name
        );
        if !matches!(x.request, L4::EchoRequest { .. }) {
            assert_eq!(
                remote_port, client_ports.1,
                "{}: destination port kept",
                x.name
            );
        }
        assert_eq!(ttl(out.data(), l3), 63, "{}", x.name);
        assert_checksums_valid(out.data(), l3);
        assert_eq!(
            payload_of(out.data(), &m),
            payload_of(&request, &m),
            "{}: payload untouched",
            x.name
        );
        assert_eq!(
            (m.out_port, m.next_hop_mac),
            (WAN_PORT, ISP0_MAC),
            "{}",
            x.name
        );
        assert_eq!(s.translate.nat.len(), 1);

        let reply = from_isp(x.remote, x.nat, (x.reply)(nat_port));
        let back = s
            .back(&reply)
            .unwrap_or_else(|r| panic!("{}: {r:?}", x.name));
        let m = *back.meta();
        assert_eq!(
            addrs(back.data(), l3),
            (ip(x.remote), ip(x.client)),
            "{}: client restored",
            x.name
        );
        let (_, client_port) = ports(back.data(), l3, m.l4_offset.into());
        assert_eq!(
            client_port, client_ports.0,
            "{}: client port restored",
            x.name
        );
        assert_eq!(ttl(back.data(), l3), 63);
        assert_checksums_valid(back.data(), l3);
        assert_eq!(
            (m.out_port, m.next_hop_mac),
            (LAN_PORT, CLIENT_MAC),
            "{}",
            x.name
        );

        // The next packet of the flow reuses the mapping.
        let again = s.out(&request).unwrap();
        assert_eq!(
            ports(again.data(), l3, again.meta().l4_offset.into()).0,
            nat_port,
            "{}",
            x.name
        );
        assert_eq!(s.translate.nat.len(), 1);
        assert_eq!(s.translate.nat.counters.created.get(), 1);
    }
}

#[test]
fn uplink_decides_nat_address_port_and_next_hop() {
    let mut s = Site::new();
    let frame = from_client("10.0.0.2", "203.0.113.5", udp(1000, 53, b"q"));
    let out = s.send(&frame, LAN_PORT, 1, T0).unwrap();
    assert_eq!(addrs(out.data(), 14).0, ip(NAT4_TAGGED));
    assert_eq!(
        (out.meta().out_port, out.meta().next_hop_mac),
        (WAN_TAGGED_PORT, ISP1_MAC)
    );
    assert_checksums_valid(out.data(), 14);
    let v6 = from_client("fd00::2", "2001:db8:ffff::5", udp(1000, 53, b"q"));
    assert_eq!(
        s.send(&v6, LAN_PORT, 1, T0).unwrap_err(),
        DropReason::NoNatAddress,
        "isp1 has no IPv6 address"
    );
    assert_eq!(
        s.send(&v6, LAN_PORT, 9, T0).unwrap_err(),
        DropReason::NoUplink
    );
}

#[test]
fn ipv4_udp_without_checksum_stays_without() {
    let mut s = Site::new();
    let mut request = from_client("10.0.0.2", "203.0.113.5", udp(40000, 53, b"query"));
    request[40..42].copy_from_slice(&[0, 0]);
    let out = s.out(&request).unwrap();
    assert_eq!(&out.data()[40..42], &[0, 0]);
    assert_checksums_valid(out.data(), 14);
    let nat_port = ports(out.data(), 14, 34).0;

    let mut reply = from_isp("203.0.113.5", NAT4, udp(53, nat_port, b"answer"));
    reply[40..42].copy_from_slice(&[0, 0]);
    let back = s.back(&reply).unwrap();
    assert_eq!(&back.data()[40..42], &[0, 0]);
    assert_eq!(addrs(back.data(), 14).1, ip("10.0.0.2"));
    assert_checksums_valid(back.data(), 14);
}

#[test]
fn udp_checksum_that_becomes_zero_is_sent_as_all_ones() {
    let mut s = Site::new();
    let request = |word: [u8; 2]| {
        from_client(
            "10.0.0.2",
            "203.0.113.5",
            udp(40000, 53, &[word[0], word[1]]),
        )
    };
    let nat_port = ports(s.out(&request([0, 0])).unwrap().data(), 14, 34).0;
    // Choose the payload word that makes the translated datagram's
    // one's-complement sum 0xFFFF, so its checksum computes to zero.
    let mut translated = [0u8; 22];
    translated[..4].copy_from_slice(&[192, 0, 2, 1]);
    translated[4..8].copy_from_slice(&[203, 0, 113, 5]);
    translated[8..12].copy_from_slice(&[0, 17, 0, 10]);
    translated[12..14].copy_from_slice(&nat_port.to_be_bytes());
    translated[14..16].copy_from_slice(&53u16.to_be_bytes());
    translated[16..18].copy_from_slice(&10u16.to_be_bytes());
    let sum = crate::wire::checksum::fold(crate::wire::checksum::sum(&translated, 0));
    let word = (0xFFFF - sum).to_be_bytes();

    let out = s.out(&request(word)).unwrap();
    assert_eq!(ports(out.data(), 14, 34).0, nat_port);
    assert_eq!(
        &out.data()[40..42],
        &[0xFF, 0xFF],
        "RFC 768: a computed zero is sent as all ones"
    );
    assert_checksums_valid(out.data(), 14);
}

#[test]
fn ttl_one_is_dropped_without_creating_a_session() {
    let mut s = Site::new();
    for (src, dst) in [("10.0.0.2", "203.0.113.5"), ("fd00::2", "2001:db8:ffff::5")] {
        for hops in [0, 1] {
            let (a, b) = (ip(src), ip(dst));
            let frame = ethernet(
                LAN_MAC,
                CLIENT_MAC,
                None,
                ethertype_of(a),
                &ip_packet(a, b, 64, &udp(40000, 53, b"q")),
            );
            // Classify answers an expiring TTL itself (time exceeded); a
            // packet that reaches translate with one is dropped there.
            let mut pkt = buf(&frame, LAN_PORT);
            s.classify.classify(&mut pkt).unwrap();
            set_ttl(&mut pkt, hops);
            assert_eq!(
                s.translate.translate(T0, &mut pkt).unwrap_err(),
                DropReason::TtlExpired,
                "{src} hop limit {hops}"
            );
        }
    }
    assert_eq!(
        s.translate.nat.len(),
        0,
        "a dropped packet holds no NAT port"
    );
    assert_eq!(s.translate.nat.counters.created.get(), 0);

    // Inbound, the session stays for the packets that do arrive.
    let out = s
        .out(&from_client(
            "10.0.0.2",
            "203.0.113.5",
            udp(40000, 53, b"q"),
        ))
        .unwrap();
    let nat_port = ports(out.data(), 14, 34).0;
    let (r, n) = (ip("203.0.113.5"), ip(NAT4));
    let expiring = ethernet(
        WAN_MAC,
        ISP0_MAC,
        None,
        0x0800,
        &ip_packet(r, n, 64, &udp(53, nat_port, b"a")),
    );
    // Classify answers TTL 1 with time exceeded; past it, translate drops.
    let mut pkt = buf(&expiring, WAN_PORT);
    s.classify.classify(&mut pkt).unwrap();
    set_ttl(&mut pkt, 1);
    assert_eq!(
        s.translate.translate(T0, &mut pkt).unwrap_err(),
        DropReason::TtlExpired
    );
    let fine = ethernet(
        WAN_MAC,
        ISP0_MAC,
        None,
        0x0800,
        &ip_packet(r, n, 2, &udp(53, nat_port, b"a")),
    );
    let back = s.back(&fine).unwrap();
    assert_eq!(ttl(back.data(), 14), 1);
    assert_checksums_valid(back.data(), 14);
}

#[test]
fn inbound_needs_the_session_of_that_remote() {
    let mut s = Site::new();
    let out = s
        .out(&from_client(
            "10.0.0.2",
            "203.0.113.5",
            tcp(40000, 80, TcpControl::Syn),
        ))
        .unwrap();
    let nat_port = ports(out.data(), 14, 34).0;
    let other_port = if nat_port == 65535 {
        1024
    } else {
        nat_port + 1
    };
    let reply = |src: &str, sport: u16, dport: u16| {
        from_isp(
            src,
            NAT4,
            L4::Tcp {
                src_port: sport,
                dst_port: dport,
                control: TcpControl::Syn,
                ack: Some(1),
                payload: &[],
            },
        )
    };
    assert_eq!(
        s.back(&reply("203.0.113.6", 80, nat_port)).unwrap_err(),
        DropReason::NoSession,
        "unknown remote"
    );
    assert_eq!(
        s.back(&reply("203.0.113.5", 81, nat_port)).unwrap_err(),
        DropReason::NoSession,
        "other remote port"
    );
    assert_eq!(
        s.back(&reply("203.0.113.5", 80, other_port)).unwrap_err(),
        DropReason::NoSession,
        "other NAT port"
    );
    let udp_reply = from_isp("203.0.113.5", NAT4, udp(80, nat_port, b""));
    assert_eq!(
        s.back(&udp_reply).unwrap_err(),
        DropReason::NoSession,
        "other protocol"
    );
    assert!(s.back(&reply("203.0.113.5", 80, nat_port)).is_ok());

    let mut unclassified = buf(
        &from_client("10.0.0.2", "203.0.113.5", udp(1, 2, b"")),
        LAN_PORT,
    );
    assert_eq!(
        s.translate.translate(T0, &mut unclassified).unwrap_err(),
        DropReason::UnknownPort
    );
}

#[test]
fn idle_udp_mapping_expires_and_inbound_then_finds_nothing() {
    let timeout = Nanos::from_secs(30);
    let mut s = Site::with(NatConfig {
        udp_idle_timeout: timeout,
        ..NatConfig::default()
    });
    let out = s
        .send(
            &from_client("10.0.0.2", "203.0.113.5", udp(40000, 53, b"q")),
            LAN_PORT,
            0,
            T0,
        )
        .unwrap();
    let nat_port = ports(out.data(), 14, 34).0;
    let reply = from_isp("203.0.113.5", NAT4, udp(53, nat_port, b"a"));
    let at_deadline = T0.saturating_add(timeout);
    assert!(
        s.send(&reply, WAN_PORT, 0, at_deadline).is_ok(),
        "idle for exactly the timeout: still live"
    );
    let later = at_deadline.saturating_add(timeout).saturating_add(Nanos(1));
    assert_eq!(s.translate.sweep(later), 1);
    assert_eq!(
        s.send(&reply, WAN_PORT, 0, later).unwrap_err(),
        DropReason::NoSession
    );
}

#[test]
fn process_counts_translations_and_drops() {
    let mut s = Site::new();
    let mut input: Burst<HeapBuf> = Burst::new();
    for frame in [
        from_client("10.0.0.2", "203.0.113.5", udp(40000, 53, b"q")),
        from_isp("203.0.113.9", NAT4, udp(53, 5000, b"a")),
        {
            let (a, b) = (ip("10.0.0.2"), ip("203.0.113.5"));
            ethernet(
                LAN_MAC,
                CLIENT_MAC,
                None,
                0x0800,
                &ip_packet(a, b, 64, &udp(40001, 53, b"q")),
            )
        },
    ] {
        let mut b = buf(
            &frame,
            if frame[6..12] == CLIENT_MAC {
                LAN_PORT
            } else {
                WAN_PORT
            },
        );
        s.classify.classify(&mut b).unwrap();
        if b.meta().flow.src_port == 40001 {
            set_ttl(&mut b, 1);
        }
        input.push(b);
    }
    let mut output: Burst<HeapBuf> = Burst::new();
    s.translate.process(T0, &mut input, &mut output);
    assert!(input.is_empty());
    assert_eq!(output.len(), 1);
    let c = &s.translate.counters;
    assert_eq!(c.packets.get(), 3);
    assert_eq!(
        (
            c.drops(DropReason::NoSession),
            c.drops(DropReason::TtlExpired)
        ),
        (1, 1)
    );
    assert_eq!(s.translate.nat.counters.uplinks[0].tx_packets.get(), 1);
}

use crate::nat::Filtering;
use proptest::prelude::*;

fn udp_out(s: &mut Site, client: &str, cport: u16, remote: &str, rport: u16) -> HeapBuf {
    s.out(&from_client(client, remote, udp(cport, rport, b"ping")))
        .unwrap_or_else(|r| panic!("{client}:{cport} -> {remote}:{rport}: {r:?}"))
}

fn src_of(b: &HeapBuf) -> (IpAddr, u16) {
    let l4 = usize::from(b.meta().l4_offset);
    (addrs(b.data(), 14).0, ports(b.data(), 14, l4).0)
}

fn dst_of(b: &HeapBuf) -> (IpAddr, u16) {
    let l4 = usize::from(b.meta().l4_offset);
    (addrs(b.data(), 14).1, ports(b.data(), 14, l4).1)
}

mod fragments;
mod mappings_and_hostile;
