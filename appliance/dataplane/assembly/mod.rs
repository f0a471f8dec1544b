//! Assembling the data plane from the plan: the rings between lcores (stage,
//! hand-off and hairpin rings), the port queues dealt to the lcores that poll
//! and send on them, and one [`Worker`] per lcore with its stages, outputs and
//! the management core's ends of its selection and redirection rings. Nothing
//! here starts a thread: the runtime does.

use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use crossbeam::queue::ArrayQueue;
use pipelines::nat::NatCounters;
use pipelines::redirect::db::{RedirectDb, Snapshot};
use pipelines::redirect::service::{ServiceMap, ServicePlane};
use pipelines::stages::classify::Classify;
use pipelines::stages::replicate::Replicate;
use pipelines::stages::translate::Translate;
use pipelines::stages::transmit::Transmit;
use pipelines::{BufPool, HeapPool, PacketBuf, StageCounters, UplinkId};

use crate::config::plan::{GroupPlan, LcorePlan, Plan, RedirectionPlan, RingKind, Stage};
use crate::dataplane::rings::{
    RedirectRings, SelectionRings, REDIRECT_EVENT_RING_SIZE, SELECTION_EVENT_RING_SIZE,
};
use crate::dataplane::worker::{
    Alloc, LcoreCounters, NextGroup, PortCounters, Ring, Solicit, Stages, Worker,
};
use crate::ports::{PortQueues, RxQueue, TxQueue};

#[cfg(test)]
mod tests;

/// How many packets a ring holds now (rings of any buffer type).
pub trait QueuedLen: Send + Sync {
    fn queued(&self) -> usize;
}

impl<B: PacketBuf> QueuedLen for Ring<B> {
    fn queued(&self) -> usize {
        self.len()
    }
}

/// What the management core can read of one lcore.
#[derive(Clone)]
pub struct LcoreView {
    pub id: usize,
    pub stages: Vec<(Stage, Arc<StageCounters>)>,
    pub nat: Option<Arc<NatCounters>>,
    pub ports: Arc<Vec<PortCounters>>,
    pub counters: Arc<LcoreCounters>,
    /// Session requests to its NAT shard (translate lcores).
    pub sessions: Option<Arc<crate::dataplane::rings::NatControl>>,
    /// Its reload ring (lcores with replicate or translate).
    pub settings: Option<Arc<crate::dataplane::rings::SettingsControl>>,
    /// Its NAT event ring (translate lcores).
    pub nat_events: Option<Arc<crate::dataplane::rings::NatEventRing>>,
    /// Its capture tap (`appliance capture`).
    pub capture: Arc<crate::dataplane::rings::CaptureTap>,
    /// The service map classify started with, held here so that a reload
    /// replacing it never frees it on the lcore.
    pub first_services: Option<Arc<ServiceMap>>,
}

/// Everything the runtime starts, not yet started: one worker per lcore with
/// the CPU to pin it to, the counters the management core reads, and every
/// ring (to see what is still in flight).
pub struct Assembly<B: PacketBuf> {
    pub workers: Vec<(Worker<B>, Option<usize>)>,
    pub views: Vec<LcoreView>,
    pub rings: Vec<Arc<dyn QueuedLen>>,
    /// The management core's ends of the selection rings.
    pub selection: SelectionRings,
    /// ... and of the redirection rings.
    pub redirect: RedirectRings,
}

/// Buffers for packets the appliance originates, from a heap pool.
pub fn heap_alloc(pool: &'static HeapPool) -> Alloc<pipelines::HeapBuf> {
    Arc::new(move || pool.alloc())
}

