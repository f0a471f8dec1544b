//! classify → replicate → translate → transmit over arbitrary frames in both directions, with live sessions and races (see pipelines::testing::fuzz::pipeline for the input layout).
//! No panic; every buffer is forwarded or counted as a drop, none is kept.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pipelines::testing::fuzz::pipeline(data);
});
