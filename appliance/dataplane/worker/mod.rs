//! One lcore: a thread that busy-polls its inputs (port RX queues, rings from
//! the previous group, hand-off rings from its own group, its hairpin ring),
//! runs its contiguous stages on each burst, and hands the result on (rings
//! to the next group, or port TX queues). It owns all its state; the only
//! things it shares are lock-free rings and single-writer counters.
//!
//! Hairpin hand-off: translate marks a packet `hairpin` when its outbound
//! half is done and its inbound half belongs to another NAT shard
//! (`meta.shard`). Right after translate, such packets leave the burst for
//! the owner's hairpin ring and enter that lcore at translate; the rest of
//! the burst goes on to transmit. Only translate lcores hold hairpin rings.
//!
//! Loop shape (DPDK l3fwd / ip_pipeline): read the clock once per turn, poll
//! every input once, flush partially filled output bursts at the end of the
//! turn so no packet waits for a later one, do a bounded slice of NAT expiry,
//! and back off (spin, then yield, then short sleeps) when a turn found no
//! work, so an oversubscribed lab machine stays usable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;
use pipelines::neighbour::{self, Neighbours, Solicitor};
use pipelines::select::{SelEvent, Snapshot};
use pipelines::stages::classify::Classify;
use pipelines::stages::replicate::Replicate;
use pipelines::stages::translate::Translate;
use pipelines::stages::transmit::Transmit;
use pipelines::{Burst, Counter, Direction, DropReason, Nanos, PacketBuf, StageCounters, Topology};

use crate::config::plan::Stage;
use crate::dataplane::fanout::{self, Route};
use crate::ports::{RxQueue, TxQueue};

pub mod bench;
#[cfg(test)]
mod tests;

/// A lock-free ring of bursts. `push` hands the burst back when full.
pub type Ring<B> = ArrayQueue<Burst<B>>;

/// Where an lcore gets buffers for packets the appliance originates (ARP
/// requests, neighbour solicitations): the backend's pool.
pub type Alloc<B> = Arc<dyn Fn() -> Option<B> + Send + Sync>;

/// ARP / neighbour discovery for the uplinks' next hops, run by one
/// transmit lcore (see [`pipelines::neighbour`]).
pub struct Solicit<B: PacketBuf> {
    topo: Arc<Topology>,
    neighbours: Arc<Neighbours>,
    solicitor: Solicitor,
    alloc: Alloc<B>,
    next_check: Nanos,
    /// Requests not sent for want of a buffer.
    pub no_buffer: u64,
}

impl<B: PacketBuf> Solicit<B> {
    /// How often the lcore looks whether a request is due.
    const CHECK_EVERY: Nanos = Nanos::from_millis(100);

    pub fn new(topo: Arc<Topology>, neighbours: Arc<Neighbours>, alloc: Alloc<B>) -> Self {
        Solicit {
            solicitor: Solicitor::new(&neighbours),
            topo,
            neighbours,
            alloc,
            next_check: Nanos::ZERO,
            no_buffer: 0,
        }
    }

    /// The requests due at `now`, as complete frames marked to leave by
    /// their next hop's port untouched (`Direction::Local`).
    fn due(&mut self, now: Nanos) -> Burst<B> {
        let mut out = Burst::new();
        if now < self.next_check {
            return out;
        }
        self.next_check = now.saturating_add(Self::CHECK_EVERY);
        let (topo, alloc) = (&self.topo, &self.alloc);
        let mut no_buffer = 0;
        self.solicitor.poll(now, &self.neighbours, |hop| {
            if out.is_full() {
                return false;
            }
            let mut frame = [0u8; neighbour::REQUEST_MAX_LEN];
            let Some(len) = neighbour::write_request(topo, hop, &mut frame) else {
                return false;
            };
            let Some(mut b) = alloc() else {
                no_buffer += 1;
                return false;
            };
            if !b.set_len(len) {
                return false;
            }
            b.data_mut().copy_from_slice(&frame[..len]);
            let m = b.meta_mut();
            m.direction = Direction::Local;
            m.in_port = hop.port;
            m.out_port = hop.port;
            out.push(b);
            true
        });
        self.no_buffer += no_buffer;
        out
    }
}

