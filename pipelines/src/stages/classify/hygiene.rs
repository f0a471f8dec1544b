//! Classify's L2 hygiene, martians and the packets the appliance answers
//! itself (echo replies, time exceeded), kept apart from the parse.
//!
//! - A frame must be addressed to the port's MAC, to broadcast (ARP only),
//!   or to an IPv6 multicast group the port belongs to (all-nodes, the
//!   solicited-node group of one of its addresses): else `not_for_us`
//!   (ports run promiscuous).
//! - From the LAN, a destination that is multicast, broadcast (limited or
//!   a LAN subnet's), loopback, link-local or unspecified is never
//!   translated (`martian_destination`); on an uplink, a source inside the
//!   LAN prefixes, a NAT address, loopback, multicast, broadcast or
//!   unspecified is dropped (`martian_source`).
//! - An echo request to one of the port's own addresses (the LAN gateway
//!   addresses; the NAT addresses of an uplink with `answer_ping`) is
//!   answered in place; a packet to be forwarded whose TTL / hop limit would
//!   reach zero is answered with time exceeded from the ingress port's
//!   address. Both pass the ICMP rate limit.

use std::net::IpAddr;

use super::{Classify, Parsed};
use crate::packet::buf::PacketBuf;
use crate::packet::counter::Sent;
use crate::packet::drop::DropReason;
use crate::packet::flow::proto;
use crate::stages::local::{self, icmp::first_of_family, icmp::is_special, IcmpError};
use crate::topology::{PortInfo, PortRole};
use crate::wire::ethernet::{self, ETHERTYPE_ARP};
use crate::wire::{icmp, ipv4, ipv6};

/// An 802.1Q tag with VLAN id 0 only carries a priority (802.1Q 9.6): the
/// frame is untagged as far as the VLAN goes.
pub(super) fn vlan_of(id: u16) -> Option<u16> {
    (id != 0).then_some(id)
}

impl Classify {
    /// Whether the frame `d` (EtherType `ethertype`) on `port` is
    /// addressed to the appliance.
    pub(super) fn for_us(&self, d: &[u8], port_id: u16, port: &PortInfo, ethertype: u16) -> bool {
        let Some(dst) = d.get(ethernet::DST) else {
            return false;
        };
        if dst == port.mac || port.role == PortRole::Unused {
            // A port without a role: `unknown_port` later.
            return true;
        }
        if dst == ethernet::BROADCAST {
            return ethertype == ETHERTYPE_ARP;
        }
        match dst {
            // IPv6 all-nodes.
            [0x33, 0x33, 0, 0, 0, 1] => true,
            // Solicited-node group: ff02::1:ffXX:XXXX, the low 24 bits of
            // one of the port's addresses.
            [0x33, 0x33, 0xff, a, b, c] => self
                .own_v6(port_id)
                .any(|o| o.octets()[13..] == [*a, *b, *c]),
            _ => false,
        }
    }

