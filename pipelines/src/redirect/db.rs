//! The redirection database's logic (seed 000 [62]-[66], [75]): for a first
//! request (client address, service, mark, failed target) it says *serve
//! here on server S* or *redirect to address A with these flags*.
//!
//! Two halves, so the data plane never waits:
//! - [`RedirectDb`], owned by the management core: the configuration, the
//!   loads (TCP + artificial UDP sessions per local server, peers' loads from
//!   the shared store), failure reports and the targets they make avoided
//!   for a while. It publishes a [`Snapshot`].
//! - [`Snapshot::decide`], run by a translate lcore per first request on an
//!   immutable snapshot, with a [`Placed`] tally of what this lcore placed
//!   since the snapshot (so a burst of requests spreads instead of all
//!   landing on the member that was least loaded at publication).
//!
//! Scores: a member's load divided by its weight, lowest first; equal
//! scores rotate. A local service's load is the sum of its members'.

use std::net::{IpAddr, SocketAddr};

use crate::packet::time::Nanos;
use crate::redirect::header::Persistence;
use crate::topology::IpPrefix;

pub type ServiceId = u16;

/// Local servers an appliance can have, counting those a reload appends:
/// the NAT shards' per-server load gauges are made for this many at start.
pub const MAX_SERVERS: usize = 1024;
pub type ServerId = u16;
pub type PeerId = u16;

/// What a member of a service is ([66]: top master → group master → server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Member {
    /// A server behind this appliance: a request for it is served here, by
    /// destination NAT.
    Server(ServerId),
    /// Another service address of this appliance (a group master, or one
    /// server's own address): a redirect there.
    Service(ServiceId),
    /// A service of another appliance, its load read from the shared store.
    Peer(PeerId),
}

/// The first packet's capability mark (`docs/redirection.md` section 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mark {
    /// No mark: a client that cannot be redirected. Always served.
    #[default]
    Plain,
    /// A redirecting client's first request.
    Capable,
    /// A request that follows a redirection.
    Redirected,
    /// A resend after the target of a redirection failed.
    Failed,
}

impl Mark {
    /// DSCP codepoints from RFC 2474's pool for experimental and local use.
    pub const DSCP_CAPABLE: u8 = 0b001011;
    pub const DSCP_REDIRECTED: u8 = 0b011011;
    pub const DSCP_FAILED: u8 = 0b101011;

    pub fn from_dscp(dscp: u8) -> Mark {
        match dscp {
            Self::DSCP_CAPABLE => Mark::Capable,
            Self::DSCP_REDIRECTED => Mark::Redirected,
            Self::DSCP_FAILED => Mark::Failed,
            _ => Mark::Plain,
        }
    }

    pub fn dscp(self) -> u8 {
        match self {
            Mark::Plain => 0,
            Mark::Capable => Self::DSCP_CAPABLE,
            Mark::Redirected => Self::DSCP_REDIRECTED,
            Mark::Failed => Self::DSCP_FAILED,
        }
    }
}

#[derive(Clone, Debug)]
pub struct MemberDef {
    pub member: Member,
    /// Relative capacity (at least 1).
    pub weight: u32,
    /// Clients this member is for (empty: all), e.g. business users ([66]).
    pub clients: Vec<IpPrefix>,
}

#[derive(Clone, Debug)]
pub struct ServiceDef {
    pub name: String,
    /// The service address (on an uplink) and port.
    pub addr: SocketAddr,
    /// Serves TCP, UDP.
    pub tcp: bool,
    pub udp: bool,
    /// What redirections from this service tell the client ([59]).
    pub persistence: Persistence,
    pub members: Vec<MemberDef>,
}

#[derive(Clone, Debug)]
pub struct ServerDef {
    pub name: String,
    /// The server's LAN address and port.
    pub addr: SocketAddr,
    /// Its MAC (destination of the frames the appliance sends it).
    pub mac: [u8; 6],
}

#[derive(Clone, Debug)]
pub struct PeerDef {
    /// `appliance/service`: the key of its load in the shared store.
    pub name: String,
    /// Where a redirection sends the client.
    pub addr: SocketAddr,
}

