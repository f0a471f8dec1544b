//! The redirection message parser and the client's handling of whatever a
//! server sends back: no panic, and whatever parses emits back exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipelines::redirect::client::{ClientConfig, Proto, RedirectClient};
use pipelines::redirect::header::parse_message;
use pipelines::Nanos;

fuzz_target!(|data: &[u8]| {
    if let Ok((h, rest)) = parse_message(data) {
        let (b, n) = h.to_message();
        assert_eq!(&b[..n], &data[..data.len() - rest.len()]);
    }
    let mut c = RedirectClient::new(ClientConfig::default());
    for proto in [Proto::Udp, Proto::Tcp] {
        let (mut ex, _) = c.start("198.51.100.10:7000".parse().unwrap(), proto, b"GET /", Nanos::ZERO);
        let _ = c.on_response(&mut ex, data, Nanos::ZERO);
        let _ = c.on_timeout(&mut ex, Nanos::from_secs(1));
    }
});
