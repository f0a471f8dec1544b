use super::bucket::{SigIndex, LOAD, WAYS};
use super::ports::next_rand;
use super::*;
use crate::packet::flow::{proto, FlowKey};
use crate::packet::time::Nanos;
use crate::testing::site;
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

/// A keyed-looking hash of a test key (any well-mixed function will do:
/// the index only sees hashes).
fn mix(k: u64) -> u64 {
    let mut x = k ^ 0x9E37_79B9_7F4A_7C15;
    next_rand(&mut x) ^ next_rand(&mut x).rotate_left(29)
}

/// The index, looked up as a map from key to slot: slot `k` belongs to key
/// `k`, so `eq` compares slots.
fn get(ix: &SigIndex, k: u64) -> Option<u32> {
    ix.find(ix.home(mix(k)), |s| u64::from(s) == k)
}

#[test]
fn insert_lookup_delete() {
    let mut ix = SigIndex::with_capacity(1000);
    for k in 0..1000u64 {
        assert!(ix.insert(mix(k), k as u32), "key {k}");
    }
    ix.check();
    assert_eq!(ix.len(), 1000);
    for k in 0..1000u64 {
        assert_eq!(get(&ix, k), Some(k as u32));
    }
    assert_eq!(get(&ix, 5000), None);
    for k in (0..1000u64).step_by(2) {
        assert!(ix.remove(mix(k), k as u32));
        assert!(!ix.remove(mix(k), k as u32), "removed twice");
    }
    ix.check();
    for k in 0..1000u64 {
        assert_eq!(get(&ix, k), (k % 2 == 1).then_some(k as u32));
    }
    assert_eq!(ix.len(), 500);
}

#[test]
fn sized_capacity_fills_without_failure_and_takes_8_bytes_an_entry() {
    let cap = 100_000;
    let mut ix = SigIndex::with_capacity(cap);
    assert_eq!(ix.bytes(), cap.div_ceil(LOAD) * 64);
    let mut x = 7u64;
    let keys: Vec<u64> = (0..cap).map(|_| next_rand(&mut x)).collect();
    for (i, &k) in keys.iter().enumerate() {
        assert!(ix.insert(mix(k), i as u32), "entry {i} of {cap}");
    }
    ix.check();
    for (i, &k) in keys.iter().enumerate() {
        let h = ix.home(mix(k));
        assert_eq!(ix.find(h, |s| s == i as u32), Some(i as u32));
    }
}

#[test]
fn a_full_table_refuses_and_stays_intact() {
    // 2 buckets, 20 ways: past them every insertion fails, nothing moves.
    let mut ix = SigIndex::with_capacity(2 * LOAD);
    assert_eq!(ix.buckets(), 2);
    let mut stored = Vec::new();
    for k in 0..100u64 {
        if ix.insert(mix(k), k as u32) {
            stored.push(k);
        }
        ix.check();
    }
    assert!(
        stored.len() <= 2 * WAYS && stored.len() >= WAYS,
        "{}",
        stored.len()
    );
    assert_eq!(ix.len(), stored.len());
    for &k in &stored {
        assert_eq!(get(&ix, k), Some(k as u32));
    }
    // Room again after a removal.
    assert!(ix.remove(mix(stored[0]), stored[0] as u32));
    let fresh = (100..).find(|&k| ix.insert(mix(k), k as u32));
    assert!(fresh.is_some_and(|k| k < 10_000));
}

#[test]
fn equal_hashes_share_two_buckets_and_are_told_apart_by_key() {
    // Flooding with one hash: at most two buckets' worth are stored, the
    // rest refused, and each stored entry is found by its own key.
    let mut ix = SigIndex::with_capacity(10_000);
    let h = mix(42);
    let mut stored = Vec::new();
    for slot in 0..3 * WAYS as u32 {
        if ix.insert(h, slot) {
            stored.push(slot);
        }
    }
    ix.check();
    assert_eq!(stored.len(), 2 * WAYS, "two full buckets");
    let home = ix.home(h);
    for &s in &stored {
        assert_eq!(ix.find(home, |x| x == s), Some(s));
    }
    assert_eq!(ix.find(home, |x| x == 99), None);
    // Deletion takes the named slot, not another with the same signature.
    assert!(ix.remove(h, stored[3]));
    assert_eq!(ix.find(home, |x| x == stored[3]), None);
    assert_eq!(ix.find(home, |x| x == stored[4]), Some(stored[4]));
    ix.check();
}

