//! The delay line: an L2 wire between two interfaces that holds every frame
//! for a one-way delay (plus uniform jitter) and drops a fraction of them,
//! because the lab kernel has no `netem`. The netns lab runs one in each ISP
//! namespace (`scripts/lab.sh`).
//!
//! The pure part ([`Settings`], [`parse_control`], [`Lane`], [`LaneCounters`])
//! takes the time as nanoseconds from the caller and touches no socket or
//! clock, so its tests run in virtual time. [`run`] is the I/O loop: two raw
//! sockets, `ppoll` until the next due time, the control file re-read when
//! it changes, stats written as JSON.
//!
//! Invariants of a [`Lane`] (one direction):
//! - order is kept: a frame's due time is `max(now + delay + U(0, jitter),
//!   due time of the frame before it)`, so a delay cut takes effect as the
//!   queue drains instead of reordering frames;
//! - memory is bounded: at most `capacity` frames are queued, a frame past
//!   that is dropped and counted as `overflow`; frame buffers come from a
//!   pool that only grows to the deepest queue seen, so the steady state
//!   allocates nothing per frame;
//! - loss is Bernoulli per frame, decided on arrival from the lane's own
//!   seeded generator (a lost frame is never queued).

use std::collections::VecDeque;
use std::path::PathBuf;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Longest accepted delay or jitter, milliseconds (a minute: anything longer
/// is a typo, and would let the queue hold a minute of traffic).
pub const MAX_DELAY_MS: f64 = 60_000.0;

/// The shaping of one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// One-way delay, nanoseconds.
    pub delay_ns: u64,
    /// Extra delay, uniform in [0, jitter_ns].
    pub jitter_ns: u64,
    /// Probability in [0, 1] that a frame is dropped.
    pub loss: f64,
}

impl Settings {
    pub const fn none() -> Settings {
        Settings {
            delay_ns: 0,
            jitter_ns: 0,
            loss: 0.0,
        }
    }
}

/// Milliseconds (`delay_ms`, `jitter_ms`) to nanoseconds, or what is
/// allowed. `field` names the setting in the message.
pub fn ms_to_ns(field: &str, ms: f64) -> Result<u64, String> {
    if !ms.is_finite() || !(0.0..=MAX_DELAY_MS).contains(&ms) {
        return Err(format!(
            "{field} = {ms}: must be a number of milliseconds from 0 to {MAX_DELAY_MS}"
        ));
    }
    Ok((ms * 1e6).round() as u64)
}

/// A loss probability, or what is allowed.
pub fn check_loss(field: &str, p: f64) -> Result<f64, String> {
    if !p.is_finite() || !(0.0..=1.0).contains(&p) {
        return Err(format!(
            "{field} = {p}: must be a probability from 0 to 1 (0.1 drops one frame in ten)"
        ));
    }
    Ok(p)
}

/// The settings of both directions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Control {
    pub a_to_b: Settings,
    pub b_to_a: Settings,
}

/// A control file line that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ControlError {
    pub line: usize,
    pub message: String,
}

