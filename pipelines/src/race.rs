//! SYN races (seed 001 [0026]-[0036]): the per-shard records that tie the
//! copies of one client SYN together, and the TCP segments the appliance
//! writes itself (RSTs to losing servers, ACKs that continue a handshake in
//! first-payload mode).
//!
//! A race has one NAT session per uplink, all with the client's outbound
//! 5-tuple; only one of them holds the outbound index entry (the one the
//! client's later packets must find), the others are reached through the
//! race. The race is decided by the first SYN+ACK (mode 1) or the first
//! payload (mode 2, [0031]-[0033]); the winner keeps the index entry, every
//! other copy becomes a *loser*: kept for the race timeout so that its
//! SYN+ACK can be answered with an RST, then freed.
//!
//! Invariants:
//! - every member slot of a live race names a live session whose `race` is
//!   that race, and a session with `race != NONE` is a member of it;
//! - at most one member is `OUT_INDEXED`;
//! - a race record is freed with its last member, so records never leak.

use crate::buf::{Direction, PacketBuf};
use crate::checksum::{fold, sum};
use crate::drop::DropReason;
use crate::nat::{NatShard, NONE};
use crate::select::RACE_MAX;
use crate::time::Nanos;
use crate::topology::UplinkId;

/// What decides a race.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RaceMode {
    /// The first SYN+ACK (seed 001 [0036]).
    #[default]
    SynAck,
    /// The first segment with payload (seed 001 [0031]-[0033]): handshakes
    /// go on over every uplink, so a transparent proxy that answers SYNs
    /// itself cannot win by doing so.
    FirstPayload,
}

impl RaceMode {
    pub const NAMES: [&'static str; 2] = ["syn-ack", "first-payload"];

    pub fn as_str(self) -> &'static str {
        match self {
            RaceMode::SynAck => Self::NAMES[0],
            RaceMode::FirstPayload => Self::NAMES[1],
        }
    }
}

impl std::str::FromStr for RaceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "syn-ack" => Ok(RaceMode::SynAck),
            "first-payload" => Ok(RaceMode::FirstPayload),
            _ => Err(format!("one of {}", Self::NAMES.join(", "))),
        }
    }
}

/// One race.
#[derive(Clone, Debug)]
pub struct Race {
    /// Session slots, one per uplink raced; `NONE` once a member left.
    pub(crate) members: [u32; RACE_MAX],
    pub(crate) n: u8,
    /// When the first copy went out.
    pub(crate) started: Nanos,
    /// Which replicated SYN the copies come from (see `PacketMeta::race_tag`):
    /// a copy with another tag is a retransmission, not a new racer.
    pub(crate) tag: u32,
    pub(crate) decided: bool,
    pub(crate) mode: RaceMode,
    /// First-payload mode: the member whose SYN+ACK the client got, and
    /// that SYN+ACK's sequence number (the server ISN the client knows).
    pub(crate) client_side: u32,
    pub(crate) client_isn: u32,
    /// First-payload mode: each member's server ISN, valid where `answered`
    /// has its bit.
    pub(crate) isn: [u32; RACE_MAX],
    pub(crate) answered: u8,
    /// First-payload mode: the client's next sequence number as seen so far.
    pub(crate) client_next: u32,
    /// First-payload mode: the client has sent payload; members answering
    /// later cannot be caught up and are reset.
    pub(crate) data_sent: bool,
    /// After a first-payload decision: winner ISN - client ISN, added to the
    /// client's ACK (and SACK) numbers, taken off the server's sequence
    /// numbers.
    pub(crate) offset: u32,
    next_free: u32,
}

impl Race {
    const FREE: Race = Race {
        members: [NONE; RACE_MAX],
        n: 0,
        started: Nanos::ZERO,
        tag: 0,
        decided: false,
        mode: RaceMode::SynAck,
        client_side: NONE,
        client_isn: 0,
        isn: [0; RACE_MAX],
        answered: 0,
        client_next: 0,
        data_sent: false,
        offset: 0,
        next_free: NONE,
    };

    /// Position of member `idx`.
    pub(crate) fn position(&self, idx: u32) -> Option<usize> {
        self.members[..usize::from(self.n)]
            .iter()
            .position(|&m| m == idx)
    }

    pub(crate) fn live_members(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.members[..usize::from(self.n)]
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, m)| m != NONE)
    }
}

