//! Counters and gauges of one shard, readable by the management core.

use crate::packet::counter::Counter;
use crate::packet::flow::proto;
use crate::topology::UplinkId;

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
    /// Sessions removed by the operator (`appliance sessions flush`).
    pub flushed: Counter,
    /// New sessions refused because their inside host had
    /// `host_max_sessions` live sessions in this shard.
    pub host_sessions_limit: Counter,
    /// New sessions refused by their inside host's token bucket
    /// (`host_new_per_second`, `host_new_burst`).
    pub host_rate_limit: Counter,
    /// Races not started (the SYN left by one uplink) because their inside
    /// host had `host_max_races` race copies waiting for an answer.
    pub host_races_limit: Counter,
    /// New sessions of a host the shard did not track refused because the
    /// host table held `max_hosts` hosts.
    pub hosts_table_full: Counter,
    /// Sessions that never saw an answer, removed (oldest first) to make
    /// room for a new flow in a nearly full shard.
    pub evicted_unanswered: Counter,
    /// Closed TCP sessions (FINs both ways, or an RST), removed (oldest
    /// first, on the same list as unanswered ones) to make room for a new
    /// flow in a nearly full shard.
    pub evicted_closed: Counter,
    /// New sessions refused because their mapping had
    /// `mapping_max_sessions` live sessions.
    pub mapping_sessions_limit: Counter,
    /// Gauges of the shard's fragment tracker (set by translate's sweep):
    /// later fragments held (waiting for their first fragment or for room
    /// in an output burst) and datagrams tracked.
    pub fragments_held: Counter,
    pub fragment_datagrams: Counter,
    /// Fragments that reached this shard's tracker (first and later ones,
    /// whatever became of them).
    pub fragments: Counter,
    /// The hosts this shard refused most, by refusals (unordered; an empty
    /// slot has `refusals` 0).
    pub top: [TopHost; TOP_HOSTS],
    /// Per uplink, indexed by [`UplinkId`].
    pub uplinks: Vec<UplinkCounters>,
    /// Per local server behind a service address (seed 000 [75]): its live
    /// TCP sessions and artificial UDP sessions in this shard.
    pub servers: Vec<ServerCounters>,
}

/// Top offenders each shard publishes.
pub const TOP_HOSTS: usize = 8;

/// One slot of a shard's top offenders. Written by the shard alone, read by
/// the management core without locks: a read racing an update may pair one
/// host's address with the previous holder's counts, which the next
/// snapshot corrects.
#[derive(Debug, Default)]
pub struct TopHost {
    /// The address in its 16-byte form (IPv4 mapped), as two halves.
    addr_hi: Counter,
    addr_lo: Counter,
    pub refusals: Counter,
    /// The host's live sessions in this shard when last updated.
    pub sessions: Counter,
}

impl TopHost {
    pub(super) fn publish(&self, addr: &[u8; 16], refusals: u64, sessions: u32) {
        let a = u128::from_be_bytes(*addr);
        self.addr_hi.set((a >> 64) as u64);
        self.addr_lo.set(a as u64);
        self.refusals.set(refusals);
        self.sessions.set(u64::from(sessions));
    }

    /// The host, its refusals and its live sessions; `None` for an empty
    /// slot.
    pub fn read(&self) -> Option<(std::net::IpAddr, u64, u64)> {
        let refusals = self.refusals.get();
        if refusals == 0 {
            return None;
        }
        let a = (u128::from(self.addr_hi.get()) << 64) | u128::from(self.addr_lo.get());
        let v6 = std::net::Ipv6Addr::from(a);
        let ip = match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => std::net::IpAddr::V6(v6),
        };
        Some((ip, refusals, self.sessions.get()))
    }
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

impl NatCounters {
    pub(super) fn adjust_gauges(&self, protocol: u8, uplink: UplinkId, up: bool) {
        let bump = |c: &Counter| {
            c.set(if up {
                c.get() + 1
            } else {
                c.get().saturating_sub(1)
            })
        };
        let u = self.uplinks.get(usize::from(uplink));
        match protocol {
            proto::TCP => {
                bump(&self.tcp_sessions);
                if let Some(u) = u {
                    bump(&u.tcp_sessions);
                }
            }
            proto::UDP => {
                bump(&self.udp_sessions);
                if let Some(u) = u {
                    bump(&u.udp_sessions);
                }
            }
            _ => bump(&self.icmp_sessions),
        }
    }

    pub(super) fn adjust_server(&self, protocol: u8, server: u16, up: bool) {
        let Some(c) = self.servers.get(usize::from(server)) else {
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
}
