//! Two appliances share one real Redis server (seed 000 [65], the shared
//! redirection database): each publishes its service load and reads the
//! other's, and redirects first requests to the less loaded one.
//!
//! Starts its own `redis-server` on a free loopback port (CI installs it).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::redis::RedisServer;

use appliance::lab::redirect::{site_config, Lab};
use pipelines::redirect::client::{ClientConfig, Proto, RedirectClient};
use pipelines::redirect::db::Mark;

fn plan(text: &str) -> appliance::config::plan::Plan {
    appliance::config::plan::validate(&appliance::config::parse(text).unwrap()).unwrap()
}

fn client_ip(i: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0xCB00_7100 + i))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn two_appliances_see_each_others_load_and_redirect_to_the_less_loaded() {
    let redis = RedisServer::start();
    let store = format!(
        "store = \"redis\"\nredis = \"127.0.0.1:{}\"\nreport_interval_ms = 50\nload_ttl_ms = 1000\n",
        redis.port
    );
    let a = site_config(
        "a",
        "198.51.100",
        2,
        Some(("b/web", "192.0.2.10:7000")),
        &store,
    );
    let b = site_config(
        "b",
        "192.0.2",
        2,
        Some(("a/web", "198.51.100.10:7000")),
        &store,
    );
    let mut lab = Lab::start(&[plan(&a), plan(&b)]).unwrap();
    let (web_a, web_b) = (sa("198.51.100.10:7000"), sa("192.0.2.10:7000"));

    // Load site a: 6 plain sessions on its servers.
    for i in 0..6 {
        assert!(lab
            .plain(client_ip(100 + i), Proto::Tcp, web_a, b"x")
            .is_some());
    }
    lab.settle(Duration::from_millis(300));
    let s = lab.appliances[0].runtime.stats();
    assert_eq!(
        s["redirection"]["peers"][0]["load"]["tcp"], 0,
        "{:#}",
        s["redirection"]
    );
    let s = lab.appliances[1].runtime.stats();
    assert_eq!(
        s["redirection"]["peers"][0]["load"]["tcp"], 6,
        "b sees a's load"
    );

    // A redirecting client at a is sent to b, which serves it (a request
    // that follows a redirection is not sent to another appliance again).
    let mut c = RedirectClient::new(ClientConfig::default());
    let o = lab.request(&mut c, client_ip(1), Proto::Udp, web_a, b"GET /");
    println!("{}", o.steps.join("\n"));
    let (by, resp) = o.result.unwrap();
    assert_eq!(o.sends[1], (web_b, Mark::Redirected));
    // b sends it on down its own hierarchy, to a server's own address.
    assert!(by.to_string().starts_with("192.0.2.1"), "{by}");
    assert!(String::from_utf8_lossy(&resp).starts_with('b'));
    // At b, a redirecting client is served at home (b is less loaded).
    let mut c = RedirectClient::new(ClientConfig::default());
    let o = lab.request(&mut c, client_ip(2), Proto::Tcp, web_b, b"GET /");
    assert!(o.sends.iter().all(|s| s.0 != web_a), "{:#?}", o.steps);

    // Now load b beyond a: redirections turn the other way.
    for i in 0..12 {
        assert!(lab
            .plain(client_ip(120 + i), Proto::Udp, web_b, b"x")
            .is_some());
    }
    lab.settle(Duration::from_millis(300));
    let mut c = RedirectClient::new(ClientConfig::default());
    let o = lab.request(&mut c, client_ip(3), Proto::Tcp, web_b, b"GET /");
    println!("{}", o.steps.join("\n"));
    assert_eq!(
        o.sends[1],
        (web_a, Mark::Redirected),
        "{:#?}\n{:#}",
        o.steps,
        lab.appliances[1].runtime.stats()["redirection"]
    );
    let (by, resp) = o.result.unwrap();
    assert!(by.to_string().starts_with("198.51.100.1"), "{by}");
    assert!(String::from_utf8_lossy(&resp).starts_with('a'));
    let stats = lab.stop();
    assert_eq!(stats[0]["redirection"]["by_target"]["b/web"], 1);
    assert_eq!(stats[1]["redirection"]["by_target"]["a/web"], 1);
    assert_eq!(stats[0]["redirection"]["store_errors"], 0);
}
