//! The redirection lab: one or more appliances running in this process
//! (real lcores, management cores, rings) over external ports, the servers
//! behind them and the internet clients in front of them played by this
//! module frame by frame. Used by the tests and by `appliance client
//! --lab`, so a client session can be shown without a network.
//!
//! Servers answer UDP datagrams with `NAME: <request>` and TCP with a
//! minimal stack (SYN+ACK, one data answer, FIN+ACK); connections are left
//! open, so each served request stays a session (load) of its server.
//! Clients are [`RedirectClient`]s whose sends become frames with their DSCP
//! mark; a client TCP connection that was served is also left open.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use crossbeam::queue::ArrayQueue;
use pipelines::redirect::client::{Action, ClientError, Proto, RedirectClient, Why};
use pipelines::redirect::db::Mark;
use pipelines::wire::checksum::{fold, sum};
use pipelines::wire::ethernet::{self, ETHERTYPE_IPV4};
use pipelines::wire::{ipv4, tcp, udp};
use pipelines::{Burst, HeapBuf, HeapPool, Nanos, PacketBuf};

use crate::config::plan::Plan;
use crate::ports::{BackendControl, PortQueues, RxQueue, TxQueue};
use crate::runtime::Runtime;

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0xcc, 1];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0x5e, 1];

struct Rx(Arc<ArrayQueue<HeapBuf>>);
impl RxQueue<HeapBuf> for Rx {
    fn rx_burst(&mut self, out: &mut Burst<HeapBuf>, max: usize) -> usize {
        let mut n = 0;
        while n < max.min(out.remaining_capacity()) {
            let Some(b) = self.0.pop() else { break };
            out.push(b);
            n += 1;
        }
        n
    }
}

struct Tx(Arc<ArrayQueue<HeapBuf>>);
impl TxQueue<HeapBuf> for Tx {
    fn tx_burst(&mut self, pkts: &mut Burst<HeapBuf>) -> usize {
        let mut n = 0;
        while let Some(p) = pkts.first() {
            let _ = p;
            let p = pkts.remove(0);
            if let Err(p) = self.0.push(p) {
                pkts.insert(0, p);
                break;
            }
            n += 1;
        }
        n
    }
}

struct Control;
impl BackendControl for Control {
    fn stats(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

/// One appliance of the lab.
pub struct LabAppliance {
    pub runtime: Runtime,
    /// Per port: the queue frames enter by, the queue they leave by.
    rx: Vec<Arc<ArrayQueue<HeapBuf>>>,
    tx: Vec<Arc<ArrayQueue<HeapBuf>>>,
    lan_port: usize,
    /// Addresses the appliance answers for on its uplinks.
    owns: Vec<IpAddr>,
}

#[derive(Default)]
struct Server {
    name: String,
    stopped: bool,
}

/// A frame seen on its way to a client.
struct ToClient {
    src: SocketAddr,
    dst: SocketAddr,
    tcp: Option<(u32, u32, u8)>,
    payload: Vec<u8>,
}

pub struct Lab {
    pub appliances: Vec<LabAppliance>,
    pool: &'static HeapPool,
    /// Servers by (appliance, LAN endpoint).
    servers: HashMap<(usize, SocketAddr), Server>,
    inbox: Vec<ToClient>,
    next_port: u16,
    epoch: Instant,
    /// Per attempt: how long a client waits for an answer.
    pub timeout: Duration,
}

/// One step of a request, for printing.
#[derive(Clone, Debug)]
pub struct Step {
    pub text: String,
}

/// The outcome of one request through the lab.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<(SocketAddr, Vec<u8>), ClientError>,
    pub steps: Vec<String>,
    /// Every (destination, mark) sent.
    pub sends: Vec<(SocketAddr, Mark)>,
}

impl Lab {
    /// Starts one appliance per plan (each `backend = "external"`, one
    /// lcore, run-to-completion works best in a lab).
    pub fn start(plans: &[Plan]) -> anyhow::Result<Lab> {
        let pool = HeapPool::new_static(8192);
        let mut appliances = Vec::new();
        let mut servers = HashMap::new();
        for (k, plan) in plans.iter().enumerate() {
            if plan.rx_queues != 1 || plan.tx_queues != 1 {
                return Err(anyhow!(
                    "the lab runs appliances with one RX and one TX queue per port"
                ));
            }
            let (mut queues, mut rx, mut tx) = (Vec::new(), Vec::new(), Vec::new());
            for _ in &plan.ports {
                let r = Arc::new(ArrayQueue::new(4096));
                let t = Arc::new(ArrayQueue::new(4096));
                queues.push(PortQueues {
                    rx: vec![Box::new(Rx(r.clone())) as Box<dyn RxQueue<HeapBuf>>],
                    tx: vec![Box::new(Tx(t.clone())) as Box<dyn TxQueue<HeapBuf>>],
                });
                rx.push(r);
                tx.push(t);
            }
            let mut owns: Vec<IpAddr> = plan.topology.nat_addr_uplink.keys().copied().collect();
            if let Some(r) = &plan.redirection {
                owns.extend(r.spec.services.iter().map(|s| s.addr.ip()));
                for s in &r.spec.servers {
                    servers.insert(
                        (k, s.addr),
                        Server {
                            name: s.name.clone(),
                            stopped: false,
                        },
                    );
                }
            }
            let runtime = Runtime::start_with_ports(plan, queues, Arc::new(Control))
                .context("starting a lab appliance")?;
            appliances.push(LabAppliance {
                runtime,
                rx,
                tx,
                lan_port: usize::from(plan.topology.lan_port),
                owns,
            });
        }
        Ok(Lab {
            appliances,
            pool,
            servers,
            inbox: Vec::new(),
            next_port: 40_000,
            epoch: Instant::now(),
            timeout: Duration::from_millis(150),
        })
    }

