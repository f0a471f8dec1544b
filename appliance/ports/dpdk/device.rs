//! Opening ports: find and claim every device, one mbuf pool per NUMA
//! socket, then configure, start and steer each port in order.

use std::sync::Arc;

use super::control::{format_mac, DpdkControl, PortState};
use super::eal::{create_pool, init_eal};
use super::queue::{port_queues, PortCounters};
use super::steering::{self, rss_functions, NatSteering, ReturnSteering};
use super::{describe, ffi, DpdkError, Mbuf, MbufPool};
use crate::ports::PortQueues;

/// Settings of the backend as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpdkSettings {
    /// EAL arguments, without a program name, e.g. `["--no-huge", "-m",
    /// "512", "--no-shconf", "--vdev", "net_null0", "-l", "0"]`.
    pub eal_args: Vec<String>,
    /// Mbufs in each NUMA socket's pool (best as 2^n - 1).
    pub mbufs_per_socket: u32,
    /// Per-lcore mempool cache size.
    pub mbuf_cache: u32,
    /// RX descriptors per queue (adjusted to the PMD's limits).
    pub rx_desc: u16,
    /// TX descriptors per queue (adjusted to the PMD's limits).
    pub tx_desc: u16,
    pub return_steering: ReturnSteering,
}

impl Default for DpdkSettings {
    fn default() -> Self {
        DpdkSettings {
            eal_args: Vec::new(),
            mbufs_per_socket: 32_767,
            mbuf_cache: 256,
            rx_desc: 1024,
            tx_desc: 1024,
            return_steering: ReturnSteering::Software,
        }
    }
}

/// One port to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The DPDK device name: a vdev name from the EAL arguments
    /// (`net_null0`) or a PCI address (`0000:3b:02.0`).
    pub name: String,
    /// MAC address to give the port; `None` keeps the device's own.
    pub mac: Option<[u8; 6]>,
    /// Receive frames for every MAC (labs, ports shared with other MACs).
    pub promiscuous: bool,
    /// NAT return steering for this port (uplink ports, Flow mode only).
    pub nat_steering: Option<NatSteering>,
}

impl DeviceSpec {
    /// A port by DPDK name, its own MAC, not promiscuous, no flow rules.
    pub fn new(name: impl Into<String>) -> Self {
        DeviceSpec {
            name: name.into(),
            mac: None,
            promiscuous: false,
            nat_steering: None,
        }
    }
}

/// What `open` learned about a device before setting it up.
struct Claimed {
    claim: ffi::PortClaim,
    info: ffi::DevInfo,
    driver: String,
    socket: i32,
}

/// Opens `devices` (in order: the index in `devices` is the port index the
/// appliance uses, written to `meta.in_port`), each with `rx_queues` RX and
/// `tx_queues` TX queues, initialising the EAL first if needed. Returns each
/// port's queues and the control. On error, nothing stays open.
pub fn open(
    settings: &DpdkSettings,
    devices: &[DeviceSpec],
    rx_queues: usize,
    tx_queues: usize,
) -> Result<(Vec<PortQueues<Mbuf>>, Arc<DpdkControl>), DpdkError> {
    if devices.is_empty() {
        return Err(DpdkError::NoDevices);
    }
    let (rxq, txq) = queue_counts(rx_queues, tx_queues)?;
    init_eal(&settings.eal_args)?;

    // Find, claim and inspect every device before touching any.
    let claimed = devices
        .iter()
        .map(|dev| claim(dev, rx_queues, tx_queues))
        .collect::<Result<Vec<_>, _>>()?;
    let pools = socket_pools(settings, &claimed)?;
    // MBUF_FAST_FREE needs every mbuf a TX queue frees to come from one pool.
    let single_pool = pools.len() == 1;

    let mut queues = Vec::with_capacity(devices.len());
    let mut ports = Vec::with_capacity(devices.len());
    for (index, (dev, c)) in devices.iter().zip(claimed).enumerate() {
        let pool = pools
            .iter()
            .find(|(s, _)| *s == c.socket)
            .map(|(_, p)| *p)
            .unwrap_or(pools[0].1);
        let conf = port_conf(settings, &c, rxq, txq, single_pool);
        let (port, q) = bring_up(settings, dev, c, index as u16, conf, pool)?;
        queues.push(q);
        ports.push(port);
    }
    let control = DpdkControl {
        ports,
        pools,
        return_steering: settings.return_steering,
    };
    Ok((queues, Arc::new(control)))
}

/// The queue counts as DPDK takes them: each between 1 and `u16::MAX`.
fn queue_counts(rx_queues: usize, tx_queues: usize) -> Result<(u16, u16), DpdkError> {
    let max_queues = usize::from(u16::MAX);
    for (what, got) in [("rx_queues", rx_queues), ("tx_queues", tx_queues)] {
        if got == 0 || got > max_queues {
            return Err(DpdkError::QueueCount {
                what,
                got,
                max: max_queues,
            });
        }
    }
    Ok((rx_queues as u16, tx_queues as u16))
}

