//! The operator's uplink states (drain, down) and weights.

use super::*;
use crate::packet::flow::FlowKey;

fn flow() -> FlowKey {
    FlowKey {
        src: v4(10, 0, 0, 2),
        dst: v4(192, 0, 2, 1),
        src_port: 40000,
        dst_port: 80,
        proto: proto::TCP,
    }
}

fn cands(c: &mut SelectionCore, now: Nanos) -> u64 {
    let sel = Selector::new(Arc::new(c.snapshot(now)));
    policy::candidates(&[0b111, 0], &sel, &flow())
}

#[test]
fn drained_uplink_is_healthy_but_takes_no_new_flows() {
    let mut c = core(3);
    assert!(c.set_admin(1, AdminState::Drained));
    let st = &c.uplink_stats()[1];
    assert!(st.healthy && st.admin == AdminState::Drained);
    let snap = c.snapshot(ms(1));
    assert!(snap.uplinks[1].drained && snap.uplinks[1].link_up);
    // Still healthy: its sessions are not reset by on_uplink_down.
    assert_eq!(snap.healthy_mask(), 0b111);
    assert_eq!(snap.usable_mask(), 0b101);
    assert_eq!(cands(&mut c, ms(2)), 0b101);
    // Resumed: a candidate again.
    assert!(c.set_admin(1, AdminState::Up));
    assert_eq!(cands(&mut c, ms(3)), 0b111);
}

#[test]
fn a_drain_never_leaves_no_uplink() {
    let mut c = core(2);
    c.set_admin(0, AdminState::Drained);
    c.tick(ms(0), &[], &[], &[true, false]);
    // Uplink 1's link is down: the drained one is the only healthy one.
    assert_eq!(cands(&mut c, ms(1)), 0b01);
}

#[test]
fn admin_down_is_a_link_down_that_is_never_probed() {
    let mut c = core(2);
    assert!(c.set_admin(0, AdminState::Down));
    let st = &c.uplink_stats()[0];
    assert!(!st.healthy && st.link_up);
    assert_eq!(st.transitions, 1);
    // An answer does not bring it back; the link state is not its cause.
    c.on_event(&answer(v4(192, 0, 2, 1), 0, Some(ms(5)), true), ms(1));
    c.tick(ms(2), &[], &[], &[true, true]);
    assert!(!c.uplink_stats()[0].healthy);
    let snap = c.snapshot(ms(3));
    assert_eq!(snap.healthy_mask(), 0b10);
    assert!(
        !snap.uplinks[0].link_up,
        "replicate probes only link-up uplinks"
    );
    assert_eq!(cands(&mut c, ms(4)), 0b10);
    c.set_admin(0, AdminState::Up);
    assert!(c.uplink_stats()[0].healthy);
    assert_eq!(c.uplink_stats()[0].transitions, 2);
}

#[test]
fn weights_change_and_unknown_uplinks_are_refused() {
    let mut c = core(2);
    assert!(c.set_weight(1, 5));
    assert_eq!(c.snapshot(ms(1)).uplinks[1].weight, 5);
    assert_eq!(c.uplink_stats()[1].weight, 5);
    assert!(c.set_weight(0, 0));
    assert_eq!(c.uplink_stats()[0].weight, 1);
    assert!(!c.set_weight(2, 3));
    assert!(!c.set_admin(9, AdminState::Down));
}

#[test]
fn rtt_rows_show_each_uplink_freshness_and_the_cache_pick() {
    let mut c = core(2);
    let dst = v4(192, 0, 2, 1);
    // The decided race's winner first; the other copy answers later.
    c.on_event(&answer(dst, 0, Some(ms(10)), true), ms(1));
    c.on_event(&answer(dst, 1, Some(ms(30)), false), ms(2));
    c.on_event(&answer(v4(198, 51, 100, 7), 1, Some(ms(50)), true), ms(3));
    let rows = c.rtt_rows(ms(4), None, 100);
    assert_eq!(rows.len(), 3);
    let cfg = SelectConfig::default();
    let key = DestKey::new(dst, cfg.prefix_v4, cfg.prefix_v6).addr();
    let mine: Vec<_> = rows.iter().filter(|r| r.dest == key).collect();
    assert_eq!(mine.len(), 2);
    assert_eq!((mine[0].uplink, mine[1].uplink), (0, 1));
    assert!(mine
        .iter()
        .all(|r| r.fresh && r.pick == Some(0) && r.prefix == cfg.prefix_v4));
    assert_eq!(mine[0].est.smoothed(), Some(ms(10)));
    assert_eq!((mine[0].age, mine[1].age), (ms(3), ms(2)));
    // Filters and limits.
    let net = Some((v4(192, 0, 2, 0), 24));
    assert_eq!(c.rtt_rows(ms(4), net, 100).len(), 2);
    assert_eq!(c.rtt_rows(ms(4), Some((v4(10, 0, 0, 0), 8)), 100).len(), 0);
    assert_eq!(c.rtt_rows(ms(4), None, 1).len(), 1);
    // A drained uplink is not what a cache hit picks.
    c.set_admin(0, AdminState::Drained);
    assert!(c
        .rtt_rows(ms(4), net, 100)
        .iter()
        .all(|r| r.pick == Some(1)));
    // Past the TTL: stale, no pick.
    let late = ms(5).saturating_add(SelectConfig::default().rtt_cache_ttl);
    assert!(c
        .rtt_rows(late, net, 100)
        .iter()
        .all(|r| !r.fresh && r.pick.is_none()));
}
