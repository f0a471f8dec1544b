//! Single-writer counters readable by other threads without locks.
//!
//! Each counter has exactly one writing thread (the lcore that owns the stage
//! or queue); the management core only reads. An increment is therefore a
//! relaxed load and store, which compiles to plain moves on x86 (no locked
//! read-modify-write), while readers still see a value that was actually
//! written. Counters are 64 bits: at 100 Mpps one wraps after 5,800 years.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::packet::drop::DropReason;

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    /// Adds `n`. Must only be called from the counter's single writer.
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Overwrites the value; for gauges with a single writer.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a stage originated (ICMP it sent, fragments it made) or refused to
/// send; `as_str` names are the keys of `stages.NAME.originated` in the
/// stats JSON and are never renamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Sent {
    /// ICMP / ICMPv6 echo replies for the appliance's own addresses.
    EchoReply,
    /// ICMP time exceeded / ICMPv6 time exceeded (TTL or hop limit ran out).
    TimeExceeded,
    /// ICMP destination unreachable, fragmentation needed (IPv4, DF set).
    FragNeeded,
    /// ICMPv6 packet too big.
    PacketTooBig,
    /// ICMP messages not sent: the rate limit was spent.
    IcmpRateLimited,
    /// IPv4 packets fragmented on egress (larger than the port's MTU, DF clear).
    FragmentedOut,
    /// Fragments those packets became.
    FragmentsOut,
}

impl Sent {
    pub const ALL: &'static [Sent] = &[
        Sent::EchoReply,
        Sent::TimeExceeded,
        Sent::FragNeeded,
        Sent::PacketTooBig,
        Sent::IcmpRateLimited,
        Sent::FragmentedOut,
        Sent::FragmentsOut,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub const fn as_str(self) -> &'static str {
        match self {
            Sent::EchoReply => "echo_reply",
            Sent::TimeExceeded => "time_exceeded",
            Sent::FragNeeded => "frag_needed",
            Sent::PacketTooBig => "packet_too_big",
            Sent::IcmpRateLimited => "icmp_rate_limited",
            Sent::FragmentedOut => "fragmented_out",
            Sent::FragmentsOut => "fragments_out",
        }
    }
}

/// Counters of one stage instance: packets it processed and packets it
/// dropped, by reason. One instance per (stage, lcore); the management core
/// sums instances of the same stage.
#[derive(Debug)]
pub struct StageCounters {
    pub packets: Counter,
    drops: [Counter; DropReason::COUNT],
    sent: [Counter; Sent::COUNT],
}

impl Default for StageCounters {
    fn default() -> Self {
        StageCounters {
            packets: Counter::new(),
            drops: std::array::from_fn(|_| Counter::new()),
            sent: std::array::from_fn(|_| Counter::new()),
        }
    }
}

impl StageCounters {
    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].inc();
    }

    #[inline]
    pub fn count_drops(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].add(n);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }

    #[inline]
    pub fn count_sent(&self, what: Sent) {
        self.sent[what as usize].inc();
    }

    #[inline]
    pub fn count_sents(&self, what: Sent, n: u64) {
        self.sent[what as usize].add(n);
    }

    pub fn sent(&self, what: Sent) -> u64 {
        self.sent[what as usize].get()
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }
}
