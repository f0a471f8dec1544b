//! Criterion benches of the NAT engine, beside a baseline in the same run
//! (this machine is shared and noisy: compare ratios, not absolutes):
//! - `nat/baseline_refill_1m`: refill a burst from one million templates
//!   in random order and forward it with a no-op; every packet bench below
//!   pays the same refill;
//! - `nat/established_1m`: classify + replicate + translate + transmit on
//!   established flows, one million live sessions (far beyond the caches),
//!   visited in random order;
//! - `nat/new_udp_flows`: the same path where every packet opens a new UDP
//!   session on a new mapping (port allocation, three index inserts);
//! - `nat/list_page_1m`: one page of `appliance sessions` (at most 16,384
//!   slots visited, 1,000 sessions returned) over one million sessions,
//!   i.e. the pause a listing puts in a loop turn; before it, a full
//!   listing interleaved with forwarding prints its time and the
//!   forwarding rate during it;
//! - `nat/sweep_call_1m_expired`: one paced sweep call on a table of one
//!   million expired sessions, i.e. the longest pause the sweep puts in a
//!   loop turn ([`SWEEP_MAX`] removals).
//!
//! Figures are per burst of 32 (packet benches) or per call (sweep). It also
//! prints the table's bytes per session and the time a full expiry of one
//! million sessions takes in paced calls.
//!
//! The bench installs the appliance's global allocator
//! (`appliance::memory::HugeAlloc`), so the tables are on 2 MiB pages as in
//! the binary; `nat/established_1m_4k` repeats `established_1m` in the same
//! run on a second table built with `huge_pages = "off"` (4 KiB pages).
//! `NAT_BENCH_PAGES=huge` or `=4k` runs only one of the two.
//!
//! Run: `cargo bench --bench nat`.

mod common;
#[path = "common/path.rs"]
mod path;

use std::time::{Duration, Instant};

use appliance::memory::{self, HugePages};
use common::Refill;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use path::Path;
use pipelines::nat::{HostLimits, NatConfig, NatShard, SessionFilter, SWEEP_MAX};
use pipelines::packet::flow::{proto, FlowKey};
use pipelines::testing::one_uplink as topology;
use pipelines::testing::raw::{udp_flow as frame, PORTS_PER_CLIENT};
use pipelines::{Burst, HeapBuf, Nanos, PacketBuf, BURST_MAX};

#[global_allocator]
static ALLOC: appliance::memory::HugeAlloc = appliance::memory::HugeAlloc;

const SESSIONS: usize = 1 << 20;
/// NAT addresses: enough ports for a million mappings (paired pooling puts
/// every client on one address).
const NAT_ADDRS: u8 = 64;

/// The appliance's session request bounds (`dataplane::rings`:
/// `SESSION_SCAN`, `SESSION_PAGE`).
const SCAN: usize = 16_384;
const PAGE: usize = 1_000;

/// Lists every session of the million-session shard in pages, one page
/// between two bursts (what a translate lcore does while `appliance
/// sessions` walks it: at most one page per loop turn), and prints the time
/// to list all and the forwarding rate meanwhile, beside the rate without.
fn list_while_forwarding(path: &mut Path, refill: &mut Refill, now: Nanos) {
    const BURSTS: usize = 4_096;
    let t = Instant::now();
    for _ in 0..BURSTS {
        let mut x = Burst::new();
        refill.refill(&mut x);
        path.run(now, &mut x);
    }
    let alone = (BURSTS * BURST_MAX) as f64 / t.elapsed().as_secs_f64();
    let (mut cursor, mut pages, mut listed, mut bursts) = (Some(0u32), 0usize, 0usize, 0usize);
    let mut out = Vec::with_capacity(PAGE);
    let mut paging = Duration::ZERO;
    let t = Instant::now();
    while let Some(c) = cursor {
        let mut x = Burst::new();
        refill.refill(&mut x);
        path.run(now, &mut x);
        bursts += 1;
        out.clear();
        let p = Instant::now();
        cursor = path.translate.nat.list_sessions(
            &SessionFilter::default(),
            c,
            PAGE,
            SCAN,
            now,
            &mut out,
        );
        paging += p.elapsed();
        listed += out.len();
        pages += 1;
    }
    let total = t.elapsed();
    assert_eq!(listed, SESSIONS, "every session listed");
    let during = (bursts * BURST_MAX) as f64 / total.as_secs_f64();
    eprintln!(
        "nat: listed {listed} sessions in {pages} pages of {PAGE} in {:.0} ms ({:.0} ms in the pages, {:.1} µs a page); forwarding meanwhile {:.2} Mpps (one burst of {BURST_MAX} per page), alone {:.2} Mpps",
        total.as_secs_f64() * 1e3,
        paging.as_secs_f64() * 1e3,
        paging.as_secs_f64() * 1e6 / pages as f64,
        during / 1e6,
        alone / 1e6
    );
}

