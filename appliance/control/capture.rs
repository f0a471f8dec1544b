//! `appliance capture`: the server's side of a live capture, and the
//! client's loop that writes the pcap.
//!
//! One capture at a time. `capture_start` sets the port's flags on every
//! lcore's tap (`dataplane::rings::CaptureTap`); the lcores copy the
//! matching frames into their bounded rings (full: counted lost, never
//! waited for). The client polls `capture_read`, which drains the rings
//! (at most [`READ_BYTES`] of frames per answer, hex in JSON), and writes
//! the pcap itself with `pcap-file`. The capture ends at its count, its
//! time, `capture_stop`, or when its client has not read for
//! [`IDLE_LIMIT`]: the flags are cleared and the rings emptied.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::protocol::Command;
use crate::dataplane::rings::{CaptureTap, CAPTURE_RX, CAPTURE_SNAPLEN_MAX, CAPTURE_TX};
use crate::mgmt::reader::StatsReader;

/// Frame bytes one `capture_read` answer carries at most (twice that in
/// hex: well under the server's 4 MiB of pending answer per client).
pub const READ_BYTES: usize = 1 << 20;
/// A capture whose client has not read this long is ended.
pub const IDLE_LIMIT: Duration = Duration::from_secs(5);
/// The longest capture by time.
pub const SECONDS_MAX: f64 = 86_400.0;

/// The capture in progress, if any.
#[derive(Default)]
pub struct Captures {
    current: Mutex<Option<Session>>,
    next_id: Mutex<u64>,
}

struct Session {
    id: u64,
    port: usize,
    count: Option<u64>,
    deadline: Option<Instant>,
    last_read: Instant,
    taken: u64,
    lost_at_start: u64,
    /// The flags are cleared (count or time reached); what is left in the
    /// rings is still read.
    stopped: bool,
}

fn taps(r: &StatsReader) -> impl Iterator<Item = &CaptureTap> {
    r.lcores.iter().map(|l| &*l.capture)
}

fn lost(r: &StatsReader) -> u64 {
    taps(r).map(|t| t.lost.get()).sum()
}

fn set_flags(r: &StatsReader, port: usize, bits: u8, snaplen: u32) {
    for t in taps(r) {
        t.snaplen.store(snaplen, Ordering::Relaxed);
        if let Some(f) = t.ports.get(port) {
            f.store(bits, Ordering::Relaxed);
        }
    }
}

fn clear(r: &StatsReader) {
    for t in taps(r) {
        for f in &t.ports {
            f.store(0, Ordering::Relaxed);
        }
    }
}

fn drain(r: &StatsReader) {
    for t in taps(r) {
        while t.frames.pop().is_some() {}
    }
}

impl Captures {
    /// `capture_start`: the arguments checked, the flags set.
    pub fn start(
        &self,
        r: &StatsReader,
        port: &str,
        direction: Option<&str>,
        snaplen: Option<u32>,
        count: Option<u64>,
        seconds: Option<f64>,
    ) -> Result<Value, String> {
        let ports = &r.plan.ports;
        let Some(p) = ports.iter().position(|x| x.name == port) else {
            let names: Vec<&str> = ports.iter().map(|x| x.name.as_str()).collect();
            return Err(format!(
                "port: no port named {port:?}; ports: {}",
                names.join(", ")
            ));
        };
        let bits = match direction.unwrap_or("both") {
            "rx" => CAPTURE_RX,
            "tx" => CAPTURE_TX,
            "both" => CAPTURE_RX | CAPTURE_TX,
            d => return Err(format!("direction: {d:?}; allowed: rx, tx, both")),
        };
        let snaplen = snaplen.unwrap_or(CAPTURE_SNAPLEN_MAX);
        if !(1..=CAPTURE_SNAPLEN_MAX).contains(&snaplen) {
            return Err(format!(
                "snaplen: {snaplen}; allowed: 1..={CAPTURE_SNAPLEN_MAX}"
            ));
        }
        if count == Some(0) {
            return Err("count: 0; allowed: 1 or more".into());
        }
        let deadline = match seconds {
            None => None,
            Some(s) if s > 0.0 && s <= SECONDS_MAX => {
                Some(Instant::now() + Duration::from_secs_f64(s))
            }
            Some(s) => {
                return Err(format!(
                    "seconds: {s}; allowed: more than 0, at most {SECONDS_MAX}"
                ))
            }
        };
        let mut cur = self.current.lock().map_err(|_| "capture state poisoned")?;
        if cur.is_some() {
            return Err("a capture is running already (one at a time)".into());
        }
        let id = {
            let mut n = self.next_id.lock().map_err(|_| "capture state poisoned")?;
            *n += 1;
            *n
        };
        drain(r);
        *cur = Some(Session {
            id,
            port: p,
            count,
            deadline,
            last_read: Instant::now(),
            taken: 0,
            lost_at_start: lost(r),
            stopped: false,
        });
        set_flags(r, p, bits, snaplen);
        Ok(json!({"id": id, "port": port, "snaplen": snaplen, "linktype": "ethernet"}))
    }

