//! The delay line's pure part in virtual time: settings, control file, lanes.

use super::*;

const MS: u64 = 1_000_000;

fn settings(delay_ms: u64, jitter_ms: u64, loss: f64) -> Settings {
    Settings {
        delay_ns: delay_ms * MS,
        jitter_ns: jitter_ms * MS,
        loss,
    }
}

/// Drives a lane in virtual time: frames offered at `arrivals` (ns);
/// returns (send time, tag) of each frame in the order sent, sending
/// each as soon as it is due (the clock jumps to the next due time).
fn drive(lane: &mut Lane, arrivals: &[u64]) -> Vec<(u64, u32)> {
    let mut sent = Vec::new();
    let mut next = 0;
    let mut now = 0u64;
    for _ in 0..10 * arrivals.len() + 10 {
        while next < arrivals.len() && arrivals[next] <= now {
            lane.offer(now, &(next as u32).to_be_bytes());
            next += 1;
        }
        while let Some(f) = lane.due_front(now) {
            sent.push((now, u32::from_be_bytes(f.try_into().unwrap())));
            lane.pop_front(true);
        }
        let next_arrival = arrivals.get(next).copied();
        now = match (next_arrival, lane.next_due()) {
            (Some(a), Some(d)) => a.min(d),
            (Some(a), None) => a,
            (None, Some(d)) => d,
            (None, None) => return sent,
        };
    }
    panic!("drive loop did not finish: livelock");
}

#[test]
fn fixed_delay_is_exact() {
    let mut lane = Lane::new(settings(15, 0, 0.0), 16, 1);
    let arrivals = [0, 1_000, 5 * MS, 5 * MS, 40 * MS];
    let sent = drive(&mut lane, &arrivals);
    let expect: Vec<(u64, u32)> = arrivals
        .iter()
        .enumerate()
        .map(|(i, &t)| (t + 15 * MS, i as u32))
        .collect();
    assert_eq!(sent, expect);
    assert_eq!(lane.counters.frames_in, 5);
    assert_eq!(lane.counters.frames_out, 5);
    assert_eq!(lane.counters.bytes_out, 20);
    assert_eq!(lane.counters.max_queued, 4, "frames 0..=3 overlap in time");
}

#[test]
fn due_front_waits_for_the_due_time() {
    let mut lane = Lane::new(settings(2, 0, 0.0), 4, 1);
    assert_eq!(
        lane.offer(10, b"x"),
        Offer::Queued {
            due_ns: 10 + 2 * MS
        }
    );
    assert_eq!(lane.next_due(), Some(10 + 2 * MS));
    assert!(lane.due_front(10 + 2 * MS - 1).is_none());
    assert_eq!(lane.due_front(10 + 2 * MS), Some(&b"x"[..]));
}

#[test]
fn jitter_stays_in_bounds_and_keeps_order() {
    let mut lane = Lane::new(settings(10, 5, 0.0), 100_000, 7);
    // A frame every 100 us: jitter (5 ms) far exceeds the spacing, so
    // without the order rule frames would overtake each other.
    let arrivals: Vec<u64> = (0..20_000).map(|i| i * 100_000).collect();
    let sent = drive(&mut lane, &arrivals);
    assert_eq!(sent.len(), arrivals.len());
    let mut spread_seen = 0u64;
    for (i, &(t, tag)) in sent.iter().enumerate() {
        assert_eq!(tag as usize, i, "per-direction order kept");
        let extra = t - arrivals[i] - 10 * MS;
        assert!(extra <= 5 * MS, "frame {i} delayed {extra} ns past delay");
        spread_seen = spread_seen.max(extra);
    }
    assert!(spread_seen > 4 * MS, "jitter is actually applied");
    // With widely spaced frames the order rule never binds: each extra
    // delay is an independent uniform draw, mean ~ jitter / 2.
    let mut lane = Lane::new(settings(10, 5, 0.0), 16, 7);
    let arrivals: Vec<u64> = (0..4000).map(|i| i * 100 * MS).collect();
    let sent = drive(&mut lane, &arrivals);
    let mean = sent
        .iter()
        .zip(&arrivals)
        .map(|(&(t, _), &a)| (t - a - 10 * MS) as f64)
        .sum::<f64>()
        / sent.len() as f64;
    assert!(
        (2.3e6..2.7e6).contains(&mean),
        "mean jitter {mean} ns, expected ~2.5 ms"
    );
}

#[test]
fn loss_is_bernoulli_and_reproducible() {
    let run = |seed: u64, p: f64| {
        let mut lane = Lane::new(settings(0, 0, p), 16, seed);
        let outcome: Vec<bool> = (0..100_000u64)
            .map(|i| {
                let o = lane.offer(i, b"f");
                if o != Offer::Lost {
                    lane.pop_front(true);
                }
                o == Offer::Lost
            })
            .collect();
        (lane.counters, outcome)
    };
    let (c, first) = run(3, 0.1);
    assert_eq!(c.frames_in, 100_000);
    assert_eq!(c.lost + c.frames_out, 100_000);
    assert!((9_000..11_000).contains(&c.lost), "lost {}", c.lost);
    assert_eq!(run(3, 0.1).1, first, "same seed, same drops");
    assert_ne!(run(4, 0.1).1, first, "another seed, other drops");
    assert_eq!(run(3, 0.0).0.lost, 0);
    assert_eq!(run(3, 1.0).0.lost, 100_000);
}

