//! A peer's load as read from the shared store: the text another appliance
//! wrote ("TCP UDP TCP_WEIGHT UDP_WEIGHT"), checked and clamped before the
//! database uses it. The store is shared and may be wrong or hostile: an
//! absurd value must not overflow the score arithmetic nor make a peer look
//! empty (negative) or infinitely loaded by accident.

use super::db::Load;

/// The most sessions one load may claim (per protocol): far above any real
/// appliance, low enough that weighted sums and scores cannot overflow.
pub const MAX_SESSIONS: u64 = u32::MAX as u64;

/// The longest store value accepted (four decimal `u64`s and spaces fit).
pub const MAX_VALUE_LEN: usize = 128;

/// The session weights a peer may have written (as `redirection.*_weight`).
pub const WEIGHTS: std::ops::RangeInclusive<u64> = 1..=1_000;

/// Why a store value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    TooLong,
    /// Not 2 or 4 fields.
    Fields,
    /// A field is not a non-negative decimal integer.
    Number,
    /// A weight outside [`WEIGHTS`].
    Weight,
}

/// The text this appliance writes for a service's load.
pub fn format_load(l: Load, tcp_weight: u64, udp_weight: u64) -> String {
    let l = clamp(l);
    format!("{} {} {tcp_weight} {udp_weight}", l.tcp, l.udp)
}

/// Parses a peer's "TCP UDP [TCP_WEIGHT UDP_WEIGHT]": non-negative
/// integers; session counts above [`MAX_SESSIONS`] are clamped to it
/// (saturating, also for values beyond `u64`), weights must be in
/// [`WEIGHTS`].
pub fn parse_load(v: &str) -> Result<Load, Invalid> {
    if v.len() > MAX_VALUE_LEN {
        return Err(Invalid::TooLong);
    }
    let fields: Vec<&str> = v.split_ascii_whitespace().take(5).collect();
    if fields.len() != 2 && fields.len() != 4 {
        return Err(Invalid::Fields);
    }
    let mut n = [0u64; 4];
    for (d, f) in n.iter_mut().zip(&fields) {
        *d = number(f)?;
    }
    if fields.len() == 4 && !(WEIGHTS.contains(&n[2]) && WEIGHTS.contains(&n[3])) {
        return Err(Invalid::Weight);
    }
    Ok(clamp(Load {
        tcp: n[0],
        udp: n[1],
    }))
}

/// A decimal of ASCII digits only (no sign), saturating at `u64::MAX`.
fn number(f: &str) -> Result<u64, Invalid> {
    if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid::Number);
    }
    Ok(f.parse::<u64>().unwrap_or(u64::MAX))
}

/// Each count at most [`MAX_SESSIONS`].
pub fn clamp(l: Load) -> Load {
    Load {
        tcp: l.tcp.min(MAX_SESSIONS),
        udp: l.udp.min(MAX_SESSIONS),
    }
}

#[cfg(test)]
#[path = "peer_load/tests.rs"]
mod tests;
