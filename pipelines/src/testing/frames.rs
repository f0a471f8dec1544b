//! Well-formed frames: a transport ([`L4`]) in an IPv4 or IPv6 datagram in
//! an Ethernet frame, checksummed by smoltcp's emitters.

use std::net::{IpAddr, Ipv6Addr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpControl, TcpPacket,
    TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};

use super::{ip, CLIENT_MAC, ISP0_MAC, LAN_MAC, WAN_MAC};
use crate::wire::{write_l2, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_HEADER_LEN, VLAN_TAG_LEN};

/// The transport part of a test packet.
#[derive(Clone, Copy, Debug)]
pub enum L4<'a> {
    Tcp {
        src_port: u16,
        dst_port: u16,
        control: TcpControl,
        ack: Option<u32>,
        payload: &'a [u8],
    },
    Udp {
        src_port: u16,
        dst_port: u16,
        payload: &'a [u8],
    },
    /// ICMP (v4 or v6, after the IP version) echo request.
    EchoRequest { ident: u16, seq_no: u16 },
    /// ICMP (v4 or v6) echo reply.
    EchoReply { ident: u16, seq_no: u16 },
}

/// A TCP segment with `control` and no payload.
pub fn tcp(src_port: u16, dst_port: u16, control: TcpControl) -> L4<'static> {
    L4::Tcp {
        src_port,
        dst_port,
        control,
        ack: None,
        payload: &[],
    }
}

pub fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> L4<'_> {
    L4::Udp {
        src_port,
        dst_port,
        payload,
    }
}

pub(crate) fn v6_of(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// The transport header and payload, checksummed for `src` → `dst`.
fn transport(src: IpAddr, dst: IpAddr, l4: &L4) -> (IpProtocol, Vec<u8>) {
    let caps = ChecksumCapabilities::default();
    let (s, d) = (IpAddress::from(src), IpAddress::from(dst));
    match *l4 {
        L4::Tcp {
            src_port,
            dst_port,
            control,
            ack,
            payload,
        } => {
            let repr = TcpRepr {
                src_port,
                dst_port,
                control,
                seq_number: TcpSeqNumber(1000),
                ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
                window_len: 64_000,
                window_scale: None,
                max_seg_size: None,
                sack_permitted: false,
                sack_ranges: [None; 3],
                timestamp: None,
                payload,
            };
            let mut b = vec![0; repr.buffer_len()];
            repr.emit(&mut TcpPacket::new_unchecked(&mut b[..]), &s, &d, &caps);
            (IpProtocol::Tcp, b)
        }
        L4::Udp {
            src_port,
            dst_port,
            payload,
        } => {
            let repr = UdpRepr { src_port, dst_port };
            let mut b = vec![0; 8 + payload.len()];
            let mut pkt = UdpPacket::new_unchecked(&mut b[..]);
            repr.emit(
                &mut pkt,
                &s,
                &d,
                payload.len(),
                |p| p.copy_from_slice(payload),
                &caps,
            );
            (IpProtocol::Udp, b)
        }
        L4::EchoRequest { ident, seq_no } | L4::EchoReply { ident, seq_no } => {
            let request = matches!(l4, L4::EchoRequest { .. });
            let data: &[u8] = b"ping";
            if src.is_ipv4() {
                use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr};
                let repr = if request {
                    Icmpv4Repr::EchoRequest {
                        ident,
                        seq_no,
                        data,
                    }
                } else {
                    Icmpv4Repr::EchoReply {
                        ident,
                        seq_no,
                        data,
                    }
                };
                let mut b = vec![0; repr.buffer_len()];
                repr.emit(&mut Icmpv4Packet::new_unchecked(&mut b[..]), &caps);
                (IpProtocol::Icmp, b)
            } else {
                use smoltcp::wire::{Icmpv6Packet, Icmpv6Repr};
                let repr = if request {
                    Icmpv6Repr::EchoRequest {
                        ident,
                        seq_no,
                        data,
                    }
                } else {
                    Icmpv6Repr::EchoReply {
                        ident,
                        seq_no,
                        data,
                    }
                };
                let mut b = vec![0; repr.buffer_len()];
                repr.emit(
                    &v6_of(src),
                    &v6_of(dst),
                    &mut Icmpv6Packet::new_unchecked(&mut b[..]),
                    &caps,
                );
                (IpProtocol::Icmpv6, b)
            }
        }
    }
}

/// An IPv4 or IPv6 datagram (after the family of `src`) carrying `l4`.
pub fn ip_packet(src: IpAddr, dst: IpAddr, ttl: u8, l4: &L4) -> Vec<u8> {
    let (next_header, payload) = transport(src, dst, l4);
    raw_ip(src, dst, next_header.into(), ttl, &payload)
}

/// An Ethernet frame (802.1Q-tagged when `vlan` is set) around `payload`.
pub fn ethernet(
    dst: [u8; 6],
    src: [u8; 6],
    vlan: Option<u16>,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let l2 = ETH_HEADER_LEN + if vlan.is_some() { VLAN_TAG_LEN } else { 0 };
    let mut f = vec![0; l2 + payload.len()];
    write_l2(&mut f, dst, src, vlan, ethertype);
    f[l2..].copy_from_slice(payload);
    f
}

/// The EtherType of an IP datagram from `src`.
pub fn ethertype_of(src: IpAddr) -> u16 {
    if src.is_ipv4() {
        ETHERTYPE_IPV4
    } else {
        ETHERTYPE_IPV6
    }
}

/// A frame a LAN client sends to the appliance: `src` → `dst`, TTL 64.
pub fn from_client(src: &str, dst: &str, l4: L4) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    ethernet(
        LAN_MAC,
        CLIENT_MAC,
        None,
        ethertype_of(s),
        &ip_packet(s, d, 64, &l4),
    )
}

/// A frame the ISP router of uplink 0 delivers on the untagged WAN port.
pub fn from_isp(src: &str, dst: &str, l4: L4) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    ethernet(
        WAN_MAC,
        ISP0_MAC,
        None,
        ethertype_of(s),
        &ip_packet(s, d, 64, &l4),
    )
}

/// A frame from the client whose IP header (valid, checksummed) carries
/// protocol `proto` and the raw bytes `payload`.
pub fn client_raw(src: &str, dst: &str, proto: u8, payload: &[u8]) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    ethernet(
        LAN_MAC,
        CLIENT_MAC,
        None,
        ethertype_of(s),
        &raw_ip(s, d, proto, 64, payload),
    )
}

/// An IPv4 or IPv6 datagram with a valid header around raw `payload`.
pub fn raw_ip(src: IpAddr, dst: IpAddr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let next_header = IpProtocol::from(proto);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let repr = Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                next_header,
                payload_len: payload.len(),
                hop_limit: ttl,
            };
            let mut b = vec![0; repr.buffer_len() + payload.len()];
            repr.emit(
                &mut Ipv4Packet::new_unchecked(&mut b[..]),
                &ChecksumCapabilities::default(),
            );
            b[repr.buffer_len()..].copy_from_slice(payload);
            b
        }
        _ => {
            let repr = Ipv6Repr {
                src_addr: v6_of(src),
                dst_addr: v6_of(dst),
                next_header,
                payload_len: payload.len(),
                hop_limit: ttl,
            };
            let mut b = vec![0; repr.buffer_len() + payload.len()];
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut b[..]));
            b[repr.buffer_len()..].copy_from_slice(payload);
            b
        }
    }
}