/// Parses a control file: `key = value` lines, `#` comments, blank lines.
/// Keys: `delay_ms`, `jitter_ms`, `loss` (both directions), and the same
/// prefixed with `a_to_b.` or `b_to_a.` (one direction; wins over the
/// unprefixed key wherever it appears). A key the file does not set keeps
/// its value from `base` (the command line), so the settings follow from the
/// file's current text alone, not from its history.
pub fn parse_control(text: &str, base: Settings) -> Result<Control, ControlError> {
    let mut both = base;
    // Per-direction overrides, applied after the unprefixed keys.
    let mut dir: [[Option<f64>; 3]; 2] = [[None; 3]; 2];
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| ControlError { line, message };
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            return Err(err(format!(
                "{content:?} is not `key = value` (keys: delay_ms, jitter_ms, loss, \
                 optionally prefixed a_to_b. or b_to_a.)"
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        let number: f64 = value
            .parse()
            .map_err(|_| err(format!("{key} = {value:?}: not a number")))?;
        let (direction, name) = match key.split_once('.') {
            Some(("a_to_b", name)) => (Some(0), name),
            Some(("b_to_a", name)) => (Some(1), name),
            Some((prefix, _)) => {
                return Err(err(format!(
                    "{key}: unknown direction {prefix:?} (allowed: a_to_b, b_to_a)"
                )))
            }
            None => (None, key),
        };
        let slot = match name {
            "delay_ms" => {
                ms_to_ns(key, number).map_err(err)?;
                0
            }
            "jitter_ms" => {
                ms_to_ns(key, number).map_err(err)?;
                1
            }
            "loss" => {
                check_loss(key, number).map_err(err)?;
                2
            }
            _ => {
                return Err(err(format!(
                    "unknown key {key:?} (allowed: delay_ms, jitter_ms, loss, \
                     optionally prefixed a_to_b. or b_to_a.)"
                )))
            }
        };
        match direction {
            Some(d) => dir[d][slot] = Some(number),
            None => apply(&mut both, slot, number),
        }
    }
    let mut out = [both, both];
    for (settings, values) in out.iter_mut().zip(dir) {
        for (slot, value) in values.into_iter().enumerate() {
            if let Some(v) = value {
                apply(settings, slot, v);
            }
        }
    }
    Ok(Control {
        a_to_b: out[0],
        b_to_a: out[1],
    })
}

/// Sets field `slot` (0 delay, 1 jitter, 2 loss) from an already checked value.
fn apply(s: &mut Settings, slot: usize, v: f64) {
    match slot {
        0 => s.delay_ns = (v * 1e6).round() as u64,
        1 => s.jitter_ns = (v * 1e6).round() as u64,
        _ => s.loss = v,
    }
}

/// What happened to one frame in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LaneCounters {
    /// Frames read from the input interface.
    pub frames_in: u64,
    pub bytes_in: u64,
    /// Frames sent on the output interface.
    pub frames_out: u64,
    pub bytes_out: u64,
    /// Dropped by the loss setting.
    pub lost: u64,
    /// Dropped because the queue was full.
    pub overflow: u64,
    /// Times the output socket's queue was full (the frame was kept and
    /// retried).
    pub tx_busy: u64,
    /// Frames the output interface refused (e.g. link down, too long):
    /// dropped.
    pub tx_errors: u64,
    /// Receive errors on the input socket (a frame longer than the receive
    /// buffer is one).
    pub rx_errors: u64,
    /// Frames the kernel dropped before we read them (socket buffer full).
    pub kernel_drops: u64,
    /// Deepest queue seen.
    pub max_queued: u64,
}

/// Where an offered frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued { due_ns: u64 },
    Lost,
    Overflow,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    due_ns: u64,
    buf: u32,
}

/// One direction of the delay line: a bounded FIFO of frames with due times.
pub struct Lane {
    settings: Settings,
    queue: VecDeque<Entry>,
    capacity: usize,
    /// Frame buffers; grows to the deepest queue seen, then only reused.
    pool: Vec<Vec<u8>>,
    free: Vec<u32>,
    last_due_ns: u64,
    rng: SmallRng,
    pub counters: LaneCounters,
}

/// Initial size of a pooled frame buffer: an untagged or tagged 1500-MTU
/// frame fits; a larger one grows its buffer once, which is then reused.
const FRAME_BUF: usize = 2048;

