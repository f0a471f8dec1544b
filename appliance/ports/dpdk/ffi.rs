//! The DPDK backend's foreign interface: declarations of the C shim
//! (`shim.c`) and of the DPDK 22.11 functions that are real symbols, the
//! `repr(C)` mirrors they exchange, and the safe owners built on them: the
//! once-per-process EAL, [`PortClaim`] (exclusive setup of one port) and
//! [`RunningPort`] (a started port, stopped when its last queue handle and
//! its control are gone).
//!
//! Part of the backend's I/O layer: `unsafe` is allowed here and in
//! `mbuf.rs` only, and every block says why it holds. Layouts and constants
//! mirrored here are checked against the DPDK headers by `_Static_assert`s in
//! `shim.c`, so a mismatch fails the build.
#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::marker::{PhantomData, PhantomPinned};
use std::mem::{offset_of, size_of};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::mbuf::{MbufPool, RxHandle, TxHandle};

/// `RTE_MAX_ETHPORTS` of the Debian/Ubuntu DPDK 22.11 build.
pub const MAX_ETHPORTS: usize = 32;

pub const RX_IP_CKSUM_MASK: u64 = 0x90;
pub const RX_IP_CKSUM_BAD: u64 = 0x10;
pub const RX_IP_CKSUM_GOOD: u64 = 0x80;
pub const RX_L4_CKSUM_MASK: u64 = 0x108;
pub const RX_L4_CKSUM_BAD: u64 = 0x8;
pub const RSS_IP: u64 = 0xa38c;
pub const RSS_TCP: u64 = 0x10410;
pub const RSS_UDP: u64 = 0x20820;
pub const RX_OFFLOAD_IPV4_CKSUM: u64 = 0x2;
pub const RX_OFFLOAD_UDP_CKSUM: u64 = 0x4;
pub const RX_OFFLOAD_TCP_CKSUM: u64 = 0x8;
pub const TX_OFFLOAD_MBUF_FAST_FREE: u64 = 0x10000;
/// Linux `EINVAL`, for errors found before reaching DPDK.
pub const EINVAL: i32 = 22;
const XSTAT_NAME_SIZE: usize = 64;
const ETH_NAME_MAX_LEN: usize = 64;

/// An opaque `struct rte_mempool`.
#[repr(C)]
pub struct RteMempool {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// `struct rte_mbuf` of DPDK 22.11, the fields the fast path reads in place.
#[repr(C, align(64))]
pub struct RteMbuf {
    pub buf_addr: *mut u8,
    pub buf_iova: u64,
    pub data_off: u16,
    pub refcnt: u16,
    pub nb_segs: u16,
    pub port: u16,
    pub ol_flags: u64,
    pub packet_type: u32,
    pub pkt_len: u32,
    pub data_len: u16,
    pub vlan_tci: u16,
    pub hash: [u32; 2],
    pub vlan_tci_outer: u16,
    pub buf_len: u16,
    pub pool: *mut RteMempool,
    pub next: *mut RteMbuf,
    pub tx_offload: u64,
    pub shinfo: *mut c_void,
    pub priv_size: u16,
    pub timesync: u16,
    pub dynfield1: [u32; 9],
}
// The same offsets shim.c asserts for `struct rte_mbuf`.
const _: () = {
    assert!(size_of::<RteMbuf>() == 128);
    assert!(offset_of!(RteMbuf, data_off) == 16);
    assert!(offset_of!(RteMbuf, nb_segs) == 20);
    assert!(offset_of!(RteMbuf, ol_flags) == 24);
    assert!(offset_of!(RteMbuf, pkt_len) == 36);
    assert!(offset_of!(RteMbuf, data_len) == 40);
    assert!(offset_of!(RteMbuf, buf_len) == 54);
    assert!(offset_of!(RteMbuf, pool) == 56);
    assert!(offset_of!(RteMbuf, priv_size) == 88);
};

/// `struct shim_dev_info`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DevInfo {
    driver: [c_char; 64],
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub rx_desc_max: u16,
    pub rx_desc_min: u16,
    pub tx_desc_max: u16,
    pub tx_desc_min: u16,
    pub reta_size: u16,
    pub hash_key_size: u8,
    _pad: u8,
    pub rx_offload_capa: u64,
    pub tx_offload_capa: u64,
    pub flow_type_rss_offloads: u64,
    pub socket_id: i32,
    _pad2: u32,
}
const _: () = assert!(size_of::<DevInfo>() == 112);

