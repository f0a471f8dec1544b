//! The per-packet session indexes (outbound and inbound 5-tuple → slot):
//! a bucketised two-choice hash table built for burst lookups, in the
//! manner of DPDK's `rte_hash` and VPP's bihash.
//!
//! # Layout
//! A bucket is one 64-byte cache line: [`WAYS`] entries of a 16-bit
//! signature (the hash's top bits; 0 marks a free way) and a `u32` slab
//! slot, a bit per way telling whether the entry lives in its alternative
//! bucket, and a count of the entries whose primary bucket this is that
//! live in their alternative one. A key's primary bucket comes from the
//! hash's low 32 bits (multiply-shift onto any bucket count, so the table
//! is sized to `max_sessions` without rounding to a power of two); its
//! alternative is `(offset(sig) - primary) mod buckets`, so an entry's
//! other bucket is known from its bucket and signature alone and entries
//! can move between their two buckets without reading the session.
//!
//! A lookup reads the primary bucket, compares the signatures of its
//! entries at home there and checks the keys of the matches against the
//! slab; only when the bucket's spill count is not zero does it read the
//! alternative bucket. Both steps have addresses known before the data:
//! the burst lookup (`NatShard::find_burst`) touches every packet's bucket
//! first, then every candidate session, then verifies, so the misses of a
//! burst overlap instead of following one another.
//!
//! # Bounds, and why flooding cannot work
//! The hash is keyed with the shard's secret seed, so a remote host can
//! neither aim keys at one bucket nor forge signatures. Whatever the keys,
//! the work is bounded: a lookup reads at most two buckets and verifies at
//! most `2 × WAYS` candidates; an insertion tries its two buckets, then a
//! breadth-first search of at most [`SEARCH_MAX`] buckets for a chain of
//! moves (cuckoo displacement), and past that fails. A failure is an
//! outcome the caller counts (`table_full`), never an allocation, a
//! rehash or a panic: the table is allocated once at creation, with
//! [`LOAD`] entries a bucket at `max_sessions` (80 %: insertion failures
//! are then vanishingly rare for honest keys), i.e. 8 bytes an entry.

use super::session::NONE;

/// Entries in one bucket.
pub(super) const WAYS: usize = 10;
/// Entries a bucket holds on average at the sized capacity.
pub(super) const LOAD: usize = 8;
/// Buckets one insertion's displacement search visits at most.
pub(super) const SEARCH_MAX: usize = 48;

#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(super) struct Bucket {
    sig: [u16; WAYS],
    slot: [u32; WAYS],
    /// Bit `w`: entry `w` lives in its alternative bucket.
    alt: u16,
    /// Entries whose primary bucket is this one, living in their
    /// alternative bucket.
    spill: u16,
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

const EMPTY: Bucket = Bucket {
    sig: [0; WAYS],
    slot: [NONE; WAYS],
    alt: 0,
    spill: 0,
};

impl Bucket {
    /// Ways whose signature is `sig`, as a bit mask.
    #[inline]
    fn matches(&self, sig: u16) -> u16 {
        // Four ways a 64-bit word (two and a half words), lanes compared
        // at once: a lane of `x ^ broadcast` is zero where the signature
        // matches.
        let s = &self.sig;
        let word = |i: usize| {
            u64::from(s[i])
                | u64::from(s[i + 1]) << 16
                | u64::from(s[i + 2]) << 32
                | u64::from(s[i + 3]) << 48
        };
        let last = u64::from(s[8]) | u64::from(s[9]) << 16 | 0xFFFF_FFFF << 32;
        let b = u64::from(sig) * 0x0001_0001_0001_0001;
        let m = zero_lanes(word(0) ^ b) | zero_lanes(word(4) ^ b) << 4 | zero_lanes(last ^ b) << 8;
        // The padding lanes of `last` match a signature of 0xFFFF.
        m & ((1 << WAYS) - 1)
    }

    #[inline]
    fn free_way(&self) -> Option<usize> {
        self.sig.iter().position(|&s| s == 0)
    }
}

/// [`Bucket::matches`] of a bucket with signatures `sigs` (tests).
#[cfg(test)]
pub(super) fn match_mask(sigs: [u16; WAYS], sig: u16) -> u16 {
    Bucket { sig: sigs, ..EMPTY }.matches(sig)
}

/// The 16-bit lanes of `x` that are zero, as the low 4 bits (exact: no
/// borrow crosses a lane).
#[inline]
fn zero_lanes(x: u64) -> u16 {
    const LOW: u64 = 0x7FFF_7FFF_7FFF_7FFF;
    // A lane's top bit is set in `t` unless the lane is zero.
    let t = ((x & LOW) + LOW) | x;
    let z = (!t & !LOW) >> 15; // bit 0, 16, 32, 48 per zero lane
    ((z.wrapping_mul(0x0000_2000_4000_8001) >> 45) & 0xF) as u16
}

