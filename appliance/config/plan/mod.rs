//! Validation: a [`Config`] becomes a [`Plan`] — resolved names, expanded
//! addresses, stage placement, rings and queues — or a [`ConfigError`] that
//! names the offending field and what is allowed. Nothing starts before this
//! has succeeded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;

use pipelines::nat::{Filtering, NatConfig};
use pipelines::select::policy::RaceMode;
use pipelines::select::policy::{Policy, SelectionPolicy};
use pipelines::select::{Algorithm, SelectConfig};
use pipelines::topology::{
    IpPrefix, NatPortRange, PortInfo, PortRole, Topology, UplinkInfo, MAX_UPLINKS,
};
use pipelines::wire::parse_mac;
use pipelines::{Nanos, BURST_MAX};

use crate::config::{
    AfPacketConfig, BackendKind, Config, DpdkConfig, Mode, SelectionSection, SimConfig,
};

/// A configuration error: `path` is the field (e.g. `uplinks[1].port`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {msg}")]
pub struct ConfigError {
    pub path: String,
    pub msg: String,
}

fn err<T>(path: impl Into<String>, msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        path: path.into(),
        msg: msg.into(),
    })
}

/// The four stages, in packet-path order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Classify,
    Replicate,
    Translate,
    Transmit,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::Classify,
        Stage::Replicate,
        Stage::Translate,
        Stage::Transmit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Classify => "classify",
            Stage::Replicate => "replicate",
            Stage::Translate => "translate",
            Stage::Transmit => "transmit",
        }
    }

    fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.name() == s)
    }
}

#[derive(Debug, Clone)]
pub struct PortPlan {
    pub name: String,
    /// All zeros with the af-packet and dpdk backends when the config
    /// omits it: the runtime then takes the interface's / device's MAC.
    pub mac: [u8; 6],
    pub interface: Option<String>,
    pub device: Option<String>,
    pub vlan: Option<u16>,
    pub pcap_in: Option<PathBuf>,
    pub pcap_out: Option<PathBuf>,
}

/// Lcores that run the same contiguous stages. Each lcore of the group that
/// holds `translate` owns one NAT shard.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    pub stages: Vec<Stage>,
    /// Global lcore ids.
    pub lcores: Vec<usize>,
    /// True when packets of other lcores' shards are handed off over rings
    /// within the group (classify and translate in one group of several).
    pub handoff: bool,
}