impl DevInfo {
    pub fn driver(&self) -> String {
        // SAFETY: shim_dev_info writes a NUL-terminated string (snprintf)
        // into the zeroed 64-byte array.
        unsafe { cstr_lossy(self.driver.as_ptr()) }
    }
}

/// `struct shim_port_conf`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PortConf {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub socket_id: i32,
    /// Padding of the C struct; always 0.
    pub _pad: u32,
    pub rss_hf: u64,
    pub rx_offloads: u64,
    pub tx_offloads: u64,
}
const _: () = assert!(size_of::<PortConf>() == 40);

/// `struct shim_link`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Link {
    pub speed_mbps: u32,
    pub up: u8,
    pub full_duplex: u8,
    pub autoneg: u8,
    _pad: u8,
}

/// `struct shim_port_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// `struct shim_flow_rule`: "ingress, ipv4|ipv6 dst ADDR / tcp|udp dst PORT
/// with MASK -> queue QUEUE".
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRule {
    ipv6: u8,
    proto: u8,
    dst_port: u16,
    dst_port_mask: u16,
    queue: u16,
    addr: [u8; 16],
}
const _: () = assert!(size_of::<FlowRule>() == 24);

impl FlowRule {
    pub fn new(addr: IpAddr, proto: u8, dst_port: u16, dst_port_mask: u16, queue: u16) -> Self {
        let mut bytes = [0u8; 16];
        let ipv6 = match addr {
            IpAddr::V4(a) => {
                bytes[..4].copy_from_slice(&a.octets());
                0
            }
            IpAddr::V6(a) => {
                bytes = a.octets();
                1
            }
        };
        FlowRule {
            ipv6,
            proto,
            dst_port,
            dst_port_mask,
            queue,
            addr: bytes,
        }
    }
}

