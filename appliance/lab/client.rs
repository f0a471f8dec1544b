//! `appliance client`: a redirecting client (seed 000 [48]-[51], [77]) that
//! prints each step: request, redirection received with its flags, follow,
//! failure resend, result. This version runs it against a lab appliance
//! started in-process from a `backend = "external"` configuration
//! (`--lab`), so a session can be shown without a network; the state
//! machine is `pipelines::redirect::client`, the same over any transport.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use pipelines::redirect::client::{ClientConfig, Proto, RedirectClient};

use crate::lab::redirect::Lab;

pub struct ClientArgs<'a> {
    pub lab: &'a Path,
    pub to: SocketAddr,
    pub proto: Proto,
    pub request: &'a str,
    pub count: u32,
    pub from: IpAddr,
    /// Servers of the lab to stop before the first request.
    pub stop: &'a [String],
    pub max_attempts: u32,
}

/// Runs the requests; returns how many failed.
pub fn run(a: &ClientArgs<'_>) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(a.lab).with_context(|| format!("{}", a.lab.display()))?;
    let cfg =
        crate::config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", a.lab.display()))?;
    let plan = crate::config::plan::validate(&cfg)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.lab.display()))?;
    let mut lab = Lab::start(&[plan])?;
    for s in a.stop {
        if !lab.set_server(s, false) {
            anyhow::bail!("--stop {s}: the lab has no server named {s}");
        }
    }
    lab.settle(Duration::from_millis(100));
    let mut client = RedirectClient::new(ClientConfig {
        max_attempts: a.max_attempts,
        ..ClientConfig::default()
    });
    let mut failed = 0;
    for i in 1..=a.count {
        println!("request {i}:");
        let o = lab.request(&mut client, a.from, a.proto, a.to, a.request.as_bytes());
        for s in &o.steps {
            println!("  {s}");
        }
        failed += u32::from(o.result.is_err());
        lab.settle(Duration::from_millis(60));
    }
    println!("history:");
    for h in client.history() {
        println!(
            "  {:>8.3} s  {} -> {}  {:?}{}",
            h.at.as_nanos() as f64 / 1e9,
            h.from,
            h.to,
            h.persistence,
            if h.failed { "  FAILED" } else { "" }
        );
    }
    let stats = lab.stop().remove(0);
    let r = &stats["redirection"];
    println!(
        "appliance: requests {} served {} redirected {} failures {} avoided {}",
        r["requests"], r["served"], r["redirected"], r["failures"], r["avoided"]
    );
    for s in r["servers"].as_array().into_iter().flatten() {
        println!(
            "  server {} {}  tcp {} udp {}{}",
            s["name"].as_str().unwrap_or(""),
            s["address"].as_str().unwrap_or(""),
            s["tcp_sessions"],
            s["udp_sessions"],
            if s["avoided"] == true {
                "  avoided"
            } else {
                ""
            }
        );
    }
    Ok(failed)
}
