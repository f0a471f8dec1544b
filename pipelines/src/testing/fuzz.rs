//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs` call these) and
//! the rig they share: classify → replicate → translate → transmit of the
//! test site's shard 0 with live sessions and races set up first, checking
//! after every input that each buffer handed out was forwarded or counted
//! as a drop (packets in + copies made = packets out + counted drops) and
//! that none is left behind. The seeds of their corpora are in
//! [`super::fuzz_seeds`].
//!
//! Input of [`pipeline`]: one mode byte (bit 0: first-payload races, bit 1:
//! service addresses on, bit 2: endpoint-independent filtering), then
//! records `[port, dt, len_lo, len_hi, frame...]` (a short last record takes
//! what is left). Records with `dt == 0` share a burst; a record with
//! `dt > 0` first flushes the burst and moves the clock `dt` × 10 ms on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use smoltcp::wire::TcpControl;

use super::*;
use crate::nat::{Filtering, NatConfig};
use crate::neighbour::Neighbours;
use crate::packet::buf::{HeapBuf, HeapPool, PacketBuf};
use crate::packet::burst::{Burst, BURST_MAX};
use crate::packet::counter::StageCounters;
use crate::packet::drop::DropReason;
use crate::packet::time::Nanos;
use crate::redirect::db::{DbSpec, MemberDef, RedirectDb, ServerDef, ServiceDef};
use crate::redirect::service::{ServiceMap, ServicePlane};
use crate::select::policy::{RaceMode, SelectionPolicy};
use crate::stages::classify::Classify;
use crate::stages::replicate::Replicate;
use crate::stages::translate::Translate;
use crate::stages::transmit::Transmit;

/// Start of the rig's clock.
pub const T0: Nanos = Nanos(1_000_000_000);
/// The server of the rig's fixed sessions.
pub const SERVER: &str = "203.0.113.5";
pub const SERVER6: &str = "2001:db8:ffff::5";
/// The client of the rig's fixed sessions.
pub const CLIENT: &str = "10.0.0.2";
pub const CLIENT6: &str = "fd00::2";
/// The client's TCP port of the racing connection (the NAT keeps it: port
/// preservation) and its UDP port: inside the rig's NAT port range.
pub const TCP_PORT: u16 = 40000;
pub const UDP_PORT: u16 = 40100;
/// The ICMP echo identifier of the fixed echo (kept as its NAT "port").
pub const ECHO_ID: u16 = 40200;
/// The master service address (uplink 0) when services are on.
pub const SERVICE: &str = "192.0.2.10";
pub const SERVICE_PORT: u16 = 7000;

/// The rig's NAT ports.
pub const NAT_PORTS: crate::topology::NatPortRange = crate::topology::NatPortRange {
    first: 40000,
    last: 40511,
};

/// Mode bits of the first input byte.
pub const MODE_FIRST_PAYLOAD: u8 = 1;
pub const MODE_SERVICES: u8 = 2;
pub const MODE_OPEN_FILTERING: u8 = 4;

thread_local! {
    static POOL: &'static HeapPool = HeapPool::new_static(4096);
}

/// The fuzz rig's pool, one per thread (its allocation count is the
/// conservation check's "packets in", so tests running in parallel must
/// not share it).
pub fn fuzz_pool() -> &'static HeapPool {
    POOL.with(|p| *p)
}

/// The four stages of shard 0 of `site(1)`.
pub struct Rig {
    pub classify: Classify,
    pub replicate: Replicate,
    pub translate: Translate,
    pub transmit: Transmit,
    pub neighbours: Arc<Neighbours>,
    pub now: Nanos,
    /// Frames that left, per port (kept only when `keep` is set).
    pub sent: Vec<(u16, Vec<u8>)>,
    pub keep: bool,
    forwarded: usize,
    allocs_at_start: usize,
    in_use_at_start: usize,
}

