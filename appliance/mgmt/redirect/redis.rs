//! A minimal Redis client for the shared load store: RESP2 over a
//! `TcpStream`, the two commands the database needs (`SET ... PX`, `MGET`),
//! reconnecting after an error. It runs on the management core's
//! redirection thread only; short timeouts keep a dead server from stalling
//! that thread for long (the data plane never waits for it).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("redis {addr}: {msg}")]
    Protocol { addr: String, msg: String },
}

pub struct Redis {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
}

/// A RESP reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

impl Redis {
    pub fn new(addr: &str) -> Redis {
        Redis {
            addr: addr.into(),
            conn: None,
        }
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            addr: self.addr.clone(),
            source,
        }
    }

    fn proto(&self, msg: impl Into<String>) -> StoreError {
        StoreError::Protocol {
            addr: self.addr.clone(),
            msg: msg.into(),
        }
    }

    fn connect(&mut self) -> Result<&mut BufReader<TcpStream>, StoreError> {
        if self.conn.is_none() {
            let sa = self
                .addr
                .parse()
                .map_err(|_| self.proto("not an address"))?;
            let s = TcpStream::connect_timeout(&sa, TIMEOUT).map_err(|e| self.io(e))?;
            s.set_read_timeout(Some(TIMEOUT)).map_err(|e| self.io(e))?;
            s.set_write_timeout(Some(TIMEOUT)).map_err(|e| self.io(e))?;
            let _ = s.set_nodelay(true);
            self.conn = Some(BufReader::new(s));
        }
        let err = self.proto("no connection");
        self.conn.as_mut().ok_or(err)
    }

    /// Sends commands in one pipeline and reads one reply each.
    pub fn pipeline(&mut self, cmds: &[Vec<String>]) -> Result<Vec<Reply>, StoreError> {
        let r = self.pipeline_once(cmds);
        if r.is_err() {
            // Reconnect next time.
            self.conn = None;
        }
        r
    }

    fn pipeline_once(&mut self, cmds: &[Vec<String>]) -> Result<Vec<Reply>, StoreError> {
        let mut out = Vec::new();
        for c in cmds {
            out.extend_from_slice(format!("*{}\r\n", c.len()).as_bytes());
            for a in c {
                out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                out.extend_from_slice(a.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        let conn = self.connect()?;
        let w = conn.get_mut().write_all(&out);
        w.map_err(|e| self.io(e))?;
        let mut replies = Vec::with_capacity(cmds.len());
        for _ in cmds {
            let conn = self.connect()?;
            let r = read_reply(conn, 0);
            replies.push(r.map_err(|e| match e {
                Err2::Io(e) => self.io(e),
                Err2::Proto(m) => self.proto(m),
            })?);
        }
        Ok(replies)
    }

    /// `SET key value PX ttl` for each pair.
    pub fn set_all(&mut self, kv: &[(String, String)], ttl: Duration) -> Result<(), StoreError> {
        let ms = ttl.as_millis().max(1).to_string();
        let cmds: Vec<Vec<String>> = kv
            .iter()
            .map(|(k, v)| vec!["SET".into(), k.clone(), v.clone(), "PX".into(), ms.clone()])
            .collect();
        for r in self.pipeline(&cmds)? {
            if let Reply::Error(e) = r {
                return Err(self.proto(e));
            }
        }
        Ok(())
    }

    /// `MGET keys...`: a value or `None` per key.
    pub fn mget(&mut self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = vec!["MGET".to_string()];
        cmd.extend(keys.iter().cloned());
        match self.pipeline(&[cmd])?.pop() {
            Some(Reply::Array(items)) if items.len() == keys.len() => Ok(items
                .into_iter()
                .map(|i| match i {
                    Reply::Bulk(v) => v,
                    _ => None,
                })
                .collect()),
            other => Err(self.proto(format!("unexpected MGET reply {other:?}"))),
        }
    }
}

enum Err2 {
    Io(std::io::Error),
    Proto(String),
}

fn read_line(r: &mut impl BufRead) -> Result<String, Err2> {
    let mut line = String::new();
    let n = r.read_line(&mut line).map_err(Err2::Io)?;
    if n == 0 {
        return Err(Err2::Proto("connection closed".into()));
    }
    Ok(line.trim_end_matches("\r\n").to_string())
}

fn read_reply(r: &mut impl BufRead, depth: usize) -> Result<Reply, Err2> {
    if depth > 4 {
        return Err(Err2::Proto("reply nested too deep".into()));
    }
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.len().min(1));
    let num = || {
        rest.parse::<i64>()
            .map_err(|_| Err2::Proto(format!("bad length in `{line}`")))
    };
    match kind {
        "+" => Ok(Reply::Simple(rest.into())),
        "-" => Ok(Reply::Error(rest.into())),
        ":" => Ok(Reply::Int(num()?)),
        "$" => {
            let n = num()?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut buf = vec![0u8; n as usize + 2];
            std::io::Read::read_exact(r, &mut buf).map_err(Err2::Io)?;
            buf.truncate(n as usize);
            Ok(Reply::Bulk(Some(
                String::from_utf8_lossy(&buf).into_owned(),
            )))
        }
        "*" => {
            let n = num()?;
            if n < 0 {
                return Ok(Reply::Array(Vec::new()));
            }
            if n > 100_000 {
                return Err(Err2::Proto("array too long".into()));
            }
            (0..n)
                .map(|_| read_reply(r, depth + 1))
                .collect::<Result<_, _>>()
                .map(Reply::Array)
        }
        _ => Err(Err2::Proto(format!("unexpected reply `{line}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resp_replies() {
        let mut r = BufReader::new(&b"*3\r\n$3\r\n1 2\r\n$-1\r\n+OK\r\n-ERR x\r\n:5\r\n"[..]);
        assert_eq!(
            read_reply(&mut r, 0).ok(),
            Some(Reply::Array(vec![
                Reply::Bulk(Some("1 2".into())),
                Reply::Bulk(None),
                Reply::Simple("OK".into())
            ]))
        );
        assert_eq!(
            read_reply(&mut r, 0).ok(),
            Some(Reply::Error("ERR x".into()))
        );
        assert_eq!(read_reply(&mut r, 0).ok(), Some(Reply::Int(5)));
        assert!(read_reply(&mut r, 0).is_err(), "closed");
    }

    #[test]
    fn an_unreachable_server_is_an_error_not_a_hang() {
        let mut r = Redis::new("127.0.0.1:1");
        let e = r.mget(&["k".into()]).unwrap_err().to_string();
        assert!(e.contains("127.0.0.1:1"), "{e}");
    }
}
