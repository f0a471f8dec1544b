use super::*;

#[test]
fn requests_round_trip() {
    for cmd in [
        Command::Stats {
            view: View::Json,
            since: None,
        },
        Command::Stats {
            view: View::Text,
            since: Some(Since {
                uptime_s: 1.5,
                totals: Totals {
                    rx_packets: 3,
                    ..Totals::default()
                },
            }),
        },
        Command::UplinkList {},
        Command::Uplink {
            name: "isp-b".into(),
            action: UplinkAction::Drain,
        },
        Command::UplinkWeight {
            name: "isp-a".into(),
            weight: 3,
        },
    ] {
        let line = request_line(&cmd);
        assert!(line.ends_with('\n') && line.contains("\"v\":1"));
        assert_eq!(parse(line.trim_end().as_bytes()), Ok(cmd));
    }
    assert_eq!(
        parse(br#"{"v":1,"cmd":"stats"}"#),
        Ok(Command::Stats {
            view: View::Json,
            since: None
        })
    );
}

fn refused(line: &[u8], want: &str) {
    match parse(line) {
        Err(e) => assert!(e.contains(want), "{e:?} lacks {want:?}"),
        Ok(c) => panic!("{:?} parsed as {c:?}", String::from_utf8_lossy(line)),
    }
}

#[test]
fn malformed_requests_are_errors() {
    refused(b"", "malformed request");
    refused(b"stats", "malformed request");
    refused(b"{\"v\":1,\"cmd\":", "malformed request");
    refused(b"[1,2]", "not a JSON object");
    refused(b"\xff\xfe", "malformed request");
    refused(br#"{"cmd":"stats"}"#, "missing field `v`");
    refused(
        br#"{"v":2,"cmd":"stats"}"#,
        "unsupported protocol version 2",
    );
    refused(
        br#"{"v":"1","cmd":"stats"}"#,
        "unsupported protocol version",
    );
    refused(br#"{"v":1}"#, "cmd");
    refused(
        br#"{"v":1,"cmd":"uplink","name":"a","action":"explode"}"#,
        "explode",
    );
    refused(
        br#"{"v":1,"cmd":"uplink_weight","name":"a","weight":-1}"#,
        "bad request",
    );
}

#[test]
fn unknown_commands_and_arguments_are_errors() {
    refused(br#"{"v":1,"cmd":"reboot"}"#, "unknown variant `reboot`");
    refused(
        br#"{"v":1,"cmd":"uplink_list","all":true}"#,
        "unknown field `all`",
    );
    refused(
        br#"{"v":1,"cmd":"stats","verbose":1}"#,
        "unknown field `verbose`",
    );
}

#[test]
fn oversized_requests_are_errors() {
    let mut big = br#"{"v":1,"cmd":"stats","pad":""#.to_vec();
    big.resize(MAX_REQUEST + 1, b'x');
    refused(&big, "at most 65536 bytes");
}

#[test]
fn answers_round_trip() {
    let ok = answer_line(&Ok(serde_json::json!({"a": 1})));
    assert_eq!(ok, "{\"ok\":{\"a\":1},\"v\":1}\n");
    assert_eq!(parse_answer(ok.as_bytes()), Ok(serde_json::json!({"a": 1})));
    let err = answer_line(&Err("no uplink named \"x\"".into()));
    assert_eq!(
        parse_answer(err.as_bytes()),
        Err("no uplink named \"x\"".into())
    );
    assert!(parse_answer(b"{\"v\":2,\"ok\":1}").is_err());
    assert!(parse_answer(b"{\"v\":1}").is_err());
    assert!(parse_answer(b"garbage").is_err());
}

#[test]
fn capture_requests_round_trip() {
    for cmd in [
        Command::CaptureStart {
            port: "wan-a".into(),
            direction: Some("tx".into()),
            snaplen: Some(128),
            count: Some(10),
            seconds: Some(2.5),
        },
        Command::CaptureRead { id: 7 },
        Command::CaptureStop { id: 7 },
    ] {
        let line = request_line(&cmd);
        assert_eq!(parse(line.trim_end().as_bytes()), Ok(cmd));
    }
    assert_eq!(
        parse(br#"{"v":1,"cmd":"capture_start","port":"lan"}"#),
        Ok(Command::CaptureStart {
            port: "lan".into(),
            direction: None,
            snaplen: None,
            count: None,
            seconds: None,
        })
    );
    refused(
        br#"{"v":1,"cmd":"capture_start","port":"lan","filter":"host 1.2.3.4"}"#,
        "unknown field `filter`",
    );
    refused(br#"{"v":1,"cmd":"capture_read"}"#, "missing field `id`");
}
