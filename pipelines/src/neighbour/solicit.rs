//! When to send the next ARP request / neighbour solicitation for each
//! dynamic next hop ([`Solicitor`], pure: `now` is an argument), and
//! [`write_request`], which builds one.

use std::net::IpAddr;

use super::table::{Neighbours, NextHop};
use super::{arp, ndisc};
use crate::packet::time::Nanos;
use crate::topology::Topology;
use crate::wire::{ipv6, ndisc as nd};

/// Longest request [`write_request`] builds (an NS with a VLAN tag).
pub const REQUEST_MAX_LEN: usize = 18 + ipv6::HEADER_LEN + nd::BODY_LEN + nd::LLA_OPT_LEN;

/// Writes an ARP request or a neighbour solicitation for `hop` into `out`
/// (at least [`REQUEST_MAX_LEN`] bytes) as sent on its port; returns the
/// frame length, or `None` if the hop has no address to ask for or the
/// source address is missing.
pub fn write_request(topo: &Topology, hop: &NextHop, out: &mut [u8]) -> Option<usize> {
    let port = topo.ports.get(usize::from(hop.port))?;
    let uplink = topo.uplinks.get(usize::from(hop.uplink))?;
    match hop.ip? {
        IpAddr::V4(target) => {
            let src = uplink.nat_addrs.iter().find_map(|a| match a {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            })?;
            arp::write_request(port, src, target, out)
        }
        IpAddr::V6(target) => {
            let src = uplink.nat_addrs.iter().find_map(|a| match a {
                IpAddr::V6(a) => Some(*a),
                IpAddr::V4(_) => None,
            })?;
            ndisc::write_solicitation(port, src, target, out)
        }
    }
}

/// When to ask for each dynamic next hop: every `retry` while it is
/// unresolved, every `refresh` once resolved (a next hop whose MAC changes,
/// say after a router failover, is learned from its next reply, or from a
/// gratuitous ARP / NA with Override in between once the lock time has
/// passed). Owned by the one lcore that sends the requests.
#[derive(Debug)]
pub struct Solicitor {
    next: Vec<Nanos>,
    pub retry: Nanos,
    pub refresh: Nanos,
    /// Requests written, for stats.
    pub sent: u64,
}

impl Solicitor {
    pub const RETRY: Nanos = Nanos::from_secs(1);
    pub const REFRESH: Nanos = Nanos::from_secs(30);

    pub fn new(n: &Neighbours) -> Solicitor {
        Solicitor {
            next: vec![Nanos::ZERO; n.hops.len()],
            retry: Self::RETRY,
            refresh: Self::REFRESH,
            sent: 0,
        }
    }

    /// Calls `send(hop)` for each dynamic next hop whose request is due at
    /// `now`; `send` returns whether the request went out (if not, it is
    /// tried again on the next call). A request that went out is recorded
    /// in the hop, so that its answer is accepted.
    pub fn poll(&mut self, now: Nanos, n: &Neighbours, mut send: impl FnMut(&NextHop) -> bool) {
        for (i, hop) in n.hops.iter().enumerate() {
            if hop.fixed || hop.ip.is_none() || self.next.get(i).is_none_or(|&t| now < t) {
                continue;
            }
            if send(hop) {
                self.sent += 1;
                hop.asked(now);
                let every = if hop.mac().is_some() {
                    self.refresh
                } else {
                    self.retry
                };
                self.next[i] = now.saturating_add(every);
            }
        }
    }
}
