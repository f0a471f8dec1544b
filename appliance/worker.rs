//! One lcore: a thread that busy-polls its inputs (port RX queues, rings from
//! the previous group, hand-off rings from its own group), runs its
//! contiguous stages on each burst, and hands the result on (rings to the
//! next group, or port TX queues). It owns all its state; the only things it
//! shares are lock-free rings and single-writer counters.
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
use pipelines::classify::Classify;
use pipelines::replicate::Replicate;
use pipelines::translate::Translate;
use pipelines::transmit::Transmit;
use pipelines::{Burst, Counter, DropReason, Nanos, PacketBuf, StageCounters};

use crate::plan::Stage;
use crate::ports::{RxQueue, TxQueue};

/// A lock-free ring of bursts. `push` hands the burst back when full.
pub type Ring<B> = ArrayQueue<Burst<B>>;

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
    pub next: Option<NextGroup<B>>,
    /// Port counters, indexed by port (RX counted where polled, TX where sent).
    pub ports: Arc<Vec<PortCounters>>,
    pub counters: Arc<LcoreCounters>,
    pub stop: Arc<AtomicBool>,
    pub epoch: Instant,
}

/// Per-turn scratch: partially filled output bursts.
struct Pending<B: PacketBuf> {
    handoff: Vec<Burst<B>>,
    next: Vec<Burst<B>>,
    per_port: Vec<Burst<B>>,
}

impl<B: PacketBuf> Worker<B> {
    /// Runs until the stop flag is set.
    pub fn run(mut self) {
        let mut pending = Pending {
            handoff: (0..self.handoff_out.len()).map(|_| Burst::new()).collect(),
            next: (0..self.next.as_ref().map_or(0, |n| n.rings.len()))
                .map(|_| Burst::new())
                .collect(),
            per_port: (0..self.tx.len()).map(|_| Burst::new()).collect(),
        };
        let entry = self.stages_run[0];
        let mut idle_streak: u32 = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let now = Nanos(self.epoch.elapsed().as_nanos() as u64);
            let mut work = 0usize;

            for q in 0..self.rx.len() {
                let mut burst = Burst::new();
                let n = self.rx[q].rx_burst(&mut burst, self.burst_size);
                if n > 0 {
                    let port = burst[0].meta().in_port as usize;
                    if let Some(c) = self.ports.get(port) {
                        c.rx_packets.add(n as u64);
                        c.rx_bytes
                            .add(burst.iter().map(|p| p.data().len() as u64).sum());
                    }
                    work += n;
                    self.run_from(now, Stage::Classify, burst, &mut pending);
                }
            }
            for i in 0..self.stage_in.len() {
                if let Some(burst) = self.stage_in[i].pop() {
                    work += burst.len().max(1);
                    self.run_from(now, entry, burst, &mut pending);
                }
            }
            for i in 0..self.handoff_in.len() {
                if let Some(burst) = self.handoff_in[i].pop() {
                    work += burst.len().max(1);
                    self.run_from_translate(now, burst, &mut pending);
                }
            }
            self.flush_rings(&mut pending);
            if let Some(t) = self.stages.translate.as_mut() {
                work += t.sweep(now);
            }

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

    /// Runs `burst` through this lcore's stages starting at `entry`.
    fn run_from(
        &mut self,
        now: Nanos,
        entry: Stage,
        mut burst: Burst<B>,
        pending: &mut Pending<B>,
    ) {
        let mut out = Burst::new();
        if entry <= Stage::Classify {
            if let Some(c) = self.stages.classify.as_mut() {
                c.process(&mut burst, &mut out);
                std::mem::swap(&mut burst, &mut out);
            }
        }
        if entry <= Stage::Replicate {
            if let Some(r) = self.stages.replicate.as_mut() {
                r.process(&mut burst, &mut out);
                std::mem::swap(&mut burst, &mut out);
            }
        }
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
        let mut mine = Burst::new();
        let shards = self.handoff_out.len();
        for pkt in burst.drain(..) {
            let s = usize::from(pkt.meta().shard) % shards;
            if s == usize::from(self.shard) {
                mine.push(pkt);
            } else {
                if pending.handoff[s].is_full() {
                    let full = std::mem::take(&mut pending.handoff[s]);
                    self.enqueue_handoff(s, full);
                }
                pending.handoff[s].push(pkt);
            }
        }
        *burst = mine;
    }

    fn enqueue_handoff(&self, shard: usize, burst: Burst<B>) {
        if let Some(Some(ring)) = self.handoff_out.get(shard) {
            if let Err(back) = ring.push(burst) {
                self.producer_counters(Stage::Replicate)
                    .count_drops(DropReason::RingFull, back.len() as u64);
            }
        }
    }

    /// Runs translate and transmit (whichever this lcore has) and hands the
    /// result on.
    fn run_from_translate(&mut self, now: Nanos, mut burst: Burst<B>, pending: &mut Pending<B>) {
        if let Some(t) = self.stages.translate.as_mut() {
            let mut out = Burst::new();
            t.process(now, &mut burst, &mut out);
            burst = out;
        }
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
            if let Some(tx) = self.stages.transmit.as_mut() {
                tx.process(&mut burst, &mut pending.per_port);
            }
            self.flush_tx(pending);
        }
    }