#[repr(C)]
struct XstatName {
    name: [c_char; XSTAT_NAME_SIZE],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Xstat {
    id: u64,
    value: u64,
}

extern "C" {
    // shim.c
    fn shim_errno() -> c_int;
    fn shim_version() -> *const c_char;
    fn shim_lcore_id() -> c_uint;
    fn shim_eal_init(argc: c_int, argv: *mut *mut c_char, restored: *mut c_int) -> c_int;
    pub fn shim_rx_burst(port: u16, queue: u16, pkts: *mut *mut RteMbuf, n: u16) -> u16;
    pub fn shim_tx_burst(port: u16, queue: u16, pkts: *mut *mut RteMbuf, n: u16) -> u16;
    pub fn shim_pktmbuf_alloc(mp: *mut RteMempool) -> *mut RteMbuf;
    pub fn shim_pktmbuf_free(m: *mut RteMbuf);
    pub fn shim_pktmbuf_mtod(m: *mut RteMbuf) -> *mut c_char;
    pub fn shim_pktmbuf_data_len(m: *const RteMbuf) -> u16;
    pub fn shim_pktmbuf_headroom(m: *const RteMbuf) -> u16;
    pub fn shim_pktmbuf_tailroom(m: *const RteMbuf) -> u16;
    pub fn shim_pktmbuf_copy_frame(m: *const RteMbuf) -> *mut RteMbuf;
    pub fn shim_mempool_name(mp: *const RteMempool) -> *const c_char;
    fn shim_dev_info(port: u16, out: *mut DevInfo) -> c_int;
    fn shim_port_setup(
        port: u16,
        conf: *const PortConf,
        mp: *mut RteMempool,
        failed_step: *mut c_int,
        failed_queue: *mut c_int,
    ) -> c_int;
    fn shim_link_get_nowait(port: u16, out: *mut Link) -> c_int;
    fn shim_stats_get(port: u16, out: *mut PortStats) -> c_int;
    fn shim_flow_validate(port: u16, rule: *const FlowRule, msg: *mut c_char, len: usize) -> c_int;
    fn shim_flow_create(port: u16, rule: *const FlowRule, msg: *mut c_char, len: usize) -> c_int;
    fn shim_flow_flush(port: u16) -> c_int;

    // DPDK (real symbols)
    fn rte_strerror(errnum: c_int) -> *const c_char;
    fn rte_thread_register() -> c_int;
    fn rte_thread_unregister();
    fn rte_eth_find_next(port_id: u16) -> u16;
    fn rte_eth_dev_get_port_by_name(name: *const c_char, port_id: *mut u16) -> c_int;
    fn rte_eth_dev_get_name_by_port(port_id: u16, name: *mut c_char) -> c_int;
    fn rte_eth_dev_start(port_id: u16) -> c_int;
    fn rte_eth_dev_stop(port_id: u16) -> c_int;
    fn rte_eth_promiscuous_enable(port_id: u16) -> c_int;
    fn rte_eth_macaddr_get(port_id: u16, mac: *mut [u8; 6]) -> c_int;
    fn rte_eth_dev_get_mtu(port_id: u16, mtu: *mut u16) -> c_int;
    fn rte_eth_dev_default_mac_addr_set(port_id: u16, mac: *mut [u8; 6]) -> c_int;
    fn rte_eth_xstats_get_names(port_id: u16, names: *mut XstatName, size: c_uint) -> c_int;
    fn rte_eth_xstats_get(port_id: u16, xstats: *mut Xstat, n: c_uint) -> c_int;
    fn rte_eth_dev_rx_offload_name(offload: u64) -> *const c_char;
    fn rte_eth_dev_tx_offload_name(offload: u64) -> *const c_char;
    pub fn rte_pktmbuf_pool_create(
        name: *const c_char,
        n: c_uint,
        cache_size: c_uint,
        priv_size: u16,
        data_room_size: u16,
        socket_id: c_int,
    ) -> *mut RteMempool;
    pub fn rte_mempool_avail_count(mp: *const RteMempool) -> c_uint;
    pub fn rte_mempool_in_use_count(mp: *const RteMempool) -> c_uint;
}

/// Reads a C string into an owned `String` (lossy); "" for NULL.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
pub unsafe fn cstr_lossy(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated per this function's contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// DPDK's `rte_errno` of the calling thread.
pub fn errno() -> i32 {
    // SAFETY: reads a thread-local integer.
    unsafe { shim_errno() }
}

/// DPDK's explanation of an error number (positive or negative).
pub fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror accepts any number and returns a static or
    // thread-local NUL-terminated string.
    unsafe { cstr_lossy(rte_strerror(code.saturating_abs())) }
}

/// The DPDK release linked, e.g. "DPDK 22.11.11".
pub fn version() -> String {
    // SAFETY: returns a static NUL-terminated string.
    unsafe { cstr_lossy(shim_version()) }
}

// ---- EAL -----------------------------------------------------------------

/// The arguments the EAL was initialised with, or why it failed. The EAL
/// initialises once per process; a failure is final too.
static EAL: OnceLock<Result<Vec<String>, String>> = OnceLock::new();

/// Outcome of [`eal_init`] other than success.
pub enum EalFailure {
    Failed(String),
    ArgsDiffer(Vec<String>),
}

/// Initialises the EAL with `args` (without a program name) on the first
/// call; later calls succeed if they pass the same arguments. The calling
/// thread's CPU affinity is left as it was.
pub fn eal_init(args: &[String]) -> Result<(), EalFailure> {
    let state = EAL.get_or_init(|| eal_init_once(args).map(|()| args.to_vec()));
    match state {
        Ok(first) if first == args => Ok(()),
        Ok(first) => Err(EalFailure::ArgsDiffer(first.clone())),
        Err(reason) => Err(EalFailure::Failed(reason.clone())),
    }
}

/// Whether the EAL is up in this process.
pub fn eal_ready() -> bool {
    matches!(EAL.get(), Some(Ok(_)))
}

/// The EAL arguments in force, if the EAL is up.
pub fn eal_args() -> Option<&'static [String]> {
    match EAL.get() {
        Some(Ok(args)) => Some(args),
        _ => None,
    }
}

