//! The redirecting client (seed 000 [48]-[51], [61], [77], FIG. 14) as a
//! state machine without I/O: the caller sends what [`Action::Send`] says,
//! feeds back what came ([`RedirectClient::on_response`]) or that nothing
//! came ([`RedirectClient::on_timeout`]), and passes `now` (a virtual clock
//! in tests, so leases can be run out without waiting).
//!
//! It keeps, across requests, the redirections it was given (the history,
//! bounded) and the ones that hold for later requests: permanent ones until
//! their target fails, leased ones until the lease ends. A once (or
//! unflagged) redirection holds for its request only.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::packet::time::Nanos;
use crate::redirect::db::Mark;
use crate::redirect::header::{self, HeaderRepr, Persistence};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Sends of one request, redirections and resends included, before a
    /// service failure is reported ([61]).
    pub max_attempts: u32,
    /// Redirections followed for one request.
    pub max_redirects: u32,
    /// History entries kept.
    pub history: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            max_attempts: 4,
            max_redirects: 4,
            history: 64,
        }
    }
}

/// Why a request could not be completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// A message that starts like a redirection but is not a valid one.
    MalformedRedirection(header::Error),
    /// A UDP redirection that does not echo the request it answers.
    EchoMismatch,
    /// A TCP redirection followed by more data.
    TrailingData(usize),
    /// More redirections than `max_redirects`.
    TooManyRedirects(u32),
    /// `max_attempts` sends without a positive response ([61], [77] 1411).
    ServiceFailure { attempts: u32 },
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::MalformedRedirection(e) => write!(f, "malformed redirection: {e}"),
            ClientError::EchoMismatch => {
                write!(
                    f,
                    "malformed redirection: it does not echo the request it answers"
                )
            }
            ClientError::TrailingData(n) => {
                write!(
                    f,
                    "malformed redirection: {n} bytes after the header on TCP"
                )
            }
            ClientError::TooManyRedirects(n) => write!(f, "more than {n} redirections"),
            ClientError::ServiceFailure { attempts } => {
                write!(
                    f,
                    "service failure: no positive response after {attempts} attempts"
                )
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// Why a request is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The first send of the request.
    First,
    /// Following a redirection just received.
    Follow(HeaderRepr),
    /// Following a remembered permanent or leased redirection.
    Remembered(SocketAddr),
    /// Back to the redirecting server: `failed` did not answer ([77] 1409).
    Resend { failed: SocketAddr },
    /// Again to the same server, which did not answer.
    Retry,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `payload` to `to` over the request's protocol, the first packet
    /// marked `mark`, then call `on_response` or `on_timeout`.
    Send {
        to: SocketAddr,
        mark: Mark,
        payload: Vec<u8>,
        why: Why,
    },
    /// A positive response: the request is served by `by`.
    Served { by: SocketAddr, response: Vec<u8> },
    /// The request failed.
    Failed(ClientError),
}

/// One redirection the client was given, or one failure it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub at: Nanos,
    pub service: SocketAddr,
    /// The server that redirected.
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub persistence: Persistence,
    /// The redirection failed (its target did not answer).
    pub failed: bool,
}

/// A remembered redirection: requests for `from` go to `to`. Public so a
/// driver can keep them between runs ([`RedirectClient::bindings`],
/// [`RedirectClient::remember`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub proto: Proto,
    pub persistence: Persistence,
    /// `None`: permanent; otherwise the end of the lease on the caller's
    /// clock.
    pub until: Option<Nanos>,
}

/// One service request in progress.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub service: SocketAddr,
    pub proto: Proto,
    request: Vec<u8>,
    /// Where the last send went.
    pub current: SocketAddr,
    /// The server that sent us to `current` and the redirection it gave
    /// (`None` when `current` is the service itself).
    via: Option<(SocketAddr, HeaderRepr)>,
    /// What the last send carried before the request (a failure message).
    sent_prefix: usize,
    pub attempts: u32,
    pub redirects: u32,
    done: bool,
}

/// Longest chain of remembered redirections followed.
const MAX_CHAIN: usize = 8;

