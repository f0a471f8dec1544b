//! The redirection header (seed 000 [58]-[59], FIG. 9) and the redirection
//! message that carries it.
//!
//! # The 64-bit header (the base case)
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|P|O|L|F|6|   reserved (0)    |            port               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 IPv4 address (0 when the 6 flag is set)       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Bits 0-15 flags, 16-31 the port, 32-63 the IPv4 address, all in network
//! byte order (bit 0 is the most significant bit of the first byte). The
//! flags: R redirect, P permanent, O once, L leased ([59]), F failed (the
//! client's resend after the target did not answer, [57], [77]), 6 the target
//! is an IPv6 address. Port 0 means "the port the request was sent to" ([54]:
//! the port of a service address is optional).
//!
//! # Extensions
//! The base header is followed, in this order, by
//! - 16 bytes, the IPv6 address, when the 6 flag is set;
//! - 4 bytes, the lease in seconds (u32, at least 1), when L is set.
//!
//! So a header is 8, 12, 24 or 28 bytes; its flags alone say which.
//!
//! # The message
//! On the wire a header travels in a *redirection message*: a 4-byte
//! preamble, the header with its extensions, then (UDP only) data:
//! ```text
//! +-----+-----+---------+--------+--------------------+------------
//! | 'R' | 'D' | version | length | header (length B)  | data ...
//! +-----+-----+---------+--------+--------------------+------------
//! ```
//! `version` is 1; `length` is the header's length in bytes and must equal
//! the one its flags give. See `docs/redirection.md` for where messages go.
//!
//! As in smoltcp's `wire` module: [`Header::new_checked`] (or
//! [`Header::check_len`]) must pass before any getter, after which no getter
//! panics; [`HeaderRepr::parse`] adds the semantic checks and
//! [`HeaderRepr::emit`] writes exactly what `parse` reads.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Flag bits of the header's first 16 bits.
pub mod flags {
    /// The client is to go to the target ([58]).
    pub const REDIRECT: u16 = 0x8000;
    /// ... for every later request to the same service ([59]).
    pub const PERMANENT: u16 = 0x4000;
    /// ... for this request only, then back to the server that redirected
    /// ([59], [66]).
    pub const ONCE: u16 = 0x2000;
    /// ... for later requests while the lease (the extension) runs ([59]).
    pub const LEASED: u16 = 0x1000;
    /// Set by the client when it resends the request to the server that
    /// redirected it because the target failed ([57], [77]).
    pub const FAILED: u16 = 0x0800;
    /// The target is IPv6: its address is in the 16-byte extension.
    pub const IPV6: u16 = 0x0400;
    /// Bits that must be zero in version 1.
    pub const RESERVED: u16 = 0x03FF;
}

/// Length of the base header.
pub const BASE_LEN: usize = 8;
/// Length of the IPv6 address extension.
pub const IPV6_EXT_LEN: usize = 16;
/// Length of the lease extension.
pub const LEASE_EXT_LEN: usize = 4;
/// Longest header: base, IPv6 address and lease.
pub const MAX_LEN: usize = BASE_LEN + IPV6_EXT_LEN + LEASE_EXT_LEN;
/// The message preamble: magic "RD", version, header length.
pub const PREAMBLE_LEN: usize = 4;
pub const MAGIC: [u8; 2] = *b"RD";
pub const VERSION: u8 = 1;
/// Longest message without data.
pub const MAX_MESSAGE_LEN: usize = PREAMBLE_LEN + MAX_LEN;

mod field {
    use std::ops::Range;
    pub const FLAGS: Range<usize> = 0..2;
    pub const PORT: Range<usize> = 2..4;
    pub const ADDR4: Range<usize> = 4..8;
}

