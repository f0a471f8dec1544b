//! The port backends: opening each one's ports for the plan (sim, pcap,
//! af_packet, DPDK), and what the runtime keeps of the backend while it runs.

use std::sync::Arc;

use anyhow::anyhow;
#[cfg(feature = "dpdk")]
use pipelines::BufPool;
use pipelines::{HeapBuf, HeapPool, PacketBuf};

use crate::config::plan::Plan;
use crate::dataplane::assembly::heap_alloc;
use crate::dataplane::worker::Alloc;
use crate::ports::{BackendControl, PortQueues};

/// What the runtime keeps of its backend.
pub(crate) enum Backend {
    Sim(
        Option<Box<crate::ports::sim::SimSite>>,
        crate::ports::sim::SimHandle,
    ),
    /// Every other backend: only its control side stays here.
    Other(&'static str, Arc<dyn BackendControl>),
}

impl Backend {
    pub(crate) fn control(&self) -> &dyn BackendControl {
        match self {
            Backend::Sim(_, h) => h,
            Backend::Other(_, c) => &**c,
        }
    }

    /// The control side, shared with other threads (the stats reader).
    pub(crate) fn shared_control(&self) -> Arc<dyn BackendControl> {
        match self {
            Backend::Sim(_, h) => Arc::new(h.clone()),
            Backend::Other(_, c) => c.clone(),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::Sim(..) => "sim",
            Backend::Other(n, _) => n,
        }
    }

