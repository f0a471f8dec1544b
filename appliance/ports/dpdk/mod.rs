//! DPDK port backend (cargo feature `dpdk`): real NICs and SR-IOV VFs in
//! production, `net_null` / `net_ring` / `net_af_packet` / `net_tap` vdevs in
//! labs and CI, through a thin FFI of our own over the system DPDK 22.11 LTS.
//!
//! What it owns and promises:
//! - The EAL is initialised once per process, by the first [`open`] (or
//!   [`init_eal`]), with [`DpdkSettings::eal_args`]; later calls must pass the
//!   same arguments. The PMDs are plugins the EAL loads from its default
//!   directory. The calling thread's CPU affinity is left as it was (the
//!   runtime pins its own lcores); threads that poll queues should call
//!   [`register_thread`] once so they get an lcore id and a mempool cache.
//! - One mbuf pool per NUMA socket, shared by the ports on that socket. Each
//!   mbuf carries the packet's [`PacketMeta`](pipelines::PacketMeta) in its
//!   private area ([`Mbuf`] is a zero-copy [`PacketBuf`](pipelines::PacketBuf)).
//! - Each port gets `rx_queues` RX and `tx_queues` TX queues, one handle per
//!   queue; asking for more than the PMD offers is an error naming the port.
//!   With several RX queues, RSS on IP/TCP/UDP is enabled when the PMD offers
//!   it (reported in the stats; net_ring offers none, so its queues are
//!   independent rings).
//! - Checksums: RX IPv4/TCP/UDP checksum offload is enabled where offered,
//!   and every packet the PMD marks bad is dropped at RX and counted
//!   (`rx_dropped` in the stats). TX checksum offload is not used: the stages
//!   update checksums incrementally (RFC 1624), so there is nothing for the
//!   NIC to compute; the capabilities are reported in the stats.
//! - Return traffic: with [`ReturnSteering::Flow`], rte_flow rules steer TCP
//!   and UDP to each NAT address and a queue's NAT port slice to that RX
//!   queue. Every rule is validated before any is installed; a PMD that
//!   cannot do it fails [`open`] with an error naming the port. Other
//!   inbound traffic (ICMP, fragments) still arrives by RSS and is handed to
//!   its shard in software.
//! - A port stays started while its [`DpdkControl`] or any of its queues
//!   lives; then its flow rules are flushed and it is stopped (not closed,
//!   so it can be opened again). A port can be opened by one owner at a time.

mod ffi;
mod mbuf;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use pipelines::topology::NatPortRange;
use pipelines::Counter;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{BackendControl, PortQueues, RxQueue, TxQueue};
pub use mbuf::{Mbuf, MbufPool, META_PRIV_SIZE};

/// Offload flag an RX PMD sets on a packet whose IPv4 header checksum is
/// bad (`RTE_MBUF_F_RX_IP_CKSUM_BAD`, under `RX_IP_CKSUM_MASK`).
pub const RX_IP_CKSUM_BAD: u64 = ffi::RX_IP_CKSUM_BAD;
/// Offload flag for a bad TCP/UDP checksum (`RTE_MBUF_F_RX_L4_CKSUM_BAD`).
pub const RX_L4_CKSUM_BAD: u64 = ffi::RX_L4_CKSUM_BAD;

/// How inbound (uplink → LAN) packets reach the shard that owns their NAT
/// port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReturnSteering {
    /// RSS spreads packets; the runtime's hand-off rings carry each to its
    /// shard.
    #[default]
    Software,
    /// rte_flow rules put each shard's NAT ports on its own RX queue.
    Flow,
}

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

/// Which NAT traffic a port's RX queues receive under
/// [`ReturnSteering::Flow`]: TCP and UDP to any of `addresses` whose
/// destination port lies in `queue_ports[q]` go to RX queue `q`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatSteering {
    pub addresses: Vec<IpAddr>,
    /// One NAT port slice per RX queue, in queue order (the shard that
    /// polls queue `q` owns `queue_ports[q]`, see `Topology::shard_ports`).
    pub queue_ports: Vec<NatPortRange>,
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

