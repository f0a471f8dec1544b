//! Hairpinning across NAT shards, end to end through the runtime (pcap
//! backend, pipeline mode, two translate lcores): LAN client B sends to LAN
//! client A's outside endpoint, which another shard owns. The first shard
//! source-NATs B's packet, the hairpin ring hands it to A's shard, which
//! translates it back in to A (RFC 4787 REQ-9).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use appliance::config::site::SiteToml;
use appliance::runtime::{run, RunOptions};
use common::{frame, read_capture, udp, write_capture};
use pipelines::packet::flow::{proto, FlowKey};
use serde_json::Value;

const NAT: &str = "198.51.100.1";
const A: &str = "10.0.0.10";
const B: &str = "10.0.0.20";
/// 64 ports per shard: shard 0 owns 2000..=2063, shard 1 2064..=2127.
const FIRST: u16 = 2000;

fn shard_of_inside(addr: &str, port: u16) -> u16 {
    let k = FlowKey {
        src: addr.parse().unwrap(),
        dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        src_port: port,
        dst_port: 0,
        proto: proto::UDP,
    };
    (k.inside_endpoint_hash() % 2) as u16
}

fn shard_of_nat_port(port: u16) -> u16 {
    (port - FIRST) / 64
}

fn site(dir: &Path, filtering: &str) -> String {
    let d = dir.display();
    SiteToml::one_uplink("pcap", &[NAT])
        .lan_key("pcap_in", &format!("{d}/in.pcap"))
        .lan_key("pcap_out", &format!("{d}/lan-out.pcap"))
        .port_key("wan", "pcap_out", &format!("{d}/wan-out.pcap"))
        .section(&format!(
            r#"
[nat]
port_range = [{FIRST}, 2127]
filtering = "{filtering}"
[runtime]
mode = "pipeline"
oversubscribe = true
[[runtime.lcores]]
stages = ["classify", "replicate"]
[[runtime.lcores]]
stages = ["translate", "transmit"]
[[runtime.lcores]]
stages = ["translate", "transmit"]
"#
        ))
        .to_string()
}

fn run_site(dir: &Path, filtering: &str) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, Value) {
    let text = site(dir, filtering);
    let plan =
        appliance::config::plan::validate(&appliance::config::parse(&text).unwrap()).unwrap();
    let stats = run(&plan, &RunOptions::default()).unwrap();
    (
        read_capture(&dir.join("lan-out.pcap")),
        read_capture(&dir.join("wan-out.pcap")),
        stats,
    )
}

#[test]
fn hairpin_reaches_the_client_on_another_shard() {
    // A's port is kept (port preservation) only inside its own shard's
    // slice; pick one that is, and a port for B on the other shard.
    let a_port = (FIRST..FIRST + 128)
        .find(|&p| shard_of_inside(A, p) == shard_of_nat_port(p))
        .unwrap();
    let a_shard = shard_of_nat_port(a_port);
    let b_port = (40_000..41_000)
        .find(|&p| shard_of_inside(B, p) != a_shard)
        .unwrap();

    // A talks to a server (its mapping (NAT, a_port) appears); then, in a
    // later receive burst, B sends to that outside endpoint.
    let to_server = frame(A, "203.0.113.1", proto::UDP, udp(a_port, 3478, b"stun"), 6);
    let mut frames = vec![to_server; 64];
    frames.push(frame(
        B,
        NAT,
        proto::UDP,
        udp(b_port, a_port, b"hairpin"),
        6,
    ));

    for (filtering, delivered) in [
        ("endpoint-independent", true),
        ("address-and-port-dependent", false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_capture(&dir.path().join("in.pcap"), &frames);
        let (lan, wan, stats) = run_site(dir.path(), filtering);
        assert_eq!(wan.len(), 64, "A's packets left by the uplink: {stats:#}");
        assert!(wan.iter().all(|f| f[26..30] == [198, 51, 100, 1]));
        let translate = &stats["stages"]["translate"];
        if delivered {
            assert_eq!(lan.len(), 1, "{stats:#}");
            let f = &lan[0];
            assert_eq!(
                &f[26..30],
                &[198, 51, 100, 1],
                "B appears as its outside address"
            );
            assert_eq!(&f[30..34], &[10, 0, 0, 10], "delivered to A");
            assert_eq!(u16::from_be_bytes([f[36], f[37]]), a_port);
            assert_eq!(&f[42..], b"hairpin");
            assert_eq!(f[22], 63, "one hop: TTL decremented once");
            assert_eq!(
                pipelines::wire::checksum::checksum(&f[14..34]),
                0,
                "IPv4 header checksum"
            );
            assert_eq!(translate["drops_total"], 0, "{stats:#}");
        } else {
            assert!(lan.is_empty());
            assert_eq!(translate["drops"]["filtered"], 1, "{stats:#}");
            assert_eq!(stats["nat"]["filtered"], 1);
        }
        // B's mapping is on its own shard, A's on the other: two mappings.
        assert_eq!(stats["nat"]["mappings"], 2, "{stats:#}");
    }
}
