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
