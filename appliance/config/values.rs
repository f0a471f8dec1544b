//! Typed values that the TOML writes as strings: MAC addresses, IP
//! addresses and prefixes, address-and-port pairs, pipeline stages and the
//! enums of modes, algorithms and settings.
//!
//! Each value is read from its string by serde, so a bad one fails while
//! the config is parsed and `serde_path_to_error` names its field
//! (`uplinks[1].next_hop`). The messages are the ones `appliance check` has
//! always printed: what the string is not, or what is allowed.
//!
//! Invariant: no message here names a field (the path does that), except
//! where the wording points at a sibling key (`next_hop_v6`).
//! May import std, serde and pipelines' value types (`IpPrefix`,
//! `Algorithm`, `Filtering`, `RaceMode`, `parse_mac`); nothing of the plan.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pipelines::nat::Filtering;
use pipelines::select::policy::RaceMode;
use pipelines::select::Algorithm;
use pipelines::topology::IpPrefix;
use pipelines::wire::parse_mac;
use serde::{de, Deserialize, Deserializer};

/// A value read from a TOML string; `Err` is the message for a string that
/// is not one.
pub(crate) trait FromText: Sized {
    fn from_text(s: &str) -> Result<Self, String>;
}

/// Deserializes through [`FromText`]; the field functions below unwrap it.
struct Text<T>(T);

impl<'de, T: FromText> Deserialize<'de> for Text<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        T::from_text(&s).map(Text).map_err(de::Error::custom)
    }
}

/// `deserialize_with` for a field of a [`FromText`] type.
pub(crate) fn text<'de, D: Deserializer<'de>, T: FromText>(d: D) -> Result<T, D::Error> {
    Text::<T>::deserialize(d).map(|t| t.0)
}

/// `deserialize_with` for an optional field (give it `#[serde(default)]`).
pub(crate) fn opt_text<'de, D: Deserializer<'de>, T: FromText>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<Text<T>>::deserialize(d).map(|o| o.map(|t| t.0))
}

/// `deserialize_with` for a list; a bad element's path carries its index.
pub(crate) fn vec_text<'de, D: Deserializer<'de>, T: FromText>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Text<T>>::deserialize(d).map(|v| v.into_iter().map(|t| t.0).collect())
}

/// `uplinks[].next_hop_mac`: the next hop is one station, so a group
/// (multicast) or all-zero MAC is refused.
pub(crate) fn unicast_mac<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 6]>, D::Error> {
    let Some(m) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    parse_mac(&m)
        .filter(|mac| mac[0] & 1 == 0 && *mac != [0; 6])
        .map(Some)
        .ok_or_else(|| {
            de::Error::custom(format!(
                "`{m}` is not a unicast MAC address (aa:bb:cc:dd:ee:ff)"
            ))
        })
}

/// `uplinks[].next_hop`: IPv4 only; the message points IPv6 to its key.
pub(crate) fn next_hop_v4<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
    let Some(a) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    a.parse()
        .map(Some)
        .map_err(|_| de::Error::custom(format!("`{a}` is not an IPv4 address (IPv6: next_hop_v6)")))
}

/// A MAC address, `aa:bb:cc:dd:ee:ff`.
impl FromText for [u8; 6] {
    fn from_text(s: &str) -> Result<Self, String> {
        parse_mac(s).ok_or_else(|| format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)"))
    }
}

impl FromText for IpAddr {
    fn from_text(s: &str) -> Result<Self, String> {
        s.parse().map_err(|_| format!("`{s}` is not an IP address"))
    }
}

impl FromText for Ipv4Addr {
    fn from_text(s: &str) -> Result<Self, String> {
        s.parse()
            .map_err(|_| format!("`{s}` is not an IPv4 address"))
    }
}

impl FromText for Ipv6Addr {
    fn from_text(s: &str) -> Result<Self, String> {
        s.parse()
            .map_err(|_| format!("`{s}` is not an IPv6 address"))
    }
}

/// `ADDR/LEN` or a bare address (a host prefix).
impl FromText for IpPrefix {
    fn from_text(s: &str) -> Result<Self, String> {
        s.parse()
    }
}

/// An address and port, IPv6 in brackets.
impl FromText for SocketAddr {
    fn from_text(s: &str) -> Result<Self, String> {
        s.parse().map_err(|_| {
            format!(
                "`{s}` is not an address and port (e.g. 198.51.100.10:7000, [2001:db8::1]:7000)"
            )
        })
    }
}

impl FromText for Algorithm {
    fn from_text(s: &str) -> Result<Self, String> {
        s.parse().map_err(|e| format!("`{s}`; allowed: {e}"))
    }
}

impl FromText for Filtering {
    fn from_text(s: &str) -> Result<Self, String> {
        s.parse()
    }
}