    pub fn now(&self) -> Nanos {
        Nanos(self.epoch.elapsed().as_nanos() as u64)
    }

    /// Stops (or restarts) a server by name: a stopped server answers nothing.
    pub fn set_server(&mut self, name: &str, running: bool) -> bool {
        let mut found = false;
        for s in self.servers.values_mut().filter(|s| s.name == name) {
            s.stopped = !running;
            found = true;
        }
        found
    }

    /// A server the lab answers for behind appliance `k` (one a reload
    /// adds to its config).
    pub fn add_server(&mut self, k: usize, name: &str, addr: SocketAddr) {
        self.servers.insert(
            (k, addr),
            Server {
                name: name.into(),
                stopped: false,
            },
        );
    }

    /// Stops every appliance; returns their final stats.
    pub fn stop(self) -> Vec<serde_json::Value> {
        self.appliances
            .into_iter()
            .map(|a| a.runtime.stop())
            .collect()
    }

    fn owner(&self, a: IpAddr) -> Option<usize> {
        self.appliances.iter().position(|x| x.owns.contains(&a))
    }

    fn uplink_port(&self, k: usize, a: IpAddr) -> usize {
        let plan = self.appliances[k].runtime.plan();
        let t = &plan.topology;
        let by_nat = t.nat_addr_uplink.get(&a).copied();
        let by_service = plan.redirection.as_ref().and_then(|r| {
            r.spec
                .services
                .iter()
                .position(|s| s.addr.ip() == a)
                .map(|i| r.service_uplinks[i])
        });
        let u = by_nat.or(by_service).unwrap_or(0);
        usize::from(t.uplinks[usize::from(u)].port)
    }

    /// Puts `frame` on `port` of appliance `k`, addressed to that port's
    /// MAC (a unicast packet in a broadcast frame is `not_for_us`).
    fn inject(&self, k: usize, port: usize, frame: &[u8]) {
        let mut frame = frame.to_vec();
        let plan = self.appliances[k].runtime.plan();
        if let (Some(p), Some(dst)) = (plan.topology.ports.get(port), frame.get_mut(..6)) {
            dst.copy_from_slice(&p.mac);
        }
        if let Some(mut b) = self.pool.alloc_with(&frame) {
            b.meta_mut().in_port = port as u16;
            let _ = self.appliances[k].rx[port].push(b);
        }
    }

