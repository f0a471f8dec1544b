//! The learned next hops: [`Neighbours`], one [`NextHop`] per uplink and IP
//! family, with the MAC either fixed by the configuration or learned from
//! the wire. Classify writes a learned MAC with one atomic store, transmit
//! reads it with one atomic load, so no lock is taken on the packet path.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::topology::{UplinkId, UplinkInfo};
use crate::wire::ethernet::is_unicast_mac;

/// Bit set in a stored MAC word when the MAC is known.
const KNOWN: u64 = 1 << 48;

pub(super) fn mac_word(mac: [u8; 6]) -> u64 {
    let mut w = [0u8; 8];
    w[2..].copy_from_slice(&mac);
    u64::from_be_bytes(w) | KNOWN
}

pub(super) fn word_mac(w: u64) -> Option<[u8; 6]> {
    if w & KNOWN == 0 {
        return None;
    }
    let b = (w & !KNOWN).to_be_bytes();
    Some([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// One uplink's next hop in one IP family.
#[derive(Debug)]
pub struct NextHop {
    pub uplink: UplinkId,
    /// Port the next hop is reached through.
    pub port: u16,
    /// Its address; `None` when the MAC is fixed by the configuration and
    /// the address is not known.
    pub ip: Option<IpAddr>,
    /// The MAC came from the configuration and is never replaced.
    pub fixed: bool,
    mac: AtomicU64,
    /// How many times the MAC was learned (a solicitor compares it to see
    /// whether its last request was answered).
    learned: AtomicU64,
}

impl NextHop {
    pub fn mac(&self) -> Option<[u8; 6]> {
        word_mac(self.mac.load(Ordering::Relaxed))
    }

    pub fn times_learned(&self) -> u64 {
        self.learned.load(Ordering::Relaxed)
    }

    /// The family this next hop serves.
    pub fn is_v6(&self) -> bool {
        matches!(self.ip, Some(IpAddr::V6(_)))
    }
}

/// Every uplink's next hops. Built once, beside the topology, by whoever
/// builds it (from the same uplinks); the MACs change as they are learned.
#[derive(Debug, Default)]
pub struct Neighbours {
    pub(super) hops: Vec<NextHop>,
    /// Per uplink: index into `hops` for IPv4 and for IPv6.
    by_uplink: Vec<[Option<u16>; 2]>,
}

impl Neighbours {
    /// An uplink with a non-zero `next_hop_mac` uses it for both families
    /// (fixed); otherwise each family with a configured next-hop address is
    /// resolved on the wire.
    pub fn new(uplinks: &[UplinkInfo]) -> Neighbours {
        let mut n = Neighbours::default();
        for (i, u) in uplinks.iter().enumerate() {
            let mut slots = [None, None];
            let fixed = u.next_hop_mac != [0; 6];
            for (fam, ip) in [
                (0, u.next_hop_v4.map(IpAddr::V4)),
                (1, u.next_hop_v6.map(IpAddr::V6)),
            ] {
                if !fixed && ip.is_none() {
                    continue;
                }
                slots[fam] = Some(n.hops.len() as u16);
                n.hops.push(NextHop {
                    uplink: i as UplinkId,
                    port: u.port,
                    ip,
                    fixed,
                    mac: AtomicU64::new(if fixed { mac_word(u.next_hop_mac) } else { 0 }),
                    learned: AtomicU64::new(0),
                });
            }
            n.by_uplink.push(slots);
        }
        n
    }

    /// The MAC to send to for `uplink`'s next hop in the family of `v6`;
    /// `None` while it is unresolved.
    #[inline]
    pub fn mac_for(&self, uplink: UplinkId, v6: bool) -> Option<[u8; 6]> {
        let i = (*self.by_uplink.get(usize::from(uplink))?)[usize::from(v6)]?;
        self.hops.get(usize::from(i))?.mac()
    }

    pub fn hops(&self) -> &[NextHop] {
        &self.hops
    }

    /// Records that `ip` on `port` has `mac`, if `ip` is a dynamic next hop
    /// there. Returns whether something was learned.
    pub fn learn(&self, port: u16, ip: IpAddr, mac: [u8; 6]) -> bool {
        if !is_unicast_mac(&mac) {
            return false;
        }
        let mut any = false;
        for h in &self.hops {
            if !h.fixed && h.port == port && h.ip == Some(ip) {
                h.mac.store(mac_word(mac), Ordering::Relaxed);
                h.learned.fetch_add(1, Ordering::Relaxed);
                any = true;
            }
        }
        any
    }
}