#[derive(Clone, Debug)]
pub struct DbConfig {
    /// Failure reports about one target within `failure_window` that make
    /// it avoided ([62]).
    pub failure_threshold: u32,
    pub failure_window: Nanos,
    /// How long an avoided target is left out.
    pub avoid_for: Nanos,
    /// Weights of one TCP / one artificial UDP session in a load ([75]).
    pub tcp_session_weight: u64,
    pub udp_session_weight: u64,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            failure_threshold: 3,
            failure_window: Nanos::from_secs(30),
            avoid_for: Nanos::from_secs(30),
            tcp_session_weight: 1,
            udp_session_weight: 1,
        }
    }
}

/// Sessions of a server (or of everything behind a service).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Load {
    pub tcp: u64,
    pub udp: u64,
}

impl Load {
    fn add(self, o: Load) -> Load {
        Load {
            tcp: self.tcp.saturating_add(o.tcp),
            udp: self.udp.saturating_add(o.udp),
        }
    }

    /// Weighted sessions (saturating: a peer's load comes from the shared
    /// store, which may hold anything).
    pub fn weighted(self, c: &DbConfig) -> u64 {
        self.tcp
            .saturating_mul(c.tcp_session_weight)
            .saturating_add(self.udp.saturating_mul(c.udp_session_weight))
    }
}

/// The whole configuration of the database.
#[derive(Clone, Debug, Default)]
pub struct DbSpec {
    pub services: Vec<ServiceDef>,
    pub servers: Vec<ServerDef>,
    pub peers: Vec<PeerDef>,
    pub cfg: DbConfig,
}

impl DbSpec {
    /// The address a redirection to `m` names (`None` for a local server,
    /// which is served, not redirected to).
    pub fn target_addr(&self, m: Member) -> Option<SocketAddr> {
        match m {
            Member::Server(_) => None,
            Member::Service(s) => self.services.get(usize::from(s)).map(|s| s.addr),
            Member::Peer(p) => self.peers.get(usize::from(p)).map(|p| p.addr),
        }
    }

    /// The member a redirection target names, for a failure report.
    pub fn member_at(&self, addr: SocketAddr) -> Option<Member> {
        if let Some(i) = self.services.iter().position(|s| s.addr == addr) {
            return Some(Member::Service(i as ServiceId));
        }
        self.peers
            .iter()
            .position(|p| p.addr == addr)
            .map(|i| Member::Peer(i as PeerId))
    }

    /// Checks references and that local services form a tree (no service
    /// reaches itself), so a redirection chain inside one appliance ends.
    pub fn check(&self) -> Result<(), String> {
        for (i, s) in self.services.iter().enumerate() {
            for (j, m) in s.members.iter().enumerate() {
                let ok = match m.member {
                    Member::Server(x) => usize::from(x) < self.servers.len(),
                    Member::Service(x) => usize::from(x) < self.services.len(),
                    Member::Peer(x) => usize::from(x) < self.peers.len(),
                };
                if !ok {
                    return Err(format!("services[{i}].members[{j}]: no such member"));
                }
            }
            let mut seen = vec![false; self.services.len()];
            if self.reaches(i as ServiceId, i as ServiceId, &mut seen) {
                return Err(format!(
                    "services[{i}] ({}): its members lead back to it; services must form a tree",
                    s.name
                ));
            }
        }
        Ok(())
    }

    fn reaches(&self, from: ServiceId, target: ServiceId, seen: &mut [bool]) -> bool {
        for m in &self.services[usize::from(from)].members {
            if let Member::Service(x) = m.member {
                if x == target {
                    return true;
                }
                if !std::mem::replace(&mut seen[usize::from(x)], true)
                    && self.reaches(x, target, seen)
                {
                    return true;
                }
            }
        }
        false
    }
}

#[derive(Clone, Debug, Default)]
struct FailureLog {
    /// Times of recent reports (at most `failure_threshold`).
    recent: Vec<Nanos>,
    avoid_until: Option<Nanos>,
    total: u64,
}

/// The management core's database.
pub struct RedirectDb {
    spec: DbSpec,
    server_loads: Vec<Load>,
    peer_loads: Vec<Option<Load>>,
    failures: hashbrown::HashMap<Member, FailureLog>,
    version: u64,
}

impl RedirectDb {
    pub fn new(spec: DbSpec) -> RedirectDb {
        RedirectDb {
            server_loads: vec![Load::default(); spec.servers.len()],
            peer_loads: vec![None; spec.peers.len()],
            failures: hashbrown::HashMap::new(),
            version: 0,
            spec,
        }
    }

    pub fn spec(&self) -> &DbSpec {
        &self.spec
    }

