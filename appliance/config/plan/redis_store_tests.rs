use super::*;

fn section(redis: &str) -> RedirectionSection {
    RedirectionSection {
        redis: redis.into(),
        ..RedirectionSection::default()
    }
}

#[test]
fn redact_hides_only_the_password() {
    assert_eq!(redact("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
    assert_eq!(redact("rediss://:p@ss@h"), "rediss://:***@h");
    assert_eq!(redact("redis://u@h:1"), "redis://u@h:1");
    assert_eq!(redact("127.0.0.1:6379"), "127.0.0.1:6379");
}

#[test]
fn host_port_and_urls_are_accepted() {
    let s = plan_redis(&section("127.0.0.1:6379")).unwrap();
    assert_eq!(s.shown, "redis://127.0.0.1:6379");
    assert_eq!(s.connect_timeout, Duration::from_millis(300));
    assert_eq!(s.exchange_deadline(), Duration::from_millis(900));
    let s = plan_redis(&section("rediss://app:s3cret@store.example:6380/2")).unwrap();
    assert_eq!(s.shown, "rediss://app:***@store.example:6380/2");
    assert!(!format!("{s:?}").contains("s3cret"), "{s:?}");
    let info = s.connection_info().unwrap();
    assert_eq!(info.redis_settings().password(), Some("s3cret"));
    assert_eq!(info.redis_settings().username(), Some("app"));
}

#[test]
fn bad_addresses_name_the_field_and_never_show_the_password() {
    for bad in [
        "nowhere",
        "http://h:1",
        "redis://",
        "redis://u:topsecret@h:1/x",
    ] {
        let e = plan_redis(&section(bad)).unwrap_err();
        assert_eq!(e.path, "redirection.redis", "{bad}: {e:?}");
        assert!(!e.msg.contains("topsecret"), "{e:?}");
    }
}

#[test]
fn the_password_comes_from_one_place() {
    let mut r = section("127.0.0.1:6379");
    r.redis_password = Some("pw".into());
    r.redis_username = Some("app".into());
    let s = plan_redis(&r).unwrap();
    assert_eq!(s.password, Some(Secret::new("pw")));
    let info = s.connection_info().unwrap();
    assert_eq!(info.redis_settings().username(), Some("app"));
    assert_eq!(info.redis_settings().password(), Some("pw"));

    r.redis_password_env = Some("APPLIANCE_TEST_NO_SUCH_VAR".into());
    assert_eq!(
        plan_redis(&r).unwrap_err().path,
        "redirection.redis_password"
    );
    r.redis_password = None;
    let e = plan_redis(&r).unwrap_err();
    assert_eq!(e.path, "redirection.redis_password_env");
    assert!(e.msg.contains("APPLIANCE_TEST_NO_SUCH_VAR"), "{e:?}");

    let mut r = section("redis://:pw@127.0.0.1:6379");
    r.redis_password = Some("pw2".into());
    assert_eq!(
        plan_redis(&r).unwrap_err().path,
        "redirection.redis_password"
    );
    let mut r = section("redis://u@127.0.0.1:6379");
    r.redis_username = Some("v".into());
    assert_eq!(
        plan_redis(&r).unwrap_err().path,
        "redirection.redis_username"
    );
}

#[test]
fn the_password_can_come_from_the_environment() {
    // A variable name only this test uses.
    std::env::set_var("APPLIANCE_TEST_REDIS_PW_1", "from-env");
    let mut r = section("127.0.0.1:6379");
    r.redis_password_env = Some("APPLIANCE_TEST_REDIS_PW_1".into());
    let s = plan_redis(&r).unwrap();
    assert_eq!(s.password.as_ref().map(Secret::expose), Some("from-env"));
    assert!(!format!("{s:?}").contains("from-env"));
}

#[test]
fn timeouts_are_bounded() {
    let mut r = section("127.0.0.1:6379");
    r.redis_io_timeout_ms = 0;
    assert_eq!(
        plan_redis(&r).unwrap_err().path,
        "redirection.redis_io_timeout_ms"
    );
    r.redis_io_timeout_ms = 300;
    r.redis_connect_timeout_ms = 120_000;
    assert_eq!(
        plan_redis(&r).unwrap_err().path,
        "redirection.redis_connect_timeout_ms"
    );
}

#[test]
fn a_ca_file_needs_tls_and_must_be_readable() {
    let mut r = section("127.0.0.1:6379");
    r.redis_tls_ca_file = Some("/nonexistent/ca.pem".into());
    let e = plan_redis(&r).unwrap_err();
    assert_eq!(e.path, "redirection.redis_tls_ca_file");
    assert!(e.msg.contains("rediss://"), "{e:?}");
    r.redis = "rediss://127.0.0.1:6379".into();
    let e = plan_redis(&r).unwrap_err();
    assert_eq!(e.path, "redirection.redis_tls_ca_file");
    assert!(e.msg.contains("/nonexistent/ca.pem"), "{e:?}");
}
