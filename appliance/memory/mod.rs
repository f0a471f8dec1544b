//! The process's global allocator: every allocation of at least
//! [`HUGE_PAGE`] bytes (the NAT slab and indexes, the fragment and RTT
//! tables, any large `Vec` sized from the config at start) gets its own
//! anonymous mapping aligned to 2 MiB and advised `MADV_HUGEPAGE` before
//! anything touches it, so transparent huge pages back it even where THP
//! is `madvise`-only; everything smaller, and every large allocation the
//! mapping could not serve, goes to the system allocator.
//!
//! The pure `pipelines` tables are ordinary `Vec`s and hashbrown maps: they
//! get huge pages without knowing it. The appliance binary installs
//! [`HugeAlloc`] as its `#[global_allocator]`; benches may too
//! (`benches/nat.rs`). [`set_mode`] (`[runtime] huge_pages`) switches new
//! large allocations between this path and the system allocator at any time:
//! a free finds where its block came from in a fixed registry of the
//! mappings made here (by address, never by size or mode), so nothing is
//! ever freed to the wrong allocator.
//!
//! Not from DPDK's hugepage heap (`rte_malloc`): a block must outlive the
//! EAL for that (tables are dropped after the ports close, and `rte_free`
//! after `rte_eal_cleanup` is undefined), and it would share the EAL's
//! `memory_mb` budget with the mempools; THP gives the same 2 MiB TLB
//! entries without either constraint.
//!
//! `unsafe` is allowed in this module (the runtime's memory mapping, beside
//! `ports/dpdk` and `ports/linux`); every block carries its `// SAFETY:`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

mod smaps;
#[cfg(test)]
mod tests;

pub use smaps::{thp_mode, MemoryStats};

/// The huge page size (x86-64, aarch64 with 4 KiB base pages), which is
/// also the threshold: an allocation this large gets its own mapping.
pub const HUGE_PAGE: usize = 2 << 20;

/// Mappings the registry can hold at once; a large allocation beyond them
/// goes to the system allocator (counted in [`fallback_allocs`]).
pub const REGIONS: usize = 1024;

/// `[runtime] huge_pages`: what new allocations of at least [`HUGE_PAGE`]
/// bytes get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HugePages {
    /// Their own 2 MiB-aligned mapping advised `MADV_HUGEPAGE` (the kernel
    /// falls back to 4 KiB pages by itself when THP is `never` or no huge
    /// page is free).
    #[default]
    Auto,
    /// The system allocator, as without this allocator.
    Off,
}

impl HugePages {
    pub fn as_str(self) -> &'static str {
        match self {
            HugePages::Auto => "auto",
            HugePages::Off => "off",
        }
    }
}

static MODE: AtomicU8 = AtomicU8::new(0);
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// One mapping made here: its start (0 when the slot is free) and length
/// (0 while being filled in or emptied).
struct Region {
    addr: AtomicUsize,
    len: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Region = Region {
    addr: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
};
static REGISTRY: [Region; REGIONS] = [EMPTY; REGIONS];

/// Sets what new large allocations get (see [`HugePages`]); blocks already
/// allocated keep their allocator.
pub fn set_mode(mode: HugePages) {
    MODE.store(mode as u8, Ordering::Relaxed);
}

pub fn mode() -> HugePages {
    match MODE.load(Ordering::Relaxed) {
        0 => HugePages::Auto,
        _ => HugePages::Off,
    }
}

/// Large allocations the system allocator served although the mode was
/// `auto` (mapping refused, registry full).
pub fn fallback_allocs() -> u64 {
    FALLBACKS.load(Ordering::Relaxed)
}

static INSTALLED: AtomicU8 = AtomicU8::new(0);

/// Whether [`HugeAlloc`] is the process's global allocator (the appliance
/// binary and `benches/nat.rs`; not a library user's or a test binary's);
/// `None` while the mode is `off` and it was never seen.
pub fn installed() -> Option<bool> {
    match INSTALLED.load(Ordering::Relaxed) {
        1 => return Some(true),
        2 => return Some(false),
        _ if mode() == HugePages::Off => return None,
        _ => {}
    }
    // A large block through the global allocator, never touched: ours
    // exactly when it is a registered mapping.
    let probe: Vec<u8> = Vec::with_capacity(HUGE_PAGE);
    let yes = find(probe.as_ptr() as usize).is_some();
    INSTALLED.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
    Some(yes)
}

/// The live mappings made here: `(start, length)`.
pub fn regions() -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for r in &REGISTRY {
        let len = r.len.load(Ordering::Acquire);
        let addr = r.addr.load(Ordering::Acquire);
        if len != 0 && addr != 0 {
            out.push((addr, len));
        }
    }
    out
}

/// The allocator: install with
/// `#[global_allocator] static A: HugeAlloc = HugeAlloc;`.
pub struct HugeAlloc;

