//! Stage 3, translate: owns one NAT shard and rewrites packets through it.
//!
//! Outbound packets get source NAT to their uplink's address and a port from
//! the shard's slice (seed 001 [0026]: the source address is translated to an
//! address of the chosen route, so replies come back the same route).
//! Inbound packets are matched by their full 5-tuple (address-and-port
//! dependent filtering: a remote the client never contacted is dropped,
//! seed 000 [72]) and get their destination restored. TTL / hop limit is
//! decremented as by any router. Checksums are updated incrementally (RFC
//! 1624); the payload is never read.

use std::net::IpAddr;
use std::sync::Arc;

use crate::buf::{Direction, PacketBuf};
use crate::burst::Burst;
use crate::checksum::{update16, update_bytes};
use crate::counter::StageCounters;
use crate::drop::DropReason;
use crate::flow::proto;
use crate::nat::{NatConfig, NatShard};
use crate::time::Nanos;
use crate::topology::Topology;

/// Sessions the sweep visits per call (per loop turn of the lcore).
pub const SWEEP_BUDGET: usize = 64;

pub struct Translate {
    topo: Arc<Topology>,
    pub shard: u16,
    pub nat: NatShard,
    /// Shared with the management core, which only reads.
    pub counters: Arc<StageCounters>,
}

/// Which endpoint of the packet is rewritten.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

impl Translate {
    pub fn new(topo: Arc<Topology>, shard: u16, cfg: NatConfig) -> Self {
        let nat = NatShard::new(cfg, &topo, shard);
        Translate { topo, shard, nat, counters: Arc::default() }
    }

    /// Moves translated packets from `input` to `output` (until `input` is
    /// empty or `output` is full), dropping and counting the rest.
    pub fn process<B: PacketBuf>(&mut self, now: Nanos, input: &mut Burst<B>, output: &mut Burst<B>) {
        let n = input.len().min(output.remaining_capacity());
        for mut pkt in input.drain(..n) {
            self.counters.packets.inc();
            match self.translate(now, &mut pkt) {
                Ok(()) => output.push(pkt),
                Err(reason) => self.counters.count_drop(reason),
            }
        }
    }

    /// Bounded expiry work; call once per loop turn.
    pub fn sweep(&mut self, now: Nanos) -> usize {
        self.nat.sweep(now, SWEEP_BUDGET)
    }

    pub fn translate<B: PacketBuf>(&mut self, now: Nanos, pkt: &mut B) -> Result<(), DropReason> {
        let m = *pkt.meta();
        match m.direction {
            Direction::Outbound => self.outbound(now, pkt),
            Direction::Inbound => self.inbound(now, pkt),
            Direction::Unknown => Err(DropReason::UnknownPort),
        }
    }

    fn outbound<B: PacketBuf>(&mut self, now: Nanos, pkt: &mut B) -> Result<(), DropReason> {
        let m = *pkt.meta();
        let uplink = self.topo.uplinks.get(m.uplink as usize).ok_or(DropReason::NoUplink)?;
        let idx = match self.nat.lookup_out(&m.flow, now) {
            Some(i) => i,
            None => {
                let nat_addr = pick_nat_addr(&uplink.nat_addrs, m.flow.src).ok_or(DropReason::NoNatAddress)?;
                let client_mac = pkt.data().get(6..12).and_then(|s| s.try_into().ok()).unwrap_or([0; 6]);
                self.nat.create(m.flow, m.uplink, nat_addr, client_mac, now)?
            }
        };
        check_ttl(pkt)?;
        let len = pkt.data().len();
        let s = self.nat.touch(idx, now, len, m.tcp_flags, false).ok_or(DropReason::NoSession)?;
        let (addr, port, uplink_id) = (s.nat_addr, s.nat_port, s.uplink);
        rewrite(pkt, Side::Src, addr, port)?;
        let u = &self.topo.uplinks[uplink_id as usize];
        let meta = pkt.meta_mut();
        meta.out_port = u.port;
        meta.next_hop_mac = u.next_hop_mac;
        if let Some(c) = self.nat.counters.uplinks.get(uplink_id as usize) {
            c.tx_packets.inc();
        }
        Ok(())
    }

    fn inbound<B: PacketBuf>(&mut self, now: Nanos, pkt: &mut B) -> Result<(), DropReason> {
        let m = *pkt.meta();
        let idx = self.nat.lookup_in(&m.flow, now).ok_or(DropReason::NoSession)?;
        check_ttl(pkt)?;
        let len = pkt.data().len();
        let s = self.nat.touch(idx, now, len, m.tcp_flags, true).ok_or(DropReason::NoSession)?;
        let (addr, port, mac) = (s.inside.src, s.inside.src_port, s.client_mac);
        rewrite(pkt, Side::Dst, addr, port)?;
        let meta = pkt.meta_mut();
        meta.out_port = self.topo.lan_port;
        meta.next_hop_mac = mac;
        if let Some(c) = self.nat.counters.uplinks.get(m.uplink as usize) {
            c.rx_packets.inc();
        }
        Ok(())
    }
}

