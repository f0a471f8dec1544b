//! The worker's outputs: full rings, hairpin hand-off.

use super::*;
use crate::dataplane::fanout::flush as flush_hairpin;
use pipelines::{HeapBuf, HeapPool};

fn topology() -> Arc<Topology> {
    pipelines::testing::one_uplink(1, 1)
}

/// A valid Ethernet/IPv4/UDP frame from 10.0.0.2.
fn frame() -> Vec<u8> {
    use pipelines::testing::raw::{frame, udp_header};
    frame("10.0.0.2", "203.0.113.1", 17, udp_header(12345, 53, &[]), 6)
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
        hairpin_in: None,
        hairpin_out: Vec::new(),
        next: Some(NextGroup {
            rings: vec![ring.clone()],
            by_shard: false,
        }),
        ports: Arc::new(Vec::new()),
        snapshots: None,
        events: None,
        service_snapshots: None,
        service_events: None,
        sessions: None,
        settings: None,
        nat_events: None,
        capture: None,
        counters: Arc::default(),
        solicit: None,
        stop: Arc::default(),
        epoch: Instant::now(),
        bench: None,
    };
    let mut pending = w.pending();
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

/// A packet as translate leaves it: `tag` names it (every byte of its
/// frame); hairpinned ones are inbound halves for `shard`.
fn translated(pool: &'static HeapPool, tag: u8, hairpin: bool, shard: u16) -> HeapBuf {
    let mut p = pool.alloc_with(&[tag; 60]).unwrap();
    let m = p.meta_mut();
    m.hairpin = hairpin;
    m.shard = shard;
    m.direction = if hairpin {
        Direction::Inbound
    } else {
        Direction::Outbound
    };
    p
}

fn tags(burst: &Burst<HeapBuf>) -> Vec<u8> {
    burst.iter().map(|p| p.data()[0]).collect()
}

/// Hairpin rings of a translate lcore owning `own` among `shards`.
fn hairpin_rings(shards: usize, own: usize, size: usize) -> Vec<Option<Arc<Ring<HeapBuf>>>> {
    (0..shards)
        .map(|s| (s != own).then(|| Arc::new(Ring::new(size))))
        .collect()
}

#[test]
fn split_hairpin_sends_hairpinned_packets_to_their_shard_and_keeps_the_rest() {
    let pool = HeapPool::new_static(64);
    let counters = StageCounters::default();
    let rings = hairpin_rings(3, 0, 4);
    let mut pending: Vec<Burst<HeapBuf>> = (0..3).map(|_| Burst::new()).collect();
    let mut burst = Burst::new();
    for (tag, hairpin, shard) in [
        (1, false, 0),
        (2, true, 1),
        (3, false, 2),
        (4, true, 2),
        (5, true, 4), // shard 4 of 3 is shard 1
        (6, false, 1),
    ] {
        burst.push(translated(pool, tag, hairpin, shard));
    }
    split_hairpin(&mut burst, 0, &mut pending, &rings, &counters);
    assert_eq!(tags(&burst), [1, 3, 6], "the rest stays, in order");
    assert_eq!(tags(&pending[1]), [2, 5]);
    assert_eq!(tags(&pending[2]), [4]);
    assert!(pending[0].is_empty());
    assert!(
        rings.iter().flatten().all(|r| r.is_empty()),
        "partial bursts wait for the end of the turn"
    );

    flush_hairpin(&mut pending, &rings, &counters);
    assert!(pending.iter().all(|b| b.is_empty()));
    let to1 = rings[1].as_ref().unwrap().pop().unwrap();
    let to2 = rings[2].as_ref().unwrap().pop().unwrap();
    assert_eq!(tags(&to1), [2, 5]);
    assert_eq!(tags(&to2), [4]);
    for p in to1.iter().chain(&to2) {
        // Delivered as translate left them, for the receiver's translate.
        assert!(p.meta().hairpin);
        assert_eq!(p.meta().direction, Direction::Inbound);
    }
    assert_eq!(counters.total_drops(), 0);
}

