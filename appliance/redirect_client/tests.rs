//! The driver against fake redirecting servers on loopback (IPv4 and IPv6):
//! real sockets, real timeouts, the state file between two clients.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::thread;
use std::time::Duration;

use pipelines::redirect::header::HeaderRepr;

use super::*;

fn message(to: SocketAddr, p: Persistence) -> Vec<u8> {
    let (m, n) = HeaderRepr {
        redirect: true,
        persistence: p,
        failed: false,
        target: to,
    }
    .to_message();
    m[..n].to_vec()
}

/// A UDP server answering `count` datagrams: with a redirection to
/// `redirect` (echoing the request), or with "NAME: request".
fn udp_server(
    bind: &str,
    name: &'static str,
    redirect: Option<(SocketAddr, Persistence)>,
) -> SocketAddr {
    let s = UdpSocket::bind(bind).unwrap();
    let a = s.local_addr().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let mut out = match redirect {
                Some((to, p)) => message(to, p),
                None => format!("{name}: ").into_bytes(),
            };
            out.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&out, from);
        }
    });
    a
}

fn tcp_server(
    bind: &str,
    name: &'static str,
    redirect: Option<(SocketAddr, Persistence)>,
) -> SocketAddr {
    let l = TcpListener::bind(bind).unwrap();
    let a = l.local_addr().unwrap();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            match redirect {
                // Like the appliance: the message and FIN after the
                // handshake, whatever the client sends.
                Some((to, p)) => {
                    let _ = c.write_all(&message(to, p));
                }
                None => {
                    let mut req = Vec::new();
                    let _ = c.read_to_end(&mut req);
                    let mut out = format!("{name}: ").into_bytes();
                    out.extend_from_slice(&req);
                    let _ = c.write_all(&out);
                }
            }
        }
    });
    a
}

fn opts(state: Option<PathBuf>) -> Options {
    Options {
        timeout: Duration::from_millis(300),
        state,
        ..Options::default()
    }
}

fn served(o: &Outcome) -> (SocketAddr, String) {
    let (by, r) = o.result.as_ref().expect("served");
    (*by, String::from_utf8_lossy(r).into_owned())
}

#[test]
fn udp_and_tcp_redirections_are_followed_over_v4_and_v6() {
    for lo in ["127.0.0.1:0", "[::1]:0"] {
        let target = udp_server(lo, "t", None);
        let svc = udp_server(lo, "svc", Some((target, Persistence::Once)));
        let mut c = Client::new(opts(None)).unwrap();
        let o = c.request(svc, Proto::Udp, b"ping");
        assert_eq!(served(&o), (target, "t: ping".into()));
        let marks: Vec<_> = o.exchanges.iter().map(|e| (e.to, e.mark)).collect();
        assert_eq!(marks, [(svc, Mark::Capable), (target, Mark::Redirected)]);

        let target = tcp_server(lo, "t", None);
        let svc = tcp_server(lo, "svc", Some((target, Persistence::Once)));
        let o = c.request(svc, Proto::Tcp, b"GET /");
        assert_eq!(served(&o), (target, "t: GET /".into()));
        let (o, s) = c.connect(svc);
        assert_eq!(o.result.unwrap().0, target);
        let mut s = s.expect("a stream to the target");
        s.write_all(b"hi").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert_eq!(got, "t: hi");
    }
}

#[test]
fn a_silent_target_is_reported_to_the_redirecting_server() {
    // The target: a bound socket that never answers.
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    // The service redirects the first request and serves the resend.
    let svc = UdpSocket::bind("127.0.0.1:0").unwrap();
    let svc_addr = svc.local_addr().unwrap();
    let h = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let (n, from) = svc.recv_from(&mut buf).unwrap();
        let mut out = message(dead_addr, Persistence::Once);
        out.extend_from_slice(&buf[..n]);
        svc.send_to(&out, from).unwrap();
        let (n, from) = svc.recv_from(&mut buf).unwrap();
        let (h, rest) = header::parse_message(&buf[..n]).unwrap();
        assert!(h.failed);
        assert_eq!(h.target, dead_addr);
        svc.send_to(&[b"svc: ", rest].concat(), from).unwrap();
    });
    let mut c = Client::new(opts(None)).unwrap();
    let o = c.request(svc_addr, Proto::Udp, b"q");
    h.join().unwrap();
    assert_eq!(served(&o), (svc_addr, "svc: q".into()));
    let marks: Vec<_> = o.exchanges.iter().map(|e| e.mark.dscp()).collect();
    assert_eq!(marks, [11, 27, 43]);
    drop(dead);
}

#[test]
fn permanent_and_leased_redirections_survive_in_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.json");
    let target = udp_server("127.0.0.1:0", "t", None);
    let perm = udp_server("127.0.0.1:0", "p", Some((target, Persistence::Permanent)));
    let leased = udp_server("127.0.0.1:0", "l", Some((target, Persistence::Leased(1))));
    let mut c = Client::new(opts(Some(path.clone()))).unwrap();
    assert_eq!(served(&c.request(perm, Proto::Udp, b"a")).0, target);
    assert_eq!(served(&c.request(leased, Proto::Udp, b"a")).0, target);
    c.save().unwrap();
    drop(c);

    // A new run goes straight to the target for both.
    let mut c = Client::new(opts(Some(path.clone()))).unwrap();
    for svc in [perm, leased] {
        let o = c.request(svc, Proto::Udp, b"b");
        assert_eq!(served(&o).0, target);
        assert_eq!(o.exchanges.len(), 1);
        assert!(matches!(o.exchanges[0].why, Why::Remembered(_)));
    }
    // After the lease, the leased service is asked again.
    thread::sleep(Duration::from_millis(1100));
    let o = c.request(leased, Proto::Udp, b"c");
    assert_eq!(o.exchanges[0].to, leased);
    assert_eq!(o.exchanges[0].mark, Mark::Capable);
    let o = c.request(perm, Proto::Udp, b"c");
    assert_eq!(o.exchanges[0].to, target);
}

#[test]
fn a_bad_state_file_is_an_error_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.json");
    std::fs::write(
        &path,
        r#"{"version":1,"bindings":[{"from":"1.2.3.4:1","to":"nope","proto":"udp","persistence":"permanent"}]}"#,
    )
    .unwrap();
    let e = Client::new(opts(Some(path.clone())))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("bindings[0].to"), "{e}");
    std::fs::write(
        &path,
        r#"{"version":1,"bindings":[{"from":"1.2.3.4:1","to":"1.2.3.5:1","proto":"udp","persistence":"leased"}]}"#,
    )
    .unwrap();
    let e = Client::new(opts(Some(path.clone())))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("lease_s"), "{e}");
    std::fs::write(&path, r#"{"version":2}"#).unwrap();
    let e = Client::new(opts(Some(path))).err().unwrap().to_string();
    assert!(e.contains("version"), "{e}");
}
