//! A transparent TCP proxy on one uplink: a SYN proxy (like Linux SYNPROXY,
//! or a TCP-terminating middlebox) sitting near the appliance, which answers
//! SYNs itself at once and delivers the server's data late.
//!
//! Per connection (keyed by its 4-tuple as the appliance sends it):
//!
//! 1. **Answered.** A SYN from the appliance is answered with the proxy's
//!    own SYN+ACK (its own ISN, the SYN's MSS or 1460, window 65535, no
//!    window scaling, SACK or timestamps); the SYN is kept, not forwarded.
//!    A retransmitted SYN (same ISN) gets the same SYN+ACK again; a SYN
//!    with another ISN starts a new connection on the tuple.
//! 2. **Connecting.** The client's first ACK makes the proxy open the
//!    server side: it sends the kept SYN (the client's ISN; the options the
//!    proxy did not offer the client — window scale, SACK-permitted,
//!    timestamps — replaced by NOPs so both sides agree) toward the server,
//!    resending it with backoff if no SYN+ACK comes. Client segments with
//!    payload or FIN wait in a small queue.
//! 3. **Spliced.** The server's SYN+ACK is consumed: the proxy ACKs it,
//!    records `offset = server ISN - proxy ISN`, and releases the held
//!    segments. From then on client→server segments get `ack += offset`
//!    (SACK blocks too), server→client segments `seq -= offset`; RST and FIN
//!    pass translated. A retransmitted SYN+ACK from the server is ACKed
//!    again.
//!
//! Anything else — not IPv4 TCP, a fragment, a malformed header, a segment
//! of no tracked connection — passes unchanged (`passed`); a segment with a
//! bad checksum or one the state cannot use is dropped (`dropped`). Nothing
//! here indexes a packet without checking its length first.
//!
//! The proxy is pure: it takes datagrams and the time, and returns the
//! datagrams it sends with their direction; the site puts them on its lines.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use pipelines::wire::checksum::{fold, sum};
use pipelines::wire::tcp::{
    self, OPT_END, OPT_MSS, OPT_NOP, OPT_SACK, OPT_SACK_PERMITTED, OPT_TIMESTAMP, OPT_WSCALE,
};
use pipelines::wire::{be16, be32, ipv4, put_be32, Ipv4Packet, TcpPacket};
use smoltcp::wire::IpProtocol;

use super::host::{Micros, NEVER};

pub use pipelines::wire::tcp::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// Client segments held per connection until the server side is open.
const HELD_MAX: usize = 64;
/// SYNs the proxy sends toward the server per connection (first + resends).
const SYN_TRIES_MAX: u32 = 6;
/// Longest interval between two SYN resends.
const SYN_RESEND_MAX_US: Micros = 8_000_000;
/// Idle connections are forgotten by a sweep at most this often.
const SWEEP_EVERY_US: Micros = 1_000_000;
/// The MSS the proxy announces when the client's SYN has none.
const MSS_DEFAULT: u16 = 1460;
/// The window of the proxy's SYN+ACK.
const PROXY_WINDOW: u16 = 65535;

/// Where a datagram the proxy emits goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toward {
    Server,
    Appliance,
}

/// What the proxy did, cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyCounts {
    /// SYNs from the appliance answered with the proxy's own SYN+ACK
    /// (retransmitted SYNs included).
    pub syn_answered: u64,
    /// Connections spliced: the server's SYN+ACK arrived and the proxy joined
    /// the two halves.
    pub connections: u64,
    /// Datagrams passed unchanged (not TCP, malformed, or of no connection
    /// the proxy tracks).
    pub passed: u64,
    /// Segments dropped: bad checksum, full hold queue, or useless in the
    /// connection's state.
    pub dropped: u64,
}

/// The fields of an IPv4 TCP segment the proxy uses. Offsets are into the
/// datagram; `parse` checked that every one is in bounds.
#[derive(Clone, Copy, Debug)]
pub struct Seg {
    pub ihl: usize,
    /// IP total length (the datagram is at least this long).
    pub total: usize,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// TCP header length.
    pub doff: usize,
    pub win: u16,
}

