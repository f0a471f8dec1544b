//! The rings between the lcores and the management core: what the
//! assembly creates for each lcore and hands, as these bundles, to the
//! management threads that drain and feed them (`mgmt::selection`,
//! `mgmt::redirect`). They live here, below the management core, so the
//! data plane never imports it.

use std::sync::Arc;

use crossbeam::queue::ArrayQueue;
use pipelines::nat::NatCounters;
use pipelines::redirect::db::Snapshot as RedirectSnapshot;
use pipelines::redirect::service::{ServiceCounters, ServiceEvent};
use pipelines::select::policy::SelectionCounters;
use pipelines::select::{SelEvent, Snapshot};

/// Events each translate lcore can have in flight toward the management
/// core (about 10 ms of 300 k races/s with three uplinks).
pub const SELECTION_EVENT_RING_SIZE: usize = 16_384;

/// The management core's ends of the selection rings, one per lcore.
#[derive(Default)]
pub struct SelectionRings {
    /// One per lcore with replicate or translate.
    pub snapshots: Vec<Arc<ArrayQueue<Arc<Snapshot>>>>,
    /// One per translate lcore.
    pub events: Vec<Arc<ArrayQueue<SelEvent>>>,
    /// The selection counters of every replicate and translate stage.
    pub counters: Vec<Arc<SelectionCounters>>,
}

/// Failure reports each translate lcore can have in flight.
pub const REDIRECT_EVENT_RING_SIZE: usize = 4096;

/// The management core's ends of the redirection rings.
#[derive(Default)]
pub struct RedirectRings {
    /// One per translate lcore.
    pub snapshots: Vec<Arc<ArrayQueue<Arc<RedirectSnapshot>>>>,
    pub events: Vec<Arc<ArrayQueue<ServiceEvent>>>,
    pub counters: Vec<Arc<ServiceCounters>>,
    pub nat: Vec<Arc<NatCounters>>,
}
