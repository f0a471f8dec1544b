//! The management core's part of server-cluster rerouting (seed 000
//! [62]-[66], [75]): the redirection database ([`RedirectDb`]) lives on a
//! thread of its own. Every `publish_interval` it sums the NAT shards'
//! per-server session gauges (TCP + artificial UDP sessions), applies the
//! failure reports the translate lcores sent, and publishes an immutable
//! decision [`Snapshot`] into a one-slot ring per translate lcore (as
//! `selection.rs` does for uplink selection). Every `report_interval` it
//! writes this appliance's service loads to the shared store and reads its
//! peers' ([`redis`]); the data plane never waits for any of it.

pub mod redis;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipelines::nat::NatCounters;
use pipelines::redirect::db::{Load, Member, RedirectDb, Snapshot};
use pipelines::redirect::peer_load;
use pipelines::redirect::service::ServiceEvent;
use pipelines::Nanos;

use crate::config::plan::{RedirectStore, RedirectionPlan};
pub use crate::dataplane::rings::RedirectRings;

/// What the stats JSON shows of the database, refreshed at every publication.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RedirectView {
    pub store: String,
    pub servers: Vec<ServerView>,
    pub services: Vec<ServiceView>,
    pub peers: Vec<PeerView>,
    /// Times a target became avoided.
    pub avoided: u64,
    pub snapshots_published: u64,
    pub store_errors: u64,
    pub store_reports: u64,
    pub last_store_error: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ServerView {
    pub name: String,
    pub address: String,
    pub tcp_sessions: u64,
    pub udp_sessions: u64,
    pub load: u64,
    pub avoided: bool,
    pub failures: u64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ServiceView {
    pub name: String,
    pub address: String,
    pub tcp_sessions: u64,
    pub udp_sessions: u64,
    pub avoided: bool,
    pub failures: u64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PeerView {
    pub name: String,
    pub address: String,
    /// `None`: no fresh load in the store.
    pub load: Option<Load>,
    pub avoided: bool,
    pub failures: u64,
}

/// The database and its shared store, as the thread runs them; also usable
/// step by step (tests).
pub struct RedirectCore {
    pub db: RedirectDb,
    plan: RedirectionPlan,
    store: Option<redis::Redis>,
    last_report: Option<Instant>,
    pub view: RedirectView,
}

impl RedirectCore {
    pub fn new(plan: &RedirectionPlan) -> RedirectCore {
        let store = match &plan.store {
            RedirectStore::Embedded => None,
            RedirectStore::Redis(addr) => Some(redis::Redis::new(addr)),
        };
        RedirectCore {
            db: RedirectDb::new(plan.spec.clone()),
            plan: plan.clone(),
            store,
            last_report: None,
            view: RedirectView {
                store: match &plan.store {
                    RedirectStore::Embedded => "embedded".into(),
                    RedirectStore::Redis(a) => format!("redis {a}"),
                },
                ..RedirectView::default()
            },
        }
    }

    /// One round: loads from the shards, failure reports, the shared
    /// store when due. Returns the snapshot to publish.
    pub fn round(
        &mut self,
        now: Nanos,
        nat: &[Arc<NatCounters>],
        events: &mut dyn Iterator<Item = ServiceEvent>,
    ) -> Snapshot {
        let n = self.plan.spec.servers.len();
        let mut loads = vec![Load::default(); n];
        for c in nat {
            for (l, s) in loads.iter_mut().zip(&c.servers) {
                l.tcp += s.tcp_sessions.get();
                l.udp += s.udp_sessions.get();
            }
        }
        self.db.set_server_loads(&loads);
        for ev in events {
            match ev {
                ServiceEvent::Failure { member } => {
                    if self.db.report_failure(member, now) {
                        self.view.avoided += 1;
                    }
                }
            }
        }
        let due = self
            .last_report
            .is_none_or(|t| t.elapsed() >= self.plan.report_interval);
        if due && self.store.is_some() {
            self.last_report = Some(Instant::now());
            self.exchange_loads();
        }
        self.refresh_view(now);
        self.db.snapshot(now)
    }

    /// Writes this appliance's service loads, reads the peers' ([65]).
    fn exchange_loads(&mut self) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let spec = self.db.spec();
        let w = &spec.cfg;
        let ttl = self.plan.load_ttl;
        let mine: Vec<(String, String)> = spec
            .services
            .iter()
            .zip(self.db.service_loads())
            .map(|(s, l)| {
                (
                    load_key(&self.plan.appliance, &s.name),
                    peer_load::format_load(l, w.tcp_session_weight, w.udp_session_weight),
                )
            })
            .collect();
        let keys: Vec<String> = spec
            .peers
            .iter()
            .map(|p| {
                let (a, s) = p.name.split_once('/').unwrap_or((&p.name, ""));
                load_key(a, s)
            })
            .collect();
        let result = store.set_all(&mine, ttl).and_then(|()| store.mget(&keys));
        match result {
            Ok(values) => {
                self.view.store_reports += 1;
                for (i, v) in values.iter().enumerate() {
                    let load = v.as_deref().and_then(|v| peer_load::parse_load(v).ok());
                    self.db.set_peer_load(i as u16, load);
                }
            }
            Err(e) => {
                self.view.store_errors += 1;
                self.view.last_store_error = Some(e.to_string());
                // Without the store nothing is known of the peers.
                for i in 0..keys.len() {
                    self.db.set_peer_load(i as u16, None);
                }
            }
        }
    }

    fn refresh_view(&mut self, now: Nanos) {
        let spec = self.db.spec();
        let c = &spec.cfg;
        self.view.servers = spec
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let l = self.db.server_load(i as u16);
                let m = Member::Server(i as u16);
                ServerView {
                    name: s.name.clone(),
                    address: s.addr.to_string(),
                    tcp_sessions: l.tcp,
                    udp_sessions: l.udp,
                    load: l.weighted(c),
                    avoided: self.db.avoided(m, now),
                    failures: self.db.failures(m),
                }
            })
            .collect();
        self.view.services = spec
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let m = Member::Service(i as u16);
                let l = self.db.member_load(m).unwrap_or_default();
                ServiceView {
                    name: s.name.clone(),
                    address: s.addr.to_string(),
                    tcp_sessions: l.tcp,
                    udp_sessions: l.udp,
                    avoided: self.db.avoided(m, now),
                    failures: self.db.failures(m),
                }
            })
            .collect();
        self.view.peers = spec
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let m = Member::Peer(i as u16);
                PeerView {
                    name: p.name.clone(),
                    address: p.addr.to_string(),
                    load: self.db.member_load(m),
                    avoided: self.db.avoided(m, now),
                    failures: self.db.failures(m),
                }
            })
            .collect();
    }
}

/// The shared store's key of a service's load.
pub fn load_key(appliance: &str, service: &str) -> String {
    format!("rdr:load:{appliance}:{service}")
}

/// Starts the management core's redirection thread.
pub fn spawn(
    plan: &RedirectionPlan,
    rings: RedirectRings,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    view: Arc<Mutex<RedirectView>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut core = RedirectCore::new(plan);
    let every = plan.publish_interval;
    std::thread::Builder::new()
        .name("mgmt-redirect".into())
        .spawn(move || {
            let mut published = crate::mgmt::selection::Publisher::default();
            while !stop.load(Ordering::Relaxed) {
                let now = Nanos(epoch.elapsed().as_nanos() as u64);
                let mut events = rings
                    .events
                    .iter()
                    .flat_map(|r| std::iter::from_fn(|| r.pop()));
                let snap = core.round(now, &rings.nat, &mut events);
                core.view.snapshots_published = published.publish(snap, &rings.snapshots);
                if let Ok(mut v) = view.lock() {
                    *v = core.view.clone();
                }
                std::thread::sleep(every.min(Duration::from_millis(1000)));
            }
        })
}
