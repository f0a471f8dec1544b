//! ARP for IPv4 over Ethernet (RFC 826): field offsets, readers and the
//! writer of a whole ARP packet. Readers index without checks: call them
//! only on at least [`LEN`] bytes.

use std::net::Ipv4Addr;

use super::bytes::{be16, put_be16};
use super::ethernet::ETHERTYPE_IPV4;

/// An Ethernet/IPv4 ARP packet.
pub const LEN: usize = 28;
pub const HTYPE_OFFSET: usize = 0;
pub const PTYPE_OFFSET: usize = 2;
pub const HLEN_OFFSET: usize = 4;
pub const PLEN_OFFSET: usize = 5;
pub const OPER_OFFSET: usize = 6;
/// Sender hardware and protocol address, target hardware and protocol address.
pub const SHA: core::ops::Range<usize> = 8..14;
pub const SPA: core::ops::Range<usize> = 14..18;
pub const THA: core::ops::Range<usize> = 18..24;
pub const TPA: core::ops::Range<usize> = 24..28;

pub const HTYPE_ETHERNET: u16 = 1;
pub const REQUEST: u16 = 1;
pub const REPLY: u16 = 2;

/// Ethernet hardware (1), IPv4 protocol, 6-byte and 4-byte addresses.
#[inline]
pub fn is_ethernet_ipv4(arp: &[u8]) -> bool {
    be16(arp, HTYPE_OFFSET) == Some(HTYPE_ETHERNET)
        && be16(arp, PTYPE_OFFSET) == Some(ETHERTYPE_IPV4)
        && arp[HLEN_OFFSET] == 6
        && arp[PLEN_OFFSET] == 4
}

#[inline]
pub fn oper(arp: &[u8]) -> u16 {
    be16(arp, OPER_OFFSET).unwrap_or(0)
}

fn mac(b: &[u8]) -> [u8; 6] {
    let mut m = [0u8; 6];
    m.copy_from_slice(b);
    m
}

fn v4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

#[inline]
pub fn sha(arp: &[u8]) -> [u8; 6] {
    mac(&arp[SHA])
}

#[inline]
pub fn spa(arp: &[u8]) -> Ipv4Addr {
    v4(&arp[SPA])
}

#[inline]
pub fn tha(arp: &[u8]) -> [u8; 6] {
    mac(&arp[THA])
}

#[inline]
pub fn tpa(arp: &[u8]) -> Ipv4Addr {
    v4(&arp[TPA])
}

/// Writes a whole Ethernet/IPv4 ARP packet into the first [`LEN`] bytes.
pub fn write(
    arp: &mut [u8],
    oper: u16,
    sha: &[u8; 6],
    spa: Ipv4Addr,
    tha: &[u8; 6],
    tpa: Ipv4Addr,
) {
    put_be16(arp, HTYPE_OFFSET, HTYPE_ETHERNET);
    put_be16(arp, PTYPE_OFFSET, ETHERTYPE_IPV4);
    arp[HLEN_OFFSET] = 6;
    arp[PLEN_OFFSET] = 4;
    put_be16(arp, OPER_OFFSET, oper);
    arp[SHA].copy_from_slice(sha);
    arp[SPA].copy_from_slice(&spa.octets());
    arp[THA].copy_from_slice(tha);
    arp[TPA].copy_from_slice(&tpa.octets());
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr};

    #[test]
    fn written_packet_is_what_smoltcp_sees() {
        let mut b = [0u8; LEN];
        let (s, t) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
        write(&mut b, REQUEST, &[2; 6], s, &[0; 6], t);
        assert!(is_ethernet_ipv4(&b));
        assert_eq!(
            (oper(&b), sha(&b), spa(&b), tha(&b), tpa(&b)),
            (REQUEST, [2; 6], s, [0; 6], t)
        );
        let p = ArpPacket::new_checked(&b[..]).unwrap();
        match ArpRepr::parse(&p).unwrap() {
            ArpRepr::EthernetIpv4 {
                operation,
                source_protocol_addr,
                target_protocol_addr,
                ..
            } => {
                assert_eq!(operation, ArpOperation::Request);
                assert_eq!(source_protocol_addr, s);
                assert_eq!(target_protocol_addr, t);
            }
            r => panic!("{r:?}"),
        }
    }
}
