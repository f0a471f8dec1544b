//! Ethernet II header and the 802.1Q tag: field offsets, EtherTypes, the
//! header writer transmit uses, and MAC address text.
//!
//! Readers take the frame from its first byte and return `None` past its
//! end; writers take a frame at least [`l2_len`] bytes long.

use super::bytes::{be16, put_be16};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_IPV6: u16 = 0x86DD;

/// Destination MAC, source MAC, EtherType.
pub const HEADER_LEN: usize = 14;
pub const DST: core::ops::Range<usize> = 0..6;
pub const SRC: core::ops::Range<usize> = 6..12;
pub const ETHERTYPE_OFFSET: usize = 12;
/// An 802.1Q tag: TPID (0x8100, in the EtherType place), TCI, inner EtherType.
pub const VLAN_TAG_LEN: usize = 4;
pub const VLAN_TCI_OFFSET: usize = 14;
pub const VLAN_ETHERTYPE_OFFSET: usize = 16;
/// The VLAN id bits of the TCI (priority and DEI are not used).
pub const VLAN_ID_MASK: u16 = 0x0FFF;

pub const BROADCAST: [u8; 6] = [0xff; 6];

/// The outer EtherType (the TPID when the frame is tagged).
#[inline]
pub fn ethertype(frame: &[u8]) -> Option<u16> {
    be16(frame, ETHERTYPE_OFFSET)
}

/// The VLAN id of a tagged frame.
#[inline]
pub fn vlan_id(frame: &[u8]) -> Option<u16> {
    be16(frame, VLAN_TCI_OFFSET).map(|tci| tci & VLAN_ID_MASK)
}

/// The EtherType behind the tag of a tagged frame.
#[inline]
pub fn inner_ethertype(frame: &[u8]) -> Option<u16> {
    be16(frame, VLAN_ETHERTYPE_OFFSET)
}

/// The source MAC.
#[inline]
pub fn src(frame: &[u8]) -> Option<[u8; 6]> {
    frame.get(SRC)?.try_into().ok()
}

#[inline]
pub fn set_dst(frame: &mut [u8], mac: &[u8; 6]) {
    frame[DST].copy_from_slice(mac);
}

#[inline]
pub fn set_src(frame: &mut [u8], mac: &[u8; 6]) {
    frame[SRC].copy_from_slice(mac);
}

/// Length of the L2 header written for an egress port with VLAN `vlan`.
pub const fn l2_len(vlan: Option<u16>) -> usize {
    match vlan {
        Some(_) => HEADER_LEN + VLAN_TAG_LEN,
        None => HEADER_LEN,
    }
}

/// Writes an Ethernet header (with an 802.1Q tag when `vlan` is set) into
/// the first [`l2_len`] bytes of `frame`.
pub fn write_l2(frame: &mut [u8], dst: [u8; 6], src: [u8; 6], vlan: Option<u16>, ethertype: u16) {
    set_dst(frame, &dst);
    set_src(frame, &src);
    match vlan {
        Some(id) => {
            put_be16(frame, ETHERTYPE_OFFSET, ETHERTYPE_VLAN);
            put_be16(frame, VLAN_TCI_OFFSET, id & VLAN_ID_MASK);
            put_be16(frame, VLAN_ETHERTYPE_OFFSET, ethertype);
        }
        None => put_be16(frame, ETHERTYPE_OFFSET, ethertype),
    }
}

/// Ethernet header length of a frame whose tag (if any) is known to be
/// intact; used by tests and by callers that built the frame.
pub fn frame_l2(frame: &[u8]) -> usize {
    if ethertype(frame) == Some(ETHERTYPE_VLAN) {
        HEADER_LEN + VLAN_TAG_LEN
    } else {
        HEADER_LEN
    }
}

/// True for a unicast MAC other than all zeros.
pub fn is_unicast_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 0 && *mac != [0; 6]
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
        assert_eq!(vlan_id(&f), Some(100));
        assert_eq!(frame_l2(&f), 18);
        assert_eq!(src(&f), Some([2; 6]));
        write_l2(&mut f, [1; 6], [2; 6], None, ETHERTYPE_IPV6);
        assert_eq!(be16(&f, 12), Some(ETHERTYPE_IPV6));
        assert_eq!(be16(&f, 18), None);
        assert_eq!(frame_l2(&f), 14);
    }

    #[test]
    fn header_matches_smoltcp() {
        let mut f = [0u8; 14];
        write_l2(&mut f, [1; 6], [2; 6], None, ETHERTYPE_ARP);
        let e = smoltcp::wire::EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.dst_addr().as_bytes(), &[1; 6]);
        assert_eq!(e.src_addr().as_bytes(), &[2; 6]);
        assert_eq!(e.ethertype(), smoltcp::wire::EthernetProtocol::Arp);
    }
}