/// Finds `dev`, claims it and reads what it offers; fails if it cannot have
/// the queues asked for.
fn claim(dev: &DeviceSpec, rx_queues: usize, tx_queues: usize) -> Result<Claimed, DpdkError> {
    let Some(port_id) = ffi::port_by_name(&dev.name) else {
        return Err(DpdkError::DeviceNotFound {
            name: dev.name.clone(),
            known: ffi::port_names().join(", "),
        });
    };
    let claim = ffi::PortClaim::acquire(port_id).ok_or_else(|| DpdkError::DeviceBusy {
        name: dev.name.clone(),
    })?;
    let info = claim.dev_info().map_err(|code| DpdkError::DeviceInfo {
        name: dev.name.clone(),
        reason: describe(code),
    })?;
    let driver = info.driver();
    for (dir, asked, max) in [
        ("RX", rx_queues, info.max_rx_queues),
        ("TX", tx_queues, info.max_tx_queues),
    ] {
        if asked > usize::from(max) {
            return Err(DpdkError::TooManyQueues {
                name: dev.name.clone(),
                driver,
                dir,
                asked,
                max,
            });
        }
    }
    let socket = info.socket_id.max(-1);
    Ok(Claimed {
        claim,
        info,
        driver,
        socket,
    })
}

/// One pool per NUMA socket in use, in the order the devices first use them.
fn socket_pools(
    settings: &DpdkSettings,
    claimed: &[Claimed],
) -> Result<Vec<(i32, MbufPool)>, DpdkError> {
    let mut pools: Vec<(i32, MbufPool)> = Vec::new();
    for c in claimed {
        if !pools.iter().any(|(s, _)| *s == c.socket) {
            let pool = create_pool(settings.mbufs_per_socket, settings.mbuf_cache, c.socket)?;
            pools.push((c.socket, pool));
        }
    }
    Ok(pools)
}

/// The configuration of a claimed device: the queues and descriptors asked
/// for, RSS and RX checksum offloads as far as offered, and MBUF_FAST_FREE
/// when every mbuf comes from one pool.
fn port_conf(
    settings: &DpdkSettings,
    c: &Claimed,
    rxq: u16,
    txq: u16,
    single_pool: bool,
) -> ffi::PortConf {
    let info = &c.info;
    let mut conf = ffi::PortConf {
        rx_queues: rxq,
        tx_queues: txq,
        rx_desc: settings.rx_desc,
        tx_desc: settings.tx_desc,
        socket_id: c.socket,
        rss_hf: rss_functions(rxq, info.flow_type_rss_offloads),
        rx_offloads: info.rx_offload_capa
            & (ffi::RX_OFFLOAD_IPV4_CKSUM | ffi::RX_OFFLOAD_TCP_CKSUM | ffi::RX_OFFLOAD_UDP_CKSUM),
        ..ffi::PortConf::default()
    };
    if single_pool {
        conf.tx_offloads |= info.tx_offload_capa & ffi::TX_OFFLOAD_MBUF_FAST_FREE;
    }
    conf
}

/// Configures, starts and (in Flow mode) steers one claimed device as port
/// `index`; returns its control state and its queues.
fn bring_up(
    settings: &DpdkSettings,
    dev: &DeviceSpec,
    c: Claimed,
    index: u16,
    conf: ffi::PortConf,
    pool: MbufPool,
) -> Result<(PortState, PortQueues<Mbuf>), DpdkError> {
    let Claimed {
        mut claim,
        info,
        driver,
        socket,
    } = c;
    configure(&mut claim, dev, &driver, &conf, pool)?;
    let (running, rx, tx) = claim
        .start(index)
        .map_err(|(_, code)| DpdkError::PortSetup {
            name: dev.name.clone(),
            driver: driver.clone(),
            step: "rte_eth_dev_start",
            queue: String::new(),
            reason: describe(code),
        })?;
    let mut flow_rules = 0;
    if settings.return_steering == ReturnSteering::Flow {
        if let Some(steer) = &dev.nat_steering {
            flow_rules = steering::install(&running, steer, conf.rx_queues, &dev.name, &driver)?;
        }
    }
    let mac = running.mac().unwrap_or(dev.mac.unwrap_or_default());
    let counters = Arc::new(PortCounters::new(usize::from(conf.rx_queues)));
    let queues = port_queues(rx, tx, &counters);
    let port = PortState {
        name: dev.name.clone(),
        driver,
        socket,
        running,
        info,
        conf,
        mac,
        pool,
        flow_rules,
        counters,
    };
    Ok((port, queues))
}

/// Sets up the queues of a claimed, stopped device, then its MAC address
/// and promiscuous mode if asked.
fn configure(
    claim: &mut ffi::PortClaim,
    dev: &DeviceSpec,
    driver: &str,
    conf: &ffi::PortConf,
    pool: MbufPool,
) -> Result<(), DpdkError> {
    claim.setup(conf, pool).map_err(|f| DpdkError::PortSetup {
        name: dev.name.clone(),
        driver: driver.to_owned(),
        step: f.step,
        queue: f.queue.map(|q| format!(" (queue {q})")).unwrap_or_default(),
        reason: describe(f.code),
    })?;
    if let Some(mac) = dev.mac {
        claim.set_mac(mac).map_err(|code| DpdkError::MacSet {
            name: dev.name.clone(),
            mac: format_mac(mac),
            reason: describe(code),
        })?;
    }
    if dev.promiscuous {
        claim
            .enable_promiscuous()
            .map_err(|code| DpdkError::Promiscuous {
                name: dev.name.clone(),
                reason: describe(code),
            })?;
    }
    Ok(())
}