impl Seg {
    pub fn payload_len(&self) -> usize {
        self.total - self.ihl - self.doff
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The TCP segment in an IPv4 datagram, or `None` if it is not an
/// unfragmented IPv4 TCP segment with consistent lengths (smoltcp's checked
/// views check the lengths; the sim is off the packet path).
pub fn parse(ip: &[u8]) -> Option<Seg> {
    let p = Ipv4Packet::new_checked(ip).ok()?;
    let ihl = usize::from(p.header_len());
    let total = usize::from(p.total_len());
    if p.version() != 4 || ihl < ipv4::MIN_HEADER_LEN || p.next_header() != IpProtocol::Tcp {
        return None;
    }
    // More fragments, or a fragment offset: not a whole segment.
    if p.more_frags() || p.frag_offset() != 0 {
        return None;
    }
    let seg = ip.get(ihl..total)?;
    let t = TcpPacket::new_checked(seg).ok()?;
    Some(Seg {
        ihl,
        total,
        src: p.src_addr().octets(),
        dst: p.dst_addr().octets(),
        sport: t.src_port(),
        dport: t.dst_port(),
        seq: tcp::seq(seg),
        ack: tcp::ack(seg),
        flags: tcp::flags(seg),
        doff: usize::from(t.header_len()),
        win: t.window_len(),
    })
}

/// The IP protocol number of TCP.
const PROTO_TCP: u8 = 6;

/// The TCP checksum's sum over the pseudo-header and the segment.
fn tcp_sum(ip: &[u8], s: &Seg) -> u32 {
    let seg = &ip[s.ihl..s.total];
    let mut acc = sum(&s.src, 0);
    acc = sum(&s.dst, acc);
    acc += u32::from(PROTO_TCP) + seg.len() as u32;
    sum(seg, acc)
}

pub fn tcp_checksum_ok(ip: &[u8], s: &Seg) -> bool {
    fold(tcp_sum(ip, s)) == 0xffff
}

fn fill_tcp_checksum(ip: &mut [u8], s: &Seg) {
    tcp::set_checksum(&mut ip[s.ihl..], 0);
    let c = !fold(tcp_sum(ip, s));
    tcp::set_checksum(&mut ip[s.ihl..], c);
}

/// Calls `f(kind, offset of the option's first byte, option length)` for
/// every option of the segment; stops at END or a malformed option.
fn for_each_option(ip: &[u8], s: &Seg, mut f: impl FnMut(u8, usize, usize)) {
    let end = s.ihl + s.doff;
    let mut i = s.ihl + tcp::MIN_HEADER_LEN;
    while i < end {
        match ip[i] {
            OPT_END => break,
            OPT_NOP => i += 1,
            kind => {
                let Some(&len) = ip.get(i + 1) else { break };
                let len = usize::from(len);
                if len < 2 || i + len > end {
                    break;
                }
                f(kind, i, len);
                i += len;
            }
        }
    }
}

/// The MSS option's value, if the segment has a well-formed one.
fn mss_of(ip: &[u8], s: &Seg) -> Option<u16> {
    let mut mss = None;
    for_each_option(ip, s, |kind, at, len| {
        if kind == OPT_MSS && len == 4 {
            mss = be16(ip, at + 2);
        }
    });
    mss
}

/// Replaces window scale, SACK-permitted and timestamp options by NOPs.
fn strip_unoffered_options(ip: &mut [u8], s: &Seg) {
    let mut spans = [(0usize, 0usize); 8];
    let mut n = 0;
    for_each_option(ip, s, |kind, at, len| {
        if matches!(kind, OPT_WSCALE | OPT_SACK_PERMITTED | OPT_TIMESTAMP) && n < spans.len() {
            spans[n] = (at, len);
            n += 1;
        }
    });
    for &(at, len) in &spans[..n] {
        ip[at..at + len].fill(OPT_NOP);
    }
}

/// Adds `delta` to both edges of every SACK block.
fn shift_sack(ip: &mut [u8], s: &Seg, delta: u32) {
    let mut spans = [(0usize, 0usize); 8];
    let mut n = 0;
    for_each_option(ip, s, |kind, at, len| {
        if kind == OPT_SACK && n < spans.len() {
            spans[n] = (at, len);
            n += 1;
        }
    });
    for &(at, len) in &spans[..n] {
        let mut e = at + 2;
        while e + 4 <= at + len {
            let v = be32(ip, e).unwrap_or(0);
            put_be32(ip, e, v.wrapping_add(delta));
            e += 4;
        }
    }
}

/// The header fields of a segment to build.
#[derive(Clone, Copy, Debug)]
pub struct SegSpec {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub win: u16,
    /// An MSS option, if any (the only option the proxy writes).
    pub mss: Option<u16>,
}

/// An IPv4 TCP datagram (TTL 64, DF) with correct checksums.
pub fn build(spec: &SegSpec, payload: &[u8]) -> Vec<u8> {
    let hl = ipv4::MIN_HEADER_LEN;
    let doff = tcp::MIN_HEADER_LEN + if spec.mss.is_some() { 4 } else { 0 };
    let total = hl + doff + payload.len();
    let mut ip = vec![0u8; hl + doff];
    ipv4::write_header(
        &mut ip,
        0,
        total.min(usize::from(u16::MAX)) as u16,
        0,
        64,
        PROTO_TCP,
        spec.src.into(),
        spec.dst.into(),
    );
    let seg = &mut ip[hl..];
    seg[tcp::SRC_PORT_OFFSET..][..2].copy_from_slice(&spec.sport.to_be_bytes());
    seg[tcp::DST_PORT_OFFSET..][..2].copy_from_slice(&spec.dport.to_be_bytes());
    tcp::set_seq(seg, spec.seq);
    tcp::set_ack(seg, spec.ack);
    seg[tcp::DATA_OFF_OFFSET] = tcp::data_off_byte(doff);
    seg[tcp::FLAGS_OFFSET] = spec.flags;
    seg[tcp::WINDOW_OFFSET..][..2].copy_from_slice(&spec.win.to_be_bytes());
    if let Some(mss) = spec.mss {
        let opt = &mut seg[tcp::MIN_HEADER_LEN..];
        opt[..2].copy_from_slice(&[OPT_MSS, 4]);
        opt[2..4].copy_from_slice(&mss.to_be_bytes());
    }
    ip.extend_from_slice(payload);
    if let Some(s) = parse(&ip) {
        fill_tcp_checksum(&mut ip, &s);
    }
    ip
}

/// A connection as the appliance sends it: client (NAT address and port)
/// and server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    client: [u8; 4],
    server: [u8; 4],
    cport: u16,
    sport: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// SYN+ACK sent to the client; waiting for its ACK.
    Answered,
    /// SYN sent to the server; waiting for its SYN+ACK.
    Connecting,
    /// Both halves open; segments are translated.
    Spliced,
}

struct Conn {
    state: State,
    client_isn: u32,
    proxy_isn: u32,
    server_isn: u32,
    /// `server_isn - proxy_isn`: added to client ACKs, taken from server SEQs.
    offset: u32,
    mss: u16,
    /// The client's SYN as it goes to the server.
    syn: Vec<u8>,
    /// Client segments waiting for the server side.
    held: Vec<Vec<u8>>,
    /// The window of the client's latest segment (for the proxy's ACK).
    client_win: u16,
    syn_tries: u32,
    /// When the next SYN resend is due (matches one live timer entry).
    syn_due: Micros,
    last_seen: Micros,
}

impl Conn {
    fn syn_ack(&self, k: &Key) -> Vec<u8> {
        build(
            &SegSpec {
                src: k.server,
                dst: k.client,
                sport: k.sport,
                dport: k.cport,
                seq: self.proxy_isn,
                ack: self.client_isn.wrapping_add(1),
                flags: TCP_SYN | TCP_ACK,
                win: PROXY_WINDOW,
                mss: Some(self.mss),
            },
            &[],
        )
    }

