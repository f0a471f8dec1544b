//! The shared store's client against a real `redis-server` with a password
//! (AUTH), and against hostile stores (a tiny listener in the test): a huge
//! bulk length, a store that dribbles one byte at a time. The redirection
//! thread's rounds never wait for the store; errors and timeouts are
//! counted; memory stays bounded.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appliance::lab::redirect::site_config;
use appliance::mgmt::redirect::RedirectCore;
use common::redis::RedisServer;
use pipelines::redirect::db::{Load, Member};
use pipelines::Nanos;

/// The redirection plan of a site whose store settings are `store`, with a
/// peer `b/web`.
fn core(name: &str, peer: &str, store: &str) -> RedirectCore {
    let text = site_config(
        name,
        "198.51.100",
        1,
        Some((peer, "192.0.2.10:7000")),
        &format!("store = \"redis\"\nreport_interval_ms = 20\nload_ttl_ms = 1000\n{store}"),
    );
    let plan =
        appliance::config::plan::validate(&appliance::config::parse(&text).unwrap()).unwrap();
    RedirectCore::new(plan.redirection.as_ref().unwrap()).unwrap()
}

/// Runs rounds for `d`; the longest one round took.
fn rounds(c: &mut RedirectCore, d: Duration) -> Duration {
    let until = Instant::now() + d;
    let mut worst = Duration::ZERO;
    while Instant::now() < until {
        let t = Instant::now();
        c.round(Nanos::ZERO, &[], &mut std::iter::empty()).unwrap();
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    worst
}

/// One full exchange: start it, wait for it, take its outcome.
fn exchange(c: &mut RedirectCore) {
    c.round(Nanos::ZERO, &[], &mut std::iter::empty()).unwrap();
    assert!(c.settle_store(Duration::from_secs(5)).unwrap());
}

#[test]
fn auth_wrong_or_missing_password_is_a_clear_error_and_the_right_one_works() {
    let redis = RedisServer::start_with(&["--requirepass", "right-pw-7"]);
    let url = |pw: &str| format!("redis = \"redis://:{pw}@127.0.0.1:{}\"\n", redis.port);

    let mut wrong = core("a", "b/web", &url("bad-pw-3"));
    exchange(&mut wrong);
    let e = wrong.view.last_store_error.clone().unwrap_or_default();
    assert_eq!(wrong.view.store_errors, 1, "{:?}", wrong.view);
    assert!(
        e.to_lowercase().contains("wrongpass") || e.to_lowercase().contains("auth"),
        "{e}"
    );
    assert!(!e.contains("bad-pw-3"), "the password is never shown: {e}");
    assert!(wrong.view.store.contains(":***@"), "{}", wrong.view.store);
    assert_eq!(wrong.db.member_load(Member::Peer(0)), None);

    let mut none = core(
        "a",
        "b/web",
        &format!("redis = \"127.0.0.1:{}\"\n", redis.port),
    );
    exchange(&mut none);
    let e = none.view.last_store_error.clone().unwrap_or_default();
    assert!(
        e.to_lowercase().contains("noauth") || e.to_lowercase().contains("auth"),
        "{e}"
    );

    // The right password, from the environment for b and in the URL for a:
    // each reads the other's (zero) load.
    std::env::set_var("APPLIANCE_TEST_STORE_PW", "right-pw-7");
    let mut b = core(
        "b",
        "a/web",
        &format!(
            "redis = \"127.0.0.1:{}\"\nredis_password_env = \"APPLIANCE_TEST_STORE_PW\"\n",
            redis.port
        ),
    );
    let mut a = core("a", "b/web", &url("right-pw-7"));
    exchange(&mut a);
    exchange(&mut b);
    std::thread::sleep(Duration::from_millis(30));
    exchange(&mut a);
    for c in [&a, &b] {
        assert_eq!(c.view.store_errors, 0, "{:?}", c.view);
        assert!(c.view.store_reports >= 1);
        assert_eq!(c.db.member_load(Member::Peer(0)), Some(Load::default()));
    }
}

/// A store that answers every connection with `reply`, then sends `drip`
/// one byte every `every` until told to stop.
struct Hostile {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hostile {
    fn start(reply: &'static [u8], drip: &'static [u8], every: Duration) -> Hostile {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !s.load(Ordering::Relaxed) {
                if let Ok((mut c, _)) = l.accept() {
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    let mut buf = [0u8; 4096];
                    let _ = c.read(&mut buf);
                    let _ = c.write_all(reply);
                    conns.push((c, 0usize));
                }
                for (c, i) in &mut conns {
                    if *i < drip.len() && c.write_all(&drip[*i..*i + 1]).is_ok() {
                        *i += 1;
                    }
                }
                std::thread::sleep(every);
            }
        });
        Hostile {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_huge_bulk_length_is_an_error_not_an_abort_nor_an_allocation() {
    // 1 TiB announced, three bytes sent, then silence.
    let h = Hostile::start(b"$1099511627776\r\nabc", b"", Duration::from_millis(5));
    let before = rss_kib();
    let mut c = core(
        "a",
        "b/web",
        &format!(
            "redis = \"127.0.0.1:{}\"\nredis_io_timeout_ms = 100\nredis_connect_timeout_ms = 100\n",
            h.port
        ),
    );
    let worst = rounds(&mut c, Duration::from_millis(800));
    assert!(
        worst < Duration::from_millis(100),
        "a round waited {worst:?}"
    );
    assert!(c.view.store_errors >= 1, "{:?}", c.view);
    let e = c.view.last_store_error.clone().unwrap_or_default();
    assert!(e.contains("timed out (connect timeout 100 ms"), "{e}");
    assert_eq!(c.db.member_load(Member::Peer(0)), None);
    let grew = rss_kib().saturating_sub(before);
    assert!(grew < 64 * 1024, "RSS grew by {grew} KiB");
}

#[test]
fn a_dribbling_store_times_out_and_never_holds_the_rounds() {
    // A valid start, then one byte every 50 ms (below the 200 ms read
    // timeout): only the exchange deadline (100 + 2 * 200 ms) ends it.
    let h = Hostile::start(
        b"*1\r\n$40\r\n",
        b"0123456789012345678901234567890123456789\r\n",
        Duration::from_millis(50),
    );
    let mut c = core(
        "a",
        "b/web",
        &format!(
            "redis = \"127.0.0.1:{}\"\nredis_io_timeout_ms = 200\nredis_connect_timeout_ms = 100\n",
            h.port
        ),
    );
    let worst = rounds(&mut c, Duration::from_millis(1200));
    assert!(
        worst < Duration::from_millis(100),
        "a round waited {worst:?}"
    );
    assert_eq!(c.view.store_timeouts, 1, "{:?}", c.view);
    assert!(c.view.store_errors >= 1);
    let e = c.view.last_store_error.clone().unwrap_or_default();
    assert!(e.contains("no answer within 500 ms"), "{e}");
    assert_eq!(c.db.member_load(Member::Peer(0)), None);
}

#[test]
fn a_dead_store_is_retried_with_a_bounded_backoff() {
    // Nothing listens on this port once the listener is dropped.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = core(
        "a",
        "b/web",
        &format!("redis = \"127.0.0.1:{port}\"\nredis_backoff_max_ms = 100\n"),
    );
    rounds(&mut c, Duration::from_millis(600));
    let v = &c.view;
    // Reports are due every 20 ms; after a failure the wait doubles from
    // 20 ms to at most 100 ms, so some are skipped and attempts go on.
    assert!(v.store_errors >= 3, "{v:?}");
    assert!(v.store_backoff_skips >= 1, "{v:?}");
    assert!(v.store_errors <= 15, "{v:?}");
    let e = v.last_store_error.clone().unwrap_or_default();
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[test]
fn tls_with_the_configured_ca_works_and_an_unknown_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    common::redis::make_certs(dir.path());
    let redis = RedisServer::start_tls(dir.path());
    let ca = dir.path().join("ca.crt");
    let tls = |extra: &str| {
        format!(
            "redis = \"rediss://127.0.0.1:{}\"\nredis_connect_timeout_ms = 2000\n{extra}",
            redis.port
        )
    };
    let mut a = core(
        "a",
        "b/web",
        &tls(&format!("redis_tls_ca_file = \"{}\"\n", ca.display())),
    );
    exchange(&mut a);
    assert_eq!(a.view.store_errors, 0, "{:?}", a.view);
    assert_eq!(a.view.store_reports, 1);
    assert!(
        a.view.store.starts_with("redis rediss://"),
        "{}",
        a.view.store
    );

    // The system's roots do not know the test CA: the handshake fails.
    let mut b = core("b", "a/web", &tls(""));
    exchange(&mut b);
    assert_eq!(b.view.store_errors, 1, "{:?}", b.view);
    let e = b.view.last_store_error.clone().unwrap_or_default();
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    // Plain RESP to the TLS port is no answer either (an error, no hang).
    let mut c = core(
        "c",
        "a/web",
        &format!("redis = \"127.0.0.1:{}\"\n", redis.port),
    );
    exchange(&mut c);
    assert_eq!(c.view.store_errors, 1, "{:?}", c.view);
}
