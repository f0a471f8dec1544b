//! The NAT event log's records: plain data the translate lcore writes when
//! a session is created, expires or is flushed, a race is decided or a
//! limit refuses a new flow (`conntrack -E`'s events). The shard keeps them
//! in a bounded buffer ([`EventLog`]) that the lcore moves, once per loop
//! turn, onto a bounded ring toward the management core; whatever does not
//! fit is counted lost, never waited for.
//!
//! The log is off until a consumer on the management side turns it on (the
//! lcore copies a flag once per turn), so an appliance nobody watches pays
//! one branch per event site. The records carry everything a consumer
//! needs (an `appliance events` subscriber, a NAT log file, IPFIX): time,
//! kind, reason, protocol, the inside, outside and remote endpoints, the
//! uplink, and for races the winner and the members' RTTs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::shard::NatShard;
use crate::packet::drop::DropReason;
use crate::packet::time::Nanos;
use crate::select::RACE_MAX;
use crate::topology::UplinkId;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    SessionCreated,
    /// A race began with this copy (the first SYN copy's session; the
    /// other copies' sessions follow as `SessionCreated`).
    RaceStarted,
    SessionExpired,
    SessionFlushed,
    /// A race's first answer chose `winner` (the session is the winner's).
    RaceDecided,
    /// A new flow was refused by a limit (`reason`).
    LimitHit,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SessionCreated => "session_created",
            EventKind::RaceStarted => "race_started",
            EventKind::SessionExpired => "session_expired",
            EventKind::SessionFlushed => "session_flushed",
            EventKind::RaceDecided => "race_decided",
            EventKind::LimitHit => "limit_hit",
        }
    }
}

/// Why, where the kind has a reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventReason {
    None,
    /// Idle past its timeout.
    Timeout,
    /// `sessions flush`.
    Flush,
    /// A race copy that lost (or was closed before a decision) left; its
    /// RTT, if it answered, is in `rtts[0]`.
    RaceLost,
    /// A limit: the drop reason it counts (table full, port exhausted,
    /// per-host sessions / rate / races, host table full).
    Limit(DropReason),
}

impl EventReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::None => "",
            EventReason::Timeout => "timeout",
            EventReason::Flush => "flush",
            EventReason::RaceLost => "race_lost",
            EventReason::Limit(r) => r.as_str(),
        }
    }
}

/// No uplink (a limit hit before one was chosen).
pub const NO_UPLINK: UplinkId = UplinkId::MAX;

/// One event. `Copy`, fixed size: rings of them never allocate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NatEvent {
    pub time: Nanos,
    pub kind: EventKind,
    pub reason: EventReason,
    pub proto: u8,
    pub inside: SocketAddr,
    /// Unspecified for a limit hit (no mapping was made).
    pub outside: SocketAddr,
    pub remote: SocketAddr,
    pub uplink: UplinkId,
    /// Race decided: the winning uplink (also `uplink`).
    pub winner: UplinkId,
    /// Race decided: the members' uplinks and their RTTs where answered
    /// (`None`: no answer yet, or a retransmitted SYN); `races` used.
    pub rtts: [(UplinkId, Option<Nanos>); RACE_MAX],
    pub races: u8,
}

impl NatEvent {
    /// An event with no endpoints yet.
    pub fn new(time: Nanos, kind: EventKind, reason: EventReason) -> NatEvent {
        let none = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        NatEvent {
            time,
            kind,
            reason,
            proto: 0,
            inside: none,
            outside: none,
            remote: none,
            uplink: NO_UPLINK,
            winner: NO_UPLINK,
            rtts: [(NO_UPLINK, None); RACE_MAX],
            races: 0,
        }
    }

    /// The members' RTTs that are set.
    pub fn race_rtts(&self) -> &[(UplinkId, Option<Nanos>)] {
        &self.rtts[..usize::from(self.races).min(RACE_MAX)]
    }
}

/// Events kept between two loop turns (about 100 µs of a busy shard); past
/// it events are counted lost.
pub const LOG_MAX: usize = 1_024;

/// A shard's event buffer: off until enabled, bounded, drained every turn.
#[derive(Debug)]
pub struct EventLog {
    pub enabled: bool,
    /// The time of the current loop turn (set by the sweep).
    pub(super) now: Nanos,
    pub events: Vec<NatEvent>,
    /// Events not kept for want of room (here and, added by the lcore, on
    /// its ring).
    pub lost: u64,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            enabled: false,
            now: Nanos::ZERO,
            events: Vec::with_capacity(LOG_MAX),
            lost: 0,
        }
    }
}

impl EventLog {
    pub fn push(&mut self, ev: NatEvent) {
        if self.events.len() < LOG_MAX {
            self.events.push(ev);
        } else {
            self.lost += 1;
        }
    }
}

impl NatShard {
    /// The event `kind` for live session `idx`, endpoints filled in.
    pub fn session_event(
        &self,
        idx: u32,
        kind: EventKind,
        reason: EventReason,
    ) -> Option<NatEvent> {
        let s = self.session(idx)?;
        let mut ev = NatEvent::new(self.log.now, kind, reason);
        ev.proto = s.proto;
        ev.inside = SocketAddr::new(s.client_addr(), s.client_port);
        ev.outside = SocketAddr::new(self.nat_addr(s), s.nat_port);
        ev.remote = SocketAddr::new(s.remote_addr(), s.remote_port);
        ev.uplink = s.uplink;
        Some(ev)
    }

    /// Logs `kind` for session `idx` when the log is on.
    pub(crate) fn log_session(&mut self, idx: u32, kind: EventKind, reason: EventReason) {
        if !self.log.enabled {
            return;
        }
        if let Some(ev) = self.session_event(idx, kind, reason) {
            self.log.push(ev);
        }
    }

    /// Logs a new flow of `key`'s endpoints refused by `reason`.
    pub(crate) fn log_limit(
        &mut self,
        key: &crate::packet::flow::FlowKey,
        uplink: UplinkId,
        reason: DropReason,
    ) {
        if !self.log.enabled {
            return;
        }
        let mut ev = NatEvent::new(
            self.log.now,
            EventKind::LimitHit,
            EventReason::Limit(reason),
        );
        ev.proto = key.proto;
        ev.inside = SocketAddr::new(key.src, key.src_port);
        ev.remote = SocketAddr::new(key.dst, key.dst_port);
        ev.uplink = uplink;
        self.log.push(ev);
    }
}