    /// A reloaded configuration: members, weights, settings, servers
    /// appended. Members keep their numbers (a reload may only append
    /// servers and keeps the services and peers), so the loads and failure
    /// reports known so far stay; the next snapshot is a new version.
    pub fn respec(&mut self, spec: DbSpec) {
        self.server_loads
            .resize(spec.servers.len(), Load::default());
        self.peer_loads.resize(spec.peers.len(), None);
        self.failures.retain(|m, _| match *m {
            Member::Server(x) => usize::from(x) < spec.servers.len(),
            Member::Service(x) => usize::from(x) < spec.services.len(),
            Member::Peer(x) => usize::from(x) < spec.peers.len(),
        });
        self.spec = spec;
        self.version += 1;
    }

    /// Loads of the local servers, as counted by the NAT shards.
    pub fn set_server_loads(&mut self, loads: &[Load]) {
        for (d, s) in self.server_loads.iter_mut().zip(loads) {
            *d = *s;
        }
    }

    /// A peer's load from the shared store (`None`: unknown or expired; the
    /// peer is then not a candidate).
    pub fn set_peer_load(&mut self, peer: PeerId, load: Option<Load>) {
        if let Some(l) = self.peer_loads.get_mut(usize::from(peer)) {
            *l = load.map(super::peer_load::clamp);
        }
    }

    pub fn server_load(&self, s: ServerId) -> Load {
        self.server_loads
            .get(usize::from(s))
            .copied()
            .unwrap_or_default()
    }

    /// The load behind a member: a server's sessions, the sum over a local
    /// service's members, a peer's reported load.
    pub fn member_load(&self, m: Member) -> Option<Load> {
        self.member_load_depth(m, 0)
    }

    fn member_load_depth(&self, m: Member, depth: usize) -> Option<Load> {
        match m {
            Member::Server(s) => Some(self.server_load(s)),
            Member::Peer(p) => self.peer_loads.get(usize::from(p)).copied().flatten(),
            Member::Service(s) => {
                // `check` rules out cycles; the depth bound is a backstop.
                if depth > self.spec.services.len() {
                    return Some(Load::default());
                }
                let svc = self.spec.services.get(usize::from(s))?;
                // Only what runs here: a peer's load is its own appliance's
                // (counting it would feed loads back and forth between two
                // appliances through the shared store).
                let local = svc
                    .members
                    .iter()
                    .filter(|x| !matches!(x.member, Member::Peer(_)));
                Some(local.fold(Load::default(), |acc, x| {
                    acc.add(
                        self.member_load_depth(x.member, depth + 1)
                            .unwrap_or_default(),
                    )
                }))
            }
        }
    }

    /// A failure report about target `m` ([62]). Returns true when it made
    /// the target avoided. A service that is one server's own address
    /// passes the report on to that server.
    pub fn report_failure(&mut self, m: Member, now: Nanos) -> bool {
        let mut became = self.record(m, now);
        if let Member::Service(s) = m {
            if let Some(svc) = self.spec.services.get(usize::from(s)) {
                if let [MemberDef {
                    member: Member::Server(x),
                    ..
                }] = svc.members.as_slice()
                {
                    became |= self.record(Member::Server(*x), now);
                }
            }
        }
        became
    }

    fn record(&mut self, m: Member, now: Nanos) -> bool {
        let cfg = &self.spec.cfg;
        let log = self.failures.entry(m).or_default();
        log.total += 1;
        log.recent.retain(|&t| now.since(t) <= cfg.failure_window);
        log.recent.push(now);
        let avoided_now = log.avoid_until.is_some_and(|u| now < u);
        if !avoided_now && log.recent.len() >= cfg.failure_threshold.max(1) as usize {
            log.avoid_until = Some(now.saturating_add(cfg.avoid_for));
            log.recent.clear();
            self.version += 1;
            return true;
        }
        false
    }

    pub fn avoided(&self, m: Member, now: Nanos) -> bool {
        self.failures
            .get(&m)
            .and_then(|l| l.avoid_until)
            .is_some_and(|u| now < u)
    }

    /// Failure reports received about `m`.
    pub fn failures(&self, m: Member) -> u64 {
        self.failures.get(&m).map_or(0, |l| l.total)
    }

