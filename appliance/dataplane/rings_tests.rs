use std::sync::atomic::Ordering;

use super::*;

#[test]
fn a_tap_copies_only_flagged_ports_and_directions_up_to_the_snaplen() {
    let tap = CaptureTap::new(2);
    assert!(!tap.wants(0, CAPTURE_RX) && !tap.wants(1, CAPTURE_TX));
    tap.ports[1].store(CAPTURE_TX, Ordering::Relaxed);
    tap.snaplen.store(4, Ordering::Relaxed);
    assert!(tap.wants(1, CAPTURE_TX));
    assert!(!tap.wants(1, CAPTURE_RX));
    assert!(!tap.wants(0, CAPTURE_TX));
    // A port index past the flags is never captured.
    assert!(!tap.wants(7, CAPTURE_TX));
    let frame = [1u8, 2, 3, 4, 5, 6];
    tap.copy(1, CAPTURE_TX, [&frame[..], &frame[..2]].into_iter());
    let a = tap.frames.pop().unwrap();
    assert_eq!(
        (a.port, a.tx, a.orig_len, &a.data[..]),
        (1, true, 6, &[1, 2, 3, 4][..])
    );
    let b = tap.frames.pop().unwrap();
    assert_eq!((b.orig_len, &b.data[..]), (2, &[1, 2][..]));
    assert_eq!((tap.copied.get(), tap.lost.get()), (2, 0));
}

#[test]
fn a_full_capture_ring_counts_lost_frames_and_never_grows() {
    let tap = CaptureTap::new(1);
    let frame = [0u8; 60];
    let n = CAPTURE_RING_SIZE + 100;
    tap.copy(0, CAPTURE_RX, std::iter::repeat_n(&frame[..], n));
    assert_eq!(tap.frames.len(), CAPTURE_RING_SIZE);
    assert_eq!(tap.copied.get(), CAPTURE_RING_SIZE as u64);
    assert_eq!(tap.lost.get(), 100);
}
