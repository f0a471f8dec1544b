use super::*;

#[test]
fn process_counts_every_packet_once() {
    let mut c = stage(2);
    let mut input: Burst<HeapBuf> = Burst::new();
    input.push(buf(&UDP4_FRAME, LAN_PORT));
    input.push(buf(&[], LAN_PORT));
    input.push(buf(&udp4(|f| f[L3 + 10] ^= 1), LAN_PORT));
    input.push(buf(&UDP4_FRAME, LAN_PORT));
    let mut output: Burst<HeapBuf> = Burst::new();
    c.process(&mut input, &mut output);
    assert!(input.is_empty());
    assert_eq!(output.len(), 2);
    assert_eq!(c.counters.packets.get(), 4);
    assert_eq!(c.counters.drops(DropReason::Empty), 1);
    assert_eq!(c.counters.drops(DropReason::BadIpv4Checksum), 1);
    assert_eq!(c.counters.total_drops(), 2);

    // A full output leaves the rest in the input, uncounted.
    let mut input: Burst<HeapBuf> = Burst::new();
    input.push(buf(&UDP4_FRAME, LAN_PORT));
    while !output.is_full() {
        output.push(buf(&UDP4_FRAME, LAN_PORT));
    }
    c.process(&mut input, &mut output);
    assert_eq!((input.len(), c.counters.packets.get()), (1, 4));
}

/// The ICMP error (type, code) pairs translated, per IP version.
const ERRORS4: [(u8, u8); 3] = [(3, 3), (11, 0), (12, 0)];
const ERRORS6: [(u8, u8); 4] = [(1, 4), (2, 0), (3, 0), (4, 0)];

