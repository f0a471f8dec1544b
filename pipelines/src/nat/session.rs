//! The session record (a 64-byte hot half, a 40-byte cold half) and what
//! it derives: TCP state, timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::config::NatConfig;
use crate::packet::flow::{proto, FlowKey};
use crate::packet::time::Nanos;
use crate::topology::UplinkId;
use crate::wire::tcp::{TCP_FIN, TCP_RST, TCP_SYN};

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
    /// Not a thing seen: the session is on the eviction list because its
    /// connection closed (FINs both ways, or an RST), not because nothing
    /// answered it (see `evict`).
    pub const CLOSED_LISTED: u8 = 128;
}

pub(crate) const NONE: u32 = u32::MAX;
pub(super) const LIVE: u8 = 1;
pub(super) const V6: u8 = 2;
/// The session has the outbound index entry of its 5-tuple. All sessions
/// do except racing copies: a race has one session per uplink for the same
/// outbound 5-tuple, and only one of them (the client's) is indexed.
pub(super) const OUT_INDEXED: u8 = 4;
/// A race copy that lost: kept for the race timeout so that its SYN+ACK is
/// answered with an RST.
pub(super) const LOSER: u8 = 8;
/// An outbound session that has not seen a packet from outside yet: it is
/// on the shard's list of unanswered sessions (oldest first), which a
/// nearly full shard evicts from.
pub(super) const UNANSWERED: u8 = 16;
/// The session counts against its inside host's limits (outbound sessions
/// and sessions admitted from outside; not service sessions).
pub(super) const HOSTED: u8 = 32;
/// TCP window tracking knows the inside host's receive edge (`rcv_nxt`,
/// kept in `older` once the session left the unanswered list): inbound
/// segments are checked against it (see `window`).
pub(super) const WIN: u8 = 64;
/// TCP window tracking knows the highest sequence end the inside host sent
/// (`snd_end`, kept in `newer`): inbound acknowledgements are checked
/// against it.
pub(super) const SENT: u8 = 128;

/// The hot half of a session, one 64-byte cache line: everything an
/// established packet reads (the key its lookup verifies, the translation,
/// the time stamp, the state and flags, the race tag). Its cold half
/// ([`SessionCold`], in a parallel array at the same slot) holds the
/// counters, the mapping chain and the TCP window tracker. Addresses are
/// stored as 16 bytes (IPv4 in its IPv4-mapped form, told apart by the
/// `V6` flag) so one table serves NAT44 and NAT66.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
pub struct Session {
    pub(super) client: [u8; 16],
    pub(super) remote: [u8; 16],
    pub last_seen: Nanos,
    pub client_port: u16,
    pub remote_port: u16,
    pub nat_port: u16,
    /// Index into the shard's NAT address list.
    pub(super) nat_addr: u16,
    pub proto: u8,
    pub uplink: UplinkId,
    pub(super) tcp: u8,
    pub(super) flags: u8,
    /// The SYN race this session belongs to (seed 001 [0036]), or `NONE`:
    /// a racing copy, a loser waiting for its SYN+ACK, or a first-payload
    /// winner whose sequence numbers are translated.
    pub(crate) race: u32,
    /// The client's MAC, learnt from its packets, for the way back.
    pub client_mac: [u8; 6],
    /// A service session (seed 000 [31]): the local server it was given
    /// to, whose load it counts as; `NO_SERVER` otherwise.
    pub server: u16,
}

/// The cold half of a session (see [`Session`]): written by every packet
/// (counters) but read by none on its way, so its line is a store the
/// burst lookup touches ahead, never a load a packet waits for; 40 bytes.
#[derive(Clone, Debug)]
pub struct SessionCold {
    /// Bytes out and in, 48 bits each (saturating; see
    /// [`SessionCold::bytes_out`]).
    pub(super) bytes_lo: [u32; 2],
    pub(super) bytes_hi: [u16; 2],
    /// Saturating: a session past 4 billion packets a direction stops
    /// counting packets, its byte counters go on.
    pub packets_out: u32,
    pub packets_in: u32,
    /// Chain of the sessions of one mapping; `next` doubles as the free
    /// list link of a free slot.
    pub(super) next: u32,
    pub(super) prev: u32,
    /// Links of the eviction list (older, newer neighbour), `NONE` at its
    /// ends, while the `UNANSWERED` flag is set (unanswered, or a closed
    /// TCP connection: see `evict`). Off the list, the TCP window tracker
    /// keeps the inside host's receive edge (`rcv_nxt`, flag `WIN`) in
    /// `older` and its highest sequence end (`snd_end`, flag `SENT`) in
    /// `newer`; a connection that closes gives them back to the list.
    pub(super) older: u32,
    pub(super) newer: u32,
    /// The largest window field the inside host advertised (not on a SYN),
    /// in its scaled unit.
    pub(super) win_max: u16,
    /// Window scale shifts from the SYNs: inside's in the low nibble,
    /// outside's in the high one, 15 while not seen or absent.
    pub(super) wscale: u8,
}

