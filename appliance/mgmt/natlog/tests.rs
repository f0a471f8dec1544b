use super::*;
use pipelines::nat::{EventKind, EventReason};
use pipelines::Nanos;

fn names() -> Vec<String> {
    vec!["isp-a".into(), "isp-b".into()]
}

#[test]
fn json_line_is_one_event_per_line_with_wall_time() {
    let mut ev = NatEvent::new(
        Nanos(2_500_000_000),
        EventKind::SessionCreated,
        EventReason::None,
    );
    ev.proto = 17;
    ev.inside = "10.0.1.2:40000".parse().unwrap();
    ev.outside = "198.51.100.10:50000".parse().unwrap();
    ev.remote = "203.0.113.11:53".parse().unwrap();
    ev.uplink = 1;
    let epoch = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
    let ms = unix_ms(epoch, &ev);
    assert_eq!(ms, 1_700_000_002_500);
    let line = json_line(&ev, ms, &names());
    assert!(line.ends_with('\n'));
    assert_eq!(line.matches('\n').count(), 1);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["kind"], "session_created");
    assert_eq!(v["proto"], "udp");
    assert_eq!(v["inside"], "10.0.1.2:40000");
    assert_eq!(v["outside"], "198.51.100.10:50000");
    assert_eq!(v["remote"], "203.0.113.11:53");
    assert_eq!(v["uplink"], "isp-b");
    assert_eq!(v["unix_ms"], 1_700_000_002_500u64);
    assert_eq!(v["time_s"], 2.5);
    assert!(v.get("reason").is_none());
}

#[test]
fn json_line_of_a_race_and_an_expiry() {
    let mut ev = NatEvent::new(Nanos(1), EventKind::RaceDecided, EventReason::None);
    ev.proto = 6;
    ev.inside = "[fd00::2]:40000".parse().unwrap();
    ev.outside = "[2001:db8::10]:50000".parse().unwrap();
    ev.remote = "[2001:db8:1::80]:443".parse().unwrap();
    ev.uplink = 0;
    ev.winner = 0;
    ev.races = 2;
    ev.rtts[0] = (0, Some(Nanos(12_400_000)));
    ev.rtts[1] = (1, None);
    let v: serde_json::Value = serde_json::from_str(&json_line(&ev, 0, &names())).unwrap();
    assert_eq!(v["winner"], "isp-a");
    assert_eq!(v["rtt_ms"]["isp-a"], 12.4);
    assert!(v["rtt_ms"]["isp-b"].is_null());
    assert_eq!(v["outside"], "[2001:db8::10]:50000");
    let ev = NatEvent::new(Nanos(1), EventKind::SessionExpired, EventReason::Timeout);
    let v: serde_json::Value = serde_json::from_str(&json_line(&ev, 0, &names())).unwrap();
    assert_eq!(v["reason"], "timeout");
    assert!(v["uplink"].is_null());
}

/// A losing race copy leaving: a delete event (JSON reason `race_lost`
/// with its own RTT, IPFIX natEvent 5) with no winner; a race start is
/// not exported to IPFIX.
#[test]
fn a_lost_race_copy_is_logged_as_a_delete() {
    let mut ev = NatEvent::new(Nanos(1), EventKind::SessionExpired, EventReason::RaceLost);
    ev.proto = 6;
    ev.uplink = 1;
    ev.races = 1;
    ev.rtts[0] = (1, Some(Nanos(30_000_000)));
    let v: serde_json::Value = serde_json::from_str(&json_line(&ev, 0, &names())).unwrap();
    assert_eq!(v["kind"], "session_expired");
    assert_eq!(v["reason"], "race_lost");
    assert_eq!(v["rtt_ms"]["isp-b"], 30.0);
    assert!(v.get("winner").is_none());
    assert_eq!(
        ipfix::nat_event(&ev),
        Some(ipfix::NAT44_SESSION_DELETE),
        "RFC 8158 NAT44 session delete"
    );
    ev.rtts[0] = (1, None);
    let v: serde_json::Value = serde_json::from_str(&json_line(&ev, 0, &names())).unwrap();
    assert!(v["rtt_ms"]["isp-b"].is_null(), "unanswered");
    let start = NatEvent::new(Nanos(1), EventKind::RaceStarted, EventReason::None);
    assert_eq!(ipfix::nat_event(&start), None);
}