pub struct RedirectClient {
    cfg: ClientConfig,
    bindings: Vec<Binding>,
    history: VecDeque<HistoryEntry>,
}

impl RedirectClient {
    pub fn new(cfg: ClientConfig) -> RedirectClient {
        RedirectClient {
            cfg,
            bindings: Vec::new(),
            history: VecDeque::new(),
        }
    }

    pub fn history(&self) -> impl Iterator<Item = &HistoryEntry> {
        self.history.iter()
    }

    /// The remembered (permanent and leased) redirections.
    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// Remembers `b` (restored from a previous run), replacing the one for
    /// the same origin and protocol.
    pub fn remember(&mut self, b: Binding) {
        self.bindings
            .retain(|x| !(x.from == b.from && x.proto == b.proto));
        self.bindings.push(b);
    }

    /// Adds `e` to the history (restored from a previous run), the oldest
    /// entry going when it is full.
    pub fn restore_history(&mut self, e: HistoryEntry) {
        self.record(e);
    }

    /// Where a request to `service` goes now, following remembered
    /// redirections (expired leases are dropped here).
    pub fn resolve(&mut self, service: SocketAddr, proto: Proto, now: Nanos) -> SocketAddr {
        self.resolve_chain(service, proto, now).0
    }

    /// The target and the last hop that led to it, with its redirection.
    fn resolve_chain(
        &mut self,
        service: SocketAddr,
        proto: Proto,
        now: Nanos,
    ) -> (SocketAddr, Option<(SocketAddr, HeaderRepr)>) {
        self.bindings.retain(|b| b.until.is_none_or(|u| now < u));
        let mut at = service;
        let mut via = None;
        for _ in 0..MAX_CHAIN {
            let Some(b) = self
                .bindings
                .iter()
                .find(|b| b.from == at && b.proto == proto)
            else {
                break;
            };
            via = Some((
                at,
                HeaderRepr {
                    redirect: true,
                    persistence: b.persistence,
                    failed: false,
                    target: b.to,
                },
            ));
            at = b.to;
        }
        (at, via)
    }

    /// Starts a request: the exchange and the first send.
    pub fn start(
        &mut self,
        service: SocketAddr,
        proto: Proto,
        request: &[u8],
        now: Nanos,
    ) -> (Exchange, Action) {
        let (to, via) = self.resolve_chain(service, proto, now);
        let mut ex = Exchange {
            service,
            proto,
            request: request.to_vec(),
            current: to,
            via,
            sent_prefix: 0,
            attempts: 0,
            redirects: 0,
            done: false,
        };
        let (mark, why) = match via {
            None => (Mark::Capable, Why::First),
            Some(_) => (Mark::Redirected, Why::Remembered(to)),
        };
        let a = self.send(&mut ex, to, mark, None, why);
        (ex, a)
    }

    fn send(
        &mut self,
        ex: &mut Exchange,
        to: SocketAddr,
        mark: Mark,
        failure: Option<HeaderRepr>,
        why: Why,
    ) -> Action {
        if ex.attempts >= self.cfg.max_attempts {
            ex.done = true;
            return Action::Failed(ClientError::ServiceFailure {
                attempts: ex.attempts,
            });
        }
        ex.attempts += 1;
        ex.current = to;
        let mut payload = Vec::with_capacity(header::MAX_MESSAGE_LEN + ex.request.len());
        ex.sent_prefix = 0;
        if let (Some(h), Proto::Udp) = (failure, ex.proto) {
            // [57]: the redirection header returned with the request.
            let (m, n) = h.to_message();
            payload.extend_from_slice(&m[..n]);
            ex.sent_prefix = n;
        }
        payload.extend_from_slice(&ex.request);
        Action::Send {
            to,
            mark,
            payload,
            why,
        }
    }

