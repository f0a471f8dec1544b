//! Placement: burst, ring and pool sizes; lcores and their CPUs; groups of
//! lcores running the same stages; the rings between them (stage,
//! hand-off, hairpin) and the RX/TX queues each port needs.
//!
//! Invariants: the groups' stages, in order, are each of the four stages
//! exactly once; each lcore of the group holding `translate` owns one NAT
//! shard (so the shard count is that group's size).
//! May import `crate::config`, `super` (err) and pipelines; nothing else.

use pipelines::BURST_MAX;

use super::{err, ConfigError, Stage};
use crate::config::{Mode, RuntimeConfig};

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

/// Runtime: burst, rings, pool.
pub(super) fn check_sizes(rt: &RuntimeConfig) -> Result<(), ConfigError> {
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
    Ok(())
}

pub(super) fn plan_lcores(
    rt: &RuntimeConfig,
    cpus: usize,
) -> Result<(Vec<LcorePlan>, Vec<GroupPlan>), ConfigError> {
    check_cpus(rt, cpus)?;
    let stage_lists = rt
        .lcores
        .iter()
        .enumerate()
        .map(|(i, l)| lcore_stages(rt.mode, i, &l.stages))
        .collect::<Result<Vec<_>, _>>()?;
    let (lcores, mut groups) = group_lcores(rt, &stage_lists)?;
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

/// The lcore count against the machine's CPUs, and each pinned CPU.
fn check_cpus(rt: &RuntimeConfig, cpus: usize) -> Result<(), ConfigError> {
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
    Ok(())
}

/// The stages lcore `i` runs: all four in run-to-completion mode, the
/// listed ones (distinct, in packet-path order) in pipeline mode.
fn lcore_stages(mode: Mode, i: usize, stages: &[Stage]) -> Result<Vec<Stage>, ConfigError> {
    match mode {
        Mode::RunToCompletion => {
            if !stages.is_empty() && stages != Stage::ALL {
                return err(
                    format!("runtime.lcores[{i}].stages"),
                    "in run-to-completion mode every lcore runs all four stages; omit `stages`",
                );
            }
            Ok(Stage::ALL.to_vec())
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
            Ok(stages.to_vec())
        }
    }
}

/// Consecutive lcores with the same stages form a group.
fn group_lcores(
    rt: &RuntimeConfig,
    stage_lists: &[Vec<Stage>],
) -> Result<(Vec<LcorePlan>, Vec<GroupPlan>), ConfigError> {
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
    Ok((lcores, groups))
}

/// NAT shards: one per lcore of the group holding translate.
pub(super) fn shards(groups: &[GroupPlan]) -> u16 {
    groups
        .iter()
        .find(|g| g.stages.contains(&Stage::Translate))
        .map(|g| g.lcores.len())
        .unwrap_or(1) as u16
}

/// RX queues per port: one per lcore of the first group.
pub(super) fn rx_queues(groups: &[GroupPlan]) -> usize {
    groups.first().map(|g| g.lcores.len()).unwrap_or(1)
}

/// TX queues per port: one per lcore of the group holding transmit.
pub(super) fn tx_queues(groups: &[GroupPlan]) -> usize {
    groups
        .iter()
        .find(|g| g.stages.contains(&Stage::Transmit))
        .map(|g| g.lcores.len())
        .unwrap_or(1)
}

pub(super) fn plan_rings(groups: &[GroupPlan]) -> Vec<RingPlan> {
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
pub(super) fn plan_hairpin_rings(groups: &[GroupPlan]) -> Vec<HairpinRingPlan> {
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