/// Creates the rings of the plan and one worker per lcore, wired to them and
/// to the port queues.
pub fn assemble<B: PacketBuf>(
    plan: &Plan,
    queues: Vec<PortQueues<B>>,
    stop: &Arc<AtomicBool>,
    epoch: Instant,
    alloc: Alloc<B>,
) -> anyhow::Result<Assembly<B>> {
    let rings = Rings::new(plan);
    let mut dealt = deal_queues(plan, queues)?;
    let services = services(plan);
    let shared = Shared {
        plan,
        rings: &rings,
        services: services.as_ref(),
        stop,
        epoch,
        alloc: &alloc,
    };
    let mut a = Assembly {
        workers: Vec::new(),
        views: Vec::new(),
        rings: Vec::new(),
        selection: SelectionRings::default(),
        redirect: RedirectRings::default(),
    };
    for lc in &plan.lcores {
        let lcore = Lcore {
            shared: &shared,
            lc,
            group: &plan.groups[lc.group],
        };
        let worker = lcore.worker(&mut a, dealt.take(lc.id));
        a.workers.push((worker, lc.core));
    }
    a.rings = rings.watched();
    Ok(a)
}

/// The rings of the plan: one per planned (from, to, kind), and one hairpin
/// ring per translate lcore, shared by its senders.
struct Rings<'p, B: PacketBuf> {
    plan: &'p Plan,
    /// Parallel to `plan.rings`.
    stage: Vec<Arc<Ring<B>>>,
    /// Parallel to `plan.hairpin_rings`.
    hairpin: Vec<Arc<Ring<B>>>,
}

impl<'p, B: PacketBuf> Rings<'p, B> {
    fn new(plan: &'p Plan) -> Self {
        let make = |n: usize| {
            (0..n)
                .map(|_| Arc::new(Ring::new(plan.ring_size)))
                .collect()
        };
        Rings {
            plan,
            stage: make(plan.rings.len()),
            hairpin: make(plan.hairpin_rings.len()),
        }
    }

    /// Every ring of `kind` into lcore `to`.
    fn inbound(&self, to: usize, kind: RingKind) -> Vec<Arc<Ring<B>>> {
        self.plan
            .rings
            .iter()
            .zip(&self.stage)
            .filter(|(r, _)| r.to == to && r.kind == kind)
            .map(|(_, q)| q.clone())
            .collect()
    }

    fn between(&self, from: usize, to: usize, kind: RingKind) -> Option<Arc<Ring<B>>> {
        self.plan
            .rings
            .iter()
            .zip(&self.stage)
            .find(|(r, _)| r.from == from && r.to == to && r.kind == kind)
            .map(|(_, q)| q.clone())
    }

    /// The hairpin ring of translate lcore `to`.
    fn hairpin_to(&self, to: usize) -> Option<Arc<Ring<B>>> {
        self.plan
            .hairpin_rings
            .iter()
            .zip(&self.hairpin)
            .find(|(r, _)| r.to == to)
            .map(|(_, q)| q.clone())
    }

    /// Every ring, for the runtime to see what is still in flight.
    fn watched(self) -> Vec<Arc<dyn QueuedLen>> {
        self.stage
            .into_iter()
            .chain(self.hairpin)
            .map(|r| r as Arc<dyn QueuedLen>)
            .collect()
    }
}

/// The RX and TX port queues of one lcore.
type LcoreQueues<B> = (Vec<Box<dyn RxQueue<B>>>, Vec<Box<dyn TxQueue<B>>>);

/// The port queues dealt to the lcores, indexed by lcore id.
struct DealtQueues<B: PacketBuf> {
    rx: Vec<Vec<Box<dyn RxQueue<B>>>>,
    tx: Vec<Vec<Box<dyn TxQueue<B>>>>,
}

impl<B: PacketBuf> DealtQueues<B> {
    fn take(&mut self, lcore: usize) -> LcoreQueues<B> {
        (
            std::mem::take(&mut self.rx[lcore]),
            std::mem::take(&mut self.tx[lcore]),
        )
    }
}