/// The races of one shard: a slab reserved up front with a free list.
pub struct RaceTable {
    races: Vec<Race>,
    free: u32,
    live: usize,
    cap: usize,
}

impl RaceTable {
    pub fn with_capacity(cap: usize) -> RaceTable {
        RaceTable {
            races: Vec::with_capacity(cap),
            free: NONE,
            live: 0,
            cap,
        }
    }

    /// Races in progress (and first-payload offsets kept).
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// A new race record, or `None` at capacity.
    pub(crate) fn start(&mut self, now: Nanos, tag: u32, mode: RaceMode) -> Option<u32> {
        let r = if self.free != NONE {
            let r = self.free;
            self.free = self.races[r as usize].next_free;
            r
        } else if self.races.len() < self.cap {
            self.races.push(Race::FREE);
            (self.races.len() - 1) as u32
        } else {
            return None;
        };
        self.races[r as usize] = Race {
            started: now,
            tag,
            mode,
            ..Race::FREE
        };
        self.live += 1;
        Some(r)
    }

    pub(crate) fn get(&self, r: u32) -> Option<&Race> {
        self.races.get(r as usize)
    }

    pub(crate) fn get_mut(&mut self, r: u32) -> Option<&mut Race> {
        self.races.get_mut(r as usize)
    }

    fn free(&mut self, r: u32) {
        if let Some(x) = self.races.get_mut(r as usize) {
            *x = Race {
                next_free: self.free,
                ..Race::FREE
            };
            self.free = r;
            self.live -= 1;
        }
    }
}

impl NatShard {
    /// Adds session `idx` to race `r` (false when the race is full).
    pub(crate) fn race_attach(&mut self, r: u32, idx: u32) -> bool {
        let Some(race) = self.races.get_mut(r) else {
            return false;
        };
        let n = usize::from(race.n);
        if n >= RACE_MAX {
            return false;
        }
        race.members[n] = idx;
        race.n += 1;
        if let Some(s) = self.session_mut(idx) {
            s.race = r;
        }
        true
    }

    /// Takes session `idx` out of race `r`; the race record goes with its
    /// last member.
    pub(crate) fn race_detach(&mut self, r: u32, idx: u32) {
        if let Some(s) = self.session_mut(idx) {
            s.race = NONE;
        }
        let Some(race) = self.races.get_mut(r) else {
            return;
        };
        if let Some(k) = race.position(idx) {
            race.members[k] = NONE;
        }
        if race.live_members().next().is_none() {
            self.races.free(r);
        }
    }

    /// The member of race `r` on `uplink`, if any.
    pub(crate) fn race_member_on(&self, r: u32, uplink: UplinkId) -> Option<u32> {
        let race = self.races.get(r)?;
        race.live_members()
            .map(|(_, m)| m)
            .find(|&m| self.session(m).is_some_and(|s| s.uplink == uplink))
    }

    pub fn race(&self, r: u32) -> Option<&Race> {
        self.races.get(r)
    }

    /// Races held by this shard.
    pub fn races_live(&self) -> usize {
        self.races.len()
    }
}

/// Sequence and acknowledgement numbers of a classified TCP packet.
pub(crate) fn tcp_seq_ack<B: PacketBuf>(pkt: &B) -> Option<(u32, u32)> {
    let l4 = usize::from(pkt.meta().l4_offset);
    let d = pkt.data().get(l4 + 4..l4 + 12)?;
    Some((
        u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
        u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
    ))
}

