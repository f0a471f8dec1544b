//! Port backends behind one interface: a port is a set of RX queues and TX
//! queues, each owned by exactly one lcore. The runtime counts packets and
//! bytes per queue; backends count only what they alone can see.
//!
//! Ownership on failure: `tx_burst` leaves what the queue did not take in the
//! burst, so the caller counts and frees it (nothing is dropped silently).

use pipelines::{Burst, PacketBuf};

pub mod bench;
#[cfg(feature = "dpdk")]
pub mod dpdk;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod pcap;
pub mod sim;

/// One receive queue of a port.
pub trait RxQueue<B: PacketBuf>: Send {
    /// Appends up to `max` received packets to `out` (never more than its
    /// remaining capacity); returns how many. `in_port` of each packet's
    /// metadata must be set to the port's index.
    fn rx_burst(&mut self, out: &mut Burst<B>, max: usize) -> usize;
    /// Frames received since the last call that were too large for a
    /// packet buffer and dropped; the caller counts them `rx_oversize`.
    fn take_oversize(&mut self) -> u64 {
        0
    }
}

/// One transmit queue of a port.
pub trait TxQueue<B: PacketBuf>: Send {
    /// Sends packets from the front of `pkts`, removing those it took;
    /// returns how many it took. Packets left in `pkts` were not sent.
    fn tx_burst(&mut self, pkts: &mut Burst<B>) -> usize;
    /// Packets `tx_burst` removed from `pkts` since the last call without
    /// sending them because the port can never send them (larger than its
    /// frame room or MTU); freed, and the caller counts them `tx_oversize`.
    /// They are not in `tx_burst`'s count of packets taken.
    fn take_oversize(&mut self) -> u64 {
        0
    }
}

/// The queues of one port, to be handed out to lcores by the runtime.
pub struct PortQueues<B: PacketBuf> {
    pub rx: Vec<Box<dyn RxQueue<B>>>,
    pub tx: Vec<Box<dyn TxQueue<B>>>,
}

/// What the runtime asks of a backend beyond its queues.
pub trait BackendControl: Send + Sync {
    /// True once the backend's input is exhausted (pcap: every capture read),
    /// so a run can end when the pipeline has drained. Live backends: false.
    fn input_done(&self) -> bool {
        false
    }
    /// The backend's own counters, placed in the stats JSON under the
    /// backend's name (`sim`, `pcap`).
    fn stats(&self) -> serde_json::Value;
    /// Whether port `port`'s link is up (uplink health, seed 001 [0054]).
    /// The sim can take an uplink's link down; backends without link state
    /// report every port up.
    fn link_up(&self, _port: usize) -> bool {
        true
    }
}
