//! What a reload changes: the running [`Config`] against a new one, field by
//! field. Each field is either *live* (a reload applies it without losing
//! sessions) or needs a restart; [`diff`] returns the live fields that
//! changed, or a [`ConfigError`] naming the first restart field that
//! changed (and then nothing is applied).
//!
//! Every struct is destructured without `..`: a field added to the model
//! does not compile here until it is sorted into live or restart.
//!
//! Live: `uplinks[i].weight`; `[selection]` except `dest_prefix_v4/v6` and
//! `max_races_per_shard`; `[nat]` timeouts, filtering, sweep interval, port
//! preservation and per-host limits; most of `[redirection]` (see
//! [`redirection`]). Restart: everything else (backend, ports, LAN,
//! uplinks' other fields, lcores and runtime sizes, the NAT port range,
//! table sizes and seed, neighbours, control, backend sections).
//! May import `crate::config`; nothing else.

use std::fmt::Debug;

use super::{Config, ConfigError, NatSection, PortConfig, SelectionSection, UplinkConfig};

/// Equal as the model reads them (every model type prints all it holds).
fn same<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

fn restart(path: impl Into<String>, what: &str) -> ConfigError {
    ConfigError {
        path: path.into(),
        msg: format!("changing {what} needs a restart (nothing was applied)"),
    }
}

/// Collects changed live fields; the first changed restart field is the
/// error.
struct Diff {
    live: Vec<String>,
}

impl Diff {
    fn live<T: Debug>(&mut self, path: String, a: &T, b: &T) {
        if !same(a, b) {
            self.live.push(path);
        }
    }
}

fn fixed<T: Debug>(path: impl Into<String>, what: &str, a: &T, b: &T) -> Result<(), ConfigError> {
    if same(a, b) {
        Ok(())
    } else {
        Err(restart(path, what))
    }
}

/// The live fields `new` changes against `old` (paths as in the file:
/// `nat.udp_idle_timeout_s`, `uplinks[2].weight`), or the first field that
/// needs a restart.
pub fn diff(old: &Config, new: &Config) -> Result<Vec<String>, ConfigError> {
    let Config {
        backend,
        lan,
        ports,
        uplinks,
        nat,
        selection,
        runtime,
        neighbours,
        redirection,
        control,
        sim,
        af_packet,
        dpdk,
        fragments,
        icmp,
        telemetry,
    } = new;
    let mut d = Diff { live: Vec::new() };
    fixed("backend", "the backend", &old.backend, backend)?;
    diff_ports(&old.ports, ports)?;
    fixed("lan", "the LAN", &old.lan, lan)?;
    diff_uplinks(&mut d, &old.uplinks, uplinks)?;
    diff_nat(&mut d, &old.nat, nat)?;
    diff_selection(&mut d, &old.selection, selection)?;
    fixed(
        "runtime",
        "the runtime (lcores, placement, sizes)",
        &old.runtime,
        runtime,
    )?;
    fixed("neighbours", "neighbours", &old.neighbours, neighbours)?;
    redirection::diff_redirection(&mut d, &old.redirection, redirection)?;
    fixed("control", "the control socket", &old.control, control)?;
    fixed("sim", "the sim site", &old.sim, sim)?;
    fixed(
        "af_packet",
        "the af_packet rings",
        &old.af_packet,
        af_packet,
    )?;
    fixed("dpdk", "DPDK settings", &old.dpdk, dpdk)?;
    fixed(
        "fragments",
        "the fragment trackers (reserved at start)",
        &old.fragments,
        fragments,
    )?;
    fixed("icmp", "the ICMP rate limiters", &old.icmp, icmp)?;
    fixed(
        "telemetry",
        "the metrics endpoint",
        &old.telemetry,
        telemetry,
    )?;
    Ok(d.live)
}

fn diff_ports(old: &[PortConfig], new: &[PortConfig]) -> Result<(), ConfigError> {
    if old.len() != new.len() {
        return Err(restart("ports", "ports"));
    }
    for (i, (o, n)) in old.iter().zip(new).enumerate() {
        let PortConfig {
            name,
            mac,
            interface,
            device,
            vlan,
            pcap_in,
            pcap_out,
            mtu,
        } = n;
        let p = |f: &str| format!("ports[{i}].{f}");
        fixed(p("name"), "ports", &o.name, name)?;
        fixed(p("mac"), "ports", &o.mac, mac)?;
        fixed(p("interface"), "ports", &o.interface, interface)?;
        fixed(p("device"), "ports", &o.device, device)?;
        fixed(p("vlan"), "ports", &o.vlan, vlan)?;
        fixed(p("pcap_in"), "ports", &o.pcap_in, pcap_in)?;
        fixed(p("pcap_out"), "ports", &o.pcap_out, pcap_out)?;
        fixed(p("mtu"), "ports", &o.mtu, mtu)?;
    }
    Ok(())
}

fn diff_uplinks(
    d: &mut Diff,
    old: &[UplinkConfig],
    new: &[UplinkConfig],
) -> Result<(), ConfigError> {
    if old.len() != new.len() {
        return Err(restart("uplinks", "the uplinks"));
    }
    for (i, (o, n)) in old.iter().zip(new).enumerate() {
        let UplinkConfig {
            name,
            port,
            nat_addresses,
            next_hop_mac,
            next_hop,
            next_hop_v6,
            weight,
            answer_ping,
        } = n;
        let p = |f: &str| format!("uplinks[{i}].{f}");
        fixed(p("name"), "an uplink's name", &o.name, name)?;
        fixed(p("port"), "an uplink's port", &o.port, port)?;
        fixed(
            p("nat_addresses"),
            "NAT address pools",
            &o.nat_addresses,
            nat_addresses,
        )?;
        fixed(
            p("next_hop_mac"),
            "next hops",
            &o.next_hop_mac,
            next_hop_mac,
        )?;
        fixed(p("next_hop"), "next hops", &o.next_hop, next_hop)?;
        fixed(p("next_hop_v6"), "next hops", &o.next_hop_v6, next_hop_v6)?;
        fixed(
            p("answer_ping"),
            "an uplink's ICMP answers",
            &o.answer_ping,
            answer_ping,
        )?;
        d.live(p("weight"), &o.weight, weight);
    }
    Ok(())
}