/// Why bytes are not a valid redirection header or message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header its flags describe.
    Truncated { need: usize, have: usize },
    /// The message does not start with "RD".
    BadMagic,
    /// A message version this code does not speak.
    UnsupportedVersion(u8),
    /// The preamble's length disagrees with the header's flags.
    LengthMismatch { said: usize, flags_say: usize },
    /// Reserved flag bits are set.
    ReservedBits(u16),
    /// More than one of permanent, once and leased.
    ConflictingFlags(u16),
    /// Permanent, once or leased without redirect.
    PersistenceWithoutRedirect(u16),
    /// The 6 flag is set but the IPv4 field is not zero.
    Ipv4FieldWithIpv6,
    /// A redirection to an unspecified, multicast or broadcast address.
    BadTarget(IpAddr),
    /// A lease of zero seconds.
    ZeroLease,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Truncated { need, have } => {
                write!(
                    f,
                    "truncated: the header needs {need} bytes, {have} present"
                )
            }
            Error::BadMagic => write!(f, "not a redirection message (no \"RD\" magic)"),
            Error::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported redirection version {v} (this client speaks {VERSION})"
                )
            }
            Error::LengthMismatch { said, flags_say } => write!(
                f,
                "header length {said} in the preamble, but its flags make it {flags_say} bytes"
            ),
            Error::ReservedBits(b) => write!(f, "reserved flag bits set: {b:#06x}"),
            Error::ConflictingFlags(fl) => write!(
                f,
                "flags {fl:#06x}: at most one of permanent, once and leased may be set"
            ),
            Error::PersistenceWithoutRedirect(fl) => write!(
                f,
                "flags {fl:#06x}: permanent, once or leased without the redirect flag"
            ),
            Error::Ipv4FieldWithIpv6 => {
                write!(f, "IPv6 target but the IPv4 address field is not zero")
            }
            Error::BadTarget(a) => write!(f, "redirection to {a}, which is not a unicast address"),
            Error::ZeroLease => write!(f, "leased redirection with a lease of 0 seconds"),
        }
    }
}

impl std::error::Error for Error {}

/// The header length a flags word implies.
pub const fn len_for_flags(f: u16) -> usize {
    let mut n = BASE_LEN;
    if f & flags::IPV6 != 0 {
        n += IPV6_EXT_LEN;
    }
    if f & flags::LEASED != 0 {
        n += LEASE_EXT_LEN;
    }
    n
}

/// A read/write view of a redirection header (base and extensions).
#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub const fn new_unchecked(buffer: T) -> Header<T> {
        Header { buffer }
    }

    /// [`Self::new_unchecked`] followed by [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Header<T>, Error> {
        let h = Header::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Checks the buffer holds the base header and every extension its flags
    /// announce. After this no getter panics.
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < BASE_LEN {
            return Err(Error::Truncated {
                need: BASE_LEN,
                have: b.len(),
            });
        }
        let need = len_for_flags(self.flags());
        if b.len() < need {
            return Err(Error::Truncated {
                need,
                have: b.len(),
            });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags word. Needs `BASE_LEN` bytes (`check_len` checks them first).
    pub fn flags(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::FLAGS];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn port(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::PORT];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The 32-bit address field.
    pub fn ipv4(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::ADDR4];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// The IPv6 extension, when the 6 flag is set.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        if self.flags() & flags::IPV6 == 0 {
            return None;
        }
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[BASE_LEN..BASE_LEN + IPV6_EXT_LEN]);
        Some(Ipv6Addr::from(a))
    }

    /// The lease extension in seconds, when the leased flag is set.
    pub fn lease_secs(&self) -> Option<u32> {
        let f = self.flags();
        if f & flags::LEASED == 0 {
            return None;
        }
        let at = if f & flags::IPV6 != 0 {
            BASE_LEN + IPV6_EXT_LEN
        } else {
            BASE_LEN
        };
        let b = &self.buffer.as_ref()[at..at + LEASE_EXT_LEN];
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The header's length, extensions included.
    pub fn header_len(&self) -> usize {
        len_for_flags(self.flags())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    pub fn set_flags(&mut self, v: u16) {
        self.buffer.as_mut()[field::FLAGS].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::PORT].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_ipv4(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::ADDR4].copy_from_slice(&a.octets());
    }

    /// Writes the IPv6 extension; the 6 flag must be set.
    pub fn set_ipv6(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[BASE_LEN..BASE_LEN + IPV6_EXT_LEN].copy_from_slice(&a.octets());
    }

    /// Writes the lease extension; the leased flag (and the 6 flag, if any)
    /// must be set first.
    pub fn set_lease_secs(&mut self, secs: u32) {
        let at = if self.flags() & flags::IPV6 != 0 {
            BASE_LEN + IPV6_EXT_LEN
        } else {
            BASE_LEN
        };
        self.buffer.as_mut()[at..at + LEASE_EXT_LEN].copy_from_slice(&secs.to_be_bytes());
    }
}

