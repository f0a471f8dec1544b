//! Session creation: outbound flows, admitted inbound flows, service
//! sessions; mappings, paired addresses and port allocation.

use std::net::IpAddr;
use std::sync::Arc;

use super::config::Filtering;
use super::counters::ServerCounters;
use super::hosts::Refusal;
use super::index::{inside_hash, out_eq, session_in_hash, session_out_hash, tag, NatAddr, Tuple};
use super::ports::{class_of, PortPool, CLASSES};
use super::session::{to16, Session, SessionCold, HOSTED, LIVE, NONE, OUT_INDEXED, UNANSWERED, V6};
use super::shard::NatShard;
use crate::packet::drop::DropReason;
use crate::packet::flow::{proto, FlowKey};
use crate::packet::time::Nanos;
use crate::topology::UplinkId;
use crate::wire::tcp::{TCP_ACK, TCP_RST, TCP_SYN};

/// Sessions an address-dependent filter inspects for a known remote
/// address before refusing (bounds the work a packet can cause).
pub const ADF_WALK_MAX: usize = 256;

/// How a new outbound session came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// On a new mapping.
    NewMapping,
    /// On the inside endpoint's existing mapping (endpoint-independent
    /// mapping).
    ExistingMapping,
}

impl NatShard {
    /// The mapping head of an inside endpoint: on `uplink` for TCP, on any
    /// uplink for UDP and ICMP (sticky mappings).
    pub(super) fn find_mapping(&self, t: &Tuple, uplink: UplinkId) -> Option<u32> {
        self.find_mapping_hashed(t, uplink, self.mapping_hash(t))
    }

    /// The mapping index's hash of `t`'s inside endpoint.
    fn mapping_hash(&self, t: &Tuple) -> u64 {
        inside_hash(&self.hasher, &t.src, t.src_port, t.tag())
    }

    /// [`find_mapping`](Self::find_mapping) with the endpoint's hash `h`
    /// (`mapping_hash`) already made: a new mapping's insertion reuses it.
    fn find_mapping_hashed(&self, t: &Tuple, uplink: UplinkId, h: u64) -> Option<u32> {
        let sticky = t.proto != proto::TCP;
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
        let range = self.range;
        self.pools[usize::from(addr) * CLASSES + class].get_or_insert_with(|| PortPool::new(range))
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
        self.log.now = now;
        let r = self.create_out_inner(key, uplink, client_mac, now, indexed);
        if let Err(
            reason @ (DropReason::TableFull
            | DropReason::PortExhausted
            | DropReason::HostSessionsLimit
            | DropReason::HostRateLimit
            | DropReason::HostsTableFull),
        ) = r
        {
            self.log_limit(key, uplink, reason);
        }
        r
    }

