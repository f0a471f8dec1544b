//! ICMP and ICMPv6 errors quoting arbitrary bytes, both directions, over live sessions and races.
//! No panic; every buffer is forwarded or counted as a drop, none is kept.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pipelines::testing::fuzz::icmp_error(data);
});
