//! The NAT event log (`[telemetry.nat_log]`): a management thread of its
//! own (`mgmt-natlog`) that writes the lcores' NAT events as JSON lines to
//! a file and exports them as IPFIX (RFC 7011, RFC 8158 elements; see
//! [`ipfix`]) to a UDP collector.
//!
//! Why a thread of its own and not the control thread: file writes and
//! sends may stall (a slow disk, a full socket buffer), and the control
//! socket must keep answering. The lcores' rings still have one reader,
//! the shared [`EventHub`]: whoever drains it tees each event onto this
//! thread's bounded queue ([`LogTap`]), so `appliance events` subscribers
//! and the log see the same events. The lcores are not touched: the log is
//! one more consumer of the hub, so they log while it runs.

pub mod ipfix;

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use pipelines::nat::NatEvent;

use crate::config::plan::NatLogPlan;
use crate::mgmt::events::{nat_event, LogTap};
use crate::mgmt::reader::StatsReader;

/// How often the thread drains and writes.
const EVERY: Duration = Duration::from_millis(20);
/// Events written per turn at most (the rest wait in the queue).
const TURN_MAX: usize = 16_384;

/// One JSON line of an event: the `appliance events --json` object plus
/// `unix_ms`, its wall-clock time in milliseconds since 1970.
pub fn json_line(ev: &NatEvent, unix_ms: u64, uplinks: &[String]) -> String {
    let mut v = nat_event(ev, uplinks);
    v["unix_ms"] = serde_json::json!(unix_ms);
    v.to_string() + "\n"
}

/// An event's wall-clock time in ms since 1970 (`epoch`: the appliance's
/// epoch as wall-clock time).
pub fn unix_ms(epoch: SystemTime, ev: &NatEvent) -> u64 {
    let t = epoch + Duration::from_nanos(ev.time.0);
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn open(path: &std::path::Path) -> std::io::Result<BufWriter<File>> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(BufWriter::new)
}

struct Ipfix {
    socket: UdpSocket,
    exporter: ipfix::Exporter,
    refresh: Duration,
    sent_templates: Option<Instant>,
}

struct Logger {
    plan: NatLogPlan,
    reader: Arc<StatsReader>,
    tap: Arc<LogTap>,
    file: Option<BufWriter<File>>,
    ipfix: Option<Ipfix>,
    names: Vec<String>,
    /// When the file was last tried after a failed reopen.
    retried: Instant,
}

