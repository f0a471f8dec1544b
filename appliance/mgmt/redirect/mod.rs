//! The management core's part of server-cluster rerouting (seed 000
//! [62]-[66], [75]): the redirection database ([`RedirectDb`]) lives on a
//! thread of its own. Every `publish_interval` it sums the NAT shards'
//! per-server session gauges (TCP + artificial UDP sessions), applies the
//! failure reports the translate lcores sent, and publishes an immutable
//! decision [`Snapshot`] into a one-slot ring per translate lcore (as
//! `selection.rs` does for uplink selection). Every `report_interval` it
//! writes this appliance's service loads to the shared store and reads its
//! peers' through the store thread ([`store`]); neither the data plane nor
//! the snapshots ever wait for the store.

pub mod store;

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
    /// This appliance's name in the store (a reload may change it).
    pub appliance: String,
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
    /// Exchanges that passed their deadline (a stalled store; also counted
    /// in `store_errors`).
    pub store_timeouts: u64,
    /// New connections to the store after a failure.
    pub store_reconnects: u64,
    /// Reports skipped while waiting out the backoff after failures.
    pub store_backoff_skips: u64,
    /// Peer values in the store that were not a valid load (ignored: the
    /// peer is then not a candidate).
    pub store_invalid_loads: u64,
    /// Reloads that changed `[redirection]` (database rebuilt, new
    /// snapshot published).
    pub reloads: u64,
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
    store: Option<store::Store>,
    last_report: Option<Instant>,
    pub view: RedirectView,
}

impl RedirectCore {
    /// The database, and the store thread when the store is Redis.
    pub fn new(plan: &RedirectionPlan) -> std::io::Result<RedirectCore> {
        let store = match &plan.store {
            RedirectStore::Embedded => None,
            RedirectStore::Redis(r) => Some(store::Store::spawn(r, plan.report_interval)?),
        };
        Ok(RedirectCore {
            db: RedirectDb::new(plan.spec.clone()),
            plan: plan.clone(),
            store,
            last_report: None,
            view: RedirectView {
                appliance: plan.appliance.clone(),
                store: store_name(&plan.store),
                ..RedirectView::default()
            },
        })
    }