#[derive(Debug, Clone)]
pub struct LcorePlan {
    pub id: usize,
    pub core: Option<usize>,
    pub group: usize,
    /// Index within its group.
    pub index: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingKind {
    /// Carries bursts from one group's last stage to the next group.
    Stage,
    /// Carries packets to the lcore owning their NAT shard.
    Handoff,
}

#[derive(Debug, Clone)]
pub struct RingPlan {
    pub from: usize,
    pub to: usize,
    pub kind: RingKind,
}

/// The ring into one translate lcore that carries the inbound halves of
/// hairpinned packets (`PacketMeta::hairpin`) whose NAT shard it owns. One
/// ring per owner, shared by every other translate lcore (crossbeam's
/// `ArrayQueue` takes many producers), rather than one per pair: hairpin
/// traffic is LAN-to-LAN through an outside address, a small share of the
/// load, and `shards` rings cost less memory and polling than
/// `shards * (shards - 1)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HairpinRingPlan {
    /// The translate lcore that owns the shard and consumes the ring.
    pub to: usize,
    /// The translate lcores that produce into it (all the others).
    pub from: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct SimUplinkPlan {
    pub delay_ms: f64,
    pub jitter_ms: f64,
    pub loss: f64,
    /// A SYN proxy sits on the uplink, `proxy_delay_ms` (one way) from the
    /// appliance; `delay_ms`, `jitter_ms` and `loss` apply beyond it.
    pub proxy: bool,
    pub proxy_delay_ms: f64,
}

/// `proxy_delay_ms` when a proxy uplink does not give one.
pub const SIM_PROXY_DELAY_MS_DEFAULT: f64 = 1.0;

#[derive(Debug, Clone)]
pub struct SimPlan {
    pub cfg: SimConfig,
    pub client_base: Ipv4Addr,
    pub server_base: Ipv4Addr,
    /// Indexed like `Plan::topology.uplinks`.
    pub uplinks: Vec<SimUplinkPlan>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub backend: BackendKind,
    pub topology: Arc<Topology>,
    pub ports: Vec<PortPlan>,
    pub nat: NatConfig,
    pub mode: Mode,
    pub burst_size: usize,
    pub ring_size: usize,
    pub pool_size: usize,
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

/// Most NAT addresses a site may expand to (each has a port pool per shard).
const MAX_NAT_ADDRESSES: usize = 1024;

pub fn validate(cfg: &Config) -> Result<Plan, ConfigError> {
    validate_with_cpus(cfg, available_cpus())
}

pub fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// [`validate`] against a machine with `cpus` CPUs (tests use this).
pub fn validate_with_cpus(cfg: &Config, cpus: usize) -> Result<Plan, ConfigError> {
    // Ports.
    if cfg.ports.is_empty() {
        return err("ports", "at least one [[ports]] entry is required");
    }
    let mut ports = Vec::new();
    for (i, p) in cfg.ports.iter().enumerate() {
        let path = format!("ports[{i}]");
        if p.name.is_empty() {
            return err(format!("{path}.name"), "must not be empty");
        }
        if cfg.ports[..i].iter().any(|q| q.name == p.name) {
            return err(
                format!("{path}.name"),
                format!("duplicate port name `{}`", p.name),
            );
        }
        let live = matches!(cfg.backend, BackendKind::AfPacket | BackendKind::Dpdk);
        let mac = match &p.mac {
            Some(m) => parse_mac(m).ok_or_else(|| ConfigError {
                path: format!("{path}.mac"),
                msg: format!("`{m}` is not a MAC address (aa:bb:cc:dd:ee:ff)"),
            })?,
            None if live => [0; 6],
            None => {
                return err(
                    format!("{path}.mac"),
                    "required with the sim and pcap backends (aa:bb:cc:dd:ee:ff)",
                )
            }
        };
        let (want, have_other) = match cfg.backend {
            BackendKind::AfPacket => (Some(("interface", &p.interface)), p.device.is_some()),
            BackendKind::Dpdk => (Some(("device", &p.device)), p.interface.is_some()),
            _ => (None, p.interface.is_some() || p.device.is_some()),
        };
        if have_other {
            return err(
                path.clone(),
                "`interface` is only for backend = \"af-packet\", `device` only for backend = \"dpdk\"",
            );
        }
        if let Some((key, v)) = want {
            match v.as_deref() {
                None | Some("") => {
                    return err(
                        format!("{path}.{key}"),
                        match key {
                            "interface" => "required with backend = \"af-packet\": the Linux interface name",
                            _ => "required with backend = \"dpdk\": a PCI address (0000:3b:02.0) or a vdev name (net_af_packet0)",
                        },
                    )
                }
                Some(name) if key == "interface" && (name.len() > 15 || name.contains('/')) => {
                    return err(
                        format!("{path}.interface"),
                        format!("`{name}` is not a Linux interface name (at most 15 characters, no '/')"),
                    )
                }
                Some(_) => {}
            }
            if cfg.ports[..i].iter().any(|q| {
                let o = if key == "interface" {
                    &q.interface
                } else {
                    &q.device
                };
                o == v
            }) {
                return err(
                    format!("{path}.{key}"),
                    format!(
                        "`{}` is already used by another port",
                        v.as_deref().unwrap_or("")
                    ),
                );
            }
        }
        if let Some(v) = p.vlan {
            if !(1..=4094).contains(&v) {
                return err(
                    format!("{path}.vlan"),
                    format!("{v} is not a VLAN id; allowed: 1..=4094"),
                );
            }
        }
        if cfg.backend != BackendKind::Pcap && (p.pcap_in.is_some() || p.pcap_out.is_some()) {
            return err(
                format!("{path}.pcap_in"),
                "pcap_in / pcap_out are only allowed with backend = \"pcap\"",
            );
        }
        ports.push(PortPlan {
            name: p.name.clone(),
            mac,
            interface: p.interface.clone(),
            device: p.device.clone(),
            vlan: p.vlan,
            pcap_in: p.pcap_in.clone(),
            pcap_out: p.pcap_out.clone(),
        });
    }
    if cfg.backend == BackendKind::Pcap && !ports.iter().any(|p| p.pcap_in.is_some()) {
        return err(
            "ports",
            "backend = \"pcap\" needs pcap_in on at least one port",
        );
    }
    let port_index = |name: &str, path: String| -> Result<u16, ConfigError> {
        cfg.ports
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as u16)
            .ok_or_else(|| ConfigError {
                path,
                msg: format!(
                    "no port named `{name}`; ports are: {}",
                    cfg.ports
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    };

    // LAN.
    let lan_port = port_index(&cfg.lan.port, "lan.port".into())?;
    if cfg.lan.prefixes.is_empty() {
        return err(
            "lan.prefixes",
            "at least one inside prefix is required (e.g. \"10.0.0.0/16\")",
        );
    }
    let lan_prefixes = parse_prefixes(&cfg.lan.prefixes, "lan.prefixes")?;
    let mut lan_addrs = Vec::new();
    for (i, a) in cfg.lan.addresses.iter().enumerate() {
        let addr: IpAddr = a.parse().map_err(|_| ConfigError {
            path: format!("lan.addresses[{i}]"),
            msg: format!("`{a}` is not an IP address"),
        })?;
        lan_addrs.push(addr);
    }

    // Uplinks.
    if cfg.uplinks.is_empty() {
        return err("uplinks", "at least one [[uplinks]] entry is required");
    }
    if cfg.uplinks.len() > MAX_UPLINKS {
        return err(
            "uplinks",
            format!(
                "{} uplinks; at most {MAX_UPLINKS} are allowed",
                cfg.uplinks.len()
            ),
        );
    }
    let mut uplinks = Vec::new();
    let mut all_nat: Vec<(IpPrefix, String)> = Vec::new();
    let mut expanded = 0usize;
    for (i, u) in cfg.uplinks.iter().enumerate() {
        let path = format!("uplinks[{i}]");
        if u.name.is_empty() {
            return err(format!("{path}.name"), "must not be empty");
        }
        if cfg.uplinks[..i].iter().any(|v| v.name == u.name) {
            return err(
                format!("{path}.name"),
                format!("duplicate uplink name `{}`", u.name),
            );
        }
        let port = port_index(&u.port, format!("{path}.port"))?;
        if port == lan_port {
            return err(
                format!("{path}.port"),
                format!(
                    "`{}` is the LAN port; an uplink needs a port of its own",
                    u.port
                ),
            );
        }
        if u.nat_addresses.is_empty() {
            return err(
                format!("{path}.nat_addresses"),
                "at least one source-NAT address is required",
            );
        }
        let prefixes = parse_prefixes(&u.nat_addresses, &format!("{path}.nat_addresses"))?;
        let mut nat_addrs = Vec::new();
        for (j, p) in prefixes.iter().enumerate() {
            let fpath = format!("{path}.nat_addresses[{j}]");
            if let Some((_, owner)) = all_nat.iter().find(|(q, _)| q.overlaps(p)) {
                return err(
                    fpath,
                    format!(
                        "{p} overlaps NAT addresses {owner}; NAT address ranges must be disjoint"
                    ),
                );
            }
            if let Some(l) = lan_prefixes.iter().find(|l| l.overlaps(p)) {
                return err(fpath, format!("{p} overlaps LAN prefix {l}"));
            }
            let (first, last, _) = p.range();
            let n = last - first + 1;
            if n > (MAX_NAT_ADDRESSES - expanded) as u128 {
                return err(fpath, format!("{p} expands past {MAX_NAT_ADDRESSES} NAT addresses in all; use a longer prefix"));
            }
            expanded += n as usize;
            for x in first..=last {
                nat_addrs.push(match p.addr {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(x as u32)),
                    IpAddr::V6(_) => IpAddr::V6(x.into()),
                });
            }
            all_nat.push((*p, format!("{}.nat_addresses[{j}] ({})", path, u.name)));
        }
        let next_hop_mac = match &u.next_hop_mac {
            Some(m) => parse_mac(m)
                .filter(|m| m[0] & 1 == 0 && *m != [0; 6])
                .ok_or_else(|| ConfigError {
                    path: format!("{path}.next_hop_mac"),
                    msg: format!("`{m}` is not a unicast MAC address (aa:bb:cc:dd:ee:ff)"),
                })?,
            None => [0; 6],
        };
        let next_hop_v4 = match &u.next_hop {
            Some(a) => Some(a.parse::<Ipv4Addr>().map_err(|_| ConfigError {
                path: format!("{path}.next_hop"),
                msg: format!("`{a}` is not an IPv4 address (IPv6: next_hop_v6)"),
            })?),
            None => None,
        };
        let next_hop_v6 = match &u.next_hop_v6 {
            Some(a) => Some(a.parse::<Ipv6Addr>().map_err(|_| ConfigError {
                path: format!("{path}.next_hop_v6"),
                msg: format!("`{a}` is not an IPv6 address"),
            })?),
            None => None,
        };
        if u.next_hop_mac.is_none() {
            for (v6, key, have) in [
                (false, "next_hop", next_hop_v4.is_some()),
                (true, "next_hop_v6", next_hop_v6.is_some()),
            ] {
                if !have && nat_addrs.iter().any(|a| a.is_ipv6() == v6) {
                    return err(
                        format!("{path}.{key}"),
                        format!(
                            "required when next_hop_mac is not given: the uplink has IPv{} NAT addresses and its next hop's MAC must be resolved ({})",
                            if v6 { 6 } else { 4 },
                            if v6 { "neighbour discovery" } else { "ARP" }
                        ),
                    );
                }
            }
        }
        if u.weight == 0 {
            return err(format!("{path}.weight"), "must be at least 1");
        }
        uplinks.push(UplinkInfo {
            name: u.name.clone(),
            port,
            nat_addrs,
            next_hop_mac,
            next_hop_v4,
            next_hop_v6,
            weight: u.weight,
        });
    }

    // Runtime: burst, rings, pool.
    let rt = &cfg.runtime;
    if rt.burst_size == 0 || rt.burst_size > BURST_MAX {
        return err(
            "runtime.burst_size",
            format!("{}; allowed: 1..={BURST_MAX}", rt.burst_size),
        );
    }
    if !rt.ring_size.is_power_of_two() || !(2..=65_536).contains(&rt.ring_size) {
        return err(
            "runtime.ring_size",
            format!("{} is not a power of two in 2..=65536", rt.ring_size),
        );
    }
    if rt.pool_size < 1024 || rt.pool_size > 16 * 1024 * 1024 {
        return err(
            "runtime.pool_size",
            format!("{}; allowed: 1024..=16777216 buffers", rt.pool_size),
        );
    }

    // Lcores.
    let (lcores, groups) = plan_lcores(cfg, cpus)?;
    let shard_group = groups
        .iter()
        .find(|g| g.stages.contains(&Stage::Translate))
        .map(|g| g.lcores.len())
        .unwrap_or(1);
    let shards = shard_group as u16;

    // NAT.
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
    let filtering: Filtering = match n.filtering.parse() {
        Ok(f) => f,
        Err(e) => return err("nat.filtering", e),
    };
    if !(10..=600_000).contains(&n.sweep_interval_ms) {
        return err(
            "nat.sweep_interval_ms",
            format!("{}; allowed: 10..=600000", n.sweep_interval_ms),
        );
    }
    let seed = n.seed.unwrap_or_else(|| match cfg.backend {
        BackendKind::Pcap => 0,
        _ => rand::random(),
    });
    let nat = NatConfig {
        filtering,
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
    };
    let selection = plan_selection(&cfg.selection)?;

    let port_infos = ports
        .iter()
        .map(|p| PortInfo {
            name: p.name.clone(),
            mac: p.mac,
            vlan: p.vlan,
            role: PortRole::Unused,
        })
        .collect();
    let topology = Arc::new(Topology::new(
        port_infos,
        lan_port,
        lan_prefixes,
        lan_addrs,
        uplinks,
        NatPortRange { first, last },
        shards,
    ));

    // Sim.
    let sim = match (cfg.backend, &cfg.sim) {
        (BackendKind::Sim, None) => return err("sim", "backend = \"sim\" needs a [sim] section"),
        (BackendKind::Sim, Some(s)) => Some(plan_sim(s, &topology)?),
        (_, Some(_)) => {
            return err(
                "sim",
                "a [sim] section is only allowed with backend = \"sim\"",
            )
        }
        (_, None) => None,
    };

    let af_packet = plan_af_packet(cfg)?;
    let dpdk = plan_dpdk(cfg)?;
    if dpdk.as_ref().is_some_and(|d| d.return_steering == "flow")
        && (rt.mode != Mode::RunToCompletion || groups.len() != 1)
    {
        return err(
            "dpdk.return_steering",
            "\"flow\" steers each NAT shard's return traffic to the RX queue of the worker that owns it: it needs runtime.mode = \"run-to-completion\"; use \"software\" with pipeline mode",
        );
    }

    let redirection = plan_redirection(&cfg.redirection, &topology)?;
    let rings = plan_rings(&groups);
    let hairpin_rings = plan_hairpin_rings(&groups);
    let rx_queues = groups.first().map(|g| g.lcores.len()).unwrap_or(1);
    let tx_queues = groups
        .iter()
        .find(|g| g.stages.contains(&Stage::Transmit))
        .map(|g| g.lcores.len())
        .unwrap_or(1);
    Ok(Plan {
        backend: cfg.backend,
        topology,
        ports,
        nat,
        mode: rt.mode,
        burst_size: rt.burst_size,
        ring_size: rt.ring_size,
        pool_size: rt.pool_size,
        lcores,
        groups,
        rings,
        hairpin_rings,
        rx_queues,
        tx_queues,
        sim,
        selection,
        af_packet,
        dpdk,
        redirection,
    })
}

fn plan_af_packet(cfg: &Config) -> Result<AfPacketConfig, ConfigError> {
    let a = match (&cfg.af_packet, cfg.backend) {
        (Some(_), b) if b != BackendKind::AfPacket => {
            return err(
                "af_packet",
                "an [af_packet] section is only allowed with backend = \"af-packet\"",
            )
        }
        (Some(a), _) => a.clone(),
        (None, _) => AfPacketConfig::default(),
    };
    if !(2..=65_536).contains(&a.rx_blocks) {
        return err(
            "af_packet.rx_blocks",
            format!("{}; allowed: 2..=65536", a.rx_blocks),
        );
    }
    if !a.block_kib.is_power_of_two() || !(4..=4096).contains(&a.block_kib) {
        return err(
            "af_packet.block_kib",
            format!("{}; allowed: a power of two in 4..=4096", a.block_kib),
        );
    }
    if !(1..=1000).contains(&a.block_timeout_ms) {
        return err(
            "af_packet.block_timeout_ms",
            format!("{}; allowed: 1..=1000", a.block_timeout_ms),
        );
    }
    if !a.tx_frames.is_power_of_two() || !(64..=65_536).contains(&a.tx_frames) {
        return err(
            "af_packet.tx_frames",
            format!("{}; allowed: a power of two in 64..=65536", a.tx_frames),
        );
    }
    Ok(a)
}

fn plan_dpdk(cfg: &Config) -> Result<Option<DpdkConfig>, ConfigError> {
    let d = match (&cfg.dpdk, cfg.backend) {
        (Some(_), b) if b != BackendKind::Dpdk => {
            return err(
                "dpdk",
                "a [dpdk] section is only allowed with backend = \"dpdk\"",
            )
        }
        (_, b) if b != BackendKind::Dpdk => return Ok(None),
        (Some(d), _) => d.clone(),
        (None, _) => DpdkConfig::default(),
    };
    if !matches!(d.return_steering.as_str(), "software" | "flow") {
        return err(
            "dpdk.return_steering",
            format!("`{}`; allowed: \"software\", \"flow\"", d.return_steering),
        );
    }
    if d.memory_mb < 64 {
        return err(
            "dpdk.memory_mb",
            format!("{}; allowed: at least 64", d.memory_mb),
        );
    }
    if !(1_024..=16_777_216).contains(&d.mbufs_per_socket) {
        return err(
            "dpdk.mbufs_per_socket",
            format!("{}; allowed: 1024..=16777216", d.mbufs_per_socket),
        );
    }
    if d.mbuf_cache > 512 {
        return err(
            "dpdk.mbuf_cache",
            format!("{}; allowed: 0..=512", d.mbuf_cache),
        );
    }
    for (key, v) in [("rx_desc", d.rx_desc), ("tx_desc", d.tx_desc)] {
        if !v.is_power_of_two() || !(64..=16_384).contains(&v) {
            return err(
                format!("dpdk.{key}"),
                format!("{v}; allowed: a power of two in 64..=16384"),
            );
        }
    }
    for (i, a) in d.allow.iter().enumerate() {
        if !is_pci_address(a) {
            return err(
                format!("dpdk.allow[{i}]"),
                format!("`{a}` is not a PCI address (0000:3b:02.0)"),
            );
        }
    }
    Ok(Some(d))
}

/// `dddd:bb:dd.f` (domain optional), as DPDK's `-a` takes it.
fn is_pci_address(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    let parts: Vec<&str> = s.split(':').collect();
    let (bus, rest) = match parts.as_slice() {
        [dom, bus, rest] if hex(dom, 4) => (*bus, *rest),
        [bus, rest] => (*bus, *rest),
        _ => return false,
    };
    let Some((dev, func)) = rest.split_once('.') else {
        return false;
    };
    hex(bus, 2) && hex(dev, 2) && func.len() == 1 && func.chars().all(|c| ('0'..='7').contains(&c))
}

/// Where the redirection database shares loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectStore {
    /// In the management core, this appliance alone.
    Embedded,
    /// A Redis server (`host:port`) shared by several appliances.
    Redis(String),
}

#[derive(Debug, Clone)]
pub struct RedirectionPlan {
    pub appliance: String,
    pub store: RedirectStore,
    pub spec: pipelines::redirect::db::DbSpec,
    /// The uplink of each service address (indexed like `spec.services`).
    pub service_uplinks: Vec<pipelines::UplinkId>,
    pub publish_interval: std::time::Duration,
    pub report_interval: std::time::Duration,
    pub load_ttl: std::time::Duration,
}

impl RedirectionPlan {
    /// Classify's view: service endpoints and server endpoints.
    pub fn service_map(&self) -> pipelines::redirect::service::ServiceMap {
        let mut m = pipelines::redirect::service::ServiceMap::default();
        for (i, s) in self.spec.services.iter().enumerate() {
            m.add_service(i as u16, s.addr, s.tcp, s.udp, self.service_uplinks[i]);
        }
        for (i, s) in self.spec.servers.iter().enumerate() {
            m.add_server(i as u16, s.addr);
        }
        m
    }

