//! The DPDK backend's raw I/O ceiling: our RX → TX loop over two `net_null`
//! vdevs through the public queue API (`RxQueue<Mbuf>` / `TxQueue<Mbuf>`,
//! so the shim, the mbuf wrapping and the metadata written at RX are all
//! paid), forwarding like `dpdk-testpmd --forward-mode=io` on one core: port
//! 0 → port 1 and port 1 → port 0. `scripts/bench-dpdk.sh` runs it beside
//! testpmd and prints the ratio.
//!
//! ```sh
//! cargo bench --features dpdk --bench dpdk_io -- [--seconds N] [--cpu C] [--huge]
//! ```
//! Prints a summary and a last line `mpps: X.XX`.

use std::time::{Duration, Instant};

use appliance::ports::dpdk::{open, register_thread, DeviceSpec, DpdkSettings, Mbuf};
use appliance::ports::PortQueues;
use pipelines::{Burst, BURST_MAX};

struct Args {
    seconds: f64,
    cpu: usize,
    huge: bool,
}

fn parse_args() -> Result<Args, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = Args {
        seconds: 5.0,
        cpu: cpus - 1,
        huge: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                args.seconds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--seconds needs a number")?
            }
            "--cpu" => {
                args.cpu = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--cpu needs a CPU number")?
            }
            "--huge" => args.huge = true,
            // cargo bench passes --bench; criterion-style filters are ignored.
            _ => {}
        }
    }
    Ok(args)
}

/// One testpmd-style io forwarding step: a burst from `from`'s RX queue to
/// `to`'s TX queue; what TX refuses is counted and freed.
#[inline]
fn forward(
    from: &mut PortQueues<Mbuf>,
    to: &mut PortQueues<Mbuf>,
    fwd: &mut u64,
    refused: &mut u64,
) {
    let mut burst: Burst<Mbuf> = Burst::new();
    if from.rx[0].rx_burst(&mut burst, BURST_MAX) == 0 {
        return;
    }
    *fwd += to.tx[0].tx_burst(&mut burst) as u64;
    *refused += burst.len() as u64;
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dpdk_io: {e}");
            std::process::exit(2);
        }
    };
    let mut eal: Vec<String> = Vec::new();
    if !args.huge {
        eal.extend(["--no-huge", "-m", "512"].map(String::from));
    }
    eal.extend(
        [
            "--no-shconf",
            "--no-pci",
            "--no-telemetry",
            "--log-level",
            "lib.eal:warning",
            "-l",
            &args.cpu.to_string(),
            "--vdev",
            "net_null0",
            "--vdev",
            "net_null1",
        ]
        .map(String::from),
    );
    let settings = DpdkSettings {
        eal_args: eal,
        mbufs_per_socket: 32_767,
        ..DpdkSettings::default()
    };
    let devices = [DeviceSpec::new("net_null0"), DeviceSpec::new("net_null1")];
    let (mut ports, _control) = match open(&settings, &devices, 1, 1) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("dpdk_io: {e}");
            std::process::exit(1);
        }
    };
    // The EAL leaves this thread's affinity alone: pin it like testpmd's
    // forwarding lcore, and give it an lcore id (mempool cache).
    if !core_affinity::set_for_current(core_affinity::CoreId { id: args.cpu }) {
        eprintln!("dpdk_io: could not pin to CPU {}", args.cpu);
    }
    let lcore = register_thread().unwrap_or_else(|e| {
        eprintln!("dpdk_io: {e}");
        std::process::exit(1);
    });

    let (left, right) = ports.split_at_mut(1);
    let (p0, p1) = (&mut left[0], &mut right[0]);
    let mut run = |dur: Duration| -> (u64, u64, Duration) {
        let (mut forwarded, mut refused) = (0u64, 0u64);
        let start = Instant::now();
        loop {
            for _ in 0..1024 {
                forward(p0, p1, &mut forwarded, &mut refused);
                forward(p1, p0, &mut forwarded, &mut refused);
            }
            let elapsed = start.elapsed();
            if elapsed >= dur {
                return (forwarded, refused, elapsed);
            }
        }
    };
    run(Duration::from_millis(500)); // warm-up: caches, mempool caches
    let (forwarded, refused, elapsed) = run(Duration::from_secs_f64(args.seconds));
    let mpps = forwarded as f64 / elapsed.as_secs_f64() / 1e6;
    println!(
        "dpdk_io: rx->tx over 2 x net_null, 1 core (CPU {}, lcore {}, {}): \
         {forwarded} packets in {:.2} s, tx refused {refused}, {:.1} ns/packet",
        args.cpu,
        lcore.lcore_id(),
        if args.huge { "hugepages" } else { "--no-huge" },
        elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / forwarded.max(1) as f64,
    );
    println!("mpps: {mpps:.2}");
}
