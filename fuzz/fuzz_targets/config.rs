//! Configuration text → model → plan (appliance/config): no panic, and a
//! refusal names a field or the TOML error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = appliance::config::parse(text) else {
        return;
    };
    if let Err(e) = appliance::config::plan::validate_with_cpus(&cfg, 4) {
        assert!(!e.msg.is_empty(), "an error without a message: {e:?}");
    }
});
