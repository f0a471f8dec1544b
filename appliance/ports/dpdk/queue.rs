//! The RX and TX queue handles the runtime polls, and the per-queue
//! counters only the backend sees (packets dropped at RX).

use std::sync::Arc;

use pipelines::Counter;
use serde_json::{json, Value};

use super::mbuf::{self, Mbuf};
use crate::ports::{PortQueues, RxQueue, TxQueue};

/// Counters only the backend sees, one set per RX queue (its single writer).
#[derive(Default)]
pub(super) struct RxQueueCounters {
    pub(super) ip_checksum_bad: Counter,
    pub(super) l4_checksum_bad: Counter,
    pub(super) multi_segment: Counter,
    pub(super) foreign_pool: Counter,
}

pub(super) struct PortCounters {
    pub(super) rx: Vec<RxQueueCounters>,
}

impl PortCounters {
    pub(super) fn json(&self) -> Value {
        let sum = |f: fn(&RxQueueCounters) -> &Counter| -> u64 {
            self.rx.iter().map(|q| f(q).get()).sum()
        };
        json!({
            "ip_checksum_bad": sum(|q| &q.ip_checksum_bad),
            "l4_checksum_bad": sum(|q| &q.l4_checksum_bad),
            "multi_segment": sum(|q| &q.multi_segment),
            "foreign_pool": sum(|q| &q.foreign_pool),
        })
    }
}

struct DpdkRx {
    handle: mbuf::RxHandle,
    counters: Arc<PortCounters>,
    queue: usize,
}

impl RxQueue<Mbuf> for DpdkRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut pipelines::Burst<Mbuf>, max: usize) -> usize {
        let o = self.handle.rx_burst(out, max);
        if o.dropped() != 0 {
            if let Some(c) = self.counters.rx.get(self.queue) {
                c.ip_checksum_bad.add(u64::from(o.ip_checksum_bad));
                c.l4_checksum_bad.add(u64::from(o.l4_checksum_bad));
                c.multi_segment.add(u64::from(o.multi_segment));
                c.foreign_pool.add(u64::from(o.foreign_pool));
            }
        }
        o.delivered
    }
}

struct DpdkTx {
    handle: mbuf::TxHandle,
}

impl TxQueue<Mbuf> for DpdkTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut pipelines::Burst<Mbuf>) -> usize {
        self.handle.tx_burst(pkts)
    }
}

impl PortCounters {
    /// Zeroed counters for `rx_queues` RX queues.
    pub(super) fn new(rx_queues: usize) -> PortCounters {
        PortCounters {
            rx: (0..rx_queues).map(|_| RxQueueCounters::default()).collect(),
        }
    }
}

/// The runtime's handles on a started port's queues, in queue order; the RX
/// queues count their drops in `counters`.
pub(super) fn port_queues(
    rx: Vec<mbuf::RxHandle>,
    tx: Vec<mbuf::TxHandle>,
    counters: &Arc<PortCounters>,
) -> PortQueues<Mbuf> {
    PortQueues {
        rx: rx
            .into_iter()
            .enumerate()
            .map(|(queue, handle)| {
                Box::new(DpdkRx {
                    handle,
                    counters: Arc::clone(counters),
                    queue,
                }) as Box<dyn RxQueue<Mbuf>>
            })
            .collect(),
        tx: tx
            .into_iter()
            .map(|handle| Box::new(DpdkTx { handle }) as Box<dyn TxQueue<Mbuf>>)
            .collect(),
    }
}
