//! The simulated hosts: one smoltcp [`Interface`] (`Medium::Ip`) per host over
//! a [`HostDevice`] of its own, and the application each host runs.
//!
//! A client opens TCP connections at Poisson times to random servers
//! (connect, send the request, read the whole response, close) and sends UDP
//! requests from one socket of its own; a server answers both. smoltcp does
//! the real protocol work: handshakes, retransmissions, windows, RST.
//!
//! Invariants: a host's socket set holds only sockets its application tracks
//! (every closed or timed-out socket is removed, so the sets do not grow);
//! a server keeps [`LISTENERS_PER_SERVER`] idle listening sockets and its
//! device hands smoltcp at most that many frames per poll, so a burst of
//! SYNs never meets a server without a listener.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use rand::rngs::SmallRng;
use rand::Rng;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use super::Counters;
use crate::config::SimConfig;

/// Idle listening sockets a server keeps (smoltcp accepts one connection per
/// listening socket). Also the most frames a server's stack takes per poll,
/// so more would only cost memory (sites may have thousands of servers).
pub const LISTENERS_PER_SERVER: usize = 4;
/// Most TCP connections one client has open at once; a connection due while
/// the client is at this limit counts as failed.
const MAX_CONNS_PER_CLIENT: usize = 256;
/// The IP MTU of every simulated link.
const MTU: usize = 1500;
/// Clients' TCP source ports cycle through this range.
const EPHEMERAL_FIRST: u16 = 49152;
/// Every client's UDP socket is bound to this port.
const CLIENT_UDP_PORT: u16 = 40000;
/// UDP datagrams a socket buffers in each direction. Sockets are drained
/// after every poll, and a server's poll takes at most
/// [`LISTENERS_PER_SERVER`] frames, so few slots suffice; buffers are sized
/// from the configured payloads because a site may have 60 000 clients.
const UDP_SLOTS_CLIENT: usize = 8;
const UDP_SLOTS_SERVER: usize = 16;
/// Bytes of request or response payload written per `send_slice`.
const PATTERN: [u8; 1024] = {
    let mut p = [0u8; 1024];
    let mut i = 0;
    while i < p.len() {
        p[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    p
};

/// Microseconds on the site clock; `NEVER` means no deadline.
pub type Micros = u64;
pub const NEVER: Micros = u64::MAX;

pub fn smol_now(now: Micros) -> Instant {
    Instant::from_micros(now.min(i64::MAX as u64) as i64)
}

/// A host's link: IP packets the site delivers to it (`rx`) and IP packets
/// it sent (`tx`), which the site takes after each poll.
#[derive(Default)]
pub struct HostDevice {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: Vec<Vec<u8>>,
    /// Frames `receive` still hands out during the current poll.
    pub rx_budget: usize,
}

pub struct HostRxToken(Vec<u8>);
pub struct HostTxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for HostRxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for HostTxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for HostDevice {
    type RxToken<'a> = HostRxToken;
    type TxToken<'a> = HostTxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(HostRxToken, HostTxToken<'_>)> {
        if self.rx_budget == 0 {
            return None;
        }
        let frame = self.rx.pop_front()?;
        self.rx_budget -= 1;
        Some((HostRxToken(frame), HostTxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<HostTxToken<'_>> {
        Some(HostTxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = MTU;
        // Checksums are computed and verified (the default): a NAT that
        // breaks one makes smoltcp drop the segment, as a real host would.
        caps
    }
}

/// What one host needs from the site while its application runs.
pub struct AppCtx<'a> {
    pub now: Micros,
    pub cfg: &'a SimConfig,
    pub server_base: u32,
    pub rng: &'a mut SmallRng,
    pub stats: &'a Counters,
    pub scratch: &'a mut [u8],
    /// Clients are paused: no new connections or requests.
    pub paused: bool,
}

impl AppCtx<'_> {
    fn server_addr(&self, j: usize) -> Ipv4Addr {
        Ipv4Addr::from(self.server_base.wrapping_add(j as u32))
    }

    /// An exponential interval with mean `mean_ms` (Poisson arrivals), at
    /// least 1 µs.
    fn exp_interval(&mut self, mean_ms: u64) -> Micros {
        let u: f64 = self.rng.random();
        let us = -(1.0 - u).ln() * mean_ms as f64 * 1000.0;
        (us as Micros).max(1)
    }
}

pub struct Host {
    pub iface: Interface,
    pub dev: HostDevice,
    pub sockets: SocketSet<'static>,
    pub app: App,
    /// Time of this host's live entry in the site's timer heap (`NEVER`: none).
    pub scheduled: Micros,
    /// True while the host is on the site's ready list.
    pub ready: bool,
}

pub enum App {
    Client(ClientApp),
    Server(ServerApp),
}

impl Host {
    fn new(addr: Ipv4Addr, seed: u64, sockets: SocketSet<'static>, app: App) -> Host {
        let mut dev = HostDevice::default();
        let mut config = IfaceConfig::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut dev, Instant::ZERO);
        iface.update_ip_addrs(|a| {
            // A single address: capacity is at least one.
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(addr), 32));
        });
        // Medium::Ip has no next-hop resolution: the gateway only makes every
        // destination routable, and every packet leaves on the host's link.
        let gateway = Ipv4Addr::from(u32::from(addr) ^ 1);
        let _ = iface.routes_mut().add_default_ipv4_route(gateway);
        Host {
            iface,
            dev,
            sockets,
            app,
            scheduled: NEVER,
            ready: false,
        }
    }

    pub fn new_client(index: usize, addr: Ipv4Addr, seed: u64, cfg: &SimConfig) -> Host {
        let mut sockets = SocketSet::new(Vec::new());
        let udp = (cfg.udp_interval_ms > 0).then(|| {
            let mut s = udp_socket(
                UDP_SLOTS_CLIENT,
                cfg.udp_response_bytes,
                cfg.udp_request_bytes,
            );
            // A fresh socket on a non-zero port: binding cannot fail.
            let _ = s.bind(CLIENT_UDP_PORT);
            sockets.add(s)
        });
        let app = ClientApp {
            udp,
            next_port: EPHEMERAL_FIRST.wrapping_add((index % 4096) as u16),
            ..ClientApp::default()
        };
        Host::new(addr, seed, sockets, App::Client(app))
    }

    pub fn new_server(addr: Ipv4Addr, seed: u64, cfg: &SimConfig) -> Host {
        let mut sockets = SocketSet::new(Vec::new());
        let mut s = udp_socket(
            UDP_SLOTS_SERVER,
            cfg.udp_request_bytes,
            cfg.udp_response_bytes,
        );
        let _ = s.bind(cfg.udp_port);
        let udp = sockets.add(s);
        Host::new(
            addr,
            seed,
            sockets,
            App::Server(ServerApp {
                udp,
                conns: Vec::new(),
                syn_received: 0,
            }),
        )
    }

    /// Starts the application's timers (called once, when the site starts).
    pub fn start(&mut self, cx: &mut AppCtx) {
        if let App::Client(c) = &mut self.app {
            c.next_tcp = cx.now + cx.exp_interval(cx.cfg.tcp_interval_ms);
            c.next_udp = match cx.cfg.udp_interval_ms {
                0 => NEVER,
                ms => cx.now + cx.exp_interval(ms),
            };
        }
    }

    /// Runs the application and smoltcp until neither has anything left to
    /// do at `cx.now`. Returns the host's next deadline. Sent packets are
    /// left in `self.dev.tx`.
    pub fn service(&mut self, cx: &mut AppCtx) -> Micros {
        let ts = smol_now(cx.now);
        self.drive(cx);
        // Bounded: each turn either consumes input or reacts to the
        // application; a host still busy after this stays on the ready list.
        for _ in 0..64 {
            self.dev.rx_budget = match &self.app {
                App::Server(_) => LISTENERS_PER_SERVER,
                App::Client(_) => usize::MAX,
            };
            self.iface.poll(ts, &mut self.dev, &mut self.sockets);
            let changed = self.drive(cx);
            if !changed && self.dev.rx.is_empty() {
                break;
            }
        }
        let net = self
            .iface
            .poll_at(ts, &self.sockets)
            .map_or(NEVER, |t| t.total_micros().max(0) as Micros);
        let app = match &self.app {
            App::Client(c) => c.next_deadline(cx),
            App::Server(_) => NEVER,
        };
        net.min(app)
    }

    fn drive(&mut self, cx: &mut AppCtx) -> bool {
        match &mut self.app {
            App::Client(c) => c.drive(&mut self.iface, &mut self.sockets, cx),
            App::Server(s) => s.drive(&mut self.sockets, cx),
        }
    }
}

