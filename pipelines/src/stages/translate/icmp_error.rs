//! The translation of ICMP error messages (RFC 5508 section 4).
//!
//! An ICMP error quotes the packet that caused it, and across the NAT that
//! packet is the translated one: a router outside reports on `NA:NP → SA:SP`
//! (NAT address and port to server), a host inside on `SA:SP → CA:CP`
//! (server to client). Forwarding the error means translating that quote
//! back, and the error's own address on the NAT side with it:
//!
//! - inbound (`NA:NP → SA:SP` quoted, sent to `NA`): the outer destination
//!   and the quoted source become `CA`, the quoted source port (or the
//!   identifier of a quoted echo request) becomes `CP`;
//! - outbound (`SA:SP → CA:CP` quoted, sent by a LAN host): the outer source
//!   and the quoted destination become `NA`, the quoted destination port (or
//!   the identifier of a quoted echo reply) becomes `NP`.
//!
//! Checksums are updated incrementally (RFC 1624), as RFC 5508 REQ-3 asks:
//! the outer IPv4 header checksum, the quoted IPv4 header checksum, the
//! quoted transport checksum when its field was quoted at all (errors often
//! quote only 8 transport bytes), and the ICMP checksum over every byte that
//! changed inside the message, plus the outer address for ICMPv6, whose
//! checksum covers a pseudo-header (RFC 4443 2.3). Every field that changes
//! inside the message sits at an even offset from the ICMP header (8 bytes
//! of header, an IPv4 header length counted in 4-byte words), so the 16-bit
//! updates are exact and the payload is never read.
//!
//! The rewrite trusts nothing in the metadata: every offset is checked
//! against the frame before the first byte is written, and a packet that
//! fails a check is returned with a [`DropReason`], untouched. TTL and hop
//! limit are the caller's.

use std::net::IpAddr;

use super::rewrite::check_ttl;
use super::Translate;
use crate::packet::buf::{Direction, PacketBuf, PacketMeta};
use crate::packet::drop::DropReason;
use crate::packet::flow::proto;
use crate::packet::time::Nanos;
use crate::wire::checksum::{update16, update_bytes};
use crate::wire::{
    be16, icmp, ipv4, ipv6, tcp, udp, ICMP_HEADER_LEN, IPV4_MIN_HEADER_LEN, IPV6_HEADER_LEN,
};

/// Rewrites the ICMP error `pkt` (classified: `meta().inner_l3 != 0`) for
/// its way across the NAT: `inbound` for an error from the outside about a
/// packet the NAT sent out, which goes to the inside endpoint `addr:port`;
/// outbound for an error from the inside about a packet the NAT delivered,
/// which leaves from the NAT endpoint `addr:port`. See the module doc for
/// the fields and checksums changed.
pub fn rewrite_icmp_error<B: PacketBuf>(
    pkt: &mut B,
    inbound: bool,
    addr: IpAddr,
    port: u16,
) -> Result<(), DropReason> {
    let plan = Plan::check(pkt.data(), pkt.meta(), inbound, addr)?;
    plan.apply(pkt.data_mut(), port);
    Ok(())
}

/// The quoted transport checksum, when its field is inside the message.
#[derive(Clone, Copy)]
struct QuotedChecksum {
    at: usize,
    /// Whether it covers the quoted addresses (TCP, UDP, ICMPv6).
    pseudo_header: bool,
    /// UDP: zero means "no checksum", and a computed zero is sent as all
    /// ones (RFC 768).
    udp: bool,
}

/// Where the rewrite writes. Built only by [`Plan::check`], which proves
/// every offset (plus the field's length) lies within the frame, so that
/// [`Plan::apply`] can index without panicking.
struct Plan {
    /// The new address: 4 or 16 bytes of `addr_buf`.
    addr_buf: [u8; 16],
    addr_len: usize,
    outer_addr: usize,
    /// IPv4 only.
    outer_ip_checksum: Option<usize>,
    icmp_checksum: usize,
    /// ICMPv6: the message checksum covers the outer addresses.
    icmp_pseudo_header: bool,
    quoted_addr: usize,
    /// IPv4 only.
    quoted_ip_checksum: Option<usize>,
    quoted_port: usize,
    quoted_checksum: Option<QuotedChecksum>,
}