/// How long a redirection holds for the client (seed 000 [59]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Persistence {
    /// No flag: this request only (treated as [`Persistence::Once`]).
    None,
    /// Every later request to the service goes to the target.
    Permanent,
    /// This request only; the next goes to the redirecting server again.
    Once,
    /// Later requests go to the target until the lease (seconds) ends.
    Leased(u32),
}

/// A parsed, valid redirection header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeaderRepr {
    /// The redirect flag: false means "served here, no redirection".
    pub redirect: bool,
    pub persistence: Persistence,
    /// The client's resend after the target failed ([57], [77]).
    pub failed: bool,
    /// The target (service address, [54]); port 0 = the request's port.
    pub target: SocketAddr,
}

impl HeaderRepr {
    /// Parses and validates a header view whose length was checked.
    pub fn parse<T: AsRef<[u8]>>(h: &Header<T>) -> Result<HeaderRepr, Error> {
        h.check_len()?;
        let f = h.flags();
        if f & flags::RESERVED != 0 {
            return Err(Error::ReservedBits(f & flags::RESERVED));
        }
        let persist_bits = f & (flags::PERMANENT | flags::ONCE | flags::LEASED);
        if persist_bits.count_ones() > 1 {
            return Err(Error::ConflictingFlags(f));
        }
        if persist_bits != 0 && f & flags::REDIRECT == 0 {
            return Err(Error::PersistenceWithoutRedirect(f));
        }
        let addr = match h.ipv6() {
            Some(a6) => {
                if h.ipv4() != Ipv4Addr::UNSPECIFIED {
                    return Err(Error::Ipv4FieldWithIpv6);
                }
                IpAddr::V6(a6)
            }
            None => IpAddr::V4(h.ipv4()),
        };
        let redirect = f & flags::REDIRECT != 0;
        if redirect && !is_unicast(addr) {
            return Err(Error::BadTarget(addr));
        }
        let persistence = match persist_bits {
            flags::PERMANENT => Persistence::Permanent,
            flags::ONCE => Persistence::Once,
            flags::LEASED => match h.lease_secs() {
                Some(0) | None => return Err(Error::ZeroLease),
                Some(s) => Persistence::Leased(s),
            },
            _ => Persistence::None,
        };
        Ok(HeaderRepr {
            redirect,
            persistence,
            failed: f & flags::FAILED != 0,
            target: SocketAddr::new(addr, h.port()),
        })
    }

    /// The flags word this header is emitted with.
    pub fn flags(&self) -> u16 {
        let mut f = 0;
        if self.redirect {
            f |= flags::REDIRECT;
        }
        f |= match self.persistence {
            Persistence::None => 0,
            Persistence::Permanent => flags::PERMANENT,
            Persistence::Once => flags::ONCE,
            Persistence::Leased(_) => flags::LEASED,
        };
        if self.failed {
            f |= flags::FAILED;
        }
        if self.target.is_ipv6() {
            f |= flags::IPV6;
        }
        f
    }

    /// Bytes [`Self::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        len_for_flags(self.flags())
    }

    /// Writes the header into `h`, which must hold [`Self::buffer_len`]
    /// bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, h: &mut Header<T>) {
        h.set_flags(self.flags());
        h.set_port(self.target.port());
        match self.target.ip() {
            IpAddr::V4(a) => h.set_ipv4(a),
            IpAddr::V6(a) => {
                h.set_ipv4(Ipv4Addr::UNSPECIFIED);
                h.set_ipv6(a);
            }
        }
        if let Persistence::Leased(s) = self.persistence {
            h.set_lease_secs(s);
        }
    }

    /// The whole message (preamble and header) into `out`; returns its
    /// length. `out` must hold [`MAX_MESSAGE_LEN`] bytes.
    pub fn emit_message(&self, out: &mut [u8]) -> usize {
        let n = self.buffer_len();
        out[0..2].copy_from_slice(&MAGIC);
        out[2] = VERSION;
        out[3] = n as u8;
        self.emit(&mut Header::new_unchecked(
            &mut out[PREAMBLE_LEN..PREAMBLE_LEN + n],
        ));
        PREAMBLE_LEN + n
    }

    /// The message as a fixed array and its length (no allocation).
    pub fn to_message(&self) -> ([u8; MAX_MESSAGE_LEN], usize) {
        let mut b = [0u8; MAX_MESSAGE_LEN];
        let n = self.emit_message(&mut b);
        (b, n)
    }
}

