//! One NAT shard: the session table a single translate lcore owns (one
//! writer, no locks), its mappings, its NAT port pools and its sweep.
//!
//! # Model
//! A **mapping** binds an inside endpoint (protocol, CA, CP) on one uplink to
//! an outside endpoint (NA, NP). Mapping is endpoint-independent (RFC 4787
//! REQ-1, RFC 5382 REQ-1): while the mapping lives, every flow from (CA, CP)
//! over that uplink leaves as (NA, NP), whatever its remote. UDP and ICMP
//! mappings are also *sticky*: an inside endpoint has at most one, so its
//! later flows stay on the uplink of its first (STUN and peer-to-peer
//! applications depend on that). TCP may hold one mapping per uplink, which
//! the SYN race of seed 001 needs.
//!
//! A **session** is a time-stamped mapping record in the sense of seed 000
//! [72]-[73]: the mapping plus one remote endpoint (SA, SP), the TCP state,
//! a last-seen time and packet and byte counters. It is created by the first
//! packet of a flow, refreshed by every matching packet in either direction
//! and removed when idle past its protocol's timeout; for UDP this is the
//! seed's "artificial UDP session". The sessions of one mapping form a
//! doubly linked chain; the mapping lives while its chain is not empty, and
//! its port returns to the pool when the last session goes.
//!
//! # Memory
//! Sessions live in a slab (`Vec<Session>`, 96 bytes each, reserved up front
//! and never reallocated). The indexes store only a `u32` slab index per
//! entry (hashbrown's `HashTable`, 5 bytes a bucket with its control byte);
//! the key is compared against the slab record, so a lookup touches the
//! index and the one session it needs. Three indexes: outbound 5-tuple,
//! inbound 5-tuple, and inside endpoint → mapping head. The outside endpoint
//! → mapping direction needs no hash: each pool keeps the owner of every
//! port of the shard's slice in a flat array. Hashes are keyed per shard
//! with a random seed, so remote hosts cannot aim packets at one bucket.
//!
//! # Invariants (checked by the property tests)
//! - Every live session has exactly one entry in each session index; every
//!   mapping exactly one entry in the mapping index and is the owner of its
//!   port; a port is owned by at most one mapping, and a free port is in its
//!   pool's free stack exactly once.
//! - Translation is a bijection over live sessions: outbound key ↔ inbound
//!   key.
//! - The slab never grows past `max_sessions`, so creation never reallocates.

use hashbrown::{HashMap, HashTable};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::packet::counter::Counter;
use crate::packet::drop::DropReason;
use crate::packet::flow::{proto, FlowKey};
use crate::packet::time::Nanos;
use crate::select::SelEvent;
use crate::topology::{NatPortRange, Topology, UplinkId};
use crate::wire::tcp::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// Which unsolicited inbound packets reach an existing mapping (RFC 4787
/// section 5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Filtering {
    /// Any remote may send to the mapping's outside endpoint.
    EndpointIndependent,
    /// Only remote addresses the inside endpoint has sent to.
    AddressDependent,
    /// Only the exact remote endpoints the inside endpoint has sent to: the
    /// session record keeps (SA, SP) (seed 000 [72]). The default.
    #[default]
    AddressAndPortDependent,
}

impl Filtering {
    pub const NAMES: [&'static str; 3] = [
        "endpoint-independent",
        "address-dependent",
        "address-and-port-dependent",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Filtering::EndpointIndependent => Self::NAMES[0],
            Filtering::AddressDependent => Self::NAMES[1],
            Filtering::AddressAndPortDependent => Self::NAMES[2],
        }
    }
}

impl std::str::FromStr for Filtering {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "endpoint-independent" => Ok(Filtering::EndpointIndependent),
            "address-dependent" => Ok(Filtering::AddressDependent),
            "address-and-port-dependent" => Ok(Filtering::AddressAndPortDependent),
            _ => Err(format!(
                "unknown filtering `{s}`; allowed: {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct NatConfig {
    /// Most sessions this shard holds; further new flows are dropped and
    /// counted as `table_full` (existing sessions are never evicted for
    /// them: a flood of new flows cannot push out live connections).
    pub max_sessions: usize,
    /// Idle timeout of artificial UDP sessions (seed 000 [73]).
    pub udp_idle_timeout: Nanos,
    pub tcp_established_timeout: Nanos,
    /// TCP sessions that are opening or closing (RFC 5382 transitory).
    pub tcp_transitory_timeout: Nanos,
    /// TCP sessions after a RST.
    pub tcp_closed_timeout: Nanos,
    pub icmp_timeout: Nanos,
    pub filtering: Filtering,
    /// The sweep visits every session at least once per interval (the
    /// periodic pass of seed 000 [73]), in bounded slices.
    pub sweep_interval: Nanos,
    /// Keep the inside port as the NAT port when it is free and inside this
    /// shard's slice (RFC 4787 REQ-? "port preservation", a MAY).
    pub port_preservation: bool,
    /// Keys the index hashes and the port randomisation. A fresh random
    /// value per run in production; fixed in tests.
    pub seed: u64,
    /// How long a losing race copy waits for its SYN+ACK (to answer it with
    /// an RST) before it is freed and counted unanswered.
    pub race_timeout: Nanos,
    /// Races (SYN races in progress, plus first-payload connections that
    /// keep a sequence offset) the shard holds at once.
    pub max_races: usize,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            max_sessions: 65_536,
            udp_idle_timeout: Nanos::from_secs(180),
            tcp_established_timeout: Nanos::from_secs(7_440),
            tcp_transitory_timeout: Nanos::from_secs(240),
            tcp_closed_timeout: Nanos::from_secs(10),
            icmp_timeout: Nanos::from_secs(60),
            filtering: Filtering::default(),
            sweep_interval: Nanos::from_secs(1),
            port_preservation: true,
            seed: 0x5EED_0FA7_7E57,
            race_timeout: Nanos::from_secs(3),
            max_races: 16_384,
        }
    }
}

/// TCP connection state as the NAT sees it (RFC 5382 section 5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// The client's SYN went out; nothing came back yet.
    SynSent,
    /// A remote's SYN came in (a session opened from outside under
    /// endpoint-independent or address-dependent filtering).
    SynReceived,
    /// SYNs went both ways (or a connection picked up mid-stream carried
    /// traffic both ways).
    Established,
    /// A FIN was seen in one direction.
    FinSeen,
    /// FINs were seen in both directions.
    Closed,
    /// A RST was seen: kept briefly so stray segments still translate.
    Rst,
}

/// What a session has seen, as bits; [`TcpState`] derives from them.
pub(crate) mod seen {
    pub const SYN_OUT: u8 = 1;
    pub const SYN_IN: u8 = 2;
    pub const FIN_OUT: u8 = 4;
    pub const FIN_IN: u8 = 8;
    pub const RST: u8 = 16;
    pub const OUT: u8 = 32;
    pub const IN: u8 = 64;
}

pub(crate) const NONE: u32 = u32::MAX;
const LIVE: u8 = 1;
const V6: u8 = 2;
/// The session has the outbound index entry of its 5-tuple. All sessions
/// do except racing copies: a race has one session per uplink for the same
/// outbound 5-tuple, and only one of them (the client's) is indexed.
pub(crate) const OUT_INDEXED: u8 = 4;
/// A race copy that lost: kept for the race timeout so that its SYN+ACK is
/// answered with an RST.
pub(crate) const LOSER: u8 = 8;

/// One session, 96 bytes. Addresses are stored as 16 bytes (IPv4 in its
/// IPv4-mapped form, told apart by the `V6` flag) so one table serves NAT44
/// and NAT66.
#[derive(Clone, Debug)]
pub struct Session {
    client: [u8; 16],
    remote: [u8; 16],
    pub last_seen: Nanos,
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Saturating: a session past 4 billion packets a direction stops
    /// counting packets, its byte counters go on.
    pub packets_out: u32,
    pub packets_in: u32,
    /// Chain of the sessions of one mapping; `next` doubles as the free
    /// list link of a free slot.
    next: u32,
    prev: u32,
    pub client_port: u16,
    pub remote_port: u16,
    pub nat_port: u16,
    /// Index into the shard's NAT address list.
    nat_addr: u16,
    pub proto: u8,
    pub uplink: UplinkId,
    pub(crate) tcp: u8,
    pub(crate) flags: u8,
    /// The client's MAC, learnt from its packets, for the way back.
    pub client_mac: [u8; 6],
    /// The SYN race this session belongs to (seed 001 [0036]), or `NONE`:
    /// a racing copy, a loser waiting for its SYN+ACK, or a first-payload
    /// winner whose sequence numbers are translated.
    pub(crate) race: u32,
    /// A service session (seed 000 [31]): the local server it was given
    /// to, whose load it counts as; `NO_SERVER` otherwise.
    pub server: u16,
}

/// `Session::server` of a session that is not a service session.
pub const NO_SERVER: u16 = u16::MAX;

const _: () = assert!(std::mem::size_of::<Session>() == 96);

impl Session {
    const FREE: Session = Session {
        client: [0; 16],
        remote: [0; 16],
        last_seen: Nanos::ZERO,
        bytes_out: 0,
        bytes_in: 0,
        packets_out: 0,
        packets_in: 0,
        next: NONE,
        prev: NONE,
        client_port: 0,
        remote_port: 0,
        nat_port: 0,
        nat_addr: 0,
        proto: 0,
        uplink: 0,
        tcp: 0,
        flags: 0,
        client_mac: [0; 6],
        race: NONE,
        server: NO_SERVER,
    };

    fn is_live(&self) -> bool {
        self.flags & LIVE != 0
    }

    fn is_v6(&self) -> bool {
        self.flags & V6 != 0
    }

    /// Whether this session is a race copy that lost.
    pub fn is_race_loser(&self) -> bool {
        self.flags & LOSER != 0
    }

    /// Whether this session takes part in a SYN race (or keeps a
    /// first-payload winner's sequence offset).
    pub fn in_race(&self) -> bool {
        self.race != NONE
    }

    pub fn client_addr(&self) -> IpAddr {
        from16(self.client, self.is_v6())
    }

    pub fn remote_addr(&self) -> IpAddr {
        from16(self.remote, self.is_v6())
    }

    /// The 5-tuple of the client's packets: (CA, CP) → (SA, SP).
    pub fn outbound_key(&self) -> FlowKey {
        FlowKey {
            src: self.client_addr(),
            dst: self.remote_addr(),
            src_port: self.client_port,
            dst_port: self.remote_port,
            proto: self.proto,
        }
    }

