//! The DPDK backend on virtual devices (`net_ring`, `net_null`,
//! `net_af_packet` on `lo`), without hugepages. The EAL starts once per
//! process, so every DPDK test lives in this one binary and shares one set
//! of EAL arguments; a lock runs them one at a time (the ethdev control path
//! is not made for concurrent setup). Run as root; if the EAL cannot start,
//! these tests fail (they never skip).
//!
//! `cargo test --release --features dpdk --test dpdk_ports`
#![cfg(feature = "dpdk")]

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use appliance::ports::dpdk::{
    create_pool, init_eal, open, register_thread, DeviceSpec, DpdkError, DpdkSettings, Mbuf,
    MbufPool, NatSteering, ReturnSteering, RX_IP_CKSUM_BAD, RX_L4_CKSUM_BAD,
};
use appliance::ports::{BackendControl, PortQueues};
use pipelines::packet::buf::{DATA_ROOM, HEADROOM};
use pipelines::testing::bufs::{
    check_pool_is_bounded_and_recycles, check_prepend_adj_set_len_respect_bounds, PoolUnderTest,
};
use pipelines::topology::NatPortRange;
use pipelines::{BufPool, Burst, HeapPool, PacketBuf, PacketMeta};
use proptest::prelude::*;

fn eal_args() -> Vec<String> {
    [
        "--no-huge",
        "-m",
        "512",
        "--no-shconf",
        "--no-pci",
        "--no-telemetry",
        "-l",
        "0",
        "--log-level",
        "lib.eal:warning",
        "--vdev",
        "net_ring0",
        "--vdev",
        "net_ring1",
        "--vdev",
        "net_ring2",
        "--vdev",
        "net_null0",
        "--vdev",
        "net_null1",
        "--vdev",
        "net_null2",
        "--vdev",
        "net_af_packet0,iface=lo",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Starts the EAL (first caller) and serialises the tests.
fn dpdk() -> MutexGuard<'static, ()> {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Err(e) = init_eal(&eal_args()) {
        panic!("the DPDK EAL must start for these tests (root, DPDK 22.11): {e}");
    }
    guard
}

fn settings() -> DpdkSettings {
    DpdkSettings {
        eal_args: eal_args(),
        mbufs_per_socket: 4095,
        mbuf_cache: 32,
        rx_desc: 256,
        tx_desc: 256,
        return_steering: ReturnSteering::Software,
    }
}

fn frame(tag: u8, seq: u16, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0xff; 6]); // broadcast destination
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, tag]); // local source
    f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f[14] = tag;
    f[15..17].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f.iter_mut().enumerate().skip(17) {
        *b = (i as u8) ^ tag;
    }
    f
}

fn seq_of(data: &[u8]) -> u16 {
    u16::from_be_bytes([data[15], data[16]])
}

/// Polls `rx` until `want` packets arrived or `limit` passed (a bound so a
/// broken queue fails instead of hanging; not a speed assertion).
fn receive(q: &mut PortQueues<Mbuf>, queue: usize, want: usize, limit: Duration) -> Vec<Mbuf> {
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < want && start.elapsed() < limit {
        let mut burst: Burst<Mbuf> = Burst::new();
        q.rx[queue].rx_burst(&mut burst, 32);
        got.extend(burst.drain(..));
    }
    got
}

