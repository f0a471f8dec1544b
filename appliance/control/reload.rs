//! `appliance reload` and SIGHUP: re-reads the config file, validates it
//! into a plan, compares it with the running config ([`diff`]) and applies
//! what can change live, or refuses the whole reload naming the first
//! field that needs a restart (nothing applied).
//!
//! Applying: the selection thread gets the new `SelectConfig` and publish
//! interval and each changed uplink weight as `AdminCmd`s (the uplinks'
//! admin states set over the socket are kept); every replicate and
//! translate lcore gets the new policy and NAT settings through its
//! one-slot reload ring (`SettingsControl`), taken at the start of a loop
//! turn like a snapshot. A live change to `[redirection]` goes to the
//! redirection thread (which rebuilds its database and publishes a new
//! snapshot) and, as a new service map, to the classify lcores through the
//! same rings. The reload waits (at most [`APPLY_WAIT`]) until
//! every lcore has taken it. Policies the lcores replaced are dropped here,
//! on the management core, once no lcore holds them.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;
use serde_json::{json, Value};

use crate::config::diff::diff;
use crate::config::{self, plan, Config};
use crate::dataplane::rings::{LiveSettings, SettingsControl};
use crate::mgmt::redirect::ReloadSlot;
use crate::mgmt::selection::AdminCmd;
use crate::mgmt::stats::ControlCounters;

/// How long a reload waits for every lcore to take its settings.
pub const APPLY_WAIT: Duration = Duration::from_secs(2);

struct Current {
    path: PathBuf,
    cfg: Config,
    version: u64,
    /// Settings handed to the lcores, newest last; older ones (and their
    /// policies) go once this is their last holder, so an lcore only ever
    /// drops a reference.
    held: Vec<Arc<LiveSettings>>,
}

/// The running config and where a reload's changes go.
pub struct Reloader {
    current: Mutex<Current>,
    admin: Arc<ArrayQueue<AdminCmd>>,
    lcores: Vec<Arc<SettingsControl>>,
    counters: Arc<ControlCounters>,
    /// The redirection thread's reload slot, when redirection runs.
    redirect: Option<ReloadSlot>,
}

impl Reloader {
    /// `cfg` is what `path` held when the appliance started.
    pub fn new(
        path: PathBuf,
        cfg: Config,
        admin: Arc<ArrayQueue<AdminCmd>>,
        lcores: Vec<Arc<SettingsControl>>,
        counters: Arc<ControlCounters>,
        redirect: Option<ReloadSlot>,
    ) -> Reloader {
        Reloader {
            current: Mutex::new(Current {
                path,
                cfg,
                version: 0,
                held: Vec::new(),
            }),
            admin,
            lcores,
            counters,
            redirect,
        }
    }

    /// Reloads from `path` (else the file the appliance started with, or
    /// last reloaded from): `{"config": path, "changed": [fields]}`, or
    /// the error (counted `control.reloads_refused`).
    /// Every reload, applied or refused, also has the NAT log reopen its
    /// file (logrotate's `postrotate` may send either SIGUSR1 or reload).
    pub fn reload(&self, path: Option<&Path>) -> Result<Value, String> {
        self.counters.nat_log_reopen.store(true, Ordering::Relaxed);
        let r = self.try_reload(path);
        let counter = match r {
            Ok(_) => &self.counters.reloads,
            Err(_) => &self.counters.reloads_refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        r
    }

    fn try_reload(&self, path: Option<&Path>) -> Result<Value, String> {
        let mut cur = self
            .current
            .lock()
            .map_err(|_| "the reloader's state is poisoned".to_string())?;
        let path = path.map_or_else(|| cur.path.clone(), Path::to_path_buf);
        let shown = path.display();
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{shown}: {e}"))?;
        let cfg = config::parse(&text).map_err(|e| format!("{shown}: {e}"))?;
        let new = plan::validate(&cfg).map_err(|e| format!("{shown}: {e}"))?;
        let changed = diff(&cur.cfg, &cfg).map_err(|e| format!("{shown}: {e}"))?;
        let weights: Vec<(usize, u32)> = cfg
            .uplinks
            .iter()
            .enumerate()
            .filter(|(i, u)| {
                cur.cfg
                    .uplinks
                    .get(*i)
                    .is_some_and(|o| o.weight != u.weight)
            })
            .map(|(i, u)| (i, u.weight.max(1)))
            .collect();
        // Room for every command first: a reload is applied whole or not.
        if self.admin.capacity() - self.admin.len() < 1 + weights.len() {
            return Err(
                "the management core has too many uplink changes queued; nothing applied, try again"
                    .into(),
            );
        }
        // `diff` let only live `[redirection]` changes through: the
        // database is rebuilt from the new plan, classify gets the new map.
        let redirection = changed
            .iter()
            .any(|f| f.starts_with("redirection."))
            .then_some(new.redirection.as_ref())
            .flatten();
        let services = redirection.map(|r| Arc::new(r.service_map()));
        if let (Some(r), Some(slot)) = (redirection, &self.redirect) {
            let _ = slot.force_push(r.clone());
        }
        let sel = &new.selection;
        let _ = self
            .admin
            .push(AdminCmd::Config(sel.core.clone(), sel.publish_interval));
        for (i, w) in weights {
            let _ = self.admin.push(AdminCmd::Weight(i, w));
        }
        cur.version += 1;
        let settings = Arc::new(LiveSettings {
            version: cur.version,
            policy: sel.policy.clone(),
            nat: new.nat.clone(),
            services,
        });
        for l in &self.lcores {
            let _ = l.slot.force_push(settings.clone());
        }
        cur.held.push(settings);
        let taken = self.wait_applied(cur.version);
        let newest = cur.version;
        cur.held.retain(|s| {
            s.version == newest
                || Arc::strong_count(s) > 1
                || Arc::strong_count(&s.policy) > 1
                || s.services
                    .as_ref()
                    .is_some_and(|m| Arc::strong_count(m) > 1)
        });
        if let Ok(mut r) = self.counters.reloaded.lock() {
            *r = Some(crate::mgmt::stats::Reloaded {
                filtering: new.nat.filtering,
                mode: sel.mode_name.clone(),
                algorithm: sel.policy.algorithm,
            });
        }
        cur.cfg = cfg;
        cur.path = path.clone();
        Ok(json!({
            "config": path.display().to_string(),
            "changed": changed,
            "lcores_applied": taken,
            "lcores": self.lcores.len(),
        }))
    }

    /// Waits until every lcore applied `version` (or [`APPLY_WAIT`]
    /// passed: it applies at its next turn anyway); how many have.
    fn wait_applied(&self, version: u64) -> usize {
        let start = Instant::now();
        loop {
            let n = self
                .lcores
                .iter()
                .filter(|l| l.applied.load(Ordering::Acquire) >= version)
                .count();
            if n == self.lcores.len() || start.elapsed() >= APPLY_WAIT {
                return n;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