    /// One round: loads from the shards, failure reports, the shared
    /// store's outcome and the next exchange when due. Returns the snapshot
    /// to publish, or why the redirection thread cannot go on (the store
    /// thread died).
    pub fn round(
        &mut self,
        now: Nanos,
        nat: &[Arc<NatCounters>],
        events: &mut dyn Iterator<Item = ServiceEvent>,
    ) -> Result<Snapshot, String> {
        let n = self.plan.spec.servers.len();
        let mut loads = vec![Load::default(); n];
        for c in nat {
            for (l, s) in loads.iter_mut().zip(&c.servers) {
                l.tcp = l.tcp.saturating_add(s.tcp_sessions.get());
                l.udp = l.udp.saturating_add(s.udp_sessions.get());
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
        self.poll_store()?;
        let due = self
            .last_report
            .is_none_or(|t| t.elapsed() >= self.plan.report_interval);
        if due && self.store.as_ref().is_some_and(|s| !s.busy()) {
            self.last_report = Some(Instant::now());
            self.start_exchange()?;
        }
        self.refresh_view(now);
        Ok(self.db.snapshot(now))
    }

    /// A reloaded `[redirection]` (validated, and only what
    /// `config::diff` lets change live): the database takes the new spec
    /// keeping its loads and failure reports, a changed store is reopened
    /// (the old store thread ends when its handle goes), and the loads are
    /// reported at the next round. If the new store cannot start, the old
    /// one stays and `last_store_error` says why.
    pub fn reconfigure(&mut self, plan: RedirectionPlan) {
        if plan.store != self.plan.store {
            let store = match &plan.store {
                RedirectStore::Embedded => Ok(None),
                RedirectStore::Redis(r) => store::Store::spawn(r, plan.report_interval).map(Some),
            };
            match store {
                Ok(s) => {
                    self.store = s;
                    self.view.store = store_name(&plan.store);
                }
                Err(e) => {
                    self.view.store_errors += 1;
                    self.view.last_store_error = Some(format!("reopening the store: {e}"));
                }
            }
        }
        self.db.respec(plan.spec.clone());
        self.view.appliance = plan.appliance.clone();
        self.plan = plan;
        self.last_report = None;
        self.view.reloads += 1;
    }

    /// How often the thread publishes (the plan's, changed by a reload).
    pub fn publish_interval(&self) -> Duration {
        self.plan.publish_interval
    }

    /// Waits (tests) until the store thread has no exchange in progress, at
    /// most `max`; true if it has none.
    pub fn settle_store(&mut self, max: Duration) -> Result<bool, String> {
        let until = Instant::now() + max;
        loop {
            self.poll_store()?;
            if self.store.as_ref().is_none_or(|s| !s.busy()) {
                return Ok(true);
            }
            if Instant::now() >= until {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Takes the store thread's outcome, if any, into the database.
    fn poll_store(&mut self) -> Result<(), String> {
        let Some(store) = self.store.as_mut() else {
            return Ok(());
        };
        let n = self.db.spec().peers.len();
        match store.poll()? {
            store::Poll::Pending => {}
            store::Poll::TimedOut(d) => {
                let msg = format!(
                    "redis {}: no answer within {} ms (store stalled)",
                    store.shown(),
                    d.as_millis()
                );
                self.view.store_timeouts += 1;
                self.store_failed(msg);
            }
            store::Poll::Done(o) => {
                self.view.store_reconnects += u64::from(o.reconnected);
                match o.result {
                    Ok(values) => {
                        self.view.store_reports += 1;
                        for i in 0..n {
                            let v = values.get(i).and_then(|v| v.as_deref());
                            let load = v.and_then(|v| {
                                let l = std::str::from_utf8(v)
                                    .ok()
                                    .and_then(|t| peer_load::parse_load(t).ok());
                                self.view.store_invalid_loads += u64::from(l.is_none());
                                l
                            });
                            self.db.set_peer_load(i as u16, load);
                        }
                    }
                    Err(_) if o.backing_off => {
                        self.view.store_backoff_skips += 1;
                        self.forget_peers();
                    }
                    Err(e) => self.store_failed(e),
                }
            }
        }
        Ok(())
    }

    fn store_failed(&mut self, msg: String) {
        self.view.store_errors += 1;
        self.view.last_store_error = Some(msg);
        // Without the store nothing is known of the peers.
        self.forget_peers();
    }

    fn forget_peers(&mut self) {
        for i in 0..self.db.spec().peers.len() {
            self.db.set_peer_load(i as u16, None);
        }
    }

    /// Hands the store thread this appliance's service loads to write and
    /// the peers' keys to read ([65]).
    fn start_exchange(&mut self) -> Result<(), String> {
        let Some(store) = self.store.as_mut() else {
            return Ok(());
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
        store
            .start(store::Job {
                set: mine,
                ttl,
                get: keys,
            })
            .map(|_| ())
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

fn store_name(s: &RedirectStore) -> String {
    match s {
        RedirectStore::Embedded => "embedded".into(),
        RedirectStore::Redis(r) => format!("redis {}", r.shown),
    }
}

/// Where a reload hands the redirection thread its new plan (the newest
/// replaces one not yet taken).
pub type ReloadSlot = Arc<crossbeam::queue::ArrayQueue<RedirectionPlan>>;

/// The shared store's key of a service's load.
pub fn load_key(appliance: &str, service: &str) -> String {
    format!("rdr:load:{appliance}:{service}")
}

/// Starts the management core's redirection thread (and its store
/// thread). The thread returns an error when it cannot go on (its store
/// thread died); the runtime then stops the appliance.
pub fn spawn(
    plan: &RedirectionPlan,
    rings: RedirectRings,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    view: Arc<Mutex<RedirectView>>,
    reload: ReloadSlot,
) -> std::io::Result<std::thread::JoinHandle<Result<(), String>>> {
    let mut core = RedirectCore::new(plan)?;
    std::thread::Builder::new()
        .name("mgmt-redirect".into())
        .spawn(move || {
            let mut published = crate::mgmt::selection::Publisher::default();
            while !stop.load(Ordering::Relaxed) {
                if let Some(p) = reload.pop() {
                    core.reconfigure(p);
                }
                let now = Nanos(epoch.elapsed().as_nanos() as u64);
                let mut events = rings
                    .events
                    .iter()
                    .flat_map(|r| std::iter::from_fn(|| r.pop()));
                let snap = core.round(now, &rings.nat, &mut events)?;
                core.view.snapshots_published = published.publish(snap, &rings.snapshots);
                if let Ok(mut v) = view.lock() {
                    *v = core.view.clone();
                }
                std::thread::sleep(core.publish_interval().min(Duration::from_millis(1000)));
            }
            Ok(())
        })
}