    /// `capture_read`: frames copied since the last read; `done` once the
    /// capture ended and every copied frame was handed out.
    pub fn read(&self, r: &StatsReader, id: u64) -> Result<Value, String> {
        let mut cur = self.current.lock().map_err(|_| "capture state poisoned")?;
        let s = match cur.as_mut() {
            Some(s) if s.id == id => s,
            _ => return Err(format!("no capture {id} running")),
        };
        s.last_read = Instant::now();
        if s.deadline.is_some_and(|d| Instant::now() >= d) && !s.stopped {
            clear(r);
            s.stopped = true;
        }
        let mut frames = Vec::new();
        let mut bytes = 0usize;
        'taps: for t in taps(r) {
            while bytes < READ_BYTES && s.count.is_none_or(|c| s.taken < c) {
                let Some(f) = t.frames.pop() else {
                    continue 'taps;
                };
                if usize::from(f.port) != s.port {
                    continue;
                }
                bytes += f.data.len();
                s.taken += 1;
                frames.push(json!({
                    "dir": if f.tx { "tx" } else { "rx" },
                    "time_ns": f.time.as_nanos() as u64,
                    "len": f.orig_len,
                    "data": hex::encode(&f.data),
                }));
            }
            break;
        }
        if s.count.is_some_and(|c| s.taken >= c) && !s.stopped {
            clear(r);
            s.stopped = true;
        }
        let empty = taps(r).all(|t| t.frames.is_empty());
        let full = s.count.is_some_and(|c| s.taken >= c);
        let done = s.stopped && (empty || full);
        let answer = json!({
            "frames": frames,
            "captured": s.taken,
            "lost": lost(r).saturating_sub(s.lost_at_start),
            "done": done,
        });
        if done {
            drain(r);
            *cur = None;
        }
        Ok(answer)
    }

    /// `capture_stop`, or a client gone: the flags cleared, the rings
    /// emptied.
    pub fn stop(&self, r: &StatsReader, id: u64) -> Result<Value, String> {
        let mut cur = self.current.lock().map_err(|_| "capture state poisoned")?;
        match cur.as_ref() {
            Some(s) if s.id == id => {
                clear(r);
                drain(r);
                let taken = s.taken;
                *cur = None;
                Ok(json!({"id": id, "captured": taken}))
            }
            _ => Err(format!("no capture {id} running")),
        }
    }

    /// Ends a capture whose client stopped reading (called every server
    /// turn).
    pub fn expire(&self, r: &StatsReader) {
        let Ok(mut cur) = self.current.lock() else {
            return;
        };
        if cur
            .as_ref()
            .is_some_and(|s| s.last_read.elapsed() >= IDLE_LIMIT)
        {
            clear(r);
            drain(r);
            *cur = None;
        }
    }
}

/// The client: starts a capture, reads it until done, writes `file` (pcap,
/// Ethernet, nanosecond timestamps). Returns the last read's summary.
pub fn run_client(socket: &Path, start: Command, file: &Path) -> Result<Value, String> {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::{DataLink, TsResolution};
    let mut c = super::client::Client::connect(socket)?;
    let started = c.request(&start)?;
    let id = started["id"]
        .as_u64()
        .ok_or("malformed capture_start answer")?;
    let snaplen = started["snaplen"]
        .as_u64()
        .unwrap_or(u64::from(CAPTURE_SNAPLEN_MAX)) as u32;
    let out = std::fs::File::create(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let header = PcapHeader {
        snaplen,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(std::io::BufWriter::new(out), header)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    loop {
        let a = c.request(&Command::CaptureRead { id })?;
        for f in a["frames"].as_array().into_iter().flatten() {
            let data = hex::decode(f["data"].as_str().unwrap_or(""))
                .map_err(|e| format!("malformed frame from the appliance: {e}"))?;
            let t = Duration::from_nanos(f["time_ns"].as_u64().unwrap_or(0));
            let len = f["len"].as_u64().unwrap_or(data.len() as u64) as u32;
            w.write_packet(&PcapPacket::new(t, len, &data))
                .map_err(|e| format!("{}: {e}", file.display()))?;
        }
        if a["done"].as_bool() == Some(true) {
            use std::io::Write;
            w.into_writer()
                .flush()
                .map_err(|e| format!("{}: {e}", file.display()))?;
            return Ok(a);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