impl Lane {
    /// A lane holding at most `capacity` frames (at least 1).
    pub fn new(settings: Settings, capacity: usize, seed: u64) -> Lane {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        Lane {
            settings,
            queue: VecDeque::with_capacity(capacity),
            capacity,
            pool: Vec::new(),
            free: Vec::with_capacity(capacity),
            last_due_ns: 0,
            rng: SmallRng::seed_from_u64(seed),
            counters: LaneCounters::default(),
        }
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// New settings apply to frames offered from now on; queued frames keep
    /// their due times.
    pub fn set_settings(&mut self, s: Settings) {
        self.settings = s;
    }

    /// Takes `frame`, read at `now_ns`: dropped by loss, dropped because the
    /// queue is full, or copied in with its due time.
    pub fn offer(&mut self, now_ns: u64, frame: &[u8]) -> Offer {
        self.counters.frames_in += 1;
        self.counters.bytes_in += frame.len() as u64;
        // random() is in [0, 1): loss 0 never drops, loss 1 always does.
        if self.settings.loss > 0.0 && self.rng.random::<f64>() < self.settings.loss {
            self.counters.lost += 1;
            return Offer::Lost;
        }
        if self.queue.len() >= self.capacity {
            self.counters.overflow += 1;
            return Offer::Overflow;
        }
        let jitter = if self.settings.jitter_ns > 0 {
            self.rng.random_range(0..=self.settings.jitter_ns)
        } else {
            0
        };
        let due_ns = now_ns
            .saturating_add(self.settings.delay_ns)
            .saturating_add(jitter)
            .max(self.last_due_ns);
        self.last_due_ns = due_ns;
        let buf = match self.free.pop() {
            Some(i) => i,
            None => {
                // Fewer buffers than `capacity` exist here (each queued
                // frame holds one and the queue is not full).
                self.pool.push(Vec::with_capacity(FRAME_BUF));
                (self.pool.len() - 1) as u32
            }
        };
        let b = &mut self.pool[buf as usize];
        b.clear();
        b.extend_from_slice(frame);
        self.queue.push_back(Entry { due_ns, buf });
        self.counters.max_queued = self.counters.max_queued.max(self.queue.len() as u64);
        Offer::Queued { due_ns }
    }

    /// Due time of the frame at the head, if any.
    pub fn next_due(&self) -> Option<u64> {
        self.queue.front().map(|e| e.due_ns)
    }

    /// The head frame if it is due at `now_ns`.
    pub fn due_front(&self, now_ns: u64) -> Option<&[u8]> {
        let e = self.queue.front()?;
        (e.due_ns <= now_ns).then(|| self.pool[e.buf as usize].as_slice())
    }

    /// Removes the head frame after it was sent (`sent`) or refused by the
    /// output (counted as a tx error).
    pub fn pop_front(&mut self, sent: bool) {
        if let Some(e) = self.queue.pop_front() {
            if sent {
                self.counters.frames_out += 1;
                self.counters.bytes_out += self.pool[e.buf as usize].len() as u64;
            } else {
                self.counters.tx_errors += 1;
            }
            self.free.push(e.buf);
        }
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Frame buffers allocated so far (never more than the deepest queue).
    pub fn buffers_allocated(&self) -> usize {
        self.pool.len()
    }
}

/// One direction in the stats JSON: its settings and counters.
#[derive(Debug, Clone, Serialize)]
pub struct LaneStats {
    pub delay_ms: f64,
    pub jitter_ms: f64,
    pub loss: f64,
    pub queued: u64,
    #[serde(flatten)]
    pub counters: LaneCounters,
}

impl LaneStats {
    pub fn of(lane: &Lane) -> LaneStats {
        let s = lane.settings();
        LaneStats {
            delay_ms: s.delay_ns as f64 / 1e6,
            jitter_ms: s.jitter_ns as f64 / 1e6,
            loss: s.loss,
            queued: lane.queued() as u64,
            counters: lane.counters,
        }
    }
}

/// The whole stats JSON of a delay line.
#[derive(Debug, Clone, Serialize)]
pub struct DelayLineStats {
    pub a: String,
    pub b: String,
    pub seed: u64,
    pub uptime_s: f64,
    pub control_file: Option<PathBuf>,
    pub control_reloads: u64,
    /// Why the control file's current text was not applied (the previous
    /// settings stay), or null.
    pub control_error: Option<String>,
    pub a_to_b: LaneStats,
    pub b_to_a: LaneStats,
}

/// `appliance delay-line` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DelayLineArgs {
    /// First interface (frames read here leave on --b after the a_to_b delay).
    #[arg(long)]
    pub a: String,
    /// Second interface.
    #[arg(long)]
    pub b: String,
    /// One-way delay, milliseconds, both directions.
    #[arg(long, default_value_t = 0.0)]
    pub delay_ms: f64,
    /// Extra delay, uniform in [0, jitter], milliseconds; order is kept.
    #[arg(long, default_value_t = 0.0)]
    pub jitter_ms: f64,
    /// Loss probability per frame, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Seed of the loss and jitter draws (default: from the clock, shown in
    /// the stats).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Control file (`delay_ms = 10`, `jitter_ms = 1`, `loss = 0.5`,
    /// `a_to_b.delay_ms = 5` ...), re-read whenever it changes.
    #[arg(long)]
    pub control: Option<PathBuf>,
    /// Write counters and settings here as JSON (on change, every ~250 ms).
    #[arg(long)]
    pub stats: Option<PathBuf>,
    /// Most frames queued per direction; more are dropped as overflow.
    #[arg(long, default_value_t = 65536)]
    pub max_queue: usize,
}

impl DelayLineArgs {
    /// The command-line settings, or an error naming the bad argument.
    pub fn settings(&self) -> Result<Settings, String> {
        if self.a == self.b {
            return Err(format!(
                "--a and --b are both {:?}: the delay line joins two different interfaces",
                self.a
            ));
        }
        if !(1..=1 << 24).contains(&self.max_queue) {
            return Err(format!(
                "--max-queue = {}: must be from 1 to {}",
                self.max_queue,
                1 << 24
            ));
        }
        Ok(Settings {
            delay_ns: ms_to_ns("--delay-ms", self.delay_ms)?,
            jitter_ns: ms_to_ns("--jitter-ms", self.jitter_ms)?,
            loss: check_loss("--loss", self.loss)?,
        })
    }
}

#[cfg(target_os = "linux")]
pub use io_loop::run;

#[cfg(not(target_os = "linux"))]
pub fn run(_args: &DelayLineArgs) -> anyhow::Result<()> {
    anyhow::bail!("the delay line needs Linux AF_PACKET sockets")
}

#[cfg(target_os = "linux")]
mod io_loop {
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime};

