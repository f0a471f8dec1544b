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

use std::net::IpAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam::queue::ArrayQueue;
use pipelines::classify::Classify;
use pipelines::nat::NatConfig;
use pipelines::replicate::Replicate;
use pipelines::topology::{IpPrefix, NatPortRange, PortInfo, PortRole, Topology, UplinkInfo};
use pipelines::translate::Translate;
use pipelines::transmit::Transmit;
use pipelines::{Burst, HeapBuf, HeapPool, Nanos, PacketBuf, BURST_MAX};

const FLOWS: usize = 16_384;

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
        vec!["10.0.0.1".parse().unwrap()],
        vec![UplinkInfo {
            name: "isp".into(),
            port: 1,
            nat_addrs: (1..=4)
                .map(|i| IpAddr::V4([198, 51, 100, i].into()))
                .collect(),
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

/// An Ethernet/IPv4/UDP frame from client `i` (valid checksums).
fn frame(i: usize) -> Vec<u8> {
    let src = [10, 1, (i >> 8) as u8, i as u8];
    let mut f = vec![0u8; 14 + 20 + 8 + 18];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 1, 0, 0]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&[203, 0, 113, (i % 200) as u8 + 1]);
    let c = pipelines::checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&(10_000 + (i % 50_000) as u16).to_be_bytes());
    udp[2..4].copy_from_slice(&53u16.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    // Checksum 0: "none" for IPv4 UDP; translate keeps it so.
    f
}

struct Bench {
    pool: &'static HeapPool,
    templates: Vec<Vec<u8>>,
    next: usize,
}

impl Bench {
    fn refill(&mut self, burst: &mut Burst<HeapBuf>) {
        while !burst.is_full() {
            let t = &self.templates[self.next % self.templates.len()];
            self.next += 1;
            burst.push(self.pool.alloc_with(t).expect("pool"));
        }
    }
}

fn benches(c: &mut Criterion) {
    let topo = topology();
    let pool = HeapPool::new_static(4 * BURST_MAX + 64);
    let mut b = Bench {
        pool,
        templates: (0..FLOWS).map(frame).collect(),
        next: 0,
    };
    let mut classify = Classify::new(topo.clone());
    let mut replicate = Replicate::new(topo.clone());
    let mut translate = Translate::new(
        topo.clone(),
        0,
        NatConfig {
            max_sessions: FLOWS * 2,
            ..NatConfig::default()
        },
    );
    let mut transmit = Transmit::new(topo.clone());
    let now = Nanos::from_secs(1);

    // Establish every flow once.
    let mut per_port: Vec<Burst<HeapBuf>> = vec![Burst::new(), Burst::new()];
    for _ in 0..FLOWS.div_ceil(BURST_MAX) {
        let (mut x, mut y) = (Burst::new(), Burst::new());
        b.refill(&mut x);
        classify.process(&mut x, &mut y);
        replicate.process(&mut y, &mut x);
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
            replicate.process(&mut y, &mut x);
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