/// A UDP socket buffering `slots` datagrams of up to `rx_bytes` received and
/// `tx_bytes` sent payload bytes.
fn udp_socket(slots: usize, rx_bytes: usize, tx_bytes: usize) -> udp::Socket<'static> {
    let buf = |bytes: usize| {
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; slots],
            vec![0u8; slots * bytes.clamp(64, MTU)],
        )
    };
    udp::Socket::new(buf(rx_bytes), buf(tx_bytes))
}

fn tcp_socket(rx: usize, tx: usize) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; rx]),
        tcp::SocketBuffer::new(vec![0u8; tx]),
    )
}

/// Writes `total - *done` more bytes of pattern as far as the socket takes them.
fn send_pattern(s: &mut tcp::Socket, done: &mut usize, total: usize) -> bool {
    let mut any = false;
    while *done < total && s.can_send() {
        let n = (total - *done).min(PATTERN.len());
        match s.send_slice(&PATTERN[..n]) {
            Ok(0) | Err(_) => break,
            Ok(k) => {
                *done += k;
                any = true;
            }
        }
    }
    any
}

/// Reads everything the socket holds; returns the byte count.
fn drain(s: &mut tcp::Socket, scratch: &mut [u8]) -> usize {
    let mut total = 0;
    while s.can_recv() {
        match s.recv_slice(scratch) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    total
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the handshake, sending the request, reading the response.
    Active,
    /// Response complete and our FIN queued: waiting for the close to finish.
    Closing { until: Micros },
    /// Aborted: kept for one more poll so smoltcp sends the RST.
    Aborted,
}

struct ClientConn {
    handle: SocketHandle,
    started: Micros,
    established: bool,
    /// Microseconds from `connect()` to ESTABLISHED.
    setup: Micros,
    sent: usize,
    received: usize,
    phase: Phase,
}

struct UdpRequest {
    seq: u64,
    sent: Micros,
}

#[derive(Default)]
pub struct ClientApp {
    next_tcp: Micros,
    next_udp: Micros,
    next_port: u16,
    conns: Vec<ClientConn>,
    udp: Option<SocketHandle>,
    next_seq: u64,
    /// Outstanding UDP requests, oldest first.
    outstanding: VecDeque<UdpRequest>,
}

/// Bytes of the UDP request that carry its sequence number (and are echoed
/// by the server).
fn seq_len(cfg: &SimConfig) -> usize {
    8.min(cfg.udp_request_bytes).min(cfg.udp_response_bytes)
}

fn seq_from(bytes: &[u8], k: usize) -> u64 {
    let mut b = [0u8; 8];
    let k = k.min(bytes.len());
    b[..k].copy_from_slice(&bytes[..k]);
    u64::from_le_bytes(b)
}

impl ClientApp {
    fn drive(
        &mut self,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
        cx: &mut AppCtx,
    ) -> bool {
        let mut changed = false;
        while self.next_tcp <= cx.now {
            self.next_tcp += cx.exp_interval(cx.cfg.tcp_interval_ms);
            if !cx.paused {
                changed |= self.open_tcp(iface, sockets, cx);
            }
        }
        let mut i = 0;
        while i < self.conns.len() {
            let (keep, ch) = self.step_conn(i, sockets, cx);
            changed |= ch;
            if keep {
                i += 1;
            } else {
                sockets.remove(self.conns[i].handle);
                self.conns.swap_remove(i);
            }
        }
        if let Some(h) = self.udp {
            changed |= self.drive_udp(sockets.get_mut::<udp::Socket>(h), cx);
        }
        changed
    }

    fn open_tcp(
        &mut self,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
        cx: &mut AppCtx,
    ) -> bool {
        if self.conns.len() >= MAX_CONNS_PER_CLIENT {
            cx.stats.tcp_failed.inc();
            return false;
        }
        let server = cx.rng.random_range(0..cx.cfg.servers);
        let remote = IpEndpoint::new(IpAddress::Ipv4(cx.server_addr(server)), cx.cfg.tcp_port);
        let port = self.next_port;
        self.next_port = if port == u16::MAX {
            EPHEMERAL_FIRST
        } else {
            port + 1
        };
        let rx = cx.cfg.tcp_response_bytes.clamp(1024, 16 * 1024);
        let tx = cx.cfg.tcp_request_bytes.clamp(1024, 16 * 1024);
        let mut s = tcp_socket(rx, tx);
        if s.connect(iface.context(), remote, port).is_err() {
            cx.stats.tcp_failed.inc();
            return false;
        }
        let handle = sockets.add(s);
        self.conns.push(ClientConn {
            handle,
            started: cx.now,
            established: false,
            setup: 0,
            sent: 0,
            received: 0,
            phase: Phase::Active,
        });
        true
    }

    /// Advances connection `i`; returns (keep it, socket state changed).
    fn step_conn(
        &mut self,
        i: usize,
        sockets: &mut SocketSet<'static>,
        cx: &mut AppCtx,
    ) -> (bool, bool) {
        let c = &mut self.conns[i];
        let s = sockets.get_mut::<tcp::Socket>(c.handle);
        let cfg = cx.cfg;
        match c.phase {
            Phase::Aborted => (false, false),
            Phase::Closing { until } => {
                drain(s, cx.scratch);
                let done = matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait);
                (!done && cx.now < until, false)
            }
            Phase::Active => {
                let state = s.state();
                let mut changed = false;
                if !c.established && !matches!(state, tcp::State::SynSent | tcp::State::Closed) {
                    c.established = true;
                    c.setup = cx.now - c.started;
                }
                if c.established {
                    changed |= send_pattern(s, &mut c.sent, cfg.tcp_request_bytes);
                    let n = drain(s, cx.scratch);
                    c.received += n;
                    changed |= n > 0;
                }
                let complete = c.established
                    && c.sent >= cfg.tcp_request_bytes
                    && c.received >= cfg.tcp_response_bytes
                    && (cfg.tcp_response_bytes > 0 || !s.may_recv());
                if complete {
                    cx.stats.tcp_ok.inc();
                    cx.stats.tcp_connect_us.add(c.setup);
                    cx.stats.tcp_exchange_us.add(cx.now - c.started);
                    s.close();
                    c.phase = Phase::Closing {
                        until: cx.now + cfg.tcp_timeout_ms * 1000,
                    };
                    return (true, true);
                }
                let failed = if state == tcp::State::Closed {
                    cx.stats.tcp_reset.inc();
                    true
                } else {
                    (c.established && !s.may_recv())
                        || cx.now >= c.started + cfg.tcp_timeout_ms * 1000
                };
                if !failed {
                    return (true, changed);
                }
                cx.stats.tcp_failed.inc();
                if state == tcp::State::Closed {
                    return (false, changed);
                }
                s.abort();
                c.phase = Phase::Aborted;
                (true, true)
            }
        }
    }

    fn drive_udp(&mut self, s: &mut udp::Socket, cx: &mut AppCtx) -> bool {
        let cfg = cx.cfg;
        let k = seq_len(cfg);
        let mut changed = false;
        while self.next_udp <= cx.now {
            self.next_udp += cx.exp_interval(cfg.udp_interval_ms);
            if cx.paused {
                continue;
            }
            let server = cx.rng.random_range(0..cfg.servers);
            let seq = self.next_seq;
            self.next_seq += 1;
            cx.stats.udp_requests.inc();
            let mut payload = [0u8; 1400];
            let len = cfg.udp_request_bytes.min(payload.len());
            payload[..len].copy_from_slice(&PATTERN[..len]);
            payload[..k].copy_from_slice(&seq.to_le_bytes()[..k]);
            let to = IpEndpoint::new(IpAddress::Ipv4(cx.server_addr(server)), cfg.udp_port);
            if s.send_slice(&payload[..len], to).is_ok() {
                self.outstanding.push_back(UdpRequest { seq, sent: cx.now });
                changed = true;
            } else {
                cx.stats.udp_timeouts.inc();
            }
        }
        while let Ok((n, _)) = s.recv_slice(cx.scratch) {
            // With no sequence bytes (empty replies), a reply answers the
            // oldest request.
            let seq = seq_from(&cx.scratch[..n], k);
            let mask = if k >= 8 {
                u64::MAX
            } else {
                (1u64 << (8 * k)) - 1
            };
            if let Some(pos) = self.outstanding.iter().position(|r| r.seq & mask == seq) {
                self.outstanding.remove(pos);
                cx.stats.udp_replies.inc();
            }
        }
        let timeout = cfg.udp_timeout_ms * 1000;
        while self
            .outstanding
            .front()
            .is_some_and(|r| r.sent + timeout <= cx.now)
        {
            self.outstanding.pop_front();
            cx.stats.udp_timeouts.inc();
        }
        changed
    }

    fn next_deadline(&self, cx: &AppCtx) -> Micros {
        let timeout = cx.cfg.tcp_timeout_ms * 1000;
        let conns = self.conns.iter().map(|c| match c.phase {
            Phase::Active => c.started + timeout,
            Phase::Closing { until } => until,
            Phase::Aborted => cx.now,
        });
        let udp = self
            .outstanding
            .front()
            .map_or(NEVER, |r| r.sent + cx.cfg.udp_timeout_ms * 1000);
        conns.fold(self.next_tcp.min(self.next_udp).min(udp), Micros::min)
    }
}

