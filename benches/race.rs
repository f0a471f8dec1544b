//! One full SYN race per core (seed 001 [0036]): a client SYN in, one copy
//! out per uplink, every uplink's SYN+ACK in, the first forwarded to the
//! client and an RST out for each of the others. Beside it, in the same
//! run, the same connection opened without racing (SYN in, one copy out,
//! one SYN+ACK in, forwarded): the ratio is what racing costs.
//!
//!   cargo bench --bench race -- --warm-up-time 1 --measurement-time 4

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pipelines::nat::{HostLimits, NatConfig};
use pipelines::select::policy::SelectionPolicy;
use pipelines::stages::classify::Classify;
use pipelines::stages::replicate::Replicate;
use pipelines::stages::translate::Translate;
use pipelines::stages::transmit::Transmit;
use pipelines::testing::bench_site;
use pipelines::testing::raw::tcp4 as tcp_frame;
use pipelines::wire::checksum::{fold, sum};
use pipelines::Topology;
use pipelines::{Burst, HeapBuf, HeapPool, Nanos, PacketBuf, PacketMeta, BURST_MAX};

const UPLINKS: u8 = 3;
/// Races per fresh NAT shard (its setup is not timed).
const BATCH: usize = 8 * 1024;

/// A LAN port and one port per uplink, each uplink with one NAT address.
fn topology() -> Arc<Topology> {
    bench_site(UPLINKS, 1, 1)
}

/// Turns a translated SYN copy (Ethernet + IPv4 + a 20-byte TCP header,
/// as `syn` builds them) into its server's SYN+ACK toward `mac`: addresses
/// and ports swapped (the IPv4 checksum does not change), ISN 9000, the
/// TCP checksum computed again.
fn syn_ack(b: &mut HeapBuf, mac: [u8; 6]) {
    let d = b.data_mut();
    d[6..12].copy_from_slice(&[2, 0, 0, 9, 9, 9]);
    d[0..6].copy_from_slice(&mac);
    let (ip, t) = d[14..54].split_at_mut(20);
    let mut src = [0u8; 4];
    src.copy_from_slice(&ip[12..16]);
    ip.copy_within(16..20, 12);
    ip[16..20].copy_from_slice(&src);
    let (sport, dport) = ([t[0], t[1]], [t[2], t[3]]);
    t[0..2].copy_from_slice(&dport);
    t[2..4].copy_from_slice(&sport);
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    t[4..8].copy_from_slice(&9_000u32.to_be_bytes());
    t[8..12].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
    t[13] = 0x12;
    t[16..18].copy_from_slice(&[0, 0]);
    let pseudo = sum(&ip[12..20], 0) + 6 + 20;
    let c = !fold(sum(t, pseudo));
    t[16..18].copy_from_slice(&c.to_be_bytes());
}

/// The client SYN of race `i`: its own client port.
fn syn(i: usize) -> Vec<u8> {
    let c = i / 50_000;
    tcp_frame(
        [2, 0, 0, 0, 0, 1],
        [10, 1, (c >> 8) as u8, c as u8],
        [203, 0, 113, (i % 200) as u8 + 1],
        10_000 + (i % 50_000) as u16,
        443,
        0x02,
        1_000,
        0,
    )
}

struct Path {
    classify: Classify,
    replicate: Replicate,
    translate: Translate,
    transmit: Transmit,
    per_port: Vec<Burst<HeapBuf>>,
    topo: Arc<Topology>,
    /// Copies sent to the uplinks, turned into their servers' SYN+ACKs.
    answers: Vec<HeapBuf>,
    to_lan: u64,
    rsts: u64,
}

impl Path {
    fn new(race: bool) -> Path {
        let topo = topology();
        let policy = Arc::new(SelectionPolicy {
            race_tcp: race,
            ..SelectionPolicy::default()
        });
        Path {
            classify: Classify::new(topo.clone()),
            replicate: Replicate::with_policy(topo.clone(), policy.clone()),
            translate: Translate::with_policy(
                topo.clone(),
                0,
                NatConfig {
                    max_sessions: 4 * BATCH,
                    seed: 1,
                    // Thousands of races from each client address at one
                    // instant: no per-host limit applies here.
                    hosts: HostLimits {
                        max_sessions: u32::MAX,
                        new_per_second: u32::MAX,
                        new_burst: u32::MAX,
                        max_races: u32::MAX,
                        ..HostLimits::default()
                    },
                    ..NatConfig::default()
                },
                policy,
            ),
            transmit: Transmit::new(topo.clone()),
            per_port: (0..=UPLINKS).map(|_| Burst::new()).collect(),
            topo,
            answers: Vec::with_capacity(BURST_MAX * 4),
            to_lan: 0,
            rsts: 0,
        }
    }