    /// Link state of each uplink's port, for the management core's thread.
    pub(crate) fn link_state(&self, plan: &Plan) -> Box<dyn Fn(usize) -> bool + Send> {
        let ports: Vec<usize> = plan
            .topology
            .uplinks
            .iter()
            .map(|u| usize::from(u.port))
            .collect();
        match self {
            Backend::Sim(_, h) => {
                let h = h.clone();
                Box::new(move |u| ports.get(u).is_none_or(|&p| h.link_up(p)))
            }
            Backend::Other(_, c) => {
                let c = c.clone();
                Box::new(move |u| ports.get(u).is_none_or(|&p| c.link_up(p)))
            }
        }
    }
}

/// Called first on every lcore thread; what it returns lives as long as the
/// thread's loop (DPDK: the thread's lcore registration, which gives it a
/// mempool cache).
pub(crate) type ThreadInit = Arc<dyn Fn() -> Box<dyn std::any::Any> + Send + Sync>;

/// A backend's ports, opened for the plan, ready for the lcores.
pub(crate) struct Opened<B: PacketBuf> {
    /// The plan, with the MACs the backend found for ports that omit one.
    pub plan: Plan,
    pub queues: Vec<PortQueues<B>>,
    pub backend: Backend,
    pub alloc: Alloc<B>,
    pub thread_init: Option<ThreadInit>,
}

impl Opened<HeapBuf> {
    /// Ports on heap buffers from `pool`, no per-thread initialisation.
    fn heap(
        plan: &Plan,
        queues: Vec<PortQueues<HeapBuf>>,
        backend: Backend,
        pool: &'static HeapPool,
    ) -> Self {
        Opened {
            plan: plan.clone(),
            queues,
            backend,
            alloc: heap_alloc(pool),
            thread_init: None,
        }
    }
}

/// The embedded simulated site (not started yet).
pub(crate) fn open_sim(plan: &Plan) -> anyhow::Result<Opened<HeapBuf>> {
    let pool = HeapPool::new_static(plan.pool_size);
    let (q, site) =
        crate::ports::sim::SimSite::open(plan, pool).map_err(|e| anyhow!("sim backend: {e}"))?;
    let h = site.handle();
    Ok(Opened::heap(
        plan,
        q,
        Backend::Sim(Some(Box::new(site)), h),
        pool,
    ))
}

pub(crate) fn open_pcap(plan: &Plan) -> anyhow::Result<Opened<HeapBuf>> {
    let pool = HeapPool::new_static(plan.pool_size);
    let (q, c) = crate::ports::pcap::open(plan, pool).map_err(|e| anyhow!("pcap backend: {e}"))?;
    Ok(Opened::heap(plan, q, Backend::Other("pcap", c), pool))
}

/// `appliance bench`'s generator and sinks in place of the plan's backend.
pub(crate) fn open_bench(
    plan: &Plan,
    flows: &crate::ports::bench::FlowSpec,
) -> anyhow::Result<(Opened<HeapBuf>, Arc<crate::ports::bench::BenchControl>)> {
    let pool = HeapPool::new_static(plan.pool_size);
    let (q, c) =
        crate::ports::bench::open(plan, pool, flows).map_err(|e| anyhow!("bench backend: {e}"))?;
    let backend = Backend::Other("bench", c.clone());
    Ok((Opened::heap(plan, q, backend, pool), c))
}

/// Ports the caller built (`backend = "external"`), answered for by `control`.
pub(crate) fn external(
    plan: &Plan,
    queues: Vec<PortQueues<HeapBuf>>,
    control: Arc<dyn BackendControl>,
) -> Opened<HeapBuf> {
    Opened::heap(
        plan,
        queues,
        Backend::Other("external", control),
        HeapPool::new_static(1024),
    )
}

/// The plan with the ports whose config omits `mac` given `macs[i]`.
fn with_port_macs(plan: &Plan, macs: &[[u8; 6]]) -> Plan {
    let mut plan = plan.clone();
    for (p, mac) in plan.ports.iter_mut().zip(macs) {
        if p.mac == [0; 6] {
            p.mac = *mac;
        }
    }
    let t = &plan.topology;
    let ports = t
        .ports
        .iter()
        .zip(&plan.ports)
        .map(|(info, p)| pipelines::topology::PortInfo {
            mac: p.mac,
            ..info.clone()
        })
        .collect();
    let mut topo = pipelines::Topology::new(
        ports,
        t.lan_port,
        t.lan_prefixes.clone(),
        t.lan_addrs.clone(),
        t.uplinks.clone(),
        t.nat_ports,
        t.shards,
    );
    topo.icmp = t.icmp;
    plan.topology = Arc::new(topo);
    let lock_time = plan.neighbours.lock_time();
    plan.neighbours = Arc::new(
        pipelines::neighbour::Neighbours::new(&plan.topology.uplinks).with_lock_time(lock_time),
    );
    plan
}

#[cfg(target_os = "linux")]
pub(crate) fn open_af_packet(plan: &Plan) -> anyhow::Result<Opened<HeapBuf>> {
    use crate::ports::linux::afpacket;
    let macs = afpacket::interface_macs(plan).map_err(|e| anyhow!("af-packet backend: {e}"))?;
    afpacket::check_mtus(plan).map_err(|e| anyhow!("af-packet backend: {e}"))?;
    let plan = with_port_macs(plan, &macs);
    let pool = HeapPool::new_static(plan.pool_size);
    let (q, c) = afpacket::open(&plan, pool).map_err(|e| anyhow!("af-packet backend: {e}"))?;
    Ok(Opened::heap(&plan, q, Backend::Other("af_packet", c), pool))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn open_af_packet(_: &Plan) -> anyhow::Result<Opened<HeapBuf>> {
    Err(anyhow!("the af-packet backend needs Linux"))
}

#[cfg(not(feature = "dpdk"))]
pub(crate) fn open_dpdk(_: &Plan) -> anyhow::Result<Opened<HeapBuf>> {
    Err(anyhow!(
        "backend = \"dpdk\" needs a build with the DPDK backend: cargo build --release --features dpdk (see the README's DPDK section)"
    ))
}

/// The EAL arguments for the plan's `[dpdk]` section: memory, vdevs, the
/// PCI allow-list (no PCI scan without one), a file prefix of this process
/// (several appliances on one host), then the operator's extra arguments.
#[cfg(feature = "dpdk")]
pub fn eal_args(d: &crate::config::DpdkConfig) -> Vec<String> {
    let mut a: Vec<String> = vec!["-l".into(), "0".into()];
    if d.hugepages {
        a.extend(["-m".into(), d.memory_mb.to_string()]);
    } else {
        a.extend(["--no-huge".into(), "-m".into(), d.memory_mb.to_string()]);
        a.push("--no-shconf".into());
    }
    a.extend([
        "--file-prefix".into(),
        format!("appliance-{}", std::process::id()),
    ]);
    for v in &d.vdevs {
        a.extend(["--vdev".into(), v.clone()]);
    }
    if d.allow.is_empty() {
        a.push("--no-pci".into());
    }
    for p in &d.allow {
        a.extend(["-a".into(), p.clone()]);
    }
    a.extend(d.eal_args.iter().cloned());
    a
}

#[cfg(feature = "dpdk")]
pub(crate) fn open_dpdk(plan: &Plan) -> anyhow::Result<Opened<crate::ports::dpdk::Mbuf>> {
    use crate::ports::dpdk::{
        open, register_thread, DeviceSpec, DpdkSettings, NatSteering, ReturnSteering,
    };
    let d = plan
        .dpdk
        .as_ref()
        .ok_or_else(|| anyhow!("dpdk backend without a [dpdk] plan"))?;
    let flow = d.return_steering == crate::config::ReturnSteering::Flow;
    let settings = DpdkSettings {
        eal_args: eal_args(d),
        mbufs_per_socket: d.mbufs_per_socket,
        mbuf_cache: d.mbuf_cache,
        rx_desc: d.rx_desc,
        tx_desc: d.tx_desc,
        return_steering: if flow {
            ReturnSteering::Flow
        } else {
            ReturnSteering::Software
        },
    };
    let t = &plan.topology;
    let devices: Vec<DeviceSpec> = plan
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let addresses: Vec<std::net::IpAddr> = t
                .uplinks
                .iter()
                .filter(|u| usize::from(u.port) == i)
                .flat_map(|u| u.nat_addrs.iter().copied())
                .collect();
            DeviceSpec {
                name: p.device.clone().unwrap_or_default(),
                mac: (p.mac != [0; 6]).then_some(p.mac),
                // Solicited-node multicast (ND) and frames for the
                // appliance's addresses on a shared segment.
                promiscuous: true,
                nat_steering: (flow && !addresses.is_empty()).then(|| NatSteering {
                    addresses,
                    queue_ports: (0..plan.rx_queues as u16)
                        .map(|q| t.shard_ports(q))
                        .collect(),
                }),
            }
        })
        .collect();
    let (queues, control) = open(&settings, &devices, plan.rx_queues, plan.tx_queues)
        .map_err(|e| anyhow!("dpdk backend: {e}"))?;
    for (i, p) in plan.ports.iter().enumerate() {
        // rte_eth_dev_get_mtu: the device's MTU, checked like af-packet's.
        if let Some(dev) = control.port_mtu(i) {
            if p.mtu > dev {
                return Err(anyhow!(
                    "dpdk backend: ports[{i}].mtu = {} is larger than the MTU of device `{}`, {dev}: lower ports[{i}].mtu to at most {dev} or raise the device's MTU",
                    p.mtu,
                    p.device.as_deref().unwrap_or("")
                ));
            }
        }
    }
    let macs: Vec<[u8; 6]> = (0..plan.ports.len())
        .map(|i| control.port_mac(i).unwrap_or([0; 6]))
        .collect();
    let plan = with_port_macs(plan, &macs);
    let pool = control.pool();
    let alloc: Alloc<crate::ports::dpdk::Mbuf> = Arc::new(move || pool.alloc());
    let init: ThreadInit = Arc::new(|| match register_thread() {
        Ok(r) => Box::new(r) as Box<dyn std::any::Any>,
        Err(e) => {
            eprintln!("warning: lcore thread without a DPDK lcore id (no mempool cache): {e}");
            Box::new(())
        }
    });
    Ok(Opened {
        plan,
        queues,
        backend: Backend::Other("dpdk", control),
        alloc,
        thread_init: Some(init),
    })
}
