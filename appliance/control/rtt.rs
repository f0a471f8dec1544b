//! `rtt` on the management side: one request to the selection thread,
//! which owns the RTT estimators, and the rows as JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::server::State;
use super::sessions::prefix;
use crate::mgmt::selection::RttQuery;

/// The most rows one request returns.
pub const RTT_MAX_ROWS: usize = 10_000;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub fn table(state: &State, dest: Option<&str>, limit: Option<usize>) -> Result<Value, String> {
    let limit = limit.unwrap_or(100);
    if !(1..=RTT_MAX_ROWS).contains(&limit) {
        return Err(format!("limit: {limit}; allowed: 1..={RTT_MAX_ROWS}"));
    }
    let within = dest
        .map(|d| prefix("dest", d).map(|p| (p.addr, p.len)))
        .transpose()?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let ctl = &state.rtt;
    while ctl.replies.pop().is_some() {}
    ctl.requests.force_push(RttQuery { id, within, limit });
    let t0 = Instant::now();
    let rows = loop {
        if let Some((rid, rows)) = ctl.replies.pop() {
            if rid == id {
                break rows;
            }
        }
        if t0.elapsed() > Duration::from_secs(2) {
            return Err("the selection thread did not answer within 2 s".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let ups = &state.reader.plan.topology.uplinks;
    let name = |u: u8| ups.get(usize::from(u)).map(|x| x.name.clone());
    let ms = |n: pipelines::Nanos| (n.as_nanos() / 1_000) as f64 / 1_000.0;
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "dest": format!("{}/{}", r.dest, r.prefix),
                "uplink": name(r.uplink),
                "smoothed_ms": r.est.smoothed().map(ms),
                "min_ms": r.est.min().map(ms),
                "var_ms": ms(r.est.var()),
                "samples": r.est.samples(),
                "age_s": ms(r.age) / 1_000.0,
                "fresh": r.fresh,
                "pick": r.pick.and_then(name),
            })
        })
        .collect();
    Ok(Value::Array(rows))
}