fn eal_init_once(args: &[String]) -> Result<(), String> {
    let mut argv: Vec<*mut c_char> = Vec::with_capacity(args.len() + 2);
    for a in std::iter::once("appliance").chain(args.iter().map(String::as_str)) {
        let c = CString::new(a).map_err(|_| format!("argument {a:?} contains a NUL byte"))?;
        // The EAL may keep pointers into argv (it stores some options as
        // given), and it runs once per process: the strings live forever.
        argv.push(c.into_raw());
    }
    let argc = argv.len() as c_int;
    argv.push(std::ptr::null_mut());
    let argv: &'static mut [*mut c_char] = argv.leak();
    let mut restored: c_int = 0;
    // SAFETY: `argv` holds `argc` valid NUL-terminated strings and a NULL,
    // all leaked so they outlive the EAL; the OnceLock makes this the only
    // call in the process.
    let ret = unsafe { shim_eal_init(argc, argv.as_mut_ptr(), &mut restored) };
    if ret < 0 {
        let code = errno();
        return Err(format!("rte_eal_init: {} (errno {code})", strerror(code)));
    }
    Ok(())
}

/// Gives the calling thread its own DPDK lcore id (so it gets a mempool
/// cache). Returns the id and whether this call registered the thread
/// (false: it already had an id, e.g. the EAL's main thread).
pub fn register_thread() -> Result<(u32, bool), i32> {
    // SAFETY: reads the calling thread's lcore id.
    let id = unsafe { shim_lcore_id() };
    if id != u32::MAX {
        return Ok((id, false));
    }
    // SAFETY: registers the calling thread with the (initialised) EAL.
    if unsafe { rte_thread_register() } != 0 {
        return Err(errno());
    }
    // SAFETY: as above.
    Ok((unsafe { shim_lcore_id() }, true))
}

/// Gives the calling thread's lcore id back (after `register_thread`
/// registered it). Must run on the registered thread.
pub fn unregister_thread() {
    // SAFETY: releases the calling thread's own registration; DPDK ignores
    // the call for a thread that has none.
    unsafe { rte_thread_unregister() }
}

// ---- Ports ----------------------------------------------------------------

/// The DPDK port named `name` (vdev name or PCI address).
pub fn port_by_name(name: &str) -> Option<u16> {
    let c = CString::new(name).ok()?;
    let mut id: u16 = 0;
    // SAFETY: `c` is NUL-terminated and `id` a valid out-parameter.
    let ret = unsafe { rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    (ret == 0).then_some(id)
}

/// Names of every DPDK port the EAL found.
pub fn port_names() -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: rte_eth_find_next only reads the port table.
    let mut p = unsafe { rte_eth_find_next(0) };
    while usize::from(p) < MAX_ETHPORTS {
        let mut buf = [0 as c_char; ETH_NAME_MAX_LEN];
        // SAFETY: `buf` has the RTE_ETH_NAME_MAX_LEN bytes DPDK may write.
        if unsafe { rte_eth_dev_get_name_by_port(p, buf.as_mut_ptr()) } == 0 {
            // SAFETY: DPDK wrote a NUL-terminated name into `buf`.
            names.push(unsafe { cstr_lossy(buf.as_ptr()) });
        }
        // SAFETY: as above.
        p = unsafe { rte_eth_find_next(p + 1) };
    }
    names
}