impl Rig {
    /// The rig in `mode` (the mode bits above) with nothing sent yet. Its
    /// NAT port range is [`NAT_PORTS`]: shuffling the full range for every
    /// input would cost more than the input.
    pub fn new(mode: u8) -> Rig {
        let topo = site_with(NAT_PORTS, 1);
        let policy = SelectionPolicy {
            mode: if mode & MODE_FIRST_PAYLOAD != 0 {
                RaceMode::FirstPayload
            } else {
                RaceMode::SynAck
            },
            ..SelectionPolicy::default()
        };
        let policy = Arc::new(policy);
        let cfg = NatConfig {
            max_sessions: 256,
            max_races: 32,
            filtering: if mode & MODE_OPEN_FILTERING != 0 {
                Filtering::EndpointIndependent
            } else {
                Filtering::default()
            },
            ..NatConfig::default()
        };
        let neighbours = Arc::new(Neighbours::new(&topo.uplinks));
        let mut classify = Classify::with_neighbours(topo.clone(), neighbours.clone());
        let mut translate = Translate::with_policy(topo.clone(), 0, cfg, policy.clone());
        if mode & MODE_SERVICES != 0 {
            let (map, plane) = services();
            classify.set_services(Arc::new(map));
            translate.enable_services(plane, &[(ip(SERVICE), 0), (ip("192.0.2.11"), 0)], 2);
        }
        let pool = fuzz_pool();
        Rig {
            classify,
            replicate: Replicate::with_policy(topo.clone(), policy),
            translate,
            transmit: Transmit::with_neighbours(topo, neighbours.clone()),
            neighbours,
            now: T0,
            sent: Vec::new(),
            keep: false,
            forwarded: 0,
            allocs_at_start: pool.allocs(),
            in_use_at_start: pool.in_use(),
        }
    }

    /// The rig in `mode` with the fixed sessions open: a TCP connection
    /// racing over both uplinks (its SYN sent, no answer yet), a UDP flow
    /// over IPv4 and one over IPv6, and an ICMP echo.
    pub fn with_sessions(mode: u8) -> Rig {
        let mut rig = Rig::new(mode);
        let frames = [
            from_client(CLIENT, SERVER, tcp(TCP_PORT, 443, TcpControl::Syn)),
            from_client(CLIENT, SERVER, udp(UDP_PORT, 53, b"q")),
            from_client(CLIENT6, SERVER6, udp(UDP_PORT, 53, b"q6")),
            from_client(
                CLIENT,
                SERVER,
                L4::EchoRequest {
                    ident: ECHO_ID,
                    seq_no: 1,
                },
            ),
        ];
        for f in &frames {
            rig.run(&[(LAN_PORT, f.as_slice())]);
        }
        rig
    }

    /// Runs one burst of `(port, frame)` through the four stages.
    pub fn run(&mut self, frames: &[(u16, &[u8])]) {
        let mut input: Burst<HeapBuf> = Burst::new();
        for &(port, frame) in frames.iter().take(BURST_MAX) {
            // Larger than a buffer: the port would not have received it.
            if let Some(mut b) = fuzz_pool().alloc_with(frame) {
                b.meta_mut().in_port = port;
                input.push(b);
            }
        }
        let mut classified = Burst::new();
        self.classify.process(&mut input, &mut classified);
        while !classified.is_empty() {
            let mut replicated = Burst::new();
            self.replicate
                .process(self.now, &mut classified, &mut replicated);
            while !replicated.is_empty() {
                let mut translated = Burst::new();
                self.translate
                    .process(self.now, &mut replicated, &mut translated);
                self.transmit_all(&mut translated);
            }
        }
        self.translate.sweep(self.now);
        self.translate.nat.events.clear();
    }

