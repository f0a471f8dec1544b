//! The operator's view of a shard's sessions: a filter, a bounded page of
//! matching sessions from a cursor (`appliance sessions`, like `conntrack
//! -L`), and a bounded flush of matching sessions (`appliance sessions
//! flush`, like `conntrack -F` with filters). Each call scans at most a
//! given number of slots, so the lcore that owns the shard answers between
//! two bursts without stalling its packets; a cursor resumes the scan.

use std::net::IpAddr;

use super::session::TcpState;
use super::shard::NatShard;
use crate::packet::flow::proto;
use crate::packet::time::Nanos;
use crate::topology::UplinkId;

/// An address prefix, `addr/len` (len beyond the family's width counts as
/// the full width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let len = u32::from(self.len.min(32));
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                u32::from(p) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let len = u32::from(self.len.min(128));
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                u128::from(p) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Which sessions a listing or a flush takes; `None` fields match all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionFilter {
    pub uplink: Option<UplinkId>,
    /// The inside client's address.
    pub client: Option<Prefix>,
    /// The outside remote's address.
    pub remote: Option<Prefix>,
    /// IP protocol number (6, 17, 1 or 58).
    pub proto: Option<u8>,
    /// The session's state name (see [`state_name`]).
    pub state: Option<&'static str>,
}

/// The state names a session can have: TCP states, `udp`/`icmp` otherwise.
pub const STATE_NAMES: [&str; 8] = [
    "syn_sent",
    "syn_received",
    "established",
    "fin_seen",
    "closed",
    "rst",
    "udp",
    "icmp",
];

/// A session's state name: its TCP state, else its protocol.
pub fn state_name(proto_nr: u8, tcp: TcpState) -> &'static str {
    match proto_nr {
        proto::TCP => match tcp {
            TcpState::SynSent => "syn_sent",
            TcpState::SynReceived => "syn_received",
            TcpState::Established => "established",
            TcpState::FinSeen => "fin_seen",
            TcpState::Closed => "closed",
            TcpState::Rst => "rst",
        },
        proto::UDP => "udp",
        _ => "icmp",
    }
}

/// One session as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub slot: u32,
    pub proto: u8,
    pub client: IpAddr,
    pub client_port: u16,
    pub nat_addr: IpAddr,
    pub nat_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    pub uplink: UplinkId,
    pub state: &'static str,
    /// Since its last packet.
    pub idle: Nanos,
    /// Until the sweep may remove it (0: due now).
    pub expires_in: Nanos,
    pub packets_out: u32,
    pub packets_in: u32,
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Part of a SYN race still being decided (or a first-payload winner).
    pub in_race: bool,
    /// A losing race copy waiting to go.
    pub race_loser: bool,
}

impl NatShard {
    fn matches(&self, idx: usize, f: &SessionFilter) -> bool {
        let s = &self.slots[idx];
        s.is_live()
            && f.uplink.is_none_or(|u| s.uplink == u)
            && f.proto.is_none_or(|p| s.proto == p)
            && f.client.is_none_or(|p| p.contains(s.client_addr()))
            && f.remote.is_none_or(|p| p.contains(s.remote_addr()))
            && f.state
                .is_none_or(|st| state_name(s.proto, s.tcp_state()) == st)
    }

    /// Appends to `out` the live sessions matching `f` from slot `cursor`
    /// on, until `max` were appended or `scan` slots were visited. Returns
    /// the slot to resume from, `None` once the table's end was reached.
    pub fn list_sessions(
        &self,
        f: &SessionFilter,
        cursor: u32,
        max: usize,
        scan: usize,
        now: Nanos,
        out: &mut Vec<SessionInfo>,
    ) -> Option<u32> {
        let n = self.slots.len();
        let mut i = cursor as usize;
        let (mut taken, mut seen) = (0, 0);
        while i < n && taken < max && seen < scan {
            if self.matches(i, f) {
                let (s, c) = (&self.slots[i], &self.cold[i]);
                let idle = now.since(s.last_seen);
                out.push(SessionInfo {
                    slot: i as u32,
                    proto: s.proto,
                    client: s.client_addr(),
                    client_port: s.client_port,
                    nat_addr: self.nat_addr(s),
                    nat_port: s.nat_port,
                    remote: s.remote_addr(),
                    remote_port: s.remote_port,
                    uplink: s.uplink,
                    state: state_name(s.proto, s.tcp_state()),
                    idle,
                    expires_in: Nanos(s.timeout(&self.cfg).0.saturating_sub(idle.0)),
                    packets_out: c.packets_out,
                    packets_in: c.packets_in,
                    bytes_out: c.bytes_out(),
                    bytes_in: c.bytes_in(),
                    in_race: s.in_race(),
                    race_loser: s.is_race_loser(),
                });
                taken += 1;
            }
            i += 1;
            seen += 1;
        }
        (i < n).then_some(i as u32)
    }

    /// Removes the live sessions matching `f` from slot `cursor` on,
    /// visiting at most `scan` slots; their ports go back to the pools and
    /// they count `flushed`. Returns (removed, the slot to resume from or
    /// `None` at the table's end). The owner settles races afterwards
    /// (removed race-tagged sessions are [`super::RaceExit`]s).
    pub fn flush_sessions(
        &mut self,
        f: &SessionFilter,
        cursor: u32,
        scan: usize,
    ) -> (usize, Option<u32>) {
        let n = self.slots.len();
        let mut i = cursor as usize;
        let (mut removed, mut seen) = (0, 0);
        while i < n && seen < scan {
            if !self.matches(i, f) {
                i += 1;
                seen += 1;
                continue;
            }
            self.log_session(
                i as u32,
                super::event::EventKind::SessionFlushed,
                super::event::EventReason::Flush,
            );
            if self.remove(i as u32).is_some() {
                removed += 1;
            }
            i += 1;
            seen += 1;
        }
        self.counters.flushed.add(removed as u64);
        (removed, (i < n).then_some(i as u32))
    }
}
