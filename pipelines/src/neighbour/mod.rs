//! ARP (RFC 826) and IPv6 neighbour discovery (RFC 4861): the appliance
//! answers for its own addresses and resolves its uplinks' next hops.
//!
//! What it owns:
//! - [`Neighbours`]: the next hop of every uplink and family, with the MAC
//!   either fixed by the configuration (`next_hop_mac`) or learned from the
//!   wire. Shared by every lcore through the [`Topology`]; classify writes a
//!   learned MAC with one atomic store, transmit reads it with one atomic
//!   load, so no lock is taken on the packet path.
//! - [`answer`]: turns an ARP request or a neighbour solicitation for one of
//!   the appliance's addresses on the receiving port into the reply, in
//!   place (no allocation), and learns next hops' MACs from what it sees.
//! - [`Solicitor`]: when to send the next ARP request / neighbour
//!   solicitation for each dynamic next hop (pure: `now` is an argument), and
//!   [`write_request`], which builds one.
//!
//! Which addresses the appliance owns on a port: on the LAN port, the LAN
//! gateway addresses (`lan.addresses`); on an uplink port, every NAT address
//! of the uplinks leaving through it. Frames are hostile: every length is
//! checked, a malformed frame is dropped with a reason, nothing panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::packet::drop::DropReason;
use crate::packet::time::Nanos;
use crate::topology::{PortRole, Topology, UplinkId, UplinkInfo};
use crate::wire::checksum;
use crate::wire::{
    be16, l2_len, put_be16, write_l2, ETHERTYPE_ARP, ETHERTYPE_IPV6, ETH_HEADER_LEN,
    IPV6_HEADER_LEN,
};

const ARP_LEN: usize = 28;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const ICMPV6: u8 = 58;
const ND_NS: u8 = 135;
const ND_NA: u8 = 136;
/// NS/NA body: type, code, checksum, flags/reserved (4), target (16).
const ND_BODY: usize = 24;
const OPT_SOURCE_LLA: u8 = 1;
const OPT_TARGET_LLA: u8 = 2;
/// A link-layer address option for Ethernet: type, length (1 = 8 bytes), MAC.
const LLA_OPT_LEN: usize = 8;
const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;

/// Bit set in a stored MAC word when the MAC is known.
const KNOWN: u64 = 1 << 48;

fn mac_word(mac: [u8; 6]) -> u64 {
    let mut w = [0u8; 8];
    w[2..].copy_from_slice(&mac);
    u64::from_be_bytes(w) | KNOWN
}

fn word_mac(w: u64) -> Option<[u8; 6]> {
    if w & KNOWN == 0 {
        return None;
    }
    let b = (w & !KNOWN).to_be_bytes();
    Some([b[2], b[3], b[4], b[5], b[6], b[7]])
}

fn is_unicast_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 0 && *mac != [0; 6]
}

/// One uplink's next hop in one IP family.
#[derive(Debug)]
pub struct NextHop {
    pub uplink: UplinkId,
    /// Port the next hop is reached through.
    pub port: u16,
    /// Its address; `None` when the MAC is fixed by the configuration and
    /// the address is not known.
    pub ip: Option<IpAddr>,
    /// The MAC came from the configuration and is never replaced.
    pub fixed: bool,
    mac: AtomicU64,
    /// How many times the MAC was learned (a solicitor compares it to see
    /// whether its last request was answered).
    learned: AtomicU64,
}

impl NextHop {
    pub fn mac(&self) -> Option<[u8; 6]> {
        word_mac(self.mac.load(Ordering::Relaxed))
    }

    pub fn times_learned(&self) -> u64 {
        self.learned.load(Ordering::Relaxed)
    }

    /// The family this next hop serves.
    pub fn is_v6(&self) -> bool {
        matches!(self.ip, Some(IpAddr::V6(_)))
    }
}

/// Every uplink's next hops. Built once with the topology; the MACs change
/// as they are learned.
#[derive(Debug, Default)]
pub struct Neighbours {
    hops: Vec<NextHop>,
    /// Per uplink: index into `hops` for IPv4 and for IPv6.
    by_uplink: Vec<[Option<u16>; 2]>,
}

