//! The shared load store's client on the `redis` crate (its bounded RESP
//! parser, AUTH, TLS for `rediss://`), run on a thread of its own
//! (`mgmt-store`) so that a slow, stalled or hostile store never holds the
//! redirection thread: that thread hands an exchange over ([`Store::start`])
//! and picks its outcome up in a later round ([`Store::poll`]); an exchange
//! not done within the plan's deadline is counted as a timeout and the
//! peers' loads are then unknown.
//!
//! On the store thread: connect with `redis_connect_timeout_ms` (TCP, TLS,
//! AUTH), every read and write with `redis_io_timeout_ms`; after a failure
//! the connection is dropped and the next attempt waits a backoff that
//! doubles from the report interval up to `redis_backoff_max_ms`.
//! Errors never show the password (the URL is shown redacted).

use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender, TryRecvError};

use crate::config::plan::{redact, RedisStore};

/// One exchange: write this appliance's loads, read the peers'.
pub struct Job {
    pub set: Vec<(String, String)>,
    pub ttl: Duration,
    pub get: Vec<String>,
}

/// What the store thread reports of one exchange.
#[derive(Debug)]
pub struct Outcome {
    /// The peers' values (`None`: no such key), or the error.
    pub result: Result<Vec<Option<Vec<u8>>>, String>,
    /// A new connection was made after an earlier one failed.
    pub reconnected: bool,
    /// Skipped: the store thread was waiting out its backoff.
    pub backing_off: bool,
}

/// What a round learns from [`Store::poll`].
#[derive(Debug)]
pub enum Poll {
    /// Nothing new: idle, or the exchange is still within its deadline.
    Pending,
    Done(Outcome),
    /// The exchange just passed its deadline (reported once per exchange).
    TimedOut(Duration),
}

