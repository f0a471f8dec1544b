//! A traffic generator for `scripts/bench-forwarding.sh`: a DPDK process of
//! its own, on its own core, that owns the server side of a `net_memif`
//! vdev and fills it with UDP frames of N flows as fast as the other side
//! takes them. The forwarder under test (`dpdk-testpmd` io, or `appliance
//! run`) is the memif client in another process: its RX costs what a NIC
//! driver's would (a descriptor read, an mbuf, a copy), and the generator's
//! own cost runs on another core, so unlike `net_pcap` (`infinite_rx`
//! copies every frame on the forwarder's core) it does not cap the figure.
//!
//! ```sh
//! cargo bench --features dpdk --bench dpdk_gen -- --flows N --seconds S \
//!     [--cpu C] [--queues Q] [--socket PATH] [--huge]
//! ```
//!
//! Flows: UDP 10.h.h.h:port → 203.0.113.5:53, 60-byte frames to MAC
//! 02:00:00:00:00:01; at least 16 client hosts, at most 64 ports each
//! (`host_max_sessions`), visited in a shuffled order fixed at start (so a
//! million flows are not walked in table order); flow k goes to queue
//! k mod Q. Prints, at the end, the frames the client took, the rate, and
//! the generator's own cost per frame (mbuf allocation and template copy)
//! and idle share (spins on a full ring: headroom above the forwarder).

use std::time::{Duration, Instant};

use appliance::ports::dpdk::{open, register_thread, DeviceSpec, DpdkSettings, Mbuf};
use pipelines::{Burst, BURST_MAX};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// The template table of a million flows is 64 MB: on 2 MiB pages.
#[global_allocator]
static ALLOC: appliance::memory::HugeAlloc = appliance::memory::HugeAlloc;

const FRAME: usize = 60;
const SLOT: usize = 64;

struct Args {
    flows: usize,
    seconds: f64,
    cpu: usize,
    queues: usize,
    socket: String,
    huge: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        flows: 64,
        seconds: 10.0,
        cpu: 0,
        queues: 1,
        socket: "/tmp/appliance-gen.sock".into(),
        huge: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |what: &str| it.next().ok_or(format!("{arg} needs {what}"));
        match arg.as_str() {
            "--flows" => a.flows = val("a count")?.parse().map_err(|_| "--flows: a count")?,
            "--seconds" => {
                a.seconds = val("seconds")?.parse().map_err(|_| "--seconds: a number")?
            }
            "--cpu" => a.cpu = val("a CPU")?.parse().map_err(|_| "--cpu: a CPU number")?,
            "--queues" => a.queues = val("a count")?.parse().map_err(|_| "--queues: a count")?,
            "--socket" => a.socket = val("a path")?,
            "--huge" => a.huge = true,
            _ => {} // cargo bench passes --bench
        }
    }
    if a.flows == 0 || a.flows > 16 << 20 {
        return Err("--flows: 1..=16777216".into());
    }
    if a.queues == 0 || a.queues > 8 {
        return Err("--queues: 1..=8".into());
    }
    Ok(a)
}