#[test]
fn same_signature_other_bucket_is_not_a_match() {
    let mut ix = SigIndex::with_capacity(10_000);
    let a = ix.home(mix(1));
    // A hash with the same signature and another primary bucket.
    let other = (2..)
        .map(mix)
        .find(|&h| {
            let o = ix.home(h);
            o.sig == a.sig && o.bucket != a.bucket
        })
        .unwrap();
    assert!(ix.insert(other, 7));
    assert_eq!(
        ix.find(a, |_| true),
        None,
        "no candidate outside the key's home"
    );
    assert_eq!(ix.candidate(a), None);
    let o = ix.home(other);
    assert_eq!(ix.candidate(o), Some(7));
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u16),
    Remove(u16),
    Find(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u16>().prop_map(|k| Op::Insert(k % 512)),
        2 => any::<u16>().prop_map(|k| Op::Remove(k % 512)),
        2 => any::<u16>().prop_map(|k| Op::Find(k % 512)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// The index behaves as a map from key to slot (a `HashMap` model),
    /// with its bookkeeping intact after every step, on a table small
    /// enough (300 entries for up to 512 keys) that displacement and
    /// refusals happen.
    #[test]
    fn behaves_like_a_map(ops in proptest::collection::vec(op(), 1..400)) {
        let mut ix = SigIndex::with_capacity(240);
        let mut model: HashMap<u16, u32> = HashMap::new();
        for o in ops {
            match o {
                Op::Insert(k) => {
                    if model.contains_key(&k) {
                        continue;
                    }
                    if ix.insert(mix(u64::from(k)), u32::from(k)) {
                        model.insert(k, u32::from(k));
                    } else {
                        prop_assert!(model.len() > 240 * 9 / 10, "refused at {}", model.len());
                    }
                }
                Op::Remove(k) => {
                    let was = model.remove(&k).is_some();
                    prop_assert_eq!(ix.remove(mix(u64::from(k)), u32::from(k)), was);
                }
                Op::Find(k) => {
                    prop_assert_eq!(get(&ix, u64::from(k)), model.get(&k).copied());
                }
            }
            prop_assert_eq!(ix.len(), model.len());
        }
        ix.check();
        for (&k, &s) in &model {
            prop_assert_eq!(get(&ix, u64::from(k)), Some(s));
        }
        let mut slots: Vec<u32> = ix.slots().collect();
        slots.sort_unstable();
        let mut want: Vec<u32> = model.values().copied().collect();
        want.sort_unstable();
        prop_assert_eq!(slots, want);
    }
}

/// The burst lookup finds what one lookup at a time finds, on random
/// flows both ways, present and absent, in bursts of mixed directions.
#[test]
fn burst_lookup_equals_single_lookups() {
    let now = Nanos::from_secs(1);
    let mut nat = NatShard::new(
        NatConfig {
            max_sessions: 4096,
            seed: 3,
            ..NatConfig::default()
        },
        &site(1),
        0,
    );
    let mut x = 11u64;
    let flow = |x: &mut u64| {
        let r = next_rand(x);
        FlowKey {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, (r >> 8) as u8 & 3, r as u8)),
            dst: IpAddr::V4(Ipv4Addr::new(198, 51, 100, (r >> 16) as u8)),
            src_port: 1024 + (r >> 24) as u16 % 2048,
            dst_port: 53,
            proto: if r >> 40 & 1 == 0 {
                proto::UDP
            } else {
                proto::TCP
            },
        }
    };
    let mut keys = Vec::new();
    for _ in 0..3000 {
        let k = flow(&mut x);
        if nat.lookup_out(&k, now).is_none() && nat.create_out(&k, 0, [2; 6], now).is_ok() {
            keys.push(k);
        }
    }
    assert!(keys.len() > 2000, "{}", keys.len());
    let mut probes: Vec<(FlowKey, bool)> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match i % 3 {
            0 => probes.push((*k, false)),
            1 => {
                let idx = nat.find(k, false).unwrap();
                let s = nat.session(idx).unwrap().clone();
                probes.push((nat.inbound_key(&s), true));
            }
            _ => probes.push((flow(&mut x), i % 2 == 0)),
        }
    }
    let mut found = 0;
    for chunk in probes.chunks(crate::packet::burst::BURST_MAX) {
        let mut ks: Vec<Option<(&FlowKey, bool)>> =
            chunk.iter().map(|(k, d)| Some((k, *d))).collect();
        ks[0] = None;
        let mut out = vec![Some(u32::MAX); ks.len()];
        nat.find_burst(&ks, &mut out);
        assert_eq!(out[0], None, "no key, no slot");
        for (i, (k, d)) in chunk.iter().enumerate().skip(1) {
            assert_eq!(out[i], nat.find(k, *d), "probe {i}");
            found += usize::from(out[i].is_some());
        }
    }
    assert!(found >= keys.len() / 2, "{found}");
}

#[test]
fn signature_match_is_exact_for_every_way_and_value() {
    let mut x = 5u64;
    let special = [1u16, 2, 0x7FFF, 0x8000, 0x8001, 0xFFFE, 0xFFFF, 0];
    for round in 0..20_000 {
        let mut sigs = [0u16; WAYS];
        for s in sigs.iter_mut() {
            let r = next_rand(&mut x);
            *s = if r & 1 == 0 {
                special[(r >> 1) as usize % special.len()]
            } else {
                (r >> 8) as u16
            };
        }
        let r = next_rand(&mut x);
        let sig = if r & 1 == 0 {
            sigs[(r >> 1) as usize % WAYS]
        } else {
            special[(r >> 1) as usize % special.len()]
        };
        let mut want = 0u16;
        for (w, &s) in sigs.iter().enumerate() {
            want |= u16::from(s == sig) << w;
        }
        assert_eq!(
            super::bucket::match_mask(sigs, sig),
            want,
            "round {round}: {sigs:x?} against {sig:#x}"
        );
    }
}

