//! The stats as of now, from any thread: the run loop (status line, exit
//! summary, `--stats-out`) and the control socket (`appliance stats`) read
//! them through the same [`StatsReader`], so both show the same numbers.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use pipelines::redirect::service::ServiceCounters;
use pipelines::select::policy::SelectionCounters;

use crate::config::plan::Plan;
use crate::mgmt::redirect::RedirectView;
use crate::mgmt::selection::SelectionView;
use crate::mgmt::stats::{self, LcoreView, Stats, StatsSources};
use crate::ports::BackendControl;

/// Everything [`stats::build`] reads, shared (counters are single-writer
/// atomics; the two views sit behind mutexes only their thread and readers
/// touch).
pub struct StatsReader {
    pub plan: Plan,
    pub started: Instant,
    pub lcores: Vec<LcoreView>,
    pub backend_name: &'static str,
    pub backend: Arc<dyn BackendControl>,
    pub selection: Arc<Mutex<SelectionView>>,
    pub selection_counters: Vec<Arc<SelectionCounters>>,
    pub redirect: Arc<Mutex<RedirectView>>,
    pub redirect_counters: Vec<Arc<ServiceCounters>>,
    pub control: Arc<stats::ControlCounters>,
    /// The one reader of the lcores' NAT event rings (control thread and
    /// NAT log thread share it).
    pub events: Arc<Mutex<crate::mgmt::events::EventHub>>,
    /// The appliance's epoch (event times count from it) as wall-clock time.
    pub epoch_unix: std::time::SystemTime,
}

impl StatsReader {
    /// The stats as of now.
    pub fn report(&self) -> Stats {
        stats::build(&StatsSources {
            plan: &self.plan,
            uptime: self.started.elapsed(),
            lcores: &self.lcores,
            backend_name: self.backend_name,
            backend: self.backend.stats(),
            selection: &self.selection.lock().map(|v| v.clone()).unwrap_or_default(),
            selection_counters: &self.selection_counters,
            control: &self.control,
            redirect: self.plan.redirection.as_ref().map(|p| {
                (
                    p,
                    self.redirect.lock().map(|v| v.clone()).unwrap_or_default(),
                    &self.redirect_counters[..],
                )
            }),
        })
    }
}