/// What a server socket was doing when last looked at (after a service).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Listen,
    /// In SYN-RECEIVED with peer `peer`, first seen there at `since`.
    SynReceived {
        since: Micros,
        peer: Option<IpEndpoint>,
    },
    /// Reached ESTABLISHED (or a later state).
    Established,
}

struct ServerConn {
    handle: SocketHandle,
    received: usize,
    sent: usize,
    closed: bool,
    seen: Seen,
}

pub struct ServerApp {
    udp: SocketHandle,
    /// Listening and connected TCP sockets.
    conns: Vec<ServerConn>,
    /// This server's share of the `server_syn_received` gauge.
    syn_received: u64,
}

/// The timeout of a server's TCP sockets: a connection that stops
/// answering (a half-open one included) is aborted after this long.
fn server_socket_timeout_ms(cfg: &SimConfig) -> u64 {
    cfg.tcp_timeout_ms.max(1000) * 2
}

/// Counts a server socket's move out of SYN-RECEIVED without reaching
/// ESTABLISHED: back to LISTEN is smoltcp's answer to an RST; CLOSED is its
/// timeout, unless it came early (then something reset it too).
fn count_half_open_end(seen: Seen, now_listen: bool, cx: &AppCtx) {
    let Seen::SynReceived { since, .. } = seen else {
        return;
    };
    let timeout_us = server_socket_timeout_ms(cx.cfg) * 1000;
    if !now_listen && cx.now.saturating_sub(since) >= timeout_us / 2 {
        cx.stats.server_half_open_timeout.inc();
    } else {
        cx.stats.server_half_open_reset.inc();
    }
}