    /// Moves frames for a while: answers for the servers, collects what
    /// goes to clients.
    fn pump(&mut self, for_at_least: Duration) {
        let until = Instant::now() + for_at_least;
        loop {
            for k in 0..self.appliances.len() {
                for port in 0..self.appliances[k].tx.len() {
                    while let Some(b) = self.appliances[k].tx[port].pop() {
                        let f = b.data().to_vec();
                        drop(b);
                        if port == self.appliances[k].lan_port {
                            self.server_side(k, &f);
                        } else if let Some(p) = parse(&f) {
                            self.inbox.push(p);
                        }
                    }
                }
            }
            if Instant::now() >= until {
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// A frame the appliance sent on its LAN port to a server.
    fn server_side(&mut self, k: usize, f: &[u8]) {
        let Some(p) = parse(f) else { return };
        let Some(s) = self.servers.get(&(k, p.dst)) else {
            return;
        };
        if s.stopped {
            return;
        }
        let answer = format!("{}: ", s.name);
        let lan = self.appliances[k].lan_port;
        let reply = |payload: &[u8], tcp: Option<(u32, u32, u8)>| {
            build(p.dst, p.src, 0, tcp, payload, SERVER_MAC)
        };
        match p.tcp {
            None => {
                let mut data = answer.into_bytes();
                data.extend_from_slice(&p.payload);
                self.inject(k, lan, &reply(&data, None));
            }
            Some((seq, _, flags)) => {
                let isn = 7_000_000u32;
                if flags & 0x02 != 0 {
                    self.inject(k, lan, &reply(&[], Some((isn, seq.wrapping_add(1), 0x12))));
                } else if flags & 0x01 != 0 {
                    let ack = seq.wrapping_add(p.payload.len() as u32 + 1);
                    self.inject(k, lan, &reply(&[], Some((isn + 1, ack, 0x11))));
                } else if !p.payload.is_empty() {
                    let mut data = answer.into_bytes();
                    data.extend_from_slice(&p.payload);
                    let ack = seq.wrapping_add(p.payload.len() as u32);
                    self.inject(k, lan, &reply(&data, Some((isn + 1, ack, 0x18))));
                }
            }
        }
    }

    /// Takes frames from `from` to `to` out of the inbox.
    fn take(&mut self, from: SocketAddr, to: SocketAddr) -> Vec<ToClient> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.inbox)
            .into_iter()
            .partition(|p| p.src == from && p.dst == to);
        self.inbox = rest;
        mine
    }

    /// One send of a client: the bytes that came back, or `None` (timeout).
    fn exchange(
        &mut self,
        client: IpAddr,
        proto: Proto,
        to: SocketAddr,
        mark: Mark,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        self.next_port = self.next_port.wrapping_add(1).max(40_000);
        let me = SocketAddr::new(client, self.next_port);
        let Some(k) = self.owner(to.ip()) else {
            std::thread::sleep(self.timeout);
            return None;
        };
        let port = self.uplink_port(k, to.ip());
        let tos = mark.dscp() << 2;
        let deadline = Instant::now() + self.timeout;
        match proto {
            Proto::Udp => {
                self.inject(k, port, &build(me, to, tos, None, payload, CLIENT_MAC));
                while Instant::now() < deadline {
                    self.pump(Duration::from_millis(1));
                    if let Some(p) = self.take(to, me).into_iter().next() {
                        return Some(p.payload);
                    }
                }
                None
            }
            Proto::Tcp => {
                let isn = 1_000u32;
                self.inject(
                    k,
                    port,
                    &build(me, to, tos, Some((isn, 0, 0x02)), &[], CLIENT_MAC),
                );
                let mut server_seq = None;
                while Instant::now() < deadline && server_seq.is_none() {
                    self.pump(Duration::from_millis(1));
                    server_seq = self
                        .take(to, me)
                        .into_iter()
                        .find_map(|p| p.tcp.filter(|t| t.2 & 0x12 == 0x12).map(|t| t.0));
                }
                let s = server_seq?;
                let ack = s.wrapping_add(1);
                self.inject(
                    k,
                    port,
                    &build(me, to, 0, Some((isn + 1, ack, 0x18)), payload, CLIENT_MAC),
                );
                let mut data = Vec::new();
                let mut fin = None;
                let mut quiet_until = None;
                while Instant::now() < deadline {
                    self.pump(Duration::from_millis(1));
                    for p in self.take(to, me) {
                        if let Some((seq, _, flags)) = p.tcp {
                            data.extend_from_slice(&p.payload);
                            if flags & 0x01 != 0 {
                                fin = Some(seq.wrapping_add(p.payload.len() as u32 + 1));
                            }
                            quiet_until = Some(Instant::now() + Duration::from_millis(20));
                        }
                    }
                    if fin.is_some() || quiet_until.is_some_and(|q| Instant::now() >= q) {
                        break;
                    }
                }
                let my_next = isn + 1 + payload.len() as u32;
                match fin {
                    Some(their_end) => {
                        // A redirection: close our side too.
                        let f = build(me, to, 0, Some((my_next, their_end, 0x11)), &[], CLIENT_MAC);
                        self.inject(k, port, &f);
                        self.pump(Duration::from_millis(2));
                        self.take(to, me);
                    }
                    None if !data.is_empty() => {
                        // Served: acknowledge and keep the connection open.
                        let their = s.wrapping_add(1 + data.len() as u32);
                        let f = build(me, to, 0, Some((my_next, their, 0x10)), &[], CLIENT_MAC);
                        self.inject(k, port, &f);
                    }
                    None => return None,
                }
                Some(data)
            }
        }
    }

    /// Runs one service request of `client` (at address `from`) through
    /// the lab to completion.
    pub fn request(
        &mut self,
        client: &mut RedirectClient,
        from: IpAddr,
        proto: Proto,
        service: SocketAddr,
        request: &[u8],
    ) -> Outcome {
        let mut steps = Vec::new();
        let mut sends = Vec::new();
        let now = self.now();
        let (mut ex, mut a) = client.start(service, proto, request, now);
        let mut last = service;
        loop {
            match a {
                Action::Send {
                    to,
                    mark,
                    payload,
                    why,
                } => {
                    steps.push(match why {
                        Why::First => format!("request  {} {to} (mark {mark:?})", proto.as_str()),
                        Why::Follow(h) => format!(
                            "redirect from {last} to {to}, flags {:?}; follow (mark {mark:?})",
                            h.persistence
                        ),
                        Why::Remembered(t) => format!("request  {} {t} (remembered redirection, mark {mark:?})", proto.as_str()),
                        Why::Resend { failed } => format!("no answer from {failed}: resend to {to} with the failure flag (mark {mark:?})"),
                        Why::Retry => format!("no answer: retry {to}"),
                    });
                    sends.push((to, mark));
                    last = to;
                    let got = self.exchange(from, proto, to, mark, &payload);
                    let now = self.now();
                    a = match got {
                        Some(bytes) => client.on_response(&mut ex, &bytes, now),
                        None => client.on_timeout(&mut ex, now),
                    };
                }
                Action::Served { by, response } => {
                    steps.push(format!(
                        "served   by {by}: {:?}",
                        String::from_utf8_lossy(&response)
                    ));
                    return Outcome {
                        result: Ok((by, response)),
                        steps,
                        sends,
                    };
                }
                Action::Failed(e) => {
                    steps.push(format!("failed   {e}"));
                    return Outcome {
                        result: Err(e),
                        steps,
                        sends,
                    };
                }
            }
        }
    }

    /// A plain (not redirect-capable) client's request: one send, no mark.
    pub fn plain(
        &mut self,
        from: IpAddr,
        proto: Proto,
        to: SocketAddr,
        request: &[u8],
    ) -> Option<Vec<u8>> {
        self.exchange(from, proto, to, Mark::Plain, request)
    }

    /// One send of `payload` as it is, its first packet marked `mark`: a
    /// hand-made request, such as a forged failure report (DSCP 43 from a
    /// client the appliance never redirected). The bytes that came back,
    /// or `None`.
    pub fn marked(
        &mut self,
        from: IpAddr,
        proto: Proto,
        to: SocketAddr,
        mark: Mark,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        self.exchange(from, proto, to, mark, payload)
    }

    /// Lets the lab run (and the management cores publish) for a while.
    pub fn settle(&mut self, d: Duration) {
        self.pump(d);
        self.inbox.clear();
    }
}

/// Ethernet + IPv4 (TOS `tos`) + UDP or TCP (`tcp` = seq, ack, flags).
fn build(
    src: SocketAddr,
    dst: SocketAddr,
    tos: u8,
    tcp: Option<(u32, u32, u8)>,
    payload: &[u8],
    src_mac: [u8; 6],
) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        return Vec::new();
    };
    // The ports sit at the same offsets in TCP and UDP.
    let (mut l4, proto, checksum_at) = match tcp {
        Some((seq, ack, flags)) => {
            let mut h = vec![0u8; tcp::MIN_HEADER_LEN];
            tcp::set_seq(&mut h, seq);
            tcp::set_ack(&mut h, ack);
            h[tcp::DATA_OFF_OFFSET] = tcp::data_off_byte(tcp::MIN_HEADER_LEN);
            h[tcp::FLAGS_OFFSET] = flags;
            h[tcp::WINDOW_OFFSET..][..2].copy_from_slice(&u16::MAX.to_be_bytes());
            (h, PROTO_TCP, tcp::CHECKSUM_OFFSET)
        }
        None => {
            let mut h = vec![0u8; udp::HEADER_LEN];
            let len = (udp::HEADER_LEN + payload.len()) as u16;
            h[udp::LEN_OFFSET..][..2].copy_from_slice(&len.to_be_bytes());
            (h, PROTO_UDP, udp::CHECKSUM_OFFSET)
        }
    };
    l4[udp::SRC_PORT_OFFSET..][..2].copy_from_slice(&src.port().to_be_bytes());
    l4[udp::DST_PORT_OFFSET..][..2].copy_from_slice(&dst.port().to_be_bytes());
    l4.extend_from_slice(payload);
    let pseudo = sum(&d.octets(), sum(&s.octets(), 0)) + u32::from(proto) + l4.len() as u32;
    let c = !fold(sum(&l4, pseudo));
    l4[checksum_at..checksum_at + 2].copy_from_slice(&c.to_be_bytes());
    let l3 = ethernet::HEADER_LEN;
    let mut f = vec![0u8; l3 + ipv4::MIN_HEADER_LEN];
    ethernet::write_l2(&mut f, ethernet::BROADCAST, src_mac, None, ETHERTYPE_IPV4);
    let total = (ipv4::MIN_HEADER_LEN + l4.len()) as u16;
    ipv4::write_header(&mut f[l3..], tos, total, 1, 64, proto, s, d);
    f.extend_from_slice(&l4);
    f
}

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