#[test]
fn ring_queues_loop_frames_back_with_fresh_meta() {
    let _g = dpdk();
    let (mut ports, control) = open(
        &settings(),
        &[DeviceSpec::new("net_null0"), DeviceSpec::new("net_ring0")],
        2,
        2,
    )
    .expect("open net_null0 + net_ring0 with 2 queues");
    assert_eq!(ports.len(), 2);
    assert!(ports.iter().all(|p| p.rx.len() == 2 && p.tx.len() == 2));
    assert!(
        control.link_up(0) && control.link_up(1),
        "vdev links are up once started"
    );
    assert!(!control.link_up(7), "no such port");
    assert!(control.port_mac(1).is_some());
    let pool = control.port_pool(1).unwrap();

    for q in 0..2 {
        let mut burst: Burst<Mbuf> = Burst::new();
        for seq in 0..5u16 {
            let mut m = pool
                .alloc_with(&frame(q as u8, seq, 60 + seq as usize))
                .unwrap();
            // Stale metadata must not survive the trip.
            m.meta_mut().shard = 9;
            m.meta_mut().hairpin = true;
            m.meta_mut().in_port = 77;
            burst.push(m);
        }
        assert_eq!(ports[1].tx[q].tx_burst(&mut burst), 5);
        assert!(burst.is_empty());
        // net_ring pairs TX queue q with RX queue q only.
        let mut other: Burst<Mbuf> = Burst::new();
        assert_eq!(ports[1].rx[1 - q].rx_burst(&mut other, 32), 0);
        let got = receive(&mut ports[1], q, 5, Duration::from_secs(5));
        assert_eq!(got.len(), 5);
        for (seq, m) in got.iter().enumerate() {
            assert_eq!(m.data(), &frame(q as u8, seq as u16, 60 + seq)[..]);
            assert_eq!(m.meta().in_port, 1, "meta.in_port is the port's index");
            assert_eq!(m.meta().shard, 0);
            assert!(!m.meta().hairpin);
            assert_eq!(m.headroom(), HEADROOM);
        }
    }

    // net_null makes 64-byte frames on every queue; RSS is on (it offers it).
    for q in 0..2 {
        let mut burst: Burst<Mbuf> = Burst::new();
        assert_eq!(
            ports[0].rx[q].rx_burst(&mut burst, 7),
            7,
            "max is respected"
        );
        assert!(burst
            .iter()
            .all(|m| m.data().len() == 64 && m.meta().in_port == 0));
        assert_eq!(ports[0].tx[q].tx_burst(&mut burst), 7);
    }
    let stats = control.stats();
    assert_eq!(stats["ports"][0]["rss"]["enabled"], true, "{stats:#}");
    assert_eq!(
        stats["ports"][1]["rss"]["enabled"], false,
        "net_ring offers no RSS"
    );
}

#[test]
fn rx_never_overfills_the_callers_burst() {
    let _g = dpdk();
    let (mut ports, _control) = open(&settings(), &[DeviceSpec::new("net_null1")], 1, 1).unwrap();
    let mut burst: Burst<Mbuf> = Burst::new();
    assert_eq!(ports[0].rx[0].rx_burst(&mut burst, 20), 20);
    assert_eq!(
        ports[0].rx[0].rx_burst(&mut burst, 32),
        12,
        "only 12 places were left"
    );
    assert_eq!(ports[0].rx[0].rx_burst(&mut burst, 32), 0);
    assert!(burst.is_full());
}

#[test]
fn tx_takes_from_the_front_and_leaves_the_rest() {
    let _g = dpdk();
    let (mut ports, control) = open(&settings(), &[DeviceSpec::new("net_ring1")], 1, 1).unwrap();
    let pool = control.pool();
    // Fill the ring (it holds fewer than 4095 packets) until TX refuses some.
    let mut sent = 0u16;
    let mut leftover: Burst<Mbuf> = Burst::new();
    'fill: for _ in 0..200 {
        let mut burst: Burst<Mbuf> = Burst::new();
        for _ in 0..32 {
            burst.push(
                pool.alloc_with(&frame(1, sent + burst.len() as u16, 64))
                    .unwrap(),
            );
        }
        let first = seq_of(burst[0].data());
        let took = ports[0].tx[0].tx_burst(&mut burst);
        sent += took as u16;
        if took < 32 {
            assert_eq!(burst.len(), 32 - took, "untaken packets stay in the burst");
            assert_eq!(
                seq_of(burst[0].data()),
                first + took as u16,
                "the front was taken"
            );
            leftover = burst;
            break 'fill;
        }
    }
    assert!(!leftover.is_empty(), "the ring never filled");
    let got = receive(&mut ports[0], 0, usize::from(sent), Duration::from_secs(5));
    assert_eq!(got.len(), usize::from(sent));
    for (i, m) in got.iter().enumerate() {
        assert_eq!(seq_of(m.data()), i as u16);
    }
    drop(got);
    drop(leftover);
    // Everything went home: only the RX ring's prefilled mbufs remain.
    let stats = control.stats();
    assert!(
        stats["pools"][0]["in_use"].as_u64().unwrap() < 100,
        "{stats:#}"
    );
}