    fn transmit_all(&mut self, burst: &mut Burst<HeapBuf>) {
        let mut per_port: Vec<Burst<HeapBuf>> = (0..4).map(|_| Burst::new()).collect();
        while !burst.is_empty() {
            self.transmit.process(burst, &mut per_port);
            for (port, out) in per_port.iter_mut().enumerate() {
                for b in out.drain(..) {
                    self.forwarded += 1;
                    if self.keep {
                        self.sent.push((port as u16, b.data().to_vec()));
                    }
                }
            }
        }
    }

    /// Drops counted by the four stages.
    pub fn drops(&self) -> u64 {
        let all: [&StageCounters; 4] = [
            &self.classify.counters,
            &self.replicate.counters,
            &self.translate.counters,
            &self.transmit.counters,
        ];
        all.iter().map(|c| c.total_drops()).sum()
    }

    /// Drops counted for `reason` by any stage.
    pub fn drops_of(&self, reason: DropReason) -> u64 {
        let all: [&StageCounters; 4] = [
            &self.classify.counters,
            &self.replicate.counters,
            &self.translate.counters,
            &self.transmit.counters,
        ];
        all.iter().map(|c| c.drops(reason)).sum()
    }

    /// Buffers handed out since the rig was made (frames received and
    /// copies the stages made) and buffers forwarded.
    pub fn handed_out_and_forwarded(&self) -> (usize, usize) {
        (fuzz_pool().allocs() - self.allocs_at_start, self.forwarded)
    }

    /// Lets time run past every timeout that holds buffers (fragments
    /// waiting for their datagram's first fragment are released and counted
    /// when it times out), then panics unless every buffer handed out was
    /// forwarded or counted as a drop, and none is still held.
    pub fn assert_conserved(&mut self) {
        for _ in 0..64 {
            if self.translate.nat.counters.fragments_held.get() == 0 {
                break;
            }
            self.now = self.now.saturating_add(Nanos::from_secs(60));
            self.run(&[]);
        }
        let (handed, forwarded) = self.handed_out_and_forwarded();
        let drops = self.drops() as usize;
        assert_eq!(
            handed,
            forwarded + drops,
            "buffers handed out ({handed}) != forwarded ({forwarded}) + counted drops ({drops})"
        );
        assert_eq!(
            fuzz_pool().in_use(),
            self.in_use_at_start,
            "buffers still held"
        );
    }
}

/// Splits the records of a [`pipeline`] input (after the mode byte).
pub fn records(mut data: &[u8]) -> Vec<(u16, u8, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 && out.len() < 256 {
        let port = u16::from(data[0] % 5);
        let dt = data[1];
        let len = usize::from(u16::from_le_bytes([data[2], data[3]]));
        let end = (4 + len).min(data.len());
        out.push((port, dt, &data[4..end]));
        data = &data[end..];
    }
    out
}

/// Encodes records for [`pipeline`] (the seeds' writer).
pub fn encode(mode: u8, records: &[(u16, u8, &[u8])]) -> Vec<u8> {
    let mut v = vec![mode];
    for &(port, dt, frame) in records {
        v.push(port as u8);
        v.push(dt);
        v.extend_from_slice(&(frame.len() as u16).to_le_bytes());
        v.extend_from_slice(frame);
    }
    v
}

/// Runs records through a rig with the fixed sessions; checks conservation.
pub fn run_records(rig: &mut Rig, records: &[(u16, u8, &[u8])]) {
    let mut burst: Vec<(u16, &[u8])> = Vec::new();
    for &(port, dt, frame) in records {
        if dt > 0 || burst.len() == BURST_MAX {
            rig.run(&burst);
            burst.clear();
            rig.now = rig
                .now
                .saturating_add(Nanos::from_millis(u64::from(dt) * 10));
        }
        burst.push((port, frame));
    }
    rig.run(&burst);
}

/// Target `pipeline`: arbitrary frames in both directions over live
/// sessions and races.
pub fn pipeline(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut rig = Rig::with_sessions(mode);
    run_records(&mut rig, &records(rest));
    rig.assert_conserved();
}