fn parse(f: &[u8]) -> Option<ToClient> {
    let ip = f.get(ethernet::HEADER_LEN..)?;
    if ethernet::ethertype(f)? != ETHERTYPE_IPV4
        || ip.len() < ipv4::MIN_HEADER_LEN
        || ipv4::version(ip) != 4
    {
        return None;
    }
    let total = ipv4::total_len(ip).min(ip.len());
    let l4 = ip.get(ipv4::header_len(ip)..total)?;
    let (tcp, payload) = match ipv4::proto(ip) {
        PROTO_TCP if l4.len() >= tcp::MIN_HEADER_LEN => {
            let doff = tcp::header_len(l4);
            let head = (tcp::seq(l4), tcp::ack(l4), tcp::flags(l4));
            (Some(head), l4.get(doff..)?.to_vec())
        }
        PROTO_UDP if l4.len() >= udp::HEADER_LEN => (None, l4[udp::HEADER_LEN..].to_vec()),
        _ => return None,
    };
    Some(ToClient {
        src: SocketAddr::new(IpAddr::V4(ipv4::src(ip)), udp::src_port(l4)),
        dst: SocketAddr::new(IpAddr::V4(ipv4::dst(ip)), udp::dst_port(l4)),
        tcp,
        payload,
    })
}