/// Opens the sinks (a file that cannot be opened or a collector address
/// that cannot be used stops the start), attaches the log to the hub and
/// starts the `mgmt-natlog` thread, which runs until `stop`.
pub fn spawn(
    plan: &NatLogPlan,
    reader: Arc<StatsReader>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<Result<(), String>>> {
    let file = match &plan.json_file {
        Some(p) => Some(
            open(p)
                .with_context(|| format!("telemetry.nat_log.json_file: opening {}", p.display()))?,
        ),
        None => None,
    };
    let ipfix = match plan.ipfix_collector {
        Some(to) => {
            let bind: std::net::SocketAddr = if to.is_ipv4() {
                "0.0.0.0:0".parse()?
            } else {
                "[::]:0".parse()?
            };
            let socket =
                UdpSocket::bind(bind).context("telemetry.nat_log: binding a UDP socket")?;
            socket
                .connect(to)
                .with_context(|| format!("telemetry.nat_log.ipfix_collector: {to}"))?;
            socket.set_nonblocking(true)?;
            Some(Ipfix {
                socket,
                exporter: ipfix::Exporter::new(plan.observation_domain),
                refresh: plan.template_refresh,
                sent_templates: None,
            })
        }
        None => None,
    };
    let tap = {
        let mut hub = reader
            .events
            .lock()
            .map_err(|_| anyhow::anyhow!("the event hub's lock is poisoned"))?;
        match hub.log_tap() {
            // Attached before the lcores started (Runtime::start with a
            // nat_log plan).
            Some(t) => t,
            None => {
                let t = Arc::new(LogTap::new(reader.control.nat_log_lost.clone()));
                hub.attach_log(t.clone());
                t
            }
        }
    };
    let names = reader
        .plan
        .topology
        .uplinks
        .iter()
        .map(|u| u.name.clone())
        .collect();
    let mut logger = Logger {
        plan: plan.clone(),
        reader,
        tap,
        file,
        ipfix,
        names,
        retried: Instant::now(),
    };
    let h = std::thread::Builder::new()
        .name("mgmt-natlog".into())
        .spawn(move || {
            loop {
                let stopping = stop.load(Ordering::Relaxed);
                logger.turn();
                if stopping {
                    break;
                }
                std::thread::sleep(EVERY);
            }
            logger.flush();
            Ok(())
        })?;
    Ok(h)
}

impl Logger {
    fn turn(&mut self) {
        let reader = self.reader.clone();
        let c = &reader.control;
        if c.nat_log_reopen.swap(false, Ordering::Relaxed) {
            self.reopen();
        }
        if let Ok(hub) = self.reader.events.lock() {
            let n = hub.pump_log();
            c.events.fetch_add(n as u64, Ordering::Relaxed);
        }
        let mut evs = Vec::new();
        while evs.len() < TURN_MAX {
            let Some(ev) = self.tap.queue.pop() else {
                break;
            };
            evs.push((ev, unix_ms(self.reader.epoch_unix, &ev)));
        }
        self.write_json(&evs);
        self.send_ipfix(&evs);
    }

    fn reopen(&mut self) {
        let Some(p) = self.plan.json_file.clone() else {
            return;
        };
        self.flush();
        match open(&p) {
            Ok(f) => self.file = Some(f),
            Err(e) => {
                eprintln!("\rnat_log: reopening {}: {e}", p.display());
                self.reader
                    .control
                    .nat_log_errors
                    .fetch_add(1, Ordering::Relaxed);
                self.file = None;
            }
        }
    }

    fn flush(&mut self) {
        if let Some(f) = &mut self.file {
            if f.flush().is_err() {
                self.reader
                    .control
                    .nat_log_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn write_json(&mut self, evs: &[(NatEvent, u64)]) {
        let c = &self.reader.control;
        let Some(f) = &mut self.file else {
            if self.plan.json_file.is_some()
                && !evs.is_empty()
                && self.retried.elapsed() >= Duration::from_secs(1)
            {
                // The file could not be reopened: try again once a second
                // (the events meanwhile are not written; each failed reopen
                // counts an error).
                self.retried = Instant::now();
                self.reopen();
                if self.file.is_none() {
                    return;
                }
                return self.write_json(evs);
            }
            return;
        };
        let mut written = 0;
        for (ev, ms) in evs {
            if f.write_all(json_line(ev, *ms, &self.names).as_bytes())
                .is_err()
            {
                c.nat_log_errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
            written += 1;
        }
        if f.flush().is_err() {
            c.nat_log_errors.fetch_add(1, Ordering::Relaxed);
        }
        c.nat_log_written.fetch_add(written, Ordering::Relaxed);
    }

    fn send_ipfix(&mut self, evs: &[(NatEvent, u64)]) {
        let c = &self.reader.control;
        let Some(x) = &mut self.ipfix else { return };
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let mut msgs = Vec::new();
        if x.sent_templates.is_none_or(|t| t.elapsed() >= x.refresh) {
            x.sent_templates = Some(Instant::now());
            msgs.push(x.exporter.templates(now_s));
        }
        msgs.extend(x.exporter.data(evs, now_s));
        for m in msgs {
            match x.socket.send(&m) {
                Ok(_) => c.nat_log_ipfix_sent.fetch_add(1, Ordering::Relaxed),
                Err(_) => c.nat_log_errors.fetch_add(1, Ordering::Relaxed),
            };
        }
    }
}

#[cfg(test)]
mod tests;
