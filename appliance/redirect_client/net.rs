//! One exchange over a real socket: a fresh socket per send (a new flow, so
//! the appliance decides it again: it looks only at a flow's first packet),
//! the capability mark in the DS field (`IP_TOS` / `IPV6_TCLASS`, DSCP in
//! the upper six bits), a bounded answer read within a timeout.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use pipelines::redirect::db::Mark;
use socket2::{Domain, Protocol, Socket, Type};

/// Most bytes read as one answer (a TCP response is read to its end or to
/// this; a UDP datagram is at most 64 KiB).
pub const MAX_ANSWER: usize = 1 << 20;

/// The DS field byte carrying `mark` (ECN bits zero).
pub fn ds_byte(mark: Mark) -> u32 {
    u32::from(mark.dscp()) << 2
}

/// Sets the DS field of the packets `s` sends.
pub fn set_mark(s: &Socket, to: SocketAddr, mark: Mark) -> io::Result<()> {
    match to {
        SocketAddr::V4(_) => s.set_tos_v4(ds_byte(mark)),
        SocketAddr::V6(_) => s.set_tclass_v6(ds_byte(mark)),
    }
}

/// What came back from one send.
#[derive(Debug)]
pub enum Answer {
    Bytes(Vec<u8>),
    /// Refused (TCP RST, ICMP unreachable) or nothing within the timeout.
    Nothing(String),
}

/// One UDP datagram out, one in (from `to`; others are ignored).
pub fn udp(to: SocketAddr, mark: Mark, payload: &[u8], timeout: Duration) -> Answer {
    match udp_io(to, mark, payload, timeout) {
        Ok(a) => a,
        Err(e) => Answer::Nothing(e.to_string()),
    }
}

fn udp_io(to: SocketAddr, mark: Mark, payload: &[u8], timeout: Duration) -> io::Result<Answer> {
    let s = Socket::new(Domain::for_address(to), Type::DGRAM, Some(Protocol::UDP))?;
    set_mark(&s, to, mark)?;
    let s: UdpSocket = s.into();
    s.connect(to)?;
    s.send(payload)?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Answer::Nothing("timeout".into()));
        }
        s.set_read_timeout(Some(left))?;
        match s.recv(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Answer::Bytes(buf));
            }
            Err(e) if is_timeout(&e) => return Ok(Answer::Nothing("timeout".into())),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Ok(Answer::Nothing(e.to_string())),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A TCP connection to `to`, its SYN marked `mark`; the mark is cleared
/// once connected (only a flow's first packet is looked at).
pub fn tcp_connect(to: SocketAddr, mark: Mark, timeout: Duration) -> io::Result<TcpStream> {
    let s = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    set_mark(&s, to, mark)?;
    s.connect_timeout(&to.into(), timeout)?;
    set_mark(&s, to, Mark::Plain)?;
    s.set_tcp_nodelay(true)?;
    Ok(s.into())
}

/// Reads `s` to its end (or `MAX_ANSWER` bytes, or the deadline): the
/// answer, or `Nothing` when the peer sent nothing at all.
pub fn read_answer(s: &mut TcpStream, deadline: Instant) -> Answer {
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Err(e) = s.set_read_timeout(Some(left)) {
            return Answer::Nothing(e.to_string());
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let n = n.min(MAX_ANSWER - out.len());
                out.extend_from_slice(&buf[..n]);
                if out.len() >= MAX_ANSWER {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => break,
            Err(e) if out.is_empty() => return Answer::Nothing(e.to_string()),
            Err(_) => break,
        }
    }
    if out.is_empty() {
        Answer::Nothing("closed without an answer".into())
    } else {
        Answer::Bytes(out)
    }
}

/// Request-response over TCP: connect marked, write the request, half-close
/// (so a server reading to the end answers), read the answer.
pub fn tcp(to: SocketAddr, mark: Mark, payload: &[u8], timeout: Duration) -> Answer {
    use std::io::Write;
    let deadline = Instant::now() + timeout;
    let mut s = match tcp_connect(to, mark, timeout) {
        Ok(s) => s,
        Err(e) => return Answer::Nothing(e.to_string()),
    };
    // A redirecting appliance may already have closed its side: a write
    // error is not the end, the message may be waiting to be read.
    let _ = s.write_all(payload);
    let _ = s.shutdown(std::net::Shutdown::Write);
    read_answer(&mut s, deadline)
}