impl Neighbours {
    /// An uplink with a non-zero `next_hop_mac` uses it for both families
    /// (fixed); otherwise each family with a configured next-hop address is
    /// resolved on the wire.
    pub fn new(uplinks: &[UplinkInfo]) -> Neighbours {
        let mut n = Neighbours::default();
        for (i, u) in uplinks.iter().enumerate() {
            let mut slots = [None, None];
            let fixed = u.next_hop_mac != [0; 6];
            for (fam, ip) in [
                (0, u.next_hop_v4.map(IpAddr::V4)),
                (1, u.next_hop_v6.map(IpAddr::V6)),
            ] {
                if !fixed && ip.is_none() {
                    continue;
                }
                slots[fam] = Some(n.hops.len() as u16);
                n.hops.push(NextHop {
                    uplink: i as UplinkId,
                    port: u.port,
                    ip,
                    fixed,
                    mac: AtomicU64::new(if fixed { mac_word(u.next_hop_mac) } else { 0 }),
                    learned: AtomicU64::new(0),
                });
            }
            n.by_uplink.push(slots);
        }
        n
    }

    /// The MAC to send to for `uplink`'s next hop in the family of `v6`;
    /// `None` while it is unresolved.
    #[inline]
    pub fn mac_for(&self, uplink: UplinkId, v6: bool) -> Option<[u8; 6]> {
        let i = (*self.by_uplink.get(usize::from(uplink))?)[usize::from(v6)]?;
        self.hops.get(usize::from(i))?.mac()
    }

    pub fn hops(&self) -> &[NextHop] {
        &self.hops
    }

    /// Records that `ip` on `port` has `mac`, if `ip` is a dynamic next hop
    /// there. Returns whether something was learned.
    pub fn learn(&self, port: u16, ip: IpAddr, mac: [u8; 6]) -> bool {
        if !is_unicast_mac(&mac) {
            return false;
        }
        let mut any = false;
        for h in &self.hops {
            if !h.fixed && h.port == port && h.ip == Some(ip) {
                h.mac.store(mac_word(mac), Ordering::Relaxed);
                h.learned.fetch_add(1, Ordering::Relaxed);
                any = true;
            }
        }
        any
    }
}

/// What [`answer`] did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The frame was rewritten into the reply; send it back out of the port
    /// it came in on, as is (its L2 header is complete).
    Reply,
    /// Nothing to send (a reply consumed after learning, a request for
    /// someone else): drop it with this reason.
    Consumed(DropReason),
}

/// Whether `a` is one of the appliance's own addresses on `port`.
fn owns(topo: &Topology, port: u16, a: IpAddr) -> bool {
    match topo.ports.get(usize::from(port)).map(|p| &p.role) {
        Some(PortRole::Lan) => topo.lan_addrs.contains(&a),
        Some(PortRole::Uplink(ids)) => topo
            .nat_addr_uplink
            .get(&a)
            .is_some_and(|u| ids.contains(u)),
        _ => false,
    }
}

fn port_mac(topo: &Topology, port: u16) -> [u8; 6] {
    topo.ports.get(usize::from(port)).map_or([0; 6], |p| p.mac)
}

/// Handles an ARP frame received on `port` whose L2 header is `l2` bytes
/// long. Learns the sender if it is a next hop; rewrites a request for one
/// of the appliance's addresses into the reply.
pub fn answer_arp(frame: &mut [u8], l2: usize, port: u16, topo: &Topology) -> Answer {
    let Some(arp) = frame.get(l2..l2 + ARP_LEN) else {
        return Answer::Consumed(DropReason::ArpMalformed);
    };
    // Ethernet hardware (1), IPv4 protocol, 6-byte and 4-byte addresses.
    if be16(arp, 0) != Some(1) || be16(arp, 2) != Some(0x0800) || arp[4] != 6 || arp[5] != 4 {
        return Answer::Consumed(DropReason::ArpMalformed);
    }
    let op = be16(arp, 6).unwrap_or(0);
    let mut sha = [0u8; 6];
    sha.copy_from_slice(&arp[8..14]);
    let spa = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
    let tpa = Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]);
    let learned = topo.neighbours.learn(port, IpAddr::V4(spa), sha);
    if op == ARP_REQUEST && owns(topo, port, IpAddr::V4(tpa)) && is_unicast_mac(&sha) {
        let mine = port_mac(topo, port);
        frame.copy_within(6..12, 0);
        frame[6..12].copy_from_slice(&mine);
        let arp = &mut frame[l2..l2 + ARP_LEN];
        put_be16(arp, 6, ARP_REPLY);
        arp[18..24].copy_from_slice(&sha);
        arp[24..28].copy_from_slice(&spa.octets());
        arp[8..14].copy_from_slice(&mine);
        arp[14..18].copy_from_slice(&tpa.octets());
        return Answer::Reply;
    }
    Answer::Consumed(if learned || op == ARP_REPLY {
        DropReason::NeighbourConsumed
    } else {
        DropReason::ArpUnhandled
    })
}