/// Bytes of TCP payload of a classified packet (SYN and FIN not counted).
pub(crate) fn tcp_payload_len<B: PacketBuf>(pkt: &B) -> usize {
    let m = pkt.meta();
    let (l3, l4) = (usize::from(m.l3_offset), usize::from(m.l4_offset));
    let d = pkt.data();
    let Some(&off) = d.get(l4 + 12) else {
        return 0;
    };
    let ip_end = if m.is_ipv6() {
        d.get(l3 + 4..l3 + 6).map_or(0, |b| {
            l3 + 40 + usize::from(u16::from_be_bytes([b[0], b[1]]))
        })
    } else {
        d.get(l3 + 2..l3 + 4)
            .map_or(0, |b| l3 + usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    ip_end
        .min(d.len())
        .saturating_sub(l4 + usize::from(off >> 4) * 4)
}

/// Turns a classified TCP packet into a bare segment (no options, no
/// payload) from its receiver back to its sender: addresses and ports
/// swapped, the given sequence, acknowledgement, flags and window, TTL 64,
/// both checksums computed in full. The packet then leaves by the port it
/// came in on (`meta.out_port`), toward `next_hop`.
pub(crate) fn reflect_tcp<B: PacketBuf>(
    pkt: &mut B,
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    next_hop: [u8; 6],
) -> Result<(), DropReason> {
    let m = *pkt.meta();
    let (l3, l4) = (usize::from(m.l3_offset), usize::from(m.l4_offset));
    let v6 = m.is_ipv6();
    let (ip_len, alen, src_at, dst_at) = if v6 { (40, 16, 8, 24) } else { (20, 4, 12, 16) };
    let new_l4 = l3 + ip_len;
    if pkt.data().len() < l4 + 20 || l4 < new_l4 {
        return Err(DropReason::TruncatedTcp);
    }
    let d = pkt.data_mut();
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src[..alen].copy_from_slice(&d[l3 + src_at..l3 + src_at + alen]);
    dst[..alen].copy_from_slice(&d[l3 + dst_at..l3 + dst_at + alen]);
    let (sport, dport) = ([d[l4], d[l4 + 1]], [d[l4 + 2], d[l4 + 3]]);
    // The new IP header, sender and receiver swapped.
    let ip = &mut d[l3..new_l4];
    if v6 {
        ip[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        ip[4..6].copy_from_slice(&20u16.to_be_bytes());
        ip[6] = crate::flow::proto::TCP;
        ip[7] = 64;
    } else {
        ip[..12].copy_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    }
    ip[src_at..src_at + alen].copy_from_slice(&dst[..alen]);
    ip[dst_at..dst_at + alen].copy_from_slice(&src[..alen]);
    if !v6 {
        let c = !fold(sum(ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let tcp = &mut d[new_l4..new_l4 + 20];
    tcp[0..2].copy_from_slice(&dport);
    tcp[2..4].copy_from_slice(&sport);
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    tcp[16..20].copy_from_slice(&[0; 4]);
    let pseudo = sum(&dst[..alen], sum(&src[..alen], 0)) + u32::from(crate::flow::proto::TCP) + 20;
    let c = !fold(sum(tcp, pseudo));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    if !pkt.set_len(new_l4 + 20) {
        return Err(DropReason::TruncatedTcp);
    }
    let meta = pkt.meta_mut();
    meta.l4_offset = new_l4 as u16;
    meta.flow = m.flow.reversed();
    meta.tcp_flags = flags;
    meta.direction = match m.direction {
        Direction::Inbound => Direction::Outbound,
        Direction::Outbound => Direction::Inbound,
        Direction::Unknown => Direction::Unknown,
    };
    meta.out_port = m.in_port;
    meta.next_hop_mac = next_hop;
    Ok(())
}

/// Adds `delta` to the 32-bit field at `at` of a TCP header (`tcp`),
/// updating its checksum incrementally.
fn add_to_field(tcp: &mut [u8], at: usize, delta: u32) {
    let Some(f) = tcp.get(at..at + 4) else {
        return;
    };
    let old = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
    let new = old.wrapping_add(delta);
    tcp[at..at + 4].copy_from_slice(&new.to_be_bytes());
    let hc = u16::from_be_bytes([tcp[16], tcp[17]]);
    let hc = crate::checksum::update_bytes(hc, &old.to_be_bytes(), &new.to_be_bytes());
    tcp[16..18].copy_from_slice(&hc.to_be_bytes());
}

/// Shifts a segment between two sequence spaces (first-payload mode):
/// `ack_delta` is added to the acknowledgement number and to every SACK
/// block edge, `seq_delta` to the sequence number.
pub(crate) fn shift_seq<B: PacketBuf>(pkt: &mut B, seq_delta: u32, ack_delta: u32) {
    let l4 = usize::from(pkt.meta().l4_offset);
    let d = pkt.data_mut();
    let Some(tcp) = d.get_mut(l4..) else {
        return;
    };
    if tcp.len() < 20 {
        return;
    }
    if seq_delta != 0 {
        add_to_field(tcp, 4, seq_delta);
    }
    if ack_delta == 0 {
        return;
    }
    if tcp[13] & crate::nat::TCP_ACK != 0 {
        add_to_field(tcp, 8, ack_delta);
    }
    // SACK blocks (kind 5) in the options.
    let end = (usize::from(tcp[12] >> 4) * 4).min(tcp.len());
    let mut i = 20;
    while i < end {
        match tcp[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&len) = tcp.get(i + 1) else { break };
                let len = usize::from(len);
                if len < 2 || i + len > end {
                    break;
                }
                if kind == 5 {
                    let mut e = i + 2;
                    while e + 4 <= i + len {
                        add_to_field(tcp, e, ack_delta);
                        e += 4;
                    }
                }
                i += len;
            }
        }
    }
}

impl NatShard {
    /// Frees race `r` if it has no member (a race whose first session could
    /// not be created).
    pub(crate) fn race_free_empty(&mut self, r: u32) {
        if self
            .races
            .get(r)
            .is_some_and(|x| x.live_members().next().is_none())
        {
            self.races.free(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::HeapBuf;
    use crate::burst::Burst;
    use crate::classify::Classify;
    use crate::nat::{NatConfig, TCP_ACK, TCP_RST, TCP_SYN};
    use crate::replicate::{Replicate, SelectionPolicy};
    use crate::select::SelEvent;
    use crate::test_frames::*;
    use crate::translate::Translate;
    use smoltcp::wire::{TcpControl, TcpPacket};
    use std::net::IpAddr;
    use std::sync::Arc;

    const T0: Nanos = Nanos(1_000_000_000);
    const SERVER: &str = "203.0.113.5";

    /// classify → replicate → translate over the two-uplink test site.
    struct Rig {
        classify: Classify,
        replicate: Replicate,
        translate: Translate,
    }

    impl Rig {
        fn new(policy: SelectionPolicy) -> Rig {
            let topo = site(1);
            let policy = Arc::new(policy);
            Rig {
                classify: Classify::new(topo.clone()),
                replicate: Replicate::with_policy(topo.clone(), policy.clone()),
                translate: Translate::with_policy(topo, 0, NatConfig::default(), policy),
            }
        }

        /// Runs one frame received on `port` through the three stages.
        fn send(&mut self, frame: &[u8], port: u16, now: Nanos) -> Vec<HeapBuf> {
            let mut input: Burst<HeapBuf> = Burst::new();
            input.push(buf(frame, port));
            let mut classified = Burst::new();
            self.classify.process(&mut input, &mut classified);
            let mut out = Vec::new();
            while !classified.is_empty() {
                let mut replicated = Burst::new();
                self.replicate
                    .process(now, &mut classified, &mut replicated);
                while !replicated.is_empty() {
                    let mut translated = Burst::new();
                    self.translate
                        .process(now, &mut replicated, &mut translated);
                    out.extend(translated.drain(..));
                }
            }
            out
        }

        fn events(&mut self) -> Vec<SelEvent> {
            self.translate.nat.events.drain(..).collect()
        }
    }

    fn syn() -> Vec<u8> {
        from_client("10.0.0.2", SERVER, tcp(40000, 443, TcpControl::Syn))
    }

    fn syn_ack_to(nat: &str, nat_port: u16, ack: u32) -> Vec<u8> {
        let l4 = L4::Tcp {
            src_port: 443,
            dst_port: nat_port,
            control: TcpControl::Syn,
            ack: Some(ack),
            payload: &[],
        };
        let dgram = ip_packet(ip(SERVER), ip(nat), 64, &l4);
        if nat == NAT4 {
            ethernet(WAN_MAC, ISP0_MAC, None, 0x0800, &dgram)
        } else {
            ethernet(WAN_TAGGED_MAC, ISP1_MAC, Some(TAGGED_VLAN), 0x0800, &dgram)
        }
    }

    fn port_of(nat: &str) -> u16 {
        if nat == NAT4 {
            WAN_PORT
        } else {
            WAN_TAGGED_PORT
        }
    }

    fn tcp_of(b: &HeapBuf) -> TcpPacket<&[u8]> {
        TcpPacket::new_checked(&b.data()[usize::from(b.meta().l4_offset)..]).unwrap()
    }

    /// (source address, source port) of each copy sent.
    fn sources(out: &[HeapBuf]) -> Vec<(IpAddr, u16)> {
        out.iter()
            .map(|b| {
                let m = b.meta();
                let (src, _) = addrs(b.data(), usize::from(m.l3_offset));
                let (sp, _) = ports(b.data(), usize::from(m.l3_offset), usize::from(m.l4_offset));
                (src, sp)
            })
            .collect()
    }

    #[test]
    fn a_syn_races_over_every_uplink_and_the_first_syn_ack_wins() {
        let mut rig = Rig::new(SelectionPolicy::default());
        let copies = rig.send(&syn(), LAN_PORT, T0);
        assert_eq!(copies.len(), 2, "one copy per uplink with an IPv4 address");
        let src = sources(&copies);
        assert_eq!(src[0].0, ip(NAT4));
        assert_eq!(src[1].0, ip(NAT4_TAGGED));
        assert_eq!(copies[0].meta().out_port, WAN_PORT);
        assert_eq!(copies[1].meta().out_port, WAN_TAGGED_PORT);
        for c in &copies {
            assert_checksums_valid(c.data(), usize::from(c.meta().l3_offset));
            assert!(tcp_of(c).syn() && !tcp_of(c).ack());
        }
        assert_eq!(rig.translate.nat.len(), 2);
        assert_eq!(rig.translate.nat.races_live(), 1);
        assert_eq!(rig.translate.nat.counters.races.get(), 1);

        // The tagged uplink answers first: it wins.
        let t1 = T0.saturating_add(Nanos::from_millis(20));
        let won = rig.send(
            &syn_ack_to(NAT4_TAGGED, src[1].1, 1001),
            port_of(NAT4_TAGGED),
            t1,
        );
        assert_eq!(won.len(), 1);
        assert_eq!(won[0].meta().out_port, LAN_PORT);
        let (_, dst) = addrs(won[0].data(), usize::from(won[0].meta().l3_offset));
        assert_eq!(dst, ip("10.0.0.2"));
        let up = &rig.translate.nat.counters.uplinks;
        assert_eq!((up[1].races_won.get(), up[0].races_lost.get()), (1, 1));
        assert_eq!(
            rig.events(),
            vec![SelEvent::Answer {
                dst: ip(SERVER),
                uplink: 1,
                rtt: Some(Nanos::from_millis(20)),
                raced: true,
                decided: true,
            }]
        );

        // The client's ACK follows the winner.
        let ack = from_client(
            "10.0.0.2",
            SERVER,
            L4::Tcp {
                src_port: 40000,
                dst_port: 443,
                control: TcpControl::None,
                ack: Some(1001),
                payload: &[],
            },
        );
        let out = rig.send(&ack, LAN_PORT, t1);
        assert_eq!(out.len(), 1);
        assert_eq!(sources(&out)[0], src[1]);

        // The loser's late SYN+ACK is answered with an RST to its server,
        // sequence number = the SYN+ACK's acknowledgement.
        let t2 = T0.saturating_add(Nanos::from_millis(50));
        let rst = rig.send(&syn_ack_to(NAT4, src[0].1, 1001), WAN_PORT, t2);
        assert_eq!(rst.len(), 1);
        let r = &rst[0];
        assert_eq!(r.meta().out_port, WAN_PORT);
        assert_eq!(r.meta().next_hop_mac, ISP0_MAC);
        assert_checksums_valid(r.data(), usize::from(r.meta().l3_offset));
        let (s, d) = addrs(r.data(), usize::from(r.meta().l3_offset));
        assert_eq!((s, d), (ip(NAT4), ip(SERVER)));
        let t = tcp_of(r);
        assert!(t.rst() && !t.syn() && !t.ack());
        assert_eq!(t.seq_number().0, 1001);
        assert_eq!((t.src_port(), t.dst_port()), (src[0].1, 443));
        assert_eq!(
            rig.events(),
            vec![SelEvent::Answer {
                dst: ip(SERVER),
                uplink: 0,
                rtt: Some(Nanos::from_millis(50)),
                raced: true,
                decided: false,
            }]
        );
        // Only the winner's session is left, and no race record.
        assert_eq!(rig.translate.nat.len(), 1);
        assert_eq!(rig.translate.nat.races_live(), 0);
    }

    #[test]
    fn a_retransmitted_syn_goes_out_again_on_each_racing_uplink_without_a_second_race() {
        let mut rig = Rig::new(SelectionPolicy::default());
        let first = rig.send(&syn(), LAN_PORT, T0);
        let again = rig.send(&syn(), LAN_PORT, T0.saturating_add(Nanos::from_secs(1)));
        assert_eq!(sources(&first), sources(&again));
        assert_eq!(rig.translate.nat.len(), 2);
        assert_eq!(rig.translate.nat.counters.races.get(), 1);
        // Karn: the answer to a retransmitted SYN gives no RTT sample.
        let src = sources(&first);
        rig.send(
            &syn_ack_to(NAT4, src[0].1, 1001),
            WAN_PORT,
            T0.saturating_add(Nanos::from_secs(2)),
        );
        assert!(matches!(
            rig.events()[..],
            [SelEvent::Answer {
                rtt: None,
                decided: true,
                ..
            }]
        ));
    }

    #[test]
    fn a_loser_that_never_answers_is_freed_after_the_race_timeout_and_reported() {
        let mut rig = Rig::new(SelectionPolicy::default());
        let src = sources(&rig.send(&syn(), LAN_PORT, T0));
        rig.send(&syn_ack_to(NAT4, src[0].1, 1001), WAN_PORT, T0);
        rig.events();
        assert_eq!(rig.translate.nat.len(), 2);
        let timeout = rig.translate.nat.config().race_timeout;
        let later = T0.saturating_add(timeout).saturating_add(Nanos(1));
        for _ in 0..100 {
            rig.translate.sweep(later);
        }
        assert_eq!(rig.translate.nat.len(), 1);
        assert_eq!(rig.translate.nat.races_live(), 0);
        assert_eq!(rig.events(), vec![SelEvent::Unanswered { uplink: 1 }]);
        assert_eq!(
            rig.translate.nat.counters.uplinks[1].race_unanswered.get(),
            1
        );
    }

    #[test]
    fn the_first_rst_also_decides_and_reaches_the_client() {
        let mut rig = Rig::new(SelectionPolicy::default());
        let src = sources(&rig.send(&syn(), LAN_PORT, T0));
        let l4 = L4::Tcp {
            src_port: 443,
            dst_port: src[0].1,
            control: TcpControl::Rst,
            ack: Some(1001),
            payload: &[],
        };
        let out = rig.send(&from_isp(SERVER, NAT4, l4), WAN_PORT, T0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].meta().out_port, LAN_PORT);
        assert!(tcp_of(&out[0]).rst());
    }

    #[test]
    fn without_racing_a_syn_leaves_by_one_uplink_and_still_measures_it() {
        let mut rig = Rig::new(SelectionPolicy {
            race_tcp: false,
            ..SelectionPolicy::default()
        });
        let out = rig.send(&syn(), LAN_PORT, T0);
        assert_eq!(out.len(), 1);
        let (nat, port) = sources(&out)[0];
        let nat = nat.to_string();
        let t1 = T0.saturating_add(Nanos::from_millis(7));
        let back = rig.send(&syn_ack_to(&nat, port, 1001), port_of(&nat), t1);
        assert_eq!(back.len(), 1);
        assert!(matches!(
            rig.events()[..],
            [SelEvent::Answer { rtt: Some(r), raced: false, decided: false, .. }] if r == Nanos::from_millis(7)
        ));
    }

    #[test]
    fn a_fast_open_syn_does_not_race() {
        let mut rig = Rig::new(SelectionPolicy::default());
        let tfo = from_client(
            "10.0.0.2",
            SERVER,
            L4::Tcp {
                src_port: 40000,
                dst_port: 443,
                control: TcpControl::Syn,
                ack: None,
                payload: b"GET / HTTP/1.1\r\n\r\n",
            },
        );
        assert_eq!(rig.send(&tfo, LAN_PORT, T0).len(), 1);
        assert_eq!(rig.translate.nat.counters.races.get(), 0);
    }

    #[test]
    fn reflected_segments_are_valid_for_ipv6_too() {
        let mut b = buf(
            &from_isp(
                "2001:db8:ffff::5",
                NAT6,
                L4::Tcp {
                    src_port: 443,
                    dst_port: 5555,
                    control: TcpControl::Syn,
                    ack: Some(77),
                    payload: b"xyz",
                },
            ),
            WAN_PORT,
        );
        Classify::new(site(1)).classify(&mut b).unwrap();
        reflect_tcp(&mut b, TCP_RST | TCP_ACK, 77, 9, 0, ISP0_MAC).unwrap();
        assert_checksums_valid(b.data(), usize::from(b.meta().l3_offset));
        let t = tcp_of(&b);
        assert!(t.rst() && t.ack() && !t.syn());
        assert_eq!((t.seq_number().0, t.ack_number().0), (77, 9));
        assert_eq!((t.src_port(), t.dst_port()), (5555, 443));
        assert_eq!(t.payload().len(), 0);
        let _ = TCP_SYN;
    }
}
