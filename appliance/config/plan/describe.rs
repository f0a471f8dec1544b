//! The text `appliance check` prints for a valid plan: backend and mode,
//! lcores and rings, ports, the LAN, uplinks, NAT and the simulated site.
//!
//! Invariant: the text is read by operators and by tests (`config_check`,
//! the plan's unit tests); its wording and layout change only on purpose.
//! May import `super` (the plan types) and pipelines' formatting; nothing
//! else.

use std::fmt::Write;
use std::net::IpAddr;

use pipelines::topology::{PortRole, UplinkInfo};
use pipelines::wire::fmt_mac;

use super::{Plan, RingKind, Stage};
use crate::config::{BackendKind, Mode};

impl Plan {
    /// The plan as `appliance check` prints it.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        self.describe_mode(&mut s);
        self.describe_lcores(&mut s);
        self.describe_rings(&mut s);
        self.describe_ports(&mut s);
        self.describe_uplinks(&mut s);
        self.describe_sim(&mut s);
        s
    }

    fn describe_mode(&self, s: &mut String) {
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
            self.topology.shards,
            self.burst_size,
            self.ring_size,
            self.pool_size
        );
    }

    fn describe_lcores(&self, s: &mut String) {
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
    }

    fn describe_rings(&self, s: &mut String) {
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
    }

    fn describe_ports(&self, s: &mut String) {
        let t = &self.topology;
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
            let _ = writeln!(s, "  {:<10} {} {role}{vlan}", p.name, fmt_mac(&p.mac));
        }
        let lan: Vec<_> = t.lan_prefixes.iter().map(|p| p.to_string()).collect();
        let _ = writeln!(
            s,
            "lan       {} via port {}",
            lan.join(", "),
            self.ports[t.lan_port as usize].name
        );
    }

    /// Uplinks, then the NAT line (ports per shard, sessions, UDP idle).
    fn describe_uplinks(&self, s: &mut String) {
        let t = &self.topology;
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
    }

    fn describe_sim(&self, s: &mut String) {
        let Some(sim) = &self.sim else {
            return;
        };
        let _ = writeln!(
            s,
            "sim       {} clients from {}, {} servers from {}",
            sim.cfg.clients, sim.client_base, sim.cfg.servers, sim.server_base
        );
        for (i, u) in sim.uplinks.iter().enumerate() {
            let _ = write!(
                s,
                "  {:<10} delay {} ms  jitter {} ms  loss {}",
                self.topology.uplinks[i].name, u.delay_ms, u.jitter_ms, u.loss
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
}

/// How `check` shows an uplink's next hop: its fixed MAC, or the addresses
/// resolved on the wire.
fn next_hop_text(u: &UplinkInfo) -> String {
    if u.next_hop_mac != [0; 6] {
        return fmt_mac(&u.next_hop_mac);
    }
    let ips: Vec<String> = [u.next_hop_v4.map(IpAddr::V4), u.next_hop_v6.map(IpAddr::V6)]
        .into_iter()
        .flatten()
        .map(|a| a.to_string())
        .collect();
    format!("{} (ARP/ND)", ips.join(", "))
}
