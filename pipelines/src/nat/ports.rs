//! NAT port pools: the ports of the shard's slice of each NAT address and
//! class, their owners and their random allocation.

use super::session::NONE;
use crate::packet::flow::proto;
use crate::topology::NatPortRange;

/// Port-space classes: TCP, UDP and ICMP identifiers are separate
/// namespaces on every NAT address.
pub(super) const CLASSES: usize = 3;

pub(super) fn class_of(protocol: u8) -> usize {
    match protocol {
        proto::TCP => 0,
        proto::UDP => 1,
        _ => 2,
    }
}

/// The ports of one NAT address and class within the shard's slice. `free`
/// is a stack of free ports; `pos` says where a free port sits in it (so a
/// preserved port leaves in O(1)); `owner` is the head session of the
/// mapping holding a port, or `NONE`; `sessions` the live sessions of that
/// mapping (its chain's length, for `mapping_max_sessions`). Allocation swaps a random free port to
/// the top first, so NAT ports are unpredictable (RFC 6056) and a port just
/// freed is not handed out next.
pub(super) struct PortPool {
    pub(super) base: u16,
    pub(super) free: Vec<u16>,
    pub(super) pos: Vec<u16>,
    pub(super) owner: Vec<u32>,
    pub(super) sessions: Vec<u16>,
}

impl PortPool {
    pub(super) fn new(range: NatPortRange, rng: &mut u64) -> PortPool {
        let mut free: Vec<u16> = (range.first..=range.last).collect();
        for i in (1..free.len()).rev() {
            free.swap(i, (next_rand(rng) % (i as u64 + 1)) as usize);
        }
        let mut pos = vec![0u16; free.len()];
        for (i, p) in free.iter().enumerate() {
            pos[usize::from(p - range.first)] = i as u16;
        }
        let owner = vec![NONE; free.len()];
        let sessions = vec![0; free.len()];
        PortPool {
            base: range.first,
            free,
            pos,
            owner,
            sessions,
        }
    }

    /// The slice index of `port`, if the port is in the slice.
    pub(super) fn index(&self, port: u16) -> Option<usize> {
        let i = usize::from(port.checked_sub(self.base)?);
        (i < self.owner.len()).then_some(i)
    }

    /// Takes the free port at slice index `i` out of the free stack.
    pub(super) fn take_at(&mut self, i: usize) {
        let at = usize::from(self.pos[i]);
        let last = self.free.len() - 1;
        self.free.swap(at, last);
        self.free.pop();
        if at != last {
            let moved = self.free[at];
            self.pos[usize::from(moved - self.base)] = at as u16;
        }
    }

    /// Takes a random free port; its slice index, or `None` when exhausted.
    pub(super) fn take_random(&mut self, rng: &mut u64) -> Option<usize> {
        if self.free.is_empty() {
            return None;
        }
        let at = (next_rand(rng) % self.free.len() as u64) as usize;
        let i = usize::from(self.free[at] - self.base);
        self.take_at(i);
        Some(i)
    }

    pub(super) fn give_back(&mut self, i: usize) {
        self.owner[i] = NONE;
        self.sessions[i] = 0;
        self.pos[i] = self.free.len() as u16;
        self.free.push(self.base + i as u16);
    }
}

pub(super) fn next_rand(x: &mut u64) -> u64 {
    // xorshift64*: enough to shuffle ports; seeded per run.
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}
