//! The control protocol, version 1: one JSON object per line each way.
//!
//! A request is `{"v":1,"cmd":"<command>", ...arguments}`; the answer is
//! `{"v":1,"ok":<value>}` or `{"v":1,"error":"<message>"}`. A request line
//! longer than [`MAX_REQUEST`] bytes, one that is not JSON, lacks `v` or
//! `cmd`, names another version, an unknown command or an unknown argument
//! gets an error answer; nothing a client sends stops the appliance.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use super::sessions::{Cursor, Filters};
use crate::mgmt::stats::Totals;

/// The protocol version this appliance speaks.
pub const VERSION: u64 = 1;
/// The longest request line, newline excluded.
pub const MAX_REQUEST: usize = 64 * 1024;

/// A request's command and its arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// The stats: the stats JSON (`view` = json, the default), or the exit
    /// summary and the status line as text (`view` = text), the status
    /// line's rates since `since`.
    Stats {
        #[serde(default)]
        view: View,
        #[serde(default)]
        since: Option<Since>,
    },
    /// Every uplink's entry of the stats JSON (`uplinks`).
    UplinkList {},
    /// Sets an uplink's administrative state.
    Uplink { name: String, action: UplinkAction },
    /// Sets an uplink's selection weight (1 or more).
    UplinkWeight { name: String, weight: u32 },
    /// One page of the sessions matching the filters (every field
    /// optional): at most `limit` (1..=1000, default 1000) from `cursor`.
    Sessions {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uplink: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proto: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<Cursor>,
    },
    /// The RTT table: rows (destination prefix × uplink) whose destination
    /// lies in `dest` (`ADDR[/LEN]`), at most `limit` (1..=10000, default
    /// 100).
    Rtt {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dest: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Subscribes this connection to the event stream: after the answer,
    /// one `{"v":1,"event":{...}}` line per event until it closes.
    Events {},
    /// Re-reads the config (`config`: this file instead of the running
    /// one's; an absolute path, the appliance's working directory is not
    /// the client's), applies what can change live, or refuses naming the
    /// field that needs a restart.
    Reload {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config: Option<String>,
    },
    /// Starts a live capture of `port` (`direction` rx, tx or both, the
    /// default); it ends after `count` frames or `seconds`, whichever
    /// first, or at `capture_stop`. See `control::capture`.
    CaptureStart {
        port: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        direction: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snaplen: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds: Option<f64>,
    },
    /// The frames of capture `id` copied since the last read.
    CaptureRead { id: u64 },
    /// Ends capture `id`.
    CaptureStop { id: u64 },
    /// Removes every session matching the filters (same as `sessions`).
    SessionsFlush {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uplink: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proto: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    #[default]
    Json,
    Text,
}

/// A previous answer's totals, for rates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Since {
    pub uptime_s: f64,
    pub totals: Totals,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UplinkAction {
    /// No new flows or races; existing sessions stay.
    Drain,
    /// Undoes a drain.
    Resume,
    /// Administratively down (as a link down).
    Down,
    /// Undoes a down (and a drain).
    Up,
}

/// Reads one request line (without its newline): the command, or the
/// error message to answer with.
pub fn parse(line: &[u8]) -> Result<Command, String> {
    if line.len() > MAX_REQUEST {
        return Err(format!(
            "request of {} bytes; at most {MAX_REQUEST} bytes per line",
            line.len()
        ));
    }
    let value: Value =
        serde_json::from_slice(line).map_err(|e| format!("malformed request: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("malformed request: not a JSON object".into());
    };
    match obj.remove("v") {
        None => return Err("missing field `v` (the protocol version, 1)".into()),
        Some(v) if v.as_u64() == Some(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "unsupported protocol version {v}; this appliance speaks {VERSION}"
            ))
        }
    }
    serde_json::from_value(Value::Object(obj)).map_err(|e| format!("bad request: {e}"))
}

/// A request line for `cmd` (newline included).
pub fn request_line(cmd: &Command) -> String {
    let mut v = serde_json::to_value(cmd).expect("commands serialize");
    if let Value::Object(o) = &mut v {
        o.insert("v".into(), json!(VERSION));
    }
    v.to_string() + "\n"
}

/// The answer line (newline included).
pub fn answer_line(answer: &Result<Value, String>) -> String {
    let v = match answer {
        Ok(ok) => json!({"v": VERSION, "ok": ok}),
        Err(e) => json!({"v": VERSION, "error": e}),
    };
    v.to_string() + "\n"
}

/// Reads an answer line: the `ok` value, or the error it carries.
pub fn parse_answer(line: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(line)
        .map_err(|e| format!("malformed answer from the appliance: {e}"))?;
    if v.get("v").and_then(Value::as_u64) != Some(VERSION) {
        return Err(format!(
            "the appliance answered with protocol version {}; this client speaks {VERSION}",
            v.get("v").unwrap_or(&Value::Null)
        ));
    }
    if let Some(e) = v.get("error") {
        return Err(e.as_str().map_or_else(|| e.to_string(), str::to_string));
    }
    v.get("ok")
        .cloned()
        .ok_or_else(|| "malformed answer from the appliance: neither `ok` nor `error`".into())
}

#[cfg(test)]
mod tests;
