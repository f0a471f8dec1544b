//! The once-per-process EAL, lcore ids for the threads that poll queues,
//! and mbuf pools.

use std::sync::atomic::{AtomicU32, Ordering};

use super::{describe, ffi, DpdkError, MbufPool};

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