/// Ports some [`PortClaim`] holds: one owner per DPDK port in the process.
static CLAIMED: Mutex<[bool; MAX_ETHPORTS]> = Mutex::new([false; MAX_ETHPORTS]);

/// Exclusive ownership of one DPDK port while it is set up. Because only
/// one claim per port exists, the control-path calls below never race with
/// each other or with a running datapath on that port.
pub struct PortClaim {
    port_id: u16,
    queues: Option<(u16, u16)>,
    pool: Option<MbufPool>,
}

/// Where [`PortClaim::setup`] failed.
pub struct SetupFailure {
    pub step: &'static str,
    pub queue: Option<u16>,
    pub code: i32,
}

impl PortClaim {
    /// Claims port `port_id`; `None` if another claim or running port holds it.
    pub fn acquire(port_id: u16) -> Option<PortClaim> {
        let mut claimed = CLAIMED.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = claimed.get_mut(usize::from(port_id))?;
        if *slot {
            return None;
        }
        *slot = true;
        Some(PortClaim {
            port_id,
            queues: None,
            pool: None,
        })
    }

    pub fn dev_info(&self) -> Result<DevInfo, i32> {
        let mut info = DevInfo {
            driver: [0; 64],
            max_rx_queues: 0,
            max_tx_queues: 0,
            rx_desc_max: 0,
            rx_desc_min: 0,
            tx_desc_max: 0,
            tx_desc_min: 0,
            reta_size: 0,
            hash_key_size: 0,
            _pad: 0,
            rx_offload_capa: 0,
            tx_offload_capa: 0,
            flow_type_rss_offloads: 0,
            socket_id: 0,
            _pad2: 0,
        };
        // SAFETY: `info` is a valid out-parameter of the mirrored layout.
        let ret = unsafe { shim_dev_info(self.port_id, &mut info) };
        if ret == 0 {
            Ok(info)
        } else {
            Err(ret)
        }
    }

    /// Configures the port and sets up all its queues, RX queues taking
    /// mbufs from `pool`.
    pub fn setup(&mut self, conf: &PortConf, pool: MbufPool) -> Result<(), SetupFailure> {
        let (mut step, mut queue): (c_int, c_int) = (0, -1);
        // SAFETY: we hold the port's claim and it is not started; `conf` and
        // the out-parameters are valid; `pool` is a live mempool (never
        // freed) whose mbufs suit any PMD.
        let ret =
            unsafe { shim_port_setup(self.port_id, conf, pool.as_ptr(), &mut step, &mut queue) };
        if ret == 0 {
            self.queues = Some((conf.rx_queues, conf.tx_queues));
            self.pool = Some(pool);
            return Ok(());
        }
        Err(SetupFailure {
            step: match step {
                1 => "rte_eth_dev_configure",
                2 => "rte_eth_dev_adjust_nb_rx_tx_desc",
                3 => "rte_eth_rx_queue_setup",
                4 => "rte_eth_tx_queue_setup",
                _ => "port setup",
            },
            queue: u16::try_from(queue).ok(),
            code: ret,
        })
    }

    pub fn set_mac(&mut self, mac: [u8; 6]) -> Result<(), i32> {
        let mut mac = mac;
        // SAFETY: claimed port; `mac` is a 6-byte rte_ether_addr.
        let ret = unsafe { rte_eth_dev_default_mac_addr_set(self.port_id, &mut mac) };
        if ret == 0 {
            Ok(())
        } else {
            Err(ret)
        }
    }

    pub fn enable_promiscuous(&mut self) -> Result<(), i32> {
        // SAFETY: claimed port.
        let ret = unsafe { rte_eth_promiscuous_enable(self.port_id) };
        if ret == 0 {
            Ok(())
        } else {
            Err(ret)
        }
    }