#[test]
fn packets_marked_bad_by_the_pmd_are_dropped_and_counted() {
    let _g = dpdk();
    let (mut ports, control) = open(&settings(), &[DeviceSpec::new("net_ring2")], 1, 1).unwrap();
    let pool = control.pool();
    let mut burst: Burst<Mbuf> = Burst::new();
    for (seq, flags) in [(0u16, RX_IP_CKSUM_BAD), (1, RX_L4_CKSUM_BAD), (2, 0)] {
        let mut m = pool.alloc_with(&frame(2, seq, 64)).unwrap();
        // net_ring hands the mbuf over as is, so these flags reach RX as a
        // checksumming NIC would set them.
        m.set_ol_flags(flags);
        burst.push(m);
    }
    assert_eq!(ports[0].tx[0].tx_burst(&mut burst), 3);
    let got = receive(&mut ports[0], 0, 1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(
        seq_of(got[0].data()),
        2,
        "only the good packet is delivered"
    );
    let mut more: Burst<Mbuf> = Burst::new();
    assert_eq!(ports[0].rx[0].rx_burst(&mut more, 32), 0);
    let stats = control.stats();
    let dropped = &stats["ports"][0]["rx_dropped"];
    assert_eq!(dropped["ip_checksum_bad"], 1, "{stats:#}");
    assert_eq!(dropped["l4_checksum_bad"], 1, "{stats:#}");
}

#[test]
fn stats_carry_xstats_link_offloads_and_pools() {
    let _g = dpdk();
    let (mut ports, control) = open(
        &settings(),
        &[DeviceSpec::new("net_null0"), DeviceSpec::new("net_null1")],
        1,
        1,
    )
    .unwrap();
    for _ in 0..3 {
        let mut burst: Burst<Mbuf> = Burst::new();
        ports[0].rx[0].rx_burst(&mut burst, 32);
        assert_eq!(ports[1].tx[0].tx_burst(&mut burst), 32);
    }
    let stats = control.stats();
    let p0 = &stats["ports"][0];
    let p1 = &stats["ports"][1];
    assert_eq!(p0["name"], "net_null0");
    assert_eq!(p0["driver"], "net_null");
    assert_eq!(p0["link"]["up"], true);
    assert!(
        p0["xstats"]["rx_good_packets"].as_u64().unwrap() >= 96,
        "{p0:#}"
    );
    assert!(
        p1["xstats"]["tx_good_packets"].as_u64().unwrap() >= 96,
        "{p1:#}"
    );
    assert!(p1["stats"]["opackets"].as_u64().unwrap() >= 96);
    assert!(p0["offloads"]["rx_capable"].is_array());
    assert!(p0["offloads"]["tx_capable"].is_array());
    assert!(stats["version"].as_str().unwrap().starts_with("DPDK 22.11"));
    assert_eq!(
        stats["pools"].as_array().unwrap().len(),
        1,
        "one socket, one pool"
    );
    assert!(stats["pools"][0]["available"].as_u64().unwrap() > 0);
    let priv_size = stats["mbuf"]["meta_priv_size"].as_u64().unwrap() as usize;
    assert!(priv_size >= std::mem::size_of::<PacketMeta>() && priv_size.is_multiple_of(8));
}

#[test]
fn af_packet_on_loopback_sends_and_receives() {
    let _g = dpdk();
    let (mut ports, control) = open(&settings(), &[DeviceSpec::new("net_af_packet0")], 1, 1)
        .expect("net_af_packet0 (iface=lo)");
    assert_eq!(control.stats()["ports"][0]["driver"], "net_af_packet");
    let marker = frame(0xa5, 4242, 80);
    let mut burst: Burst<Mbuf> = Burst::new();
    burst.push(control.pool().alloc_with(&marker).unwrap());
    assert_eq!(ports[0].tx[0].tx_burst(&mut burst), 1);
    // lo carries other traffic too: look for our frame.
    let start = Instant::now();
    let mut found = false;
    while !found && start.elapsed() < Duration::from_secs(5) {
        let mut burst: Burst<Mbuf> = Burst::new();
        ports[0].rx[0].rx_burst(&mut burst, 32);
        found = burst.iter().any(|m| m.data() == &marker[..]);
    }
    assert!(
        found,
        "the frame sent on lo came back through the packet socket"
    );
}

#[test]
fn flow_steering_on_a_pmd_without_rte_flow_fails_naming_the_port() {
    let _g = dpdk();
    let mut dev = DeviceSpec::new("net_null2");
    dev.nat_steering = Some(NatSteering {
        addresses: vec!["198.51.100.7".parse().unwrap()],
        queue_ports: vec![
            NatPortRange {
                first: 1024,
                last: 33279,
            },
            NatPortRange {
                first: 33280,
                last: 65535,
            },
        ],
    });
    let flow = DpdkSettings {
        return_steering: ReturnSteering::Flow,
        ..settings()
    };
    let err = open(&flow, std::slice::from_ref(&dev), 2, 2)
        .err()
        .expect("net_null has no rte_flow");
    assert!(matches!(err, DpdkError::FlowUnsupported { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("`net_null2`") && msg.contains("return_steering = \"software\""),
        "{msg}"
    );
    // The failed open left nothing behind: the port opens again.
    let (_ports, control) = open(&settings(), &[dev], 2, 2).expect("software steering");
    assert_eq!(control.stats()["ports"][0]["flow_rules"], 0);
}

#[test]
fn setup_errors_name_the_problem() {
    let _g = dpdk();
    let err = open(&settings(), &[DeviceSpec::new("net_nope9")], 1, 1)
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, DpdkError::DeviceNotFound { .. }));
    assert!(
        msg.contains("net_nope9") && msg.contains("net_ring0") && msg.contains("--vdev"),
        "{msg}"
    );

    let err = open(&settings(), &[DeviceSpec::new("net_ring0")], 1000, 1)
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            DpdkError::TooManyQueues {
                dir: "RX",
                asked: 1000,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("net_ring0") && msg.contains("net_ring"),
        "{msg}"
    );

    let (_held, _c) = open(&settings(), &[DeviceSpec::new("net_ring0")], 1, 1).unwrap();
    let err = open(&settings(), &[DeviceSpec::new("net_ring0")], 1, 1)
        .err()
        .unwrap();
    assert!(matches!(err, DpdkError::DeviceBusy { .. }), "{err}");
    let err = open(
        &settings(),
        &[DeviceSpec::new("net_null1"), DeviceSpec::new("net_null1")],
        1,
        1,
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, DpdkError::DeviceBusy { .. }),
        "listed twice: {err}"
    );

    let mut other = settings();
    other.eal_args.push("--vdev=net_null7".into());
    let err = open(&other, &[DeviceSpec::new("net_null1")], 1, 1)
        .err()
        .unwrap();
    assert!(matches!(err, DpdkError::EalArgsChanged { .. }), "{err}");
    assert!(matches!(
        open(&settings(), &[], 1, 1).err().unwrap(),
        DpdkError::NoDevices
    ));
    assert!(matches!(
        open(&settings(), &[DeviceSpec::new("net_null1")], 0, 1)
            .err()
            .unwrap(),
        DpdkError::QueueCount { .. }
    ));
}

