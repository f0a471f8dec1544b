//! IPFIX (RFC 7011) messages of NAT events with the RFC 8158 information
//! elements, hand-written: a message header, a template set (set id 2) with
//! two templates (IPv4 and IPv6 endpoints) and data sets of fixed-length
//! records, every message at most [`MAX_MESSAGE`] bytes.
//!
//! natEvent (230) values (IANA "NAT Event Type"): 4 NAT44 session create,
//! 5 NAT44 session delete, 12 NAT ports exhausted, 13 quota exceeded. IPv6
//! sessions (the appliance translates IPv6 to IPv6, which has no natEvent
//! value of its own: NAT64's 6/7 would say IPv6 to IPv4) use the same 4/5
//! with the IPv6 address elements of template [`TEMPLATE_V6`].
//!
//! Enterprise elements (enterprise bit set, PEN [`PEN`] = 32473, RFC 5612's
//! documentation number): 1 `uplinkIndex` (u8, the outside uplink's index
//! in the config, 255 none), 2 `raceWinnerUplink` (u8, 255 when the event
//! is not a decided race), 3 `raceWinnerRttMicroseconds` (u32, the
//! winner's measured SYN/SYN+ACK RTT, 0 unknown).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pipelines::nat::{EventKind, EventReason, NatEvent, NO_UPLINK};
use pipelines::packet::drop::DropReason;

/// IPFIX version number.
pub const VERSION: u16 = 10;
/// Largest message sent (fits a 1,500-byte MTU with IPv6 and UDP headers).
pub const MAX_MESSAGE: usize = 1_400;
/// The template of IPv4 events, and of IPv6 ones.
pub const TEMPLATE_V4: u16 = 256;
pub const TEMPLATE_V6: u16 = 257;
/// The private enterprise number of the enterprise elements (RFC 5612's
/// number for documentation).
pub const PEN: u32 = 32473;
/// Header sizes.
pub const HEADER_LEN: usize = 16;
pub const SET_HEADER_LEN: usize = 4;

/// natEvent values (RFC 8158, IANA registry).
pub const NAT44_SESSION_CREATE: u8 = 4;
pub const NAT44_SESSION_DELETE: u8 = 5;
pub const NAT_PORTS_EXHAUSTED: u8 = 12;
pub const QUOTA_EXCEEDED: u8 = 13;

/// One field of a template: (element id, length, enterprise number).
type Field = (u16, u16, Option<u32>);

const fn fields(v6: bool) -> [Field; 14] {
    let (a, l) = if v6 {
        ([27, 28, 281, 282], 16)
    } else {
        ([8, 12, 225, 226], 4)
    };
    [
        (323, 8, None),    // observationTimeMilliseconds
        (230, 1, None),    // natEvent
        (4, 1, None),      // protocolIdentifier
        (a[0], l, None),   // sourceIPv{4,6}Address
        (a[1], l, None),   // destinationIPv{4,6}Address
        (a[2], l, None),   // postNATSourceIPv{4,6}Address
        (a[3], l, None),   // postNATDestinationIPv{4,6}Address
        (7, 2, None),      // sourceTransportPort
        (11, 2, None),     // destinationTransportPort
        (227, 2, None),    // postNAPTSourceTransportPort
        (228, 2, None),    // postNAPTDestinationTransportPort
        (1, 1, Some(PEN)), // uplinkIndex
        (2, 1, Some(PEN)), // raceWinnerUplink
        (3, 4, Some(PEN)), // raceWinnerRttMicroseconds
    ]
}

/// The record length of a template.
pub const fn record_len(v6: bool) -> usize {
    if v6 {
        8 + 1 + 1 + 4 * 16 + 4 * 2 + 1 + 1 + 4
    } else {
        8 + 1 + 1 + 4 * 4 + 4 * 2 + 1 + 1 + 4
    }
}

/// The natEvent of an event; `None`: not exported (no IPFIX meaning).
pub fn nat_event(ev: &NatEvent) -> Option<u8> {
    match ev.kind {
        EventKind::SessionCreated | EventKind::RaceDecided => Some(NAT44_SESSION_CREATE),
        // The copies' sessions are logged as they are created.
        EventKind::RaceStarted => None,
        EventKind::SessionExpired | EventKind::SessionFlushed => Some(NAT44_SESSION_DELETE),
        EventKind::LimitHit => match ev.reason {
            EventReason::Limit(DropReason::PortExhausted) => Some(NAT_PORTS_EXHAUSTED),
            _ => Some(QUOTA_EXCEEDED),
        },
    }
}

/// The template set (both templates) as bytes.
pub fn template_set() -> Vec<u8> {
    let mut b = vec![0, 2, 0, 0];
    for (id, v6) in [(TEMPLATE_V4, false), (TEMPLATE_V6, true)] {
        let f = fields(v6);
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&(f.len() as u16).to_be_bytes());
        for (ie, len, pen) in f {
            let ie = if pen.is_some() { ie | 0x8000 } else { ie };
            b.extend_from_slice(&ie.to_be_bytes());
            b.extend_from_slice(&len.to_be_bytes());
            if let Some(p) = pen {
                b.extend_from_slice(&p.to_be_bytes());
            }
        }
    }
    let len = b.len() as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    b
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