    /// The loads of this appliance's services, for the shared store.
    pub fn service_loads(&self) -> Vec<Load> {
        (0..self.spec.services.len())
            .map(|s| {
                self.member_load(Member::Service(s as ServiceId))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The immutable view the data plane decides from.
    pub fn snapshot(&self, now: Nanos) -> Snapshot {
        let c = &self.spec.cfg;
        let services = self
            .spec
            .services
            .iter()
            .map(|s| SnapService {
                persistence: s.persistence,
                members: s
                    .members
                    .iter()
                    .map(|m| {
                        let load = self.member_load(m.member);
                        SnapMember {
                            member: m.member,
                            target: self.spec.target_addr(m.member),
                            load: load.map(|l| l.weighted(c)),
                            weight: m.weight.max(1),
                            avoided: self.avoided(m.member, now)
                                || matches!(m.member, Member::Server(x)
                                    if self.avoided(Member::Server(x), now)),
                            clients: m.clients.clone(),
                        }
                    })
                    .collect(),
            })
            .collect();
        Snapshot {
            services,
            servers: self
                .spec
                .servers
                .iter()
                .map(|s| SnapServer {
                    addr: s.addr,
                    mac: s.mac,
                })
                .collect(),
            spec_targets: self
                .spec
                .services
                .iter()
                .map(|s| s.addr)
                .chain(self.spec.peers.iter().map(|p| p.addr))
                .collect(),
            n_services: self.spec.services.len(),
            version: self.version,
            failure_window: c.failure_window,
        }
    }
}

#[derive(Clone, Debug)]
pub struct SnapMember {
    pub member: Member,
    /// Where a redirection to it points (`None` for a local server).
    pub target: Option<SocketAddr>,
    /// Weighted sessions behind it; `None` for a peer with no known load.
    pub load: Option<u64>,
    pub weight: u32,
    pub avoided: bool,
    pub clients: Vec<IpPrefix>,
}

#[derive(Clone, Debug)]
pub struct SnapService {
    pub persistence: Persistence,
    pub members: Vec<SnapMember>,
}

#[derive(Clone, Copy, Debug)]
pub struct SnapServer {
    pub addr: SocketAddr,
    pub mac: [u8; 6],
}

/// An immutable decision view, published by the management core.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub services: Vec<SnapService>,
    pub servers: Vec<SnapServer>,
    /// Service addresses, then peer addresses (for failure attribution).
    spec_targets: Vec<SocketAddr>,
    n_services: usize,
    /// Changes when the set of avoided targets changes.
    pub version: u64,
    /// A failure report counts only from a client redirected to the target
    /// this recently (the configured `failure_window`).
    pub failure_window: Nanos,
}

/// A first request as the data plane sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub service: ServiceId,
    pub client: IpAddr,
    pub mark: Mark,
    /// The target a failure resend reports (left out of this decision).
    pub failed: Option<Member>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Destination-NAT the request to this local server.
    Serve(ServerId),
    /// Answer with a redirection to `target` ([63]).
    Redirect {
        member: Member,
        target: SocketAddr,
        persistence: Persistence,
    },
    /// No server can take it (a plain request to a service with no local
    /// server, or an empty service).
    NoServer,
}

/// What one lcore placed since its snapshot: added to the published loads
/// so consecutive decisions spread.
#[derive(Clone, Debug, Default)]
pub struct Placed {
    servers: Vec<u32>,
    services: Vec<u32>,
    peers: Vec<u32>,
    rotate: u32,
}

impl Placed {
    /// Clears the tally for a new snapshot (keeps the allocations).
    pub fn reset(&mut self, snap: &Snapshot) {
        let fit = |v: &mut Vec<u32>, n: usize| {
            v.clear();
            v.resize(n, 0);
        };
        fit(&mut self.servers, snap.servers.len());
        fit(&mut self.services, snap.n_services);
        fit(&mut self.peers, snap.spec_targets.len() - snap.n_services);
    }

    fn get(&self, m: Member) -> u64 {
        let v = match m {
            Member::Server(x) => self.servers.get(usize::from(x)),
            Member::Service(x) => self.services.get(usize::from(x)),
            Member::Peer(x) => self.peers.get(usize::from(x)),
        };
        u64::from(v.copied().unwrap_or(0))
    }

