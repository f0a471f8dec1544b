//! The shard's settings: limits, timeouts, filtering mode.

use super::hosts::HostLimits;
use crate::packet::time::Nanos;

/// Which unsolicited inbound packets reach an existing mapping (RFC 4787
/// section 5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Filtering {
    /// Any remote may send to the mapping's outside endpoint.
    EndpointIndependent,
    /// Only remote addresses the inside endpoint has sent to.
    AddressDependent,
    /// Only the exact remote endpoints the inside endpoint has sent to: the
    /// session record keeps (SA, SP) (seed 000 [72]). The default.
    #[default]
    AddressAndPortDependent,
}

impl Filtering {
    pub const NAMES: [&'static str; 3] = [
        "endpoint-independent",
        "address-dependent",
        "address-and-port-dependent",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Filtering::EndpointIndependent => Self::NAMES[0],
            Filtering::AddressDependent => Self::NAMES[1],
            Filtering::AddressAndPortDependent => Self::NAMES[2],
        }
    }
}

impl std::str::FromStr for Filtering {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "endpoint-independent" => Ok(Filtering::EndpointIndependent),
            "address-dependent" => Ok(Filtering::AddressDependent),
            "address-and-port-dependent" => Ok(Filtering::AddressAndPortDependent),
            _ => Err(format!(
                "unknown filtering `{s}`; allowed: {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct NatConfig {
    /// Most sessions this shard holds; further new flows are dropped and
    /// counted as `table_full` (existing sessions are never evicted for
    /// them: a flood of new flows cannot push out live connections).
    pub max_sessions: usize,
    /// Idle timeout of artificial UDP sessions (seed 000 [73]).
    pub udp_idle_timeout: Nanos,
    pub tcp_established_timeout: Nanos,
    /// TCP sessions that are opening or closing (RFC 5382 transitory).
    pub tcp_transitory_timeout: Nanos,
    /// TCP sessions after a RST.
    pub tcp_closed_timeout: Nanos,
    pub icmp_timeout: Nanos,
    pub filtering: Filtering,
    /// The sweep visits every session at least once per interval (the
    /// periodic pass of seed 000 [73]), in bounded slices.
    pub sweep_interval: Nanos,
    /// Keep the inside port as the NAT port when it is free and inside this
    /// shard's slice (RFC 4787 REQ-? "port preservation", a MAY).
    pub port_preservation: bool,
    /// Keys the index hashes and the port randomisation. A fresh random
    /// value per run in production; fixed in tests.
    pub seed: u64,
    /// How long a losing race copy waits for its SYN+ACK (to answer it with
    /// an RST) before it is freed and counted unanswered.
    pub race_timeout: Nanos,
    /// Races (SYN races in progress, plus first-payload connections that
    /// keep a sequence offset) the shard holds at once.
    pub max_races: usize,
    /// Per inside host limits in this shard (see [`HostLimits`]).
    pub hosts: HostLimits,
    /// Most live sessions one mapping (an inside endpoint's NAT address
    /// and port on an uplink) holds: further new sessions on it, from
    /// inside to another remote or admitted from outside, are refused
    /// (`mapping_sessions_limit`). Service mappings (a server endpoint
    /// behind a service address) are not limited by it.
    pub mapping_max_sessions: u16,
    /// The shard's fragment tracker (`[fragments]`, see `crate::frag`).
    pub fragments: crate::frag::FragLimits,
}

/// Eviction starts when a shard holds this share of `max_sessions`, in
/// percent: a new outbound flow then first removes the oldest session that
/// never saw an answer.
pub const EVICT_AT_PERCENT: usize = 90;

impl NatConfig {
    /// Live sessions from which a new outbound flow evicts.
    pub fn evict_at(&self) -> usize {
        self.max_sessions / 100 * EVICT_AT_PERCENT
            + self.max_sessions % 100 * EVICT_AT_PERCENT / 100
    }
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
            filtering: Filtering::default(),
            sweep_interval: Nanos::from_secs(1),
            port_preservation: true,
            seed: 0x5EED_0FA7_7E57,
            race_timeout: Nanos::from_secs(3),
            max_races: 16_384,
            hosts: HostLimits::default(),
            mapping_max_sessions: 256,
            fragments: crate::frag::FragLimits::default(),
        }
    }
}
