//! Wire formats the stages need beyond smoltcp's `wire` views.
//!
//! The IP, TCP, UDP, ICMP and ARP views are smoltcp's (`smoltcp::wire`,
//! re-exported here); they are used only after [`crate::stages::classify`] has checked
//! every length they rely on, so no getter can panic. This module adds what
//! smoltcp lacks: the 802.1Q tag and the Ethernet header writer used by
//! transmit.

pub mod checksum;
pub mod tcp;

pub use smoltcp::wire::{
    ArpPacket, EthernetFrame, Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet, TcpPacket,
    UdpPacket,
};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_IPV6: u16 = 0x86DD;

pub const ETH_HEADER_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;
pub const IPV4_MIN_HEADER_LEN: usize = 20;
pub const IPV6_HEADER_LEN: usize = 40;
pub const TCP_MIN_HEADER_LEN: usize = 20;
pub const UDP_HEADER_LEN: usize = 8;
pub const ICMP_HEADER_LEN: usize = 8;

/// Reads a big-endian u16 at `at`; `None` past the end.
#[inline]
pub fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

#[inline]
pub fn put_be16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Length of the L2 header written for an egress port with VLAN `vlan`.
pub const fn l2_len(vlan: Option<u16>) -> usize {
    match vlan {
        Some(_) => ETH_HEADER_LEN + VLAN_TAG_LEN,
        None => ETH_HEADER_LEN,
    }
}

/// Writes an Ethernet header (with an 802.1Q tag when `vlan` is set) into
/// the first [`l2_len`] bytes of `frame`.
pub fn write_l2(frame: &mut [u8], dst: [u8; 6], src: [u8; 6], vlan: Option<u16>, ethertype: u16) {
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    match vlan {
        Some(id) => {
            put_be16(frame, 12, ETHERTYPE_VLAN);
            put_be16(frame, 14, id & 0x0FFF);
            put_be16(frame, 16, ethertype);
        }
        None => put_be16(frame, 12, ethertype),
    }
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m = parse_mac("02:00:5e:10:00:ff").unwrap();
        assert_eq!(fmt_mac(&m), "02:00:5e:10:00:ff");
        assert!(parse_mac("02:00:5e:10:00").is_none());
        assert!(parse_mac("02:00:5e:10:00:ff:01").is_none());
        assert!(parse_mac("02:00:5e:10:00:fg").is_none());
    }

    #[test]
    fn l2_with_and_without_tag() {
        let mut f = [0u8; 18];
        write_l2(&mut f, [1; 6], [2; 6], Some(100), ETHERTYPE_IPV4);
        assert_eq!(be16(&f, 12), Some(ETHERTYPE_VLAN));
        assert_eq!(be16(&f, 14), Some(100));
        assert_eq!(be16(&f, 16), Some(ETHERTYPE_IPV4));
        write_l2(&mut f, [1; 6], [2; 6], None, ETHERTYPE_IPV6);
        assert_eq!(be16(&f, 12), Some(ETHERTYPE_IPV6));
        assert_eq!(be16(&f, 18), None);
    }
}