/// Packets and bytes one lcore moved through one port.
#[derive(Debug, Default)]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
}

/// Loop-turn accounting of one lcore.
#[derive(Debug, Default)]
pub struct LcoreCounters {
    pub busy_turns: Counter,
    pub idle_turns: Counter,
}

/// The stage instances of one lcore (only those of its group are `Some`).
pub struct Stages {
    pub classify: Option<Classify>,
    pub replicate: Option<Replicate>,
    pub translate: Option<Translate>,
    pub transmit: Option<Transmit>,
}

/// Where the bursts leaving this lcore's last stage go, when it is not transmit.
pub struct NextGroup<B: PacketBuf> {
    /// Indexed by shard when `by_shard`, else a single ring.
    pub rings: Vec<Arc<Ring<B>>>,
    pub by_shard: bool,
}

pub struct Worker<B: PacketBuf> {
    pub id: usize,
    /// This lcore's NAT shard (its index within its group).
    pub shard: u16,
    pub stages_run: Vec<Stage>,
    pub stages: Stages,
    pub burst_size: usize,
    /// RX queues this lcore polls (first group only).
    pub rx: Vec<Box<dyn RxQueue<B>>>,
    /// TX queue per port, indexed by port (transmit group only).
    pub tx: Vec<Box<dyn TxQueue<B>>>,
    pub stage_in: Vec<Arc<Ring<B>>>,
    pub handoff_in: Vec<Arc<Ring<B>>>,
    /// Indexed by shard; `None` for this lcore's own shard. Empty when the
    /// group does not hand off.
    pub handoff_out: Vec<Option<Arc<Ring<B>>>>,
    /// Hairpinned packets of this lcore's shard, from the other translate
    /// lcores. `None` unless this lcore translates and there are several
    /// shards.
    pub hairpin_in: Option<Arc<Ring<B>>>,
    /// The other translate lcores' `hairpin_in`, indexed by shard; `None` for
    /// this lcore's own shard. Empty under the same conditions as
    /// `hairpin_in`.
    pub hairpin_out: Vec<Option<Arc<Ring<B>>>>,
    pub next: Option<NextGroup<B>>,
    /// Port counters, indexed by port (RX counted where polled, TX where sent).
    pub ports: Arc<Vec<PortCounters>>,
    pub counters: Arc<LcoreCounters>,
    /// Selection snapshots published by the management core for this
    /// lcore's replicate and translate stages (lcores with neither: `None`).
    pub snapshots: Option<Arc<ArrayQueue<Arc<Snapshot>>>>,
    /// Selection events (RTT samples, unanswered race copies) toward the
    /// management core; translate lcores only.
    pub events: Option<Arc<ArrayQueue<SelEvent>>>,
    /// ARP / ND requests for the next hops: the first transmit lcore only.
    pub solicit: Option<Solicit<B>>,
    /// Redirection decision snapshots and failure reports (translate lcores
    /// of a site with service addresses).
    pub service_snapshots: Option<Arc<ArrayQueue<Arc<pipelines::redirect::db::Snapshot>>>>,
    pub service_events: Option<Arc<ArrayQueue<pipelines::redirect::service::ServiceEvent>>>,
    /// Session requests (listing, flush) to this lcore's NAT shard from the
    /// management core, one at a time (translate lcores).
    pub sessions: Option<Arc<crate::dataplane::rings::NatControl>>,
    /// Settings a reload changes (lcores with replicate or translate).
    pub settings: Option<Arc<crate::dataplane::rings::SettingsControl>>,
    /// NAT events toward the management core (translate lcores).
    pub nat_events: Option<Arc<crate::dataplane::rings::NatEventRing>>,
    /// `appliance capture`: per-port flags checked once per burst, frames
    /// copied into a bounded ring (full: counted lost).
    pub capture: Option<Arc<crate::dataplane::rings::CaptureTap>>,
    pub stop: Arc<AtomicBool>,
    pub epoch: Instant,
    /// `appliance bench`: the stage clock, and the no-op forwarder's
    /// pass-through stages ([`bench`]); `None` otherwise.
    pub bench: Option<Arc<bench::BenchHooks>>,
}