#[test]
fn a_burst_without_hairpinned_packets_is_left_alone() {
    let pool = HeapPool::new_static(8);
    let counters = StageCounters::default();
    let rings = hairpin_rings(2, 1, 4);
    let mut pending: Vec<Burst<HeapBuf>> = (0..2).map(|_| Burst::new()).collect();
    let mut burst: Burst<HeapBuf> = (1..=3).map(|t| translated(pool, t, false, 0)).collect();
    split_hairpin(&mut burst, 1, &mut pending, &rings, &counters);
    assert_eq!(tags(&burst), [1, 2, 3]);
    flush_hairpin(&mut pending, &rings, &counters);
    assert!(rings.iter().flatten().all(|r| r.is_empty()));
}

#[test]
fn a_filled_pending_hairpin_burst_is_enqueued_before_the_turn_ends() {
    let pool = HeapPool::new_static(64);
    let counters = StageCounters::default();
    let rings = hairpin_rings(2, 0, 4);
    let mut pending: Vec<Burst<HeapBuf>> = (0..2).map(|_| Burst::new()).collect();
    for round in 0..2u8 {
        let mut burst: Burst<HeapBuf> = (0..20)
            .map(|i| translated(pool, round * 20 + i, true, 1))
            .collect();
        split_hairpin(&mut burst, 0, &mut pending, &rings, &counters);
        assert!(burst.is_empty());
    }
    let ring = rings[1].as_ref().unwrap();
    assert_eq!(
        ring.len(),
        1,
        "the first 32 left as soon as they filled a burst"
    );
    flush_hairpin(&mut pending, &rings, &counters);
    let first = ring.pop().unwrap();
    let second = ring.pop().unwrap();
    assert_eq!(tags(&first), (0..32).collect::<Vec<u8>>());
    assert_eq!(tags(&second), (32..40).collect::<Vec<u8>>());
    assert_eq!(counters.total_drops(), 0);
}

#[test]
fn a_full_hairpin_ring_counts_ring_full_on_translate_and_frees_the_packets() {
    let pool = HeapPool::new_static(64);
    let counters = StageCounters::default();
    // Shard 1's hairpin ring has room for one burst, and it is taken.
    let rings = hairpin_rings(2, 0, 1);
    let ring = rings[1].as_ref().unwrap().clone();
    ring.push(Burst::new()).unwrap();
    let mut pending: Vec<Burst<HeapBuf>> = (0..2).map(|_| Burst::new()).collect();
    let mut burst: Burst<HeapBuf> = (0..20).map(|i| translated(pool, i, true, 1)).collect();
    burst.push(translated(pool, 99, false, 0));
    split_hairpin(&mut burst, 0, &mut pending, &rings, &counters);
    flush_hairpin(&mut pending, &rings, &counters);
    assert_eq!(counters.drops(DropReason::RingFull), 20);
    assert_eq!(counters.total_drops(), 20);
    assert_eq!(tags(&burst), [99], "the rest of the burst goes on");
    drop(burst);
    assert_eq!(pool.in_use(), 0, "the handed-back packets were freed");
    assert_eq!(ring.len(), 1);
}

#[test]
fn hairpinned_packets_with_nowhere_to_go_are_dropped_and_counted() {
    let pool = HeapPool::new_static(16);
    let counters = StageCounters::default();
    // Translate finishes packets of its own shard; one naming it anyway
    // has no egress.
    let rings = hairpin_rings(2, 1, 4);
    let mut pending: Vec<Burst<HeapBuf>> = (0..2).map(|_| Burst::new()).collect();
    let mut burst: Burst<HeapBuf> = Burst::new();
    burst.push(translated(pool, 1, true, 1));
    burst.push(translated(pool, 2, true, 3)); // 3 of 2 is shard 1 too
    burst.push(translated(pool, 3, false, 1));
    split_hairpin(&mut burst, 1, &mut pending, &rings, &counters);
    assert_eq!(tags(&burst), [3]);
    assert_eq!(counters.drops(DropReason::NoTxPort), 2);
    drop(burst);
    // A single shard has no rings at all.
    let mut burst: Burst<HeapBuf> = Burst::new();
    burst.push(translated(pool, 4, true, 0));
    split_hairpin(&mut burst, 0, &mut [], &[], &counters);
    assert!(burst.is_empty());
    assert_eq!(counters.drops(DropReason::NoTxPort), 3);
    flush_hairpin(&mut pending, &rings, &counters);
    assert!(rings.iter().flatten().all(|r| r.is_empty()));
    assert_eq!(pool.in_use(), 0);
}

