//! `appliance client --to ADDR:PORT` without `--lab`: requests to a live
//! appliance over real sockets, one line per exchange (where it went, the
//! DSCP mark, what answered: a redirection or the server that served).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use pipelines::redirect::client::Proto;

use super::{now, persistence_name, Client, Options};

pub struct CliArgs {
    pub to: SocketAddr,
    pub proto: Proto,
    /// The request; `\r`, `\n`, `\t` and `\\` are turned into their bytes.
    pub request: String,
    pub count: u32,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub state: Option<PathBuf>,
}

/// `\r`, `\n`, `\t`, `\\` in a command-line argument as bytes (so an HTTP
/// request can be given as `GET / HTTP/1.0\r\n\r\n`).
pub fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.bytes();
    while let Some(c) = it.next() {
        if c != b'\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(o) => out.extend_from_slice(&[b'\\', o]),
            None => out.push(b'\\'),
        }
    }
    out
}

/// Runs the requests; returns how many failed.
pub fn run(a: &CliArgs) -> anyhow::Result<u32> {
    let mut c = Client::new(Options {
        timeout: a.timeout,
        max_attempts: a.max_attempts,
        state: a.state.clone(),
        ..Options::default()
    })?;
    let start = now();
    let request = unescape(&a.request);
    let mut failed = 0;
    for i in 1..=a.count {
        println!("request {i}:");
        let o = c.request(a.to, a.proto, &request);
        for e in &o.exchanges {
            println!("  {e}");
        }
        if let Err(e) = &o.result {
            println!("  failed: {e}");
            failed += 1;
        }
        // Kept after every request: a run cut short still remembers.
        c.save()?;
    }
    println!("history:");
    for h in c.machine().history() {
        let at = h.at.0 as f64 / 1e9 - start.0 as f64 / 1e9;
        println!(
            "  {at:>9.3} s  {} -> {}  {}{}",
            h.from,
            h.to,
            persistence_name(h.persistence),
            if h.failed { "  FAILED" } else { "" }
        );
    }
    let held = c.machine().bindings();
    if !held.is_empty() {
        println!("remembered:");
        for b in held {
            let left = b
                .until
                .map(|u| format!(" for {:.1} s", u.since(now()).0 as f64 / 1e9))
                .unwrap_or_default();
            println!(
                "  {} {} -> {}  {}{left}",
                b.proto.as_str(),
                b.from,
                b.to,
                persistence_name(b.persistence)
            );
        }
    }
    Ok(failed)
}