    fn ack_to_server(&self, k: &Key) -> Vec<u8> {
        build(
            &SegSpec {
                src: k.client,
                dst: k.server,
                sport: k.cport,
                dport: k.sport,
                seq: self.client_isn.wrapping_add(1),
                ack: self.server_isn.wrapping_add(1),
                flags: TCP_ACK,
                win: self.client_win,
                mss: None,
            },
            &[],
        )
    }
}

/// Client→server translation: `ack += offset` (SACK blocks too).
fn translate_up(ip: &mut [u8], s: &Seg, offset: u32) {
    if s.has(TCP_ACK) {
        tcp::set_ack(&mut ip[s.ihl..], s.ack.wrapping_add(offset));
    }
    shift_sack(ip, s, offset);
    fill_tcp_checksum(ip, s);
}

/// Server→client translation: `seq -= offset`.
fn translate_down(ip: &mut [u8], s: &Seg, offset: u32) {
    tcp::set_seq(&mut ip[s.ihl..], s.seq.wrapping_sub(offset));
    fill_tcp_checksum(ip, s);
}

pub struct Proxy {
    conns: HashMap<Key, Conn>,
    /// SYN resend deadlines; an entry is live only if it equals its
    /// connection's `syn_due` while the connection is connecting.
    timers: BinaryHeap<Reverse<(Micros, Key)>>,
    rng: SmallRng,
    /// A connection silent this long is forgotten.
    idle_us: Micros,
    next_sweep: Micros,
    pub counts: ProxyCounts,
}

/// What the proxy emits: datagrams with their direction.
pub type ProxyOut = Vec<(Toward, Vec<u8>)>;

impl Proxy {
    pub fn new(seed: u64, idle_us: Micros) -> Proxy {
        Proxy {
            conns: HashMap::new(),
            timers: BinaryHeap::new(),
            rng: SmallRng::seed_from_u64(seed),
            idle_us: idle_us.max(1),
            next_sweep: 0,
            counts: ProxyCounts::default(),
        }
    }