#[test]
fn worker_threads_get_their_own_lcore() {
    let _g = dpdk();
    let ids: Vec<u32> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                let first = register_thread().unwrap();
                let again = register_thread().unwrap();
                assert_eq!(
                    first.lcore_id(),
                    again.lcore_id(),
                    "registering twice keeps the id"
                );
                first.lcore_id()
            })
        })
        .map(|t| t.join().unwrap())
        .collect();
    assert!(
        ids.iter().all(|&id| id != 0 && id < 128),
        "lcore 0 is the EAL's main lcore: {ids:?}"
    );
    // Each thread gave its id back when it ended, so ids are reused rather
    // than used up.
    let later = std::thread::spawn(|| register_thread().unwrap().lcore_id())
        .join()
        .unwrap();
    assert!(ids.contains(&later), "{later} not reused from {ids:?}");
}

// ---- Mbuf semantics: the buffer contract HeapBuf's tests run too (pipelines::testing::bufs)

/// The mbuf pool under the buffer contract `pipelines::testing::bufs`.
struct Mbufs(MbufPool);

impl PoolUnderTest for Mbufs {
    type Buf = Mbuf;
    fn alloc(&self) -> Option<Mbuf> {
        BufPool::alloc(&self.0)
    }
    fn alloc_with(&self, frame: &[u8]) -> Option<Mbuf> {
        self.0.alloc_with(frame)
    }
    fn in_use(&self) -> usize {
        self.0.in_use()
    }
}

