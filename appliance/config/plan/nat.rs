//! The `[nat]` section: the NAT port range split between shards, session
//! limits, timeouts, filtering and the hash seed, as one `NatConfig` every
//! translate lcore gets.
//!
//! Invariant: the port range gives every shard at least 64 ports.
//! May import `crate::config`, `super` (err) and pipelines; nothing else.

use pipelines::frag::FragLimits;
use pipelines::nat::{HostLimits, NatConfig};
use pipelines::topology::NatPortRange;
use pipelines::Nanos;

use super::{err, ConfigError};
use crate::config::{BackendKind, Config, NatSection};

/// The NAT settings and the whole NAT port range, for `shards` shards.
pub(super) fn plan_nat(
    cfg: &Config,
    shards: u16,
) -> Result<(NatConfig, NatPortRange), ConfigError> {
    let n = &cfg.nat;
    let [first, last] = n.port_range;
    if first == 0 || first > last {
        return err(
            "nat.port_range",
            format!("[{first}, {last}]; need 1 <= first <= last <= 65535"),
        );
    }
    if usize::from(last - first) + 1 < usize::from(shards) * 64 {
        return err(
            "nat.port_range",
            format!("[{first}, {last}] is too small for {shards} shards (at least 64 ports each)"),
        );
    }
    if n.max_sessions_per_shard == 0 || n.max_sessions_per_shard > 16 * 1024 * 1024 {
        return err(
            "nat.max_sessions_per_shard",
            format!("{}; allowed: 1..=16777216", n.max_sessions_per_shard),
        );
    }
    for (name, v) in [
        ("udp_idle_timeout_s", n.udp_idle_timeout_s),
        ("tcp_established_timeout_s", n.tcp_established_timeout_s),
        ("tcp_transitory_timeout_s", n.tcp_transitory_timeout_s),
        ("tcp_closed_timeout_s", n.tcp_closed_timeout_s),
        ("icmp_timeout_s", n.icmp_timeout_s),
    ] {
        if v == 0 || v > 7 * 24 * 3600 {
            return err(
                format!("nat.{name}"),
                format!("{v}; allowed: 1..=604800 seconds"),
            );
        }
    }
    if !(10..=600_000).contains(&n.sweep_interval_ms) {
        return err(
            "nat.sweep_interval_ms",
            format!("{}; allowed: 10..=600000", n.sweep_interval_ms),
        );
    }
    let hosts = plan_hosts(n, shards)?;
    let fragments = plan_fragments(cfg, shards)?;
    // Replays of captures must be identical run after run.
    let seed = n.seed.unwrap_or_else(|| match cfg.backend {
        BackendKind::Pcap => 0,
        _ => rand::random(),
    });
    let nat = NatConfig {
        filtering: n.filtering,
        sweep_interval: Nanos::from_millis(n.sweep_interval_ms),
        port_preservation: n.port_preservation,
        seed,
        max_sessions: n.max_sessions_per_shard,
        udp_idle_timeout: Nanos::from_secs(n.udp_idle_timeout_s),
        tcp_established_timeout: Nanos::from_secs(n.tcp_established_timeout_s),
        tcp_transitory_timeout: Nanos::from_secs(n.tcp_transitory_timeout_s),
        tcp_closed_timeout: Nanos::from_secs(n.tcp_closed_timeout_s),
        icmp_timeout: Nanos::from_secs(n.icmp_timeout_s),
        race_timeout: Nanos::from_millis(cfg.selection.race_timeout_ms),
        max_races: cfg.selection.max_races_per_shard,
        hosts,
        mapping_max_sessions: plan_mapping_limit(n.mapping_max_sessions)?,
        fragments,
    };
    Ok((nat, NatPortRange { first, last }))
}

/// `mapping_max_sessions`: a mapping lives in one shard, so the limit is
/// not divided.
fn plan_mapping_limit(v: u32) -> Result<u16, ConfigError> {
    match u16::try_from(v) {
        Ok(m) if m > 0 => Ok(m),
        _ => err(
            "nat.mapping_max_sessions",
            format!("{v}; allowed: 1..=65535"),
        ),
    }
}

/// The per-host limits of one shard: the site-wide figures divided across
/// the shards (rounded up), the host table size as configured.
fn plan_hosts(n: &NatSection, shards: u16) -> Result<HostLimits, ConfigError> {
    for (name, v, max) in [
        ("host_max_sessions", n.host_max_sessions, 16 * 1024 * 1024),
        ("host_new_per_second", n.host_new_per_second, 10_000_000),
        ("host_new_burst", n.host_new_burst, 10_000_000),
        ("host_max_races", n.host_max_races, 1_000_000),
    ] {
        if v == 0 || v > max {
            return err(format!("nat.{name}"), format!("{v}; allowed: 1..={max}"));
        }
    }
    if n.max_hosts_per_shard == 0 || n.max_hosts_per_shard > 1024 * 1024 {
        return err(
            "nat.max_hosts_per_shard",
            format!("{}; allowed: 1..=1048576", n.max_hosts_per_shard),
        );
    }
    let share = |v: u32| v.div_ceil(u32::from(shards.max(1)));
    Ok(HostLimits {
        max_sessions: share(n.host_max_sessions),
        new_per_second: share(n.host_new_per_second),
        new_burst: share(n.host_new_burst),
        max_races: share(n.host_max_races),
        max_hosts: n.max_hosts_per_shard,
    })
}

/// `[fragments]`: each shard's tracker. Held fragments are packet buffers
/// taken from the pool: all shards together may hold at most half of it,
/// so a fragment flood cannot starve reception.
fn plan_fragments(cfg: &Config, shards: u16) -> Result<FragLimits, ConfigError> {
    let f = &cfg.fragments;
    for (name, v, max) in [
        ("max_held_per_shard", f.max_held_per_shard, 65_536),
        (
            "max_datagrams_per_shard",
            f.max_datagrams_per_shard,
            1_048_576,
        ),
        (
            "max_fragments_per_datagram",
            f.max_fragments_per_datagram,
            8_192,
        ),
    ] {
        if v == 0 || v > max {
            return err(
                format!("fragments.{name}"),
                format!("{v}; allowed: 1..={max}"),
            );
        }
    }
    if !(10..=60_000).contains(&f.timeout_ms) {
        return err(
            "fragments.timeout_ms",
            format!("{}; allowed: 10..=60000", f.timeout_ms),
        );
    }
    let pool = match (&cfg.backend, &cfg.dpdk) {
        (BackendKind::Dpdk, Some(d)) => d.mbufs_per_socket as usize,
        (BackendKind::Dpdk, None) => crate::config::DpdkConfig::default().mbufs_per_socket as usize,
        _ => cfg.runtime.pool_size,
    };
    let held = f
        .max_held_per_shard
        .saturating_mul(usize::from(shards.max(1)));
    if held > pool / 2 {
        return err(
            "fragments.max_held_per_shard",
            format!(
                "{} x {shards} shards = {held} held buffers; allowed: at most half of the \
                 packet buffers ({pool} / 2 = {})",
                f.max_held_per_shard,
                pool / 2
            ),
        );
    }
    Ok(FragLimits {
        max_held: f.max_held_per_shard,
        max_datagrams: f.max_datagrams_per_shard,
        timeout: Nanos::from_millis(f.timeout_ms),
        max_fragments: f.max_fragments_per_datagram,
    })
}
