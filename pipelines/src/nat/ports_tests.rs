//! The port pool's bitmap allocation.

use std::collections::HashSet;

use super::ports::{next_rand, PortPool};
use crate::topology::NatPortRange;

fn pool(first: u16, last: u16) -> PortPool {
    PortPool::new(NatPortRange { first, last })
}

/// Takes every port: each index once, in the slice, then `None`.
fn drain(p: &mut PortPool, rng: &mut u64) -> HashSet<usize> {
    let n = p.owner.len();
    let mut taken = HashSet::new();
    while let Some(i) = p.take_random(rng) {
        assert!(i < n, "index {i} past the slice of {n}");
        assert!(taken.insert(i), "index {i} handed out twice");
        assert!(!p.is_free(i));
    }
    assert_eq!(taken.len(), n);
    assert_eq!(p.free_len(), 0);
    taken
}

#[test]
fn every_port_once_then_exhausted_at_any_slice_size() {
    let mut rng = 7;
    for (first, last) in [
        (5000, 5000),
        (2000, 2062),
        (2000, 2063),
        (2000, 2064),
        (1024, 1024 + 4096 + 6),
        (1024, 65535),
        (0, 65535),
    ] {
        let mut p = pool(first, last);
        assert_eq!(p.free_len(), usize::from(last - first) + 1);
        drain(&mut p, &mut rng);
        assert_eq!(p.take_random(&mut rng), None, "{first}..={last}");
    }
}

#[test]
fn given_back_ports_are_the_only_ones_handed_out_again() {
    let mut rng = 11;
    let mut p = pool(1024, 65535);
    drain(&mut p, &mut rng);
    let back: HashSet<usize> = (0..500)
        .map(|_| (next_rand(&mut rng) % 64512) as usize)
        .collect();
    for &i in &back {
        p.owner[i] = 3;
        p.sessions[i] = 2;
        p.give_back(i);
        assert!(p.is_free(i));
        assert_eq!((p.owner[i], p.sessions[i]), (super::NONE, 0));
    }
    assert_eq!(p.free_len(), back.len());
    let again: HashSet<usize> = (0..back.len())
        .map(|_| p.take_random(&mut rng).expect("a free port"))
        .collect();
    assert_eq!(again, back);
    assert_eq!(p.take_random(&mut rng), None);
}

#[test]
fn a_taken_port_is_skipped_and_allocation_is_not_sequential() {
    let mut rng = 3;
    let mut p = pool(1024, 65535);
    p.take_at(0);
    assert!(!p.is_free(0) && p.is_free(1));
    let ports: Vec<usize> = (0..1000)
        .map(|_| p.take_random(&mut rng).unwrap())
        .collect();
    assert!(!ports.contains(&0));
    let sequential = ports.windows(2).filter(|w| w[1] == w[0] + 1).count();
    assert!(sequential < 10, "{sequential} sequential ports");
}