/// Target `icmp_error`: an ICMP or ICMPv6 error quoting arbitrary bytes,
/// from a router beyond uplink 0 (to the NAT address) or from the LAN (to
/// the server). Input: `[selector, type, code, quoted...]`.
pub fn icmp_error(data: &[u8]) {
    let [sel, icmp_type, code, quoted @ ..] = data else {
        return;
    };
    let mut rig = Rig::with_sessions(sel >> 4);
    let v6 = sel & 1 != 0;
    let (src, dst, port, dst_mac, src_mac) = match (sel & 2 != 0, v6) {
        (false, false) => ("198.18.0.1", NAT4, WAN_PORT, WAN_MAC, ISP0_MAC),
        (false, true) => ("2001:db8:eeee::1", NAT6, WAN_PORT, WAN_MAC, ISP0_MAC),
        (true, false) => (CLIENT, SERVER, LAN_PORT, LAN_MAC, CLIENT_MAC),
        (true, true) => (CLIENT6, SERVER6, LAN_PORT, LAN_MAC, CLIENT_MAC),
    };
    let (s, d) = (ip(src), ip(dst));
    let dgram = icmp_error_ip(s, d, *icmp_type, *code, [0; 4], quoted);
    let frame = ethernet(dst_mac, src_mac, None, ethertype_of(s), &dgram);
    rig.run(&[(port, &frame)]);
    rig.assert_conserved();
}

/// Target `neighbour`: ARP and neighbour discovery bodies from a client or
/// a next hop (and the solicitation writer). Input: `[selector, body...]`:
/// bit 0 ND (else ARP), bits 1-2 the port; an ND body is `[type, code,
/// rest...]` sent with hop limit 255 and a valid checksum.
pub fn neighbour(data: &[u8]) {
    let [sel, body @ ..] = data else {
        return;
    };
    let mut rig = Rig::new(0);
    let port = u16::from((sel >> 1) & 3);
    let (dst_mac, src_mac) = match port {
        LAN_PORT => (LAN_MAC, CLIENT_MAC),
        _ => (WAN_MAC, ISP0_MAC),
    };
    let frame = if sel & 1 == 0 {
        ethernet([0xff; 6], src_mac, None, 0x0806, body)
    } else {
        let (src, dst) = if port == LAN_PORT {
            (ip("fd00::2"), ip("ff02::1:ff00:1"))
        } else {
            (ip("fe80::a0"), ip("ff02::1:ff00:1"))
        };
        let (t, c, rest) = match body {
            [t, c, rest @ ..] => (*t, *c, rest),
            _ => (135, 0, &[][..]),
        };
        let (word, tail) = rest.split_at(rest.len().min(4));
        let mut w = [0u8; 4];
        w[..word.len()].copy_from_slice(word);
        let mut dgram = icmp_error_ip(src, dst, t, c, w, tail);
        dgram[7] = 255; // hop limit
        ethernet(dst_mac, src_mac, None, 0x86dd, &dgram)
    };
    rig.run(&[(port, &frame), (port, body)]);
    rig.assert_conserved();
    let mut out = [0u8; 128];
    let topo = site_with(NAT_PORTS, 1);
    for hop in rig.neighbours.hops() {
        let _ = crate::neighbour::write_request(&topo, hop, &mut out);
    }
}

