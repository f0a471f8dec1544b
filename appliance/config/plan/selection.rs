//! The `[selection]` section (seed 001): the race mode, the RFC 2391
//! algorithm, the RTT cache and uplink health settings, and the policy
//! rules, as the `SelectionPolicy` every replicate and translate lcore
//! shares and the management core's `SelectConfig`.
//!
//! Invariant: with `mode = "off"` no rule races, whatever it says.
//! May import `crate::config`, `super` (err) and pipelines; nothing else.

use std::sync::Arc;

use pipelines::packet::flow::proto;
use pipelines::select::policy::{Policy, RaceMode, SelectionPolicy};
use pipelines::select::{Algorithm, SelectConfig};
use pipelines::Nanos;

use super::{err, ConfigError};
use crate::config::{OnUplinkDown, PolicyConfig, PolicyProtocol, SelectionMode, SelectionSection};

/// Uplink selection as planned: the policy every replicate and translate
/// lcore shares, and the management core's settings.
#[derive(Debug, Clone)]
pub struct SelectionPlan {
    /// "syn-ack", "first-payload" or "off".
    pub mode_name: String,
    pub policy: Arc<SelectionPolicy>,
    pub core: SelectConfig,
    pub publish_interval: std::time::Duration,
}

pub(super) fn plan_selection(s: &SelectionSection) -> Result<SelectionPlan, ConfigError> {
    let (mode, racing) = match s.mode {
        SelectionMode::Off => (RaceMode::SynAck, false),
        SelectionMode::Race(r) => (r, true),
    };
    check_ranges(s)?;
    let policies = plan_policies(&s.policies, racing, s.algorithm)?;
    Ok(SelectionPlan {
        mode_name: s.mode.name().to_string(),
        policy: Arc::new(SelectionPolicy {
            mode,
            policies,
            race_tcp: racing,
            algorithm: s.algorithm,
            probe_interval: Nanos::from_secs(s.probe_interval_s),
            reset_on_down: s.on_uplink_down == OnUplinkDown::Reset,
        }),
        core: SelectConfig {
            rtt_cache_ttl: Nanos::from_secs(s.rtt_cache_ttl_s),
            prefix_v4: s.dest_prefix_v4,
            prefix_v6: s.dest_prefix_v6,
            cache_capacity: s.cache_entries,
            tie_margin_pct: s.tie_margin_pct,
            tcp_session_weight: s.tcp_session_weight,
            udp_session_weight: s.udp_session_weight,
            unanswered_limit: s.unanswered_limit,
            ..SelectConfig::default()
        },
        publish_interval: std::time::Duration::from_millis(s.publish_interval_ms),
    })
}

/// Every numeric setting of the section within its allowed range.
fn check_ranges(s: &SelectionSection) -> Result<(), ConfigError> {
    let path = |f: &str| format!("selection.{f}");
    let ranges: [(&str, u64, u64, u64); 7] = [
        ("rtt_cache_ttl_s", s.rtt_cache_ttl_s, 1, 86_400),
        ("race_timeout_ms", s.race_timeout_ms, 10, 600_000),
        ("probe_interval_s", s.probe_interval_s, 1, 3_600),
        ("publish_interval_ms", s.publish_interval_ms, 1, 10_000),
        ("unanswered_limit", u64::from(s.unanswered_limit), 1, 1_000),
        ("cache_entries", s.cache_entries as u64, 1, 100_000_000),
        (
            "max_races_per_shard",
            s.max_races_per_shard as u64,
            1,
            100_000_000,
        ),
    ];
    for (name, v, lo, hi) in ranges {
        if !(lo..=hi).contains(&v) {
            return err(path(name), format!("{v}; allowed: {lo}..={hi}"));
        }
    }
    if s.dest_prefix_v4 == 0 || s.dest_prefix_v4 > 32 {
        return err(
            path("dest_prefix_v4"),
            format!("{}; allowed: 1..=32", s.dest_prefix_v4),
        );
    }
    if s.dest_prefix_v6 == 0 || s.dest_prefix_v6 > 128 {
        return err(
            path("dest_prefix_v6"),
            format!("{}; allowed: 1..=128", s.dest_prefix_v6),
        );
    }
    if s.tie_margin_pct > 100 {
        return err(
            path("tie_margin_pct"),
            format!("{}; allowed: 0..=100", s.tie_margin_pct),
        );
    }
    for (name, v) in [
        ("tcp_session_weight", s.tcp_session_weight),
        ("udp_session_weight", s.udp_session_weight),
    ] {
        if !(1..=1_000).contains(&v) {
            return err(path(name), format!("{v}; allowed: 1..=1000"));
        }
    }
    Ok(())
}

/// The rules, in order; a rule without an algorithm takes the section's.
fn plan_policies(
    rules: &[PolicyConfig],
    racing: bool,
    algorithm: Algorithm,
) -> Result<Vec<Policy>, ConfigError> {
    let mut policies = Vec::new();
    for (i, p) in rules.iter().enumerate() {
        let protocol = match p.protocol {
            PolicyProtocol::Any => None,
            PolicyProtocol::Tcp => Some(proto::TCP),
            PolicyProtocol::Udp => Some(proto::UDP),
            PolicyProtocol::Icmp => Some(proto::ICMP),
        };
        if p.ports[0] > p.ports[1] {
            return err(
                format!("selection.policies[{i}].ports"),
                format!(
                    "[{}, {}]: first must not exceed last",
                    p.ports[0], p.ports[1]
                ),
            );
        }
        policies.push(Policy {
            protocol,
            ports: (p.ports[0], p.ports[1]),
            race: p.race && racing,
            algorithm: p.algorithm.unwrap_or(algorithm),
        });
    }
    Ok(policies)
}
