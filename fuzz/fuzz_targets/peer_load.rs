//! A peer's load as read from the shared store (any bytes a store may
//! hold): no panic, and whatever parses is within the clamp and reads back
//! the same once written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipelines::redirect::peer_load::{format_load, parse_load, MAX_SESSIONS};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(l) = parse_load(&text) {
        assert!(l.tcp <= MAX_SESSIONS && l.udp <= MAX_SESSIONS);
        assert_eq!(parse_load(&format_load(l, 1, 1)), Ok(l));
    }
});
