//! Assembly of the plan's workers and rings: hairpin wiring and hand-off.

use std::sync::Mutex;

use pipelines::{Burst, Direction, DropReason, HeapBuf, HeapPool, Nanos, PacketBuf};

use super::*;
use crate::config::plan::{test_plan, TEST_PIPELINE_3_SHARDS};
use crate::ports::{RxQueue, TxQueue};

const RTC_3_LCORES: &str = "[runtime]\nmode = \"run-to-completion\"\n\
    [[runtime.lcores]]\n[[runtime.lcores]]\n[[runtime.lcores]]\n";

struct NoRx;

impl RxQueue<HeapBuf> for NoRx {
    fn rx_burst(&mut self, _: &mut Burst<HeapBuf>, _: usize) -> usize {
        0
    }
}

/// (port, frame) of every packet sent.
type Sent = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;

/// Takes every packet, recording it and freeing the buffer.
struct RecordTx {
    port: usize,
    sent: Sent,
}

impl TxQueue<HeapBuf> for RecordTx {
    fn tx_burst(&mut self, pkts: &mut Burst<HeapBuf>) -> usize {
        let n = pkts.len();
        let mut sent = self.sent.lock().unwrap();
        sent.extend(pkts.drain(..).map(|p| (self.port, p.data().to_vec())));
        n
    }
}

/// The plan's workers over queues that receive nothing and record what
/// is sent, and how many rings the runtime would watch.
fn workers(plan: &Plan) -> (Vec<Worker<HeapBuf>>, usize, Sent) {
    let sent = Sent::default();
    let queues = (0..plan.ports.len())
        .map(|port| PortQueues {
            rx: (0..plan.rx_queues)
                .map(|_| Box::new(NoRx) as Box<dyn RxQueue<HeapBuf>>)
                .collect(),
            tx: (0..plan.tx_queues)
                .map(|_| {
                    Box::new(RecordTx {
                        port,
                        sent: sent.clone(),
                    }) as Box<dyn TxQueue<HeapBuf>>
                })
                .collect(),
        })
        .collect();
    let pool = HeapPool::new_static(16);
    let a = assemble(
        plan,
        queues,
        &Arc::default(),
        Instant::now(),
        heap_alloc(pool),
    )
    .unwrap();
    let rings = a.rings.len();
    (a.workers.into_iter().map(|(w, _)| w).collect(), rings, sent)
}

/// Position of the translate lcore owning `shard`.
fn translate_lcore(workers: &[Worker<HeapBuf>], shard: u16) -> usize {
    workers
        .iter()
        .position(|w| w.stages.translate.is_some() && w.shard == shard)
        .unwrap()
}

/// An Ethernet/IPv4/UDP frame 10.0.0.2 → 203.0.113.1 whose last payload
/// byte is `tag`.
fn frame(tag: u8) -> Vec<u8> {
    use pipelines::testing::raw::{frame, udp_header};
    frame(
        "10.0.0.2",
        "203.0.113.1",
        17,
        udp_header(12345, 53, &[tag]),
        6,
    )
}

/// A packet as translate leaves it for transmit: routed to port 1.
fn outbound(pool: &'static HeapPool, tag: u8) -> HeapBuf {
    let mut p = pool.alloc_with(&frame(tag)).unwrap();
    let m = p.meta_mut();
    m.direction = Direction::Outbound;
    m.l3_offset = 14;
    m.l4_offset = 34;
    m.out_port = 1;
    m.next_hop_mac = [2, 0, 0, 0, 0x0a, 0xfe];
    p
}

/// The inbound half of a hairpinned packet, for `shard`'s translate.
fn hairpinned(pool: &'static HeapPool, tag: u8, shard: u16) -> HeapBuf {
    let mut p = pool.alloc_with(&frame(tag)).unwrap();
    let m = p.meta_mut();
    m.direction = Direction::Inbound;
    m.hairpin = true;
    m.shard = shard;
    m.l3_offset = 14;
    m.l4_offset = 34;
    m.in_port = 2;
    p
}

fn assert_hairpin_wiring(plan: &Plan) {
    let (workers, rings, _) = workers(plan);
    let shards = usize::from(plan.shards());
    assert_eq!(plan.hairpin_rings.len(), shards);
    assert_eq!(rings, plan.rings.len() + shards, "in_flight sees them");
    for w in &workers {
        if w.stages.translate.is_none() {
            assert!(w.hairpin_in.is_none() && w.hairpin_out.is_empty());
            continue;
        }
        assert!(w.hairpin_in.is_some(), "lcore {} has no hairpin ring", w.id);
        assert_eq!(w.hairpin_out.len(), shards);
        for (k, out) in w.hairpin_out.iter().enumerate() {
            if k == usize::from(w.shard) {
                assert!(out.is_none(), "lcore {} sends to itself", w.id);
                continue;
            }
            let owner = &workers[translate_lcore(&workers, k as u16)];
            let (Some(out), Some(into)) = (out, &owner.hairpin_in) else {
                panic!("lcore {} has no ring to shard {k}", w.id);
            };
            assert!(Arc::ptr_eq(out, into), "lcore {} shard {k}", w.id);
        }
    }
}

#[test]
fn every_translate_lcore_has_a_hairpin_ring_the_others_send_to() {
    assert_hairpin_wiring(&test_plan(TEST_PIPELINE_3_SHARDS));
    assert_hairpin_wiring(&test_plan(RTC_3_LCORES));
}