    /// Starts the set-up port and hands out its one handle per queue.
    /// `in_port` is the appliance's index of the port (for `meta.in_port`).
    #[allow(clippy::type_complexity)]
    pub fn start(
        self,
        in_port: u16,
    ) -> Result<(Arc<RunningPort>, Vec<RxHandle>, Vec<TxHandle>), (PortClaim, i32)> {
        let (Some((rxq, txq)), Some(pool)) = (self.queues, self.pool) else {
            return Err((self, -EINVAL));
        };
        // SAFETY: claimed, configured port.
        let ret = unsafe { rte_eth_dev_start(self.port_id) };
        if ret != 0 {
            return Err((self, ret));
        }
        let port = Arc::new(RunningPort {
            claim: self,
            has_flows: AtomicBool::new(false),
        });
        let rx = (0..rxq)
            // SAFETY: queue `q` was set up with `pool` by `setup`, the port is
            // started, and this loop makes the only handle per queue.
            .map(|q| unsafe { RxHandle::new(Arc::clone(&port), q, in_port, pool) })
            .collect();
        let tx = (0..txq)
            // SAFETY: as above, for the TX queues.
            .map(|q| unsafe { TxHandle::new(Arc::clone(&port), q) })
            .collect();
        Ok((port, rx, tx))
    }
}

impl Drop for PortClaim {
    fn drop(&mut self) {
        let mut claimed = CLAIMED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = claimed.get_mut(usize::from(self.port_id)) {
            *slot = false;
        }
    }
}

/// A started port. Dropped when its control and every queue handle are gone:
/// then its flow rules are flushed and the port stopped (not closed, so it
/// can be opened again in the same process).
pub struct RunningPort {
    claim: PortClaim,
    /// Whether `flow_create` installed a rule (to flush at stop).
    has_flows: AtomicBool,
}

impl RunningPort {
    pub fn port_id(&self) -> u16 {
        self.claim.port_id
    }

    /// Link state without waiting (`rte_eth_link_get_nowait`).
    pub fn link(&self) -> Result<Link, i32> {
        let mut link = Link::default();
        // SAFETY: valid out-parameter; reading the link is allowed while
        // queues run.
        let ret = unsafe { shim_link_get_nowait(self.port_id(), &mut link) };
        if ret == 0 {
            Ok(link)
        } else {
            Err(ret)
        }
    }

    /// The device's MTU (rte_eth_dev_get_mtu).
    pub fn mtu(&self) -> Result<u16, i32> {
        let mut mtu = 0u16;
        // SAFETY: `mtu` is a valid u16 out-parameter.
        let ret = unsafe { rte_eth_dev_get_mtu(self.port_id(), &mut mtu) };
        if ret == 0 {
            Ok(mtu)
        } else {
            Err(ret)
        }
    }

    pub fn mac(&self) -> Result<[u8; 6], i32> {
        let mut mac = [0u8; 6];
        // SAFETY: `mac` is a 6-byte rte_ether_addr out-parameter.
        let ret = unsafe { rte_eth_macaddr_get(self.port_id(), &mut mac) };
        if ret == 0 {
            Ok(mac)
        } else {
            Err(ret)
        }
    }

    pub fn stats(&self) -> Result<PortStats, i32> {
        let mut s = PortStats::default();
        // SAFETY: valid out-parameter; stats reads are allowed while queues
        // run (the PMD's counters are read, not reset).
        let ret = unsafe { shim_stats_get(self.port_id(), &mut s) };
        if ret == 0 {
            Ok(s)
        } else {
            Err(ret)
        }
    }