/// The link-layer address option of type `want` in ND options `opts`, if
/// any; `Err` when the options are malformed (RFC 4861 4.6: a zero length).
fn lla_option(opts: &[u8], want: u8) -> Result<Option<[u8; 6]>, ()> {
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

fn v6(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

/// The ICMPv6 checksum of `body` between `src` and `dst` (RFC 4443 2.3).
fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, body: &[u8]) -> u16 {
    let mut acc = checksum::sum(&src.octets(), 0);
    acc = checksum::sum(&dst.octets(), acc);
    acc = checksum::sum(&(body.len() as u32).to_be_bytes(), acc);
    acc = checksum::sum(&[0, 0, 0, ICMPV6], acc);
    !checksum::fold(checksum::sum(body, acc))
}

/// Handles an IPv6 neighbour discovery message (ICMPv6 type 133..=137) at
/// `l3` received on `port`. A neighbour solicitation for one of the
/// appliance's addresses becomes the advertisement (the frame's length is
/// returned in `new_len`, which the caller applies); advertisements and
/// solicitations from next hops teach their MACs. Router solicitations,
/// router advertisements and redirects are ignored: the appliance's routes
/// are its configuration.
pub fn answer_nd(
    frame: &mut [u8],
    l3: usize,
    port: u16,
    topo: &Topology,
    new_len: &mut usize,
) -> Answer {
    let bad = Answer::Consumed(DropReason::NdMalformed);
    let Some(ip) = frame.get(l3..l3 + IPV6_HEADER_LEN) else {
        return bad;
    };
    let payload = usize::from(be16(ip, 4).unwrap_or(0));
    // RFC 4861 7.1.1 / 7.1.2: hop limit 255 proves the sender is on-link.
    if ip[6] != ICMPV6 || ip[7] != 255 {
        return bad;
    }
    let (src, dst) = (v6(&ip[8..24]), v6(&ip[24..40]));
    let start = l3 + IPV6_HEADER_LEN;
    let Some(body) = frame.get(start..start + payload) else {
        return bad;
    };
    let kind = body.first().copied().unwrap_or(0);
    if kind != ND_NS && kind != ND_NA {
        return Answer::Consumed(DropReason::NeighborDiscovery);
    }
    if body.len() < ND_BODY || body[1] != 0 || icmpv6_checksum(&src, &dst, body) != 0 {
        return bad;
    }
    let target = v6(&body[8..24]);
    let Ok(opt) = lla_option(
        &body[ND_BODY..],
        if kind == ND_NS {
            OPT_SOURCE_LLA
        } else {
            OPT_TARGET_LLA
        },
    ) else {
        return bad;
    };
    let mut eth_src = [0u8; 6];
    eth_src.copy_from_slice(&frame[6..12]);
    if kind == ND_NA {
        let learned = topo
            .neighbours
            .learn(port, IpAddr::V6(target), opt.unwrap_or(eth_src));
        let _ = learned;
        return Answer::Consumed(DropReason::NeighbourConsumed);
    }
    // A solicitation: its sender (unless it is doing duplicate address
    // detection from ::) may be a next hop.
    let dad = src.is_unspecified();
    if !dad {
        if let Some(m) = opt {
            topo.neighbours.learn(port, IpAddr::V6(src), m);
        }
    }
    if !owns(topo, port, IpAddr::V6(target)) {
        return Answer::Consumed(DropReason::NeighborDiscovery);
    }
    let mine = port_mac(topo, port);
    let lan = topo.lan_port == port;
    // RFC 4861 7.2.4: to the solicitor, or to all nodes after DAD.
    let to = if dad {
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)
    } else {
        src
    };
    let len = ND_BODY + LLA_OPT_LEN;
    let end = start + len;
    if frame.len() < end {
        // A solicitation without a source option is 24 bytes; the frame
        // always has room for 8 more in practice (Ethernet minimum is 60),
        // but a short one cannot be answered in place.
        return bad;
    }
    let eth_dst = if dad {
        [0x33, 0x33, 0, 0, 0, 1]
    } else {
        eth_src
    };
    frame[0..6].copy_from_slice(&eth_dst);
    frame[6..12].copy_from_slice(&mine);
    let ip = &mut frame[l3..l3 + IPV6_HEADER_LEN];
    put_be16(ip, 4, len as u16);
    ip[8..24].copy_from_slice(&target.octets());
    ip[24..40].copy_from_slice(&to.octets());
    let body = &mut frame[start..end];
    body[0] = ND_NA;
    body[1] = 0;
    body[2] = 0;
    body[3] = 0;
    body[4] = (if lan { NA_ROUTER } else { 0 }) | if dad { 0 } else { NA_SOLICITED } | NA_OVERRIDE;
    body[5..8].fill(0);
    body[8..24].copy_from_slice(&target.octets());
    body[24] = OPT_TARGET_LLA;
    body[25] = 1;
    body[26..32].copy_from_slice(&mine);
    let c = icmpv6_checksum(&target, &to, body);
    put_be16(body, 2, c);
    *new_len = end;
    Answer::Reply
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

/// Longest request [`write_request`] builds (an NS with a VLAN tag).
pub const REQUEST_MAX_LEN: usize = 18 + IPV6_HEADER_LEN + ND_BODY + LLA_OPT_LEN;

/// Writes an ARP request or a neighbour solicitation for `hop` into `out`
/// (at least [`REQUEST_MAX_LEN`] bytes) as sent on its port; returns the
/// frame length, or `None` if the hop has no address to ask for or the
/// source address is missing.
pub fn write_request(topo: &Topology, hop: &NextHop, out: &mut [u8]) -> Option<usize> {
    let port = topo.ports.get(usize::from(hop.port))?;
    let uplink = topo.uplinks.get(usize::from(hop.uplink))?;
    let l2 = l2_len(port.vlan);
    match hop.ip? {
        IpAddr::V4(target) => {
            let src = uplink.nat_addrs.iter().find_map(|a| match a {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            })?;
            let len = (l2 + ARP_LEN).max(60);
            let out = out.get_mut(..len)?;
            out.fill(0);
            write_l2(out, [0xff; 6], port.mac, port.vlan, ETHERTYPE_ARP);
            let arp = &mut out[l2..l2 + ARP_LEN];
            put_be16(arp, 0, 1);
            put_be16(arp, 2, 0x0800);
            arp[4] = 6;
            arp[5] = 4;
            put_be16(arp, 6, ARP_REQUEST);
            arp[8..14].copy_from_slice(&port.mac);
            arp[14..18].copy_from_slice(&src.octets());
            arp[24..28].copy_from_slice(&target.octets());
            Some(len)
        }
        IpAddr::V6(target) => {
            let src = uplink.nat_addrs.iter().find_map(|a| match a {
                IpAddr::V6(a) => Some(*a),
                IpAddr::V4(_) => None,
            })?;
            let dst = solicited_node(&target);
            let body_len = ND_BODY + LLA_OPT_LEN;
            let len = l2 + IPV6_HEADER_LEN + body_len;
            let out = out.get_mut(..len)?;
            out.fill(0);
            let d = dst.octets();
            write_l2(
                out,
                [0x33, 0x33, d[12], d[13], d[14], d[15]],
                port.mac,
                port.vlan,
                ETHERTYPE_IPV6,
            );
            let ip = &mut out[l2..l2 + IPV6_HEADER_LEN];
            ip[0] = 0x60;
            put_be16(ip, 4, body_len as u16);
            ip[6] = ICMPV6;
            ip[7] = 255;
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&d);
            let body = &mut out[l2 + IPV6_HEADER_LEN..len];
            body[0] = ND_NS;
            body[8..24].copy_from_slice(&target.octets());
            body[24] = OPT_SOURCE_LLA;
            body[25] = 1;
            body[26..32].copy_from_slice(&port.mac);
            let c = icmpv6_checksum(&src, &dst, body);
            put_be16(body, 2, c);
            Some(len)
        }
    }
}