fn round_up(n: usize, to: usize) -> Option<usize> {
    Some(n.checked_add(to - 1)? & !(to - 1))
}

/// Maps `size` bytes aligned to `max(align, HUGE_PAGE)`, advised
/// `MADV_HUGEPAGE`, and registers it; `None` when the kernel refused or the
/// registry is full (nothing stays mapped then).
fn map_huge(size: usize, align: usize) -> Option<*mut u8> {
    let align = align.max(HUGE_PAGE);
    let len = round_up(size, HUGE_PAGE)?;
    let span = len.checked_add(align)?;
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choice touches no existing memory; the result is checked.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    let raw = raw as usize;
    let start = round_up(raw, align)?;
    let (head, tail) = (start - raw, raw + span - (start + len));
    // SAFETY: both ranges lie inside the mapping just made, which nothing
    // else knows of yet; `head` and `tail` are multiples of the base page
    // (mmap returns page-aligned addresses, `align` and `len` are multiples
    // of 2 MiB).
    unsafe {
        if head != 0 {
            libc::munmap(raw as *mut libc::c_void, head);
        }
        if tail != 0 {
            libc::munmap((start + len) as *mut libc::c_void, tail);
        }
        // Before the first touch, so the first faults already take 2 MiB
        // pages. A refusal (THP compiled out) leaves 4 KiB pages: the
        // mapping is still good.
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    if register(start, len) {
        Some(start as *mut u8)
    } else {
        // SAFETY: the mapping made above, not registered, never handed out.
        unsafe { libc::munmap(start as *mut libc::c_void, len) };
        None
    }
}

fn register(addr: usize, len: usize) -> bool {
    for r in &REGISTRY {
        if r.addr
            .compare_exchange(0, addr, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            r.len.store(len, Ordering::Release);
            return true;
        }
    }
    false
}

/// The registry slot of the mapping starting at `addr`, if it is one.
fn find(addr: usize) -> Option<&'static Region> {
    REGISTRY
        .iter()
        .find(|r| r.addr.load(Ordering::Acquire) == addr)
}

/// Unmaps and unregisters the mapping in `r`.
fn unmap(r: &Region) {
    let (addr, len) = (
        r.addr.load(Ordering::Acquire),
        r.len.load(Ordering::Acquire),
    );
    r.len.store(0, Ordering::Release);
    r.addr.store(0, Ordering::Release);
    // SAFETY: `addr..addr+len` is a mapping made by `map_huge` for a block
    // its owner is freeing now (it came back through `dealloc`/`realloc`),
    // so nothing refers to it any more.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
}

impl HugeAlloc {
    fn large(&self, layout: Layout) -> Option<*mut u8> {
        if layout.size() < HUGE_PAGE || mode() == HugePages::Off {
            return None;
        }
        let p = map_huge(layout.size(), layout.align());
        if p.is_none() {
            FALLBACKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
}

// SAFETY: every block handed out is either the system allocator's (and goes
// back to it) or a registered mapping of at least `layout.size()` bytes,
// aligned to at least `layout.align()`, that only `dealloc`/`realloc` of
// that block unmap; the registry is found by address, so a block's origin
// does not depend on the mode at the time of the free.
unsafe impl GlobalAlloc for HugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.large(layout) {
            Some(p) => p,
            // SAFETY: the caller's contract (non-zero size) is passed on.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.large(layout) {
            // A fresh anonymous mapping reads as zeros.
            Some(p) => p,
            // SAFETY: as in `alloc`.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= HUGE_PAGE {
            if let Some(r) = find(ptr as usize) {
                return unmap(r);
            }
        }
        // SAFETY: not a mapping of ours, so the system allocator's block,
        // freed with the layout it was allocated with (caller's contract).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let ours = if layout.size() >= HUGE_PAGE {
            find(ptr as usize)
        } else {
            None
        };
        if ours.is_none() && new_size < HUGE_PAGE {
            // SAFETY: the system allocator's block, small before and after.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if let Some(r) = ours {
            let len = r.len.load(Ordering::Acquire);
            if new_size >= HUGE_PAGE && new_size <= len {
                let keep = round_up(new_size, HUGE_PAGE).unwrap_or(len);
                if keep < len {
                    // Shrink in place: give back whole huge pages at the end.
                    r.len.store(keep, Ordering::Release);
                    // SAFETY: the tail of this block's own mapping, beyond
                    // `new_size`, which the caller no longer uses.
                    unsafe { libc::munmap((ptr as usize + keep) as *mut libc::c_void, len - keep) };
                }
                return ptr;
            }
        }
        // Move: a new block (ours or the system's, by the new size), copy,
        // free the old one where it came from.
        // SAFETY: `layout.align()` is a valid alignment and `new_size` is
        // non-zero and does not overflow when rounded (caller's contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: non-zero size (caller's contract).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least this long.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}
