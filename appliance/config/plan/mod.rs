//! Validation: a [`Config`] becomes a [`Plan`] — resolved names, expanded
//! addresses, stage placement, rings and queues — or a [`ConfigError`] that
//! names the offending field and what is allowed. Nothing starts before this
//! has succeeded.
//!
//! [`validate_with_cpus`] runs one named step per concern, in a fixed order
//! (the first error found is the one reported):
//! - `ports`: ports, the LAN, uplinks and their NAT addresses, the topology;
//! - `lcores`: burst/ring/pool sizes, lcore groups, rings, queues;
//! - `nat`: the NAT section;
//! - `selection`: uplink selection (seed 001);
//! - `backends`: what only one backend has (sim, pcap, af_packet, dpdk);
//! - `redirection`: service addresses and the redirection database;
//! - `describe`: the text `appliance check` prints.
//!
//! The plan types live with the step that builds them and are re-exported
//! here; the rest of the tree uses `config::plan::X`.
//! May import `crate::config` and pipelines; never the runtime, the ports,
//! the dataplane, mgmt or `lab`.

mod backends;
mod describe;
mod lcores;
mod nat;
mod ports;
mod redirection;
mod redis_store;
mod selection;

use std::sync::Arc;

use pipelines::nat::NatConfig;
use pipelines::neighbour::Neighbours;
use pipelines::topology::Topology;

use crate::config::{AfPacketConfig, BackendKind, Config, DpdkConfig, Mode};

pub use crate::config::{ConfigError, Stage};
pub use backends::{SimPlan, SimUplinkPlan, SIM_PROXY_DELAY_MS_DEFAULT};
pub use lcores::{GroupPlan, HairpinRingPlan, LcorePlan, RingKind, RingPlan};
pub use ports::PortPlan;
pub use redirection::{plan_redirection, RedirectStore, RedirectionPlan};
pub use redis_store::{redact, RedisStore, Secret};
pub use selection::SelectionPlan;

fn err<T>(path: impl Into<String>, msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        path: path.into(),
        msg: msg.into(),
    })
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub backend: BackendKind,
    pub topology: Arc<Topology>,
    /// The uplinks' next hops, built beside `topology` from its uplinks: the
    /// one table classify learns into, transmit and the solicitor read, and
    /// stats shows.
    pub neighbours: Arc<Neighbours>,
    pub ports: Vec<PortPlan>,
    pub nat: NatConfig,
    pub mode: Mode,
    pub burst_size: usize,
    pub ring_size: usize,
    pub pool_size: usize,
    /// `[runtime] huge_pages`: set on the global allocator before the
    /// tables are built.
    pub huge_pages: crate::memory::HugePages,
    pub lcores: Vec<LcorePlan>,
    pub groups: Vec<GroupPlan>,
    pub rings: Vec<RingPlan>,
    /// One per translate lcore when there are several NAT shards, else none.
    pub hairpin_rings: Vec<HairpinRingPlan>,
    /// RX queues per port (one per lcore of the first group).
    pub rx_queues: usize,
    /// TX queues per port (one per lcore of the group holding transmit).
    pub tx_queues: usize,
    pub sim: Option<SimPlan>,
    pub selection: SelectionPlan,
    /// The af_packet backend's ring sizes (defaults unless configured).
    pub af_packet: AfPacketConfig,
    /// The DPDK backend's settings; `Some` exactly with backend = "dpdk".
    pub dpdk: Option<DpdkConfig>,
    /// Service addresses and the redirection database (seed 000); `None`
    /// when no service is configured.
    pub redirection: Option<RedirectionPlan>,
    /// The control socket's path from `[control] socket`, if given.
    pub control_socket: Option<std::path::PathBuf>,
    /// The control socket's group id from `[control] group` (mode 0660).
    pub control_group: Option<u32>,
    /// Where to serve Prometheus metrics, from `[telemetry] prometheus`.
    pub prometheus: Option<std::net::SocketAddr>,
    /// The NAT event log's sinks, from `[telemetry.nat_log]`; `None` when
    /// neither is configured.
    pub nat_log: Option<NatLogPlan>,
    /// NAT events per translate lcore's ring, from `[telemetry]
    /// event_ring_size`.
    pub event_ring_size: usize,
}

