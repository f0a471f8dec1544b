//! ARP and neighbour discovery from the LAN and from next hops (pipelines/src/neighbour).
//! No panic; every buffer is forwarded or counted as a drop, none is kept.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pipelines::testing::fuzz::neighbour(data);
});
