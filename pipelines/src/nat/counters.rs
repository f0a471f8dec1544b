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
