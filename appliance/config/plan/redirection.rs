//! The `[redirection]` section (seed 000 [25]-[66], `docs/redirection.md`):
//! the shared store, servers on the LAN, peers' services and this
//! appliance's service addresses with their members, as the database spec
//! (`DbSpec`) the management core runs and the service map classify uses.
//!
//! Invariants: every name a member refers to exists; a service address is
//! outside the LAN, has a port, is unique, and if it is a NAT address its
//! port is outside the NAT port range and its uplink that address's own;
//! peers need a shared (Redis) store.
//! May import `crate::config`, `super` (err) and pipelines; nothing else.

use std::net::SocketAddr;
use std::time::Duration;

use pipelines::redirect::db::{
    DbConfig, DbSpec, Member, MemberDef, PeerDef, ServerDef, ServiceDef, MAX_SERVERS,
};
use pipelines::redirect::header::Persistence;
use pipelines::redirect::service::ServiceMap;
use pipelines::topology::Topology;
use pipelines::{Nanos, UplinkId};

use super::{err, ConfigError};
use crate::config::{
    MemberConfig, PersistenceKind, RedirectStoreKind, RedirectionSection, ServiceConfig,
    ServiceProtocol,
};

/// Where the redirection database shares loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectStore {
    /// In the management core, this appliance alone.
    Embedded,
    /// A Redis server shared by several appliances.
    Redis(super::RedisStore),
}

#[derive(Debug, Clone)]
pub struct RedirectionPlan {
    pub appliance: String,
    pub store: RedirectStore,
    pub spec: DbSpec,
    /// The uplink of each service address (indexed like `spec.services`).
    pub service_uplinks: Vec<UplinkId>,
    pub publish_interval: Duration,
    pub report_interval: Duration,
    pub load_ttl: Duration,
}

impl RedirectionPlan {
    /// Classify's view: service endpoints and server endpoints.
    pub fn service_map(&self) -> ServiceMap {
        let mut m = ServiceMap::default();
        for (i, s) in self.spec.services.iter().enumerate() {
            m.add_service(i as u16, s.addr, s.tcp, s.udp, self.service_uplinks[i]);
        }
        for (i, s) in self.spec.servers.iter().enumerate() {
            m.add_server(i as u16, s.addr);
        }
        m
    }

    /// Redirection targets counted in the stats: services, then peers.
    pub fn target_names(&self) -> Vec<String> {
        let s = self.spec.services.iter().map(|s| s.name.clone());
        s.chain(self.spec.peers.iter().map(|p| p.name.clone()))
            .collect()
    }
}

fn at(f: &str) -> String {
    format!("redirection.{f}")
}

/// Validates `[redirection]`; `None` when it configures no service.
pub fn plan_redirection(
    r: &RedirectionSection,
    topo: &Topology,
) -> Result<Option<RedirectionPlan>, ConfigError> {
    if r.services.is_empty() {
        if !r.servers.is_empty() || !r.peers.is_empty() {
            return err(
                "redirection.services",
                "servers or peers are configured but no service address uses them",
            );
        }
        return Ok(None);
    }
    let store = plan_store(r)?;
    check_settings(r)?;
    let servers = plan_servers(r, topo)?;
    let peers = plan_peers(r, &store)?;
    let mut services = Vec::new();
    let mut uplinks = Vec::new();
    for (i, s) in r.services.iter().enumerate() {
        let (service, uplink) = plan_service(r, i, s, topo)?;
        services.push(service);
        uplinks.push(uplink);
    }
    if let Some((i, _)) = services
        .iter()
        .enumerate()
        .find(|(i, s)| services[..*i].iter().any(|o| o.addr == s.addr))
    {
        return err(
            at(&format!("services[{i}].address")),
            "two services on one address and port",
        );
    }
    let spec = DbSpec {
        services,
        servers,
        peers,
        cfg: DbConfig {
            failure_threshold: r.failure_threshold,
            failure_window: Nanos::from_millis(r.failure_window_ms),
            avoid_for: Nanos::from_millis(r.avoid_ms),
            tcp_session_weight: r.tcp_session_weight,
            udp_session_weight: r.udp_session_weight,
        },
    };
    spec.check().map_err(|m| ConfigError {
        path: "redirection.services".into(),
        msg: m,
    })?;
    Ok(Some(RedirectionPlan {
        appliance: r.appliance.clone(),
        store,
        spec,
        service_uplinks: uplinks,
        publish_interval: Duration::from_millis(r.publish_interval_ms),
        report_interval: Duration::from_millis(r.report_interval_ms),
        load_ttl: Duration::from_millis(r.load_ttl_ms),
    }))
}

