//! The redirecting client (seed 000 [59], [66], [77]) across repeated
//! requests, against a scripted cluster, on a virtual clock: permanent,
//! once and leased redirections, lease expiry, the hierarchy of FIG. 11.

use std::collections::HashMap;
use std::net::SocketAddr;

use pipelines::redirect::client::{Action, ClientConfig, Proto, RedirectClient};
use pipelines::redirect::db::Mark;
use pipelines::redirect::header::{HeaderRepr, Persistence};
use pipelines::Nanos;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const TOP: &str = "198.51.100.1:7000";
const MASTER_B: &str = "198.51.100.2:7000";
const COMPANY_2: &str = "198.51.100.3:7000";
const COMPANY_1: &str = "198.51.100.4:7000";

/// What each server does with a request: redirect (with a persistence) or
/// serve; servers not listed never answer.
struct Cluster {
    rules: HashMap<SocketAddr, Option<(SocketAddr, Persistence)>>,
    /// Every (server, mark) a request reached, in order.
    log: Vec<(SocketAddr, Mark)>,
}

impl Cluster {
    /// Runs one request to the top master; returns who served it.
    fn request(&mut self, c: &mut RedirectClient, now: Nanos) -> Result<SocketAddr, String> {
        let (mut ex, mut a) = c.start(sa(TOP), Proto::Udp, b"GET /", now);
        for _ in 0..16 {
            match a {
                Action::Send {
                    to, mark, payload, ..
                } => {
                    self.log.push((to, mark));
                    a = match self.rules.get(&to) {
                        None => c.on_timeout(&mut ex, now),
                        Some(None) => c.on_response(&mut ex, b"200 OK", now),
                        Some(Some((target, p))) => {
                            let h = HeaderRepr {
                                redirect: true,
                                persistence: *p,
                                failed: false,
                                target: *target,
                            };
                            let (m, n) = h.to_message();
                            let mut reply = m[..n].to_vec();
                            // The original request comes back behind the
                            // header ([63]); a failure resend carries a
                            // message of its own in front of it.
                            reply.extend_from_slice(&payload[payload.len() - 5..]);
                            c.on_response(&mut ex, &reply, now)
                        }
                    };
                }
                Action::Served { by, .. } => return Ok(by),
                Action::Failed(e) => return Err(e.to_string()),
            }
        }
        Err("no end".into())
    }
}

fn cluster(rules: &[(&str, Option<(&str, Persistence)>)]) -> Cluster {
    Cluster {
        rules: rules
            .iter()
            .map(|(k, v)| (sa(k), v.map(|(t, p)| (sa(t), p))))
            .collect(),
        log: Vec::new(),
    }
}

fn secs(s: u64) -> Nanos {
    Nanos::from_secs(s)
}

#[test]
fn permanent_then_once_down_the_hierarchy_of_fig_11() {
    // Top master → (permanent) master B → (once) company server 2.
    let mut cl = cluster(&[
        (TOP, Some((MASTER_B, Persistence::Permanent))),
        (MASTER_B, Some((COMPANY_2, Persistence::Once))),
        (COMPANY_2, None),
    ]);
    let mut c = RedirectClient::new(ClientConfig::default());
    assert_eq!(cl.request(&mut c, secs(0)), Ok(sa(COMPANY_2)));
    assert_eq!(
        cl.log,
        [
            (sa(TOP), Mark::Capable),
            (sa(MASTER_B), Mark::Redirected),
            (sa(COMPANY_2), Mark::Redirected),
        ]
    );
    // Later requests skip the top master (permanent) but go through master
    // B every time (once): B may redirect elsewhere next time.
    for t in [10, 86_400, 10_000_000] {
        cl.log.clear();
        assert_eq!(cl.request(&mut c, secs(t)), Ok(sa(COMPANY_2)));
        assert_eq!(
            cl.log,
            [
                (sa(MASTER_B), Mark::Redirected),
                (sa(COMPANY_2), Mark::Redirected)
            ]
        );
    }
    cl.rules
        .insert(sa(MASTER_B), Some((sa(COMPANY_1), Persistence::Once)));
    cl.rules.insert(sa(COMPANY_1), None);
    assert_eq!(cl.request(&mut c, secs(20)), Ok(sa(COMPANY_1)));
}

