//! Build script of the `appliance` package.
//!
//! Without the `dpdk` feature it does nothing, so the default build needs no
//! DPDK, no pkg-config and no C compiler. With it, it finds the system DPDK
//! (22.11 LTS) with pkg-config, emits its link flags, and compiles the C shim
//! that turns DPDK's static-inline fast-path functions into real symbols
//! (`appliance/ports/dpdk/shim.c`).

use std::env;
use std::process::Command;

const SHIM: &str = "appliance/ports/dpdk/shim.c";
/// The DPDK release the FFI and the shim are written against.
const DPDK_MIN: &str = "22.11";
const DPDK_MAX_EXCLUSIVE: &str = "22.12";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_DPDK");
    if env::var_os("CARGO_FEATURE_DPDK").is_none() {
        return;
    }
    if let Err(msg) = build_dpdk() {
        // A build script reports failure by panicking; the message is what
        // cargo shows the user.
        panic!("\n\nfeature `dpdk`: {msg}\n\n");
    }
}

fn build_dpdk() -> Result<(), String> {
    println!("cargo:rerun-if-changed={SHIM}");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");

    // Link flags: the pkg-config crate emits `cargo:rustc-link-lib` and
    // `-search` lines for every library `pkg-config --libs libdpdk` names.
    // Linked dynamically, the EAL loads the PMDs from its plugin directory
    // at start; nothing here lists PMDs.
    pkg_config::Config::new()
        .range_version(DPDK_MIN..DPDK_MAX_EXCLUSIVE)
        .probe("libdpdk")
        .map_err(|e| {
            format!(
                "DPDK {DPDK_MIN} was not found with pkg-config: {e}\n\
                 Install it with `apt-get install libdpdk-dev pkg-config` (Debian/Ubuntu), \
                 or point PKG_CONFIG_PATH at the directory holding libdpdk.pc."
            )
        })?;

    // Compile flags: the pkg-config crate keeps only -I and -D, but DPDK's
    // cflags also carry `-include rte_config.h` (two tokens that must stay
    // adjacent and separate) and `-march=...` (the ISA baseline the headers'
    // inline code was configured for). Ask pkg-config for all of them.
    let cflags = pkg_config_cflags()?;
    let mut build = cc::Build::new();
    build.file(SHIM);
    for flag in &cflags {
        build.flag(flag);
    }
    // The shim is the fast path of every packet: optimise it even in debug
    // builds of the Rust code.
    build.opt_level(2);
    build.warnings(true).extra_warnings(true);
    // Warnings from DPDK's own headers are not ours to fix.
    build.flag_if_supported("-Wno-unused-parameter");
    build.flag_if_supported("-Wno-cast-qual");
    build.compile("appliance_dpdk_shim");
    Ok(())
}

/// `pkg-config --cflags libdpdk`, split into arguments, with `-include FILE`
/// kept as two separate arguments in order.
fn pkg_config_cflags() -> Result<Vec<String>, String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_owned());
    let out = Command::new(&pkg_config)
        .args(["--cflags", "libdpdk"])
        .output()
        .map_err(|e| format!("could not run `{pkg_config} --cflags libdpdk`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{pkg_config} --cflags libdpdk` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8(out.stdout)
        .map_err(|_| format!("`{pkg_config} --cflags libdpdk` printed non-UTF-8 output"))?;
    split_cflags(&text)
}

fn split_cflags(text: &str) -> Result<Vec<String>, String> {
    let mut flags = Vec::new();
    let mut tokens = text.split_whitespace();
    while let Some(tok) = tokens.next() {
        flags.push(tok.to_owned());
        // Flags whose value is the next token: keep the pair together and
        // never glue them into one argument (`"-include rte_config.h"` would
        // name a file starting with a space).
        if matches!(tok, "-include" | "-isystem" | "-I" | "-D" | "-imacros") {
            let value = tokens
                .next()
                .ok_or_else(|| format!("pkg-config cflags end with `{tok}` and no value"))?;
            flags.push(value.to_owned());
        }
    }
    Ok(flags)
}
