//! The client side: one request, one answer, with timeouts (an appliance
//! that hangs makes the command fail, not hang).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::protocol::{self, Command};

/// How long a command waits for the appliance.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest answer a client reads.
pub const MAX_ANSWER: u64 = 64 << 20;

/// A connection to a running appliance.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, String> {
        let stream = UnixStream::connect(path).map_err(|e| {
            format!(
                "cannot reach an appliance on {}: {e} (is `appliance run` running? give its socket with --socket)",
                path.display()
            )
        })?;
        let io = |e: std::io::Error| format!("{}: {e}", path.display());
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends `cmd`; its `ok` value, or the appliance's error.
    pub fn request(&mut self, cmd: &Command) -> Result<Value, String> {
        self.writer
            .write_all(protocol::request_line(cmd).as_bytes())
            .map_err(|e| format!("sending the request: {e}"))?;
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_ANSWER)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            return Err("the appliance closed the connection without answering".into());
        }
        protocol::parse_answer(&line)
    }
}

impl Client {
    /// The connection's further lines (a subscription's stream), read
    /// without a timeout.
    pub fn stream_lines(self) -> Result<impl BufRead, String> {
        self.reader
            .get_ref()
            .set_read_timeout(None)
            .map_err(|e| e.to_string())?;
        Ok(self.reader)
    }
}

/// One request on a fresh connection.
pub fn request(path: &Path, cmd: &Command) -> Result<Value, String> {
    Client::connect(path)?.request(cmd)
}
