//! The backend's control side: stats, link state, MACs and pools of the
//! open ports.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::queue::PortCounters;
use super::{ffi, MbufPool, ReturnSteering, META_PRIV_SIZE};
use crate::ports::BackendControl;

/// Link state of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

pub(super) struct PortState {
    pub(super) name: String,
    pub(super) driver: String,
    pub(super) socket: i32,
    pub(super) running: Arc<ffi::RunningPort>,
    pub(super) info: ffi::DevInfo,
    pub(super) conf: ffi::PortConf,
    pub(super) mac: [u8; 6],
    pub(super) pool: MbufPool,
    pub(super) flow_rules: usize,
    pub(super) counters: Arc<PortCounters>,
}

/// The backend's control side: stats, link state, MACs, and the pools for
/// packets the appliance originates.
pub struct DpdkControl {
    pub(super) ports: Vec<PortState>,
    pub(super) pools: Vec<(i32, MbufPool)>,
    pub(super) return_steering: ReturnSteering,
}

impl DpdkControl {
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }

    /// The MTU of port `port`'s device, when the driver tells it.
    pub fn port_mtu(&self, port: usize) -> Option<u16> {
        self.ports.get(port).and_then(|p| p.running.mtu().ok())
    }

    /// The MAC address port `port` (the appliance's index) uses.
    pub fn port_mac(&self, port: usize) -> Option<[u8; 6]> {
        self.ports.get(port).map(|p| p.mac)
    }

    /// The DPDK port id of port `port`.
    pub fn dpdk_port_id(&self, port: usize) -> Option<u16> {
        self.ports.get(port).map(|p| p.running.port_id())
    }

    /// The pool of the NUMA socket port `port` sits on: where packets sent
    /// out of that port are best allocated.
    pub fn port_pool(&self, port: usize) -> Option<MbufPool> {
        self.ports.get(port).map(|p| p.pool)
    }

    /// The pool of the first port's socket, for packets the appliance
    /// originates (ARP replies, RSTs).
    pub fn pool(&self) -> MbufPool {
        // `open` refuses an empty device list, so there is a first port.
        self.pools[0].1
    }

    /// Link state of port `port`, read without waiting.
    pub fn link(&self, port: usize) -> Option<LinkStatus> {
        let link = self.ports.get(port)?.running.link().ok()?;
        Some(LinkStatus {
            up: link.up != 0,
            speed_mbps: link.speed_mbps,
            full_duplex: link.full_duplex != 0,
        })
    }

    fn port_json(&self, index: usize, p: &PortState) -> Value {
        let link = self.link(index);
        let basic = p.running.stats().ok();
        let xstats: Map<String, Value> = p
            .running
            .xstats()
            .map(|v| v.into_iter().map(|(k, n)| (k, json!(n))).collect())
            .unwrap_or_default();
        json!({
            "name": p.name,
            "dpdk_port": p.running.port_id(),
            "driver": p.driver,
            "socket": p.socket,
            "mac": format_mac(p.mac),
            "link": link.map(|l| json!({"up": l.up, "speed_mbps": l.speed_mbps, "full_duplex": l.full_duplex})),
            "rx_queues": p.conf.rx_queues,
            "tx_queues": p.conf.tx_queues,
            "rss": {
                "enabled": p.conf.rss_hf != 0,
                "hash_functions": format!("{:#x}", p.conf.rss_hf),
                "offered": format!("{:#x}", p.info.flow_type_rss_offloads),
            },
            "offloads": {
                "rx_capable": ffi::offload_names(p.info.rx_offload_capa, true),
                "tx_capable": ffi::offload_names(p.info.tx_offload_capa, false),
                "rx_enabled": ffi::offload_names(p.conf.rx_offloads, true),
                "tx_enabled": ffi::offload_names(p.conf.tx_offloads, false),
            },
            "flow_rules": p.flow_rules,
            "stats": basic.map(|s| json!({
                "ipackets": s.ipackets, "opackets": s.opackets,
                "ibytes": s.ibytes, "obytes": s.obytes,
                "imissed": s.imissed, "ierrors": s.ierrors, "oerrors": s.oerrors,
                "rx_nombuf": s.rx_nombuf,
            })),
            "rx_dropped": p.counters.json(),
            "xstats": xstats,
        })
    }
}

impl BackendControl for DpdkControl {
    fn stats(&self) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| self.port_json(i, p))
            .collect();
        let pools: Vec<Value> = self
            .pools
            .iter()
            .map(|(socket, pool)| {
                json!({
                    "socket": socket,
                    "name": pool.name(),
                    "available": pool.available(),
                    "in_use": pool.in_use(),
                })
            })
            .collect();
        json!({
            "version": ffi::version(),
            "eal_args": ffi::eal_args().unwrap_or_default(),
            "return_steering": match self.return_steering {
                ReturnSteering::Software => "software",
                ReturnSteering::Flow => "flow",
            },
            "pools": pools,
            "mbuf": {
                "headroom": pipelines::packet::buf::HEADROOM,
                "data_room": pipelines::packet::buf::DATA_ROOM,
                "meta_priv_size": META_PRIV_SIZE,
            },
            "ports": ports,
        })
    }

    fn link_up(&self, port: usize) -> bool {
        self.link(port).is_some_and(|l| l.up)
    }
}

pub(super) fn format_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}