    fn bump(&mut self, m: Member) {
        let v = match m {
            Member::Server(x) => self.servers.get_mut(usize::from(x)),
            Member::Service(x) => self.services.get_mut(usize::from(x)),
            Member::Peer(x) => self.peers.get_mut(usize::from(x)),
        };
        if let Some(v) = v {
            *v = v.saturating_add(1);
        }
    }
}

/// Nesting of local services a plain request is followed through.
const MAX_DEPTH: usize = 8;

impl Snapshot {
    /// The member a redirection target address names.
    pub fn member_at(&self, addr: SocketAddr) -> Option<Member> {
        let i = self.spec_targets.iter().position(|&a| a == addr)?;
        Some(if i < self.n_services {
            Member::Service(i as ServiceId)
        } else {
            Member::Peer((i - self.n_services) as PeerId)
        })
    }

    /// Decides a first request; allocation-free.
    pub fn decide(&self, req: &Request, placed: &mut Placed) -> Decision {
        let Some(svc) = self.services.get(usize::from(req.service)) else {
            return Decision::NoServer;
        };
        placed.rotate = placed.rotate.wrapping_add(1);
        if req.mark != Mark::Plain {
            // Only a first request may leave for another appliance (the loop
            // guard); followed or resent requests stay here.
            let may_leave = req.mark == Mark::Capable;
            let pick = self.best(svc, req, placed, |m| {
                may_leave || !matches!(m.member, Member::Peer(_))
            });
            if let Some(m) = pick {
                placed.bump(m.member);
                return match (m.member, m.target) {
                    (Member::Server(s), _) => Decision::Serve(s),
                    (member, Some(target)) => Decision::Redirect {
                        member,
                        target,
                        persistence: svc.persistence,
                    },
                    (_, None) => Decision::NoServer,
                };
            }
        }
        match self.best_server(req.service, req, placed, 0) {
            Some(s) => {
                placed.bump(Member::Server(s));
                Decision::Serve(s)
            }
            None => Decision::NoServer,
        }
    }

