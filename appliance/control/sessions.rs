//! `sessions` and `sessions_flush` on the management side: the request's
//! filters checked and turned into a [`SessionFilter`], then one bounded
//! [`NatQuery`] at a time to each translate lcore (taken between two of
//! its loop turns), resuming from a cursor (shard, slot).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pipelines::nat::{Prefix, SessionFilter, SessionInfo, STATE_NAMES};
use pipelines::packet::flow::proto;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::plan::Plan;
use crate::dataplane::rings::{NatControl, NatQuery, NatReply, SESSION_PAGE};
use crate::mgmt::stats::LcoreView;

/// How long a translate lcore may take to answer one request (it answers
/// at its next loop turn; this only matters if it is wedged).
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// The filters of `sessions` and `sessions_flush`, as sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<String>,
    /// `ADDR` or `ADDR/LEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// `tcp`, `udp`, `icmp` or `icmpv6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// A state name ([`STATE_NAMES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// Where a listing resumes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// Index among the translate lcores.
    pub shard: usize,
    pub slot: u32,
}

pub(crate) fn prefix(field: &str, s: &str) -> Result<Prefix, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{field}: {s:?} is not ADDR or ADDR/LEN"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|&l| l <= max)
            .ok_or_else(|| format!("{field}: prefix length {l:?}; allowed: 0..={max}"))?,
    };
    Ok(Prefix { addr, len })
}

/// The filter the lcores apply, or an error naming the argument.
pub fn filter(plan: &Plan, f: &Filters) -> Result<SessionFilter, String> {
    let uplink = match &f.uplink {
        None => None,
        Some(name) => {
            let ups = &plan.topology.uplinks;
            let i = ups.iter().position(|u| &u.name == name).ok_or_else(|| {
                let names: Vec<&str> = ups.iter().map(|u| u.name.as_str()).collect();
                format!(
                    "uplink: no uplink named {name:?}; uplinks: {}",
                    names.join(", ")
                )
            })?;
            Some(i as u8)
        }
    };
    let proto = match f.proto.as_deref() {
        None => None,
        Some("tcp") => Some(proto::TCP),
        Some("udp") => Some(proto::UDP),
        Some("icmp") => Some(proto::ICMP),
        Some("icmpv6") => Some(proto::ICMPV6),
        Some(p) => return Err(format!("proto: {p:?}; allowed: tcp, udp, icmp, icmpv6")),
    };
    let state = match f.state.as_deref() {
        None => None,
        Some(s) => Some(
            *STATE_NAMES
                .iter()
                .find(|&&n| n == s)
                .ok_or_else(|| format!("state: {s:?}; allowed: {}", STATE_NAMES.join(", ")))?,
        ),
    };
    Ok(SessionFilter {
        uplink,
        client: f
            .client
            .as_deref()
            .map(|s| prefix("client", s))
            .transpose()?,
        remote: f
            .remote
            .as_deref()
            .map(|s| prefix("remote", s))
            .transpose()?,
        proto,
        state,
    })
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One request to one lcore, waiting for its reply.
fn ask(ctl: &NatControl, mut q: NatQuery) -> Result<NatReply, String> {
    q.id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let id = q.id;
    // A reply to an abandoned request may still sit there.
    while ctl.replies.pop().is_some() {}
    ctl.requests.force_push(q);
    let t0 = Instant::now();
    loop {
        if let Some(r) = ctl.replies.pop() {
            if r.id == id {
                return Ok(r);
            }
        }
        if t0.elapsed() > REPLY_TIMEOUT {
            return Err("a translate lcore did not answer within 2 s".into());
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

fn shards(lcores: &[LcoreView]) -> Vec<&NatControl> {
    lcores
        .iter()
        .filter_map(|l| l.sessions.as_deref())
        .collect()
}

/// Up to `limit` (at most [`SESSION_PAGE`]) matching sessions from
/// `cursor`; the cursor to resume from, `None` when every shard was read.
pub fn list(
    plan: &Plan,
    lcores: &[LcoreView],
    f: &SessionFilter,
    limit: usize,
    cursor: Cursor,
) -> Result<Value, String> {
    let limit = limit.clamp(1, SESSION_PAGE);
    let shards = shards(lcores);
    let mut out: Vec<Value> = Vec::new();
    let mut at = Some(cursor);
    while let Some(c) = at {
        let Some(ctl) = shards.get(c.shard) else {
            at = None;
            break;
        };
        if out.len() >= limit {
            break;
        }
        let q = NatQuery {
            id: 0,
            filter: *f,
            cursor: c.slot,
            max: limit - out.len(),
            flush: false,
        };
        let r = ask(ctl, q)?;
        out.extend(r.sessions.iter().map(|s| session_json(plan, c.shard, s)));
        at = Some(match r.next {
            Some(slot) => Cursor {
                shard: c.shard,
                slot,
            },
            None => Cursor {
                shard: c.shard + 1,
                slot: 0,
            },
        });
    }
    Ok(json!({"sessions": out, "next": at}))
}

/// Removes every matching session of every shard; how many.
pub fn flush(lcores: &[LcoreView], f: &SessionFilter) -> Result<Value, String> {
    let mut removed = 0usize;
    for ctl in shards(lcores) {
        let mut cursor = Some(0);
        while let Some(c) = cursor {
            let q = NatQuery {
                id: 0,
                filter: *f,
                cursor: c,
                max: 0,
                flush: true,
            };
            let r = ask(ctl, q)?;
            removed += r.removed;
            cursor = r.next;
        }
    }
    Ok(json!({ "flushed": removed }))
}

fn session_json(plan: &Plan, shard: usize, s: &SessionInfo) -> Value {
    let ep = |a: IpAddr, p: u16| std::net::SocketAddr::new(a, p).to_string();
    let secs = |n: pipelines::Nanos| (n.as_nanos() / 1_000_000) as f64 / 1_000.0;
    json!({
        "shard": shard,
        "proto": match s.proto {
            proto::TCP => "tcp",
            proto::UDP => "udp",
            proto::ICMP => "icmp",
            _ => "icmpv6",
        },
        "inside": ep(s.client, s.client_port),
        "outside": ep(s.nat_addr, s.nat_port),
        "remote": ep(s.remote, s.remote_port),
        "uplink": plan.topology.uplinks.get(usize::from(s.uplink)).map(|u| u.name.as_str()),
        "state": s.state,
        "idle_s": secs(s.idle),
        "expires_in_s": secs(s.expires_in),
        "packets_out": s.packets_out,
        "packets_in": s.packets_in,
        "bytes_out": s.bytes_out,
        "bytes_in": s.bytes_in,
        "race": if s.race_loser { "lost" } else if s.in_race { "racing" } else { "-" },
    })
}
