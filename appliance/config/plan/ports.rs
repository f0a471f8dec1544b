//! The site's shape: ports, the LAN, uplinks with their expanded NAT
//! addresses and next hops, and the [`Topology`] built from them.
//!
//! Invariants: port and uplink names are unique and non-empty; an uplink
//! never uses the LAN port; NAT address ranges are disjoint from each
//! other and from the LAN prefixes, and expand to at most
//! `MAX_NAT_ADDRESSES` in all.
//! Backend-specific port keys are checked by `backends`.
//! May import `crate::config`, `super` (err, backends) and pipelines.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use pipelines::topology::{
    IcmpLimits, IpPrefix, NatPortRange, PortInfo, PortRole, Topology, UplinkInfo, DEFAULT_MTU,
    MAX_UPLINKS,
};

use super::{backends, err, ConfigError};
use crate::config::{Config, UplinkConfig};

/// Most NAT addresses a site may expand to (each has a port pool per shard).
const MAX_NAT_ADDRESSES: usize = 1024;

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
    /// The port's MTU (`ports[].mtu`, default 1500).
    pub mtu: u16,
}

/// The LAN side, resolved.
pub(super) struct LanPlan {
    pub port: u16,
    pub prefixes: Vec<IpPrefix>,
    pub addrs: Vec<IpAddr>,
}

pub(super) fn plan_ports(cfg: &Config) -> Result<Vec<PortPlan>, ConfigError> {
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
        let mac = backends::port_mac(cfg.backend, p, &path)?;
        backends::check_port_device(cfg, i, &path)?;
        if let Some(v) = p.vlan {
            if !(1..=4094).contains(&v) {
                return err(
                    format!("{path}.vlan"),
                    format!("{v} is not a VLAN id; allowed: 1..=4094"),
                );
            }
        }
        backends::check_port_pcap(cfg.backend, p, &path)?;
        ports.push(PortPlan {
            name: p.name.clone(),
            mac,
            interface: p.interface.clone(),
            device: p.device.clone(),
            vlan: p.vlan,
            pcap_in: p.pcap_in.clone(),
            pcap_out: p.pcap_out.clone(),
            mtu: p.mtu.unwrap_or(DEFAULT_MTU),
        });
    }
    backends::check_pcap_inputs(cfg.backend, &ports)?;
    Ok(ports)
}

/// The index of the port called `name`; the error at `path` lists them.
fn port_index(cfg: &Config, name: &str, path: String) -> Result<u16, ConfigError> {
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
}

pub(super) fn plan_lan(cfg: &Config) -> Result<LanPlan, ConfigError> {
    let port = port_index(cfg, &cfg.lan.port, "lan.port".into())?;
    if cfg.lan.prefixes.is_empty() {
        return err(
            "lan.prefixes",
            "at least one inside prefix is required (e.g. \"10.0.0.0/16\")",
        );
    }
    Ok(LanPlan {
        port,
        prefixes: cfg.lan.prefixes.clone(),
        addrs: cfg.lan.addresses.clone(),
    })
}

pub(super) fn plan_uplinks(cfg: &Config, lan: &LanPlan) -> Result<Vec<UplinkInfo>, ConfigError> {
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
    let mut nat = NatAddresses::default();
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
        let port = port_index(cfg, &u.port, format!("{path}.port"))?;
        if port == lan.port {
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
        let nat_addrs = nat.expand(u, &path, &lan.prefixes)?;
        check_next_hops(u, &path, &nat_addrs)?;
        if u.weight == 0 {
            return err(format!("{path}.weight"), "must be at least 1");
        }
        uplinks.push(UplinkInfo {
            name: u.name.clone(),
            port,
            nat_addrs,
            next_hop_mac: u.next_hop_mac.unwrap_or([0; 6]),
            next_hop_v4: u.next_hop,
            next_hop_v6: u.next_hop_v6,
            weight: u.weight,
            answer_ping: u.answer_ping,
        });
    }
    Ok(uplinks)
}

/// The NAT address ranges of the uplinks seen so far, for the overlap and
/// total-size checks.
#[derive(Default)]
struct NatAddresses {
    /// Each range and who owns it, as the overlap error names it.
    ranges: Vec<(IpPrefix, String)>,
    expanded: usize,
}

