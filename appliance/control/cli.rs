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

/// `appliance sessions [filters] [--limit N]`: pages of at most 1,000
/// sessions until `limit` or the end; `appliance sessions flush
/// [filters]`.
pub fn sessions(
    socket: &Path,
    f: super::protocol::Filters,
    limit: usize,
    flush: bool,
    json: bool,
) -> Result<(), String> {
    use super::protocol::Cursor;
    let mut client = Client::connect(socket)?;
    if flush {
        let v = client.request(&Command::SessionsFlush {
            uplink: f.uplink,
            client: f.client,
            remote: f.remote,
            proto: f.proto,
            state: f.state,
        })?;
        if json {
            return print_json(&v, true);
        }
        println!("flushed {} sessions", v["flushed"].as_u64().unwrap_or(0));
        return Ok(());
    }
    let mut all: Vec<Value> = Vec::new();
    let mut cursor: Option<Cursor> = None;
    while all.len() < limit {
        let page = (limit - all.len()).min(crate::dataplane::rings::SESSION_PAGE);
        let v = client.request(&Command::Sessions {
            uplink: f.uplink.clone(),
            client: f.client.clone(),
            remote: f.remote.clone(),
            proto: f.proto.clone(),
            state: f.state.clone(),
            limit: Some(page),
            cursor,
        })?;
        if let Some(list) = v["sessions"].as_array() {
            all.extend(list.iter().cloned());
        }
        match serde_json::from_value::<Option<Cursor>>(v["next"].clone()) {
            Ok(Some(c)) => cursor = Some(c),
            Ok(None) => break,
            Err(e) => return Err(format!("malformed answer from the appliance: {e}")),
        }
    }
    if json {
        return print_json(&Value::Array(all), true);
    }
    print!("{}", session_table(&all));
    Ok(())
}

/// Sessions as a table, one line each.
pub fn session_table(list: &[Value]) -> String {
    let row = |c: [&str; 13]| {
        format!(
            "{:<6} {:<21} {:<21} {:<21} {:<8} {:<12} {:>7} {:>8} {:>8} {:>8} {:>10} {:>10} {:<6}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12]
        )
    };
    let mut s = row([
        "PROTO",
        "INSIDE",
        "OUTSIDE",
        "REMOTE",
        "UPLINK",
        "STATE",
        "IDLE_S",
        "EXPIRES",
        "PKTS_OUT",
        "PKTS_IN",
        "BYTES_OUT",
        "BYTES_IN",
        "RACE",
    ]);
    for v in list {
        let t = |k: &str| v[k].as_str().unwrap_or("-").to_string();
        let n = |k: &str| v[k].as_u64().unwrap_or(0).to_string();
        let f = |k: &str| format!("{:.1}", v[k].as_f64().unwrap_or(0.0));
        s.push_str(&row([
            &t("proto"),
            &t("inside"),
            &t("outside"),
            &t("remote"),
            &t("uplink"),
            &t("state"),
            &f("idle_s"),
            &f("expires_in_s"),
            &n("packets_out"),
            &n("packets_in"),
            &n("bytes_out"),
            &n("bytes_in"),
            &t("race"),
        ]));
    }
    s.push_str(&format!("{} sessions\n", list.len()));
    s
}

/// `appliance events [--json] [--count N]`: the stream until the
/// appliance stops (or `count` events were printed).
pub fn events(socket: &Path, json: bool, count: Option<u64>) -> Result<(), String> {
    use std::io::{BufRead, Write};
    let mut client = super::client::Client::connect(socket)?;
    client.request(&Command::Events {})?;
    let mut lines = client.stream_lines()?;
    let mut n = 0u64;
    let mut out = std::io::stdout().lock();
    while count.is_none_or(|c| n < c) {
        let mut line = String::new();
        match lines.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("reading events: {e}")),
        }
        let v: Value =
            serde_json::from_str(&line).map_err(|e| format!("malformed event line: {e}"))?;
        let ev = &v["event"];
        let text = if json {
            ev.to_string()
        } else {
            super::events::text(ev)
        };
        if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
            return Ok(());
        }
        n += 1;
    }
    Ok(())
}

/// `appliance reload [--config FILE]`: the fields it changed.
pub fn reload(socket: &Path, config: Option<&Path>, json: bool) -> Result<(), String> {
    let config = match config {
        Some(p) => Some(
            std::path::absolute(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .display()
                .to_string(),
        ),
        None => None,
    };
    let v = super::client::request(socket, &Command::Reload { config })?;
    if json {
        return print_json(&v, true);
    }
    let changed: Vec<&str> = v["changed"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let from = text(&v, "config");
    if changed.is_empty() {
        println!("reloaded {from}: nothing changed");
    } else {
        println!("reloaded {from}: {}", changed.join(", "));
    }
    Ok(())
}

/// `appliance rtt [--dest ADDR[/LEN]] [--limit N]`.
pub fn rtt(socket: &Path, dest: Option<String>, limit: usize, json: bool) -> Result<(), String> {
    let v = super::client::request(
        socket,
        &Command::Rtt {
            dest,
            limit: Some(limit),
        },
    )?;
    if json {
        return print_json(&v, true);
    }
    let mut s = format!(
        "{:<20} {:<10} {:>11} {:>9} {:>9} {:>8} {:>8} {:<6} {:<10}\n",
        "DEST", "UPLINK", "SMOOTHED_MS", "MIN_MS", "VAR_MS", "SAMPLES", "AGE_S", "FRESH", "PICK"
    );
    let rows = v.as_array().cloned().unwrap_or_default();
    for r in &rows {
        let f = |k: &str| r[k].as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
        s.push_str(&format!(
            "{:<20} {:<10} {:>11} {:>9} {:>9} {:>8} {:>8} {:<6} {:<10}\n",
            r["dest"].as_str().unwrap_or("?"),
            r["uplink"].as_str().unwrap_or("?"),
            f("smoothed_ms"),
            f("min_ms"),
            f("var_ms"),
            r["samples"].as_u64().unwrap_or(0),
            f("age_s"),
            if r["fresh"] == true { "fresh" } else { "stale" },
            r["pick"].as_str().unwrap_or("-"),
        ));
    }
    s.push_str(&format!("{} rows\n", rows.len()));
    print!("{s}");
    Ok(())
}
