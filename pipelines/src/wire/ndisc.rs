//! IPv6 neighbour discovery messages (RFC 4861): the neighbour solicitation
//! and advertisement bodies (the ICMPv6 message from its type byte), their
//! link-layer address options, and solicited-node addresses.
//!
//! Readers index without checks: call them only on at least [`BODY_LEN`]
//! bytes.

use std::net::Ipv6Addr;

use super::icmp;
use super::ipv6;

pub const NS: u8 = 135;
pub const NA: u8 = 136;
/// NS/NA body: type, code, checksum, flags/reserved (4), target (16).
pub const BODY_LEN: usize = 24;
pub const FLAGS_OFFSET: usize = 4;
pub const TARGET: core::ops::Range<usize> = 8..24;
pub const OPTIONS_OFFSET: usize = 24;
pub const OPT_SOURCE_LLA: u8 = 1;
pub const OPT_TARGET_LLA: u8 = 2;
/// A link-layer address option for Ethernet: type, length (1 = 8 bytes), MAC.
pub const LLA_OPT_LEN: usize = 8;
pub const NA_ROUTER: u8 = 0x80;
pub const NA_SOLICITED: u8 = 0x40;
pub const NA_OVERRIDE: u8 = 0x20;
/// RFC 4861 7.1.1 / 7.1.2: the hop limit that proves the sender is on-link.
pub const HOP_LIMIT: u8 = 255;
/// All-nodes multicast (RFC 4291 2.7.1) and its Ethernet MAC.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

#[inline]
pub fn target(body: &[u8]) -> Ipv6Addr {
    ipv6::addr_at(&body[TARGET])
}

/// The link-layer address option of type `want` in ND options `opts`, if
/// any; `Err` when the options are malformed (RFC 4861 4.6: a zero length).
/// The one error has nothing to carry: the caller drops the message.
#[allow(clippy::result_unit_err)]
pub fn lla_option(opts: &[u8], want: u8) -> Result<Option<[u8; 6]>, ()> {
    let mut at = 0;
    let mut found = None;
    while at < opts.len() {
        let (Some(&kind), Some(&len8)) = (opts.get(at), opts.get(at + 1)) else {
            return Err(());
        };
        let len = usize::from(len8) * 8;
        if len == 0 || at + len > opts.len() {
            return Err(());
        }
        if kind == want && len == LLA_OPT_LEN {
            let mut m = [0u8; 6];
            m.copy_from_slice(&opts[at + 2..at + 8]);
            found = Some(m);
        }
        at += len;
    }
    Ok(found)
}

/// Writes an NS or NA body with one link-layer address option (of type
/// `opt`, carrying `mac`) into the first `BODY_LEN + LLA_OPT_LEN` bytes of
/// `body`, and its checksum for the pseudo-header `src` → `dst`.
#[allow(clippy::too_many_arguments)]
pub fn write(
    body: &mut [u8],
    kind: u8,
    flags: u8,
    target: &Ipv6Addr,
    opt: u8,
    mac: &[u8; 6],
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
) {
    let body = &mut body[..BODY_LEN + LLA_OPT_LEN];
    body[icmp::TYPE_OFFSET] = kind;
    body[icmp::CODE_OFFSET] = 0;
    icmp::set_checksum(body, 0);
    body[FLAGS_OFFSET] = flags;
    body[FLAGS_OFFSET + 1..TARGET.start].fill(0);
    body[TARGET].copy_from_slice(&target.octets());
    body[OPTIONS_OFFSET] = opt;
    body[OPTIONS_OFFSET + 1] = 1;
    body[OPTIONS_OFFSET + 2..OPTIONS_OFFSET + LLA_OPT_LEN].copy_from_slice(mac);
    let c = icmp::v6_checksum(src, dst, body);
    icmp::set_checksum(body, c);
}

/// The solicited-node multicast address of `a` (RFC 4291 2.7.1).
pub fn solicited_node(a: &Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet multicast MAC of IPv6 multicast address `a` (RFC 2464 7).
pub fn multicast_mac(a: &Ipv6Addr) -> [u8; 6] {
    let d = a.octets();
    [0x33, 0x33, d[12], d[13], d[14], d[15]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solicited_node_address() {
        let a: Ipv6Addr = "2001:db8:a::1:2:3".parse().unwrap();
        assert_eq!(
            solicited_node(&a),
            "ff02::1:ff02:3".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(multicast_mac(&ALL_NODES), ALL_NODES_MAC);
    }

    #[test]
    fn options_are_walked_and_checked() {
        #[rustfmt::skip]
        let opts = [
            5, 1, 0, 0, 0, 0, 5, 220,       // MTU option (8 bytes)
            1, 1, 2, 0, 0, 0, 0, 7,         // source link-layer address
        ];
        assert_eq!(lla_option(&opts, 1), Ok(Some([2, 0, 0, 0, 0, 7])));
        assert_eq!(lla_option(&opts, 2), Ok(None));
        assert_eq!(lla_option(&[1, 0, 0, 0, 0, 0, 0, 0], 1), Err(()));
        assert_eq!(lla_option(&[1, 2, 0, 0, 0, 0, 0, 0], 1), Err(()));
        assert_eq!(lla_option(&[1], 1), Err(()));
    }

    #[test]
    fn written_advertisement_is_what_smoltcp_sees() {
        use smoltcp::wire::{Icmpv6Packet, Icmpv6Repr, NdiscRepr};
        let (s, d): (Ipv6Addr, Ipv6Addr) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        let mut b = [0u8; BODY_LEN + LLA_OPT_LEN];
        write(
            &mut b,
            NA,
            NA_SOLICITED,
            &s,
            OPT_TARGET_LLA,
            &[2; 6],
            &s,
            &d,
        );
        assert_eq!(icmp::v6_checksum(&s, &d, &b), 0);
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        let r = Icmpv6Repr::parse(&s, &d, &p, &Default::default()).unwrap();
        match r {
            Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert { target_addr, .. }) => {
                assert_eq!(target_addr, s)
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(target(&b), s);
    }
}