/// Why the DPDK backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error("DPDK EAL initialisation failed with arguments `{args}`: {reason}; check the arguments, run as root, and without hugepages pass `--no-huge -m 512`")]
    EalInit { args: String, reason: String },
    #[error("DPDK EAL is already initialised with `{first}`, and the EAL starts once per process; open every port with the same EAL arguments (got `{now}`)")]
    EalArgsChanged { first: String, now: String },
    #[error("DPDK EAL is not initialised; call `open` or `init_eal` first")]
    EalNotReady,
    #[error("no ports to open; give at least one device")]
    NoDevices,
    #[error("{what} must be between 1 and {max}, got {got}")]
    QueueCount {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("DPDK port `{name}` does not exist; ports are: [{known}]; add `--vdev {name}` (virtual device) or `-a {name}` (PCI address, bound to vfio-pci) to the EAL arguments")]
    DeviceNotFound { name: String, known: String },
    #[error("DPDK port `{name}` is already open (listed twice, or opened by an earlier `open` that is still alive)")]
    DeviceBusy { name: String },
    #[error("DPDK port `{name}`: cannot read device info: {reason}")]
    DeviceInfo { name: String, reason: String },
    #[error("DPDK port `{name}` ({driver}) offers at most {max} {dir} queues, {asked} asked; use fewer lcores/queues or a device with more queues")]
    TooManyQueues {
        name: String,
        driver: String,
        dir: &'static str,
        asked: usize,
        max: u16,
    },
    #[error("cannot create the mbuf pool `{pool}` ({mbufs} mbufs) on NUMA socket {socket}: {reason}; lower mbufs_per_socket or give the EAL more memory (-m, hugepages)")]
    PoolCreate {
        pool: String,
        mbufs: u32,
        socket: i32,
        reason: String,
    },
    #[error("DPDK port `{name}` ({driver}): {step}{queue} failed: {reason}")]
    PortSetup {
        name: String,
        driver: String,
        step: &'static str,
        queue: String,
        reason: String,
    },
    #[error("DPDK port `{name}`: cannot set MAC address {mac}: {reason}")]
    MacSet {
        name: String,
        mac: String,
        reason: String,
    },
    #[error("DPDK port `{name}`: cannot enable promiscuous mode: {reason}")]
    Promiscuous { name: String, reason: String },
    #[error("DPDK port `{name}` ({driver}) cannot steer NAT return traffic with rte_flow: {reason}; set return_steering = \"software\" for this site")]
    FlowUnsupported {
        name: String,
        driver: String,
        reason: String,
    },
    #[error("DPDK port `{name}`: NAT steering is wrong: {reason}")]
    FlowSteeringInvalid { name: String, reason: String },
    #[error("cannot register this thread with DPDK: {reason}; the EAL has at most 128 lcores, including those of its `-l` argument")]
    ThreadRegister { reason: String },
}

fn describe(code: i32) -> String {
    format!("{} (errno {})", ffi::strerror(code), code.saturating_abs())
}

/// Initialises the EAL with `args` if it is not up yet (once per process);
/// fails if it is already up with other arguments.
pub fn init_eal(args: &[String]) -> Result<(), DpdkError> {
    ffi::eal_init(args).map_err(|e| match e {
        ffi::EalFailure::Failed(reason) => DpdkError::EalInit {
            args: args.join(" "),
            reason,
        },
        ffi::EalFailure::ArgsDiffer(first) => DpdkError::EalArgsChanged {
            first: first.join(" "),
            now: args.join(" "),
        },
    })
}

/// A thread's DPDK lcore id, from [`register_thread`]. Dropping it gives
/// the id back if `register_thread` took one for this thread; it must be
/// dropped on that thread, hence not `Send`.
#[derive(Debug)]
pub struct LcoreRegistration {
    id: u32,
    registered: bool,
    _same_thread: std::marker::PhantomData<*const ()>,
}

impl LcoreRegistration {
    /// The thread's DPDK lcore id.
    pub fn lcore_id(&self) -> u32 {
        self.id
    }
}

impl Drop for LcoreRegistration {
    fn drop(&mut self) {
        if self.registered {
            ffi::unregister_thread();
        }
    }
}

/// Gives the calling thread a DPDK lcore id, so its mbuf allocations and
/// frees use a per-lcore mempool cache instead of the shared ring. Call once
/// at the start of each thread that polls queues or allocates mbufs, and
/// keep the registration for the thread's life (lcore ids are limited: 128
/// including the EAL's `-l` lcores). A thread that already has an id (the
/// EAL's main thread) keeps it.
pub fn register_thread() -> Result<LcoreRegistration, DpdkError> {
    if !ffi::eal_ready() {
        return Err(DpdkError::EalNotReady);
    }
    let (id, registered) = ffi::register_thread().map_err(|code| DpdkError::ThreadRegister {
        reason: describe(code),
    })?;
    Ok(LcoreRegistration {
        id,
        registered,
        _same_thread: std::marker::PhantomData,
    })
}