impl NatAddresses {
    /// Expands uplink `u`'s NAT prefixes into single addresses.
    fn expand(
        &mut self,
        u: &UplinkConfig,
        path: &str,
        lan_prefixes: &[IpPrefix],
    ) -> Result<Vec<IpAddr>, ConfigError> {
        let mut nat_addrs = Vec::new();
        for (j, p) in u.nat_addresses.iter().enumerate() {
            let fpath = format!("{path}.nat_addresses[{j}]");
            if let Some((_, owner)) = self.ranges.iter().find(|(q, _)| q.overlaps(p)) {
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
            if n > (MAX_NAT_ADDRESSES - self.expanded) as u128 {
                return err(fpath, format!("{p} expands past {MAX_NAT_ADDRESSES} NAT addresses in all; use a longer prefix"));
            }
            self.expanded += n as usize;
            for x in first..=last {
                nat_addrs.push(match p.addr {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(x as u32)),
                    IpAddr::V6(_) => IpAddr::V6(x.into()),
                });
            }
            self.ranges
                .push((*p, format!("{}.nat_addresses[{j}] ({})", path, u.name)));
        }
        Ok(nat_addrs)
    }
}

/// Without a fixed next-hop MAC, each family the uplink NATs to needs its
/// next hop's address, to resolve the MAC on the wire.
fn check_next_hops(u: &UplinkConfig, path: &str, nat_addrs: &[IpAddr]) -> Result<(), ConfigError> {
    if u.next_hop_mac.is_some() {
        return Ok(());
    }
    for (v6, key, have) in [
        (false, "next_hop", u.next_hop.is_some()),
        (true, "next_hop_v6", u.next_hop_v6.is_some()),
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
    Ok(())
}

/// Smallest and largest `ports[].mtu`: RFC 791's minimum, a jumbo frame.
const MTU_RANGE: std::ops::RangeInclusive<u16> = 68..=9000;
/// Smallest MTU of a port that carries IPv6 (RFC 8200 5).
const MTU_V6_MIN: u16 = 1280;

/// Checks `ports[].mtu` against its range and the IPv6 minimum on the
/// ports that carry IPv6 (the LAN with an IPv6 prefix, an uplink with an
/// IPv6 NAT address).
pub(super) fn check_mtus(
    ports: &[PortPlan],
    lan: &LanPlan,
    uplinks: &[UplinkInfo],
) -> Result<(), ConfigError> {
    for (i, p) in ports.iter().enumerate() {
        let path = format!("ports[{i}].mtu");
        if !MTU_RANGE.contains(&p.mtu) {
            return err(
                path,
                format!(
                    "{} is not an MTU; allowed: {}..={}",
                    p.mtu,
                    MTU_RANGE.start(),
                    MTU_RANGE.end()
                ),
            );
        }
        let l2 = pipelines::wire::ethernet::l2_len(p.vlan);
        let room = pipelines::packet::buf::DATA_ROOM - l2;
        if usize::from(p.mtu) > room {
            return err(
                path,
                format!(
                    "{}: the appliance's buffers hold {}-byte frames, so at most {room} on this {} port",
                    p.mtu,
                    pipelines::packet::buf::DATA_ROOM,
                    if p.vlan.is_some() { "tagged" } else { "untagged" }
                ),
            );
        }
        let v6 = (usize::from(lan.port) == i && lan.prefixes.iter().any(|x| x.addr.is_ipv6()))
            || uplinks
                .iter()
                .any(|u| usize::from(u.port) == i && u.nat_addrs.iter().any(|a| a.is_ipv6()));
        if v6 && p.mtu < MTU_V6_MIN {
            return err(
                path,
                format!(
                    "{}: the port carries IPv6, whose minimum MTU is {MTU_V6_MIN} (RFC 8200)",
                    p.mtu
                ),
            );
        }
    }
    Ok(())
}

/// The topology every stage shares.
pub(super) fn topology(
    ports: &[PortPlan],
    lan: LanPlan,
    uplinks: Vec<UplinkInfo>,
    nat_ports: NatPortRange,
    shards: u16,
    icmp: IcmpLimits,
) -> Arc<Topology> {
    let port_infos = ports
        .iter()
        .map(|p| PortInfo {
            name: p.name.clone(),
            mac: p.mac,
            vlan: p.vlan,
            role: PortRole::Unused,
            mtu: p.mtu,
        })
        .collect();
    let mut t = Topology::new(
        port_infos,
        lan.port,
        lan.prefixes,
        lan.addrs,
        uplinks,
        nat_ports,
        shards,
    );
    t.icmp = icmp;
    Arc::new(t)
}