/// How often a busy translate lcore sweeps its NAT shard and fragment
/// tracker: 10,000 calls a second, each owing ~1,000 session visits at ten
/// million sessions (within `SWEEP_MAX`), a lap of the 1,024 fragment slots
/// every 1.6 ms.
pub(crate) const SWEEP_EVERY: Nanos = Nanos(100_000);

/// The loop's state between turns: partially filled output bursts, and
/// when the next sweep is due.
pub(crate) struct Pending<B: PacketBuf> {
    /// A busy turn sweeps from this time on (see [`SWEEP_EVERY`]).
    next_sweep: Nanos,
    handoff: Vec<Burst<B>>,
    /// Indexed like `Worker::hairpin_out`.
    hairpin: Vec<Burst<B>>,
    next: Vec<Burst<B>>,
    per_port: Vec<Burst<B>>,
}

impl<B: PacketBuf> Worker<B> {
    /// Runs until the stop flag is set.
    pub fn run(mut self) {
        let mut pending = self.pending();
        let mut idle_streak: u32 = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let now = Nanos(self.epoch.elapsed().as_nanos() as u64);
            if let Some(tx) = self.stages.transmit.as_mut() {
                tx.set_now(now);
            }
            let work = self.turn(now, &mut pending);
            if work > 0 {
                self.counters.busy_turns.inc();
                idle_streak = 0;
            } else {
                self.counters.idle_turns.inc();
                idle_streak = idle_streak.saturating_add(1);
                backoff(idle_streak);
            }
        }
    }

    /// Empty output bursts, one per output this worker has.
    pub(crate) fn pending(&self) -> Pending<B> {
        let bursts = |n: usize| (0..n).map(|_| Burst::new()).collect();
        Pending {
            next_sweep: Nanos::ZERO,
            handoff: bursts(self.handoff_out.len()),
            hairpin: bursts(self.hairpin_out.len()),
            next: bursts(self.next.as_ref().map_or(0, |n| n.rings.len())),
            per_port: bursts(self.tx.len()),
        }
    }

    /// One loop turn: polls every input once, flushes the output bursts and
    /// sweeps the NAT shard. Returns the amount of work found (0 = idle).
    pub(crate) fn turn(&mut self, now: Nanos, pending: &mut Pending<B>) -> usize {
        let entry = self.stages_run[0];
        let mut work = 0usize;
        self.install_snapshot();

        for q in 0..self.rx.len() {
            let mut burst = Burst::new();
            let n = self.rx[q].rx_burst(&mut burst, self.burst_size);
            let oversize = self.rx[q].take_oversize();
            if oversize > 0 {
                self.producer_counters(Stage::Classify)
                    .count_drops(DropReason::RxOversize, oversize);
            }
            if n > 0 {
                let port = burst[0].meta().in_port as usize;
                self.tap(port, crate::dataplane::rings::CAPTURE_RX, &burst);
                if let Some(c) = self.ports.get(port) {
                    c.rx_packets.add(n as u64);
                    c.rx_bytes
                        .add(burst.iter().map(|p| p.data().len() as u64).sum());
                }
                work += n;
                self.run_from(now, Stage::Classify, burst, pending);
            }
        }
        for i in 0..self.stage_in.len() {
            if let Some(burst) = self.stage_in[i].pop() {
                work += burst.len().max(1);
                self.run_from(now, entry, burst, pending);
            }
        }
        for i in 0..self.handoff_in.len() {
            if let Some(burst) = self.handoff_in[i].pop() {
                work += burst.len().max(1);
                self.run_from_translate(now, burst, pending);
            }
        }
        // One ring for all senders: take up to one burst per sender, what a
        // ring per sender polled once a turn would give, so hairpin traffic
        // neither starves nor is starved by the other inputs.
        let senders = self.hairpin_out.len().saturating_sub(1);
        for _ in 0..senders {
            let Some(burst) = self.hairpin_in.as_ref().and_then(|r| r.pop()) else {
                break;
            };
            work += burst.len().max(1);
            self.run_from_translate(now, burst, pending);
        }
        if let Some(s) = self.solicit.as_mut() {
            let requests = s.due(now);
            if !requests.is_empty() {
                work += requests.len();
                self.transmit(requests, pending);
            }
        }
        self.flush_rings(pending);
        // Expiry, paced: the NAT sweep visits what the elapsed time owes
        // (a lap of the table per `sweep_interval`) however often it is
        // called, but each call also pays a fixed cost (at least
        // `SWEEP_MIN` session visits, a slice of the fragment tracker, the
        // race settling) whose lines a million-session table has pushed out
        // of the caches: at most one call per `SWEEP_EVERY` while busy,
        // every idle turn as before.
        if let Some(t) = self.stages.translate.as_mut() {
            if work == 0 || now >= pending.next_sweep {
                pending.next_sweep = now.saturating_add(SWEEP_EVERY);
                work += t.sweep(now);
            }
        }
        self.serve_sessions(now);
        self.send_events();
        work
    }

    /// Answers one session request, if one waits: at most
    /// [`SESSION_SCAN`](crate::dataplane::rings::SESSION_SCAN) slots
    /// visited, at most a page of sessions returned.
    fn serve_sessions(&mut self, now: Nanos) {
        use crate::dataplane::rings::{NatReply, SESSION_PAGE, SESSION_SCAN};
        let (Some(ctl), Some(t)) = (self.sessions.as_ref(), self.stages.translate.as_mut()) else {
            return;
        };
        let Some(q) = ctl.requests.pop() else {
            return;
        };
        let mut reply = NatReply {
            id: q.id,
            ..NatReply::default()
        };
        if q.flush {
            (reply.removed, reply.next) = t.flush_sessions(&q.filter, q.cursor, SESSION_SCAN);
        } else {
            let max = q.max.min(SESSION_PAGE);
            reply.sessions.reserve(max.min(64));
            reply.next = t.nat.list_sessions(
                &q.filter,
                q.cursor,
                max,
                SESSION_SCAN,
                now,
                &mut reply.sessions,
            );
        }
        // The management core takes the reply before asking again; a
        // stale one it abandoned is replaced.
        let _ = ctl.replies.force_push(reply);
    }

    /// Takes the newest selection snapshot, if one was published. The one it
    /// replaces is only a reference dropped here: the management core keeps
    /// every published snapshot until it is the last holder, so no table is
    /// freed on a data-plane lcore.
    fn install_snapshot(&mut self) {
        self.install_settings();
        if let Some(snap) = self.service_snapshots.as_ref().and_then(|q| q.pop()) {
            if let Some(p) = self
                .stages
                .translate
                .as_mut()
                .and_then(|t| t.service.as_mut())
            {
                p.install(snap);
            }
        }
        let Some(snap) = self.snapshots.as_ref().and_then(|q| q.pop()) else {
            return;
        };
        if let Some(r) = self.stages.replicate.as_mut() {
            r.selector.install(snap.clone());
        }
        if let Some(t) = self.stages.translate.as_mut() {
            t.selector.install(snap);
        }
    }

    /// Takes the settings of a reload, if one was published. The policy it
    /// replaces is only a reference dropped here: the reloader keeps it
    /// until no lcore holds it.
    fn install_settings(&mut self) {
        let Some(ctl) = self.settings.as_ref() else {
            return;
        };
        let Some(s) = ctl.slot.pop() else {
            return;
        };
        if let Some(r) = self.stages.replicate.as_mut() {
            r.set_policy(s.policy.clone());
        }
        if let Some(t) = self.stages.translate.as_mut() {
            t.set_policy(s.policy.clone());
            t.nat.set_live(&s.nat);
        }
        if let (Some(c), Some(m)) = (self.stages.classify.as_mut(), s.services.as_ref()) {
            c.set_services(m.clone());
        }
        ctl.applied.store(s.version, Ordering::Release);
    }

    /// Moves translate's selection events onto the ring to the management
    /// core; a full ring counts them `events_dropped` (service failure
    /// events: `redirection.failure_events_lost`).
    fn send_events(&mut self) {
        if let (Some(p), Some(ring)) = (
            self.stages
                .translate
                .as_mut()
                .and_then(|t| t.service.as_mut()),
            self.service_events.as_ref(),
        ) {
            for ev in p.events.drain(..) {
                if ring.push(ev).is_err() {
                    p.counters.failure_events_lost.inc();
                }
            }
        }
        if let (Some(t), Some(er)) = (self.stages.translate.as_mut(), self.nat_events.as_ref()) {
            let log = &mut t.nat.log;
            log.enabled = er.consumers.load(Ordering::Relaxed) > 0;
            let mut lost = std::mem::take(&mut log.lost);
            for ev in log.events.drain(..) {
                if er.ring.push(ev).is_err() {
                    lost += 1;
                }
            }
            if lost > 0 {
                er.lost.add(lost);
            }
        }
        let (Some(t), Some(ring)) = (self.stages.translate.as_mut(), self.events.as_ref()) else {
            return;
        };
        for ev in t.nat.events.drain(..) {
            if ring.push(ev).is_err() {
                t.nat.counters.events_dropped.inc();
            }
        }
    }

    /// Runs `burst` through this lcore's stages starting at `entry`.
    fn run_from(
        &mut self,
        now: Nanos,
        entry: Stage,
        mut burst: Burst<B>,
        pending: &mut Pending<B>,
    ) {
        if entry <= Stage::Classify {
            if let Some(c) = self.stages.classify.as_mut() {
                let (t0, n) = (bench::start(&self.bench), burst.len());
                if !bench::passthrough(&self.bench) {
                    let mut out = Burst::new();
                    c.set_now(now);
                    c.process(&mut burst, &mut out);
                    burst = out;
                }
                bench::stop(&self.bench, Stage::Classify, t0, n);
            }
        }
        if entry <= Stage::Replicate && self.stages.replicate.is_some() {
            // Race copies can make a burst's output larger than a burst:
            // replicate takes what fits and is called again for the rest.
            while !burst.is_empty() {
                let (t0, n) = (bench::start(&self.bench), burst.len());
                let mut out = Burst::new();
                if bench::passthrough(&self.bench) {
                    std::mem::swap(&mut out, &mut burst);
                } else if let Some(r) = self.stages.replicate.as_mut() {
                    r.process(now, &mut burst, &mut out);
                }
                bench::stop(&self.bench, Stage::Replicate, t0, n - burst.len());
                self.after_replicate(now, entry, out, pending);
            }
        } else {
            self.after_replicate(now, entry, burst, pending);
        }
    }

    fn after_replicate(
        &mut self,
        now: Nanos,
        entry: Stage,
        mut burst: Burst<B>,
        pending: &mut Pending<B>,
    ) {
        if self.stages.translate.is_some()
            && !self.handoff_out.is_empty()
            && entry < Stage::Translate
        {
            self.hand_off(&mut burst, pending);
        }
        self.run_from_translate(now, burst, pending);
    }

    /// Sends packets of other shards to their owners' hand-off rings.
    fn hand_off(&mut self, burst: &mut Burst<B>, pending: &mut Pending<B>) {
        let (own, shards) = (usize::from(self.shard), self.handoff_out.len());
        fanout::fan_out(
            burst,
            &mut pending.handoff,
            &self.handoff_out,
            self.producer_counters(Stage::Replicate),
            |pkt| match usize::from(pkt.meta().shard) % shards {
                s if s == own => Route::Keep,
                s => Route::Out(s),
            },
        );
    }

    /// Runs translate and transmit (whichever this lcore has) and hands the
    /// result on.
    fn run_from_translate(&mut self, now: Nanos, mut burst: Burst<B>, pending: &mut Pending<B>) {
        if self.stages.translate.is_none() {
            self.hand_on(burst, pending);
            return;
        }
        // Fragments released by their first fragment may not all fit the
        // output burst of the call that released them: translate is called
        // again until none wait.
        let ready = |s: &Stages| s.translate.as_ref().is_some_and(|t| t.fragments_ready());
        while !burst.is_empty() || ready(&self.stages) {
            let (t0, n) = (bench::start(&self.bench), burst.len());
            let mut out = Burst::new();
            if bench::passthrough(&self.bench) {
                std::mem::swap(&mut out, &mut burst);
            } else if let Some(t) = self.stages.translate.as_mut() {
                t.process(now, &mut burst, &mut out);
            }
            bench::stop(&self.bench, Stage::Translate, t0, n - burst.len());
            self.after_translate(out, pending);
        }
    }

    /// Sends the hairpinned packets of a burst translate just produced to
    /// their shards' lcores, and the rest on towards transmit.
    pub(crate) fn after_translate(&mut self, mut burst: Burst<B>, pending: &mut Pending<B>) {
        split_hairpin(
            &mut burst,
            self.shard,
            &mut pending.hairpin,
            &self.hairpin_out,
            self.producer_counters(Stage::Translate),
        );
        self.hand_on(burst, pending);
    }

    /// Transmits `burst` if this lcore transmits, else queues it for the
    /// next group.
    fn hand_on(&mut self, burst: Burst<B>, pending: &mut Pending<B>) {
        if burst.is_empty() {
            return;
        }
        if self.stages.transmit.is_some() {
            self.transmit(burst, pending);
        } else {
            self.forward_to_next_group(burst, pending);
        }
    }

    fn transmit(&mut self, mut burst: Burst<B>, pending: &mut Pending<B>) {
        while !burst.is_empty() {
            let (t0, n) = (bench::start(&self.bench), burst.len());
            if bench::passthrough(&self.bench) {
                bench::pass_transmit(&mut burst, &mut pending.per_port);
            } else if let Some(tx) = self.stages.transmit.as_mut() {
                tx.process(&mut burst, &mut pending.per_port);
            }
            bench::stop(&self.bench, Stage::Transmit, t0, n - burst.len());
            self.flush_tx(pending);
        }
    }

    /// Copies a burst for a running capture of `port` in `dir`.
    #[inline]
    fn tap(&self, port: usize, dir: u8, burst: &Burst<B>) {
        if let Some(t) = self.capture.as_ref() {
            if t.wants(port, dir) {
                t.copy(port, dir, burst.iter().map(|p| p.data()));
            }
        }
    }

    fn flush_tx(&mut self, pending: &mut Pending<B>) {
        for (port, out) in pending.per_port.iter_mut().enumerate() {
            if out.is_empty() {
                continue;
            }
            let bytes: u64 = out.iter().map(|p| p.data().len() as u64).sum();
            if let Some(t) = self.capture.as_ref() {
                if t.wants(port, crate::dataplane::rings::CAPTURE_TX) {
                    t.copy(
                        port,
                        crate::dataplane::rings::CAPTURE_TX,
                        out.iter().map(|p| p.data()),
                    );
                }
            }
            let sent = self.tx[port].tx_burst(out);
            let oversize = self.tx[port].take_oversize();
            if oversize > 0 {
                self.producer_counters(Stage::Transmit)
                    .count_drops(DropReason::TxOversize, oversize);
            }
            // The PMD usually takes the whole burst: no second walk then.
            let left_bytes: u64 = if out.is_empty() {
                0
            } else {
                out.iter().map(|p| p.data().len() as u64).sum()
            };
            if let Some(c) = self.ports.get(port) {
                c.tx_packets.add(sent as u64);
                c.tx_bytes.add(bytes - left_bytes);
            }
            if !out.is_empty() {
                if let Some(t) = self.stages.transmit.as_ref() {
                    t.tx_rejected(out.len());
                }
                out.clear();
            }
        }
    }

    fn forward_to_next_group(&mut self, mut burst: Burst<B>, pending: &mut Pending<B>) {
        let Some(next) = self.next.as_ref() else {
            // A plan always ends with transmit; nothing can reach here.
            self.producer_counters(Stage::Translate)
                .count_drops(DropReason::NoTxPort, burst.len() as u64);
            return;
        };
        let (n, by_shard) = (next.rings.len(), next.by_shard);
        fanout::fan_out(
            &mut burst,
            &mut pending.next,
            &next.rings,
            self.producer_counters(self.last_stage()),
            |pkt| {
                Route::Out(if by_shard {
                    usize::from(pkt.meta().shard) % n
                } else {
                    0
                })
            },
        );
    }

    /// The last stage this lcore runs: what bursts to the next group carry.
    fn last_stage(&self) -> Stage {
        *self.stages_run.last().unwrap_or(&Stage::Classify)
    }

    pub(crate) fn flush_rings(&mut self, pending: &mut Pending<B>) {
        fanout::flush(
            &mut pending.handoff,
            &self.handoff_out,
            self.producer_counters(Stage::Replicate),
        );
        fanout::flush(
            &mut pending.hairpin,
            &self.hairpin_out,
            self.producer_counters(Stage::Translate),
        );
        if let Some(next) = self.next.as_ref() {
            fanout::flush(
                &mut pending.next,
                &next.rings,
                self.producer_counters(self.last_stage()),
            );
        }
    }

    /// The counters a ring-full drop is charged to: the stage that produced
    /// the burst (or the nearest one this lcore runs).
    fn producer_counters(&self, stage: Stage) -> &StageCounters {
        let s = &self.stages;
        let pick = match stage {
            Stage::Classify => s.classify.as_ref().map(|x| &*x.counters),
            Stage::Replicate => s.replicate.as_ref().map(|x| &*x.counters),
            Stage::Translate => s.translate.as_ref().map(|x| &*x.counters),
            Stage::Transmit => s.transmit.as_ref().map(|x| &*x.counters),
        };
        pick.or(s.replicate.as_ref().map(|x| &*x.counters))
            .or(s.classify.as_ref().map(|x| &*x.counters))
            .or(s.translate.as_ref().map(|x| &*x.counters))
            .or(s.transmit.as_ref().map(|x| &*x.counters))
            .unwrap_or(&UNUSED_COUNTERS)
    }
}

