//! The `[control]` and `[telemetry]` sections of the site configuration
//! (the control socket, the Prometheus endpoint, the NAT event log): part
//! of the serde model (see the parent module), same rules: unknown keys
//! refused, keys and defaults are the file format.

use serde::Deserialize;

/// `[control]`: where `appliance run` serves its control socket.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    /// The socket's path (mode 0600, or 0660 with `group`). Unset: `$XDG_RUNTIME_DIR/appliance.sock`,
    /// else `/tmp/appliance-$UID.sock`. `--socket` overrides it.
    pub socket: Option<std::path::PathBuf>,
    /// A group that may use the socket too (mode 0660). Unset: 0600.
    pub group: Option<String>,
}

/// `[telemetry]`: the Prometheus metrics endpoint and the NAT event log
/// (both off by default).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySection {
    /// `address:port` to serve `/metrics` on (e.g. `127.0.0.1:9417`).
    /// Unset: no endpoint.
    pub prometheus: Option<String>,
    /// NAT events each translate lcore's ring holds (beyond: `events.lost`).
    pub event_ring_size: Option<usize>,
    /// `[telemetry.nat_log]`: NAT events to a JSON lines file and/or an
    /// IPFIX collector.
    pub nat_log: NatLogSection,
}

/// `[telemetry.nat_log]`: the NAT event log's sinks (none by default).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NatLogSection {
    /// A file of JSON lines, one event each (appended; reopened on SIGUSR1
    /// and on `reload`, for logrotate).
    pub json_file: Option<std::path::PathBuf>,
    /// `IP:port` of an IPFIX collector (UDP, RFC 7011, RFC 8158 elements).
    pub ipfix_collector: Option<String>,
    /// Seconds between two sendings of the templates (also sent at start).
    pub ipfix_template_refresh_s: u64,
    /// The IPFIX observation domain id of every message.
    pub ipfix_observation_domain: u32,
}

impl Default for NatLogSection {
    fn default() -> Self {
        NatLogSection {
            json_file: None,
            ipfix_collector: None,
            ipfix_template_refresh_s: 60,
            ipfix_observation_domain: 1,
        }
    }
}