impl ServerApp {
    fn drive(&mut self, sockets: &mut SocketSet<'static>, cx: &mut AppCtx) -> bool {
        let cfg = cx.cfg;
        let mut changed = false;

        // UDP: answer every datagram to its sender, echoing its sequence bytes.
        let k = seq_len(cfg);
        let s = sockets.get_mut::<udp::Socket>(self.udp);
        while let Ok((n, meta)) = s.recv_slice(cx.scratch) {
            let mut reply = [0u8; 1400];
            let len = cfg.udp_response_bytes.min(reply.len());
            reply[..len].copy_from_slice(&PATTERN[..len]);
            let k = k.min(n);
            reply[..k].copy_from_slice(&cx.scratch[..k]);
            // A full send buffer loses the reply, as a busy server would.
            changed |= s.send_slice(&reply[..len], meta.endpoint).is_ok();
        }

        // TCP: read the request, send the response, close; reap the dead.
        // Half-open accounting: smoltcp returns a listening socket in
        // SYN-RECEIVED to LISTEN when an RST comes, so a socket is followed
        // from one look to the next, with its peer (a SYN and its RST within
        // one poll's frames would go unseen).
        let mut idle = 0;
        let mut syn_received = 0;
        let mut i = 0;
        while i < self.conns.len() {
            let c = &mut self.conns[i];
            let s = sockets.get_mut::<tcp::Socket>(c.handle);
            let state = s.state();
            // An RST returns a listener to LISTEN, and another peer's SYN in
            // the same poll's frames takes it again: it is seen in
            // SYN-RECEIVED (or beyond) with another peer, and the first
            // half-open connection ended by the RST.
            let peer = s.remote_endpoint();
            if let Seen::SynReceived { peer: was, .. } = c.seen {
                let live = !matches!(
                    state,
                    tcp::State::Listen | tcp::State::Closed | tcp::State::TimeWait
                );
                if live && was != peer {
                    count_half_open_end(c.seen, true, cx);
                    c.seen = Seen::Listen;
                }
            }
            match state {
                tcp::State::Listen => {
                    count_half_open_end(c.seen, true, cx);
                    c.seen = Seen::Listen;
                    idle += 1;
                }
                // TIME-WAIT is reaped at once: a lost last ACK then costs the
                // client an RST after its exchange already counted as OK.
                tcp::State::Closed | tcp::State::TimeWait => {
                    if state == tcp::State::TimeWait && c.seen != Seen::Established {
                        cx.stats.server_connections_established.inc();
                    } else if state == tcp::State::Closed {
                        count_half_open_end(c.seen, false, cx);
                    }
                    sockets.remove(c.handle);
                    self.conns.swap_remove(i);
                    continue;
                }
                tcp::State::SynReceived => {
                    if !matches!(c.seen, Seen::SynReceived { .. }) {
                        c.seen = Seen::SynReceived {
                            since: cx.now,
                            peer,
                        };
                    }
                    syn_received += 1;
                }
                _ => {
                    if c.seen != Seen::Established {
                        c.seen = Seen::Established;
                        cx.stats.server_connections_established.inc();
                    }
                    let n = drain(s, cx.scratch);
                    c.received += n;
                    changed |= n > 0;
                    if c.received >= cfg.tcp_request_bytes || !s.may_recv() {
                        changed |= send_pattern(s, &mut c.sent, cfg.tcp_response_bytes);
                        if c.sent >= cfg.tcp_response_bytes && !c.closed {
                            s.close();
                            c.closed = true;
                            changed = true;
                        }
                    }
                }
            }
            i += 1;
        }
        while idle < LISTENERS_PER_SERVER {
            let tx = cfg.tcp_response_bytes.clamp(1024, 64 * 1024);
            let rx = cfg.tcp_request_bytes.clamp(1024, 16 * 1024);
            let mut s = tcp_socket(rx, tx);
            // A connection that stops answering is aborted by smoltcp, so a
            // vanished client cannot pin a socket forever.
            s.set_timeout(Some(Duration::from_millis(server_socket_timeout_ms(cfg))));
            if s.listen(cfg.tcp_port).is_err() {
                break;
            }
            let handle = sockets.add(s);
            self.conns.push(ServerConn {
                handle,
                received: 0,
                sent: 0,
                closed: false,
                seen: Seen::Listen,
            });
            idle += 1;
            changed = true;
        }
        if syn_received != self.syn_received {
            let g = &cx.stats.server_syn_received;
            g.set((g.get() + syn_received).saturating_sub(self.syn_received));
            self.syn_received = syn_received;
        }
        changed
    }
}