impl Plan {
    fn check(d: &[u8], m: &PacketMeta, inbound: bool, addr: IpAddr) -> Result<Plan, DropReason> {
        let malformed = DropReason::IcmpErrorMalformed;
        let (l3, l4) = (usize::from(m.l3_offset), usize::from(m.l4_offset));
        let (il3, il4) = (usize::from(m.inner_l3), usize::from(m.inner_l4));
        if !m.is_icmp_error() {
            return Err(malformed);
        }

        // The outer header: its version, protocol and length, which bounds
        // the ICMP message (the frame may still carry Ethernet padding).
        let v6 = match d.get(l3).map(|b| b >> 4) {
            Some(4) => false,
            Some(6) => true,
            _ => return Err(malformed),
        };
        let end = if v6 {
            let next_header = d.get(l3 + ipv6::NEXT_HEADER_OFFSET);
            if next_header != Some(&proto::ICMPV6) || l4 != l3 + IPV6_HEADER_LEN {
                return Err(malformed);
            }
            let payload_len = be16(d, l3 + ipv6::PAYLOAD_LEN_OFFSET).ok_or(malformed)?;
            l3 + IPV6_HEADER_LEN + usize::from(payload_len)
        } else {
            // The version nibble was there: so is the IHL.
            let ihl = ipv4::header_len(&d[l3..]);
            let protocol = d.get(l3 + ipv4::PROTO_OFFSET);
            if protocol != Some(&proto::ICMP) || ihl < IPV4_MIN_HEADER_LEN || l4 != l3 + ihl {
                return Err(malformed);
            }
            l3 + usize::from(be16(d, l3 + ipv4::TOTAL_LEN_OFFSET).ok_or(malformed)?)
        };
        if end > d.len() {
            return Err(malformed);
        }

        // The quoted header, right after the 8-byte ICMP header, of the same
        // version, and at least 8 quoted transport bytes inside the message.
        // `il4 + ERROR_QUOTE_MIN <= end` then puts every header field
        // written below inside the frame.
        if il3 != l4 + ICMP_HEADER_LEN || d.get(il3).map(|b| b >> 4) != Some(if v6 { 6 } else { 4 })
        {
            return Err(malformed);
        }
        let quoted_ihl = if v6 {
            IPV6_HEADER_LEN
        } else {
            ipv4::header_len(&d[il3..])
        };
        if quoted_ihl < IPV4_MIN_HEADER_LEN
            || il4 != il3 + quoted_ihl
            || il4 + icmp::ERROR_QUOTE_MIN > end
        {
            return Err(malformed);
        }
        let quoted_proto = if v6 {
            d[il3 + ipv6::NEXT_HEADER_OFFSET]
        } else {
            d[il3 + ipv4::PROTO_OFFSET]
        };

        let mut addr_buf = [0u8; 16];
        let addr_len = match (addr, v6) {
            (IpAddr::V4(a), false) => {
                addr_buf[..4].copy_from_slice(&a.octets());
                4
            }
            (IpAddr::V6(a), true) => {
                addr_buf.copy_from_slice(&a.octets());
                16
            }
            // As translate: the caller found no NAT address of this family.
            _ => return Err(DropReason::NoNatAddress),
        };

        // Inbound rewrites the quoted source (the NAT side), outbound the
        // quoted destination; the outer address is the other way round.
        let (outer_addr, quoted_addr) = match (v6, inbound) {
            (false, true) => (l3 + ipv4::DST.start, il3 + ipv4::SRC.start),
            (false, false) => (l3 + ipv4::SRC.start, il3 + ipv4::DST.start),
            (true, true) => (l3 + ipv6::DST.start, il3 + ipv6::SRC.start),
            (true, false) => (l3 + ipv6::SRC.start, il3 + ipv6::DST.start),
        };
        // In bounds: `il4 + ERROR_QUOTE_MIN <= end`.
        let quoted_type = icmp::kind(&d[il4..]);
        let (port_at, checksum_at, pseudo_header, udp) =
            quoted_l4_fields(quoted_proto, quoted_type, v6, inbound)?;
        let quoted_checksum = (il4 + checksum_at + 2 <= end).then_some(QuotedChecksum {
            at: il4 + checksum_at,
            pseudo_header,
            udp,
        });
        Ok(Plan {
            addr_buf,
            addr_len,
            outer_addr,
            outer_ip_checksum: (!v6).then_some(l3 + ipv4::CHECKSUM_OFFSET),
            icmp_checksum: l4 + icmp::CHECKSUM_OFFSET,
            icmp_pseudo_header: v6,
            quoted_addr,
            quoted_ip_checksum: (!v6).then_some(il3 + ipv4::CHECKSUM_OFFSET),
            quoted_port: il4 + port_at,
            quoted_checksum,
        })
    }

