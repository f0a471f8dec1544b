//! The client's state between runs: remembered redirections (permanent, and
//! leased with the lease's end in Unix time) and the history, as a small
//! JSON file, written whole to a temporary file and renamed over the old
//! one (a crash leaves the old state or the new, never half of one).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use pipelines::packet::time::Nanos;
use pipelines::redirect::client::{Binding, HistoryEntry, Proto, RedirectClient};
use pipelines::redirect::header::Persistence;
use serde::{Deserialize, Serialize};

/// Largest state file read (the history is bounded, so a real one is a few
/// KiB).
pub const MAX_STATE_BYTES: u64 = 1 << 20;
pub const VERSION: u32 = 1;

#[derive(Serialize, Deserialize, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    #[serde(default)]
    pub bindings: Vec<SavedBinding>,
    #[serde(default)]
    pub history: Vec<SavedHistory>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SavedBinding {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub proto: SavedProto,
    /// `permanent` or `leased`.
    pub persistence: SavedPersistence,
    /// Lease length in seconds (leased only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_s: Option<u32>,
    /// End of the lease, Unix time in milliseconds (leased only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_unix_ms: Option<u64>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SavedHistory {
    pub at_unix_ms: u64,
    pub service: SocketAddr,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub persistence: SavedPersistence,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_s: Option<u32>,
    pub failed: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum SavedProto {
    Udp,
    Tcp,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum SavedPersistence {
    None,
    Permanent,
    Once,
    Leased,
}

fn save_persistence(p: Persistence) -> (SavedPersistence, Option<u32>) {
    match p {
        Persistence::None => (SavedPersistence::None, None),
        Persistence::Permanent => (SavedPersistence::Permanent, None),
        Persistence::Once => (SavedPersistence::Once, None),
        Persistence::Leased(s) => (SavedPersistence::Leased, Some(s)),
    }
}

fn load_persistence(p: SavedPersistence, lease_s: Option<u32>) -> anyhow::Result<Persistence> {
    Ok(match (p, lease_s) {
        (SavedPersistence::None, _) => Persistence::None,
        (SavedPersistence::Permanent, _) => Persistence::Permanent,
        (SavedPersistence::Once, _) => Persistence::Once,
        (SavedPersistence::Leased, Some(s)) if s >= 1 => Persistence::Leased(s),
        (SavedPersistence::Leased, _) => {
            anyhow::bail!("persistence \"leased\" needs lease_s >= 1")
        }
    })
}

fn ms(n: Nanos) -> u64 {
    n.0 / 1_000_000
}

impl State {
    /// The state of `c`, whose clock is Unix time in nanoseconds.
    pub fn of(c: &RedirectClient) -> State {
        let bindings = c
            .bindings()
            .iter()
            .map(|b| {
                let (persistence, lease_s) = save_persistence(b.persistence);
                SavedBinding {
                    from: b.from,
                    to: b.to,
                    proto: match b.proto {
                        Proto::Udp => SavedProto::Udp,
                        Proto::Tcp => SavedProto::Tcp,
                    },
                    persistence,
                    lease_s,
                    until_unix_ms: b.until.map(ms),
                }
            })
            .collect();
        let history = c
            .history()
            .map(|h| {
                let (persistence, lease_s) = save_persistence(h.persistence);
                SavedHistory {
                    at_unix_ms: ms(h.at),
                    service: h.service,
                    from: h.from,
                    to: h.to,
                    persistence,
                    lease_s,
                    failed: h.failed,
                }
            })
            .collect();
        State {
            version: VERSION,
            bindings,
            history,
        }
    }

    /// Puts this state into `c` (a client whose clock is Unix time).
    pub fn restore(&self, c: &mut RedirectClient) -> anyhow::Result<()> {
        for (i, b) in self.bindings.iter().enumerate() {
            let persistence = load_persistence(b.persistence, b.lease_s)
                .with_context(|| format!("bindings[{i}]"))?;
            let until = match (persistence, b.until_unix_ms) {
                (Persistence::Permanent, _) => None,
                (Persistence::Leased(_), Some(u)) => Some(Nanos::from_millis(u)),
                (Persistence::Leased(_), None) => {
                    anyhow::bail!("bindings[{i}]: a leased binding needs until_unix_ms")
                }
                _ => {
                    anyhow::bail!("bindings[{i}]: persistence must be \"permanent\" or \"leased\"")
                }
            };
            c.remember(Binding {
                from: b.from,
                to: b.to,
                proto: match b.proto {
                    SavedProto::Udp => Proto::Udp,
                    SavedProto::Tcp => Proto::Tcp,
                },
                persistence,
                until,
            });
        }
        for (i, h) in self.history.iter().enumerate() {
            c.restore_history(HistoryEntry {
                at: Nanos::from_millis(h.at_unix_ms),
                service: h.service,
                from: h.from,
                to: h.to,
                persistence: load_persistence(h.persistence, h.lease_s)
                    .with_context(|| format!("history[{i}]"))?,
                failed: h.failed,
            });
        }
        Ok(())
    }

    /// Reads a state file; a missing file is an empty state.
    pub fn load(path: &Path) -> anyhow::Result<State> {
        use std::io::Read;
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State {
                    version: VERSION,
                    ..State::default()
                })
            }
            Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
        };
        let mut text = String::new();
        f.take(MAX_STATE_BYTES + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("{}", path.display()))?;
        if text.len() as u64 > MAX_STATE_BYTES {
            anyhow::bail!(
                "{}: larger than {MAX_STATE_BYTES} bytes, not a client state file",
                path.display()
            );
        }
        let de = &mut serde_json::Deserializer::from_str(&text);
        let s: State = serde_path_to_error::deserialize(de)
            .map_err(|e| anyhow::anyhow!("{}: {}: {}", path.display(), e.path(), e.inner()))?;
        if s.version != VERSION {
            anyhow::bail!(
                "{}: version: {} is not supported (allowed: {VERSION})",
                path.display(),
                s.version
            );
        }
        Ok(s)
    }

    /// Writes the state file (temporary file + rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&tmp, text + "\n").with_context(|| format!("{}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
        Ok(())
    }
}