/// A shard with `n` outbound UDP sessions from 10.0.x.y, and their keys.
fn shard_with(n: usize) -> (NatShard, Vec<FlowKey>) {
    let now = Nanos::from_secs(1);
    let mut nat = NatShard::new(
        NatConfig {
            max_sessions: 4096,
            seed: 9,
            ..NatConfig::default()
        },
        &site(1),
        0,
    );
    let keys: Vec<FlowKey> = (0..n)
        .map(|i| FlowKey {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8)),
            dst: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            src_port: 4000 + i as u16,
            dst_port: 53,
            proto: proto::UDP,
        })
        .collect();
    for k in &keys {
        nat.create_out(k, 0, [2; 6], now).expect("created");
    }
    (nat, keys)
}

fn hinted(nat: &NatShard, keys: &[(FlowKey, bool, u64)]) -> Vec<Option<Hint>> {
    let probes: Vec<Option<Probe<'_>>> = keys
        .iter()
        .map(|(key, inbound, hash)| {
            Some(Probe {
                key,
                inbound: *inbound,
                hash: *hash,
            })
        })
        .collect();
    let mut out = vec![None; keys.len()];
    nat.find_burst_hinted(&probes, &mut out);
    out
}

#[test]
fn classify_flow_hash_is_the_index_hash_and_a_wrong_one_only_misses() {
    let (nat, keys) = shard_with(64);
    let h = nat.config().flow_hasher();
    let mut probes = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let s = nat.session(nat.find(k, false).unwrap()).unwrap().clone();
        let back = nat.inbound_key(&s);
        probes.push((*k, false, h.hash(k)));
        probes.push((back, true, h.hash(&back)));
        // Another key's hash: verified, so never another session.
        probes.push((*k, false, h.hash(&keys[(i + 1) % keys.len()])));
    }
    for chunk in probes.chunks(crate::packet::burst::BURST_MAX) {
        let out = hinted(&nat, chunk);
        for ((k, inbound, hash), o) in chunk.iter().zip(&out) {
            let want = nat.find(k, *inbound);
            assert!(want.is_some());
            if *hash == h.hash(k) {
                // Classify's own hash finds every session, both ways.
                assert_eq!(o.map(|h| h.slot), want, "{k:?}");
            } else {
                // A wrong hash misses (the key is verified), or by chance
                // lands on the right bucket; never another session.
                assert!(o.is_none() || o.map(|h| h.slot) == want, "{k:?}");
            }
        }
    }
    // Not the hash of another configuration's seed.
    let other = NatConfig {
        seed: 10,
        ..NatConfig::default()
    };
    assert_ne!(other.flow_hasher().hash(&keys[0]), h.hash(&keys[0]));
}

#[test]
fn a_hint_is_trusted_only_until_a_session_enters_or_leaves() {
    let now = Nanos::from_secs(2);
    let (mut nat, keys) = shard_with(8);
    let h = nat.config().flow_hasher();
    let probes: Vec<(FlowKey, bool, u64)> = keys.iter().map(|k| (*k, false, h.hash(k))).collect();
    let hints = hinted(&nat, &probes);
    let slots: Vec<u32> = hints.iter().map(|h| h.unwrap().slot).collect();
    // Unchanged index: the hint is the answer.
    assert_eq!(nat.lookup(&keys[0], false, hints[0], now), Some(slots[0]));
    // Session 1 leaves and a new one takes its slot: the old key's hint
    // must not give the new session.
    nat.remove(slots[1]).unwrap();
    let newcomer = FlowKey {
        dst_port: 54,
        ..keys[1]
    };
    let (idx, _) = nat.create_out(&newcomer, 0, [2; 6], now).expect("created");
    assert_eq!(idx, slots[1], "the freed slot is reused");
    assert_eq!(nat.lookup(&keys[1], false, hints[1], now), None);
    assert_eq!(nat.lookup(&newcomer, false, hints[1], now), Some(idx));
    // Other hints of the burst are checked again, and still right.
    for i in 2..8 {
        assert_eq!(nat.lookup(&keys[i], false, hints[i], now), Some(slots[i]));
    }
    // A hint of the outbound index is no hint for the inbound one.
    let s = nat.session(slots[2]).unwrap().clone();
    let back = nat.inbound_key(&s);
    let fresh = hinted(&nat, &[(keys[3], false, 0)]);
    assert_eq!(nat.lookup(&back, true, fresh[0], now), Some(slots[2]));
}
