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
//!
//! Where things live: `eal.rs` (EAL start, thread registration, pools),
//! `device.rs` (the settings and device specs, and [`open`] as named steps:
//! claim, pools, configure, start), `steering.rs` (RSS and the rte_flow NAT
//! return steering), `queue.rs` (the RX/TX queue handles and their drop
//! counters), `control.rs` ([`DpdkControl`]: stats, links, MACs, pools),
//! `ffi.rs` (the C shim and DPDK symbols) and `mbuf.rs` ([`Mbuf`], pools,
//! bursts). `unsafe` is confined to `ffi.rs` and `mbuf.rs`.

mod control;
mod device;
mod eal;
mod ffi;
mod mbuf;
mod queue;
mod steering;

pub use control::{DpdkControl, LinkStatus};
pub use device::{open, DeviceSpec, DpdkSettings};
pub use eal::{
    create_pool, dpdk_version, init_eal, port_names, register_thread, LcoreRegistration,
};
pub use mbuf::{Mbuf, MbufPool, META_PRIV_SIZE};
pub use steering::{NatSteering, ReturnSteering};

/// Offload flag an RX PMD sets on a packet whose IPv4 header checksum is
/// bad (`RTE_MBUF_F_RX_IP_CKSUM_BAD`, under `RX_IP_CKSUM_MASK`).
pub const RX_IP_CKSUM_BAD: u64 = ffi::RX_IP_CKSUM_BAD;
/// Offload flag for a bad TCP/UDP checksum (`RTE_MBUF_F_RX_L4_CKSUM_BAD`).
pub const RX_L4_CKSUM_BAD: u64 = ffi::RX_L4_CKSUM_BAD;

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