    pub fn tcp_state(&self) -> TcpState {
        use seen::*;
        let t = self.tcp;
        if t & RST != 0 {
            TcpState::Rst
        } else if t & (FIN_OUT | FIN_IN) == FIN_OUT | FIN_IN {
            TcpState::Closed
        } else if t & (FIN_OUT | FIN_IN) != 0 {
            TcpState::FinSeen
        } else if t & (SYN_OUT | SYN_IN) == SYN_OUT | SYN_IN
            || (t & (SYN_OUT | SYN_IN) == 0 && t & (OUT | IN) == OUT | IN)
        {
            TcpState::Established
        } else if t & SYN_IN != 0 {
            TcpState::SynReceived
        } else {
            TcpState::SynSent
        }
    }

    fn timeout(&self, cfg: &NatConfig) -> Nanos {
        if self.flags & LOSER != 0 {
            return cfg.race_timeout;
        }
        match self.proto {
            proto::TCP => match self.tcp_state() {
                TcpState::Established => cfg.tcp_established_timeout,
                TcpState::Rst => cfg.tcp_closed_timeout,
                _ => cfg.tcp_transitory_timeout,
            },
            proto::UDP => cfg.udp_idle_timeout,
            _ => cfg.icmp_timeout,
        }
    }

    pub fn expired(&self, now: Nanos, cfg: &NatConfig) -> bool {
        now.since(self.last_seen) > self.timeout(cfg)
    }

    fn on_tcp(&mut self, flags: u8, inbound: bool) {
        use seen::*;
        let (syn, fin, dir) = if inbound {
            (SYN_IN, FIN_IN, IN)
        } else {
            (SYN_OUT, FIN_OUT, OUT)
        };
        let mut t = self.tcp | dir;
        if flags & TCP_SYN != 0 {
            t |= syn;
        }
        if flags & TCP_FIN != 0 {
            t |= fin;
        }
        if flags & TCP_RST != 0 {
            t |= RST;
        }
        self.tcp = t;
    }
}

#[inline]
fn to16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[inline]
fn from16(b: [u8; 16], v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15]))
    }
}

/// Port-space classes: TCP, UDP and ICMP identifiers are separate
/// namespaces on every NAT address.
const CLASSES: usize = 3;

fn class_of(protocol: u8) -> usize {
    match protocol {
        proto::TCP => 0,
        proto::UDP => 1,
        _ => 2,
    }
}

/// The ports of one NAT address and class within the shard's slice. `free`
/// is a stack of free ports; `pos` says where a free port sits in it (so a
/// preserved port leaves in O(1)); `owner` is the head session of the
/// mapping holding a port, or `NONE`. Allocation swaps a random free port to
/// the top first, so NAT ports are unpredictable (RFC 6056) and a port just
/// freed is not handed out next.
struct PortPool {
    base: u16,
    free: Vec<u16>,
    pos: Vec<u16>,
    owner: Vec<u32>,
}

impl PortPool {
    fn new(range: NatPortRange, rng: &mut u64) -> PortPool {
        let mut free: Vec<u16> = (range.first..=range.last).collect();
        for i in (1..free.len()).rev() {
            free.swap(i, (next_rand(rng) % (i as u64 + 1)) as usize);
        }
        let mut pos = vec![0u16; free.len()];
        for (i, p) in free.iter().enumerate() {
            pos[usize::from(p - range.first)] = i as u16;
        }
        let owner = vec![NONE; free.len()];
        PortPool {
            base: range.first,
            free,
            pos,
            owner,
        }
    }

    /// The slice index of `port`, if the port is in the slice.
    fn index(&self, port: u16) -> Option<usize> {
        let i = usize::from(port.checked_sub(self.base)?);
        (i < self.owner.len()).then_some(i)
    }

    /// Takes the free port at slice index `i` out of the free stack.
    fn take_at(&mut self, i: usize) {
        let at = usize::from(self.pos[i]);
        let last = self.free.len() - 1;
        self.free.swap(at, last);
        self.free.pop();
        if at != last {
            let moved = self.free[at];
            self.pos[usize::from(moved - self.base)] = at as u16;
        }
    }

    /// Takes a random free port; its slice index, or `None` when exhausted.
    fn take_random(&mut self, rng: &mut u64) -> Option<usize> {
        if self.free.is_empty() {
            return None;
        }
        let at = (next_rand(rng) % self.free.len() as u64) as usize;
        let i = usize::from(self.free[at] - self.base);
        self.take_at(i);
        Some(i)
    }

    fn give_back(&mut self, i: usize) {
        self.owner[i] = NONE;
        self.pos[i] = self.free.len() as u16;
        self.free.push(self.base + i as u16);
    }
}