fn udp_key(i: usize) -> FlowKey {
    let c = i / PORTS_PER_CLIENT;
    FlowKey {
        src: std::net::IpAddr::V4([10, 1 + (c >> 16) as u8, (c >> 8) as u8, c as u8].into()),
        dst: std::net::IpAddr::V4([203, 0, 113, (i % 200) as u8 + 1].into()),
        src_port: 10_000 + (i % PORTS_PER_CLIENT) as u16,
        dst_port: 53,
        proto: proto::UDP,
    }
}

/// One million established sessions, on tables allocated with `pages`.
fn established(refill: &mut Refill, now: Nanos, pages: HugePages) -> Path {
    memory::set_mode(pages);
    // Room above the eviction threshold (90 %): UDP flows that never saw
    // a reply would otherwise be evicted by the last tenth.
    let mut path = Path::new(
        NAT_ADDRS,
        SESSIONS / 9 * 10 + 1024,
        HostLimits::default().max_hosts,
    );
    // As the runtime does: classify's flow hash is the NAT index's.
    let hasher = path.translate.nat.config().flow_hasher();
    path.classify.set_flow_hasher(hasher);
    refill.next = 0;
    for _ in 0..SESSIONS / BURST_MAX {
        let mut x = Burst::new();
        refill.refill(&mut x);
        path.run(now, &mut x);
    }
    assert_eq!(path.translate.nat.len(), SESSIONS, "sessions established");
    assert_eq!(path.drops(), 0);
    let (slab, mapping) = path.translate.nat.table_bytes();
    let cap = path.translate.nat.config().max_sessions;
    eprintln!(
        "nat: {} sessions in a table of {cap}; bytes per session of capacity: {:.1} (both halves + both session indexes), {:.1} with the mapping index; per live session: {:.1}",
        SESSIONS,
        slab as f64 / cap as f64,
        (slab + mapping) as f64 / cap as f64,
        slab as f64 / SESSIONS as f64,
    );
    eprintln!(
        "nat: huge_pages = {:?}: {}",
        pages,
        memory::MemoryStats::now().summary()
    );
    path
}

/// The two tables' established path alternated in slices of 1,024 bursts
/// (so load from the rest of the machine falls on both alike): prints ns per
/// packet of each and the ratio.
fn interleaved(huge: &mut Path, small: &mut Path, refill: &mut Refill, now: Nanos) {
    const ROUNDS: usize = 40;
    const SLICE: usize = 1024;
    let mut t = [Duration::ZERO; 2];
    for _ in 0..ROUNDS {
        for (i, p) in [&mut *huge, &mut *small].into_iter().enumerate() {
            let start = Instant::now();
            for _ in 0..SLICE {
                let mut x = Burst::new();
                refill.refill(&mut x);
                p.run(now, &mut x);
            }
            t[i] += start.elapsed();
        }
    }
    let per = |d: Duration| d.as_nanos() as f64 / (ROUNDS * SLICE * BURST_MAX) as f64;
    eprintln!(
        "nat: established_1m interleaved ({ROUNDS} x {SLICE} bursts each, refill included): 2 MiB pages {:.0} ns/packet, 4 KiB pages {:.0} ns/packet, ratio {:.2}",
        per(t[0]),
        per(t[1]),
        per(t[0]) / per(t[1])
    );
}

/// The measured loop of `nat/new_udp_flows`: `n` bursts of new flows. Not
/// inlined, so a profiler can collect it alone:
/// `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='nat::new_flows'`.
#[inline(never)]
fn new_flows(p: &mut Path, fresh: &mut Refill, n: usize, now: Nanos) {
    for _ in 0..n {
        let mut x = Burst::new();
        fresh.refill(&mut x);
        p.run(now, &mut x);
    }
}

