//! The client subcommands' work (`appliance stats`, `appliance uplink ...`):
//! one or more requests, then a table for people or JSON for scripts.
//! Errors are one line, printed by `main` as `error: ...` (exit 1).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::client::Client;
use super::protocol::{Command, Since, UplinkAction, View};
use crate::mgmt::stats::Totals;

/// `appliance stats [--watch SECS] [--json]`.
pub fn stats(socket: &Path, watch: Option<f64>, json: bool) -> Result<(), String> {
    let mut client = Client::connect(socket)?;
    let Some(every) = watch else {
        return if json {
            let v = client.request(&Command::Stats {
                view: View::Json,
                since: None,
            })?;
            print_json(&v, true)
        } else {
            let v = client.request(&Command::Stats {
                view: View::Text,
                since: None,
            })?;
            print!("{}", text(&v, "summary"));
            Ok(())
        };
    };
    if !(every > 0.0 && every.is_finite()) {
        return Err("--watch must be a positive number of seconds".into());
    }
    let mut since = None;
    loop {
        if json {
            let v = client.request(&Command::Stats {
                view: View::Json,
                since: None,
            })?;
            print_json(&v, false)?;
        } else {
            let v = client.request(&Command::Stats {
                view: View::Text,
                since,
            })?;
            let mut out = std::io::stdout().lock();
            let _ = write!(
                out,
                "\x1b[H\x1b[2J{}\n\n{}",
                text(&v, "status"),
                text(&v, "summary")
            );
            let _ = out.flush();
            since = Some(Since {
                uptime_s: v["uptime_s"].as_f64().unwrap_or(0.0),
                totals: serde_json::from_value::<Totals>(v["totals"].clone())
                    .map_err(|e| format!("malformed answer from the appliance: {e}"))?,
            });
        }
        std::thread::sleep(Duration::from_secs_f64(every));
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn print_json(v: &Value, pretty: bool) -> Result<(), String> {
    let s = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    }
    .map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}")
        .and_then(|_| out.flush())
        .map_err(|e| format!("writing: {e}"))
}

/// What `appliance uplink` does.
pub enum UplinkOp<'a> {
    List,
    Set(&'a str, UplinkAction),
    Weight(&'a str, u32),
}

/// `appliance uplink list | drain | resume | down | up | weight`.
pub fn uplink(socket: &Path, op: UplinkOp<'_>, json: bool) -> Result<(), String> {
    let cmd = match op {
        UplinkOp::List => Command::UplinkList {},
        UplinkOp::Set(name, action) => Command::Uplink {
            name: name.into(),
            action,
        },
        UplinkOp::Weight(name, weight) => Command::UplinkWeight {
            name: name.into(),
            weight,
        },
    };
    let list = matches!(cmd, Command::UplinkList {});
    let v = super::client::request(socket, &cmd)?;
    if json {
        return print_json(&v, true);
    }
    if list {
        print!("{}", uplink_table(&v));
    } else if let Some(w) = v.get("weight") {
        println!("{}: weight {w}", text(&v, "name"));
    } else {
        println!("{}: {}", text(&v, "name"), text(&v, "admin"));
    }
    Ok(())
}

/// The uplinks of the stats JSON as a table.
pub fn uplink_table(v: &Value) -> String {
    let mut s = format!(
        "{:<12} {:<8} {:<6} {:<5} {:>6} {:>8} {:>8} {:>11} {:>9} {:>9} {:>10}\n",
        "NAME",
        "ADMIN",
        "HEALTH",
        "LINK",
        "WEIGHT",
        "TCP",
        "UDP",
        "CONNECTIONS",
        "RACES_WON",
        "RACES_LOST",
        "RTT_MS"
    );
    for u in v.as_array().into_iter().flatten() {
        let n = |k: &str| u[k].as_u64().unwrap_or(0);
        let yes = |k: &str, a: &'static str, b: &'static str| {
            if u[k].as_bool() == Some(true) {
                a
            } else {
                b
            }
        };
        s.push_str(&format!(
            "{:<12} {:<8} {:<6} {:<5} {:>6} {:>8} {:>8} {:>11} {:>9} {:>9} {:>10}\n",
            u["name"].as_str().unwrap_or("?"),
            u["admin"].as_str().unwrap_or("?"),
            yes("up", "up", "DOWN"),
            yes("link_up", "up", "DOWN"),
            n("weight"),
            n("tcp_sessions"),
            n("udp_sessions"),
            n("connections"),
            n("races_won"),
            n("races_lost"),
            u["rtt_ms"]["smoothed"]
                .as_f64()
                .map_or("-".to_string(), |r| format!("{r:.1}")),
        ));
    }
    s
}