/// The home of a key: its primary bucket and signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Home {
    pub(super) bucket: usize,
    pub(super) sig: u16,
}

#[derive(Clone, Debug)]
pub(super) struct SigIndex {
    buckets: Vec<Bucket>,
    len: usize,
    /// Bumped by every insertion and removal: a slot found at one
    /// generation is still what a lookup of the same key would find while
    /// the generation has not moved (see `NatShard::lookup`).
    generation: u32,
}

impl SigIndex {
    /// An index for up to `cap` entries at [`LOAD`] a bucket.
    pub(super) fn with_capacity(cap: usize) -> SigIndex {
        let n = cap.div_ceil(LOAD).max(1);
        SigIndex {
            buckets: vec![EMPTY; n],
            len: 0,
            generation: 0,
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The generation: changes whenever an entry is added or removed.
    #[inline]
    pub(super) fn generation(&self) -> u32 {
        self.generation
    }

    /// Bytes the buckets take.
    pub(super) fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }

    /// The primary bucket and signature of hash `h`.
    #[inline]
    pub(super) fn home(&self, h: u64) -> Home {
        let n = self.buckets.len() as u64;
        let bucket = (((h & 0xffff_ffff) * n) >> 32) as usize;
        let sig = ((h >> 48) as u16).max(1);
        Home { bucket, sig }
    }

    /// The other bucket of an entry with signature `sig` in bucket `b`
    /// (an involution: the alternative of the alternative is `b`).
    #[inline]
    fn alt(&self, b: usize, sig: u16) -> usize {
        let n = self.buckets.len();
        let off = ((u64::from(sig) * n as u64) >> 16) as usize;
        let x = off + n - b;
        if x >= n {
            x - n
        } else {
            x
        }
    }

    /// Reads the first word of `home`'s bucket: an independent load that
    /// brings the line in (the burst lookup's "prefetch").
    #[inline]
    pub(super) fn touch(&self, home: Home) -> u16 {
        self.buckets.get(home.bucket).map_or(0, |b| b.sig[0])
    }

    /// The first slot at home in `home`'s primary bucket whose signature
    /// matches: the session the burst lookup touches before verifying.
    /// Without one, when entries of this bucket spilt into their
    /// alternative, that bucket's line is read instead (brought in for the
    /// verification) and `None` returned.
    #[inline]
    pub(super) fn candidate(&self, home: Home) -> Option<u32> {
        let b = self.buckets.get(home.bucket)?;
        let m = b.matches(home.sig) & !b.alt;
        if m != 0 {
            return Some(b.slot[m.trailing_zeros() as usize]);
        }
        if b.spill != 0 {
            let a = self.alt(home.bucket, home.sig);
            std::hint::black_box(self.buckets.get(a).map_or(0, |x| x.sig[0]));
        }
        None
    }

    /// The slot whose key `eq` confirms, among the entries of `home`.
    #[inline]
    pub(super) fn find(&self, home: Home, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let b = &self.buckets[home.bucket];
        let mut m = b.matches(home.sig) & !b.alt;
        while m != 0 {
            let s = b.slot[m.trailing_zeros() as usize];
            if eq(s) {
                return Some(s);
            }
            m &= m - 1;
        }
        if b.spill == 0 {
            return None;
        }
        let a = &self.buckets[self.alt(home.bucket, home.sig)];
        let mut m = a.matches(home.sig) & a.alt;
        while m != 0 {
            let s = a.slot[m.trailing_zeros() as usize];
            if eq(s) {
                return Some(s);
            }
            m &= m - 1;
        }
        None
    }

    fn put(&mut self, b: usize, w: usize, sig: u16, slot: u32, in_alt: bool) {
        let bk = &mut self.buckets[b];
        bk.sig[w] = sig;
        bk.slot[w] = slot;
        if in_alt {
            bk.alt |= 1 << w;
        } else {
            bk.alt &= !(1 << w);
        }
    }

    /// Moves the entry in way `w` of bucket `from` to way `to_w` of its
    /// other bucket `to`.
    fn shift(&mut self, from: usize, w: usize, to: usize, to_w: usize) {
        let bk = self.buckets[from];
        let (sig, slot, was_alt) = (bk.sig[w], bk.slot[w], bk.alt & (1 << w) != 0);
        if was_alt {
            // Back home: its primary is `to`.
            self.buckets[to].spill -= 1;
        } else {
            self.buckets[from].spill += 1;
        }
        self.put(to, to_w, sig, slot, !was_alt);
    }

    /// Adds `slot` under hash `h`; `false` when no room was found within
    /// the search bound (the table is left as it was).
    pub(super) fn insert(&mut self, h: u64, slot: u32) -> bool {
        let Home { bucket: b, sig } = self.home(h);
        // Moves and failures change no lookup's answer, but counting every
        // attempt keeps the rule simple.
        self.generation = self.generation.wrapping_add(1);
        if let Some(w) = self.buckets[b].free_way() {
            self.put(b, w, sig, slot, false);
            self.len += 1;
            return true;
        }
        let a = self.alt(b, sig);
        if a != b {
            if let Some(w) = self.buckets[a].free_way() {
                self.put(a, w, sig, slot, true);
                self.buckets[b].spill += 1;
                self.len += 1;
                return true;
            }
        }
        let Some((root, w)) = self.make_room(b, a) else {
            return false;
        };
        let in_alt = root != b;
        if in_alt {
            self.buckets[b].spill += 1;
        }
        self.put(root, w, sig, slot, in_alt);
        self.len += 1;
        true
    }

    /// Frees a way in bucket `b` or `a` (both full) by a chain of moves
    /// found breadth first; returns the bucket and way freed.
    fn make_room(&mut self, b: usize, a: usize) -> Option<(usize, usize)> {
        // (bucket, parent node, way of the parent's entry that moves here)
        let mut nodes = [(0usize, usize::MAX, 0usize); SEARCH_MAX];
        let mut n = 0;
        nodes[n] = (b, usize::MAX, 0);
        n += 1;
        if a != b {
            nodes[n] = (a, usize::MAX, 0);
            n += 1;
        }
        let mut i = 0;
        while i < n {
            let x = nodes[i].0;
            for w in 0..WAYS {
                let y = self.alt(x, self.buckets[x].sig[w]);
                if y == x || self.on_path(&nodes, i, y) {
                    continue;
                }
                if let Some(yw) = self.buckets[y].free_way() {
                    // Walk the chain back: each entry moves into the way
                    // its successor left.
                    self.shift(x, w, y, yw);
                    let (mut node, mut hole) = (i, w);
                    while nodes[node].1 != usize::MAX {
                        let (cur, parent, pw) = nodes[node];
                        self.shift(nodes[parent].0, pw, cur, hole);
                        node = parent;
                        hole = pw;
                    }
                    return Some((nodes[node].0, hole));
                }
                if n < SEARCH_MAX {
                    nodes[n] = (y, i, w);
                    n += 1;
                }
            }
            i += 1;
        }
        None
    }

    /// Whether bucket `y` is node `i` or one of its ancestors.
    fn on_path(&self, nodes: &[(usize, usize, usize)], mut i: usize, y: usize) -> bool {
        loop {
            if nodes[i].0 == y {
                return true;
            }
            if nodes[i].1 == usize::MAX {
                return false;
            }
            i = nodes[i].1;
        }
    }

    /// Removes the entry of `slot` under hash `h`; whether it was there.
    pub(super) fn remove(&mut self, h: u64, slot: u32) -> bool {
        let Home { bucket: b, sig } = self.home(h);
        self.generation = self.generation.wrapping_add(1);
        let bk = &mut self.buckets[b];
        let m = bk.matches(sig) & !bk.alt;
        if let Some(w) = (0..WAYS).find(|&w| m & (1 << w) != 0 && bk.slot[w] == slot) {
            bk.sig[w] = 0;
            bk.slot[w] = NONE;
            self.len -= 1;
            return true;
        }
        if bk.spill == 0 {
            return false;
        }
        let a = self.alt(b, sig);
        let ak = &mut self.buckets[a];
        let m = ak.matches(sig) & ak.alt;
        if let Some(w) = (0..WAYS).find(|&w| m & (1 << w) != 0 && ak.slot[w] == slot) {
            ak.sig[w] = 0;
            ak.slot[w] = NONE;
            ak.alt &= !(1 << w);
            self.buckets[b].spill -= 1;
            self.len -= 1;
            return true;
        }
        false
    }

    /// Every entry's slot (tests, invariant checks).
    #[cfg(test)]
    pub(super) fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.buckets.iter().flat_map(|b| {
            (0..WAYS)
                .filter(move |&w| b.sig[w] != 0)
                .map(move |w| b.slot[w])
        })
    }

    /// Checks the spill counts and alternative bits (tests).
    #[cfg(test)]
    pub(super) fn check(&self) {
        let mut spill = vec![0u16; self.buckets.len()];
        let mut len = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            for w in 0..WAYS {
                if b.sig[w] == 0 {
                    assert_eq!(b.alt & (1 << w), 0, "a free way is not in its alternative");
                    continue;
                }
                len += 1;
                if b.alt & (1 << w) != 0 {
                    spill[self.alt(i, b.sig[w])] += 1;
                }
            }
        }
        assert_eq!(len, self.len);
        for (i, b) in self.buckets.iter().enumerate() {
            assert_eq!(b.spill, spill[i], "spill count of bucket {i}");
        }
    }

    /// The number of buckets (tests).
    #[cfg(test)]
    pub(super) fn buckets(&self) -> usize {
        self.buckets.len()
    }
}
