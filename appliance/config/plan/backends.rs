//! What only one port backend has: the port keys each backend needs or
//! refuses (MAC, interface, device, captures), the `[sim]` site, the
//! `[af_packet]` rings and the `[dpdk]` EAL and queue settings.
//!
//! Invariants: a backend's section is present only with that backend;
//! `Plan::dpdk` is `Some` exactly with backend = "dpdk"; sim clients fit
//! in the LAN prefixes and sim servers lie outside the LAN and the NAT
//! addresses.
//! May import `crate::config`, `super` (err, lcores' `GroupPlan`) and
//! pipelines; never the port backends themselves.

use std::net::{IpAddr, Ipv4Addr};

use pipelines::topology::Topology;

use super::{err, ConfigError, GroupPlan, PortPlan};
use crate::config::{
    AfPacketConfig, BackendKind, Config, DpdkConfig, Mode, PortConfig, ReturnSteering, SimConfig,
    SimUplinkConfig,
};

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

/// The port's MAC: required with the sim and pcap backends; the live ones
/// (af-packet, dpdk) take the device's own when it is omitted (all zeros).
pub(super) fn port_mac(
    backend: BackendKind,
    p: &PortConfig,
    path: &str,
) -> Result<[u8; 6], ConfigError> {
    let live = matches!(backend, BackendKind::AfPacket | BackendKind::Dpdk);
    match p.mac {
        Some(m) => Ok(m),
        None if live => Ok([0; 6]),
        None => err(
            format!("{path}.mac"),
            "required with the sim and pcap backends (aa:bb:cc:dd:ee:ff)",
        ),
    }
}

/// af-packet ports name a Linux interface, dpdk ports a device; each
/// unique, and neither key with another backend.
pub(super) fn check_port_device(cfg: &Config, i: usize, path: &str) -> Result<(), ConfigError> {
    let p = &cfg.ports[i];
    let (want, have_other) = match cfg.backend {
        BackendKind::AfPacket => (Some(("interface", &p.interface)), p.device.is_some()),
        BackendKind::Dpdk => (Some(("device", &p.device)), p.interface.is_some()),
        _ => (None, p.interface.is_some() || p.device.is_some()),
    };
    if have_other {
        return err(
            path,
            "`interface` is only for backend = \"af-packet\", `device` only for backend = \"dpdk\"",
        );
    }
    let Some((key, v)) = want else {
        return Ok(());
    };
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
    Ok(())
}

pub(super) fn check_port_pcap(
    backend: BackendKind,
    p: &PortConfig,
    path: &str,
) -> Result<(), ConfigError> {
    if backend != BackendKind::Pcap && (p.pcap_in.is_some() || p.pcap_out.is_some()) {
        return err(
            format!("{path}.pcap_in"),
            "pcap_in / pcap_out are only allowed with backend = \"pcap\"",
        );
    }
    Ok(())
}

/// The pcap backend replays at least one capture.
pub(super) fn check_pcap_inputs(
    backend: BackendKind,
    ports: &[PortPlan],
) -> Result<(), ConfigError> {
    if backend == BackendKind::Pcap && !ports.iter().any(|p| p.pcap_in.is_some()) {
        return err(
            "ports",
            "backend = \"pcap\" needs pcap_in on at least one port",
        );
    }
    Ok(())
}

/// `[sim]`: required with backend = "sim", refused with the others.
pub(super) fn plan_sim_section(
    cfg: &Config,
    topo: &Topology,
) -> Result<Option<SimPlan>, ConfigError> {
    match (cfg.backend, &cfg.sim) {
        (BackendKind::Sim, None) => err("sim", "backend = \"sim\" needs a [sim] section"),
        (BackendKind::Sim, Some(s)) => plan_sim(s, topo).map(Some),
        (_, Some(_)) => err(
            "sim",
            "a [sim] section is only allowed with backend = \"sim\"",
        ),
        (_, None) => Ok(None),
    }
}

fn plan_sim(s: &SimConfig, topo: &Topology) -> Result<SimPlan, ConfigError> {
    if s.clients == 0 || s.clients > 60_000 {
        return err("sim.clients", format!("{}; allowed: 1..=60000", s.clients));
    }
    if s.servers == 0 || s.servers > 10_000 {
        return err("sim.servers", format!("{}; allowed: 1..=10000", s.servers));
    }
    check_sim_addresses(s, topo)?;
    check_sim_traffic(s)?;
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
        uplinks[id] = Some(plan_sim_uplink(u, &path)?);
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
        client_base: s.client_base,
        server_base: s.server_base,
        uplinks,
    })
}

/// Clients all inside the LAN prefixes; servers all outside the LAN and
/// the NAT addresses.
fn check_sim_addresses(s: &SimConfig, topo: &Topology) -> Result<(), ConfigError> {
    let (client_base, server_base) = (s.client_base, s.server_base);
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
    Ok(())
}

/// Ports, intervals, timeouts and payload sizes of the simulated traffic.
fn check_sim_traffic(s: &SimConfig) -> Result<(), ConfigError> {
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
    Ok(())
}

/// One `[[sim.uplinks]]` entry's path conditions.
fn plan_sim_uplink(u: &SimUplinkConfig, path: &str) -> Result<SimUplinkPlan, ConfigError> {
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
        (false, Some(_)) => return err(
            format!("{path}.proxy_delay_ms"),
            "only allowed with proxy = true (it is the delay between the appliance and the proxy)",
        ),
        (false, None) => 0.0,
        (true, d) => d.unwrap_or(SIM_PROXY_DELAY_MS_DEFAULT),
    };
    if !(0.0..=10_000.0).contains(&proxy_delay_ms) {
        return err(
            format!("{path}.proxy_delay_ms"),
            format!("{proxy_delay_ms}; allowed: 0..=10000"),
        );
    }
    Ok(SimUplinkPlan {
        delay_ms: u.delay_ms,
        jitter_ms: u.jitter_ms,
        loss: u.loss,
        proxy: u.proxy,
        proxy_delay_ms,
    })
}

pub(super) fn plan_af_packet(cfg: &Config) -> Result<AfPacketConfig, ConfigError> {
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

/// `[dpdk]` with backend = "dpdk" (defaults when absent); `None` otherwise.
/// Flow steering needs one group of workers that each receive and own a
/// shard (run-to-completion mode).
pub(super) fn plan_dpdk(
    cfg: &Config,
    groups: &[GroupPlan],
) -> Result<Option<DpdkConfig>, ConfigError> {
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
    check_dpdk_sizes(&d)?;
    for (i, a) in d.allow.iter().enumerate() {
        if !is_pci_address(a) {
            return err(
                format!("dpdk.allow[{i}]"),
                format!("`{a}` is not a PCI address (0000:3b:02.0)"),
            );
        }
    }
    if d.return_steering == ReturnSteering::Flow
        && (cfg.runtime.mode != Mode::RunToCompletion || groups.len() != 1)
    {
        return err(
            "dpdk.return_steering",
            "\"flow\" steers each NAT shard's return traffic to the RX queue of the worker that owns it: it needs runtime.mode = \"run-to-completion\"; use \"software\" with pipeline mode",
        );
    }
    Ok(Some(d))
}

/// EAL memory, mempools and descriptor rings within what DPDK takes.
fn check_dpdk_sizes(d: &DpdkConfig) -> Result<(), ConfigError> {
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
    Ok(())
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