#[test]
fn a_lease_holds_until_it_ends_on_the_virtual_clock() {
    let mut cl = cluster(&[
        (TOP, Some((COMPANY_2, Persistence::Leased(3_600)))),
        (COMPANY_2, None),
    ]);
    let mut c = RedirectClient::new(ClientConfig::default());
    let t0 = secs(1_000);
    assert_eq!(cl.request(&mut c, t0), Ok(sa(COMPANY_2)));
    assert_eq!(cl.log.len(), 2);
    // Within the lease: straight to the target.
    for dt in [1, 1_800, 3_599] {
        cl.log.clear();
        assert_eq!(cl.request(&mut c, secs(1_000 + dt)), Ok(sa(COMPANY_2)));
        assert_eq!(cl.log, [(sa(COMPANY_2), Mark::Redirected)], "at +{dt} s");
        assert_eq!(
            c.resolve(sa(TOP), Proto::Udp, secs(1_000 + dt)),
            sa(COMPANY_2)
        );
    }
    // The lease ends at +3600 s: back to the top master, which leases again.
    cl.log.clear();
    assert_eq!(c.resolve(sa(TOP), Proto::Udp, secs(4_600)), sa(TOP));
    assert_eq!(cl.request(&mut c, secs(4_600)), Ok(sa(COMPANY_2)));
    assert_eq!(
        cl.log,
        [(sa(TOP), Mark::Capable), (sa(COMPANY_2), Mark::Redirected)]
    );
    // The lease is per protocol: TCP requests are not bound by it.
    assert_eq!(c.resolve(sa(TOP), Proto::Tcp, secs(4_601)), sa(TOP));
}

#[test]
fn once_and_unflagged_redirections_hold_for_their_request_only() {
    for p in [Persistence::Once, Persistence::None] {
        let mut cl = cluster(&[(TOP, Some((COMPANY_2, p))), (COMPANY_2, None)]);
        let mut c = RedirectClient::new(ClientConfig::default());
        for t in 0..3 {
            cl.log.clear();
            assert_eq!(cl.request(&mut c, secs(t)), Ok(sa(COMPANY_2)));
            assert_eq!(
                cl.log,
                [(sa(TOP), Mark::Capable), (sa(COMPANY_2), Mark::Redirected)],
                "{p:?}"
            );
        }
        assert_eq!(c.history().count(), 3);
    }
}

#[test]
fn a_failed_permanent_target_is_forgotten_and_the_failure_reported() {
    // The top master redirects permanently to company 2, which dies.
    let mut cl = cluster(&[
        (TOP, Some((COMPANY_2, Persistence::Permanent))),
        (COMPANY_2, None),
    ]);
    let mut c = RedirectClient::new(ClientConfig::default());
    assert_eq!(cl.request(&mut c, secs(0)), Ok(sa(COMPANY_2)));
    cl.rules.remove(&sa(COMPANY_2));
    // The top master, told of the failure, now serves the request itself.
    cl.rules.insert(sa(TOP), None);
    cl.log.clear();
    assert_eq!(cl.request(&mut c, secs(5)), Ok(sa(TOP)));
    assert_eq!(
        cl.log,
        [(sa(COMPANY_2), Mark::Redirected), (sa(TOP), Mark::Failed)]
    );
    // The binding is gone: the next request starts at the top master.
    cl.log.clear();
    assert_eq!(cl.request(&mut c, secs(6)), Ok(sa(TOP)));
    assert_eq!(cl.log, [(sa(TOP), Mark::Capable)]);
    let failed: Vec<bool> = c.history().map(|e| e.failed).collect();
    assert_eq!(failed, [false, true]);
}

#[test]
fn a_service_failure_is_reported_after_n_attempts() {
    let mut cl = cluster(&[(TOP, Some((COMPANY_2, Persistence::Once)))]);
    let mut c = RedirectClient::new(ClientConfig {
        max_attempts: 5,
        ..ClientConfig::default()
    });
    let e = cl.request(&mut c, secs(0)).unwrap_err();
    assert!(
        e.contains("service failure") && e.contains("5 attempts"),
        "{e}"
    );
}