    /// Connections the proxy tracks.
    #[cfg(test)]
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The next SYN resend due (`NEVER`: none).
    pub fn next_deadline(&self) -> Micros {
        self.timers.peek().map_or(NEVER, |Reverse((t, _))| *t)
    }

    /// A datagram from the appliance reached the proxy. `rto_us` is the
    /// first SYN resend interval toward the server.
    pub fn on_appliance(
        &mut self,
        now: Micros,
        mut ip: Vec<u8>,
        rto_us: Micros,
        out: &mut ProxyOut,
    ) {
        self.sweep(now);
        let Some(s) = parse(&ip) else {
            self.counts.passed += 1;
            out.push((Toward::Server, ip));
            return;
        };
        ip.truncate(s.total);
        let key = Key {
            client: s.src,
            server: s.dst,
            cport: s.sport,
            sport: s.dport,
        };
        if s.has(TCP_SYN) && !s.has(TCP_ACK) && !s.has(TCP_RST) {
            self.on_client_syn(now, key, ip, &s, out);
            return;
        }
        let Some(c) = self.conns.get_mut(&key) else {
            self.counts.passed += 1;
            out.push((Toward::Server, ip));
            return;
        };
        if !tcp_checksum_ok(&ip, &s) || s.has(TCP_SYN) {
            self.counts.dropped += 1;
            return;
        }
        c.last_seen = now;
        if s.has(TCP_ACK) {
            c.client_win = s.win;
        }
        match c.state {
            State::Answered if s.has(TCP_RST) => {
                // The client gave up before the server was asked: nothing to tell it.
                self.conns.remove(&key);
            }
            State::Answered if !s.has(TCP_ACK) => self.counts.dropped += 1,
            State::Answered => {
                // The client completed the handshake with the proxy: open
                // the server side.
                c.state = State::Connecting;
                c.syn_tries = 1;
                c.syn_due = now.saturating_add(rto_us.max(1));
                self.timers.push(Reverse((c.syn_due, key)));
                out.push((Toward::Server, c.syn.clone()));
                Self::hold(c, ip, &s, &mut self.counts);
            }
            State::Connecting if s.has(TCP_RST) => {
                // Reset the server side too: an RST without ACK needs only
                // its sequence number, which is the client's on both sides.
                ip[s.ihl + tcp::FLAGS_OFFSET] &= !TCP_ACK;
                tcp::set_ack(&mut ip[s.ihl..], 0);
                fill_tcp_checksum(&mut ip, &s);
                out.push((Toward::Server, ip));
                self.conns.remove(&key);
            }
            State::Connecting => Self::hold(c, ip, &s, &mut self.counts),
            State::Spliced => {
                translate_up(&mut ip, &s, c.offset);
                out.push((Toward::Server, ip));
                if s.has(TCP_RST) {
                    self.conns.remove(&key);
                }
            }
        }
    }