fn csum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Flow `i` of `n`: host `i mod H`, source port 40000 + `i / H`, with
/// H = max(16, ceil(n / 64)) hosts.
fn frame(i: usize, n: usize) -> [u8; SLOT] {
    let hosts = n.div_ceil(64).max(16);
    let (h, p) = (i % hosts, (40_000 + i / hosts) as u16);
    let mut f = [0u8; SLOT];
    f[..14].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0xaa, 8, 0]);
    let ip = &mut f[14..34];
    ip[..12].copy_from_slice(&[0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0]);
    ip[12..16].copy_from_slice(&[10, 1 + (h >> 16) as u8, (h >> 8) as u8, h as u8]);
    ip[16..20].copy_from_slice(&[203, 0, 113, 5]);
    let c = csum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&p.to_be_bytes());
    f[36..38].copy_from_slice(&53u16.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    f[42..FRAME].fill(b'x');
    f
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("dpdk_gen: {e}");
        std::process::exit(2);
    });
    let mut order: Vec<usize> = (0..args.flows).collect();
    order.shuffle(&mut rand::rngs::SmallRng::seed_from_u64(7));
    let mut templates = vec![0u8; args.flows * SLOT];
    for (k, &i) in order.iter().enumerate() {
        templates[k * SLOT..(k + 1) * SLOT].copy_from_slice(&frame(i, args.flows));
    }
    drop(order);

    let mut eal: Vec<String> = Vec::new();
    if !args.huge {
        eal.extend(["--no-huge", "-m", "512", "--no-shconf"].map(String::from));
    }
    eal.extend([
        "--no-pci".into(),
        "--no-telemetry".into(),
        "--log-level".into(),
        "lib.eal:warning".into(),
        "--file-prefix".into(),
        format!("appl-gen-{}", std::process::id()),
        "-l".into(),
        args.cpu.to_string(),
        "--vdev".into(),
        format!(
            "net_memif0,role=server,id=0,socket={},socket-abstract=no",
            args.socket
        ),
    ]);
    let settings = DpdkSettings {
        eal_args: eal,
        mbufs_per_socket: 16_383,
        ..DpdkSettings::default()
    };
    let (mut ports, control) = open(
        &settings,
        &[DeviceSpec::new("net_memif0")],
        args.queues,
        args.queues,
    )
    .unwrap_or_else(|e| {
        eprintln!("dpdk_gen: {e}");
        std::process::exit(1);
    });
    if !core_affinity::set_for_current(core_affinity::CoreId { id: args.cpu }) {
        eprintln!("dpdk_gen: could not pin to CPU {}", args.cpu);
    }
    let _lcore = register_thread().unwrap_or_else(|e| {
        eprintln!("dpdk_gen: {e}");
        std::process::exit(1);
    });
    let pool = control.pool();
    let port = &mut ports[0];
    let mut pending: Vec<Burst<Mbuf>> = (0..args.queues).map(|_| Burst::new()).collect();
    let slots = args.flows;
    let (mut next, mut sent, mut made) = (0usize, 0u64, 0u64);
    let (mut filling, mut idle_polls, mut polls) = (Duration::ZERO, 0u64, 0u64);
    eprintln!(
        "dpdk_gen: {} flows on {} queue(s), CPU {}, waiting for the memif client on {}",
        args.flows, args.queues, args.cpu, args.socket
    );
    let end = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut started: Option<Instant> = None;
    while Instant::now() < end {
        for (q, burst) in pending.iter_mut().enumerate() {
            if burst.is_empty() {
                let t = Instant::now();
                while burst.len() < BURST_MAX {
                    let k = next;
                    next = if next + 1 == slots { 0 } else { next + 1 };
                    let Some(m) = pool.alloc_with(&templates[k * SLOT..k * SLOT + FRAME]) else {
                        break;
                    };
                    burst.push(m);
                }
                made += burst.len() as u64;
                filling += t.elapsed();
            }
            let n = port.tx[q].tx_burst(burst);
            polls += 1;
            if n == 0 {
                idle_polls += 1;
            } else if started.is_none() {
                started = Some(Instant::now());
            }
            sent += n as u64;
        }
    }
    let ran = started.map_or(Duration::ZERO, |s| s.elapsed());
    let mpps = sent as f64 / ran.as_secs_f64().max(1e-9) / 1e6;
    println!(
        "dpdk_gen: {} flows, {sent} frames taken by the client in {:.2} s: {mpps:.2} Mpps; own cost {:.1} ns/frame (mbuf + copy), {:.0} % of TX calls found the ring full",
        args.flows,
        ran.as_secs_f64(),
        filling.as_nanos() as f64 / made.max(1) as f64,
        100.0 * idle_polls as f64 / polls.max(1) as f64
    );
    println!("mpps: {mpps:.2}");
}
