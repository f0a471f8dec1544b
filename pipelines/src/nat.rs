//! One NAT shard: the session table a single translate lcore owns (one
//! writer, no locks), its NAT port pools and its incremental sweep.
//!
//! A session is a time-stamped mapping record in the sense of seed 000
//! [72]-[73]: inside endpoint (CA, CP), outside endpoint (uplink, NA, NP),
//! remote endpoint (SA, SP), protocol, last-seen time. It is created by the
//! first outbound packet of a flow, refreshed by every matching packet in
//! either direction, and removed when idle past its protocol's timeout; for
//! UDP this is the seed's "artificial UDP session". It is found by its
//! outbound key (the 5-tuple as the client sent it) and by its inbound key
//! (the 5-tuple the remote sends back to the NAT address and port).
//!
//! Invariants: every live session has exactly one entry in each index and
//! holds one port from the pool of its NAT address; removing a session
//! removes both entries and returns the port. Tables never grow past
//! `max_sessions` (reserved up front), so creation never reallocates.

use hashbrown::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::counter::Counter;
use crate::drop::DropReason;
use crate::flow::{proto, FlowKey};
use crate::time::Nanos;
use crate::topology::{NatPortRange, Topology, UplinkId};

#[derive(Clone, Debug)]
pub struct NatConfig {
    /// Most sessions this shard holds; further new flows are dropped and
    /// counted as `table_full`.
    pub max_sessions: usize,
    /// Idle timeout of artificial UDP sessions (seed 000 [73]).
    pub udp_idle_timeout: Nanos,
    pub tcp_established_timeout: Nanos,
    /// TCP sessions that are opening or closing (RFC 5382 transitory).
    pub tcp_transitory_timeout: Nanos,
    /// TCP sessions after a RST.
    pub tcp_closed_timeout: Nanos,
    pub icmp_timeout: Nanos,
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
        }
    }
}

/// TCP connection state as the NAT sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// The client's SYN went out; nothing came back yet.
    SynSent,
    /// The remote answered; data may flow.
    Established,
    /// A FIN was seen in either direction.
    FinSeen,
    /// A RST was seen: kept briefly so stray segments still translate.
    Closed,
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

#[derive(Clone, Debug)]
pub struct Session {
    /// The outbound 5-tuple as the client sent it: (CA, CP) → (SA, SP).
    pub inside: FlowKey,
    pub uplink: UplinkId,
    pub nat_addr: IpAddr,
    pub nat_port: u16,
    pub tcp: TcpState,
    pub last_seen: Nanos,
    /// The client's MAC, learnt from its packets, for the way back.
    pub client_mac: [u8; 6],
    pub packets_out: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
}

impl Session {
    /// The 5-tuple the remote's replies carry: (SA, SP) → (NA, NP).
    pub fn inbound_key(&self) -> FlowKey {
        FlowKey {
            src: self.inside.dst,
            dst: self.nat_addr,
            src_port: self.inside.dst_port,
            dst_port: self.nat_port,
            proto: self.inside.proto,
        }
    }

    fn timeout(&self, cfg: &NatConfig) -> Nanos {
        match self.inside.proto {
            proto::TCP => match self.tcp {
                TcpState::Established => cfg.tcp_established_timeout,
                TcpState::SynSent | TcpState::FinSeen => cfg.tcp_transitory_timeout,
                TcpState::Closed => cfg.tcp_closed_timeout,
            },
            proto::UDP => cfg.udp_idle_timeout,
            _ => cfg.icmp_timeout,
        }
    }

    pub fn expired(&self, now: Nanos, cfg: &NatConfig) -> bool {
        now.since(self.last_seen) > self.timeout(cfg)
    }

    /// Advances the TCP state on a segment with `flags`.
    fn on_tcp(&mut self, flags: u8, inbound: bool) {
        self.tcp = if flags & TCP_RST != 0 {
            TcpState::Closed
        } else if flags & TCP_FIN != 0 {
            TcpState::FinSeen
        } else if inbound && self.tcp == TcpState::SynSent && flags & TCP_ACK != 0 {
            TcpState::Established
        } else {
            self.tcp
        };
    }
}