/// Hands out port queues: RX queue i to lcore i of the first group, TX queue
/// i to lcore i of the transmit group.
fn deal_queues<B: PacketBuf>(
    plan: &Plan,
    mut queues: Vec<PortQueues<B>>,
) -> anyhow::Result<DealtQueues<B>> {
    let mut rx_by_lcore: Vec<Vec<_>> = (0..plan.lcores.len()).map(|_| Vec::new()).collect();
    let mut tx_by_lcore: Vec<Vec<_>> = (0..plan.lcores.len()).map(|_| Vec::new()).collect();
    let first = &plan.groups[0];
    let txg = &plan.groups[plan.group_of(Stage::Transmit)];
    for (p, pq) in queues.iter_mut().enumerate() {
        if pq.rx.len() != plan.rx_queues || pq.tx.len() != plan.tx_queues {
            return Err(anyhow!(
                "port {} opened with {} RX / {} TX queues; the plan needs {} / {}",
                plan.ports[p].name,
                pq.rx.len(),
                pq.tx.len(),
                plan.rx_queues,
                plan.tx_queues
            ));
        }
        for (i, q) in pq.rx.drain(..).enumerate() {
            rx_by_lcore[first.lcores[i]].push(q);
        }
        for (i, q) in pq.tx.drain(..).enumerate() {
            tx_by_lcore[txg.lcores[i]].push(q);
        }
    }
    Ok(DealtQueues {
        rx: rx_by_lcore,
        tx: tx_by_lcore,
    })
}

/// What every translate lcore of a site with service addresses starts from.
struct Services<'p> {
    plan: &'p RedirectionPlan,
    map: Arc<ServiceMap>,
    snapshot: Arc<Snapshot>,
    /// The service addresses with their uplinks.
    addrs: Vec<(IpAddr, UplinkId)>,
}

fn services(plan: &Plan) -> Option<Services<'_>> {
    plan.redirection.as_ref().map(|r| {
        let db = RedirectDb::new(r.spec.clone());
        let addrs = r
            .spec
            .services
            .iter()
            .zip(&r.service_uplinks)
            .map(|(s, &u)| (s.addr.ip(), u))
            .collect();
        Services {
            plan: r,
            map: Arc::new(r.service_map()),
            snapshot: Arc::new(db.snapshot(pipelines::Nanos::ZERO)),
            addrs,
        }
    })
}

/// The management core's redirection queues of one translate lcore.
type ServiceQueues = (
    Option<Arc<ArrayQueue<Arc<Snapshot>>>>,
    Option<Arc<ArrayQueue<pipelines::redirect::service::ServiceEvent>>>,
);

/// What every lcore is assembled from.
struct Shared<'p, B: PacketBuf> {
    plan: &'p Plan,
    rings: &'p Rings<'p, B>,
    services: Option<&'p Services<'p>>,
    stop: &'p Arc<AtomicBool>,
    epoch: Instant,
    alloc: &'p Alloc<B>,
}

/// One lcore of the plan being assembled.
struct Lcore<'p, B: PacketBuf> {
    shared: &'p Shared<'p, B>,
    lc: &'p LcorePlan,
    group: &'p GroupPlan,
}

