//! The bench's argument parsers and table sizing.

use super::*;

#[test]
fn mix_takes_two_shares_and_names_what_is_allowed() {
    assert_eq!(parse_mix("1:1"), Ok(Mix { tcp: 1, udp: 1 }));
    assert_eq!(parse_mix("0:1"), Ok(Mix { tcp: 0, udp: 1 }));
    assert_eq!(parse_mix(" 3 : 1 "), Ok(Mix { tcp: 3, udp: 1 }));
    for bad in ["0:0", "1", "a:b", "1:-1", "1:2:3", "1001:1"] {
        let e = parse_mix(bad).unwrap_err();
        assert!(e.contains("TCP:UDP") && e.contains(bad), "{bad}: {e}");
    }
}

#[test]
fn seconds_must_be_a_bounded_positive_number() {
    assert_eq!(parse_seconds("1"), Ok(1.0));
    assert_eq!(parse_seconds("0.5"), Ok(0.5));
    for bad in ["0", "-1", "nan", "inf", "3601", "x"] {
        assert!(parse_seconds(bad).is_err(), "{bad}");
    }
}

fn args(flows: u32) -> BenchArgs {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct A {
        #[command(flatten)]
        b: BenchArgs,
    }
    let mut a = A::parse_from(["bench"]).b;
    a.flows = flows;
    a
}

#[test]
fn tables_are_raised_to_hold_the_flows_and_each_change_is_named() {
    let mut cfg = config::parse(DEMO).unwrap();
    let before = cfg.nat.max_sessions_per_shard;
    let changed = fit_tables(&mut cfg, &args(1_000_000), 1);
    assert!(cfg.nat.max_sessions_per_shard >= 1_000_000);
    assert!(changed
        .iter()
        .any(|c| c.starts_with(&format!("nat.max_sessions_per_shard: {before} -> "))));
    assert!(plan::validate(&cfg).is_ok());
    // A small bench leaves the demo's limits alone.
    let mut cfg = config::parse(DEMO).unwrap();
    assert!(fit_tables(&mut cfg, &args(64), 1).is_empty());
}

#[test]
fn mode_and_lcores_replace_the_configs_runtime() {
    let mut cfg = config::parse(DEMO).unwrap();
    let mut a = args(64);
    a.mode = Some(ModeArg::RunToCompletion);
    a.lcores = Some(1);
    override_runtime(&mut cfg, &a);
    let p = plan::validate(&cfg).unwrap();
    assert_eq!((p.lcores.len(), p.shards()), (1, 1));
    let mut cfg = config::parse(DEMO).unwrap();
    a.mode = Some(ModeArg::Pipeline);
    override_runtime(&mut cfg, &a);
    let p = plan::validate(&cfg).unwrap();
    assert_eq!((p.lcores.len(), p.groups.len()), (1, 1));
}

#[test]
fn raised_limits_stay_within_what_validation_allows() {
    let mut cfg = config::parse(DEMO).unwrap();
    let mut a = args(10_000_000);
    a.new_per_sec = 100_000_000;
    a.seconds = 3600.0;
    let changed = fit_tables(&mut cfg, &a, 1);
    assert_eq!(cfg.nat.max_sessions_per_shard, 16 * 1024 * 1024);
    assert!(changed.iter().any(|c| c.ends_with("(the most allowed)")));
    plan::validate(&cfg).unwrap();
}