    fn apply(&self, d: &mut [u8], port: u16) {
        let new = &self.addr_buf[..self.addr_len];
        let mut icmp = get16(d, self.icmp_checksum);

        // The outer address lies outside the message, but inside the IPv4
        // header checksum or the ICMPv6 pseudo-header.
        let old = swap_addr(d, self.outer_addr, new);
        let old = &old[..self.addr_len];
        if let Some(at) = self.outer_ip_checksum {
            put16(d, at, update_bytes(get16(d, at), old, new));
        }
        if self.icmp_pseudo_header {
            icmp = update_bytes(icmp, old, new);
        }

        // From here every write is inside the message: `set16` folds each
        // into the ICMP checksum.
        let old = swap_addr(d, self.quoted_addr, new);
        let old_addr = &old[..self.addr_len];
        icmp = update_bytes(icmp, old_addr, new);
        if let Some(at) = self.quoted_ip_checksum {
            let c = update_bytes(get16(d, at), old_addr, new);
            icmp = set16(d, at, c, icmp);
        }
        let old_port = get16(d, self.quoted_port);
        icmp = set16(d, self.quoted_port, port, icmp);
        if let Some(q) = self.quoted_checksum {
            let c = get16(d, q.at);
            // A zero UDP checksum was never computed (RFC 768); over IPv6
            // it is invalid anyway and is updated as translate does.
            if !(q.udp && c == 0 && self.addr_len == 4) {
                let mut c = update16(c, old_port, port);
                if q.pseudo_header {
                    c = update_bytes(c, old_addr, new);
                }
                if q.udp && c == 0 {
                    c = 0xFFFF;
                }
                icmp = set16(d, q.at, c, icmp);
            }
        }
        put16(d, self.icmp_checksum, icmp);
    }
}

/// Where the quoted transport header keeps the NAT side's port (or echo
/// identifier) and its checksum, from its start; whether that checksum
/// covers the addresses, and whether it is UDP's. `quoted_type` is the
/// first quoted transport byte (the ICMP type of a quoted echo message).
fn quoted_l4_fields(
    quoted_proto: u8,
    quoted_type: u8,
    v6: bool,
    inbound: bool,
) -> Result<(usize, usize, bool, bool), DropReason> {
    Ok(match quoted_proto {
        proto::TCP => {
            let port_at = if inbound {
                tcp::SRC_PORT_OFFSET
            } else {
                tcp::DST_PORT_OFFSET
            };
            (port_at, tcp::CHECKSUM_OFFSET, true, false)
        }
        proto::UDP => {
            let port_at = if inbound {
                udp::SRC_PORT_OFFSET
            } else {
                udp::DST_PORT_OFFSET
            };
            (port_at, udp::CHECKSUM_OFFSET, true, true)
        }
        proto::ICMP | proto::ICMPV6 if (quoted_proto == proto::ICMPV6) == v6 => {
            // The identifier is the NAT side's port only in the echo
            // message that side sent: the request it sent out, the
            // reply it delivered.
            let sent_by_nat_side = match (v6, inbound) {
                (false, true) => icmp::V4_ECHO_REQUEST,
                (false, false) => icmp::V4_ECHO_REPLY,
                (true, true) => icmp::V6_ECHO_REQUEST,
                (true, false) => icmp::V6_ECHO_REPLY,
            };
            if quoted_type != sent_by_nat_side {
                return Err(DropReason::UnsupportedIcmp);
            }
            (icmp::IDENT_OFFSET, icmp::CHECKSUM_OFFSET, v6, false)
        }
        _ => return Err(DropReason::UnsupportedProtocol),
    })
}

fn get16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