#[test]
fn mbuf_pool_is_bounded_and_recycles() {
    let _g = dpdk();
    check_pool_is_bounded_and_recycles(&Mbufs(create_pool(2, 0, -1).unwrap()));
}

#[test]
fn mbuf_prepend_adj_set_len_respect_bounds() {
    let _g = dpdk();
    check_prepend_adj_set_len_respect_bounds(&Mbufs(create_pool(1, 0, -1).unwrap()));
}

#[test]
fn mbuf_alloc_gives_default_meta_and_full_headroom() {
    let _g = dpdk();
    let pool = create_pool(1, 0, -1).unwrap();
    let mut m = pool.alloc().unwrap();
    m.meta_mut().race = 3;
    m.meta_mut().out_port = 5;
    assert!(m.prepend(10));
    drop(m);
    let m = pool.alloc().unwrap(); // the same mbuf again
    assert_eq!(m.meta().race, 0);
    assert_eq!(m.meta().out_port, 0);
    assert_eq!(m.data().len(), 0);
    assert_eq!(m.headroom(), HEADROOM);
    assert_eq!(m.tailroom(), DATA_ROOM);
}

#[test]
fn mbuf_clone_is_an_independent_writable_copy() {
    let _g = dpdk();
    let pool = create_pool(4, 0, -1).unwrap();
    let mut a = pool.alloc_with(&frame(3, 1, 100)).unwrap();
    assert!(a.prepend(4)); // a VLAN tag's room
    a.data_mut()[..4].copy_from_slice(&[1, 2, 3, 4]);
    a.meta_mut().shard = 5;
    a.meta_mut().flow.src_port = 4321;
    let mut c = a.try_clone().unwrap();
    assert_eq!(c.data(), a.data());
    assert_eq!(c.headroom(), a.headroom(), "same layout as the original");
    assert_eq!(c.meta().shard, 5);
    assert_eq!(c.meta().flow, a.meta().flow);
    assert_ne!(c.data().as_ptr(), a.data().as_ptr());

    let before = c.data().to_vec();
    a.data_mut()[10] ^= 0xff;
    a.meta_mut().shard = 6;
    assert!(a.adj(4));
    assert_eq!(
        c.data(),
        &before[..],
        "the clone does not see writes to the original"
    );
    assert_eq!(c.meta().shard, 5);
    c.data_mut()[20] ^= 0xff;
    c.meta_mut().uplink = 2;
    assert_ne!(a.data()[16], c.data()[20]);
    assert_eq!(a.meta().uplink, PacketMeta::default().uplink);
}