    /// Redirection targets counted in the stats: services, then peers.
    pub fn target_names(&self) -> Vec<String> {
        let s = self.spec.services.iter().map(|s| s.name.clone());
        s.chain(self.spec.peers.iter().map(|p| p.name.clone()))
            .collect()
    }
}

/// Validates `[redirection]`; `None` when it configures no service.
pub fn plan_redirection(
    r: &crate::config::RedirectionSection,
    topo: &Topology,
) -> Result<Option<RedirectionPlan>, ConfigError> {
    use pipelines::redirect::db::{
        DbConfig, DbSpec, Member, MemberDef, PeerDef, ServerDef, ServiceDef,
    };
    use pipelines::redirect::header::Persistence;
    use std::net::SocketAddr;
    if r.services.is_empty() {
        if !r.servers.is_empty() || !r.peers.is_empty() {
            return err(
                "redirection.services",
                "servers or peers are configured but no service address uses them",
            );
        }
        return Ok(None);
    }
    let at = |f: String| format!("redirection.{f}");
    let sock = |v: &str, path: String| -> Result<SocketAddr, ConfigError> {
        v.parse::<SocketAddr>().map_err(|_| ConfigError {
            path,
            msg: format!(
                "`{v}` is not an address and port (e.g. 198.51.100.10:7000, [2001:db8::1]:7000)"
            ),
        })
    };
    let store = match r.store.as_str() {
        "embedded" => RedirectStore::Embedded,
        "redis" => {
            if r.redis.parse::<SocketAddr>().is_err() {
                return err(
                    at("redis".into()),
                    format!(
                        "`{}` is not host:port of a Redis server (e.g. 127.0.0.1:6379)",
                        r.redis
                    ),
                );
            }
            RedirectStore::Redis(r.redis.clone())
        }
        v => {
            return err(
                at("store".into()),
                format!("`{v}`; allowed: embedded, redis"),
            )
        }
    };
    if r.appliance.is_empty() || r.appliance.contains([':', '/', ' ']) {
        return err(
            at("appliance".into()),
            format!(
                "`{}`: a non-empty name without ':', '/' or spaces",
                r.appliance
            ),
        );
    }
    for (name, v, lo, hi) in [
        ("publish_interval_ms", r.publish_interval_ms, 5, 60_000),
        ("report_interval_ms", r.report_interval_ms, 10, 3_600_000),
        ("load_ttl_ms", r.load_ttl_ms, 100, 86_400_000),
        (
            "failure_threshold",
            u64::from(r.failure_threshold),
            1,
            1_000,
        ),
        ("failure_window_ms", r.failure_window_ms, 1, 86_400_000),
        ("avoid_ms", r.avoid_ms, 1, 86_400_000),
        ("tcp_session_weight", r.tcp_session_weight, 1, 1_000),
        ("udp_session_weight", r.udp_session_weight, 1, 1_000),
    ] {
        if !(lo..=hi).contains(&v) {
            return err(at(name.into()), format!("{v}; allowed: {lo}..={hi}"));
        }
    }
    if r.load_ttl_ms <= r.report_interval_ms {
        return err(
            at("load_ttl_ms".into()),
            format!(
                "{} must exceed report_interval_ms ({}), or loads expire between reports",
                r.load_ttl_ms, r.report_interval_ms
            ),
        );
    }
    let mut servers = Vec::new();
    for (i, s) in r.servers.iter().enumerate() {
        let p = |f: &str| at(format!("servers[{i}].{f}"));
        if s.name.is_empty() || r.servers[..i].iter().any(|o| o.name == s.name) {
            return err(
                p("name"),
                format!("`{}`: empty or duplicate server name", s.name),
            );
        }
        let addr = sock(&s.address, p("address"))?;
        if !topo.is_lan_source(addr.ip()) {
            return err(
                p("address"),
                format!("{} is not inside the LAN prefixes", addr.ip()),
            );
        }
        let mac = match &s.mac {
            None => [0xff; 6],
            Some(m) => parse_mac(m).ok_or_else(|| ConfigError {
                path: p("mac"),
                msg: format!("`{m}` is not a MAC address (aa:bb:cc:dd:ee:ff)"),
            })?,
        };
        servers.push(ServerDef {
            name: s.name.clone(),
            addr,
            mac,
        });
    }
    let mut peers = Vec::new();
    for (i, pc) in r.peers.iter().enumerate() {
        let p = |f: &str| at(format!("peers[{i}].{f}"));
        let ok = pc.name.split('/').count() == 2 && pc.name.split('/').all(|x| !x.is_empty());
        if !ok || r.peers[..i].iter().any(|o| o.name == pc.name) {
            return err(
                p("name"),
                format!("`{}`: APPLIANCE/SERVICE, unique", pc.name),
            );
        }
        if store == RedirectStore::Embedded {
            return err(
                p("name"),
                "a peer's load comes from the shared store; set redirection.store = \"redis\"",
            );
        }
        peers.push(PeerDef {
            name: pc.name.clone(),
            addr: sock(&pc.address, p("address"))?,
        });
    }
    let mut services = Vec::new();
    let mut uplinks = Vec::new();
    for (i, s) in r.services.iter().enumerate() {
        let p = |f: &str| at(format!("services[{i}].{f}"));
        if s.name.is_empty()
            || s.name.contains(['/', ':', ' '])
            || r.services[..i].iter().any(|o| o.name == s.name)
        {
            return err(
                p("name"),
                format!("`{}`: empty, duplicate, or with '/', ':' or spaces", s.name),
            );
        }
        let addr = sock(&s.address, p("address"))?;
        let Some(u) = topo.uplinks.iter().position(|u| u.name == s.uplink) else {
            return err(
                p("uplink"),
                format!(
                    "no uplink named `{}`; uplinks are: {}",
                    s.uplink,
                    topo.uplinks
                        .iter()
                        .map(|u| u.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        };
        if topo.is_lan_source(addr.ip()) || addr.port() == 0 {
            return err(
                p("address"),
                format!("{addr}: a service address is outside the LAN prefixes, with a port"),
            );
        }
        if let Some(&owner) = topo.nat_addr_uplink.get(&addr.ip()) {
            let r = topo.nat_ports;
            if (r.first..=r.last).contains(&addr.port()) || usize::from(owner) != u {
                return err(
                    p("address"),
                    format!(
                        "{addr} is a NAT address: its port must be outside nat.port_range [{}, {}] and its uplink the address's own",
                        r.first, r.last
                    ),
                );
            }
        }
        let (mut tcp, mut udp) = (false, false);
        for (j, pr) in s.protocols.iter().enumerate() {
            match pr.as_str() {
                "tcp" => tcp = true,
                "udp" => udp = true,
                v => {
                    return err(
                        p(&format!("protocols[{j}]")),
                        format!("`{v}`; allowed: tcp, udp"),
                    )
                }
            }
        }
        if !(tcp || udp) {
            return err(p("protocols"), "at least one of tcp, udp");
        }
        let persistence = match s.persistence.as_str() {
            "once" => Persistence::Once,
            "permanent" => Persistence::Permanent,
            "none" => Persistence::None,
            "leased" if s.lease_s > 0 => Persistence::Leased(s.lease_s),
            "leased" => return err(p("lease_s"), "a lease is at least 1 second"),
            v => {
                return err(
                    p("persistence"),
                    format!("`{v}`; allowed: once, permanent, leased, none"),
                )
            }
        };
        if s.members.is_empty() {
            return err(
                p("members"),
                "at least one member (server, service or peer)",
            );
        }
        let mut members = Vec::new();
        for (j, m) in s.members.iter().enumerate() {
            let mp = |f: &str| p(&format!("members[{j}].{f}"));
            let find = |list: Vec<&str>, name: &str, kind: &str| -> Result<u16, ConfigError> {
                list.iter()
                    .position(|n| *n == name)
                    .map(|x| x as u16)
                    .ok_or_else(|| ConfigError {
                        path: mp(kind),
                        msg: format!("no {kind} named `{name}`; {kind}s are: {}", list.join(", ")),
                    })
            };
            let member = match (&m.server, &m.service, &m.peer) {
                (Some(n), None, None) => Member::Server(find(
                    r.servers.iter().map(|x| x.name.as_str()).collect(),
                    n,
                    "server",
                )?),
                (None, Some(n), None) => Member::Service(find(
                    r.services.iter().map(|x| x.name.as_str()).collect(),
                    n,
                    "service",
                )?),
                (None, None, Some(n)) => Member::Peer(find(
                    r.peers.iter().map(|x| x.name.as_str()).collect(),
                    n,
                    "peer",
                )?),
                _ => {
                    return err(
                        p(&format!("members[{j}]")),
                        "exactly one of server, service, peer",
                    )
                }
            };
            if m.weight == 0 {
                return err(mp("weight"), "must be at least 1");
            }
            let clients = parse_prefixes(&m.clients, &mp("clients"))?;
            members.push(MemberDef {
                member,
                weight: m.weight,
                clients,
            });
        }
        services.push(ServiceDef {
            name: s.name.clone(),
            addr,
            tcp,
            udp,
            persistence,
            members,
        });
        uplinks.push(u as pipelines::UplinkId);
    }
    if let Some((i, _)) = services
        .iter()
        .enumerate()
        .find(|(i, s)| services[..*i].iter().any(|o| o.addr == s.addr))
    {
        return err(
            at(format!("services[{i}].address")),
            "two services on one address and port",
        );
    }
    let spec = DbSpec {
        services,
        servers,
        peers,
        cfg: DbConfig {
            failure_threshold: r.failure_threshold,
            failure_window: Nanos::from_millis(r.failure_window_ms),
            avoid_for: Nanos::from_millis(r.avoid_ms),
            tcp_session_weight: r.tcp_session_weight,
            udp_session_weight: r.udp_session_weight,
        },
    };
    spec.check().map_err(|m| ConfigError {
        path: "redirection.services".into(),
        msg: m,
    })?;
    Ok(Some(RedirectionPlan {
        appliance: r.appliance.clone(),
        store,
        spec,
        service_uplinks: uplinks,
        publish_interval: std::time::Duration::from_millis(r.publish_interval_ms),
        report_interval: std::time::Duration::from_millis(r.report_interval_ms),
        load_ttl: std::time::Duration::from_millis(r.load_ttl_ms),
    }))
}

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

fn plan_selection(s: &SelectionSection) -> Result<SelectionPlan, ConfigError> {
    let path = |f: &str| format!("selection.{f}");
    let (mode, racing) = match s.mode.as_str() {
        "off" => (RaceMode::SynAck, false),
        m => match m.parse::<RaceMode>() {
            Ok(r) => (r, true),
            Err(e) => return err(path("mode"), format!("`{m}`; allowed: {e}, off")),
        },
    };
    let alg = |v: &str, at: String| -> Result<Algorithm, ConfigError> {
        v.parse::<Algorithm>()
            .or_else(|e| err(at, format!("`{v}`; allowed: {e}")))
    };
    let algorithm = alg(&s.algorithm, path("algorithm"))?;
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
    let reset_on_down = match s.on_uplink_down.as_str() {
        "keep" => false,
        "reset" => true,
        v => {
            return err(
                path("on_uplink_down"),
                format!("`{v}`; allowed: keep, reset"),
            )
        }
    };
    let mut policies = Vec::new();
    for (i, p) in s.policies.iter().enumerate() {
        let at = |f: &str| format!("selection.policies[{i}].{f}");
        let protocol = match p.protocol.as_str() {
            "any" => None,
            "tcp" => Some(pipelines::packet::flow::proto::TCP),
            "udp" => Some(pipelines::packet::flow::proto::UDP),
            "icmp" => Some(pipelines::packet::flow::proto::ICMP),
            v => {
                return err(
                    at("protocol"),
                    format!("`{v}`; allowed: tcp, udp, icmp, any"),
                )
            }
        };
        if p.ports[0] > p.ports[1] {
            return err(
                at("ports"),
                format!(
                    "[{}, {}]: first must not exceed last",
                    p.ports[0], p.ports[1]
                ),
            );
        }
        let algorithm = match &p.algorithm {
            Some(a) => alg(a, at("algorithm"))?,
            None => algorithm,
        };
        policies.push(Policy {
            protocol,
            ports: (p.ports[0], p.ports[1]),
            race: p.race && racing,
            algorithm,
        });
    }
    Ok(SelectionPlan {
        mode_name: s.mode.clone(),
        policy: Arc::new(SelectionPolicy {
            mode,
            policies,
            race_tcp: racing,
            algorithm,
            probe_interval: Nanos::from_secs(s.probe_interval_s),
            reset_on_down,
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

fn parse_prefixes(list: &[String], path: &str) -> Result<Vec<IpPrefix>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<IpPrefix>().map_err(|m| ConfigError {
                path: format!("{path}[{i}]"),
                msg: m,
            })
        })
        .collect()
}

fn plan_lcores(cfg: &Config, cpus: usize) -> Result<(Vec<LcorePlan>, Vec<GroupPlan>), ConfigError> {
    let rt = &cfg.runtime;
    if rt.lcores.is_empty() {
        return err(
            "runtime.lcores",
            "at least one [[runtime.lcores]] entry is required",
        );
    }
    if rt.lcores.len() > cpus && !rt.oversubscribe {
        return err(
            "runtime.lcores",
            format!(
                "{} lcores but this machine has {cpus} CPUs; use at most {cpus}, or set runtime.oversubscribe = true for a lab",
                rt.lcores.len()
            ),
        );
    }
    for (i, l) in rt.lcores.iter().enumerate() {
        if let Some(c) = l.core {
            if c >= cpus {
                return err(
                    format!("runtime.lcores[{i}].core"),
                    format!(
                        "CPU {c} does not exist; this machine has CPUs 0..={}",
                        cpus - 1
                    ),
                );
            }
            if !rt.oversubscribe && rt.lcores[..i].iter().any(|o| o.core == Some(c)) {
                return err(
                    format!("runtime.lcores[{i}].core"),
                    format!("CPU {c} is already used by another lcore"),
                );
            }
        }
    }
    let mut stage_lists = Vec::new();
    for (i, l) in rt.lcores.iter().enumerate() {
        let mut stages = Vec::new();
        for (j, s) in l.stages.iter().enumerate() {
            let st = Stage::parse(s).ok_or_else(|| ConfigError {
                path: format!("runtime.lcores[{i}].stages[{j}]"),
                msg: format!(
                    "unknown stage `{s}`; stages are: classify, replicate, translate, transmit"
                ),
            })?;
            stages.push(st);
        }
        match rt.mode {
            Mode::RunToCompletion => {
                if !stages.is_empty() && stages != Stage::ALL {
                    return err(
                        format!("runtime.lcores[{i}].stages"),
                        "in run-to-completion mode every lcore runs all four stages; omit `stages`",
                    );
                }
                stages = Stage::ALL.to_vec();
            }
            Mode::Pipeline => {
                if stages.is_empty() {
                    return err(
                        format!("runtime.lcores[{i}].stages"),
                        "pipeline mode needs the stages each lcore runs",
                    );
                }
                if stages.windows(2).any(|w| w[0] >= w[1]) {
                    return err(
                        format!("runtime.lcores[{i}].stages"),
                        "stages must be distinct and in packet-path order: classify, replicate, translate, transmit",
                    );
                }
            }
        }
        stage_lists.push(stages);
    }
    // Consecutive lcores with the same stages form a group.
    let mut groups: Vec<GroupPlan> = Vec::new();
    let mut lcores = Vec::new();
    for (i, stages) in stage_lists.iter().enumerate() {
        if groups.last().is_none_or(|g| &g.stages != stages) {
            if groups.iter().any(|g| &g.stages == stages) {
                return err(
                    format!("runtime.lcores[{i}].stages"),
                    "lcores running the same stages must be listed together",
                );
            }
            groups.push(GroupPlan {
                stages: stages.clone(),
                lcores: Vec::new(),
                handoff: false,
            });
        }
        let g = groups.len() - 1;
        let index = groups[g].lcores.len();
        groups[g].lcores.push(i);
        lcores.push(LcorePlan {
            id: i,
            core: rt.lcores[i].core,
            group: g,
            index,
        });
    }
    let flat: Vec<Stage> = groups
        .iter()
        .flat_map(|g| g.stages.iter().copied())
        .collect();
    if flat != Stage::ALL {
        return err(
            "runtime.lcores",
            format!(
                "the lcores' stages, in order, are [{}]; together they must be each of classify, replicate, translate, transmit exactly once, in that order",
                flat.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    for g in groups.iter_mut() {
        g.handoff = g.lcores.len() > 1
            && g.stages.contains(&Stage::Classify)
            && g.stages.contains(&Stage::Translate);
    }
    // Stage groups other than translate's must hand packets to the right
    // shard: a group after translate but before transmit would lose the
    // shard's ordering guarantees only if it had several lcores fed by one;
    // that is allowed (any lcore can transmit).
    Ok((lcores, groups))
}

fn plan_rings(groups: &[GroupPlan]) -> Vec<RingPlan> {
    let mut rings = Vec::new();
    for g in groups {
        if g.handoff {
            for &a in &g.lcores {
                for &b in &g.lcores {
                    if a != b {
                        rings.push(RingPlan {
                            from: a,
                            to: b,
                            kind: RingKind::Handoff,
                        });
                    }
                }
            }
        }
    }
    for w in groups.windows(2) {
        let (prod, cons) = (&w[0], &w[1]);
        let full_mesh = cons.stages.contains(&Stage::Translate);
        for (pi, &p) in prod.lcores.iter().enumerate() {
            for (ci, &c) in cons.lcores.iter().enumerate() {
                if full_mesh || ci == pi % cons.lcores.len() {
                    rings.push(RingPlan {
                        from: p,
                        to: c,
                        kind: RingKind::Stage,
                    });
                }
            }
        }
    }
    rings
}

/// A hairpin ring per translate lcore, fed by the other translate lcores.
/// With a single shard translate finishes hairpinned packets itself, so no
/// ring is needed.
fn plan_hairpin_rings(groups: &[GroupPlan]) -> Vec<HairpinRingPlan> {
    let Some(g) = groups.iter().find(|g| g.stages.contains(&Stage::Translate)) else {
        return Vec::new();
    };
    if g.lcores.len() < 2 {
        return Vec::new();
    }
    g.lcores
        .iter()
        .map(|&to| HairpinRingPlan {
            to,
            from: g.lcores.iter().copied().filter(|&f| f != to).collect(),
        })
        .collect()
}

fn plan_sim(s: &SimConfig, topo: &Topology) -> Result<SimPlan, ConfigError> {
    if s.clients == 0 || s.clients > 60_000 {
        return err("sim.clients", format!("{}; allowed: 1..=60000", s.clients));
    }
    if s.servers == 0 || s.servers > 10_000 {
        return err("sim.servers", format!("{}; allowed: 1..=10000", s.servers));
    }
    let client_base: Ipv4Addr = s.client_base.parse().map_err(|_| ConfigError {
        path: "sim.client_base".into(),
        msg: format!("`{}` is not an IPv4 address", s.client_base),
    })?;
    let server_base: Ipv4Addr = s.server_base.parse().map_err(|_| ConfigError {
        path: "sim.server_base".into(),
        msg: format!("`{}` is not an IPv4 address", s.server_base),
    })?;
    let last_client = u32::from(client_base)
        .checked_add(s.clients as u32 - 1)
        .map(Ipv4Addr::from);
    let inside = |a: Ipv4Addr| topo.is_lan_source(IpAddr::V4(a));
    if !inside(client_base) || !last_client.is_some_and(inside) {
        return err(
            "sim.client_base",
            format!(
                "{} clients from {client_base} do not all fit in the LAN prefixes",
                s.clients
            ),
        );
    }
    let last_server = u32::from(server_base)
        .checked_add(s.servers as u32 - 1)
        .map(Ipv4Addr::from);
    let Some(last_server) = last_server else {
        return err(
            "sim.server_base",
            "the server addresses run past 255.255.255.255",
        );
    };
    for a in [server_base, last_server] {
        if inside(a) || topo.nat_addr_uplink.contains_key(&IpAddr::V4(a)) {
            return err("sim.server_base", format!("server address {a} is inside the LAN or a NAT address; servers must be outside"));
        }
    }
    let server_range = u32::from(server_base)..=u32::from(last_server);
    if let Some(a) = topo
        .nat_addr_uplink
        .keys()
        .find(|a| matches!(a, IpAddr::V4(v) if server_range.contains(&u32::from(*v))))
    {
        return err(
            "sim.server_base",
            format!("server addresses overlap NAT address {a}"),
        );
    }
    if s.tcp_port == 0 || s.udp_port == 0 {
        return err("sim.tcp_port", "server ports must be non-zero");
    }
    if s.tcp_interval_ms == 0 {
        return err(
            "sim.tcp_interval_ms",
            "must be at least 1 (mean milliseconds between a client's connections)",
        );
    }
    if s.tcp_timeout_ms == 0 || s.udp_timeout_ms == 0 {
        return err("sim.tcp_timeout_ms", "timeouts must be at least 1 ms");
    }
    if s.udp_request_bytes == 0 || s.udp_request_bytes > 1400 || s.udp_response_bytes > 1400 {
        return err(
            "sim.udp_request_bytes",
            "UDP payloads must be 1..=1400 bytes (no fragmentation)",
        );
    }
    let mut uplinks: Vec<Option<SimUplinkPlan>> = vec![None; topo.uplinks.len()];
    for (i, u) in s.uplinks.iter().enumerate() {
        let path = format!("sim.uplinks[{i}]");
        let Some(id) = topo.uplinks.iter().position(|t| t.name == u.name) else {
            return err(
                format!("{path}.name"),
                format!(
                    "no uplink named `{}`; uplinks are: {}",
                    u.name,
                    topo.uplinks
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        };
        if uplinks[id].is_some() {
            return err(
                format!("{path}.name"),
                format!("uplink `{}` is listed twice", u.name),
            );
        }
        if !(0.0..=10_000.0).contains(&u.delay_ms) {
            return err(
                format!("{path}.delay_ms"),
                format!("{}; allowed: 0..=10000", u.delay_ms),
            );
        }
        if !(0.0..=10_000.0).contains(&u.jitter_ms) {
            return err(
                format!("{path}.jitter_ms"),
                format!("{}; allowed: 0..=10000", u.jitter_ms),
            );
        }
        if !(0.0..=1.0).contains(&u.loss) {
            return err(
                format!("{path}.loss"),
                format!("{}; allowed: 0.0 <= loss <= 1.0", u.loss),
            );
        }
        let proxy_delay_ms = match (u.proxy, u.proxy_delay_ms) {
            (false, Some(_)) => {
                return err(
                    format!("{path}.proxy_delay_ms"),
                    "only allowed with proxy = true (it is the delay between the appliance and the proxy)",
                )
            }
            (false, None) => 0.0,
            (true, d) => d.unwrap_or(SIM_PROXY_DELAY_MS_DEFAULT),
        };
        if !(0.0..=10_000.0).contains(&proxy_delay_ms) {
            return err(
                format!("{path}.proxy_delay_ms"),
                format!("{proxy_delay_ms}; allowed: 0..=10000"),
            );
        }
        uplinks[id] = Some(SimUplinkPlan {
            delay_ms: u.delay_ms,
            jitter_ms: u.jitter_ms,
            loss: u.loss,
            proxy: u.proxy,
            proxy_delay_ms,
        });
    }
    let uplinks = uplinks
        .into_iter()
        .enumerate()
        .map(|(i, u)| {
            u.ok_or_else(|| ConfigError {
                path: "sim.uplinks".into(),
                msg: format!(
                    "uplink `{}` has no [[sim.uplinks]] entry",
                    topo.uplinks[i].name
                ),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SimPlan {
        cfg: s.clone(),
        client_base,
        server_base,
        uplinks,
    })
}

impl Plan {
    /// The plan as `appliance check` prints it.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let t = &self.topology;
        let mut s = String::new();
        let mode = match self.mode {
            Mode::Pipeline => "pipeline",
            Mode::RunToCompletion => "run-to-completion",
        };
        let backend = match self.backend {
            BackendKind::Sim => "sim",
            BackendKind::Pcap => "pcap",
            BackendKind::AfPacket => "af-packet",
            BackendKind::Dpdk => "dpdk",
            BackendKind::External => "external",
        };
        let _ = writeln!(s, "backend   {backend}");
        let _ = writeln!(
            s,
            "mode      {mode}: {} lcores, {} NAT shards, burst {}, ring {} bursts, pool {} buffers",
            self.lcores.len(),
            t.shards,
            self.burst_size,
            self.ring_size,
            self.pool_size
        );
        let _ = writeln!(s, "lcores");
        for l in &self.lcores {
            let g = &self.groups[l.group];
            let stages: Vec<_> = g.stages.iter().map(|s| s.name()).collect();
            let core = l
                .core
                .map_or("unpinned".to_string(), |c| format!("cpu {c}"));
            let shard = if g.stages.contains(&Stage::Translate) {
                format!("  shard {}", l.index)
            } else {
                String::new()
            };
            let rx = if l.group == 0 {
                format!("  rx queue {} of every port", l.index)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "  lcore {:<2} {:<9} [{}]{shard}{rx}",
                l.id,
                core,
                stages.join(" -> ")
            );
        }
        let _ = writeln!(
            s,
            "rings ({} slots of up to {} packets each)",
            self.ring_size, self.burst_size
        );
        if self.rings.is_empty() {
            let _ = writeln!(s, "  none (one lcore runs every stage)");
        }
        for r in &self.rings {
            let kind = match r.kind {
                RingKind::Stage => "stage",
                RingKind::Handoff => "hand-off",
            };
            let _ = writeln!(s, "  lcore {} -> lcore {} ({kind})", r.from, r.to);
        }
        for r in &self.hairpin_rings {
            let from: Vec<_> = r.from.iter().map(|f| f.to_string()).collect();
            let lcores = if from.len() == 1 { "lcore" } else { "lcores" };
            let _ = writeln!(
                s,
                "  {lcores} {} -> lcore {} (hairpin, shard {})",
                from.join(", "),
                r.to,
                self.lcores.get(r.to).map_or(0, |l| l.index)
            );
        }
        let _ = writeln!(
            s,
            "ports ({} RX / {} TX queues each)",
            self.rx_queues, self.tx_queues
        );
        for (i, p) in self.ports.iter().enumerate() {
            let role = match &t.ports[i].role {
                PortRole::Lan => "lan".to_string(),
                PortRole::Uplink(ids) => {
                    format!(
                        "uplink {}",
                        ids.iter()
                            .map(|&u| t.uplinks[u as usize].name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
                PortRole::Unused => "unused".to_string(),
            };
            let vlan = p.vlan.map_or(String::new(), |v| format!(" vlan {v}"));
            let _ = writeln!(
                s,
                "  {:<10} {} {role}{vlan}",
                p.name,
                pipelines::wire::fmt_mac(&p.mac)
            );
        }
        let lan: Vec<_> = t.lan_prefixes.iter().map(|p| p.to_string()).collect();
        let _ = writeln!(
            s,
            "lan       {} via port {}",
            lan.join(", "),
            self.ports[t.lan_port as usize].name
        );
        let _ = writeln!(s, "uplinks");
        for u in &t.uplinks {
            let addrs = if u.nat_addrs.len() <= 4 {
                u.nat_addrs
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                format!(
                    "{} .. {} ({} addresses)",
                    u.nat_addrs[0],
                    u.nat_addrs[u.nat_addrs.len() - 1],
                    u.nat_addrs.len()
                )
            };
            let _ = writeln!(
                s,
                "  {:<10} port {:<8} snat {addrs}  next hop {}  weight {}",
                u.name,
                self.ports[u.port as usize].name,
                next_hop_text(u),
                u.weight
            );
        }
        let _ = writeln!(
            s,
            "nat       ports {}-{} ({} per shard), up to {} sessions per shard, udp idle {} s",
            t.nat_ports.first,
            t.nat_ports.last,
            u32::from(t.shard_ports(0).last) - u32::from(t.shard_ports(0).first) + 1,
            self.nat.max_sessions,
            self.nat.udp_idle_timeout.as_nanos() / 1_000_000_000
        );
        if let Some(sim) = &self.sim {
            let _ = writeln!(
                s,
                "sim       {} clients from {}, {} servers from {}",
                sim.cfg.clients, sim.client_base, sim.cfg.servers, sim.server_base
            );
            for (i, u) in sim.uplinks.iter().enumerate() {
                let _ = write!(
                    s,
                    "  {:<10} delay {} ms  jitter {} ms  loss {}",
                    t.uplinks[i].name, u.delay_ms, u.jitter_ms, u.loss
                );
                if u.proxy {
                    let _ = write!(
                        s,
                        "  SYN proxy {} ms from the appliance (delay, jitter, loss beyond it)",
                        u.proxy_delay_ms
                    );
                }
                s.push('\n');
            }
        }
        s
    }
}

/// A small pcap-backend site (one LAN port, two uplink ports) with the given
/// `[runtime]` section, for tests of placement and wiring. Nothing is opened.
#[cfg(test)]
pub(crate) fn test_plan(runtime: &str) -> Plan {
    let text = format!(
        r#"
backend = "pcap"

[lan]
port = "lan"
prefixes = ["10.0.0.0/16"]

[[ports]]
name = "lan"
mac = "02:00:00:00:00:01"
pcap_in = "/nonexistent/lan.pcap"

[[ports]]
name = "wan-a"
mac = "02:00:00:00:0a:01"

[[ports]]
name = "wan-b"
mac = "02:00:00:00:0b:01"

[[uplinks]]
name = "isp-a"
port = "wan-a"
nat_addresses = ["198.51.100.10"]
next_hop_mac = "02:00:00:00:0a:fe"

[[uplinks]]
name = "isp-b"
port = "wan-b"
nat_addresses = ["198.51.100.20"]
next_hop_mac = "02:00:00:00:0b:fe"

{runtime}
"#
    );
    let cfg = crate::config::parse(&text).expect("test config parses");
    validate_with_cpus(&cfg, 8).expect("test config validates")
}

/// Pipeline mode with three translate lcores (shards 0, 1, 2 on lcores 1,
/// 2, 3) between a classify lcore and a transmit lcore.
#[cfg(test)]
pub(crate) const TEST_PIPELINE_3_SHARDS: &str = r#"
[runtime]
mode = "pipeline"
[[runtime.lcores]]
stages = ["classify", "replicate"]
[[runtime.lcores]]
stages = ["translate"]
[[runtime.lcores]]
stages = ["translate"]
[[runtime.lcores]]
stages = ["translate"]
[[runtime.lcores]]
stages = ["transmit"]
"#;

/// How `check` shows an uplink's next hop: its fixed MAC, or the addresses
/// resolved on the wire.
fn next_hop_text(u: &UplinkInfo) -> String {
    if u.next_hop_mac != [0; 6] {
        return pipelines::wire::fmt_mac(&u.next_hop_mac);
    }
    let ips: Vec<String> = [u.next_hop_v4.map(IpAddr::V4), u.next_hop_v6.map(IpAddr::V6)]
        .into_iter()
        .flatten()
        .map(|a| a.to_string())
        .collect();
    format!("{} (ARP/ND)", ips.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_translate_lcore_gets_a_hairpin_ring_fed_by_the_others() {
        let plan = test_plan(TEST_PIPELINE_3_SHARDS);
        assert_eq!(plan.shards(), 3);
        assert_eq!(
            plan.hairpin_rings,
            vec![
                HairpinRingPlan {
                    to: 1,
                    from: vec![2, 3]
                },
                HairpinRingPlan {
                    to: 2,
                    from: vec![1, 3]
                },
                HairpinRingPlan {
                    to: 3,
                    from: vec![1, 2]
                },
            ]
        );
        let text = plan.describe();
        assert!(
            text.contains("lcores 2, 3 -> lcore 1 (hairpin, shard 0)"),
            "{text}"
        );
        assert!(
            text.contains("lcores 1, 2 -> lcore 3 (hairpin, shard 2)"),
            "{text}"
        );
    }

    #[test]
    fn run_to_completion_lcores_each_get_a_hairpin_ring() {
        let plan = test_plan(
            "[runtime]\nmode = \"run-to-completion\"\n[[runtime.lcores]]\n[[runtime.lcores]]\n",
        );
        assert_eq!(
            plan.hairpin_rings,
            vec![
                HairpinRingPlan {
                    to: 0,
                    from: vec![1]
                },
                HairpinRingPlan {
                    to: 1,
                    from: vec![0]
                },
            ]
        );
        assert!(plan
            .describe()
            .contains("lcore 1 -> lcore 0 (hairpin, shard 0)"));
    }

    /// The demo site with `extra` added to the first `[[sim.uplinks]]` entry.
    fn demo_with_first_sim_uplink(extra: &str) -> Result<Plan, ConfigError> {
        let demo = include_str!("../../../conf/demo.toml");
        let anchor = "[[sim.uplinks]]\nname = \"isp-a\"\n";
        assert!(demo.contains(anchor), "demo.toml changed its sim uplinks");
        let text = demo.replace(anchor, &format!("{anchor}{extra}\n"));
        let cfg = crate::config::parse(&text).expect("demo variant parses");
        validate_with_cpus(&cfg, 8)
    }

    #[test]
    fn sim_proxy_keys_are_validated_and_described() {
        let plan = demo_with_first_sim_uplink("").unwrap();
        let sim = plan.sim.as_ref().unwrap();
        assert!(sim
            .uplinks
            .iter()
            .all(|u| !u.proxy && u.proxy_delay_ms == 0.0));
        assert!(!plan.describe().contains("proxy"));

        let plan = demo_with_first_sim_uplink("proxy = true").unwrap();
        let u = &plan.sim.as_ref().unwrap().uplinks[0];
        assert!(u.proxy && u.proxy_delay_ms == SIM_PROXY_DELAY_MS_DEFAULT);
        let plan = demo_with_first_sim_uplink("proxy = true\nproxy_delay_ms = 2.5").unwrap();
        assert_eq!(plan.sim.as_ref().unwrap().uplinks[0].proxy_delay_ms, 2.5);
        let text = plan.describe();
        assert!(
            text.contains("isp-a") && text.contains("SYN proxy 2.5 ms from the appliance"),
            "{text}"
        );

        for (extra, msg) in [
            ("proxy = true\nproxy_delay_ms = -1.0", "allowed: 0..=10000"),
            (
                "proxy = true\nproxy_delay_ms = 20000.0",
                "allowed: 0..=10000",
            ),
            ("proxy = true\nproxy_delay_ms = nan", "allowed: 0..=10000"),
            ("proxy_delay_ms = 1.0", "only allowed with proxy = true"),
        ] {
            let e = demo_with_first_sim_uplink(extra).unwrap_err();
            assert_eq!(e.path, "sim.uplinks[0].proxy_delay_ms", "{extra}: {e:?}");
            assert!(e.msg.contains(msg), "{extra}: {e:?}");
        }
        let e = crate::config::parse(&include_str!("../../../conf/demo.toml").replace(
            "name = \"isp-a\"\ndelay_ms",
            "name = \"isp-a\"\nproxy = 1\ndelay_ms",
        ))
        .unwrap_err();
        assert!(e.contains("sim.uplinks[0].proxy"), "{e}");
    }

    #[test]
    fn a_single_shard_needs_no_hairpin_ring() {
        let one_lcore = test_plan("[runtime]\nmode = \"run-to-completion\"\n[[runtime.lcores]]\n");
        assert!(one_lcore.hairpin_rings.is_empty());
        let pipeline = test_plan(
            "[runtime]\nmode = \"pipeline\"\n\
             [[runtime.lcores]]\nstages = [\"classify\", \"replicate\"]\n\
             [[runtime.lcores]]\nstages = [\"translate\", \"transmit\"]\n",
        );
        assert!(pipeline.hairpin_rings.is_empty());
        assert!(!pipeline.describe().contains("hairpin"));
    }
}