/// Paired address pooling (RFC 4787 REQ-2): one inside address always maps to
/// the same NAT address of an uplink, chosen by a stable hash.
fn pick_nat_addr(addrs: &[IpAddr], client: IpAddr) -> Option<IpAddr> {
    let n = addrs.iter().filter(|a| a.is_ipv4() == client.is_ipv4()).count();
    if n == 0 {
        return None;
    }
    let h = crate::flow::FlowKey { src: client, ..Default::default() }.stable_hash() as usize;
    addrs.iter().filter(|a| a.is_ipv4() == client.is_ipv4()).nth(h % n).copied()
}

/// Drops packets whose TTL / hop limit would reach zero, else decrements it
/// (fixing the IPv4 header checksum).
fn check_ttl<B: PacketBuf>(pkt: &mut B) -> Result<(), DropReason> {
    let l3 = pkt.meta().l3_offset as usize;
    let v6 = pkt.meta().is_ipv6();
    let d = pkt.data_mut();
    let ip = d.get_mut(l3..).ok_or(DropReason::TruncatedIpv4)?;
    if v6 {
        let hl = ip.get_mut(7).ok_or(DropReason::TruncatedIpv6)?;
        if *hl <= 1 {
            return Err(DropReason::TtlExpired);
        }
        *hl -= 1;
    } else {
        if ip.len() < 12 {
            return Err(DropReason::TruncatedIpv4);
        }
        let ttl = ip[8];
        if ttl <= 1 {
            return Err(DropReason::TtlExpired);
        }
        let old = u16::from_be_bytes([ttl, ip[9]]);
        ip[8] = ttl - 1;
        let new = u16::from_be_bytes([ip[8], ip[9]]);
        let hc = u16::from_be_bytes([ip[10], ip[11]]);
        ip[10..12].copy_from_slice(&update16(hc, old, new).to_be_bytes());
    }
    Ok(())
}

/// Rewrites the source or destination address and port (ICMP echo
/// identifier) of a classified packet, updating the IPv4 header checksum and
/// the L4 checksum (pseudo-header included) incrementally.
fn rewrite<B: PacketBuf>(pkt: &mut B, side: Side, addr: IpAddr, port: u16) -> Result<(), DropReason> {
    let m = *pkt.meta();
    let (l3, l4) = (m.l3_offset as usize, m.l4_offset as usize);
    let p = m.flow.proto;
    let d = pkt.data_mut();
    let trunc = if m.is_ipv6() { DropReason::TruncatedIpv6 } else { DropReason::TruncatedIpv4 };

    // Address in the IP header, and the IPv4 header checksum.
    let mut old_addr = [0u8; 16];
    let mut new_addr = [0u8; 16];
    let alen = match (addr, m.is_ipv6()) {
        (IpAddr::V4(a), false) => {
            new_addr[..4].copy_from_slice(&a.octets());
            4
        }
        (IpAddr::V6(a), true) => {
            new_addr.copy_from_slice(&a.octets());
            16
        }
        _ => return Err(DropReason::NoNatAddress),
    };
    let at = l3
        + match (m.is_ipv6(), side) {
            (false, Side::Src) => 12,
            (false, Side::Dst) => 16,
            (true, Side::Src) => 8,
            (true, Side::Dst) => 24,
        };
    let field = d.get_mut(at..at + alen).ok_or(trunc)?;
    old_addr[..alen].copy_from_slice(field);
    field.copy_from_slice(&new_addr[..alen]);
    if !m.is_ipv6() {
        let hc = u16::from_be_bytes([d[l3 + 10], d[l3 + 11]]);
        let hc = update_bytes(hc, &old_addr[..4], &new_addr[..4]);
        d[l3 + 10..l3 + 12].copy_from_slice(&hc.to_be_bytes());
    }

    // Port (or echo identifier) and the L4 checksum.
    let (port_at, csum_at, pseudo) = match p {
        proto::TCP => (if side == Side::Src { 0 } else { 2 }, 16, true),
        proto::UDP => (if side == Side::Src { 0 } else { 2 }, 6, true),
        proto::ICMP => (4, 2, false),
        proto::ICMPV6 => (4, 2, true),
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    let l4d = d.get_mut(l4..).ok_or(trunc)?;
    if l4d.len() < csum_at + 2 || l4d.len() < port_at + 2 {
        return Err(DropReason::TruncatedUdp);
    }
    let old_port = u16::from_be_bytes([l4d[port_at], l4d[port_at + 1]]);
    l4d[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    let hc = u16::from_be_bytes([l4d[csum_at], l4d[csum_at + 1]]);
    if p == proto::UDP && hc == 0 && !m.is_ipv6() {
        // IPv4 UDP without checksum stays without (RFC 768).
        return Ok(());
    }
    let mut hc = update16(hc, old_port, port);
    if pseudo {
        hc = update_bytes(hc, &old_addr[..alen], &new_addr[..alen]);
    }
    if p == proto::UDP && hc == 0 {
        hc = 0xFFFF;
    }
    l4d[csum_at..csum_at + 2].copy_from_slice(&hc.to_be_bytes());
    Ok(())
}