/// The redirection thread's handle on the store thread.
pub struct Store {
    jobs: Sender<Job>,
    outcomes: Receiver<Outcome>,
    busy_since: Option<Instant>,
    timed_out: bool,
    deadline: Duration,
    shown: String,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Store {
    /// Starts the store thread (it connects on its first exchange).
    pub fn spawn(cfg: &RedisStore, backoff_min: Duration) -> std::io::Result<Store> {
        let (jobs, rx) = channel::bounded::<Job>(1);
        let (tx, outcomes) = channel::bounded::<Outcome>(1);
        let mut conn = Conn::new(cfg.clone(), backoff_min);
        let thread = std::thread::Builder::new()
            .name("mgmt-store".into())
            .spawn(move || {
                // Ends when the redirection thread drops its handle.
                for job in rx {
                    if tx.send(conn.exchange(&job)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Store {
            jobs,
            outcomes,
            busy_since: None,
            timed_out: false,
            deadline: cfg.exchange_deadline(),
            shown: cfg.shown.clone(),
            thread: Some(thread),
        })
    }

    /// The store as shown (password redacted).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// True while an exchange is in progress.
    pub fn busy(&self) -> bool {
        self.busy_since.is_some()
    }

    /// Hands an exchange to the store thread; false when one is still in
    /// progress (the new one is not queued behind it).
    pub fn start(&mut self, job: Job) -> Result<bool, String> {
        if self.busy() {
            return Ok(false);
        }
        self.jobs
            .send(job)
            .map_err(|_| self.died("it no longer takes exchanges"))?;
        self.busy_since = Some(Instant::now());
        self.timed_out = false;
        Ok(true)
    }

    /// The exchange's outcome if it is done, or its timeout. An error: the
    /// store thread died (panicked).
    pub fn poll(&mut self) -> Result<Poll, String> {
        let Some(since) = self.busy_since else {
            return Ok(Poll::Pending);
        };
        match self.outcomes.try_recv() {
            Ok(o) => {
                self.busy_since = None;
                if self.timed_out {
                    // Counted already; a late answer is stale.
                    return Ok(Poll::Pending);
                }
                Ok(Poll::Done(o))
            }
            Err(TryRecvError::Empty) => {
                if !self.timed_out && since.elapsed() > self.deadline {
                    self.timed_out = true;
                    return Ok(Poll::TimedOut(self.deadline));
                }
                Ok(Poll::Pending)
            }
            Err(TryRecvError::Disconnected) => Err(self.died("it stopped")),
        }
    }

    /// The store thread's death, with its panic message if it panicked.
    fn died(&mut self, what: &str) -> String {
        let cause = match self.thread.take().map(|t| t.join()) {
            Some(Err(p)) => crate::mgmt::panic_message(&*p),
            _ => "no panic message".into(),
        };
        format!("the shared store's thread (mgmt-store) died: {what}: {cause}")
    }
}

/// The store thread's side: the connection and its backoff.
struct Conn {
    cfg: RedisStore,
    conn: Option<redis::Connection>,
    connected_once: bool,
    failures: u32,
    backoff_min: Duration,
    next_try: Option<Instant>,
}

impl Conn {
    fn new(cfg: RedisStore, backoff_min: Duration) -> Conn {
        Conn {
            cfg,
            conn: None,
            connected_once: false,
            failures: 0,
            backoff_min,
            next_try: None,
        }
    }

    /// The wait after `failures` failures in a row: doubling, bounded.
    fn backoff(&self) -> Duration {
        let shift = self.failures.saturating_sub(1).min(20);
        self.backoff_min
            .saturating_mul(1 << shift)
            .min(self.cfg.backoff_max)
    }

    fn exchange(&mut self, job: &Job) -> Outcome {
        if self.next_try.is_some_and(|t| Instant::now() < t) {
            return Outcome {
                result: Err("waiting before the next attempt".into()),
                reconnected: false,
                backing_off: true,
            };
        }
        let reconnected = self.conn.is_none() && self.connected_once;
        let result = self.exchange_once(job).map_err(|e| {
            // Never the password: the redacted URL, and the error redacted too.
            let msg = if e.is_timeout() {
                format!(
                    "timed out (connect timeout {} ms, read/write timeout {} ms): {e}",
                    self.cfg.connect_timeout.as_millis(),
                    self.cfg.io_timeout.as_millis()
                )
            } else {
                e.to_string()
            };
            let msg = redact(&msg);
            let msg = match &self.cfg.password {
                Some(p) if !p.expose().is_empty() => msg.replace(p.expose(), "***"),
                _ => msg,
            };
            format!("redis {}: {msg}", self.cfg.shown)
        });
        if result.is_ok() {
            self.failures = 0;
            self.next_try = None;
        } else {
            self.conn = None;
            self.failures = self.failures.saturating_add(1);
            self.next_try = Some(Instant::now() + self.backoff());
        }
        Outcome {
            result,
            reconnected: reconnected && self.conn.is_some(),
            backing_off: false,
        }
    }

    fn exchange_once(&mut self, job: &Job) -> redis::RedisResult<Vec<Option<Vec<u8>>>> {
        if self.conn.is_none() {
            let client = self.cfg.client()?;
            let c = client.get_connection_with_timeout(self.cfg.connect_timeout)?;
            c.set_read_timeout(Some(self.cfg.io_timeout))?;
            c.set_write_timeout(Some(self.cfg.io_timeout))?;
            self.conn = Some(c);
            self.connected_once = true;
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Vec::new());
        };
        let ms = job.ttl.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        let mut p = redis::pipe();
        for (k, v) in &job.set {
            p.cmd("SET").arg(k).arg(v).arg("PX").arg(ms).ignore();
        }
        if job.get.is_empty() {
            p.query::<()>(conn)?;
            return Ok(Vec::new());
        }
        p.cmd("MGET").arg(&job.get);
        let (values,): (Vec<Option<Vec<u8>>>,) = p.query(conn)?;
        if values.len() != job.get.len() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "MGET answered a different number of values than keys asked",
            )));
        }
        Ok(values)
    }
}