/// The lab's site: an appliance named `name` with service addresses
/// `base.10` (the master, redirecting to the servers' own addresses) and
/// `base.11`.. (one per server), `servers` servers on 10.0.2.x:7000.
/// `peer` (name, address) becomes a member of the master service;
/// `extra` is appended to the `[redirection]` section (store settings).
pub fn site_config(
    name: &str,
    base: &str,
    servers: usize,
    peer: Option<(&str, &str)>,
    extra: &str,
) -> String {
    let peers = peer.map_or(String::new(), |(p, a)| {
        format!("[[redirection.peers]]\nname = \"{p}\"\naddress = \"{a}\"\n")
    });
    let mut s = format!(
        r#"backend = "external"
[lan]
port = "lan"
prefixes = ["10.0.0.0/16"]
[[ports]]
name = "lan"
mac = "02:00:00:00:00:01"
[[ports]]
name = "wan"
mac = "02:00:00:00:0a:01"
[[uplinks]]
name = "isp"
port = "wan"
nat_addresses = ["{base}.1"]
next_hop_mac = "02:00:00:00:0a:fe"
[runtime]
mode = "run-to-completion"
pool_size = 4096
oversubscribe = true
[[runtime.lcores]]
[redirection]
appliance = "{name}"
publish_interval_ms = 20
{extra}
{peers}"#
    );
    for i in 1..=servers {
        s += &format!(
            "[[redirection.servers]]\nname = \"{name}{i}\"\naddress = \"10.0.2.{i}:7000\"\nmac = \"02:00:00:00:02:0{i}\"\n"
        );
    }
    s += &format!(
        "[[redirection.services]]\nname = \"web\"\naddress = \"{base}.10:7000\"\nuplink = \"isp\"\n"
    );
    for i in 1..=servers {
        s += &format!("[[redirection.services.members]]\nservice = \"{name}{i}\"\n");
    }
    if let Some((p, _)) = peer {
        s += &format!("[[redirection.services.members]]\npeer = \"{p}\"\n");
    }
    for i in 1..=servers {
        s += &format!(
            "[[redirection.services]]\nname = \"{name}{i}\"\naddress = \"{base}.{}:7000\"\nuplink = \"isp\"\npersistence = \"none\"\n[[redirection.services.members]]\nserver = \"{name}{i}\"\n",
            10 + i
        );
    }
    s
}