    fn flush_tx(&mut self, pending: &mut Pending<B>) {
        for (port, out) in pending.per_port.iter_mut().enumerate() {
            if out.is_empty() {
                continue;
            }
            let bytes: u64 = out.iter().map(|p| p.data().len() as u64).sum();
            let sent = self.tx[port].tx_burst(out);
            let left_bytes: u64 = out.iter().map(|p| p.data().len() as u64).sum();
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
        let n = next.rings.len();
        for pkt in burst.drain(..) {
            let i = if next.by_shard {
                usize::from(pkt.meta().shard) % n
            } else {
                0
            };
            if pending.next[i].is_full() {
                let full = std::mem::take(&mut pending.next[i]);
                self.enqueue_next(i, full);
            }
            pending.next[i].push(pkt);
        }
    }

    fn enqueue_next(&self, i: usize, burst: Burst<B>) {
        if let Some(next) = self.next.as_ref() {
            if let Err(back) = next.rings[i].push(burst) {
                let last = *self.stages_run.last().unwrap_or(&Stage::Classify);
                self.producer_counters(last)
                    .count_drops(DropReason::RingFull, back.len() as u64);
            }
        }
    }

    fn flush_rings(&mut self, pending: &mut Pending<B>) {
        for s in 0..pending.handoff.len() {
            if !pending.handoff[s].is_empty() {
                let b = std::mem::take(&mut pending.handoff[s]);
                self.enqueue_handoff(s, b);
            }
        }
        for i in 0..pending.next.len() {
            if !pending.next[i].is_empty() {
                let b = std::mem::take(&mut pending.next[i]);
                self.enqueue_next(i, b);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use pipelines::topology::{IpPrefix, NatPortRange, PortInfo, PortRole, Topology, UplinkInfo};
    use pipelines::{HeapBuf, HeapPool};

    fn topology() -> Arc<Topology> {
        let port = |name: &str, mac: u8| PortInfo {
            name: name.into(),
            mac: [2, 0, 0, 0, 0, mac],
            vlan: None,
            role: PortRole::Unused,
        };
        Arc::new(Topology::new(
            vec![port("lan", 1), port("wan", 2)],
            0,
            vec!["10.0.0.0/8".parse::<IpPrefix>().unwrap()],
            vec![],
            vec![UplinkInfo {
                name: "isp".into(),
                port: 1,
                nat_addrs: vec!["198.51.100.1".parse().unwrap()],
                next_hop_mac: [2, 0, 0, 0, 0, 0xfe],
                weight: 1,
            }],
            NatPortRange {
                first: 1024,
                last: 65535,
            },
            1,
        ))
    }

    /// A valid Ethernet/IPv4/UDP frame from 10.0.0.2.
    fn frame() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 9, 0x08, 0x00];
        let mut ip = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 2, 203, 0, 113, 1,
        ];
        let c = pipelines::checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 8, 0, 0]);
        f
    }

    #[test]
    fn a_full_ring_hands_the_burst_back_and_its_packets_are_counted() {
        let topo = topology();
        let pool = HeapPool::new_static(256);
        // The next group's ring has room for one burst, and it is taken.
        let ring: Arc<Ring<HeapBuf>> = Arc::new(Ring::new(1));
        ring.push(Burst::new()).unwrap();
        let classify = Classify::new(topo.clone());
        let replicate = Replicate::new(topo.clone());
        let replicate_counters = replicate.counters.clone();
        let mut w: Worker<HeapBuf> = Worker {
            id: 0,
            shard: 0,
            stages_run: vec![Stage::Classify, Stage::Replicate],
            stages: Stages {
                classify: Some(classify),
                replicate: Some(replicate),
                translate: None,
                transmit: None,
            },
            burst_size: 32,
            rx: Vec::new(),
            tx: Vec::new(),
            stage_in: Vec::new(),
            handoff_in: Vec::new(),
            handoff_out: Vec::new(),
            next: Some(NextGroup {
                rings: vec![ring.clone()],
                by_shard: false,
            }),
            ports: Arc::new(Vec::new()),
            counters: Arc::default(),
            stop: Arc::default(),
            epoch: Instant::now(),
        };
        let mut pending = Pending {
            handoff: Vec::new(),
            next: vec![Burst::new()],
            per_port: Vec::new(),
        };
        let mut burst = Burst::new();
        for _ in 0..20 {
            burst.push(pool.alloc_with(&frame()).unwrap());
        }
        w.run_from(Nanos::ZERO, Stage::Classify, burst, &mut pending);
        assert_eq!(
            pool.in_use(),
            20,
            "packets wait in the pending burst until the turn ends"
        );
        w.flush_rings(&mut pending);
        assert_eq!(replicate_counters.drops(DropReason::RingFull), 20);
        assert_eq!(pool.in_use(), 0, "the handed-back packets were freed");
        // With room in the ring the next burst goes through.
        ring.pop().unwrap();
        let mut burst = Burst::new();
        burst.push(pool.alloc_with(&frame()).unwrap());
        w.run_from(Nanos::ZERO, Stage::Classify, burst, &mut pending);
        w.flush_rings(&mut pending);
        assert_eq!(ring.pop().map(|b| b.len()), Some(1));
        assert_eq!(replicate_counters.drops(DropReason::RingFull), 20);
    }
}