    /// The lowest-scored eligible member of `svc` passing `keep`: avoided
    /// members only when every eligible one is avoided; equal scores rotate.
    fn best<'a>(
        &self,
        svc: &'a SnapService,
        req: &Request,
        placed: &Placed,
        keep: impl Fn(&SnapMember) -> bool,
    ) -> Option<&'a SnapMember> {
        let eligible = |m: &&SnapMember| {
            keep(m)
                && m.load.is_some()
                && Some(m.member) != req.failed
                && (m.clients.is_empty() || m.clients.iter().any(|p| p.contains(req.client)))
        };
        let any_fresh = svc.members.iter().filter(eligible).any(|m| !m.avoided);
        let score = |m: &SnapMember| {
            m.load
                .unwrap_or(0)
                .saturating_add(placed.get(m.member))
                .saturating_mul(1_000_000)
                / u64::from(m.weight)
        };
        let usable = || {
            svc.members
                .iter()
                .filter(eligible)
                .filter(move |m| !any_fresh || !m.avoided)
        };
        let min = usable().map(score).min()?;
        let ties = usable().filter(|m| score(m) == min).count();
        let k = placed.rotate as usize % ties;
        usable().filter(|m| score(m) == min).nth(k)
    }

    /// The best local server reachable through service `s`'s members (a
    /// plain request is always served, never redirected).
    /// Every service it goes through is tallied in `placed`, as the server
    /// is by the caller, so that consecutive plain requests within one
    /// snapshot spread over the member services too.
    fn best_server(
        &self,
        s: ServiceId,
        req: &Request,
        placed: &mut Placed,
        depth: usize,
    ) -> Option<ServerId> {
        let svc = self.services.get(usize::from(s))?;
        if depth > MAX_DEPTH {
            return None;
        }
        let m = self.best(svc, req, placed, |m| match m.member {
            Member::Server(_) => true,
            Member::Service(x) => self.reaches_server(x, depth + 1),
            Member::Peer(_) => false,
        })?;
        match m.member {
            Member::Server(x) => Some(x),
            Member::Service(x) => {
                let found = self.best_server(x, req, placed, depth + 1);
                if found.is_some() {
                    placed.bump(Member::Service(x));
                }
                found
            }
            Member::Peer(_) => None,
        }
    }

    fn reaches_server(&self, s: ServiceId, depth: usize) -> bool {
        depth <= MAX_DEPTH
            && self.services.get(usize::from(s)).is_some_and(|svc| {
                svc.members.iter().any(|m| match m.member {
                    Member::Server(_) => true,
                    Member::Service(x) => self.reaches_server(x, depth + 1),
                    Member::Peer(_) => false,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn member(m: Member) -> MemberDef {
        MemberDef {
            member: m,
            weight: 1,
            clients: vec![],
        }
    }

    /// A master service .10 whose members are three one-server services
    /// (.11-.13), plus a peer appliance.
    fn cluster() -> RedirectDb {
        let mut spec = DbSpec::default();
        for i in 0..3u16 {
            spec.servers.push(ServerDef {
                name: format!("s{}", i + 1),
                addr: sa(&format!("10.0.2.{}:7000", i + 1)),
                mac: [2, 0, 0, 0, 2, i as u8],
            });
        }
        spec.peers.push(PeerDef {
            name: "b/web".into(),
            addr: sa("192.0.2.10:7000"),
        });
        spec.services.push(ServiceDef {
            name: "web".into(),
            addr: sa("198.51.100.10:7000"),
            tcp: true,
            udp: true,
            persistence: Persistence::Once,
            members: vec![
                member(Member::Service(1)),
                member(Member::Service(2)),
                member(Member::Service(3)),
                member(Member::Peer(0)),
            ],
        });
        for i in 0..3u16 {
            spec.services.push(ServiceDef {
                name: format!("s{}", i + 1),
                addr: sa(&format!("198.51.100.{}:7000", 11 + i)),
                tcp: true,
                udp: true,
                persistence: Persistence::None,
                members: vec![member(Member::Server(i))],
            });
        }
        spec.check().unwrap();
        RedirectDb::new(spec)
    }

    fn req(mark: Mark) -> Request {
        Request {
            service: 0,
            client: "203.0.113.7".parse().unwrap(),
            mark,
            failed: None,
        }
    }

    fn load(tcp: u64, udp: u64) -> Load {
        Load { tcp, udp }
    }

    #[test]
    fn capable_requests_go_to_the_least_loaded_member_and_spread() {
        let mut db = cluster();
        db.set_server_loads(&[load(5, 1), load(1, 1), load(3, 0)]);
        let snap = db.snapshot(Nanos::ZERO);
        let mut placed = Placed::default();
        placed.reset(&snap);
        let mut got = vec![];
        for _ in 0..4 {
            match snap.decide(&req(Mark::Capable), &mut placed) {
                Decision::Redirect { target, .. } => got.push(target.ip().to_string()),
                d => panic!("{d:?}"),
            }
        }
        // s2 (2 sessions) then s2/s3 as the tally catches up.
        assert_eq!(got[0], "198.51.100.12");
        assert!(got.contains(&"198.51.100.13".to_string()), "{got:?}");
        assert!(!got.contains(&"198.51.100.11".to_string()), "{got:?}");
        // The peer has no load in the store: not a candidate.
        assert!(!got.contains(&"192.0.2.10".to_string()));
    }

    #[test]
    fn plain_requests_are_served_by_the_least_loaded_local_server() {
        let mut db = cluster();
        db.set_server_loads(&[load(2, 0), load(0, 3), load(1, 0)]);
        db.set_peer_load(0, Some(load(0, 0)));
        let snap = db.snapshot(Nanos::ZERO);
        let mut placed = Placed::default();
        placed.reset(&snap);
        assert_eq!(
            snap.decide(&req(Mark::Plain), &mut placed),
            Decision::Serve(2)
        );
        // A request to a one-server service is served there.
        let direct = Request {
            service: 2,
            ..req(Mark::Capable)
        };
        assert_eq!(snap.decide(&direct, &mut placed), Decision::Serve(1));
    }

    #[test]
    fn plain_requests_in_one_snapshot_spread_over_the_member_services() {
        let mut db = cluster();
        db.set_server_loads(&[load(0, 0), load(5, 0), load(5, 0)]);
        let snap = db.snapshot(Nanos::ZERO);
        let mut placed = Placed::default();
        placed.reset(&snap);
        let mut total = [0, 5, 5];
        for _ in 0..15 {
            match snap.decide(&req(Mark::Plain), &mut placed) {
                Decision::Serve(s) => total[usize::from(s)] += 1,
                d => panic!("{d:?}"),
            }
        }
        // Levelled: the idle server first, then all three in turn.
        let (lo, hi) = (total.iter().min(), total.iter().max());
        assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{total:?}");
    }

    #[test]
    fn a_less_loaded_peer_wins_first_requests_only() {
        let mut db = cluster();
        db.set_server_loads(&[load(4, 0), load(4, 0), load(4, 0)]);
        db.set_peer_load(0, Some(load(1, 1)));
        let snap = db.snapshot(Nanos::ZERO);
        let mut placed = Placed::default();
        placed.reset(&snap);
        match snap.decide(&req(Mark::Capable), &mut placed) {
            Decision::Redirect { member, .. } => assert_eq!(member, Member::Peer(0)),
            d => panic!("{d:?}"),
        }
        // A redirected request is not sent to another appliance again.
        match snap.decide(&req(Mark::Redirected), &mut placed) {
            Decision::Redirect { member, .. } => assert!(matches!(member, Member::Service(_))),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn failures_make_a_target_avoided_for_a_while() {
        let mut db = cluster();
        db.set_server_loads(&[load(5, 0), load(0, 0), load(5, 0)]);
        let t0 = Nanos::from_secs(100);
        let s2 = Member::Service(2);
        assert!(!db.report_failure(s2, t0));
        // The failed target itself is left out of the resend's decision.
        let snap = db.snapshot(t0);
        let mut placed = Placed::default();
        placed.reset(&snap);
        let resend = Request {
            failed: Some(s2),
            ..req(Mark::Failed)
        };
        assert!(matches!(
            snap.decide(&resend, &mut placed),
            Decision::Redirect {
                member: Member::Service(1 | 3),
                ..
            }
        ));
        assert!(!db.report_failure(s2, t0.saturating_add(Nanos::from_secs(1))));
        assert!(db.report_failure(s2, t0.saturating_add(Nanos::from_secs(2))));
        assert!(db.avoided(s2, t0.saturating_add(Nanos::from_secs(2))));
        assert!(db.avoided(Member::Server(1), t0.saturating_add(Nanos::from_secs(2))));
        let during = t0.saturating_add(Nanos::from_secs(10));
        let snap = db.snapshot(during);
        placed.reset(&snap);
        for _ in 0..5 {
            let d = snap.decide(&req(Mark::Capable), &mut placed);
            assert!(
                !matches!(
                    d,
                    Decision::Redirect {
                        member: Member::Service(2),
                        ..
                    }
                ),
                "{d:?}"
            );
            assert_ne!(
                snap.decide(&req(Mark::Plain), &mut placed),
                Decision::Serve(1)
            );
        }
        // After avoid_for it is a candidate again (and the least loaded).
        let after = t0.saturating_add(Nanos::from_secs(33));
        let snap = db.snapshot(after);
        placed.reset(&snap);
        assert!(matches!(
            snap.decide(&req(Mark::Capable), &mut placed),
            Decision::Redirect {
                member: Member::Service(2),
                ..
            }
        ));
        // Reports spread wider than the window do not add up.
        let mut db = cluster();
        for k in 0..5 {
            assert!(!db.report_failure(s2, Nanos::from_secs(100 + 40 * k)));
        }
    }

    #[test]
    fn weights_and_client_prefixes() {
        let mut spec = cluster().spec().clone();
        spec.services[0].members[0].weight = 3;
        spec.services[0].members[1].clients = vec!["198.18.0.0/15".parse().unwrap()];
        let mut db = RedirectDb::new(spec);
        db.set_server_loads(&[load(3, 0), load(0, 0), load(2, 0)]);
        let snap = db.snapshot(Nanos::ZERO);
        let mut placed = Placed::default();
        placed.reset(&snap);
        // s1: 3/3 = 1 beats s3: 2/1; s2 is for other clients.
        assert!(matches!(
            snap.decide(&req(Mark::Capable), &mut placed),
            Decision::Redirect {
                member: Member::Service(1),
                ..
            }
        ));
        let business = Request {
            client: "198.18.3.4".parse().unwrap(),
            ..req(Mark::Capable)
        };
        assert!(matches!(
            snap.decide(&business, &mut placed),
            Decision::Redirect {
                member: Member::Service(2),
                ..
            }
        ));
    }

    #[test]
    fn a_service_that_leads_back_to_itself_is_refused() {
        let mut spec = cluster().spec().clone();
        spec.services[1].members.push(member(Member::Service(0)));
        assert!(spec.check().unwrap_err().contains("tree"));
        assert_eq!(
            spec.member_at(sa("198.51.100.12:7000")),
            Some(Member::Service(2))
        );
        assert_eq!(spec.member_at(sa("192.0.2.10:7000")), Some(Member::Peer(0)));
    }
}