    /// What came back from `ex.current`: a redirection to follow, or the
    /// response that completes the request.
    pub fn on_response(&mut self, ex: &mut Exchange, bytes: &[u8], now: Nanos) -> Action {
        if ex.done {
            return Action::Failed(ClientError::ServiceFailure {
                attempts: ex.attempts,
            });
        }
        if !header::looks_like_message(bytes) {
            return self.served(ex, bytes);
        }
        let (h, rest) = match header::parse_message(bytes) {
            Ok(x) => x,
            Err(e) => return self.fail(ex, ClientError::MalformedRedirection(e)),
        };
        match ex.proto {
            Proto::Udp if !ex.request.starts_with(rest) => {
                return self.fail(ex, ClientError::EchoMismatch)
            }
            Proto::Tcp if !rest.is_empty() => {
                return self.fail(ex, ClientError::TrailingData(rest.len()))
            }
            _ => {}
        }
        if !h.redirect {
            // "Served here": a header without the redirect flag.
            return self.served(ex, rest);
        }
        if ex.redirects >= self.cfg.max_redirects {
            return self.fail(ex, ClientError::TooManyRedirects(self.cfg.max_redirects));
        }
        ex.redirects += 1;
        let from = ex.current;
        let target = if h.target.port() == 0 {
            SocketAddr::new(h.target.ip(), from.port())
        } else {
            h.target
        };
        let h = HeaderRepr {
            target,
            failed: false,
            ..h
        };
        self.record(HistoryEntry {
            at: now,
            service: ex.service,
            from,
            to: target,
            persistence: h.persistence,
            failed: false,
        });
        let until = match h.persistence {
            Persistence::Permanent => Some(None),
            Persistence::Leased(s) => {
                Some(Some(now.saturating_add(Nanos::from_secs(u64::from(s)))))
            }
            Persistence::Once | Persistence::None => None,
        };
        if let Some(until) = until {
            self.remember(Binding {
                from,
                to: target,
                proto: ex.proto,
                persistence: h.persistence,
                until,
            });
        }
        ex.via = Some((from, h));
        self.send(ex, target, Mark::Redirected, None, Why::Follow(h))
    }

    /// Nothing (or a refusal) came from `ex.current` in time.
    pub fn on_timeout(&mut self, ex: &mut Exchange, now: Nanos) -> Action {
        if ex.done {
            return Action::Failed(ClientError::ServiceFailure {
                attempts: ex.attempts,
            });
        }
        match ex.via {
            Some((origin, h)) if ex.current == h.target => {
                // [77] 1407-1409: back to the server that redirected, with
                // the failure indication; the target is not used again.
                let failed = ex.current;
                self.bindings.retain(|b| b.to != failed);
                self.record(HistoryEntry {
                    at: now,
                    service: ex.service,
                    from: origin,
                    to: failed,
                    persistence: h.persistence,
                    failed: true,
                });
                ex.via = None;
                let report = HeaderRepr { failed: true, ..h };
                self.send(
                    ex,
                    origin,
                    Mark::Failed,
                    Some(report),
                    Why::Resend { failed },
                )
            }
            _ => {
                let (to, mark) = (ex.current, Mark::Capable);
                self.send(ex, to, mark, None, Why::Retry)
            }
        }
    }

    fn served(&mut self, ex: &mut Exchange, response: &[u8]) -> Action {
        ex.done = true;
        Action::Served {
            by: ex.current,
            response: response.to_vec(),
        }
    }

    fn fail(&mut self, ex: &mut Exchange, e: ClientError) -> Action {
        ex.done = true;
        Action::Failed(e)
    }

