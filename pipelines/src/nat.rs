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
                let seed = crate::flow::FlowKey {
                    src: *a,
                    ..Default::default()
                }
                .stable_hash()
                    ^ u32::from(shard);
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
                uplinks: (0..topo.uplinks.len())
                    .map(|_| UplinkCounters::default())
                    .collect(),
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
        let pool = self
            .ports
            .get_mut(&nat_addr)
            .ok_or(DropReason::NoNatAddress)?;
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
    pub fn touch(
        &mut self,
        idx: u32,
        now: Nanos,
        len: usize,
        tcp_flags: u8,
        inbound: bool,
    ) -> Option<&Session> {
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
        let bump = |c: &Counter| {
            c.set(if up {
                c.get() + 1
            } else {
                c.get().saturating_sub(1)
            })
        };
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
            if self.slots[idx as usize]
                .as_ref()
                .is_some_and(|s| s.expired(now, &self.cfg))
            {
                self.remove(idx);
                expired += 1;
            }
        }
        self.counters.expired.add(expired as u64);
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_frames::{ip, site, site_with, NAT4, NAT6};
    use proptest::prelude::*;
    use std::collections::HashSet;

    const T0: Nanos = Nanos(5_000_000_000);

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

    /// Calls `sweep` with `budget` until it expired `want` sessions in all,
    /// failing (instead of hanging) after `max_turns` calls.
    fn drive_sweep(
        nat: &mut NatShard,
        now: Nanos,
        budget: usize,
        want: usize,
        max_turns: usize,
    ) -> usize {
        let mut expired = 0;
        for _ in 0..max_turns {
            expired += nat.sweep(now, budget);
            if expired >= want {
                return expired;
            }
        }
        panic!("sweep expired {expired} of {want} sessions in {max_turns} turns");
    }

    fn udp_key(client_port: u16) -> FlowKey {
        FlowKey {
            src: ip("10.0.0.2"),
            dst: ip("203.0.113.5"),
            src_port: client_port,
            dst_port: 53,
            proto: proto::UDP,
        }
    }

    fn tcp_key(client_port: u16) -> FlowKey {
        FlowKey {
            proto: proto::TCP,
            dst_port: 443,
            ..udp_key(client_port)
        }
    }

    /// A shard of a site whose NAT range is 64 ports per shard.
    fn small_shard(cfg: NatConfig, shard: u16, shards: u16) -> NatShard {
        let range = NatPortRange {
            first: 2000,
            last: 2000 + 64 * shards - 1,
        };
        NatShard::new(cfg, &site_with(range, shards), shard)
    }

    fn nat_port(nat: &NatShard, idx: u32) -> u16 {
        nat.session(idx).unwrap().nat_port
    }

    #[test]
    fn create_indexes_both_ways_and_remove_frees_everything() {
        let mut nat = NatShard::new(NatConfig::default(), &site(1), 0);
        let key = tcp_key(40000);
        let idx = nat.create(key, 0, ip(NAT4), [2; 6], T0).unwrap();
        let s = nat.session(idx).unwrap().clone();
        assert_eq!(
            (s.nat_addr, s.uplink, s.tcp, s.last_seen),
            (ip(NAT4), 0, TcpState::SynSent, T0)
        );
        assert_eq!(nat.lookup_out(&key, T0), Some(idx));
        assert_eq!(nat.lookup_in(&s.inbound_key(), T0), Some(idx));
        assert_eq!(s.inbound_key().reversed().src, ip(NAT4));
        assert_eq!(
            (
                nat.counters.tcp_sessions.get(),
                nat.counters.uplinks[0].tcp_sessions.get()
            ),
            (1, 1)
        );

        assert!(nat.remove(idx).is_some());
        assert!(nat.remove(idx).is_none(), "removing twice is harmless");
        assert!(nat.is_empty());
        assert_eq!(nat.lookup_out(&key, T0), None);
        assert_eq!(nat.lookup_in(&s.inbound_key(), T0), None);
        assert_eq!(nat.counters.tcp_sessions.get(), 0);
        assert_eq!(nat.ports[&ip(NAT4)].free.len(), 64512, "the port went back");
        assert_eq!(
            nat.create(key, 0, ip("192.0.2.77"), [2; 6], T0),
            Err(DropReason::NoNatAddress)
        );
    }

    #[test]
    fn port_exhaustion_is_counted_and_recovers() {
        let mut nat = small_shard(NatConfig::default(), 0, 1);
        let mut used = HashSet::new();
        for p in 0..64 {
            let idx = nat
                .create(udp_key(10_000 + p), 0, ip(NAT4), [2; 6], T0)
                .unwrap();
            let port = nat_port(&nat, idx);
            assert!((2000..2064).contains(&port), "{port}");
            assert!(used.insert(port), "port {port} handed out twice");
        }
        for p in 0..100 {
            assert_eq!(
                nat.create(udp_key(20_000 + p), 0, ip(NAT4), [2; 6], T0),
                Err(DropReason::PortExhausted)
            );
        }
        assert_eq!(nat.counters.uplinks[0].port_exhausted.get(), 100);
        assert_eq!(nat.len(), 64);
        // The IPv6 address has its own pool.
        assert!(nat.create(udp_key(1), 0, ip(NAT6), [2; 6], T0).is_ok());
        // Freeing one port makes room for exactly one more.
        let idx = nat.lookup_out(&udp_key(10_005), T0).unwrap();
        let freed = nat_port(&nat, idx);
        nat.remove(idx);
        let again = nat
            .create(udp_key(30_000), 0, ip(NAT4), [2; 6], T0)
            .unwrap();
        assert_eq!(nat_port(&nat, again), freed);
        assert_eq!(
            nat.create(udp_key(30_001), 0, ip(NAT4), [2; 6], T0),
            Err(DropReason::PortExhausted)
        );
    }

    #[test]
    fn shards_hand_out_disjoint_ports() {
        let mut seen = HashSet::new();
        for shard in 0..3 {
            let mut nat = small_shard(NatConfig::default(), shard, 3);
            let topo = site_with(
                NatPortRange {
                    first: 2000,
                    last: 2191,
                },
                3,
            );
            for p in 0..64 {
                let idx = nat.create(udp_key(p), 0, ip(NAT4), [2; 6], T0).unwrap();
                let port = nat_port(&nat, idx);
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
        let mut nat = NatShard::new(
            NatConfig {
                max_sessions: 3,
                ..NatConfig::default()
            },
            &site(1),
            0,
        );
        let idx: Vec<u32> = (0..3)
            .map(|p| nat.create(udp_key(p), 0, ip(NAT4), [2; 6], T0).unwrap())
            .collect();
        let free_before = nat.ports[&ip(NAT4)].free.len();
        assert_eq!(
            nat.create(udp_key(3), 0, ip(NAT4), [2; 6], T0),
            Err(DropReason::TableFull)
        );
        assert_eq!(
            nat.create(tcp_key(3), 0, ip(NAT6), [2; 6], T0),
            Err(DropReason::TableFull)
        );
        assert_eq!(nat.counters.table_full.get(), 2);
        assert_eq!(
            nat.ports[&ip(NAT4)].free.len(),
            free_before,
            "a refused flow takes no port"
        );
        assert_eq!(nat.len(), 3);
        nat.remove(idx[1]);
        let reused = nat.create(udp_key(3), 0, ip(NAT4), [2; 6], T0).unwrap();
        assert_eq!(reused, idx[1], "the freed slot is reused");
        assert_eq!(nat.slots.len(), 3, "slots never grow past max_sessions");
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
        // are refreshed halfway through.
        let idx: Vec<u32> = (0..64)
            .map(|p| {
                nat.create(udp_key(p), 0, ip(NAT4), [2; 6], clock.now)
                    .unwrap()
            })
            .collect();
        let idle_port = nat_port(&nat, idx[0]);
        assert_eq!(nat.counters.udp_sessions.get(), 64);
        assert_eq!(
            nat.create(udp_key(99), 0, ip(NAT4), [2; 6], clock.now),
            Err(DropReason::PortExhausted)
        );

        clock.advance(Nanos::from_secs(90));
        for &i in &idx[1..] {
            nat.touch(i, clock.now, 100, 0, true).unwrap();
        }

        // At the deadline itself nothing has expired yet.
        let deadline = T0.saturating_add(timeout);
        clock.jump_to(deadline);
        for _ in 0..4 {
            assert_eq!(nat.sweep(clock.now, 16), 0);
        }
        // One nanosecond later the idle session goes; a budget of 8 slots per
        // call finds it within a lap of the table.
        clock.jump_to(deadline.saturating_add(Nanos(1)));
        assert_eq!(drive_sweep(&mut nat, clock.now, 8, 1, 64 / 8 + 1), 1);
        assert!(nat.session(idx[0]).is_none());
        assert_eq!(nat.len(), 63);
        assert_eq!(
            (nat.counters.expired.get(), nat.counters.udp_sessions.get()),
            (1, 63)
        );
        assert_eq!(nat.counters.uplinks[0].udp_sessions.get(), 63);

        // Its port is free again.
        let new = nat
            .create(udp_key(99), 0, ip(NAT4), [2; 6], clock.now)
            .unwrap();
        assert_eq!(nat_port(&nat, new), idle_port);

        // The refreshed sessions expire one timeout after their refresh.
        clock.jump_to(
            T0.saturating_add(Nanos::from_secs(90))
                .saturating_add(timeout)
                .saturating_add(Nanos(1)),
        );
        assert_eq!(drive_sweep(&mut nat, clock.now, 8, 63, 2 * 64 / 8), 63);
        assert_eq!(nat.len(), 1);
    }

    #[test]
    fn lookup_does_not_return_an_expired_session() {
        let cfg = NatConfig {
            udp_idle_timeout: Nanos::from_secs(10),
            ..NatConfig::default()
        };
        let mut nat = NatShard::new(cfg, &site(1), 0);
        let idx = nat.create(udp_key(1), 0, ip(NAT4), [2; 6], T0).unwrap();
        let in_key = nat.session(idx).unwrap().inbound_key();
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
        let idx = nat.create(tcp_key(1), 0, ip(NAT4), [2; 6], T0).unwrap();
        let state = |nat: &NatShard| nat.session(idx).unwrap().tcp;
        let expired_after = |nat: &NatShard, d: Nanos| {
            nat.session(idx)
                .unwrap()
                .expired(T0.saturating_add(d), &cfg)
        };

        assert!(
            expired_after(&nat, cfg.tcp_transitory_timeout.saturating_add(Nanos(1))),
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
        assert!(!expired_after(
            &nat,
            cfg.tcp_transitory_timeout.saturating_add(Nanos(1))
        ));
        assert!(expired_after(
            &nat,
            cfg.tcp_established_timeout.saturating_add(Nanos(1))
        ));
        nat.touch(idx, T0, 60, TCP_FIN | TCP_ACK, false);
        assert_eq!(state(&nat), TcpState::FinSeen);
        assert!(expired_after(
            &nat,
            cfg.tcp_transitory_timeout.saturating_add(Nanos(1))
        ));
        nat.touch(idx, T0, 60, TCP_RST, true);
        assert_eq!(state(&nat), TcpState::Closed);
        assert!(expired_after(
            &nat,
            cfg.tcp_closed_timeout.saturating_add(Nanos(1))
        ));
        assert!(!expired_after(&nat, cfg.tcp_closed_timeout));

        let s = nat.session(idx).unwrap();
        assert_eq!(
            (s.packets_in, s.packets_out, s.bytes_in, s.bytes_out),
            (2, 2, 120, 120)
        );
    }

    #[derive(Clone, Debug)]
    enum Op {
        Create {
            client_port: u16,
            tcp: bool,
            v6: bool,
        },
        Remove {
            pick: usize,
        },
        Touch {
            pick: usize,
        },
        Advance {
            secs: u64,
        },
        Sweep {
            budget: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u16..200, any::<bool>(), any::<bool>()).prop_map(|(client_port, tcp, v6)| Op::Create { client_port, tcp, v6 }),
            1 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
            1 => any::<usize>().prop_map(|pick| Op::Touch { pick }),
            1 => (0u64..40).prop_map(|secs| Op::Advance { secs }),
            1 => (0usize..80).prop_map(|budget| Op::Sweep { budget }),
        ]
    }

    proptest! {
        /// Whatever the sequence of operations, every live session has one
        /// entry in each index and its own port, the gauges match the table,
        /// the table never passes its capacity, and nothing panics.
        #[test]
        fn invariants_hold_under_any_operation_sequence(ops in proptest::collection::vec(op(), 1..200)) {
            let cfg = NatConfig {
                max_sessions: 48,
                udp_idle_timeout: Nanos::from_secs(30),
                tcp_transitory_timeout: Nanos::from_secs(60),
                ..NatConfig::default()
            };
            let mut nat = small_shard(cfg, 0, 1);
            let mut clock = VirtualClock { now: T0 };
            for op in ops {
                let live: Vec<u32> =
                    (0..nat.slots.len() as u32).filter(|&i| nat.session(i).is_some()).collect();
                match op {
                    Op::Create { client_port, tcp, v6 } => {
                        let base = if tcp { tcp_key(client_port) } else { udp_key(client_port) };
                        let key = if v6 { FlowKey { src: ip("fd00::2"), dst: ip("2001:db8::5"), ..base } } else { base };
                        let addr = ip(if v6 { NAT6 } else { NAT4 });
                        if nat.lookup_out(&key, clock.now).is_none() {
                            match nat.create(key, 0, addr, [2; 6], clock.now) {
                                Ok(_) | Err(DropReason::TableFull) | Err(DropReason::PortExhausted) => {}
                                Err(e) => prop_assert!(false, "unexpected {e:?}"),
                            }
                        }
                    }
                    Op::Remove { pick } if !live.is_empty() => {
                        prop_assert!(nat.remove(live[pick % live.len()]).is_some());
                    }
                    Op::Touch { pick } if !live.is_empty() => {
                        prop_assert!(nat.touch(live[pick % live.len()], clock.now, 64, TCP_ACK, true).is_some());
                    }
                    Op::Advance { secs } => clock.advance(Nanos::from_secs(secs)),
                    Op::Sweep { budget } => {
                        nat.sweep(clock.now, budget);
                    }
                    _ => {}
                }

                prop_assert!(nat.len() <= 48);
                prop_assert!(nat.slots.len() <= 48);
                let sessions: Vec<(u32, Session)> = (0..nat.slots.len() as u32)
                    .filter_map(|i| nat.session(i).map(|s| (i, s.clone())))
                    .collect();
                prop_assert_eq!(sessions.len(), nat.len());
                prop_assert_eq!(nat.by_in.len(), nat.len());
                let mut ports = HashSet::new();
                for (i, s) in &sessions {
                    prop_assert_eq!(nat.by_out.get(&s.inside), Some(i));
                    prop_assert_eq!(nat.by_in.get(&s.inbound_key()), Some(i));
                    prop_assert!(ports.insert((s.nat_addr, s.nat_port)), "port shared");
                    prop_assert!((2000..2064).contains(&s.nat_port));
                    prop_assert!(!nat.ports[&s.nat_addr].free.contains(&s.nat_port), "a used port is also free");
                }
                for a in [ip(NAT4), ip(NAT6)] {
                    let used = sessions.iter().filter(|(_, s)| s.nat_addr == a).count();
                    prop_assert_eq!(nat.ports[&a].free.len() + used, 64, "ports leaked or duplicated");
                }
                let tcp = sessions.iter().filter(|(_, s)| s.inside.proto == proto::TCP).count() as u64;
                prop_assert_eq!(nat.counters.tcp_sessions.get(), tcp);
                prop_assert_eq!(nat.counters.udp_sessions.get(), sessions.len() as u64 - tcp);
            }
        }
    }
}