/// Target `service`: first packets and redirected exchanges to service
/// addresses. Input: `[selector, payload...]`: bit 0 TCP (else UDP), bits
/// 1-2 the DSCP mark (plain, failed, redirected, other), bits 3-5 the TCP
/// flags shape; the rest is the payload (UDP) or the segment's payload.
pub fn service(data: &[u8]) {
    let [sel, payload @ ..] = data else {
        return;
    };
    let mut rig = Rig::new(MODE_SERVICES);
    let dscp = [0u8, 43, 42, 10][usize::from((sel >> 1) & 3)];
    let l4 = if sel & 1 == 0 {
        udp(40001, SERVICE_PORT, payload)
    } else {
        let control = match (sel >> 3) & 3 {
            0 => TcpControl::Syn,
            1 => TcpControl::None,
            2 => TcpControl::Fin,
            _ => TcpControl::Rst,
        };
        L4::Tcp {
            src_port: 40001,
            dst_port: SERVICE_PORT,
            control,
            ack: (sel & 0x20 != 0).then_some(1),
            payload,
        }
    };
    let mut frame = from_isp("198.18.5.5", SERVICE, l4);
    set_dscp(&mut frame, dscp);
    rig.run(&[(WAN_PORT, &frame)]);
    rig.now = rig.now.saturating_add(Nanos::from_millis(10));
    rig.run(&[(WAN_PORT, &frame)]);
    rig.assert_conserved();
}

/// Sets the DSCP of an untagged IPv4 frame and fixes its header checksum.
fn set_dscp(frame: &mut [u8], dscp: u8) {
    if frame.len() < 34 {
        return;
    }
    frame[15] = dscp << 2;
    frame[24] = 0;
    frame[25] = 0;
    let c = crate::wire::checksum::checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
}

/// Target `tcp_window`: TCP segments in both directions of the racing
/// connection (answered by both uplinks first, so first-payload mode has a
/// winner in another sequence space), each built from 12 input bytes:
/// `[dir|flags, seq(4), ack(4), win(2), n]` and `n % 41` bytes of options
/// (SACK blocks, say) taken from the input, then a payload of `seq % 64`
/// bytes. Mode byte first.
pub fn tcp_window(data: &[u8]) {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let mut rig = Rig::with_sessions(mode & (MODE_FIRST_PAYLOAD | MODE_OPEN_FILTERING));
    rig.run(&[(WAN_PORT, &server_segment(NAT4, 0x12, 5000, 1, &[], &[]))]);
    rig.run(&[(
        WAN_TAGGED_PORT,
        &server_segment(NAT4_TAGGED, 0x12, 9000, 1, &[], &[]),
    )]);
    while rest.len() >= 12 {
        let (h, tail) = rest.split_at(12);
        let nopt = usize::from(h[11] % 41).min(tail.len()) & !3;
        let (opts, tail) = tail.split_at(nopt);
        rest = tail;
        let seq = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
        let ack = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        let payload = vec![0x55; (seq % 64) as usize];
        let flags = h[0] & 0x3f;
        let frame = if h[0] & 0x80 == 0 {
            client_segment(
                flags,
                seq,
                ack,
                u16::from_be_bytes([h[9], h[10]]),
                opts,
                &payload,
            )
        } else if h[0] & 0x40 == 0 {
            server_segment(NAT4, flags, seq, ack, opts, &payload)
        } else {
            server_segment(NAT4_TAGGED, flags, seq, ack, opts, &payload)
        };
        let port = if h[0] & 0x80 == 0 {
            LAN_PORT
        } else if h[0] & 0x40 == 0 {
            WAN_PORT
        } else {
            WAN_TAGGED_PORT
        };
        rig.run(&[(port, &frame)]);
    }
    rig.assert_conserved();
}

/// A TCP segment of the racing connection from the client.
pub fn client_segment(
    flags: u8,
    seq: u32,
    ack: u32,
    win: u16,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut seg = tcp_segment(TCP_PORT, 443, flags, seq, ack, win, opts, payload);
    fill_tcp_checksum(CLIENT, SERVER, &mut seg);
    let dgram = raw_ip(ip(CLIENT), ip(SERVER), 6, 64, &seg);
    ethernet(LAN_MAC, CLIENT_MAC, None, 0x0800, &dgram)
}