/// Moves the hairpinned packets of `burst` (translate's output) into
/// `pending[shard]`, keeping the others in order. `rings` is indexed by shard
/// like `pending`; a pending burst that fills is enqueued at once.
///
/// A hairpinned packet naming this lcore's own shard (or seen with a single
/// shard, where there are no rings) breaks translate's contract: translate
/// finishes those itself. Its inbound half was not done, so it has no egress:
/// it is dropped and counted `no_tx_port` on translate rather than sent out
/// half translated or looped back into translate.
pub(crate) fn split_hairpin<B: PacketBuf>(
    burst: &mut Burst<B>,
    own_shard: u16,
    pending: &mut [Burst<B>],
    rings: &[Option<Arc<Ring<B>>>],
    counters: &StageCounters,
) {
    // Hairpinning is rare; the common burst is only scanned, never rebuilt.
    if !burst.iter().any(|p| p.meta().hairpin) {
        return;
    }
    let shards = rings.len().min(pending.len());
    let own = usize::from(own_shard);
    fanout::fan_out(burst, pending, rings, counters, |pkt| {
        if !pkt.meta().hairpin {
            return Route::Keep;
        }
        match shards {
            0 => Route::Drop,
            n => match usize::from(pkt.meta().shard) % n {
                s if s != own && rings[s].is_some() => Route::Out(s),
                _ => Route::Drop,
            },
        }
    });
}

static UNUSED_COUNTERS: std::sync::LazyLock<StageCounters> =
    std::sync::LazyLock::new(StageCounters::default);

/// Idle backoff: spin briefly (lowest latency when traffic resumes), then
/// yield the CPU, then sleep in short steps so idle lcores cost next to
/// nothing on an oversubscribed machine.
fn backoff(idle_streak: u32) {
    if idle_streak < 64 {
        std::hint::spin_loop();
    } else if idle_streak < 256 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(50));
    }
}