/// When to ask for each dynamic next hop: every `retry` while it is
/// unresolved, every `refresh` once resolved (a next hop whose MAC changes,
/// say after a router failover, is learned from its next reply or from its
/// own requests and gratuitous ARPs in between). Owned by the one lcore
/// that sends the requests.
#[derive(Debug)]
pub struct Solicitor {
    next: Vec<Nanos>,
    pub retry: Nanos,
    pub refresh: Nanos,
    /// Requests written, for stats.
    pub sent: u64,
}

impl Solicitor {
    pub const RETRY: Nanos = Nanos::from_secs(1);
    pub const REFRESH: Nanos = Nanos::from_secs(30);

    pub fn new(n: &Neighbours) -> Solicitor {
        Solicitor {
            next: vec![Nanos::ZERO; n.hops.len()],
            retry: Self::RETRY,
            refresh: Self::REFRESH,
            sent: 0,
        }
    }

    /// Calls `send(hop)` for each dynamic next hop whose request is due at
    /// `now`; `send` returns whether the request went out (if not, it is
    /// tried again on the next call).
    pub fn poll(&mut self, now: Nanos, n: &Neighbours, mut send: impl FnMut(&NextHop) -> bool) {
        for (i, hop) in n.hops.iter().enumerate() {
            if hop.fixed || hop.ip.is_none() || self.next.get(i).is_none_or(|&t| now < t) {
                continue;
            }
            if send(hop) {
                self.sent += 1;
                let every = if hop.mac().is_some() {
                    self.refresh
                } else {
                    self.retry
                };
                self.next[i] = now.saturating_add(every);
            }
        }
    }
}