fn next_rand(x: &mut u64) -> u64 {
    // xorshift64*: enough to shuffle ports; seeded per run.
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[inline]
fn fold(x: u64, y: u64) -> u64 {
    let r = u128::from(x) * u128::from(y);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Seeded hash of two endpoints and a protocol tag (foldhash-style folded
/// multiplies; the multipliers are per-shard secrets).
#[derive(Clone, Copy)]
struct Hasher {
    k: [u64; 4],
}

impl Hasher {
    fn new(seed: u64) -> Hasher {
        let mut x = seed | 1;
        Hasher {
            k: std::array::from_fn(|_| next_rand(&mut x) | 1),
        }
    }

    #[inline]
    fn hash(&self, a: &[u8; 16], ap: u16, b: &[u8; 16], bp: u16, tag: u8) -> u64 {
        let a = u128::from_ne_bytes(*a);
        let b = u128::from_ne_bytes(*b);
        let tail = (u64::from(ap) << 32) | (u64::from(bp) << 16) | u64::from(tag);
        let h = fold(a as u64 ^ self.k[0], (a >> 64) as u64 ^ self.k[1]);
        let h = fold(h ^ b as u64, (b >> 64) as u64 ^ self.k[2]);
        fold(h ^ tail, self.k[3])
    }
}

/// The parts of a flow key the tables compare, in table form.
#[derive(Clone, Copy)]
struct Tuple {
    src: [u8; 16],
    dst: [u8; 16],
    src_port: u16,
    dst_port: u16,
    proto: u8,
    v6: bool,
}

impl Tuple {
    #[inline]
    fn of(k: &FlowKey) -> Tuple {
        Tuple {
            src: to16(k.src),
            dst: to16(k.dst),
            src_port: k.src_port,
            dst_port: k.dst_port,
            proto: k.proto,
            v6: k.src.is_ipv6(),
        }
    }

    #[inline]
    fn tag(&self) -> u8 {
        self.proto ^ (u8::from(self.v6) << 7)
    }
}

/// Counters and gauges of one shard, readable by the management core.
#[derive(Debug)]
pub struct NatCounters {
    pub created: Counter,
    pub table_full: Counter,
    pub expired: Counter,
    pub port_exhausted: Counter,
    /// Unsolicited inbound packets refused by the filtering mode.
    pub filtered: Counter,
    pub tcp_sessions: Counter,
    pub udp_sessions: Counter,
    pub icmp_sessions: Counter,
    pub mappings: Counter,
    /// Complete passes of the sweep over the table.
    pub sweep_laps: Counter,
    /// SYN races started (seed 001 [0036]).
    pub races: Counter,
    /// Races not started for want of a race record: the SYN left by one
    /// uplink only.
    pub race_table_full: Counter,
    /// Selection events lost because the buffer toward the management core
    /// was full.
    pub events_dropped: Counter,
    /// Losing race copies freed when their server answered (with a SYN+ACK,
    /// which gets an RST, or an RST); the others expire.
    pub race_closed: Counter,
    /// Per uplink, indexed by [`UplinkId`].
    pub uplinks: Vec<UplinkCounters>,
    /// Per local server behind a service address (seed 000 [75]): its live
    /// TCP sessions and artificial UDP sessions in this shard.
    pub servers: Vec<ServerCounters>,
}

#[derive(Debug, Default)]
pub struct ServerCounters {
    pub tcp_sessions: Counter,
    pub udp_sessions: Counter,
}

#[derive(Debug, Default)]
pub struct UplinkCounters {
    pub tx_packets: Counter,
    pub rx_packets: Counter,
    pub tx_bytes: Counter,
    pub rx_bytes: Counter,
    pub tcp_sessions: Counter,
    pub udp_sessions: Counter,
    pub port_exhausted: Counter,
    /// New TCP connections carried by this uplink (races won, and
    /// connections that did not race).
    pub connections: Counter,
    pub races_won: Counter,
    pub races_lost: Counter,
    /// Losing race copies whose SYN+ACK never came within the race timeout.
    pub race_unanswered: Counter,
}

/// A NAT address of the shard.
struct NatAddr {
    addr: IpAddr,
    bytes: [u8; 16],
    uplink: UplinkId,
}

/// Sweep visits per call: at least this many, so a small table is swept
/// briskly, and at most `SWEEP_MAX`, so one call never stalls forwarding
/// (1,024 removals take well under a millisecond; see the `nat` bench).
pub const SWEEP_MIN: usize = 32;
pub const SWEEP_MAX: usize = 1_024;

/// Sessions an address-dependent filter inspects for a known remote
/// address before refusing (bounds the work a packet can cause).
pub const ADF_WALK_MAX: usize = 256;

pub struct NatShard {
    cfg: NatConfig,
    slots: Vec<Session>,
    free_head: u32,
    live: usize,
    by_out: HashTable<u32>,
    by_in: HashTable<u32>,
    /// Inside endpoint → head session of its mapping(s).
    by_inside: HashTable<u32>,
    hasher: Hasher,
    /// Keyed by the run's seed alone, the same in every shard: paired
    /// address pooling.
    pairing: Hasher,
    addrs: Vec<NatAddr>,
    addr_index: HashMap<IpAddr, u16>,
    /// Per uplink, its NAT address indexes of each family (v4, v6).
    uplink_addrs: Vec<[Vec<u16>; 2]>,
    range: NatPortRange,
    /// Indexed by `addr * CLASSES + class`; built on first use.
    pools: Vec<Option<PortPool>>,
    rng: u64,
    sweep_cursor: usize,
    sweep_owed: u64,
    sweep_credit: u128,
    last_sweep: Option<Nanos>,
    pub(crate) races: crate::race::RaceTable,
    /// Selection events (RTT samples, unanswered race copies) for the
    /// management core; the runtime drains them every loop turn. Bounded by
    /// [`EVENTS_MAX`]: past it events are counted `events_dropped`.
    pub events: Vec<SelEvent>,
    /// Shared with the management core, which only reads.
    pub counters: Arc<NatCounters>,
}

/// Selection events a shard buffers between two drains.
pub const EVENTS_MAX: usize = 4_096;

/// How a new outbound session came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// On a new mapping.
    NewMapping,
    /// On the inside endpoint's existing mapping (endpoint-independent
    /// mapping).
    ExistingMapping,
}

#[inline]
fn out_eq(s: &Session, t: &Tuple) -> bool {
    s.client == t.src
        && s.remote == t.dst
        && s.client_port == t.src_port
        && s.remote_port == t.dst_port
        && s.proto == t.proto
        && s.is_v6() == t.v6
        && s.is_live()
}

#[inline]
fn in_eq(s: &Session, addrs: &[NatAddr], t: &Tuple) -> bool {
    s.remote == t.src
        && s.remote_port == t.src_port
        && s.nat_port == t.dst_port
        && s.proto == t.proto
        && s.is_v6() == t.v6
        && s.is_live()
        && addrs.get(usize::from(s.nat_addr)).map(|a| a.bytes) == Some(t.dst)
}

#[inline]
fn tag(s: &Session) -> u8 {
    s.proto ^ (u8::from(s.is_v6()) << 7)
}

#[inline]
fn session_out_hash(h: &Hasher, s: &Session) -> u64 {
    h.hash(&s.client, s.client_port, &s.remote, s.remote_port, tag(s))
}

#[inline]
fn session_in_hash(h: &Hasher, addrs: &[NatAddr], s: &Session) -> u64 {
    let na = addrs
        .get(usize::from(s.nat_addr))
        .map_or([0; 16], |a| a.bytes);
    h.hash(&s.remote, s.remote_port, &na, s.nat_port, tag(s))
}

#[inline]
fn inside_hash(h: &Hasher, client: &[u8; 16], port: u16, tag: u8) -> u64 {
    h.hash(client, port, &[0; 16], 0, tag)
}

impl NatShard {
    /// A shard owning `topo.shard_ports(shard)` on every NAT address.
    pub fn new(cfg: NatConfig, topo: &Topology, shard: u16) -> NatShard {
        let mut addrs = Vec::new();
        let mut addr_index = HashMap::new();
        let mut uplink_addrs: Vec<[Vec<u16>; 2]> = Vec::new();
        for (u, up) in topo.uplinks.iter().enumerate() {
            let mut fam: [Vec<u16>; 2] = [Vec::new(), Vec::new()];
            for a in &up.nat_addrs {
                let i = addrs.len() as u16;
                addrs.push(NatAddr {
                    addr: *a,
                    bytes: to16(*a),
                    uplink: u as UplinkId,
                });
                addr_index.insert(*a, i);
                fam[usize::from(a.is_ipv6())].push(i);
            }
            uplink_addrs.push(fam);
        }
        let cap = cfg.max_sessions;
        let shard_seed = cfg.seed ^ u64::from(shard).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        NatShard {
            slots: Vec::with_capacity(cap),
            free_head: NONE,
            live: 0,
            by_out: HashTable::with_capacity(cap),
            by_in: HashTable::with_capacity(cap),
            by_inside: HashTable::with_capacity(cap),
            hasher: Hasher::new(shard_seed),
            pairing: Hasher::new(cfg.seed),
            pools: (0..addrs.len() * CLASSES).map(|_| None).collect(),
            addrs,
            addr_index,
            uplink_addrs,
            range: topo.shard_ports(shard),
            rng: shard_seed.rotate_left(17) | 1,
            sweep_cursor: 0,
            sweep_owed: 0,
            sweep_credit: 0,
            last_sweep: None,
            races: crate::race::RaceTable::with_capacity(cfg.max_races),
            events: Vec::with_capacity(EVENTS_MAX),
            counters: Arc::new(NatCounters {
                created: Counter::new(),
                table_full: Counter::new(),
                expired: Counter::new(),
                port_exhausted: Counter::new(),
                filtered: Counter::new(),
                tcp_sessions: Counter::new(),
                udp_sessions: Counter::new(),
                icmp_sessions: Counter::new(),
                mappings: Counter::new(),
                sweep_laps: Counter::new(),
                races: Counter::new(),
                race_table_full: Counter::new(),
                events_dropped: Counter::new(),
                race_closed: Counter::new(),
                uplinks: (0..topo.uplinks.len())
                    .map(|_| UplinkCounters::default())
                    .collect(),
                servers: Vec::new(),
            }),
            cfg,
        }
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }

    /// The live session in slot `idx`.
    pub fn session(&self, idx: u32) -> Option<&Session> {
        self.slots.get(idx as usize).filter(|s| s.is_live())
    }

    /// Slot indexes of all live sessions (for tests and dumps; O(slots)).
    pub fn live_sessions(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.slots.len() as u32).filter(|&i| self.slots[i as usize].is_live())
    }

    pub fn nat_addr(&self, s: &Session) -> IpAddr {
        self.addrs[usize::from(s.nat_addr)].addr
    }

    /// The 5-tuple of the remote's replies: (SA, SP) → (NA, NP).
    pub fn inbound_key(&self, s: &Session) -> FlowKey {
        FlowKey {
            src: s.remote_addr(),
            dst: self.nat_addr(s),
            src_port: s.remote_port,
            dst_port: s.nat_port,
            proto: s.proto,
        }
    }

    /// The live session for an outbound 5-tuple, if any (an expired one that
    /// the sweep has not reached yet is removed here and not returned).
    #[inline]
    pub fn lookup_out(&mut self, key: &FlowKey, now: Nanos) -> Option<u32> {
        self.lookup(key, false, None, now)
    }

    /// The live session for an inbound 5-tuple, if any.
    #[inline]
    pub fn lookup_in(&mut self, key: &FlowKey, now: Nanos) -> Option<u32> {
        self.lookup(key, true, None, now)
    }

    /// The session slot an outbound (or inbound) 5-tuple's index entry
    /// names, without looking at its age. Translate calls it for a whole
    /// burst before translating any packet of it: the lookups of different
    /// packets do not depend on each other, so their cache misses overlap
    /// instead of being paid one after the other.
    #[inline]
    pub fn find(&self, key: &FlowKey, inbound: bool) -> Option<u32> {
        let t = Tuple::of(key);
        let h = self
            .hasher
            .hash(&t.src, t.src_port, &t.dst, t.dst_port, t.tag());
        let (slots, addrs) = (&self.slots, &self.addrs);
        if inbound {
            self.by_in
                .find(h, |&i| in_eq(&slots[i as usize], addrs, &t))
                .copied()
        } else {
            self.by_out
                .find(h, |&i| out_eq(&slots[i as usize], &t))
                .copied()
        }
    }

    /// [`lookup_out`](Self::lookup_out) / [`lookup_in`](Self::lookup_in)
    /// with the slot [`find`](Self::find) gave earlier: used if that slot
    /// still holds this flow's session (sessions created or removed since
    /// may have changed it), looked up again otherwise.
    #[inline]
    pub fn lookup(
        &mut self,
        key: &FlowKey,
        inbound: bool,
        hint: Option<u32>,
        now: Nanos,
    ) -> Option<u32> {
        let still = hint.filter(|&i| {
            let t = Tuple::of(key);
            self.slots.get(i as usize).is_some_and(|s| {
                if inbound {
                    in_eq(s, &self.addrs, &t)
                } else {
                    out_eq(s, &t)
                }
            })
        });
        let idx = match still {
            Some(i) => i,
            None => self.find(key, inbound)?,
        };
        self.live_or_expire(idx, now)
    }

    fn live_or_expire(&mut self, idx: u32, now: Nanos) -> Option<u32> {
        if self.slots[idx as usize].expired(now, &self.cfg) {
            self.expire(idx);
            self.counters.expired.inc();
            return None;
        }
        Some(idx)
    }

    /// Removes a session that timed out. A race loser still here never
    /// answered its SYN copy (answered ones are removed when their RST goes
    /// out): that counts against its uplink's health (seed 001 [0054]).
    fn expire(&mut self, idx: u32) {
        if let Some(s) = self.remove(idx) {
            if s.flags & LOSER != 0 && s.tcp & seen::SYN_IN == 0 {
                if let Some(u) = self.counters.uplinks.get(usize::from(s.uplink)) {
                    u.race_unanswered.inc();
                }
                self.emit(SelEvent::Unanswered { uplink: s.uplink });
            }
        }
    }

    /// Queues a selection event for the management core.
    pub(crate) fn emit(&mut self, ev: SelEvent) {
        if self.events.len() < EVENTS_MAX {
            self.events.push(ev);
        } else {
            self.counters.events_dropped.inc();
        }
    }

    /// The mapping head of an inside endpoint: on `uplink` for TCP, on any
    /// uplink for UDP and ICMP (sticky mappings).
    fn find_mapping(&self, t: &Tuple, uplink: UplinkId) -> Option<u32> {
        let sticky = t.proto != proto::TCP;
        let h = inside_hash(&self.hasher, &t.src, t.src_port, t.tag());
        let slots = &self.slots;
        self.by_inside
            .find(h, |&i| {
                let s = &slots[i as usize];
                s.client == t.src
                    && s.client_port == t.src_port
                    && s.proto == t.proto
                    && s.is_v6() == t.v6
                    && (sticky || s.uplink == uplink)
            })
            .copied()
    }

    /// Paired address pooling (RFC 4787 REQ-2): an inside address maps to
    /// the same NAT address of an uplink in every shard, chosen by a hash
    /// keyed with the run's seed (shared by all shards).
    fn pick_addr(&self, uplink: UplinkId, client: &[u8; 16], v6: bool) -> Option<u16> {
        let list = self.uplink_addrs.get(usize::from(uplink))?[usize::from(v6)].as_slice();
        if list.is_empty() {
            return None;
        }
        let h = self.pairing.hash(client, 0, &[0; 16], 0, 0);
        Some(list[(h % list.len() as u64) as usize])
    }

    fn pool(&mut self, addr: u16, class: usize) -> &mut PortPool {
        let (range, rng) = (self.range, &mut self.rng);
        self.pools[usize::from(addr) * CLASSES + class]
            .get_or_insert_with(|| PortPool::new(range, rng))
    }

    /// Creates a session for the outbound flow `key`, asked to leave by
    /// `uplink`. The inside endpoint's existing mapping is reused
    /// (endpoint-independent mapping); a UDP or ICMP mapping on another
    /// uplink wins over `uplink` (sticky). Returns the slot; the session's
    /// `uplink` says where it goes.
    pub fn create_out(
        &mut self,
        key: &FlowKey,
        uplink: UplinkId,
        client_mac: [u8; 6],
        now: Nanos,
    ) -> Result<(u32, Created), DropReason> {
        self.create_out_with(key, uplink, client_mac, now, true)
    }

    /// [`create_out`](Self::create_out), with or without the outbound index
    /// entry: a race copy after the first shares its outbound 5-tuple with
    /// the first and is found through the race instead.
    pub(crate) fn create_out_with(
        &mut self,
        key: &FlowKey,
        uplink: UplinkId,
        client_mac: [u8; 6],
        now: Nanos,
        indexed: bool,
    ) -> Result<(u32, Created), DropReason> {
        if self.live >= self.cfg.max_sessions {
            self.counters.table_full.inc();
            return Err(DropReason::TableFull);
        }
        let t = Tuple::of(key);
        let head = self.find_mapping(&t, uplink);
        let (uplink, nat_addr, nat_port) = match head {
            Some(h) => {
                let s = &self.slots[h as usize];
                (s.uplink, s.nat_addr, s.nat_port)
            }
            None => {
                let addr = self
                    .pick_addr(uplink, &t.src, t.v6)
                    .ok_or(DropReason::NoNatAddress)?;
                let preserve = self.cfg.port_preservation;
                let mut rng = self.rng;
                let pool = self.pool(addr, class_of(t.proto));
                let i = match pool.index(t.src_port) {
                    Some(i) if preserve && pool.owner[i] == NONE => {
                        pool.take_at(i);
                        Some(i)
                    }
                    _ => pool.take_random(&mut rng),
                };
                let base = pool.base;
                self.rng = rng;
                let Some(i) = i else {
                    self.counters.port_exhausted.inc();
                    if let Some(u) = self.counters.uplinks.get(usize::from(uplink)) {
                        u.port_exhausted.inc();
                    }
                    return Err(DropReason::PortExhausted);
                };
                (uplink, addr, base + i as u16)
            }
        };
        let s = Session {
            client: t.src,
            remote: t.dst,
            last_seen: now,
            client_port: t.src_port,
            remote_port: t.dst_port,
            nat_port,
            nat_addr,
            proto: t.proto,
            uplink,
            flags: LIVE | if t.v6 { V6 } else { 0 } | if indexed { OUT_INDEXED } else { 0 },
            client_mac,
            ..Session::FREE
        };
        let idx = self.insert(s, head);
        Ok((
            idx,
            if head.is_some() {
                Created::ExistingMapping
            } else {
                Created::NewMapping
            },
        ))
    }

    /// An inbound packet `key` = (SA, SP) → (NA, NP) matched no session: if
    /// a mapping owns (NA, NP) and the filtering mode lets SA (or SA, SP) in,
    /// creates the session and returns it. TCP sessions are only opened this
    /// way by a SYN (RFC 5382 simultaneous open).
    pub fn admit_in(
        &mut self,
        key: &FlowKey,
        tcp_flags: u8,
        now: Nanos,
    ) -> Result<u32, DropReason> {
        let t = Tuple::of(key);
        let addr = *self
            .addr_index
            .get(&key.dst)
            .ok_or(DropReason::NotNatAddress)?;
        let head = self.pools[usize::from(addr) * CLASSES + class_of(t.proto)]
            .as_ref()
            .and_then(|p| p.index(t.dst_port).map(|i| p.owner[i]))
            .filter(|&h| h != NONE && self.slots[h as usize].proto == t.proto)
            .ok_or(DropReason::NoSession)?;
        if t.proto == proto::TCP && tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN {
            return Err(DropReason::NoSession);
        }
        let admitted = match self.cfg.filtering {
            Filtering::EndpointIndependent => true,
            Filtering::AddressDependent => {
                let mut i = head;
                let mut found = false;
                for _ in 0..ADF_WALK_MAX {
                    if i == NONE {
                        break;
                    }
                    let s = &self.slots[i as usize];
                    if s.remote == t.src {
                        found = true;
                        break;
                    }
                    i = s.next;
                }
                found
            }
            Filtering::AddressAndPortDependent => false,
        };
        if !admitted {
            self.counters.filtered.inc();
            return Err(DropReason::Filtered);
        }
        if self.live >= self.cfg.max_sessions {
            self.counters.table_full.inc();
            return Err(DropReason::TableFull);
        }
        let m = &self.slots[head as usize];
        // The client already talks to this remote endpoint over another of
        // its mappings (TCP has one per uplink): a second session with the
        // same outbound 5-tuple would leave its packets two ways to go.
        let outbound = Tuple {
            src: m.client,
            dst: t.src,
            src_port: m.client_port,
            dst_port: t.src_port,
            proto: t.proto,
            v6: t.v6,
        };
        let oh = self.hasher.hash(
            &outbound.src,
            outbound.src_port,
            &outbound.dst,
            outbound.dst_port,
            outbound.tag(),
        );
        let slots = &self.slots;
        if self
            .by_out
            .find(oh, |&i| out_eq(&slots[i as usize], &outbound))
            .is_some()
        {
            self.counters.filtered.inc();
            return Err(DropReason::Filtered);
        }
        let m = &self.slots[head as usize];
        let s = Session {
            client: m.client,
            remote: t.src,
            last_seen: now,
            client_port: m.client_port,
            remote_port: t.src_port,
            nat_port: m.nat_port,
            nat_addr: m.nat_addr,
            proto: t.proto,
            uplink: m.uplink,
            flags: (m.flags & (LIVE | V6)) | OUT_INDEXED,
            client_mac: m.client_mac,
            ..Session::FREE
        };
        Ok(self.insert(s, Some(head)))
    }

    /// Puts `s` in a slot and in the indexes; on the chain of `head`, or as
    /// the head of a new mapping (which then owns its port).
    fn insert(&mut self, mut s: Session, head: Option<u32>) -> u32 {
        let idx = if self.free_head != NONE {
            let i = self.free_head;
            self.free_head = self.slots[i as usize].next;
            i
        } else {
            self.slots.push(Session::FREE);
            (self.slots.len() - 1) as u32
        };
        let (hasher, addrs) = (&self.hasher, &self.addrs);
        match head {
            Some(h) => {
                let after = self.slots[h as usize].next;
                s.prev = h;
                s.next = after;
                self.slots[h as usize].next = idx;
                if after != NONE {
                    self.slots[after as usize].prev = idx;
                }
            }
            None => {
                s.prev = NONE;
                s.next = NONE;
                let slots = &self.slots;
                let mh = inside_hash(hasher, &s.client, s.client_port, tag(&s));
                self.by_inside.insert_unique(mh, idx, |&i| {
                    let x = &slots[i as usize];
                    inside_hash(hasher, &x.client, x.client_port, tag(x))
                });
                let class = class_of(s.proto);
                if let Some(pool) = self.pools[usize::from(s.nat_addr) * CLASSES + class].as_mut() {
                    if let Some(pi) = pool.index(s.nat_port) {
                        pool.owner[pi] = idx;
                    }
                }
                self.counters.mappings.add(1);
            }
        }
        let (oh, ih) = (
            session_out_hash(hasher, &s),
            session_in_hash(hasher, addrs, &s),
        );
        let (protocol, uplink, indexed, server) =
            (s.proto, s.uplink, s.flags & OUT_INDEXED != 0, s.server);
        self.slots[idx as usize] = s;
        let slots = &self.slots;
        if indexed {
            self.by_out
                .insert_unique(oh, idx, |&i| session_out_hash(hasher, &slots[i as usize]));
        }
        self.by_in.insert_unique(ih, idx, |&i| {
            session_in_hash(hasher, addrs, &slots[i as usize])
        });
        self.live += 1;
        self.counters.created.inc();
        self.adjust_gauges(protocol, uplink, true);
        self.adjust_server(protocol, server, true);
        idx
    }

    /// Gives session `idx` the outbound index entry of its 5-tuple, or takes
    /// it away (a race passes the entry to its winner).
    pub(crate) fn set_out_indexed(&mut self, idx: u32, on: bool) {
        let Some(s) = self.slots.get(idx as usize).filter(|s| s.is_live()) else {
            return;
        };
        let has = s.flags & OUT_INDEXED != 0;
        let h = session_out_hash(&self.hasher, s);
        if on && !has {
            let (hasher, slots) = (&self.hasher, &self.slots);
            self.by_out
                .insert_unique(h, idx, |&i| session_out_hash(hasher, &slots[i as usize]));
            self.slots[idx as usize].flags |= OUT_INDEXED;
        } else if !on && has {
            if let Ok(e) = self.by_out.find_entry(h, |&i| i == idx) {
                e.remove();
            }
            self.slots[idx as usize].flags &= !OUT_INDEXED;
        }
    }

    pub(crate) fn session_mut(&mut self, idx: u32) -> Option<&mut Session> {
        self.slots.get_mut(idx as usize).filter(|s| s.is_live())
    }

    /// Whether the session saw a SYN from outside (its SYN+ACK).
    pub fn answered(s: &Session) -> bool {
        s.tcp & seen::SYN_IN != 0
    }

    /// Refreshes session `idx` with a packet of `len` bytes; returns it.
    #[inline]
    pub fn touch(
        &mut self,
        idx: u32,
        now: Nanos,
        len: usize,
        tcp_flags: u8,
        inbound: bool,
    ) -> Option<&Session> {
        let s = self.slots.get_mut(idx as usize).filter(|s| s.is_live())?;
        s.last_seen = now;
        if inbound {
            s.packets_in = s.packets_in.saturating_add(1);
            s.bytes_in += len as u64;
        } else {
            s.packets_out = s.packets_out.saturating_add(1);
            s.bytes_out += len as u64;
        }
        if s.proto == proto::TCP {
            s.on_tcp(tcp_flags, inbound);
        }
        Some(s)
    }

    fn adjust_gauges(&self, protocol: u8, uplink: UplinkId, up: bool) {
        let bump = |c: &Counter| {
            c.set(if up {
                c.get() + 1
            } else {
                c.get().saturating_sub(1)
            })
        };
        let u = self.counters.uplinks.get(usize::from(uplink));
        match protocol {
            proto::TCP => {
                bump(&self.counters.tcp_sessions);
                if let Some(u) = u {
                    bump(&u.tcp_sessions);
                }
            }
            proto::UDP => {
                bump(&self.counters.udp_sessions);
                if let Some(u) = u {
                    bump(&u.udp_sessions);
                }
            }
            _ => bump(&self.counters.icmp_sessions),
        }
    }

    fn adjust_server(&self, protocol: u8, server: u16, up: bool) {
        let Some(c) = self.counters.servers.get(usize::from(server)) else {
            return;
        };
        let g = match protocol {
            proto::TCP => &c.tcp_sessions,
            proto::UDP => &c.udp_sessions,
            _ => return,
        };
        g.set(if up {
            g.get() + 1
        } else {
            g.get().saturating_sub(1)
        });
    }

    /// Prepares the shard for service sessions (seed 000 [31], [63]): the
    /// service addresses that are not NAT addresses join its address list
    /// (no port pool is ever built for them), and `servers` per-server load
    /// gauges are made. Call before the counters are shared.
    pub fn enable_services(&mut self, addrs: &[(IpAddr, UplinkId)], servers: usize) {
        for &(a, uplink) in addrs {
            if !self.addr_index.contains_key(&a) {
                let i = self.addrs.len() as u16;
                self.addrs.push(NatAddr {
                    addr: a,
                    bytes: to16(a),
                    uplink,
                });
                self.addr_index.insert(a, i);
                self.pools.extend((0..CLASSES).map(|_| None));
            }
        }
        if let Some(c) = Arc::get_mut(&mut self.counters) {
            c.servers = (0..servers).map(|_| ServerCounters::default()).collect();
        }
    }

    /// A service session for a client's first request `key` = (client, CP)
    /// → (service address, service port), given to local server `server`
    /// at `server_addr`: its inside endpoint is the server, its outside
    /// endpoint the service address and port, its remote the client. The
    /// server's replies then leave as from the service address, the
    /// client's later packets reach the server, and the session counts as
    /// the server's load until it expires (seed 000 [72]-[75]).
    pub fn create_service(
        &mut self,
        key: &FlowKey,
        server: u16,
        server_addr: std::net::SocketAddr,
        server_mac: [u8; 6],
        now: Nanos,
    ) -> Result<u32, DropReason> {
        if self.live >= self.cfg.max_sessions {
            self.counters.table_full.inc();
            return Err(DropReason::TableFull);
        }
        let nat_addr = *self
            .addr_index
            .get(&key.dst)
            .ok_or(DropReason::NotNatAddress)?;
        let v6 = key.src.is_ipv6();
        if server_addr.is_ipv6() != v6 {
            return Err(DropReason::NoNatAddress);
        }
        let inside = Tuple {
            src: to16(server_addr.ip()),
            dst: to16(key.src),
            src_port: server_addr.port(),
            dst_port: key.src_port,
            proto: key.proto,
            v6,
        };
        let uplink = self.addrs[usize::from(nat_addr)].uplink;
        // Sessions of one server endpoint behind one service address share a
        // mapping chain; behind another service address they start their own.
        let head = self.find_mapping(&inside, uplink).filter(|&h| {
            let m = &self.slots[h as usize];
            m.nat_addr == nat_addr && m.nat_port == key.dst_port
        });
        let s = Session {
            client: inside.src,
            remote: inside.dst,
            last_seen: now,
            client_port: inside.src_port,
            remote_port: inside.dst_port,
            nat_port: key.dst_port,
            nat_addr,
            proto: key.proto,
            uplink,
            flags: LIVE | if v6 { V6 } else { 0 } | OUT_INDEXED,
            client_mac: server_mac,
            server,
            ..Session::FREE
        };
        Ok(self.insert(s, head))
    }

    /// Removes session `idx`: its index entries, its place in its mapping's
    /// chain, and with the mapping's last session the mapping and its port.
    pub fn remove(&mut self, idx: u32) -> Option<Session> {
        let s = self
            .slots
            .get(idx as usize)
            .filter(|s| s.is_live())?
            .clone();
        if s.race != NONE {
            self.race_detach(s.race, idx);
        }
        let (hasher, addrs) = (&self.hasher, &self.addrs);
        if s.flags & OUT_INDEXED != 0 {
            if let Ok(e) = self
                .by_out
                .find_entry(session_out_hash(hasher, &s), |&i| i == idx)
            {
                e.remove();
            }
        }
        if let Ok(e) = self
            .by_in
            .find_entry(session_in_hash(hasher, addrs, &s), |&i| i == idx)
        {
            e.remove();
        }
        if s.next != NONE {
            self.slots[s.next as usize].prev = s.prev;
        }
        if s.prev != NONE {
            self.slots[s.prev as usize].next = s.next;
        } else {
            // The head: the mapping passes to the next session, or ends.
            let mh = inside_hash(hasher, &s.client, s.client_port, tag(&s));
            let pool = self.pools[usize::from(s.nat_addr) * CLASSES + class_of(s.proto)].as_mut();
            let pi = pool.as_ref().and_then(|p| p.index(s.nat_port));
            if let Ok(mut e) = self.by_inside.find_entry(mh, |&i| i == idx) {
                if s.next != NONE {
                    *e.get_mut() = s.next;
                } else {
                    e.remove();
                }
            }
            if let (Some(pool), Some(pi)) = (pool, pi) {
                if s.next != NONE {
                    pool.owner[pi] = s.next;
                } else {
                    pool.give_back(pi);
                }
            }
            if s.next == NONE {
                self.counters
                    .mappings
                    .set(self.counters.mappings.get().saturating_sub(1));
            }
        }
        self.slots[idx as usize] = Session {
            next: self.free_head,
            ..Session::FREE
        };
        self.free_head = idx;
        self.live -= 1;
        self.adjust_gauges(s.proto, s.uplink, false);
        self.adjust_server(s.proto, s.server, false);
        Some(s)
    }

    /// Visits up to `budget` slots from where the last call stopped and
    /// removes the expired sessions among them. Returns how many expired.
    pub fn sweep_slice(&mut self, now: Nanos, budget: usize) -> usize {
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        let mut expired = 0;
        for _ in 0..budget.min(n) {
            if self.sweep_cursor >= n {
                self.sweep_cursor = 0;
                self.counters.sweep_laps.inc();
            }
            let idx = self.sweep_cursor as u32;
            self.sweep_cursor += 1;
            let s = &self.slots[idx as usize];
            if s.is_live() && s.expired(now, &self.cfg) {
                self.expire(idx);
                expired += 1;
            }
        }
        self.counters.expired.add(expired as u64);
        expired
    }

    /// The paced sweep, called once per loop turn: it visits as many slots
    /// as keep a whole lap of the table within `sweep_interval` (the
    /// periodic pass of seed 000 [73]), never fewer than [`SWEEP_MIN`] nor
    /// more than [`SWEEP_MAX`] per call, so expiring a million sessions at
    /// once is spread over many turns instead of stalling one.
    pub fn sweep(&mut self, now: Nanos) -> usize {
        let elapsed = self.last_sweep.map_or(0, |t| now.since(t).as_nanos());
        self.last_sweep = Some(now);
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        let interval = u128::from(self.cfg.sweep_interval.as_nanos().max(1));
        self.sweep_credit += n as u128 * u128::from(elapsed);
        let owed = self.sweep_credit / interval;
        self.sweep_credit %= interval;
        self.sweep_owed = (u128::from(self.sweep_owed) + owed).min(n as u128) as u64;
        let visits = (self.sweep_owed as usize).clamp(SWEEP_MIN, SWEEP_MAX);
        self.sweep_owed = self.sweep_owed.saturating_sub(visits as u64);
        self.sweep_slice(now, visits)
    }

    /// Bytes the session slab and the three indexes take at their reserved
    /// capacity: (slab + both session indexes, mapping index). Index buckets
    /// are a `u32` and a control byte; hashbrown keeps at most 7/8 full and
    /// rounds the bucket count to a power of two.
    pub fn table_bytes(&self) -> (usize, usize) {
        let buckets = |cap: usize| (cap * 8 / 7).next_power_of_two();
        let index = |t: &HashTable<u32>| buckets(t.capacity()) * (4 + 1);
        let slab = self.slots.capacity() * std::mem::size_of::<Session>();
        (
            slab + index(&self.by_out) + index(&self.by_in),
            index(&self.by_inside),
        )
    }

    /// The uplink of a NAT address of this shard.
    pub fn uplink_of(&self, addr: IpAddr) -> Option<UplinkId> {
        let i = *self.addr_index.get(&addr)?;
        Some(self.addrs[usize::from(i)].uplink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ip, site, site_with, NAT4, NAT4_TAGGED};
    use proptest::prelude::*;
    use std::collections::{HashMap as StdMap, HashSet};

    const T0: Nanos = Nanos(5_000_000_000);
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];

    /// A time source that only moves when the test moves it, in the style of
    /// quinn's test harness: it jumps straight to the next deadline.
    struct VirtualClock {
        now: Nanos,
    }

    impl VirtualClock {
        fn jump_to(&mut self, t: Nanos) {
            assert!(t >= self.now, "time runs forward");
            self.now = t;
        }

        fn advance(&mut self, d: Nanos) {
            self.now = self.now.saturating_add(d);
        }
    }

    /// Calls the paced `sweep` every `step` of virtual time until it expired
    /// `want` sessions in all, failing (instead of hanging) after
    /// `max_turns` calls. Returns the sessions expired and the time spent.
    fn drive_sweep(
        nat: &mut NatShard,
        clock: &mut VirtualClock,
        step: Nanos,
        want: usize,
        max_turns: usize,
    ) -> (usize, Nanos) {
        let start = clock.now;
        let mut expired = 0;
        for _ in 0..max_turns {
            expired += nat.sweep(clock.now);
            if expired >= want {
                return (expired, clock.now.since(start));
            }
            clock.advance(step);
        }
        panic!("sweep expired {expired} of {want} sessions in {max_turns} turns");
    }

    fn key(client: &str, cport: u16, remote: &str, rport: u16, protocol: u8) -> FlowKey {
        FlowKey {
            src: ip(client),
            dst: ip(remote),
            src_port: cport,
            dst_port: rport,
            proto: protocol,
        }
    }

    fn udp_key(client_port: u16) -> FlowKey {
        key("10.0.0.2", client_port, "203.0.113.5", 53, proto::UDP)
    }

    fn tcp_key(client_port: u16) -> FlowKey {
        key("10.0.0.2", client_port, "203.0.113.5", 443, proto::TCP)
    }

    /// A shard of a site whose NAT range is 64 ports per shard.
    fn small_shard(cfg: NatConfig, shard: u16, shards: u16) -> NatShard {
        let range = NatPortRange {
            first: 2000,
            last: 2000 + 64 * shards - 1,
        };
        NatShard::new(cfg, &site_with(range, shards), shard)
    }

    fn create(
        nat: &mut NatShard,
        k: &FlowKey,
        uplink: UplinkId,
        now: Nanos,
    ) -> Result<u32, DropReason> {
        nat.create_out(k, uplink, MAC, now).map(|(i, _)| i)
    }

    fn outside(nat: &NatShard, idx: u32) -> (IpAddr, u16) {
        let s = nat.session(idx).unwrap();
        (nat.nat_addr(s), s.nat_port)
    }

    fn free_ports(nat: &NatShard, addr: &str, protocol: u8) -> usize {
        let a = nat.addr_index[&ip(addr)];
        nat.pools[usize::from(a) * CLASSES + class_of(protocol)]
            .as_ref()
            .map_or(
                nat.range.last as usize - nat.range.first as usize + 1,
                |p| p.free.len(),
            )
    }

    #[test]
    fn session_record_is_96_bytes() {
        assert_eq!(std::mem::size_of::<Session>(), 96);
    }

    #[test]
    fn create_indexes_both_ways_and_remove_frees_everything() {
        let mut nat = NatShard::new(NatConfig::default(), &site(1), 0);
        let k = tcp_key(40000);
        let (idx, how) = nat.create_out(&k, 0, MAC, T0).unwrap();
        assert_eq!(how, Created::NewMapping);
        let s = nat.session(idx).unwrap().clone();
        assert_eq!(
            (
                nat.nat_addr(&s),
                s.uplink,
                s.tcp_state(),
                s.last_seen,
                s.nat_port
            ),
            (ip(NAT4), 0, TcpState::SynSent, T0, 40000),
            "the inside port is preserved when free"
        );
        assert_eq!(s.outbound_key(), k);
        let in_key = nat.inbound_key(&s);
        assert_eq!(nat.lookup_out(&k, T0), Some(idx));
        assert_eq!(nat.lookup_in(&in_key, T0), Some(idx));
        assert_eq!((in_key.src, in_key.dst), (k.dst, ip(NAT4)));
        assert_eq!(
            (
                nat.counters.tcp_sessions.get(),
                nat.counters.uplinks[0].tcp_sessions.get(),
                nat.counters.mappings.get()
            ),
            (1, 1, 1)
        );

        assert!(nat.remove(idx).is_some());
        assert!(nat.remove(idx).is_none(), "removing twice is harmless");
        assert!(nat.is_empty());
        assert_eq!(nat.lookup_out(&k, T0), None);
        assert_eq!(nat.lookup_in(&in_key, T0), None);
        assert_eq!(nat.counters.tcp_sessions.get(), 0);
        assert_eq!(nat.counters.mappings.get(), 0);
        assert_eq!(
            free_ports(&nat, NAT4, proto::TCP),
            64512,
            "the port went back"
        );
        assert_eq!(
            create(
                &mut nat,
                &key("fd00::2", 1, "2001:db8::9", 53, proto::UDP),
                1,
                T0
            ),
            Err(DropReason::NoNatAddress),
            "uplink 1 has no IPv6 address"
        );
    }

    #[test]
    fn mapping_is_endpoint_independent_and_udp_is_sticky() {
        let mut nat = NatShard::new(NatConfig::default(), &site(1), 0);
        let a = create(
            &mut nat,
            &key("10.0.0.2", 5000, "203.0.113.5", 53, proto::UDP),
            0,
            T0,
        )
        .unwrap();
        // Same inside endpoint, other remotes: same outside endpoint, even
        // when replicate asks for the other uplink.
        let (b, how) = nat
            .create_out(
                &key("10.0.0.2", 5000, "198.18.0.1", 3478, proto::UDP),
                0,
                MAC,
                T0,
            )
            .unwrap();
        assert_eq!(how, Created::ExistingMapping);
        let (c, _) = nat
            .create_out(
                &key("10.0.0.2", 5000, "198.18.0.2", 9, proto::UDP),
                1,
                MAC,
                T0,
            )
            .unwrap();
        assert_eq!(outside(&nat, a), outside(&nat, b));
        assert_eq!(outside(&nat, a), outside(&nat, c));
        assert_eq!(nat.session(c).unwrap().uplink, 0, "UDP stays on its uplink");
        assert_eq!(nat.counters.mappings.get(), 1);
        assert_eq!(nat.counters.uplinks[0].udp_sessions.get(), 3);

        // TCP: one mapping per uplink (the SYN race needs one per uplink).
        let t0 = create(
            &mut nat,
            &key("10.0.0.2", 6000, "203.0.113.5", 80, proto::TCP),
            0,
            T0,
        )
        .unwrap();
        let t1 = create(
            &mut nat,
            &key("10.0.0.2", 6000, "203.0.113.6", 80, proto::TCP),
            1,
            T0,
        )
        .unwrap();
        let t0b = create(
            &mut nat,
            &key("10.0.0.2", 6000, "203.0.113.7", 80, proto::TCP),
            0,
            T0,
        )
        .unwrap();
        assert_eq!(outside(&nat, t0), outside(&nat, t0b));
        assert_eq!(outside(&nat, t1).0, ip(NAT4_TAGGED));
        assert_eq!(nat.counters.mappings.get(), 3);

        // The mapping outlives its first session and ends with its last.
        let before = outside(&nat, a);
        nat.remove(a);
        assert_eq!(outside(&nat, b), before);
        let d = create(
            &mut nat,
            &key("10.0.0.2", 5000, "198.18.0.3", 1, proto::UDP),
            0,
            T0,
        )
        .unwrap();
        assert_eq!(outside(&nat, d), before);
        nat.remove(b);
        nat.remove(c);
        nat.remove(d);
        assert_eq!(nat.counters.mappings.get(), 2);
        assert_eq!(free_ports(&nat, NAT4, proto::UDP), 64512);
    }

    #[test]
    fn port_preservation_and_random_ports_never_collide() {
        let mut nat = NatShard::new(NatConfig::default(), &site(1), 0);
        // Two clients with the same inside port: the second cannot keep it.
        let a = create(
            &mut nat,
            &key("10.0.0.2", 40000, "203.0.113.5", 53, proto::UDP),
            0,
            T0,
        )
        .unwrap();
        let b = create(
            &mut nat,
            &key("10.0.0.3", 40000, "203.0.113.5", 53, proto::UDP),
            0,
            T0,
        )
        .unwrap();
        assert_eq!(outside(&nat, a), (ip(NAT4), 40000));
        assert_ne!(outside(&nat, b).1, 40000);
        // TCP and UDP are separate port spaces.
        let t = create(
            &mut nat,
            &key("10.0.0.3", 40000, "203.0.113.5", 53, proto::TCP),
            0,
            T0,
        )
        .unwrap();
        assert_eq!(outside(&nat, t), (ip(NAT4), 40000));
        // Without preservation, ports are random: 200 flows from port 5000
        // of different clients give 200 distinct, non-sequential ports.
        let mut nat = NatShard::new(
            NatConfig {
                port_preservation: false,
                ..NatConfig::default()
            },
            &site(1),
            0,
        );
        let ports: Vec<u16> = (0..200)
            .map(|i| {
                let k = key(&format!("10.0.1.{i}"), 5000, "203.0.113.5", 53, proto::UDP);
                let idx = create(&mut nat, &k, 0, T0).unwrap();
                outside(&nat, idx).1
            })
            .collect();
        assert_eq!(ports.iter().collect::<HashSet<_>>().len(), 200);
        let sequential = ports
            .windows(2)
            .filter(|w| w[1] == w[0].wrapping_add(1))
            .count();
        assert!(sequential < 5, "{sequential} sequential ports");
    }

    #[test]
    fn port_exhaustion_is_counted_and_recovers() {
        let mut nat = small_shard(NatConfig::default(), 0, 1);
        let mut used = HashSet::new();
        for p in 0..64 {
            let idx = create(&mut nat, &udp_key(10_000 + p), 0, T0).unwrap();
            let port = outside(&nat, idx).1;
            assert!((2000..2064).contains(&port), "{port}");
            assert!(used.insert(port), "port {port} handed out twice");
        }
        for p in 0..100 {
            assert_eq!(
                create(&mut nat, &udp_key(20_000 + p), 0, T0),
                Err(DropReason::PortExhausted)
            );
        }
        assert_eq!(nat.counters.uplinks[0].port_exhausted.get(), 100);
        assert_eq!(nat.counters.port_exhausted.get(), 100);
        assert_eq!(nat.len(), 64);
        // Existing mappings still take new remotes; other spaces are free.
        assert!(create(
            &mut nat,
            &key("10.0.0.2", 10_000, "198.18.0.1", 1, proto::UDP),
            0,
            T0
        )
        .is_ok());
        assert!(create(&mut nat, &tcp_key(1), 0, T0).is_ok());
        assert!(create(
            &mut nat,
            &key("fd00::2", 1, "2001:db8::9", 53, proto::UDP),
            0,
            T0
        )
        .is_ok());
        // Freeing one mapping makes room for exactly one more.
        let idx = nat.lookup_out(&udp_key(10_005), T0).unwrap();
        let freed = outside(&nat, idx).1;
        nat.remove(idx);
        let again = create(&mut nat, &udp_key(30_000), 0, T0).unwrap();
        assert_eq!(outside(&nat, again).1, freed);
        assert_eq!(
            create(&mut nat, &udp_key(30_001), 0, T0),
            Err(DropReason::PortExhausted)
        );
    }

    #[test]
    fn shards_hand_out_disjoint_ports() {
        let topo = site_with(
            NatPortRange {
                first: 2000,
                last: 2191,
            },
            3,
        );
        let mut seen = HashSet::new();
        for shard in 0..3 {
            let mut nat = small_shard(NatConfig::default(), shard, 3);
            for p in 0..64 {
                let idx = create(&mut nat, &udp_key(p), 0, T0).unwrap();
                let port = outside(&nat, idx).1;
                assert_eq!(
                    topo.shard_of_nat_port(port),
                    Some(shard),
                    "inbound finds the owning shard"
                );
                assert!(seen.insert(port));
            }
        }
        assert_eq!(seen.len(), 192);
    }

    #[test]
    fn table_full_at_max_sessions() {
        let cfg = NatConfig {
            max_sessions: 3,
            filtering: Filtering::EndpointIndependent,
            ..NatConfig::default()
        };
        let mut nat = NatShard::new(cfg, &site(1), 0);
        let idx: Vec<u32> = (0..3)
            .map(|p| create(&mut nat, &udp_key(p), 0, T0).unwrap())
            .collect();
        let free_before = free_ports(&nat, NAT4, proto::UDP);
        assert_eq!(
            create(&mut nat, &udp_key(3), 0, T0),
            Err(DropReason::TableFull)
        );
        assert_eq!(
            create(
                &mut nat,
                &key("fd00::2", 1, "2001:db8::9", 53, proto::TCP),
                0,
                T0
            ),
            Err(DropReason::TableFull)
        );
        // Admitting from outside is refused the same way.
        let mut from_outside = nat.inbound_key(nat.session(idx[0]).unwrap());
        from_outside.src = ip("198.18.0.99");
        assert_eq!(
            nat.admit_in(&from_outside, 0, T0),
            Err(DropReason::TableFull)
        );
        assert_eq!(nat.counters.table_full.get(), 3);
        assert_eq!(
            free_ports(&nat, NAT4, proto::UDP),
            free_before,
            "a refused flow takes no port"
        );
        assert_eq!(nat.len(), 3);
        for &i in &idx {
            assert!(nat.session(i).is_some(), "existing sessions unaffected");
        }
        nat.remove(idx[1]);
        let reused = create(&mut nat, &udp_key(3), 0, T0).unwrap();
        assert_eq!(reused, idx[1], "the freed slot is reused");
        assert_eq!(nat.slots.len(), 3, "slots never grow past max_sessions");
    }

    /// What each filtering mode lets in from remotes the client did not
    /// contact (RFC 4787 section 5).
    #[test]
    fn filtering_modes() {
        let contacted = key("10.0.0.2", 5000, "203.0.113.5", 3478, proto::UDP);
        let cases = [
            (Filtering::EndpointIndependent, [true, true, true]),
            (Filtering::AddressDependent, [true, true, false]),
            (Filtering::AddressAndPortDependent, [true, false, false]),
        ];
        for (mode, expect) in cases {
            let cfg = NatConfig {
                filtering: mode,
                ..NatConfig::default()
            };
            let mut nat = NatShard::new(cfg, &site(1), 0);
            let idx = create(&mut nat, &contacted, 0, T0).unwrap();
            let known = nat.inbound_key(nat.session(idx).unwrap());
            // The contacted remote itself, the same host from another port,
            // another host.
            let remotes = [
                known,
                FlowKey {
                    src_port: 3479,
                    ..known
                },
                FlowKey {
                    src: ip("198.18.0.7"),
                    ..known
                },
            ];
            for (r, want) in remotes.iter().zip(expect) {
                let got = match nat.lookup_in(r, T0) {
                    Some(i) => Ok(i),
                    None => nat.admit_in(r, 0, T0),
                };
                assert_eq!(got.is_ok(), want, "{mode:?} from {r:?}");
                if let Ok(i) = got {
                    let s = nat.session(i).unwrap();
                    assert_eq!((s.client_addr(), s.client_port), (contacted.src, 5000));
                    assert_eq!(nat.lookup_in(r, T0), Some(i), "now a session of its own");
                } else {
                    assert_eq!(got, Err(DropReason::Filtered));
                }
            }
            let refused = expect.iter().filter(|&&w| !w).count() as u64;
            assert_eq!(nat.counters.filtered.get(), refused, "{mode:?}");
            // Nobody owns this port: not a filtering decision.
            let stray = FlowKey {
                dst_port: known.dst_port.wrapping_add(1),
                ..known
            };
            assert_eq!(nat.admit_in(&stray, 0, T0), Err(DropReason::NoSession));
        }
    }

    #[test]
    fn tcp_from_outside_needs_a_syn() {
        let cfg = NatConfig {
            filtering: Filtering::EndpointIndependent,
            ..NatConfig::default()
        };
        let mut nat = NatShard::new(cfg, &site(1), 0);
        let idx = create(&mut nat, &tcp_key(7000), 0, T0).unwrap();
        let other = FlowKey {
            src: ip("198.18.0.7"),
            ..nat.inbound_key(nat.session(idx).unwrap())
        };
        for flags in [TCP_ACK, TCP_SYN | TCP_ACK, TCP_RST, TCP_SYN | TCP_RST] {
            assert_eq!(
                nat.admit_in(&other, flags, T0),
                Err(DropReason::NoSession),
                "{flags:#x}"
            );
        }
        let i = nat.admit_in(&other, TCP_SYN, T0).unwrap();
        nat.touch(i, T0, 60, TCP_SYN, true);
        assert_eq!(nat.session(i).unwrap().tcp_state(), TcpState::SynReceived);
        nat.touch(i, T0, 60, TCP_SYN | TCP_ACK, false);
        assert_eq!(nat.session(i).unwrap().tcp_state(), TcpState::Established);
    }

    #[test]
    fn sweep_expires_idle_udp_after_the_timeout_and_frees_the_port() {
        let timeout = Nanos::from_secs(180);
        let cfg = NatConfig {
            udp_idle_timeout: timeout,
            ..NatConfig::default()
        };
        let mut nat = small_shard(cfg, 0, 1);
        let mut clock = VirtualClock { now: T0 };
        // Fill the shard's 64 ports; session 0 then stays idle, the others
        // are refreshed halfway through, half by outbound and half by
        // inbound packets (either direction refreshes an artificial session).
        let idx: Vec<u32> = (0..64)
            .map(|p| create(&mut nat, &udp_key(p), 0, clock.now).unwrap())
            .collect();
        let idle_port = outside(&nat, idx[0]).1;
        assert_eq!(nat.counters.udp_sessions.get(), 64);
        assert_eq!(
            create(&mut nat, &udp_key(99), 0, clock.now),
            Err(DropReason::PortExhausted)
        );

        clock.advance(Nanos::from_secs(90));
        for (n, &i) in idx[1..].iter().enumerate() {
            nat.touch(i, clock.now, 100, 0, n % 2 == 0).unwrap();
        }

        // At the deadline itself nothing has expired yet, however long the
        // sweep runs.
        let deadline = T0.saturating_add(timeout);
        clock.jump_to(deadline);
        for _ in 0..8 {
            assert_eq!(nat.sweep_slice(clock.now, 16), 0);
        }
        // One nanosecond later the idle session goes, within one sweep
        // interval of paced sweeping.
        clock.jump_to(deadline.saturating_add(Nanos(1)));
        let (n, took) = drive_sweep(&mut nat, &mut clock, Nanos::from_millis(10), 1, 200);
        assert_eq!(n, 1);
        assert!(took <= nat.cfg.sweep_interval, "took {took:?}");
        assert!(nat.session(idx[0]).is_none());
        assert_eq!(nat.len(), 63);
        assert_eq!(
            (nat.counters.expired.get(), nat.counters.udp_sessions.get()),
            (1, 63)
        );
        assert_eq!(nat.counters.uplinks[0].udp_sessions.get(), 63);

        // Its port is free again and is reused.
        let new = create(&mut nat, &udp_key(99), 0, clock.now).unwrap();
        assert_eq!(outside(&nat, new).1, idle_port);

        // The refreshed sessions expire one timeout after their refresh.
        clock.jump_to(
            T0.saturating_add(Nanos::from_secs(90))
                .saturating_add(timeout)
                .saturating_add(Nanos(1)),
        );
        let (n, _) = drive_sweep(&mut nat, &mut clock, Nanos::from_millis(10), 63, 200);
        assert_eq!(n, 63);
        assert_eq!(nat.len(), 1);
    }

    /// The paced sweep laps a large table once per `sweep_interval` and
    /// never visits more than `SWEEP_MAX` slots in one call.
    #[test]
    fn paced_sweep_laps_once_per_interval_in_bounded_slices() {
        let cfg = NatConfig {
            max_sessions: 20_000,
            udp_idle_timeout: Nanos::from_secs(1),
            sweep_interval: Nanos::from_secs(2),
            ..NatConfig::default()
        };
        let mut nat = NatShard::new(cfg, &site(1), 0);
        let mut clock = VirtualClock { now: T0 };
        for i in 0..20_000u32 {
            let k = key(
                &format!("10.0.{}.{}", i / 250, i % 250 + 1),
                7000,
                "203.0.113.5",
                53,
                proto::UDP,
            );
            create(&mut nat, &k, 0, clock.now).unwrap();
        }
        nat.sweep(clock.now);
        // Everything is idle past its timeout; a turn every 1 ms.
        clock.advance(Nanos::from_secs(5));
        let mut worst = 0;
        let mut turns = 0;
        while !nat.is_empty() {
            clock.advance(Nanos::from_millis(1));
            let n = nat.sweep(clock.now);
            worst = worst.max(n);
            turns += 1;
            assert!(turns < 5_000, "sweep does not finish");
        }
        assert!(worst <= SWEEP_MAX, "{worst}");
        // The first turn after 5 s owes a whole lap but visits SWEEP_MAX;
        // then it keeps up with the backlog.
        assert_eq!(worst, SWEEP_MAX);
        assert!(turns <= 20_000 / SWEEP_MAX + 2, "{turns} turns");
        assert_eq!(nat.counters.udp_sessions.get(), 0);
        assert_eq!(nat.counters.mappings.get(), 0);

        // Pacing: with one turn per ms, 20,000 slots and a 2 s interval the
        // lap owes 10 visits a turn; the floor of SWEEP_MIN visits makes it
        // 20,000 / 32 turns, i.e. 625 ms: never longer than the interval.
        for i in 0..20_000u32 {
            let k = key(
                &format!("10.1.{}.{}", i / 250, i % 250 + 1),
                7000,
                "203.0.113.5",
                53,
                proto::UDP,
            );
            create(&mut nat, &k, 0, clock.now).unwrap();
        }
        let laps = nat.counters.sweep_laps.get();
        let start = clock.now;
        while nat.counters.sweep_laps.get() < laps + 2 {
            clock.advance(Nanos::from_millis(1));
            for i in nat.live_sessions().collect::<Vec<_>>() {
                nat.slots[i as usize].last_seen = clock.now;
            }
            nat.sweep(clock.now);
        }
        let per_lap = clock.now.since(start).as_nanos() / 2;
        assert!(
            (600_000_000..=650_000_000).contains(&per_lap),
            "a lap took {per_lap} ns"
        );
    }

    #[test]
    fn lookup_does_not_return_an_expired_session() {
        let cfg = NatConfig {
            udp_idle_timeout: Nanos::from_secs(10),
            ..NatConfig::default()
        };
        let mut nat = NatShard::new(cfg, &site(1), 0);
        let idx = create(&mut nat, &udp_key(1), 0, T0).unwrap();
        let in_key = nat.inbound_key(nat.session(idx).unwrap());
        let later = T0.saturating_add(Nanos::from_secs(11));
        assert_eq!(nat.lookup_in(&in_key, later), None);
        assert!(
            nat.is_empty(),
            "removed on the spot, not left for the sweep"
        );
        assert_eq!(nat.counters.expired.get(), 1);
        assert_eq!(nat.lookup_out(&udp_key(1), later), None);
    }

    #[test]
    fn tcp_state_picks_the_timeout() {
        let cfg = NatConfig::default();
        let mut nat = NatShard::new(cfg.clone(), &site(1), 0);
        let idx = create(&mut nat, &tcp_key(1), 0, T0).unwrap();
        let state = |nat: &NatShard| nat.session(idx).unwrap().tcp_state();
        let expired_after = |nat: &NatShard, d: Nanos| {
            nat.session(idx)
                .unwrap()
                .expired(T0.saturating_add(d), &cfg)
        };
        let past = |d: Nanos| d.saturating_add(Nanos(1));

        nat.touch(idx, T0, 60, TCP_SYN, false);
        assert_eq!(state(&nat), TcpState::SynSent);
        assert!(
            expired_after(&nat, past(cfg.tcp_transitory_timeout)),
            "a SYN nobody answered"
        );
        nat.touch(idx, T0, 60, TCP_SYN | TCP_ACK, false);
        assert_eq!(
            state(&nat),
            TcpState::SynSent,
            "the inside alone does not open a connection"
        );
        nat.touch(idx, T0, 60, TCP_SYN | TCP_ACK, true);
        assert_eq!(state(&nat), TcpState::Established);
        assert!(!expired_after(&nat, past(cfg.tcp_transitory_timeout)));
        assert!(expired_after(&nat, past(cfg.tcp_established_timeout)));
        nat.touch(idx, T0, 60, TCP_FIN | TCP_ACK, false);
        assert_eq!(state(&nat), TcpState::FinSeen);
        assert!(
            expired_after(&nat, past(cfg.tcp_transitory_timeout)),
            "FIN: the short timeout"
        );
        nat.touch(idx, T0, 60, TCP_FIN | TCP_ACK, true);
        assert_eq!(state(&nat), TcpState::Closed);
        assert!(expired_after(&nat, past(cfg.tcp_transitory_timeout)));
        nat.touch(idx, T0, 60, TCP_RST, true);
        assert_eq!(state(&nat), TcpState::Rst);
        assert!(expired_after(&nat, past(cfg.tcp_closed_timeout)));
        assert!(!expired_after(&nat, cfg.tcp_closed_timeout));

        let s = nat.session(idx).unwrap();
        assert_eq!(
            (s.packets_in, s.packets_out, s.bytes_in, s.bytes_out),
            (3, 3, 180, 180)
        );

        // A connection picked up mid-stream (no SYN seen) is established
        // once traffic went both ways.
        let mid = create(&mut nat, &tcp_key(2), 0, T0).unwrap();
        nat.touch(mid, T0, 60, TCP_ACK, false);
        assert_eq!(nat.session(mid).unwrap().tcp_state(), TcpState::SynSent);
        nat.touch(mid, T0, 60, TCP_ACK, true);
        assert_eq!(nat.session(mid).unwrap().tcp_state(), TcpState::Established);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Out {
            client: u8,
            cport: u8,
            remote: u8,
            rport: u8,
            protocol: u8,
            uplink: u8,
            v6: bool,
        },
        In {
            pick: usize,
            other_port: bool,
            other_host: bool,
            syn: bool,
        },
        Remove {
            pick: usize,
        },
        Advance {
            secs: u64,
        },
        Sweep,
    }

    fn op() -> impl Strategy<Value = Op> {
        let protocol = prop_oneof![Just(proto::TCP), Just(proto::UDP), Just(proto::ICMP)];
        prop_oneof![
            5 => (0u8..4, 0u8..4, 0u8..4, 0u8..3, protocol, 0u8..2, any::<bool>()).prop_map(
                |(client, cport, remote, rport, protocol, uplink, v6)| Op::Out { client, cport, remote, rport, protocol, uplink, v6 }),
            3 => (any::<usize>(), any::<bool>(), any::<bool>(), any::<bool>())
                .prop_map(|(pick, other_port, other_host, syn)| Op::In { pick, other_port, other_host, syn }),
            1 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
            1 => (0u64..40).prop_map(|secs| Op::Advance { secs }),
            1 => Just(Op::Sweep),
        ]
    }

    fn out_key(client: u8, cport: u8, remote: u8, rport: u8, protocol: u8, v6: bool) -> FlowKey {
        let (c, r) = if v6 {
            (
                format!("fd00::{}", client + 2),
                format!("2001:db8:ffff::{}", remote + 1),
            )
        } else {
            (
                format!("10.0.0.{}", client + 2),
                format!("203.0.113.{}", remote + 1),
            )
        };
        // Inside ports collide across clients on purpose (2000..2004 is in
        // the shard's slice, so preservation competes with allocation).
        let k = key(
            &c,
            2000 + u16::from(cport),
            &r,
            53 + u16::from(rport),
            protocol,
        );
        if protocol == proto::ICMP {
            let p = if v6 { proto::ICMPV6 } else { proto::ICMP };
            FlowKey {
                proto: p,
                dst_port: 0,
                ..k
            }
        } else {
            k
        }
    }

    fn check_invariants(nat: &NatShard, now: Nanos) -> Result<(), TestCaseError> {
        let live: Vec<(u32, Session)> = nat
            .live_sessions()
            .map(|i| (i, nat.slots[i as usize].clone()))
            .collect();
        prop_assert_eq!(live.len(), nat.len());
        prop_assert!(nat.len() <= nat.cfg.max_sessions && nat.slots.len() <= nat.cfg.max_sessions);
        prop_assert_eq!(nat.by_out.len(), nat.len());
        prop_assert_eq!(nat.by_in.len(), nat.len());
        // (proto, inside endpoint, uplink) -> outside; outside -> inside.
        let mut mapping: StdMap<(u8, IpAddr, u16, u8), (IpAddr, u16)> = StdMap::new();
        let mut owner: StdMap<(u8, IpAddr, u16), (IpAddr, u16)> = StdMap::new();
        let mut sticky: StdMap<(u8, IpAddr, u16), u8> = StdMap::new();
        let mut shard = nat.clone_for_lookup();
        for (i, s) in &live {
            // A bijection: each key finds exactly this session.
            prop_assert_eq!(
                shard.lookup_out(&s.outbound_key(), now.min(s.last_seen)),
                Some(*i)
            );
            prop_assert_eq!(
                shard.lookup_in(&nat.inbound_key(s), now.min(s.last_seen)),
                Some(*i)
            );
            let out = (nat.nat_addr(s), s.nat_port);
            let inside = (s.client_addr(), s.client_port);
            let m = mapping
                .entry((s.proto, inside.0, inside.1, s.uplink))
                .or_insert(out);
            prop_assert_eq!(*m, out, "endpoint-independent mapping");
            let o = owner
                .entry((class_of(s.proto) as u8, out.0, out.1))
                .or_insert(inside);
            prop_assert_eq!(
                *o,
                inside,
                "an outside endpoint held by two inside endpoints"
            );
            if s.proto != proto::TCP {
                let u = sticky
                    .entry((s.proto, inside.0, inside.1))
                    .or_insert(s.uplink);
                prop_assert_eq!(*u, s.uplink, "UDP/ICMP mapping not sticky");
            }
            prop_assert!((nat.range.first..=nat.range.last).contains(&s.nat_port));
        }
        prop_assert_eq!(nat.by_inside.len(), mapping.len());
        prop_assert_eq!(nat.counters.mappings.get() as usize, mapping.len());
        // Pools: owned ports are not free, and nothing leaked.
        for (pi, pool) in nat.pools.iter().enumerate() {
            let Some(pool) = pool else { continue };
            let addr = nat.addrs[pi / CLASSES].addr;
            let class = (pi % CLASSES) as u8;
            let owned = owner
                .keys()
                .filter(|(c, a, _)| *c == class && *a == addr)
                .count();
            prop_assert_eq!(
                pool.free.len() + owned,
                pool.owner.len(),
                "ports leaked or duplicated"
            );
            for (p, &o) in pool.owner.iter().enumerate() {
                let port = pool.base + p as u16;
                prop_assert_eq!(o != NONE, owner.contains_key(&(class, addr, port)));
                if o == NONE {
                    prop_assert_eq!(pool.free[usize::from(pool.pos[p])], port);
                }
            }
        }
        let count = |p: u8| live.iter().filter(|(_, s)| s.proto == p).count() as u64;
        prop_assert_eq!(nat.counters.tcp_sessions.get(), count(proto::TCP));
        prop_assert_eq!(nat.counters.udp_sessions.get(), count(proto::UDP));
        Ok(())
    }

    impl NatShard {
        /// A copy good enough for read-only lookups in the invariant check
        /// (lookups take `&mut self` because they remove expired sessions).
        fn clone_for_lookup(&self) -> NatShard {
            let mut c = NatShard::new(self.cfg.clone(), &site(1), 0);
            c.slots = self.slots.clone();
            c.by_out = self.by_out.clone();
            c.by_in = self.by_in.clone();
            c.by_inside = self.by_inside.clone();
            c.hasher = self.hasher;
            c
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever the sequence of flows, replies, removals, time and
        /// sweeps: lookups are a bijection over live sessions, mappings are
        /// endpoint-independent and sticky, no outside endpoint has two
        /// inside endpoints, ports neither leak nor double, gauges match.
        #[test]
        fn invariants_hold_under_any_operation_sequence(
            ops in proptest::collection::vec(op(), 1..150),
            filtering in 0usize..3,
        ) {
            let cfg = NatConfig {
                max_sessions: 40,
                udp_idle_timeout: Nanos::from_secs(30),
                tcp_transitory_timeout: Nanos::from_secs(60),
                filtering: Filtering::NAMES[filtering].parse().unwrap(),
                ..NatConfig::default()
            };
            let mut nat = small_shard(cfg, 0, 1);
            let mut clock = VirtualClock { now: T0 };
            for op in ops {
                let live: Vec<u32> = nat.live_sessions().collect();
                match op {
                    Op::Out { client, cport, remote, rport, protocol, uplink, v6 } => {
                        let k = out_key(client, cport, remote, rport, protocol, v6);
                        let uplink = if v6 { 0 } else { uplink };
                        if nat.lookup_out(&k, clock.now).is_none() {
                            match nat.create_out(&k, uplink, MAC, clock.now) {
                                Ok((i, _)) => {
                                    let s = nat.session(i).unwrap();
                                    prop_assert_eq!(s.outbound_key(), k);
                                }
                                Err(DropReason::TableFull) | Err(DropReason::PortExhausted) => {}
                                Err(e) => prop_assert!(false, "unexpected {:?}", e),
                            }
                        }
                    }
                    Op::In { pick, other_port, other_host, syn } if !live.is_empty() => {
                        let s = nat.session(live[pick % live.len()]).unwrap().clone();
                        let mut k = nat.inbound_key(&s);
                        if other_port { k.src_port = k.src_port.wrapping_add(1); }
                        if other_host { k.src = if k.src.is_ipv4() { ip("198.18.0.1") } else { ip("2001:db8:eeee::1") }; }
                        let flags = if syn { TCP_SYN } else { TCP_ACK };
                        let got = match nat.lookup_in(&k, clock.now) {
                            Some(i) => Ok(i),
                            None => nat.admit_in(&k, flags, clock.now),
                        };
                        if let Ok(i) = got {
                            // The reply reaches the inside endpoint that owns (NA, NP).
                            let r = nat.session(i).unwrap();
                            prop_assert_eq!((r.client_addr(), r.client_port), (s.client_addr(), s.client_port));
                            nat.touch(i, clock.now, 64, flags, true);
                        }
                    }
                    Op::Remove { pick } if !live.is_empty() => {
                        prop_assert!(nat.remove(live[pick % live.len()]).is_some());
                    }
                    Op::Advance { secs } => clock.advance(Nanos::from_secs(secs)),
                    Op::Sweep => { nat.sweep(clock.now); }
                    _ => {}
                }
                check_invariants(&nat, clock.now)?;
            }
        }
    }
}
