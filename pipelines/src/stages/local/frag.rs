//! IPv4 fragmentation on egress (RFC 791 section 3.2, "fragmentation"):
//! a datagram larger than the egress MTU without DF leaves as fragments
//! whose data are multiples of 8 bytes, each in a buffer of its own (copies
//! from the packet's pool). A datagram that is already a fragment keeps its
//! offset base and its more-fragments flag on the last piece. IP options
//! are copied into every fragment (the copied-flag rule is not applied).

use crate::packet::buf::PacketBuf;
use crate::packet::burst::Burst;
use crate::packet::drop::DropReason;
use crate::wire::ipv4;

const MF: u16 = 0x2000;

/// How many fragments the IPv4 datagram `ip` (header first, `total` bytes)
/// becomes for `mtu`; `None` when the MTU cannot carry its header and 8
/// data bytes.
pub fn count(ihl: usize, total: usize, mtu: usize) -> Option<usize> {
    let chunk = mtu.checked_sub(ihl)? / 8 * 8;
    if chunk == 0 {
        return None;
    }
    Some((total.saturating_sub(ihl)).div_ceil(chunk).max(1))
}

/// Splits the IPv4 datagram at `l3` in `pkt` into fragments of at most
/// `mtu` bytes: `pkt` becomes the first, the others are pushed after it to
/// `out` (which must have room for [`count`] of them). Nothing is pushed
/// when a copy cannot be made (`NoBuffer`): the caller drops `pkt`.
pub fn fragment<B: PacketBuf>(
    mut pkt: B,
    l3: usize,
    mtu: usize,
    out: &mut Burst<B>,
) -> Result<usize, (B, DropReason)> {
    let d = pkt.data();
    let Some(ip) = d.get(l3..).filter(|ip| ip.len() >= ipv4::MIN_HEADER_LEN) else {
        return Err((pkt, DropReason::TruncatedIpv4));
    };
    let ihl = ipv4::header_len(ip);
    let total = ipv4::total_len(ip).min(ip.len());
    let ff = ipv4::flags_frag(ip);
    let Some(n) = count(ihl, total, mtu) else {
        return Err((pkt, DropReason::TooBig));
    };
    if n > out.remaining_capacity() {
        return Err((pkt, DropReason::TooBig));
    }
    let chunk = (mtu - ihl) / 8 * 8;
    let base = (ff & ipv4::FRAG_OFFSET_MASK) as usize * 8;
    let payload = total - ihl;
    let mut rest: Burst<B> = Burst::new();
    for k in 1..n {
        let Some(mut c) = pkt.try_clone() else {
            return Err((pkt, DropReason::NoBuffer));
        };
        let start = k * chunk;
        let len = chunk.min(payload - start);
        let last = k == n - 1;
        let f = c.data_mut();
        f.copy_within(l3 + ihl + start..l3 + ihl + start + len, l3 + ihl);
        c.set_len(l3 + ihl + len);
        set_fragment(
            &mut c.data_mut()[l3..],
            ihl + len,
            (base + start) / 8,
            !last || ff & MF != 0,
        );
        rest.push(c);
    }
    let len = chunk.min(payload);
    pkt.set_len(l3 + ihl + len);
    set_fragment(
        &mut pkt.data_mut()[l3..],
        ihl + len,
        base / 8,
        n > 1 || ff & MF != 0,
    );
    out.push(pkt);
    out.extend(rest.drain(..));
    Ok(n)
}

fn set_fragment(ip: &mut [u8], total: usize, offset8: usize, more: bool) {
    ipv4::set_total_len(ip, total as u16);
    let mut ff = (offset8 as u16) & ipv4::FRAG_OFFSET_MASK;
    if more {
        ff |= MF;
    }
    ip[ipv4::FLAGS_FRAG_OFFSET..ipv4::FLAGS_FRAG_OFFSET + 2].copy_from_slice(&ff.to_be_bytes());
    ipv4::fill_checksum(ip);
}
