//! Spreading and steering received traffic over RX queues: RSS hash
//! functions, and the rte_flow rules that put each shard's NAT ports on its
//! own RX queue ([`ReturnSteering::Flow`]).

use std::net::IpAddr;

use pipelines::topology::NatPortRange;
use serde::Deserialize;

use super::{describe, ffi, DpdkError};

/// How inbound (uplink → LAN) packets reach the shard that owns their NAT
/// port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReturnSteering {
    /// RSS spreads packets; the runtime's hand-off rings carry each to its
    /// shard.
    #[default]
    Software,
    /// rte_flow rules put each shard's NAT ports on its own RX queue.
    Flow,
}

/// Which NAT traffic a port's RX queues receive under
/// [`ReturnSteering::Flow`]: TCP and UDP to any of `addresses` whose
/// destination port lies in `queue_ports[q]` go to RX queue `q`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatSteering {
    pub addresses: Vec<IpAddr>,
    /// One NAT port slice per RX queue, in queue order (the shard that
    /// polls queue `q` owns `queue_ports[q]`, see `Topology::shard_ports`).
    pub queue_ports: Vec<NatPortRange>,
}

/// The RSS hash functions to ask for: IP, TCP and UDP as far as the PMD
/// offers them, and none with one RX queue.
pub(super) fn rss_functions(rx_queues: u16, offered: u64) -> u64 {
    if rx_queues > 1 {
        (ffi::RSS_IP | ffi::RSS_TCP | ffi::RSS_UDP) & offered
    } else {
        0
    }
}