/// A TCP segment of the racing connection from the server, over the uplink
/// of NAT address `nat` (NAT4 or NAT4_TAGGED).
pub fn server_segment(
    nat: &str,
    flags: u8,
    seq: u32,
    ack: u32,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut seg = tcp_segment(443, TCP_PORT, flags, seq, ack, 65_000, opts, payload);
    fill_tcp_checksum(SERVER, nat, &mut seg);
    let dgram = raw_ip(ip(SERVER), ip(nat), 6, 64, &seg);
    if nat == NAT4 {
        ethernet(WAN_MAC, ISP0_MAC, None, 0x0800, &dgram)
    } else {
        ethernet(WAN_TAGGED_MAC, ISP1_MAC, Some(TAGGED_VLAN), 0x0800, &dgram)
    }
}

/// A TCP header with options `opts` (a multiple of 4 bytes) and `payload`;
/// the checksum is left zero (`raw_ip` does not fill it), filled by
/// [`fill_tcp_checksum`] through the pseudo-header.
#[allow(clippy::too_many_arguments)]
fn tcp_segment(
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    win: u16,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let hl = 20 + opts.len();
    let mut t = vec![0u8; hl];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = ((hl / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&win.to_be_bytes());
    t[20..].copy_from_slice(opts);
    t.extend_from_slice(payload);
    t
}

/// Fills the checksum of IPv4 TCP segment `seg` from `src` to `dst`.
fn fill_tcp_checksum(src: &str, dst: &str, seg: &mut [u8]) {
    use crate::wire::checksum::{fold, sum};
    let (IpAddr::V4(s), IpAddr::V4(d)) = (ip(src), ip(dst)) else {
        return;
    };
    seg[16] = 0;
    seg[17] = 0;
    let pseudo = sum(&d.octets(), sum(&s.octets(), 0)) + 6 + seg.len() as u32;
    let c = !fold(sum(seg, pseudo));
    seg[16..18].copy_from_slice(&c.to_be_bytes());
}

/// The rig's service plane: a master service at 192.0.2.10:7000 whose
/// members are two one-server services (192.0.2.11 and .12), servers on
/// the LAN.
fn services() -> (ServiceMap, ServicePlane) {
    let sa = |s: &str| s.parse::<SocketAddr>().expect("address");
    let mut spec = DbSpec::default();
    let member = |m| MemberDef {
        member: m,
        weight: 1,
        clients: vec![],
    };
    for i in 0..2u8 {
        spec.servers.push(ServerDef {
            name: format!("s{i}"),
            addr: sa(&format!("10.0.2.{}:7000", i + 1)),
            mac: [2, 0, 0, 0, 2, i],
        });
    }
    let service = |name: &str, addr: &str, members| ServiceDef {
        name: name.into(),
        addr: sa(addr),
        tcp: true,
        udp: true,
        persistence: crate::redirect::header::Persistence::Once,
        members,
    };
    use crate::redirect::db::Member;
    spec.services.push(service(
        "web",
        "192.0.2.10:7000",
        vec![member(Member::Service(1)), member(Member::Service(2))],
    ));
    spec.services.push(service(
        "s1",
        "192.0.2.11:7000",
        vec![member(Member::Server(0))],
    ));
    spec.services.push(service(
        "s2",
        "192.0.2.12:7000",
        vec![member(Member::Server(1))],
    ));
    spec.check().expect("service spec");
    let mut db = RedirectDb::new(spec);
    db.set_server_loads(&[Default::default(), Default::default()]);
    let mut map = ServiceMap::default();
    for (i, a) in ["192.0.2.10:7000", "192.0.2.11:7000", "192.0.2.12:7000"]
        .iter()
        .enumerate()
    {
        map.add_service(i as u16, sa(a), true, true, 0);
    }
    for i in 0..2u16 {
        map.add_server(i, sa(&format!("10.0.2.{}:7000", i + 1)));
    }
    (
        map,
        ServicePlane::new(Arc::new(db.snapshot(Nanos::ZERO)), 3, 7),
    )
}