/// A port queue pair that takes every frame up to 1,000 bytes and drops
/// larger ones as oversize (as af_packet does past the MTU), and reports
/// `rx_oversize` oversize frames received.
struct OversizePort {
    sent: Arc<std::sync::Mutex<Vec<usize>>>,
    oversize: u64,
    rx_oversize: u64,
}

impl TxQueue<HeapBuf> for OversizePort {
    fn tx_burst(&mut self, pkts: &mut Burst<HeapBuf>) -> usize {
        let mut taken = 0;
        for p in pkts.drain(..) {
            if p.data().len() > 1000 {
                self.oversize += 1;
            } else {
                self.sent.lock().unwrap().push(p.data().len());
                taken += 1;
            }
        }
        taken
    }

    fn take_oversize(&mut self) -> u64 {
        std::mem::take(&mut self.oversize)
    }
}

impl RxQueue<HeapBuf> for OversizePort {
    fn rx_burst(&mut self, _out: &mut Burst<HeapBuf>, _max: usize) -> usize {
        0
    }

    fn take_oversize(&mut self) -> u64 {
        std::mem::take(&mut self.rx_oversize)
    }
}

#[test]
fn oversize_frames_of_the_ports_are_counted_as_drops_and_not_as_tx_full() {
    let topo = topology();
    let pool = HeapPool::new_static(64);
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let port = |rx_oversize| OversizePort {
        sent: sent.clone(),
        oversize: 0,
        rx_oversize,
    };
    let classify = Classify::new(topo.clone());
    let transmit = Transmit::new(topo.clone());
    let (cc, tc) = (classify.counters.clone(), transmit.counters.clone());
    let mut w: Worker<HeapBuf> = Worker {
        id: 0,
        shard: 0,
        stages_run: vec![Stage::Classify, Stage::Transmit],
        stages: Stages {
            classify: Some(classify),
            replicate: None,
            translate: None,
            transmit: Some(transmit),
        },
        burst_size: 32,
        rx: vec![Box::new(port(3))],
        tx: vec![Box::new(port(0)), Box::new(port(0))],
        stage_in: Vec::new(),
        handoff_in: Vec::new(),
        handoff_out: Vec::new(),
        hairpin_in: None,
        hairpin_out: Vec::new(),
        next: None,
        ports: Arc::new(Vec::new()),
        snapshots: None,
        events: None,
        service_snapshots: None,
        service_events: None,
        sessions: None,
        settings: None,
        nat_events: None,
        capture: None,
        counters: Arc::default(),
        solicit: None,
        stop: Arc::default(),
        epoch: Instant::now(),
        bench: None,
    };
    let mut pending = w.pending();
    w.turn(Nanos::ZERO, &mut pending);
    assert_eq!(cc.drops(DropReason::RxOversize), 3);
    for len in [100, 1500, 200] {
        let mut b = pool.alloc_with(&vec![0u8; len]).unwrap();
        b.meta_mut().out_port = 1;
        b.meta_mut().direction = Direction::Local;
        pending.per_port[1].push(b);
    }
    w.flush_tx(&mut pending);
    assert_eq!(tc.drops(DropReason::TxOversize), 1);
    assert_eq!(
        tc.drops(DropReason::TxFull),
        0,
        "the rest of the burst went"
    );
    assert_eq!(*sent.lock().unwrap(), vec![100, 200]);
    assert_eq!(pool.in_use(), 0);
}