    fn on_client_syn(
        &mut self,
        now: Micros,
        key: Key,
        mut ip: Vec<u8>,
        s: &Seg,
        out: &mut ProxyOut,
    ) {
        if !tcp_checksum_ok(&ip, s) {
            self.counts.dropped += 1;
            return;
        }
        if let Some(c) = self.conns.get_mut(&key) {
            if c.client_isn == s.seq {
                c.last_seen = now;
                if c.state == State::Spliced {
                    // A stale duplicate of a SYN the connection is long past.
                    self.counts.dropped += 1;
                } else {
                    self.counts.syn_answered += 1;
                    out.push((Toward::Appliance, c.syn_ack(&key)));
                }
                return;
            }
        }
        let mss = mss_of(&ip, s).filter(|&m| m != 0).unwrap_or(MSS_DEFAULT);
        strip_unoffered_options(&mut ip, s);
        fill_tcp_checksum(&mut ip, s);
        let c = Conn {
            state: State::Answered,
            client_isn: s.seq,
            proxy_isn: self.rng.random(),
            server_isn: 0,
            offset: 0,
            mss,
            syn: ip,
            held: Vec::new(),
            client_win: s.win,
            syn_tries: 0,
            syn_due: NEVER,
            last_seen: now,
        };
        self.counts.syn_answered += 1;
        out.push((Toward::Appliance, c.syn_ack(&key)));
        self.conns.insert(key, c);
    }

    /// Queues a client segment until the server side is open. Pure ACKs are
    /// not kept (the proxy ACKs the server itself, and later segments carry
    /// the client's newest ACK and window); duplicates are kept once.
    fn hold(c: &mut Conn, ip: Vec<u8>, s: &Seg, counts: &mut ProxyCounts) {
        if s.payload_len() == 0 && !s.has(TCP_FIN) {
            return;
        }
        let dup = c.held.iter().any(|h| {
            parse(h).is_some_and(|o| {
                o.seq == s.seq && o.payload_len() == s.payload_len() && o.flags == s.flags
            })
        });
        if dup {
            return;
        }
        if c.held.len() >= HELD_MAX {
            counts.dropped += 1;
            return;
        }
        c.held.push(ip);
    }

    /// A datagram from a server reached the proxy.
    pub fn on_server(&mut self, now: Micros, mut ip: Vec<u8>, out: &mut ProxyOut) {
        self.sweep(now);
        let Some(s) = parse(&ip) else {
            self.counts.passed += 1;
            out.push((Toward::Appliance, ip));
            return;
        };
        ip.truncate(s.total);
        let key = Key {
            client: s.dst,
            server: s.src,
            cport: s.dport,
            sport: s.sport,
        };
        let Some(c) = self.conns.get_mut(&key) else {
            self.counts.passed += 1;
            out.push((Toward::Appliance, ip));
            return;
        };
        if !tcp_checksum_ok(&ip, &s) {
            self.counts.dropped += 1;
            return;
        }
        c.last_seen = now;
        let syn_ack = s.has(TCP_SYN) && s.has(TCP_ACK) && !s.has(TCP_RST);
        match c.state {
            // The server was not asked yet: this belongs to no connection of ours.
            State::Answered => self.counts.dropped += 1,
            State::Connecting if syn_ack && s.ack == c.client_isn.wrapping_add(1) => {
                c.server_isn = s.seq;
                c.offset = s.seq.wrapping_sub(c.proxy_isn);
                c.state = State::Spliced;
                self.counts.connections += 1;
                out.push((Toward::Server, c.ack_to_server(&key)));
                for mut h in c.held.drain(..) {
                    if let Some(hs) = parse(&h) {
                        translate_up(&mut h, &hs, c.offset);
                        out.push((Toward::Server, h));
                    }
                }
            }
            State::Connecting if s.has(TCP_RST) => {
                // The server refused: reset the client, which believes it
                // is connected (its next expected byte is proxy ISN + 1).
                let rst = build(
                    &SegSpec {
                        src: key.server,
                        dst: key.client,
                        sport: key.sport,
                        dport: key.cport,
                        seq: c.proxy_isn.wrapping_add(1),
                        ack: c.client_isn.wrapping_add(1),
                        flags: TCP_RST | TCP_ACK,
                        win: 0,
                        mss: None,
                    },
                    &[],
                );
                out.push((Toward::Appliance, rst));
                self.conns.remove(&key);
            }
            State::Connecting => self.counts.dropped += 1,
            State::Spliced if syn_ack => {
                // The server did not get the proxy's ACK: send it again.
                if s.seq == c.server_isn {
                    out.push((Toward::Server, c.ack_to_server(&key)));
                } else {
                    self.counts.dropped += 1;
                }
            }
            State::Spliced => {
                translate_down(&mut ip, &s, c.offset);
                out.push((Toward::Appliance, ip));
                if s.has(TCP_RST) {
                    self.conns.remove(&key);
                }
            }
        }
    }