    /// classify → replicate → translate → transmit, as a worker chains them
    /// (stages that leave packets are called again).
    fn run(&mut self, now: Nanos, x: &mut Burst<HeapBuf>) {
        let mut y = Burst::new();
        self.classify.process(x, &mut y);
        while !y.is_empty() {
            let mut z = Burst::new();
            self.replicate.process(now, &mut y, &mut z);
            while !z.is_empty() {
                let mut out = Burst::new();
                self.translate.process(now, &mut z, &mut out);
                self.transmit.process(&mut out, &mut self.per_port);
                self.collect();
            }
        }
    }

    /// What transmit sorted per port: SYN copies on uplink ports become
    /// their server's SYN+ACK (written into the copy's buffer, as a server
    /// would answer: no allocation); RSTs and packets to the LAN are
    /// counted.
    fn collect(&mut self) {
        for (port, out) in self.per_port.iter_mut().enumerate() {
            for mut b in out.drain(..) {
                if port == 0 {
                    self.to_lan += 1;
                    continue;
                }
                if b.data()[14 + 20 + 13] & 0x04 != 0 {
                    self.rsts += 1;
                    continue;
                }
                syn_ack(&mut b, self.topo.ports[port].mac);
                *b.meta_mut() = PacketMeta::default();
                b.meta_mut().in_port = port as u16;
                self.answers.push(b);
            }
        }
    }

    /// One connection per uplink before the timed races (without a race
    /// the policy spreads them over the uplinks), so that the shard's lazy
    /// setup (each NAT address's port pool, made on its first session) is
    /// not timed either; their counts are then forgotten.
    #[inline(never)]
    fn warm(&mut self, now: Nanos, pool: &'static HeapPool) {
        let mut x = Burst::new();
        for k in 0..u16::from(UPLINKS) {
            let f = tcp_frame(
                [2, 0, 0, 0, 0, 1],
                [10, 2, 0, 1],
                [203, 0, 113, 250],
                999 + k,
                443,
                0x02,
                7,
                0,
            );
            x.push(pool.alloc_with(&f).expect("pool"));
        }
        self.run(now, &mut x);
        self.answer(now);
        assert_eq!(
            self.to_lan,
            u64::from(UPLINKS),
            "the warm-up connections were answered"
        );
        (self.to_lan, self.rsts) = (0, 0);
    }

    /// The servers' answers, a burst at a time.
    fn answer(&mut self, now: Nanos) {
        while !self.answers.is_empty() {
            let mut x = Burst::new();
            let n = self.answers.len().min(BURST_MAX);
            for a in self.answers.drain(..n) {
                x.push(a);
            }
            self.run(now, &mut x);
        }
    }
}

fn benches(c: &mut Criterion) {
    let now = Nanos::from_secs(1);
    let pool = HeapPool::new_static(16 * 1024);
    let syns: Vec<Vec<u8>> = (0..BATCH).map(syn).collect();
    let mut g = c.benchmark_group("race");
    g.throughput(Throughput::Elements(BURST_MAX as u64));
    g.sample_size(20);
    for (name, race) in [("no_race_1_uplink", false), ("race_3_uplinks", true)] {
        g.bench_function(name, |bn| {
            bn.iter_custom(|bursts| {
                let mut total = Duration::ZERO;
                let mut left = bursts as usize;
                while left > 0 {
                    let n = left.min(BATCH / BURST_MAX);
                    let mut p = Path::new(race);
                    p.warm(now, pool);
                    let t = Instant::now();
                    for b in 0..n {
                        let mut x = Burst::new();
                        for s in &syns[b * BURST_MAX..(b + 1) * BURST_MAX] {
                            x.push(pool.alloc_with(s).expect("pool"));
                        }
                        p.run(now, &mut x);
                        p.answer(now);
                    }
                    total += t.elapsed();
                    let conns = (n * BURST_MAX) as u64;
                    assert_eq!(
                        p.to_lan, conns,
                        "one SYN+ACK per connection reached the client"
                    );
                    let losers = if race { u64::from(UPLINKS) - 1 } else { 0 };
                    assert_eq!(p.rsts, conns * losers, "an RST per losing uplink");
                    assert_eq!(p.translate.nat.len() as u64, conns + u64::from(UPLINKS));
                    left -= n;
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(race, benches);
criterion_main!(race);