#[test]
fn a_single_shard_gets_no_hairpin_rings() {
    for runtime in [
        "[runtime]\nmode = \"run-to-completion\"\n[[runtime.lcores]]\n",
        "[runtime]\nmode = \"pipeline\"\n\
         [[runtime.lcores]]\nstages = [\"classify\", \"replicate\"]\n\
         [[runtime.lcores]]\nstages = [\"translate\", \"transmit\"]\n",
    ] {
        let (workers, _, _) = workers(&test_plan(runtime));
        for w in &workers {
            assert!(w.hairpin_in.is_none() && w.hairpin_out.is_empty());
        }
    }
}

/// Shard 0's translate lcore produces a burst with hairpinned packets for
/// shards 1 and 2 among ordinary ones: the ordinary ones are sent on
/// port 1, the hairpinned ones reach their shard's lcore and enter it at
/// translate (there, with no session, translate drops them).
fn hairpinned_packets_reach_their_shard_at_translate(runtime: &str) {
    let plan = test_plan(runtime);
    let (mut workers, _, sent) = workers(&plan);
    let pool = HeapPool::new_static(64);
    let sender = translate_lcore(&workers, 0);
    let mut burst = Burst::new();
    burst.push(outbound(pool, 1));
    burst.push(hairpinned(pool, 2, 1));
    burst.push(outbound(pool, 3));
    burst.push(hairpinned(pool, 4, 2));
    burst.push(hairpinned(pool, 5, 4)); // shard 4 of 3 is shard 1
    burst.push(outbound(pool, 6));
    let mut pending = workers[sender].pending();
    workers[sender].after_translate(burst, &mut pending);
    workers[sender].flush_rings(&mut pending);

    // In pipeline mode the ordinary packets cross a stage ring to the
    // transmit lcore; in run-to-completion the sender transmits them.
    for w in workers.iter_mut() {
        if w.stages.translate.is_none() {
            let mut p = w.pending();
            w.turn(Nanos::ZERO, &mut p);
        }
    }
    let sent: Vec<_> = sent
        .lock()
        .unwrap()
        .iter()
        .map(|(port, f)| (*port, f[f.len() - 1]))
        .collect();
    assert_eq!(sent, [(1, 1), (1, 3), (1, 6)]);

    for (shard, tags) in [(1u16, vec![2u8, 5]), (2, vec![4])] {
        let i = translate_lcore(&workers, shard);
        let ring = workers[i].hairpin_in.clone().unwrap();
        let arrived = ring.pop().unwrap();
        assert!(ring.is_empty());
        let got: Vec<u8> = arrived
            .iter()
            .map(|p| p.data()[p.data().len() - 1])
            .collect();
        assert_eq!(got, tags, "shard {shard}");
        for p in &arrived {
            assert!(p.meta().hairpin && p.meta().direction == Direction::Inbound);
        }
        ring.push(arrived).unwrap();

        let w = &mut workers[i];
        let mut p = w.pending();
        let work = w.turn(Nanos::ZERO, &mut p);
        assert!(work >= tags.len(), "hairpin input counts as work");
        assert!(ring.is_empty());
        let t = &w.stages.translate.as_ref().unwrap().counters;
        assert_eq!(t.packets.get(), tags.len() as u64);
        // Synthetic packets: no NAT address or session of this site
        // matches them, so translate drops them, counted.
        assert_eq!(t.total_drops(), tags.len() as u64);
        let classify = w.stages.classify.as_ref().map(|c| &c.counters);
        let replicate = w.stages.replicate.as_ref().map(|r| &r.counters);
        for c in [classify, replicate].into_iter().flatten() {
            assert_eq!(c.packets.get(), 0, "entered before translate");
        }
    }
    let t = &workers[sender].stages.translate.as_ref().unwrap().counters;
    assert_eq!(t.total_drops(), 0);
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn pipeline_hands_hairpinned_packets_to_their_shard() {
    hairpinned_packets_reach_their_shard_at_translate(TEST_PIPELINE_3_SHARDS);
}

#[test]
fn run_to_completion_hands_hairpinned_packets_to_their_shard() {
    hairpinned_packets_reach_their_shard_at_translate(RTC_3_LCORES);
}

#[test]
fn a_full_hairpin_ring_counts_ring_full_and_frees_the_packets() {
    let plan = test_plan(RTC_3_LCORES);
    let (mut workers, _, sent) = workers(&plan);
    let pool = HeapPool::new_static(64);
    let ring = workers[1].hairpin_in.clone().unwrap();
    while ring.push(Burst::new()).is_ok() {}
    let mut burst = Burst::new();
    for tag in 0..5 {
        burst.push(hairpinned(pool, tag, 1));
    }
    burst.push(outbound(pool, 9));
    let mut pending = workers[0].pending();
    workers[0].after_translate(burst, &mut pending);
    workers[0].flush_rings(&mut pending);
    let t = &workers[0].stages.translate.as_ref().unwrap().counters;
    assert_eq!(t.drops(DropReason::RingFull), 5);
    assert_eq!(t.total_drops(), 5);
    assert_eq!(sent.lock().unwrap().len(), 1, "the rest was sent");
    assert_eq!(pool.in_use(), 0);
}
