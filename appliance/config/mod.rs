//! The site configuration: reading it and saying what is wrong with it.
//!
//! - `model`: the serde model of the TOML file (typed fields, unknown keys
//!   refused), re-exported here (`config::Config`, `config::SimConfig`, ...).
//! - `values`: the typed values written as strings (addresses, MACs,
//!   modes, algorithms) and the messages for bad ones.
//! - [`site`]: a writer of small sites' TOML text for tests and labs.
//! - [`plan`]: validation of a `Config` into the `Plan` the runtime starts.
//!
//! Every error names the field's path and what is allowed: [`parse`]
//! returns serde's errors as `path: message`, [`plan`] returns a
//! [`ConfigError`] with the same shape.
//! Nothing here imports the runtime, the ports, the dataplane or `lab`.

pub mod diff;
mod model;
pub mod plan;
pub mod site;
mod values;

pub use model::*;

/// NAT events a translate lcore's ring holds unless `[telemetry]
/// event_ring_size` says otherwise.
pub const EVENT_RING_DEFAULT: usize = 16_384;
pub use values::{
    OnUplinkDown, PersistenceKind, PolicyProtocol, RedirectStoreKind, ReturnSteering,
    SelectionMode, ServiceProtocol, Stage,
};

/// A configuration error: `path` is the field (e.g. `uplinks[1].port`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {msg}")]
pub struct ConfigError {
    pub path: String,
    pub msg: String,
}

/// Parses TOML into a [`Config`]; errors name the field's path.
pub fn parse(text: &str) -> Result<Config, String> {
    let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.message().to_string();
        if path == "." || path.is_empty() {
            msg
        } else {
            format!("{path}: {msg}")
        }
    })
}
