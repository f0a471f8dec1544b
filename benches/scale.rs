//! Criterion benches of the NAT engine at ten million sessions (one shard),
//! beside a baseline in the same run (compare ratios, not absolutes):
//! - `scale/baseline_refill_10m`: build a burst of packets of flows drawn
//!   from all ten million in random order and forward it with a no-op;
//! - `scale/established_10m`: classify + replicate + translate + transmit
//!   on those established flows, ten million live sessions.
//!
//! The packets are not ten million stored templates (that would be a
//! gigabyte of buffers beside the table): each packet is copied from one
//! template ([`Refill`]) and its source address, source port and server are
//! then written for its flow, taken from a random permutation of the ten
//! million flows (40 MB), so the whole table is the working set. Sampling a
//! few hundred thousand templates instead would keep the touched sessions
//! within this machine's 260 MiB L3. The baseline pays the same copy and
//! patch.
//!
//! Flows: 64 source ports per client (156,250 clients in 10.1.0.0 on) and
//! 255 NAT addresses, so paired pooling leaves every address's port pool
//! (64,512 ports) far from exhausted.
//!
//! It prints the table's bytes per session (of capacity and per live
//! session), the page sizes the huge-page allocator got, and the fill time.
//!
//! The bench installs the appliance's global allocator
//! (`appliance::memory::HugeAlloc`), so the tables are on 2 MiB pages as in
//! the binary. Memory: about 1.5 GB.
//!
//! Run: `cargo bench --bench scale`.

mod common;
#[path = "common/path.rs"]
mod path;

use std::time::Instant;

use appliance::memory::{self, HugePages};
use common::{shuffled, Refill};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use path::Path;
use pipelines::testing::raw::udp_flow;
use pipelines::wire::checksum::checksum;
use pipelines::{Burst, HeapBuf, Nanos, PacketBuf, BURST_MAX};

#[global_allocator]
static ALLOC: appliance::memory::HugeAlloc = appliance::memory::HugeAlloc;

const SESSIONS: usize = 10_000_000;
/// Source ports per client address.
const PER_CLIENT: usize = 64;
/// NAT addresses: 10 M mappings need at least 156 pools of 64,512 ports.
const NAT_ADDRS: u8 = 255;
/// Host table size: 156,250 client hosts (the default 8,192 would cap the
/// fill at 524,288 sessions).
const MAX_HOSTS: usize = 1 << 18;

/// Writes flow `i`'s source address, source port and server into `f` (a
/// copy of [`udp_flow`]'s frame) and its IPv4 header checksum.
fn patch(f: &mut [u8], i: usize) {
    let c = i / PER_CLIENT;
    f[26..30].copy_from_slice(&[10, 1 + (c >> 16) as u8, (c >> 8) as u8, c as u8]);
    f[30..34].copy_from_slice(&[203, 0, 113, (i % 200) as u8 + 1]);
    f[34..36].copy_from_slice(&(10_000 + (i % PER_CLIENT) as u16).to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let sum = checksum(&f[14..34]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
}

/// Bursts of the ten million flows: in order (to fill the table) or in a
/// random permutation.
struct Flows {
    refill: Refill,
    order: Vec<u32>,
    next: usize,
}

impl Flows {
    fn new() -> Flows {
        Flows {
            refill: Refill::new(vec![udp_flow(0)], false),
            order: shuffled(SESSIONS),
            next: 0,
        }
    }

    /// Fills `x` with the next flows: flow `first + k` for the k-th packet
    /// when `first` is given, else the next of the random permutation.
    fn burst(&mut self, x: &mut Burst<HeapBuf>, first: Option<usize>) {
        let from = x.len();
        self.refill.refill(x);
        for (k, p) in x[from..].iter_mut().enumerate() {
            let i = match first {
                Some(f) => f + k,
                None => {
                    let i = self.order[self.next % SESSIONS] as usize;
                    self.next += 1;
                    i
                }
            };
            patch(p.data_mut(), i);
        }
    }
}

/// Ten million established sessions, one packet of each flow in order.
fn established(flows: &mut Flows, now: Nanos) -> Path {
    memory::set_mode(HugePages::Auto);
    // Room above the eviction threshold (90 %): UDP flows that never saw
    // a reply would otherwise be evicted by the last tenth.
    let t = Instant::now();
    let mut path = Path::new(NAT_ADDRS, SESSIONS / 9 * 10 + 1024, MAX_HOSTS);
    let built = t.elapsed();
    let mut i = 0;
    while i < SESSIONS {
        let mut x = Burst::new();
        flows.burst(&mut x, Some(i));
        // The last burst may run past the ten million: cut it.
        x.truncate((SESSIONS - i).min(BURST_MAX));
        i += x.len();
        path.run(now, &mut x);
    }
    assert_eq!(path.translate.nat.len(), SESSIONS, "sessions established");
    assert_eq!(path.drops(), 0);
    let (slab, mapping) = path.translate.nat.table_bytes();
    let cap = path.translate.nat.config().max_sessions;
    eprintln!(
        "scale: {SESSIONS} sessions in a table of {cap}, built in {:.2} s, filled in {:.1} s; bytes per session of capacity: {:.1} (both halves + both session indexes), {:.1} with the mapping index; per live session: {:.1}, {:.1} with the mapping index",
        built.as_secs_f64(),
        (t.elapsed() - built).as_secs_f64(),
        slab as f64 / cap as f64,
        (slab + mapping) as f64 / cap as f64,
        slab as f64 / SESSIONS as f64,
        (slab + mapping) as f64 / SESSIONS as f64,
    );
    eprintln!(
        "scale: huge_pages = Auto: {}",
        memory::MemoryStats::now().summary()
    );
    path
}

fn benches(c: &mut Criterion) {
    let now = Nanos::from_secs(1);
    let mut flows = Flows::new();
    let mut path = established(&mut flows, now);

    let mut g = c.benchmark_group("scale");
    g.throughput(Throughput::Elements(BURST_MAX as u64));
    g.sample_size(20);
    g.bench_function("baseline_refill_10m", |bn| {
        bn.iter(|| {
            let (mut x, mut y) = (Burst::new(), Burst::<HeapBuf>::new());
            flows.burst(&mut x, None);
            for p in x.drain(..) {
                if p.data()[0] != 0xff {
                    y.push(p);
                }
            }
            std::hint::black_box(&y);
        })
    });
    g.bench_function("established_10m", |bn| {
        bn.iter(|| {
            let mut x = Burst::new();
            flows.burst(&mut x, None);
            path.run(now, &mut x);
        })
    });
    assert_eq!(path.drops(), 0, "the established path dropped packets");
    assert_eq!(path.translate.nat.len(), SESSIONS, "no session lost");
    g.finish();
}

criterion_group!(scale, benches);
criterion_main!(scale);