    /// Resends due SYNs toward servers (interval `rto_us`, doubling, at most
    /// [`SYN_TRIES_MAX`] SYNs) and forgets idle connections.
    pub fn poll(&mut self, now: Micros, rto_us: Micros, out: &mut ProxyOut) {
        while let Some(&Reverse((t, key))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(c) = self.conns.get_mut(&key) else {
                continue;
            };
            if c.state != State::Connecting || c.syn_due != t || c.syn_tries >= SYN_TRIES_MAX {
                continue;
            }
            let interval = rto_us
                .max(1)
                .saturating_mul(1 << c.syn_tries.min(16))
                .min(SYN_RESEND_MAX_US);
            c.syn_tries += 1;
            c.syn_due = now.saturating_add(interval);
            self.timers.push(Reverse((c.syn_due, key)));
            out.push((Toward::Server, c.syn.clone()));
        }
        self.sweep(now);
    }

    fn sweep(&mut self, now: Micros) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now.saturating_add(SWEEP_EVERY_US);
        let idle = self.idle_us;
        self.conns
            .retain(|_, c| c.last_seen.saturating_add(idle) > now);
        if self.conns.is_empty() {
            self.timers.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    const CLIENT: [u8; 4] = [198, 51, 100, 1];
    const SERVER: [u8; 4] = [203, 0, 113, 1];
    const RTO: Micros = 100_000;

    fn seg(flags: u8, seq: u32, ack: u32, from_client: bool, payload: &[u8]) -> Vec<u8> {
        let (src, dst, sport, dport) = if from_client {
            (CLIENT, SERVER, 50_000, 80)
        } else {
            (SERVER, CLIENT, 80, 50_000)
        };
        build(
            &SegSpec {
                src,
                dst,
                sport,
                dport,
                seq,
                ack,
                flags,
                win: 4096,
                mss: (flags & TCP_SYN != 0).then_some(1400),
            },
            payload,
        )
    }

    /// A client SYN with window scale, SACK-permitted and timestamps.
    fn syn_with_options(seq: u32) -> Vec<u8> {
        let mut ip = seg(TCP_SYN, seq, 0, true, &[]);
        // MSS (4) + NOP, WS (3) + SACK-permitted (2) + TS (10) + NOP NOP = 20 bytes.
        let opts: [u8; 20] = [
            2, 4, 0x05, 0x78, 1, 3, 3, 7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0,
        ];
        ip.truncate(40);
        ip.extend_from_slice(&opts);
        ip[2..4].copy_from_slice(&60u16.to_be_bytes());
        ip[32] = (40 / 4) << 4;
        ip[10] = 0;
        ip[11] = 0;
        let c = !fold(sum(&ip[..20], 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let s = parse(&ip).unwrap();
        fill_tcp_checksum(&mut ip, &s);
        assert!(tcp_checksum_ok(&ip, &s));
        ip
    }

    fn only(out: &mut ProxyOut) -> (Toward, Vec<u8>, Seg) {
        assert_eq!(out.len(), 1, "{out:?}");
        let (to, ip) = out.pop().unwrap();
        let s = parse(&ip).unwrap();
        assert!(tcp_checksum_ok(&ip, &s));
        (to, ip, s)
    }

    #[test]
    fn proxy_answers_then_splices_with_translated_numbers() {
        let mut p = Proxy::new(3, 10_000_000);
        let mut out = ProxyOut::new();
        let client_isn = 0xffff_fff0; // wraps during the exchange

        // 1. The SYN is answered by the proxy, not forwarded.
        p.on_appliance(0, syn_with_options(client_isn), RTO, &mut out);
        let (to, synack, s) = only(&mut out);
        assert_eq!(to, Toward::Appliance);
        assert_eq!(s.flags, TCP_SYN | TCP_ACK);
        assert_eq!(s.ack, client_isn.wrapping_add(1));
        assert_eq!(
            (s.src, s.dst, s.sport, s.dport),
            (SERVER, CLIENT, 80, 50_000)
        );
        assert_eq!((s.win, mss_of(&synack, &s)), (PROXY_WINDOW, Some(1400)));
        assert_eq!(s.doff, 24, "only the MSS option");
        let proxy_isn = s.seq;

        // A retransmitted SYN gets the same answer.
        p.on_appliance(500, syn_with_options(client_isn), RTO, &mut out);
        let (_, again, _) = only(&mut out);
        assert_eq!(again, synack);
        assert_eq!(p.counts.syn_answered, 2);

        // 2. The client's ACK (with its request) opens the server side.
        let c_seq = client_isn.wrapping_add(1);
        let request = b"GET / HTTP/1.0\r\n\r\n";
        p.on_appliance(
            1000,
            seg(TCP_ACK, c_seq, proxy_isn.wrapping_add(1), true, &[]),
            RTO,
            &mut out,
        );
        let (to, syn, s) = only(&mut out);
        assert_eq!(to, Toward::Server);
        assert_eq!((s.flags, s.seq), (TCP_SYN, client_isn));
        let mut kinds = Vec::new();
        for_each_option(&syn, &s, |k, _, _| kinds.push(k));
        assert_eq!(kinds, vec![OPT_MSS], "unoffered options became NOPs");
        p.on_appliance(
            1100,
            seg(
                TCP_ACK | 0x08,
                c_seq,
                proxy_isn.wrapping_add(1),
                true,
                request,
            ),
            RTO,
            &mut out,
        );
        assert!(out.is_empty(), "held until the server answers");

        // No SYN+ACK yet: the SYN is sent again after the RTO.
        p.poll(1000 + RTO, RTO, &mut out);
        let (to, syn2, _) = only(&mut out);
        assert_eq!((to, syn2), (Toward::Server, syn));

        // 3. The server's SYN+ACK: ACKed by the proxy, the request released.
        let server_isn = 0x1234_5678u32;
        p.on_server(
            200_000,
            seg(
                TCP_SYN | TCP_ACK,
                server_isn,
                client_isn.wrapping_add(1),
                false,
                &[],
            ),
            &mut out,
        );
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(p.counts.connections, 1);
        let (to, ack) = &out[0];
        let a = parse(ack).unwrap();
        assert_eq!(*to, Toward::Server);
        assert_eq!(
            (a.flags, a.seq, a.ack),
            (TCP_ACK, c_seq, server_isn.wrapping_add(1))
        );
        let (to, req) = &out[1];
        let r = parse(req).unwrap();
        assert_eq!(*to, Toward::Server);
        assert!(tcp_checksum_ok(req, &r));
        assert_eq!((r.seq, r.ack), (c_seq, server_isn.wrapping_add(1)));
        assert_eq!(&req[r.ihl + r.doff..], request);
        out.clear();
        p.poll(10_000_000 - 1, RTO, &mut out);
        assert!(out.is_empty(), "no SYN resend once spliced");

        // Spliced: server data comes down in the proxy's numbers...
        let resp = [7u8; 100];
        p.on_server(
            300_000,
            seg(
                TCP_ACK,
                server_isn.wrapping_add(1),
                c_seq.wrapping_add(request.len() as u32),
                false,
                &resp,
            ),
            &mut out,
        );
        let (to, down, d) = only(&mut out);
        assert_eq!(to, Toward::Appliance);
        assert_eq!(d.seq, proxy_isn.wrapping_add(1));
        assert_eq!(&down[d.ihl + d.doff..], &resp);
        // ... and the client's ACK of it goes up in the server's.
        p.on_appliance(
            301_000,
            seg(
                TCP_ACK | TCP_FIN,
                c_seq.wrapping_add(request.len() as u32),
                proxy_isn.wrapping_add(101),
                true,
                &[],
            ),
            RTO,
            &mut out,
        );
        let (_, _, u) = only(&mut out);
        assert_eq!(u.ack, server_isn.wrapping_add(101));
        assert_eq!(u.flags, TCP_ACK | TCP_FIN);

        // A server RST goes down translated and ends the connection.
        p.on_server(
            302_000,
            seg(
                TCP_RST | TCP_ACK,
                server_isn.wrapping_add(101),
                0,
                false,
                &[],
            ),
            &mut out,
        );
        let (_, _, r) = only(&mut out);
        assert_eq!(
            (r.flags & TCP_RST, r.seq),
            (TCP_RST, proxy_isn.wrapping_add(101))
        );
        assert_eq!(p.connections(), 0);
        assert_eq!(p.counts.dropped, 0);
    }

    #[test]
    fn sack_blocks_go_up_translated() {
        let mut ip = seg(TCP_ACK, 1, 100, true, &[]);
        // NOP NOP SACK(10) with one block [100, 200).
        ip.truncate(40);
        ip.extend_from_slice(&[1, 1, 5, 10, 0, 0, 0, 100, 0, 0, 0, 200]);
        ip[2..4].copy_from_slice(&52u16.to_be_bytes());
        ip[32] = (32 / 4) << 4;
        let s = parse(&ip).unwrap();
        translate_up(&mut ip, &s, 1000);
        let t = parse(&ip).unwrap();
        assert!(tcp_checksum_ok(&ip, &t));
        assert_eq!(t.ack, 1100);
        assert_eq!(&ip[44..52], &[0, 0, 0x04, 0x4c, 0, 0, 0x04, 0xb0]);
    }

    #[test]
    fn client_rst_before_the_server_side_opens_forgets_the_connection() {
        let mut p = Proxy::new(1, 10_000_000);
        let mut out = ProxyOut::new();
        p.on_appliance(0, seg(TCP_SYN, 10, 0, true, &[]), RTO, &mut out);
        out.clear();
        // The appliance resets a losing uplink's connection (SYN racing).
        p.on_appliance(5, seg(TCP_RST, 11, 0, true, &[]), RTO, &mut out);
        assert!(out.is_empty(), "the server never heard of it: {out:?}");
        assert_eq!(p.connections(), 0);
        p.poll(1_000_000, RTO, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn odd_datagrams_pass_or_drop_without_panicking() {
        let mut p = Proxy::new(9, 1_000_000);
        let mut out = ProxyOut::new();
        let mut rng = SmallRng::seed_from_u64(42);
        let good = [
            syn_with_options(5),
            seg(TCP_ACK, 6, 1, true, b"abc"),
            seg(TCP_SYN | TCP_ACK, 77, 6, false, &[]),
            seg(TCP_ACK | TCP_FIN, 1, 6, false, b"xyz"),
        ];
        let mut n = 0;
        for i in 0..20_000u64 {
            let mut ip = good[(i % 4) as usize].clone();
            match i % 5 {
                0 => ip.truncate(rng.random_range(0..ip.len())),
                1 => {
                    let at = rng.random_range(0..ip.len());
                    ip[at] = rng.random();
                }
                2 => {
                    let mut junk = vec![0u8; rng.random_range(0..80)];
                    rng.fill_bytes(&mut junk);
                    if let Some(b) = junk.first_mut() {
                        *b = 0x40 | (*b & 0x0f);
                    }
                    ip = junk;
                }
                3 => {
                    // Nonsense header lengths.
                    ip[0] = 0x40 | rng.random_range(0..16u8);
                    if ip.len() > 32 {
                        ip[32] = rng.random();
                    }
                }
                _ => {}
            }
            if i % 2 == 0 {
                p.on_appliance(i, ip, RTO, &mut out);
            } else {
                p.on_server(i, ip, &mut out);
            }
            p.poll(i, RTO, &mut out);
            n += out.len();
            out.clear();
        }
        assert!(n > 0);
        let c = p.counts;
        assert!(c.passed > 0 && c.dropped > 0, "{c:?}");
    }
}