/// The DPDK release linked, e.g. "DPDK 22.11.11".
pub fn dpdk_version() -> String {
    ffi::version()
}

/// Names of every DPDK port the EAL found (the EAL must be up).
pub fn port_names() -> Vec<String> {
    if !ffi::eal_ready() {
        return Vec::new();
    }
    ffi::port_names()
}

static POOL_SEQ: AtomicU32 = AtomicU32::new(0);

/// Creates an mbuf pool suited to [`Mbuf`] (private area for the packet
/// metadata, the same headroom and data room as a `HeapBuf`) on NUMA socket
/// `socket` (`-1`: any). Pools live until the process exits. `open` makes
/// its own; this is for tests, benches and special pools.
pub fn create_pool(mbufs: u32, cache: u32, socket: i32) -> Result<MbufPool, DpdkError> {
    if !ffi::eal_ready() {
        return Err(DpdkError::EalNotReady);
    }
    let seq = POOL_SEQ.fetch_add(1, Ordering::Relaxed);
    let name = if socket < 0 {
        format!("appl_mb{seq}_any")
    } else {
        format!("appl_mb{seq}_s{socket}")
    };
    MbufPool::create(&name, mbufs, cache, socket).map_err(|code| DpdkError::PoolCreate {
        pool: name,
        mbufs,
        socket,
        reason: describe(code),
    })
}

/// Counters only the backend sees, one set per RX queue (its single writer).
#[derive(Default)]
struct RxQueueCounters {
    ip_checksum_bad: Counter,
    l4_checksum_bad: Counter,
    multi_segment: Counter,
    foreign_pool: Counter,
}

struct PortCounters {
    rx: Vec<RxQueueCounters>,
}

impl PortCounters {
    fn json(&self) -> Value {
        let sum = |f: fn(&RxQueueCounters) -> &Counter| -> u64 {
            self.rx.iter().map(|q| f(q).get()).sum()
        };
        json!({
            "ip_checksum_bad": sum(|q| &q.ip_checksum_bad),
            "l4_checksum_bad": sum(|q| &q.l4_checksum_bad),
            "multi_segment": sum(|q| &q.multi_segment),
            "foreign_pool": sum(|q| &q.foreign_pool),
        })
    }
}

struct DpdkRx {
    handle: mbuf::RxHandle,
    counters: Arc<PortCounters>,
    queue: usize,
}

impl RxQueue<Mbuf> for DpdkRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut pipelines::Burst<Mbuf>, max: usize) -> usize {
        let o = self.handle.rx_burst(out, max);
        if o.dropped() != 0 {
            if let Some(c) = self.counters.rx.get(self.queue) {
                c.ip_checksum_bad.add(u64::from(o.ip_checksum_bad));
                c.l4_checksum_bad.add(u64::from(o.l4_checksum_bad));
                c.multi_segment.add(u64::from(o.multi_segment));
                c.foreign_pool.add(u64::from(o.foreign_pool));
            }
        }
        o.delivered
    }
}

struct DpdkTx {
    handle: mbuf::TxHandle,
}

impl TxQueue<Mbuf> for DpdkTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut pipelines::Burst<Mbuf>) -> usize {
        self.handle.tx_burst(pkts)
    }
}

/// Link state of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

struct PortState {
    name: String,
    driver: String,
    socket: i32,
    running: Arc<ffi::RunningPort>,
    info: ffi::DevInfo,
    conf: ffi::PortConf,
    mac: [u8; 6],
    pool: MbufPool,
    flow_rules: usize,
    counters: Arc<PortCounters>,
}

/// The backend's control side: stats, link state, MACs, and the pools for
/// packets the appliance originates.
pub struct DpdkControl {
    ports: Vec<PortState>,
    pools: Vec<(i32, MbufPool)>,
    return_steering: ReturnSteering,
}