/// Our own enums deserialize through [`FromText`] directly.
macro_rules! deserialize_from_text {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                text(d)
            }
        }
    )*};
}

deserialize_from_text!(
    Stage,
    SelectionMode,
    OnUplinkDown,
    PolicyProtocol,
    ReturnSteering,
    RedirectStoreKind,
    ServiceProtocol,
    PersistenceKind
);

/// Finds `s` among `(name, value)` pairs, else says what is allowed.
fn one_of<T: Copy>(s: &str, names: &[(&str, T)]) -> Result<T, String> {
    names
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let all: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
            format!("`{s}`; allowed: {}", all.join(", "))
        })
}

/// The four stages, in packet-path order (`runtime.lcores[].stages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Classify,
    Replicate,
    Translate,
    Transmit,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::Classify,
        Stage::Replicate,
        Stage::Translate,
        Stage::Transmit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Classify => "classify",
            Stage::Replicate => "replicate",
            Stage::Translate => "translate",
            Stage::Transmit => "transmit",
        }
    }
}

impl FromText for Stage {
    fn from_text(s: &str) -> Result<Self, String> {
        Stage::ALL
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| {
                format!("unknown stage `{s}`; stages are: classify, replicate, translate, transmit")
            })
    }
}

/// `selection.mode`: a race mode, or no racing at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectionMode {
    /// New TCP connections race; `RaceMode` says which answer wins.
    Race(RaceMode),
    /// No race: the algorithm chooses for everything.
    Off,
}

impl SelectionMode {
    /// The name as written in the config (and reported in the stats).
    pub fn name(self) -> &'static str {
        match self {
            SelectionMode::Race(r) => r.as_str(),
            SelectionMode::Off => "off",
        }
    }
}

impl FromText for SelectionMode {
    fn from_text(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(SelectionMode::Off),
            m => m
                .parse::<RaceMode>()
                .map(SelectionMode::Race)
                .map_err(|e| format!("`{m}`; allowed: {e}, off")),
        }
    }
}

/// `selection.on_uplink_down`: what happens to sessions on an uplink that
/// goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUplinkDown {
    Keep,
    Reset,
}

impl FromText for OnUplinkDown {
    fn from_text(s: &str) -> Result<Self, String> {
        one_of(
            s,
            &[("keep", OnUplinkDown::Keep), ("reset", OnUplinkDown::Reset)],
        )
    }
}

/// `selection.policies[].protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyProtocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

impl FromText for PolicyProtocol {
    fn from_text(s: &str) -> Result<Self, String> {
        use PolicyProtocol::*;
        one_of(
            s,
            &[("tcp", Tcp), ("udp", Udp), ("icmp", Icmp), ("any", Any)],
        )
    }
}

/// `dpdk.return_steering`: how return traffic reaches the lcore owning its
/// NAT shard when several lcores receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnSteering {
    /// Hand-off rings; any NIC.
    Software,
    /// rte_flow rules on the NAT port slices; NICs with flow steering.
    Flow,
}

impl FromText for ReturnSteering {
    fn from_text(s: &str) -> Result<Self, String> {
        match s {
            "software" => Ok(ReturnSteering::Software),
            "flow" => Ok(ReturnSteering::Flow),
            v => Err(format!("`{v}`; allowed: \"software\", \"flow\"")),
        }
    }
}

/// `redirection.store`: where loads are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectStoreKind {
    /// This appliance alone.
    Embedded,
    /// A Redis server (`redirection.redis`).
    Redis,
}

impl FromText for RedirectStoreKind {
    fn from_text(s: &str) -> Result<Self, String> {
        one_of(
            s,
            &[
                ("embedded", RedirectStoreKind::Embedded),
                ("redis", RedirectStoreKind::Redis),
            ],
        )
    }
}

/// `redirection.services[].protocols[]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceProtocol {
    Tcp,
    Udp,
}

impl FromText for ServiceProtocol {
    fn from_text(s: &str) -> Result<Self, String> {
        one_of(
            s,
            &[("tcp", ServiceProtocol::Tcp), ("udp", ServiceProtocol::Udp)],
        )
    }
}

/// `redirection.services[].persistence`: what a redirection tells the
/// client (`Leased` takes its lease from `lease_s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistenceKind {
    Once,
    Permanent,
    Leased,
    None,
}

impl FromText for PersistenceKind {
    fn from_text(s: &str) -> Result<Self, String> {
        one_of(
            s,
            &[
                ("once", PersistenceKind::Once),
                ("permanent", PersistenceKind::Permanent),
                ("leased", PersistenceKind::Leased),
                ("none", PersistenceKind::None),
            ],
        )
    }
}