    fn record(&mut self, e: HistoryEntry) {
        if self.history.len() >= self.cfg.history.max(1) {
            self.history.pop_front();
        }
        self.history.push_back(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const SVC: &str = "198.51.100.10:7000";

    fn redirect(to: &str, p: Persistence, echo: &[u8]) -> Vec<u8> {
        let h = HeaderRepr {
            redirect: true,
            persistence: p,
            failed: false,
            target: sa(to),
        };
        let (m, n) = h.to_message();
        let mut v = m[..n].to_vec();
        v.extend_from_slice(echo);
        v
    }

    fn sent(a: &Action) -> (SocketAddr, Mark, Vec<u8>) {
        match a {
            Action::Send {
                to, mark, payload, ..
            } => (*to, *mark, payload.clone()),
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn follows_a_redirection_then_resends_with_the_failure_flag() {
        let mut c = RedirectClient::new(ClientConfig::default());
        let t = Nanos::from_secs(1);
        let (mut ex, a) = c.start(sa(SVC), Proto::Udp, b"hello", t);
        assert_eq!(sent(&a), (sa(SVC), Mark::Capable, b"hello".to_vec()));
        let a = c.on_response(
            &mut ex,
            &redirect("198.51.100.12:0", Persistence::Once, b"hel"),
            t,
        );
        assert_eq!(
            sent(&a),
            (
                sa("198.51.100.12:7000"),
                Mark::Redirected,
                b"hello".to_vec()
            )
        );
        let a = c.on_timeout(&mut ex, t);
        let (to, mark, payload) = sent(&a);
        assert_eq!((to, mark), (sa(SVC), Mark::Failed));
        let (h, rest) = header::parse_message(&payload).unwrap();
        assert!(h.failed && h.redirect);
        assert_eq!(h.target, sa("198.51.100.12:7000"));
        assert_eq!(rest, b"hello");
        // The redirecting server now serves it.
        let a = c.on_response(&mut ex, b"world", t);
        assert_eq!(
            a,
            Action::Served {
                by: sa(SVC),
                response: b"world".to_vec()
            }
        );
        let h: Vec<_> = c.history().map(|e| (e.to, e.failed)).collect();
        assert_eq!(
            h,
            [
                (sa("198.51.100.12:7000"), false),
                (sa("198.51.100.12:7000"), true)
            ]
        );
    }

    #[test]
    fn malformed_redirections_are_rejected_with_a_reason() {
        let mut c = RedirectClient::new(ClientConfig::default());
        let t = Nanos::ZERO;
        for (bytes, want) in [
            (
                b"RD\x02\x08\x80\0\0\0\x01\x02\x03\x04".to_vec(),
                "unsupported redirection version 2",
            ),
            (b"RD\x01\x08\x80\0".to_vec(), "truncated"),
            (
                b"RD\x01\x08\xe0\0\0\0\x01\x02\x03\x04".to_vec(),
                "at most one of permanent",
            ),
            (
                redirect("198.51.100.12:1", Persistence::Once, b"nope"),
                "does not echo",
            ),
        ] {
            let (mut ex, _) = c.start(sa(SVC), Proto::Udp, b"hello", t);
            match c.on_response(&mut ex, &bytes, t) {
                Action::Failed(e) => assert!(e.to_string().contains(want), "{e}"),
                a => panic!("{a:?}"),
            }
        }
        let (mut ex, _) = c.start(sa(SVC), Proto::Tcp, b"hello", t);
        match c.on_response(
            &mut ex,
            &redirect("198.51.100.12:1", Persistence::Once, b"x"),
            t,
        ) {
            Action::Failed(ClientError::TrailingData(1)) => {}
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let mut c = RedirectClient::new(ClientConfig {
            max_attempts: 3,
            ..ClientConfig::default()
        });
        let (mut ex, _) = c.start(sa(SVC), Proto::Tcp, b"q", Nanos::ZERO);
        assert!(matches!(
            c.on_timeout(&mut ex, Nanos::ZERO),
            Action::Send {
                why: Why::Retry,
                ..
            }
        ));
        assert!(matches!(
            c.on_timeout(&mut ex, Nanos::ZERO),
            Action::Send { .. }
        ));
        assert_eq!(
            c.on_timeout(&mut ex, Nanos::ZERO),
            Action::Failed(ClientError::ServiceFailure { attempts: 3 })
        );
    }

    #[test]
    fn redirection_loops_end() {
        let mut c = RedirectClient::new(ClientConfig {
            max_attempts: 20,
            ..ClientConfig::default()
        });
        let (mut ex, _) = c.start(sa(SVC), Proto::Tcp, b"q", Nanos::ZERO);
        for i in 0..5 {
            let to = if i % 2 == 0 { "192.0.2.1:7000" } else { SVC };
            let a = c.on_response(&mut ex, &redirect(to, Persistence::None, b""), Nanos::ZERO);
            if i < 4 {
                assert!(matches!(a, Action::Send { .. }), "{a:?}");
            } else {
                assert_eq!(a, Action::Failed(ClientError::TooManyRedirects(4)));
            }
        }
    }
}