    use anyhow::Context;

    use super::*;
    use crate::ports::linux::rawsock::{self, RawSocket};

    /// How often the control file's metadata is checked.
    const CONTROL_EVERY: Duration = Duration::from_millis(50);
    /// How often the stats file is rewritten (when something changed).
    const STATS_EVERY: Duration = Duration::from_millis(250);
    /// Longest sleep: the stop flag is seen at least this often.
    const MAX_WAIT: Duration = Duration::from_millis(50);
    /// Retry delay when an output socket's queue is full.
    const BUSY_RETRY: Duration = Duration::from_micros(200);
    /// Frames read from one socket per turn before due frames are sent again.
    const RX_BUDGET: usize = 256;
    /// Frames sent per lane per turn before the sockets are read again (a
    /// backlog that fell due at once must not starve reception); the rest
    /// are due already, so the next wait is zero.
    const TX_BUDGET: usize = 256;
    /// Receive buffer: larger than any frame a veth without GSO carries.
    const RX_BUF: usize = 65536;

    /// What identifies a version of the control file.
    type Stamp = Option<(SystemTime, u64, u64)>;

    fn stamp(path: &Path) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some((m.modified().ok()?, m.len(), m.ino()))
    }

    struct Side {
        sock: RawSocket,
        kernel_drops: u64,
    }

    /// Runs the delay line until SIGINT/SIGTERM, then prints the final stats.
    pub fn run(args: &DelayLineArgs) -> anyhow::Result<()> {
        let base = args.settings().map_err(anyhow::Error::msg)?;
        let seed = args.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                ^ u64::from(std::process::id())
        });
        let mut sides = [
            Side {
                sock: RawSocket::open(&args.a).with_context(|| format!("--a {}", args.a))?,
                kernel_drops: 0,
            },
            Side {
                sock: RawSocket::open(&args.b).with_context(|| format!("--b {}", args.b))?,
                kernel_drops: 0,
            },
        ];
        // Larger socket buffers absorb bursts while the loop is sending:
        // past rmem_max/wmem_max with CAP_NET_ADMIN (the *FORCE options),
        // else as far as the limits allow. Best effort either way.
        let bytes: libc::c_int = 4 << 20;
        for s in &sides {
            for (force, plain) in [
                (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
                (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
            ] {
                if s.sock.setsockopt(libc::SOL_SOCKET, force, &bytes).is_err() {
                    let _ = s.sock.setsockopt(libc::SOL_SOCKET, plain, &bytes);
                }
            }
        }
        // Wake for a due frame on time, not up to 50 us late.
        let _ = rawsock::set_timer_slack_ns(1);
        // lanes[0] carries a -> b, lanes[1] b -> a.
        let mut lanes = [
            Lane::new(base, args.max_queue, seed),
            Lane::new(base, args.max_queue, seed ^ 0x9e37_79b9_7f4a_7c15),
        ];
        let mut control_stamp: Stamp = None;
        let mut control_reloads = 0u64;
        let mut control_error: Option<String> = None;
        if let Some(path) = &args.control {
            control_stamp = stamp(path);
            reload(path, base, &mut lanes, &mut control_error)?;
        }

        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
            .context("installing the SIGINT/SIGTERM handler")?;

        let start = Instant::now();
        let now_ns = || start.elapsed().as_nanos() as u64;
        let mut rx = vec![0u8; RX_BUF];
        let fds = [sides[0].sock.fd(), sides[1].sock.fd()];
        let mut readable = [false; 2];
        let mut next_control = start + CONTROL_EVERY;
        let mut next_stats = start;
        let mut dirty = true;
        let snapshot = |lanes: &[Lane; 2], reloads: u64, error: &Option<String>| DelayLineStats {
            a: args.a.clone(),
            b: args.b.clone(),
            seed,
            uptime_s: start.elapsed().as_secs_f64(),
            control_file: args.control.clone(),
            control_reloads: reloads,
            control_error: error.clone(),
            a_to_b: LaneStats::of(&lanes[0]),
            b_to_a: LaneStats::of(&lanes[1]),
        };
        eprintln!(
            "delay-line: {} <-> {}: delay {} ms, jitter {} ms, loss {}, seed {seed}",
            args.a, args.b, args.delay_ms, args.jitter_ms, args.loss
        );

        while !stop.load(Ordering::Relaxed) {
            // Send what is due (up to TX_BUDGET); lane i leaves on side 1 - i.
            let mut busy = false;
            for (i, lane) in lanes.iter_mut().enumerate() {
                let out = &sides[1 - i].sock;
                let now = now_ns();
                for _ in 0..TX_BUDGET {
                    let Some(frame) = lane.due_front(now) else {
                        break;
                    };
                    match out.send(frame) {
                        Ok(true) => lane.pop_front(true),
                        Ok(false) => {
                            lane.counters.tx_busy += 1;
                            busy = true;
                            break;
                        }
                        Err(_) => lane.pop_front(false),
                    }
                    dirty = true;
                }
            }

            // Sleep until the next due frame, control check or stats tick.
            let now = Instant::now();
            let mut wait = MAX_WAIT.min(next_control.saturating_duration_since(now));
            if busy {
                wait = wait.min(BUSY_RETRY);
            }
            let elapsed = now_ns();
            for lane in &lanes {
                if let Some(due) = lane.next_due() {
                    wait = wait.min(Duration::from_nanos(due.saturating_sub(elapsed)));
                }
            }
            rawsock::poll_readable_into(&fds, wait, &mut readable).context("ppoll")?;

            for (i, &ready) in readable.iter().enumerate() {
                if !ready {
                    continue;
                }
                for _ in 0..RX_BUDGET {
                    match sides[i].sock.recv(&mut rx) {
                        Ok(Some(n)) => {
                            lanes[i].offer(now_ns(), &rx[..n]);
                            dirty = true;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            lanes[i].counters.rx_errors += 1;
                            dirty = true;
                            // A truncated frame is consumed; anything else
                            // (interface gone) would repeat: back off.
                            if rawsock::truncated_len(&e).is_none() {
                                break;
                            }
                        }
                    }
                }
            }

            let now = Instant::now();
            if now >= next_control {
                next_control = now + CONTROL_EVERY;
                if let Some(path) = &args.control {
                    let s = stamp(path);
                    if s != control_stamp {
                        control_stamp = s;
                        control_reloads += 1;
                        reload(path, base, &mut lanes, &mut control_error)?;
                        dirty = true;
                        // The settings change is visible at once.
                        next_stats = now;
                    }
                }
            }
            if now >= next_stats {
                next_stats = now + STATS_EVERY;
                for (side, lane) in sides.iter_mut().zip(lanes.iter_mut()) {
                    if let Ok((_, drops)) = side.sock.kernel_stats() {
                        side.kernel_drops += u64::from(drops);
                        if drops > 0 {
                            dirty = true;
                        }
                    }
                    lane.counters.kernel_drops = side.kernel_drops;
                }
                if dirty {
                    dirty = false;
                    if let Some(path) = &args.stats {
                        write_stats(path, &snapshot(&lanes, control_reloads, &control_error))?;
                    }
                }
            }
        }

        for (side, lane) in sides.iter_mut().zip(lanes.iter_mut()) {
            if let Ok((_, drops)) = side.sock.kernel_stats() {
                side.kernel_drops += u64::from(drops);
            }
            lane.counters.kernel_drops = side.kernel_drops;
        }
        let last = snapshot(&lanes, control_reloads, &control_error);
        if let Some(path) = &args.stats {
            write_stats(path, &last)?;
        }
        println!("{}", serde_json::to_string_pretty(&last)?);
        Ok(())
    }

    /// Applies the control file's current text; a missing file means the
    /// command-line settings; a bad file keeps the settings and records why.
    fn reload(
        path: &Path,
        base: Settings,
        lanes: &mut [Lane; 2],
        error: &mut Option<String>,
    ) -> anyhow::Result<()> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                *error = Some(format!("{}: {e}", path.display()));
                eprintln!("delay-line: {}", error.as_deref().unwrap_or_default());
                return Ok(());
            }
        };
        match parse_control(&text, base) {
            Ok(c) => {
                lanes[0].set_settings(c.a_to_b);
                lanes[1].set_settings(c.b_to_a);
                *error = None;
                eprintln!(
                    "delay-line: control {}: a_to_b {:?}, b_to_a {:?}",
                    path.display(),
                    c.a_to_b,
                    c.b_to_a
                );
            }
            Err(e) => {
                *error = Some(format!("{}: {e}", path.display()));
                eprintln!(
                    "delay-line: {} (settings unchanged)",
                    error.as_deref().unwrap_or_default()
                );
            }
        }
        Ok(())
    }

    /// Writes the stats atomically (temporary file, then rename), so a
    /// reader never sees half a JSON document.
    fn write_stats(path: &Path, stats: &DelayLineStats) -> anyhow::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let text = serde_json::to_string_pretty(stats)? + "\n";
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", path.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn settings(delay_ms: u64, jitter_ms: u64, loss: f64) -> Settings {
        Settings {
            delay_ns: delay_ms * MS,
            jitter_ns: jitter_ms * MS,
            loss,
        }
    }

    /// Drives a lane in virtual time: frames offered at `arrivals` (ns);
    /// returns (send time, tag) of each frame in the order sent, sending
    /// each as soon as it is due (the clock jumps to the next due time).
    fn drive(lane: &mut Lane, arrivals: &[u64]) -> Vec<(u64, u32)> {
        let mut sent = Vec::new();
        let mut next = 0;
        let mut now = 0u64;
        for _ in 0..10 * arrivals.len() + 10 {
            while next < arrivals.len() && arrivals[next] <= now {
                lane.offer(now, &(next as u32).to_be_bytes());
                next += 1;
            }
            while let Some(f) = lane.due_front(now) {
                sent.push((now, u32::from_be_bytes(f.try_into().unwrap())));
                lane.pop_front(true);
            }
            let next_arrival = arrivals.get(next).copied();
            now = match (next_arrival, lane.next_due()) {
                (Some(a), Some(d)) => a.min(d),
                (Some(a), None) => a,
                (None, Some(d)) => d,
                (None, None) => return sent,
            };
        }
        panic!("drive loop did not finish: livelock");
    }

    #[test]
    fn fixed_delay_is_exact() {
        let mut lane = Lane::new(settings(15, 0, 0.0), 16, 1);
        let arrivals = [0, 1_000, 5 * MS, 5 * MS, 40 * MS];
        let sent = drive(&mut lane, &arrivals);
        let expect: Vec<(u64, u32)> = arrivals
            .iter()
            .enumerate()
            .map(|(i, &t)| (t + 15 * MS, i as u32))
            .collect();
        assert_eq!(sent, expect);
        assert_eq!(lane.counters.frames_in, 5);
        assert_eq!(lane.counters.frames_out, 5);
        assert_eq!(lane.counters.bytes_out, 20);
        assert_eq!(lane.counters.max_queued, 4, "frames 0..=3 overlap in time");
    }

    #[test]
    fn due_front_waits_for_the_due_time() {
        let mut lane = Lane::new(settings(2, 0, 0.0), 4, 1);
        assert_eq!(
            lane.offer(10, b"x"),
            Offer::Queued {
                due_ns: 10 + 2 * MS
            }
        );
        assert_eq!(lane.next_due(), Some(10 + 2 * MS));
        assert!(lane.due_front(10 + 2 * MS - 1).is_none());
        assert_eq!(lane.due_front(10 + 2 * MS), Some(&b"x"[..]));
    }

    #[test]
    fn jitter_stays_in_bounds_and_keeps_order() {
        let mut lane = Lane::new(settings(10, 5, 0.0), 100_000, 7);
        // A frame every 100 us: jitter (5 ms) far exceeds the spacing, so
        // without the order rule frames would overtake each other.
        let arrivals: Vec<u64> = (0..20_000).map(|i| i * 100_000).collect();
        let sent = drive(&mut lane, &arrivals);
        assert_eq!(sent.len(), arrivals.len());
        let mut spread_seen = 0u64;
        for (i, &(t, tag)) in sent.iter().enumerate() {
            assert_eq!(tag as usize, i, "per-direction order kept");
            let extra = t - arrivals[i] - 10 * MS;
            assert!(extra <= 5 * MS, "frame {i} delayed {extra} ns past delay");
            spread_seen = spread_seen.max(extra);
        }
        assert!(spread_seen > 4 * MS, "jitter is actually applied");
        // With widely spaced frames the order rule never binds: each extra
        // delay is an independent uniform draw, mean ~ jitter / 2.
        let mut lane = Lane::new(settings(10, 5, 0.0), 16, 7);
        let arrivals: Vec<u64> = (0..4000).map(|i| i * 100 * MS).collect();
        let sent = drive(&mut lane, &arrivals);
        let mean = sent
            .iter()
            .zip(&arrivals)
            .map(|(&(t, _), &a)| (t - a - 10 * MS) as f64)
            .sum::<f64>()
            / sent.len() as f64;
        assert!(
            (2.3e6..2.7e6).contains(&mean),
            "mean jitter {mean} ns, expected ~2.5 ms"
        );
    }

    #[test]
    fn loss_is_bernoulli_and_reproducible() {
        let run = |seed: u64, p: f64| {
            let mut lane = Lane::new(settings(0, 0, p), 16, seed);
            let outcome: Vec<bool> = (0..100_000u64)
                .map(|i| {
                    let o = lane.offer(i, b"f");
                    if o != Offer::Lost {
                        lane.pop_front(true);
                    }
                    o == Offer::Lost
                })
                .collect();
            (lane.counters, outcome)
        };
        let (c, first) = run(3, 0.1);
        assert_eq!(c.frames_in, 100_000);
        assert_eq!(c.lost + c.frames_out, 100_000);
        assert!((9_000..11_000).contains(&c.lost), "lost {}", c.lost);
        assert_eq!(run(3, 0.1).1, first, "same seed, same drops");
        assert_ne!(run(4, 0.1).1, first, "another seed, other drops");
        assert_eq!(run(3, 0.0).0.lost, 0);
        assert_eq!(run(3, 1.0).0.lost, 100_000);
    }

    #[test]
    fn overflow_drops_and_counts_and_memory_is_bounded() {
        let mut lane = Lane::new(settings(100, 0, 0.0), 8, 1);
        for i in 0..20u64 {
            let o = lane.offer(i, &[i as u8; 64]);
            if i < 8 {
                assert!(matches!(o, Offer::Queued { .. }));
            } else {
                assert_eq!(o, Offer::Overflow);
            }
        }
        assert_eq!(lane.counters.overflow, 12);
        assert_eq!(lane.queued(), 8);
        // The queued frames are the first eight, intact.
        let mut now = 100 * MS + 8;
        for i in 0..8u8 {
            assert_eq!(lane.due_front(now), Some(&[i; 64][..]));
            lane.pop_front(true);
        }
        assert_eq!(lane.queued(), 0);
        // Steady state: a queue of ~3 frames cycling through a million
        // frames uses no more buffers than the deepest queue seen.
        let mut lane = Lane::new(settings(3, 0, 0.0), 65536, 1);
        for i in 0..1_000_000u64 {
            now = i * MS;
            lane.offer(now, &[0u8; 1514]);
            while lane.due_front(now).is_some() {
                lane.pop_front(true);
            }
        }
        assert_eq!(lane.counters.max_queued, 4);
        assert_eq!(lane.buffers_allocated(), 4);
    }

    #[test]
    fn tx_error_pops_and_counts() {
        let mut lane = Lane::new(settings(0, 0, 0.0), 4, 1);
        lane.offer(0, b"a");
        lane.offer(0, b"b");
        lane.pop_front(false);
        assert_eq!(lane.due_front(0), Some(&b"b"[..]));
        assert_eq!(lane.counters.tx_errors, 1);
        assert_eq!(lane.counters.frames_out, 0);
    }

    #[test]
    fn delay_cut_keeps_order() {
        let mut lane = Lane::new(settings(30, 0, 0.0), 16, 1);
        assert_eq!(lane.offer(0, b"1"), Offer::Queued { due_ns: 30 * MS });
        lane.set_settings(settings(2, 0, 0.0));
        // Would be due at 3 ms, but may not overtake the frame due at 30.
        assert_eq!(lane.offer(MS, b"2"), Offer::Queued { due_ns: 30 * MS });
        // Once the queue has drained, the new delay applies in full.
        lane.pop_front(true);
        lane.pop_front(true);
        assert_eq!(lane.offer(40 * MS, b"3"), Offer::Queued { due_ns: 42 * MS });
    }

    #[test]
    fn control_file_sets_both_or_one_direction() {
        let base = settings(2, 0, 0.0);
        let c = parse_control("", base).unwrap();
        assert_eq!(c.a_to_b, base);
        assert_eq!(c.b_to_a, base);

        let text = "# lab control\n\
                    delay_ms = 40   # both ways\n\
                    \n\
                    loss=0.1\n\
                    b_to_a.delay_ms = 5.5\n\
                    jitter_ms = 1\n";
        let c = parse_control(text, base).unwrap();
        assert_eq!(c.a_to_b, settings(40, 1, 0.1));
        assert_eq!(
            c.b_to_a,
            Settings {
                delay_ns: 5_500_000,
                jitter_ns: MS,
                loss: 0.1
            }
        );
        // A direction key wins even when the shared key comes after it.
        let c = parse_control("a_to_b.loss = 1\nloss = 0.2\n", base).unwrap();
        assert_eq!(c.a_to_b.loss, 1.0);
        assert_eq!(c.b_to_a.loss, 0.2);
    }

    #[test]
    fn control_file_errors_name_line_and_key() {
        let base = Settings::none();
        let cases = [
            (
                "delay_ms = 10\nloss = 1.5\n",
                2,
                "loss = 1.5: must be a probability",
            ),
            (
                "delay_ms = -1",
                1,
                "delay_ms = -1: must be a number of milliseconds",
            ),
            ("jitter_ms = 1e9", 1, "jitter_ms = 1000000000: must be"),
            ("delay_ms = fast", 1, "delay_ms = \"fast\": not a number"),
            ("\n\ndelay = 3", 3, "unknown key \"delay\""),
            ("up.delay_ms = 3", 1, "unknown direction \"up\""),
            ("delay_ms 3", 1, "is not `key = value`"),
            ("loss = NaN", 1, "loss = NaN: must be a probability"),
        ];
        for (text, line, want) in cases {
            let e = parse_control(text, base).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn arguments_are_checked() {
        let args = |a: &str, b: &str, d: f64, j: f64, l: f64, q: usize| DelayLineArgs {
            a: a.into(),
            b: b.into(),
            delay_ms: d,
            jitter_ms: j,
            loss: l,
            seed: None,
            control: None,
            stats: None,
            max_queue: q,
        };
        assert_eq!(
            args("up0", "down0", 2.5, 1.0, 0.25, 10).settings().unwrap(),
            Settings {
                delay_ns: 2_500_000,
                jitter_ns: MS,
                loss: 0.25
            }
        );
        let err = |x: DelayLineArgs| x.settings().unwrap_err();
        assert!(err(args("x", "x", 0.0, 0.0, 0.0, 10)).contains("--a and --b"));
        assert!(err(args("x", "y", -3.0, 0.0, 0.0, 10)).contains("--delay-ms = -3"));
        assert!(err(args("x", "y", 0.0, f64::INFINITY, 0.0, 10)).contains("--jitter-ms"));
        assert!(err(args("x", "y", 0.0, 0.0, 2.0, 10)).contains("--loss = 2"));
        assert!(err(args("x", "y", 0.0, 0.0, 0.0, 0)).contains("--max-queue = 0"));
    }
}
