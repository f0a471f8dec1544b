//! The operator's control socket: a Unix domain socket served by a
//! management thread beside selection and redirection, speaking versioned
//! JSON lines ([`protocol`]); the server ([`server`]) and the client the
//! `appliance` subcommands use ([`client`]).
//!
//! The data plane never waits on it: answers come from the management
//! core's shared views and counters, changes go to the selection thread
//! through a bounded ring.
//!
//! May import `config` and `mgmt`; never `runtime`, `dataplane` internals,
//! `ports` or `lab` (the runtime imports it).

pub mod capture;
pub mod cli;
pub mod client;
pub mod events;
pub mod protocol;
pub mod reload;
pub mod rtt;
pub mod server;
pub mod sessions;

use std::path::PathBuf;

/// The socket path when neither `--socket` nor `[control] socket` gives
/// one: `$XDG_RUNTIME_DIR/appliance.sock` (a per-user directory, mode
/// 0700, on systemd machines), else `/tmp/appliance-$UID.sock`. Both work
/// without root.
pub fn default_socket() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("appliance.sock"),
        _ => PathBuf::from(format!("/tmp/appliance-{}.sock", uid())),
    }
}

/// This process's user id (the owner of `/proc/self`), without libc.
fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}