#[test]
fn mbuf_in_place_reads_agree_with_dpdk_accessors() {
    let _g = dpdk();
    let pool = create_pool(1, 0, -1).unwrap();
    let mut m = pool.alloc_with(&[7; 300]).unwrap();
    for step in 0..8 {
        match step {
            1 => assert!(m.prepend(18)),
            2 => assert!(m.adj(30)),
            3 => assert!(m.set_len(1500)),
            4 => assert!(m.set_len(60)),
            5 => assert!(!m.adj(61) && !m.prepend(m.headroom() + 1)),
            6 => assert!(!m.set_len(m.data().len() + m.tailroom() + 1)),
            7 => assert!(m.prepend(m.headroom()) && m.set_len(m.data().len() + m.tailroom())),
            _ => {}
        }
        let (addr, len, headroom, tailroom) = m.dpdk_view();
        assert_eq!(addr, m.data().as_ptr() as usize);
        assert_eq!(len, m.data().len());
        assert_eq!(
            m.pkt_len() as usize,
            len,
            "step {step}: pkt_len follows data_len"
        );
        assert_eq!(headroom, m.headroom());
        assert_eq!(tailroom, m.tailroom());
    }
}

#[derive(Clone, Debug)]
enum Op {
    Prepend(usize),
    Adj(usize),
    SetLen(usize),
    Write(usize, u8),
    Clone,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..300usize).prop_map(Op::Prepend),
        (0..300usize).prop_map(Op::Adj),
        (0..2400usize).prop_map(Op::SetLen),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Op::Write(i, v)),
        Just(Op::Clone),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Any sequence of operations gives the same answers and the same bytes
    /// on an Mbuf as on a HeapBuf.
    #[test]
    fn mbuf_behaves_like_heapbuf(start in proptest::collection::vec(any::<u8>(), 0..200),
                                 ops in proptest::collection::vec(op(), 0..40)) {
        let _g = dpdk();
        static POOLS: std::sync::OnceLock<(&'static HeapPool, MbufPool)> = std::sync::OnceLock::new();
        let (heap_pool, mbuf_pool) =
            *POOLS.get_or_init(|| (HeapPool::new_static(4), create_pool(4, 0, -1).unwrap()));
        let mut h = heap_pool.alloc_with(&start).unwrap();
        let mut m = mbuf_pool.alloc_with(&start).unwrap();
        for op in ops {
            match op {
                Op::Prepend(n) => {
                    let (a, b) = (h.prepend(n), m.prepend(n));
                    prop_assert_eq!(a, b);
                    // Bytes uncovered from the headroom are unspecified too.
                    if a {
                        let fill = h.data()[..n].to_vec();
                        m.data_mut()[..n].copy_from_slice(&fill);
                    }
                }
                Op::Adj(n) => prop_assert_eq!(h.adj(n), m.adj(n)),
                Op::SetLen(n) => {
                    let (a, b) = (h.set_len(n), m.set_len(n));
                    prop_assert_eq!(a, b);
                    // Extended bytes are unspecified: make them equal.
                    let len = h.data().len();
                    let fill = h.data().to_vec();
                    m.data_mut()[..len].copy_from_slice(&fill);
                }
                Op::Write(i, v) => {
                    if !h.data().is_empty() {
                        let i = i % h.data().len();
                        h.data_mut()[i] = v;
                        m.data_mut()[i] = v;
                    }
                }
                Op::Clone => {
                    h = h.try_clone().unwrap();
                    m = m.try_clone().unwrap();
                }
            }
            prop_assert_eq!(h.data(), m.data());
        }
    }
}
