//! The generator's frames, its phases, and the sink.

use std::collections::HashSet;

use super::*;
use crate::config;

fn demo_plan() -> Plan {
    let cfg = config::parse(include_str!("../../../conf/demo.toml")).unwrap();
    config::plan::validate(&cfg).unwrap()
}

fn spec(flows: u32, size: usize) -> FlowSpec {
    FlowSpec {
        flows,
        new_per_sec: 0,
        size,
        tcp: 1,
        udp: 1,
    }
}

/// A frame of `size` bytes from flow `i`'s header and a zero payload.
fn frame(ft: &FlowTable, i: usize) -> Vec<u8> {
    let mut f = ft.header(i).to_vec();
    f.resize(ft.size, 0);
    f
}

#[test]
fn frames_have_valid_checksums_and_distinct_flows() {
    let plan = demo_plan();
    let ft = FlowTable::build(&plan, &spec(5000, 128)).unwrap();
    let mut tuples = HashSet::new();
    for i in 0..ft.len() {
        let f = frame(&ft, i);
        assert_eq!(f.len(), 128);
        let ip = &f[14..];
        assert_eq!(
            checksum::fold(checksum::sum(&ip[..20], 0)),
            0xffff,
            "IPv4 header {i}"
        );
        let proto = ip[9];
        assert_eq!(proto, if i % 2 == 0 { 6 } else { 17 });
        let l4 = &ip[20..];
        let mut acc = checksum::sum(&ip[12..20], 0);
        acc += u32::from(proto) + l4.len() as u32;
        assert_eq!(
            checksum::fold(checksum::sum(l4, acc)),
            0xffff,
            "L4 checksum {i}"
        );
        tuples.insert((ip[12..20].to_vec(), l4[..4].to_vec(), proto));
    }
    assert_eq!(tuples.len(), 5000);
}

#[test]
fn a_size_outside_the_frame_limits_names_the_flag() {
    let plan = demo_plan();
    for size in [60, 1515] {
        let e = FlowTable::build(&plan, &spec(10, size)).err().unwrap();
        assert!(
            e.starts_with(&format!("--size {size}:")) && e.contains("64..=1514"),
            "{e}"
        );
    }
}

#[test]
fn warm_up_sends_each_flow_once_then_the_run_cycles_and_the_sink_frees() {
    let plan = demo_plan();
    let pool = HeapPool::new_static(256);
    let (mut ports, ctl) = open(&plan, pool, &spec(70, 64)).unwrap();
    let lan = usize::from(plan.topology.lan_port);
    // Without credit the warm-up sends nothing.
    let mut b = Burst::new();
    assert_eq!(ports[lan].rx[0].rx_burst(&mut b, 32), 0);
    ctl.grant(1000);
    let mut seen = HashSet::new();
    let mut sink = ports[1].tx.remove(0);
    for q in ports[lan].rx.iter_mut() {
        loop {
            let mut b = Burst::new();
            if q.rx_burst(&mut b, 32) == 0 {
                break;
            }
            for p in b.iter() {
                assert_eq!(p.meta().in_port as usize, lan);
                seen.insert(p.data()[26..38].to_vec());
            }
            let n = b.len();
            assert_eq!(sink.tx_burst(&mut b), n);
            assert!(b.is_empty());
        }
    }
    assert_eq!(seen.len(), 70);
    assert!(ctl.warmed_up());
    assert_eq!(pool.in_use(), 0, "the sink freed every packet");
    ctl.start_run();
    let mut b = Burst::new();
    assert_eq!(ports[lan].rx[0].rx_burst(&mut b, 32), 32);
    assert_eq!(ctl.generated().0, 70 + 32);
}

#[test]
fn clients_skip_the_appliances_addresses_and_must_fit_the_prefix() {
    let text = include_str!("../../../conf/demo.toml")
        .replace(
            "prefixes = [\"10.0.0.0/16\"]",
            "prefixes = [\"10.0.0.0/24\"]",
        )
        .replace(
            "addresses = [\"10.0.0.1\"]",
            "addresses = [\"10.0.0.1\", \"10.0.0.3\"]",
        )
        .replace("client_base = \"10.0.1.1\"", "client_base = \"10.0.0.100\"")
        .replace("clients = 300", "clients = 20");
    let cfg = config::parse(&text).unwrap();
    let plan = config::plan::validate(&cfg).unwrap();
    let ft = FlowTable::build(&plan, &spec(3 * FLOWS_PER_HOST, 64)).unwrap();
    let mut clients = HashSet::new();
    for i in 0..ft.len() {
        clients.insert(frame(&ft, i)[26..30].to_vec());
    }
    let expect: HashSet<Vec<u8>> = [4u8, 5, 6].iter().map(|&h| vec![10, 0, 0, h]).collect();
    assert_eq!(clients, expect);
    let e = FlowTable::build(&plan, &spec(300 * FLOWS_PER_HOST, 64))
        .err()
        .unwrap();
    assert!(
        e.starts_with("--flows 307200:") && e.contains("10.0.0.0/24"),
        "{e}"
    );
}