impl<B: PacketBuf> Lcore<'_, B> {
    fn has(&self, s: Stage) -> bool {
        self.group.stages.contains(&s)
    }

    /// The worker of this lcore, its view recorded in `a.views` and its
    /// management rings in `a.selection` / `a.redirect`.
    fn worker(&self, a: &mut Assembly<B>, (rx, tx): LcoreQueues<B>) -> Worker<B> {
        let (plan, lc, rings) = (self.shared.plan, self.lc, self.shared.rings);
        let mut stages = self.stages();
        let (service_snapshots, service_events) =
            self.attach_services(&mut stages, &mut a.redirect);
        let (snapshots, events) = self.selection_queues(&stages, &mut a.selection);
        let ports: Arc<Vec<PortCounters>> = Arc::new(
            (0..plan.ports.len())
                .map(|_| PortCounters::default())
                .collect(),
        );
        let counters = Arc::new(LcoreCounters::default());
        let sessions = stages
            .translate
            .is_some()
            .then(|| Arc::new(crate::dataplane::rings::NatControl::default()));
        let classifies_services = stages.classify.is_some() && self.shared.services.is_some();
        let settings =
            (stages.replicate.is_some() || stages.translate.is_some() || classifies_services)
                .then(|| Arc::new(crate::dataplane::rings::SettingsControl::default()));
        let nat_events = stages.translate.is_some().then(|| {
            Arc::new(crate::dataplane::rings::NatEventRing::new(
                plan.event_ring_size,
            ))
        });
        let capture = Arc::new(crate::dataplane::rings::CaptureTap::new(plan.ports.len()));
        a.views.push(LcoreView {
            nat_events: nat_events.clone(),
            sessions: sessions.clone(),
            settings: settings.clone(),
            capture: capture.clone(),
            id: lc.id,
            stages: stage_counters(&stages),
            nat: stages
                .translate
                .as_ref()
                .map(|t| -> Arc<NatCounters> { t.nat.counters.clone() }),
            ports: ports.clone(),
            counters: counters.clone(),
            first_services: self.shared.services.as_ref().map(|s| s.map.clone()),
        });
        Worker {
            id: lc.id,
            shard: lc.index as u16,
            stages_run: self.group.stages.clone(),
            stages,
            burst_size: plan.burst_size,
            rx,
            tx,
            stage_in: rings.inbound(lc.id, RingKind::Stage),
            handoff_in: rings.inbound(lc.id, RingKind::Handoff),
            handoff_out: self.handoff_out(),
            hairpin_in: rings.hairpin_to(lc.id),
            hairpin_out: self.hairpin_out(),
            next: self.next_group(),
            ports,
            counters,
            snapshots,
            events,
            solicit: (self.has(Stage::Transmit) && lc.index == 0).then(|| {
                Solicit::new(
                    plan.topology.clone(),
                    plan.neighbours.clone(),
                    self.shared.alloc.clone(),
                )
            }),
            service_snapshots,
            service_events,
            sessions,
            settings,
            nat_events,
            capture: Some(capture),
            stop: self.shared.stop.clone(),
            epoch: self.shared.epoch,
            bench: None,
        }
    }

    /// The stage instances of this lcore's group.
    fn stages(&self) -> Stages {
        let plan = self.shared.plan;
        let topo = &plan.topology;
        Stages {
            classify: self.has(Stage::Classify).then(|| {
                let mut c = Classify::with_neighbours(topo.clone(), plan.neighbours.clone());
                // The hash classify stores per packet is the NAT index's,
                // so translate does not hash the packet again.
                c.set_flow_hasher(plan.nat.flow_hasher());
                c
            }),
            replicate: self
                .has(Stage::Replicate)
                .then(|| Replicate::with_policy(topo.clone(), plan.selection.policy.clone())),
            translate: self.has(Stage::Translate).then(|| {
                Translate::with_policy(
                    topo.clone(),
                    self.lc.index as u16,
                    plan.nat.clone(),
                    plan.selection.policy.clone(),
                )
            }),
            transmit: self
                .has(Stage::Transmit)
                .then(|| Transmit::with_neighbours(topo.clone(), plan.neighbours.clone())),
        }
    }

    /// Gives classify the service map and translate its service plane, and
    /// creates translate's redirection queues to the management core.
    fn attach_services(&self, stages: &mut Stages, redirect: &mut RedirectRings) -> ServiceQueues {
        let Some(s) = self.shared.services else {
            return (None, None);
        };
        if let Some(c) = stages.classify.as_mut() {
            c.set_services(s.map.clone());
        }
        let Some(t) = stages.translate.as_mut() else {
            return (None, None);
        };
        let spec = &s.plan.spec;
        let plane = ServicePlane::new(
            s.snapshot.clone(),
            spec.services.len() + spec.peers.len(),
            self.shared.plan.nat.seed ^ (self.lc.index as u64).wrapping_mul(0x9E37_79B9),
        );
        redirect.counters.push(plane.counters.clone());
        // Gauges for every server a reload may append, too.
        t.enable_services(plane, &s.addrs, pipelines::redirect::db::MAX_SERVERS);
        let snapshots = Arc::new(ArrayQueue::new(1));
        redirect.snapshots.push(snapshots.clone());
        let events = Arc::new(ArrayQueue::new(REDIRECT_EVENT_RING_SIZE));
        redirect.events.push(events.clone());
        (Some(snapshots), Some(events))
    }

    /// The selection snapshot queue (replicate or translate lcores) and event
    /// queue (translate lcores) of this lcore, with the management core's
    /// ends and the stages' selection counters recorded in `selection`.
    #[allow(clippy::type_complexity)]
    fn selection_queues(
        &self,
        stages: &Stages,
        selection: &mut SelectionRings,
    ) -> (
        Option<Arc<ArrayQueue<Arc<pipelines::select::Snapshot>>>>,
        Option<Arc<ArrayQueue<pipelines::select::SelEvent>>>,
    ) {
        let snapshots = (self.has(Stage::Replicate) || self.has(Stage::Translate)).then(|| {
            let q = Arc::new(ArrayQueue::new(1));
            selection.snapshots.push(q.clone());
            q
        });
        let events = self.has(Stage::Translate).then(|| {
            let q = Arc::new(ArrayQueue::new(SELECTION_EVENT_RING_SIZE));
            selection.events.push(q.clone());
            q
        });
        if let Some(r) = stages.replicate.as_ref() {
            selection.counters.push(r.selection.clone());
        }
        if let Some(t) = stages.translate.as_ref() {
            selection.counters.push(t.selection.clone());
        }
        (snapshots, events)
    }

    /// The rings to the next group: one per lcore (by shard) when it
    /// translates, else a single one.
    fn next_group(&self) -> Option<NextGroup<B>> {
        let (id, rings) = (self.lc.id, self.shared.rings);
        self.shared.plan.groups.get(self.lc.group + 1).map(|ng| {
            let by_shard = ng.stages.contains(&Stage::Translate);
            let all = ng
                .lcores
                .iter()
                .filter_map(|&to| rings.between(id, to, RingKind::Stage));
            let rings = if by_shard {
                all.collect()
            } else {
                all.take(1).collect()
            };
            NextGroup { rings, by_shard }
        })
    }

    /// The hand-off rings to the other lcores of the group, indexed by shard.
    fn handoff_out(&self) -> Vec<Option<Arc<Ring<B>>>> {
        if !self.group.handoff {
            return Vec::new();
        }
        let (id, rings) = (self.lc.id, self.shared.rings);
        self.group
            .lcores
            .iter()
            .map(|&to| {
                if to == id {
                    None
                } else {
                    rings.between(id, to, RingKind::Handoff)
                }
            })
            .collect()
    }

    /// Indexed by shard, i.e. by index in the translate group; empty for
    /// lcores without translate and with a single shard (no rings).
    fn hairpin_out(&self) -> Vec<Option<Arc<Ring<B>>>> {
        if !self.has(Stage::Translate) || self.shared.plan.hairpin_rings.is_empty() {
            return Vec::new();
        }
        let (id, rings) = (self.lc.id, self.shared.rings);
        self.group
            .lcores
            .iter()
            .map(|&to| if to == id { None } else { rings.hairpin_to(to) })
            .collect()
    }
}

/// The counters of each stage instance, for the management core.
fn stage_counters(stages: &Stages) -> Vec<(Stage, Arc<StageCounters>)> {
    [
        stages
            .classify
            .as_ref()
            .map(|s| (Stage::Classify, s.counters.clone())),
        stages
            .replicate
            .as_ref()
            .map(|s| (Stage::Replicate, s.counters.clone())),
        stages
            .translate
            .as_ref()
            .map(|s| (Stage::Translate, s.counters.clone())),
        stages
            .transmit
            .as_ref()
            .map(|s| (Stage::Transmit, s.counters.clone())),
    ]
    .into_iter()
    .flatten()
    .collect()
}
