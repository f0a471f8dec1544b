//! Sets of uplink ids as 64-bit masks, and the rotated scan that breaks
//! ties between equal uplinks (so they take turns).

use crate::topology::MAX_UPLINKS;

/// `1 << i`, or 0 for ids a 64-bit set cannot hold.
pub(super) fn bit(i: usize) -> u64 {
    if i < MAX_UPLINKS {
        1 << i
    } else {
        0
    }
}

/// The set of ids `0..n` (capped at [`MAX_UPLINKS`]).
pub(super) fn first_n(n: usize) -> u64 {
    if n >= MAX_UPLINKS {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// The set bits of a mask, starting at its `k mod popcount`-th set bit and
/// wrapping around: the scan order that breaks ties, so equal uplinks take
/// turns.
pub(super) struct Rotated {
    high: u64,
    low: u64,
}

impl Rotated {
    pub(super) fn new(mask: u64, k: u64) -> Rotated {
        let n = u64::from(mask.count_ones());
        if n == 0 {
            return Rotated { high: 0, low: 0 };
        }
        let mut m = mask;
        for _ in 0..k % n {
            m &= m - 1; // clear the lowest set bit; fewer than n are cleared
        }
        let below = first_n(m.trailing_zeros() as usize);
        Rotated {
            high: mask & !below,
            low: mask & below,
        }
    }
}

impl Iterator for Rotated {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        let m = if self.high != 0 {
            &mut self.high
        } else if self.low != 0 {
            &mut self.low
        } else {
            return None;
        };
        let i = m.trailing_zeros() as usize;
        *m &= *m - 1;
        Some(i)
    }
}

/// The best id of `mask` by `better(a, b)` ("a strictly better than b"),
/// the first in rotated order among equals.
pub(super) fn best_of(
    mask: u64,
    k: u64,
    mut better: impl FnMut(usize, usize) -> bool,
) -> Option<usize> {
    let mut it = Rotated::new(mask, k);
    let mut best = it.next()?;
    for i in it {
        if better(i, best) {
            best = i;
        }
    }
    Some(best)
}
