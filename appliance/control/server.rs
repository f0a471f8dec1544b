//! The control socket's server: one management thread, non-blocking.
//!
//! Every few milliseconds it accepts new clients (at most [`MAX_CLIENTS`]),
//! reads what they sent, answers each complete line, and writes what their
//! sockets take. Nothing blocks it: a request line is at most
//! [`MAX_REQUEST`] bytes (a longer one is answered with an error and the
//! client closed), a client's unsent answers are at most [`MAX_PENDING`]
//! bytes (it is not read from meanwhile), and a client whose answers made
//! no progress for [`STALL_LIMIT`] is dropped.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;
use pipelines::select::AdminState;
use serde_json::{json, Value};

use super::protocol::{self, Command, Filters, UplinkAction, View, MAX_REQUEST};
use super::sessions;
use crate::dataplane::rings::SESSION_PAGE;
use crate::mgmt::reader::StatsReader;
use crate::mgmt::report;
use crate::mgmt::selection::{AdminCmd, RttControl};
use crate::mgmt::stats::Totals;

/// Clients served at once; one more is answered with an error and closed.
pub const MAX_CLIENTS: usize = 32;
/// Unsent answer bytes per client before it is no longer read from.
pub const MAX_PENDING: usize = 4 << 20;
/// A client whose pending answers move no byte this long is dropped.
pub const STALL_LIMIT: Duration = Duration::from_secs(10);
/// How often the thread looks at its sockets.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// What the server answers from and changes.
pub struct State {
    pub reader: Arc<StatsReader>,
    pub admin: Arc<ArrayQueue<AdminCmd>>,
    pub rtt: Arc<RttControl>,
    /// Reloads (`None`: the appliance was not started from a file).
    pub reload: Option<Arc<super::reload::Reloader>>,
    /// The live capture, if any (`appliance capture`).
    pub captures: super::capture::Captures,
}