/// `[telemetry.nat_log]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NatLogPlan {
    pub json_file: Option<std::path::PathBuf>,
    pub ipfix_collector: Option<std::net::SocketAddr>,
    pub template_refresh: std::time::Duration,
    pub observation_domain: u32,
}

impl Plan {
    pub fn shards(&self) -> u16 {
        self.topology.shards
    }

    pub fn group_of(&self, stage: Stage) -> usize {
        self.groups
            .iter()
            .position(|g| g.stages.contains(&stage))
            .unwrap_or(0)
    }
}

pub fn validate(cfg: &Config) -> Result<Plan, ConfigError> {
    validate_with_cpus(cfg, available_cpus())
}

/// Longest `neighbours.lock_time_ms` (a minute: longer would leave a next
/// hop that moved without announcing an answer unreachable for too long).
const LOCK_TIME_MAX_MS: u64 = 60_000;

/// The next hops' table with the configured lock time.
fn plan_neighbours(cfg: &Config, topology: &Topology) -> Result<Neighbours, ConfigError> {
    let ms = cfg.neighbours.lock_time_ms;
    if ms > LOCK_TIME_MAX_MS {
        return err(
            "neighbours.lock_time_ms",
            format!("{ms}; allowed: 0..={LOCK_TIME_MAX_MS} milliseconds"),
        );
    }
    Ok(Neighbours::new(&topology.uplinks).with_lock_time(pipelines::Nanos::from_millis(ms)))
}

/// `[control] socket`: an absolute or relative path that fits a Unix
/// socket address (107 bytes on Linux).
fn plan_control(cfg: &Config) -> Result<Option<std::path::PathBuf>, ConfigError> {
    let Some(p) = &cfg.control.socket else {
        return Ok(None);
    };
    let len = p.as_os_str().len();
    if len == 0 || len > 107 {
        return err(
            "control.socket",
            format!("{len} bytes; allowed: a path of 1..=107 bytes (a Unix socket address)"),
        );
    }
    Ok(Some(p.clone()))
}

/// `[control] group`: a group of this machine, by name (its gid).
fn plan_control_group(cfg: &Config) -> Result<Option<u32>, ConfigError> {
    let Some(name) = &cfg.control.group else {
        return Ok(None);
    };
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(Some(g.gid.as_raw())),
        Ok(None) => err(
            "control.group",
            format!("`{name}`: no such group on this machine (see /etc/group or `getent group`)"),
        ),
        Err(e) => err(
            "control.group",
            format!("`{name}`: looking it up failed: {e}"),
        ),
    }
}

/// `[telemetry] prometheus`: a socket address (`IP:port`, IPv6 in
/// brackets) with a port other than 0.
fn plan_prometheus(cfg: &Config) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    let Some(s) = &cfg.telemetry.prometheus else {
        return Ok(None);
    };
    match s.parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(Some(a)),
        _ => err(
            "telemetry.prometheus",
            format!("{s:?}; allowed: an IP address and a port 1..=65535, such as \"127.0.0.1:9417\" or \"[::1]:9417\""),
        ),
    }
}

/// `[telemetry.nat_log]`: a non-empty file path, a collector `IP:port`
/// (port not 0), a template refresh of 1..=86400 s.
/// The largest `[telemetry] event_ring_size` (16 times the default).
pub const EVENT_RING_MAX: usize = 1 << 18;

/// `[telemetry] event_ring_size`: 1..=[`EVENT_RING_MAX`].
fn plan_event_ring(cfg: &Config) -> Result<usize, ConfigError> {
    let n = cfg
        .telemetry
        .event_ring_size
        .unwrap_or(crate::config::EVENT_RING_DEFAULT);
    if !(1..=EVENT_RING_MAX).contains(&n) {
        return err(
            "telemetry.event_ring_size",
            format!("{n}; allowed: 1..={EVENT_RING_MAX} events"),
        );
    }
    Ok(n)
}