impl DpdkControl {
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }

    /// The MAC address port `port` (the appliance's index) uses.
    pub fn port_mac(&self, port: usize) -> Option<[u8; 6]> {
        self.ports.get(port).map(|p| p.mac)
    }

    /// The DPDK port id of port `port`.
    pub fn dpdk_port_id(&self, port: usize) -> Option<u16> {
        self.ports.get(port).map(|p| p.running.port_id())
    }

    /// The pool of the NUMA socket port `port` sits on: where packets sent
    /// out of that port are best allocated.
    pub fn port_pool(&self, port: usize) -> Option<MbufPool> {
        self.ports.get(port).map(|p| p.pool)
    }

    /// The pool of the first port's socket, for packets the appliance
    /// originates (ARP replies, RSTs).
    pub fn pool(&self) -> MbufPool {
        // `open` refuses an empty device list, so there is a first port.
        self.pools[0].1
    }

    /// Link state of port `port`, read without waiting.
    pub fn link(&self, port: usize) -> Option<LinkStatus> {
        let link = self.ports.get(port)?.running.link().ok()?;
        Some(LinkStatus {
            up: link.up != 0,
            speed_mbps: link.speed_mbps,
            full_duplex: link.full_duplex != 0,
        })
    }

    fn port_json(&self, index: usize, p: &PortState) -> Value {
        let link = self.link(index);
        let basic = p.running.stats().ok();
        let xstats: Map<String, Value> = p
            .running
            .xstats()
            .map(|v| v.into_iter().map(|(k, n)| (k, json!(n))).collect())
            .unwrap_or_default();
        json!({
            "name": p.name,
            "dpdk_port": p.running.port_id(),
            "driver": p.driver,
            "socket": p.socket,
            "mac": format_mac(p.mac),
            "link": link.map(|l| json!({"up": l.up, "speed_mbps": l.speed_mbps, "full_duplex": l.full_duplex})),
            "rx_queues": p.conf.rx_queues,
            "tx_queues": p.conf.tx_queues,
            "rss": {
                "enabled": p.conf.rss_hf != 0,
                "hash_functions": format!("{:#x}", p.conf.rss_hf),
                "offered": format!("{:#x}", p.info.flow_type_rss_offloads),
            },
            "offloads": {
                "rx_capable": ffi::offload_names(p.info.rx_offload_capa, true),
                "tx_capable": ffi::offload_names(p.info.tx_offload_capa, false),
                "rx_enabled": ffi::offload_names(p.conf.rx_offloads, true),
                "tx_enabled": ffi::offload_names(p.conf.tx_offloads, false),
            },
            "flow_rules": p.flow_rules,
            "stats": basic.map(|s| json!({
                "ipackets": s.ipackets, "opackets": s.opackets,
                "ibytes": s.ibytes, "obytes": s.obytes,
                "imissed": s.imissed, "ierrors": s.ierrors, "oerrors": s.oerrors,
                "rx_nombuf": s.rx_nombuf,
            })),
            "rx_dropped": p.counters.json(),
            "xstats": xstats,
        })
    }
}

impl BackendControl for DpdkControl {
    fn stats(&self) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| self.port_json(i, p))
            .collect();
        let pools: Vec<Value> = self
            .pools
            .iter()
            .map(|(socket, pool)| {
                json!({
                    "socket": socket,
                    "name": pool.name(),
                    "available": pool.available(),
                    "in_use": pool.in_use(),
                })
            })
            .collect();
        json!({
            "version": ffi::version(),
            "eal_args": ffi::eal_args().unwrap_or_default(),
            "return_steering": match self.return_steering {
                ReturnSteering::Software => "software",
                ReturnSteering::Flow => "flow",
            },
            "pools": pools,
            "mbuf": {
                "headroom": pipelines::packet::buf::HEADROOM,
                "data_room": pipelines::packet::buf::DATA_ROOM,
                "meta_priv_size": META_PRIV_SIZE,
            },
            "ports": ports,
        })
    }

    fn link_up(&self, port: usize) -> bool {
        self.link(port).is_some_and(|l| l.up)
    }
}

fn format_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// The RSS hash functions to ask for: IP, TCP and UDP as far as the PMD
/// offers them, and none with one RX queue.
fn rss_functions(rx_queues: u16, offered: u64) -> u64 {
    if rx_queues > 1 {
        (ffi::RSS_IP | ffi::RSS_TCP | ffi::RSS_UDP) & offered
    } else {
        0
    }
}

