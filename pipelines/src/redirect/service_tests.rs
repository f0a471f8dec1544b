//! Failure reports (DSCP 43) count only from clients redirected to the
//! reported target within the failure window.

use super::*;
use crate::nat::NatConfig;
use crate::packet::buf::HeapBuf;
use crate::redirect::db::{DbSpec, MemberDef, RedirectDb, ServerDef, ServiceDef};
use crate::stages::classify::Classify;
use crate::testing::*;
use smoltcp::wire::TcpControl;

const MASTER: &str = "192.0.2.10:7000";
const S1: &str = "192.0.2.11:7000";
const S2: &str = "192.0.2.12:7000";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A master service whose members are two one-server services.
fn snapshot() -> Snapshot {
    let mut spec = DbSpec::default();
    let member = |m| MemberDef {
        member: m,
        weight: 1,
        clients: vec![],
    };
    for i in 0..2u16 {
        spec.servers.push(ServerDef {
            name: format!("s{i}"),
            addr: sa(&format!("10.0.2.{}:7000", i + 1)),
            mac: [2, 0, 0, 0, 2, i as u8],
        });
    }
    let service = |name: &str, addr: &str, members| ServiceDef {
        name: name.into(),
        addr: sa(addr),
        tcp: true,
        udp: true,
        persistence: Persistence::Once,
        members,
    };
    spec.services.push(service(
        "web",
        MASTER,
        vec![member(Member::Service(1)), member(Member::Service(2))],
    ));
    spec.services
        .push(service("s1", S1, vec![member(Member::Server(0))]));
    spec.services
        .push(service("s2", S2, vec![member(Member::Server(1))]));
    spec.check().unwrap();
    let mut db = RedirectDb::new(spec);
    db.set_server_loads(&[Default::default(), Default::default()]);
    db.snapshot(Nanos::ZERO)
}

struct Rig {
    classify: Classify,
    nat: NatShard,
    plane: ServicePlane,
    topo: Arc<Topology>,
}

impl Rig {
    fn new() -> Rig {
        let topo = site(1);
        let mut map = ServiceMap::default();
        for (i, a) in [MASTER, S1, S2].iter().enumerate() {
            map.add_service(i as ServiceId, sa(a), true, true, 0);
        }
        let mut classify = Classify::new(topo.clone());
        classify.set_services(Arc::new(map));
        Rig {
            classify,
            nat: NatShard::new(NatConfig::default(), &topo, 0),
            plane: ServicePlane::new(Arc::new(snapshot()), 3, 7),
            topo,
        }
    }

    /// A request from `client` to the master with `mark`.
    fn request(&mut self, client: &str, l4: L4, mark: Mark, now: Nanos) -> Option<HeapBuf> {
        let frame = from_isp(client, "192.0.2.10", l4);
        let mut b = buf(&frame, WAN_PORT);
        self.classify.classify(&mut b).unwrap();
        assert_eq!(b.meta().service, 1);
        b.meta_mut().dscp = mark.dscp();
        let out = first_packet(&mut self.nat, &mut self.plane, &self.topo, now, &mut b);
        matches!(out, Ok(Outcome::Answered)).then_some(b)
    }

    fn counts(&mut self) -> (u64, u64, usize) {
        let c = &self.plane.counters;
        let n = self.plane.events.drain(..).count();
        (c.failures.get(), c.failure_reports_refused.get(), n)
    }
}

fn syn(port: u16) -> L4<'static> {
    tcp(port, 7000, TcpControl::Syn)
}

/// A UDP failure resend naming `target`.
fn resend(target: &str) -> Vec<u8> {
    let h = HeaderRepr {
        redirect: true,
        persistence: Persistence::None,
        failed: true,
        target: sa(target),
    };
    let (m, n) = h.to_message();
    let mut p = m[..n].to_vec();
    p.extend_from_slice(b"GET /");
    p
}

#[test]
fn a_forged_failure_report_is_refused_and_ignored() {
    let mut rig = Rig::new();
    let t = Nanos::from_secs(10);
    // Spoofed sources never redirected: a TCP report and UDP reports
    // naming real targets.
    rig.request("203.0.113.1", syn(40000), Mark::Failed, t);
    for (i, target) in [S1, S2, S1].iter().enumerate() {
        let p = resend(target);
        let src = format!("203.0.113.{}", i + 2);
        rig.request(&src, udp(40001, 7000, &p), Mark::Failed, t);
    }
    assert_eq!(rig.counts(), (0, 4, 0), "no failure reached the database");
}

#[test]
fn a_redirected_client_reports_its_own_target_within_the_window() {
    let mut rig = Rig::new();
    let t = Nanos::from_secs(10);
    let client = "203.0.113.7";
    // Redirected over UDP: to s1 or s2.
    let ans = rig
        .request(client, udp(40000, 7000, b"GET /"), Mark::Capable, t)
        .expect("a redirection");
    let m = *ans.meta();
    let payload = &ans.data()[usize::from(m.l4_offset) + 8..];
    let (h, _) = header::parse_message(payload).unwrap();
    let other = if h.target == sa(S1) { S2 } else { S1 };
    // A report about the other target (never given to this client), and
    // one from another client about this target: refused.
    let p = resend(other);
    rig.request(client, udp(40001, 7000, &p), Mark::Failed, t);
    let p = resend(&h.target.to_string());
    rig.request("203.0.113.8", udp(40001, 7000, &p), Mark::Failed, t);
    assert_eq!(rig.counts(), (0, 2, 0));
    // Its own report counts.
    rig.request(client, udp(40002, 7000, &p), Mark::Failed, t);
    assert_eq!(rig.counts(), (1, 2, 1));
    // Once: the redirection it was given backs one report.
    rig.request(client, udp(40003, 7000, &p), Mark::Failed, t);
    assert_eq!(rig.counts(), (1, 3, 0));
    // Redirected again, its report about that target is good only within
    // the failure window.
    let again = rig
        .request(client, udp(40004, 7000, b"GET /"), Mark::Capable, t)
        .expect("a redirection");
    let m = *again.meta();
    let (h, _) = header::parse_message(&again.data()[usize::from(m.l4_offset) + 8..]).unwrap();
    let p = resend(&h.target.to_string());
    let late = t
        .saturating_add(rig.plane.snapshot().failure_window)
        .saturating_add(Nanos(1));
    rig.request(client, udp(40005, 7000, &p), Mark::Failed, late);
    assert_eq!(rig.counts(), (1, 4, 0));
    rig.request(client, udp(40006, 7000, &p), Mark::Failed, t);
    assert_eq!(rig.counts(), (2, 4, 1), "still good within the window");
}

#[test]
fn the_redirection_memory_is_bounded_per_client() {
    let mut recent = Recent::new();
    let c: IpAddr = "203.0.113.7".parse().unwrap();
    let w = Nanos::from_secs(30);
    for i in 0..100u16 {
        recent.remember(c, Member::Peer(i), Nanos(u64::from(i)));
    }
    assert_eq!(recent.sets.len() * RECENT_WAYS, RECENT_TABLE);
    let kept = (0..100u16)
        .filter(|&i| recent.sent(c, Member::Peer(i), Nanos(100), w))
        .count();
    assert_eq!(kept, RECENT_WAYS, "the newest few");
    assert!(recent.sent(c, Member::Peer(99), Nanos(100), w));
}
