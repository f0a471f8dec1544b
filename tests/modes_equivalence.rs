//! Pipeline and run-to-completion modes carry the same traffic to the same
//! result: one capture of thousands of flows (TCP, UDP, ICMP echo, IPv4 and
//! IPv6) replayed through both modes with the same number of NAT shards
//! produces the same multiset of translated frames and the same counts.

mod common;

use std::path::Path;

use appliance::config::site::SiteToml;
use appliance::runtime::{run, RunOptions};
use common::{frame, read_capture, write_capture};
use serde_json::Value;

/// The site, its captures `input` → `output`, with a mode's `[runtime]`.
fn site(input: &Path, output: &Path, runtime: &str) -> String {
    SiteToml::one_uplink("pcap", &["198.51.100.0/30", "2001:db8:1::1"])
        .prefixes(&["10.0.0.0/16", "fd00::/64"])
        .lan_key("pcap_in", input.to_str().unwrap())
        .port_key("wan", "pcap_out", output.to_str().unwrap())
        .section(runtime)
        .to_string()
}

fn traffic() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for i in 0..3000u32 {
        let client = format!("10.0.{}.{}", 1 + i / 250, 1 + i % 250);
        let server = format!("203.0.113.{}", 1 + i % 50);
        let sport = (20_000 + i) as u16;
        match i % 4 {
            0 => {
                // TCP SYN.
                let mut tcp = vec![0u8; 20];
                tcp[0..2].copy_from_slice(&sport.to_be_bytes());
                tcp[2..4].copy_from_slice(&443u16.to_be_bytes());
                tcp[4..8].copy_from_slice(&i.to_be_bytes());
                tcp[12] = 5 << 4;
                tcp[13] = 0x02;
                tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
                frames.push(frame(&client, &server, 6, tcp, 16));
            }
            1 => {
                // UDP with payload, sent twice (same session).
                let mut udp = vec![0u8; 8 + 20];
                udp[0..2].copy_from_slice(&sport.to_be_bytes());
                udp[2..4].copy_from_slice(&53u16.to_be_bytes());
                udp[4..6].copy_from_slice(&28u16.to_be_bytes());
                udp[8..].copy_from_slice(&[i as u8; 20]);
                let f = frame(&client, &server, 17, udp, 6);
                frames.push(f.clone());
                frames.push(f);
            }
            2 => {
                // ICMP echo request.
                let mut icmp = vec![8u8, 0, 0, 0, 0, 0, 0, 1];
                icmp[4..6].copy_from_slice(&(i as u16).to_be_bytes());
                icmp.extend_from_slice(b"ping");
                frames.push(frame(&client, &server, 1, icmp, 2));
            }
            _ => {
                // IPv6 UDP.
                let mut udp = vec![0u8; 8 + 4];
                udp[0..2].copy_from_slice(&sport.to_be_bytes());
                udp[2..4].copy_from_slice(&123u16.to_be_bytes());
                udp[4..6].copy_from_slice(&12u16.to_be_bytes());
                frames.push(frame(
                    &format!("fd00::{:x}", i + 1),
                    &format!("2001:db8:99::{:x}", 1 + i % 50),
                    17,
                    udp,
                    6,
                ));
            }
        }
    }
    frames
}

fn run_mode(dir: &Path, runtime: &str, tag: &str) -> (Vec<Vec<u8>>, Value) {
    let input = dir.join("in.pcap");
    let output = dir.join(format!("out-{tag}.pcap"));
    let text = site(&input, &output, runtime);
    let plan =
        appliance::config::plan::validate(&appliance::config::parse(&text).unwrap()).unwrap();
    let stats = run(&plan, &RunOptions::default()).unwrap();
    let mut frames = read_capture(&output);
    frames.sort();
    (frames, stats)
}

#[test]
fn both_modes_deliver_the_same_frames() {
    let dir = tempfile::tempdir().unwrap();
    let frames = traffic();
    write_capture(&dir.path().join("in.pcap"), &frames);

    let (pipe, pstats) = run_mode(
        dir.path(),
        "[runtime]\nmode = \"pipeline\"\noversubscribe = true\n\
         [[runtime.lcores]]\nstages = [\"classify\", \"replicate\"]\n\
         [[runtime.lcores]]\nstages = [\"translate\", \"transmit\"]\n\
         [[runtime.lcores]]\nstages = [\"translate\", \"transmit\"]\n",
        "pipeline",
    );
    let (rtc, rstats) = run_mode(
        dir.path(),
        "[runtime]\nmode = \"run-to-completion\"\noversubscribe = true\n[[runtime.lcores]]\n[[runtime.lcores]]\n",
        "rtc",
    );

    assert_eq!(
        pipe.len(),
        frames.len(),
        "pipeline mode delivered {} of {} frames: {pstats:#}",
        pipe.len(),
        frames.len()
    );
    assert_eq!(
        rtc.len(),
        frames.len(),
        "run-to-completion delivered {} of {} frames: {rstats:#}",
        rtc.len(),
        frames.len()
    );
    assert!(
        pipe == rtc,
        "the two modes translated some flows differently"
    );
    for s in [&pstats, &rstats] {
        assert_eq!(s["stages"]["transmit"]["packets"], frames.len() as u64);
        assert_eq!(
            s["nat"]["created"],
            (frames.len() - frames.len() / 5) as u64,
            "one session per flow"
        );
        assert_eq!(s["ports"]["wan"]["tx_packets"], frames.len() as u64);
    }
    // Every frame left with a NAT source address.
    for f in &pipe {
        let v4 = f[12..14] == [0x08, 0x00];
        if v4 {
            assert_eq!(&f[26..29], &[198, 51, 100], "source not NATed");
        } else {
            assert_eq!(
                &f[22..38],
                &"2001:db8:1::1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets()
            );
        }
    }
}