#[test]
fn overflow_drops_and_counts_and_memory_is_bounded() {
    let mut lane = Lane::new(settings(100, 0, 0.0), 8, 1);
    for i in 0..20u64 {
        let o = lane.offer(i, &[i as u8; 64]);
        if i < 8 {
            assert!(matches!(o, Offer::Queued { .. }));
        } else {
            assert_eq!(o, Offer::Overflow);
        }
    }
    assert_eq!(lane.counters.overflow, 12);
    assert_eq!(lane.queued(), 8);
    // The queued frames are the first eight, intact.
    let mut now = 100 * MS + 8;
    for i in 0..8u8 {
        assert_eq!(lane.due_front(now), Some(&[i; 64][..]));
        lane.pop_front(true);
    }
    assert_eq!(lane.queued(), 0);
    // Steady state: a queue of ~3 frames cycling through a million
    // frames uses no more buffers than the deepest queue seen.
    let mut lane = Lane::new(settings(3, 0, 0.0), 65536, 1);
    for i in 0..1_000_000u64 {
        now = i * MS;
        lane.offer(now, &[0u8; 1514]);
        while lane.due_front(now).is_some() {
            lane.pop_front(true);
        }
    }
    assert_eq!(lane.counters.max_queued, 4);
    assert_eq!(lane.buffers_allocated(), 4);
}

#[test]
fn tx_error_pops_and_counts() {
    let mut lane = Lane::new(settings(0, 0, 0.0), 4, 1);
    lane.offer(0, b"a");
    lane.offer(0, b"b");
    lane.pop_front(false);
    assert_eq!(lane.due_front(0), Some(&b"b"[..]));
    assert_eq!(lane.counters.tx_errors, 1);
    assert_eq!(lane.counters.frames_out, 0);
}

#[test]
fn delay_cut_keeps_order() {
    let mut lane = Lane::new(settings(30, 0, 0.0), 16, 1);
    assert_eq!(lane.offer(0, b"1"), Offer::Queued { due_ns: 30 * MS });
    lane.set_settings(settings(2, 0, 0.0));
    // Would be due at 3 ms, but may not overtake the frame due at 30.
    assert_eq!(lane.offer(MS, b"2"), Offer::Queued { due_ns: 30 * MS });
    // Once the queue has drained, the new delay applies in full.
    lane.pop_front(true);
    lane.pop_front(true);
    assert_eq!(lane.offer(40 * MS, b"3"), Offer::Queued { due_ns: 42 * MS });
}

#[test]
fn control_file_sets_both_or_one_direction() {
    let base = settings(2, 0, 0.0);
    let c = parse_control("", base).unwrap();
    assert_eq!(c.a_to_b, base);
    assert_eq!(c.b_to_a, base);

    let text = "# lab control\n\
                delay_ms = 40   # both ways\n\
                \n\
                loss=0.1\n\
                b_to_a.delay_ms = 5.5\n\
                jitter_ms = 1\n";
    let c = parse_control(text, base).unwrap();
    assert_eq!(c.a_to_b, settings(40, 1, 0.1));
    assert_eq!(
        c.b_to_a,
        Settings {
            delay_ns: 5_500_000,
            jitter_ns: MS,
            loss: 0.1
        }
    );
    // A direction key wins even when the shared key comes after it.
    let c = parse_control("a_to_b.loss = 1\nloss = 0.2\n", base).unwrap();
    assert_eq!(c.a_to_b.loss, 1.0);
    assert_eq!(c.b_to_a.loss, 0.2);
}

#[test]
fn control_file_errors_name_line_and_key() {
    let base = Settings::none();
    let cases = [
        (
            "delay_ms = 10\nloss = 1.5\n",
            2,
            "loss = 1.5: must be a probability",
        ),
        (
            "delay_ms = -1",
            1,
            "delay_ms = -1: must be a number of milliseconds",
        ),
        ("jitter_ms = 1e9", 1, "jitter_ms = 1000000000: must be"),
        ("delay_ms = fast", 1, "delay_ms = \"fast\": not a number"),
        ("\n\ndelay = 3", 3, "unknown key \"delay\""),
        ("up.delay_ms = 3", 1, "unknown direction \"up\""),
        ("delay_ms 3", 1, "is not `key = value`"),
        ("loss = NaN", 1, "loss = NaN: must be a probability"),
    ];
    for (text, line, want) in cases {
        let e = parse_control(text, base).unwrap_err();
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(e.to_string().contains(want), "{text:?}: {e}");
    }
}

#[test]
fn arguments_are_checked() {
    let args = |a: &str, b: &str, d: f64, j: f64, l: f64, q: usize| DelayLineArgs {
        a: a.into(),
        b: b.into(),
        delay_ms: d,
        jitter_ms: j,
        loss: l,
        seed: None,
        control: None,
        stats: None,
        max_queue: q,
    };
    assert_eq!(
        args("up0", "down0", 2.5, 1.0, 0.25, 10).settings().unwrap(),
        Settings {
            delay_ns: 2_500_000,
            jitter_ns: MS,
            loss: 0.25
        }
    );
    let err = |x: DelayLineArgs| x.settings().unwrap_err();
    assert!(err(args("x", "x", 0.0, 0.0, 0.0, 10)).contains("--a and --b"));
    assert!(err(args("x", "y", -3.0, 0.0, 0.0, 10)).contains("--delay-ms = -3"));
    assert!(err(args("x", "y", 0.0, f64::INFINITY, 0.0, 10)).contains("--jitter-ms"));
    assert!(err(args("x", "y", 0.0, 0.0, 2.0, 10)).contains("--loss = 2"));
    assert!(err(args("x", "y", 0.0, 0.0, 0.0, 0)).contains("--max-queue = 0"));
}