fn benches(c: &mut Criterion) {
    let now = Nanos::from_secs(1);
    let mut g = c.benchmark_group("nat");
    g.throughput(Throughput::Elements(BURST_MAX as u64));
    g.sample_size(20);

    // One million established sessions.
    let mut refill = Refill::new((0..SESSIONS).map(frame).collect(), true);
    let pages = std::env::var("NAT_BENCH_PAGES").unwrap_or_else(|_| "both".into());
    let (huge, small) = match pages.as_str() {
        "huge" => (true, false),
        "4k" => (false, true),
        _ => (true, true),
    };
    let mut path = established(&mut refill, now, HugePages::Auto);
    g.bench_function("baseline_refill_1m", |bn| {
        bn.iter(|| {
            let (mut x, mut y) = (Burst::new(), Burst::<HeapBuf>::new());
            refill.refill(&mut x);
            for p in x.drain(..) {
                if p.data()[0] != 0xff {
                    y.push(p);
                }
            }
            std::hint::black_box(&y);
        })
    });
    if huge {
        g.bench_function("established_1m", |bn| {
            bn.iter(|| {
                let mut x = Burst::new();
                refill.refill(&mut x);
                path.run(now, &mut x);
            })
        });
    }
    if small {
        let huge_path = &mut path;
        let mut path = established(&mut refill, now, HugePages::Off);
        g.bench_function("established_1m_4k", |bn| {
            bn.iter(|| {
                let mut x = Burst::new();
                refill.refill(&mut x);
                path.run(now, &mut x);
            })
        });
        assert_eq!(path.drops(), 0, "the established path dropped packets");
        memory::set_mode(HugePages::Auto);
        if huge {
            interleaved(huge_path, &mut path, &mut refill, now);
        }
    }
    assert_eq!(path.drops(), 0, "the established path dropped packets");
    list_while_forwarding(&mut path, &mut refill, now);
    assert_eq!(path.drops(), 0, "packets dropped while listing");
    g.bench_function("list_page_1m", |bn| {
        let mut cursor = 0u32;
        let mut out = Vec::with_capacity(PAGE);
        bn.iter(|| {
            out.clear();
            cursor = path
                .translate
                .nat
                .list_sessions(&SessionFilter::default(), cursor, PAGE, SCAN, now, &mut out)
                .unwrap_or(0);
            std::hint::black_box(&out);
        })
    });
    drop(path);

    // New flows: fresh tables of 256 k sessions, each template a new flow.
    const FRESH: usize = 256 * 1024;
    let mut fresh = Refill::new((SESSIONS..SESSIONS + FRESH).map(frame).collect(), false);
    g.bench_function("new_udp_flows", |bn| {
        bn.iter_custom(|bursts| {
            let mut total = Duration::ZERO;
            let mut left = bursts as usize;
            while left > 0 {
                let n = left.min(FRESH / BURST_MAX);
                // Room above the eviction threshold, as above.
                let mut p = Path::new(
                    NAT_ADDRS,
                    FRESH / 9 * 10 + 1024,
                    HostLimits::default().max_hosts,
                );
                fresh.next = 0;
                let t = Instant::now();
                new_flows(&mut p, &mut fresh, n, now);
                total += t.elapsed();
                assert_eq!(
                    p.translate.nat.len(),
                    n * BURST_MAX,
                    "every packet a new session"
                );
                left -= n;
            }
            total
        })
    });

    // Sweep: a million sessions, all idle past their timeout.
    let cfg = NatConfig {
        max_sessions: SESSIONS,
        seed: 1,
        ..NatConfig::default()
    };
    let topo = topology(NAT_ADDRS, 1);
    let fill = |nat: &mut NatShard| {
        for i in 0..SESSIONS {
            if nat.len() >= SESSIONS {
                break;
            }
            let k = udp_key(i);
            if nat.lookup_out(&k, now).is_none() {
                let _ = nat.create_out(&k, 0, [2, 0, 0, 0, 0, 1], now);
            }
        }
    };
    let mut nat = NatShard::new(cfg.clone(), &topo, 0);
    fill(&mut nat);
    let late = Nanos::from_secs(3_600);
    let t = Instant::now();
    let mut calls = 0u64;
    let mut clock = late;
    while !nat.is_empty() {
        clock = clock.saturating_add(Nanos::from_secs(10));
        nat.sweep(clock);
        calls += 1;
    }
    eprintln!(
        "nat: expiring {SESSIONS} idle sessions took {:.1} ms of work in {calls} paced calls of at most {SWEEP_MAX} visits",
        t.elapsed().as_secs_f64() * 1e3
    );
    g.throughput(Throughput::Elements(SWEEP_MAX as u64));
    g.bench_function("sweep_call_1m_expired", |bn| {
        bn.iter_custom(|calls| {
            let mut total = Duration::ZERO;
            for _ in 0..calls {
                if nat.len() < SESSIONS / 2 {
                    fill(&mut nat);
                }
                clock = clock.saturating_add(Nanos::from_secs(10));
                let t = Instant::now();
                let n = nat.sweep(clock);
                total += t.elapsed();
                std::hint::black_box(n);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(nat, benches);
criterion_main!(nat);
