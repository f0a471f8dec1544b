//! What the large allocations got, from the kernel's own accounting: the
//! THP mode (`/sys/kernel/mm/transparent_hugepage/enabled`) and, per mapping
//! made by [`super::HugeAlloc`], its `AnonHugePages` in `/proc/self/smaps`.

use serde::Serialize;

/// The stats JSON's `memory` section.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct MemoryStats {
    /// `[runtime] huge_pages`: `"auto"` or `"off"`.
    pub huge_pages: &'static str,
    /// Whether the process's global allocator is this one (false when the
    /// appliance is embedded as a library: large tables then stay on the
    /// system allocator whatever `huge_pages` says).
    pub huge_allocator: bool,
    /// The kernel's THP mode: `always`, `madvise`, `never`, or `unknown`
    /// (no THP support).
    pub thp: String,
    /// Live allocations of 2 MiB or more on their own 2 MiB-aligned mapping
    /// advised `MADV_HUGEPAGE` (the NAT slab and indexes, other large tables).
    pub large_regions: usize,
    /// Their bytes (virtual: pages not yet touched are counted).
    pub large_bytes: u64,
    /// Of those, bytes backed by 2 MiB pages now (`AnonHugePages`).
    pub table_bytes_huge: u64,
    /// Allocations of 2 MiB or more the system allocator served although
    /// `huge_pages = "auto"` (mapping refused, registry full).
    pub large_fallbacks: u64,
}

impl MemoryStats {
    /// As of now (reads `/proc/self/smaps`: call it at most every second
    /// or so, off the packet path).
    pub fn now() -> MemoryStats {
        let regions = super::regions();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        MemoryStats {
            huge_pages: super::mode().as_str(),
            huge_allocator: super::installed().unwrap_or(false),
            thp: thp_mode(),
            large_regions: regions.len(),
            large_bytes: regions.iter().map(|r| r.1 as u64).sum(),
            table_bytes_huge: anon_huge_bytes(&smaps, &regions),
            large_fallbacks: super::fallback_allocs(),
        }
    }

    /// The startup log line: which page size the large tables got.
    pub fn summary(&self) -> String {
        const MIB: f64 = (1 << 20) as f64;
        if self.huge_pages == "auto" && !self.huge_allocator {
            return format!(
                "memory: the global allocator is not the appliance's: large tables on the system allocator (THP {})",
                self.thp
            );
        }
        if self.huge_pages == "off" {
            return format!(
                "memory: huge_pages = \"off\": large tables on the system allocator (4 KiB pages unless THP is \"always\"; THP {})",
                self.thp
            );
        }
        let page = if self.table_bytes_huge > 0 {
            "2 MiB pages"
        } else if self.thp == "never" || self.thp == "unknown" {
            "4 KiB pages (THP off in the kernel)"
        } else {
            "4 KiB pages so far (no huge page given yet)"
        };
        format!(
            "memory: large tables on {page}: {} of them, {:.0} MiB on 2 MiB-aligned mappings advised MADV_HUGEPAGE (THP {}), {:.0} MiB touched and on 2 MiB pages; {} large allocations fell back to the system allocator",
            self.large_regions,
            self.large_bytes as f64 / MIB,
            self.thp,
            self.table_bytes_huge as f64 / MIB,
            self.large_fallbacks
        )
    }
}

/// The bracketed word of the THP `enabled` file, or `unknown`.
pub fn thp_mode() -> String {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .ok()
        .and_then(|s| parse_thp(&s))
        .unwrap_or_else(|| "unknown".into())
}

pub(super) fn parse_thp(s: &str) -> Option<String> {
    let open = s.find('[')?;
    let close = s[open..].find(']')? + open;
    Some(s[open + 1..close].to_string())
}

/// Sum of `AnonHugePages` over the VMAs of `smaps` that overlap one of
/// `regions` (`(start, length)`); adjacent mappings of ours may share a VMA,
/// which is then counted once.
pub(super) fn anon_huge_bytes(smaps: &str, regions: &[(usize, usize)]) -> u64 {
    let mut total = 0u64;
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((lo, hi)) = vma_range(line) {
            inside = regions.iter().any(|&(a, l)| a < hi && lo < a + l);
        } else if inside {
            if let Some(rest) = line.strip_prefix("AnonHugePages:") {
                let kb = rest.trim().trim_end_matches("kB").trim();
                total += kb.parse::<u64>().unwrap_or(0) * 1024;
            }
        }
    }
    total
}

/// `start-end` of a VMA header line (`7f00-7f10 rw-p 00000000 00:00 0 ...`).
fn vma_range(line: &str) -> Option<(usize, usize)> {
    let first = line.split_ascii_whitespace().next()?;
    let (lo, hi) = first.split_once('-')?;
    Some((
        usize::from_str_radix(lo, 16).ok()?,
        usize::from_str_radix(hi, 16).ok()?,
    ))
}