/// The store; a Redis one needs a valid address or URL ([`super::redis_store`]).
fn plan_store(r: &RedirectionSection) -> Result<RedirectStore, ConfigError> {
    match r.store {
        RedirectStoreKind::Embedded => Ok(RedirectStore::Embedded),
        RedirectStoreKind::Redis => super::redis_store::plan_redis(r).map(RedirectStore::Redis),
    }
}

/// The appliance's name, intervals, thresholds and weights.
fn check_settings(r: &RedirectionSection) -> Result<(), ConfigError> {
    if r.appliance.is_empty() || r.appliance.contains([':', '/', ' ']) {
        return err(
            at("appliance"),
            format!(
                "`{}`: a non-empty name without ':', '/' or spaces",
                r.appliance
            ),
        );
    }
    for (name, v, lo, hi) in [
        ("publish_interval_ms", r.publish_interval_ms, 5, 60_000),
        ("report_interval_ms", r.report_interval_ms, 10, 3_600_000),
        ("load_ttl_ms", r.load_ttl_ms, 100, 86_400_000),
        (
            "failure_threshold",
            u64::from(r.failure_threshold),
            1,
            1_000,
        ),
        ("failure_window_ms", r.failure_window_ms, 1, 86_400_000),
        ("avoid_ms", r.avoid_ms, 1, 86_400_000),
        ("tcp_session_weight", r.tcp_session_weight, 1, 1_000),
        ("udp_session_weight", r.udp_session_weight, 1, 1_000),
    ] {
        if !(lo..=hi).contains(&v) {
            return err(at(name), format!("{v}; allowed: {lo}..={hi}"));
        }
    }
    if r.load_ttl_ms <= r.report_interval_ms {
        return err(
            at("load_ttl_ms"),
            format!(
                "{} must exceed report_interval_ms ({}), or loads expire between reports",
                r.load_ttl_ms, r.report_interval_ms
            ),
        );
    }
    Ok(())
}

/// Servers: unique names, addresses inside the LAN; an unknown MAC is
/// broadcast until ARP answers.
fn plan_servers(r: &RedirectionSection, topo: &Topology) -> Result<Vec<ServerDef>, ConfigError> {
    if r.servers.len() > MAX_SERVERS {
        return err(
            at("servers"),
            format!("{} servers; at most {MAX_SERVERS}", r.servers.len()),
        );
    }
    let mut servers = Vec::new();
    for (i, s) in r.servers.iter().enumerate() {
        let p = |f: &str| at(&format!("servers[{i}].{f}"));
        if s.name.is_empty() || r.servers[..i].iter().any(|o| o.name == s.name) {
            return err(
                p("name"),
                format!("`{}`: empty or duplicate server name", s.name),
            );
        }
        if !topo.is_lan_source(s.address.ip()) {
            return err(
                p("address"),
                format!("{} is not inside the LAN prefixes", s.address.ip()),
            );
        }
        servers.push(ServerDef {
            name: s.name.clone(),
            addr: s.address,
            mac: s.mac.unwrap_or([0xff; 6]),
        });
    }
    Ok(servers)
}

/// Peers: `APPLIANCE/SERVICE`, unique; their loads come from a shared store.
fn plan_peers(r: &RedirectionSection, store: &RedirectStore) -> Result<Vec<PeerDef>, ConfigError> {
    let mut peers = Vec::new();
    for (i, pc) in r.peers.iter().enumerate() {
        let p = |f: &str| at(&format!("peers[{i}].{f}"));
        let ok = pc.name.split('/').count() == 2 && pc.name.split('/').all(|x| !x.is_empty());
        if !ok || r.peers[..i].iter().any(|o| o.name == pc.name) {
            return err(
                p("name"),
                format!("`{}`: APPLIANCE/SERVICE, unique", pc.name),
            );
        }
        if *store == RedirectStore::Embedded {
            return err(
                p("name"),
                "a peer's load comes from the shared store; set redirection.store = \"redis\"",
            );
        }
        peers.push(PeerDef {
            name: pc.name.clone(),
            addr: pc.address,
        });
    }
    Ok(peers)
}

