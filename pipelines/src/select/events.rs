//! What the data plane tells the management core about races.

use std::net::IpAddr;

use crate::packet::time::Nanos;
use crate::topology::UplinkId;

/// Sent by the data plane to the management core.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SelEvent {
    /// A SYN copy sent on `uplink` was answered (SYN+ACK, or the first
    /// payload in first-payload mode). `rtt` is `None` when the SYN was
    /// retransmitted (Karn: the sample is ambiguous). `decided` is true for
    /// the answer that decided a race (it stamps the entry's `raced_at`);
    /// `raced` is false for a connection that did not race (a cache hit or a
    /// policy without racing): its sample still updates the estimators.
    Answer {
        dst: IpAddr,
        uplink: UplinkId,
        rtt: Option<Nanos>,
        raced: bool,
        decided: bool,
    },
    /// A race copy on `uplink` toward `dst` lost to another uplink's answer
    /// with none of its own: silent within the race timeout, or a negative
    /// answer (an RST, or an ICMP error quoting it). Counts toward the
    /// uplink's health only with failures toward other destinations (see
    /// [`SelectionCore`](super::SelectionCore)).
    Unanswered { uplink: UplinkId, dst: IpAddr },
}