fn diff_nat(d: &mut Diff, o: &NatSection, n: &NatSection) -> Result<(), ConfigError> {
    let NatSection {
        port_range,
        max_sessions_per_shard,
        udp_idle_timeout_s,
        tcp_established_timeout_s,
        tcp_transitory_timeout_s,
        tcp_closed_timeout_s,
        icmp_timeout_s,
        filtering,
        sweep_interval_ms,
        port_preservation,
        seed,
        host_max_sessions,
        host_new_per_second,
        host_new_burst,
        host_max_races,
        max_hosts_per_shard,
        mapping_max_sessions,
    } = n;
    let p = |f: &str| format!("nat.{f}");
    fixed(
        p("port_range"),
        "the NAT port range",
        &o.port_range,
        port_range,
    )?;
    fixed(
        p("max_sessions_per_shard"),
        "a table size (reserved at start)",
        &o.max_sessions_per_shard,
        max_sessions_per_shard,
    )?;
    fixed(
        p("max_hosts_per_shard"),
        "a table size (reserved at start)",
        &o.max_hosts_per_shard,
        max_hosts_per_shard,
    )?;
    fixed(p("seed"), "the NAT hash seed", &o.seed, seed)?;
    fixed(
        p("mapping_max_sessions"),
        "the per-mapping limit (kept beside each port at start)",
        &o.mapping_max_sessions,
        mapping_max_sessions,
    )?;
    d.live(
        p("udp_idle_timeout_s"),
        &o.udp_idle_timeout_s,
        udp_idle_timeout_s,
    );
    d.live(
        p("tcp_established_timeout_s"),
        &o.tcp_established_timeout_s,
        tcp_established_timeout_s,
    );
    d.live(
        p("tcp_transitory_timeout_s"),
        &o.tcp_transitory_timeout_s,
        tcp_transitory_timeout_s,
    );
    d.live(
        p("tcp_closed_timeout_s"),
        &o.tcp_closed_timeout_s,
        tcp_closed_timeout_s,
    );
    d.live(p("icmp_timeout_s"), &o.icmp_timeout_s, icmp_timeout_s);
    d.live(p("filtering"), &o.filtering, filtering);
    d.live(
        p("sweep_interval_ms"),
        &o.sweep_interval_ms,
        sweep_interval_ms,
    );
    d.live(
        p("port_preservation"),
        &o.port_preservation,
        port_preservation,
    );
    d.live(
        p("host_max_sessions"),
        &o.host_max_sessions,
        host_max_sessions,
    );
    d.live(
        p("host_new_per_second"),
        &o.host_new_per_second,
        host_new_per_second,
    );
    d.live(p("host_new_burst"), &o.host_new_burst, host_new_burst);
    d.live(p("host_max_races"), &o.host_max_races, host_max_races);
    Ok(())
}

fn diff_selection(
    d: &mut Diff,
    o: &SelectionSection,
    n: &SelectionSection,
) -> Result<(), ConfigError> {
    let SelectionSection {
        mode,
        algorithm,
        rtt_cache_ttl_s,
        dest_prefix_v4,
        dest_prefix_v6,
        cache_entries,
        race_timeout_ms,
        max_races_per_shard,
        tie_margin_pct,
        tcp_session_weight,
        udp_session_weight,
        unanswered_limit,
        probe_interval_s,
        on_uplink_down,
        publish_interval_ms,
        policies,
    } = n;
    let p = |f: &str| format!("selection.{f}");
    let keys = "the RTT cache's key length";
    fixed(p("dest_prefix_v4"), keys, &o.dest_prefix_v4, dest_prefix_v4)?;
    fixed(p("dest_prefix_v6"), keys, &o.dest_prefix_v6, dest_prefix_v6)?;
    fixed(
        p("max_races_per_shard"),
        "a table size (reserved at start)",
        &o.max_races_per_shard,
        max_races_per_shard,
    )?;
    d.live(p("mode"), &o.mode, mode);
    d.live(p("algorithm"), &o.algorithm, algorithm);
    d.live(p("rtt_cache_ttl_s"), &o.rtt_cache_ttl_s, rtt_cache_ttl_s);
    d.live(p("cache_entries"), &o.cache_entries, cache_entries);
    d.live(p("race_timeout_ms"), &o.race_timeout_ms, race_timeout_ms);
    d.live(p("tie_margin_pct"), &o.tie_margin_pct, tie_margin_pct);
    d.live(
        p("tcp_session_weight"),
        &o.tcp_session_weight,
        tcp_session_weight,
    );
    d.live(
        p("udp_session_weight"),
        &o.udp_session_weight,
        udp_session_weight,
    );
    d.live(p("unanswered_limit"), &o.unanswered_limit, unanswered_limit);
    d.live(p("probe_interval_s"), &o.probe_interval_s, probe_interval_s);
    d.live(p("on_uplink_down"), &o.on_uplink_down, on_uplink_down);
    d.live(
        p("publish_interval_ms"),
        &o.publish_interval_ms,
        publish_interval_ms,
    );
    d.live(p("policies"), &o.policies, policies);
    Ok(())
}

mod redirection;

#[cfg(test)]
mod tests;
