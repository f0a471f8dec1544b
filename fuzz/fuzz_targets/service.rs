//! first packets and redirected exchanges to service addresses (pipelines/src/redirect/service.rs).
//! No panic; every buffer is forwarded or counted as a drop, none is kept.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pipelines::testing::fuzz::service(data);
});
