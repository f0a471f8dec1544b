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
mod io_loop;

#[cfg(test)]
mod tests;
