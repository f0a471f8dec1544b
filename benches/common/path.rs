//! The whole established path of the big-table benches (`nat`, `scale`):
//! classify → replicate → translate → transmit on one shard, with no
//! per-host limit (millions of flows from a few hosts at one instant).

use pipelines::nat::{HostLimits, NatConfig};
use pipelines::stages::classify::Classify;
use pipelines::stages::replicate::Replicate;
use pipelines::stages::translate::Translate;
use pipelines::stages::transmit::Transmit;
use pipelines::testing::one_uplink as topology;
use pipelines::{Burst, HeapBuf, Nanos};

pub struct Path {
    pub classify: Classify,
    pub replicate: Replicate,
    pub translate: Translate,
    pub transmit: Transmit,
    pub per_port: Vec<Burst<HeapBuf>>,
}

impl Path {
    /// One shard of `max_sessions` behind `nat_addrs` NAT addresses, its
    /// host table holding `max_hosts` client hosts.
    pub fn new(nat_addrs: u8, max_sessions: usize, max_hosts: usize) -> Path {
        let topo = topology(nat_addrs, 1);
        Path {
            classify: Classify::new(topo.clone()),
            replicate: Replicate::new(topo.clone()),
            translate: Translate::new(
                topo.clone(),
                0,
                NatConfig {
                    max_sessions,
                    seed: 1,
                    hosts: HostLimits {
                        max_sessions: u32::MAX,
                        new_per_second: u32::MAX,
                        new_burst: u32::MAX,
                        max_hosts,
                        ..HostLimits::default()
                    },
                    ..NatConfig::default()
                },
            ),
            transmit: Transmit::new(topo),
            per_port: vec![Burst::new(), Burst::new()],
        }
    }

    pub fn run(&mut self, now: Nanos, x: &mut Burst<HeapBuf>) {
        let mut y = Burst::new();
        self.classify.process(x, &mut y);
        self.replicate.process(now, &mut y, x);
        self.translate.process(now, x, &mut y);
        self.transmit.process(&mut y, &mut self.per_port);
        std::hint::black_box(&self.per_port);
        self.per_port.iter_mut().for_each(|p| p.clear());
    }

    pub fn drops(&self) -> u64 {
        self.classify.counters.total_drops() + self.translate.counters.total_drops()
    }
}