    fn create_out_inner(
        &mut self,
        key: &FlowKey,
        uplink: UplinkId,
        client_mac: [u8; 6],
        now: Nanos,
        indexed: bool,
    ) -> Result<(u32, Created), DropReason> {
        // A full shard evicts before any mapping is looked up (the evicted
        // session may be the last of the mapping this flow would use).
        if self.live >= self.cfg.max_sessions {
            self.make_room(NONE);
        }
        if self.live >= self.cfg.max_sessions {
            self.counters.table_full.inc();
            return Err(DropReason::TableFull);
        }
        let t = Tuple::of(key);
        let mh = self.mapping_hash(&t);
        let head = self.find_mapping_hashed(&t, uplink, mh);
        if let Some(h) = head {
            self.mapping_admits(h, &t.src)?;
        }
        // A race copy after the first is the same new flow: it takes a
        // session but no token.
        let lim = self.cfg.hosts;
        self.hosts
            .admit(&t.src, now, indexed, &lim, &self.counters)?;
        let claimed = self.claim_port(&t, uplink, head);
        let (uplink, nat_addr, nat_port) = match claimed {
            Ok(c) => c,
            Err(e) => {
                self.hosts.release(&t.src, &self.counters);
                return Err(e);
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
            flags: LIVE
                | HOSTED
                | UNANSWERED
                | if t.v6 { V6 } else { 0 }
                | if indexed { OUT_INDEXED } else { 0 },
            client_mac,
            ..Session::FREE
        };
        let idx = match self.insert(s, head, Some(mh)) {
            Ok(i) => i,
            Err(e) => {
                self.hosts.release(&t.src, &self.counters);
                if head.is_none() {
                    let at = usize::from(nat_addr) * CLASSES + class_of(t.proto);
                    if let Some(pool) = self.pools.get_mut(at).and_then(Option::as_mut) {
                        if let Some(pi) = pool.index(nat_port) {
                            pool.give_back(pi);
                        }
                    }
                }
                return Err(e);
            }
        };
        // A nearly full one evicts after the insertion, so the new session
        // never takes the slot of a session its race still lists.
        if self.live > self.evict_at {
            self.make_room(idx);
        }
        Ok((
            idx,
            if head.is_some() {
                Created::ExistingMapping
            } else {
                Created::NewMapping
            },
        ))
    }

    /// Live sessions of the mapping whose head is `head`, for its limit;
    /// `None` for a mapping without a port pool (a service mapping).
    pub(super) fn mapping_sessions(&mut self, head: u32) -> Option<&mut u16> {
        let s = &self.slots[head as usize];
        let (at, port) = (
            usize::from(s.nat_addr) * CLASSES + class_of(s.proto),
            s.nat_port,
        );
        let pool = self.pools.get_mut(at)?.as_mut()?;
        let i = pool.index(port)?;
        pool.sessions.get_mut(i)
    }

    /// Whether the mapping of `head` may take one more session; a refusal
    /// is counted `mapping_sessions_limit` against inside host `client`.
    fn mapping_admits(&mut self, head: u32, client: &[u8; 16]) -> Result<(), DropReason> {
        let max = self.cfg.mapping_max_sessions;
        if self.mapping_sessions(head).is_some_and(|n| *n >= max) {
            self.hosts.refuse(client, Refusal::Mapping, &self.counters);
            return Err(DropReason::MappingSessionsLimit);
        }
        Ok(())
    }

    /// The mapping's (uplink, NAT address, NAT port): those of `head`, or a
    /// new port on `uplink`'s paired address.
    fn claim_port(
        &mut self,
        t: &Tuple,
        uplink: UplinkId,
        head: Option<u32>,
    ) -> Result<(UplinkId, u16, u16), DropReason> {
        Ok(match head {
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
                    Some(i) if preserve && pool.is_free(i) => {
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
        })
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
            .and_then(|p| {
                p.index(t.dst_port)
                    .filter(|&i| !p.is_free(i))
                    .map(|i| p.owner[i])
            })
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
                    if self.slots[i as usize].remote == t.src {
                        found = true;
                        break;
                    }
                    i = self.cold[i as usize].next;
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
        let client = self.slots[head as usize].client;
        self.mapping_admits(head, &client)?;
        let m = &self.slots[head as usize];
        let hosted = m.flags & HOSTED != 0;
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
            .find(self.by_out.home(oh), |i| {
                out_eq(&slots[i as usize], &outbound)
            })
            .is_some()
        {
            self.counters.filtered.inc();
            return Err(DropReason::Filtered);
        }
        // A session opened from outside counts against the inside host's
        // sessions limit (not its rate: a remote does not spend the host's
        // tokens).
        if hosted {
            let (lim, client) = (self.cfg.hosts, self.slots[head as usize].client);
            self.hosts
                .admit(&client, now, false, &lim, &self.counters)?;
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
            flags: (m.flags & (LIVE | V6 | HOSTED)) | OUT_INDEXED,
            client_mac: m.client_mac,
            ..Session::FREE
        };
        let client = s.client;
        self.insert(s, Some(head), None).inspect_err(|_| {
            if hosted {
                self.hosts.release(&client, &self.counters);
            }
        })
    }

    /// Puts `s` in a slot and in the indexes; on the chain of `head`, or as
    /// the head of a new mapping (which then owns its port). `mh`: the
    /// mapping index's hash of its inside endpoint, if the caller has it.
    ///
    /// The session indexes take it first: when one has no room within its
    /// search bound (see `bucket`) nothing changes and the refusal is
    /// counted `table_full`; the caller gives back what it took for it.
    fn insert(
        &mut self,
        mut s: Session,
        head: Option<u32>,
        mh: Option<u64>,
    ) -> Result<u32, DropReason> {
        let unanswered = s.flags & UNANSWERED != 0;
        s.flags &= !UNANSWERED;
        let (hasher, addrs) = (&self.hasher, &self.addrs);
        let (oh, ih) = (
            session_out_hash(hasher, &s),
            session_in_hash(hasher, addrs, &s),
        );
        let indexed = s.flags & OUT_INDEXED != 0;
        let idx = if self.free_head != NONE {
            self.free_head
        } else {
            self.slots.len() as u32
        };
        if indexed && !self.by_out.insert(oh, idx) {
            self.counters.table_full.inc();
            return Err(DropReason::TableFull);
        }
        if !self.by_in.insert(ih, idx) {
            if indexed {
                self.by_out.remove(oh, idx);
            }
            self.counters.table_full.inc();
            return Err(DropReason::TableFull);
        }
        let mut c = SessionCold::FREE;
        if let Some(h) = head {
            let after = self.cold[h as usize].next;
            c.prev = h;
            c.next = after;
            self.cold[h as usize].next = idx;
            if after != NONE {
                self.cold[after as usize].prev = idx;
            }
        }
        // Each half written once; the slot holds the session before the
        // mapping index (which may rehash in place, reading it) takes it.
        let (protocol, uplink, server) = (s.proto, s.uplink, s.server);
        let (client, client_port, stag) = (s.client, s.client_port, tag(&s));
        let (nat_addr, nat_port) = (s.nat_addr, s.nat_port);
        if self.free_head != NONE {
            self.free_head = self.cold[idx as usize].next;
            self.slots[idx as usize] = s;
            self.cold[idx as usize] = c;
        } else {
            self.slots.push(s);
            self.cold.push(c);
        }
        match head {
            // One more session on the mapping (`mapping_admits` checked).
            Some(_) => {
                if let Some(n) = self.mapping_sessions(idx) {
                    *n = n.saturating_add(1);
                }
            }
            None => {
                let hasher = &self.hasher;
                let mh = mh.unwrap_or_else(|| inside_hash(hasher, &client, client_port, stag));
                let slots = &self.slots;
                self.by_inside.insert_unique(mh, idx, |&i| {
                    let x = &slots[i as usize];
                    inside_hash(hasher, &x.client, x.client_port, tag(x))
                });
                let class = class_of(protocol);
                if let Some(pool) = self.pools[usize::from(nat_addr) * CLASSES + class].as_mut() {
                    if let Some(pi) = pool.index(nat_port) {
                        pool.owner[pi] = idx;
                        pool.sessions[pi] = 1;
                    }
                }
                self.counters.mappings.add(1);
            }
        }
        if unanswered {
            self.unanswered_push(idx);
        }
        self.live += 1;
        self.counters.created.inc();
        self.log_session(
            idx,
            super::event::EventKind::SessionCreated,
            super::event::EventReason::None,
        );
        self.counters.adjust_gauges(protocol, uplink, true);
        self.counters.adjust_server(protocol, server, true);
        Ok(idx)
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
        let mh = self.mapping_hash(&inside);
        let head = self.find_mapping_hashed(&inside, uplink, mh).filter(|&h| {
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
        self.insert(s, head, Some(mh))
    }
}
