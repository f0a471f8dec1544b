//! What a reload may change in `[redirection]`. The management core
//! rebuilds its database from the new section and publishes a new
//! snapshot; classify lcores take the new service map. Sessions keep the
//! server they were given (its address and MAC live in the session).
//!
//! Live: the appliance name, the store and its settings, intervals,
//! thresholds and session weights; servers appended at the end of the
//! list; each service's members (servers, services, peers, weights,
//! clients), protocols and persistence; peers' addresses.
//! Restart: a server's name, address or MAC, or a server removed (servers
//! are numbered by position in the sessions and load gauges: take one out
//! of its services' members instead, which is live); adding or removing a
//! service, or its name, address or uplink (a service address joins the
//! NAT shards' addresses at start); adding, removing or renaming a peer
//! (the stats count redirections per target from start); turning
//! redirection on or off.

use super::{fixed, Diff};
use crate::config::{ConfigError, PeerConfig, RedirectionSection, ServerConfig, ServiceConfig};

fn p(f: &str) -> String {
    format!("redirection.{f}")
}

pub(super) fn diff_redirection(
    d: &mut Diff,
    o: &RedirectionSection,
    n: &RedirectionSection,
) -> Result<(), ConfigError> {
    let RedirectionSection {
        appliance,
        store,
        redis,
        redis_username,
        redis_password,
        redis_password_env,
        redis_tls_ca_file,
        redis_connect_timeout_ms,
        redis_io_timeout_ms,
        redis_backoff_max_ms,
        publish_interval_ms,
        report_interval_ms,
        load_ttl_ms,
        failure_threshold,
        failure_window_ms,
        avoid_ms,
        tcp_session_weight,
        udp_session_weight,
        servers,
        services,
        peers,
    } = n;
    if o.services.is_empty() != services.is_empty() {
        return fixed(
            p("services"),
            "whether redirection runs at all (its service map and rings are built at start)",
            &o.services.len(),
            &services.len(),
        );
    }
    diff_servers(d, &o.servers, servers)?;
    diff_services(d, &o.services, services)?;
    diff_peers(d, &o.peers, peers)?;
    d.live(p("appliance"), &o.appliance, appliance);
    d.live(p("store"), &o.store, store);
    d.live(p("redis"), &o.redis, redis);
    d.live(p("redis_username"), &o.redis_username, redis_username);
    d.live(p("redis_password"), &o.redis_password, redis_password);
    d.live(
        p("redis_password_env"),
        &o.redis_password_env,
        redis_password_env,
    );
    d.live(
        p("redis_tls_ca_file"),
        &o.redis_tls_ca_file,
        redis_tls_ca_file,
    );
    d.live(
        p("redis_connect_timeout_ms"),
        &o.redis_connect_timeout_ms,
        redis_connect_timeout_ms,
    );
    d.live(
        p("redis_io_timeout_ms"),
        &o.redis_io_timeout_ms,
        redis_io_timeout_ms,
    );
    d.live(
        p("redis_backoff_max_ms"),
        &o.redis_backoff_max_ms,
        redis_backoff_max_ms,
    );
    d.live(
        p("publish_interval_ms"),
        &o.publish_interval_ms,
        publish_interval_ms,
    );
    d.live(
        p("report_interval_ms"),
        &o.report_interval_ms,
        report_interval_ms,
    );
    d.live(p("load_ttl_ms"), &o.load_ttl_ms, load_ttl_ms);
    d.live(
        p("failure_threshold"),
        &o.failure_threshold,
        failure_threshold,
    );
    d.live(
        p("failure_window_ms"),
        &o.failure_window_ms,
        failure_window_ms,
    );
    d.live(p("avoid_ms"), &o.avoid_ms, avoid_ms);
    d.live(
        p("tcp_session_weight"),
        &o.tcp_session_weight,
        tcp_session_weight,
    );
    d.live(
        p("udp_session_weight"),
        &o.udp_session_weight,
        udp_session_weight,
    );
    Ok(())
}

fn diff_servers(
    d: &mut Diff,
    old: &[ServerConfig],
    new: &[ServerConfig],
) -> Result<(), ConfigError> {
    if new.len() < old.len() {
        return Err(ConfigError {
            path: p("servers"),
            msg: format!(
                "removing a server ({} -> {}) needs a restart (nothing was applied); \
                 take it out of its services' members instead, which applies live",
                old.len(),
                new.len()
            ),
        });
    }
    for (i, (o, n)) in old.iter().zip(new).enumerate() {
        let ServerConfig { name, address, mac } = n;
        let what = "an existing server (servers may only be appended live)";
        let f = |x: &str| p(&format!("servers[{i}].{x}"));
        fixed(f("name"), what, &o.name, name)?;
        fixed(f("address"), what, &o.address, address)?;
        fixed(f("mac"), what, &o.mac, mac)?;
    }
    if new.len() > old.len() {
        d.live.push(p("servers"));
    }
    Ok(())
}

fn diff_services(
    d: &mut Diff,
    old: &[ServiceConfig],
    new: &[ServiceConfig],
) -> Result<(), ConfigError> {
    fixed(
        p("services"),
        "the number of services (a service address joins the NAT shards at start)",
        &old.len(),
        &new.len(),
    )?;
    for (i, (o, n)) in old.iter().zip(new).enumerate() {
        let ServiceConfig {
            name,
            address,
            uplink,
            protocols,
            persistence,
            lease_s,
            members,
        } = n;
        let f = |x: &str| p(&format!("services[{i}].{x}"));
        let what = "a service's identity (its address joins the NAT shards at start)";
        fixed(f("name"), what, &o.name, name)?;
        fixed(f("address"), what, &o.address, address)?;
        fixed(f("uplink"), what, &o.uplink, uplink)?;
        d.live(f("protocols"), &o.protocols, protocols);
        d.live(f("persistence"), &o.persistence, persistence);
        d.live(f("lease_s"), &o.lease_s, lease_s);
        d.live(f("members"), &o.members, members);
    }
    Ok(())
}

fn diff_peers(d: &mut Diff, old: &[PeerConfig], new: &[PeerConfig]) -> Result<(), ConfigError> {
    let what = "the peers (the stats count redirections per target from start)";
    fixed(p("peers"), what, &old.len(), &new.len())?;
    for (i, (o, n)) in old.iter().zip(new).enumerate() {
        let PeerConfig { name, address } = n;
        let f = |x: &str| p(&format!("peers[{i}].{x}"));
        fixed(f("name"), what, &o.name, name)?;
        d.live(f("address"), &o.address, address);
    }
    Ok(())
}
