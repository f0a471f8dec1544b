//! The redirecting client of seed 000 (FIG. 14, [48]-[51], [61], [77]) over
//! real sockets: UDP and TCP, IPv4 and IPv6, the capability mark in the DS
//! field (DSCP 11 capable, 27 redirected, 43 failed; docs/redirection.md
//! §3), a timeout per send and the failure resend, and the remembered
//! redirections and history kept in a JSON state file between runs. The
//! decisions are `pipelines::redirect::client`'s; this room only moves
//! bytes and keeps the clock (Unix time, so leases survive a restart).
//!
//! An application embeds [`Client`]: [`Client::request`] for one
//! request-response (UDP or TCP), [`Client::connect`] for a TCP stream that
//! followed the redirections. `appliance client --to` is a loop over
//! `request`.

pub mod cli;
pub mod net;
pub mod state;

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pipelines::packet::time::Nanos;
use pipelines::redirect::client::{Action, ClientConfig, ClientError, Proto, RedirectClient, Why};
use pipelines::redirect::db::Mark;
use pipelines::redirect::header::{self, Persistence};

use net::Answer;
use state::State;

#[derive(Clone, Debug)]
pub struct Options {
    /// How long one send waits for its answer ([77]: no answer in time is
    /// a failure of that server).
    pub timeout: Duration,
    /// Sends per request, redirections and resends included.
    pub max_attempts: u32,
    pub max_redirects: u32,
    /// How long [`Client::connect`] waits, after the handshake, for a
    /// redirection before handing the stream over.
    pub redirect_wait: Duration,
    /// The state file: remembered redirections and history between runs.
    pub state: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(1),
            max_attempts: 4,
            max_redirects: 4,
            redirect_wait: Duration::from_millis(200),
            state: None,
        }
    }
}

/// One send and what came of it.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub to: SocketAddr,
    pub proto: Proto,
    pub mark: Mark,
    pub why: Why,
    /// What the answer was.
    pub result: ExchangeResult,
}

#[derive(Clone, Debug)]
pub enum ExchangeResult {
    Redirected {
        to: SocketAddr,
        persistence: Persistence,
    },
    Served {
        bytes: usize,
        first_line: String,
    },
    Failed(String),
    Nothing(String),
}

/// One request's exchanges and its outcome.
#[derive(Debug)]
pub struct Outcome {
    pub exchanges: Vec<Exchange>,
    pub result: Result<(SocketAddr, Vec<u8>), ClientError>,
}

pub struct Client {
    sm: RedirectClient,
    opts: Options,
}

/// The client's clock: Unix time, so a lease's end means the same after a
/// restart (a wall-clock step moves it too).
pub fn now() -> Nanos {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn mark_name(m: Mark) -> &'static str {
    match m {
        Mark::Plain => "plain",
        Mark::Capable => "capable",
        Mark::Redirected => "redirected",
        Mark::Failed => "failed",
    }
}

impl std::fmt::Display for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match self.why {
            Why::First => "first",
            Why::Follow(_) => "follow",
            Why::Remembered(_) => "remembered",
            Why::Resend { .. } => "resend",
            Why::Retry => "retry",
        };
        write!(
            f,
            "{} {} dscp {} ({}, {why}): ",
            self.proto.as_str(),
            self.to,
            self.mark.dscp(),
            mark_name(self.mark)
        )?;
        match &self.result {
            ExchangeResult::Redirected { to, persistence } => {
                write!(f, "redirected to {to} ({})", persistence_name(*persistence))
            }
            ExchangeResult::Served { bytes, first_line } => {
                write!(f, "served by {}, {bytes} bytes: {first_line:?}", self.to)
            }
            ExchangeResult::Failed(e) => write!(f, "failed: {e}"),
            ExchangeResult::Nothing(e) => write!(f, "no answer ({e})"),
        }
    }
}

pub fn persistence_name(p: Persistence) -> String {
    match p {
        Persistence::None => "no flag: once".into(),
        Persistence::Permanent => "permanent".into(),
        Persistence::Once => "once".into(),
        Persistence::Leased(s) => format!("leased {s} s"),
    }
}