fn v4(a: IpAddr) -> Ipv4Addr {
    match a {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

/// Whether the event goes in the IPv6 template.
pub fn is_v6(ev: &NatEvent) -> bool {
    ev.inside.is_ipv6()
}

/// Appends one data record of `ev` (`unix_ms`: its wall-clock time).
pub fn record(out: &mut Vec<u8>, ev: &NatEvent, event: u8, unix_ms: u64) {
    let six = is_v6(ev);
    out.extend_from_slice(&unix_ms.to_be_bytes());
    out.push(event);
    out.push(ev.proto);
    // Post-NAT destination = the remote (the appliance rewrites sources only).
    let addrs = [ev.inside, ev.remote, ev.outside, ev.remote];
    for a in addrs {
        if six {
            out.extend_from_slice(&v6(a.ip()).octets());
        } else {
            out.extend_from_slice(&v4(a.ip()).octets());
        }
    }
    for p in [ev.inside, ev.remote, ev.outside, ev.remote].map(|a: SocketAddr| a.port()) {
        out.extend_from_slice(&p.to_be_bytes());
    }
    out.push(ev.uplink);
    let winner = if ev.kind == EventKind::RaceDecided {
        ev.winner
    } else {
        NO_UPLINK
    };
    out.push(winner);
    let rtt = ev
        .race_rtts()
        .iter()
        .find(|(u, _)| *u == winner && winner != NO_UPLINK)
        .and_then(|(_, r)| *r)
        .map_or(0, |r| u32::try_from(r.0 / 1_000).unwrap_or(u32::MAX));
    out.extend_from_slice(&rtt.to_be_bytes());
}

/// Builds messages: sequence numbers per RFC 7011 (data records sent
/// before this message, modulo 2^32).
#[derive(Debug)]
pub struct Exporter {
    pub domain: u32,
    pub sequence: u32,
}

impl Exporter {
    pub fn new(domain: u32) -> Exporter {
        Exporter {
            domain,
            sequence: 0,
        }
    }

    fn header(&self, out: &mut Vec<u8>, export_s: u32) {
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&export_s.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.domain.to_be_bytes());
    }

    fn finish(out: &mut [u8]) {
        let len = out.len() as u16;
        out[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// A message holding the template set only.
    pub fn templates(&self, export_s: u32) -> Vec<u8> {
        let mut m = Vec::with_capacity(MAX_MESSAGE);
        self.header(&mut m, export_s);
        m.extend_from_slice(&template_set());
        Exporter::finish(&mut m);
        m
    }

    /// Messages of `events` (each with its wall-clock ms): consecutive
    /// events of one family share a data set; a message is closed before
    /// it would pass [`MAX_MESSAGE`]. Events with no natEvent are skipped.
    pub fn data(&mut self, events: &[(NatEvent, u64)], export_s: u32) -> Vec<Vec<u8>> {
        let mut msgs = Vec::new();
        let mut m: Vec<u8> = Vec::new();
        let mut set_at: Option<(usize, bool)> = None;
        let mut records = 0u32;
        let close_set = |m: &mut Vec<u8>, set_at: &mut Option<(usize, bool)>| {
            if let Some((at, _)) = set_at.take() {
                let len = (m.len() - at) as u16;
                m[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
            }
        };
        for (ev, ms) in events {
            let Some(code) = nat_event(ev) else { continue };
            let six = is_v6(ev);
            let need = record_len(six)
                + if set_at.is_some_and(|(_, f)| f == six) {
                    0
                } else {
                    SET_HEADER_LEN
                };
            if !m.is_empty() && m.len() + need > MAX_MESSAGE {
                close_set(&mut m, &mut set_at);
                Exporter::finish(&mut m);
                msgs.push(std::mem::take(&mut m));
                self.sequence = self.sequence.wrapping_add(records);
                records = 0;
            }
            if m.is_empty() {
                m.reserve(MAX_MESSAGE);
                self.header(&mut m, export_s);
            }
            if set_at.is_none_or(|(_, f)| f != six) {
                close_set(&mut m, &mut set_at);
                set_at = Some((m.len(), six));
                let id = if six { TEMPLATE_V6 } else { TEMPLATE_V4 };
                m.extend_from_slice(&id.to_be_bytes());
                m.extend_from_slice(&[0, 0]);
            }
            record(&mut m, ev, code, *ms);
            records += 1;
        }
        if !m.is_empty() {
            close_set(&mut m, &mut set_at);
            Exporter::finish(&mut m);
            msgs.push(m);
            self.sequence = self.sequence.wrapping_add(records);
        }
        msgs
    }
}

#[cfg(test)]
#[path = "ipfix_tests.rs"]
mod tests;
