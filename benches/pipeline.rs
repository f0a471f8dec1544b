//! Criterion benches of the packet path, in memory, with no I/O:
//! - `baseline/refill_noop`: refill a burst from templates and pass it through
//!   a no-op forwarder; every other bench pays the same refill, so its
//!   figure minus this one is the stage's own cost;
//! - `stages/classify`, `stages/classify_translate_transmit` on established
//!   flows (a table of `FLOWS` live sessions);
//! - `ring/hop`: one burst through a crossbeam ArrayQueue and back.
//!
//! Run: `cargo bench --bench pipeline`; figures are per burst of 32, with
//! throughput in packets/s. Compare ratios against the baseline of the same
//! run: this machine is shared and noisy.

mod common;

use common::Refill;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam::queue::ArrayQueue;
use pipelines::nat::NatConfig;
use pipelines::stages::classify::Classify;
use pipelines::stages::replicate::Replicate;
use pipelines::stages::translate::Translate;
use pipelines::stages::transmit::Transmit;
use pipelines::testing::one_uplink as topology;
use pipelines::testing::raw::udp_flow as frame;
use pipelines::{Burst, HeapBuf, Nanos, PacketBuf, BURST_MAX};

const FLOWS: usize = 16_384;

fn benches(c: &mut Criterion) {
    let topo = topology(4, 1);
    let mut b = Refill::new((0..FLOWS).map(frame).collect(), false);
    let cfg = NatConfig {
        max_sessions: FLOWS * 2,
        ..NatConfig::default()
    };
    let mut classify = Classify::new(topo.clone());
    // As the runtime does: classify's flow hash is the NAT index's.
    classify.set_flow_hasher(cfg.flow_hasher());
    let mut replicate = Replicate::new(topo.clone());
    let mut translate = Translate::new(topo.clone(), 0, cfg);
    let mut transmit = Transmit::new(topo.clone());
    let now = Nanos::from_secs(1);

    // Establish every flow once.
    let mut per_port: Vec<Burst<HeapBuf>> = vec![Burst::new(), Burst::new()];
    for _ in 0..FLOWS.div_ceil(BURST_MAX) {
        let (mut x, mut y) = (Burst::new(), Burst::new());
        b.refill(&mut x);
        classify.process(&mut x, &mut y);
        replicate.process(now, &mut y, &mut x);
        translate.process(now, &mut x, &mut y);
        transmit.process(&mut y, &mut per_port);
        per_port.iter_mut().for_each(|p| p.clear());
    }
    assert!(
        translate.nat.len() >= FLOWS,
        "sessions established: {}",
        translate.nat.len()
    );

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BURST_MAX as u64));
    g.bench_function("baseline/refill_noop", |bn| {
        bn.iter(|| {
            let (mut x, mut y) = (Burst::new(), Burst::<HeapBuf>::new());
            b.refill(&mut x);
            for p in x.drain(..) {
                if p.data()[0] != 0xff {
                    y.push(p);
                }
            }
            std::hint::black_box(&y);
        })
    });
    g.bench_function("stages/classify", |bn| {
        bn.iter(|| {
            let (mut x, mut y) = (Burst::new(), Burst::new());
            b.refill(&mut x);
            classify.process(&mut x, &mut y);
            std::hint::black_box(&y);
        })
    });
    g.bench_function("stages/classify_translate_transmit", |bn| {
        bn.iter(|| {
            let (mut x, mut y) = (Burst::new(), Burst::new());
            b.refill(&mut x);
            classify.process(&mut x, &mut y);
            replicate.process(now, &mut y, &mut x);
            translate.process(now, &mut x, &mut y);
            transmit.process(&mut y, &mut per_port);
            std::hint::black_box(&per_port);
            per_port.iter_mut().for_each(|p| p.clear());
        })
    });
    let ring: ArrayQueue<Burst<HeapBuf>> = ArrayQueue::new(1024);
    let mut held: Burst<HeapBuf> = Burst::new();
    b.refill(&mut held);
    g.bench_function("ring/hop", |bn| {
        bn.iter(|| {
            // Enqueue then dequeue one full burst: the cost a packet pays
            // crossing from one lcore's stage to the next (without the
            // cache-line transfer between cores, which no bench on a shared
            // 2-core machine measures reliably).
            if let Err(back) = ring.push(std::mem::take(&mut held)) {
                held = back;
            }
            if let Some(back) = ring.pop() {
                held = back;
            }
            std::hint::black_box(&held);
        })
    });
    g.finish();
    let drops = translate.counters.total_drops() + classify.counters.total_drops();
    assert_eq!(drops, 0, "the bench path dropped packets");
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
