use super::*;

fn load(tcp: u64, udp: u64) -> Load {
    Load { tcp, udp }
}

#[test]
fn well_formed_values_parse() {
    assert_eq!(parse_load("3 4 1 1"), Ok(load(3, 4)));
    assert_eq!(parse_load("3 4"), Ok(load(3, 4)));
    assert_eq!(parse_load("  0\t0  2 1000 "), Ok(load(0, 0)));
    assert_eq!(parse_load(&format_load(load(7, 9), 2, 3)), Ok(load(7, 9)));
}

#[test]
fn huge_counts_are_clamped_not_wrapped() {
    let max = MAX_SESSIONS;
    assert_eq!(parse_load("4294967296 5 1 1"), Ok(load(max, 5)));
    assert_eq!(
        parse_load("18446744073709551615 18446744073709551615"),
        Ok(load(max, max))
    );
    // Beyond u64: saturates, then clamps.
    assert_eq!(
        parse_load("99999999999999999999999999 1 1 1"),
        Ok(load(max, 1))
    );
    assert_eq!(clamp(load(u64::MAX, 1)), load(max, 1));
    // What this appliance writes is clamped too.
    assert_eq!(format_load(load(u64::MAX, 0), 1, 1), format!("{max} 0 1 1"));
}

#[test]
fn negative_or_garbage_values_are_refused() {
    for v in [
        "-1 0 1 1",
        "0 -5",
        "+1 2",
        "1.5 2",
        "0x10 1",
        "a b",
        "1 2 3 4 5",
    ] {
        assert!(parse_load(v).is_err(), "{v}");
    }
    assert_eq!(parse_load("1"), Err(Invalid::Fields));
    assert_eq!(parse_load(""), Err(Invalid::Fields));
    assert_eq!(parse_load("1 2 3"), Err(Invalid::Fields));
    assert_eq!(parse_load("-1 0"), Err(Invalid::Number));
    assert_eq!(parse_load("1 2 0 1"), Err(Invalid::Weight));
    assert_eq!(parse_load("1 2 1 1001"), Err(Invalid::Weight));
    assert_eq!(parse_load(&"1".repeat(200)), Err(Invalid::TooLong));
}

#[test]
fn clamped_peer_loads_never_overflow_the_database_arithmetic() {
    use crate::redirect::db::DbConfig;
    let cfg = DbConfig {
        tcp_session_weight: 1_000,
        udp_session_weight: 1_000,
        ..DbConfig::default()
    };
    let l = load(MAX_SESSIONS, MAX_SESSIONS);
    let w = l.weighted(&cfg);
    assert_eq!(w, 2 * MAX_SESSIONS * 1_000);
    // And an unclamped one saturates instead of wrapping.
    assert_eq!(load(u64::MAX, u64::MAX).weighted(&cfg), u64::MAX);
}