    /// The appliance's IPv6 addresses on port `port_id`.
    fn own_v6(&self, port_id: u16) -> impl Iterator<Item = std::net::Ipv6Addr> + '_ {
        let t = &self.topo;
        let role = t.ports.get(usize::from(port_id)).map(|p| &p.role);
        let lan = matches!(role, Some(PortRole::Lan));
        let ids: &[u8] = match role {
            Some(PortRole::Uplink(ids)) => ids,
            _ => &[],
        };
        let lan_addrs = t.lan_addrs.iter().filter(move |_| lan);
        let nat = ids
            .iter()
            .filter_map(|&u| t.uplinks.get(usize::from(u)))
            .flat_map(|u| u.nat_addrs.iter());
        lan_addrs.chain(nat).filter_map(|a| match a {
            IpAddr::V6(v) => Some(*v),
            IpAddr::V4(_) => None,
        })
    }

    /// Martians, echo requests to the appliance and expiring TTLs of the
    /// parsed IP packet `p` on `port_id`: `None` to classify it on,
    /// `Some(Ok)` when it was answered in place (a `Local` packet),
    /// `Some(Err)` to drop it.
    pub(super) fn local_ip<B: PacketBuf>(
        &self,
        pkt: &mut B,
        p: &Parsed,
        port_id: u16,
        port: &PortInfo,
    ) -> Option<Result<(), DropReason>> {
        let t = &self.topo;
        let v6 = p.src.is_ipv6();
        let lan = match &port.role {
            PortRole::Lan => true,
            PortRole::Uplink(_) => false,
            PortRole::Unused => return None,
        };
        if lan && (is_special(p.dst) || self.site.is_directed_broadcast(p.dst)) {
            return Some(Err(DropReason::MartianDestination));
        }
        if !lan && self.martian_source(p.src) {
            return Some(Err(DropReason::MartianSource));
        }
        if p.frag.is_later() {
            // No transport header, never answered (RFC 1122 3.2.2): the
            // fragment tracker takes it.
            return None;
        }
        let own = if lan {
            p.facts.dst_gateway
        } else {
            p.dst_nat
                .and_then(|u| t.uplinks.get(usize::from(u)))
                .is_some_and(|u| u.port == port_id)
        };
        // A fragmented echo request is not answered (the reply would need
        // the whole datagram): it drops as `local_destination`.
        if own && !p.frag.fragment {
            if let Some(r) = self.echo(pkt, p, port_id, port, lan, v6) {
                return Some(r);
            }
        }
        if own == lan {
            // To the LAN gateway (not forwarded), or on an uplink to an
            // address not its own (classify drops it).
            return None;
        }
        if lan && !p.facts.src_lan {
            // Spoofed: classify drops it; never an error to that address.
            return None;
        }
        let ip = pkt.data().get(p.l3..p.frame_len)?;
        let ttl = if v6 {
            ipv6::hop_limit(ip)
        } else {
            ipv4::ttl(ip)
        };
        if ttl > 1 || !local::errors_allowed(ip, v6) {
            return None;
        }
        let Some(src) = (if lan {
            first_of_family(&t.lan_addrs, v6)
        } else {
            Some(p.dst)
        }) else {
            return Some(Err(DropReason::TtlExpired));
        };
        if !self.allow(p.src) {
            return Some(Err(DropReason::TtlExpired));
        }
        let mac = ethernet::src(pkt.data()).unwrap_or([0; 6]);
        pkt.set_len(p.frame_len);
        let r = local::error_in_place(
            pkt,
            p.l3,
            v6,
            IcmpError::TimeExceeded,
            src,
            port_id,
            port,
            mac,
        );
        if r.is_ok() {
            self.counters.count_sent(Sent::TimeExceeded);
        }
        Some(r)
    }

    /// An echo request to `p.dst`, one of the port's own addresses, is
    /// answered (unless the uplink does not answer pings, or the rate limit
    /// is spent); anything else to it is left to classify
    /// (`local_destination`, or the NAT).
    fn echo<B: PacketBuf>(
        &self,
        pkt: &mut B,
        p: &Parsed,
        port_id: u16,
        port: &PortInfo,
        lan: bool,
        v6: bool,
    ) -> Option<Result<(), DropReason>> {
        let t = &self.topo;
        let request = if v6 {
            icmp::V6_ECHO_REQUEST
        } else {
            icmp::V4_ECHO_REQUEST
        };
        let is_echo = p.flow.proto == if v6 { proto::ICMPV6 } else { proto::ICMP }
            && !p.is_icmp_error()
            && pkt.data().get(p.l4) == Some(&request);
        if !is_echo {
            return None;
        }
        let answers = lan
            || p.dst_nat
                .and_then(|u| t.uplinks.get(usize::from(u)))
                .is_some_and(|u| u.answer_ping);
        if !answers || is_special(p.src) {
            return None;
        }
        if !self.allow(p.src) {
            return Some(Err(DropReason::IcmpRateLimited));
        }
        let r = local::echo_reply(pkt, p.l3, p.l4, p.frame_len, v6, port_id, port);
        if r.is_ok() {
            self.counters.count_sent(Sent::EchoReply);
        }
        Some(r)
    }

    /// Takes a token of the ICMP rate limit for `dst`; counts a refusal.
    fn allow(&self, dst: IpAddr) -> bool {
        let ok = self
            .icmp_limit
            .try_borrow_mut()
            .is_ok_and(|mut l| l.allow(dst, self.now));
        if !ok {
            self.counters.count_sent(Sent::IcmpRateLimited);
        }
        ok
    }
}

impl Classify {
    /// Sources an uplink packet never comes from.
    fn martian_source(&self, a: IpAddr) -> bool {
        let bad = match a {
            IpAddr::V4(v) => {
                v.is_multicast() || v.is_broadcast() || v.is_loopback() || v.octets()[0] == 0
            }
            IpAddr::V6(v) => v.is_multicast() || v.is_loopback() || v.is_unspecified(),
        };
        bad || self.site.is_lan(a) || self.topo.nat_addr_uplink.contains_key(&a)
    }
}
