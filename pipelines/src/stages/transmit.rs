//! Stage 4, transmit: writes the egress L2 header (next-hop MAC decided by
//! translate, the port's own MAC, the port's VLAN tag if any) and sorts
//! packets into one TX burst per port. The caller hands those bursts to the
//! ports and reports what a port did not take with [`Transmit::tx_rejected`],
//! so it is counted and freed, never lost silently.
//!
//! A packet larger than the egress port's MTU is fragmented (IPv4 without
//! DF, [`local::frag`]) or answered, rate-limited, with ICMP fragmentation
//! needed / ICMPv6 packet too big (RFC 1191, RFC 8201) quoting it as its
//! sender wrote it, out of the port it came in on.

use std::sync::Arc;

use crate::neighbour::Neighbours;
use crate::packet::buf::{Direction, PacketBuf};
use crate::packet::burst::Burst;
use crate::packet::counter::{Sent, StageCounters};
use crate::packet::drop::DropReason;
use crate::packet::time::Nanos;
use crate::stages::local::icmp::{first_of_family, is_special, QuoteSide};
use crate::stages::local::{self, frag, IcmpError, IcmpLimiter};
use crate::topology::{PortRole, Topology};
use crate::wire::ethernet::{l2_len, write_l2, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::wire::ipv4;

pub struct Transmit {
    topo: Arc<Topology>,
    /// The uplinks' next hops' MACs, fixed or learned by classify.
    neighbours: Arc<Neighbours>,
    /// Shared with the management core, which only reads.
    pub counters: Arc<StageCounters>,
    /// The rate limit of fragmentation needed / packet too big.
    icmp_limit: IcmpLimiter,
    now: Nanos,
}

/// What the egress MTU asks of a packet.
enum Fit {
    Fits,
    /// IPv4 without DF: this many fragments.
    Fragment(usize),
    /// Too big and may not be fragmented: ICMP with this MTU.
    TooBig(u16),
}

impl Transmit {
    /// A transmit stage with a neighbour table of its own (the uplinks'
    /// configured MACs only). For tests and benches; the runtime uses
    /// [`Transmit::with_neighbours`].
    pub fn new(topo: Arc<Topology>) -> Self {
        let neighbours = Arc::new(Neighbours::new(&topo.uplinks));
        Self::with_neighbours(topo, neighbours)
    }

    /// A transmit stage that reads next hops' MACs from `neighbours`, the
    /// table built beside `topo` that classify learns into.
    pub fn with_neighbours(topo: Arc<Topology>, neighbours: Arc<Neighbours>) -> Self {
        Transmit {
            icmp_limit: IcmpLimiter::new(topo.icmp),
            topo,
            neighbours,
            counters: Arc::default(),
            now: Nanos::ZERO,
        }
    }

    /// Sets the time the rate limit of ICMP errors is judged at (the
    /// runtime's clock, once per loop turn).
    pub fn set_now(&mut self, now: Nanos) {
        self.now = now;
    }

    /// Moves packets from `input` into `per_port[out_port]`. Packets whose
    /// port burst is full stay in `input` (in order) for the next call, after
    /// the caller has flushed `per_port`.
    pub fn process<B: PacketBuf>(&mut self, input: &mut Burst<B>, per_port: &mut [Burst<B>]) {
        let mut deferred: Burst<B> = Burst::new();
        for mut pkt in input.drain(..) {
            let port = pkt.meta().out_port as usize;
            let Some(out) = per_port.get_mut(port) else {
                self.counters.packets.inc();
                self.counters.count_drop(DropReason::NoTxPort);
                continue;
            };
            if out.is_full() {
                deferred.push(pkt);
                continue;
            }
            match self.fit(&pkt) {
                Fit::Fits => {}
                Fit::Fragment(n) if n > out.remaining_capacity() && !out.is_empty() => {
                    deferred.push(pkt);
                    continue;
                }
                Fit::Fragment(_) => {
                    self.counters.packets.inc();
                    self.fragment(pkt, out);
                    continue;
                }
                Fit::TooBig(mtu) => {
                    self.counters.packets.inc();
                    self.too_big(pkt, mtu, per_port);
                    continue;
                }
            }
            self.counters.packets.inc();
            match self.prepare(&mut pkt) {
                Ok(()) => out.push(pkt),
                Err(r) => self.counters.count_drop(r),
            }
        }
        input.extend(deferred);
    }

    /// Whether `pkt` fits its egress port's MTU.
    fn fit<B: PacketBuf>(&self, pkt: &B) -> Fit {
        let m = pkt.meta();
        if m.direction == Direction::Local {
            return Fit::Fits;
        }
        let Some(port) = self.topo.ports.get(usize::from(m.out_port)) else {
            return Fit::Fits;
        };
        let l3 = usize::from(m.l3_offset);
        let len = pkt.data().len().saturating_sub(l3);
        if len <= usize::from(port.mtu) {
            return Fit::Fits;
        }
        let ip = &pkt.data()[l3..];
        if m.is_ipv6()
            || ip.len() < ipv4::MIN_HEADER_LEN
            || ipv4::flags_frag(ip) & ipv4::FLAG_DF != 0
        {
            return Fit::TooBig(port.mtu);
        }
        match frag::count(ipv4::header_len(ip), len, usize::from(port.mtu)) {
            Some(n) => Fit::Fragment(n),
            None => Fit::TooBig(port.mtu),
        }
    }

    /// Fragments `pkt` (IPv4, no DF) into `out`, each piece with its L2
    /// header.
    fn fragment<B: PacketBuf>(&mut self, pkt: B, out: &mut Burst<B>) {
        let (l3, port) = (
            usize::from(pkt.meta().l3_offset),
            usize::from(pkt.meta().out_port),
        );
        let mtu = self.topo.ports.get(port).map_or(0, |p| usize::from(p.mtu));
        let mut pieces: Burst<B> = Burst::new();
        let room = out.remaining_capacity();
        match frag::fragment(pkt, l3, mtu, &mut pieces) {
            Ok(n) if n <= room => {
                self.counters.count_sent(Sent::FragmentedOut);
                for mut p in pieces.drain(..) {
                    match self.prepare(&mut p) {
                        Ok(()) => {
                            self.counters.count_sent(Sent::FragmentsOut);
                            out.push(p)
                        }
                        Err(r) => self.counters.count_drop(r),
                    }
                }
            }
            Ok(n) => self.counters.count_drops(DropReason::TooBig, n as u64),
            Err((_, r)) => self.counters.count_drop(r),
        }
    }

    /// `pkt` is larger than its egress MTU `mtu` and may not be
    /// fragmented: it becomes the ICMP error to its sender, unless it is one
    /// the appliance never answers or the rate limit is spent.
    fn too_big<B: PacketBuf>(&mut self, mut pkt: B, mtu: u16, per_port: &mut [Burst<B>]) {
        let m = *pkt.meta();
        let (l3, l4) = (usize::from(m.l3_offset), usize::from(m.l4_offset));
        let v6 = m.is_ipv6();
        let in_port = usize::from(m.in_port);
        let Some(port) = self.topo.ports.get(in_port) else {
            return self.counters.count_drop(DropReason::TooBig);
        };
        let allowed = !m.is_icmp_error()
            && !is_special(m.flow.src)
            && local::errors_allowed(&pkt.data()[l3..], v6);
        // The ingress port's address: the LAN gateway, or the NAT address
        // the packet came to.
        let src = match port.role {
            PortRole::Lan => first_of_family(&self.topo.lan_addrs, v6),
            _ => Some(m.flow.dst),
        };
        let Some(src) = src.filter(|_| allowed) else {
            return self.counters.count_drop(DropReason::TooBig);
        };
        if !self.icmp_limit.allow(m.flow.src, self.now) {
            self.counters.count_sent(Sent::IcmpRateLimited);
            return self.counters.count_drop(DropReason::TooBig);
        }
        // Quote the packet as its sender wrote it (RFC 5508 4.2).
        let restored = match m.direction {
            Direction::Outbound => local::restore_quote(
                &mut pkt,
                l3,
                l4,
                QuoteSide::Src,
                m.flow.src,
                m.flow.src_port,
            ),
            _ => local::restore_quote(
                &mut pkt,
                l3,
                l4,
                QuoteSide::Dst,
                m.flow.dst,
                m.flow.dst_port,
            ),
        };
        let mac = crate::wire::ethernet::src(pkt.data()).unwrap_or([0; 6]);
        let built = restored.and_then(|()| {
            local::error_in_place(
                &mut pkt,
                l3,
                v6,
                IcmpError::TooBig { mtu },
                src,
                m.in_port,
                port,
                mac,
            )
        });
        if let Err(r) = built {
            return self.counters.count_drop(r);
        }
        self.counters.count_sent(if v6 {
            Sent::PacketTooBig
        } else {
            Sent::FragNeeded
        });
        match per_port.get_mut(in_port) {
            Some(out) if !out.is_full() => out.push(pkt),
            _ => self.counters.count_drop(DropReason::TxFull),
        }
    }

    /// Rewrites the L2 header for the egress port.
    pub fn prepare<B: PacketBuf>(&self, pkt: &mut B) -> Result<(), DropReason> {
        let mut m = *pkt.meta();
        if m.direction == Direction::Local {
            // Built complete by `neighbour`.
            return Ok(());
        }
        let to_uplink = self
            .topo
            .uplinks
            .get(usize::from(m.uplink))
            .is_some_and(|u| u.port == m.out_port && m.out_port != self.topo.lan_port);
        if to_uplink {
            // To an uplink: its next hop's MAC, fixed or learned.
            m.next_hop_mac = self
                .neighbours
                .mac_for(m.uplink, m.is_ipv6())
                .ok_or(DropReason::NextHopUnresolved)?;
        }
        let port = self
            .topo
            .ports
            .get(m.out_port as usize)
            .ok_or(DropReason::NoTxPort)?;
        let have = m.l3_offset as usize;
        let want = l2_len(port.vlan);
        if want > have {
            if !pkt.prepend(want - have) {
                return Err(DropReason::TxFull);
            }
        } else if !pkt.adj(have - want) {
            return Err(DropReason::TruncatedEthernet);
        }
        let ethertype = if m.is_ipv6() {
            ETHERTYPE_IPV6
        } else {
            ETHERTYPE_IPV4
        };
        let frame = pkt.data_mut();
        if frame.len() < want {
            return Err(DropReason::TruncatedEthernet);
        }
        write_l2(frame, m.next_hop_mac, port.mac, port.vlan, ethertype);
        pkt.meta_mut().l3_offset = want as u16;
        let l4 = m.l4_offset as usize + want - have;
        pkt.meta_mut().l4_offset = l4 as u16;
        Ok(())
    }

    /// Counts `n` packets a port's TX queue did not take (the caller frees them).
    pub fn tx_rejected(&self, n: usize) {
        self.counters.count_drops(DropReason::TxFull, n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::buf::HeapBuf;
    use crate::stages::classify::Classify;
    use crate::testing::*;
    use crate::wire::{be16, ETHERTYPE_VLAN};

    /// `frame` classified on `in_port`, then routed as translate would:
    /// to `out_port`, next hop `next_hop`.
    fn routed(frame: &[u8], in_port: u16, out_port: u16, next_hop: [u8; 6]) -> HeapBuf {
        let mut b = buf(frame, in_port);
        Classify::new(site(1))
            .classify(&mut b)
            .unwrap_or_else(|r| panic!("classify: {r:?}"));
        b.meta_mut().out_port = out_port;
        b.meta_mut().next_hop_mac = next_hop;
        b
    }

    fn client_udp4() -> Vec<u8> {
        from_client("10.0.0.2", "203.0.113.5", udp(40000, 53, b"query"))
    }

    /// The frame from the tagged uplink: 203.0.113.5 → the tagged NAT address.
    fn tagged_inbound(vlan: u16) -> Vec<u8> {
        let dgram = ip_packet(
            ip("203.0.113.5"),
            ip(NAT4_TAGGED),
            64,
            &udp(53, 4000, b"answer"),
        );
        ethernet(WAN_TAGGED_MAC, ISP1_MAC, Some(vlan), 0x0800, &dgram)
    }

    #[test]
    fn untagged_to_untagged_rewrites_macs_only() {
        let t = Transmit::new(site(1));
        let frame = client_udp4();
        let mut b = routed(&frame, LAN_PORT, WAN_PORT, ISP0_MAC);
        t.prepare(&mut b).unwrap();
        let d = b.data();
        assert_eq!(
            (&d[0..6], &d[6..12], be16(d, 12)),
            (&ISP0_MAC[..], &WAN_MAC[..], Some(ETHERTYPE_IPV4))
        );
        assert_eq!(&d[14..], &frame[14..]);
        assert_eq!((b.meta().l3_offset, b.meta().l4_offset), (14, 34));
    }

    #[test]
    fn untagged_to_tagged_inserts_the_port_vlan() {
        let t = Transmit::new(site(1));
        let frame = client_udp4();
        let mut b = routed(&frame, LAN_PORT, WAN_TAGGED_PORT, ISP1_MAC);
        t.prepare(&mut b).unwrap();
        let d = b.data();
        assert_eq!(d.len(), frame.len() + 4);
        assert_eq!((&d[0..6], &d[6..12]), (&ISP1_MAC[..], &WAN_TAGGED_MAC[..]));
        assert_eq!(be16(d, 12), Some(ETHERTYPE_VLAN));
        assert_eq!(be16(d, 14), Some(TAGGED_VLAN), "priority 0, VLAN 100");
        assert_eq!(be16(d, 16), Some(ETHERTYPE_IPV4));
        assert_eq!(&d[18..], &frame[14..], "the datagram is untouched");
        assert_eq!((b.meta().l3_offset, b.meta().l4_offset), (18, 38));
        assert_checksums_valid(d, 18);
    }

    #[test]
    fn tagged_to_untagged_removes_the_tag() {
        let t = Transmit::new(site(1));
        let frame = tagged_inbound(TAGGED_VLAN);
        let mut b = routed(&frame, WAN_TAGGED_PORT, LAN_PORT, CLIENT_MAC);
        assert_eq!(b.meta().l3_offset, 18);
        t.prepare(&mut b).unwrap();
        let d = b.data();
        assert_eq!(d.len(), frame.len() - 4);
        assert_eq!(
            (&d[0..6], &d[6..12], be16(d, 12)),
            (&CLIENT_MAC[..], &LAN_MAC[..], Some(ETHERTYPE_IPV4))
        );
        assert_eq!(&d[14..], &frame[18..]);
        assert_eq!((b.meta().l3_offset, b.meta().l4_offset), (14, 34));
    }

    #[test]
    fn tagged_to_tagged_rewrites_the_tag() {
        let t = Transmit::new(site(1));
        // Arrives tagged 100 on the tagged port and leaves through the same
        // port (hairpin), e.g. an answer to another site behind that uplink.
        let frame = tagged_inbound(TAGGED_VLAN);
        let mut b = routed(&frame, WAN_TAGGED_PORT, WAN_TAGGED_PORT, ISP1_MAC);
        // Pretend it came with priority bits and another id: both are replaced.
        b.data_mut()[14..16].copy_from_slice(&0xE007u16.to_be_bytes());
        t.prepare(&mut b).unwrap();
        let d = b.data();
        assert_eq!(d.len(), frame.len());
        assert_eq!(be16(d, 12), Some(ETHERTYPE_VLAN));
        assert_eq!(be16(d, 14), Some(TAGGED_VLAN));
        assert_eq!(be16(d, 16), Some(ETHERTYPE_IPV4));
        assert_eq!(&d[18..], &frame[18..]);
    }

    #[test]
    fn ipv6_gets_its_ethertype() {
        let t = Transmit::new(site(1));
        let frame = from_client("fd00::2", "2001:db8:ffff::5", udp(1000, 53, b"q"));
        let mut b = routed(&frame, LAN_PORT, WAN_TAGGED_PORT, ISP1_MAC);
        t.prepare(&mut b).unwrap();
        assert_eq!(be16(b.data(), 16), Some(ETHERTYPE_IPV6));
        assert_eq!(&b.data()[18..], &frame[14..]);
        assert_eq!(b.meta().l4_offset, 58);
    }

    #[test]
    fn unknown_port_is_no_tx_port() {
        let t = Transmit::new(site(1));
        let mut b = routed(&client_udp4(), LAN_PORT, 17, ISP0_MAC);
        assert_eq!(t.prepare(&mut b).unwrap_err(), DropReason::NoTxPort);
    }

    #[test]
    fn process_sorts_by_port_defers_and_counts() {
        let mut t = Transmit::new(site(1));
        let mut per_port: Vec<Burst<HeapBuf>> = (0..3).map(|_| Burst::new()).collect();
        // Port 2's burst is full already.
        while !per_port[2].is_full() {
            per_port[2].push(buf(&[0; 60], 0));
        }
        let mut input: Burst<HeapBuf> = Burst::new();
        input.push(routed(&client_udp4(), LAN_PORT, WAN_PORT, ISP0_MAC));
        input.push(routed(&client_udp4(), LAN_PORT, WAN_TAGGED_PORT, ISP1_MAC));
        input.push(routed(&client_udp4(), LAN_PORT, SPARE_PORT, ISP1_MAC));
        input.push(routed(
            &tagged_inbound(TAGGED_VLAN),
            WAN_TAGGED_PORT,
            LAN_PORT,
            CLIENT_MAC,
        ));
        input.push(routed(&client_udp4(), LAN_PORT, WAN_TAGGED_PORT, ISP1_MAC));
        t.process(&mut input, &mut per_port);

        assert_eq!(per_port[0].len(), 1);
        assert_eq!(per_port[1].len(), 1);
        assert_eq!(be16(per_port[0][0].data(), 12), Some(ETHERTYPE_IPV4));
        assert_eq!(
            t.counters.drops(DropReason::NoTxPort),
            1,
            "port 3 has no TX burst here"
        );
        assert_eq!(
            input.len(),
            2,
            "the packets for the full port wait, in order"
        );
        assert!(input.iter().all(|b| b.meta().out_port == WAN_TAGGED_PORT));
        assert_eq!(t.counters.packets.get(), 3);

        // Once the caller flushed port 2, the deferred packets go out.
        per_port[2].clear();
        t.process(&mut input, &mut per_port);
        assert!(input.is_empty());
        assert_eq!(per_port[2].len(), 2);
        assert_eq!(be16(per_port[2][0].data(), 14), Some(TAGGED_VLAN));
        assert_eq!(t.counters.packets.get(), 5);

        t.tx_rejected(2);
        assert_eq!(t.counters.drops(DropReason::TxFull), 2);
    }
}