/// Whether an appliance answers on `path` now.
pub fn in_use(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

/// Binds `path` (mode 0600, or 0660 owned by group `group`; a stale socket file left by an appliance that
/// died is replaced, a live one or any other file is refused) and starts
/// the server thread, which removes the file when `stop` is set.
pub fn spawn(
    path: &Path,
    state: State,
    stop: Arc<AtomicBool>,
    group: Option<u32>,
) -> anyhow::Result<std::thread::JoinHandle<Result<(), String>>> {
    let listener = bind(path, group)?;
    let path = path.to_path_buf();
    let handle = std::thread::Builder::new()
        .name("mgmt-control".into())
        .spawn(move || {
            let hub = state.reader.events.clone();
            let mut server = Server {
                listener,
                clients: Vec::new(),
                state,
                hub,
                uplinks_seen: Vec::new(),
                uplinks_checked: Instant::now(),
            };
            while !stop.load(Ordering::Relaxed) {
                server.turn();
                std::thread::sleep(POLL_EVERY);
            }
            let _ = std::fs::remove_file(&path);
            Ok(())
        })?;
    Ok(handle)
}

fn bind(path: &Path, group: Option<u32>) -> anyhow::Result<UnixListener> {
    use anyhow::{bail, Context};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!(
                "control socket {}: the file exists and is not a socket (give another path with --socket or [control] socket)",
                path.display()
            );
        }
        if in_use(path) {
            bail!(
                "control socket {}: another appliance is serving it (give another path with --socket or [control] socket)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale control socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    // Owner only until the group is set, then the group too.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    if let Some(gid) = group {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .with_context(|| format!("chgrp {gid} {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("chmod 0660 {}", path.display()))?;
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

struct Client {
    stream: UnixStream,
    /// Bytes of an unfinished request line.
    input: Vec<u8>,
    /// Answer bytes not yet written.
    output: Vec<u8>,
    /// When `output` last shrank (or became non-empty).
    progress: Instant,
    /// Closed after `output` is written (EOF, or an oversized request).
    closing: bool,
    /// Subscribed to the event stream.
    events: Option<super::events::Subscription>,
}

struct Server {
    listener: UnixListener,
    clients: Vec<Client>,
    state: State,
    /// The lcores' NAT event rings.
    hub: Arc<std::sync::Mutex<crate::mgmt::events::EventHub>>,
    /// The uplinks' states when last looked at (for uplink events).
    uplinks_seen: Vec<pipelines::select::UplinkSelStats>,
    uplinks_checked: Instant,
}

impl Server {
    fn turn(&mut self) {
        self.state.captures.expire(&self.state.reader);
        self.accept();
        let mut i = 0;
        while i < self.clients.len() {
            let keep = self.serve(i);
            if keep {
                i += 1;
            } else {
                self.clients.swap_remove(i);
            }
        }
        self.fan_out();
    }

    /// Hands the events since the last turn to every subscriber, within
    /// its budget (see [`super::events`]).
    fn fan_out(&mut self) {
        use super::events::{line, nat_event, uplink_changes};
        let subs = self.clients.iter().filter(|c| c.events.is_some()).count();
        let Ok(mut hub) = self.hub.lock() else {
            return;
        };
        if subs > 0 && hub.consumers() == 0 {
            // Left from an earlier subscriber: stale.
            hub.drain(|_| {});
        }
        hub.set_consumers(subs);
        let reader = &self.state.reader;
        let names: Vec<String> = reader
            .plan
            .topology
            .uplinks
            .iter()
            .map(|u| u.name.clone())
            .collect();
        let mut lines = Vec::new();
        if self.uplinks_checked.elapsed() >= Duration::from_millis(100) {
            self.uplinks_checked = Instant::now();
            let now = reader
                .selection
                .lock()
                .map(|v| v.uplinks.clone())
                .unwrap_or_default();
            if subs > 0 {
                lines.extend(
                    uplink_changes(&self.uplinks_seen, &now, &names)
                        .into_iter()
                        .map(line),
                );
            }
            self.uplinks_seen = now;
        }
        if subs == 0 {
            return;
        }
        let n = hub.drain(|ev| lines.push(line(nat_event(ev, &names))));
        drop(hub);
        let counters = &reader.control;
        counters.events.fetch_add(n as u64, Ordering::Relaxed);
        for c in &mut self.clients {
            let Some(sub) = c.events.as_mut() else {
                continue;
            };
            let mut dropped = 0;
            for l in &lines {
                if sub.admit(c.output.len()) {
                    if c.output.is_empty() {
                        c.progress = Instant::now();
                    }
                    c.output.extend_from_slice(l.as_bytes());
                } else {
                    dropped += 1;
                }
            }
            counters
                .events_dropped_subscribers
                .fetch_add(dropped, Ordering::Relaxed);
            if let Some(l) = sub.dropped_line() {
                c.output.extend_from_slice(l.as_bytes());
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS || stream.set_nonblocking(true).is_err() {
                        let _ = stream.set_nonblocking(true);
                        let line = protocol::answer_line(&Err(format!(
                            "too many control clients (at most {MAX_CLIENTS})"
                        )));
                        let _ = stream.write(line.as_bytes());
                        continue;
                    }
                    self.clients.push(Client {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                        progress: Instant::now(),
                        closing: false,
                        events: None,
                    });
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // WouldBlock, or an error accept may give transiently
                // (EMFILE): try again next turn.
                Err(_) => return,
            }
        }
    }

    /// Reads, answers and writes for client `i`; false when it is done.
    fn serve(&mut self, i: usize) -> bool {
        let state = &self.state;
        let c = &mut self.clients[i];
        if !c.closing && c.output.len() < MAX_PENDING {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        c.closing = true;
                        break;
                    }
                    Ok(n) => {
                        c.input.extend_from_slice(&buf[..n]);
                        answer_lines(state, c);
                        if c.closing || c.output.len() >= MAX_PENDING {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => return false,
                }
            }
        }
        while !c.output.is_empty() {
            match c.stream.write(&c.output) {
                Ok(0) => return false,
                Ok(n) => {
                    c.output.drain(..n);
                    c.progress = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        if c.output.is_empty() {
            c.progress = Instant::now();
            return !c.closing;
        }
        c.progress.elapsed() < STALL_LIMIT
    }
}

/// Answers every complete line in the client's input; an unfinished line
/// longer than [`MAX_REQUEST`] is answered with an error and the client
/// closed (the rest of it is never read).
fn answer_lines(state: &State, c: &mut Client) {
    while let Some(nl) = c.input.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = c.input.drain(..=nl).collect();
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let answer = match protocol::parse(line) {
            Ok(Command::Events {}) => {
                c.events.get_or_insert_with(Default::default);
                Ok(
                    json!({"subscribed": true, "rate": super::events::RATE, "backlog": super::events::BACKLOG}),
                )
            }
            r => r.and_then(|cmd| handle(state, cmd)),
        };
        if c.output.is_empty() {
            c.progress = Instant::now();
        }
        c.output
            .extend_from_slice(protocol::answer_line(&answer).as_bytes());
    }
    if c.input.len() > MAX_REQUEST {
        let answer = Err(format!(
            "request line longer than {MAX_REQUEST} bytes; closing"
        ));
        c.output
            .extend_from_slice(protocol::answer_line(&answer).as_bytes());
        c.input = Vec::new();
        c.closing = true;
    }
}

/// The answer to one command.
pub fn handle(state: &State, cmd: Command) -> Result<Value, String> {
    match cmd {
        Command::Stats { view, since } => {
            let stats = state.reader.report();
            match view {
                View::Json => Ok(stats.to_json()),
                View::Text => {
                    let totals = Totals::of_stats(&stats);
                    let (before, dt) = match since {
                        Some(s) => (s.totals, (stats.uptime_s - s.uptime_s).max(0.0)),
                        None => (Totals::default(), stats.uptime_s),
                    };
                    Ok(json!({
                        "uptime_s": stats.uptime_s,
                        "totals": totals,
                        "status": report::status_line(&stats, &totals, &before, Duration::from_secs_f64(dt)),
                        "summary": report::summary(&stats),
                    }))
                }
            }
        }
        Command::UplinkList {} => {
            serde_json::to_value(state.reader.report().uplinks).map_err(|e| e.to_string())
        }
        Command::Uplink { name, action } => {
            let i = uplink(state, &name)?;
            let admin = match action {
                UplinkAction::Drain => AdminState::Drained,
                UplinkAction::Down => AdminState::Down,
                UplinkAction::Resume | UplinkAction::Up => AdminState::Up,
            };
            send(state, AdminCmd::State(i, admin))?;
            Ok(json!({"name": name, "admin": admin.as_str()}))
        }
        Command::Sessions {
            uplink,
            client,
            remote,
            proto,
            state: st,
            limit,
            cursor,
        } => {
            let f = Filters {
                uplink,
                client,
                remote,
                proto,
                state: st,
            };
            let r = &state.reader;
            let filter = sessions::filter(&r.plan, &f)?;
            let limit = limit.unwrap_or(SESSION_PAGE);
            if !(1..=SESSION_PAGE).contains(&limit) {
                return Err(format!(
                    "limit: {limit}; allowed: 1..={SESSION_PAGE} per request"
                ));
            }
            sessions::list(
                &r.plan,
                &r.lcores,
                &filter,
                limit,
                cursor.unwrap_or_default(),
            )
        }
        Command::SessionsFlush {
            uplink,
            client,
            remote,
            proto,
            state: st,
        } => {
            let f = Filters {
                uplink,
                client,
                remote,
                proto,
                state: st,
            };
            let filter = sessions::filter(&state.reader.plan, &f)?;
            sessions::flush(&state.reader.lcores, &filter)
        }
        Command::Events {} => Err("events: a subscription; send it as a request line".into()),
        Command::Reload { config } => match &state.reload {
            Some(r) => r.reload(config.as_deref().map(Path::new)),
            None => {
                Err("this appliance was not started from a config file; nothing to reload".into())
            }
        },
        Command::CaptureStart {
            port,
            direction,
            snaplen,
            count,
            seconds,
        } => state.captures.start(
            &state.reader,
            &port,
            direction.as_deref(),
            snaplen,
            count,
            seconds,
        ),
        Command::CaptureRead { id } => state.captures.read(&state.reader, id),
        Command::CaptureStop { id } => state.captures.stop(&state.reader, id),
        Command::Rtt { dest, limit } => super::rtt::table(state, dest.as_deref(), limit),
        Command::UplinkWeight { name, weight } => {
            let i = uplink(state, &name)?;
            if weight == 0 {
                return Err("weight: 0; allowed: 1..=4294967295".into());
            }
            send(state, AdminCmd::Weight(i, weight))?;
            Ok(json!({"name": name, "weight": weight}))
        }
    }
}

/// The index of the uplink called `name`, or an error listing the names.
fn uplink(state: &State, name: &str) -> Result<usize, String> {
    let ups = &state.reader.plan.topology.uplinks;
    ups.iter().position(|u| u.name == name).ok_or_else(|| {
        let names: Vec<&str> = ups.iter().map(|u| u.name.as_str()).collect();
        format!("no uplink named {name:?}; uplinks: {}", names.join(", "))
    })
}

fn send(state: &State, cmd: AdminCmd) -> Result<(), String> {
    state
        .admin
        .push(cmd)
        .map_err(|_| "the management core has too many uplink changes queued; try again".into())
}