/// Splits the port range `first..=last` into disjoint (value, mask) blocks
/// that cover it exactly: a port `p` is in the range iff `p & mask == value`
/// for one block. rte_flow matches masks, not ranges, and the shards' slices
/// are contiguous but not aligned.
fn port_blocks(first: u16, last: u16) -> Vec<(u16, u16)> {
    let mut blocks = Vec::new();
    let (mut lo, hi) = (u32::from(first), u32::from(last));
    while lo <= hi {
        let mut size: u32 = if lo == 0 {
            1 << 16
        } else {
            1 << lo.trailing_zeros()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        blocks.push((lo as u16, (!(size - 1) & 0xffff) as u16));
        lo += size;
    }
    blocks
}

/// The flow rules steering `steer` on a port with `rx_queues` RX queues.
fn steering_rules(steer: &NatSteering, rx_queues: u16) -> Result<Vec<ffi::FlowRule>, String> {
    if steer.addresses.is_empty() {
        return Err("no NAT addresses to steer".into());
    }
    if steer.queue_ports.len() > usize::from(rx_queues) {
        return Err(format!(
            "{} port slices for {} RX queues",
            steer.queue_ports.len(),
            rx_queues
        ));
    }
    let mut rules = Vec::new();
    for (q, range) in steer.queue_ports.iter().enumerate() {
        if range.first > range.last {
            return Err(format!(
                "queue {q}: port slice {}..={} is empty",
                range.first, range.last
            ));
        }
        for &addr in &steer.addresses {
            for proto in [6u8, 17] {
                for (value, mask) in port_blocks(range.first, range.last) {
                    rules.push(ffi::FlowRule::new(addr, proto, value, mask, q as u16));
                }
            }
        }
    }
    Ok(rules)
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
    let (rxq, txq) = (rx_queues as u16, tx_queues as u16);
    init_eal(&settings.eal_args)?;

    // Find, claim and inspect every device before touching any.
    let mut claimed = Vec::with_capacity(devices.len());
    for dev in devices {
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
        claimed.push(Claimed {
            claim,
            info,
            driver,
            socket,
        });
    }

    // One pool per NUMA socket in use.
    let mut pools: Vec<(i32, MbufPool)> = Vec::new();
    for c in &claimed {
        if !pools.iter().any(|(s, _)| *s == c.socket) {
            let pool = create_pool(settings.mbufs_per_socket, settings.mbuf_cache, c.socket)?;
            pools.push((c.socket, pool));
        }
    }
    // MBUF_FAST_FREE needs every mbuf a TX queue frees to come from one pool.
    let single_pool = pools.len() == 1;

    let mut queues = Vec::with_capacity(devices.len());
    let mut ports = Vec::with_capacity(devices.len());
    for (index, (dev, c)) in devices.iter().zip(claimed).enumerate() {
        let Claimed {
            mut claim,
            info,
            driver,
            socket,
        } = c;
        let pool = pools
            .iter()
            .find(|(s, _)| *s == socket)
            .map(|(_, p)| *p)
            .unwrap_or(pools[0].1);
        let mut conf = ffi::PortConf {
            rx_queues: rxq,
            tx_queues: txq,
            rx_desc: settings.rx_desc,
            tx_desc: settings.tx_desc,
            socket_id: socket,
            rss_hf: rss_functions(rxq, info.flow_type_rss_offloads),
            rx_offloads: info.rx_offload_capa
                & (ffi::RX_OFFLOAD_IPV4_CKSUM
                    | ffi::RX_OFFLOAD_TCP_CKSUM
                    | ffi::RX_OFFLOAD_UDP_CKSUM),
            ..ffi::PortConf::default()
        };
        if single_pool {
            conf.tx_offloads |= info.tx_offload_capa & ffi::TX_OFFLOAD_MBUF_FAST_FREE;
        }
        claim.setup(&conf, pool).map_err(|f| DpdkError::PortSetup {
            name: dev.name.clone(),
            driver: driver.clone(),
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
        let (running, rx, tx) =
            claim
                .start(index as u16)
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
                let rules = steering_rules(steer, rxq).map_err(|reason| {
                    DpdkError::FlowSteeringInvalid {
                        name: dev.name.clone(),
                        reason,
                    }
                })?;
                for rule in &rules {
                    running.flow_validate(rule).map_err(|(code, msg)| {
                        DpdkError::FlowUnsupported {
                            name: dev.name.clone(),
                            driver: driver.clone(),
                            reason: format!("{msg}; {}", describe(code)),
                        }
                    })?;
                }
                for rule in &rules {
                    running.flow_create(rule).map_err(|(code, msg)| {
                        DpdkError::FlowUnsupported {
                            name: dev.name.clone(),
                            driver: driver.clone(),
                            reason: format!(
                                "rule validated but not installed: {msg}; {}",
                                describe(code)
                            ),
                        }
                    })?;
                }
                flow_rules = rules.len();
            }
        }

        let mac = running.mac().unwrap_or(dev.mac.unwrap_or_default());
        let counters = Arc::new(PortCounters {
            rx: (0..rx_queues).map(|_| RxQueueCounters::default()).collect(),
        });
        queues.push(PortQueues {
            rx: rx
                .into_iter()
                .enumerate()
                .map(|(queue, handle)| {
                    Box::new(DpdkRx {
                        handle,
                        counters: Arc::clone(&counters),
                        queue,
                    }) as Box<dyn RxQueue<Mbuf>>
                })
                .collect(),
            tx: tx
                .into_iter()
                .map(|handle| Box::new(DpdkTx { handle }) as Box<dyn TxQueue<Mbuf>>)
                .collect(),
        });
        ports.push(PortState {
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
        });
    }
    let control = DpdkControl {
        ports,
        pools,
        return_steering: settings.return_steering,
    };
    Ok((queues, Arc::new(control)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn covered(blocks: &[(u16, u16)]) -> Vec<u16> {
        let mut ports: Vec<u16> = (0..=u16::MAX)
            .filter(|p| blocks.iter().any(|&(v, m)| p & m == v))
            .collect();
        ports.sort_unstable();
        ports
    }

    #[test]
    fn port_blocks_cover_exactly() {
        let b = port_blocks(1024, 2047);
        assert_eq!(b, vec![(1024, 0xfc00)]);
        let b = port_blocks(1024, 5055);
        assert_eq!(covered(&b), (1024..=5055).collect::<Vec<_>>());
        assert_eq!(port_blocks(0, u16::MAX), vec![(0, 0)]);
        assert_eq!(port_blocks(7, 7), vec![(7, 0xffff)]);
        assert!(port_blocks(9, 8).is_empty());
    }

    proptest! {
        #[test]
        fn port_blocks_are_disjoint_and_exact(a in any::<u16>(), b in any::<u16>()) {
            let (first, last) = (a.min(b), a.max(b));
            let blocks = port_blocks(first, last);
            prop_assert!(blocks.len() <= 32);
            let mut count = 0u32;
            for &(v, m) in &blocks {
                prop_assert_eq!(v & m, v, "value has bits outside its mask");
                count += (!m as u32 & 0xffff) + 1;
            }
            // Disjoint blocks inside the range adding up to its size cover it.
            prop_assert_eq!(count, u32::from(last) - u32::from(first) + 1);
            for &(v, m) in &blocks {
                let top = v | !m;
                prop_assert!(v >= first && top <= last);
            }
        }
    }

    #[test]
    fn rss_only_with_several_queues_and_only_what_is_offered() {
        assert_eq!(rss_functions(1, u64::MAX), 0);
        assert_eq!(
            rss_functions(2, u64::MAX),
            ffi::RSS_IP | ffi::RSS_TCP | ffi::RSS_UDP
        );
        assert_eq!(rss_functions(4, ffi::RSS_TCP), ffi::RSS_TCP);
        assert_eq!(rss_functions(4, 0), 0);
    }

    #[test]
    fn steering_rules_per_queue_address_protocol() {
        let steer = NatSteering {
            addresses: vec![
                "198.51.100.1".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
            ],
            queue_ports: vec![
                NatPortRange {
                    first: 1024,
                    last: 2047,
                },
                NatPortRange {
                    first: 2048,
                    last: 4095,
                },
            ],
        };
        let rules = steering_rules(&steer, 2).unwrap();
        // 2 queues x 2 addresses x 2 protocols x 1 block each.
        assert_eq!(rules.len(), 8);
        assert!(rules.contains(&ffi::FlowRule::new(
            "2001:db8::1".parse().unwrap(),
            17,
            2048,
            0xf800,
            1
        )));
        let err = steering_rules(&steer, 1).unwrap_err();
        assert!(err.contains("2 port slices for 1 RX queues"), "{err}");
        let empty = NatSteering {
            addresses: vec![],
            ..steer
        };
        assert!(steering_rules(&empty, 2).is_err());
    }

    #[test]
    fn settings_deserialize_steering_names() {
        #[derive(Deserialize)]
        struct C {
            s: ReturnSteering,
        }
        let c: C = toml::from_str("s = \"flow\"").unwrap();
        assert_eq!(c.s, ReturnSteering::Flow);
        let c: C = toml::from_str("s = \"software\"").unwrap();
        assert_eq!(c.s, ReturnSteering::Software);
        assert!(toml::from_str::<C>("s = \"hardware\"").is_err());
    }
}
