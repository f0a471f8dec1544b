//! The delay line's I/O loop: two raw sockets, `ppoll` until the next due
//! time, the control file re-read when it changes, stats written as JSON.

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

impl Side {
    fn open(iface: &str, flag: &str) -> anyhow::Result<Side> {
        Ok(Side {
            sock: RawSocket::open(iface).with_context(|| format!("{flag} {iface}"))?,
            kernel_drops: 0,
        })
    }

    /// Adds the kernel's drops since the last read; returns how many.
    fn read_kernel_drops(&mut self) -> u64 {
        match self.sock.kernel_stats() {
            Ok((_, drops)) => {
                self.kernel_drops += u64::from(drops);
                u64::from(drops)
            }
            Err(_) => 0,
        }
    }
}

/// The control file's state: the version last applied and what came of it.
#[derive(Default)]
struct ControlState {
    stamp: Stamp,
    reloads: u64,
    error: Option<String>,
}

/// A running delay line: its sockets, its lanes and its clocks.
struct Line<'a> {
    args: &'a DelayLineArgs,
    base: Settings,
    seed: u64,
    sides: [Side; 2],
    /// lanes[0] carries a -> b, lanes[1] b -> a.
    lanes: [Lane; 2],
    control: ControlState,
    start: Instant,
    next_control: Instant,
    next_stats: Instant,
    /// Something changed since the stats were last written.
    dirty: bool,
    rx: Vec<u8>,
}

/// Runs the delay line until SIGINT/SIGTERM, then prints the final stats.
pub fn run(args: &DelayLineArgs) -> anyhow::Result<()> {
    let mut line = Line::open(args)?;

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("installing the SIGINT/SIGTERM handler")?;

    line.start();
    eprintln!(
        "delay-line: {} <-> {}: delay {} ms, jitter {} ms, loss {}, seed {}",
        args.a, args.b, args.delay_ms, args.jitter_ms, args.loss, line.seed
    );
    let fds = [line.sides[0].sock.fd(), line.sides[1].sock.fd()];
    let mut readable = [false; 2];
    while !stop.load(Ordering::Relaxed) {
        let busy = line.send_due();
        let wait = line.wait(busy);
        rawsock::poll_readable_into(&fds, wait, &mut readable).context("ppoll")?;
        line.receive(&readable);
        let now = Instant::now();
        line.check_control(now)?;
        line.tick_stats(now)?;
    }
    line.finish()
}