/// The transports an error can quote for a packet between the local
/// side's (NAT or client) port `local` and the server's 443 / 53: TCP,
/// UDP and an ICMP echo; from the local side when `request` (and the
/// echo a request), else to it (and the echo a reply). Each comes with
/// its protocol (0: the family's ICMP), the server's and the local port
/// in the flow classify derives, and how much of the packet beyond the
/// IP header is quoted (None: all of it).
fn quoted_transports(local: u16, request: bool) -> [(L4<'static>, u8, u16, u16, Option<usize>); 3] {
    let echo = if request {
        L4::EchoRequest {
            ident: local,
            seq_no: 7,
        }
    } else {
        L4::EchoReply {
            ident: local,
            seq_no: 7,
        }
    };
    // `request` also says which way the quoted TCP/UDP packet went.
    let (segment, datagram) = if request {
        (tcp(local, 443, TcpControl::Syn), udp(local, 53, b"query"))
    } else {
        (tcp(443, local, TcpControl::Syn), udp(53, local, b"answer"))
    };
    [
        (segment, proto::TCP, 443, local, None),
        (datagram, proto::UDP, 53, local, Some(8)),
        (echo, 0, 0, local, Some(8)),
    ]
}

#[test]
fn icmp_errors_about_outbound_packets_are_inbound() {
    let c = stage(4);
    let topo = site(4);
    let families = [
        (
            NAT4,
            "203.0.113.5",
            "203.0.113.9",
            &ERRORS4[..],
            proto::ICMP,
            20,
        ),
        (
            NAT6,
            "2001:db8:ffff::5",
            "2001:db8:ffff::9",
            &ERRORS6[..],
            proto::ICMPV6,
            40,
        ),
    ];
    for (nat, server, router, errors, icmp, ihl) in families {
        for &(t, code) in errors {
            for (l4, p, remote_port, nat_port, keep) in quoted_transports(40000, true) {
                // The packet the appliance sent: NAT address → server.
                let inner = quoted(nat, server, 1, l4, keep.map(|k| ihl + k));
                for outer_src in [router, server] {
                    let frame = icmp_error_from_isp(outer_src, nat, t, code, &inner);
                    let b = run(&c, &frame, WAN_PORT)
                        .unwrap_or_else(|r| panic!("type {t} {l4:?}: {r:?}"));
                    let m = b.meta();
                    let p = if p == 0 { icmp } else { p };
                    assert_eq!(m.direction, Direction::Inbound);
                    assert_eq!(m.flow, key(server, nat, remote_port, nat_port, p), "{l4:?}");
                    assert_eq!((m.uplink, m.tcp_flags), (0, 0));
                    assert_eq!(m.shard, topo.shard_of_nat_port(nat_port).unwrap());
                    let l4_at = 14 + ihl;
                    assert_eq!(
                        (m.l4_offset, m.inner_l3, m.inner_l4),
                        (l4_at as u16, (l4_at + 8) as u16, (l4_at + 8 + ihl) as u16)
                    );
                    assert!(m.is_icmp_error());
                    assert_eq!(b.data(), &frame[..], "nothing trimmed or rewritten");
                }
            }
        }
    }
}

#[test]
fn icmp_errors_about_inbound_packets_are_outbound() {
    let c = stage(4);
    let families = [
        (
            "10.0.0.2",
            "203.0.113.5",
            "10.0.5.1",
            &ERRORS4[..],
            proto::ICMP,
            20,
        ),
        (
            "fd00::2",
            "2001:db8:ffff::5",
            "fd00::ff",
            &ERRORS6[..],
            proto::ICMPV6,
            40,
        ),
    ];
    for (client, server, router, errors, icmp, ihl) in families {
        for &(t, code) in errors {
            for (l4, p, remote_port, client_port, keep) in quoted_transports(5555, false) {
                // The packet the appliance delivered: server → client.
                let inner = quoted(server, client, 1, l4, keep.map(|k| ihl + k));
                for outer_src in [router, client] {
                    let frame = icmp_error_from_client(outer_src, server, t, code, &inner);
                    let b = run(&c, &frame, LAN_PORT)
                        .unwrap_or_else(|r| panic!("type {t} {l4:?}: {r:?}"));
                    let m = b.meta();
                    let p = if p == 0 { icmp } else { p };
                    let flow = key(client, server, client_port, remote_port, p);
                    assert_eq!(m.direction, Direction::Outbound);
                    assert_eq!(m.flow, flow, "{l4:?}");
                    assert_eq!(m.tcp_flags, 0);
                    assert_eq!(m.shard, (flow.inside_endpoint_hash() % 4) as u16);
                    assert_eq!(usize::from(m.inner_l4 - m.inner_l3), ihl);
                    // The error lands on the shard of the client's own
                    // packets of that flow, which holds its session.
                    let own = match l4 {
                        L4::EchoReply { ident, seq_no } => {
                            from_client(client, server, L4::EchoRequest { ident, seq_no })
                        }
                        L4::Tcp { .. } => {
                            from_client(client, server, tcp(client_port, 443, TcpControl::None))
                        }
                        _ => from_client(client, server, udp(client_port, 53, b"q")),
                    };
                    let own = run(&c, &own, LAN_PORT).unwrap();
                    assert_eq!(own.meta().flow, flow);
                    assert_eq!(own.meta().shard, m.shard);
                }
            }
        }
    }
}

#[test]
fn outbound_shard_follows_the_inside_endpoint_only() {
    let c = stage(4);
    let shard = |dst: &str, l4| {
        run(&c, &from_client("10.0.0.2", dst, l4), LAN_PORT)
            .unwrap()
            .meta()
            .shard
    };
    let first = shard("203.0.113.5", udp(40000, 53, b"q"));
    for (dst, dst_port) in [
        ("203.0.113.6", 53),
        ("198.51.100.20", 123),
        ("192.0.2.200", 9),
    ] {
        assert_eq!(
            shard(dst, udp(40000, dst_port, b"q")),
            first,
            "{dst}:{dst_port}"
        );
    }
    // Every shard is used by some inside endpoint.
    let mut seen = [false; 4];
    for port in 1000..1100 {
        seen[usize::from(shard("203.0.113.5", udp(port, 53, b"q")))] = true;
    }
    assert_eq!(seen, [true; 4]);
}

#[test]
fn icmp_error_quoting_ipv4_options_and_a_first_fragment() {
    let c = stage(4);
    let inner = quoted(NAT4, "203.0.113.5", 1, udp(40000, 53, b"query"), None);
    let frame = icmp_error_from_isp("203.0.113.9", NAT4, 3, 3, &with_ipv4_options(&inner));
    let m = *run(&c, &frame, WAN_PORT).unwrap().meta();
    assert_eq!((m.inner_l3, m.inner_l4), (42, 42 + 24), "options skipped");
    assert_eq!(m.flow, key("203.0.113.5", NAT4, 53, 40000, proto::UDP));

    let mut first_fragment = inner.clone();
    first_fragment[6] |= 0x20;
    fix_ipv4_checksum(&mut first_fragment, 0);
    let frame = icmp_error_from_isp("203.0.113.9", NAT4, 3, 4, &first_fragment);
    assert!(
        run(&c, &frame, WAN_PORT).is_ok(),
        "a first fragment quotes its ports"
    );
}

#[test]
fn icmp_error_drops() {
    let (nat, server, router) = (NAT4, "203.0.113.5", "203.0.113.9");
    let out4 = quoted(nat, server, 1, udp(40000, 53, b"query"), None);
    let out6 = quoted(NAT6, "2001:db8:ffff::5", 1, udp(40000, 53, b"query"), None);
    let from_isp4 =
        |t: u8, inner: &[u8]| drop_reason(&icmp_error_from_isp(router, nat, t, 0, inner), WAN_PORT);
    let from_isp6 = |t: u8, inner: &[u8]| {
        drop_reason(
            &icmp_error_from_isp("2001:db8:ffff::9", NAT6, t, 0, inner),
            WAN_PORT,
        )
    };
    let edited = |p: &[u8], edit: &dyn Fn(&mut Vec<u8>)| {
        let mut p = p.to_vec();
        edit(&mut p);
        p
    };
    use DropReason::*;

    // Cut short: the quoted IP header, or the 8 transport bytes.
    assert_eq!(from_isp4(3, &[]), IcmpErrorMalformed);
    assert_eq!(from_isp4(3, &out4[..19]), IcmpErrorMalformed);
    assert_eq!(from_isp4(11, &out4[..27]), IcmpErrorMalformed);
    assert!(run(
        &stage(4),
        &icmp_error_from_isp(router, nat, 11, 0, &out4[..28]),
        WAN_PORT
    )
    .is_ok());
    assert_eq!(from_isp6(1, &out6[..39]), IcmpErrorMalformed);
    assert_eq!(from_isp6(3, &out6[..47]), IcmpErrorMalformed);
    // Bad quoted headers: version, IHL below 5 or past the data.
    assert_eq!(
        from_isp4(3, &out6),
        IcmpErrorMalformed,
        "IPv6 quoted in ICMPv4"
    );
    assert_eq!(
        from_isp6(1, &out4),
        IcmpErrorMalformed,
        "IPv4 quoted in ICMPv6"
    );
    assert_eq!(
        from_isp4(3, &edited(&out4, &|p| p[0] = 0x44)),
        IcmpErrorMalformed
    );
    assert_eq!(
        from_isp4(3, &edited(&out4, &|p| p[0] = 0x4F)),
        IcmpErrorMalformed,
        "60-byte header"
    );
    assert_eq!(
        from_isp4(3, &edited(&out4, &|p| p[0] = 0x47)),
        IcmpErrorMalformed,
        "28-byte header leaves no 8 transport bytes"
    );
    // The quoted checksum and lengths are not checked (RFC 792: the
    // quote is the header and 64 bits of data).
    assert!(run(
        &stage(4),
        &icmp_error_from_isp(router, nat, 3, 0, &edited(&out4, &|p| p[10] ^= 0xFF)),
        WAN_PORT
    )
    .is_ok());
    // A later fragment has no ports.
    let later = edited(&out4, &|p| {
        p[6..8].copy_from_slice(&0x0001u16.to_be_bytes());
        fix_ipv4_checksum(p, 0);
    });
    assert_eq!(from_isp4(3, &later), Fragment);
    assert_eq!(from_isp6(1, &edited(&out6, &|p| p[6] = 44)), Fragment);
    assert_eq!(
        from_isp6(1, &edited(&out6, &|p| p[6] = 0)),
        Ipv6ExtensionHeader
    );
    // Errors about errors, and ICMP that is neither echo nor error.
    let raw4 = |l4: &[u8]| raw_ip(ip(nat), ip(server), 1, 1, l4);
    let raw6 = |l4: &[u8]| raw_ip(ip(NAT6), ip("2001:db8:ffff::5"), 58, 1, l4);
    for t in [3, 4, 5, 11, 12] {
        assert_eq!(
            from_isp4(3, &raw4(&[t, 0, 0, 0, 0x9c, 0x40, 0, 1])),
            IcmpErrorNested,
            "type {t}"
        );
    }
    for t in [1, 2, 3, 4, 0, 100, 127] {
        assert_eq!(
            from_isp6(1, &raw6(&[t, 0, 0, 0, 0x9c, 0x40, 0, 1])),
            IcmpErrorNested,
            "type {t}"
        );
    }
    assert_eq!(
        from_isp4(3, &raw4(&[13, 0, 0, 0, 0x9c, 0x40, 0, 1])),
        UnsupportedIcmp,
        "timestamp"
    );
    assert_eq!(
        from_isp6(1, &raw6(&[130, 0, 0, 0, 0x9c, 0x40, 0, 1])),
        UnsupportedIcmp,
        "MLD query"
    );
    assert_eq!(
        from_isp4(
            3,
            &raw_ip(
                ip(nat),
                ip(server),
                58,
                1,
                &[128, 0, 0, 0, 0x9c, 0x40, 0, 1]
            )
        ),
        UnsupportedProtocol,
        "ICMPv6 quoted in IPv4"
    );
    assert_eq!(
        from_isp4(3, &raw_ip(ip(nat), ip(server), 47, 1, &[0; 8])),
        UnsupportedProtocol,
        "GRE"
    );
    // Outer types that are errors but are not translated, or no errors.
    assert_eq!(from_isp4(4, &out4), UnsupportedIcmp, "source quench");
    assert_eq!(from_isp4(5, &out4), UnsupportedIcmp, "redirect");
    assert_eq!(from_isp6(0, &out6), UnsupportedIcmp, "reserved");
    assert_eq!(
        from_isp6(100, &out6),
        UnsupportedIcmp,
        "private experimentation"
    );

    // Inbound: the quoted source must be a NAT address of the port with
    // a NAT port, and the error must be addressed to it.
    assert_eq!(
        from_isp4(
            3,
            &quoted("192.0.2.99", server, 1, udp(40000, 53, b"q"), None)
        ),
        NotNatAddress
    );
    assert_eq!(
        from_isp4(3, &quoted(nat, server, 1, udp(80, 53, b"q"), None)),
        PortOutOfRange
    );
    assert_eq!(
        drop_reason(
            &icmp_error_from_isp(router, "192.0.2.99", 3, 0, &out4),
            WAN_PORT
        ),
        IcmpErrorMismatch,
        "addressed to someone else than the quoted sender"
    );
    // Outbound: the quoted packet must be from outside to a client, and
    // the error from a LAN host.
    let in4 = quoted(server, "10.0.0.2", 1, udp(53, 5555, b"answer"), None);
    assert!(run(
        &stage(4),
        &icmp_error_from_client("10.0.0.2", server, 3, 3, &in4),
        LAN_PORT
    )
    .is_ok());
    assert_eq!(
        drop_reason(
            &icmp_error_from_client("192.168.9.1", server, 3, 3, &in4),
            LAN_PORT
        ),
        IcmpErrorMismatch,
        "from outside the LAN prefixes"
    );
    assert_eq!(
        drop_reason(
            &icmp_error_from_client(
                "10.0.0.2",
                server,
                3,
                3,
                &quoted(server, "192.168.9.9", 1, udp(53, 5555, b"a"), None)
            ),
            LAN_PORT
        ),
        SpoofedSource,
        "quoting a packet to a non-LAN host"
    );
    assert_eq!(
        drop_reason(
            &icmp_error_from_client(
                "10.0.0.2",
                "10.0.0.3",
                3,
                3,
                &quoted("10.0.0.3", "10.0.0.2", 1, udp(53, 5555, b"a"), None)
            ),
            LAN_PORT
        ),
        LocalDestination,
        "an error about LAN-internal traffic"
    );
}

/// Interesting addresses for generated packets: a client, the gateway,
/// NAT addresses, a remote.
fn addr4() -> impl Strategy<Value = [u8; 4]> {
    prop_oneof![
        Just([10, 0, 0, 2]),
        Just([10, 0, 0, 1]),
        Just([192, 0, 2, 1]),
        Just([198, 51, 100, 1]),
        Just([203, 0, 113, 5]),
        any::<[u8; 4]>(),
    ]
}

fn check_invariants(c: &Classify, frame: &[u8], in_port: u16) -> Result<(), TestCaseError> {
    let mut b = buf(frame, in_port);
    if c.classify(&mut b).is_ok() {
        let m = *b.meta();
        prop_assert!(b.data().len() <= frame.len());
        prop_assert!(usize::from(m.l3_offset) < usize::from(m.l4_offset));
        prop_assert!(usize::from(m.l4_offset) <= b.data().len());
        prop_assert!(m.direction != Direction::Unknown);
        prop_assert!(m.shard < 4);
        if m.is_icmp_error() {
            let (l4, il3, il4) = (
                usize::from(m.l4_offset),
                usize::from(m.inner_l3),
                usize::from(m.inner_l4),
            );
            prop_assert_eq!(il3, l4 + ICMP_HEADER_LEN);
            prop_assert!(il3 < il4);
            prop_assert!(il4 + 8 <= b.data().len());
            prop_assert_eq!(m.tcp_flags, 0);
        } else {
            prop_assert_eq!((m.inner_l3, m.inner_l4), (0, 0));
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(
        frame in proptest::collection::vec(any::<u8>(), 0..160),
        in_port in 0u16..5,
    ) {
        check_invariants(&stage(4), &frame, in_port)?;
    }

    #[test]
    fn never_panics_after_a_valid_ipv4_prefix(
        src in addr4(),
        dst in addr4(),
        protocol in prop_oneof![Just(1u8), Just(6), Just(17), any::<u8>()],
        tail in proptest::collection::vec(any::<u8>(), 0..96),
        honest_length in any::<bool>(),
        total_length in any::<u16>(),
        in_port in 0u16..3,
    ) {
        let mut ipv4 = raw_ip(src.into(), dst.into(), protocol, 64, &tail);
        if !honest_length {
            ipv4[2..4].copy_from_slice(&total_length.to_be_bytes());
            fix_ipv4_checksum(&mut ipv4, 0);
        }
        let dst_mac = if in_port == LAN_PORT { LAN_MAC } else { WAN_MAC };
        let frame = ethernet(dst_mac, CLIENT_MAC, None, 0x0800, &ipv4);
        check_invariants(&stage(4), &frame, in_port)?;
    }

    #[test]
    fn never_panics_after_a_valid_icmp_error_header(
        v6 in any::<bool>(),
        from_lan in any::<bool>(),
        type_index in 0usize..4,
        code in any::<u8>(),
        ip_header in any::<bool>(),
        proto in prop_oneof![Just(1u8), Just(58), Just(6), Just(17), any::<u8>()],
        cut in 0usize..80,
        tail in proptest::collection::vec(any::<u8>(), 0..64),
        junk in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let (frame, in_port) = icmp_error_for_proptest(
            v6, from_lan, type_index, code, ip_header, proto, cut, &tail, &junk,
        );
        check_invariants(&stage(4), &frame, in_port)?;
    }

    #[test]
    fn never_panics_after_a_valid_ipv6_prefix(
        src in prop_oneof![Just(ip("fd00::2")), Just(ip(NAT6)), Just(ip("2001:db8:ffff::5"))],
        dst in prop_oneof![Just(ip("fd00::2")), Just(ip(NAT6)), Just(ip("2001:db8:ffff::5"))],
        next in prop_oneof![Just(58u8), Just(6), Just(17), Just(44), any::<u8>()],
        tail in proptest::collection::vec(any::<u8>(), 0..96),
        payload_length in proptest::option::of(any::<u16>()),
        in_port in 0u16..3,
    ) {
        let mut ipv6 = raw_ip(src, dst, next, 64, &tail);
        if let Some(l) = payload_length {
            ipv6[4..6].copy_from_slice(&l.to_be_bytes());
        }
        let frame = ethernet(LAN_MAC, CLIENT_MAC, None, 0x86DD, &ipv6);
        check_invariants(&stage(4), &frame, in_port)?;
    }
}
