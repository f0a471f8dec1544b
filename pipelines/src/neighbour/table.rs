//! The learned next hops: [`Neighbours`], one [`NextHop`] per uplink and IP
//! family, with the MAC either fixed by the configuration or learned from
//! the wire. Classify writes a learned MAC with one atomic store, transmit
//! reads it with one atomic load, so no lock is taken on the packet path.
//!
//! Who may change a learned MAC (a next hop is the one host every
//! translated packet goes to, so a forged answer diverts all of an uplink's
//! traffic): [`Neighbours::offer`] takes a claim from an ARP or ND message
//! and accepts it only when
//! - it answers the appliance's own request: an ARP reply to one of our
//!   addresses, or an NA with Solicited set, for the exact next-hop address,
//!   within [`ANSWER_WINDOW`] of the request the [`super::Solicitor`] sent,
//!   and only the first such answer per request; or
//! - it is unsolicited but may override (a gratuitous ARP, an unsolicited
//!   ARP reply, an NA with Override set) and the lock time has passed since
//!   the MAC was last set (Linux's `locktime`, default [`LOCK_TIME`]; a
//!   next hop whose MAC is still unknown has nothing to protect).
//!
//! Everything else about a next hop is refused and counted per reason in
//! [`HopCounters`]: ARP requests and other opcodes, neighbour solicitations
//! (a solicitation's source option is never trusted), NAs with neither a
//! matching request nor Override.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::packet::time::Nanos;
use crate::topology::{UplinkId, UplinkInfo};
use crate::wire::ethernet::is_unicast_mac;

/// Default hold-down after a MAC is set during which unsolicited messages
/// cannot change it (Linux's `locktime` default is 1 s).
pub const LOCK_TIME: Nanos = Nanos::from_secs(1);

/// How long after a request an answer counts as answering it: three of the
/// solicitor's retry periods (Linux waits `retrans_time` 1 s for each of
/// its 3 multicast probes).
pub const ANSWER_WINDOW: Nanos = Nanos::from_secs(3);

/// "Never" in the `asked` and `updated` words.
const NEVER: u64 = u64::MAX;

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
    /// When the last request for it went out and is still unanswered
    /// (nanoseconds, [`NEVER`] when none is outstanding).
    asked: AtomicU64,
    /// When the MAC was last set ([`NEVER`] before the first time).
    updated: AtomicU64,
    /// Accepted and refused claims about this next hop, by reason.
    pub counters: HopCounters,
}

/// What ARP / ND messages about one next hop did, by reason. Several
/// classify lcores may write them (atomic adds; these messages are rare).
#[derive(Debug, Default)]
pub struct HopCounters {
    /// Answers to the appliance's own request that set the MAC.
    pub learned_reply: AtomicU64,
    /// Gratuitous ARPs, unsolicited replies and NAs with Override that set
    /// the MAC after the lock time.
    pub learned_gratuitous: AtomicU64,
    /// NAs that answer no outstanding request and carry no Override.
    pub refused_unsolicited: AtomicU64,
    /// Unsolicited claims within the lock time of the last change.
    pub refused_locktime: AtomicU64,
    /// ARP messages other than a reply or a gratuitous ARP (the next hop's
    /// own requests, unknown opcodes).
    pub refused_opcode: AtomicU64,
    /// Neighbour solicitations sent by the next hop.
    pub refused_ns: AtomicU64,
}