fn put16(d: &mut [u8], at: usize, v: u16) {
    d[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes `v` at `at`, inside the ICMP message, and returns the message
/// checksum `icmp` updated for the change.
fn set16(d: &mut [u8], at: usize, v: u16, icmp: u16) -> u16 {
    let old = get16(d, at);
    put16(d, at, v);
    update16(icmp, old, v)
}

/// Replaces the address at `at` with `new` (4 or 16 bytes) and returns the
/// old one in the first `new.len()` bytes.
fn swap_addr(d: &mut [u8], at: usize, new: &[u8]) -> [u8; 16] {
    let mut old = [0u8; 16];
    let field = &mut d[at..at + new.len()];
    old[..new.len()].copy_from_slice(field);
    field.copy_from_slice(new);
    old
}

/// The translate stage's side: the session an ICMP error quotes.
impl Translate {
    /// An ICMP error (RFC 5508) is translated for the session of the packet
    /// it quotes, found by `meta.flow` (the quoted flow reversed): from
    /// outside, the outer destination and the quoted source go back to the
    /// client; from inside, the outer source and the quoted destination
    /// become the NAT endpoint. It never creates or refreshes a session.
    pub(super) fn icmp_error<B: PacketBuf>(
        &mut self,
        now: Nanos,
        pkt: &mut B,
    ) -> Result<(), DropReason> {
        let m = *pkt.meta();
        let inbound = match m.direction {
            Direction::Inbound => true,
            Direction::Outbound => false,
            Direction::Unknown | Direction::Local => return Err(DropReason::UnknownPort),
        };
        if !inbound && self.topo.nat_addr_uplink.contains_key(&m.flow.dst) {
            // About a hairpinned packet: its sender is inside too.
            return Err(DropReason::UnsupportedIcmp);
        }
        check_ttl(pkt)?;
        let found = self.nat.lookup(&m.flow, inbound, None, now);
        self.race.settle(&mut self.nat);
        let idx = found.ok_or(DropReason::NoSession)?;
        if inbound && self.nat.session(idx).is_some_and(|s| s.in_race()) {
            // Honest races: an error about one copy of a racing SYN reaches
            // the client only when no other copy can still answer.
            let (racer, mut cx) = self.racing::<B>(now);
            racer.icmp_error(&mut cx, idx)?;
        }
        let s = self.nat.session(idx).ok_or(DropReason::NoSession)?;
        let len = pkt.data().len() as u64;
        if inbound {
            let (addr, port, mac) = (s.client_addr(), s.client_port, s.client_mac);
            rewrite_icmp_error(pkt, true, addr, port)?;
            let meta = pkt.meta_mut();
            meta.out_port = self.topo.lan_port;
            meta.next_hop_mac = mac;
            if let Some(c) = self.nat.counters.uplinks.get(usize::from(m.uplink)) {
                c.rx_packets.inc();
                c.rx_bytes.add(len);
            }
        } else {
            let (addr, port, uplink) = (self.nat.nat_addr(s), s.nat_port, s.uplink);
            rewrite_icmp_error(pkt, false, addr, port)?;
            let u = &self.topo.uplinks[usize::from(uplink)];
            let meta = pkt.meta_mut();
            meta.out_port = u.port;
            meta.uplink = uplink;
            meta.next_hop_mac = u.next_hop_mac;
            if let Some(c) = self.nat.counters.uplinks.get(usize::from(uplink)) {
                c.tx_packets.inc();
                c.tx_bytes.add(len);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::buf::HeapBuf;
    use crate::stages::classify::Classify;
    use crate::testing::*;
    use proptest::prelude::*;
    use smoltcp::wire::TcpControl;

    /// One IP version of the test site: a client, a server, a router on
    /// each side, the NAT address, the translated error types and the
    /// length of a quoted IP header.
    struct Family {
        client: &'static str,
        server: &'static str,
        outside_router: &'static str,
        inside_router: &'static str,
        nat: &'static str,
        errors: &'static [(u8, u8)],
        ip_len: usize,
    }

    const V4: Family = Family {
        client: "10.0.0.2",
        server: "203.0.113.5",
        outside_router: "203.0.113.9",
        inside_router: "10.0.5.1",
        nat: NAT4,
        errors: &[(3, 3), (11, 0), (12, 0)],
        ip_len: 20,
    };
    const V6: Family = Family {
        client: "fd00::2",
        server: "2001:db8:ffff::5",
        outside_router: "2001:db8:ffff::9",
        inside_router: "fd00::ff",
        nat: NAT6,
        errors: &[(1, 4), (2, 0), (3, 0), (4, 0)],
        ip_len: 40,
    };

    const CLIENT_PORT: u16 = 5555;
    const NAT_PORT: u16 = 40000;

    #[derive(Clone, Copy, Debug)]
    enum Kind {
        Tcp,
        Udp,
        Echo,
    }

    const KINDS: [Kind; 3] = [Kind::Tcp, Kind::Udp, Kind::Echo];

    /// A packet of `kind` from the local endpoint's port `local` to the
    /// server (`outgoing`), or from the server to it.
    fn transport(kind: Kind, local: u16, outgoing: bool) -> L4<'static> {
        let (from, to) = if outgoing { (local, 443) } else { (443, local) };
        match (kind, outgoing) {
            (Kind::Tcp, _) => L4::Tcp {
                src_port: from,
                dst_port: to,
                control: TcpControl::Psh,
                ack: Some(77),
                payload: b"GET / HTTP/1.1\r\n",
            },
            (Kind::Udp, _) => udp(from, to, b"query"),
            (Kind::Echo, true) => L4::EchoRequest {
                ident: local,
                seq_no: 3,
            },
            (Kind::Echo, false) => L4::EchoReply {
                ident: local,
                seq_no: 3,
            },
        }
    }

    /// How much of the quoted packet beyond its IP header each case keeps:
    /// the 8 bytes RFC 792 guarantees, 18 (a TCP checksum just inside), all.
    const KEEPS: [Option<usize>; 3] = [Some(8), Some(18), None];

    fn classified(frame: &[u8], in_port: u16) -> HeapBuf {
        let mut b = buf(frame, in_port);
        if let Err(r) = Classify::new(site(4)).classify(&mut b) {
            panic!("not classified: {r:?}");
        }
        assert!(b.meta().is_icmp_error());
        b
    }

    /// Checks, by full recomputation, every checksum of the rewritten
    /// error, and that it is byte for byte the `expected` frame.
    fn assert_rewritten(b: &HeapBuf, expected: &[u8], quote_whole: bool, what: &str) {
        let m = b.meta();
        assert_icmp_error_checksums_valid(
            b.data(),
            usize::from(m.l3_offset),
            usize::from(m.inner_l3),
            quote_whole,
        );
        assert_eq!(b.data(), expected, "{what}");
    }

    #[test]
    fn inbound_errors_are_translated_back_to_the_client() {
        for f in [V4, V6] {
            for &(t, code) in f.errors {
                for kind in KINDS {
                    for keep in KEEPS {
                        let keep = keep.map(|k| f.ip_len + k);
                        let what = format!("{} type {t} {kind:?} keep {keep:?}", f.nat);
                        // A router outside reports on NA:NP → SA:SP.
                        let sent = transport(kind, NAT_PORT, true);
                        let quote = quoted(f.nat, f.server, 1, sent, keep);
                        let whole = quote.len() == quoted(f.nat, f.server, 1, sent, None).len();
                        let frame = icmp_error_from_isp(f.outside_router, f.nat, t, code, &quote);
                        let mut b = classified(&frame, WAN_PORT);
                        rewrite_icmp_error(&mut b, true, ip(f.client), CLIENT_PORT).unwrap();
                        // As if the router had reported on CA:CP → SA:SP.
                        let original = transport(kind, CLIENT_PORT, true);
                        let expected = icmp_error_from_isp(
                            f.outside_router,
                            f.client,
                            t,
                            code,
                            &quoted(f.client, f.server, 1, original, keep),
                        );
                        assert_rewritten(&b, &expected, whole, &what);
                    }
                }
            }
        }
    }

    #[test]
    fn outbound_errors_are_translated_to_the_nat_address() {
        for f in [V4, V6] {
            for &(t, code) in f.errors {
                for kind in KINDS {
                    for keep in KEEPS {
                        for reporter in [f.inside_router, f.client] {
                            let keep = keep.map(|k| f.ip_len + k);
                            let what = format!("{reporter} type {t} {kind:?} keep {keep:?}");
                            // A LAN host reports on SA:SP → CA:CP.
                            let delivered = transport(kind, CLIENT_PORT, false);
                            let quote = quoted(f.server, f.client, 1, delivered, keep);
                            let whole =
                                quote.len() == quoted(f.server, f.client, 1, delivered, None).len();
                            let frame = icmp_error_from_client(reporter, f.server, t, code, &quote);
                            let mut b = classified(&frame, LAN_PORT);
                            rewrite_icmp_error(&mut b, false, ip(f.nat), NAT_PORT).unwrap();
                            // As if NA itself reported on SA:SP → NA:NP.
                            let received = transport(kind, NAT_PORT, false);
                            let expected = icmp_error_from_client(
                                f.nat,
                                f.server,
                                t,
                                code,
                                &quoted(f.server, f.nat, 1, received, keep),
                            );
                            assert_rewritten(&b, &expected, whole, &what);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn an_eight_byte_quote_keeps_what_it_has() {
        for f in [V4, V6] {
            for kind in KINDS {
                let keep = Some(f.ip_len + 8);
                let quote = quoted(f.nat, f.server, 1, transport(kind, NAT_PORT, true), keep);
                let (t, code) = f.errors[0];
                let frame = icmp_error_from_isp(f.outside_router, f.nat, t, code, &quote);
                let mut b = classified(&frame, WAN_PORT);
                rewrite_icmp_error(&mut b, true, ip(f.client), CLIENT_PORT).unwrap();
                let m = *b.meta();
                let d = b.data();
                assert_icmp_error_checksums_valid(d, 14, usize::from(m.inner_l3), false);
                let il4 = usize::from(m.inner_l4);
                assert_eq!(d.len(), il4 + 8, "nothing past the 8 bytes");
                // The quoted packet as the client sent it, to compare with.
                let sent = quoted(
                    f.client,
                    f.server,
                    1,
                    transport(kind, CLIENT_PORT, true),
                    None,
                );
                let q = &d[usize::from(m.inner_l3)..];
                assert_eq!(
                    q,
                    &sent[..q.len()],
                    "{kind:?}: UDP and ICMP checksums included"
                );
                match kind {
                    Kind::Tcp | Kind::Udp => assert_eq!(be16(q, f.ip_len), Some(CLIENT_PORT)),
                    Kind::Echo => assert_eq!(be16(q, f.ip_len + 4), Some(CLIENT_PORT)),
                }
            }
        }
    }

    #[test]
    fn half_a_quoted_tcp_checksum_is_left_alone() {
        let keep = Some(20 + 17);
        let quote = quoted(
            NAT4,
            V4.server,
            1,
            transport(Kind::Tcp, NAT_PORT, true),
            keep,
        );
        let frame = icmp_error_from_isp(V4.outside_router, NAT4, 11, 0, &quote);
        let mut b = classified(&frame, WAN_PORT);
        rewrite_icmp_error(&mut b, true, ip(V4.client), CLIENT_PORT).unwrap();
        let il4 = usize::from(b.meta().inner_l4);
        assert_eq!(b.data()[il4 + 16], frame[il4 + 16]);
        assert_icmp_error_checksums_valid(b.data(), 14, il4 - 20, false);
    }

    #[test]
    fn quoted_ipv4_options_are_skipped() {
        let quote = |src: &str, port| {
            with_ipv4_options(&quoted(
                src,
                V4.server,
                1,
                transport(Kind::Udp, port, true),
                None,
            ))
        };
        let frame = icmp_error_from_isp(V4.outside_router, NAT4, 3, 3, &quote(NAT4, NAT_PORT));
        let mut b = classified(&frame, WAN_PORT);
        assert_eq!(b.meta().inner_l4 - b.meta().inner_l3, 24);
        rewrite_icmp_error(&mut b, true, ip(V4.client), CLIENT_PORT).unwrap();
        let expected = icmp_error_from_isp(
            V4.outside_router,
            V4.client,
            3,
            3,
            &quote(V4.client, CLIENT_PORT),
        );
        assert_rewritten(&b, &expected, true, "IHL 6");
    }

    #[test]
    fn quoted_udp_checksums_zero_and_all_ones() {
        let udp_checksum_at = 20 + 6;
        let frame_quoting = |src: &str, port: u16, payload: &'static [u8], zero: bool| {
            let mut q = quoted(src, V4.server, 1, udp(port, 53, payload), None);
            if zero {
                q[udp_checksum_at..udp_checksum_at + 2].copy_from_slice(&[0, 0]);
            }
            q
        };
        // No checksum (IPv4 only, RFC 768): stays none.
        let q = frame_quoting(NAT4, NAT_PORT, b"query", true);
        let mut b = classified(
            &icmp_error_from_isp(V4.outside_router, NAT4, 3, 3, &q),
            WAN_PORT,
        );
        rewrite_icmp_error(&mut b, true, ip(V4.client), CLIENT_PORT).unwrap();
        let expected = icmp_error_from_isp(
            V4.outside_router,
            V4.client,
            3,
            3,
            &frame_quoting(V4.client, CLIENT_PORT, b"query", true),
        );
        assert_rewritten(&b, &expected, false, "zero UDP checksum");

        // A payload word that makes the client's checksum compute to zero,
        // which the client sent as all ones.
        let probe = quoted(V4.client, V4.server, 1, udp(CLIENT_PORT, 53, &[0, 0]), None);
        let word = u16::from_be_bytes([probe[udp_checksum_at], probe[udp_checksum_at + 1]]);
        let payload: &'static [u8] = Box::leak(Box::new(word.to_be_bytes()));
        let client_side = frame_quoting(V4.client, CLIENT_PORT, payload, false);
        assert_eq!(
            &client_side[udp_checksum_at..udp_checksum_at + 2],
            &[0xFF, 0xFF]
        );
        let q = frame_quoting(NAT4, NAT_PORT, payload, false);
        let mut b = classified(
            &icmp_error_from_isp(V4.outside_router, NAT4, 3, 3, &q),
            WAN_PORT,
        );
        rewrite_icmp_error(&mut b, true, ip(V4.client), CLIENT_PORT).unwrap();
        let expected = icmp_error_from_isp(V4.outside_router, V4.client, 3, 3, &client_side);
        assert_rewritten(&b, &expected, true, "UDP checksum of zero");
    }

    /// A classified inbound error about a UDP packet, for the drop tests.
    fn inbound_error(f: &Family) -> HeapBuf {
        let quote = quoted(f.nat, f.server, 1, udp(NAT_PORT, 53, b"query"), None);
        classified(
            &icmp_error_from_isp(f.outside_router, f.nat, f.errors[0].0, 0, &quote),
            WAN_PORT,
        )
    }

    /// A named corruption of the metadata classify wrote.
    type MetaEdit = (&'static str, fn(&mut PacketMeta));

    #[test]
    fn drops_change_nothing() {
        let expect_drop = |mut b: HeapBuf, inbound: bool, addr: &str, reason: DropReason| {
            let before = b.data().to_vec();
            assert_eq!(
                rewrite_icmp_error(&mut b, inbound, ip(addr), CLIENT_PORT),
                Err(reason),
                "{:?}",
                b.meta()
            );
            assert_eq!(b.data(), &before[..], "{reason:?}: frame changed");
        };
        for f in [V4, V6] {
            let other_family = if f.ip_len == 20 { V6.client } else { V4.client };
            expect_drop(
                inbound_error(&f),
                true,
                other_family,
                DropReason::NoNatAddress,
            );

            // Metadata that does not describe the frame.
            let edits: [MetaEdit; 8] = [
                ("not an error", |m| m.inner_l3 = 0),
                ("inner_l3 inside the ICMP header", |m| m.inner_l3 -= 4),
                ("inner_l3 past the ICMP header", |m| m.inner_l3 += 2),
                ("inner_l4 inside the quoted header", |m| m.inner_l4 -= 4),
                ("inner_l4 past the quoted header", |m| m.inner_l4 += 4),
                ("l4 off", |m| m.l4_offset += 2),
                ("l3 off", |m| m.l3_offset += 1),
                ("everything past the end", |m| {
                    m.l3_offset = 3000;
                    m.l4_offset = 3020;
                    m.inner_l3 = 3028;
                    m.inner_l4 = 3048;
                }),
            ];
            for (what, edit) in edits {
                let mut b = inbound_error(&f);
                edit(b.meta_mut());
                let before = b.data().to_vec();
                assert_eq!(
                    rewrite_icmp_error(&mut b, true, ip(f.client), CLIENT_PORT),
                    Err(DropReason::IcmpErrorMalformed),
                    "{what}"
                );
                assert_eq!(b.data(), &before[..], "{what}");
            }

            // A frame cut short after classify: the outer length now claims
            // more than is there, or the 8 quoted transport bytes are gone.
            let mut b = inbound_error(&f);
            let il4 = usize::from(b.meta().inner_l4);
            assert!(b.set_len(il4 + 7));
            expect_drop(b, true, f.client, DropReason::IcmpErrorMalformed);

            // An echo whose identifier is not the NAT side's port: a reply
            // quoted inbound, a request quoted outbound.
            let reply = L4::EchoReply {
                ident: NAT_PORT,
                seq_no: 1,
            };
            let quote = quoted(f.server, f.client, 1, reply, None);
            let b = classified(
                &icmp_error_from_client(f.client, f.server, f.errors[0].0, 0, &quote),
                LAN_PORT,
            );
            expect_drop(b, true, f.client, DropReason::UnsupportedIcmp);
            let request = L4::EchoRequest {
                ident: NAT_PORT,
                seq_no: 1,
            };
            let quote = quoted(f.nat, f.server, 1, request, None);
            let b = classified(
                &icmp_error_from_isp(f.outside_router, f.nat, f.errors[0].0, 0, &quote),
                WAN_PORT,
            );
            expect_drop(b, false, f.nat, DropReason::UnsupportedIcmp);
        }

        // An ordinary packet is no ICMP error.
        let mut b = buf(
            &from_client(V4.client, V4.server, udp(1, 53, b"q")),
            LAN_PORT,
        );
        Classify::new(site(4)).classify(&mut b).unwrap();
        expect_drop(b, false, NAT4, DropReason::IcmpErrorMalformed);
    }

    /// The ICMP checksum of the error in `d` verifies (pseudo-header
    /// included for ICMPv6).
    fn icmp_checksum_ok(d: &[u8], m: &PacketMeta) -> bool {
        use smoltcp::wire::{Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet};
        let (l3, l4) = (usize::from(m.l3_offset), usize::from(m.l4_offset));
        if m.is_ipv6() {
            let ip6 = Ipv6Packet::new_unchecked(&d[l3..]);
            let end = l4 + usize::from(ip6.payload_len());
            Icmpv6Packet::new_unchecked(&d[l4..end])
                .verify_checksum(&ip6.src_addr(), &ip6.dst_addr())
        } else {
            let end = l3 + usize::from(Ipv4Packet::new_unchecked(&d[l3..]).total_len());
            Icmpv4Packet::new_unchecked(&d[l4..end]).verify_checksum()
        }
    }

    proptest! {
        /// Whatever follows a valid outer error header, a classified error
        /// is rewritten without panicking and its checksums stay valid.
        #[test]
        fn rewrite_keeps_every_checksum_valid(
            v6 in any::<bool>(),
            from_lan in any::<bool>(),
            type_index in 0usize..4,
            code in any::<u8>(),
            proto in prop_oneof![Just(1u8), Just(58), Just(6), Just(17)],
            cut in 0usize..80,
            // The quoted ICMP type, or the first byte of a source port.
            first in prop_oneof![Just(0u8), Just(8), Just(128), Just(129), any::<u8>()],
            mut tail in proptest::collection::vec(any::<u8>(), 8..64),
            junk in proptest::collection::vec(any::<u8>(), 0..32),
            port in any::<u16>(),
        ) {
            tail[0] = first;
            let (frame, in_port) = icmp_error_for_proptest(
                v6, from_lan, type_index, code, true, proto, cut, &tail, &junk,
            );
            let mut b = buf(&frame, in_port);
            if Classify::new(site(4)).classify(&mut b).is_err() {
                return Ok(());
            }
            let m = *b.meta();
            let f = if v6 { V6 } else { V4 };
            let (addr, inbound) = if from_lan { (f.nat, false) } else { (f.client, true) };
            let il3 = usize::from(m.inner_l3);
            let quoted_ihl = usize::from(m.inner_l4) - il3;
            let ip_ok = |d: &[u8]| v6 || crate::wire::checksum::checksum(&d[il3..il3 + quoted_ihl]) == 0;
            let before = (icmp_checksum_ok(b.data(), &m), ip_ok(b.data()));
            prop_assert!(before.0, "the generator checksums the message");
            match rewrite_icmp_error(&mut b, inbound, ip(addr), port) {
                Ok(()) => {
                    assert_checksums_valid(b.data(), usize::from(m.l3_offset));
                    prop_assert!(icmp_checksum_ok(b.data(), &m));
                    prop_assert_eq!(ip_ok(b.data()), before.1);
                }
                Err(r) => prop_assert_eq!(r, DropReason::UnsupportedIcmp, "only a mismatched echo"),
            }
        }

        /// Metadata pointing anywhere never makes the rewrite panic, and a
        /// refused rewrite leaves the frame as it was.
        #[test]
        fn never_panics_on_arbitrary_metadata(
            frame in proptest::collection::vec(any::<u8>(), 0..200),
            offsets in any::<[u8; 4]>(),
            inbound in any::<bool>(),
            v6 in any::<bool>(),
        ) {
            let mut b = buf(&frame, 0);
            let m = b.meta_mut();
            m.l3_offset = u16::from(offsets[0]);
            m.l4_offset = u16::from(offsets[1]);
            m.inner_l3 = u16::from(offsets[2]);
            m.inner_l4 = u16::from(offsets[3]);
            let addr = if v6 { ip(NAT6) } else { ip(NAT4) };
            if rewrite_icmp_error(&mut b, inbound, addr, 1).is_err() {
                prop_assert_eq!(b.data(), &frame[..]);
            }
        }
    }
}
