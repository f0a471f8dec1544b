use super::*;
use pipelines::nat::{EventKind, EventReason};
use pipelines::Nanos;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn event(kind: EventKind, v6: bool) -> NatEvent {
    let mut ev = NatEvent::new(Nanos(5), kind, EventReason::None);
    ev.proto = 6;
    if v6 {
        ev.inside = "[fd00::2]:40000".parse().unwrap();
        ev.outside = "[2001:db8::10]:50000".parse().unwrap();
        ev.remote = "[2001:db8:1::80]:443".parse().unwrap();
    } else {
        ev.inside = "10.0.1.2:40000".parse().unwrap();
        ev.outside = "198.51.100.10:50000".parse().unwrap();
        ev.remote = "203.0.113.80:443".parse().unwrap();
    }
    ev.uplink = 1;
    ev
}

#[test]
fn template_message_field_by_field() {
    let x = Exporter::new(7);
    let m = x.templates(1_700_000_000);
    assert_eq!(be16(&m, 0), 10, "version");
    assert_eq!(usize::from(be16(&m, 2)), m.len(), "message length");
    assert_eq!(be32(&m, 4), 1_700_000_000, "export time");
    assert_eq!(be32(&m, 8), 0, "sequence");
    assert_eq!(be32(&m, 12), 7, "observation domain");
    assert_eq!(be16(&m, 16), 2, "template set id");
    assert_eq!(usize::from(be16(&m, 18)), m.len() - 16, "set length");
    // Template 256: 14 fields.
    assert_eq!(be16(&m, 20), 256);
    assert_eq!(be16(&m, 22), 14);
    let want4: [(u16, u16); 11] = [
        (323, 8),
        (230, 1),
        (4, 1),
        (8, 4),
        (12, 4),
        (225, 4),
        (226, 4),
        (7, 2),
        (11, 2),
        (227, 2),
        (228, 2),
    ];
    let mut at = 24;
    for (ie, len) in want4 {
        assert_eq!((be16(&m, at), be16(&m, at + 2)), (ie, len), "at {at}");
        at += 4;
    }
    for (ie, len) in [(1u16, 1u16), (2, 1), (3, 4)] {
        assert_eq!(be16(&m, at), 0x8000 | ie, "enterprise bit and id");
        assert_eq!(be16(&m, at + 2), len);
        assert_eq!(be32(&m, at + 4), 32473, "PEN");
        at += 8;
    }
    assert_eq!(be16(&m, at), 257);
    assert_eq!(be16(&m, at + 2), 14);
    at += 4;
    let want6 = [(27u16, 16u16), (28, 16), (281, 16), (282, 16)];
    for (k, (ie, len)) in want6.into_iter().enumerate() {
        let f = at + 12 + 4 * k;
        assert_eq!((be16(&m, f), be16(&m, f + 2)), (ie, len));
    }
    // 11 plain fields (4 bytes) + 3 enterprise ones (8) per template.
    assert_eq!(m.len(), 16 + 4 + 2 * (4 + 11 * 4 + 3 * 8));
}

#[test]
fn ipv4_record_field_by_field() {
    let mut x = Exporter::new(1);
    let mut ev = event(EventKind::RaceDecided, false);
    ev.winner = 1;
    ev.races = 2;
    ev.rtts[0] = (0, None);
    ev.rtts[1] = (1, Some(Nanos(12_345_678)));
    let msgs = x.data(&[(ev, 1_700_000_000_123)], 1_700_000_000);
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(usize::from(be16(m, 2)), m.len());
    assert_eq!(be32(m, 8), 0, "no record before this message");
    assert_eq!(be16(m, 16), 256, "data set of template 256");
    assert_eq!(usize::from(be16(m, 18)), 4 + record_len(false));
    let r = &m[20..];
    assert_eq!(r.len(), 40);
    assert_eq!(
        u64::from_be_bytes(r[0..8].try_into().unwrap()),
        1_700_000_000_123
    );
    assert_eq!(r[8], NAT44_SESSION_CREATE);
    assert_eq!(r[9], 6);
    assert_eq!(&r[10..14], &[10, 0, 1, 2], "source");
    assert_eq!(&r[14..18], &[203, 0, 113, 80], "destination");
    assert_eq!(&r[18..22], &[198, 51, 100, 10], "post-NAT source");
    assert_eq!(&r[22..26], &[203, 0, 113, 80], "post-NAT destination");
    assert_eq!(be16(r, 26), 40000);
    assert_eq!(be16(r, 28), 443);
    assert_eq!(be16(r, 30), 50000);
    assert_eq!(be16(r, 32), 443);
    assert_eq!(r[34], 1, "uplink");
    assert_eq!(r[35], 1, "winner");
    assert_eq!(be32(r, 36), 12_345, "winner RTT in µs");
    assert_eq!(x.sequence, 1);
}

#[test]
fn ipv6_record_and_event_codes() {
    let mut x = Exporter::new(1);
    let ev = event(EventKind::SessionExpired, true);
    let msgs = x.data(&[(ev, 9)], 0);
    let m = &msgs[0];
    assert_eq!(be16(m, 16), 257);
    let r = &m[20..];
    assert_eq!(r.len(), record_len(true));
    assert_eq!(r[8], NAT44_SESSION_DELETE);
    assert_eq!(&r[10..26], &"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
    assert_eq!(
        &r[42..58],
        &"2001:db8::10".parse::<Ipv6Addr>().unwrap().octets()
    );
    assert_eq!(be16(r, 74), 40000);
    assert_eq!(be16(r, 78), 50000);
    assert_eq!(r[83], 255, "no race: winner none");
    assert_eq!(be32(r, 84), 0);
    let mut lim = event(EventKind::LimitHit, false);
    lim.reason = EventReason::Limit(DropReason::PortExhausted);
    assert_eq!(nat_event(&lim), Some(NAT_PORTS_EXHAUSTED));
    lim.reason = EventReason::Limit(DropReason::TableFull);
    assert_eq!(nat_event(&lim), Some(QUOTA_EXCEEDED));
}

#[test]
fn messages_stay_under_the_limit_and_count_sequences() {
    let mut x = Exporter::new(1);
    let evs: Vec<(NatEvent, u64)> = (0..100)
        .map(|i| (event(EventKind::SessionCreated, i % 7 == 0), i))
        .collect();
    let msgs = x.data(&evs, 0);
    assert!(msgs.len() > 3);
    let mut seq = 0;
    let mut records = 0;
    for m in &msgs {
        assert!(m.len() <= MAX_MESSAGE, "{}", m.len());
        assert_eq!(usize::from(be16(m, 2)), m.len());
        assert_eq!(be32(m, 8), seq, "sequence = records sent before");
        // Walk the sets: their lengths tile the message.
        let mut at = HEADER_LEN;
        let mut n = 0;
        while at < m.len() {
            let id = be16(m, at);
            let len = usize::from(be16(m, at + 4 - 2));
            let rl = record_len(id == TEMPLATE_V6);
            assert_eq!((len - 4) % rl, 0);
            n += (len - 4) / rl;
            at += len;
        }
        assert_eq!(at, m.len());
        seq += n as u32;
        records += n;
    }
    assert_eq!(records, 100);
    assert_eq!(x.sequence, 100);
}
