//! Server-cluster rerouting end to end (seed 000): redirecting clients and
//! plain clients against appliances running in this process (real lcores
//! and management cores over external ports), three servers behind each.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use appliance::lab::redirect::{site_config, Lab};
use pipelines::redirect::client::{ClientConfig, Proto, RedirectClient};
use pipelines::redirect::db::Mark;
use serde_json::Value;

fn plan(text: &str) -> appliance::config::plan::Plan {
    appliance::config::plan::validate(&appliance::config::parse(text).unwrap()).unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn client_ip(i: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0xCB00_7100 + i)) // 203.0.113.i
}

/// (tcp, udp) sessions per server, from the stats.
fn loads(stats: &Value) -> Vec<(u64, u64)> {
    stats["redirection"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["tcp_sessions"].as_u64().unwrap(),
                s["udp_sessions"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn total(l: &[(u64, u64)]) -> Vec<u64> {
    l.iter().map(|(t, u)| t + u).collect()
}

#[test]
fn redirections_follow_the_session_counts_and_avoid_a_failed_server() {
    let extra = "failure_threshold = 2\navoid_ms = 1500\n";
    let mut lab = Lab::start(&[plan(&site_config("a", "198.51.100", 3, None, extra))]).unwrap();
    let master = sa("198.51.100.10:7000");
    // Plain clients load a1 with TCP and a2 with UDP, straight to their
    // own addresses; plain requests are always served.
    for i in 0..4 {
        let r = lab.plain(
            client_ip(100 + i),
            Proto::Tcp,
            sa("198.51.100.11:7000"),
            b"hi",
        );
        assert_eq!(r.as_deref(), Some(&b"a1: hi"[..]));
    }
    for i in 0..2 {
        let r = lab.plain(
            client_ip(110 + i),
            Proto::Udp,
            sa("198.51.100.12:7000"),
            b"hi",
        );
        assert_eq!(r.as_deref(), Some(&b"a2: hi"[..]));
    }
    // A plain request to the master is served by the least loaded server.
    let r = lab.plain(client_ip(120), Proto::Udp, master, b"hi");
    assert_eq!(r.as_deref(), Some(&b"a3: hi"[..]));
    lab.settle(Duration::from_millis(60));
    let before = loads(&lab.appliances[0].runtime.stats());
    assert_eq!(before, [(4, 0), (0, 2), (0, 1)]);

    // Redirecting clients, TCP and UDP in turn: each is sent to the least
    // loaded server's own address, so the loads even out.
    let mut targets = Vec::new();
    for i in 0..9u32 {
        let mut c = RedirectClient::new(ClientConfig::default());
        let proto = if i % 2 == 0 { Proto::Tcp } else { Proto::Udp };
        let o = lab.request(&mut c, client_ip(i + 1), proto, master, b"GET /");
        let (by, resp) = o.result.unwrap_or_else(|e| panic!("{e}: {:#?}", o.steps));
        assert_eq!(o.sends[0], (master, Mark::Capable));
        assert_eq!(o.sends[1], (by, Mark::Redirected), "{:#?}", o.steps);
        assert!(String::from_utf8_lossy(&resp).ends_with("GET /"));
        targets.push(by.ip().to_string());
        lab.settle(Duration::from_millis(50));
    }
    let after = total(&loads(&lab.appliances[0].runtime.stats()));
    println!("redirection targets: {targets:?}; loads {after:?}");
    assert_eq!(targets[0], "198.51.100.13", "a3 had the fewest sessions");
    assert_eq!(after.iter().sum::<u64>(), 7 + 9);
    assert!(
        after.iter().max().unwrap() - after.iter().min().unwrap() <= 1,
        "{after:?}"
    );
    let s = lab.appliances[0].runtime.stats();
    assert_eq!(s["redirection"]["redirected"], 9);
    assert!(s["redirection"]["by_target"]["a1"].as_u64().unwrap() <= 2);

    // a2 stops. Clients sent to it time out and resend to the master with
    // the failure flag; the master serves them elsewhere; after two
    // reports a2 is avoided although it becomes the least loaded.
    lab.set_server("a2", false);
    let mut resends = 0;
    for i in 0..12u32 {
        let mut c = RedirectClient::new(ClientConfig::default());
        let proto = if i % 2 == 0 { Proto::Udp } else { Proto::Tcp };
        let o = lab.request(&mut c, client_ip(30 + i), proto, master, b"GET /");
        let (by, _) = o.result.unwrap_or_else(|e| panic!("{e}: {:#?}", o.steps));
        assert_ne!(by.ip().to_string(), "198.51.100.12");
        if o.sends.iter().any(|s| s.1 == Mark::Failed) {
            resends += 1;
            println!("{}", o.steps.join("\n"));
        }
        lab.settle(Duration::from_millis(30));
    }
    assert_eq!(resends, 2, "a2 is avoided after two failure reports");
    let s = lab.appliances[0].runtime.stats();
    let r = &s["redirection"];
    assert_eq!(r["failures"], 2);
    assert_eq!(r["avoided"].as_u64(), Some(1), "{r:#}");
    assert_eq!(r["services"][2]["avoided"], true, "the service a2: {r:#}");
    assert_eq!(r["servers"][1]["avoided"], true);
    let l = total(&loads(&s));
    assert!(
        l[1] < l[0] && l[1] < l[2],
        "a2 is the least loaded now: {l:?}"
    );

    // After its avoid time a2 (running again) is used again.
    lab.set_server("a2", true);
    lab.settle(Duration::from_millis(1600));
    let mut c = RedirectClient::new(ClientConfig::default());
    let o = lab.request(&mut c, client_ip(60), Proto::Tcp, master, b"GET /");
    assert_eq!(
        o.result.unwrap().0,
        sa("198.51.100.12:7000"),
        "{:#?}",
        o.steps
    );
    let s = lab.stop().remove(0);
    assert_eq!(s["redirection"]["servers"][1]["avoided"], false);
}

#[test]
fn forged_failure_reports_do_not_make_a_server_avoided() {
    use pipelines::redirect::header::{HeaderRepr, Persistence};
    // Two reports would make a server avoided (as the test above shows
    // with real ones).
    let extra = "failure_threshold = 2\navoid_ms = 60000\n";
    let mut lab = Lab::start(&[plan(&site_config("a", "198.51.100", 3, None, extra))]).unwrap();
    let master = sa("198.51.100.10:7000");
    let a2 = sa("198.51.100.12:7000");
    // Failure reports naming a2 (DSCP 43, the failure resend's header
    // with the failed flag and a2 as target) from clients the appliance
    // never redirected: three over UDP, and two TCP SYNs with the failure
    // mark. Each forger has its own address, so none was ever given a2.
    let report = HeaderRepr {
        redirect: true,
        persistence: Persistence::None,
        failed: true,
        target: a2,
    };
    let (msg, len) = report.to_message();
    let mut forged = msg[..len].to_vec();
    forged.extend_from_slice(b"GET /");
    for i in 0..3u32 {
        let answer = lab.marked(
            client_ip(200 + i),
            Proto::Udp,
            master,
            Mark::Failed,
            &forged,
        );
        assert!(answer.is_some(), "the master answered forger {i}");
    }
    for i in 3..5u32 {
        let _ = lab.marked(
            client_ip(200 + i),
            Proto::Tcp,
            master,
            Mark::Failed,
            b"GET /",
        );
    }
    lab.settle(Duration::from_millis(100));
    let s = lab.appliances[0].runtime.stats();
    let r = &s["redirection"];
    println!(
        "forged reports: refused {} failures {} avoided {}",
        r["failure_reports_refused"], r["failures"], r["avoided"]
    );
    assert_eq!(r["failure_reports_refused"], 5, "{r:#}");
    assert_eq!(r["failures"], 0, "{r:#}");
    assert_eq!(r["avoided"], 0, "{r:#}");
    assert_eq!(r["servers"][1]["avoided"], false, "{r:#}");

    // a2 still receives clients: redirecting clients spread over the three
    // servers by load, a2 among them, and every one is served.
    let mut targets = Vec::new();
    for i in 0..6u32 {
        let mut c = RedirectClient::new(ClientConfig::default());
        let proto = if i % 2 == 0 { Proto::Tcp } else { Proto::Udp };
        let o = lab.request(&mut c, client_ip(i + 1), proto, master, b"GET /");
        let (by, _) = o.result.unwrap_or_else(|e| panic!("{e}: {:#?}", o.steps));
        assert!(
            o.sends.iter().all(|s| s.1 != Mark::Failed),
            "no server failed: {:#?}",
            o.steps
        );
        targets.push(by);
        lab.settle(Duration::from_millis(50));
    }
    println!("targets after the forged reports: {targets:?}");
    assert!(targets.contains(&a2), "a2 got no client: {targets:?}");
    let s = lab.stop().remove(0);
    let l = total(&loads(&s));
    assert!(l[1] >= 1, "a2 serves clients: {l:?}");
    assert_eq!(s["redirection"]["failures"], 0);
}

/// Which server answered a plain UDP request to `to` from client `i`.
fn served_by(lab: &mut Lab, i: u32, to: SocketAddr) -> String {
    let r = lab
        .plain(client_ip(i), Proto::Udp, to, b"hi")
        .expect("an answer");
    let r = String::from_utf8_lossy(&r).to_string();
    lab.settle(Duration::from_millis(60));
    r.split(':').next().unwrap().to_string()
}

/// `reload` (the code behind `appliance reload` and SIGHUP) changes
/// `[redirection]` live: a server appended and made a member is chosen
/// next and shows in the stats; a member's weight draws the next requests;
/// every session stays. A change to an existing server is refused naming
/// the field, with nothing of that reload applied.
#[test]
fn reload_adds_a_server_and_changes_a_weight_live() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    let text = site_config("a", "198.51.100", 2, None, "");
    std::fs::write(&path, &text).unwrap();
    let cfg = appliance::config::parse(&text).unwrap();
    let mut lab = Lab::start(&[plan(&text)]).unwrap();
    lab.appliances[0].runtime.enable_reload(path.clone(), cfg);
    let master = sa("198.51.100.10:7000");
    let first: Vec<String> = (0..2).map(|i| served_by(&mut lab, i, master)).collect();
    assert_eq!(loads(&lab.appliances[0].runtime.stats()), [(0, 1), (0, 1)]);
    assert!(first.contains(&"a1".into()) && first.contains(&"a2".into()));

    // a3 appended and made a member of the master service.
    let server3 = "[[redirection.servers]]\nname = \"a3\"\naddress = \"10.0.2.3:7000\"\nmac = \"02:00:00:00:02:03\"\n";
    let added = text
        .replacen(
            "[[redirection.services]]",
            &format!("{server3}[[redirection.services]]"),
            1,
        )
        .replacen(
            "service = \"a2\"\n",
            "service = \"a2\"\n[[redirection.services.members]]\nserver = \"a3\"\n",
            1,
        );
    std::fs::write(&path, &added).unwrap();
    lab.add_server(0, "a3", sa("10.0.2.3:7000"));
    let out = lab.appliances[0].runtime.reload(None).unwrap();
    let changed = out["changed"].to_string();
    assert!(
        changed.contains("redirection.servers")
            && changed.contains("redirection.services[0].members"),
        "{out}"
    );
    lab.settle(Duration::from_millis(100));
    let s = lab.appliances[0].runtime.stats();
    assert_eq!(s["redirection"]["servers"].as_array().unwrap().len(), 3);
    assert_eq!(s["redirection"]["servers"][2]["name"], "a3");
    assert_eq!(s["redirection"]["reloads"], 1);
    assert_eq!(served_by(&mut lab, 10, master), "a3", "the idle new server");
    // Sessions intact: a1 and a2 keep theirs.
    assert_eq!(
        loads(&lab.appliances[0].runtime.stats()),
        [(0, 1), (0, 1), (0, 1)]
    );

    // a1's service weighted 10: it takes the next three requests.
    let weighted = added.replacen("service = \"a1\"\n", "service = \"a1\"\nweight = 10\n", 1);
    std::fs::write(&path, &weighted).unwrap();
    lab.appliances[0].runtime.reload(None).unwrap();
    lab.settle(Duration::from_millis(100));
    for i in 0..3 {
        assert_eq!(served_by(&mut lab, 20 + i, master), "a1");
    }
    assert_eq!(
        loads(&lab.appliances[0].runtime.stats()),
        [(0, 4), (0, 1), (0, 1)]
    );

    // An existing server moved (with a weight change beside it): refused
    // naming the field; neither applied.
    let moved = weighted
        .replacen("10.0.2.1:7000", "10.0.2.9:7000", 1)
        .replacen("weight = 10\n", "weight = 1\n", 1);
    std::fs::write(&path, &moved).unwrap();
    let e = lab.appliances[0].runtime.reload(None).unwrap_err();
    assert!(
        e.contains("redirection.servers[0].address") && e.contains("needs a restart"),
        "{e}"
    );
    assert_eq!(served_by(&mut lab, 30, master), "a1", "weight 10 kept");
    let s = lab.stop().remove(0);
    assert_eq!(s["control"]["reloads"], 2);
    assert_eq!(s["control"]["reloads_refused"], 1);
    assert_eq!(s["redirection"]["servers"][0]["address"], "10.0.2.1:7000");
}