impl HopCounters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// What an ARP or ND message claims about the sender's (ARP) or target's
/// (NA) MAC; see [`Neighbours::offer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// An ARP reply or an NA: `answer` when it says it answers a request
    /// of ours (an ARP reply to one of our addresses, the NA Solicited
    /// flag), `overrides` when it may replace a MAC unsolicited (any ARP
    /// reply or gratuitous ARP, the NA Override flag).
    Advert { answer: bool, overrides: bool },
    /// An ARP message that is neither a reply nor gratuitous.
    Opcode,
    /// A neighbour solicitation.
    Solicitation,
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

    /// Records that a request for this next hop went out at `now`: an
    /// answer within [`ANSWER_WINDOW`] is accepted.
    pub fn asked(&self, now: Nanos) {
        self.asked
            .store(now.as_nanos().min(NEVER - 1), Ordering::Relaxed);
    }

    /// Judges `claim` that this next hop has `mac`, at `now`; sets the MAC
    /// and returns true when accepted, counts the reason either way.
    fn judge(&self, claim: Claim, mac: [u8; 6], now: Nanos, lock: Nanos) -> bool {
        let c = &self.counters;
        let (answer, overrides) = match claim {
            Claim::Advert { answer, overrides } => (answer, overrides),
            Claim::Opcode => {
                HopCounters::bump(&c.refused_opcode);
                return false;
            }
            Claim::Solicitation => {
                HopCounters::bump(&c.refused_ns);
                return false;
            }
        };
        let asked = self.asked.load(Ordering::Relaxed);
        // Only the first answer within the window takes the request.
        if answer
            && asked != NEVER
            && now.since(Nanos(asked)) <= ANSWER_WINDOW
            && self
                .asked
                .compare_exchange(asked, NEVER, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.set(mac, now);
            HopCounters::bump(&c.learned_reply);
            return true;
        }
        if !overrides {
            HopCounters::bump(&c.refused_unsolicited);
            return false;
        }
        let updated = self.updated.load(Ordering::Relaxed);
        if updated != NEVER && now.since(Nanos(updated)) < lock {
            HopCounters::bump(&c.refused_locktime);
            return false;
        }
        self.set(mac, now);
        HopCounters::bump(&c.learned_gratuitous);
        true
    }

    fn set(&self, mac: [u8; 6], now: Nanos) {
        self.mac.store(mac_word(mac), Ordering::Relaxed);
        self.updated
            .store(now.as_nanos().min(NEVER - 1), Ordering::Relaxed);
        self.learned.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every uplink's next hops. Built once, beside the topology, by whoever
/// builds it (from the same uplinks); the MACs change as they are learned.
#[derive(Debug, Default)]
pub struct Neighbours {
    pub(super) hops: Vec<NextHop>,
    /// Per uplink: index into `hops` for IPv4 and for IPv6.
    by_uplink: Vec<[Option<u16>; 2]>,
    /// Unsolicited claims cannot change a MAC set less than this long ago.
    lock_time: Nanos,
}

impl Neighbours {
    /// An uplink with a non-zero `next_hop_mac` uses it for both families
    /// (fixed); otherwise each family with a configured next-hop address is
    /// resolved on the wire.
    pub fn new(uplinks: &[UplinkInfo]) -> Neighbours {
        let mut n = Neighbours {
            lock_time: LOCK_TIME,
            ..Neighbours::default()
        };
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
                    asked: AtomicU64::new(NEVER),
                    updated: AtomicU64::new(NEVER),
                    counters: HopCounters::default(),
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

    /// The same table with lock time `t` instead of [`LOCK_TIME`].
    pub fn with_lock_time(mut self, t: Nanos) -> Neighbours {
        self.lock_time = t;
        self
    }

    pub fn lock_time(&self) -> Nanos {
        self.lock_time
    }

    /// Offers `claim` that `ip` on `port` has `mac`, received at `now`: if
    /// `ip` is a dynamic next hop there, the claim is judged (see the
    /// module) and counted. Returns whether a MAC was set.
    pub fn offer(&self, port: u16, ip: IpAddr, mac: [u8; 6], claim: Claim, now: Nanos) -> bool {
        let unicast = is_unicast_mac(&mac);
        let mut any = false;
        for h in &self.hops {
            if !h.fixed && h.port == port && h.ip == Some(ip) {
                // A multicast or broadcast MAC is malformed, not a claim.
                let claim = match claim {
                    Claim::Advert { .. } if !unicast => continue,
                    c => c,
                };
                any |= h.judge(claim, mac, now, self.lock_time);
            }
        }
        any
    }
}