impl<'a> Line<'a> {
    /// Opens both sockets and sets up the lanes from the command line and
    /// the control file.
    fn open(args: &'a DelayLineArgs) -> anyhow::Result<Line<'a>> {
        let base = args.settings().map_err(anyhow::Error::msg)?;
        let seed = args.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                ^ u64::from(std::process::id())
        });
        let sides = [Side::open(&args.a, "--a")?, Side::open(&args.b, "--b")?];
        grow_buffers(&sides);
        // Wake for a due frame on time, not up to 50 us late.
        let _ = rawsock::set_timer_slack_ns(1);
        let mut lanes = [
            Lane::new(base, args.max_queue, seed),
            Lane::new(base, args.max_queue, seed ^ 0x9e37_79b9_7f4a_7c15),
        ];
        let mut control = ControlState::default();
        if let Some(path) = &args.control {
            control.stamp = stamp(path);
            reload(path, base, &mut lanes, &mut control.error)?;
        }
        let now = Instant::now();
        Ok(Line {
            args,
            base,
            seed,
            sides,
            lanes,
            control,
            start: now,
            next_control: now,
            next_stats: now,
            dirty: true,
            rx: vec![0u8; RX_BUF],
        })
    }

    /// Starts the clocks: lane times count from here.
    fn start(&mut self) {
        self.start = Instant::now();
        self.next_control = self.start + CONTROL_EVERY;
        self.next_stats = self.start;
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Sends what is due (up to TX_BUDGET a lane); lane i leaves on side
    /// 1 - i. True when an output socket's queue was full.
    fn send_due(&mut self) -> bool {
        let mut busy = false;
        let start = self.start;
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            let out = &self.sides[1 - i].sock;
            let now = start.elapsed().as_nanos() as u64;
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
                self.dirty = true;
            }
        }
        busy
    }

    /// How long to sleep: until the next due frame, control check or stats
    /// tick.
    fn wait(&self, busy: bool) -> Duration {
        let now = Instant::now();
        let mut wait = MAX_WAIT.min(self.next_control.saturating_duration_since(now));
        if busy {
            wait = wait.min(BUSY_RETRY);
        }
        let elapsed = self.now_ns();
        for lane in &self.lanes {
            if let Some(due) = lane.next_due() {
                wait = wait.min(Duration::from_nanos(due.saturating_sub(elapsed)));
            }
        }
        wait
    }

    /// Reads up to RX_BUDGET frames from each readable side into its lane.
    fn receive(&mut self, readable: &[bool; 2]) {
        for (i, &ready) in readable.iter().enumerate() {
            if !ready {
                continue;
            }
            for _ in 0..RX_BUDGET {
                match self.sides[i].sock.recv(&mut self.rx) {
                    Ok(Some(n)) => {
                        let now = self.now_ns();
                        self.lanes[i].offer(now, &self.rx[..n]);
                        self.dirty = true;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.lanes[i].counters.rx_errors += 1;
                        self.dirty = true;
                        // A truncated frame is consumed; anything else
                        // (interface gone) would repeat: back off.
                        if rawsock::truncated_len(&e).is_none() {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Re-reads the control file when its version changed.
    fn check_control(&mut self, now: Instant) -> anyhow::Result<()> {
        if now < self.next_control {
            return Ok(());
        }
        self.next_control = now + CONTROL_EVERY;
        let Some(path) = &self.args.control else {
            return Ok(());
        };
        let s = stamp(path);
        if s != self.control.stamp {
            self.control.stamp = s;
            self.control.reloads += 1;
            reload(path, self.base, &mut self.lanes, &mut self.control.error)?;
            self.dirty = true;
            // The settings change is visible at once.
            self.next_stats = now;
        }
        Ok(())
    }

    /// At each stats tick: reads the kernel's drops, and rewrites the stats
    /// file when something changed.
    fn tick_stats(&mut self, now: Instant) -> anyhow::Result<()> {
        if now < self.next_stats {
            return Ok(());
        }
        self.next_stats = now + STATS_EVERY;
        if self.read_kernel_drops() {
            self.dirty = true;
        }
        if self.dirty {
            self.dirty = false;
            if let Some(path) = &self.args.stats {
                write_stats(path, &self.snapshot())?;
            }
        }
        Ok(())
    }

    /// Adds each side's kernel drops to its lane's counters; true when there
    /// were new ones.
    fn read_kernel_drops(&mut self) -> bool {
        let mut any = false;
        for (side, lane) in self.sides.iter_mut().zip(self.lanes.iter_mut()) {
            if side.read_kernel_drops() > 0 {
                any = true;
            }
            lane.counters.kernel_drops = side.kernel_drops;
        }
        any
    }

    fn snapshot(&self) -> DelayLineStats {
        let args = self.args;
        DelayLineStats {
            a: args.a.clone(),
            b: args.b.clone(),
            seed: self.seed,
            uptime_s: self.start.elapsed().as_secs_f64(),
            control_file: args.control.clone(),
            control_reloads: self.control.reloads,
            control_error: self.control.error.clone(),
            a_to_b: LaneStats::of(&self.lanes[0]),
            b_to_a: LaneStats::of(&self.lanes[1]),
        }
    }

    /// The final stats: written to the stats file and printed.
    fn finish(mut self) -> anyhow::Result<()> {
        self.read_kernel_drops();
        let last = self.snapshot();
        if let Some(path) = &self.args.stats {
            write_stats(path, &last)?;
        }
        println!("{}", serde_json::to_string_pretty(&last)?);
        Ok(())
    }
}

/// Larger socket buffers absorb bursts while the loop is sending: past
/// rmem_max/wmem_max with CAP_NET_ADMIN (the *FORCE options), else as far as
/// the limits allow. Best effort either way.
fn grow_buffers(sides: &[Side; 2]) {
    let bytes: libc::c_int = 4 << 20;
    for s in sides {
        for (force, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            if s.sock.setsockopt(libc::SOL_SOCKET, force, &bytes).is_err() {
                let _ = s.sock.setsockopt(libc::SOL_SOCKET, plain, &bytes);
            }
        }
    }
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