/// Ethernet header length of a frame whose tag (if any) is known to be
/// intact; used by tests and by callers that built the frame.
pub fn frame_l2(frame: &[u8]) -> usize {
    if be16(frame, 12) == Some(crate::wire::ETHERTYPE_VLAN) {
        ETH_HEADER_LEN + crate::wire::VLAN_TAG_LEN
    } else {
        ETH_HEADER_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn ipv4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn mac_words_round_trip() {
        let m = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
        assert_eq!(word_mac(mac_word(m)), Some(m));
        assert_eq!(word_mac(0), None);
        assert_eq!(word_mac(mac_word([0; 6])), Some([0; 6]));
    }

    #[test]
    fn solicited_node_address() {
        let a: Ipv6Addr = "2001:db8:a::1:2:3".parse().unwrap();
        assert_eq!(
            solicited_node(&a),
            "ff02::1:ff02:3".parse::<Ipv6Addr>().unwrap()
        );
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
    fn fixed_macs_need_no_resolution() {
        let topo = site(1);
        for (u, up) in topo.uplinks.iter().enumerate() {
            assert_eq!(
                topo.neighbours.mac_for(u as UplinkId, false),
                Some(up.next_hop_mac)
            );
        }
        let mut s = Solicitor::new(&topo.neighbours);
        let mut asked = 0;
        s.poll(Nanos::ZERO, &topo.neighbours, |_| {
            asked += 1;
            true
        });
        assert_eq!(asked, 0);
    }

    #[test]
    fn solicitor_retries_until_learned_then_refreshes() {
        let topo = dynamic_site();
        let n = &topo.neighbours;
        let mut s = Solicitor::new(n);
        let mut log: Vec<(Nanos, IpAddr)> = Vec::new();
        let tick = |s: &mut Solicitor, log: &mut Vec<(Nanos, IpAddr)>, now| {
            s.poll(now, n, |h| {
                log.push((now, h.ip.unwrap()));
                true
            })
        };
        tick(&mut s, &mut log, Nanos::ZERO);
        assert_eq!(log.len(), 2, "v4 and v6 next hops asked at once: {log:?}");
        tick(&mut s, &mut log, Nanos(Solicitor::RETRY.0 - 1));
        assert_eq!(log.len(), 2);
        tick(&mut s, &mut log, Solicitor::RETRY);
        assert_eq!(log.len(), 4);
        assert!(n.learn(WAN_PORT, IpAddr::V4(ipv4(NEXT_HOP4)), ISP0_MAC));
        tick(&mut s, &mut log, Nanos(2 * Solicitor::RETRY.0));
        // Both asked; the v4 one is resolved and waits a refresh period now.
        assert_eq!(log.len(), 6);
        tick(&mut s, &mut log, Nanos(3 * Solicitor::RETRY.0));
        assert_eq!(log.len(), 7);
        assert!(log[6].1.is_ipv6());
        tick(
            &mut s,
            &mut log,
            Nanos(2 * Solicitor::RETRY.0 + Solicitor::REFRESH.0),
        );
        assert!(log[7..].iter().any(|(_, ip)| ip.is_ipv4()));
    }

    /// The one-uplink test site with the uplink's next hop resolved on the
    /// wire instead of configured.
    fn dynamic_site() -> Topology {
        let t = site(1);
        let mut uplinks = t.uplinks.clone();
        uplinks.truncate(1);
        uplinks[0].next_hop_mac = [0; 6];
        uplinks[0].next_hop_v4 = Some(ipv4(NEXT_HOP4));
        uplinks[0].next_hop_v6 = Some(NEXT_HOP6.parse().unwrap());
        Topology::new(
            t.ports.clone(),
            t.lan_port,
            t.lan_prefixes.clone(),
            t.lan_addrs.clone(),
            uplinks,
            t.nat_ports,
            t.shards,
        )
    }

    const NEXT_HOP4: &str = "192.0.2.254";
    const NEXT_HOP6: &str = "2001:db8::fe";

    #[rustfmt::skip]
    fn arp(op: u16, sha: [u8; 6], spa: &str, tha: [u8; 6], tpa: &str, dst: [u8; 6]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);                   // Ethernet destination
        f.extend_from_slice(&sha);                   // Ethernet source
        f.extend_from_slice(&[0x08, 0x06]);          // EtherType ARP
        f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4]); // Ethernet, IPv4, 6, 4
        f.extend_from_slice(&op.to_be_bytes());      // operation
        f.extend_from_slice(&sha);                   // sender MAC
        f.extend_from_slice(&ipv4(spa).octets());    // sender IP
        f.extend_from_slice(&tha);                   // target MAC
        f.extend_from_slice(&ipv4(tpa).octets());    // target IP
        f.resize(60, 0);                             // Ethernet padding
        f
    }

    #[test]
    fn arp_request_for_the_gateway_is_answered_in_place() {
        let topo = site(1);
        let mut f = arp(1, CLIENT_MAC, "10.0.0.2", [0; 6], "10.0.0.1", [0xff; 6]);
        assert_eq!(answer_arp(&mut f, 14, LAN_PORT, &topo), Answer::Reply);
        assert_eq!(f[0..6], CLIENT_MAC);
        assert_eq!(f[6..12], LAN_MAC);
        assert_eq!(be16(&f, 20), Some(ARP_REPLY));
        assert_eq!(f[22..28], LAN_MAC, "sender MAC");
        assert_eq!(f[28..32], [10, 0, 0, 1], "sender IP");
        assert_eq!(f[32..38], CLIENT_MAC, "target MAC");
        assert_eq!(f[38..42], [10, 0, 0, 2], "target IP");
        assert_eq!(f.len(), 60);
    }

    #[test]
    fn arp_for_nat_addresses_only_on_their_uplink_port() {
        let topo = site(1);
        let nat = NAT4;
        let mut f = arp(1, ISP0_MAC, "192.0.2.254", [0; 6], nat, [0xff; 6]);
        assert_eq!(answer_arp(&mut f, 14, WAN_PORT, &topo), Answer::Reply);
        assert_eq!(f[22..28], WAN_MAC);
        // The same question on the LAN port is not answered: the NAT
        // address does not live there.
        let mut f = arp(1, CLIENT_MAC, "10.0.0.2", [0; 6], nat, [0xff; 6]);
        assert_eq!(
            answer_arp(&mut f, 14, LAN_PORT, &topo),
            Answer::Consumed(DropReason::ArpUnhandled)
        );
        // Nor a question about someone else.
        let mut f = arp(1, CLIENT_MAC, "10.0.0.2", [0; 6], "10.0.0.9", [0xff; 6]);
        assert_eq!(
            answer_arp(&mut f, 14, LAN_PORT, &topo),
            Answer::Consumed(DropReason::ArpUnhandled)
        );
    }

    #[test]
    fn arp_reply_from_the_next_hop_is_learned() {
        let topo = dynamic_site();
        assert_eq!(topo.neighbours.mac_for(0, false), None);
        let mut f = arp(2, ISP0_MAC, NEXT_HOP4, WAN_MAC, NAT4, WAN_MAC);
        assert_eq!(
            answer_arp(&mut f, 14, WAN_PORT, &topo),
            Answer::Consumed(DropReason::NeighbourConsumed)
        );
        assert_eq!(topo.neighbours.mac_for(0, false), Some(ISP0_MAC));
        // The same reply on another port teaches nothing.
        let topo = dynamic_site();
        let mut f = arp(2, ISP0_MAC, NEXT_HOP4, WAN_MAC, NAT4, WAN_MAC);
        answer_arp(&mut f, 14, LAN_PORT, &topo);
        assert_eq!(topo.neighbours.mac_for(0, false), None);
        // A multicast sender MAC is never learned.
        let mut f = arp(
            2,
            [0x01, 0, 0x5e, 0, 0, 1],
            NEXT_HOP4,
            WAN_MAC,
            NAT4,
            WAN_MAC,
        );
        answer_arp(&mut f, 14, WAN_PORT, &topo);
        assert_eq!(topo.neighbours.mac_for(0, false), None);
    }

    #[test]
    fn malformed_arp_is_dropped() {
        let topo = site(1);
        let good = arp(1, CLIENT_MAC, "10.0.0.2", [0; 6], "10.0.0.1", [0xff; 6]);
        for (at, v) in [(15, 6), (16, 0x86), (18, 8), (19, 16)] {
            let mut f = good.clone();
            f[at] = v;
            assert_eq!(
                answer_arp(&mut f, 14, LAN_PORT, &topo),
                Answer::Consumed(DropReason::ArpMalformed),
                "byte {at}"
            );
        }
        let mut short = good[..40].to_vec();
        assert_eq!(
            answer_arp(&mut short, 14, LAN_PORT, &topo),
            Answer::Consumed(DropReason::ArpMalformed)
        );
    }

    /// A neighbour solicitation from `src` (MAC `mac`) for `target`.
    fn ns(src: &str, mac: [u8; 6], target: &str, with_option: bool) -> Vec<u8> {
        let src: Ipv6Addr = src.parse().unwrap();
        let target: Ipv6Addr = target.parse().unwrap();
        let dst = solicited_node(&target);
        let mut body = vec![ND_NS, 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&target.octets());
        if with_option {
            body.extend_from_slice(&[OPT_SOURCE_LLA, 1]);
            body.extend_from_slice(&mac);
        }
        let c = icmpv6_checksum(&src, &dst, &body);
        body[2..4].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&(body.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[ICMPV6, 255]);
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        ip.extend_from_slice(&body);
        let d = dst.octets();
        let mut f = ethernet(
            [0x33, 0x33, d[12], d[13], d[14], d[15]],
            mac,
            None,
            0x86dd,
            &ip,
        );
        f.resize(f.len().max(60), 0);
        f
    }

    #[test]
    fn solicitation_for_the_gateway_gets_an_advertisement() {
        let topo = site(1);
        let mut f = ns("fd00::2", CLIENT_MAC, "fd00::1", true);
        f.resize(14 + 40 + 32, 0);
        let mut len = 0;
        assert_eq!(
            answer_nd(&mut f, 14, LAN_PORT, &topo, &mut len),
            Answer::Reply
        );
        assert_eq!(len, 14 + 40 + 32);
        let f = &f[..len];
        assert_eq!(f[0..6], CLIENT_MAC);
        assert_eq!(f[6..12], LAN_MAC);
        assert_eq!(v6(&f[22..38]), "fd00::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v6(&f[38..54]), "fd00::2".parse::<Ipv6Addr>().unwrap());
        let body = &f[54..];
        assert_eq!(body[0], ND_NA);
        assert_eq!(body[4], NA_ROUTER | NA_SOLICITED | NA_OVERRIDE);
        assert_eq!(body[24..26], [OPT_TARGET_LLA, 1]);
        assert_eq!(body[26..32], LAN_MAC);
        let (s, d) = (v6(&f[22..38]), v6(&f[38..54]));
        assert_eq!(icmpv6_checksum(&s, &d, body), 0, "checksum verifies");
    }

    #[test]
    fn solicitation_is_checked() {
        let topo = site(1);
        let good = ns("fd00::2", CLIENT_MAC, "fd00::1", true);
        let mut len = 0;
        // Hop limit other than 255.
        let mut f = good.clone();
        f[21] = 64;
        assert_eq!(
            answer_nd(&mut f, 14, LAN_PORT, &topo, &mut len),
            Answer::Consumed(DropReason::NdMalformed)
        );
        // Corrupted checksum.
        let mut f = good.clone();
        f[14 + 40 + 10] ^= 1;
        assert_eq!(
            answer_nd(&mut f, 14, LAN_PORT, &topo, &mut len),
            Answer::Consumed(DropReason::NdMalformed)
        );
        // For someone else.
        let mut f = ns("fd00::2", CLIENT_MAC, "fd00::7", true);
        assert_eq!(
            answer_nd(&mut f, 14, LAN_PORT, &topo, &mut len),
            Answer::Consumed(DropReason::NeighborDiscovery)
        );
    }

    #[test]
    fn advertisement_and_solicitation_from_the_next_hop_are_learned() {
        let topo = dynamic_site();
        // The next hop asks for our NAT address: we answer and learn it.
        let nat6 = topo.uplinks[0]
            .nat_addrs
            .iter()
            .find(|a| a.is_ipv6())
            .unwrap()
            .to_string();
        let mut f = ns(NEXT_HOP6, ISP0_MAC, &nat6, true);
        let mut len = 0;
        assert_eq!(
            answer_nd(&mut f, 14, WAN_PORT, &topo, &mut len),
            Answer::Reply
        );
        assert_eq!(topo.neighbours.mac_for(0, true), Some(ISP0_MAC));
        assert_eq!(topo.neighbours.mac_for(0, false), None);
    }

    #[test]
    fn requests_are_well_formed_and_their_answers_resolve() {
        let topo = dynamic_site();
        let mut buf = [0u8; REQUEST_MAX_LEN];
        for hop in topo.neighbours.hops() {
            let n = write_request(&topo, hop, &mut buf).unwrap();
            let f = &buf[..n];
            assert_eq!(f[6..12], WAN_MAC);
            if hop.is_v6() {
                let (s, d) = (v6(&f[22..38]), v6(&f[38..54]));
                assert_eq!(
                    d,
                    solicited_node(
                        &hop.ip
                            .map(|a| match a {
                                IpAddr::V6(a) => a,
                                _ => unreachable!(),
                            })
                            .unwrap()
                    )
                );
                assert_eq!(icmpv6_checksum(&s, &d, &f[54..n]), 0);
                // Answer it as the next hop would: an NA with its MAC.
                let mut na = f.to_vec();
                na[54] = ND_NA;
                na[78] = OPT_TARGET_LLA;
                na[80..86].copy_from_slice(&ISP0_MAC);
                na[38..54].copy_from_slice(&s.octets());
                na[22..38].copy_from_slice(
                    &hop.ip
                        .map(|a| match a {
                            IpAddr::V6(a) => a.octets(),
                            _ => unreachable!(),
                        })
                        .unwrap(),
                );
                na[56..58].fill(0);
                let (s2, d2) = (v6(&na[22..38]), v6(&na[38..54]));
                let c = icmpv6_checksum(&s2, &d2, &na[54..n]);
                na[56..58].copy_from_slice(&c.to_be_bytes());
                let mut len = 0;
                assert_eq!(
                    answer_nd(&mut na, 14, WAN_PORT, &topo, &mut len),
                    Answer::Consumed(DropReason::NeighbourConsumed)
                );
                assert_eq!(topo.neighbours.mac_for(0, true), Some(ISP0_MAC));
            } else {
                assert_eq!(f[0..6], [0xff; 6]);
                assert_eq!(be16(f, 20), Some(ARP_REQUEST));
                assert_eq!(f[38..42], ipv4(NEXT_HOP4).octets());
            }
        }
    }
}