/// Free NAT ports of one address within one shard's slice: O(1) take and
/// give back. The initial order is a fixed permutation so that ports are not
/// handed out sequentially (a weak defence against port prediction; the NAT
/// issue adds per-run randomisation and port preservation).
#[derive(Clone, Debug)]
struct PortPool {
    free: Vec<u16>,
}

impl PortPool {
    fn new(range: NatPortRange, seed: u32) -> PortPool {
        let mut free: Vec<u16> = (range.first..=range.last).collect();
        // Fisher-Yates with a small xorshift: deterministic per address.
        let mut x = seed | 1;
        for i in (1..free.len()).rev() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            free.swap(i, (x as usize) % (i + 1));
        }
        PortPool { free }
    }
}

/// Counters and gauges of one shard, readable by the management core.
#[derive(Debug)]
pub struct NatCounters {
    pub created: Counter,
    pub table_full: Counter,
    pub expired: Counter,
    pub tcp_sessions: Counter,
    pub udp_sessions: Counter,
    pub icmp_sessions: Counter,
    /// Per uplink, indexed by [`UplinkId`].
    pub uplinks: Vec<UplinkCounters>,
}

#[derive(Debug, Default)]
pub struct UplinkCounters {
    pub tx_packets: Counter,
    pub rx_packets: Counter,
    pub tcp_sessions: Counter,
    pub udp_sessions: Counter,
    pub port_exhausted: Counter,
}

pub struct NatShard {
    cfg: NatConfig,
    slots: Vec<Option<Session>>,
    free_slots: Vec<u32>,
    by_out: HashMap<FlowKey, u32>,
    by_in: HashMap<FlowKey, u32>,
    ports: HashMap<IpAddr, PortPool>,
    sweep_cursor: usize,
    /// Shared with the management core, which only reads.
    pub counters: Arc<NatCounters>,
}

impl NatShard {
    /// A shard owning `topo.shard_ports(shard)` on every NAT address.
    pub fn new(cfg: NatConfig, topo: &Topology, shard: u16) -> NatShard {
        let range = topo.shard_ports(shard);
        let ports = topo
            .nat_addr_uplink
            .keys()
            .map(|a| {
                let seed = crate::flow::FlowKey { src: *a, ..Default::default() }.stable_hash() ^ u32::from(shard);
                (*a, PortPool::new(range, seed))
            })
            .collect();
        let cap = cfg.max_sessions;
        NatShard {
            slots: Vec::with_capacity(cap),
            free_slots: Vec::with_capacity(cap),
            by_out: HashMap::with_capacity(cap),
            by_in: HashMap::with_capacity(cap),
            ports,
            sweep_cursor: 0,
            counters: Arc::new(NatCounters {
                table_full: Counter::new(),
                created: Counter::new(),
                expired: Counter::new(),
                tcp_sessions: Counter::new(),
                udp_sessions: Counter::new(),
                icmp_sessions: Counter::new(),
                uplinks: (0..topo.uplinks.len()).map(|_| UplinkCounters::default()).collect(),
            }),
            cfg,
        }
    }

