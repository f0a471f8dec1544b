//! What the appliance originates at the IP layer, shared by classify and
//! transmit (not a stage of its own): ICMP echo replies for its own
//! addresses and ICMP errors (time exceeded, fragmentation needed, packet
//! too big), all built in place in the buffer of the packet that caused
//! them and sent back out of the port that packet came in on
//! (`Direction::Local`); the per-destination rate limit they pass
//! ([`limit`]); IPv4 fragmentation on egress ([`frag`]).
//!
//! Rules (RFC 1122 3.2.2, RFC 1812 4.3.2.7, RFC 4443 2.4 (e)): no error is
//! sent about an ICMP error, a fragment other than the first, or a packet
//! to or from a multicast or broadcast address; the callers check the
//! addresses (classify drops martians first), [`errors_allowed`] the rest.

pub mod frag;
pub mod icmp;
pub mod limit;
#[cfg(test)]
mod tests;

pub use icmp::{echo_reply, error_in_place, restore_quote, IcmpError};
pub use limit::IcmpLimiter;

use crate::packet::flow::proto;
use crate::wire::{icmp as wicmp, ipv4, ipv6};

/// Whether an ICMP error may be sent about the datagram `ip` (its IP
/// header first; IPv6 when `v6`): not about an ICMP error (nor an unknown
/// ICMP type), not about a non-first fragment.
pub fn errors_allowed(ip: &[u8], v6: bool) -> bool {
    let (protocol, l4) = if v6 {
        if ip.len() < ipv6::HEADER_LEN {
            return false;
        }
        (ipv6::next_header(ip), ipv6::HEADER_LEN)
    } else {
        if ip.len() < ipv4::MIN_HEADER_LEN {
            return false;
        }
        if ipv4::flags_frag(ip) & ipv4::FRAG_OFFSET_MASK != 0 {
            return false;
        }
        (ipv4::proto(ip), ipv4::header_len(ip))
    };
    if v6 && protocol == ipv6::NEXT_FRAGMENT {
        // A fragment header: only the first fragment (offset 0).
        return ip
            .get(l4 + 2..l4 + 4)
            .is_some_and(|o| u16::from_be_bytes([o[0], o[1]]) & 0xFFF8 == 0);
    }
    match protocol {
        proto::ICMP if !v6 => ip
            .get(l4)
            .is_some_and(|&t| matches!(t, wicmp::V4_ECHO_REQUEST | wicmp::V4_ECHO_REPLY)),
        // Informational ICMPv6 messages have types 128..=255.
        proto::ICMPV6 if v6 => ip.get(l4).is_some_and(|&t| t >= 128),
        _ => true,
    }
}