/// Whether `a` may be a redirection target.
fn is_unicast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => !(v.is_unspecified() || v.is_multicast() || v.is_broadcast()),
        IpAddr::V6(v) => !(v.is_unspecified() || v.is_multicast()),
    }
}

/// Whether `bytes` start like a redirection message (the magic): what tells
/// a message from ordinary data at all. [`parse_message`] then validates it.
pub fn looks_like_message(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[..2] == MAGIC
}

/// Parses a redirection message: preamble, header. Returns the header and
/// the data after it.
pub fn parse_message(bytes: &[u8]) -> Result<(HeaderRepr, &[u8]), Error> {
    if !looks_like_message(bytes) {
        return Err(Error::BadMagic);
    }
    if bytes.len() < PREAMBLE_LEN {
        return Err(Error::Truncated {
            need: PREAMBLE_LEN,
            have: bytes.len(),
        });
    }
    if bytes[2] != VERSION {
        return Err(Error::UnsupportedVersion(bytes[2]));
    }
    let said = usize::from(bytes[3]);
    let rest = &bytes[PREAMBLE_LEN..];
    let h = Header::new_checked(rest)?;
    let flags_say = h.header_len();
    if said != flags_say {
        return Err(Error::LengthMismatch { said, flags_say });
    }
    let repr = HeaderRepr::parse(&h)?;
    Ok((repr, &rest[flags_say..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[rustfmt::skip]
    const FIG9: [u8; 8] = [
        0xA0, 0x00,             // flags: redirect | once
        0x1B, 0x58,             // port 7000
        198, 51, 100, 12,       // IPv4 address
    ];

    #[test]
    fn parses_the_64_bit_form_field_by_field() {
        let h = Header::new_checked(&FIG9[..]).unwrap();
        assert_eq!(h.flags(), flags::REDIRECT | flags::ONCE);
        assert_eq!(h.port(), 7000);
        assert_eq!(h.ipv4(), Ipv4Addr::new(198, 51, 100, 12));
        assert_eq!(h.header_len(), 8);
        let r = HeaderRepr::parse(&h).unwrap();
        assert_eq!(
            r,
            HeaderRepr {
                redirect: true,
                persistence: Persistence::Once,
                failed: false,
                target: "198.51.100.12:7000".parse().unwrap(),
            }
        );
        let mut out = [0u8; 8];
        r.emit(&mut Header::new_unchecked(&mut out[..]));
        assert_eq!(out, FIG9);
    }

    #[rustfmt::skip]
    const V6_LEASED: [u8; 32] = [
        b'R', b'D', 1, 28,                 // preamble: magic, version, length
        0x94, 0x00,                        // redirect | leased | IPv6
        0x00, 0x00,                        // port 0: the request's port
        0, 0, 0, 0,                        // IPv4 field: zero with IPv6
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07, // 2001:db8::7
        0x00, 0x00, 0x0e, 0x10,            // lease 3600 s
    ];

    #[test]
    fn parses_the_ipv6_and_lease_extensions() {
        let (r, rest) = parse_message(&V6_LEASED).unwrap();
        assert!(rest.is_empty());
        assert_eq!(r.target, "[2001:db8::7]:0".parse().unwrap());
        assert_eq!(r.persistence, Persistence::Leased(3600));
        let (b, n) = r.to_message();
        assert_eq!(&b[..n], &V6_LEASED[..]);
    }

    #[test]
    fn rejects_malformed_headers_with_their_reason() {
        let msg = |h: &[u8]| {
            let mut m = vec![
                b'R',
                b'D',
                1,
                len_for_flags(u16::from_be_bytes([h[0], h[1]])) as u8,
            ];
            m.extend_from_slice(h);
            m
        };
        let cases: Vec<(Vec<u8>, Error)> = vec![
            (b"XX\x01\x08".to_vec(), Error::BadMagic),
            (b"RD".to_vec(), Error::Truncated { need: 4, have: 2 }),
            (
                b"RD\x02\x08\x80\0\0\0\x01\x02\x03\x04".to_vec(),
                Error::UnsupportedVersion(2),
            ),
            (
                b"RD\x01\x08\x80\0".to_vec(),
                Error::Truncated { need: 8, have: 2 },
            ),
            (
                b"RD\x01\x0c\x80\0\0\0\x01\x02\x03\x04".to_vec(),
                Error::LengthMismatch {
                    said: 12,
                    flags_say: 8,
                },
            ),
            (
                msg(&[0x90, 0, 0, 0, 1, 2, 3, 4]),
                Error::Truncated { need: 12, have: 8 },
            ),
            (msg(&[0x80, 0x01, 0, 0, 1, 2, 3, 4]), Error::ReservedBits(1)),
            (
                msg(&[0xE0, 0, 0, 0, 1, 2, 3, 4]),
                Error::ConflictingFlags(0xE000),
            ),
            (
                msg(&[0x40, 0, 0, 0, 1, 2, 3, 4]),
                Error::PersistenceWithoutRedirect(0x4000),
            ),
            (
                msg(&[0x80, 0, 0, 0, 0, 0, 0, 0]),
                Error::BadTarget("0.0.0.0".parse().unwrap()),
            ),
            (
                msg(&[0x80, 0, 0, 0, 224, 0, 0, 1]),
                Error::BadTarget("224.0.0.1".parse().unwrap()),
            ),
            (
                msg(&[0x90, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0]),
                Error::ZeroLease,
            ),
            (
                msg(&[
                    0x84, 0, 0, 0, 1, 2, 3, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    1,
                ]),
                Error::Ipv4FieldWithIpv6,
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse_message(&bytes).unwrap_err(), want, "{bytes:02x?}");
            assert!(!want.to_string().is_empty());
        }
        // "Served here" (no redirect) may carry any address, even 0.0.0.0.
        assert!(parse_message(&msg(&[0, 0, 0, 0, 0, 0, 0, 0])).is_ok());
    }

    fn repr() -> impl Strategy<Value = HeaderRepr> {
        let addr = prop_oneof![
            any::<[u8; 4]>().prop_map(|a| IpAddr::V4(a.into())),
            any::<[u8; 16]>().prop_map(|a| IpAddr::V6(a.into())),
        ];
        let persistence = prop_oneof![
            Just(Persistence::None),
            Just(Persistence::Permanent),
            Just(Persistence::Once),
            (1u32..).prop_map(Persistence::Leased),
        ];
        (
            any::<bool>(),
            persistence,
            any::<bool>(),
            addr,
            any::<u16>(),
        )
            .prop_map(|(redirect, persistence, failed, addr, port)| HeaderRepr {
                redirect: redirect || persistence != Persistence::None,
                persistence,
                failed,
                target: SocketAddr::new(addr, port),
            })
            .prop_filter("a redirection needs a unicast target", |r| {
                !r.redirect || is_unicast(r.target.ip())
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(r in repr(), data in proptest::collection::vec(any::<u8>(), 0..16)) {
            let (b, n) = r.to_message();
            prop_assert_eq!(n, PREAMBLE_LEN + r.buffer_len());
            let mut wire = b[..n].to_vec();
            wire.extend_from_slice(&data);
            let (back, rest) = parse_message(&wire).unwrap();
            prop_assert_eq!(back, r);
            prop_assert_eq!(rest, &data[..]);
        }

        /// Whatever parses emits back to exactly the bytes it came from.
        #[test]
        fn parse_then_emit_is_exact(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut wire = vec![b'R', b'D', 1];
            wire.extend_from_slice(&bytes);
            if let Ok((r, rest)) = parse_message(&wire) {
                let used = wire.len() - rest.len();
                let (b, n) = r.to_message();
                prop_assert_eq!(&b[..n], &wire[..used]);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_message(&bytes);
            if let Ok(h) = Header::new_checked(&bytes[..]) {
                let _ = (h.flags(), h.port(), h.ipv4(), h.ipv6(), h.lease_secs());
                let _ = HeaderRepr::parse(&h);
            }
        }
    }
}