/// Splits the port range `first..=last` into disjoint (value, mask) blocks
/// that cover it exactly: a port `p` is in the range iff `p & mask == value`
/// for one block. rte_flow matches masks, not ranges, and the shards' slices
/// are contiguous but not aligned.
fn port_blocks(first: u16, last: u16) -> Vec<(u16, u16)> {
    let mut blocks = Vec::new();
    let (mut lo, hi) = (u32::from(first), u32::from(last));
    while lo <= hi {
        let mut size: u32 = if lo == 0 {
            1 << 16
        } else {
            1 << lo.trailing_zeros()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        blocks.push((lo as u16, (!(size - 1) & 0xffff) as u16));
        lo += size;
    }
    blocks
}

/// The flow rules steering `steer` on a port with `rx_queues` RX queues.
pub(super) fn steering_rules(
    steer: &NatSteering,
    rx_queues: u16,
) -> Result<Vec<ffi::FlowRule>, String> {
    if steer.addresses.is_empty() {
        return Err("no NAT addresses to steer".into());
    }
    if steer.queue_ports.len() > usize::from(rx_queues) {
        return Err(format!(
            "{} port slices for {} RX queues",
            steer.queue_ports.len(),
            rx_queues
        ));
    }
    let mut rules = Vec::new();
    for (q, range) in steer.queue_ports.iter().enumerate() {
        if range.first > range.last {
            return Err(format!(
                "queue {q}: port slice {}..={} is empty",
                range.first, range.last
            ));
        }
        for &addr in &steer.addresses {
            for proto in [6u8, 17] {
                for (value, mask) in port_blocks(range.first, range.last) {
                    rules.push(ffi::FlowRule::new(addr, proto, value, mask, q as u16));
                }
            }
        }
    }
    Ok(rules)
}

/// Installs the rules steering `steer` on a started port with `rx_queues`
/// RX queues, validating every rule before installing any. Returns how many
/// were installed.
pub(super) fn install(
    running: &ffi::RunningPort,
    steer: &NatSteering,
    rx_queues: u16,
    name: &str,
    driver: &str,
) -> Result<usize, DpdkError> {
    let rules =
        steering_rules(steer, rx_queues).map_err(|reason| DpdkError::FlowSteeringInvalid {
            name: name.to_owned(),
            reason,
        })?;
    for rule in &rules {
        running
            .flow_validate(rule)
            .map_err(|(code, msg)| DpdkError::FlowUnsupported {
                name: name.to_owned(),
                driver: driver.to_owned(),
                reason: format!("{msg}; {}", describe(code)),
            })?;
    }
    for rule in &rules {
        running
            .flow_create(rule)
            .map_err(|(code, msg)| DpdkError::FlowUnsupported {
                name: name.to_owned(),
                driver: driver.to_owned(),
                reason: format!(
                    "rule validated but not installed: {msg}; {}",
                    describe(code)
                ),
            })?;
    }
    Ok(rules.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn covered(blocks: &[(u16, u16)]) -> Vec<u16> {
        let mut ports: Vec<u16> = (0..=u16::MAX)
            .filter(|p| blocks.iter().any(|&(v, m)| p & m == v))
            .collect();
        ports.sort_unstable();
        ports
    }

    #[test]
    fn port_blocks_cover_exactly() {
        let b = port_blocks(1024, 2047);
        assert_eq!(b, vec![(1024, 0xfc00)]);
        let b = port_blocks(1024, 5055);
        assert_eq!(covered(&b), (1024..=5055).collect::<Vec<_>>());
        assert_eq!(port_blocks(0, u16::MAX), vec![(0, 0)]);
        assert_eq!(port_blocks(7, 7), vec![(7, 0xffff)]);
        assert!(port_blocks(9, 8).is_empty());
    }

    proptest! {
        #[test]
        fn port_blocks_are_disjoint_and_exact(a in any::<u16>(), b in any::<u16>()) {
            let (first, last) = (a.min(b), a.max(b));
            let blocks = port_blocks(first, last);
            prop_assert!(blocks.len() <= 32);
            let mut count = 0u32;
            for &(v, m) in &blocks {
                prop_assert_eq!(v & m, v, "value has bits outside its mask");
                count += (!m as u32 & 0xffff) + 1;
            }
            // Disjoint blocks inside the range adding up to its size cover it.
            prop_assert_eq!(count, u32::from(last) - u32::from(first) + 1);
            for &(v, m) in &blocks {
                let top = v | !m;
                prop_assert!(v >= first && top <= last);
            }
        }
    }

    #[test]
    fn rss_only_with_several_queues_and_only_what_is_offered() {
        assert_eq!(rss_functions(1, u64::MAX), 0);
        assert_eq!(
            rss_functions(2, u64::MAX),
            ffi::RSS_IP | ffi::RSS_TCP | ffi::RSS_UDP
        );
        assert_eq!(rss_functions(4, ffi::RSS_TCP), ffi::RSS_TCP);
        assert_eq!(rss_functions(4, 0), 0);
    }

    #[test]
    fn steering_rules_per_queue_address_protocol() {
        let steer = NatSteering {
            addresses: vec![
                "198.51.100.1".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
            ],
            queue_ports: vec![
                NatPortRange {
                    first: 1024,
                    last: 2047,
                },
                NatPortRange {
                    first: 2048,
                    last: 4095,
                },
            ],
        };
        let rules = steering_rules(&steer, 2).unwrap();
        // 2 queues x 2 addresses x 2 protocols x 1 block each.
        assert_eq!(rules.len(), 8);
        assert!(rules.contains(&ffi::FlowRule::new(
            "2001:db8::1".parse().unwrap(),
            17,
            2048,
            0xf800,
            1
        )));
        let err = steering_rules(&steer, 1).unwrap_err();
        assert!(err.contains("2 port slices for 1 RX queues"), "{err}");
        let empty = NatSteering {
            addresses: vec![],
            ..steer
        };
        assert!(steering_rules(&empty, 2).is_err());
    }

    #[test]
    fn settings_deserialize_steering_names() {
        #[derive(Deserialize)]
        struct C {
            s: ReturnSteering,
        }
        let c: C = toml::from_str("s = \"flow\"").unwrap();
        assert_eq!(c.s, ReturnSteering::Flow);
        let c: C = toml::from_str("s = \"software\"").unwrap();
        assert_eq!(c.s, ReturnSteering::Software);
        assert!(toml::from_str::<C>("s = \"hardware\"").is_err());
    }
}