    pub fn len(&self) -> usize {
        self.by_out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_out.is_empty()
    }

    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }

    pub fn session(&self, idx: u32) -> Option<&Session> {
        self.slots.get(idx as usize)?.as_ref()
    }

    /// The live session for an outbound 5-tuple, if any (an expired one that
    /// the sweep has not reached yet is removed here and not returned).
    pub fn lookup_out(&mut self, key: &FlowKey, now: Nanos) -> Option<u32> {
        let idx = *self.by_out.get(key)?;
        self.live(idx, now)
    }

    /// The live session for an inbound 5-tuple, if any.
    pub fn lookup_in(&mut self, key: &FlowKey, now: Nanos) -> Option<u32> {
        let idx = *self.by_in.get(key)?;
        self.live(idx, now)
    }

    fn live(&mut self, idx: u32, now: Nanos) -> Option<u32> {
        let s = self.slots.get(idx as usize)?.as_ref()?;
        if s.expired(now, &self.cfg) {
            self.remove(idx);
            self.counters.expired.inc();
            return None;
        }
        Some(idx)
    }

    /// Creates a session for outbound `key` on `uplink` through `nat_addr`.
    pub fn create(
        &mut self,
        key: FlowKey,
        uplink: UplinkId,
        nat_addr: IpAddr,
        client_mac: [u8; 6],
        now: Nanos,
    ) -> Result<u32, DropReason> {
        if self.by_out.len() >= self.cfg.max_sessions {
            self.counters.table_full.inc();
            return Err(DropReason::TableFull);
        }
        let pool = self.ports.get_mut(&nat_addr).ok_or(DropReason::NoNatAddress)?;
        let Some(nat_port) = pool.free.pop() else {
            if let Some(u) = self.counters.uplinks.get(uplink as usize) {
                u.port_exhausted.inc();
            }
            return Err(DropReason::PortExhausted);
        };
        let session = Session {
            inside: key,
            uplink,
            nat_addr,
            nat_port,
            tcp: TcpState::SynSent,
            last_seen: now,
            client_mac,
            packets_out: 0,
            packets_in: 0,
            bytes_out: 0,
            bytes_in: 0,
        };
        let in_key = session.inbound_key();
        let idx = match self.free_slots.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(session);
                i
            }
            None => {
                self.slots.push(Some(session));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_out.insert(key, idx);
        self.by_in.insert(in_key, idx);
        self.counters.created.inc();
        self.adjust_gauges(key.proto, uplink, true);
        Ok(idx)
    }

    /// Refreshes session `idx` with a packet of `len` bytes; returns it.
    pub fn touch(&mut self, idx: u32, now: Nanos, len: usize, tcp_flags: u8, inbound: bool) -> Option<&Session> {
        let s = self.slots.get_mut(idx as usize)?.as_mut()?;
        s.last_seen = now;
        if inbound {
            s.packets_in += 1;
            s.bytes_in += len as u64;
        } else {
            s.packets_out += 1;
            s.bytes_out += len as u64;
        }
        if s.inside.proto == proto::TCP {
            s.on_tcp(tcp_flags, inbound);
        }
        Some(s)
    }

    fn adjust_gauges(&self, protocol: u8, uplink: UplinkId, up: bool) {
        let bump = |c: &Counter| c.set(if up { c.get() + 1 } else { c.get().saturating_sub(1) });
        let u = self.counters.uplinks.get(uplink as usize);
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

    /// Removes session `idx`, freeing its index entries and its port.
    pub fn remove(&mut self, idx: u32) -> Option<Session> {
        let s = self.slots.get_mut(idx as usize)?.take()?;
        self.by_out.remove(&s.inside);
        self.by_in.remove(&s.inbound_key());
        if let Some(pool) = self.ports.get_mut(&s.nat_addr) {
            pool.free.push(s.nat_port);
        }
        self.free_slots.push(idx);
        self.adjust_gauges(s.inside.proto, s.uplink, false);
        Some(s)
    }

    /// Visits up to `budget` slots from where the last call stopped and
    /// removes the expired sessions among them. Bounded work per call, so the
    /// lcore calls it every loop turn without ever stalling forwarding.
    /// Returns the number of sessions expired.
    pub fn sweep(&mut self, now: Nanos, budget: usize) -> usize {
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        let mut expired = 0;
        for _ in 0..budget.min(n) {
            if self.sweep_cursor >= n {
                self.sweep_cursor = 0;
            }
            let idx = self.sweep_cursor as u32;
            self.sweep_cursor += 1;
            if self.slots[idx as usize].as_ref().is_some_and(|s| s.expired(now, &self.cfg)) {
                self.remove(idx);
                expired += 1;
            }
        }
        self.counters.expired.add(expired as u64);
        expired
    }
}