    /// Every extended statistic of the port, by name.
    pub fn xstats(&self) -> Result<Vec<(String, u64)>, i32> {
        let port = self.port_id();
        // SAFETY: NULL/0 asks for the count only.
        let n = unsafe { rte_eth_xstats_get_names(port, std::ptr::null_mut(), 0) };
        let n = usize::try_from(n).map_err(|_| n)?;
        let mut names: Vec<XstatName> = (0..n)
            .map(|_| XstatName {
                name: [0; XSTAT_NAME_SIZE],
            })
            .collect();
        let mut values = vec![Xstat::default(); n];
        // SAFETY: `names` has room for `n` entries.
        let got_names = unsafe { rte_eth_xstats_get_names(port, names.as_mut_ptr(), n as c_uint) };
        // SAFETY: `values` has room for `n` entries.
        let got_values = unsafe { rte_eth_xstats_get(port, values.as_mut_ptr(), n as c_uint) };
        if got_names < 0 {
            return Err(got_names);
        }
        if got_values < 0 {
            return Err(got_values);
        }
        let count = n.min(got_names as usize).min(got_values as usize);
        Ok(values[..count]
            .iter()
            .filter_map(|v| {
                let name = names.get(usize::try_from(v.id).ok()?)?;
                // SAFETY: DPDK NUL-terminates names in the 64-byte field; the
                // array was zeroed, so even a truncated name ends in NUL.
                let name = unsafe { cstr_lossy(name.name.as_ptr()) };
                Some((name, v.value))
            })
            .collect())
    }

    /// Checks `rule` with `rte_flow_validate`; the error carries errno and
    /// the PMD's explanation.
    pub fn flow_validate(&self, rule: &FlowRule) -> Result<(), (i32, String)> {
        let mut msg = [0 as c_char; 256];
        // SAFETY: `rule` is a valid shim_flow_rule and `msg` a writable
        // buffer of the length passed.
        let ret = unsafe { shim_flow_validate(self.port_id(), rule, msg.as_mut_ptr(), msg.len()) };
        // SAFETY: the shim NUL-terminates `msg` (snprintf into a zeroed buffer).
        let text = unsafe { cstr_lossy(msg.as_ptr()) };
        if ret == 0 {
            Ok(())
        } else {
            Err((ret, text))
        }
    }

    /// Installs `rule`; removed by `rte_flow_flush` when the port stops.
    pub fn flow_create(&self, rule: &FlowRule) -> Result<(), (i32, String)> {
        let mut msg = [0 as c_char; 256];
        // SAFETY: as flow_validate.
        let ret = unsafe { shim_flow_create(self.port_id(), rule, msg.as_mut_ptr(), msg.len()) };
        if ret == 0 {
            self.has_flows.store(true, Ordering::Relaxed);
        }
        // SAFETY: as flow_validate.
        let text = unsafe { cstr_lossy(msg.as_ptr()) };
        if ret == 0 {
            Ok(())
        } else {
            Err((ret, text))
        }
    }
}

impl Drop for RunningPort {
    fn drop(&mut self) {
        // Every queue handle holds an Arc to this port, so no thread polls
        // it any more.
        if self.has_flows.load(Ordering::Relaxed) {
            // SAFETY: a plain call on a port we own; a failure leaves
            // nothing to undo (stopping removes the rules on most PMDs).
            unsafe { shim_flow_flush(self.port_id()) };
        }
        // SAFETY: as above.
        unsafe { rte_eth_dev_stop(self.port_id()) };
    }
}

/// Names of the offload bits set in `bits`, RX or TX.
pub fn offload_names(bits: u64, rx: bool) -> Vec<String> {
    (0..64)
        .map(|i| 1u64 << i)
        .filter(|bit| bits & bit != 0)
        .map(|bit| {
            // SAFETY: returns a static string ("UNKNOWN" for unknown bits).
            let p = unsafe {
                if rx {
                    rte_eth_dev_rx_offload_name(bit)
                } else {
                    rte_eth_dev_tx_offload_name(bit)
                }
            };
            // SAFETY: static NUL-terminated string or NULL.
            unsafe { cstr_lossy(p) }
        })
        .collect()
}