/// Service `i`: its address, uplink, protocols, persistence and members.
fn plan_service(
    r: &RedirectionSection,
    i: usize,
    s: &ServiceConfig,
    topo: &Topology,
) -> Result<(ServiceDef, UplinkId), ConfigError> {
    let p = |f: &str| at(&format!("services[{i}].{f}"));
    if s.name.is_empty()
        || s.name.contains(['/', ':', ' '])
        || r.services[..i].iter().any(|o| o.name == s.name)
    {
        return err(
            p("name"),
            format!("`{}`: empty, duplicate, or with '/', ':' or spaces", s.name),
        );
    }
    let addr = s.address;
    let Some(u) = topo.uplinks.iter().position(|u| u.name == s.uplink) else {
        return err(
            p("uplink"),
            format!(
                "no uplink named `{}`; uplinks are: {}",
                s.uplink,
                topo.uplinks
                    .iter()
                    .map(|u| u.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    };
    check_service_address(addr, u, &p("address"), topo)?;
    let tcp = s.protocols.contains(&ServiceProtocol::Tcp);
    let udp = s.protocols.contains(&ServiceProtocol::Udp);
    if !(tcp || udp) {
        return err(p("protocols"), "at least one of tcp, udp");
    }
    let persistence = match s.persistence {
        PersistenceKind::Once => Persistence::Once,
        PersistenceKind::Permanent => Persistence::Permanent,
        PersistenceKind::None => Persistence::None,
        PersistenceKind::Leased if s.lease_s > 0 => Persistence::Leased(s.lease_s),
        PersistenceKind::Leased => return err(p("lease_s"), "a lease is at least 1 second"),
    };
    if s.members.is_empty() {
        return err(
            p("members"),
            "at least one member (server, service or peer)",
        );
    }
    let members = s
        .members
        .iter()
        .enumerate()
        .map(|(j, m)| plan_member(r, &p(&format!("members[{j}]")), m))
        .collect::<Result<Vec<_>, _>>()?;
    let service = ServiceDef {
        name: s.name.clone(),
        addr,
        tcp,
        udp,
        persistence,
        members,
    };
    Ok((service, u as UplinkId))
}

/// A service address is outside the LAN prefixes, with a port; on a NAT
/// address it must not collide with NAT ports nor sit on another uplink.
fn check_service_address(
    addr: SocketAddr,
    uplink: usize,
    path: &str,
    topo: &Topology,
) -> Result<(), ConfigError> {
    if topo.is_lan_source(addr.ip()) || addr.port() == 0 {
        return err(
            path,
            format!("{addr}: a service address is outside the LAN prefixes, with a port"),
        );
    }
    if let Some(&owner) = topo.nat_addr_uplink.get(&addr.ip()) {
        let r = topo.nat_ports;
        if (r.first..=r.last).contains(&addr.port()) || usize::from(owner) != uplink {
            return err(
                path,
                format!(
                    "{addr} is a NAT address: its port must be outside nat.port_range [{}, {}] and its uplink the address's own",
                    r.first, r.last
                ),
            );
        }
    }
    Ok(())
}

/// A member at `path`: exactly one of a server, a service or a peer, by name.
fn plan_member(
    r: &RedirectionSection,
    path: &str,
    m: &MemberConfig,
) -> Result<MemberDef, ConfigError> {
    let find = |list: Vec<&str>, name: &str, kind: &str| -> Result<u16, ConfigError> {
        list.iter()
            .position(|n| *n == name)
            .map(|x| x as u16)
            .ok_or_else(|| ConfigError {
                path: format!("{path}.{kind}"),
                msg: format!("no {kind} named `{name}`; {kind}s are: {}", list.join(", ")),
            })
    };
    let member = match (&m.server, &m.service, &m.peer) {
        (Some(n), None, None) => Member::Server(find(
            r.servers.iter().map(|x| x.name.as_str()).collect(),
            n,
            "server",
        )?),
        (None, Some(n), None) => Member::Service(find(
            r.services.iter().map(|x| x.name.as_str()).collect(),
            n,
            "service",
        )?),
        (None, None, Some(n)) => Member::Peer(find(
            r.peers.iter().map(|x| x.name.as_str()).collect(),
            n,
            "peer",
        )?),
        _ => return err(path, "exactly one of server, service, peer"),
    };
    if m.weight == 0 {
        return err(format!("{path}.weight"), "must be at least 1");
    }
    Ok(MemberDef {
        member,
        weight: m.weight,
        clients: m.clients.clone(),
    })
}
