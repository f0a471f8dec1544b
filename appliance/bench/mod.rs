//! `appliance bench`: the real runtime (the config's lcores, placement,
//! rings and stages, assembled by [`crate::runtime`] as for `appliance run`)
//! over the bench backend's generator and sinks ([`crate::ports::bench`]),
//! with the NAT tables holding every flow before timing; with `--compare`,
//! the no-op forwarder (the same generator, lcores, placement and rings,
//! every stage a pass-through) in the same invocation, and the ratio.
//!
//! The top floor beside `lab`: nothing else in the crate imports it.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;

use crate::config::{self, plan, Config, LcoreConfig, Mode};
use crate::ports::bench::{hosts_for, FlowSpec, FLOWS_PER_HOST, REMOTES_PER_ENDPOINT};

mod measure;
mod report;
#[cfg(test)]
mod tests;

pub use report::{BenchReport, RunReport};

/// The embedded default site, used when `--config` is omitted.
const DEMO: &str = include_str!("../../conf/demo.toml");

/// `appliance bench`'s flags.
#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Site configuration (TOML); default: the embedded demo site
    /// (conf/demo.toml). Its backend is not opened: the bench's generator
    /// and sinks stand in for the ports.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Distinct flows (1..=10000000), each in the NAT tables before timing.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub flows: u32,
    /// New flows per second while timing (0..=100000000; 0: none).
    #[arg(long = "new-per-sec", value_name = "R", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    pub new_per_sec: u64,
    /// Ethernet frame size in bytes, without FCS (64..=9018, at most the
    /// smallest port MTU plus the Ethernet header).
    #[arg(long, value_name = "B", default_value_t = 64, value_parser = clap::value_parser!(u16).range(64..=9018))]
    pub size: u16,
    /// TCP:UDP shares of the flows, e.g. 1:1, 0:1 (UDP only), 3:1.
    #[arg(long, value_name = "TCP:UDP", default_value = "1:1", value_parser = parse_mix)]
    pub mix: Mix,
    /// Seconds timed for each forwarder (0.1..=3600).
    #[arg(long, value_name = "S", default_value_t = 3.0, value_parser = parse_seconds)]
    pub seconds: f64,
    /// Print one JSON object (keys: README "appliance bench").
    #[arg(long)]
    pub json: bool,
    /// Also run the no-op forwarder and print the ratio appliance/no-op.
    #[arg(long)]
    pub compare: bool,
    /// Instead of the config's [runtime] mode.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Instead of the config's [[runtime.lcores]]: N unpinned lcores
    /// (1..=64; pipeline: the first classifies and replicates, the others
    /// translate and transmit, and one lcore runs all four stages).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub lcores: Option<u16>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ModeArg {
    Pipeline,
    RunToCompletion,
}

/// `--mix`: the TCP and UDP shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    pub tcp: u32,
    pub udp: u32,
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.tcp, self.udp)
    }
}

/// Parses `TCP:UDP` (two whole numbers up to 1000, not both 0).
pub fn parse_mix(s: &str) -> Result<Mix, String> {
    let err = || {
        format!("`{s}` is not TCP:UDP shares: two whole numbers 0..=1000, not both 0 (e.g. 1:1, 0:1, 3:1)")
    };
    let (t, u) = s.split_once(':').ok_or_else(err)?;
    let (tcp, udp): (u32, u32) = (
        t.trim().parse().map_err(|_| err())?,
        u.trim().parse().map_err(|_| err())?,
    );
    if tcp + udp == 0 || tcp > 1000 || udp > 1000 {
        return Err(err());
    }
    Ok(Mix { tcp, udp })
}

/// Parses the seconds timed: 0.1..=3600.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds in 0.1..=3600")),
    }
}

/// Runs the bench and prints its report (text, or JSON with `--json`).
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let (name, text) = match &args.config {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?,
        ),
        None => ("(embedded conf/demo.toml)".to_string(), DEMO.to_string()),
    };
    let mut cfg = config::parse(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    override_runtime(&mut cfg, args);
    // The shards follow from the lcores: size the tables for them.
    let shards = plan::validate(&cfg)
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?
        .shards();
    let adjusted = fit_tables(&mut cfg, args, shards);
    let plan = plan::validate(&cfg).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    resolve_next_hops(&plan);
    let spec = FlowSpec {
        flows: args.flows,
        new_per_sec: args.new_per_sec,
        size: usize::from(args.size),
        tcp: args.mix.tcp,
        udp: args.mix.udp,
    };
    let show = !args.json && std::io::stderr().is_terminal();
    let appliance = measure::measure(&plan, &spec, args.seconds, false, show)?;
    let noop = if args.compare {
        Some(measure::measure(&plan, &spec, args.seconds, true, show)?)
    } else {
        None
    };
    let r = BenchReport::new(&name, &plan, args, adjusted, appliance, noop);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", r.text());
    }
    Ok(())
}

