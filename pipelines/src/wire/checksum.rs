//! Internet checksum helpers: full computation for packets the appliance
//! builds, and incremental update (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m'))
//! for the fields NAT rewrites, so a translation never touches the payload.

/// One's-complement sum of `data` as big-endian 16-bit words (odd tail padded).
pub fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds a 32-bit accumulator into 16 bits.
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field value for `data` (complement of the folded sum).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// Whether `data` (a header with its checksum field in place) sums to
/// zero: `checksum(data) == 0`, but read as native-endian 32-bit words into
/// a 64-bit accumulator (the one's-complement sum does not depend on byte
/// order, RFC 1071 2(B)), so an IPv4 header costs 5 loads and adds instead
/// of 10 byte-swapped ones.
#[inline]
pub fn is_valid(data: &[u8]) -> bool {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    // Any tail (never for an IPv4 header, whose length is a multiple of 4),
    // as native-endian 16-bit words, an odd last byte padded with zero.
    let mut tail = words.remainder().chunks_exact(2);
    for t in &mut tail {
        acc += u64::from(u16::from_ne_bytes([t[0], t[1]]));
    }
    if let [last] = tail.remainder() {
        acc += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    // Fold 64 → 16 bits with end-around carries; the sum is valid when it
    // is all ones (its complement, the checksum of the whole, is zero).
    let acc = (acc & 0xFFFF_FFFF) + (acc >> 32);
    let acc = (acc & 0xFFFF_FFFF) + (acc >> 32);
    fold(acc as u32) == 0xFFFF
}

/// [`is_valid`] of an IPv4 header without options: straight-line code,
/// five 32-bit loads.
#[inline]
pub fn is_valid_20(h: &[u8; 20]) -> bool {
    let w = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let acc = w(0) + w(4) + w(8) + w(12) + w(16);
    let acc = (acc & 0xFFFF_FFFF) + (acc >> 32);
    let acc = (acc & 0xFFFF) + (acc >> 16);
    let acc = (acc & 0xFFFF) + (acc >> 16);
    acc == 0xFFFF
}

/// Updates checksum `hc` after a 16-bit word changed from `old` to `new`.
#[inline]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!hc) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// Updates checksum `hc` after the bytes `old` were replaced by `new` (same
/// even length, e.g. an IPv4 or IPv6 address).
#[inline]
pub fn update_bytes(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    let mut acc = u32::from(!hc);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        acc += u32::from(!u16::from_be_bytes([o[0], o[1]]));
        acc += u32::from(u16::from_be_bytes([n[0], n[1]]));
        // Fold as we go so 16-byte IPv6 addresses cannot overflow.
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example bytes: sum 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    proptest! {
        #[test]
        fn is_valid_agrees_with_checksum(
            mut data in proptest::collection::vec(any::<u8>(), 0..80),
            fix in any::<bool>(),
            at in 0usize..40,
        ) {
            // Half the cases made valid by writing the checksum at an even
            // offset, as a header's field.
            if fix && data.len() >= 2 {
                let at = (at * 2) % (data.len() - data.len() % 2).max(2);
                let at = at.min(data.len() - 2);
                data[at] = 0;
                data[at + 1] = 0;
                let c = checksum(&data);
                data[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
            prop_assert_eq!(is_valid(&data), checksum(&data) == 0);
            if let Some(h) = data.first_chunk::<20>() {
                prop_assert_eq!(is_valid_20(h), checksum(h) == 0);
            }
        }

        #[test]
        fn incremental_equals_recomputed(
            mut data in proptest::collection::vec(any::<u8>(), 4..64),
            at in 0usize..30,
            new in proptest::collection::vec(any::<u8>(), 4..=4),
        ) {
            let at = (at * 2) % ((data.len() / 2 - 1) * 2);
            let before = checksum(&data);
            let old: Vec<u8> = data[at..at + 4].to_vec();
            data[at..at + 4].copy_from_slice(&new);
            let after = checksum(&data);
            let inc = update_bytes(before, &old, &new);
            // 0x0000 and 0xFFFF are both "zero" in one's complement.
            prop_assert!(inc == after || (inc == 0xFFFF && after == 0) || (inc == 0 && after == 0xFFFF));
            let inc16 = update16(update16(before, u16::from_be_bytes([old[0], old[1]]), u16::from_be_bytes([new[0], new[1]])),
                u16::from_be_bytes([old[2], old[3]]), u16::from_be_bytes([new[2], new[3]]));
            prop_assert!(inc16 == after || (inc16 == 0xFFFF && after == 0) || (inc16 == 0 && after == 0xFFFF));
        }
    }
}