fn plan_nat_log(cfg: &Config) -> Result<Option<NatLogPlan>, ConfigError> {
    let c = &cfg.telemetry.nat_log;
    if let Some(p) = &c.json_file {
        if p.as_os_str().is_empty() || p.to_str().is_some_and(|s| s.ends_with('/')) {
            return err(
                "telemetry.nat_log.json_file",
                format!("{p:?}; allowed: the path of a file (appended to, created if missing)"),
            );
        }
    }
    let collector = match &c.ipfix_collector {
        None => None,
        Some(s) => match s.parse::<std::net::SocketAddr>() {
            Ok(a) if a.port() != 0 && !a.ip().is_unspecified() => Some(a),
            _ => {
                return err(
                    "telemetry.nat_log.ipfix_collector",
                    format!("{s:?}; allowed: an IP address and a UDP port 1..=65535, such as \"127.0.0.1:4739\" or \"[::1]:4739\""),
                )
            }
        },
    };
    if !(1..=86_400).contains(&c.ipfix_template_refresh_s) {
        return err(
            "telemetry.nat_log.ipfix_template_refresh_s",
            format!("{}; allowed: 1..=86400 seconds", c.ipfix_template_refresh_s),
        );
    }
    if c.json_file.is_none() && collector.is_none() {
        return Ok(None);
    }
    Ok(Some(NatLogPlan {
        json_file: c.json_file.clone(),
        ipfix_collector: collector,
        template_refresh: std::time::Duration::from_secs(c.ipfix_template_refresh_s),
        observation_domain: c.ipfix_observation_domain,
    }))
}

/// `[icmp]`: every rate and size at least 1 (a limit of 0 would silence
/// the appliance: turn `uplinks[].answer_ping` off instead).
fn plan_icmp(cfg: &Config) -> Result<pipelines::topology::IcmpLimits, ConfigError> {
    let c = &cfg.icmp;
    for (key, v, max) in [
        ("rate_per_second", c.rate_per_second as usize, 1_000_000),
        ("burst", c.burst as usize, 1_000_000),
        ("max_destinations", c.max_destinations, 1 << 20),
        ("global_per_second", c.global_per_second as usize, 1_000_000),
    ] {
        if !(1..=max).contains(&v) {
            return err(format!("icmp.{key}"), format!("{v}; allowed: 1..={max}"));
        }
    }
    Ok(pipelines::topology::IcmpLimits {
        rate_per_second: c.rate_per_second,
        burst: c.burst,
        max_destinations: c.max_destinations,
        global_per_second: c.global_per_second,
    })
}

pub fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// [`validate`] against a machine with `cpus` CPUs (tests use this).
pub fn validate_with_cpus(cfg: &Config, cpus: usize) -> Result<Plan, ConfigError> {
    let ports = ports::plan_ports(cfg)?;
    let lan = ports::plan_lan(cfg)?;
    let uplinks = ports::plan_uplinks(cfg, &lan)?;
    lcores::check_sizes(&cfg.runtime)?;
    let (lcores, groups) = lcores::plan_lcores(&cfg.runtime, cpus)?;
    let shards = lcores::shards(&groups);
    let (nat, nat_ports) = nat::plan_nat(cfg, shards)?;
    let selection = selection::plan_selection(&cfg.selection)?;
    ports::check_mtus(&ports, &lan, &uplinks)?;
    let icmp = plan_icmp(cfg)?;
    let topology = ports::topology(&ports, lan, uplinks, nat_ports, shards, icmp);
    let neighbours = Arc::new(plan_neighbours(cfg, &topology)?);
    let sim = backends::plan_sim_section(cfg, &topology)?;
    let af_packet = backends::plan_af_packet(cfg)?;
    let dpdk = backends::plan_dpdk(cfg, &groups)?;
    let redirection = plan_redirection(&cfg.redirection, &topology)?;
    let rt = &cfg.runtime;
    Ok(Plan {
        backend: cfg.backend,
        topology,
        neighbours,
        ports,
        nat,
        mode: rt.mode,
        burst_size: rt.burst_size,
        ring_size: rt.ring_size,
        pool_size: rt.pool_size,
        huge_pages: rt.huge_pages,
        lcores,
        rings: lcores::plan_rings(&groups),
        hairpin_rings: lcores::plan_hairpin_rings(&groups),
        rx_queues: lcores::rx_queues(&groups),
        tx_queues: lcores::tx_queues(&groups),
        groups,
        sim,
        selection,
        af_packet,
        dpdk,
        redirection,
        control_socket: plan_control(cfg)?,
        control_group: plan_control_group(cfg)?,
        prometheus: plan_prometheus(cfg)?,
        nat_log: plan_nat_log(cfg)?,
        event_ring_size: plan_event_ring(cfg)?,
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) use tests::{test_plan, TEST_PIPELINE_3_SHARDS};
