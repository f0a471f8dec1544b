//! The selection policy every replicate and translate lcore shares: which
//! traffic races (seed 001 [0043]), what decides a race, the RFC 2391
//! algorithm for what does not, and the uplinks a new flow may use.

use std::sync::Arc;

use crate::packet::counter::Counter;
use crate::packet::flow::{proto, FlowKey};
use crate::packet::time::Nanos;
use crate::select::{Algorithm, SelectConfig, Selector, Snapshot};
use crate::topology::{Topology, MAX_UPLINKS};

/// What decides a race.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RaceMode {
    /// The first SYN+ACK (seed 001 [0036]).
    #[default]
    SynAck,
    /// The first segment with payload (seed 001 [0031]-[0033]): handshakes
    /// go on over every uplink, so a transparent proxy that answers SYNs
    /// itself cannot win by doing so.
    FirstPayload,
}

impl RaceMode {
    pub const NAMES: [&'static str; 2] = ["syn-ack", "first-payload"];

    pub fn as_str(self) -> &'static str {
        match self {
            RaceMode::SynAck => Self::NAMES[0],
            RaceMode::FirstPayload => Self::NAMES[1],
        }
    }
}

impl std::str::FromStr for RaceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "syn-ack" => Ok(RaceMode::SynAck),
            "first-payload" => Ok(RaceMode::FirstPayload),
            _ => Err(format!("one of {}", Self::NAMES.join(", "))),
        }
    }
}

/// One selection rule: traffic it matches and how that traffic chooses.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// IP protocol number; `None` matches every protocol.
    pub protocol: Option<u8>,
    /// Inclusive destination port range (ICMP has port 0).
    pub ports: (u16, u16),
    /// New TCP connections race (seed 001 [0043]).
    pub race: bool,
    /// The RFC 2391 algorithm for what does not race, and the tiebreak.
    pub algorithm: Algorithm,
}

impl Policy {
    fn matches(&self, f: &FlowKey) -> bool {
        self.protocol.is_none_or(|p| p == f.proto)
            && (self.ports.0..=self.ports.1).contains(&f.dst_port)
    }
}

/// How uplinks are selected, shared by every replicate and translate lcore.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectionPolicy {
    pub mode: RaceMode,
    /// Rules in order; the first that matches applies.
    pub policies: Vec<Policy>,
    /// For traffic no rule matches: whether TCP races, and the algorithm.
    pub race_tcp: bool,
    pub algorithm: Algorithm,
    /// A down uplink gets one race copy this often (seed 001 [0054]).
    pub probe_interval: Nanos,
    /// Sessions on an uplink that went down are reset at their next
    /// outbound packet (TCP: an RST to the client; UDP and ICMP: moved to a
    /// healthy uplink) instead of being kept.
    pub reset_on_down: bool,
}

impl Default for SelectionPolicy {
    fn default() -> Self {
        SelectionPolicy {
            mode: RaceMode::SynAck,
            policies: Vec::new(),
            race_tcp: true,
            algorithm: Algorithm::WeightedLeastLoad,
            probe_interval: Nanos::from_secs(5),
            reset_on_down: false,
        }
    }
}

impl SelectionPolicy {
    /// (races, algorithm) for a flow.
    pub fn rule(&self, f: &FlowKey) -> (bool, Algorithm) {
        let tcp = f.proto == proto::TCP;
        match self.policies.iter().find(|p| p.matches(f)) {
            Some(p) => (p.race && tcp, p.algorithm),
            None => (self.race_tcp && tcp, self.algorithm),
        }
    }
}

/// How selection decisions were made on one lcore (replicate: SYNs;
/// translate: other new sessions). Read by the management core.
#[derive(Debug, Default)]
pub struct SelectionCounters {
    /// New connections sent by the RTT cache without a race.
    pub cache_hits: Counter,
    /// SYNs replicated for a race, and the copies made.
    pub races_planned: Counter,
    pub copies: Counter,
    /// Race copies sent to a down uplink to probe it.
    pub probes: Counter,
    /// Picks per RFC 2391 algorithm, indexed by `Algorithm::index`.
    pub by_algorithm: [Counter; 5],
    /// Translate: negative answers (an inbound RST, or an ICMP error quoting
    /// the copy) to race copies that had not answered; held back from the
    /// client while another copy could still answer.
    pub races_negative_answers: Counter,
    /// Translate: races every copy of which failed (negative answer or
    /// silent past the race timeout): the last negative answer reached the
    /// client.
    pub races_all_failed: Counter,
}

/// Bit masks of the uplinks with a NAT address of each family (v4, v6).
pub fn family_masks(topo: &Topology) -> [u64; 2] {
    let mut m = [0u64; 2];
    for (i, u) in topo.uplinks.iter().enumerate().take(MAX_UPLINKS) {
        for a in &u.nat_addrs {
            m[usize::from(a.is_ipv6())] |= 1 << i;
        }
    }
    m
}

/// The initial snapshot of a topology: every uplink healthy.
pub fn initial_snapshot(topo: &Topology) -> Arc<Snapshot> {
    let weights: Vec<u32> = topo.uplinks.iter().map(|u| u.weight.max(1)).collect();
    Arc::new(Snapshot::initial(&SelectConfig::default(), &weights))
}

/// Uplinks a new flow of `f` may use: healthy, not drained ones with a NAT
/// address of its family; if none, the healthy ones (drained included: a
/// drain never leaves a family without an uplink); if none is healthy,
/// every one of its family (trying a failed uplink beats dropping
/// everything).
pub fn candidates(families: &[u64; 2], selector: &Selector, f: &FlowKey) -> u64 {
    let fam = families[usize::from(f.dst.is_ipv6())];
    let snap = selector.snapshot();
    match fam & snap.usable_mask() {
        0 => match fam & snap.healthy_mask() {
            0 => fam,
            c => c,
        },
        c => c,
    }
}
