//! IP fragments for tests, the fuzz corpus and labs: a whole frame split
//! as a sender would split it, and fragments joined back (to check what
//! the appliance let out). Untagged Ethernet, the IP header at offset 14;
//! IPv6 without extension headers before the split.

use crate::wire::checksum::checksum;

const L3: usize = 14;

/// Splits the datagram of `frame` into fragments of at most `chunk` bytes
/// of payload (rounded down to a multiple of 8), identification `id` (16
/// bits in IPv4). IPv6 fragments get a Fragment header after the fixed
/// header.
pub fn split(frame: &[u8], chunk: usize, id: u32) -> Vec<Vec<u8>> {
    let chunk = (chunk / 8 * 8).max(8);
    let v6 = frame[L3] >> 4 == 6;
    let hdr = if v6 {
        40
    } else {
        usize::from(frame[L3] & 0x0F) * 4
    };
    let payload = &frame[L3 + hdr..];
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() || (off == 0 && payload.is_empty()) {
        let end = (off + chunk).min(payload.len());
        let more = end < payload.len();
        let mut f = frame[..L3 + hdr].to_vec();
        if v6 {
            let next = f[L3 + 6];
            f[L3 + 6] = 44;
            let plen = (8 + end - off) as u16;
            f[L3 + 4..L3 + 6].copy_from_slice(&plen.to_be_bytes());
            f.push(next);
            f.push(0);
            f.extend_from_slice(&((off as u16) | u16::from(more)).to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
        } else {
            let total = (hdr + end - off) as u16;
            f[L3 + 2..L3 + 4].copy_from_slice(&total.to_be_bytes());
            f[L3 + 4..L3 + 6].copy_from_slice(&(id as u16).to_be_bytes());
            let ff = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
            f[L3 + 6..L3 + 8].copy_from_slice(&ff.to_be_bytes());
            super::fix_ipv4_checksum(&mut f, L3);
        }
        f.extend_from_slice(&payload[off..end]);
        out.push(f);
        off = end;
        if payload.is_empty() {
            break;
        }
    }
    out
}

/// Joins fragments (any order) back into one frame: the first fragment's
/// Ethernet and IP header (the Fragment header removed), every fragment's
/// data at its offset. Panics on a gap: a test helper.
pub fn join(frags: &[Vec<u8>]) -> Vec<u8> {
    let mut first = None;
    let mut data = Vec::new();
    let mut total = 0;
    for f in frags {
        let v6 = f[L3] >> 4 == 6;
        let (hdr, off, more) = if v6 {
            let fh = &f[L3 + 40..L3 + 48];
            let om = u16::from_be_bytes([fh[2], fh[3]]);
            (48, usize::from(om & 0xFFF8), om & 1 != 0)
        } else {
            let ff = u16::from_be_bytes([f[L3 + 6], f[L3 + 7]]);
            let ihl = usize::from(f[L3] & 0x0F) * 4;
            (ihl, usize::from(ff & 0x1FFF) * 8, ff & 0x2000 != 0)
        };
        let part = &f[L3 + hdr..];
        if data.len() < off + part.len() {
            data.resize(off + part.len(), 0);
        }
        data[off..off + part.len()].copy_from_slice(part);
        total += part.len();
        if !more {
            assert_eq!(off + part.len(), data.len().max(off + part.len()));
        }
        if off == 0 {
            first = Some(f);
        }
    }
    assert_eq!(total, data.len(), "fragments missing or overlapping");
    let f = first.expect("a first fragment");
    let v6 = f[L3] >> 4 == 6;
    let mut out;
    if v6 {
        out = f[..L3 + 40].to_vec();
        out[L3 + 6] = f[L3 + 40];
        out[L3 + 4..L3 + 6].copy_from_slice(&(data.len() as u16).to_be_bytes());
    } else {
        let ihl = usize::from(f[L3] & 0x0F) * 4;
        out = f[..L3 + ihl].to_vec();
        out[L3 + 2..L3 + 4].copy_from_slice(&((ihl + data.len()) as u16).to_be_bytes());
        out[L3 + 6..L3 + 8].copy_from_slice(&[0, 0]);
        out[L3 + 10..L3 + 12].copy_from_slice(&[0, 0]);
        let c = checksum(&out[L3..L3 + ihl]);
        out[L3 + 10..L3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    out.extend_from_slice(&data);
    out
}
