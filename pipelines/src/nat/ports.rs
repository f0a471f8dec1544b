//! NAT port pools: the ports of the shard's slice of each NAT address and
//! class, their owners and their random allocation.

use super::session::NONE;
use crate::packet::flow::proto;
use crate::topology::NatPortRange;

/// Port-space classes: TCP, UDP and ICMP identifiers are separate
/// namespaces on every NAT address.
pub(super) const CLASSES: usize = 3;

pub(super) fn class_of(protocol: u8) -> usize {
    match protocol {
        proto::TCP => 0,
        proto::UDP => 1,
        _ => 2,
    }
}

/// The ports of one NAT address and class within the shard's slice.
/// `used` is a bitmap of the ports taken (bit `i % 64` of word `i / 64`;
/// the bits past the slice's end are set, so they are never handed out)
/// and `full` a bitmap of its words with no free port, so allocation finds
/// a free port in O(1) (at most 17 words read for 65,536 ports) and a
/// pool costs no work per port when it is made (it is made on the first
/// flow to its address, on the packet path: its arrays are zeroed memory,
/// which the allocator hands out without writing it). `owner` is the head
/// session of the mapping holding a taken port (read it only for a port
/// the bitmap says is taken); `sessions` the live sessions of that mapping
/// (its chain's length, for `mapping_max_sessions`).
///
/// Allocation starts at a random port and takes the first free one from
/// there, wrapping (RFC 6056 algorithm 1): NAT ports are unpredictable,
/// and a port just freed is handed out next only as often as any other.
pub(super) struct PortPool {
    pub(super) base: u16,
    used: Vec<u64>,
    full: Vec<u64>,
    /// Free ports.
    free: usize,
    pub(super) owner: Vec<u32>,
    pub(super) sessions: Vec<u16>,
}

impl PortPool {
    pub(super) fn new(range: NatPortRange) -> PortPool {
        let n = usize::from(range.last.saturating_sub(range.first)) + 1;
        let words = n.div_ceil(64);
        let mut used = vec![0u64; words];
        let mut full = vec![0u64; words.div_ceil(64)];
        if n % 64 != 0 {
            used[words - 1] = !0u64 << (n % 64);
        }
        // Only a one-word pool can be all past-the-end bits.
        if used[words - 1] == !0 {
            full[(words - 1) / 64] |= 1 << ((words - 1) % 64);
        }
        PortPool {
            base: range.first,
            used,
            full,
            free: n,
            owner: vec![0; n],
            sessions: vec![0; n],
        }
    }

    /// The slice index of `port`, if the port is in the slice.
    pub(super) fn index(&self, port: u16) -> Option<usize> {
        let i = usize::from(port.checked_sub(self.base)?);
        (i < self.owner.len()).then_some(i)
    }

    /// Free ports of the pool.
    #[cfg(test)]
    pub(super) fn free_len(&self) -> usize {
        self.free
    }

    /// Whether the port at slice index `i` is free.
    pub(super) fn is_free(&self, i: usize) -> bool {
        self.used[i / 64] & (1 << (i % 64)) == 0
    }

    /// Takes the free port at slice index `i`.
    pub(super) fn take_at(&mut self, i: usize) {
        let w = i / 64;
        debug_assert!(self.is_free(i));
        self.used[w] |= 1 << (i % 64);
        self.free -= 1;
        if self.used[w] == !0 {
            self.full[w / 64] |= 1 << (w % 64);
        }
    }

    /// Takes a random free port; its slice index, or `None` when exhausted.
    pub(super) fn take_random(&mut self, rng: &mut u64) -> Option<usize> {
        if self.free == 0 {
            return None;
        }
        let n = self.owner.len();
        let start = (next_rand(rng) % n as u64) as usize;
        let w0 = start / 64;
        // The start's word from the start bit up, then the next words with
        // a free port (wrapping: the start's word again, whole).
        let here = !self.used[w0] & (!0u64 << (start % 64));
        let (w, free) = if here != 0 {
            (w0, here)
        } else {
            let w = self.next_free_word(w0 + 1)?;
            (w, !self.used[w])
        };
        let i = w * 64 + free.trailing_zeros() as usize;
        self.take_at(i);
        Some(i)
    }

    /// The first word at or after `from` (wrapping) with a free port.
    fn next_free_word(&self, from: usize) -> Option<usize> {
        let words = self.used.len();
        let from = if from >= words { 0 } else { from };
        let (s, b) = (from / 64, from % 64);
        let sums = self.full.len();
        // The summary word of `from` from its bit up, the summary words
        // after it, then the first again whole (wrapping).
        (0..=sums).find_map(|k| {
            let s2 = (s + k) % sums;
            let m = !self.full[s2] & if k == 0 { !0u64 << b } else { !0 };
            let w = s2 * 64 + m.trailing_zeros() as usize;
            (m != 0 && w < words).then_some(w)
        })
    }

    pub(super) fn give_back(&mut self, i: usize) {
        self.owner[i] = NONE;
        self.sessions[i] = 0;
        let w = i / 64;
        debug_assert!(!self.is_free(i));
        self.used[w] &= !(1 << (i % 64));
        self.full[w / 64] &= !(1 << (w % 64));
        self.free += 1;
    }
}

pub(super) fn next_rand(x: &mut u64) -> u64 {
    // xorshift64*: enough to shuffle ports; seeded per run.
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}
