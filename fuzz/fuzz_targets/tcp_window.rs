//! TCP segments with arbitrary sequence numbers, flags, windows and options (SACK) on an established and a first-payload racing connection (nat/window, race sequence shifts).
//! No panic; every buffer is forwarded or counted as a drop, none is kept.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pipelines::testing::fuzz::tcp_window(data);
});