fn first_line(b: &[u8]) -> String {
    let end = b
        .iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .unwrap_or(b.len())
        .min(80);
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl Client {
    /// A client; with `opts.state`, the state file is read (a missing one
    /// is an empty state).
    pub fn new(opts: Options) -> anyhow::Result<Client> {
        let mut sm = RedirectClient::new(ClientConfig {
            max_attempts: opts.max_attempts,
            max_redirects: opts.max_redirects,
            ..ClientConfig::default()
        });
        if let Some(p) = &opts.state {
            let s = State::load(p)?;
            s.restore(&mut sm)
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", p.display()))?;
        }
        Ok(Client { sm, opts })
    }

    /// The state machine (history, remembered redirections).
    pub fn machine(&self) -> &RedirectClient {
        &self.sm
    }

    /// Writes the state file, when there is one.
    pub fn save(&self) -> anyhow::Result<()> {
        match &self.opts.state {
            Some(p) => State::of(&self.sm).save(p),
            None => Ok(()),
        }
    }

    /// One request to `service` to completion: follows redirections and
    /// resends with the failure flag when a target does not answer
    /// ([`Client::save`] then keeps what it remembered).
    pub fn request(&mut self, service: SocketAddr, proto: Proto, payload: &[u8]) -> Outcome {
        self.run(service, proto, payload, None)
    }

    /// A TCP stream to `service` after following its redirections: each
    /// connection's SYN carries the mark; after the handshake the client
    /// waits up to `redirect_wait` for a redirection message, and hands
    /// over the first connection that does not send one (what it sent is
    /// left unread in the stream).
    pub fn connect(&mut self, service: SocketAddr) -> (Outcome, Option<TcpStream>) {
        let mut stream = None;
        let o = self.run(service, Proto::Tcp, b"", Some(&mut stream));
        (o, stream)
    }

    fn send(
        &self,
        proto: Proto,
        to: SocketAddr,
        mark: Mark,
        payload: &[u8],
        keep: &mut Option<&mut Option<TcpStream>>,
    ) -> Answer {
        match (proto, keep) {
            (Proto::Udp, _) => net::udp(to, mark, payload, self.opts.timeout),
            (Proto::Tcp, None) => net::tcp(to, mark, payload, self.opts.timeout),
            (Proto::Tcp, Some(slot)) => {
                let mut s = match net::tcp_connect(to, mark, self.opts.timeout) {
                    Ok(s) => s,
                    Err(e) => return Answer::Nothing(e.to_string()),
                };
                let wait = Instant::now() + self.opts.redirect_wait;
                match peek_redirection(&s, wait) {
                    Some(true) => net::read_answer(&mut s, Instant::now() + self.opts.timeout),
                    Some(false) => {
                        let _ = s.set_read_timeout(None);
                        **slot = Some(s);
                        // Served: no bytes consumed.
                        Answer::Bytes(Vec::new())
                    }
                    None => Answer::Nothing("closed without an answer".into()),
                }
            }
        }
    }

    fn run(
        &mut self,
        service: SocketAddr,
        proto: Proto,
        payload: &[u8],
        mut keep: Option<&mut Option<TcpStream>>,
    ) -> Outcome {
        let mut exchanges = Vec::new();
        let (mut ex, mut a) = self.sm.start(service, proto, payload, now());
        let result = loop {
            match a {
                Action::Send {
                    to,
                    mark,
                    payload,
                    why,
                } => {
                    let answer = self.send(proto, to, mark, &payload, &mut keep);
                    let (next, result) = match answer {
                        Answer::Bytes(b) => {
                            let next = self.sm.on_response(&mut ex, &b, now());
                            let r = match &next {
                                Action::Send {
                                    why: Why::Follow(h),
                                    ..
                                } => ExchangeResult::Redirected {
                                    to: h.target,
                                    persistence: h.persistence,
                                },
                                Action::Failed(e) => ExchangeResult::Failed(e.to_string()),
                                _ => {
                                    let body = if header::looks_like_message(&b) {
                                        header::parse_message(&b).map(|x| x.1).unwrap_or(&b)
                                    } else {
                                        &b
                                    };
                                    ExchangeResult::Served {
                                        bytes: body.len(),
                                        first_line: first_line(body),
                                    }
                                }
                            };
                            (next, r)
                        }
                        Answer::Nothing(e) => (
                            self.sm.on_timeout(&mut ex, now()),
                            ExchangeResult::Nothing(e),
                        ),
                    };
                    exchanges.push(Exchange {
                        to,
                        proto,
                        mark,
                        why,
                        result,
                    });
                    a = next;
                }
                Action::Served { by, response } => break Ok((by, response)),
                Action::Failed(e) => break Err(e),
            }
        };
        Outcome { exchanges, result }
    }
}

/// After a handshake: `Some(true)` when the first bytes are a redirection
/// message, `Some(false)` when the peer sent something else or nothing by
/// `until` (a server waiting for the client to speak), `None` when it
/// closed without a byte.
fn peek_redirection(s: &TcpStream, until: Instant) -> Option<bool> {
    let mut buf = [0u8; 2];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return Some(false);
        }
        match s.peek(&mut buf) {
            Ok(0) => return None,
            Ok(n) if n < 2 && buf[0] == b'R' => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Ok(n) => return Some(header::looks_like_message(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Some(false),
        }
    }
}

#[cfg(test)]
mod tests;