/// `Session::server` of a session that is not a service session.
pub const NO_SERVER: u16 = u16::MAX;

// Hot: one cache line. With the cold half and its two index entries (8
// bytes each at the index's sized load, see `bucket`) a session takes at
// most 128 bytes.
const _: () = assert!(std::mem::size_of::<Session>() == 64);
const _: () = assert!(std::mem::size_of::<SessionCold>() == 40);
const _: () =
    assert!(std::mem::size_of::<Session>() + std::mem::size_of::<SessionCold>() + 2 * 8 <= 128);

impl SessionCold {
    pub(super) const FREE: SessionCold = SessionCold {
        bytes_lo: [0; 2],
        bytes_hi: [0; 2],
        packets_out: 0,
        packets_in: 0,
        next: NONE,
        prev: NONE,
        older: NONE,
        newer: NONE,
        win_max: 0,
        wscale: 0xff,
    };

    /// Bytes sent by the inside host (saturates at 2^48 - 1).
    pub fn bytes_out(&self) -> u64 {
        u64::from(self.bytes_lo[0]) | u64::from(self.bytes_hi[0]) << 32
    }

    /// Bytes received from outside (saturates at 2^48 - 1).
    pub fn bytes_in(&self) -> u64 {
        u64::from(self.bytes_lo[1]) | u64::from(self.bytes_hi[1]) << 32
    }

    /// Adds `len` bytes to one direction: one 32-bit add, the high 16 bits
    /// only on a carry.
    #[inline]
    pub(super) fn add_bytes(&mut self, inbound: bool, len: usize) {
        let d = usize::from(inbound);
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        let (lo, carry) = self.bytes_lo[d].overflowing_add(len);
        self.bytes_lo[d] = lo;
        if carry {
            match self.bytes_hi[d].checked_add(1) {
                Some(hi) => self.bytes_hi[d] = hi,
                None => self.bytes_lo[d] = u32::MAX,
            }
        }
    }
}

impl Session {
    pub(super) const FREE: Session = Session {
        client: [0; 16],
        remote: [0; 16],
        last_seen: Nanos::ZERO,
        client_port: 0,
        remote_port: 0,
        nat_port: 0,
        nat_addr: 0,
        proto: 0,
        uplink: 0,
        tcp: 0,
        flags: 0,
        race: NONE,
        client_mac: [0; 6],
        server: NO_SERVER,
    };

    pub(super) fn is_live(&self) -> bool {
        self.flags & LIVE != 0
    }

    pub(super) fn is_v6(&self) -> bool {
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

    /// Whether the session has not seen a packet from outside yet.
    pub fn unanswered(&self) -> bool {
        self.flags & UNANSWERED != 0 && self.tcp & seen::CLOSED_LISTED == 0
    }

    /// Whether this is a TCP session whose connection ended: FINs seen
    /// both ways (TIME_WAIT-like), or an RST.
    pub(super) fn tcp_closed(&self) -> bool {
        use seen::*;
        self.proto == proto::TCP
            && (self.tcp & RST != 0 || self.tcp & (FIN_OUT | FIN_IN) == FIN_OUT | FIN_IN)
    }

    pub(super) fn timeout(&self, cfg: &NatConfig) -> Nanos {
        // A losing race copy lives for the race timeout from its last
        // packet. A race copy nothing answered yet lives twice that (a
        // retransmitted SYN refreshes it), not for the transitory timeout:
        // long enough that a client's SYN retransmitted after the race
        // timeout still finds the race, whose silent copies then count as
        // timed out, so a rejecting uplink's RST or ICMP error reaches the
        // client (see race/decide.rs).
        if self.flags & LOSER != 0 {
            return cfg.race_timeout;
        }
        if self.race != NONE && self.unanswered() {
            return cfg.race_timeout.saturating_add(cfg.race_timeout);
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

    pub(super) fn on_tcp(&mut self, flags: u8, inbound: bool) {
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
pub(super) fn to16(a: IpAddr) -> [u8; 16] {
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
