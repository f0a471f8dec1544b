//! The fragment tracker, alone and behind classify → translate.
//!
//! Input: the first byte picks the mode.
//! - even: tracker operations, 8 bytes each (kind, datagram, offset,
//!   length, flags, time step): no panic, and the tracker never holds or
//!   tracks more than its limits, whatever the order;
//! - odd: frames, each `port (1 byte) | length (2 bytes, big endian) |
//!   frame`, through classify and the translate stages of a two-shard site
//!   with the hand-off between them: no panic, and every fragment is
//!   forwarded, held or dropped with a reason (packets in = out + dropped +
//!   held).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipelines::frag::{FragKey, FragLimits, FragTracker, Fragment, Later};
use pipelines::nat::{HostLimits, NatConfig};
use pipelines::stages::classify::Classify;
use pipelines::stages::translate::Translate;
use pipelines::{Burst, HeapBuf, Nanos, PacketBuf, StageCounters};

fn tracker_ops(data: &[u8]) {
    let limits = FragLimits {
        max_held: 8,
        max_datagrams: 4,
        timeout: Nanos::from_millis(50),
        max_fragments: 6,
    };
    let counters = StageCounters::default();
    let mut t: FragTracker<u32, u8> = FragTracker::new(limits);
    let mut now = Nanos::ZERO;
    for (i, op) in data.chunks_exact(8).enumerate() {
        now = Nanos(now.0 + u64::from(op[5]) * 1_000_000);
        let key = FragKey {
            src: [10, 0, 0, op[1] & 7].into(),
            dst: [203, 0, 113, 5].into(),
            id: u32::from(op[1] >> 3),
            proto: 17,
        };
        let f = Fragment {
            offset: u32::from(u16::from_be_bytes([op[2], op[3]])),
            len: u32::from(op[4]) * 8 + u32::from(op[6] & 7),
            more: op[6] & 0x80 != 0,
            header: 20,
        };
        match op[0] % 4 {
            0 => {
                let _ = t.first(now, key, Fragment { offset: 0, ..f }, op[7], &counters);
            }
            1 | 2 => match t.later(now, key, f, i as u32, &counters) {
                Later::Pass(..) | Later::Held | Later::Drop(..) => {}
            },
            _ => {
                t.sweep(now, &counters);
                while t.pop_ready().is_some() {}
            }
        }
        assert!(t.held() <= limits.max_held);
        assert!(t.datagrams() <= limits.max_datagrams);
    }
}

struct Site {
    classify: Classify,
    translate: Vec<Translate>,
}

fn site() -> Site {
    let topo = pipelines::testing::site(2);
    let cfg = NatConfig {
        fragments: FragLimits {
            max_held: 16,
            max_datagrams: 8,
            ..FragLimits::default()
        },
        // Small tables: the site is built for every input.
        max_sessions: 1024,
        max_races: 64,
        hosts: HostLimits {
            max_hosts: 64,
            ..HostLimits::default()
        },
        ..NatConfig::default()
    };
    Site {
        classify: Classify::new(topo.clone()),
        translate: (0..2).map(|s| Translate::new(topo.clone(), s, cfg.clone())).collect(),
    }
}

fn frames(mut data: &[u8]) {
    let mut s = site();
    let mut now = Nanos::from_secs(1);
    let mut sent = 0u64;
    let mut out = 0u64;
    while data.len() >= 3 {
        let port = u16::from(data[0] % 4);
        let len = usize::from(u16::from_be_bytes([data[1], data[2]])).min(data.len() - 3);
        let frame = &data[3..3 + len];
        data = &data[3 + len..];
        let Some(mut b) = pipelines::testing::pool().alloc_with(frame) else {
            continue;
        };
        b.meta_mut().in_port = port;
        now = Nanos(now.0 + 3_000_000);
        if s.classify.classify(&mut b).is_err() {
            continue;
        }
        sent += 1;
        let mut pending = vec![b];
        while let Some(p) = pending.pop() {
            let shard = usize::from(p.meta().shard) % 2;
            let t = &mut s.translate[shard];
            let mut input: Burst<HeapBuf> = Burst::new();
            input.push(p);
            while !input.is_empty() || t.fragments_ready() {
                let mut o = Burst::new();
                t.process(now, &mut input, &mut o);
                for p in o.drain(..) {
                    if p.meta().hairpin {
                        pending.insert(0, p);
                    } else {
                        out += 1;
                    }
                }
            }
        }
        for t in &mut s.translate {
            t.sweep(now);
        }
    }
    let dropped: u64 = s.translate.iter().map(|t| t.counters.total_drops()).sum();
    let held: u64 = s.translate.iter().map(|t| t.nat.counters.fragments_held.get()).sum();
    // A handed-off packet enters two translate stages; a race copy may add
    // packets: out + dropped + held covers at least what was sent.
    assert!(out + dropped + held >= sent, "{out} + {dropped} + {held} < {sent}");
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((m, rest)) if m % 2 == 0 => tracker_ops(rest),
        Some((_, rest)) => frames(rest),
        None => {}
    }
});