/// Next hops the config resolves by ARP / neighbour discovery get a MAC as
/// if their router had answered: the sinks answer nothing, and without one
/// every packet would be dropped `next_hop_unresolved`.
fn resolve_next_hops(plan: &plan::Plan) {
    use pipelines::neighbour::Claim;
    for (i, h) in plan.neighbours.hops().iter().enumerate() {
        if let (false, Some(ip), None) = (h.fixed, h.ip, h.mac()) {
            h.asked(pipelines::Nanos::ZERO);
            let claim = Claim::Advert {
                answer: true,
                overrides: true,
            };
            let mac = [0x02, 0xbe, 0x0c, 0xfe, 0, i as u8];
            plan.neighbours
                .offer(h.port, ip, mac, claim, pipelines::Nanos::ZERO);
        }
    }
}

/// `--mode` and `--lcores` in place of the config's `[runtime]`.
fn override_runtime(cfg: &mut Config, args: &BenchArgs) {
    if let Some(m) = args.mode {
        cfg.runtime.mode = match m {
            ModeArg::Pipeline => Mode::Pipeline,
            ModeArg::RunToCompletion => Mode::RunToCompletion,
        };
    }
    let n = match args.lcores {
        Some(n) => usize::from(n),
        // A mode changed alone keeps the number of lcores, unpinned.
        None if args.mode.is_some() => cfg.runtime.lcores.len(),
        None => return,
    };
    use crate::config::Stage::*;
    let lcore = |stages: Vec<crate::config::Stage>| LcoreConfig { core: None, stages };
    cfg.runtime.lcores = match cfg.runtime.mode {
        Mode::RunToCompletion => (0..n).map(|_| lcore(Vec::new())).collect(),
        Mode::Pipeline if n == 1 => vec![lcore(vec![Classify, Replicate, Translate, Transmit])],
        Mode::Pipeline => std::iter::once(lcore(vec![Classify, Replicate]))
            .chain((1..n).map(|_| lcore(vec![Translate, Transmit])))
            .collect(),
    };
}

/// Raises the NAT limits that would refuse the bench's flows (a table too
/// small for them, host limits below one client's flows); each change is
/// reported. `shards`: the plan's NAT shards.
fn fit_tables(cfg: &mut Config, args: &BenchArgs, shards: u16) -> Vec<String> {
    let shards = u64::from(shards.max(1));
    let new = (args.new_per_sec as f64 * (args.seconds + 1.0)) as u64;
    let flows = u64::from(args.flows) + new;
    let hosts = u64::from(hosts_for(args.flows));
    // Flows spread over the shards by hash: a quarter more room than even.
    let per_shard = (flows * 5 / 4).div_ceil(shards) + 1024;
    let per_host = u64::from(FLOWS_PER_HOST).min(u64::from(args.flows)) + new.div_ceil(hosts);
    let mut changed = Vec::new();
    let nat = &mut cfg.nat;
    // Never past what the config's validation allows (the flows past it
    // are then refused, and counted, as in a real run).
    let mut raise = |key: &str, v: u64, want: u64, most: u64| -> u64 {
        let want = want.min(most);
        if v < want {
            let capped = if want == most {
                " (the most allowed)"
            } else {
                ""
            };
            changed.push(format!("nat.{key}: {v} -> {want}{capped}"));
            want
        } else {
            v
        }
    };
    let m = 16 * 1024 * 1024;
    nat.max_sessions_per_shard = raise(
        "max_sessions_per_shard",
        nat.max_sessions_per_shard as u64,
        per_shard,
        m,
    ) as usize;
    nat.max_hosts_per_shard = raise(
        "max_hosts_per_shard",
        nat.max_hosts_per_shard as u64,
        hosts * 2 + 64,
        1 << 20,
    ) as usize;
    nat.host_max_sessions = raise(
        "host_max_sessions",
        nat.host_max_sessions.into(),
        per_host * 2,
        m,
    ) as u32;
    nat.host_new_burst = raise(
        "host_new_burst",
        nat.host_new_burst.into(),
        per_host * 2,
        10_000_000,
    ) as u32;
    let rate = (args.new_per_sec * 2).div_ceil(hosts);
    nat.host_new_per_second = raise(
        "host_new_per_second",
        nat.host_new_per_second.into(),
        rate,
        10_000_000,
    ) as u32;
    let remotes = u64::from(REMOTES_PER_ENDPOINT);
    nat.mapping_max_sessions = raise(
        "mapping_max_sessions",
        nat.mapping_max_sessions.into(),
        remotes,
        65_535,
    ) as u32;
    changed
}
